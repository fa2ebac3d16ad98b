"""Progress of long phases, shown in the form that suits where stderr goes.

- stderr is a terminal: a tqdm bar.
- stderr is redirected (a file, a pipe, a CI log): plain lines, the first once the phase has run
  ``FIRST_LINE_S``, then at most one a minute (``LINE_EVERY_S``), and one when a phase that wrote
  any ends: a log holds a few lines per long phase, none for quick ones, and no carriage returns.
- ``enabled=False`` (``--quiet``): nothing.

    with Progress(len(files), "decoding slices", "img", enabled=progress) as bar:
        for f in files:
            ...
            bar.update()

The training stages show the same through Lightning (brainvq.training.trainer).
"""

from __future__ import annotations

import sys
from time import monotonic

from tqdm.auto import tqdm

FIRST_LINE_S = 5.0  # redirected output: a phase's first line once it has run this long
LINE_EVERY_S = 60.0  # then at most one line this often


def stderr_is_terminal() -> bool:
    """True when stderr is an interactive terminal (bars), False when it is redirected (lines)."""
    try:
        return sys.stderr.isatty()
    except (AttributeError, ValueError):  # replaced or closed stream
        return False


def say(text: str) -> None:
    """One progress line on stderr."""
    print(text, file=sys.stderr, flush=True)


def duration(seconds: float) -> str:
    """A short duration: 42s, 3m05s, 1h02m."""
    s = int(round(seconds))
    if s < 60:
        return f"{s}s"
    if s < 3600:
        return f"{s // 60}m{s % 60:02d}s"
    return f"{s // 3600}h{s % 3600 // 60:02d}m"


class Progress:
    """Counts work done in one phase (``update(n)``) and shows it; see the module docstring."""

    def __init__(
        self,
        total: int | None,
        desc: str,
        unit: str = "it",
        enabled: bool = True,
        first_s: float = FIRST_LINE_S,
        every_s: float = LINE_EVERY_S,
    ) -> None:
        self.total, self.desc, self.unit = total, desc, unit
        self.enabled, self.every_s = enabled, every_s
        self.done = 0
        self._start = monotonic()
        self._next = self._start + first_s  # when a redirected line is due
        self._lines = 0
        self._bar = None
        self._closed = not enabled
        if enabled and stderr_is_terminal():
            self._bar = tqdm(total=total, desc=desc, unit=unit)

    def _line(self, finished: bool = False) -> str:
        elapsed = monotonic() - self._start
        of = f"/{self.total}" if self.total else ""
        text = f"{self.desc}: {self.done}{of} {self.unit}"
        if finished:
            return f"{text}, done in {duration(elapsed)}"
        if self.done and self.total and self.done < self.total:
            left = elapsed / self.done * (self.total - self.done)
            text += f" ({self.done / self.total:.0%}), {duration(elapsed)}, ~{duration(left)} left"
        return text

    def update(self, n: int = 1) -> None:
        """n more units done."""
        self.done += n
        if self._closed:
            return
        if self._bar is not None:
            self._bar.update(n)
            return
        now = monotonic()
        if now >= self._next:
            self._next = now + self.every_s
            self._lines += 1
            say(self._line())

    def close(self) -> None:
        """End the phase: close the bar, or write its last line."""
        if self._closed:
            return
        self._closed = True
        if self._bar is not None:
            self._bar.close()
        elif self._lines:
            say(self._line(finished=True))

    def __enter__(self) -> Progress:
        return self

    def __exit__(self, kind, value, tb) -> None:
        if kind is None:
            self.close()
        elif self._bar is not None:
            self._bar.close()  # interrupted or failed: no "done" line
            self._closed = True
        else:
            self._closed = True
