"""PatternNet / PatternAttribution on the linear toy of Kindermans et al. (2018, section 2), where the
true signal direction is known (DESIGN.md, "How correctness is established").

Data x = a_s * y + a_d * eps (+ small noise); a least-squares model w^T x + b recovers y, so w
cancels the distractor and points away from a_s (cos(w, a_s) ~ 0.70 in both toys). PatternNet must
recover a_s, PatternAttribution a_s * w; gradient, DeConvNet, Guided BackProp (which show w on a
ReLU-free model) and LRP (w * x) must not. The toy and the ONNX export come from
examples/patternnet_linear_toy.py, which is also run end to end. The fitted patterns and the
explanations are also checked against a numpy re-derivation of api_spec's formulas.
"""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType

import numpy as np
import pytest

import onnxplain as ox

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "examples" / "patternnet_linear_toy.py"


def _load_example() -> ModuleType:
    spec = importlib.util.spec_from_file_location("patternnet_linear_toy", EXAMPLE)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up while the class is built
    spec.loader.exec_module(module)
    return module


toy_example = _load_example()

N_TRAIN = 20000
N_TEST = 100
KINDS = ["image", "2d"]
# form -> (axis of the weight that indexes output neurons, number of outputs)
FORMS = {"gemm": (0, 1), "gemm_t": (1, 1), "matmul_add": (1, 1), "gemm2": (0, 2)}


@dataclass(frozen=True)
class Case:
    a_s: np.ndarray
    a_d: np.ndarray
    w: np.ndarray  # [D] float64, the least-squares weight
    b: float
    model: ox.Model
    weight: np.ndarray  # [K, D] float32 rows of the exported weight (neuron k: row k)
    bias: np.ndarray  # [K] float32
    train: np.ndarray  # [N_TRAIN, D] float32
    test: np.ndarray  # [N_TEST, D] float32


_CASES: dict[tuple[str, str, bool], Case] = {}


def case(kind: str, form: str = "gemm", zero_bias: bool = False) -> Case:
    key = (kind, form, zero_bias)
    if key not in _CASES:
        toy = toy_example.make_toy(kind, n=N_TRAIN + N_TEST, seed=1)
        w, b = toy_example.fit_linear(toy.x[:N_TRAIN], toy.y[:N_TRAIN])
        b = 0.0 if zero_bias else b
        w32 = w.astype(np.float32)
        weight = np.stack([w32, -w32]) if FORMS[form][1] == 2 else w32[None]
        bias = np.array([b, -b] if FORMS[form][1] == 2 else [b], np.float32)
        model = ox.load(toy_example.export_onnx(w, b, form))
        _CASES[key] = Case(toy.a_s, toy.a_d, w, b, model, weight, bias, toy.x[:N_TRAIN], toy.x[N_TRAIN:])
    return _CASES[key]


def fitted(c: Case, method: str, estimator: str) -> ox.Explainer:
    return ox.explainer(c.model, method, estimator=estimator).fit(c.train, batch_size=512)


def mean_abs_cos(r: np.ndarray, direction: np.ndarray) -> float:
    return float(toy_example.mean_abs_cosine(r, direction))


def f_target(c: Case, target: int) -> np.ndarray:
    """f_t(x) of the test samples in float64: the neuron's output with bias."""
    return c.test.astype(np.float64) @ c.weight[target].astype(np.float64) + float(c.bias[target])


def close(got: np.ndarray, expected: np.ndarray, tol: float = 1e-4) -> None:
    """Largest error relative to the largest entry of `expected`."""
    assert got.shape == expected.shape, (got.shape, expected.shape)
    scale = float(np.max(np.abs(expected))) or 1.0
    err = float(np.max(np.abs(got - expected))) / scale
    assert err <= tol, f"max error {err:.2e} of the scale {scale:.3e}"


