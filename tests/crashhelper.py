"""Helpers of the reliability tests: the CLI as a child process, and what a
database and a snapshot must look like after any run, good, failed or killed.

Integrity is checked from the outside only: SQL on the tables, files on disk.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from urllib.parse import urlsplit

import polars as pl
from fakeapi.universe import Universe

from etl.db import Database

ROOT = Path(__file__).resolve().parent.parent
MARKET = {"XSHG": "SH", "XSHE": "SZ"}

# The columns a user cares about: everything but created_at / updated_at /
# first_fetch_time, which record when a row was written.
PRICE_COLUMNS = (
    "trade_date, symbol, stock_name, close_price, open_price, high_price, low_price, volume, "
    "turnover, price_change, price_change_pct, premium_rate, market_code"
)
INFO_COLUMNS = (
    "symbol, stock_name, stock_code, market_code, stock_type, industry, sector, list_date, "
    "delist_date, is_active, is_etf, last_sync_date"
)


# -- the source ------------------------------------------------------------------


def active_tickers(universe: Universe, exchange: str) -> list[str]:
    return [r["ticker"] for r in universe.list_rows(exchange) if r["is_active"]]


def listed_tickers(universe: Universe, exchange: str) -> list[str]:
    """Every listed ETF, active or not: each one's history is synced."""
    return [r["ticker"] for r in universe.list_rows(exchange)]


def source_dates(universe: Universe) -> dict[str, list[str]]:
    """Trade dates the API serves per ETF symbol with any, active or not, ascending."""
    out = {}
    for exchange, market in MARKET.items():
        for ticker in listed_tickers(universe, exchange):
            dates = [r["date"] for r in universe.daily_rows(exchange, ticker)]
            if dates:  # a fund delisted before the first day has none
                out[f"{market}.{ticker}"] = dates
    return out


def source_count(universe: Universe, skip: tuple[str, ...] = ()) -> int:
    return sum(len(d) for s, d in source_dates(universe).items() if s not in skip)


# -- the database ----------------------------------------------------------------


def checksums(db: Database) -> dict[str, tuple[int, str]]:
    """(row count, md5 of every business column in key order) of both tables."""
    out = {}
    for table, cols, order in (
        ("stock_daily_data", PRICE_COLUMNS, "symbol, trade_date"),
        ("stock_info", INFO_COLUMNS, "symbol"),
    ):
        ((count, digest),) = db.fetch(
            f"SELECT count(*), md5(coalesce(string_agg(ROW({cols})::text, E'\\n' "
            f"ORDER BY {order}), '')) FROM {table}"
        )
        out[table] = (count, digest)
    return out


def stored_dates(db: Database) -> dict[str, list[str]]:
    rows = db.fetch(
        "SELECT symbol, trade_date::date::text FROM stock_daily_data ORDER BY symbol, trade_date"
    )
    out: dict[str, list[str]] = {}
    for symbol, day in rows:
        out.setdefault(symbol, []).append(day)
    return out


def assert_consistent(
    db: Database, universe: Universe, whole: bool = False
) -> dict[str, list[str]]:
    """No duplicate keys; each symbol holds exactly the source rows up to its
    newest stored date (no holes, nothing half-loaded), and last_sync_date is
    that date. ``whole``: each symbol holds all of its source rows or none.
    """
    dupes = db.fetch(
        "SELECT symbol, trade_date FROM stock_daily_data GROUP BY 1, 2 HAVING count(*) > 1"
    )
    assert dupes == []
    source = source_dates(universe)
    stored = stored_dates(db)
    assert set(stored) <= set(source), set(stored) - set(source)
    for symbol, days in stored.items():
        expected = [d for d in source[symbol] if d <= days[-1]]
        assert days == expected, f"{symbol}: {len(days)} rows stored, {len(expected)} expected"
        if whole:
            assert days == source[symbol], f"{symbol}: {len(days)} of {len(source[symbol])} rows"
    marks = db.fetch(
        "SELECT i.symbol, i.last_sync_date::date::text, "
        "(SELECT max(trade_date)::date::text FROM stock_daily_data d WHERE d.symbol = i.symbol) "
        "FROM stock_info i WHERE i.is_etf = 'Y'"
    )
    for symbol, last_sync, newest in marks:
        assert last_sync == newest, f"{symbol}: last_sync_date {last_sync}, newest row {newest}"
    return stored


def runs(db: Database) -> list[tuple]:
    """(run_id, command, status, error) of every run, oldest first."""
    return db.fetch("SELECT run_id, command, status, error FROM etl_runs ORDER BY started_at")


