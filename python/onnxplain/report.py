"""``ox.report``: one self-contained HTML file comparing explanation methods on a model and a batch.

>>> ox.report(model, x, methods=["gradient", "lrp.epsilon_plus_flat", "occlusion"], path="report.html")

The file holds everything (images as base64 PNG data URIs, inline CSS, no scripts, no external
fonts), so it opens offline and can be mailed or archived. It shows the inputs; per method its
heatmaps over the inputs, parameters, paper and run time; the pixel-flipping (AOPC) curves; the
model-randomisation sanity check; a table of the metrics (mean ± std over the samples) with the
reliability of the metrics (Tomsett et al. 2020); and the model summary. A metric that fails says
why in its place instead of stopping the report.

Tabular data (N, F) gets the same report with bar charts instead of heatmaps: per method the
contributions of each drawn instance's features beside their average over the data (explainVis,
Robnik-Šikonja & Kononenko 2008, the survey's Figure 9) and the mean over all instances, named by
``feature_names``. Models that onnxplain's engine cannot run (loaded through onnxruntime, such as
scikit-learn pipelines) are reported with the forward-only methods (occlusion, prediction
difference, LIME) and the metrics AOPC and faithfulness; a backward method gets a section saying
why it cannot run, and the model-randomisation check (which re-draws weights in onnxplain's IR)
is left out with a note.

Needs matplotlib (``pip install onnxplain[report]``); tqdm draws the progress bar when installed.
"""

from __future__ import annotations

import base64
import dataclasses
import datetime
import html
import importlib
import math
import os
import re
import struct
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Union

import numpy as np

from . import viz
from .explain import Explainer, MethodInfo, TargetLike, explainer, methods
from .model import Model, load

MethodSpec = Union[str, "tuple[str, Mapping[str, Any]]", Explainer]

METRICS = ("aopc", "faithfulness", "randomisation")

# Methods that must see data before they explain even when their explainer does not say so.
_FIT_BY_NAME = ("prediction_difference",)
# ... and those that must for tabular data (LIME's quartiles come from the training data).
_FIT_BY_NAME_TABULAR = ("prediction_difference", "lime")
# Tabular bar charts: the features drawn per instance (those with the largest |R|), and in the mean chart.
_TABULAR_TOP = 15
_TABULAR_TOP_MEAN = 30


@dataclasses.dataclass
class _Method:
    """One method of the report and what was measured on it."""

    name: str
    label: str
    anchor: str
    explainer: Explainer | None  # None when the method cannot run on this model (``error`` says why)
    colour: str
    info: MethodInfo
    params: dict[str, Any] = dataclasses.field(default_factory=dict)
    notes: list[str] = dataclasses.field(default_factory=list)  # defaults the report chose, shown with it
    relevance: np.ndarray | None = None
    error: str | None = None
    fit_seconds: float | None = None
    fit_note: str | None = None
    explain_seconds: float | None = None
    curves: dict[str, np.ndarray] = dataclasses.field(default_factory=dict)  # order -> (N, steps + 1)
    scores: dict[str, np.ndarray] = dataclasses.field(default_factory=dict)  # metric column -> (N,)
    randomisation: list[tuple[str, np.ndarray]] | None = None
    metric_errors: dict[str, str] = dataclasses.field(default_factory=dict)  # metric -> why it failed


# The metric table's columns: key, header, what it measures, which direction is better.
_COLUMNS = [
    ("aopc_morf", "AOPC MoRF", "aopc", "mean drop of f_t as the most relevant regions are perturbed first "
     "(Samek et al. 2017)", "↑"),
    ("aopc_lerf", "AOPC LeRF", "aopc", "mean drop of f_t as the least relevant regions are perturbed first", "↓"),
    ("faithfulness", "faithfulness correlation", "faithfulness", "Pearson correlation of the relevance of "
     "random subsets with the output drop when they are perturbed (Bhatt et al. 2020)", "↑"),
    ("randomisation", "randomisation similarity", "randomisation", "similarity of the explanation of the fully "
     "randomised model to the original one (Adebayo et al. 2018); a method that ignores the model stays high",
     "↓"),
]


def _slug(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]", "-", name)


def _esc(value: object) -> str:
    return html.escape(str(value), quote=True)


def _data_uri(png: bytes) -> str:
    return "data:image/png;base64," + base64.b64encode(png).decode("ascii")


def _img(png: bytes, alt: str, cls: str = "") -> str:
    c = f' class="{cls}"' if cls else ""
    return f'<img{c} src="{_data_uri(png)}" alt="{_esc(alt)}">'


def _fmt(v: float, digits: int = 3) -> str:
    if v is None or not np.isfinite(v):
        return "–"
    a = abs(v)
    if a != 0 and (a >= 1e4 or a < 1e-3):
        return f"{v:.{digits - 1}e}"
    a = abs(float(f"{v:.{digits}g}"))  # rounded first: 9.996 is 10.0, not 10.00
    decimals = digits if a < 1 else max(0, digits - 1 - int(math.floor(math.log10(a))))
    return f"{v:.{decimals}f}"  # 3 significant digits, trailing zeros kept so that columns line up


def _param_text(v: Any) -> str:
    if isinstance(v, np.ndarray) or (hasattr(v, "shape") and hasattr(v, "dtype")):
        return f"array {tuple(v.shape)}"
    if isinstance(v, Mapping):
        return "{" + ", ".join(f"{k}: {_param_text(x)}" for k, x in v.items()) + "}"
    return repr(v)


def _error_text(e: BaseException) -> str:
    return f"{type(e).__name__}: {e}"


def _check_input(model: Model, x: Any) -> np.ndarray:
    """x as float32: images (N, C, H, W) with C = 1 or 3, or tabular rows (N, F)."""
    if isinstance(x, Mapping) or len(model.inputs) != 1:
        raise ValueError(f"ox.report supports models with one input; this one has {len(model.inputs)} "
                         f"({', '.join(s.name for s in model.inputs)})")
    arr = np.asarray(x)
    if arr.ndim == 2:
        rank = len(model.inputs[0].shape)
        if rank and rank != 2:
            raise ValueError(f"x has shape {arr.shape}, tabular rows (N, F), but the model's input "
                             f"{model.inputs[0]} has rank {rank}; pass x shaped as the model takes it (images "
                             "(N, C, H, W))")
        if arr.shape[0] == 0 or arr.shape[1] == 0:
            raise ValueError(f"ox.report needs at least one sample with at least one feature; x has shape {arr.shape}")
        if not np.issubdtype(arr.dtype, np.number):
            raise ValueError(f"x must be numeric, got dtype {arr.dtype}")
        return arr.astype(np.float32, copy=False)
    if arr.ndim != 4 or arr.shape[1] not in (1, 3):
        hint = ""
        if arr.ndim == 4 and arr.shape[-1] in (1, 3):
            hint = " (channels-last (N, H, W, C) images are not supported yet)"
        raise ValueError(f"ox.report draws images (N, C, H, W) with C = 1 (grey) or 3 (colour), or tabular rows "
                         f"(N, F); x has shape {arr.shape}{hint}")
    if arr.shape[0] == 0:
        raise ValueError("ox.report needs at least one sample, x is empty")
    if not np.issubdtype(arr.dtype, np.number):
        raise ValueError(f"x must be numeric, got dtype {arr.dtype}")
    return arr.astype(np.float32, copy=False)


