"""Loading ONNX models and running their forward pass."""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Union

import numpy as np

from ._native import core

PathOrBytes = Union[str, "os.PathLike[str]", bytes, bytearray, memoryview]
_FLOAT32_EXACT_INT = 2**24  # integers up to this magnitude are exact in float32


@dataclass(frozen=True)
class TensorSpec:
    """Name, dtype and shape of a model input or output; ``None`` marks a dynamic dimension."""

    name: str
    dtype: str
    shape: tuple[int | None, ...]

    def __str__(self) -> str:
        dims = ", ".join("?" if d is None else str(d) for d in self.shape)
        return f"{self.name}: {self.dtype}[{dims}]"


def _default_threads() -> int:
    return max(1, len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1))


def _as_float32(x: Any, name: str) -> np.ndarray:
    """Converts ``x`` to float32 exactly, or raises ``ValueError`` saying why it cannot."""
    arr = np.asarray(x)
    if arr.dtype == np.float32:
        return np.require(arr, requirements="C")  # keeps 0-d arrays 0-d, unlike ascontiguousarray
    if arr.dtype == np.bool_:
        return arr.astype(np.float32)
    if np.issubdtype(arr.dtype, np.integer):
        if arr.size and int(np.max(np.abs(arr.astype(np.int64)))) > _FLOAT32_EXACT_INT:
            raise ValueError(
                f"input '{name}' is {arr.dtype} with values beyond ±2**24, which float32 cannot hold exactly; "
                "scale or convert the data to float32 yourself"
            )
        return arr.astype(np.float32)
    if np.issubdtype(arr.dtype, np.floating):
        with np.errstate(over="ignore"):
            out = arr.astype(np.float32)
        overflow = np.isfinite(arr) & ~np.isfinite(out)
        if overflow.any():
            raise ValueError(
                f"input '{name}' is {arr.dtype} with values beyond the float32 range (±3.4e38); "
                "onnxplain computes in float32"
            )
        return out
    raise ValueError(f"input '{name}' has dtype {arr.dtype}; onnxplain needs a numeric array (float32 preferred)")


