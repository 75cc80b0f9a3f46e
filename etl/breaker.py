"""The circuit breaker of the extract: stop asking an API that keeps failing.

Every request's final outcome (after its own retries) is recorded. The breaker
opens after ``consecutive`` failures in a row, or once more than
``failed_share`` of the requests failed, counted only after ``min_requests``
requests so that a few early failures do not stop a long run. Something that
makes every later request pointless (a used-up quota) opens it at once.

Once open it stays open for the run: the extract sends nothing more, what
arrived is kept and loaded, and the run ends failed with ``reason``.
"""

from __future__ import annotations

import threading


class Breaker:
    """Thread-safe: the fetch workers record into one breaker per run."""

    def __init__(
        self, consecutive: int = 20, failed_share: float = 0.5, min_requests: int = 100
    ) -> None:
        self.consecutive = consecutive  # 0: never open for failures in a row
        self.failed_share = failed_share
        self.min_requests = min_requests
        self.requests = 0
        self.failures = 0
        self._in_a_row = 0
        self.reason: str | None = None  # set when open
        self._lock = threading.Lock()

    @property
    def open(self) -> bool:
        return self.reason is not None

    def record(self, ok: bool, error: str | None = None) -> bool:
        """Count one request's final outcome; True once the breaker is open."""
        with self._lock:
            self.requests += 1
            if ok:
                self._in_a_row = 0
                return self.open
            self.failures += 1
            self._in_a_row += 1
            last = f" (last: {error})" if error else ""
            if self.reason is None and self.consecutive and self._in_a_row >= self.consecutive:
                self.reason = f"{self._in_a_row} requests in a row failed{last}"
            elif (
                self.reason is None
                and self.requests >= self.min_requests
                and self.failures / self.requests > self.failed_share
            ):
                self.reason = (
                    f"{self.failures} of {self.requests} requests failed, more than "
                    f"{self.failed_share:.0%}{last}"
                )
            return self.open

    def trip(self, reason: str) -> None:
        """Open at once (the first reason is kept)."""
        with self._lock:
            if self.reason is None:
                self.reason = reason
