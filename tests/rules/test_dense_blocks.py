"""αβ and γ on large dense layers after a ReLU (rules/lrp.cpp, NeuronBlocks): from a weight of
1 MiB on, the two modified products and their VJPs run in blocks of output neurons, each block's
W+ / W- (W^γ+ / W^γ-) made when needed, instead of two modified copies of the whole weight kept
per explainer. The layers here need two blocks, the last one short, in both weight layouts (Gemm
with transB, and B stored [K, N]: the bias-free layer exports as MatMul, the others as Gemm with
transB = 0 after `_untransposed`), at batch 1 and 3 and 1 or 2 threads; against Zennit."""

from __future__ import annotations

import functools

import numpy as np
import pytest
import torch
from torch import nn
from zennit.rules import AlphaBeta, Gamma, ZPlus

import onnxplain as ox
from tests.helpers.torch_models import export
from tests.rules.test_lrp_vs_zennit import _assert_matches, _layer_map, _untransposed, _zennit


def _big_mlp() -> nn.Module:
    # 1200 x 600 (2.9 MB: blocks of 448 neurons, 448 + 152) and 600 x 1100 without bias (2.6 MB,
    # MatMul with B [600, 1100]: blocks of 880, 880 + 220); the first layer is small and keeps
    # its copies, the last is small too.
    return nn.Sequential(nn.Linear(30, 1200), nn.ReLU(), nn.Linear(1200, 600), nn.ReLU(),
                         nn.Linear(600, 1100, bias=False), nn.ReLU(), nn.Linear(1100, 4))


@functools.cache
def _exported() -> tuple[nn.Module, bytes]:
    torch.manual_seed(21)
    net = _big_mlp().eval()
    with torch.no_grad():
        for mod in net.modules():
            if getattr(mod, "bias", None) is not None:
                mod.bias.uniform_(-0.3, 0.3)
    onnx = export(net, torch.zeros((2, 30)), dynamo=False)
    ref = _big_mlp().eval()
    ref.load_state_dict(net.state_dict())
    return ref.double(), onnx


RULES = [
    ("lrp.alpha_2_beta_1", {}, lambda: AlphaBeta(2, 1)),
    ("lrp.alpha_beta", {"alpha": 3.0, "beta": 2.0}, lambda: AlphaBeta(3, 2)),
    ("lrp.gamma", {}, lambda: Gamma()),
    ("lrp.gamma", {"gamma": 1.0, "stabilizer": 1e-3}, lambda: Gamma(1.0, stabilizer=1e-3)),
    ("lrp.z_plus", {}, lambda: ZPlus()),
]


@pytest.mark.parametrize("layout", ["transB", "untransposed"])
@pytest.mark.parametrize("rule", RULES, ids=lambda r: r[0] + "".join(f"-{k}" for k in r[1]))
def test_sign_split_rules_on_large_dense_layers_match_zennit(rule, layout: str) -> None:
    method, params, zennit_rule = rule
    net, exported = _exported()
    model = ox.load(exported if layout == "transB" else _untransposed(exported), strip_softmax=False)
    ex = ox.explainer(model, method, **params)
    rng = np.random.default_rng(4)
    for n, target in ((3, [0, 3, 2]), (1, [1])):
        x = rng.standard_normal((n, 30)).astype(np.float32)
        t = np.array(target)
        ref = _zennit(net, _layer_map(zennit_rule(), params.get("stabilizer", 1e-6)), x, t)
        for threads in (1, 2):
            _assert_matches(ex.explain(x, target=t, threads=threads), ref)


def test_blocks_are_recomputed_per_call_and_agree_across_batches() -> None:
    """Nothing of a block outlives its call: explaining the same rows again, alone or among
    others, gives the same relevance (rows are independent)."""
    _, exported = _exported()
    ex = ox.explainer(ox.load(exported, strip_softmax=False), "lrp.alpha_2_beta_1")
    x = np.random.default_rng(9).standard_normal((5, 30)).astype(np.float32)
    t = np.array([0, 1, 2, 3, 0])
    whole = ex.explain(x, target=t)
    again = ex.explain(x, target=t)
    np.testing.assert_array_equal(whole, again)
    part = ex.explain(x[1:4], target=t[1:4])
    np.testing.assert_allclose(part, whole[1:4], rtol=1e-5, atol=1e-7 * float(np.abs(whole).max()))