def _targets(target: TargetLike, outputs: np.ndarray) -> tuple[np.ndarray, str]:
    n, k = outputs.shape
    if target is None:
        return outputs.argmax(axis=1).astype(np.int64), "the model's highest output per sample (argmax)"
    if isinstance(target, (int, np.integer)):
        t = np.full(n, int(target), np.int64)
        how = f"output {int(target)} for every sample"
    else:
        t = np.asarray(target)
        if t.ndim != 1 or not np.issubdtype(t.dtype, np.integer) or len(t) != n:
            raise ValueError(f"target must be None, an int, or one int per sample ({n}); got {target!r}")
        t = t.astype(np.int64)
        how = "given per sample"
    bad = t[(t < 0) | (t >= k)]
    if bad.size:
        raise ValueError(f"target {int(bad[0])} is out of range: the model has {k} outputs per sample (0..{k - 1})")
    return t, how


def _forward_only() -> set[str]:
    """The methods that need nothing but forward passes (what a model run by onnxruntime offers)."""
    from .perturbation import BACKEND_METHODS, PYTHON_METHODS

    return set(BACKEND_METHODS) | set(PYTHON_METHODS)


def _default_methods(model: Model, tabular: bool) -> list[str]:
    if model.backend != "onnxplain":
        return ["occlusion", "prediction_difference", "lime"] if tabular else ["occlusion", "lime"]
    return ["gradient", "integrated_gradients", "lrp.epsilon_plus_flat"]


def _method_specs(specs: Sequence[MethodSpec], params: Mapping[str, Mapping[str, Any]] | None,
                  model: Model, tabular_fill: tuple[np.ndarray, str] | None = None) -> list[_Method]:
    """The report's methods. ``tabular_fill`` (tabular data): the per-feature mean that occlusion
    named without a fill replaces features with, and what it is the mean of."""
    known = methods()
    params = dict(params or {})
    # (name, explainer or None, the error that kept it from being made, notes, parameters)
    entries: list[tuple[str, Explainer | None, str | None, list[str], dict[str, Any]]] = []
    for spec in specs:
        if isinstance(spec, Explainer):
            if spec.model is not model and spec.model.to_bytes() != model.to_bytes():
                raise ValueError(f"the {spec.method} explainer is bound to another model than the report's")
            entries.append((spec.method, spec, None, [], dict(spec.params)))
            continue
        if isinstance(spec, str):
            name, p = spec, {}
        elif (isinstance(spec, tuple) and len(spec) == 2 and isinstance(spec[0], str)
              and isinstance(spec[1], Mapping)):
            name, p = spec[0], dict(spec[1])
        else:
            raise ValueError(f"methods: each entry is a method name, a pair (name, {{param: value}}) or an "
                             f"Explainer; got {spec!r}")
        if name not in known:
            raise ValueError(f"unknown method {name!r}; known methods: {', '.join(known)}")
        p = {**dict(params.get(name, {})), **p}
        notes: list[str] = []
        if tabular_fill is not None and name == "occlusion":
            chosen = [k for k in ("window", "stride") if k not in p]
            if chosen:
                notes.append(f"{' and '.join(chosen)} = 1: one feature at a time (the report's choice for tabular "
                             "data)")
                for k in chosen:
                    p[k] = 1
            if "fill" not in p:
                p["fill"] = tabular_fill[0]
                notes.append(f"fill = the per-feature mean of {tabular_fill[1]} (the report's choice for tabular "
                             "data)")
        if model.backend != "onnxplain" and name not in _forward_only():
            # The method walks the graph backwards: its section says why it cannot run on this model.
            try:
                ex: Explainer | None = explainer(model, name, **p)
                err = None
            except Exception as e:  # noqa: BLE001 - shown in the method's section
                ex, err = None, _engine_error_text(e)
            entries.append((name, ex, err, notes, p))
            continue
        entries.append((name, explainer(model, name, **p), None, notes, p))
    if not entries:
        raise ValueError("methods is empty: name at least one method (see ox.methods())")
    names = [entry[0] for entry in entries]
    for name in params:
        if name not in names:
            raise ValueError(f"params[{name!r}]: {name!r} is not one of the report's methods ({', '.join(names)})")
    counts: dict[str, int] = {}
    out = []
    for i, (name, ex, err, notes, p) in enumerate(entries):
        counts[name] = counts.get(name, 0) + 1
        dup = names.count(name) > 1
        label = name
        if dup:
            shown = ", ".join(f"{k}={_param_text(v)}" for k, v in p.items())
            label = f"{name}({shown})" if shown else f"{name} #{counts[name]}"
        anchor = "method-" + _slug(name) + (f"-{counts[name]}" if counts[name] > 1 else "")
        info = ex.info if ex is not None else known[name]
        out.append(_Method(name, label, anchor, ex, viz.METHOD_COLOURS[i % len(viz.METHOD_COLOURS)], info,
                           dict(ex.params) if ex is not None else dict(p), notes, error=err))
    return out


def _engine_error_text(e: BaseException) -> str:
    """The error of a method that needs onnxplain's engine, with the engine's reason once (an
    error object reused for several methods can carry earlier methods' prefixes)."""
    text, marker = str(e), "which cannot run this model: "
    if text.count(marker) > 1:
        text = text.split(marker, 1)[0] + marker + text.rsplit(marker, 1)[-1]
    return f"{type(e).__name__}: {text}"


def _needs_fit(ex: Explainer, tabular: bool = False) -> bool:
    return bool(getattr(ex, "learns", False)) or ex.method in (_FIT_BY_NAME_TABULAR if tabular else _FIT_BY_NAME)


def _fit_samples(data: Any) -> str:
    shape = getattr(data, "shape", None)
    if shape is not None and len(shape) > 0:
        return f"{int(shape[0])} samples"
    return "the given batches"


def _metrics_module() -> Any:
    return importlib.import_module(".metrics", __package__)


