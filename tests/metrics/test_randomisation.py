"""ox.metrics.model_randomisation and randomised_models: against Quantus's MPRT when its torch layers
get the same re-drawn weights (Captum Saliency against our "gradient"), the drawn weights against
PyTorch's reset_parameters bounds, the cascade's structure, the similarity measures against
scipy/scikit-image re-derivations, and Adebayo et al.'s finding on a CNN trained on sklearn's
digits."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
from onnx import helper

import onnxplain as ox
from tests.helpers.onnx_builders import make_model
from tests.metrics.common import case, export, inputs, load, quantus, torch, torch_forward

nn = torch.nn


def saliency(model: Any, inputs: Any, targets: Any, **_: Any) -> np.ndarray:
    captum_attr = pytest.importorskip("captum.attr")
    x = torch.as_tensor(np.asarray(inputs)).requires_grad_()
    t = torch.as_tensor(np.asarray(targets))
    return captum_attr.Saliency(model).attribute(x, target=t, abs=False).detach().numpy()


@pytest.mark.parametrize("absolute", [False, True])
def test_equals_quantus_mprt(absolute: bool, monkeypatch: pytest.MonkeyPatch) -> None:
    q = quantus()
    net, data = case("cnn", 3, 12)
    m = load(data)
    x = inputs((3, 12, 12), 4, seed=3)
    targets = np.argmax(torch_forward(net, x), axis=1)
    ours = ox.metrics.model_randomisation(m, "gradient", x, seed=4, absolute=absolute)
    drawn = [(name, dict(rm.layers())[name]) for name, rm in ox.metrics.randomised_models(m, seed=4)]
    assert [name for name, _ in ours] == [name for name, _ in drawn]
    # Quantus re-draws each module with reset_parameters() top-down (reverse definition order, the
    # execution order here): hand it our arrays in that order.
    queue = list(drawn)

    def reset(self: nn.Module) -> None:
        _, d = queue.pop(0)
        with torch.no_grad():
            self.weight.copy_(torch.from_numpy(d["weight"]))
            self.bias.copy_(torch.from_numpy(d["bias"]))

    monkeypatch.setattr(nn.Conv2d, "reset_parameters", reset)
    monkeypatch.setattr(nn.Linear, "reset_parameters", reset)
    metric = q.MPRT(layer_order="top_down", abs=absolute, normalise=False, disable_warnings=True)
    got = metric(net, x, targets, a_batch=None, explain_func=saliency, channel_first=True)
    monkeypatch.undo()
    assert not queue
    layers = [(k, np.asarray(v)) for k, v in got.items() if k != "original"]
    assert [k for k, _ in layers] == ["8", "6", "3", "0"]  # the torch modules of our ONNX nodes, in order
    np.testing.assert_allclose(got["original"], 1.0, atol=1e-6)
    for (_, s), (_, qs) in zip(ours, layers):
        np.testing.assert_allclose(s, qs, atol=2e-3)


def test_drawn_weights_follow_pytorch_reset_parameters() -> None:
    from scipy.stats import kstest

    net, data = case("cnn", 3, 12)
    m = load(data)
    original = dict(m.layers())
    modules = [mod for mod in net if isinstance(mod, (nn.Conv2d, nn.Linear))]
    cascade = list(ox.metrics.randomised_models(m, seed=0))
    assert [name for name, _ in cascade] == [name for name, _ in m.layers()][::-1]
    for (name, rm), mod in zip(cascade, modules[::-1]):
        new = dict(rm.layers())[name]
        fan_in, _ = nn.init._calculate_fan_in_and_fan_out(mod.weight)
        bound = 1.0 / np.sqrt(fan_in)
        for key in ("weight", "bias"):
            v = new[key].astype(np.float64)
            assert v.shape == original[name][key].shape
            assert np.all(np.abs(v) <= bound)
            assert np.abs(v).max() > 0.9 * bound
            if v.size >= 50:  # uniform on [-bound, bound]
                assert kstest(v.ravel(), "uniform", args=(-bound, 2 * bound)).pvalue > 1e-3


def test_dense_weights_stored_in_out_use_their_input_size() -> None:
    """MatMul weights are stored (in, out) and Gemm with transB=1 (out, in): fan_in is the input size
    either way (the product of the dims other than the output-neuron axis)."""
    rng = np.random.default_rng(0)
    w1, b1 = rng.standard_normal((6, 5)).astype(np.float32), rng.standard_normal(5).astype(np.float32)
    w2 = rng.standard_normal((5, 40)).astype(np.float32)
    w3 = rng.standard_normal((4, 40)).astype(np.float32)
    nodes = [helper.make_node("MatMul", ["x", "W1"], ["h"], name="mm1"),
             helper.make_node("Add", ["h", "b1"], ["h2"], name="add1"),
             helper.make_node("Relu", ["h2"], ["h3"], name="relu"),
             helper.make_node("MatMul", ["h3", "W2"], ["h4"], name="mm2"),
             helper.make_node("Gemm", ["h4", "W3"], ["y"], name="gemm", transB=1)]
    m = load(make_model(nodes, [("x", ["N", 6])], ["y"], {"W1": w1, "b1": b1, "W2": w2, "W3": w3}))
    cascade = dict((name, dict(rm.layers())[name]) for name, rm in ox.metrics.randomised_models(m, seed=1))
    for name, fan_in in (("mm1", 6), ("mm2", 5), ("gemm", 40)):
        w = cascade[name]["weight"]
        bound = 1 / np.sqrt(fan_in)
        assert np.abs(w).max() <= bound and np.abs(w).max() > 0.8 * bound
    assert "bias" in cascade["mm1"] and "bias" not in cascade["mm2"]
    assert np.abs(cascade["mm1"]["bias"]).max() <= 1 / np.sqrt(6)


def test_cascade_structure_and_seeds() -> None:
    _, data = case("cnn", 3, 12)
    m = load(data)
    names = [name for name, _ in m.layers()]
    original = dict(m.layers())
    cascade = list(ox.metrics.randomised_models(m, seed=3))
    for step, (name, rm) in enumerate(cascade):
        assert name == names[-1 - step]
        now = dict(rm.layers())
        for j, other in enumerate(names):
            changed = j >= len(names) - 1 - step
            same = np.array_equal(now[other]["weight"], original[other]["weight"])
            assert same != changed, (step, other)
    # The trained model is unchanged, and a layer's draw does not depend on which others are chosen.
    assert all(np.array_equal(w["weight"], original[n]["weight"]) for n, w in m.layers())
    full = dict((n, dict(rm.layers())[n]["weight"]) for n, rm in cascade)
    part = list(ox.metrics.randomised_models(m, seed=3, layers=[names[2], names[0]]))
    assert [n for n, _ in part] == [names[2], names[0]]
    last = dict(part[-1][1].layers())
    np.testing.assert_array_equal(last[names[0]]["weight"], full[names[0]])
    np.testing.assert_array_equal(last[names[2]]["weight"], full[names[2]])
    np.testing.assert_array_equal(last[names[1]]["weight"], original[names[1]]["weight"])
    other_seed = dict(next(iter(ox.metrics.randomised_models(m, seed=4)))[1].layers())
    assert not np.array_equal(other_seed[names[-1]]["weight"], full[names[-1]])


def test_similarities_against_scipy_and_skimage() -> None:
    from scipy.stats import pearsonr, spearmanr
    from skimage.metrics import structural_similarity

    _, data = case("cnn", 3, 12)
    m = load(data)
    x = inputs((3, 12, 12), 3, seed=9)
    targets = np.array([1, 2, 3])
    r0 = ox.explainer(m, "gradient").explain(x, target=targets).astype(np.float64)
    randomised = [ox.explainer(rm, "gradient").explain(x, target=targets).astype(np.float64)
                  for _, rm in ox.metrics.randomised_models(m, seed=0)]

    def grayscale(r: np.ndarray) -> np.ndarray:  # Adebayo et al.'s VisualizeImageGrayscale
        img = np.sum(np.abs(r), axis=0)
        vmax, vmin = np.percentile(img, 99), np.min(img)
        return np.clip((img - vmin) / (vmax - vmin), 0, 1)

    def diverging(r: np.ndarray) -> np.ndarray:  # and VisualizeImageDiverging
        img = np.sum(r, axis=0)
        span = np.abs(np.percentile(np.abs(img), 99))
        return np.clip(img / span, -1, 1)

    for similarity, absolute in [("spearman", False), ("spearman", True), ("pearson", False), ("pearson", True),
                                 ("ssim", True), ("ssim", False)]:
        got = ox.metrics.model_randomisation(m, "gradient", x, target=targets, similarity=similarity,
                                             absolute=absolute)
        for (_, s), r in zip(got, randomised):
            want = []
            for i in range(3):
                a, b = (np.abs(r0[i]), np.abs(r[i])) if absolute else (r0[i], r[i])
                if similarity == "spearman":
                    want.append(spearmanr(a.ravel(), b.ravel()).statistic)
                elif similarity == "pearson":
                    want.append(pearsonr(a.ravel(), b.ravel()).statistic)
                else:
                    f = grayscale if absolute else diverging
                    want.append(structural_similarity(f(r0[i]), f(r[i]), win_size=7,
                                                      data_range=1.0 if absolute else 2.0))
            np.testing.assert_allclose(s, want, atol=1e-6)


def test_method_params_pass_through() -> None:
    _, data = case("cnn", 3, 12)
    m = load(data)
    x = inputs((3, 12, 12), 2, seed=1)
    got = ox.metrics.model_randomisation(m, "lrp.epsilon", x, target=0, epsilon=0.1)
    first = next(iter(ox.metrics.randomised_models(m)))[1]
    from scipy.stats import spearmanr

    r0 = ox.explainer(m, "lrp.epsilon", epsilon=0.1).explain(x, target=0)
    r1 = ox.explainer(first, "lrp.epsilon", epsilon=0.1).explain(x, target=0)
    want = [spearmanr(a.ravel(), b.ravel()).statistic for a, b in zip(r0, r1)]
    np.testing.assert_allclose(got[0][1], want, atol=1e-6)


def test_a_method_parameter_named_like_an_argument_goes_through_params() -> None:
    # smoothgrad's own seed must reach smoothgrad, not re-seed the randomisation.
    _, data = case("cnn", 3, 12)
    m = load(data)
    x = inputs((3, 12, 12), 2, seed=1)
    kw = {"samples": 4}
    got = ox.metrics.model_randomisation(m, "smoothgrad", x, target=0, seed=0, params={"seed": 5}, **kw)
    first = next(iter(ox.metrics.randomised_models(m, seed=0)))[1]
    from scipy.stats import spearmanr

    r0 = ox.explainer(m, "smoothgrad", seed=5, **kw).explain(x, target=0)
    r1 = ox.explainer(first, "smoothgrad", seed=5, **kw).explain(x, target=0)
    want = [spearmanr(a.ravel(), b.ravel()).statistic for a, b in zip(r0, r1)]
    np.testing.assert_allclose(got[0][1], want, atol=1e-6)
    other = ox.explainer(m, "smoothgrad", seed=6, **kw).explain(x, target=0)
    assert not np.allclose(other, r0)  # the seed matters, so the check above can fail


def _digits_cnn() -> tuple[ox.Model, np.ndarray]:
    datasets = pytest.importorskip("sklearn.datasets")
    digits = datasets.load_digits()
    X = (digits.images / 16.0).astype(np.float32)[:, None]
    y = digits.target
    torch.manual_seed(0)
    net = nn.Sequential(nn.Conv2d(1, 16, 3, padding=1), nn.ReLU(), nn.Conv2d(16, 32, 3, padding=1), nn.ReLU(),
                        nn.MaxPool2d(2), nn.Flatten(), nn.Linear(32 * 16, 64), nn.ReLU(), nn.Linear(64, 10))
    opt = torch.optim.Adam(net.parameters(), lr=3e-3)
    xt, yt = torch.from_numpy(X[:1500]), torch.from_numpy(y[:1500])
    g = torch.Generator().manual_seed(0)
    for _ in range(5):
        perm = torch.randperm(1500, generator=g)
        for i in range(0, 1500, 64):
            b = perm[i:i + 64]
            opt.zero_grad()
            nn.functional.cross_entropy(net(xt[b]), yt[b]).backward()
            opt.step()
    net.eval()
    accuracy = float((torch_forward(net, X[1500:]).argmax(axis=1) == y[1500:]).mean())
    assert accuracy > 0.8, accuracy
    return load(export(net, torch.randn(2, 1, 8, 8), dynamo=False)), X[1500:1532]


def test_adebayo_gradient_and_ig_depend_on_the_weights_guided_backprop_does_not() -> None:
    """Adebayo et al. 2018, Fig. 2: under cascading randomisation, the (signed) maps of the gradient
    and of integrated gradients decorrelate from the trained model's at once, while Guided BackProp's
    stay similar (it is nearly independent of the higher layers). Measured here over 4 training
    seeds x 3 randomisation seeds: gradient / IG mean rho in [-0.17, 0.25], Guided BackProp 0.80-0.88
    for the top two layers and >= 0.5 for all."""
    m, x = _digits_cnn()
    sims = {meth: ox.metrics.model_randomisation(m, meth, x, seed=0)
            for meth in ("gradient", "integrated_gradients", "guided_backprop")}
    means = {meth: np.array([np.mean(s) for _, s in v]) for meth, v in sims.items()}
    assert len(means["gradient"]) == 4
    for meth in ("gradient", "integrated_gradients"):
        assert np.all(np.abs(means[meth]) < 0.4), (meth, means[meth])
    gbp = means["guided_backprop"]
    assert np.all(gbp[:2] > 0.7), gbp
    assert np.all(gbp > 0.4), gbp
    assert np.all(gbp > np.maximum(means["gradient"], means["integrated_gradients"]) + 0.3)


def test_errors() -> None:
    _, data = case("cnn", 3, 12)
    m = load(data)
    x = inputs((3, 12, 12), 2)
    mr = ox.metrics.model_randomisation
    with pytest.raises(ValueError, match="similarity"):
        mr(m, "gradient", x, similarity="kendall")
    with pytest.raises(ValueError, match="not a linear op"):
        mr(m, "gradient", x, layers=["nope"])
    with pytest.raises(ValueError, match="has no parameter"):
        mr(m, "gradient", x, epsilon=0.1)
    with pytest.raises(ValueError, match="onnxplain engine"):
        mr(object(), "gradient", x)
    with pytest.raises(ValueError, match="fit_data"):
        mr(m, "pattern.net", x)
    with pytest.raises(ValueError, match="out of range"):
        mr(m, "gradient", x, target=12)
    with pytest.raises(ValueError, match="not a linear op"):
        next(ox.metrics.randomised_models(m, layers=["/relu"]))


def test_pattern_methods_are_refitted_on_each_randomised_model() -> None:
    _, data = case("cnn", 3, 12)
    m = load(data)
    x = inputs((3, 12, 12), 2)
    train = inputs((3, 12, 12), 64, seed=5)
    got = ox.metrics.model_randomisation(m, "pattern.net", x, fit_data=train, layers=[m.layers()[-1][0]])
    assert len(got) == 1 and got[0][1].shape == (2,) and np.all(np.isfinite(got[0][1]))