def reference_patterns(x: np.ndarray, wk: np.ndarray, bk: float, estimator: str) -> tuple[np.ndarray, np.ndarray]:
    """api_spec's patterns of one dense neuron in float64: (a_pos, a_neg); the linear estimator has one
    pattern, returned twice. E[y] is over all rows, y = w^T x without bias, the mask is w^T x + b > 0."""
    x64 = x.astype(np.float64)
    w64 = wk.astype(np.float64)
    y = x64 @ w64
    ey = y.mean()

    def pattern(rows: np.ndarray) -> np.ndarray:
        cnt = max(int(rows.sum()), 1)
        cov = (x64[rows] * y[rows, None]).sum(axis=0) / cnt - x64[rows].sum(axis=0) / cnt * ey
        den = float(w64 @ cov)
        return cov / (den if den != 0 else 1.0)

    if estimator == "linear":
        a = pattern(np.ones(len(x64), bool))
        return a, a
    active = x.astype(np.float32) @ wk.astype(np.float32) + np.float32(bk) > 0
    return pattern(active), pattern(~active)


def test_toy_weight_cancels_distractor_and_misses_signal() -> None:
    """The premise: w is orthogonal to a_d and clearly not along a_s (no onnxplain involved)."""
    for kind in KINDS:
        c = case(kind)
        assert abs(toy_example.cosine(c.w, c.a_d)) < 0.01
        assert 0.6 < toy_example.cosine(c.w, c.a_s) < 0.8
        assert abs(float(c.w @ c.a_s) - 1.0) < 0.02  # w^T x recovers y


@pytest.mark.parametrize("estimator", ["linear", "relu"])
@pytest.mark.parametrize("kind", KINDS)
def test_pattern_net_recovers_the_signal_direction(kind: str, estimator: str) -> None:
    c = case(kind)
    r = fitted(c, "pattern.net", estimator).explain(c.test, target=0)
    assert r.shape == c.test.shape
    assert mean_abs_cos(r, c.a_s) >= 0.99
    # and oriented as the signal a_s * y: R = a * f_t(x) with w^T a = 1, so along +a_s where f_t(x) > 0
    f = f_target(c, 0)
    signed = toy_example.cosines(r, c.a_s) * np.sign(f)
    assert np.all(signed[np.abs(f) > 1e-3] > 0.9)


@pytest.mark.parametrize("estimator", ["linear", "relu"])
@pytest.mark.parametrize("kind", KINDS)
def test_pattern_attribution_is_signal_times_weight(kind: str, estimator: str) -> None:
    c = case(kind)
    r = fitted(c, "pattern.attribution", estimator).explain(c.test, target=0)
    assert r.shape == c.test.shape
    assert mean_abs_cos(r, c.a_s * c.w) >= 0.99
    f = f_target(c, 0)
    signed = toy_example.cosines(r, c.a_s * c.w) * np.sign(f)
    assert np.all(signed[np.abs(f) > 1e-3] > 0.9)  # R = (a * w) f_t(x), oriented as a_s * w * y


@pytest.mark.parametrize("estimator", ["linear", "relu"])
@pytest.mark.parametrize("form", list(FORMS))
def test_patterns_and_explanations_match_numpy(form: str, estimator: str) -> None:
    """Fitted patterns (in the weight's layout) and both explanations against the spec's formulas, for
    each way a dense layer is exported (Gemm with either weight layout, MatMul + Add, two outputs)."""
    c = case("image", form)
    axis, k_out = FORMS[form]
    net = fitted(c, "pattern.net", estimator)
    attribution = fitted(c, "pattern.attribution", estimator)
    patterns = net.patterns["dense"]
    assert patterns["a_pos"].shape == (c.weight.shape if axis == 0 else c.weight.T.shape)
    assert (patterns["a_neg"] is None) == (estimator == "linear")
    for k in range(k_out):
        a_pos, a_neg = reference_patterns(c.train, c.weight[k], float(c.bias[k]), estimator)
        got_pos = np.moveaxis(patterns["a_pos"], axis, 0)[k]
        close(got_pos, a_pos)
        if estimator == "relu":
            close(np.moveaxis(patterns["a_neg"], axis, 0)[k], a_neg)
        f = f_target(c, k)
        a = np.where((f > 0)[:, None], a_pos, a_neg)  # per sample: a_pos where the neuron's output > 0
        close(net.explain(c.test, target=k), (a * f[:, None]).astype(np.float32), tol=1e-3)
        close(attribution.explain(c.test, target=k), (a * c.weight[k] * f[:, None]).astype(np.float32), tol=1e-3)


