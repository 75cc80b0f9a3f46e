"""A sync killed with SIGKILL, and a database that goes away: nothing half
done is left behind, and a rerun (or a replay) ends exactly where an
uninterrupted run would have.

"Exactly" is a checksum over every business column of stock_daily_data and
stock_info, compared with a clean run of the same API on a fresh database.
"""

from __future__ import annotations

import signal
import subprocess
import sys
from pathlib import Path

import crashhelper
import polars as pl
import pytest
from crashhelper import (
    assert_consistent,
    assert_same_as,
    assert_snapshot_whole,
    child_env,
    connections,
    hold_writes,
    listed_tickers,
    price_parts,
    runs,
    source_dates,
    spawn,
    sync_losing_its_database,
    wait_for,
)
from etlfixtures import TOKEN

from etl.snapshot import Snapshot

ABANDONED = "ended without finishing (process killed or connection lost)"


@pytest.fixture
def db(request):
    """Embedded PostgreSQL only, unless the test also names pg_server (both servers)."""
    name = "pg_server" if "pg_server" in request.fixturenames else "embedded_pg"
    server = request.getfixturevalue(name)
    database = server.create_database()
    yield database
    server.drop_database(database)


def price_rows(db) -> int:
    """Rows committed so far; 0 while the child has not created the tables yet."""
    (exists,) = db.fetch("SELECT to_regclass('stock_daily_data') IS NOT NULL")[0]
    return db.fetch("SELECT count(*) FROM stock_daily_data")[0][0] if exists else 0


def assert_batches_whole(snapshot: Path, stored: dict[str, list[str]]) -> int:
    """Every written batch of answers is in the tables entirely or not at all.

    Returns how many batches are in.
    """
    loaded = 0
    for part in price_parts(snapshot):
        good = part.filter(
            pl.col("error").is_null() & (pl.col("endpoint") == "daily") & (pl.col("rows") > 0)
        )
        symbols = {
            ("SH." if ex == "XSHG" else "SZ.") + t
            for ex, t in zip(good["exchange"], good["ticker"], strict=True)
        }
        present = symbols & set(stored)
        assert present in (set(), symbols), f"batch split: {sorted(present)} of {sorted(symbols)}"
        loaded += bool(present)
    return loaded


# -- SIGKILL ------------------------------------------------------------------------

KILL_POINTS = ["fetching", "first-batch-written", "batch-in-transaction", "between-batches"]


@pytest.mark.slow
@pytest.mark.parametrize("point", KILL_POINTS)
def test_sigkill_leaves_whole_batches_and_a_rerun_finishes_the_job(
    point, db, api, universe, etl, data_dir, tmp_path, reference
):
    api.latency_ms = 60  # about a second of fetching with two workers
    env = child_env(db.url, api.base_url, TOKEN, data_dir, ETL_BATCH_ROWS="120", ETL_WORKERS="2")
    proc = spawn(["--json", "sync"], env, tmp_path / "killed")
    committed = None
    admin = None
    try:
        raw = data_dir / "raw"
        snapshot = wait_for(lambda: next(iter(raw.glob("*/manifest.json")), None), proc=proc).parent
        parts = snapshot / "kind=prices"
        if point == "fetching":
            wait_for(lambda: api.request_count("daily") >= 3, proc=proc)
        elif point == "first-batch-written":
            wait_for(lambda: list(parts.glob("part-*.parquet")), proc=proc, every=0.002)
        elif point == "between-batches":
            # Load follows the extract a part behind: wait until one part is
            # committed and later parts are on disk.
            wait_for(
                lambda: price_rows(db) > 0 and len(list(parts.glob("part-*.parquet"))) >= 3,
                proc=proc,
            )
        else:
            # Deterministic: once one batch is in, hold a table lock that the
            # next batch's write waits for, and kill the sync inside that transaction.
            admin = hold_writes(db, proc)
            with admin.cursor() as cur:
                cur.execute("SELECT count(*) FROM stock_daily_data")
                committed = cur.fetchone()[0]
        proc.send_signal(signal.SIGKILL)
        assert proc.wait(10) == -signal.SIGKILL
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        if admin is not None:
            admin.rollback()
            admin.close()
    wait_for(lambda: connections(db) == 0, timeout=20)  # the server noticed and rolled back

    # What the killed run left: whole files, whole batches, consistent bookkeeping.
    manifest = assert_snapshot_whole(snapshot)
    assert manifest["extract_complete"] is False
    stored = assert_consistent(db, universe, whole=True)
    loaded = assert_batches_whole(snapshot, stored)
    if committed is not None:
        assert price_rows(db) == committed > 0  # the batch killed in its transaction left nothing
        assert loaded >= 1
    if point == "between-batches":
        assert loaded >= 1
    (killed,) = runs(db)
    assert killed[1:] == ("sync", "running", None)

    # Every answer that arrived before the kill is on disk, durable.
    on_disk = pl.concat(price_parts(snapshot)) if price_parts(snapshot) else None
    answered = (
        set()
        if on_disk is None
        else {
            (ex, t)
            for ex, t, err, ep in on_disk.select("exchange", "ticker", "error", "endpoint").rows()
            if err is None and ep == "daily"
        }
    )
    if point in ("between-batches", "batch-in-transaction"):
        assert answered

    # The next run takes the lock the dead one held, loads what the dead one
    # left on disk, asks the API only for the rest, and closes the dead run's row.
    seen = len(api.requests)
    out = etl("sync")
    assert out.exit_code == 0, out.stderr
    s = out.summary
    assert s["symbols_failed"] == 0
    assert s["rows_inserted"] == sum(len(d) for d in source_dates(universe).values()) - sum(
        len(d) for d in stored.values()
    )
    asked = {(r.exchange, r.ticker) for r in api.requests[seen:] if r.kind == "daily"}
    assert not asked & answered, "an answer on disk was fetched again"
    assert asked | answered == {  # every listed ETF, delisted ones included
        (ex, t) for ex in ("XSHG", "XSHE") for t in listed_tickers(universe, ex)
    }
    assert s["answers_resumed"] == (0 if on_disk is None else on_disk.height)
    assert_same_as(db, universe, reference)
    assert [r[2] for r in runs(db)] == ["failed", "ok"]
    assert runs(db)[0][3].startswith(ABANDONED)