def report(model: Model | str | bytes, x: Any, methods: Sequence[MethodSpec] | None = None,
           path: str | os.PathLike[str] | None = "report.html", target: TargetLike = None,
           metrics: Sequence[str] = METRICS, fit_data: Any = None,
           params: Mapping[str, Mapping[str, Any]] | None = None,
           metric_params: Mapping[str, Mapping[str, Any]] | None = None, show: int = 8,
           title: str | None = None, progress: Any = None,
           feature_names: Sequence[str] | None = None) -> Path | str:
    """Writes one self-contained HTML report comparing explanation methods on a batch of images or
    tabular rows.

    Parameters
    ----------
    model : Model, path or bytes
        The model (anything :func:`onnxplain.load` accepts). A model onnxplain's engine cannot run
        is loaded through onnxruntime: it is explained with the forward-only methods (occlusion,
        prediction difference, LIME); other methods get a section saying why they cannot run, and
        the model-randomisation check is left out with a note.
    x : array_like
        A batch of images (N, C, H, W) with C = 1 or 3, or tabular data (N, F) (one row per
        instance, one column per feature), for the model's single input. Every metric runs on all
        N samples; the first ``show`` are drawn.
    methods : sequence, optional
        Method names from :func:`onnxplain.methods`, pairs ``(name, {param: value})``, or
        explainers (already fitted ones are used as they are). Default: ``gradient``,
        ``integrated_gradients`` and ``lrp.epsilon_plus_flat``; for a model run by onnxruntime
        ``occlusion``, ``prediction_difference`` and ``lime`` (tabular) or ``occlusion`` and
        ``lime`` (images). For tabular data, ``occlusion`` given by name occludes one feature at a
        time (``window=1, stride=1``) with the per-feature mean of ``fit_data`` (or of x) as its
        ``fill``, unless those parameters are given.
    path : path or None
        Where to write the HTML file; ``None`` returns the HTML text instead.
    target : None, int or sequence of int
        Output to explain: None = the argmax per sample (computed once, so every method and
        metric explains the same output), an int for all samples, or one per sample.
    metrics : sequence of str
        Any of ``"aopc"`` (pixel-flipping curves MoRF and LeRF, :func:`onnxplain.metrics.aopc`),
        ``"faithfulness"`` (:func:`onnxplain.metrics.faithfulness_correlation`) and
        ``"randomisation"`` (:func:`onnxplain.metrics.model_randomisation`; only for models that
        onnxplain's engine runs). With two methods or more, :func:`onnxplain.metrics.reliability`
        rates the metrics themselves.
    fit_data : array_like or iterable of batches, optional
        Data for the methods that learn from data (``pattern.*``, ``prediction_difference``, and
        ``lime`` on tabular data) when they are given by name; default ``x`` itself (the report
        says so). For tabular data its per-feature mean is also what occlusion, AOPC and
        faithfulness replace features with (the mean of x without it).
    params : mapping, optional
        Parameters per method name, ``{"lrp.epsilon": {"epsilon": 0.01}}``; parameters given in
        a ``(name, params)`` pair take precedence.
    metric_params : mapping, optional
        Extra arguments per metric, e.g. ``{"aopc": {"region": 2, "steps": 20}, "faithfulness":
        {"runs": 50}, "randomisation": {"similarity": "pearson"}}``. Default AOPC regions:
        ceil(min(H, W) / 16) pixels square, at most 64 steps; for tabular data single features
        (``region=1``), at most 64 steps, replaced by the per-feature mean (``fill``; see
        ``fit_data``), which is also faithfulness's default ``fill``.
    show : int
        How many samples to draw (the first ones).
    title : str, optional
        The report's title (default: the model file's name).
    progress : None, bool or callable
        A progress bar over the methods and metrics (tqdm when installed): on a terminal or in a
        notebook for ``None``, always for ``True``, never for ``False``; a callable receives
        ``(done, total)``.
    feature_names : sequence of str, optional
        Tabular data: one name per feature (column), used in the bar charts and tables; default
        ``x0`` .. ``x{F-1}``.

    Returns
    -------
    pathlib.Path or str
        The file written, or the HTML text when ``path`` is ``None``.

    Raises
    ------
    ImportError
        Without matplotlib.
    ValueError
        For inputs that are neither (N, C, H, W) images with C = 1 or 3 nor tabular (N, F) rows
        for a model that takes them, ``feature_names`` that do not name every feature (or are given
        for images), unknown methods, parameters or metrics.
    """
    viz.require_matplotlib("onnxplain.report")
    source = model if isinstance(model, (str, os.PathLike)) else None
    if isinstance(model, Model) and isinstance(getattr(model, "_source", None), str):
        source = model._source  # loaded from a file: its name titles the report
    if not isinstance(model, Model):
        model = load(model)
    xs = _check_input(model, x)
    tabular = xs.ndim == 2
    n = xs.shape[0]
    if tabular:
        names: list[str] | None = viz.feature_labels(xs.shape[1], feature_names)
    elif feature_names is not None:
        raise ValueError("feature_names names the columns of tabular data (N, F); x holds images")
    else:
        names = None
    unknown = [m for m in metrics if m not in METRICS]
    if unknown:
        raise ValueError(f"unknown metric {unknown[0]!r}; the report knows {', '.join(METRICS)}")
    metrics = [m for m in METRICS if m in metrics]
    metric_params = {k: dict(v) for k, v in (metric_params or {}).items()}
    for k in metric_params:
        if k not in METRICS:
            raise ValueError(f"metric_params[{k!r}]: unknown metric; the report knows {', '.join(METRICS)}")
    if int(show) < 1:
        raise ValueError(f"show must be >= 1, got {show}")
    tabular_fill = _feature_mean(fit_data, xs) if tabular else None
    specs = list(methods) if methods is not None else _default_methods(model, tabular)
    entries = _method_specs(specs, params, model, tabular_fill)

    t_start = time.perf_counter()
    outputs = np.asarray(model.predict(xs), dtype=np.float64).reshape(n, -1)
    targets, target_how = _targets(target, outputs)

    from ._fit import progress_reporter

    total = len(entries) * (1 + len(metrics)) + (1 if len(entries) > 1 and metrics else 0)
    bar = progress_reporter(progress, "onnxplain report", total, unit="step")
    done = 0

    def step(text: str) -> None:
        if bar is not None and hasattr(bar, "note"):
            bar.note(text)

    def advance() -> None:
        nonlocal done
        done += 1
        if bar is not None:
            bar(done, total)

    mod: Any = None
    mod_error: str | None = None
    if metrics:
        try:
            mod = _metrics_module()
        except ImportError as e:
            mod_error = f"onnxplain.metrics is not available in this installation ({_error_text(e)})"

    if tabular:
        f = xs.shape[1]
        aopc_args = {"region": 1, "steps": min(f, 64), "fill": tabular_fill[0], **metric_params.get("aopc", {})}
        faith_args = {"fill": tabular_fill[0], **metric_params.get("faithfulness", {})}
        if "steps" not in metric_params.get("aopc", {}) and "region" in metric_params.get("aopc", {}):
            aopc_args["steps"] = min(math.ceil(f / int(aopc_args["region"])), 64)
    else:
        h, w = xs.shape[2:]
        aopc_region = int(metric_params.get("aopc", {}).get("region", max(1, math.ceil(min(h, w) / 16))))
        n_regions = math.ceil(h / aopc_region) * math.ceil(w / aopc_region)
        aopc_args = {"region": aopc_region, "steps": min(n_regions, 64), **metric_params.get("aopc", {})}
        faith_args = metric_params.get("faithfulness", {})
    extras = {**metric_params, "faithfulness": faith_args}
    engine_note = _engine_note(model)
    try:
        for e in entries:
            step(f"explain {e.label}")
            _explain(e, model, xs, targets, fit_data)
            advance()
            for metric in metrics:
                step(f"{metric} {e.label}")
                if e.relevance is None:
                    e.metric_errors[metric] = "no explanation (the method failed)"
                elif metric == "randomisation" and engine_note is not None:
                    e.metric_errors[metric] = "not run: " + engine_note
                elif mod is None:
                    e.metric_errors[metric] = mod_error or "onnxplain.metrics is not available"
                else:
                    _measure(e, metric, mod, model, xs, targets, aopc_args, extras.get(metric, {}), fit_data)
                advance()
        reliability: Any = None
        reliability_error: str | None = None
        if len(entries) > 1 and metrics:
            step("reliability")
            reliability, reliability_error = _reliability(mod, mod_error, entries)
            advance()
    finally:
        if bar is not None and hasattr(bar, "close"):
            bar.close()

    page = _page(model=model, source=source, xs=xs, outputs=outputs, targets=targets, target_how=target_how,
                 entries=entries, metrics=metrics, aopc_args=aopc_args, metric_params=metric_params,
                 reliability=reliability, reliability_error=reliability_error, show=int(show),
                 title=title, fit_data_given=fit_data is not None,
                 fit_data_text=_fit_samples(fit_data), seconds=time.perf_counter() - t_start,
                 feature_names=names, tabular_fill=tabular_fill, engine_note=engine_note,
                 names_given=feature_names is not None)
    if path is None:
        return page
    out = Path(path)
    tmp = out.with_name(out.name + ".tmp")
    tmp.write_text(page, encoding="utf-8")
    os.replace(tmp, out)
    return out


