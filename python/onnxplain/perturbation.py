"""Perturbation methods driven from Python: they need data-dependent sampling (prediction
difference analysis) or an established solver and segmentation library (LIME). Every forward
pass runs on the C++ engine in large batches (:meth:`onnxplain.Model.predict`); this module only
builds the perturbed inputs and combines the outputs. Occlusion lives in the C++ core
(``methods/occlusion.cpp``) and is reachable from the C API as well.

A method here subclasses :class:`PythonMethod` and registers in :data:`PYTHON_METHODS`;
:class:`onnxplain.Explainer` dispatches to it.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, ClassVar

import numpy as np

from .model import Model

Progress = Callable[[int, int], Any]


class PythonMethod:
    """A method computed in Python on top of batched forward passes.

    Subclasses set the class attributes that ``ox.methods()`` shows and implement
    :meth:`explain` (and :meth:`fit_batch` when ``learns``).
    """

    name: ClassVar[str] = ""
    family: ClassVar[str] = "perturbation"
    description: ClassVar[str] = ""
    reference: ClassVar[str] = ""
    params: ClassVar[dict[str, tuple[str, str]]] = {}  # name -> (default as Python spells it, doc)
    learns: ClassVar[bool] = False

    def __init__(self, model: Model, **params: Any) -> None:
        self.model = model
        self.params = params

    def fit_batch(self, arrays: list[np.ndarray]) -> None:
        """Adds one batch of training data (only for methods with ``learns = True``)."""
        raise ValueError(f"{self.name} learns nothing from data")

    def explain(self, arrays: list[np.ndarray], targets: np.ndarray, threads: int,
                progress: Progress | None) -> np.ndarray:
        """Relevance shaped like ``arrays[0]`` for the output index ``targets[i]`` of sample i."""
        raise NotImplementedError


#: Method name -> class; filled in below by each method's definition.
PYTHON_METHODS: dict[str, type[PythonMethod]] = {}


def register(cls: type[PythonMethod]) -> type[PythonMethod]:
    PYTHON_METHODS[cls.name] = cls
    return cls
