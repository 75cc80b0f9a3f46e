"""Normalize and load side by side: the two stages every price job runs on
its raw parts (a sync as they arrive, a resume or a replay from disk), and
what they did, as a ``StagesResult``."""

from __future__ import annotations

import logging
import queue
import threading
from collections.abc import Iterable
from dataclasses import dataclass, replace
from pathlib import Path

import polars as pl

from etl.context import Job
from etl.errors import EtlError, StageError
from etl.load import LoadResult
from etl.normalize import Normalizer, NormalizeResult
from etl.priority import lower_priority

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class StagesResult:
    """What normalize and load did with the parts put through them: the results
    each stage's thread produced, in order, and the first failure."""

    normalized: tuple[NormalizeResult, ...] = ()
    loaded: tuple[LoadResult, ...] = ()
    error: StageError | None = None

    def __add__(self, other: StagesResult) -> StagesResult:
        return StagesResult(
            self.normalized + other.normalized,
            self.loaded + other.loaded,
            self.error or other.error,
        )

    @property
    def answers(self) -> int:
        """API answers read back from the raw parts."""
        return sum(r.answers for r in self.normalized)

    @property
    def rows_on_disk(self) -> int:
        """Records in the good answers of the raw parts."""
        return sum(r.rows_fetched for r in self.normalized)

    @property
    def rows_valid(self) -> int:
        """Rows that passed the checks, stored already or not."""
        return sum(r.rows for r in self.normalized)

    @property
    def rows_rejected(self) -> int:
        return sum(r.rejected for r in self.normalized)

    @property
    def rows_pct_out_of_range(self) -> int:
        """Rows stored with price_change_pct NULL (beyond NUMERIC(8,4))."""
        return sum(r.pct_out_of_range for r in self.normalized)

    @property
    def failed(self) -> dict[str, str]:
        """symbol -> why its request failed; a later answer's reason wins."""
        return {s: why for r in self.normalized for s, why in r.failed.items()}

    @property
    def rows_inserted(self) -> int:
        return sum(r.inserted for r in self.loaded)

    @property
    def rows_updated(self) -> int:
        return sum(r.updated for r in self.loaded)


class Stages:
    """Normalize and load, each on a thread of its own, fed raw part paths.

    While the extract (the caller's thread) waits on the API, polars
    normalizes one part and PostgreSQL takes the one before. Each queue holds
    one part, so a slow database holds the fetching back instead of letting
    answers pile up. After a failure a stage stops working but keeps draining
    its queue: the extract still completes, and everything fetched stays on
    disk for the next run to load.

    Each thread keeps only its own results (normalize its NormalizeResults,
    load its LoadResults); the caller reads them once both threads are done.
    """

    def __init__(
        self,
        job: Job,
        normalizer: Normalizer,
        overwrite: bool,
    ) -> None:
        self._job, self._normalizer, self._overwrite = job, normalizer, overwrite
        self._normalized: list[NormalizeResult] = []  # appended by the normalize thread only
        self._loaded: list[LoadResult] = []  # appended by the load thread only
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

    def finish(self) -> StagesResult:
        """Wait until every part put is through both stages (or a stage failed)."""
        self._raw.put(None)
        for thread in self._threads:
            thread.join()
        return StagesResult(tuple(self._normalized), tuple(self._loaded), self.error)

    def _fail(self, stage: str, exc: Exception) -> None:
        if self.error is None:
            detail = str(exc) if isinstance(exc, EtlError) else repr(exc)
            self.error = StageError(stage, self._job.run_id, detail)

    def _normalize(self) -> None:
        lower_priority()  # the load and the database pace the run: they go first
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
        # Kept without its rows: the results of every part stay until the end.
        self._normalized.append(replace(result, frame=None))
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
        self._loaded.append(result)
        log.debug(
            "load %s: %d rows, %d inserted in %.2fs",
            typed.name,
            result.rows,
            result.inserted,
            result.seconds,
        )

    def run(self, parts: Iterable[Path]) -> StagesResult:
        """Put every part through, then wait; raise the first stage's error."""
        try:
            for part in parts:
                self.put(part)
        finally:
            result = self.finish()
        if result.error is not None:
            raise result.error
        return result
