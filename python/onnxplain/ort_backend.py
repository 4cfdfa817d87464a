"""The onnxruntime backend: any model onnxruntime runs, for the methods that need nothing but
forward passes (occlusion, prediction difference analysis, LIME) and for every metric.

:func:`onnxplain.load` returns an :class:`OrtModel` when asked (``backend="onnxruntime"``) or when
onnxplain's engine cannot run the model (ops it lacks, another domain such as scikit-learn's
``ai.onnx.ml`` trees) but onnxruntime can. It has the :class:`onnxplain.Model` interface for
forward passes; the methods that walk the graph backwards (gradients, LRP, PatternNet, DeepLIFT)
and the model-randomisation check, which re-draws weights on onnxplain's IR, raise
:class:`onnxplain.UnsupportedModelError` naming what the engine lacks.
"""

from __future__ import annotations

import os
from collections import Counter
from typing import Any

import numpy as np

from .model import Model, TensorSpec, _default_threads

_ORT_DTYPES = {
    "tensor(float)": "float32", "tensor(double)": "float64", "tensor(int64)": "int64", "tensor(int32)": "int32",
    "tensor(float16)": "float16", "tensor(bool)": "bool", "tensor(string)": "string",
}


def _dims(shape: Any) -> tuple[int | None, ...]:
    return tuple(d if isinstance(d, int) and d >= 0 else None for d in (shape or []))


def _without_zipmap(data: bytes) -> tuple[bytes | None, list[str]]:
    """The model with every ZipMap that makes a graph output removed, its probability tensor made
    the output instead (as onnxplain's engine does at load), or None when there is none."""
    import onnx

    proto = onnx.load_from_string(data)
    g = proto.graph
    notes = []
    outputs = [o.name for o in g.output]
    for node in list(g.node):
        if node.op_type == "ZipMap" and node.output and node.output[0] in outputs:
            i = outputs.index(node.output[0])
            g.output.remove(g.output[i])
            g.output.insert(i, onnx.helper.make_tensor_value_info(node.input[0], onnx.TensorProto.FLOAT, None))
            outputs[i] = node.input[0]
            g.node.remove(node)
            notes.append(f"removed ZipMap node '{node.name}': output '{node.output[0]}' is now the probabilities "
                         f"'{node.input[0]}'")
    return (proto.SerializeToString() if notes else None), notes


