"""Schema changes only when asked and only under the sync lock; the lock's wait has a
limit, and a run whose lock went away commits nothing more."""

from __future__ import annotations

import shutil
import time
from datetime import date
from types import SimpleNamespace

import adbc_driver_postgresql.dbapi as adbc
import pytest

from etl import history, ledger, repair
from etl.errors import LockLostError, MigrationError
from etl.ledger import SYNC_LOCK_KEY, RunLedger
from etl.load import Loader
from etl.migrate import (
    MIGRATIONS_DIR,
    apply_migrations,
    in_transaction,
    migration_files,
    pending_migrations,
)

ALL = [p.name for p in migration_files()]


@pytest.fixture
def quick_wait(monkeypatch):
    monkeypatch.setattr(ledger, "WAIT_POLL_SECONDS", 0.05)


def has_table(db, name: str) -> bool:
    return db.fetch("SELECT to_regclass($1) IS NOT NULL", (name,))[0][0]


class HeldLock:
    """The sync lock held by another session, as a running sync holds it."""

    def __init__(self, db) -> None:
        self.conn = adbc.connect(db.url, autocommit=True)
        with self.conn.cursor() as cur:
            cur.execute("SELECT pg_try_advisory_lock($1)", (SYNC_LOCK_KEY,))
            assert cur.fetchone()[0]

    def __enter__(self) -> HeldLock:
        return self

    def __exit__(self, *exc: object) -> None:
        self.conn.close()


# -- read commands never change the database ------------------------------------------


def test_status_on_a_new_data_dir_says_so_and_creates_no_cluster(etl, data_dir):
    """Before: `etl status` created a 39 MB embedded cluster and migrated it."""
    out = etl("status", env={"DATABASE_URL": None}, as_json=False)
    assert out.exit_code == 1
    assert "no database yet" in out.stderr and "etl sync" in out.stderr
    assert str(data_dir / "pg") in out.stderr
    assert not (data_dir / "pg").exists()


def test_status_on_an_empty_database_says_to_migrate_and_changes_nothing(etl, db):
    out = etl("status", as_json=False)
    assert out.exit_code == 1
    assert "has no etf-sync schema yet: run `etl migrate`" in out.stderr
    assert not has_table(db, "schema_migrations") and not has_table(db, "stock_info")


def test_status_on_a_database_behind_names_the_pending_files(etl, db, tmp_path):
    old = tmp_path / "old"
    old.mkdir()
    for name in ALL[:2]:
        shutil.copy(MIGRATIONS_DIR / name, old / name)
    apply_migrations(db, echo=lambda _: None, directory=old)
    assert pending_migrations(db) == ALL[2:]
    out = etl("status", as_json=False)
    assert out.exit_code == 1
    assert f"{len(ALL) - 2} migration(s) pending ({', '.join(ALL[2:])}); run `etl migrate`" in (
        out.stderr
    )
    assert pending_migrations(db) == ALL[2:]  # still behind: status only looked
    assert etl("migrate", as_json=False).exit_code == 0
    assert etl("status", as_json=False).exit_code == 0


# -- a sync migrates only under the lock ------------------------------------------------


def test_a_sync_that_cannot_take_the_lock_does_not_migrate(etl, db, api):
    """Before: every sync migrated, then found the lock held."""
    with HeldLock(db):
        out = etl("sync", as_json=False)
    assert out.exit_code == 4, out.stderr
    assert "another sync is running on this database: another process" in out.stderr
    assert not has_table(db, "schema_migrations")
    assert api.request_count() == 0


def test_a_sync_migrates_once_it_holds_the_lock(etl, db, api):
    out = etl("sync")
    assert out.exit_code == 0, out.stderr
    assert pending_migrations(db) == []


