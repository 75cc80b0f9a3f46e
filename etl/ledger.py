"""One sync at a time per database, and the etl_runs ledger.

The sync lock is a session-level PostgreSQL advisory lock held on a connection
of its own for the whole run: it goes away with the process, even a killed
one, because the server drops the session.
"""

from __future__ import annotations

import json
import logging
import os
import socket
import time
from typing import Any

from etl.db import Database
from etl.errors import DatabaseError, LockHeldError
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

    def acquire(self, wait: bool = False) -> None:
        """Take the sync lock, or raise LockHeldError naming the run that has it."""
        announced = False
        while True:
            (got,) = self._execute("SELECT pg_try_advisory_lock($1)", (SYNC_LOCK_KEY,))[0]
            if got:
                break
            holder = self._execute(query("lock_holder"))
            who = (
                f"run {holder[0][0]} ({holder[0][1]}, started {holder[0][2]} on {holder[0][3]}, pid {holder[0][4]})"
                if holder
                else "another process"
            )
            if not wait:
                raise LockHeldError(
                    f"another sync is running on this database: {who}. "
                    "Wait for it to finish, or run again with --wait"
                )
            if not announced:
                log.info("waiting for the sync lock held by %s", who)
                announced = True
            time.sleep(WAIT_POLL_SECONDS)
        self._execute(query("runs_abandoned"), (self.run_id,))
        self._execute(
            query("run_start"),
            (self.run_id, self._command, self._snapshot, socket.gethostname(), os.getpid()),
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
