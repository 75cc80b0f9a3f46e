"""The run context a job works in: a leaf every stage and job may import.

``Job`` carries what a run opened for its job (database, loader, snapshot,
client, stop flag); it is built once by ``etl.run.execute`` and handed down.
Nothing here imports a job or a stage, so they can all import this.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass, field

from etl.api import TsanghiClient
from etl.db import Database
from etl.load import Loader
from etl.settings import Settings
from etl.snapshot import Snapshot

Progress = Callable[[int, int, int], None]  # (symbols done, symbols in all, rows fetched)


@dataclass
class Job:
    """What a job needs: where to read and write, and how to talk to the API."""

    run_id: str
    db: Database
    loader: Loader
    snapshot: Snapshot  # the run's own directory: everything it writes goes here
    settings: Settings  # workers, batch_rows, max_failed_share, latest_max_days
    client: TsanghiClient | None = None  # None when replaying
    source: Snapshot | None = None  # the snapshot a replay reads (never written)
    stop: threading.Event = field(default_factory=threading.Event)  # set: fetch no more
    progress: Progress | None = None
    warnings: list[str] = field(default_factory=list)
