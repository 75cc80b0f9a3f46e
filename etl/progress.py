"""Progress of a long fetch: click's own progress bar, on a terminal only.

It is drawn on stderr and sized to the width of the terminal stderr is on, so
every update rewrites one line (click sizes an automatic bar by stdout, which
is a pipe under `etl sync | tee`). Cron and pipes get log lines instead;
--quiet and --json turn it off.
"""

from __future__ import annotations

import logging
import os
import sys
import time
from typing import Any

import click

_MIN_BAR = 10
_shown: ProgressBar | None = None  # the bar on the terminal now, if any


def clear_line() -> None:
    """Wipe the bar's line before a log line is written; the next update redraws it."""
    if _shown is not None and _shown._bar is not None:
        _shown._file.write("\r\x1b[K")
        _shown._bar._last_line = None


class ProgressBar:
    def __init__(self, enabled: bool = True, label: str = "prices") -> None:
        self._file = sys.stderr
        self._on = enabled and self._file.isatty()
        self._label = label
        self._started = time.monotonic()
        self._bar: Any = None
        self._done = 0

    def _columns(self) -> int:
        try:  # a terminal that does not know its size says 0
            return os.get_terminal_size(self._file.fileno()).columns or 80
        except (OSError, ValueError):
            return 80

    def update(self, done: int, total: int, rows: int) -> None:
        if not self._on or total <= 0:
            return
        if self._bar is None:
            self._bar = click.progressbar(
                length=total,
                label=self._label,
                file=self._file,
                show_pos=False,  # in the info text, at a fixed width
                show_percent=False,
                show_eta=False,  # shown in the info text, labelled
                width=_MIN_BAR,
                bar_template="%(label)s [%(bar)s] %(info)s",
                item_show_func=lambda info: info,
                update_min_steps=1,
            )
            self._bar.__enter__()
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
        bar = self._bar
        bar.current_item = info
        # Fit the line to the terminal: measure it without a bar, give the bar what is left.
        bar.width = 0
        clutter = len(bar.format_progress_line())
        bar.width = max(0, self._columns() - clutter - 1)
        if bar.width < _MIN_BAR:  # a narrow terminal: drop the rates, keep the count
            bar.current_item = count
            bar.width = max(0, self._columns() - len(bar.format_progress_line()) - 1)
        bar.max_width = None  # never pad to an earlier, wider line
        bar.update(done - self._done, bar.current_item)
        self._done = done

    def close(self) -> None:
        global _shown
        if self._bar is not None:
            self._bar.__exit__(None, None, None)
            self._bar = None
        if _shown is self:
            _shown = None


class LogHandler(logging.StreamHandler):
    """Log lines on stderr that never end up glued to the progress bar's line."""

    def emit(self, record: logging.LogRecord) -> None:
        clear_line()
        super().emit(record)
