"""The memory caps (ops/derived_cache.hpp, ir/tensor.cpp): past ONNXPLAIN_DERIVED_MB a
convolution derives its transformed, flipped or packed weight per call instead of keeping it, and
the buffer pool releases waiting buffers on a miss. Neither may change a number: the same
explanations run in subprocesses with the derived-data cap at 0 (nothing kept, except the Winograd
transforms of products over fewer than 64 tiles, which do not count against it), at 1 MiB (some
kept, some derived per call), at its default and without the pool
(ONNXPLAIN_POOL_MB=0), twice each (the second call takes what the first cached or pooled), and must
equal each other bit for bit; the gradient is also checked against torch autograd.

The net has 3x3 convolutions of 64 channels on 16x16 maps, which run through Winograd (at batch 4:
64 tiles, past the forced-keep threshold; at batch 1: 16 tiles, kept regardless) and the small-map
path (its input gradient as a convolution with the flipped, packed weight).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from tests.helpers.torch_models import export

ROOT = Path(__file__).resolve().parents[2]
METHODS = ["gradient", "lrp.epsilon_plus_flat", "lrp.alpha_2_beta_1", "lrp.epsilon_gamma_box"]

CHILD = """
import json, sys
import numpy as np
import onnxplain as ox
path, batch, out, methods = sys.argv[1], int(sys.argv[2]), sys.argv[3], json.loads(sys.argv[4])
model = ox.load(path, threads=2)
x = np.random.default_rng(1).standard_normal((batch, 3, 16, 16)).astype(np.float32)
res = {}
for method in methods:
    params = {"low": -3.0, "high": 3.0} if method == "lrp.epsilon_gamma_box" else {}
    ex = ox.explainer(model, method, **params)
    first = ex.explain(x, target=np.arange(batch) % 10)
    second = ex.explain(x, target=np.arange(batch) % 10)
    res[method] = [first.tolist(), second.tolist()]
json.dump(res, open(out, "w"))
"""


def _net() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(
        nn.Conv2d(3, 64, 3, padding=1), nn.ReLU(), nn.Conv2d(64, 64, 3, padding=1), nn.ReLU(),
        nn.Conv2d(64, 64, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2), nn.Conv2d(64, 32, 3, padding=1), nn.ReLU(),
        nn.Flatten(), nn.Linear(32 * 8 * 8, 10)).eval()


def _run(tmp_path: Path, path: Path, batch: int, env_extra: dict[str, str], tag: str) -> dict:
    out = tmp_path / f"{tag}.json"
    env = dict(os.environ, **env_extra)
    # The installed package (CI) or the one PYTHONPATH already names (a source tree); ROOT for tests.*
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT), env.get("PYTHONPATH", "")])
    p = subprocess.run([sys.executable, "-c", CHILD, str(path), str(batch), str(out), json.dumps(METHODS)], env=env,
                       capture_output=True, text=True, timeout=600)
    assert p.returncode == 0, p.stderr[-2000:]
    return json.loads(out.read_text())


@pytest.mark.parametrize("batch", [1, 4])
def test_caps_change_no_number(tmp_path: Path, batch: int) -> None:
    net = _net()
    path = tmp_path / "net.onnx"
    path.write_bytes(export(net, torch.zeros(1, 3, 16, 16), dynamo=False))
    runs = {
        "default": _run(tmp_path, path, batch, {}, "default"),
        "derived0": _run(tmp_path, path, batch, {"ONNXPLAIN_DERIVED_MB": "0"}, "derived0"),
        # One 64-channel Winograd weight (590 KB) fits, beside what is kept past the cap uncounted.
        "derived1": _run(tmp_path, path, batch, {"ONNXPLAIN_DERIVED_MB": "1"}, "derived1"),
        "nopool": _run(tmp_path, path, batch, {"ONNXPLAIN_POOL_MB": "0", "ONNXPLAIN_DERIVED_MB": "0"}, "nopool"),
    }
    for method in METHODS:
        ref = np.asarray(runs["default"][method][0], dtype=np.float32)
        assert np.all(np.isfinite(ref)) and np.abs(ref).max() > 0, method
        for name, res in runs.items():
            for call in res[method]:
                np.testing.assert_array_equal(np.asarray(call, dtype=np.float32), ref, err_msg=f"{method} {name}")
    # The numbers themselves: the gradient against autograd.
    x = torch.from_numpy(np.random.default_rng(1).standard_normal((batch, 3, 16, 16)).astype(np.float32))
    x.requires_grad_(True)
    y = net(x)
    y.gather(1, torch.arange(batch)[:, None] % 10).sum().backward()
    np.testing.assert_allclose(np.asarray(runs["derived0"]["gradient"][0], dtype=np.float32), x.grad.numpy(),
                               rtol=1e-3, atol=1e-5)
