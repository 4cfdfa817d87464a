"""Explainers: a method (composite of rules + driver) bound to a loaded model.

>>> ex = ox.explainer(model, "lrp.epsilon", epsilon=1e-6)
>>> R = ex.explain(x)                       # same shape as x; target = argmax per sample
>>> R, delta = ex.explain(x, target=3, return_delta=True)

The computation happens in the C++ core; this module validates arguments, converts them and
presents results.
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Union

import numpy as np

from ._fit import explain_progress as _progress_callback
from ._native import core
from .model import Model, load

TargetLike = Union[None, int, Sequence[int], np.ndarray]
ProgressLike = Union[None, bool, Callable[[int, int], Any]]


@dataclass(frozen=True)
class MethodInfo:
    """What ``ox.methods()`` describes for each method."""

    name: str
    family: str
    description: str
    reference: str
    params: dict[str, tuple[str, str]]  # name -> (default, doc)

    def __str__(self) -> str:
        ps = ", ".join(f"{k}={v[0]}" for k, v in self.params.items())
        return f"{self.name}({ps}): {self.description} [{self.reference}]"


def methods() -> dict[str, MethodInfo]:
    """Every method by name, with its family, description, the paper and its parameters."""
    from .perturbation import PYTHON_METHODS

    out = {}
    for name, family, desc, ref, params in core.methods():
        out[name] = MethodInfo(name, family, desc, ref, {p: (d, doc) for p, d, doc in params})
    for name, cls in PYTHON_METHODS.items():
        out[name] = MethodInfo(name, cls.family, cls.description, cls.reference, dict(cls.params))
    return out


def _rule_choice(key: str, value: Any) -> tuple[str, str, dict[str, float], dict[str, np.ndarray]]:
    if isinstance(value, str):
        return key, value, {}, {}
    pair = isinstance(value, (tuple, list)) and len(value) == 2
    if pair and isinstance(value[0], str) and isinstance(value[1], Mapping):
        numbers: dict[str, float] = {}
        arrays: dict[str, np.ndarray] = {}
        for k, v in value[1].items():
            if np.ndim(v) == 0 and not isinstance(v, np.ndarray):
                numbers[str(k)] = float(v)
            else:
                arrays[str(k)] = np.require(np.asarray(v, dtype=np.float32), requirements="C")
        return key, value[0], numbers, arrays
    raise ValueError(
        f"rules[{key!r}] must be a rule name such as 'epsilon' or a pair ('gamma', {{'gamma': 0.5}}), got {value!r}"
    )


class Explainer:
    """A method bound to a model. Create with :func:`explainer`."""

    def __init__(self, model: Model, method: str, /, **params: Any) -> None:
        info = methods().get(method)
        if info is None:
            known = ", ".join(methods())
            raise ValueError(f"unknown method {method!r}; known methods: {known}")
        self.model = model
        self.method = method
        self.info = info
        self.params = dict(params)
        for k in params:
            if k not in info.params:
                names = ", ".join(info.params) or "none"
                raise ValueError(f"method {method!r} has no parameter {k!r} (its parameters: {names})")
        from .perturbation import BACKEND_METHODS, PYTHON_METHODS

        # Methods computed in Python on batched forward passes (perturbation.py); no core explainer.
        # A model run by onnxruntime offers only those (and occlusion's Python twin).
        python_methods = PYTHON_METHODS
        if model.backend != "onnxplain":
            python_methods = {**BACKEND_METHODS, **PYTHON_METHODS}
            if method not in python_methods:
                raise model.requires_engine(f"{method} (it walks the graph backwards)")
        self._py = python_methods[method](model, **params) if method in python_methods else None
        self._ex: Any = None
        if self._py is not None:
            return
        numbers: dict[str, float] = {}
        strings: dict[str, str] = {}
        arrays: dict[str, np.ndarray] = {}
        rules: list[tuple[str, str, dict[str, float], dict[str, np.ndarray]]] = []
        for k, v in params.items():
            if v is None:
                continue
            if k == "rules":
                if not isinstance(v, Mapping):
                    raise ValueError("rules must be a dict {key: rule}")
                rules = [_rule_choice(str(key), val) for key, val in v.items()]
            elif isinstance(v, str):
                strings[k] = v
            elif isinstance(v, (bool, int, float, np.integer, np.floating)):
                if not math.isfinite(float(v)):
                    raise ValueError(f"parameter {k}={v!r} must be finite")
                numbers[k] = float(v)
            else:
                arrays[k] = np.require(np.asarray(v, dtype=np.float32), requirements="C")
        self._ex = core.Explainer(model._m, method, numbers, strings, arrays, rules)

    @property
    def node_rules(self) -> dict[str, str]:
        """The rule each node gets, by node name."""
        if self._py is not None:
            return {}
        return {name: rule for (name, _op, _kind), rule in zip(self.model.nodes, self._ex.node_rules)}

    # ---- learning from data (pattern.*) ----------------------------------------------------------

    @property
    def learns(self) -> bool:
        """Whether :meth:`fit` changes the explanations (``pattern.*`` with estimator linear or relu)."""
        return bool(self._py.learns) if self._py is not None else bool(self._ex.learns)

    def fit(self, data: Any = None, batch_size: int = 64, progress: ProgressLike = None,
            threads: int | None = None) -> Explainer:
        """Learns what the method needs from data: the pattern statistics (Kindermans et al. 2018).

        One streaming forward pass; every linear op's statistics are sums that merge by addition,
        so fitting continues across calls (use :meth:`partial_fit` for one batch at a time).
        Methods that learn nothing (every method but ``pattern.*`` with estimator ``linear`` or
        ``relu``) return at once.

        Parameters
        ----------
        data : array_like, dict, iterable of batches, or dask array
            An array of samples (split into batches of ``batch_size`` along axis 0), a dict of
            arrays for multi-input models, any iterable of batches (arrays, dicts, or tuples/lists
            whose first element is the input, such as ``(x, y)`` pairs), or a dask array, whose
            blocks are fitted on the workers and merged (:func:`onnxplain.dask.fit`).
        batch_size : int
            Samples per forward pass when ``data`` is an array.
        progress : None, bool or callable
            A progress bar (tqdm when installed) on a terminal for ``None``, always for ``True``,
            never for ``False``; a callable receives ``(done, total)``, total ``None`` when unknown.
        threads : int, optional
            Threads for the forward passes (default: the model's).
        """
        if not self.learns:
            return self
        if data is None:
            raise ValueError(f"{self.method} learns from data: fit(data) needs samples")
        if _is_dask(data):
            # Each block is fitted on a worker and the statistics are merged here; no progress bar.
            from .dask import fit as dask_fit

            return dask_fit(self, data, batch_size=batch_size, threads=threads)
        if int(batch_size) < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        from ._fit import iter_batches, progress_reporter

        batches, total = iter_batches(data, int(batch_size))
        report = progress_reporter(progress, f"fit {self.method}", total)
        done = 0
        try:
            for batch in batches:
                done += self._fit_batch(batch, threads)
                if report is not None:
                    report(done, total)
        finally:
            if report is not None and hasattr(report, "close"):
                report.close()
        if done == 0:
            raise ValueError("fit(data): the data held no samples")
        return self

    def partial_fit(self, batch: Any, threads: int | None = None) -> Explainer:
        """Adds one batch to the statistics (scikit-learn's convention); returns ``self``."""
        self._fit_batch(batch, threads)
        return self

    def _fit_batch(self, batch: Any, threads: int | None) -> int:
        """Adds one batch to the statistics; returns its number of samples."""
        arrays = self.model._prepare(batch)
        if self._py is not None:
            if self._py.learns:
                self._py.fit_batch(arrays)
        elif self.learns:
            self._ex.partial_fit(arrays, threads or self.model.threads)
        return int(arrays[0].shape[0]) if arrays[0].ndim else 1

    @property
    def statistics(self) -> PatternStatistics | None:
        """The pattern statistics collected so far (``None`` before any fit); picklable, mergeable."""
        s = self._ex.statistics() if self.info.family == "pattern" else None
        return None if s is None else PatternStatistics(s)

    @statistics.setter
    def statistics(self, stats: PatternStatistics | None) -> None:
        if self.info.family != "pattern":
            raise ValueError(f"method {self.method!r} does not learn from data")
        if stats is not None and not isinstance(stats, PatternStatistics):
            raise ValueError(f"statistics must be an onnxplain.PatternStatistics, got {type(stats).__name__}")
        self._ex.set_statistics(stats._s if stats is not None else core.Statistics())

    @property
    def patterns(self) -> dict[str, dict[str, np.ndarray | None]]:
        """Per linear op: ``a_pos`` (the pattern, shaped like the op's weight) and ``a_neg``
        (estimator ``relu``: the pattern of the inactive rows; otherwise ``None``)."""
        self._require_pattern()
        return {node: {"a_pos": ap, "a_neg": an} for node, ap, an, _ in self._ex.patterns(self.model.threads)}

    @property
    def fit_report(self) -> dict[str, dict[str, float]]:
        """Per linear op: neurons, rows seen, neurons that never fired (a+ = 0) or were never
        inactive (a- = 0), and patterns whose denominator w·cov was 0 (replaced by 1, as iNNvestigate)."""
        self._require_pattern()
        return {node: dict(rep) for node, _ap, _an, rep in self._ex.patterns(self.model.threads)}

    def _require_pattern(self) -> None:
        if self.info.family != "pattern":
            raise ValueError(f"method {self.method!r} has no patterns (only pattern.net and pattern.attribution do)")

    def save(self, path: str | os.PathLike[str], statistics: bool = True) -> None:
        """Writes the explainer (model, method, parameters, fitted patterns and, with
        ``statistics=True``, the statistics so that fitting can go on) to one ``.oxp`` file that
        :func:`onnxplain.load_explainer` and the C++ library read (format: ARCHITECTURE.md)."""
        if self._py is not None:
            raise ValueError(f"{self.method} explainers are not saved to .oxp files (they are computed in Python); "
                             "pickle the explainer instead")
        data = self._ex.save_bytes(self.model.to_bytes(), bool(statistics), self.model.threads)
        tmp = os.fspath(path) + ".tmp"
        with open(tmp, "wb") as f:
            f.write(data)
        os.replace(tmp, os.fspath(path))

    def __reduce__(self) -> tuple[Any, ...]:
        if self._py is not None:
            return (_rebuild_python_explainer, (self.model, self.method, self.params, self._py))
        if self.info.family == "pattern":
            # The .oxp bytes: the model once, the fitted patterns (not recomputed on the other
            # side) and the statistics.
            return (_explainer_from_oxp, (self._ex.save_bytes(self.model.to_bytes(), True, self.model.threads),
                                          self.model.threads))
        return (_rebuild_explainer, (self.model, self.method, self.params))

    def _targets(self, target: TargetLike, n: int) -> list[int]:
        if target is None:
            return []
        out_shape = self.model.outputs[0].shape
        k = None
        if len(out_shape) >= 1 and all(d is not None for d in out_shape[1:]):
            k = int(np.prod(out_shape[1:])) if len(out_shape) > 1 else 1
        if isinstance(target, (int, np.integer)):
            targets = [int(target)] * n
        else:
            arr = np.asarray(target)
            if arr.ndim != 1 or not np.issubdtype(arr.dtype, np.integer):
                raise ValueError(f"target must be None, an int, or one int per sample; got {target!r}")
            if len(arr) != n:
                raise ValueError(f"target has {len(arr)} entries for a batch of {n}")
            targets = [int(t) for t in arr]
        if k is not None:
            bad = [t for t in targets if not 0 <= t < k]
            if bad:
                raise ValueError(f"target {bad[0]} is out of range: output '{self.model.outputs[0].name}' has {k} "
                                 f"values per sample (0..{k - 1})")
        return targets

    def explain(self, x: Any, target: TargetLike = None, return_delta: bool = False,
                threads: int | None = None, progress: ProgressLike = None) -> Any:
        """Explains a batch.

        Parameters
        ----------
        x : array_like or dict
            A batch (as for :meth:`Model.predict`).
        target : None, int or sequence of int
            Output to explain: None = the argmax per sample, an int for all samples, or one per sample.
        return_delta : bool
            Also return, per sample, how far the sum of the relevance is from what the method
            promises (f_t(x) for LRP and Deep Taylor, f_t(x) - f_t(baseline) for integrated
            gradients), as Captum's convergence delta.
        threads : int, optional
            Threads for this call (default: the model's).
        progress : None, bool or callable
            Progress of the multi-pass methods (integrated gradients, SmoothGrad), reported after
            each batch of passes: ``None`` draws a bar on stderr when it is a terminal and the
            method needs more than one batch, ``True`` always, ``False`` never; a callable is
            called as ``progress(done, total)`` instead. Ctrl-C stops those methods between
            batches.

        Returns
        -------
        numpy.ndarray (or a list, one per input, for multi-input models), and the deltas when asked.
        """
        arrays = self.model._prepare(x)
        n = arrays[0].shape[0] if arrays[0].ndim else 1
        targets = self._targets(target, n)
        report = _progress_callback(progress, self.method)
        if self._py is not None:
            if return_delta:
                raise ValueError(f"return_delta: {self.method} promises no sum (only LRP, Deep Taylor, DeepLIFT and "
                                 "integrated gradients do)")
            if not targets:
                targets = [int(t) for t in self._argmax(arrays, threads)]
            try:
                return self._py.explain(arrays, np.asarray(targets, dtype=np.int64), threads or self.model.threads,
                                        report)
            finally:
                if report is not None and hasattr(report, "close"):
                    report.close()
        res = self._ex.explain(arrays, targets, threads or self.model.threads, report)
        rel = list(res["relevance"])
        out: Any = rel[0] if len(rel) == 1 else rel
        if not return_delta:
            return out
        fam = self.info.family
        total = sum(r.reshape(r.shape[0], -1).sum(axis=1, dtype=np.float64) for r in rel) if n else np.zeros(0)
        fx = np.asarray(res["target_values"], np.float64)
        if fam in ("lrp", "deep_taylor"):
            delta = total - fx
        elif self.method == "integrated_gradients" or fam == "deeplift":
            delta = total - (fx - np.asarray(res["reference_values"], np.float64))
        else:
            raise ValueError(f"return_delta: {self.method} promises no sum (only LRP, Deep Taylor, DeepLIFT and "
                             "integrated gradients do)")
        return out, delta


    def _argmax(self, arrays: list[np.ndarray], threads: int | None) -> np.ndarray:
        y = self.model.predict(arrays[0] if len(arrays) == 1 else list(arrays), threads)
        return np.asarray(y).reshape(len(y), -1).argmax(axis=1)


class PatternStatistics:
    """Streaming statistics of every linear op, from which the patterns are computed.

    Sums over rows (a dense layer: one per sample; a convolution: one per sample and output
    position), so they merge by addition: ``s1.merge(s2)`` or ``s1 + s2`` equals fitting both
    parts at once. Picklable; ``to_bytes`` / ``from_bytes`` give a documented binary.

    ``layer(node)`` returns float64 arrays: ``rows``; per neuron ``count_pos`` (rows where the
    op's output is > 0), ``sum_y``, ``sum_y_pos``, ``sum_yy``, ``sum_yy_pos`` (y = w·x without
    bias); ``sum_x`` [G, D] (all rows, per group of a grouped convolution), ``sum_x_pos``,
    ``sum_xy``, ``sum_xy_pos`` [M, D] (neuron-major: ``np.moveaxis(W, weight_axis, 0).reshape(M, D)``
    orders the D entries), and ``weight_axis``, ``weight_shape``, ``groups``.
    """

    def __init__(self, core_stats: Any) -> None:
        self._s = core_stats

    @property
    def nodes(self) -> list[str]:
        """Names of the linear ops, in execution order."""
        return list(self._s.nodes)

    @property
    def fingerprint(self) -> int:
        """Identifies the model (structure and weights) the statistics were collected on."""
        return int(self._s.fingerprint)

    def layer(self, node: str) -> dict[str, Any]:
        return dict(self._s.layer(node))

    def merge(self, other: PatternStatistics) -> PatternStatistics:
        """The sum of both (a new object); ``ValueError`` for statistics of another model."""
        if not isinstance(other, PatternStatistics):
            raise ValueError(f"can only merge PatternStatistics, got {type(other).__name__}")
        return PatternStatistics(self._s.merge(other._s))

    def __add__(self, other: PatternStatistics) -> PatternStatistics:
        return self.merge(other)

    def to_bytes(self) -> bytes:
        return bytes(self._s.to_bytes())

    @classmethod
    def from_bytes(cls, data: bytes) -> PatternStatistics:
        return cls(core.Statistics.from_bytes(bytes(data)))

    def __reduce__(self) -> tuple[Any, ...]:
        return (PatternStatistics.from_bytes, (self.to_bytes(),))

    def __repr__(self) -> str:
        rows = [self._s.layer(n)["rows"] for n in self._s.nodes]
        return f"<PatternStatistics layers={len(rows)} rows={int(rows[0]) if rows else 0}>"


def _is_dask(data: Any) -> bool:
    if isinstance(data, Mapping):
        return any(type(v).__module__.startswith("dask") for v in data.values())
    return type(data).__module__.startswith("dask")


def _explainer_from_oxp(data: bytes, threads: int) -> Explainer:
    return load_explainer(data, threads=threads)


def _rebuild_explainer(model: Model, method: str, params: dict[str, Any]) -> Explainer:
    return Explainer(model, method, **params)


def _rebuild_python_explainer(model: Model, method: str, params: dict[str, Any], state: Any) -> Explainer:
    ex = Explainer(model, method, **params)
    ex._py = state  # keeps what fit() learned
    return ex


def load_explainer(path: str | os.PathLike[str] | bytes, model: Model | str | bytes | None = None,
                   threads: int | None = None) -> Explainer:
    """Reads an explainer written by :meth:`Explainer.save`.

    Parameters
    ----------
    path : path or bytes
        The ``.oxp`` file (or its bytes).
    model : Model, path or bytes, optional
        The model to explain; by default the one saved in the file. A model other than the one the
        explainer was fitted on (another file, changed weights) is refused with ``ValueError``.
    """
    if isinstance(path, (bytes, bytearray, memoryview)):
        data = bytes(path)
    else:
        with open(os.fspath(path), "rb") as f:
            data = f.read()
    saved = core.SavedExplainer.from_bytes(data)
    strip, fold, wino = saved.options
    if model is None:
        model = load(saved.model_bytes, strip_softmax=strip, fold_batch_norm=fold, threads=threads, winograd=wino)
    elif not isinstance(model, Model):
        model = load(model, strip_softmax=strip, fold_batch_norm=fold, threads=threads, winograd=wino)
    if int(core.model_fingerprint(model._m)) != int(saved.fingerprint):
        raise ValueError("this explainer was fitted on another model (a different file or changed weights, or "
                         "other load options); load it with the model it was saved with")
    params: dict[str, Any] = {**dict(saved.numbers), **dict(saved.strings)}
    ex = Explainer(model, saved.method, **params)
    if ex.info.family == "pattern":
        ex._ex.set_saved_patterns(saved)
    return ex


def explainer(model: Model | str | bytes, method: str, /, **params: Any) -> Explainer:
    """Binds an explanation method to a model.

    Parameters
    ----------
    model : Model, path or bytes
        A loaded model, or something :func:`onnxplain.load` accepts.
    method : str
        A name from :func:`methods` (iNNvestigate's names where it has one).
    **params
        The method's parameters (see ``ox.methods()[method].params``).
    """
    if not isinstance(model, Model):
        model = load(model)
    return Explainer(model, method, **params)