class OrtModel(Model):
    """A model run by onnxruntime (see the module's docstring). Create it with
    ``onnxplain.load(path, backend="onnxruntime")``."""

    backend = "onnxruntime"

    def __init__(self, source: bytes | str, threads: int | None = None, output: int | str | None = None,
                 unsupported: Exception | None = None) -> None:
        import onnxruntime as ort

        super().__init__(None, threads, source, (True, True, True))
        data = source if isinstance(source, bytes) else None
        if data is None:
            with open(source, "rb") as f:
                data = f.read()
        stripped, self._notes = _without_zipmap(data)
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = self.threads
        opts.inter_op_num_threads = 1
        opts.log_severity_level = 3
        target: Any = stripped if stripped is not None else (source if isinstance(source, str) else data)
        self._session = ort.InferenceSession(target, opts, providers=["CPUExecutionProvider"])
        self._bytes_len = len(data)
        self._unsupported = unsupported
        self._proto_summary = _proto_summary(data)
        outs = self._session.get_outputs()
        self._output = _choose_output([(o.name, o.type) for o in outs], output)
        if unsupported is not None:
            self._notes.insert(0, "onnxplain's engine cannot run this model (" + _first_line(unsupported) +
                               "); forward passes run through onnxruntime")

    # ---- what Model offers -------------------------------------------------------------------------

    @property
    def inputs(self) -> list[TensorSpec]:
        return [TensorSpec(i.name, _ORT_DTYPES.get(i.type, i.type), _dims(i.shape)) for i in self._session.get_inputs()]

    @property
    def outputs(self) -> list[TensorSpec]:
        """The graph outputs (ZipMap replaced by its probabilities), the one ``predict`` returns first."""
        outs = [TensorSpec(o.name, _ORT_DTYPES.get(o.type, o.type), _dims(o.shape))
                for o in self._session.get_outputs()]
        return [outs[self._output]] + [o for k, o in enumerate(outs) if k != self._output]

    @property
    def output(self) -> str:
        """The name of the output that ``predict`` returns and the methods explain."""
        return str(self._session.get_outputs()[self._output].name)

    @property
    def op_counts(self) -> dict[str, int]:
        return dict(self._proto_summary["ops"])

    @property
    def nodes(self) -> list[tuple[str, str, str]]:
        return [(n, op, "onnxruntime") for n, op in self._proto_summary["nodes"]]

    @property
    def opset(self) -> int:
        return int(self._proto_summary["opset"])

    @property
    def producer(self) -> str:
        return str(self._proto_summary["producer"])

    @property
    def notes(self) -> list[str]:
        return list(self._notes)

    @property
    def unsupported(self) -> Exception | None:
        """Why onnxplain's engine does not run this model (its ``UnsupportedModelError``), or None
        when onnxruntime was asked for."""
        return self._unsupported

    def _feeds(self, x: Any) -> dict[str, np.ndarray]:
        """The inputs validated as for the engine, in the dtypes the session's inputs declare."""
        feeds = {}
        for spec, arr in zip(self._session.get_inputs(), self._prepare(x)):
            want = _ORT_DTYPES.get(spec.type, "float32")
            feeds[spec.name] = arr.astype(want, copy=False) if want in ("float64", "int32", "float16") else arr
        return feeds

    def _session_run(self, names: list[str] | None, feeds: dict[str, np.ndarray]) -> list[Any]:
        """session.run, in passes of the batch the model fixes (the Model Zoo's files fix 1) when
        given a multiple of it, outputs joined on axis 0 (as the engine does)."""
        dims = [i.shape[0] if i.shape else None for i in self._session.get_inputs()]
        fixed = dims[0] if dims and all(isinstance(d, int) and d > 0 and d == dims[0] for d in dims) else None
        n = next(iter(feeds.values())).shape[0] if feeds and next(iter(feeds.values())).ndim else 0
        if not fixed or n <= fixed or n % fixed:
            return self._session.run(names, feeds)
        parts = [self._session.run(names, {k: v[b:b + fixed] for k, v in feeds.items()}) for b in range(0, n, fixed)]
        return [np.concatenate([np.asarray(_as_array(p[k])) for p in parts]) for k in range(len(parts[0]))]

    def run(self, x: Any, threads: int | None = None) -> list[np.ndarray]:
        """Runs the model; every output, the chosen one first."""
        outs = self._session_run(None, self._feeds(x))
        order = [self._output] + [k for k in range(len(outs)) if k != self._output]
        return [_as_array(outs[k]) for k in order]

    def predict(self, x: Any, threads: int | None = None) -> np.ndarray:
        """The chosen output (see ``output``) as float32."""
        name = self._session.get_outputs()[self._output].name
        return np.asarray(_as_array(self._session_run([name], self._feeds(x))[0]), dtype=np.float32)

    def requires_engine(self, what: str) -> Exception:
        """The error for something that needs onnxplain's engine (a backward pass, the IR): a new
        ``UnsupportedModelError`` (same ``ops``) saying what needed it, or a ``ValueError`` when
        onnxruntime was asked for."""
        if self._unsupported is not None:
            err = self._unsupported
            new = type(err)(f"{what} needs onnxplain's engine, which cannot run this model: {err}")
            new.ops = getattr(err, "ops", [])
            return new
        return ValueError(f"{what} needs onnxplain's engine; this model was loaded with backend='onnxruntime' "
                          "(load it with backend='onnxplain')")

    def vjp(self, x: Any, cotangents: Any, threads: int | None = None) -> list[np.ndarray]:
        raise self.requires_engine("vjp")

    def layers(self) -> list[tuple[str, dict[str, np.ndarray]]]:
        raise self.requires_engine("layers() (and the model-randomisation check)")

    def with_weights(self, weights: Any) -> Model:
        raise self.requires_engine("with_weights() (and the model-randomisation check)")

    def summary(self) -> str:
        lines = [f"producer: {self.producer or '?'}   opset: {self.opset}   nodes: {len(self.nodes)}   "
                 "backend: onnxruntime"]
        lines.append("inputs:")
        lines += [f"  {s}" for s in self.inputs]
        lines.append("outputs (the first is explained):")
        lines += [f"  {s}" for s in self.outputs]
        lines.append("ops:")
        for op, n in sorted(self.op_counts.items()):
            lines.append(f"  {op:<28} {n:>4}")
        if self.notes:
            lines.append("notes:")
            lines += [f"  {n}" for n in self.notes]
        return "\n".join(lines)

    def __reduce__(self) -> tuple[Any, ...]:
        src = self._source if isinstance(self._source, bytes) else self.to_bytes()
        return (_unpickle_ort, (src, self.threads, self._output, self._unsupported is not None))

    def __repr__(self) -> str:
        ins = ", ".join(str(s) for s in self.inputs)
        return f"<onnxplain.OrtModel inputs=[{ins}] output={self.output!r} nodes={len(self.nodes)}>"


