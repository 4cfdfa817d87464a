"""Explainers: a method (composite of rules + driver) bound to a loaded model.

>>> ex = ox.explainer(model, "lrp.epsilon", epsilon=1e-6)
>>> R = ex.explain(x)                       # same shape as x; target = argmax per sample
>>> R, delta = ex.explain(x, target=3, return_delta=True)

The computation happens in the C++ core; this module validates arguments, converts them and
presents results.
"""

from __future__ import annotations

import math
import sys
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Union

import numpy as np

from ._native import core
from .model import Model, load

TargetLike = Union[None, int, Sequence[int], np.ndarray]
ProgressLike = Union[None, bool, Callable[[int, int], Any]]


class _Bar:
    """A one-line text progress bar on stderr (no dependency): ``method [#####.....] 12/32``."""

    def __init__(self, label: str, always: bool) -> None:
        self.label, self.always, self.shown = label, always, False

    def __call__(self, done: int, total: int) -> None:
        if not self.shown and done >= total and not self.always:
            return  # finished in one batch: nothing worth a bar
        self.shown = True
        width = 30
        filled = width * done // max(total, 1)
        end = "\n" if done >= total else ""
        sys.stderr.write(f"\r{self.label} [{'#' * filled}{'.' * (width - filled)}] {done}/{total}{end}")
        sys.stderr.flush()


def _progress_callback(progress: ProgressLike, method: str) -> Callable[[int, int], Any] | None:
    if progress is None:
        return _Bar(method, always=False) if sys.stderr is not None and sys.stderr.isatty() else None
    if progress is True:
        return _Bar(method, always=True)
    if progress is False:
        return None
    if callable(progress):
        return progress
    raise ValueError(f"progress must be None, True, False or a callable(done, total); got {progress!r}")


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
    out = {}
    for name, family, desc, ref, params in core.methods():
        out[name] = MethodInfo(name, family, desc, ref, {p: (d, doc) for p, d, doc in params})
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
        numbers: dict[str, float] = {}
        strings: dict[str, str] = {}
        arrays: dict[str, np.ndarray] = {}
        rules: list[tuple[str, str, dict[str, float], dict[str, np.ndarray]]] = []
        for k, v in params.items():
            if k not in info.params:
                names = ", ".join(info.params) or "none"
                raise ValueError(f"method {method!r} has no parameter {k!r} (its parameters: {names})")
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
        return {name: rule for (name, _op, _kind), rule in zip(self.model.nodes, self._ex.node_rules)}

    def fit(self, data: Any = None, batch_size: int = 64) -> Explainer:
        """Methods that learn from data (``pattern.*``) fit here; for this method it does nothing."""
        return self

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
        elif self.method == "integrated_gradients":
            delta = total - (fx - np.asarray(res["reference_values"], np.float64))
        else:
            raise ValueError(f"return_delta: {self.method} promises no sum (only LRP, Deep Taylor and integrated "
                             "gradients do)")
        return out, delta


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

