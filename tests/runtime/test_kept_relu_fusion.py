"""Conv followed by Relu in a forward pass kept for a reverse one (an explanation): the convolution
still writes max(y, 0) itself and the Relu node is skipped where the reverse reads the unrectified
values nowhere (runtime/model.cpp, Model::KeepQuery; runtime/reverse.cpp, reverse_read_query).
z+ beyond batch 1 (Zennit's EpsilonPlusFlat, Deep Taylor) reads a convolution's input, not its
output, and LRP's pass rule on the Relu reads nothing. A residual sum's Relu is fused into the sum
(Add and Sub write max(a +- b, 0)) where the sum's rule takes y from the two terms it reads
anyway. The gradient's rule reads what each op's VJP reads (Op::vjp_reads): a Relu's mask comes
from its output, a convolution's from its weight, so the gradient methods fuse too. Where a rule
reads the output (epsilon's denominator, Guided BackProp) or computes it itself (z+ at batch 1,
alpha-beta), the Relu runs.

Checked in a subprocess bit for bit against the same graph with every convolution and sum output
also a graph output, which keeps every Relu node (an explanation starts on output 0 only, so its
numbers must not move), with freed values filled with NaN (ONNXPLAIN_CHECK_FREED=1: a rule reading
what the fused pass never wrote gives NaN), and with ONNXPLAIN_PROFILE=2 naming the nodes that
ran. The numbers themselves are Zennit's in tests/rules/test_lrp_vs_zennit.py."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import onnx
import pytest
import torch
from onnx import TensorProto, helper
from torch import nn

from tests.helpers.torch_models import export

ROOT = Path(__file__).resolve().parents[2]

CHILD = """
import sys
import numpy as np
import onnxplain as ox
path, method, batch, threads, out = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), sys.argv[5]
x = np.random.default_rng(batch).standard_normal((batch, 3, 12, 12)).astype(np.float32)
ex = ox.explainer(ox.load(path), method)
np.save(out, ex.explain(x, target=np.arange(batch) % 10, threads=threads))
"""


class _Block(nn.Module):
    def __init__(self, c: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(c, c, 3, padding=1)
        self.conv2 = nn.Conv2d(c, c, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.relu(self.conv2(torch.relu(self.conv1(x))) + x)


def _net() -> nn.Module:
    torch.manual_seed(3)
    # 3x3 convolutions on 12x12 maps (Winograd and the small-map kernels), 1x1 (sgemm), a residual
    # block whose last Relu follows a sum, not a convolution.
    return nn.Sequential(
        nn.Conv2d(3, 16, 3, padding=1), nn.ReLU(), nn.Conv2d(16, 16, 3, padding=1), nn.ReLU(), _Block(16),
        nn.Conv2d(16, 8, 1), nn.ReLU(), nn.Flatten(), nn.Linear(8 * 12 * 12, 10)).eval()


def _with_unrectified_outputs(model: bytes) -> bytes:
    m = onnx.load_from_string(model)
    for node in m.graph.node:
        if node.op_type in ("Conv", "Add"):
            m.graph.output.append(helper.make_tensor_value_info(node.output[0], TensorProto.FLOAT, None))
    return m.SerializeToString()


def _explain(tmp_path: Path, model: bytes, tag: str, method: str, batch: int, threads: int) -> tuple[np.ndarray, str]:
    path = tmp_path / f"{tag}.onnx"
    path.write_bytes(model)
    out = tmp_path / f"{tag}.npy"
    env = dict(os.environ, ONNXPLAIN_PROFILE="2", ONNXPLAIN_CHECK_FREED="1")
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT), env.get("PYTHONPATH", "")])
    p = subprocess.run([sys.executable, "-c", CHILD, str(path), method, str(batch), str(threads), str(out)],
                       env=env, capture_output=True, text=True, timeout=300)
    assert p.returncode == 0, p.stderr[-2000:]
    return np.load(out), p.stderr.split("[onnxplain profile] forward")[1].split("[onnxplain profile]")[0]


def _relus_run(profile: str) -> int:
    return sum(1 for line in profile.splitlines() if line.split()[:1] == ["Relu"])


# method, batch, how many of the five Relus run. The one after the residual sum is fused into the
# sum where the sum's rule takes y from its two terms (Norm, epsilon on a sum: rules/lrp.cpp
# sum_recomputable), which every LRP rule here does.
CASES = [
    ("lrp.epsilon_plus_flat", 3, 0),
    ("lrp.z_plus", 2, 0),
    ("deep_taylor", 4, 0),
    # z+ at batch 1 makes its output from a stacked product; the flat rule on the first convolution
    # reads its input only
    ("lrp.epsilon_plus_flat", 1, 3),
    # its forward makes W+x and W-x and sums them where the input is non-negative; on the first
    # convolution (an input of both signs) the op's forward runs, and the reverse reads x only
    ("lrp.alpha_2_beta_1", 3, 3),
    ("lrp.epsilon", 3, 4),  # reads y of every convolution
    # the Relu's VJP reads its output, a convolution's its weight, a sum's nothing (Op::vjp_reads)
    ("gradient", 3, 0),
    ("integrated_gradients", 2, 0),
    ("guided_backprop", 3, 5),  # its rule reads every value of the Relu
]


@pytest.mark.parametrize("threads", [1, 2])
@pytest.mark.parametrize(("method", "batch", "relus"), CASES)
def test_kept_fusion_changes_no_number(tmp_path: Path, method: str, batch: int, relus: int, threads: int) -> None:
    net = _net()
    model = export(net, torch.zeros(1, 3, 12, 12), dynamo=False)
    got, prof = _explain(tmp_path, model, "fused", method, batch, threads)
    want, prof_ref = _explain(tmp_path, _with_unrectified_outputs(model), "separate", method, batch, threads)
    assert _relus_run(prof_ref) == 5
    assert _relus_run(prof) == relus
    assert np.all(np.isfinite(got)) and np.abs(got).max() > 0
    np.testing.assert_array_equal(got.view(np.uint32), want.view(np.uint32))
