"""Fitting and explaining on Dask arrays: the work runs on the workers, one block of samples per task.

>>> import dask.array as da
>>> import onnxplain.dask
>>> x = da.from_zarr("train.zarr")                      # [N, ...], chunked along the batch axis
>>> ex = ox.explainer(model, "pattern.attribution")
>>> onnxplain.dask.fit(ex, x, batch_size=64)            # the same as ex.fit(x, batch_size=64)
>>> R = onnxplain.dask.explain(ex, x).compute()         # lazy dask array shaped like x

Each task unpickles its own copy of the explainer (with its model); a worker thread keeps the
copy for the next task with the same explainer. The pattern statistics are sums, so each block
fits on its own and the blocks' statistics merge, in a tree of ``PatternStatistics.merge``, into
the statistics of the whole array. Blocks are split into batches of ``batch_size`` from their own
start, as ``ex.fit(block, batch_size)`` splits them.

Dask is an optional dependency: ``pip install onnxplain[dask]``.
"""

from __future__ import annotations

import hashlib
import pickle
import threading
from collections import OrderedDict
from collections.abc import Mapping, Sequence
from functools import reduce
from typing import Any

import numpy as np

try:
    import dask
    import dask.array as da
except ImportError as e:  # pragma: no cover - exercised only without dask
    raise ImportError(
        "onnxplain.dask needs Dask (dask.array); install it with: pip install onnxplain[dask]"
    ) from e

from .explain import Explainer
from .model import Model, TensorSpec

__all__ = ["explain", "fit"]

_CACHE_SIZE = 2  # explainers kept per worker thread (distinct explainers in flight at once)
_local = threading.local()


# ---------------------------------------------------------------------------------------------
# Worker side


def _cached_explainer(token: str, payload: bytes) -> Explainer:
    """The explainer pickled in ``payload``, unpickled once per worker thread.

    Each thread keeps its own copy: the threaded scheduler (and workers with several threads) run
    tasks side by side, and an explainer is not shared between threads that run at once.
    """
    cache: OrderedDict[str, Explainer] | None = getattr(_local, "cache", None)
    if cache is None:
        cache = _local.cache = OrderedDict()
    ex = cache.get(token)
    if ex is None:
        ex = pickle.loads(payload)
        if not isinstance(ex, Explainer):
            raise TypeError(f"onnxplain.dask: the task's payload is a {type(ex).__name__}, not an Explainer")
        cache[token] = ex
        while len(cache) > _CACHE_SIZE:
            cache.popitem(last=False)
    else:
        cache.move_to_end(token)
    return ex


def _fit_block(shipped: tuple[str, bytes], block: Any, batch_size: int, threads: int | None) -> Any:
    """Fits a fresh explainer on one block; returns its statistics (``None`` for an empty block)."""
    template = _cached_explainer(*shipped)
    n = _rows(block)
    if n == 0:
        return None
    # A fresh explainer per task (on the cached model): its statistics hold this block alone.
    ex = type(template)(template.model, template.method, **template.params)
    if isinstance(block, Mapping):
        for start in range(0, n, batch_size):
            ex.partial_fit({k: v[start:start + batch_size] for k, v in block.items()}, threads=threads)
    else:
        ex.fit(block, batch_size=batch_size, progress=False, threads=threads)
    return ex.statistics


def _merge(*parts: Any) -> Any:
    """Sum of pattern statistics; ``None`` parts (empty blocks) count as zero."""
    present = [p for p in parts if p is not None]
    if not present:
        return None
    return reduce(lambda a, b: a.merge(b), present)


def _explain_block(x: np.ndarray, target: Any, shipped: tuple[str, bytes], options: dict[str, Any]) -> np.ndarray:
    ex = _cached_explainer(*shipped)
    if x.shape[0] == 0:
        return np.zeros(x.shape, np.float32)
    return np.asarray(ex.explain(x, target=target, **options), dtype=np.float32)


def _by_name(names: list[str], *blocks: np.ndarray) -> dict[str, np.ndarray]:
    return dict(zip(names, blocks))


def _rows(block: Any) -> int:
    if isinstance(block, Mapping):
        return int(next(iter(block.values())).shape[0]) if block else 0
    return int(block.shape[0])


# ---------------------------------------------------------------------------------------------
# Client side


def _ship(explainer: Explainer) -> tuple[str, bytes]:
    payload = pickle.dumps(explainer, protocol=pickle.HIGHEST_PROTOCOL)
    return hashlib.sha256(payload).hexdigest(), payload


def _delayed_payload(shipped: tuple[str, bytes], client: Any) -> Any:
    """The pickled explainer as one graph key (or, with a client, scattered to every worker once)."""
    if client is not None:
        return client.scatter([shipped], broadcast=True)[0]  # a list: scatter would split a bare tuple
    return dask.delayed(shipped, name=f"onnxplain-explainer-{shipped[0]}", traverse=False)