def dbname(db: Database) -> str:
    return urlsplit(db.url).path.lstrip("/")


def connections(db: Database) -> int:
    """Sessions on the database other than the one asking."""
    name = dbname(db)
    return db.fetch(
        "SELECT count(*) FROM pg_stat_activity WHERE datname = $1 AND pid <> pg_backend_pid()",
        (name,),
    )[0][0]


def cut_off(server, db: Database) -> None:
    """The database goes away: it refuses new sessions and loses every open one.

    ``server`` is the conftest PgServer holding ``db``; undo with
    ``ALTER DATABASE ... ALLOW_CONNECTIONS true``.
    """
    import adbc_driver_postgresql.dbapi as adbc

    name = dbname(db)
    with adbc.connect(server.url, autocommit=True) as conn, conn.cursor() as cur:
        cur.execute(f'ALTER DATABASE "{name}" ALLOW_CONNECTIONS false')
        active = "SELECT pid FROM pg_stat_activity WHERE datname = $1"
        cur.execute(f"SELECT pg_terminate_backend(pid) FROM ({active}) a", (name,))
        cur.fetchall()
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            cur.execute(active, (name,))
            if not cur.fetchall():
                return
            time.sleep(0.02)
    raise AssertionError("sessions survived pg_terminate_backend")


# -- the snapshot ----------------------------------------------------------------


def sync_losing_its_database(pg_server, db: Database, etl, monkeypatch) -> tuple[object, dict]:
    """`etl sync` (200-row parts) whose database goes away once a part is in; the
    database takes connections again afterwards. Returns the run's result and the
    state of the cut: ``cut`` (it happened) and ``inserted`` (rows loaded before)."""
    from etl.load import Loader

    state = {"inserted": 0, "cut": False}
    original = Loader.load_daily

    def load_daily(self, rows, overwrite=False):  # the database dies once a batch is in
        if state["inserted"] and not state["cut"]:
            state["cut"] = True
            cut_off(pg_server, db)
        counts = original(self, rows, overwrite)
        state["inserted"] += counts.inserted
        return counts

    monkeypatch.setattr(Loader, "load_daily", load_daily)
    out = etl("sync", env={"ETL_BATCH_ROWS": "200"})
    monkeypatch.undo()
    pg_server.admin(f'ALTER DATABASE "{dbname(db)}" ALLOW_CONNECTIONS true')
    return out, state


def assert_snapshot_whole(path: Path) -> dict:
    """Every file a reader picks up is complete; anything else is a hidden temp file.

    Returns the manifest.
    """
    manifest = json.loads((path / "manifest.json").read_text(encoding="utf-8"))
    for file in sorted(path.rglob("*")):
        if file.is_dir():
            continue
        rel = file.relative_to(path)
        if file.name.startswith(".") and file.name.endswith(".tmp"):
            continue  # an interrupted write: never matched by part-*.parquet
        assert file.name == "manifest.json" or file.suffix == ".parquet", rel
        if file.suffix == ".parquet":
            assert file.name == "plan.parquet" or file.name.startswith("part-"), rel
            pl.read_parquet(file)  # raises on a half-written file
    return manifest


def price_parts(path: Path) -> list[pl.DataFrame]:
    return [pl.read_parquet(p) for p in sorted((path / "kind=prices").glob("part-*.parquet"))]


def rejects(path: Path) -> pl.DataFrame:
    parts = sorted((path / "rejects").glob("part-*.parquet"))
    if not parts:
        return pl.DataFrame(
            schema={"ticker": pl.String, "trade_date": pl.String, "reason": pl.String}
        )
    return pl.concat([pl.read_parquet(p) for p in parts])


def clean_run_checksums(server, data_dir: Path, token: str, **universe_args: object) -> dict:
    """Checksums of one uninterrupted `etl sync` of a universe into a fresh database
    of ``server`` (a conftest PgServer), and the universe's repr to compare against."""
    from click.testing import CliRunner
    from fakeapi import FakeTsanghi

    from etl.cli import cli

    universe = Universe(**universe_args)
    database = server.create_database()
    try:
        with FakeTsanghi(universe, token=token) as api:
            env = {
                "DATABASE_URL": database.url,
                "TSANGHI_TOKEN": token,
                "TSANGHI_BASE_URL": api.base_url,
                "ETL_DATA_DIR": str(data_dir),
            }
            result = CliRunner().invoke(cli, ["--json", "sync"], env=env, catch_exceptions=False)
        assert result.exit_code == 0, result.stderr
        return {"universe": repr(universe), **checksums(database)}
    finally:
        server.drop_database(database)


