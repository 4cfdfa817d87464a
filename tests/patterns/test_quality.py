"""Signal quality ρ (Kindermans et al. 2018, eq. 7) against an explicit least-squares regression
of y on the residual x - S(x), row by row (torch's unfold gives the conv patches), and on the
trained digits CNN, the paper's ordering of the estimators."""

from __future__ import annotations

import io
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

import onnxplain as ox

ROOT = Path(__file__).resolve().parents[2]


def _model() -> tuple[nn.Module, bytes]:
    torch.manual_seed(0)
    net = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1, stride=1), nn.ReLU(), nn.MaxPool2d(2), nn.Flatten(),
                        nn.Linear(4 * 4 * 4, 5))
    buf = io.BytesIO()
    torch.onnx.export(net, (torch.zeros(1, 3, 8, 8),), buf, input_names=["x"], dynamic_axes={"x": {0: "n"}},
                      dynamo=False)
    return net, buf.getvalue()


def _data(n: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    # A shared per-sample offset makes the inputs correlated, so the estimators differ.
    return (rng.standard_normal((n, 3, 8, 8)) + 0.7 * rng.standard_normal((n, 1, 1, 1))).astype(np.float32)


def _rho_rows(X: np.ndarray, W: np.ndarray, b: np.ndarray, ap: np.ndarray, an: np.ndarray | None) -> np.ndarray:
    """ρ per neuron from the rows: y = Xw, d = x - S(x), least squares of y on [d, 1]."""
    out = []
    for j in range(W.shape[0]):
        y = X @ W[j]
        # wᵀa = 1 exactly in float64 (the float32 pattern is off by ~1e-8, which would leave y
        # itself in d along w and make the regression exact).
        a = ap[j] / (W[j] @ ap[j])
        if an is None:
            s = np.outer(y, a)
        else:
            a_n = an[j] / (W[j] @ an[j])
            on = (y + b[j]) > 0
            s = np.where(on[:, None], np.outer(y, a), np.outer(y, a_n))
        d = np.c_[X - s, np.ones(len(y))]
        coef, *_ = np.linalg.lstsq(d, y, rcond=None)
        r2 = 1.0 - np.sum((y - d @ coef) ** 2) / np.sum((y - y.mean()) ** 2)
        out.append(1.0 - np.sqrt(max(r2, 0.0)))
    return np.array(out)


@pytest.mark.parametrize("estimator", ["relu", "linear", "filter"])
def test_rho_equals_least_squares_on_the_rows(estimator: str) -> None:
    net, data = _model()
    m = ox.load(data)
    ex = ox.explainer(m, "pattern.net", estimator=estimator).fit(_data(150, 1), batch_size=32)
    test = _data(120, 2)
    got = ox.signal_quality(m, test, explainer=ex, per_neuron=True)
    pats = ex.patterns
    # conv: the rows are the 3x3 patches of every position
    conv, dense = [n for n, _op, k in m.nodes if k == "linear"]
    W = net[0].weight.detach().double().numpy().reshape(4, -1)
    b = net[0].bias.detach().double().numpy()
    X = F.unfold(torch.tensor(test, dtype=torch.float64), 3, padding=1).numpy().transpose(0, 2, 1).reshape(-1, 27)
    an = pats[conv]["a_neg"]
    want = _rho_rows(X, W, b, pats[conv]["a_pos"].reshape(4, -1).astype(np.float64),
                     None if an is None else an.reshape(4, -1).astype(np.float64))
    np.testing.assert_allclose(got[conv], want, atol=2e-4)
    # dense: the rows are the flattened pooled feature maps (computed here with torch)
    with torch.no_grad():
        H = net[:4](torch.tensor(test)).double().numpy()
    Wd = net[4].weight.detach().double().numpy()
    bd = net[4].bias.detach().double().numpy()
    # torch exports Linear as Gemm with transB=1: the pattern is shaped like its weight, [5, 64].
    ap, an = pats[dense]["a_pos"], pats[dense]["a_neg"]
    assert ap.shape == Wd.shape
    want = _rho_rows(H, Wd, bd, ap.astype(np.float64), None if an is None else an.astype(np.float64))
    np.testing.assert_allclose(got[dense], want, atol=2e-4)
    assert np.all((want > 0) & (want < 1))


def test_rho_identity_is_nan_and_too_few_rows_warn() -> None:
    _net, data = _model()
    m = ox.load(data)
    q = ox.signal_quality(m, _data(60, 3), estimator="identity")
    assert all(np.isnan(v) for v in q.values())
    # 10 held-out samples: 10 rows for the dense layer's 64 inputs
    with pytest.warns(UserWarning, match="too few held-out rows"):
        q = ox.signal_quality(m, _data(20, 4), estimator="linear", holdout=0.5)
    dense = [n for n, _op, k in m.nodes if k == "linear"][1]
    assert np.isnan(q[dense])
    with pytest.raises(ValueError, match="holdout"):
        ox.signal_quality(m, _data(20, 4), holdout=1.5)


def test_paper_ordering_on_trained_digits_cnn() -> None:
    """Trained CNN on sklearn digits: S_a and S_a+- far above S_w on every layer (paper Fig. 3)."""
    pytest.importorskip("sklearn")
    sys.path.insert(0, str(ROOT / "examples"))
    try:
        import signal_quality_digits as sq
    finally:
        sys.path.pop(0)
    t = sq.table()
    assert len(t) == 5
    for node, row in t.items():
        assert np.isnan(row["identity"])
        assert row["linear"] > row["filter"] + 0.1, (node, row)
        assert row["relu"] > row["filter"] + 0.1, (node, row)
        assert 0 < row["filter"] < 1 and 0 < row["relu"] <= 1


def test_cli_fit_reports_rho_and_saves(tmp_path: Path) -> None:
    _net, data = _model()
    model = tmp_path / "m.onnx"
    model.write_bytes(data)
    np.save(tmp_path / "x.npy", _data(400, 5))
    out = tmp_path / "m.oxp"
    r = subprocess.run([sys.executable, "-m", "onnxplain.cli", "fit", str(model), str(tmp_path / "x.npy"), "--out",
                        str(out)], capture_output=True, text=True, check=True)
    assert "rho" in r.stdout and "never fired" in r.stdout
    rows = [line.split() for line in r.stdout.splitlines() if line.strip().startswith("/")]
    assert len(rows) == 2 and all(0 < float(cols[-1]) < 1 for cols in rows)
    ex = ox.load_explainer(out)
    assert ex.method == "pattern.attribution"
    x = _data(3, 6)
    r2 = subprocess.run([sys.executable, "-m", "onnxplain.cli", "explain", str(out), str(tmp_path / "x.npy"), "--out",
                         str(tmp_path / "r.npy")], capture_output=True, text=True, check=True)
    assert "pattern.attribution" in r2.stdout
    assert np.load(tmp_path / "r.npy").shape == (400, 3, 8, 8)
    np.testing.assert_array_equal(ex.explain(x), ox.load_explainer(out).explain(x))