def _check_batch_size(batch_size: Any) -> int:
    if isinstance(batch_size, bool) or not isinstance(batch_size, (int, np.integer)) or batch_size < 1:
        raise ValueError(f"batch_size must be a positive int, got {batch_size!r}")
    return int(batch_size)


def _check_threads(threads: Any) -> int | None:
    if threads is None:
        return None
    if isinstance(threads, bool) or not isinstance(threads, (int, np.integer)) or threads < 1:
        raise ValueError(f"threads must be None or a positive int, got {threads!r}")
    return int(threads)


def _batch_chunked(array: Any, spec: TensorSpec) -> da.Array:
    """``array`` checked against the input ``spec`` (axes after the batch axis) and rechunked so
    that each block holds whole samples: chunks along axis 0 only."""
    if not isinstance(array, da.Array):
        raise TypeError(f"expected a dask array for input '{spec.name}', got {type(array).__name__}")
    if array.ndim == 0:
        raise ValueError(f"input '{spec.name}': a dask array of samples needs a batch axis, got a 0-d array")
    # The batch size of a block is its own; only the other axes have to fit the model.
    Model._check_shape(TensorSpec(spec.name, spec.dtype, (None, *spec.shape[1:])), array)
    if any(len(c) > 1 for c in array.chunks[1:]):
        array = array.rechunk({axis: -1 for axis in range(1, array.ndim)})
    return array


def _input_blocks(explainer: Explainer, array: Any) -> tuple[list[Any], float]:
    """One delayed object per block of samples (an array, or a dict name -> array for several
    inputs), and the number of samples (nan where Dask does not know it)."""
    specs = explainer.model.inputs
    if isinstance(array, Mapping):
        missing = [s.name for s in specs if s.name not in array]
        extra = [k for k in array if k not in {s.name for s in specs}]
        if missing or extra:
            raise ValueError(f"inputs by name: missing {missing}, unknown {extra}; the model's inputs are "
                             f"{[s.name for s in specs]}")
        arrays = {s.name: _batch_chunked(array[s.name], s) for s in specs}
    elif isinstance(array, da.Array):
        if len(specs) != 1:
            raise ValueError(f"the model has {len(specs)} inputs ({', '.join(s.name for s in specs)}); pass a dict "
                             "name -> dask array")
        arrays = {specs[0].name: _batch_chunked(array, specs[0])}
    else:
        raise TypeError(f"onnxplain.dask.fit takes a dask array (or a dict name -> dask array), "
                        f"got {type(array).__name__}")
    first = next(iter(arrays.values()))
    if len(arrays) > 1:
        shapes = {k: v.shape[0] for k, v in arrays.items()}
        if len(set(shapes.values())) != 1:
            raise ValueError(f"the inputs have different numbers of samples: {shapes}")
        if any(np.isnan(c) for c in first.chunks[0]):
            raise ValueError("several dask inputs need known chunk sizes along the batch axis "
                             "(call compute_chunk_sizes() first)")
        arrays = {k: v.rechunk({0: first.chunks[0]}) for k, v in arrays.items()}
    columns = {k: v.to_delayed().ravel().tolist() for k, v in arrays.items()}
    rows = float(first.shape[0])
    if len(arrays) == 1:
        return next(iter(columns.values())), rows
    names = list(columns)
    return [dask.delayed(_by_name, pure=False)(names, *parts) for parts in zip(*columns.values())], rows


def _tree(parts: Sequence[Any], split_every: int) -> Any:
    """The sum of ``parts`` (delayed statistics) as a tree of merges, ``split_every`` at a time."""
    level = list(parts)
    while len(level) > 1:
        level = [dask.delayed(_merge, pure=False)(*level[i:i + split_every])
                 for i in range(0, len(level), split_every)]
    return level[0]


