"""The command line: inspect, methods, explain and the demo, as a user runs them."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from onnx import helper

import onnxplain as ox
from onnxplain import demo
from onnxplain.cli import main
from tests.helpers.onnx_builders import make_model


def _cli(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "onnxplain.cli", *args], capture_output=True, text=True, cwd=cwd,
                          timeout=600)


def test_inspect_supported_and_unsupported(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["inspect", str(demo.MODEL_PATH)]) == 0
    out = capsys.readouterr().out
    assert "supported" in out and "Conv" in out and "method families" in out and "LRP / Deep Taylor" in out
    bad = tmp_path / "erf.onnx"
    bad.write_bytes(make_model([helper.make_node("Shrink", ["x"], ["y"], name="shrink_1")], [("x", [1, 3])], ["y"]))
    # The engine lacks Erf; onnxruntime runs it, so the forward-only methods still apply.
    assert main(["inspect", str(bad)]) == 1
    out = capsys.readouterr().out
    assert "NOT SUPPORTED" in out and "Shrink" in out and "'shrink_1'" in out
    assert "apply through onnxruntime" in out and "do not apply" in out
    worse = tmp_path / "custom.onnx"
    worse.write_bytes(make_model([helper.make_node("Mine", ["x"], ["y"], name="m", domain="com.example")],
                                 [("x", [1, 3])], ["y"]))
    assert main(["inspect", str(worse)]) == 2
    assert "onnxruntime cannot run it either" in capsys.readouterr().out


def test_methods_lists_every_method_with_its_paper(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["methods"]) == 0
    out = capsys.readouterr().out
    for name in ox.methods():
        assert f"{name}(" in out
    assert "epsilon=1e-6" in out and "Bach et al. 2015" in out


def test_explain_writes_relevance_equal_to_the_python_api(tmp_path: Path) -> None:
    x, _ = demo.load_samples()
    np.save(tmp_path / "x.npy", x[:4])
    r = _cli("explain", str(demo.MODEL_PATH), str(tmp_path / "x.npy"), "--method", "lrp.epsilon", "--param",
             "epsilon=0.01", "--target", "3", "--out", str(tmp_path / "R.npy"), "--png", str(tmp_path / "R.png"))
    assert r.returncode == 0, r.stderr
    got = np.load(tmp_path / "R.npy")
    expected = ox.explainer(ox.load(str(demo.MODEL_PATH)), "lrp.epsilon", epsilon=0.01).explain(x[:4], target=3)
    np.testing.assert_allclose(got, expected, rtol=1e-6, atol=1e-7)
    assert (tmp_path / "R.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_explain_bad_arguments_say_what_is_wrong(tmp_path: Path) -> None:
    x, _ = demo.load_samples()
    np.save(tmp_path / "x.npy", x[:2])
    r = _cli("explain", str(demo.MODEL_PATH), str(tmp_path / "x.npy"), "--method", "lrp.nope", "--out",
             str(tmp_path / "R.npy"))
    assert r.returncode == 2 and "unknown method 'lrp.nope'" in r.stderr
    r = _cli("explain", str(demo.MODEL_PATH), str(tmp_path / "x.npy"), "--method", "lrp.epsilon", "--param",
             "eps=1", "--out", str(tmp_path / "R.npy"))
    assert r.returncode == 2 and "no parameter 'eps'" in r.stderr
    np.save(tmp_path / "bad.npy", x[:2, 0])
    r = _cli("explain", str(demo.MODEL_PATH), str(tmp_path / "bad.npy"), "--method", "gradient", "--out",
             str(tmp_path / "R.npy"))
    assert r.returncode == 2 and "expects 4 dimensions" in r.stderr


def test_demo_runs_and_draws(tmp_path: Path) -> None:
    r = _cli("demo", "--threads", "1", "--out", str(tmp_path / "demo.png"), cwd=tmp_path)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "OK" in r.stdout and "accuracy on the bundled digits" in r.stdout
    assert (tmp_path / "demo.png").stat().st_size > 1000
