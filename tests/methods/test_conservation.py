"""Theory: LRP-0 on bias-free ReLU networks conserves relevance exactly (sum R = f_t(x), Bach et
al. 2015), through residual sums, concatenation, average and max pooling; the conserving rules
(z+, alpha-beta with alpha - beta = 1, gamma, w^2, flat) do too; epsilon reports a delta that
shrinks with epsilon; explanations do not depend on load-time rewrites where they should not."""

from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")
from torch import nn  # noqa: E402

import onnxplain as ox  # noqa: E402
from tests.helpers.torch_models import export  # noqa: E402


class BiasFreeResidual(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.c1 = nn.Conv2d(3, 6, 3, padding=1, bias=False)
        self.c2 = nn.Conv2d(6, 6, 3, padding=1, bias=False)
        self.b1 = nn.Conv2d(6, 4, 1, bias=False)
        self.b2 = nn.Conv2d(6, 4, 3, padding=1, bias=False)
        self.relu = nn.ReLU()
        self.pool = nn.AvgPool2d(2)
        self.mpool = nn.MaxPool2d(2)
        self.fc1 = nn.Linear(8 * 2 * 2, 12, bias=False)
        self.fc2 = nn.Linear(12, 5, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.relu(self.c1(x))
        h = self.relu(self.c2(h) + h)  # residual sum, one ReLU module reused
        h = self.pool(h)
        h = torch.cat([self.relu(self.b1(h)), self.relu(self.b2(h))], dim=1)  # inception-style branches
        h = self.mpool(h)
        return self.fc2(self.relu(self.fc1(torch.flatten(h, 1))))


class BiasFreeMLP(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.net = nn.Sequential(nn.Linear(10, 16, bias=False), nn.ReLU(), nn.Linear(16, 16, bias=False), nn.ReLU(),
                                 nn.Linear(16, 4, bias=False))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


@pytest.fixture(scope="module")
def models() -> dict[str, tuple[ox.Model, tuple[int, ...]]]:
    torch.manual_seed(0)
    out = {}
    for name, cls, shape in [("residual", BiasFreeResidual, (3, 8, 8)), ("mlp", BiasFreeMLP, (10,))]:
        m = cls().eval()
        out[name] = (ox.load(export(m, torch.randn(2, *shape), dynamo=False)), shape)
    return out


CONSERVING = ["lrp.z", "lrp.z_plus", "lrp.alpha_1_beta_0", "lrp.alpha_2_beta_1", "lrp.gamma", "lrp.w_square",
              "lrp.flat", "lrp.epsilon_plus", "lrp.epsilon_alpha2_beta1_flat", "deep_taylor"]


# w^2 and flat ignore the activations, so inside a network they send relevance to units that a
# later residual sum or pooling sees as zero: conservation is promised for them only where no such
# op follows (the MLP, and the first layer of the composites). alpha-beta conserves only where a
# unit has both positive and negative contributions (Bach et al. 2015); in the small residual net
# some units have no negative ones and keep alpha * R (Zennit gives the same sums, see
# tests/rules), so it is checked on the MLP, with the stabilizer's leak (1e-6 / |z|) allowed for.
NOT_PROMISED = {"lrp.w_square", "lrp.flat", "lrp.alpha_2_beta_1", "lrp.epsilon_alpha2_beta1_flat"}
CASES = [(n, m) for n in ("residual", "mlp") for m in CONSERVING if not (n == "residual" and m in NOT_PROMISED)]


@pytest.mark.parametrize(("name", "method"), CASES)
def test_relevance_is_conserved(models: dict, name: str, method: str) -> None:
    model, shape = models[name]
    x = np.random.default_rng(1).standard_normal((4, *shape)).astype(np.float32)
    params = {"epsilon": 0.0} if method == "lrp.epsilon_plus" else {}
    if method in ("lrp.z", "deep_taylor", "lrp.w_square", "lrp.flat"):
        params = {}
    rel, delta = ox.explainer(model, method, **params).explain(x, return_delta=True)
    fx = model.predict(x).max(axis=1)
    assert rel.shape == x.shape
    # Every output's relevance arrives at the input: only the stabilizers (1e-6) may leak.
    tol = 1e-3 if "alpha2" in method or "alpha_2" in method else 1e-4
    np.testing.assert_allclose(rel.reshape(len(x), -1).sum(axis=1), fx, rtol=tol, atol=tol * np.abs(fx).max())
    assert np.all(np.abs(delta) <= tol * np.abs(fx).max() + 1e-5)


def test_lrp_z_equals_input_times_gradient_on_bias_free_relu_nets(models: dict) -> None:
    """On bias-free ReLU nets without max pooling LRP-0 is input x gradient (Ancona et al. 2018)."""
    model, shape = models["mlp"]
    x = np.random.default_rng(2).standard_normal((3, *shape)).astype(np.float32)
    lrp = ox.explainer(model, "lrp.z").explain(x, target=2)
    ixg = ox.explainer(model, "input_t_gradient").explain(x, target=2)
    fx = model.predict(x)[:, 2]
    # LRP starts from f_t(x), so R/z at the output is 1: LRP-0 is then exactly x * gradient.
    np.testing.assert_allclose(lrp, ixg, rtol=1e-4, atol=1e-5 * np.abs(lrp).max())
    np.testing.assert_allclose(ixg.sum(axis=1), fx, rtol=1e-4)


def test_epsilon_delta_shrinks_with_epsilon(models: dict) -> None:
    model, shape = models["residual"]
    x = np.random.default_rng(3).standard_normal((4, *shape)).astype(np.float32)
    deltas = [np.abs(ox.explainer(model, "lrp.epsilon", epsilon=e).explain(x, return_delta=True)[1]).max()
              for e in (1.0, 1e-2, 1e-4)]
    assert deltas[0] > deltas[1] > deltas[2]
    assert deltas[0] > 1e-3  # a large epsilon absorbs relevance, and the delta says so


def test_return_delta_refused_where_nothing_is_promised(models: dict) -> None:
    model, shape = models["mlp"]
    x = np.zeros((1, *shape), np.float32)
    with pytest.raises(ValueError, match="promises no sum"):
        ox.explainer(model, "gradient").explain(x, return_delta=True)


def test_gradient_does_not_depend_on_batchnorm_folding() -> None:
    from tests.helpers.torch_models import build

    model, shape = build("cnn_bn")
    data = export(model, torch.randn(2, *shape), dynamo=False, keep_batchnorm=True)
    folded, kept = ox.load(data), ox.load(data, fold_batch_norm=False)
    assert "BatchNormalization" in kept.op_counts and "BatchNormalization" not in folded.op_counts
    x = np.random.default_rng(4).standard_normal((2, *shape)).astype(np.float32)
    for method in ("gradient", "guided_backprop"):
        a = ox.explainer(folded, method).explain(x, target=3)
        b = ox.explainer(kept, method).explain(x, target=3)
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-5 * np.abs(b).max())


@pytest.mark.parametrize("arch", ["cnn_bn", "resnet", "vgg_avg"])
@pytest.mark.parametrize("method", ["lrp.alpha_2_beta_1", "lrp.gamma", "lrp.epsilon_gamma_box"])
def test_split_rules_forward_equals_the_plain_forward(arch: str, method: str) -> None:
    """alpha-beta (beta != 0) and gamma compute each layer after a rectifier as W+x + W-x in the
    forward pass instead of Wx (rules::Rule::forward). The f_t(x) they start from (recovered from
    the delta) must still be the model's own output, and the delta must report it."""
    from tests.helpers.torch_models import build

    model, shape = build(arch)
    m = ox.load(export(model, torch.randn(2, *shape), dynamo=False))
    x = np.random.default_rng(5).standard_normal((3, *shape)).astype(np.float32)
    params = {"low": -3.0, "high": 3.0} if method == "lrp.epsilon_gamma_box" else {}
    rel, delta = ox.explainer(m, method, **params).explain(x, target=1, return_delta=True)
    fx_used = rel.reshape(len(x), -1).sum(axis=1, dtype=np.float64) - delta
    fx = m.predict(x)[:, 1]
    np.testing.assert_allclose(fx_used, fx, rtol=1e-5, atol=1e-5 * np.abs(fx).max())


@pytest.mark.parametrize("arch", ["cnn_bn", "resnet", "vgg_avg", "inception"])
@pytest.mark.parametrize("method", ["lrp.z_plus", "lrp.alpha_2_beta_1", "lrp.gamma", "lrp.epsilon_plus_flat"])
def test_one_image_equals_its_row_in_a_batch(arch: str, method: str) -> None:
    """With one image, z+ runs a convolution's two products as one convolution over stacked
    weights and takes its output as a view of the first half; with more images it runs them
    separately (alpha-beta and gamma stack at any batch size but read the halves per sample).
    The batch path is compared with Zennit (test_lrp_composites); both must give the same
    relevance for the same image."""
    from tests.helpers.torch_models import build

    model, shape = build(arch)
    m = ox.load(export(model, torch.randn(2, *shape), dynamo=False))
    x = np.random.default_rng(6).standard_normal((2, *shape)).astype(np.float32)
    ex = ox.explainer(m, method)
    both = ex.explain(x, target=2)
    for i in range(2):
        one = ex.explain(x[i:i + 1], target=2)
        # alpha2-beta1 subtracts two sums of similar size, and the two paths round differently
        # (float32): up to ~2e-5 of the scale seen; swapped halves differ by O(1).
        np.testing.assert_allclose(one[0], both[i], rtol=1e-4, atol=5e-5 * np.abs(both[i]).max())


@pytest.mark.parametrize("arch", ["cnn_bn", "resnet"])
@pytest.mark.parametrize("method", ["lrp.z_plus", "lrp.alpha_2_beta_1", "lrp.gamma", "lrp.epsilon_plus_flat",
                                    "lrp.flat", "gradient"])
def test_empty_batch(arch: str, method: str) -> None:
    """No images in, no relevance out (the stacked and per-position paths index per sample)."""
    from tests.helpers.torch_models import build

    model, shape = build(arch)
    m = ox.load(export(model, torch.randn(2, *shape), dynamo=False))
    rel = ox.explainer(m, method).explain(np.zeros((0, *shape), np.float32), target=1)
    assert rel.shape == (0, *shape)


def test_lrp_z_survives_units_whose_output_is_exactly_zero() -> None:
    """A filter of zeros (as bias-free depthwise filters over a dead patch give) has z = 0: LRP-0
    divides by z + stabilizer sign(z) (Zennit's stabilize), not by 0, and still conserves."""
    torch.manual_seed(5)
    net = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1, bias=False), nn.ReLU(), nn.Flatten(),
                        nn.Linear(4 * 6 * 6, 3, bias=False)).eval()
    with torch.no_grad():
        net[0].weight[2].zero_()
    model = ox.load(export(net, torch.zeros(2, 3, 6, 6), dynamo=False), strip_softmax=False)
    x = np.random.default_rng(0).standard_normal((2, 3, 6, 6)).astype(np.float32)
    for method in ("lrp.z", "lrp"):
        params = {"rules": {"linear": "z"}} if method == "lrp" else {}
        rel = ox.explainer(model, method, **params).explain(x, target=1)
        assert np.isfinite(rel).all(), method
        f = model.predict(x)[:, 1]
        np.testing.assert_allclose(rel.reshape(2, -1).sum(1), f, rtol=1e-4, atol=1e-5 * np.abs(f).max())
