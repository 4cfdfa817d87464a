"""Batches and progress for fitting (``Explainer.fit``, ``signal_quality``)."""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterator, Mapping
from typing import Any

import numpy as np


def iter_batches(data: Any, batch_size: int) -> tuple[Iterator[Any], int | None]:
    """The batches of ``data`` and the number of samples when known.

    An array (anything with ``shape`` and slicing) or a dict of arrays is split along axis 0;
    any other iterable yields its items as batches, taking the first element of tuples and lists
    (``(x, y)`` pairs).
    """
    if isinstance(data, Mapping):
        values = list(data.values())
        if not values:
            raise ValueError("fit(data): the dict of inputs is empty")
        n = int(np.shape(values[0])[0])

        def dict_batches() -> Iterator[Any]:
            for i in range(0, n, batch_size):
                yield {k: v[i:i + batch_size] for k, v in data.items()}

        return dict_batches(), n
    if hasattr(data, "shape") and hasattr(data, "__getitem__"):
        if len(data.shape) == 0:
            raise ValueError("fit(data): data must have a batch axis, got a scalar")
        n = int(data.shape[0])

        def array_batches() -> Iterator[Any]:
            for i in range(0, n, batch_size):
                yield data[i:i + batch_size]

        return array_batches(), n
    if isinstance(data, (str, bytes)) or not hasattr(data, "__iter__"):
        raise ValueError(f"fit(data): expected an array, a dict of arrays or an iterable of batches, got "
                         f"{type(data).__name__}")

    def items() -> Iterator[Any]:
        for item in data:
            yield item[0] if isinstance(item, (tuple, list)) else item

    return items(), None


class TextBar:
    """A one-line text progress bar on stderr (no dependency): ``label [#####.....] 12/32``, or
    ``label: 12 samples`` when the total is not known. With ``always=False`` it stays silent when
    the work finished in one step (nothing worth a bar)."""

    def __init__(self, label: str, always: bool = True) -> None:
        self.label, self.always, self.shown, self.ended = label, always, False, False

    def __call__(self, done: int, total: int | None) -> None:
        if total is not None and not self.shown and done >= total and not self.always:
            return
        self.shown = True
        if total:
            width = 30
            filled = width * done // max(total, 1)
            self.ended = done >= total
            end = "\n" if self.ended else ""
            sys.stderr.write(f"\r{self.label} [{'#' * filled}{'.' * (width - filled)}] {done}/{total}{end}")
        else:
            sys.stderr.write(f"\r{self.label}: {done} samples")
        sys.stderr.flush()

    def close(self) -> None:
        if self.shown and not self.ended:
            sys.stderr.write("\n")
            sys.stderr.flush()


class _TqdmBar:
    def __init__(self, label: str, total: int | None) -> None:
        from tqdm.auto import tqdm

        self.bar = tqdm(total=total, desc=label, unit="sample")
        self.done = 0

    def __call__(self, done: int, total: int | None) -> None:
        self.bar.update(done - self.done)
        self.done = done

    def close(self) -> None:
        self.bar.close()


def progress_reporter(progress: Any, label: str, total: int | None) -> Callable[[int, int | None], Any] | None:
    """None: a bar on a terminal; True: always; False: never; a callable: called with (done, total)."""
    if progress is False:
        return None
    if callable(progress) and progress is not True:
        return progress
    if progress is None and not (sys.stderr is not None and sys.stderr.isatty()):
        return None
    if progress not in (None, True):
        raise ValueError(f"progress must be None, True, False or a callable(done, total); got {progress!r}")
    try:
        return _TqdmBar(label, total)
    except ImportError:
        return TextBar(label)
