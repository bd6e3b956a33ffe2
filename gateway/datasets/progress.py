"""A one-line progress bar for the maintenance commands, drawn with `\\r` on a terminal only.

Off a terminal (a pipe, a log file, `--json`) it stays silent, so the output stays parseable.
"""

from __future__ import annotations

import sys
import time
from typing import TextIO

_WIDTH = 30
_INTERVAL = 0.1


class Progress:
    def __init__(self, label: str, total: int | None = None, *, stream: TextIO | None = None, enabled: bool | None = None):
        self.label = label
        self.total = total
        self.done = 0
        self.note = ""
        self._stream = stream or sys.stderr
        self._enabled = self._stream.isatty() if enabled is None else enabled
        self._drawn = 0.0
        self._started = time.monotonic()

    def advance(self, count: int = 1, note: str | None = None) -> None:
        self.done += count
        if note is not None:
            self.note = note
        now = time.monotonic()
        # Redrawing on every item would cost more than the work at millions of items.
        if self._enabled and now - self._drawn >= _INTERVAL:
            self._drawn = now
            self._draw(now)

    def _draw(self, now: float) -> None:
        rate = self.done / max(now - self._started, 1e-6)
        if self.total:
            filled = min(_WIDTH, _WIDTH * self.done // self.total)
            bar = f"[{'#' * filled}{'.' * (_WIDTH - filled)}] {self.done}/{self.total}"
        else:
            bar = f"{self.done}"
        line = f"{self.label} {bar} {rate:.0f}/s {self.note}"
        self._stream.write("\r" + line[:120].ljust(120))
        self._stream.flush()

    def close(self) -> None:
        if self._enabled:
            self._draw(time.monotonic())
            self._stream.write("\n")
            self._stream.flush()
