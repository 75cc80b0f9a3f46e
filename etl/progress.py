"""Progress of a long fetch: one line redrawn on a terminal, log lines elsewhere.

The line is click's progress bar's (`prices [####----] 12/1200 ETFs ...`), drawn
on stderr and sized to the width of the terminal stderr is on, so every update
rewrites one line. click.progressbar cannot do that through its public API: it
sizes an automatic bar by stdout (a pipe under `etl sync | tee`) and fixes a set
width when it starts, while here the figures grow and a narrow terminal drops
the rates. So the line is drawn here, with click.echo. Cron and pipes get log
lines instead; --quiet and --json turn it off.
"""

from __future__ import annotations

import logging
import os
import sys
import time

import click

_MIN_BAR = 10
# Carriage return, then the cursor hidden while the bar is up (shown again at the end).
_START, _SHOW_CURSOR = "\r\x1b[?25l", "\x1b[?25h"
_ERASE = "\x1b[K"  # to the end of the line: nothing of a longer earlier line is left
_shown: ProgressBar | None = None  # the bar on the terminal now, if any


def clear_line() -> None:
    """Wipe the bar's line before a log line is written; the next update redraws it."""
    if _shown is not None and _shown._drawn:
        click.echo("\r" + _ERASE, file=_shown._file, nl=False)
        _shown._last = ""


def _bar_width(label: str, info: str, columns: int) -> int:
    """What `columns` - 1 leaves the bar (a line that fills the last column would wrap
    on some terminals)."""
    return max(0, columns - len(f"{label} [] {info}") - 1)


def bar_line(label: str, done: int, total: int, info: str, columns: int) -> str:
    """`label [###---] info`, the bar as wide as fits in the terminal's `columns`."""
    width = _bar_width(label, info, columns)
    filled = width * min(done, total) // total if total else 0
    return f"{label} [{'#' * filled}{'-' * (width - filled)}] {info}"


class ProgressBar:
    def __init__(self, enabled: bool = True, label: str = "prices") -> None:
        self._file = sys.stderr
        self._on = enabled and self._file.isatty()
        self._label = label
        self._started = time.monotonic()
        self._drawn = False  # the line is on the terminal (the cursor hidden)
        self._last = ""  # the line on the terminal now ("" once a log line wiped it)

    def _columns(self) -> int:
        try:  # a terminal that does not know its size says 0
            return os.get_terminal_size(self._file.fileno()).columns or 80
        except (OSError, ValueError):
            return 80

    def update(self, done: int, total: int, rows: int) -> None:
        if not self._on or total <= 0:
            return
        global _shown
        _shown = self
        elapsed = max(time.monotonic() - self._started, 1e-6)
        eta = (total - done) * elapsed / done if done else 0
        # Fixed-width figures: the bar keeps its length while the numbers grow.
        count = f"{done:>{len(str(total))}}/{total} ETFs"
        info = (
            f"{count} {rows:>10,} rows {rows / elapsed:>8,.0f} rows/s "
            f"ETA {int(eta // 60):>2}:{int(eta % 60):02d}"
        )
        columns = self._columns()
        if _bar_width(self._label, info, columns) < _MIN_BAR:
            info = count  # a narrow terminal: drop the rates, keep the count
        line = bar_line(self._label, done, total, info, columns)
        if line != self._last:
            click.echo(_START + line + _ERASE, file=self._file, nl=False)
            self._file.flush()
            self._drawn, self._last = True, line

    def close(self) -> None:
        global _shown
        if self._drawn:  # end the bar's line, unless a log line already took its place
            click.echo(_SHOW_CURSOR + ("\n" if self._last else ""), file=self._file, nl=False)
            self._file.flush()
            self._drawn = False
        if _shown is self:
            _shown = None


class LogHandler(logging.StreamHandler):
    """Log lines on stderr that never end up glued to the progress bar's line."""

    def emit(self, record: logging.LogRecord) -> None:
        clear_line()
        super().emit(record)