class Model:
    """An ONNX model loaded into onnxplain's IR.

    Create it with :func:`load`. ``predict`` runs the forward pass in the C++ engine and returns
    the first output, as onnxruntime would for the same (possibly softmax-stripped) graph.
    """

    #: Which engine runs the forward passes: "onnxplain" (this class) or "onnxruntime" (OrtModel).
    backend = "onnxplain"

    def __init__(self, core_model: Any, threads: int | None = None, source: bytes | str | None = None,
                 options: tuple[bool, bool, bool] = (True, True, True)) -> None:
        self._m = core_model
        self.threads = threads or _default_threads()
        # What the model was loaded from (the serialized bytes, or the file's path, read when
        # needed), for saving explainers and for pickling (Dask workers rebuild the model).
        self._source = source
        self._options = options
        # Weights replaced by with_weights (node -> {"weight"/"bias": array}), reapplied on unpickling.
        self._replaced: dict[str, dict[str, np.ndarray]] = {}
        self._output_choice: int | str | None = None  # load(output=...), reapplied on unpickling

    def to_bytes(self) -> bytes:
        """The serialized ONNX model this was loaded from (before the load-time rewrites)."""
        if self._replaced:
            raise ValueError("this model's weights were replaced (Model.with_weights) after loading; the file it "
                             "came from no longer describes it, so it cannot be serialized")
        if isinstance(self._source, bytes):
            return self._source
        if isinstance(self._source, str):
            with open(self._source, "rb") as f:
                return f.read()
        raise ValueError("this model was not loaded from a file or bytes, so it cannot be serialized")

    def __reduce__(self) -> tuple[Any, ...]:
        original = Model(self._m, self.threads, self._source, self._options)
        return (_unpickle_model, (original.to_bytes(), self._source if isinstance(self._source, str) else None,
                                  self._options, self.threads, self._replaced, self._output_choice))

    @property
    def output(self) -> str:
        """The name of the output that ``predict`` returns and the methods explain (``load(output=)``)."""
        return self.outputs[0].name

    def _select_output(self, output: int | str) -> Model:
        """This model with `output` (index or name among ``outputs``) the one explained."""
        names = [o.name for o in self.outputs]
        if isinstance(output, str):
            if output not in names:
                raise ValueError(f"no output named '{output}'; the model's outputs are {names}")
            k = names.index(output)
        else:
            k = int(output)
            if not 0 <= k < len(names):
                raise ValueError(f"output {k} is out of range: the model has {len(names)} output(s) {names}")
        m = Model(self._m.with_output(k) if len(names) > 1 else self._m, self.threads, self._source, self._options)
        m._output_choice = output
        return m

    def layers(self) -> list[tuple[str, dict[str, np.ndarray]]]:
        """Every linear op (Conv, Gemm, MatMul, after the load-time rewrites such as BatchNorm
        folding) whose weight and bias are constants, in execution order: ``(node name,
        {"weight": array, "bias": array})`` (no ``"bias"`` key without a bias), copies of the
        values the engine uses, plus ``"neuron_axis"``: the weight axis of the output neurons."""
        out = []
        for node, _w, _b, w, b, axis in self._m.linear_params():
            d: dict[str, Any] = {"weight": np.array(w, copy=True), "neuron_axis": int(axis)}
            if b is not None:
                d["bias"] = np.array(b, copy=True)
            out.append((str(node), d))
        return out

    def with_weights(self, weights: Mapping[str, Mapping[str, Any]]) -> Model:
        """A copy of this model with some linear ops' weights and biases replaced.

        Used by :func:`onnxplain.metrics.model_randomisation` (Adebayo et al. 2018) to re-draw
        layers; ``self`` is unchanged.

        Parameters
        ----------
        weights : dict
            Node name (as in :meth:`layers`) -> ``{"weight": array, "bias": array}`` (either key
            may be left out), each shaped like the value it replaces.

        Returns
        -------
        Model
            The copy; it pickles (the replacements travel with it) but cannot be saved as ONNX.
        """
        params = {str(node): (w_id, b_id) for node, w_id, b_id, _w, _b, _a in self._m.linear_params()}
        replace: dict[int, np.ndarray] = {}
        for node, d in weights.items():
            if node not in params:
                raise ValueError(f"'{node}' is not a linear op with constant weights; the model's are "
                                 f"{sorted(params)}")
            unknown = set(d) - {"weight", "bias", "neuron_axis"}
            if unknown:
                raise ValueError(f"with_weights['{node}']: unknown keys {sorted(unknown)} (use 'weight' and 'bias')")
            w_id, b_id = params[node]
            if "weight" in d:
                replace[int(w_id)] = _as_float32(d["weight"], f"{node}.weight")
            if "bias" in d:
                if b_id < 0:
                    raise ValueError(f"node '{node}' has no bias to replace")
                replace[int(b_id)] = _as_float32(d["bias"], f"{node}.bias")
        try:
            core_model = self._m.with_constants({k: np.require(v, requirements="C") for k, v in replace.items()})
        except ValueError as e:
            raise ValueError(f"with_weights: {e}") from None
        m = Model(core_model, self.threads, self._source, self._options)
        m._output_choice = self._output_choice
        m._replaced = {**self._replaced}
        for node, d in weights.items():
            m._replaced[str(node)] = {**m._replaced.get(str(node), {}),
                                      **{k: np.array(v, dtype=np.float32, copy=True) for k, v in d.items()
                                         if k in ("weight", "bias")}}
        return m

    @property
    def inputs(self) -> list[TensorSpec]:
        """The graph inputs (initializers excluded)."""
        return [TensorSpec(n, t, tuple(s)) for n, t, s in self._m.inputs]

    @property
    def outputs(self) -> list[TensorSpec]:
        """The graph outputs after the load-time rewrites (softmax stripping, label pruning)."""
        return [TensorSpec(n, t, tuple(s)) for n, t, s in self._m.outputs]

    @property
    def op_counts(self) -> dict[str, int]:
        """Op type -> number of nodes, after the load-time rewrites."""
        return dict(self._m.op_counts)

    @property
    def nodes(self) -> list[tuple[str, str, str]]:
        """``(name, op_type, kind)`` for every node, in execution order."""
        return list(self._m.nodes)

    @property
    def opset(self) -> int:
        """The model's ai.onnx opset version."""
        return int(self._m.opset)

    @property
    def producer(self) -> str:
        """The producer named in the file (exporter and version), or ``""``."""
        return str(self._m.producer)

    @property
    def notes(self) -> list[str]:
        """What the load-time rewrites did (folded BatchNorms, stripped softmax, dropped outputs)."""
        return list(self._m.notes)

    def _prepare(self, x: Any) -> list[np.ndarray]:
        # The input specs are read once: building them on every call was a third of the Python
        # overhead of a forward pass (9 us per call, as much as a small model's whole pass at batch 1).
        specs = self.__dict__.get("_spec_cache")
        if specs is None:
            specs = self._spec_cache = self.inputs
        if (len(specs) == 1 and type(x) is np.ndarray and x.dtype == np.float32 and x.flags.c_contiguous
                and specs[0].dtype == "float32"):
            self._check_shape(specs[0], x)  # the common case, without the conversions below
            return [x]
        if isinstance(x, Mapping):
            missing = [s.name for s in specs if s.name not in x]
            extra = [k for k in x if k not in {s.name for s in specs}]
            if missing or extra:
                raise ValueError(
                    f"inputs by name: missing {missing}, unknown {extra}; the model's inputs are "
                    f"{[s.name for s in specs]}"
                )
            values = [x[s.name] for s in specs]
        elif len(specs) == 1:
            values = [x]
        elif isinstance(x, Sequence) and not isinstance(x, np.ndarray) and len(x) == len(specs):
            values = list(x)
        else:
            raise ValueError(
                f"the model has {len(specs)} inputs ({', '.join(s.name for s in specs)}); pass a dict "
                "name -> array or a list in that order"
            )
        arrays = []
        for spec, v in zip(specs, values):
            if spec.dtype != "float32":
                arr = np.require(np.asarray(v), dtype=np.int64, requirements="C")
            else:
                arr = _as_float32(v, spec.name)
            self._check_shape(spec, arr)
            arrays.append(np.require(arr, requirements="C"))
        return arrays

    @staticmethod
    def _check_shape(spec: TensorSpec, arr: np.ndarray) -> None:
        shape = spec.shape
        if arr.ndim == len(shape) and all(w is None or w == g for w, g in zip(shape, arr.shape)):
            return
        expected = "(" + ", ".join("N" if d is None else str(d) for d in spec.shape) + ")"
        if arr.ndim != len(spec.shape):
            hint = ""
            if arr.ndim == len(spec.shape) - 1:
                hint = "; for a single sample add a batch dimension (x[None])"
            raise ValueError(
                f"input '{spec.name}' expects {len(spec.shape)} dimensions {expected}, got {arr.ndim} "
                f"dimensions {tuple(arr.shape)}{hint}"
            )
        for axis, (want, got) in enumerate(zip(spec.shape, arr.shape)):
            if axis == 0 and want and got > want and got % want == 0:
                continue  # a model exported with a fixed batch runs k * batch samples in k passes
            if want is not None and want != got:
                what = "channel count" if axis == 1 and arr.ndim == 4 else f"dimension {axis}"
                raise ValueError(
                    f"input '{spec.name}' expects shape {expected}, got {tuple(arr.shape)}: {what} "
                    f"should be {want}, not {got}"
                )

    def run(self, x: Any, threads: int | None = None) -> list[np.ndarray]:
        """Runs the forward pass and returns every output."""
        return list(self._m.run(self._prepare(x), threads or self.threads))

    def predict(self, x: Any, threads: int | None = None) -> np.ndarray:
        """Forward pass; returns the first output.

        Parameters
        ----------
        x : array_like or dict
            A batch for the (single) input, or a dict ``name -> array`` for several inputs.
            Float64 and integer data are converted to float32 (integers only where exact).
        threads : int, optional
            Threads for this call (default: the model's ``threads``).
        """
        return self.run(x, threads)[0]

    def vjp(self, x: Any, cotangents: Any, threads: int | None = None) -> list[np.ndarray]:
        """Vector-Jacobian product of the whole model: the gradient of ``sum_k <c_k, y_k>`` with
        respect to every input, where ``y_k`` are the outputs and ``c_k`` the cotangents.

        Parameters
        ----------
        x : array_like or dict
            The inputs, as for :meth:`predict`.
        cotangents : array_like or list
            One array per output, shaped like it (``None`` = zero); a single array for a
            single-output model.
        threads : int, optional
            Threads for this call.

        Returns
        -------
        list of numpy.ndarray
            One gradient per input, shaped like it.
        """
        n_out = len(self.outputs)
        cots = [cotangents] if n_out == 1 and not isinstance(cotangents, (list, tuple)) else list(cotangents)
        if len(cots) != n_out:
            raise ValueError(f"expected {n_out} cotangent(s), one per output, got {len(cots)}")
        arrays = [None if c is None else np.require(np.asarray(c, dtype=np.float32), requirements="C") for c in cots]
        return list(self._m.vjp(self._prepare(x), arrays, threads or self.threads))

    def summary(self) -> str:
        """A human-readable description: inputs, outputs, ops and their kinds."""
        lines = []
        lines.append(f"producer: {self._m.producer or '?'}   opset: {self._m.opset}   nodes: {len(self.nodes)}")
        lines.append("inputs:")
        lines += [f"  {s}" for s in self.inputs]
        lines.append("outputs:")
        lines += [f"  {s}" for s in self.outputs]
        kinds: dict[str, str] = {}
        for _, op, kind in self.nodes:
            kinds.setdefault(op, kind)
        lines.append("ops:")
        for op, n in sorted(self.op_counts.items()):
            lines.append(f"  {op:<22} {n:>4}   kind: {kinds.get(op, '?')}")
        if self.notes:
            lines.append("rewrites:")
            lines += [f"  {n}" for n in self.notes]
        return "\n".join(lines)

    def __repr__(self) -> str:
        ins = ", ".join(str(s) for s in self.inputs)
        outs = ", ".join(str(s) for s in self.outputs)
        return f"<onnxplain.Model inputs=[{ins}] outputs=[{outs}] nodes={len(self.nodes)}>"