def _feature_mean(fit_data: Any, xs: np.ndarray) -> tuple[np.ndarray, str]:
    """The per-feature mean that tabular features are replaced with: of ``fit_data`` when it is an
    array of rows like x, else of x itself; and what it is the mean of, for the report."""
    shape = getattr(fit_data, "shape", None)
    if fit_data is not None and shape is not None and len(shape) == 2 and shape[1] == xs.shape[1] and shape[0] > 0:
        data = np.asarray(fit_data, dtype=np.float64)
        if np.all(np.isfinite(data)):
            return data.mean(axis=0).astype(np.float32), f"fit_data ({shape[0]} samples)"
    return xs.astype(np.float64).mean(axis=0).astype(np.float32), f"the {len(xs)} explained samples"


def _engine_note(model: Model) -> str | None:
    """Why the model-randomisation check cannot run on this model, or None when the engine runs it."""
    if model.backend == "onnxplain":
        return None
    return (f"the model-randomisation check re-draws the weights of the layers in onnxplain's IR, and "
            f"{_backend_reason(model)}; its forward passes run through onnxruntime")


def _backend_reason(model: Model) -> str:
    """Why a model runs through onnxruntime."""
    why = getattr(model, "unsupported", None)
    if why is None:
        return "the model was loaded with backend='onnxruntime'"
    for note in getattr(model, "notes", []):  # written at load, from the engine's own error
        if str(note).startswith("onnxplain's engine cannot run this model"):
            return str(note).split("; forward passes run through onnxruntime")[0]
    return "onnxplain's engine cannot run this model (" + _first_line(why) + ")"


def _first_line(e: BaseException) -> str:
    """The gist of the engine's UnsupportedModelError: the ops it lacks (one line each after its
    first line), else its first line."""
    lines = [line.strip() for line in str(e).strip().splitlines() if line.strip()]
    ops = [line if len(line) <= 80 else line[:79] + "…" for line in lines[1:] if re.match(r"^\S+ \(\d+ nodes?\b", line)]
    if ops:
        return "it lacks " + "; ".join(ops)
    return lines[0].rsplit("cannot run this model: ", 1)[-1] if lines else type(e).__name__


def _explain(e: _Method, model: Model, xs: np.ndarray, targets: np.ndarray, fit_data: Any) -> None:
    ex = e.explainer
    if ex is None:
        return  # it could not be made for this model; e.error says why
    try:
        if _needs_fit(ex, xs.ndim == 2):
            if getattr(ex, "statistics", None) is not None:
                e.fit_note = "used as given (already fitted)"
            else:
                data = xs if fit_data is None else fit_data
                t0 = time.perf_counter()
                ex.fit(data, progress=False)
                e.fit_seconds = time.perf_counter() - t0
                e.fit_note = (f"fitted on fit_data ({_fit_samples(fit_data)})" if fit_data is not None else
                              f"fitted on the {len(xs)} explained samples themselves (no fit_data was given; "
                              "pass a training set as fit_data= for patterns that generalise)")
        t0 = time.perf_counter()
        rel = ex.explain(xs, target=targets, progress=False)
        e.explain_seconds = time.perf_counter() - t0
        rel = np.asarray(rel[0] if isinstance(rel, list) else rel, dtype=np.float64)
        if rel.shape != xs.shape:
            raise ValueError(f"the relevance has shape {rel.shape}, the input {xs.shape}")
        e.relevance = rel
    except Exception as err:  # noqa: BLE001 - the report shows why this method has no pictures
        e.error = _error_text(err)


def _measure(e: _Method, metric: str, mod: Any, model: Model, xs: np.ndarray, targets: np.ndarray,
             aopc_args: Mapping[str, Any], extra: Mapping[str, Any], fit_data: Any) -> None:
    rel = e.relevance
    assert rel is not None
    try:
        if metric == "aopc":
            for order in ("morf", "lerf"):
                r = mod.aopc(model, xs, rel.astype(np.float32), target=targets, **{**aopc_args, "order": order})
                e.curves[order] = np.asarray(r.curves, dtype=np.float64)
                e.scores[f"aopc_{order}"] = np.asarray(r.aopc, dtype=np.float64).reshape(-1)
        elif metric == "faithfulness":
            r = mod.faithfulness_correlation(model, xs, rel.astype(np.float32), target=targets, **extra)
            e.scores["faithfulness"] = np.asarray(r, dtype=np.float64).reshape(-1)
        elif metric == "randomisation":
            kwargs = dict(extra)
            assert e.explainer is not None
            if _needs_fit(e.explainer, xs.ndim == 2):
                # Each randomised copy is fitted again: its patterns depend on its weights.
                kwargs.setdefault("fit_data", xs if fit_data is None else fit_data)
            res = mod.model_randomisation(model, e.name, xs, target=targets, **kwargs, **e.explainer.params)
            e.randomisation = [(str(layer), np.asarray(s, dtype=np.float64).reshape(-1)) for layer, s in res]
            if e.randomisation:
                e.scores["randomisation"] = e.randomisation[-1][1]
    except Exception as err:  # noqa: BLE001 - the report shows why the metric is missing
        e.metric_errors[metric] = _error_text(err)


def _reliability(mod: Any, mod_error: str | None, entries: list[_Method]) -> tuple[Any, str | None]:
    if mod is None:
        return None, mod_error
    # Methods without an explanation (failed, or unable to run on this model) are left out; the
    # metrics measured on every other method are rated.
    rated = [e for e in entries if e.relevance is not None]
    if len(rated) < 2:
        return None, "reliability needs two methods or more with an explanation"
    scores: dict[str, dict[str, np.ndarray]] = {}
    for key, *_ in _COLUMNS:
        per_method = {e.label: e.scores[key] for e in rated if key in e.scores}
        if len(per_method) == len(rated):
            scores[key] = per_method
    if not scores:
        return None, "no metric was measured on every method"
    try:
        return mod.reliability(scores), None
    except Exception as err:  # noqa: BLE001 - shown in the report
        return None, _error_text(err)


# ---- HTML ----------------------------------------------------------------------------------------

