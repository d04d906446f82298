"""A tiny progress bar on stderr (the project has no tqdm).

It draws only when stderr is a terminal and the caller did not ask for quiet, so logs
and CI output never fill with carriage returns. Redraws are throttled to a few per
second: a bar must not slow down the loop it reports on.
"""

from __future__ import annotations

import sys
import time
from types import TracebackType
from typing import TextIO

_WIDTH = 30
_MIN_INTERVAL_S = 0.1


class Progress:
    """``with Progress(total, "mining") as bar: ... bar.advance()``.

    ``total`` may be ``None`` (unknown): the bar then shows a count and a rate only.
    ``note`` adds a short status after the bar (for example how many records were kept).
    """

    def __init__(
        self,
        total: int | None,
        label: str,
        quiet: bool = False,
        stream: TextIO | None = None,
    ) -> None:
        self.total = total
        self.label = label
        self.done = 0
        self.note = ""
        self._stream = stream if stream is not None else sys.stderr
        self._enabled = not quiet and self._stream.isatty()
        self._start = time.monotonic()
        self._last_draw = 0.0

    def advance(self, n: int = 1, note: str | None = None) -> None:
        """Count ``n`` more units done and redraw if enough time has passed."""
        self.done += n
        if note is not None:
            self.note = note
        if self._enabled:
            now = time.monotonic()
            if now - self._last_draw >= _MIN_INTERVAL_S:
                self._last_draw = now
                self._draw(now)

    def _draw(self, now: float) -> None:
        elapsed = max(now - self._start, 1e-9)
        rate = self.done / elapsed
        if self.total:
            frac = min(self.done / self.total, 1.0)
            filled = int(frac * _WIDTH)
            bar = "#" * filled + "-" * (_WIDTH - filled)
            eta = (self.total - self.done) / rate if rate > 0 else 0.0
            text = (
                f"{self.label} [{bar}] {self.done}/{self.total} "
                f"{rate:.0f}/s eta {eta:.0f}s"
            )
        else:
            text = f"{self.label} {self.done} {rate:.0f}/s"
        if self.note:
            text += f" {self.note}"
        self._stream.write("\r" + text[:200] + "\x1b[K")
        self._stream.flush()

    def close(self) -> None:
        """Draw the final state and end the line."""
        if self._enabled:
            self._draw(time.monotonic())
            self._stream.write("\n")
            self._stream.flush()
            self._enabled = False

    def __enter__(self) -> Progress:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()