def load(
    path_or_bytes: PathOrBytes, strip_softmax: bool = True, fold_batch_norm: bool = True,
    threads: int | None = None, winograd: bool = True, backend: str = "auto", output: int | str | None = None,
) -> Model:
    """Loads an ONNX model.

    Parameters
    ----------
    path_or_bytes : str, os.PathLike or bytes
        A ``.onnx`` file (external data is read from its folder) or the serialized model.
    strip_softmax : bool
        Remove a Softmax/LogSoftmax that produces a graph output, so that explanations start from
        the logits (iNNvestigate's convention). ``False`` keeps the model as exported.
    fold_batch_norm : bool
        Fold BatchNormalization into the neighbouring linear op (outputs are unchanged).
    threads : int, optional
        Default thread count for this model (default: all cores available to the process).
    winograd : bool
        Run wide 3x3 stride-1 convolutions (and the input gradients of those) with Winograd's
        F(4x4, 3x3) algorithm (Lavin & Gray 2016), about twice as fast as the direct product.
        Float32 results then agree with a direct convolution to about 1e-5 of a layer's largest
        output instead of about 1e-6. ``False`` always uses the direct product.
    backend : {"auto", "onnxplain", "onnxruntime"}
        Who runs the forward passes. ``"onnxplain"``: the C++ engine, which every method needs
        that walks the graph backwards (gradients, LRP, PatternNet, DeepLIFT). ``"onnxruntime"``:
        an onnxruntime session (:class:`onnxplain.ort_backend.OrtModel`), enough for occlusion,
        prediction difference, LIME and the metrics, for any model onnxruntime runs (scikit-learn
        pipelines with trees, ops the engine lacks). ``"auto"`` (default): the engine, or
        onnxruntime where the engine cannot run the model; the backward methods then raise
        ``UnsupportedModelError`` naming what the engine lacks.
    output : int or str, optional
        The output (index or name) that ``predict`` returns and the methods explain; default the
        first float tensor output (for scikit-learn classifiers: the probabilities, ZipMap
        removed).

    Raises
    ------
    FileNotFoundError, IsADirectoryError, PermissionError
        The path is missing, a directory or unreadable (the exception's ``filename`` is the path).
    ModelFormatError
        The file is not a valid ONNX model, or it contradicts itself (a weight that does not fit the
        shapes its graph implies, a bad attribute: the message names the node), imports an ai.onnx
        opset newer than ``onnxplain.NEWEST_OPSET`` or none, or has an ``ir_version`` newer than
        onnxplain reads. Also a ``ValueError``.
    UnsupportedModelError
        The engine cannot run the model (``.ops`` lists every unsupported op), and with
        ``backend="auto"`` onnxruntime cannot either.
    """
    if backend not in ("auto", "onnxplain", "onnxruntime"):
        raise ValueError(f"backend must be 'auto', 'onnxplain' or 'onnxruntime', got {backend!r}")
    options = (bool(strip_softmax), bool(fold_batch_norm), bool(winograd))
    source: bytes | str
    if isinstance(path_or_bytes, (bytes, bytearray, memoryview)):
        source = bytes(path_or_bytes)
    else:
        source = os.path.abspath(os.fspath(path_or_bytes))
        _check_readable(source)
    if backend == "onnxruntime":
        from .ort_backend import ort_load

        return ort_load(source, threads, output, None)
    try:
        if isinstance(source, bytes):
            m = core.Model.from_bytes(source, strip_softmax, fold_batch_norm, winograd)
        else:
            m = core.Model.from_file(source, strip_softmax, fold_batch_norm, winograd)
    except core.UnsupportedModelError as e:
        if backend == "onnxplain":
            raise
        from .ort_backend import ort_load

        try:
            return ort_load(source, threads, output, e)
        except Exception:  # noqa: BLE001 - onnxruntime cannot run it either: the engine's reason stands
            raise e from None
    model = Model(m, threads, source, options)
    return model._select_output(output) if output is not None else model