_CSS = """
:root { --fg: #1d2330; --muted: #5d6675; --line: #dde1e8; --card: #ffffff; --bg: #f4f6f9; --accent: #3b5bdb; }
* { box-sizing: border-box; }
body { margin: 0; background: var(--bg); color: var(--fg);
  font: 14px/1.5 system-ui, -apple-system, "Segoe UI", Roboto, "Helvetica Neue", Arial, sans-serif; }
main { max-width: 1240px; margin: 0 auto; padding: 24px 28px 60px; }
header h1 { margin: 0 0 4px; font-size: 26px; }
header .sub { color: var(--muted); }
nav { margin: 14px 0 8px; display: flex; flex-wrap: wrap; gap: 6px; }
nav a { color: var(--accent); text-decoration: none; border: 1px solid var(--line); background: var(--card);
  border-radius: 14px; padding: 2px 10px; font-size: 13px; }
section { background: var(--card); border: 1px solid var(--line); border-radius: 8px; padding: 16px 20px;
  margin: 16px 0; }
section h2 { margin: 0 0 8px; font-size: 19px; display: flex; align-items: baseline; gap: 10px; flex-wrap: wrap; }
section h2 .swatch { width: 12px; height: 12px; border-radius: 3px; display: inline-block; align-self: center; }
h3 { font-size: 15px; margin: 18px 0 6px; }
section h2 .meta { font-size: 13px; font-weight: normal; color: var(--muted); }
p.note { color: var(--muted); margin: 6px 0; }
.badge { font-size: 12px; font-weight: normal; border-radius: 10px; padding: 1px 8px; background: #eef1f6;
  color: var(--muted); }
table { border-collapse: collapse; font-size: 13px; }
th, td { border-bottom: 1px solid var(--line); padding: 4px 10px; text-align: left; vertical-align: top; }
th { background: #f7f8fb; font-weight: 600; }
td.num { text-align: right; font-variant-numeric: tabular-nums; white-space: nowrap; }
table.kv th { width: 170px; background: none; color: var(--muted); font-weight: normal; }
.tiles { display: flex; flex-wrap: wrap; gap: 10px; margin: 10px 0 4px; }
figure.tile { margin: 0; width: 128px; text-align: center; }
figure.tile img { width: 128px; height: auto; display: block; border: 1px solid var(--line); border-radius: 3px; }
figure.tile figcaption { font-size: 11px; color: var(--muted); line-height: 1.3; margin-top: 3px; }
.rowlabel { font-size: 12px; font-weight: 600; color: var(--muted); margin-top: 10px; }
.legend { display: flex; align-items: center; gap: 8px; font-size: 12px; color: var(--muted); margin-top: 8px; }
.legend img { width: 200px; height: 10px; border: 1px solid var(--line); }
.warn { background: #fff5e6; border: 1px solid #f0c36d; border-radius: 6px; padding: 8px 12px; margin: 8px 0;
  font-size: 13px; }
.warn code { white-space: pre-wrap; word-break: break-word; }
img.figure { max-width: 100%; height: auto; display: block; margin: 8px 0; }
.charts { display: flex; flex-wrap: wrap; gap: 14px; margin: 8px 0 4px; align-items: flex-start; }
img.chart { max-width: 100%; height: auto; display: block; border: 1px solid var(--line); border-radius: 4px; }
.scroll { overflow-x: auto; }
table.inputs th { white-space: nowrap; }
table.inputs tr.out td, table.inputs tr.out th { background: #f7f8fb; font-weight: 600; }
pre { background: #f7f8fb; border: 1px solid var(--line); border-radius: 6px; padding: 10px 12px; overflow-x: auto;
  font-size: 12px; line-height: 1.4; white-space: pre-wrap; }
details { margin-top: 8px; font-size: 13px; }
summary { cursor: pointer; color: var(--accent); }
footer { color: var(--muted); font-size: 12px; text-align: center; margin-top: 24px; }
"""


def _tile(png: bytes, alt: str, caption: str) -> str:
    return f'<figure class="tile">{_img(png, alt)}<figcaption>{caption}</figcaption></figure>'


def _zoom(h: int, w: int) -> int:
    return max(1, math.ceil(128 / max(h, w)))


def _warn(text: str) -> str:
    return f'<div class="warn">{text}</div>'


def _method_head(e: _Method, xs: np.ndarray) -> list[str]:
    """The start of a method's section: title, description, paper, parameters, data and notes,
    and why it failed (when it did)."""
    info = e.info
    parts = [f'<section id="{_esc(e.anchor)}">']
    timing = []
    if e.fit_seconds is not None:
        timing.append(f"fit {e.fit_seconds:.2f} s")
    if e.explain_seconds is not None:
        timing.append(f"explain {e.explain_seconds:.3f} s for {len(xs)} samples")
    parts.append(f'<h2><span class="swatch" style="background:{e.colour}"></span>{_esc(e.label)} '
                 f'<span class="badge">{_esc(info.family)}</span>'
                 f'<span class="meta">{_esc(" · ".join(timing))}</span></h2>')
    rows = [("description", _esc(info.description)), ("reference", _esc(info.reference))]
    given = e.params
    ps = []
    for k, (default, doc) in info.params.items():
        if k in given and given[k] is not None:
            ps.append(f"<b>{_esc(k)}</b> = {_esc(_param_text(given[k]))} "
                      f'<span class="badge" title="{_esc(doc)}">default {_esc(default)}</span>')
        else:
            ps.append(f'{_esc(k)} = {_esc(default)} <span class="badge" title="{_esc(doc)}">default</span>')
    rows.append(("parameters", "<br>".join(ps) if ps else "none"))
    if e.fit_note:
        rows.append(("data", _esc(e.fit_note)))
    if e.notes:
        rows.append(("note", "<br>".join(_esc(t) for t in e.notes)))
    parts.append('<table class="kv">' + "".join(f"<tr><th>{k}</th><td>{v}</td></tr>" for k, v in rows) + "</table>")
    if e.error is not None:
        if e.explainer is None:
            parts.append(_warn("This method cannot run on this model (it needs onnxplain's engine, which runs its "
                               f"backward pass): <code>{_esc(e.error)}</code>"))
        else:
            parts.append(_warn(f"This method failed on the model or the input: <code>{_esc(e.error)}</code>"))
    return parts


def _method_section(e: _Method, xs: np.ndarray, show: int, zoom: int) -> str:
    parts = _method_head(e, xs)
    if e.error is None and e.relevance is not None:
        over, heat = [], []
        for i in range(min(show, len(xs))):
            r = e.relevance[i]
            s = float(r.sum())
            cap = f"#{i} · ΣR = {_fmt(s)}"
            over.append(_tile(viz.png_bytes(viz.upscale(viz.overlay(r, xs[i]), zoom)),
                              f"{e.label} over sample {i}", cap))
            heat.append(_tile(viz.png_bytes(viz.upscale(viz.heatmap(r), zoom)), f"{e.label} heatmap of sample {i}",
                              f"#{i}"))
        parts.append('<div class="rowlabel">over the input</div><div class="tiles">' + "".join(over) + "</div>")
        parts.append('<div class="rowlabel">heatmap</div><div class="tiles">' + "".join(heat) + "</div>")
        parts.append(_legend())
    rules = {}
    if e.info.family in ("lrp", "deep_taylor") and e.explainer is not None:
        try:
            rules = e.explainer.node_rules
        except Exception:  # noqa: BLE001 - a method without per-node rules
            rules = {}
    if rules:
        body = "".join(f"<tr><td>{_esc(k)}</td><td>{_esc(v)}</td></tr>" for k, v in rules.items())
        parts.append(f"<details><summary>rule per node ({len(rules)})</summary>"
                     f"<table><tr><th>node</th><th>rule</th></tr>{body}</table></details>")
    parts.append("</section>")
    return "".join(parts)


