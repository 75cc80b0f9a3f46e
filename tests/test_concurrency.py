"""One sync at a time per database: a PostgreSQL advisory lock, exit 4 for the
second run (naming the first), --wait to queue instead, and never a duplicate.
"""

from __future__ import annotations

import json
import time

import adbc_driver_postgresql.dbapi as adbc
import pytest
from crashhelper import (
    assert_consistent,
    assert_same_as,
    child_env,
    spawn,
    wait_for,
)
from etlfixtures import TOKEN
from fakeapi import FakeTsanghi

from etl import ledger


@pytest.fixture
def db(db_embedded_only):
    """The lock is the server's, not the version's: embedded only, for speed."""
    return db_embedded_only


@pytest.fixture
def quick_wait(monkeypatch):
    """--wait polls the lock every 0.1 s instead of 2 s."""
    monkeypatch.setattr(ledger, "WAIT_POLL_SECONDS", 0.1)


def running_run(db):
    """(run_id, pid) of the run marked running, once its ledger row exists."""
    exists = db.fetch("SELECT to_regclass('etl_runs') IS NOT NULL")[0][0]
    rows = db.fetch("SELECT run_id, pid FROM etl_runs WHERE status = 'running'") if exists else []
    return rows[0] if rows else None


def slow_sync(db, api, data_dir, tmp_path):
    """A sync in a child process that holds the lock for a couple of seconds."""
    api.latency_ms = 100
    env = child_env(db.url, api.base_url, TOKEN, data_dir, ETL_WORKERS="2")
    return spawn(["--json", "sync"], env, tmp_path / "first")


def child_summary(proc, tmp_path, name: str) -> dict:
    return json.loads((tmp_path / f"{name}.out").read_text().strip().splitlines()[-1])


@pytest.mark.slow
def test_a_second_sync_exits_4_at_once_naming_the_run_that_holds_the_lock(
    etl, db, api, universe, data_dir, tmp_path, reference
):
    first = slow_sync(db, api, data_dir, tmp_path)
    try:
        run_id, pid = wait_for(lambda: running_run(db), proc=first)
        assert pid == first.pid
        with FakeTsanghi(universe, token=TOKEN) as other_api:
            started = time.monotonic()
            out = etl("sync", env={"TSANGHI_BASE_URL": other_api.base_url}, as_json=False)
            assert out.exit_code == 4
            assert time.monotonic() - started < 5
            assert other_api.request_count() == 0  # refused before any API call
        assert first.poll() is None  # answered while the first one was still at it
        assert (
            f"another sync is running on this database: run {run_id} (sync, started" in out.stderr
        )
        assert f"pid {first.pid})" in out.stderr and "--wait" in out.stderr
        assert out.stdout == ""
        assert first.wait(60) == 0
    finally:
        if first.poll() is None:
            first.kill()
            first.wait()
    # The refused run left no trace in the ledger; the first one finished normally.
    assert db.fetch("SELECT run_id, status FROM etl_runs") == [(run_id, "ok")]
    assert_same_as(db, universe, reference)


@pytest.mark.slow
def test_wait_queues_behind_the_running_sync_and_then_succeeds(
    etl, db, api, universe, data_dir, tmp_path, reference, quick_wait
):
    first = slow_sync(db, api, data_dir, tmp_path)
    try:
        run_id, _ = wait_for(lambda: running_run(db), proc=first)
        out = etl("sync", "--wait")
        assert out.exit_code == 0, out.stderr
        assert first.wait(60) == 0
    finally:
        if first.poll() is None:
            first.kill()
            first.wait()
    s = out.summary
    assert s["status"] == "ok" and s["rows_inserted"] == 0  # the first run had done it all
    assert s["symbols_up_to_date"] == s["symbols_total"]
    (order,) = db.fetch(
        "SELECT b.started_at >= a.finished_at FROM etl_runs a, etl_runs b "
        "WHERE a.run_id = $1 AND b.run_id = $2",
        (run_id, s["run_id"]),
    )
    assert order == (True,)
    assert [r[0] for r in db.fetch("SELECT status FROM etl_runs")] == ["ok", "ok"]
    assert_same_as(db, universe, reference)


@pytest.mark.slow
def test_two_syncs_started_together_run_one_after_the_other_without_duplicates(
    db, api, universe, data_dir, tmp_path, reference
):
    api.latency_ms = 20
    env = child_env(db.url, api.base_url, TOKEN, data_dir, ETL_BATCH_ROWS="300")
    procs = [spawn(["--json", "sync", "--wait"], env, tmp_path / f"run{i}") for i in range(2)]
    try:
        codes = [p.wait(120) for p in procs]
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.wait()
    assert codes == [0, 0], [(tmp_path / f"run{i}.err").read_text() for i in range(2)]
    summaries = [child_summary(p, tmp_path, f"run{i}") for i, p in enumerate(procs)]
    total = sum(
        len(universe.daily_rows(ex, r["ticker"]))
        for ex in ("XSHG", "XSHE")
        for r in universe.list_rows(ex)
    )
    assert sorted(s["rows_inserted"] for s in summaries) == [0, total]
    assert_consistent(db, universe, whole=True)
    assert_same_as(db, universe, reference)
    rows = db.fetch("SELECT status, started_at, finished_at FROM etl_runs ORDER BY started_at")
    assert [r[0] for r in rows] == ["ok", "ok"]
    assert rows[1][1] >= rows[0][2]  # never both at work at once


def test_the_lock_is_per_database_and_guards_every_writing_command(etl, db, embedded_pg, api):
    assert etl("sync-list").exit_code == 0
    snapshot = etl("sync-list").summary["snapshot"]
    holder = adbc.connect(db.url, autocommit=True)  # e.g. an older tool, or a stuck session
    try:
        with holder.cursor() as cur:
            cur.execute("SELECT pg_advisory_lock($1)", (ledger.SYNC_LOCK_KEY,))
            cur.fetchall()
        for args in (["sync"], ["sync-list"], ["sync-prices"], ["replay", snapshot]):
            out = etl(*args)
            assert out.exit_code == 4, args
            assert "another sync is running on this database: another process" in out.stderr
        other = embedded_pg.create_database()
        try:  # the same lock key on another database of the same server does not block
            assert etl("sync-list", env={"DATABASE_URL": other.url}).exit_code == 0
        finally:
            embedded_pg.drop_database(other)
    finally:
        holder.close()
    assert etl("sync-list").exit_code == 0  # the lock went with the session