#: The newest ai.onnx opset whose op definitions onnxplain was checked against; a model importing a
#: newer one is refused with ModelFormatError (re-export it with this opset or lower).
NEWEST_OPSET: int = int(core.NEWEST_OPSET)
#: The newest ModelProto.ir_version onnxplain reads.
NEWEST_IR_VERSION: int = int(core.NEWEST_IR_VERSION)


def _check_readable(path: str) -> None:
    """Raises the ``OSError`` subclass that says why ``path`` cannot be read as a model file."""
    try:
        with open(path, "rb"):
            pass
    except OSError as e:
        # FileNotFoundError, IsADirectoryError, PermissionError, ...: the same class, a clearer message.
        reason = e.strerror or str(e)
        raise type(e)(e.errno, f"cannot read the model file: {reason}", path) from None


def _unpickle_model(data: bytes, path: str | None, options: tuple[bool, bool, bool], threads: int,
                    replaced: dict[str, dict[str, np.ndarray]] | None = None, output: int | str | None = None) -> Model:
    try:
        m = load(data, *options[:2], threads=threads, winograd=options[2], backend="onnxplain", output=output)
    except Exception:
        # A model with external data loads only from its folder.
        if path is not None and os.path.exists(path):
            m = load(path, *options[:2], threads=threads, winograd=options[2], backend="onnxplain", output=output)
        else:
            raise
    return m.with_weights(replaced) if replaced else m


def supported_ops() -> list[str]:
    """ONNX op types (ai.onnx domain) that onnxplain can run."""
    return list(core.supported_ops())


def op_versions() -> dict[str, tuple[list[int], list[int], str]]:
    """The ONNX versions of each supported op: ``{op_type: (implemented, not_implemented, advice)}``.

    A version is a since-version (the opset in which the op's definition last changed, as
    ``onnx.defs`` numbers them); a node runs under the newest one at or below the model's ai.onnx
    opset. Every since-version up to :data:`NEWEST_OPSET` is listed; a model whose op runs under a
    version onnxplain does not implement is refused at load (:class:`UnsupportedModelError`, with
    ``advice``) and, with ``backend="auto"``, runs through onnxruntime.
    """
    return {op: (list(impl), list(miss), advice) for op, (impl, miss, advice) in core.op_versions().items()}


def version_in_effect(op_type: str, opset: int) -> int:
    """The since-version of ``op_type`` a node runs under at ai.onnx ``opset`` (0: the op did not
    exist yet, or onnxplain does not know it)."""
    impl, miss, _ = op_versions().get(op_type, ([], [], ""))
    return max((v for v in (*impl, *miss) if v <= opset), default=0)
