"""A run from start to summary: settings checked, database opened, sync lock taken,
schema migrated under that lock, ledger row written, the job done, the outcome recorded.

The CLI calls ``execute`` and turns its summary into output and an exit code.
"""

from __future__ import annotations

import logging
import signal
import threading
import time
from collections.abc import Callable
from contextlib import ExitStack
from pathlib import Path
from typing import Any

from etl.api import TsanghiClient
from etl.context import Job, Progress
from etl.db import open_database
from etl.errors import EtlError
from etl.ledger import RunLedger
from etl.load import Loader
from etl.migrate import apply_migrations
from etl.settings import Settings
from etl.snapshot import Snapshot, new_run_id

log = logging.getLogger(__name__)

# Exit codes, documented in --help and the README.
EXIT_OK = 0
EXIT_FAILED = 1  # fatal: configuration, database, token; or the outcome policy says failed
EXIT_PARTIAL = 3  # completed, but some symbols or an exchange failed, or rows were rejected
EXIT_LOCKED = 4  # another sync holds this database's lock
EXIT_CODES = {"ok": EXIT_OK, "partial": EXIT_PARTIAL, "failed": EXIT_FAILED}
# A run stopped by a signal exits as shells report one: 128 + its number.
EXIT_INTERRUPTED = {"SIGINT": 128 + signal.SIGINT, "SIGTERM": 128 + signal.SIGTERM}


def exit_code(summary: dict[str, Any]) -> int:
    """The exit code a run's summary stands for."""
    if summary["status"] == "interrupted":
        return EXIT_INTERRUPTED[summary["interrupted_by"]]
    return EXIT_CODES[summary["status"]]


class Interrupt:
    """SIGINT and SIGTERM during a run: ask the job to stop, remember which.

    The job stops fetching, loads what already arrived and returns; the run is
    then recorded as interrupted. A second signal aborts at once. Handlers can
    only be installed from the main thread; elsewhere this does nothing.
    """

    def __init__(self, stop: threading.Event) -> None:
        self._stop = stop
        self.signal: str | None = None
        self._saved: dict[int, Any] = {}

    def __enter__(self) -> Interrupt:
        if threading.current_thread() is threading.main_thread():
            for sig in (signal.SIGINT, signal.SIGTERM):
                self._saved[sig] = signal.signal(sig, self._handle)
        return self

    def __exit__(self, *exc: object) -> None:
        for sig, handler in self._saved.items():
            signal.signal(sig, handler)

    def _handle(self, signum: int, frame: object) -> None:
        if self.signal is not None:
            raise SignalAbort(signal.Signals(signum).name)  # the second one: stop now
        self.signal = signal.Signals(signum).name
        self._stop.set()
        log.warning(
            "%s: interrupted; no new requests, loading what already arrived "
            "(send it again to abort at once)",
            self.signal,
        )


class SignalAbort(BaseException):
    """A second SIGINT or SIGTERM during a run: stop at once, exit 130 or 143.

    A BaseException, as KeyboardInterrupt is, so that no ``except Exception``
    on the way catches it; not a KeyboardInterrupt, which click turns into
    "Aborted!" and exit 1."""

    def __init__(self, signal_name: str) -> None:
        super().__init__(f"aborted by a second {signal_name}: what was committed stays")
        self.signal = signal_name
        self.exit_code = EXIT_INTERRUPTED[signal_name]


class RunFailed(EtlError):
    """A run that started ended in a fatal error; its summary is attached."""

    def __init__(self, error: EtlError, summary: dict[str, Any]) -> None:
        super().__init__(str(error))
        self.error = error
        self.summary = summary