def test_sigkill_while_a_snapshot_file_is_written_leaves_no_half_file(tmp_path):
    child = subprocess.Popen(
        [sys.executable, str(Path(crashhelper.__file__)), "write-parts", str(tmp_path)],
        cwd=crashhelper.ROOT,
    )
    folder = tmp_path / "killed-while-writing" / "kind=prices"
    try:
        # Once two parts are whole, kill the child while the third is half written.
        wait_for(lambda: len(list(folder.glob("part-*.parquet"))) >= 2, proc=child)
        wait_for(lambda: list(folder.glob(".part-*.tmp")), proc=child, every=0.001)
        child.send_signal(signal.SIGKILL)
        assert child.wait(10) == -signal.SIGKILL
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()
    snapshot = Snapshot.open(folder.parent)
    names = [p.name for p in snapshot.parts("kind=prices")]
    assert names == [f"part-{i:05d}.parquet" for i in range(len(names))] and len(names) >= 2
    # The interrupted write stays under its temp name (a kill in the microseconds
    # between one rename and the next write would leave none).
    leftovers = [p.name for p in folder.glob(".part-*.tmp")]
    assert leftovers in ([], [f".part-{len(names):05d}.parquet.tmp"])
    assert sum(frame.height for frame in snapshot.raw_parts("prices")) == 4 * len(names)
    assert_snapshot_whole(folder.parent)


# -- the database goes away ----------------------------------------------------------


def test_database_unreachable_at_start_is_fatal_and_nothing_is_fetched(etl, api, data_dir):
    url = "postgresql://etl_user:pw-9d1e5a@127.0.0.1:1/etf"
    out = etl("sync", env={"DATABASE_URL": url})
    assert out.exit_code == 1
    assert "cannot connect to postgresql://etl_user:***@127.0.0.1:1/etf" in out.stderr
    assert "check DATABASE_URL" in out.stderr
    assert "pw-9d1e5a" not in out.stderr + out.stdout
    assert api.request_count() == 0
    assert not any((data_dir / "raw").iterdir())  # no snapshot for a run that never started


def test_database_lost_while_loading_keeps_the_snapshot_and_replay_completes_it(
    pg_server, db, etl, api, universe, monkeypatch, reference
):
    out, state = sync_losing_its_database(pg_server, db, etl, monkeypatch)

    assert out.exit_code == 1
    snapshot = out.summary["snapshot"]
    assert out.summary["status"] == "failed"
    assert f"etl replay {snapshot}" in out.stderr
    assert "loading into the database failed" in out.stderr
    assert "\n. Every answer was saved" not in out.stderr  # the driver's newline is trimmed
    assert state["cut"]
    # The extract went on to the end: every ticker's answer is in the snapshot.
    manifest = assert_snapshot_whole(Path(snapshot))
    assert manifest["extract_complete"] is True
    answered = pl.concat(price_parts(Path(snapshot))).filter(pl.col("endpoint") == "daily")
    listed = sum(len(listed_tickers(universe, ex)) for ex in ("XSHG", "XSHE"))
    assert answered["error"].null_count() == answered.height == listed
    stored = assert_consistent(db, universe, whole=True)
    assert sum(map(len, stored.values())) == state["inserted"] > 0

    replayed = etl("replay", snapshot, env={"TSANGHI_TOKEN": None})
    assert replayed.exit_code == 0, replayed.stderr
    assert replayed.summary["status"] == "ok"
    assert_same_as(db, universe, reference)
    assert [(r[1], r[2]) for r in runs(db)] == [("sync", "failed"), ("replay", "ok")]
    assert replayed.summary["replayed_run"] == out.summary["run_id"]


@pytest.mark.slow
def test_answers_are_on_disk_within_seconds_whatever_the_batch_size(db, api, data_dir, tmp_path):
    """A batch far larger than the whole run: answers still reach a durable
    part within the flush interval, so a kill then loses seconds, not the run."""
    api.latency_ms = 400  # about 15 s of fetching: longer than the wait below
    env = child_env(
        db.url, api.base_url, TOKEN, data_dir, ETL_BATCH_ROWS="100000000", ETL_WORKERS="1"
    )
    proc = spawn(["--json", "sync"], env, tmp_path / "slow")
    try:
        wait_for(lambda: api.request_count("daily") >= 2, proc=proc)
        raw = data_dir / "raw"
        part = wait_for(
            lambda: (
                next(iter(raw.glob("*/kind=prices/part-*.parquet")), None)
                if any(
                    pl.read_parquet(p, columns=["endpoint"])["endpoint"].eq("daily").any()
                    for p in raw.glob("*/kind=prices/part-*.parquet")
                )
                else None
            ),
            timeout=6,
            proc=proc,  # fails if the run ended first: the part must come mid-run
        )
        assert proc.poll() is None
        proc.send_signal(signal.SIGKILL)
        proc.wait(10)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert part is not None
    daily = pl.concat(price_parts(Path(part).parent.parent)).filter(pl.col("endpoint") == "daily")
    assert daily.height >= 1 and daily["error"].null_count() == daily.height
