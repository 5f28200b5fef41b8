"""Progress reports for long commands, and quieting the libraries' own output.

:class:`Progress` draws a tqdm bar when stderr is a terminal; otherwise (a log
file, a pipe, a batch job) it writes one plain line to stderr at least every
``interval`` seconds and once at the end, formatted by tqdm
(``lsr encode: 1200/5183 docs [00:30<01:40, 40.00 docs/s]``: done/total,
elapsed<ETA, rate).

:func:`quiet_libraries` silences transformers' and huggingface_hub's progress
bars and the INFO lines of transformers and ir_datasets for the duration of a
block and restores their settings afterwards.
"""

from __future__ import annotations

import contextlib
import logging
import sys
import time
from typing import IO


class Progress:
    """A counter shown as a bar on a terminal, as a line every ``interval`` seconds elsewhere.

    ``enabled=False`` shows nothing. Use as a context manager (a closing line is written unless the
    block raised) or call :meth:`close` (which writes it).
    """

    def __init__(self, desc: str, total: int | None = None, *, unit: str = "docs", enabled: bool = True,
                 interval: float = 30.0, file: IO[str] | None = None, initial: int = 0):
        from tqdm.auto import tqdm

        self.desc, self.total, self.unit, self.interval = desc, total, unit, interval
        self.file = file if file is not None else sys.stderr
        self.enabled = enabled
        self.n = initial
        self._start_n = initial
        self._t0 = time.monotonic()
        self._last = self._t0
        isatty = getattr(self.file, "isatty", None)
        self._bar = None
        self._lines = False
        if enabled and isatty is not None and isatty():
            self._bar = tqdm(total=total, initial=initial, unit=f" {unit}", desc=desc, file=self.file,
                             dynamic_ncols=True, smoothing=0.1)
        elif enabled:
            self._lines = True

    def update(self, n: int = 1) -> None:
        self.n += n
        if self._bar is not None:
            self._bar.update(n)
        elif self._lines:
            now = time.monotonic()
            if now - self._last >= self.interval:
                self._last = now
                self._line(now)

    def set_total(self, total: int | None) -> None:
        self.total = total
        if self._bar is not None:
            self._bar.total = total
            self._bar.refresh()

    def _line(self, now: float) -> None:
        from tqdm import tqdm

        elapsed = now - self._t0
        done = self.n - self._start_n
        rate = done / elapsed if elapsed > 0 else None
        meter = tqdm.format_meter(self.n, self.total, elapsed, rate=rate, unit=f" {self.unit}",
                                  bar_format="{n_fmt}/{total_fmt}{unit} [{elapsed}<{remaining}, {rate_fmt}]"
                                  if self.total else "{n_fmt}{unit} [{elapsed}, {rate_fmt}]")
        print(f"{self.desc}: {meter}", file=self.file, flush=True)

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()
            self._bar = None
        elif self._lines:
            self._lines = False
            self._line(time.monotonic())

    def __enter__(self) -> "Progress":
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is not None:
            self._lines = False   # no closing line after an error: the error is the last line
        self.close()


def _quiet_irds_bars(undo: list) -> None:
    """Make ir_datasets' own tqdm bars (drawn while it downloads or builds a cache) silent until undone.

    ir_datasets has no switch for them: it takes tqdm from ``ir_datasets.lazy_libs``' module cache,
    so a tqdm subclass that is always disabled goes there for the block.
    """
    try:
        from ir_datasets import lazy_libs
    except ImportError:
        return
    cache = getattr(lazy_libs, "_cache", None)
    if not isinstance(cache, dict):
        return
    import types

    from tqdm import tqdm as _tqdm

    class _Silent(_tqdm):
        def __init__(self, *args, **kwargs):
            kwargs["disable"] = True
            super().__init__(*args, **kwargs)

    had = "tqdm" in cache
    old = cache.get("tqdm")
    cache["tqdm"] = types.SimpleNamespace(tqdm=_Silent)

    def restore():
        if had:
            cache["tqdm"] = old
        else:
            cache.pop("tqdm", None)

    undo.append(restore)


@contextlib.contextmanager
def quiet_libraries(quiet: bool = True, irds: bool = False):
    """Within the block (when ``quiet``), no progress bars from transformers / huggingface_hub and no
    INFO lines from any logger (transformers, ir_datasets, ...); with ``irds`` (the block reads an
    ``irds:`` source) no ir_datasets bars either. Everything is restored on exit.
    """
    if not quiet:
        yield
        return
    undo: list = []
    if irds:
        _quiet_irds_bars(undo)
    try:
        from transformers.utils import logging as hf_logging
    except ImportError:
        hf_logging = None
    if hf_logging is not None:
        verbosity = hf_logging.get_verbosity()
        bars = hf_logging.is_progress_bar_enabled()
        hf_logging.set_verbosity_error()
        hf_logging.disable_progress_bar()

        def restore_hf():
            hf_logging.set_verbosity(verbosity)
            if bars:
                hf_logging.enable_progress_bar()

        undo.append(restore_hf)
    try:
        from huggingface_hub import utils as hub_utils
    except ImportError:
        hub_utils = None
    if hub_utils is not None and hasattr(hub_utils, "are_progress_bars_disabled"):
        hub_off = hub_utils.are_progress_bars_disabled()
        hub_utils.disable_progress_bars()
        if not hub_off:
            undo.append(hub_utils.enable_progress_bars)
    # ir_datasets writes "[INFO] ..." lines through its own handlers on loggers it sets to INFO
    # when first used, so a level set on them now would be overridden: disable INFO globally instead
    prev_disable = logging.root.manager.disable
    logging.disable(max(prev_disable, logging.INFO))
    undo.append(lambda: logging.disable(prev_disable))
    try:
        yield
    finally:
        for fn in reversed(undo):
            fn()


__all__ = ["Progress", "quiet_libraries"]
