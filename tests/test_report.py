"""``ox.report`` and ``onnxplain report``: one self-contained, well-formed HTML file; metrics that fail
degrade visibly; and the progress reporters (tqdm, or the text bar without it)."""

from __future__ import annotations

import base64
import html
import io
import re
import struct
import subprocess
import sys
import types
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from onnx import helper

import onnxplain as ox
from onnxplain import _fit, demo
from onnxplain import report as _report_fn
from tests.helpers.onnx_builders import make_model

pytest.importorskip("matplotlib")
report_module = sys.modules["onnxplain.report"]

_VOID = {"area", "base", "br", "col", "embed", "hr", "img", "input", "link", "meta", "source", "track", "wbr"}


class _Page(HTMLParser):
    """Checks that every element is closed in order, and collects ids, image sources and links."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.stack: list[str] = []
        self.ids: list[str] = []
        self.imgs: list[str] = []
        self.urls: list[str] = []
        self.errors: list[str] = []
        self.tags: set[str] = set()

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.add(tag)
        a = dict(attrs)
        if "id" in a:
            self.ids.append(str(a["id"]))
        if tag == "img":
            self.imgs.append(str(a.get("src")))
        for key in ("src", "href", "srcset", "action", "data"):
            if a.get(key):
                self.urls.append(str(a[key]))
        if tag not in _VOID:
            self.stack.append(tag)

    def handle_startendtag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.handle_starttag(tag, attrs)
        if tag not in _VOID:
            self.stack.pop()

    def handle_endtag(self, tag: str) -> None:
        if tag in _VOID:
            self.errors.append(f"end tag for void element <{tag}>")
        elif not self.stack or self.stack[-1] != tag:
            self.errors.append(f"</{tag}> closes <{self.stack[-1] if self.stack else None}>")
        else:
            self.stack.pop()


def _parse(text: str) -> _Page:
    assert text.startswith("<!DOCTYPE html>")
    page = _Page()
    page.feed(text)
    page.close()
    assert not page.errors, page.errors[:5]
    assert page.stack == [], page.stack
    return page


def _check_png_uri(uri: str) -> tuple[int, int]:
    prefix = "data:image/png;base64,"
    assert uri.startswith(prefix), uri[:60]
    data = base64.b64decode(uri[len(prefix):], validate=True)
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and data[12:16] == b"IHDR"
    w, h = struct.unpack(">II", data[16:24])
    import matplotlib.image

    decoded = matplotlib.image.imread(io.BytesIO(data), format="png")  # Pillow decodes it
    assert decoded.shape[:2] == (h, w) and h > 0 and w > 0
    return h, w


def _self_contained(text: str, page: _Page) -> None:
    assert not re.search(r"https?://", text), re.search(r".{40}https?://.{40}", text)
    assert all(u.startswith(("data:image/png;base64,", "#")) for u in page.urls), \
        [u[:40] for u in page.urls if not u.startswith(("data:", "#"))]
    assert "script" not in page.tags and "link" not in page.tags and "iframe" not in page.tags
    assert "@import" not in text and "url(" not in text


@pytest.fixture(scope="module")
def digits() -> tuple[ox.Model, np.ndarray]:
    x, _ = demo.load_samples()
    return ox.load(str(demo.MODEL_PATH)), x[:6]


def _methods() -> list[Any]:
    ms: list[Any] = ["gradient", ("integrated_gradients", {"steps": 16}), "lrp.epsilon_plus_flat"]
    if "occlusion" in ox.methods():
        ms.append(("occlusion", {"window": 2, "stride": 2}))
    return ms


def _anchor(spec: Any) -> str:
    return "method-" + (spec if isinstance(spec, str) else spec[0])


def _metrics_available() -> bool:
    try:
        report_module._metrics_module()
    except ImportError:
        return False
    return True


def test_report_is_one_self_contained_well_formed_file(tmp_path: Path, digits: tuple[ox.Model, np.ndarray]) -> None:
    model, x = digits
    methods = _methods()
    out = ox.report(model, x, methods=methods, path=tmp_path / "r.html", show=4, progress=False,
                    metric_params={"faithfulness": {"runs": 10}})
    assert out == tmp_path / "r.html"
    text = out.read_text(encoding="utf-8")
    page = _parse(text)
    _self_contained(text, page)
    for anchor in ["summary", "inputs", "aopc", "randomisation", "metrics", "model"] + [_anchor(m) for m in methods]:
        assert anchor in page.ids, anchor
    assert len(page.ids) == len(set(page.ids))
    sizes = [_check_png_uri(src) for src in page.imgs]
    # Inputs and, per method, overlays and heatmaps of the 4 samples drawn, each 8x8 upscaled to 128 px.
    assert sizes.count((128, 128)) == 4 + 2 * 4 * len(methods)
    for spec in methods:
        name = spec if isinstance(spec, str) else spec[0]
        section = text.split(f'id="{_anchor(spec)}"')[1].split("</section>")[0]
        assert name in section and " s for 6 samples" in section
        assert html.escape(ox.methods()[name].reference) in section
    assert "steps</b> = 16" in text  # a parameter given, shown with its default
    assert model.summary().splitlines()[0] in text
    if _metrics_available():  # the metric sections hold their figures and numbers, not errors
        for anchor in ("aopc", "randomisation", "metrics"):
            section = text.split(f'id="{anchor}"')[1].split("</section>")[0]
            assert "could not be computed: <code>" not in section.split("Reliability")[0], section[:2000]
        assert text.count('class="figure"') == 2 and "±" in text


def _colour_cnn() -> bytes:
    """Conv(3 -> 4, 3x3, pad 1) -> Relu -> MaxPool 2 -> Flatten -> Gemm(256 -> 5), random weights."""
    rng = np.random.default_rng(7)
    w = {"W": rng.standard_normal((4, 3, 3, 3)).astype(np.float32), "B": np.zeros(4, np.float32),
         "G": (rng.standard_normal((5, 256)) / 16).astype(np.float32), "C": np.zeros(5, np.float32)}
    nodes = [helper.make_node("Conv", ["x", "W", "B"], ["c"], name="conv", pads=[1, 1, 1, 1]),
             helper.make_node("Relu", ["c"], ["r"], name="relu"),
             helper.make_node("MaxPool", ["r"], ["p"], name="pool", kernel_shape=[2, 2], strides=[2, 2]),
             helper.make_node("Flatten", ["p"], ["f"], name="flatten"),
             helper.make_node("Gemm", ["f", "G", "C"], ["y"], name="fc", transB=1)]
    return make_model(nodes, [("x", ["N", 3, 16, 16])], ["y"], w)


def test_colour_images_are_drawn_in_colour() -> None:
    model = ox.load(_colour_cnn())
    x = np.random.default_rng(0).uniform(0, 1, (3, 3, 16, 16)).astype(np.float32)
    text = ox.report(model, x, methods=["gradient", "lrp.epsilon"], metrics=["aopc"], path=None, progress=False)
    page = _parse(text)
    _self_contained(text, page)
    inputs = text.split('id="inputs"')[1].split("</section>")[0]
    uri = re.findall(r'src="(data:image/png;base64,[^"]+)"', inputs)[0]
    assert _check_png_uri(uri) == (128, 128)
    import matplotlib.image

    rgb = matplotlib.image.imread(io.BytesIO(base64.b64decode(uri.split(",", 1)[1])), format="png")
    assert np.abs(rgb[..., 0] - rgb[..., 1]).max() > 0.1  # not grey
    assert "3 × 16 × 16 (colour)" in text and {"method-gradient", "method-lrp.epsilon", "aopc"} <= set(page.ids)


def test_pattern_methods_are_fitted_and_the_report_says_on_what(digits: tuple[ox.Model, np.ndarray]) -> None:
    model, x = digits
    text = ox.report(model, x, methods=["pattern.attribution", "gradient"], path=None, metrics=(), progress=False)
    assert isinstance(text, str)
    assert "fitted on the 6 explained samples themselves (no fit_data was given" in text
    train, _ = demo.load_samples()
    text = ox.report(model, x, methods=["pattern.attribution"], path=None, metrics=(), fit_data=train[6:],
                     progress=False)
    assert f"fitted on fit_data ({len(train) - 6} samples)" in text
    _parse(text)


def _stub_metrics(fail: str | None = None) -> types.SimpleNamespace:
    """Metrics with the DESIGN.md signatures returning fixed numbers; ``fail`` names one that raises."""

    def boom(*_: Any, **__: Any) -> Any:
        raise RuntimeError("stub metric exploded")

    def aopc(model: Any, x: np.ndarray, relevance: np.ndarray, target: Any = None, region: int = 9,
             steps: int | None = None, order: str = "morf", **_: Any) -> Any:
        n = len(x)
        curves = np.tile(np.linspace(1.0, 0.0 if order == "morf" else 0.5, (steps or 4) + 1), (n, 1))
        return types.SimpleNamespace(curves=curves, aopc=(curves[:, :1] - curves).mean(axis=1))

    def faithfulness_correlation(model: Any, x: np.ndarray, relevance: np.ndarray, **_: Any) -> np.ndarray:
        return np.linspace(0.1, 0.9, len(x))

    def model_randomisation(model: Any, method: str, x: np.ndarray, **_: Any) -> list[tuple[str, np.ndarray]]:
        return [("/top/Gemm", np.full(len(x), 0.5)), ("/bottom/Conv", np.full(len(x), 0.1))]

    def reliability(scores: dict[str, Any]) -> dict[str, float]:
        return {f"alpha {k}": 0.25 for k in scores}

    ns = types.SimpleNamespace(aopc=aopc, faithfulness_correlation=faithfulness_correlation,
                               model_randomisation=model_randomisation, reliability=reliability)
    if fail:
        setattr(ns, fail, boom)
    return ns


def test_a_failing_metric_is_reported_in_place(monkeypatch: pytest.MonkeyPatch,
                                               digits: tuple[ox.Model, np.ndarray]) -> None:
    model, x = digits
    monkeypatch.setattr(report_module, "_metrics_module", lambda: _stub_metrics(fail="aopc"))
    text = ox.report(model, x, methods=["gradient", "lrp.epsilon"], path=None, progress=False)
    page = _parse(text)
    aopc = text.split('id="aopc"')[1].split("</section>")[0]
    assert "RuntimeError: stub metric exploded" in aopc and "gradient" in aopc and 'class="figure"' not in aopc
    rand = text.split('id="randomisation"')[1].split("</section>")[0]
    assert 'class="figure"' in rand and "exploded" not in rand  # the other metrics are still there
    table = text.split('id="metrics"')[1].split("</section>")[0]
    assert "0.500 ± 0.273" in table and "0.100 ± 0.000" in table and "n/a" in table and "alpha faithfulness" in table
    assert {"method-gradient", "method-lrp.epsilon"} <= set(page.ids)


def test_without_the_metrics_module_the_report_says_so(monkeypatch: pytest.MonkeyPatch,
                                                       digits: tuple[ox.Model, np.ndarray]) -> None:
    model, x = digits

    def missing() -> Any:
        raise ImportError("No module named 'onnxplain.metrics'")

    monkeypatch.setattr(report_module, "_metrics_module", missing)
    text = ox.report(model, x, methods=["gradient", "lrp.z"], path=None, progress=False)
    _parse(text)
    assert text.count("onnxplain.metrics is not available in this installation") >= 3
    assert text.count('src="data:image/png;base64,') > 0


def test_a_method_that_fails_gets_a_section_saying_why(monkeypatch: pytest.MonkeyPatch,
                                                       digits: tuple[ox.Model, np.ndarray]) -> None:
    model, x = digits
    monkeypatch.setattr(report_module, "_metrics_module", lambda: _stub_metrics())
    ex = ox.explainer(model, "lrp.epsilon")

    def broken(*_: Any, **__: Any) -> Any:
        raise ValueError("this model cannot be explained this way")

    monkeypatch.setattr(ex, "explain", broken)
    text = ox.report(model, x, methods=[ex, "gradient"], path=None, progress=False)
    section = text.split('id="method-lrp.epsilon"')[1].split("</section>")[0]
    assert "ValueError: this model cannot be explained this way" in section
    assert "no explanation (the method failed)" in text


def test_bad_arguments_say_what_is_wrong(digits: tuple[ox.Model, np.ndarray]) -> None:
    model, x = digits
    with pytest.raises(ValueError, match="tabular"):
        ox.report(model, x.reshape(len(x), -1), methods=["gradient"], path=None)
    with pytest.raises(ValueError, match=r"C = 1 \(grey\) or 3 \(colour\)"):
        ox.report(model, np.concatenate([x, x], axis=1), methods=["gradient"], path=None)
    with pytest.raises(ValueError, match="channels-last"):
        ox.report(model, np.moveaxis(np.concatenate([x] * 3, axis=1), 1, -1), methods=["gradient"], path=None)
    with pytest.raises(ValueError, match="unknown method 'lrp.nope'"):
        ox.report(model, x, methods=["lrp.nope"], path=None)
    with pytest.raises(ValueError, match="no parameter 'eps'"):
        ox.report(model, x, methods=[("lrp.epsilon", {"eps": 1})], path=None)
    with pytest.raises(ValueError, match="unknown metric 'sensitivity'"):
        ox.report(model, x, methods=["gradient"], metrics=["sensitivity"], path=None)
    with pytest.raises(ValueError, match="target 10 is out of range"):
        ox.report(model, x, methods=["gradient"], target=10, path=None)


def test_the_report_needs_matplotlib(monkeypatch: pytest.MonkeyPatch, digits: tuple[ox.Model, np.ndarray]) -> None:
    model, x = digits
    monkeypatch.setitem(sys.modules, "matplotlib", None)
    with pytest.raises(ImportError, match=r"pip install onnxplain\[report\]"):
        ox.report(model, x, methods=["gradient"], path=None)
    assert _report_fn is ox.report


def _cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "onnxplain.cli", *args], capture_output=True, text=True, timeout=600)


def test_cli_writes_the_same_report(tmp_path: Path, digits: tuple[ox.Model, np.ndarray]) -> None:
    model, x = digits
    np.save(tmp_path / "x.npy", x)
    r = _cli("report", str(demo.MODEL_PATH), str(tmp_path / "x.npy"), "--methods",
             "gradient,lrp.epsilon_plus_flat,integrated_gradients", "--param", "integrated_gradients:steps=8",
             "--target", "3", "--metrics", "aopc", "--show", "3", "--out", str(tmp_path / "cli.html"))
    assert r.returncode == 0, r.stderr
    assert "written to" in r.stdout
    cli = (tmp_path / "cli.html").read_text(encoding="utf-8")
    api = ox.report(model, x, methods=["gradient", "lrp.epsilon_plus_flat", ("integrated_gradients", {"steps": 8})],
                    target=3, metrics=["aopc"], show=3, path=None, title=demo.MODEL_PATH.name, progress=False)
    p_cli, p_api = _parse(cli), _parse(api)
    _self_contained(cli, p_cli)
    assert p_cli.ids == p_api.ids
    assert {"method-gradient", "method-lrp.epsilon_plus_flat", "method-integrated_gradients"} <= set(p_cli.ids)
    assert p_cli.imgs == p_api.imgs  # the same pictures, byte for byte (only times and the date differ)
    assert "output 3 for every sample" in cli


def test_cli_bad_arguments(tmp_path: Path, digits: tuple[ox.Model, np.ndarray]) -> None:
    _, x = digits
    np.save(tmp_path / "x.npy", x)
    r = _cli("report", str(demo.MODEL_PATH), str(tmp_path / "x.npy"), "--methods", "gradient", "--param",
             "epsilon=1", "--out", str(tmp_path / "r.html"))
    assert r.returncode == 2 and "METHOD:K=V" in r.stderr
    np.save(tmp_path / "flat.npy", x.reshape(len(x), -1))
    r = _cli("report", str(demo.MODEL_PATH), str(tmp_path / "flat.npy"), "--out", str(tmp_path / "r.html"))
    assert r.returncode == 2 and "tabular" in r.stderr and not (tmp_path / "r.html").exists()


# ---- progress (onnxplain._fit) --------------------------------------------------------------------


def test_explain_progress_draws_tqdm_when_installed(capsys: pytest.CaptureFixture[str]) -> None:
    pytest.importorskip("tqdm")
    bar = _fit.explain_progress(True, "integrated_gradients")
    assert isinstance(bar, _fit._TqdmBar)
    for done in (8, 16):
        bar(done, 16)
    err = capsys.readouterr().err
    assert "integrated_gradients" in err and "16/16" in err and err.endswith("\n")  # closed at the total
    # Default (None) off a terminal: nothing; a single step with progress=None on a terminal: no bar.
    assert _fit.explain_progress(None, "gradient") is None
    quiet = _fit._TqdmBar("gradient", None, always=False)
    quiet(1, 1)
    quiet.close()
    assert capsys.readouterr().err == ""
    with pytest.raises(ValueError, match="progress must be"):
        _fit.explain_progress("yes", "gradient")
    calls: list[tuple[int, int | None]] = []
    assert _fit.explain_progress(lambda d, t: calls.append((d, t)), "m") is not None


def test_progress_falls_back_to_text_without_tqdm(monkeypatch: pytest.MonkeyPatch,
                                                  capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setitem(sys.modules, "tqdm", None)
    monkeypatch.setitem(sys.modules, "tqdm.auto", None)
    bar = _fit.explain_progress(True, "smoothgrad")
    assert isinstance(bar, _fit.TextBar)
    bar(5, 10)
    bar.note("step two")  # type: ignore[attr-defined]
    bar(10, 10)
    err = capsys.readouterr().err
    assert "smoothgrad [###############...............] 5/10" in err
    assert "smoothgrad | step two [##############################] 10/10" in err and err.endswith("\n")
    fit_bar = _fit.progress_reporter(True, "fit pattern.net", None)
    assert isinstance(fit_bar, _fit.TextBar)
    fit_bar(64, None)
    fit_bar.close()  # type: ignore[attr-defined]
    assert capsys.readouterr().err == "\rfit pattern.net: 64 samples\n"


def test_report_progress_counts_methods_and_metrics(monkeypatch: pytest.MonkeyPatch,
                                                    digits: tuple[ox.Model, np.ndarray]) -> None:
    model, x = digits
    monkeypatch.setattr(report_module, "_metrics_module", lambda: _stub_metrics())
    calls: list[tuple[int, int | None]] = []
    ox.report(model, x, methods=["gradient", "lrp.z"], path=None, progress=lambda d, t: calls.append((d, t)))
    # Per method: explain + 3 metrics; then the reliability of the metrics.
    assert calls == [(d, 9) for d in range(1, 10)]


# ---- tabular data and models run by onnxruntime -------------------------------------------------------


@pytest.fixture(scope="module")
def wine() -> tuple[ox.Model, np.ndarray, np.ndarray, list[str]]:
    """StandardScaler + RandomForestClassifier on scikit-learn's wine data (13 features, 3 classes), which the
    engine cannot run: onnxruntime does. A training split and 24 samples to explain."""
    from tests.helpers.sklearn_pipelines import forest

    p = forest("wine", n_estimators=10, max_depth=4)
    order = np.random.default_rng(0).permutation(len(p.x))
    return ox.load(p.onnx, threads=2), p.x[order[:120]], p.x[order[120:144]], list(p.feature_names)


def _section(text: str, anchor: str) -> str:
    return text.split(f'id="{anchor}"')[1].split("</section>")[0]


def test_tabular_report_for_a_pipeline_run_by_onnxruntime(wine: tuple) -> None:
    model, train, x, names = wine
    assert model.backend == "onnxruntime"
    methods = ["occlusion", "prediction_difference", "lime", "gradient"]
    text = ox.report(model, x, methods=methods, fit_data=train, feature_names=names, show=2, progress=False,
                     metric_params={"faithfulness": {"runs": 10}}, path=None)
    page = _parse(text)
    _self_contained(text, page)
    for anchor in ["summary", "inputs", "aopc", "randomisation", "metrics", "model"] + [f"method-{m}" for m in methods]:
        assert anchor in page.ids, anchor
    for src in page.imgs:
        _check_png_uri(src)
    assert "tabular: 13 features, named by feature_names" in text and "onnxruntime: onnxplain&#x27;s engine" in text
    assert "alcohol" in _section(text, "inputs") and "color_intensity" in _section(text, "inputs")
    for name in methods[:3]:  # two instances and the mean over the samples, as bar charts
        section = _section(text, f"method-{name}")
        assert section.count('class="chart"') == 3, name
        assert "explainVis" in section and "could not" not in section and "failed" not in section
    occ = _section(text, "method-occlusion")
    assert "window and stride = 1" in occ and "the per-feature mean of fit_data (120 samples)" in occ
    assert "weight of evidence" in _section(text, "method-prediction_difference")  # the chart's axis names the measure
    grad = _section(text, "method-gradient")
    assert "cannot run on this model" in grad and "UnsupportedModelError" in grad
    assert "TreeEnsembleClassifier" in grad and 'class="chart"' not in grad
    assert grad.count("which cannot run this model") == 1
    rand = _section(text, "randomisation")
    assert "Not run for this model" in rand and "TreeEnsembleClassifier" in rand and 'class="figure"' not in rand
    if _metrics_available():
        assert 'class="figure"' in _section(text, "aopc") and "Feature flipping" in _section(text, "aopc")
        table = _section(text, "metrics")
        assert "AOPC MoRF" in table and "faithfulness correlation" in table and "randomisation similarity" not in table
        assert table.count("±") >= 9  # three methods x (MoRF, LeRF, faithfulness)
        assert "Left out of the reliability: gradient" in table
    assert "backend: onnxruntime" in _section(text, "model")
    assert "aopc, faithfulness on all samples (model randomisation not run" in _section(text, "summary")


def test_tabular_report_on_a_model_the_engine_runs() -> None:
    """A dense network on tabular rows: backward methods work, randomisation runs, default feature names."""
    torch = pytest.importorskip("torch")
    from tests.helpers.torch_models import export

    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Linear(5, 8), torch.nn.ReLU(), torch.nn.Linear(8, 3)).eval()
    model = ox.load(export(net, torch.randn(2, 5), dynamo=False))
    x = np.random.default_rng(0).standard_normal((10, 5)).astype(np.float32)
    text = ox.report(model, x, methods=["gradient", "occlusion"], show=2, progress=False, path=None,
                     metric_params={"faithfulness": {"runs": 10}})
    page = _parse(text)
    assert "named x0 .. x4 (no feature_names given)" in text
    assert "forward passes</th><td>onnxplain's engine</td>" in text
    assert _section(text, "method-gradient").count('class="chart"') == 3
    assert "<th>x0</th>" in _section(text, "inputs")  # 5 features: the values are shown at once
    if _metrics_available():
        assert 'class="figure"' in _section(text, "randomisation")
        assert "randomisation similarity" in _section(text, "metrics")
    assert {"method-gradient", "method-occlusion"} <= set(page.ids)


def test_image_report_for_a_model_run_by_onnxruntime() -> None:
    """A CNN with an op the engine lacks: heatmaps for the forward-only methods, an explanation for the
    others; by default only forward-only methods are used."""
    from tests.test_ort_metrics import cnn

    model = ox.load(cnn("Mish", False))
    assert model.backend == "onnxruntime"
    x = np.random.default_rng(1).standard_normal((3, 1, 12, 12)).astype(np.float32)
    text = ox.report(model, x, methods=[("occlusion", {"window": 3, "stride": 3}), "integrated_gradients"], show=2,
                     progress=False, path=None, metrics=["aopc", "randomisation"])
    page = _parse(text)
    assert sum(1 for src in page.imgs if _check_png_uri(src) == (132, 132)) == 2 + 2 * 2  # 12 px x zoom 11
    ig = _section(text, "method-integrated_gradients")
    assert "UnsupportedModelError" in ig and "Mish" in ig
    assert "Not run for this model" in _section(text, "randomisation")
    default = ox.report(model, x, show=1, progress=False, path=None, metrics=[])
    assert {"method-occlusion", "method-lime"} <= set(_parse(default).ids) and "method-gradient" not in default


def test_cli_tabular_report_with_feature_names(tmp_path: Path, wine: tuple, capsys: pytest.CaptureFixture[str]) -> None:
    from onnxplain.cli import main

    model, train, x, names = wine
    from tests.helpers.sklearn_pipelines import forest

    onnx_path = tmp_path / "wine.onnx"
    onnx_path.write_bytes(forest("wine", n_estimators=10, max_depth=4).onnx)
    np.save(tmp_path / "x.npy", x[:6])
    (tmp_path / "names.txt").write_text("# wine\n" + "\n".join(names) + "\n", encoding="utf-8")
    out = tmp_path / "cli.html"
    r = _cli("report", str(onnx_path), str(tmp_path / "x.npy"), "--methods", "occlusion", "--metrics", "aopc",
             "--show", "2", "--feature-names-file", str(tmp_path / "names.txt"), "--out", str(out))
    assert r.returncode == 0, r.stderr
    cli = out.read_text(encoding="utf-8")
    api = ox.report(model, x[:6], methods=["occlusion"], metrics=["aopc"], show=2, feature_names=names,
                    title=onnx_path.name, progress=False, path=None)
    assert _parse(cli).ids == _parse(api).ids and _parse(cli).imgs == _parse(api).imgs
    # In process from here on (the same entry point, without a new interpreter each time).
    (tmp_path / "header.csv").write_text(",".join(names) + "\n", encoding="utf-8")
    for flag, value in (("--feature-names", ",".join(names)), ("--feature-names-file", str(tmp_path / "header.csv"))):
        out.unlink()
        assert main(["report", str(onnx_path), str(tmp_path / "x.npy"), "--methods", "occlusion", "--metrics", "none",
                     "--show", "1", flag, value, "--out", str(out)]) == 0
        assert "proline" in out.read_text(encoding="utf-8") and "written to" in capsys.readouterr().out
    assert main(["report", str(onnx_path), str(tmp_path / "x.npy"), "--feature-names", "a,b", "--out", str(out)]) == 2
    assert "2 names for 13 features" in capsys.readouterr().err
    assert main(["report", str(onnx_path), str(tmp_path / "x.npy"), "--feature-names", "a", "--feature-names-file",
                 str(tmp_path / "names.txt"), "--out", str(out)]) == 2
    assert "not both" in capsys.readouterr().err
    assert main(["report", str(onnx_path), str(tmp_path / "x.npy"), "--feature-names-file",
                 str(tmp_path / "missing.txt"), "--out", str(out)]) == 2
    assert "cannot read --feature-names-file" in capsys.readouterr().err


def test_tabular_bad_arguments(wine: tuple, digits: tuple[ox.Model, np.ndarray]) -> None:
    model, _, x, names = wine
    with pytest.raises(ValueError, match="12 names for 13 features"):
        ox.report(model, x, methods=["occlusion"], feature_names=names[:12], path=None)
    with pytest.raises(ValueError, match="not one string"):
        ox.report(model, x, methods=["occlusion"], feature_names=",".join(names), path=None)
    digits_model, images = digits
    with pytest.raises(ValueError, match="feature_names names the columns of tabular data"):
        ox.report(digits_model, images, methods=["gradient"], feature_names=["a"], path=None)
    with pytest.raises(ValueError, match=r"tabular rows \(N, F\), but the model's input"):
        ox.report(digits_model, images.reshape(len(images), -1), methods=["gradient"], path=None)
