"""The signal estimators' quality ρ (Kindermans et al. 2018, eq. 7).

For a linear neuron y = wᵀx and a signal estimator S, the distractor estimate is d = x − S(x);
a good estimator leaves no trace of y in it:

    ρ(S) = 1 − max_v corr(wᵀx, vᵀ(x − S(x)))

The maximum over v is the multiple correlation of y with d, found by least squares of y on d.
Everything it needs is a second moment of held-out rows, so it is computed from statistics (the
pattern statistics plus Σ x xᵀ per layer, collected by the C++ core in one forward pass) rather
than from the rows themselves: with u = y·m and v = y·(1 − m) (m: the op's output > 0),

    S_a+-:  d = x − a₊u − a₋v,   cov(d) = Σxx + U B Uᵀ,   cov(d, y) = U γ,   U = [a₊, a₋, c_xu, c_xv]
    S_a, S_w:  d = x − a y,      U = [a, c_xy]

and R² = γᵀ(K − K B (I + K B)⁻¹ K)γ / var(y) with K = Uᵀ(Σxx + λI)⁻¹U (Woodbury), one
Cholesky factorisation of Σxx per layer (group) for all its neurons. λ is 1e-9 of Σxx's mean
diagonal: d is singular along w by construction (wᵀd = 0 when wᵀa = 1), and λ only keeps the
solve defined there, where cov(d, y) has no component.

The identity estimator S_x leaves d = 0: no v correlates with it and eq. 7 gives its maximum,
1, for the trivial reason that nothing is left to test. It is reported as NaN rather than as the
best estimator.
"""

from __future__ import annotations

import warnings
from typing import Any

import numpy as np

from . import explain as _explain
from .explain import Explainer
from .model import Model, load


def _whiten(sxx: np.ndarray, lam: float, rhs: np.ndarray) -> np.ndarray:
    """L⁻¹ rhs for a square root L Lᵀ of Σxx + λI: by Cholesky, or where rounding of the
    float32 sums left Σxx slightly indefinite (constant inputs, zero padding), by its
    eigendecomposition with the eigenvalues clipped at λ."""
    D = sxx.shape[0]
    try:
        chol = np.linalg.cholesky(sxx + lam * np.eye(D))
        return np.linalg.solve(chol, rhs)
    except np.linalg.LinAlgError:
        vals, vecs = np.linalg.eigh(sxx)
        floor = max(lam, 1e-9 * float(np.max(np.abs(vals))), 1e-30)
        return (vecs.T @ rhs) / np.sqrt(np.maximum(vals, 0.0) + floor)[:, None]


def _rho_layer(stats: dict[str, Any], a_pos: np.ndarray, a_neg: np.ndarray | None, estimator: str) -> np.ndarray:
    """ρ per neuron of one layer from held-out statistics (with ``sum_xx``) and the patterns."""
    n = float(stats["rows"])
    axis, groups = int(stats["weight_axis"]), int(stats["groups"])
    M = a_pos.shape[axis]
    D = a_pos.size // M
    Mg = M // groups
    ap = np.moveaxis(a_pos.astype(np.float64), axis, 0).reshape(M, D)
    an = None if a_neg is None else np.moveaxis(a_neg.astype(np.float64), axis, 0).reshape(M, D)
    rho = np.full(M, np.nan)
    ey = stats["sum_y"] / n
    var_y = stats["sum_yy"] / n - ey**2
    for g in range(groups):
        js = np.arange(g * Mg, (g + 1) * Mg)
        mu = stats["sum_x"][g] / n
        sxx = stats["sum_xx"][g] / n - np.outer(mu, mu)
        sxx = (sxx + sxx.T) / 2
        lam = 1e-9 * max(float(np.mean(np.diag(sxx))), 1e-30)
        c_xy = stats["sum_xy"][js] / n - np.outer(ey[js], mu)  # [Mg, D]
        if estimator == "relu":
            eu = stats["sum_y_pos"][js] / n
            ev = ey[js] - eu
            c_xu = stats["sum_xy_pos"][js] / n - np.outer(eu, mu)
            c_xv = c_xy - c_xu
            syyp = stats["sum_yy_pos"][js] / n
            syyn = stats["sum_yy"][js] / n - syyp
            var_u, var_v, cov_uv = syyp - eu**2, syyn - ev**2, -eu * ev
            cov_uy, cov_vy = syyp - eu * ey[js], syyn - ev * ey[js]
            if an is None:
                raise ValueError("signal_quality: the relu estimator's patterns have no a_neg component")
            U = np.stack([ap[js], an[js], c_xu, c_xv], axis=2)  # [Mg, D, 4]
            B = np.zeros((len(js), 4, 4))
            B[:, 0, 0], B[:, 1, 1] = var_u, var_v
            B[:, 0, 1] = B[:, 1, 0] = cov_uv
            B[:, 0, 2] = B[:, 2, 0] = -1
            B[:, 1, 3] = B[:, 3, 1] = -1
            gamma = np.stack([-cov_uy, -cov_vy, np.ones_like(eu), np.ones_like(eu)], axis=1)
        else:
            U = np.stack([ap[js], c_xy], axis=2)  # [Mg, D, 2]
            B = np.zeros((len(js), 2, 2))
            B[:, 0, 0] = var_y[js]
            B[:, 0, 1] = B[:, 1, 0] = -1
            gamma = np.stack([-var_y[js], np.ones(len(js))], axis=1)
        k = U.shape[2]
        rhs = U.transpose(1, 0, 2).reshape(D, -1)  # [D, Mg*k]
        z = _whiten(sxx, lam, rhs)  # L⁻¹U with L Lᵀ = Σxx + λI
        zz = z.reshape(D, len(js), k).transpose(1, 0, 2)  # [Mg, D, k]
        K = np.einsum("mdi,mdj->mij", zz, zz)
        KB = K @ B
        inner = np.linalg.solve(np.eye(k)[None] + KB, K)
        Kg = np.einsum("mij,mj->mi", K, gamma)
        q = np.einsum("mi,mi->m", gamma, Kg) - np.einsum("mi,mij,mj->m", gamma, KB @ inner, gamma)
        with np.errstate(invalid="ignore", divide="ignore"):
            r2 = np.clip(q / var_y[js], 0.0, 1.0)
            alive = var_y[js] > 1e-12 * max(float(np.max(var_y)), 1e-30)
        rho[js] = np.where(alive, 1.0 - np.sqrt(r2), np.nan)
    return rho


