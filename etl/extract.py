"""Extract: API requests, run from a bounded pool of workers.

Answers come back as ``Fetched`` records in completion order; the caller
writes them to the snapshot before anything parses them further.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass
from datetime import date

from etl.answers import Fetched
from etl.api import TsanghiClient

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Request:
    """One API call of a price sync: a ticker's range, or an exchange's day."""

    endpoint: str  # "daily" or "latest"
    exchange: str
    ticker: str | None = None
    start: date | None = None
    end: date | None = None
    day: date | None = None

    def run(self, client: TsanghiClient) -> Fetched:
        if self.endpoint == "latest":
            return client.latest(self.exchange, _iso(self.day))
        assert self.ticker is not None
        return client.daily(self.exchange, self.ticker, _iso(self.start), _iso(self.end))


def _iso(value: date | None) -> str | None:
    return value.isoformat() if value else None


def fetch_all(
    client: TsanghiClient, requests: list[Request], workers: int, tick: float | None = None
) -> Iterator[Fetched | None]:
    """Run requests on ``workers`` threads; yield results as they complete.

    At most a few requests per worker are queued ahead, so a slow consumer
    (the loader) holds back the fetching instead of piling answers up in
    memory. An AuthError from any worker stops the whole extract; once the
    client's circuit breaker is open, no further request is started. With
    ``tick``, None is yielded whenever that many seconds pass without an
    answer, so the caller can write out what it holds meanwhile.
    """
    window = workers * 2
    pending: set[Future[Fetched]] = set()
    todo = iter(requests)
    pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="fetch")
    try:
        while True:
            if client.breaker.open:  # the circuit breaker stops the extract: start
                todo = iter(())  # nothing more, keep what is in flight
            while len(pending) < window:
                request = next(todo, None)
                if request is None:
                    break
                pending.add(pool.submit(request.run, client))
            if not pending:
                return
            done, pending = wait(pending, timeout=tick, return_when=FIRST_COMPLETED)
            if not done:
                yield None
            for future in done:
                yield future.result()
    finally:
        # A consumer that stops early (an interrupt, an error) does not wait
        # for the requests still in flight: their answers are dropped.
        pool.shutdown(wait=False, cancel_futures=True)