@pytest.mark.parametrize("method", ["gradient", "deconvnet", "guided_backprop"])
@pytest.mark.parametrize("kind", KINDS)
def test_weight_based_methods_show_the_weight_not_the_signal(kind: str, method: str) -> None:
    c = case(kind)
    r = ox.explainer(c.model, method).explain(c.test, target=0)
    close(r, np.broadcast_to(c.weight[0], c.test.shape), tol=1e-5)  # no ReLU: all three are w
    cos_w = toy_example.cosine(c.w, c.a_s)
    assert mean_abs_cos(r, c.a_s) == pytest.approx(cos_w, abs=1e-4)
    assert mean_abs_cos(r, c.a_s) < 0.8


@pytest.mark.parametrize("method", ["lrp.z", "lrp.epsilon"])
@pytest.mark.parametrize("kind", KINDS)
def test_lrp_shows_weight_times_input_not_the_signal(kind: str, method: str) -> None:
    c = case(kind)
    r = ox.explainer(c.model, method).explain(c.test, target=0)
    wx = c.test * c.weight[0]
    per_sample = np.sum(r * wx, axis=1) / (np.linalg.norm(r, axis=1) * np.linalg.norm(wx, axis=1))
    assert np.all(np.abs(per_sample) >= 0.999)  # LRP on one dense layer is w * x (times f/z)
    assert mean_abs_cos(r, c.a_s) < 0.8
    assert mean_abs_cos(r, c.a_s * c.w) < 0.8


@pytest.mark.parametrize("kind", KINDS)
def test_filter_estimator_is_the_weight(kind: str) -> None:
    """S_w (a = w / w^T w) is no signal estimator: PatternNet with it shows the weight direction."""
    c = case(kind)
    r = fitted(c, "pattern.net", "filter").explain(c.test, target=0)
    w32 = c.weight[0].astype(np.float64)
    close(r, (np.outer(f_target(c, 0), w32 / (w32 @ w32))).astype(np.float32), tol=1e-3)
    assert mean_abs_cos(r, c.a_s) == pytest.approx(toy_example.cosine(c.w, c.a_s), abs=1e-4)


@pytest.mark.parametrize("kind", KINDS)
def test_identity_estimator(kind: str) -> None:
    """S_x: PatternAttribution becomes LRP-z (on a bias-free model, where the two agree exactly);
    PatternNet refuses it."""
    c = case(kind, zero_bias=True)
    r = fitted(c, "pattern.attribution", "identity").explain(c.test, target=0)
    close(r, ox.explainer(c.model, "lrp.z").explain(c.test, target=0), tol=1e-4)
    with pytest.raises(ValueError):
        ox.explainer(c.model, "pattern.net", estimator="identity").fit(c.train[:64]).explain(c.test, target=0)


def _table_value(stdout: str, label: str, column: int) -> float:
    for line in stdout.splitlines():
        if line.startswith(label + " "):
            return float(line[len(label):].split()[column])
    raise AssertionError(f"no row {label!r} in the example's output:\n{stdout}")


def test_example_script_end_to_end(tmp_path: Path) -> None:
    out = tmp_path / "toy.png"
    env = dict(os.environ)
    # the onnxplain this test imports (an installed package, or python/ with ONNXPLAIN_CORE_DIR)
    env["PYTHONPATH"] = os.pathsep.join([str(Path(ox.__file__).resolve().parents[1]), env.get("PYTHONPATH", "")])
    if "ONNXPLAIN_CORE_DIR" in env:
        env["ONNXPLAIN_CORE_DIR"] = str(Path(env["ONNXPLAIN_CORE_DIR"]).resolve())
    proc = subprocess.run([sys.executable, str(EXAMPLE), "--samples", "10000", "--explain", "50", "--out", str(out)],
                          cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert _table_value(proc.stdout, "pattern.net (linear)", 0) >= 0.99
    assert _table_value(proc.stdout, "pattern.attribution (linear)", 1) >= 0.99
    assert _table_value(proc.stdout, "gradient", 0) < 0.8
    pytest.importorskip("matplotlib")
    assert out.is_file() and out.stat().st_size > 0
