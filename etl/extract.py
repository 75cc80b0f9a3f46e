"""Extract: API requests, run from a bounded pool of workers, into durable raw parts.

Answers come back as ``Fetched`` records in completion order and are written
as they are to the snapshot's raw parts (``snapshot.RawWriter``), each part
durable within seconds, before anything parses them further; each part is
then handed on to normalize. The extract returns what it did as an
``ExtractResult``: its counts are its own, never shared with the stages.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass
from datetime import date
from pathlib import Path

from etl.answers import Fetched
from etl.api import TsanghiClient
from etl.context import Job
from etl.priority import lower_priority
from etl.snapshot import RawWriter
from etl.symbols import MARKETS

log = logging.getLogger(__name__)

# How often the extract looks at the stop flag and the age of its buffer while
# no answer arrives.
STOP_CHECK_SECONDS = 0.5


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
    pool = ThreadPoolExecutor(
        max_workers=workers, thread_name_prefix="fetch", initializer=lower_priority
    )
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


@dataclass(frozen=True)
class ExtractResult:
    """What one extract fetched and wrote to raw parts."""

    answers: int  # answers written, those at hand before the extract included
    rows_fetched: int  # records in the good ones
    requests_not_made: int  # interrupted, or the circuit breaker opened: the next run asks
    parts: int  # raw parts written and handed on
    seconds: float
    # Symbols whose own /daily answer was good but held no record: suspended, or a
    # glitch of the source; either way not taken as asked (see prices.completed_days).
    empty: frozenset[str] = frozenset()


def extract_prices(
    job: Job,
    requests: list[Request],
    answers: list[Fetched],
    put: Callable[[Path], None],
    done: int = 0,
    total: int = 0,
) -> ExtractResult:
    """Fetch ``requests`` into raw parts, each durable within seconds, and ``put``
    each part on to the stages.

    ``answers`` (already at hand) go first, in one part of their own: the
    per-day answers' rows must be normalized together for each day's change to
    refer to the day before. ``done`` of ``total`` symbols were done before
    the first request, for the progress the job reports.
    """
    assert job.client is not None
    started = time.monotonic()
    writer = RawWriter(job.snapshot, "prices", job.settings.batch_rows)
    rows_fetched = parts = received = 0
    empty: set[str] = set()

    def hand_on() -> None:
        nonlocal parts
        if (part := writer.flush()) is not None:
            parts += 1
            put(part)

    for fetched in answers:
        writer.add(fetched)
        rows_fetched += fetched.rows
    hand_on()
    for fetched in fetch_all(job.client, requests, job.settings.workers, tick=STOP_CHECK_SECONDS):
        if job.stop.is_set():
            break  # answers still in flight are dropped; the next run asks again
        if fetched is not None:
            received += 1
            symbol = f"{MARKETS[fetched.exchange]}.{fetched.ticker}"
            if fetched.ok:
                rows_fetched += fetched.rows
                if fetched.ticker and not fetched.rows:
                    empty.add(symbol)
            else:
                log.warning("%s skipped: %s", symbol, fetched.error)
            writer.add(fetched)
            if job.progress:
                job.progress(done + received, total, rows_fetched)
        if writer.due():
            hand_on()
    hand_on()
    return ExtractResult(
        answers=len(answers) + received,
        rows_fetched=rows_fetched,
        requests_not_made=len(requests) - received,
        parts=parts,
        seconds=time.monotonic() - started,
        empty=frozenset(empty),
    )