def test_wait_timeout_gives_up_with_exit_4(etl, db, api, quick_wait):
    """Before: --wait never gave up. (Advisory locks are per database: `db` is etl's.)"""
    with HeldLock(db):
        started = time.monotonic()
        out = etl("sync", "--wait-timeout", "0.5", as_json=False)
        waited = time.monotonic() - started
    assert out.exit_code == 4, out.stderr
    assert "still running on this database after waiting 0.5 s (--wait-timeout)" in out.stderr
    assert 0.5 <= waited < 10
    assert not has_table(db, "etl_runs")  # neither migrated nor recorded
    assert api.request_count() == 0


def test_wait_timeout_from_the_environment_and_then_the_lock_is_free(etl, db, api, quick_wait):
    with HeldLock(db):
        out = etl("sync-list", env={"ETL_WAIT_TIMEOUT": "0.2"}, as_json=False)
    assert out.exit_code == 4 and "after waiting 0.2 s" in out.stderr
    assert etl("sync-list", "--wait-timeout", "5").exit_code == 0


# -- the lock's connection is checked before each commit --------------------------------


def test_check_passes_while_the_lock_is_held_and_fails_clearly_when_lost(migrated_db):
    run = RunLedger(migrated_db, "r-check", "sync", None)
    try:
        run.acquire()
        run.check()
        with run._conn.cursor() as cur:  # the lock released behind the ledger's back
            cur.execute("SELECT pg_advisory_unlock($1)", (SYNC_LOCK_KEY,))
            cur.fetchall()
        run._conn.commit()
        with pytest.raises(LockLostError, match="no longer holds the sync lock"):
            run.check()
    finally:
        run.close()

    run = RunLedger(migrated_db, "r-check-2", "sync", None)
    try:
        run.acquire()
        (pid,) = run._execute("SELECT pg_backend_pid()")[0]
        migrated_db.fetch("SELECT pg_terminate_backend($1::int)", (pid,))
        started = time.monotonic()
        with pytest.raises(LockLostError, match="lost the connection that holds the sync lock"):
            run.check()
        assert time.monotonic() - started < 5
    finally:
        run.close()


def test_a_sync_whose_lock_connection_dies_commits_no_more_prices(
    etl, db_embedded_only, api, monkeypatch
):
    db = db_embedded_only
    original = Loader.load_daily

    def load_daily(self, *args, **kwargs):
        db.fetch(
            "SELECT pg_terminate_backend(pid) FROM pg_locks WHERE locktype = 'advisory' "
            "AND objsubid = 1 AND objid::bigint = ($1::bigint & 4294967295)",
            (SYNC_LOCK_KEY,),
        )
        return original(self, *args, **kwargs)

    monkeypatch.setattr(Loader, "load_daily", load_daily)
    out = etl("sync", env={"DATABASE_URL": db.url}, as_json=False)
    assert out.exit_code == 1, out.stderr
    assert "sync lock" in out.stderr
    assert db.fetch("SELECT count(*) FROM stock_daily_data")[0][0] == 0


def test_every_bookkeeping_commit_under_the_lock_checks_it_first(migrated_db):
    """The inactive ETFs' history marks and the repair's confirmed findings are
    committed under the sync lock as the prices are: once the lock is gone, neither
    is written."""
    db = migrated_db
    db.execute(
        "INSERT INTO stock_info (symbol, stock_name, stock_code, market_code, stock_type, "
        "is_active, is_etf, last_sync_date, created_at, updated_at) VALUES ('SH.510999', "
        "'Gone ETF', '510999', 'SH', 'ETF', 'N', 'Y', '2020-06-30', now(), now())"
    )
    run = RunLedger(db, "r-bookkeeping", "sync", None)
    loader = Loader(db)
    try:
        run.acquire()
        loader.before_commit = run.check
        with run._conn.cursor() as cur:  # the lock released behind the ledger's back
            cur.execute("SELECT pg_advisory_unlock($1)", (SYNC_LOCK_KEY,))
            cur.fetchall()
        run._conn.commit()
        with pytest.raises(LockLostError, match="no longer holds the sync lock"):
            history.mark_complete(db, ["SH.510999"], loader.before_commit)
        job = SimpleNamespace(db=db, loader=loader)
        found = [("SH.510999", "hole", date(2020, 6, 1), date(2020, 6, 5))]
        with pytest.raises(LockLostError, match="no longer holds the sync lock"):
            repair.record_confirmed(job, found)  # type: ignore[arg-type]
    finally:
        loader.close()
        run.close()
    assert db.fetch("SELECT count(*) FROM etl_etf_history")[0][0] == 0
    assert db.fetch("SELECT count(*) FROM etl_check_confirmed")[0][0] == 0
    # Under a held lock the same calls write.
    history.mark_complete(db, ["SH.510999"], lambda: None)
    assert db.fetch("SELECT symbol, last_trade_day::text FROM etl_etf_history") == [
        ("SH.510999", "2020-06-30")
    ]