def _first_line(e: Exception) -> str:
    ops = getattr(e, "ops", None)
    if ops:
        return "it lacks " + ", ".join(f"{d + '.' if d else ''}{op} ({len(names)} node{'s' if len(names) != 1 else ''})"
                                       for op, d, names in ops)
    return str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__


def _as_array(v: Any) -> Any:
    if isinstance(v, list) and v and isinstance(v[0], dict):  # a ZipMap left inside the graph
        keys = sorted(v[0])
        return np.array([[row[k] for k in keys] for row in v], dtype=np.float32)
    return np.asarray(v) if not isinstance(v, np.ndarray) else v


def _choose_output(outs: list[tuple[str, str]], output: int | str | None) -> int:
    names = [n for n, _ in outs]
    if output is None:
        for k, (_, t) in enumerate(outs):
            if t in ("tensor(float)", "tensor(double)"):
                return k
        raise ValueError(f"the model has no float tensor output to explain (outputs: {names}); pass output=")
    if isinstance(output, str):
        if output not in names:
            raise ValueError(f"no output named '{output}'; the model's outputs are {names}")
        return names.index(output)
    k = int(output)
    if not 0 <= k < len(outs):
        raise ValueError(f"output {k} is out of range: the model has {len(outs)} output(s) {names}")
    return k


def _proto_summary(data: bytes) -> dict[str, Any]:
    import onnx

    try:
        proto = onnx.load_from_string(data)
    except Exception:  # noqa: BLE001 - onnxruntime read it; the summary is best effort
        return {"ops": {}, "nodes": [], "opset": 0, "producer": ""}
    ops = Counter((f"{n.domain}." if n.domain not in ("", "ai.onnx") else "") + n.op_type for n in proto.graph.node)
    opset = next((o.version for o in proto.opset_import if o.domain in ("", "ai.onnx")), 0)
    producer = " ".join(p for p in (proto.producer_name, proto.producer_version) if p)
    nodes = [(n.name or f"{n.op_type}_{i}", n.op_type) for i, n in enumerate(proto.graph.node)]
    return {"ops": ops, "nodes": nodes, "opset": opset, "producer": producer}


def _unpickle_ort(data: bytes, threads: int, output: int, fallback: bool) -> OrtModel:
    from .model import load

    m = load(data, threads=threads, output=output, backend="auto" if fallback else "onnxruntime")
    assert isinstance(m, OrtModel)
    return m


def ort_load(source: bytes | str, threads: int | None, output: int | str | None,
             unsupported: Exception | None) -> OrtModel:
    """An OrtModel, or the reason onnxruntime cannot run the model as a ModelFormatError / the
    engine's own error."""
    if isinstance(source, str) and not os.path.exists(source):
        raise FileNotFoundError(f"no such model file: '{source}'")
    return OrtModel(source, threads or _default_threads(), output, unsupported)