def signal_quality(model: Model | str | bytes, data: Any, estimator: str = "relu", *,
                   explainer: Explainer | None = None, holdout: float = 0.5, batch_size: int = 64,
                   max_inputs: int = 4608, per_neuron: bool = False,
                   progress: Any = None) -> dict[str, Any]:
    """ρ(S) per linear op (Kindermans et al. 2018, eq. 7): how much of the output is left in the
    distractor estimate x − S(x); 1 is perfect, 0 is no better than the raw input.

    Parameters
    ----------
    model : Model, path or bytes
    data : array_like
        Samples. Without ``explainer`` the estimator is fitted on the first ``1 − holdout`` of
        them and ρ measured on the rest (held-out data, as in the paper).
    estimator : str
        ``relu`` (S_a+-), ``linear`` (S_a), ``filter`` (S_w) or ``identity`` (S_x: NaN, see the
        module docstring).
    explainer : Explainer, optional
        A fitted ``pattern.*`` explainer whose patterns are measured, on all of ``data``.
    holdout : float
        The share of ``data`` ρ is measured on when fitting here.
    max_inputs : int
        Layers whose neurons read more inputs than this (D = kernel size × input channels, or the
        width of a dense layer) get NaN: ρ needs a D × D covariance per layer.
    per_neuron : bool
        Return, per op, the array of ρ per neuron instead of its mean over the neurons whose
        output varies.
    """
    if not isinstance(model, Model):
        model = load(model)
    x = np.asarray(data, dtype=np.float32) if not isinstance(data, dict) else data
    if explainer is not None:
        if explainer.info.family != "pattern":
            raise ValueError("explainer must be a pattern.net or pattern.attribution explainer")
        ex = explainer
        estimator = str(ex.params.get("estimator", "relu"))
        test = x
    else:
        if not 0.0 < holdout < 1.0:
            raise ValueError(f"holdout must be in (0, 1), got {holdout}")
        n = int(np.shape(x)[0])
        cut = int(round(n * (1.0 - holdout)))
        if cut < 1 or cut >= n:
            raise ValueError(f"signal_quality needs samples both to fit and to measure on; got {n} with "
                             f"holdout={holdout}")
        method = "pattern.attribution" if estimator == "identity" else "pattern.net"
        ex = _explain.explainer(model, method, estimator=estimator)
        ex.fit(x[:cut], batch_size=batch_size, progress=progress)
        test = x[cut:]
    if estimator == "identity":
        return {node: (np.nan if not per_neuron else np.array([np.nan])) for node in ex.patterns}
    measure = _explain.explainer(model, "pattern.net", estimator="linear")
    for i in range(0, int(np.shape(test)[0]), batch_size):
        batch = model._prepare(test[i:i + batch_size])
        measure._ex.partial_fit(batch, model.threads, int(max_inputs))
    held = measure.statistics
    if held is None:
        raise ValueError("signal_quality: no held-out samples to measure on")
    out: dict[str, Any] = {}
    short: list[str] = []
    for node, pat in ex.patterns.items():
        st = held.layer(node)
        if "sum_xx" not in st:
            out[node] = np.nan
            continue
        if st["rows"] <= st["sum_xx"].shape[-1] + 1:
            # As many inputs as rows: least squares fits y from any residual exactly.
            short.append(f"{node} ({int(st['rows'])} rows, {st['sum_xx'].shape[-1]} inputs)")
            out[node] = np.nan
            continue
        r = _rho_layer(st, pat["a_pos"], pat["a_neg"], estimator)
        out[node] = r if per_neuron else (float(np.nanmean(r)) if np.isfinite(r).any() else np.nan)
    if short:
        warnings.warn("signal_quality: too few held-out rows to measure rho (it needs more rows than inputs per "
                      "neuron) for " + ", ".join(short) + "; they get NaN", stacklevel=2)
    return out
