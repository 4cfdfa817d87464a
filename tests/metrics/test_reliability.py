"""ox.metrics.reliability (Tomsett et al. 2020) against direct computations: Krippendorff's alpha of
hand-written rankings (the krippendorff package, and an independent coincidence-matrix
implementation checked on Krippendorff's own worked example) and scipy's Spearman correlations."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

import onnxplain as ox

krippendorff = pytest.importorskip("krippendorff")
stats = pytest.importorskip("scipy.stats")


def ordinal_alpha(data: np.ndarray) -> float:
    """Krippendorff's alpha, ordinal metric, from the coincidence matrix (Krippendorff 2011,
    "Computing Krippendorff's alpha-reliability"); data: raters x units, NaN = missing."""
    values = np.unique(data[np.isfinite(data)])
    index = {v: i for i, v in enumerate(values)}
    o = np.zeros((len(values), len(values)))
    for unit in data.T:
        vals = unit[np.isfinite(unit)]
        if len(vals) < 2:
            continue
        for a, b in itertools.permutations(range(len(vals)), 2):
            o[index[vals[a]], index[vals[b]]] += 1.0 / (len(vals) - 1)
    n_c = o.sum(axis=1)
    n = n_c.sum()
    delta = np.zeros_like(o)
    for c in range(len(values)):
        for k in range(len(values)):
            lo, hi = min(c, k), max(c, k)
            delta[c, k] = (n_c[lo:hi + 1].sum() - (n_c[c] + n_c[k]) / 2) ** 2
    d_o = (o * delta).sum()
    d_e = (np.outer(n_c, n_c) * delta).sum() / (n - 1)
    return float(1 - d_o / d_e)


def test_independent_alpha_reproduces_krippendorffs_example() -> None:
    nan = np.nan
    data = np.array([
        [1, 2, 3, 3, 2, 1, 4, 1, 2, nan, nan, nan],
        [1, 2, 3, 3, 2, 2, 4, 1, 2, 5, nan, 3],
        [nan, 3, 3, 3, 2, 3, 4, 2, 2, 5, 1, nan],
        [1, 2, 3, 3, 2, 4, 4, 1, 2, 5, 1, nan],
    ])
    assert ordinal_alpha(data) == pytest.approx(0.815, abs=5e-4)
    assert krippendorff.alpha(reliability_data=data, level_of_measurement="ordinal") == pytest.approx(
        ordinal_alpha(data), abs=1e-9)


def scores_for(ranks: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """(methods, samples) scores whose per-sample ranking (1 = highest) is `ranks` (samples, methods)."""
    out = np.empty(ranks.T.shape)
    for j, r in enumerate(ranks):
        levels = np.sort(rng.uniform(-3, 3, size=len(r)))[::-1]  # levels[0] is the highest score
        out[:, j] = levels[r - 1]
    return out


def test_inter_rater_alpha_on_hand_ranked_data() -> None:
    # 6 samples ("raters") ranking 4 methods.
    ranks = np.array([[1, 2, 3, 4], [1, 3, 2, 4], [2, 1, 3, 4], [1, 2, 4, 3], [1, 2, 3, 4], [3, 1, 2, 4]])
    rng = np.random.default_rng(0)
    faith = scores_for(ranks, rng)
    other = scores_for(ranks[::-1].copy(), rng)
    res = ox.metrics.reliability({"faith": faith, "other": other})
    want = krippendorff.alpha(reliability_data=ranks.astype(float), level_of_measurement="ordinal")
    assert res.inter_rater["faith"] == pytest.approx(want, abs=1e-9)
    assert res.inter_rater["faith"] == pytest.approx(ordinal_alpha(ranks.astype(float)), abs=1e-9)
    assert res.inter_rater["other"] == pytest.approx(want, abs=1e-9)  # same rankings, other samples
    assert res.metrics == ["faith", "other"] and res.methods == ["0", "1", "2", "3"]


def test_ties_and_missing_scores() -> None:
    # 4 samples x 3 methods: sample 1 ties methods 0 and 1 (average rank 1.5); sample 2 lacks a score
    # for method 2 (a missing rating; the others are ranked among themselves); sample 3 disagrees.
    by_sample = np.array([[3.0, 2.0, 1.0], [2.0, 2.0, 1.0], [1.0, 2.0, np.nan], [0.0, 4.0, 5.0]])
    faith = by_sample.T  # (methods, samples)
    hand = np.array([[1, 2, 3], [1.5, 1.5, 3], [2, 1, np.nan], [3, 2, 1]])
    res = ox.metrics.reliability({"faith": faith})
    assert res.inter_rater["faith"] == pytest.approx(
        krippendorff.alpha(reliability_data=hand, level_of_measurement="ordinal"), abs=1e-9)
    assert res.inter_rater["faith"] == pytest.approx(ordinal_alpha(hand), abs=1e-9)


def test_identical_raters_give_alpha_one_and_reversed_ones_do_not() -> None:
    rng = np.random.default_rng(1)
    base = np.array([0.9, 0.1, 0.5, 0.3])
    same = base[:, None] * rng.uniform(0.5, 2.0, size=(1, 20))  # every sample: the same order
    assert ox.metrics.reliability({"m": same}).inter_rater["m"] == pytest.approx(1.0)
    flipped = same.copy()
    flipped[:, ::2] *= -1  # half the samples rank the methods the other way round
    assert ox.metrics.reliability({"m": flipped}).inter_rater["m"] < 0
    noise = rng.standard_normal((4, 200))
    assert abs(ox.metrics.reliability({"m": noise}).inter_rater["m"]) < 0.1


def test_inter_method_and_internal_consistency_against_scipy() -> None:
    rng = np.random.default_rng(2)
    methods, n = ["grad", "ig", "lrp"], 15
    aopc = {meth: rng.standard_normal(n) for meth in methods}
    faith = {meth: aopc[meth] * 0.5 + rng.standard_normal(n) for meth in methods}
    lerf = {meth: rng.standard_normal(n) for meth in methods}
    res = ox.metrics.reliability({"aopc": aopc, "faith": faith, "lerf": lerf})
    assert res.methods == methods
    for name, table in (("aopc", aopc), ("faith", faith), ("lerf", lerf)):
        mat = res.inter_method_matrix[name]
        pairs = []
        for (a, ma), (b, mb) in itertools.combinations(enumerate(methods), 2):
            rho = stats.spearmanr(table[ma], table[mb]).statistic
            assert mat[a, b] == pytest.approx(rho, abs=1e-12) and mat[b, a] == pytest.approx(rho, abs=1e-12)
            pairs.append(rho)
        np.testing.assert_allclose(np.diag(mat), 1.0)
        assert res.inter_method[name] == pytest.approx(np.mean(pairs), abs=1e-12)
        ranks = np.stack([stats.rankdata([-table[m][j] for m in methods]) for j in range(n)])
        assert res.inter_rater[name] == pytest.approx(
            krippendorff.alpha(reliability_data=ranks, level_of_measurement="ordinal"), abs=1e-9)
    assert set(res.internal_consistency) == {("aopc", "faith"), ("aopc", "lerf"), ("faith", "lerf")}
    for (a, b), per in res.internal_consistency_per_method.items():
        tables = {"aopc": aopc, "faith": faith, "lerf": lerf}
        want = [stats.spearmanr(tables[a][m], tables[b][m]).statistic for m in methods]
        np.testing.assert_allclose(per, want, atol=1e-12)
        assert res.internal_consistency[(a, b)] == pytest.approx(np.mean(want), abs=1e-12)
    # The dict of dicts and the (methods, samples) arrays are the same table.
    arrays = {k: np.stack([v[m] for m in methods]) for k, v in (("aopc", aopc), ("faith", faith), ("lerf", lerf))}
    res2 = ox.metrics.reliability(arrays)
    assert res2.inter_rater == pytest.approx(res.inter_rater)
    assert res2.internal_consistency == pytest.approx(res.internal_consistency)


def test_on_real_metric_scores() -> None:
    """The intended use: scores from ox.metrics for a few methods, on a small random CNN."""
    pytest.importorskip("torch")
    from tests.metrics.common import case, inputs, load

    _, data = case("cnn", 1, 16)
    m = load(data)
    x = inputs((1, 16, 16), 6, seed=3)
    methods = ["gradient", "input_t_gradient", "lrp.epsilon"]
    expl = {meth: ox.explainer(m, meth).explain(x) for meth in methods}
    scores = {
        "morf": {k: ox.metrics.aopc(m, x, r, region=4).aopc for k, r in expl.items()},
        "lerf": {k: -ox.metrics.aopc(m, x, r, region=4, order="lerf").aopc for k, r in expl.items()},
        "faith": {k: ox.metrics.faithfulness_correlation(m, x, r, runs=20) for k, r in expl.items()},
    }
    res = ox.metrics.reliability(scores)
    assert set(res.inter_rater) == {"morf", "lerf", "faith"}
    assert all(-1 <= v <= 1 for v in res.inter_rater.values())
    assert all(-1 <= v <= 1 for v in res.internal_consistency.values())


def test_errors() -> None:
    rel = ox.metrics.reliability
    with pytest.raises(ValueError, match="non-empty dict"):
        rel({})
    with pytest.raises(ValueError, match="non-empty dict"):
        rel(np.zeros((2, 3, 4)))  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="n_methods, n_samples"):
        rel({"a": np.zeros(5)})
    with pytest.raises(ValueError, match="same methods on the same samples"):
        rel({"a": np.zeros((3, 5)), "b": np.zeros((3, 6))})
    with pytest.raises(ValueError, match="same methods"):
        rel({"a": {"x": np.zeros(4), "y": np.zeros(4)}, "b": {"x": np.zeros(4), "z": np.zeros(4)}})
    with pytest.raises(ValueError, match="1-D array"):
        rel({"a": {"x": np.zeros(4), "y": np.zeros(3)}})
    with pytest.raises(ValueError, match="at least 2 samples"):
        rel({"a": np.zeros((3, 1))})


def test_a_method_with_undefined_correlations_does_not_hide_the_others() -> None:
    rng = np.random.default_rng(3)
    a = rng.standard_normal((3, 12))
    a[2] = 1.0  # constant scores: no rank correlation with anything
    b = a + 0.1 * rng.standard_normal((3, 12))
    b[2] = 2.0
    res = ox.metrics.reliability({"m1": a, "m2": b})
    # Only the pair (method 0, method 1) has a correlation; the mean is that one.
    want = stats.spearmanr(a[0], a[1]).statistic
    assert res.inter_method["m1"] == pytest.approx(want)
    per = [stats.spearmanr(a[i], b[i]).statistic for i in (0, 1)]
    assert res.internal_consistency[("m1", "m2")] == pytest.approx(np.mean(per))
