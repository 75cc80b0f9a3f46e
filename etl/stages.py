"""Normalize and load side by side: the two stages every price job runs on
its raw parts (a sync as they arrive, a resume or a replay from disk), and the
counts they keep."""

from __future__ import annotations

import logging
import queue
import threading
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import polars as pl

from etl.errors import EtlError, StageError
from etl.load import LoadResult
from etl.normalize import Normalizer, NormalizeResult

if TYPE_CHECKING:
    from etl.sync import Job

log = logging.getLogger(__name__)


@dataclass
class PriceTally:
    """Counts of a price job, filled by the stages as parts go through them."""

    rows_fetched: int = 0
    rows_inserted: int = 0
    rows_updated: int = 0
    rows_rejected: int = 0
    rows_valid: int = 0  # rows that passed the checks, stored already or not
    rows_pct_out_of_range: int = 0  # stored with price_change_pct NULL
    failed: dict[str, str] = field(default_factory=dict)  # symbol -> reason
    done: int = 0
    not_fetched: int = 0  # requests never made: interrupted, or the breaker opened
    answers_on_disk: int = 0  # answers read back by normalize (replay and resume)
    rows_on_disk: int = 0  # records in their good answers
    answers_resumed: int = 0  # answers a run that died left on disk, loaded by this one
    rows_resumed: int = 0  # rows of those answers this run inserted

    def normalized(self, result: NormalizeResult) -> None:
        self.answers_on_disk += result.answers
        self.rows_on_disk += result.rows_fetched
        self.rows_rejected += result.rejected
        self.rows_valid += result.rows
        self.rows_pct_out_of_range += result.pct_out_of_range
        self.failed.update(result.failed)

    def loaded(self, result: LoadResult) -> None:
        self.rows_inserted += result.inserted
        self.rows_updated += result.updated


class Stages:
    """Normalize and load, each on a thread of its own, fed raw part paths.

    While the extract (the caller's thread) waits on the API, polars
    normalizes one part and PostgreSQL takes the one before. Each queue holds
    one part, so a slow database holds the fetching back instead of letting
    answers pile up. After a failure a stage stops working but keeps draining
    its queue: the extract still completes, and everything fetched stays on
    disk for the next run to load.
    """

    def __init__(
        self,
        job: Job,
        normalizer: Normalizer,
        overwrite: bool,
        tally: PriceTally,
    ) -> None:
        self._job, self._normalizer, self._overwrite = job, normalizer, overwrite
        self._tally = tally
        self._raw: queue.Queue[Path | None] = queue.Queue(maxsize=1)
        self._typed: queue.Queue[NormalizeResult | None] = queue.Queue(maxsize=1)
        self.error: StageError | None = None
        self._threads = [
            threading.Thread(target=self._normalize, name="normalize", daemon=True),
            threading.Thread(target=self._load, name="load", daemon=True),
        ]
        for thread in self._threads:
            thread.start()

    def put(self, raw: Path) -> None:
        self._raw.put(raw)

    def finish(self) -> None:
        """Wait until every part put is through both stages (or a stage failed)."""
        self._raw.put(None)
        for thread in self._threads:
            thread.join()

    def _fail(self, stage: str, exc: Exception) -> None:
        if self.error is None:
            detail = str(exc) if isinstance(exc, EtlError) else repr(exc)
            self.error = StageError(stage, self._job.run_id, detail)

    def _normalize(self) -> None:
        try:
            while (raw := self._raw.get()) is not None:
                if self.error is None:
                    self._normalize_one(raw)
        finally:
            self._typed.put(None)

    def _normalize_one(self, raw: Path) -> None:
        # A method of its own, so that no local outlives the part: the typed
        # rows ride on the result to load and are freed once loaded.
        try:
            result = self._normalizer.run(raw)
        except Exception as exc:
            self._fail("normalize", exc)
            return
        self._tally.normalized(result)
        log.debug(
            "normalize %s: %d rows, %d rejected in %.2fs",
            raw.name,
            result.rows,
            result.rejected,
            result.seconds,
        )
        if result.typed is not None:
            self._typed.put(result)

    def _load(self) -> None:
        while (part := self._typed.get()) is not None:
            if self.error is None:
                self._load_one(part.typed, part.frame)
            del part

    def _load_one(self, typed: Path, rows: pl.DataFrame | None) -> None:
        try:
            result = self._job.loader.load_part(typed, overwrite=self._overwrite, rows=rows)
        except Exception as exc:
            self._fail("load", exc)
            return
        self._tally.loaded(result)
        log.debug(
            "load %s: %d rows, %d inserted in %.2fs",
            typed.name,
            result.rows,
            result.inserted,
            result.seconds,
        )

    def run(self, parts: Iterable[Path]) -> None:
        """Put every part through, then wait; raise the first stage's error."""
        try:
            for part in parts:
                self.put(part)
        finally:
            self.finish()
        if self.error is not None:
            raise self.error
