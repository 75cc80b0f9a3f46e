"""One sync at a time per database, and the etl_runs ledger.

The sync lock is a session-level PostgreSQL advisory lock held on a connection
of its own for the whole run: it goes away with the process, even a killed
one, because the server drops the session.
"""

from __future__ import annotations

import json
import logging
import math
import os
import socket
import time
from typing import Any

from etl.db import Database
from etl.errors import DatabaseError, LockHeldError, LockLostError
from etl.sqlfiles import query

log = logging.getLogger(__name__)

SYNC_LOCK_KEY = 0x657466_73796E63  # "etf" "sync"
WAIT_POLL_SECONDS = 2.0


class RunLedger:
    """Holds the sync lock and writes the run's row in etl_runs."""

    def __init__(self, db: Database, run_id: str, command: str, snapshot: str | None) -> None:
        self._db = db
        self.run_id = run_id
        self._command = command
        self._snapshot = snapshot
        self._conn = db.connect()

    def _execute(self, sql: str, params: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
        try:
            with self._conn.cursor() as cur:
                cur.execute(sql, params or None)
                rows = cur.fetchall() if cur.description else []
            self._conn.commit()
            return rows
        except Exception as exc:
            try:
                self._conn.rollback()
            except Exception:
                pass
            raise DatabaseError(f"run ledger: {self._db.scrub(str(exc))}") from None

    def acquire(self, wait: bool | float = False) -> None:
        """Take the sync lock and record the run as started (see `lock`, `start`)."""
        self.lock(wait)
        self.start()

    def lock(self, wait: bool | float = False) -> None:
        """Take the sync lock, or raise LockHeldError naming the run that has it.

        `wait`: False gives up at once, True waits for as long as it takes, a number
        waits that many seconds at most."""
        limit = (math.inf if wait is True else 0.0) if isinstance(wait, bool) else float(wait)
        deadline = time.monotonic() + limit
        announced = False
        while True:
            (got,) = self._execute("SELECT pg_try_advisory_lock($1)", (SYNC_LOCK_KEY,))[0]
            if got:
                return
            who = self._holder()
            if limit <= 0:
                raise LockHeldError(
                    f"another sync is running on this database: {who}. "
                    "Wait for it to finish, or run again with --wait"
                )
            if time.monotonic() >= deadline:
                raise LockHeldError(
                    f"another sync is still running on this database after waiting {limit:g} s "
                    f"(--wait-timeout): {who}. Not started"
                )
            if not announced:
                log.info("waiting for the sync lock held by %s", who)
                announced = True
            time.sleep(max(0.0, min(WAIT_POLL_SECONDS, deadline - time.monotonic())))

    def _holder(self) -> str:
        # A database that is not migrated yet has no etl_runs to name the holder from.
        (ready,) = self._execute("SELECT to_regclass('etl_runs') IS NOT NULL")[0]
        holder = self._execute(query("lock_holder")) if ready else []
        if not holder:
            return "another process"
        run_id, command, started, host, pid = holder[0]
        return f"run {run_id} ({command}, started {started} on {host}, pid {pid})"

    def start(self) -> None:
        """Record this run as running; earlier runs left running are marked failed.

        Call it holding the lock, once the schema is migrated."""
        self._execute(query("runs_abandoned"), (self.run_id,))
        self._execute(
            query("run_start"),
            (self.run_id, self._command, self._snapshot, socket.gethostname(), os.getpid()),
        )

    def check(self) -> None:
        """Raise LockLostError unless the lock's connection is alive and still holds it.

        One round trip; called before each commit, so that a run whose lock went away
        (connection cut, server restarted, session terminated) commits nothing more while
        another sync may already be running."""
        try:
            with self._conn.cursor() as cur:
                cur.execute(query("lock_check"), (SYNC_LOCK_KEY,))
                (held,) = cur.fetchone()
            self._conn.commit()
        except Exception as exc:
            raise LockLostError(
                "lost the connection that holds the sync lock "
                f"({self._db.scrub(str(exc)).strip().splitlines()[0][:200]}); another sync may "
                "be running now, so this run stops before committing more"
            ) from None
        if not held:
            raise LockLostError(
                "this run no longer holds the sync lock; another sync may be running now, "
                "so this run stops before committing more"
            )

    def finish(self, status: str, counts: dict[str, Any], error: str | None) -> None:
        self._execute(
            query("run_finish"),
            (self.run_id, status, json.dumps(counts, default=str), error),
        )

    def close(self) -> None:
        """Closing the session releases the advisory lock."""
        try:
            self._conn.close()
        except Exception:
            pass
