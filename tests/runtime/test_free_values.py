"""The forward values an explanation keeps (runtime/model.cpp, runtime/reverse.cpp): the forward
pass drops every value no rule of the coming sweep reads (Rule::reads), once the forward is done
with it, and the sweep frees each value after the last step that reads it and each node's kept
products after its rule ran.

With ONNXPLAIN_CHECK_FREED=1 a freed value is replaced by NaN of its shape instead of losing its
storage, so a rule that reads a value it declared unread (or after its last declared reader)
gives NaN relevance where it would otherwise read freed memory. Every method that runs a reverse
sweep is explained on a branchy residual network (a ReLU output read by a convolution, a residual
sum, a max pool; a product by a constant; a concatenation; a large dense layer that takes the
blocked αβ / γ products) with and without the check, each in a subprocess (the variable is read
once per process): the results must be finite and identical, for batches of 1 and 3 and 1 or 2 threads.
"""

from __future__ import annotations

import functools
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

import onnxplain as ox
from tests.helpers.torch_models import export

ROOT = Path(__file__).resolve().parents[2]

METHODS: dict[str, dict] = {
    "gradient": {}, "input_t_gradient": {}, "integrated_gradients": {"steps": 3}, "smoothgrad": {"samples": 3},
    "deconvnet": {}, "guided_backprop": {},
    "lrp.z": {}, "lrp.epsilon": {}, "lrp.gamma": {}, "lrp.alpha_1_beta_0": {}, "lrp.alpha_2_beta_1": {},
    "lrp.z_plus": {}, "lrp.w_square": {}, "lrp.flat": {}, "lrp.sequential_preset_b_flat": {},
    "lrp.epsilon_plus_flat": {}, "lrp.epsilon_gamma_box": {"low": -3.0, "high": 3.0},
    "lrp.epsilon_alpha2_beta1": {}, "deep_taylor": {}, "deep_taylor.bounded": {"low": -3.0, "high": 3.0},
    "deeplift.rescale": {}, "deeplift.reveal_cancel": {},
    "pattern.net": {"estimator": "filter"}, "pattern.attribution": {"estimator": "filter"},
}
CASES = [(1, 1), (3, 1), (3, 2)]  # (batch, threads)


class Branchy(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.c1 = nn.Conv2d(3, 8, 3, padding=1)
        self.c2 = nn.Conv2d(8, 8, 3, padding=1, bias=False)
        self.c3 = nn.Conv2d(8, 8, 1)
        self.fc1 = nn.Linear(16 * 4 * 4, 1100)  # 1.1 MB: αβ and γ run it in blocks of neurons
        self.fc2 = nn.Linear(1100, 5)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = F.relu(self.c1(x))  # read by c2, the residual sum and a max pool
        s = F.relu(h + F.relu(self.c2(h)))
        t = torch.cat([F.avg_pool2d(s, 2), self.c3(F.max_pool2d(h, 2)) * 0.5], 1)
        return self.fc2(F.relu(self.fc1(torch.flatten(F.max_pool2d(t, 2), 1))))


@functools.cache
def _model_bytes() -> bytes:
    torch.manual_seed(5)
    net = Branchy().eval()
    with torch.no_grad():
        for mod in net.modules():
            if getattr(mod, "bias", None) is not None:
                mod.bias.uniform_(-0.3, 0.3)
    return export(net, torch.zeros((2, 3, 16, 16)), dynamo=False)


def explain_all(model_path: str) -> dict[str, np.ndarray]:
    model = ox.load(model_path)
    out = {}
    for batch, threads in CASES:
        x = np.random.default_rng(batch).standard_normal((batch, 3, 16, 16)).astype(np.float32)
        target = np.arange(batch) % 5
        for method, params in METHODS.items():
            out[f"{method}/{batch}/{threads}"] = ox.explainer(model, method, **params).explain(
                x, target=target, threads=threads)
        cot = np.random.default_rng(7).standard_normal((batch, 5)).astype(np.float32)
        out[f"vjp/{batch}/{threads}"] = model.vjp(x, cot, threads=threads)[0]
    return out


def _run(path: Path, out: Path, check: bool) -> dict[str, np.ndarray]:
    """explain_all in a subprocess (a rule reading freed storage would crash it, not pytest)."""
    env = dict(os.environ, ONNXPLAIN_CHECK_FREED="1" if check else "0")
    # The installed package (CI) or the one PYTHONPATH already names (a source tree); ROOT for tests.*
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT), env.get("PYTHONPATH", "")])
    code = ("import sys, numpy as np; from tests.runtime.test_free_values import explain_all; "
            "np.savez(sys.argv[2], **explain_all(sys.argv[1]))")
    subprocess.run([sys.executable, "-c", code, str(path), str(out)], check=True, env=env, cwd=ROOT)
    with np.load(out) as f:
        return {k: f[k] for k in f.files}


@pytest.fixture(scope="module")
def results(tmp_path_factory) -> tuple[dict, dict]:
    tmp = tmp_path_factory.mktemp("free")
    path = tmp / "branchy.onnx"
    path.write_bytes(_model_bytes())
    poisoned = _run(path, tmp / "checked.npz", True)
    try:
        plain = _run(path, tmp / "plain.npz", False)
    except subprocess.CalledProcessError:  # the checked run says which method reads freed values
        plain = None
    return plain, poisoned


@pytest.mark.parametrize("case", CASES, ids=lambda c: f"batch{c[0]}-threads{c[1]}")
@pytest.mark.parametrize("method", [*METHODS, "vjp"])
def test_no_rule_reads_a_freed_value(results, method: str, case) -> None:
    plain, poisoned = results
    key = f"{method}/{case[0]}/{case[1]}"
    assert np.isfinite(poisoned[key]).all(), "a rule read a value the sweep had freed"
    assert plain is not None, "the run without ONNXPLAIN_CHECK_FREED crashed: a rule read freed storage"
    np.testing.assert_array_equal(poisoned[key], plain[key])


def test_model_vjp_is_the_gradient(results) -> None:
    """Model.vjp runs the sweep on values it owns, freeing them as it passes; a one-hot cotangent
    gives the gradient explainer's relevance."""
    model = ox.load(_model_bytes())
    x = np.random.default_rng(3).standard_normal((3, 3, 16, 16)).astype(np.float32)
    cot = np.eye(5, dtype=np.float32)[[4, 0, 2]]
    np.testing.assert_array_equal(model.vjp(x, cot)[0], ox.explainer(model, "gradient").explain(x, target=[4, 0, 2]))
