"""Progress bars that do not flood logs.

`progress(...)` is a drop-in for `tqdm(...)`. On a terminal it is a normal tqdm bar (dynamic_ncols). When the
stream is not a terminal (a log file, a pipe, CI), the bar prints plain newline-terminated lines instead of
carriage-return redraws: one at the start, at most one per update every `VLA_PROGRESS_INTERVAL_S` seconds
(default 30), and a final one at close, e.g. `train: 1200/5000 (24%) 142.1 it/s 00:08<00:27 loss=0.312`.
"""

from __future__ import annotations

import io
import os
import sys

from tqdm import tqdm

__all__ = ["progress", "default_interval_s", "ENV_INTERVAL", "DEFAULT_INTERVAL_S"]

ENV_INTERVAL = "VLA_PROGRESS_INTERVAL_S"
DEFAULT_INTERVAL_S = 30.0


def default_interval_s() -> float:
    """Seconds between two log lines of a non-terminal bar: $VLA_PROGRESS_INTERVAL_S, else 30."""
    raw = os.environ.get(ENV_INTERVAL, "").strip()
    if not raw:
        return DEFAULT_INTERVAL_S
    try:
        value = float(raw)
    except ValueError:
        raise ValueError(f"{ENV_INTERVAL}={raw!r}: expected a number of seconds") from None
    if not value >= 0:  # also rejects nan
        raise ValueError(f"{ENV_INTERVAL}={raw!r}: must be >= 0")
    return value


class _Discard(io.TextIOBase):
    """tqdm's own output (redraws, '\\r', the closing '\\n') goes here; _LogBar.display writes the lines."""

    encoding = "utf-8"

    def write(self, s: str) -> int:
        return len(s)


class _LogBar(tqdm):
    """tqdm whose display is one plain line per call, at most one every `interval` seconds (plus the final)."""

    monitor_interval = 0  # no monitor thread forcing redraws

    def __init__(self, *args, out, interval: float, **kw):
        self._out, self._interval, self._last_line, self._last_state = out, interval, None, None
        super().__init__(*args, file=_Discard(), mininterval=interval, miniters=1, **kw)

    def display(self, msg=None, pos=None):
        closing = self.disable  # tqdm.close() sets disable before its last display()
        now, state = self._time(), (self.n, self.postfix)
        if not closing and self._last_line is not None and (
            now - self._last_line < self._interval or state == self._last_state  # nothing new to say
        ):
            return False
        self._last_line, self._last_state = now, state
        self._out.write(self._line() + "\n")
        self._out.flush()
        return True

    def _line(self) -> str:
        d = self.format_dict
        n, total, elapsed = d["n"], d["total"], d["elapsed"]
        desc = (d["prefix"] or "").rstrip(": ")
        parts = [f"{desc}:"] if desc else []
        parts.append(f"{n}/{total} ({100 * n / total:.0f}%)" if total else f"{n}")
        rate = d["rate"]
        if rate is None and n > d["initial"] and elapsed > 0:
            rate = (n - d["initial"]) / elapsed
        if rate is not None:
            parts.append(f"{rate:.1f} {d['unit']}/s")
        eta = f"<{self.format_interval((total - n) / rate)}" if total and rate and n < total else ""
        parts.append(self.format_interval(elapsed) + eta)
        if d["postfix"]:
            parts.append(str(d["postfix"]))
        return " ".join(parts)


def _isatty(stream) -> bool:
    try:
        return bool(stream.isatty())
    except (AttributeError, ValueError):  # no isatty, or closed
        return False


def progress(iterable=None, *, total=None, desc=None, disable=False, initial=0, interval_s: float | None = None,
             **kw) -> tqdm:
    """A tqdm bar on a terminal, periodic plain lines elsewhere.

    Arguments are tqdm's (`unit`, `leave`, `file`, ... pass through in `kw`); the stream is `file`, else
    sys.stderr at call time. `interval_s` (non-terminal only): seconds between lines, default
    $VLA_PROGRESS_INTERVAL_S or 30; 0 prints a line on every update.
    """
    stream = kw.pop("file", None) or sys.stderr
    disable = disable or stream is None  # sys.stderr is None under pythonw and some daemons
    common = dict(total=total, desc=desc, disable=disable, initial=initial)
    if disable or _isatty(stream):
        kw.setdefault("dynamic_ncols", True)
        return tqdm(iterable, file=stream, **common, **kw)
    for k in ("mininterval", "miniters", "maxinterval", "dynamic_ncols", "ncols", "position"):
        kw.pop(k, None)  # terminal layout / redraw timing: meaningless for log lines
    interval = default_interval_s() if interval_s is None else float(interval_s)
    return _LogBar(iterable, out=stream, interval=interval, **common, **kw)
