"""Resume: a price run that died left answers on disk; the next one loads them.

A run that was killed (SIGKILL, power loss) or lost its database kept every
answer that arrived, as durable raw parts in its snapshot. The next price run,
once it holds the sync lock, finds such runs in the ledger, puts their parts
through the same normalize and load stages, and then asks the API only for
what none of those answers holds.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path

import polars as pl

from etl.context import Job
from etl.errors import EtlError
from etl.extract import Request
from etl.normalize import Normalizer
from etl.snapshot import Snapshot
from etl.sqlfiles import query
from etl.stages import Stages, StagesResult

log = logging.getLogger(__name__)


@dataclass
class Answered:
    """The requests whose answers are on disk already, from runs that died."""

    runs: list[str] = field(default_factory=list)
    # (exchange, ticker) -> [(start, end)] of good /daily answers; None: open-ended
    ranges: dict[tuple[str, str], list[tuple[date | None, date | None]]] = field(
        default_factory=dict
    )
    days: set[tuple[str, date]] = field(default_factory=set)  # good dated /daily/latest
    resumed: StagesResult = StagesResult()  # what loading their parts did

    def add(self, raw: pl.DataFrame) -> None:
        good = raw.filter(pl.col("error").is_null())
        for row in good.select("endpoint", "exchange", "ticker", "params").iter_rows():
            endpoint, exchange, ticker, params = row
            asked = json.loads(params or "{}")
            if endpoint == "daily" and ticker:
                span = (_day(asked.get("start_date")), _day(asked.get("end_date")))
                self.ranges.setdefault((exchange, ticker), []).append(span)
            elif endpoint == "latest" and asked.get("date"):
                self.days.add((exchange, date.fromisoformat(asked["date"])))

    def covers(self, request: Request) -> bool:
        """Whether an answer on disk holds everything ``request`` would fetch."""
        if request.endpoint == "latest":
            return request.day is not None and (request.exchange, request.day) in self.days
        for start, end in self.ranges.get((request.exchange, request.ticker or ""), []):
            starts_early = start is None or (request.start is not None and start <= request.start)
            ends_late = end is not None and request.end is not None and end >= request.end
            if starts_early and ends_late:
                return True
        return False


def _day(text: str | None) -> date | None:
    return date.fromisoformat(text) if text else None


def finish_pending(job: Job) -> Answered:
    """Load what runs that died left on disk; say which requests they answered."""
    answered = Answered()
    for run_id, path in job.db.fetch(query("runs_pending"), (job.run_id,)):
        snapshot = _pending(Path(path))
        if snapshot is None:
            continue
        manifest = snapshot.manifest()
        normalizer = Normalizer.of(snapshot, job.snapshot)
        parts = snapshot.parts("kind=prices")
        if normalizer is None or not parts:
            continue
        stages = Stages(job, normalizer, bool(manifest.get("options", {}).get("overwrite")))
        log.info("resuming run %s: loading %d parts it left in %s", run_id, len(parts), path)
        answered.resumed += stages.run(parts)
        for part in parts:  # which requests they answered: a few small columns
            answered.add(
                pl.read_parquet(part, columns=["endpoint", "exchange", "ticker", "params", "error"])
            )
        answered.runs.append(run_id)
        try:
            snapshot.update_manifest(loaded=True, resumed_by=job.run_id)
        except (OSError, EtlError) as exc:  # a read-only archive: the ledger still moves on
            log.warning("could not mark %s as loaded: %s", path, exc)
    return answered


def _pending(path: Path) -> Snapshot | None:
    """The snapshot at ``path`` if it holds answers not loaded yet."""
    if not (path / "manifest.json").is_file():
        return None
    snapshot = Snapshot(path)
    try:
        manifest = snapshot.manifest()
    except EtlError as exc:
        log.warning("skipping %s: %s", path, exc)
        return None
    return None if manifest.get("loaded") else snapshot