def _tabular_method_section(e: _Method, xs: np.ndarray, outputs: np.ndarray, targets: np.ndarray,
                            names: list[str], show: int) -> str:
    """A method's section for tabular data: the bar charts of the first ``show`` instances beside the
    average contribution of their feature values (explainVis), and the mean over all instances."""
    parts = _method_head(e, xs)
    if e.error is None and e.relevance is not None:
        rel = e.relevance
        f = xs.shape[1]
        avg = viz.value_averages(rel, xs, targets=targets)
        top = min(f, _TABULAR_TOP)
        xlabel = _tabular_axis(e)
        charts = []
        for i in range(min(show, len(xs))):
            t = int(targets[i])
            head = f"#{i} · output {t}: f_t = {_fmt(float(outputs[i, t]))} · ΣR = {_fmt(float(rel[i].sum()))}"
            png = viz.feature_bars(rel[i], names, average=avg[i], values=xs[i], top=top, title=head, xlabel=xlabel,
                                   width=4.4, png=True)
            charts.append(_chart(png, f"{e.label}: contributions of the features of sample {i}"))
        shown = "every feature" if top == f else f"the {top} of {f} features with the largest |R|"
        parts.append('<div class="rowlabel">each instance (explainVis, Robnik-Šikonja &amp; Kononenko 2008): its '
                     "contributions (narrow bars, red for the explained output, blue against) beside the average "
                     "contribution of the same feature value over the data (pale bars: the mean R of this feature "
                     f"over those of the {len(xs)} explained samples with a like value, explained for the same "
                     "output; continuous features grouped by quartile); "
                     f"{shown}, sorted by |R|; the instance's values on the right</div>")
        parts.append(f'<div class="charts">{"".join(charts)}</div>')
        top_mean = min(f, _TABULAR_TOP_MEAN)
        png = viz.feature_summary(rel, names, top=top_mean, width=5.2, png=True, xlabel=xlabel,
                                  title=f"mean over the {len(xs)} explained samples")
        shown = "every feature" if top_mean == f else f"the {top_mean} of {f} features with the largest mean |R|"
        parts.append('<div class="rowlabel">over the data: mean |R| per feature (grey: how much it matters) and mean R '
                     f"(red/blue: in which direction), {shown}</div>")
        parts.append(f'<div class="charts">{_chart(png, f"{e.label}: mean contributions over the samples")}</div>')
    parts.append("</section>")
    return "".join(parts)


def _tabular_axis(e: _Method) -> str:
    """The label of a tabular chart's contribution axis: what the method's relevance measures."""
    if e.name == "occlusion":
        return "occlusion: drop of f_t when the feature is replaced by the fill"
    if e.name == "prediction_difference":
        measure = str(e.params.get("measure") or "weight_of_evidence")
        return {"weight_of_evidence": "prediction difference: weight of evidence (log2 odds)",
                "information_difference": "prediction difference: information difference (bits)",
                "probability_difference": "prediction difference: difference of probabilities"}.get(
                    measure, f"prediction difference ({measure})")
    if e.name == "lime":
        return "LIME: coefficient of the feature's bin in the local surrogate"
    return f"{e.name}: relevance for the explained output"


def _chart(png: bytes, alt: str) -> str:
    """A figure rendered at 150 dpi, shown at the size of 100 dpi (sharp on high-density screens)."""
    width = round(struct.unpack(">I", png[16:20])[0] * 100 / 150)
    return f'<img class="chart" style="width:{width}px" src="{_data_uri(png)}" alt="{_esc(alt)}">'


def _legend() -> str:
    bar = viz.png_bytes(viz.colourbar(200, 10))
    return (f'<div class="legend"><span>negative (against the target)</span>{_img(bar, "colour scale")}'
            "<span>positive (for the target)</span><span>· white = 0; each map is scaled to the 99.5th "
            "percentile of its |R|</span></div>")


def _mean_std(v: np.ndarray) -> str:
    v = np.asarray(v, dtype=np.float64)
    ok = v[np.isfinite(v)]
    if not ok.size:
        return ('<span title="undefined for every sample (e.g. a constant explanation has no correlation)">'
                "undefined</span>")
    mean, std = float(ok.mean()), float(ok.std())
    if std <= 1e-12 * abs(mean):
        std = 0.0  # rounding noise of equal values
    text = f"{_fmt(mean)} ± {_fmt(std)}"
    if ok.size < v.size:
        text += f' <span title="undefined for {v.size - ok.size} of {v.size} samples, left out">*</span>'
    return text


def _metric_table(entries: list[_Method], metrics: list[str]) -> str:
    cols = [c for c in _COLUMNS if c[2] in metrics]
    head = "".join(f'<th title="{_esc(doc)}">{_esc(h)} {arrow}</th>' for _k, h, _m, doc, arrow in cols)
    rows = []
    for e in entries:
        cells = []
        for key, _h, metric, _doc, _a in cols:
            if key in e.scores:
                cells.append(f'<td class="num">{_mean_std(e.scores[key])}</td>')
            else:
                why = e.metric_errors.get(metric, "not measured")
                cells.append(f'<td class="num" title="{_esc(why)}">n/a</td>')
        t = "–" if e.explain_seconds is None else f"{e.explain_seconds:.3f}"
        rows.append(f'<tr><td><span class="swatch" style="background:{e.colour};width:10px;height:10px;'
                    f'display:inline-block;border-radius:2px;margin-right:6px"></span>'
                    f'<a href="#{_esc(e.anchor)}">{_esc(e.label)}</a></td>'
                    f'<td class="num">{t}</td>{"".join(cells)}</tr>')
    return (f'<table><tr><th>method</th><th>explain (s)</th>{head}</tr>{"".join(rows)}</table>'
            '<p class="note">mean ± standard deviation over the samples; ↑ higher is better, ↓ lower is better. '
            "Hover a header for its definition.</p>")


