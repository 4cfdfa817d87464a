"""Batches and progress bars for fitting (``Explainer.fit``, ``signal_quality``), explaining and reports."""

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
        self._width = 0  # the longest line so far: shorter ones are padded to erase its tail

    def __call__(self, done: int, total: int | None) -> None:
        if total is not None and not self.shown and done >= total and not self.always:
            return
        self.shown = True
        if total:
            width = 30
            filled = width * done // max(total, 1)
            self.ended = done >= total
            line = f"{self.label} [{'#' * filled}{'.' * (width - filled)}] {done}/{total}"
        else:
            line = f"{self.label}: {done} samples"
        self._width = max(self._width, len(line))
        sys.stderr.write("\r" + line.ljust(self._width) + ("\n" if self.ended else ""))
        sys.stderr.flush()

    def note(self, text: str) -> None:
        """Shows what is being done now after the bar (on its next redraw)."""
        self.label = f"{self.label.split(' | ')[0]} | {text}"

    def close(self) -> None:
        if self.shown and not self.ended:
            sys.stderr.write("\n")
            sys.stderr.flush()
            self.ended = True


class _TqdmBar:
    """The same interface as :class:`TextBar` on a ``tqdm.auto`` bar (a widget in notebooks).

    The bar is created on the first report that deserves one (so ``always=False`` stays silent for
    work done in one step) and closes itself when ``done`` reaches a known total.
    """

    def __init__(self, label: str, total: int | None = None, always: bool = True, unit: str = "sample") -> None:
        from tqdm.auto import tqdm  # ImportError when tqdm is not installed: the caller falls back

        self._tqdm = tqdm
        self.label, self.always, self.unit = label, always, unit
        self.bar: Any = None
        self.done = 0
        if always and total is not None:
            self._open(total)

    def _open(self, total: int | None) -> None:
        self.bar = self._tqdm(total=total, desc=self.label, unit=self.unit, dynamic_ncols=True)

    def __call__(self, done: int, total: int | None) -> None:
        if self.bar is None:
            if total is not None and done >= total and not self.always:
                return
            self._open(total)
        if total is not None and self.bar.total != total:
            self.bar.total = total
        self.bar.update(done - self.done)
        self.done = done
        if total is not None and done >= total:
            self.close()

    def note(self, text: str) -> None:
        """Shows what is being done now next to the bar."""
        if self.bar is None:
            self._open(None)
        self.bar.set_postfix_str(text, refresh=True)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


def _interactive() -> bool:
    """Whether a bar is worth drawing by default: stderr is a terminal, or this runs in a Jupyter kernel."""
    if sys.stderr is not None and hasattr(sys.stderr, "isatty") and sys.stderr.isatty():
        return True
    ipython = sys.modules.get("IPython")
    if ipython is None:
        return False
    try:
        shell = ipython.get_ipython()
    except Exception:  # noqa: BLE001 - any failure means: not a notebook
        return False
    return shell is not None and hasattr(shell, "kernel")


def progress_reporter(progress: Any, label: str, total: int | None, always: bool = True,
                      unit: str = "sample") -> Callable[[int, int | None], Any] | None:
    """What reports progress: a tqdm bar (``tqdm.auto``) when tqdm is installed, else a :class:`TextBar`.

    Parameters
    ----------
    progress : None, bool or callable
        ``None``: a bar when stderr is a terminal or in a Jupyter notebook; ``True``: always;
        ``False``: never; a callable is returned as it is and called with ``(done, total)``.
    label : str
        The bar's description.
    total : int or None
        The amount of work when known in advance (it may also arrive with each report).
    always : bool
        ``False``: no bar when the first report says the work is already done (one step, nothing
        worth a bar), as ``Explainer.explain`` wants for single-pass methods.
    unit : str
        What is counted (tqdm's rate shows it).

    Returns
    -------
    callable or None
        Called as ``report(done, total)``; the bars also have ``close()`` and ``note(text)``.
    """
    if progress is False:
        return None
    if callable(progress) and progress is not True:
        return progress
    if progress is None and not _interactive():
        return None
    if progress not in (None, True):
        raise ValueError(f"progress must be None, True, False or a callable(done, total); got {progress!r}")
    try:
        return _TqdmBar(label, total, always=always, unit=unit)
    except ImportError:
        return TextBar(label, always=always)


def explain_progress(progress: Any, method: str) -> Callable[[int, int | None], Any] | None:
    """The progress reporter of ``Explainer.explain``: multi-pass drivers report ``(done, total)``
    after each batch of passes; single-pass methods draw no bar unless asked (``progress=True``)."""
    return progress_reporter(progress, method, None, always=progress is True, unit="step")