def fit(explainer: Explainer, array: Any, *, batch_size: int = 64, client: Any = None, threads: int | None = None,
        split_every: int = 8) -> Explainer:
    """Fits a ``pattern.*`` explainer on a dask array, block by block on the workers.

    Parameters
    ----------
    explainer : Explainer
        Its statistics grow by those of ``array`` (as ``partial_fit`` on every block would make them).
    array : dask.array.Array or dict name -> dask.array.Array
        Samples ``[N, ...]`` chunked along axis 0 (other axes are rechunked to their full size);
        a dict for a model with several inputs.
    batch_size : int
        Samples per batch within a block; each block is split into batches from its own start.
    client : distributed.Client, optional
        Runs the graph on this client (the explainer is scattered to its workers once). By
        default Dask's current scheduler runs it (the default client if one exists).
    threads : int, optional
        Core threads per task (default: the model's own ``threads``). With several tasks on one
        machine at once, ``cores // tasks at once`` avoids oversubscribing it.
    split_every : int
        Fan-in of the tree that merges the blocks' statistics.

    Returns
    -------
    Explainer
        ``explainer`` itself, with ``explainer.statistics`` set (unchanged for a method that learns
        nothing, as :meth:`Explainer.fit`).
    """
    if not isinstance(explainer, Explainer):
        raise TypeError(f"fit takes an onnxplain Explainer, got {type(explainer).__name__}")
    batch_size = _check_batch_size(batch_size)
    threads = _check_threads(threads)
    if isinstance(split_every, bool) or not isinstance(split_every, (int, np.integer)) or split_every < 2:
        raise ValueError(f"split_every must be an int >= 2, got {split_every!r}")
    blocks, rows = _input_blocks(explainer, array)
    if not explainer.learns:  # as Explainer.fit: methods that learn nothing return at once
        return explainer
    if rows == 0:
        raise ValueError("the dask array holds no samples to fit on")
    # Ship a copy without statistics: each task's statistics then hold its own block alone.
    fresh = type(explainer)(explainer.model, explainer.method, **explainer.params)
    shipped = _delayed_payload(_ship(fresh), client)
    parts = [dask.delayed(_fit_block, pure=False)(shipped, b, batch_size, threads) for b in blocks]
    total = _tree(parts, int(split_every))
    merged = client.compute(total).result() if client is not None else dask.compute(total)[0]
    if merged is None:  # blocks of unknown size that were all empty, or a method that learns nothing
        return explainer
    old = explainer.statistics
    explainer.statistics = merged if old is None else old.merge(merged)
    return explainer


def explain(explainer: Explainer, array: Any, target: Any = None, **kwargs: Any) -> da.Array:
    """Explains a dask array lazily: each block of samples is explained on the workers.

    Parameters
    ----------
    explainer : Explainer
        Fitted where the method needs it; each task explains with its own (unpickled) copy.
    array : dask.array.Array
        Samples ``[N, ...]`` for a single-input model, chunked along axis 0 (other axes are
        rechunked to their full size).
    target : None, int or sequence of int
        As for :meth:`Explainer.explain`: None = argmax per sample, an int for all samples, or one
        per sample (a numpy array or sequence of length N, split like the batch axis).
    **kwargs
        Passed to :meth:`Explainer.explain` (e.g. ``threads``); ``return_delta`` and
        ``progress`` are not supported here.

    Returns
    -------
    dask.array.Array
        float32, shaped and chunked like ``array`` (after rechunking).
    """
    if not isinstance(explainer, Explainer):
        raise TypeError(f"explain takes an onnxplain Explainer, got {type(explainer).__name__}")
    if kwargs.get("return_delta"):
        raise ValueError("onnxplain.dask.explain returns the relevance only (return_delta is not supported)")
    if kwargs.get("progress") not in (None, False):
        raise ValueError("onnxplain.dask.explain draws no progress (use dask's progress bars instead)")
    kwargs = {k: v for k, v in kwargs.items() if k not in ("return_delta", "progress")}
    kwargs["progress"] = False
    specs = explainer.model.inputs
    if len(specs) != 1:
        raise ValueError(f"onnxplain.dask.explain supports single-input models; this one has {len(specs)} inputs")
    if not isinstance(array, da.Array):
        raise TypeError(f"explain takes a dask array, got {type(array).__name__}")
    array = _batch_chunked(array, specs[0])
    shipped = _delayed_payload(_ship(explainer), None)
    index = "".join(chr(ord("a") + i) for i in range(array.ndim)) if array.ndim <= 26 else None
    if index is None:
        raise ValueError(f"arrays of {array.ndim} dimensions are not supported")
    args: list[Any] = [array, index]
    if target is None:
        args += [None, None]
    elif isinstance(target, (int, np.integer)) and not isinstance(target, bool):
        explainer._targets(int(target), 1)  # range check, up front
        args += [int(target), None]
    else:
        per_sample = np.asarray(target)
        if any(np.isnan(c) for c in array.chunks[0]):
            raise ValueError("a per-sample target needs known chunk sizes along the batch axis "
                             "(call compute_chunk_sizes() first)")
        explainer._targets(per_sample, int(array.shape[0]))  # type, length and range, up front
        args += [da.from_array(per_sample.astype(np.int64), chunks=(array.chunks[0],)), index[0]]
    args += [shipped, None, kwargs, None]
    return da.blockwise(_explain_block, index, *args, dtype=np.float32, meta=np.empty((0,) * array.ndim, np.float32),
                        token="onnxplain-explain")
