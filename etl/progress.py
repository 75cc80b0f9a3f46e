"""A one-line progress display for long fetches, on a terminal only.

Cron and pipes get log lines instead; --quiet and --json turn it off.
"""

from __future__ import annotations

import sys
import time


class ProgressBar:
    def __init__(self, enabled: bool = True, label: str = "prices") -> None:
        self._on = enabled and sys.stderr.isatty()
        self._label = label
        self._started = time.monotonic()
        self._last = 0.0
        self._shown = False

    def update(self, done: int, total: int, rows: int) -> None:
        if not self._on:
            return
        now = time.monotonic()
        if now - self._last < 0.2 and done < total:
            return
        self._last = now
        elapsed = max(now - self._started, 1e-6)
        rate = rows / elapsed
        eta = (total - done) * elapsed / done if done else 0
        width = 24
        filled = int(width * done / total) if total else width
        line = (
            f"\r{self._label} [{'#' * filled}{'.' * (width - filled)}] {done}/{total} ETFs "
            f"{rows:,} rows {rate:,.0f} rows/s ETA {int(eta // 60)}:{int(eta % 60):02d} "
        )
        sys.stderr.write(line)
        sys.stderr.flush()
        self._shown = True

    def close(self) -> None:
        if self._shown:
            sys.stderr.write("\n")
            sys.stderr.flush()
            self._shown = False