def assert_same_as(db: Database, universe: Universe, reference: dict) -> None:
    assert repr(universe) == reference["universe"]
    sums = checksums(db)
    assert sums["stock_daily_data"][0] == reference["stock_daily_data"][0]
    assert sums == {k: v for k, v in reference.items() if k != "universe"}


# -- the CLI as a child process ---------------------------------------------------


def child_env(db_url: str | None, base_url: str, token: str, data_dir: Path, **extra: str) -> dict:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("ETL_", "TSANGHI_"))}
    env.pop("DATABASE_URL", None)
    env.update(
        TSANGHI_TOKEN=token,
        TSANGHI_BASE_URL=base_url,
        ETL_DATA_DIR=str(data_dir),
        ETL_HTTP_BACKOFF="0.01",
        ETL_HTTP_TIMEOUT="5",
        PYTHONUNBUFFERED="1",
    )
    if db_url is not None:
        env["DATABASE_URL"] = db_url
    env.update(extra)
    return env


def spawn(args: list[str], env: dict, log: Path) -> subprocess.Popen:
    """`python -m etl <args>` with stdout and stderr into ``log`` (.out / .err)."""
    return subprocess.Popen(
        [sys.executable, "-m", "etl", *args],
        cwd=ROOT,
        env=env,
        stdout=open(log.with_suffix(".out"), "wb"),  # noqa: SIM115 - the child owns it
        stderr=open(log.with_suffix(".err"), "wb"),  # noqa: SIM115
        start_new_session=True,
    )


def wait_for(
    condition: Callable[[], object],
    timeout: float = 30,
    every: float = 0.01,
    proc: subprocess.Popen | None = None,
) -> object:
    """Poll until ``condition()`` is truthy; fail if it never is, or ``proc`` ended first."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        if proc is not None and proc.poll() is not None:
            raise AssertionError(
                f"the child exited with {proc.returncode} before the condition held"
            )
        time.sleep(every)
    raise AssertionError(f"condition not met within {timeout}s")


# -- a child that is killed while it writes snapshot files -----------------------


def write_parts_forever(raw_dir: Path) -> None:
    """Write large snapshot parts back to back until killed (see test_crash)."""
    from datetime import datetime

    from etl.schema import RAW_SCHEMA
    from etl.snapshot import Snapshot

    snapshot = Snapshot.create(raw_dir, "killed-while-writing")
    snapshot.write_manifest({"run_id": "killed-while-writing", "extract_complete": False})
    body = os.urandom(6_000_000).hex()  # incompressible: each write takes a while
    frame = pl.DataFrame(
        {
            "endpoint": ["daily"] * 4,
            "exchange": ["XSHG"] * 4,
            "ticker": ["510050"] * 4,
            "params": ["{}"] * 4,
            "fetched_at": [datetime(2024, 1, 2)] * 4,
            "attempts": [1] * 4,
            "http_status": [200] * 4,
            "rows": [0] * 4,
            "error": [None] * 4,
            "body": [body] * 4,
        },
        schema={**RAW_SCHEMA, "fetched_at": pl.Datetime("us")},
    ).cast(RAW_SCHEMA)
    while True:
        snapshot.append("kind=prices", frame)


if __name__ == "__main__":
    if sys.argv[1:2] == ["write-parts"]:
        write_parts_forever(Path(sys.argv[2]))


def hold_writes(db: Database, proc: subprocess.Popen):  # noqa: ANN201 - an ADBC connection
    """Once ``proc`` has committed rows, take a lock that its next write into
    stock_daily_data waits for, and return when it does wait. The caller rolls
    back (or closes) the returned connection to let the write go on."""
    import adbc_driver_postgresql.dbapi as adbc

    def committed() -> bool:
        (exists,) = db.fetch("SELECT to_regclass('stock_daily_data') IS NOT NULL")[0]
        return bool(exists) and db.fetch("SELECT count(*) FROM stock_daily_data")[0][0] > 0

    wait_for(committed, proc=proc)
    admin = adbc.connect(db.url, autocommit=False)
    with admin.cursor() as cur:
        cur.execute("LOCK TABLE stock_daily_data IN SHARE MODE")
    wait_for(
        lambda: db.fetch(
            "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock' "
            "AND query LIKE '%stock_daily_data%'"
        )[0][0],
        proc=proc,
    )
    return admin