# -- migrations that opt out of the transaction -----------------------------------------

TABLE = "-- a table to index\nCREATE TABLE t (id int PRIMARY KEY, v int);\n"
CONCURRENT = "-- builds without blocking writers\n-- transaction:false\n" \
    "CREATE INDEX CONCURRENTLY IF NOT EXISTS t_v ON t (v);\n"  # fmt: skip


def test_in_transaction_reads_the_leading_comments_only():
    assert in_transaction("CREATE TABLE x (a int);")
    assert not in_transaction("-- transaction:false\nCREATE INDEX CONCURRENTLY ...")
    assert not in_transaction("\n-- note\n--  Transaction: FALSE \nSELECT 1")
    assert in_transaction("SELECT 1;\n-- transaction:false\n")


def test_a_transaction_false_file_builds_an_index_concurrently(db, tmp_path):
    (tmp_path / "0001_t.sql").write_text(TABLE)
    (tmp_path / "0002_t_v.sql").write_text(CONCURRENT)
    lines: list[str] = []
    assert apply_migrations(db, echo=lines.append, directory=tmp_path) == [
        "0001_t.sql",
        "0002_t_v.sql",
    ]
    assert "Applying: 0002_t_v.sql (outside a transaction)" in lines
    assert db.fetch("SELECT indisvalid FROM pg_index WHERE indexrelid = 't_v'::regclass") == [
        (True,)
    ]
    assert db.fetch("SELECT version FROM schema_migrations ORDER BY 1") == [("0001",), ("0002",)]
    assert apply_migrations(db, echo=lines.append, directory=tmp_path) == []


def test_without_the_header_the_same_file_is_refused_whole(db, tmp_path):
    (tmp_path / "0001_t.sql").write_text(TABLE)
    (tmp_path / "0002_t_v.sql").write_text(CONCURRENT.replace("-- transaction:false\n", ""))
    with pytest.raises(MigrationError, match="cannot run inside a transaction block"):
        apply_migrations(db, echo=lambda _: None, directory=tmp_path)


def test_a_failing_transaction_false_file_says_what_stayed_and_can_be_rerun(db, tmp_path):
    (tmp_path / "0001_t.sql").write_text(TABLE)
    broken = CONCURRENT + "CREATE INDEX CONCURRENTLY t_missing ON t (nope);\n"
    (tmp_path / "0002_t_v.sql").write_text(broken)
    with pytest.raises(MigrationError) as err:
        apply_migrations(db, echo=lambda _: None, directory=tmp_path)
    assert "failed after 1 of its statements" in str(err.value)
    assert 'column "nope" does not exist' in str(err.value)
    assert has_table(db, "t_v")  # the first statement stayed
    assert db.fetch("SELECT version FROM schema_migrations") == [("0001",)]
    (tmp_path / "0002_t_v.sql").write_text(CONCURRENT)
    assert apply_migrations(db, echo=lambda _: None, directory=tmp_path) == ["0002_t_v.sql"]