def execute(
    settings: Settings,
    command: str,
    body: Callable[[Job], dict[str, Any]],
    *,
    needs_api: bool,
    snapshot: Path | None = None,
    options: dict[str, Any] | None = None,
    wait: bool | float = False,
    progress: Progress | None = None,
) -> dict[str, Any]:
    """Run ``body`` as one ledgered, locked run and return its summary.

    ``snapshot`` names an existing snapshot to read (replay); otherwise a new one
    is created under the data directory before anything is fetched. ``wait``: False
    gives up at once if another sync holds the lock, True waits, a number waits that
    many seconds at most (settings.wait_timeout, when set, is that number).
    """
    started = time.monotonic()
    if needs_api:
        settings.require_token()  # before touching anything
    run_id = new_run_id()
    source = Snapshot.open(snapshot) if snapshot else None  # read, never written
    Snapshot.check_writable(settings.raw_dir)
    with ExitStack() as stack:
        db = stack.enter_context(open_database(settings.database_url, settings.data_dir))
        log.debug("target database: %s", db.display_url)
        path = settings.raw_dir / run_id
        summary: dict[str, Any] = {"run_id": run_id, "command": command, "snapshot": str(path)}
        if source:
            summary["source"] = str(source.path)
        ledger = RunLedger(db, run_id, command, str(path))
        stack.callback(ledger.close)
        # The schema changes only under the sync lock: never under a running sync's feet.
        ledger.lock(settings.wait_timeout if settings.wait_timeout is not None else wait)
        apply_migrations(db, echo=log.info)
        ledger.start()
        # Only a run that reached its database and holds the lock gets a snapshot.
        snap = Snapshot.create(settings.raw_dir, run_id)
        manifest: dict[str, Any] = {
            "run_id": run_id,
            "command": command,
            "options": options or {},
            "base_url": settings.base_url,
            "extract_complete": False,
            "loaded": False,
        }
        if source:
            manifest["source"] = str(source.path.resolve())
        snap.write_manifest(manifest)
        # One stop flag for the job and the client: a signal also cuts a retry's wait short.
        stop = threading.Event()
        client = stack.enter_context(TsanghiClient(settings, stop)) if needs_api else None
        loader = Loader(db)
        loader.before_commit = ledger.check  # nothing is committed once the lock is gone
        stack.callback(loader.close)
        job = Job(
            run_id=run_id,
            db=db,
            loader=loader,
            snapshot=snap,
            settings=settings,
            client=client,
            progress=progress,
            source=source,
            stop=stop,
        )
        interrupt = stack.enter_context(Interrupt(job.stop))
        try:
            summary.update(body(job))
        except SignalAbort as exc:  # the second signal: record it, then stop at once
            summary.update(_finish(client, started, "interrupted"), interrupted_by=exc.signal)
            _record(ledger, summary, str(exc))
            raise
        except Exception as exc:  # recorded whatever it is; only ours become RunFailed
            summary.update(_finish(client, started, "failed"))
            text = str(exc) if isinstance(exc, EtlError) else repr(exc)
            # Whatever the error quotes, its record holds no secret.
            summary["error"] = db.scrub(text, settings.token)
            summary["reasons"] = [summary["error"]]
            _record(ledger, summary, summary["error"])
            _mark_failed(snap)
            if isinstance(exc, EtlError):
                raise RunFailed(exc, summary) from None
            raise
        if interrupt.signal:
            summary["status"] = "interrupted"
            summary["interrupted_by"] = interrupt.signal
            snap.update_manifest(interrupted=True)
            log.warning(
                "interrupted by %s: what arrived is loaded; the next run fetches the rest",
                interrupt.signal,
            )
        summary.update(_finish(client, started, summary.get("status", "ok")))
        if job.warnings:
            summary["warnings"] = job.warnings
        if needs_api and nothing_new(summary):
            snap.empty()  # a no-op evening leaves a manifest, not another copy of the lists
        explain(summary)
        # etl_runs.error is for runs that did not complete: failed or interrupted.
        error = summary["error"] if summary["status"] in ("failed", "interrupted") else None
        _record(ledger, summary, error)
    return summary


# Counts that say a run changed something, or has something to show.
_CHANGES = (
    "etfs_new",
    "etfs_updated",
    "etfs_deactivated",
    "list_rows_rejected",
    "rows_inserted",
    "rows_updated",
    "rows_rejected",
    "symbols_failed",
    "answers_resumed",
    "findings_confirmed",
)


def nothing_new(summary: dict[str, Any]) -> bool:
    """An ok run that fetched nothing the database did not hold already."""
    return summary["status"] == "ok" and not any(summary.get(k) for k in _CHANGES)


def explain(summary: dict[str, Any]) -> None:
    """Give a summary that is not ok its ``reasons`` (a list, worst first) and
    ``error`` (one line of them), so no consumer meets a non-ok status without why."""
    if summary["status"] == "ok":
        return
    reasons = list(summary.get("reasons") or [])
    if summary.get("interrupted_by"):
        reasons.insert(
            0, f"interrupted by {summary['interrupted_by']}; what had arrived was loaded"
        )
    if not reasons:  # a status set without a reason would be a bug: still say something
        reasons = [f"the run ended {summary['status']}"]
    summary["reasons"] = reasons
    summary["error"] = "; ".join(reasons)


def _finish(client: TsanghiClient | None, started: float, status: str) -> dict[str, Any]:
    return {
        "status": status,
        "requests": client.requests_made if client else 0,
        "seconds": round(time.monotonic() - started, 3),
    }


def _mark_failed(snap: Snapshot) -> None:
    """Say in the manifest that the run failed, for retention (etl/retention.py); a disk
    that refuses it must not hide the run's own error."""
    try:
        snap.update_manifest(status="failed")
    except (OSError, EtlError) as exc:
        log.warning("could not mark %s as failed: %s", snap.path, exc)


def _record(ledger: RunLedger, summary: dict[str, Any], error: str | None) -> None:
    """Write the outcome; a database that went away must not hide the run's own error."""
    try:
        ledger.finish(summary["status"], summary, error)
    except EtlError as exc:
        log.warning("could not record the run in etl_runs: %s", exc)