def _flatten(value: Any, prefix: str = "") -> list[tuple[str, str]]:
    """(key, text) rows of whatever ``reliability`` returns: mappings, dataclasses, named tuples,
    arrays or numbers."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        value = dataclasses.asdict(value)
    elif hasattr(value, "_asdict"):
        value = value._asdict()
    if isinstance(value, Mapping):
        rows = []
        for k, v in value.items():
            rows += _flatten(v, f"{prefix} · {k}" if prefix else str(k))
        return rows
    if isinstance(value, (float, int, np.floating, np.integer)):
        return [(prefix, _fmt(float(value)))]
    if isinstance(value, np.ndarray) and value.size <= 16:
        return [(prefix, ", ".join(_fmt(float(v)) for v in value.ravel()))]
    return [(prefix, str(value))]


def _reliability_html(reliability: Any, error: str | None) -> str:
    if error is not None:
        return _warn(f"The reliability of the metrics could not be computed: <code>{_esc(error)}</code>")
    if reliability is None:
        return '<p class="note">Reliability needs two methods or more.</p>'
    head = "<h3>Reliability of the metrics (Tomsett et al. 2020)</h3>"
    names = dict((k, h) for k, h, *_ in _COLUMNS)
    rater = getattr(reliability, "inter_rater", None)
    method = getattr(reliability, "inter_method", None)
    internal = getattr(reliability, "internal_consistency", None)
    if not (isinstance(rater, Mapping) and isinstance(method, Mapping) and isinstance(internal, Mapping)):
        rows = _flatten(reliability)  # another result type: show what it holds
        body = "".join(f'<tr><td>{_esc(k)}</td><td class="num">{_esc(v)}</td></tr>' for k, v in rows)
        return f"{head}<table><tr><th>measure</th><th>value</th></tr>{body}</table>"
    body = "".join(f'<tr><td>{_esc(names.get(k, k))}</td><td class="num">{_fmt(float(rater[k]))}</td>'
                   f'<td class="num">{_fmt(float(method.get(k, float("nan"))))}</td></tr>' for k in rater)
    parts = [head, '<table><tr><th>metric</th><th title="Krippendorff\'s alpha (ordinal) of the samples\' rankings '
             'of the methods">inter-rater α</th><th title="mean Spearman rho between the per-sample scores of two '
             f'methods">inter-method ρ</th></tr>{body}</table>']
    if internal:
        keys = [k for k in rater]
        cells = []
        for a in keys:
            row = [f"<td>{_esc(names.get(a, a))}</td>"]
            for b in keys:
                v = 1.0 if a == b else internal.get((a, b), internal.get((b, a), float("nan")))
                row.append(f'<td class="num">{_fmt(float(v))}</td>')
            cells.append("<tr>" + "".join(row) + "</tr>")
        heads = "".join(f"<th>{_esc(names.get(k, k))}</th>" for k in keys)
        parts.append('<div class="rowlabel">internal consistency: Spearman ρ between two metrics\' per-sample scores, '
                     f"mean over the methods</div><table><tr><th></th>{heads}</tr>{''.join(cells)}</table>")
    parts.append('<p class="note">Inter-rater α near 1: the samples rank the methods alike, so the metric separates '
                 "them reliably; near 0: the ranking is no better than chance on these samples. Inter-method ρ: "
                 "whether a sample scored high for one method is scored high for the others. Internal consistency: "
                 "whether two metrics measure the same thing. (LeRF and randomisation are better when lower, so "
                 "their correlations with the other metrics are expected to be negative.)</p>")
    return "".join(parts)


def _figure_section(anchor: str, heading: str, intro: str, fig_png: bytes | None, problems: list[str]) -> str:
    parts = [f'<section id="{anchor}"><h2>{heading}</h2><p class="note">{intro}</p>']
    if fig_png is not None:
        # Rendered at 150 dpi, shown at the size of 100 dpi: sharp on high-density screens.
        width = round(struct.unpack(">I", fig_png[16:20])[0] * 100 / 150)
        parts.append(f'<img class="figure" style="width:{width}px" src="{_data_uri(fig_png)}" alt="{_esc(heading)}">')
    for p in problems:
        parts.append(_warn(p))
    parts.append("</section>")
    return "".join(parts)


def _problems(entries: list[_Method], metric: str) -> list[str]:
    # A method that cannot run on the model says so in its own section and the summary.
    return [f"{_esc(metric)} for <b>{_esc(e.label)}</b> could not be computed: <code>{_esc(why)}</code>"
            for e in entries if e.explainer is not None for m, why in e.metric_errors.items() if m == metric]


def _page(*, model: Model, source: Any, xs: np.ndarray, outputs: np.ndarray, targets: np.ndarray, target_how: str,
          entries: list[_Method], metrics: list[str], aopc_args: Mapping[str, Any],
          metric_params: Mapping[str, Mapping[str, Any]], reliability: Any, reliability_error: str | None,
          show: int, title: str | None, fit_data_given: bool, fit_data_text: str, seconds: float,
          feature_names: list[str] | None = None, tabular_fill: tuple[np.ndarray, str] | None = None,
          engine_note: str | None = None, names_given: bool = False) -> str:
    from . import __version__

    tabular = xs.ndim == 2
    n = xs.shape[0]
    name = title or (Path(os.fspath(source)).name if source is not None else "ONNX model")
    colours = {e.label: e.colour for e in entries}
    body: list[str] = []

    nav = [("summary", "summary"), ("inputs", "inputs")]
    nav += [(e.anchor, e.label) for e in entries]
    if "aopc" in metrics:
        nav.append(("aopc", "AOPC curves"))
    if "randomisation" in metrics:
        nav.append(("randomisation", "model randomisation"))
    if metrics:
        nav.append(("metrics", "metrics"))
    nav.append(("model", "model"))

    stamp = datetime.datetime.now().astimezone().strftime("%Y-%m-%d %H:%M %Z")
    body.append(f'<header><h1>Explanations of {_esc(name)}</h1><div class="sub">onnxplain {_esc(__version__)} · '
                f"{_esc(stamp)} · {n} sample{'s' if n != 1 else ''} · {len(entries)} "
                f"method{'s' if len(entries) != 1 else ''}</div></header>")
    body.append("<nav>" + "".join(f'<a href="#{_esc(a)}">{_esc(t)}</a>' for a, t in nav) + "</nav>")

    # Summary.
    if tabular:
        f = xs.shape[1]
        given = "named by feature_names" if names_given else f"named x0 .. x{f - 1} (no feature_names given)"
        shape_text = f"; this batch {n} × {f} (tabular: {f} features, {_esc(given)})"
    else:
        c, h, w = xs.shape[1:]
        shape_text = f"; this batch {n} × {c} × {h} × {w} ({'colour' if c == 3 else 'grey'})"
    engine = ("onnxplain's engine" if model.backend == "onnxplain" else
              f"onnxruntime: {_esc(_backend_reason(model))}; only the forward-only methods (occlusion, prediction "
              "difference, LIME) and the metrics AOPC and faithfulness apply")
    rows = [("model", _esc(name)), ("input", f"{_esc(model.inputs[0])}{shape_text}"),
            ("explained output", _esc(target_how) + f" of <code>{_esc(model.outputs[0].name)}</code>"),
            ("forward passes", engine),
            ("methods", ", ".join(f'<a href="#{_esc(e.anchor)}">{_esc(e.label)}</a>' for e in entries)),
            ("metrics", _metrics_text(metrics, engine_note)),
            ("drawn", f"the first {min(show, n)} of {n} samples"),
            ("time", f"{seconds:.1f} s for the explanations and metrics")]
    if tabular and tabular_fill is not None:
        rows.insert(4, ("feature fill", f"the per-feature mean of {_esc(tabular_fill[1])}: what occlusion (by name), "
                                        "AOPC and faithfulness replace a feature with"))
    fitted = [e for e in entries if e.fit_note and e.fit_seconds is not None]
    if fitted:
        where = (f"fit_data ({fit_data_text})" if fit_data_given else
                 "the explained samples themselves (x; no fit_data was given)")
        rows.append(("fitted on", f"{_esc(where)}: {', '.join(_esc(e.label) for e in fitted)}"))
    body.append('<section id="summary"><h2>Summary</h2><table class="kv">'
                + "".join(f"<tr><th>{k}</th><td>{v}</td></tr>" for k, v in rows) + "</table>")
    for e in entries:
        if e.error:
            verb = "cannot run on this model" if e.explainer is None else "failed"
            body.append(_warn(f'<a href="#{_esc(e.anchor)}">{_esc(e.label)}</a> {verb}: <code>{_esc(e.error)}</code>'))
    body.append("</section>")

    # Inputs.
    pred = outputs.argmax(axis=1)
    if tabular:
        assert feature_names is not None
        body.append(_tabular_inputs(xs, outputs, targets, pred, feature_names, show))
    else:
        zoom = _zoom(*xs.shape[2:])
        tiles = []
        for i in range(min(show, n)):
            cap = f"#{i} · target {int(targets[i])}"
            if int(pred[i]) != int(targets[i]):
                cap += f" (predicted {int(pred[i])})"
            cap += f"<br>f_t = {_esc(_fmt(float(outputs[i, targets[i]])))}"
            tiles.append(_tile(viz.png_bytes(viz.upscale(viz.rgb(xs[i]), zoom)), f"input {i}", cap))
        body.append('<section id="inputs"><h2>Inputs</h2><p class="note">Each image scaled to its own [min, max]; '
                    f"f_t is the explained output.</p><div class=\"tiles\">{''.join(tiles)}</div></section>")

    # One section per method.
    for e in entries:
        if tabular:
            assert feature_names is not None
            body.append(_tabular_method_section(e, xs, outputs, targets, feature_names, show))
        else:
            body.append(_method_section(e, xs, show, zoom))

    # AOPC curves.
    if "aopc" in metrics:
        curves = {e.label: e.curves for e in entries if e.curves}
        region = int(aopc_args["region"])
        if tabular:
            xlabel = "features perturbed" + (f" ({region} consecutive features each)" if region > 1 else "")
        else:
            xlabel = f"regions perturbed ({region}×{region} pixels each)"
        png = (viz.figure_png(viz.aopc_figure(curves, colours, region=region, xlabel=xlabel,
                                              unit="features" if tabular else "regions")) if curves else None)
        extra = ", ".join(f"{k}={_param_text(v)}" for k, v in aopc_args.items())
        if tabular:
            what = ("Feature flipping (Samek et al. 2017 on tabular data): the features are replaced "
                    + ("by the per-feature mean of " + _esc(tabular_fill[1]) + " "
                       if tabular_fill is not None and "perturbation" not in metric_params.get("aopc", {}) else "")
                    + "one at a time, in the order of their relevance, cumulatively, and the explained output f_t "
                    "is measured after each step. A faithful explanation makes f_t drop fast when the most relevant "
                    "features go first (MoRF) and slowly when the least relevant go first (LeRF).")
        else:
            what = ("Pixel flipping (Samek et al. 2017): regions of the input are replaced in the order of their "
                    "relevance and the explained output f_t is measured after each step. A faithful explanation "
                    "makes f_t drop fast when the most relevant regions go first (MoRF) and slowly when the least "
                    "relevant go first (LeRF).")
        intro = (f"{what} Lines: mean over the samples; bands: ± one standard error. Parameters: {_esc(extra)}.")
        body.append(_figure_section("aopc", "AOPC curves (MoRF and LeRF)", intro, png, _problems(entries, "aopc")))

    # Model randomisation.
    if "randomisation" in metrics:
        intro = ("Model-randomisation sanity check (Adebayo et al. 2018): the layers' weights are randomised from "
                 "the output layer down, one more layer at each step, and each explanation is compared with the "
                 "explanation of the trained model. An explanation that depends on what the model learnt falls "
                 "towards 0; one that stays similar explains the input rather than the model. Lines: mean over "
                 "the samples; bands: ± one standard error.")
        if engine_note is not None:
            body.append(_figure_section("randomisation", "Model randomisation", intro, None,
                                        [f"Not run for this model: {_esc(engine_note)}."]))
        else:
            res = {e.label: e.randomisation for e in entries if e.randomisation}
            sim = str(metric_params.get("randomisation", {}).get("similarity", "spearman"))
            png = viz.figure_png(viz.randomisation_figure(res, colours, similarity=sim)) if res else None
            body.append(_figure_section("randomisation", "Model randomisation", intro, png,
                                        _problems(entries, "randomisation")))

    # Metric table and reliability.
    if metrics:
        problems = [p for m in ("faithfulness",) if m in metrics for p in _problems(entries, m)]
        left_out = [e.label for e in entries if e.relevance is None]
        note = ""
        if len(entries) > 1 and left_out and reliability is not None:
            note = (f'<p class="note">Left out of the reliability: {_esc(", ".join(left_out))} (no explanation).'
                    "</p>")
        # The randomisation column only where the check could run (the section says why not).
        table_metrics = [m for m in metrics if not (m == "randomisation" and engine_note is not None)]
        body.append('<section id="metrics"><h2>Metrics</h2>' + _metric_table(entries, table_metrics)
                    + "".join(_warn(p) for p in problems)
                    + (_reliability_html(reliability, reliability_error) if len(entries) > 1 else "") + note
                    + "</section>")

    body.append(f'<section id="model"><h2>Model</h2><pre>{_esc(model.summary())}</pre></section>')
    body.append(f"<footer>Written by onnxplain {_esc(__version__)}. Self-contained: every image is embedded; "
                "the file needs no network.</footer>")
    return ("<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
            '<meta name="viewport" content="width=device-width, initial-scale=1">'
            f"<title>onnxplain report: {_esc(name)}</title><style>{_CSS}</style></head>"
            f"<body><main>{''.join(body)}</main></body></html>\n")


def _metrics_text(metrics: list[str], engine_note: str | None) -> str:
    run = [m for m in metrics if not (m == "randomisation" and engine_note is not None)]
    text = _esc(", ".join(run)) + " on all samples" if run else "none"
    if len(run) < len(metrics):
        text += ' (model randomisation not run: <a href="#randomisation">see why</a>)'
    return text


def _tabular_inputs(xs: np.ndarray, outputs: np.ndarray, targets: np.ndarray, pred: np.ndarray, names: list[str],
                    show: int) -> str:
    """The drawn instances as a table: one column per instance, one row per feature."""
    k = min(show, len(xs))
    head = "".join(f'<th class="num">#{i}</th>' for i in range(k))
    top = [("target", [str(int(targets[i])) + ("" if int(pred[i]) == int(targets[i]) else
                                               f" (predicted {int(pred[i])})") for i in range(k)]),
           ("f_t", [_fmt(float(outputs[i, targets[i]])) for i in range(k)])]
    outs = "".join(f'<tr class="out"><th>{_esc(label)}</th>' + "".join(f'<td class="num">{_esc(v)}</td>' for v in vals)
                   + "</tr>" for label, vals in top)
    rows = "".join(f"<tr><th>{_esc(names[j])}</th>" + "".join(f'<td class="num">{_esc(_value(xs[i, j]))}</td>'
                                                           for i in range(k)) + "</tr>" for j in range(xs.shape[1]))
    intro = ('<section id="inputs"><h2>Inputs</h2><p class="note">The first instances: their explained output f_t '
             "and their feature values.</p>")
    if xs.shape[1] <= _TABULAR_TOP:
        return (f'{intro}<div class="scroll"><table class="inputs"><tr><th>feature</th>{head}</tr>{outs}{rows}'
                "</table></div></section>")
    # Many features: the outputs in view, the values one click away.
    return (f'{intro}<div class="scroll"><table class="inputs"><tr><th></th>{head}</tr>{outs}</table></div>'
            f"<details><summary>the values of the {xs.shape[1]} features</summary><div class=\"scroll\">"
            f'<table class="inputs"><tr><th>feature</th>{head}</tr>{rows}</table></div></details></section>')


def _value(v: float) -> str:
    v = float(v)
    return str(int(v)) if np.isfinite(v) and v == int(v) and abs(v) < 1e6 else f"{v:.4g}"
