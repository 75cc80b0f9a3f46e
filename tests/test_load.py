"""Load: ADBC bulk writes on a real PostgreSQL, pinning the driver facts they rely on."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import date, datetime
from decimal import Decimal

import adbc_driver_postgresql.dbapi as adbc
import polars as pl
import pytest

from etl import corporate
from etl.errors import DatabaseError
from etl.load import Loader
from etl.migrate import MIGRATIONS_DIR, split_statements
from etl.schema import DAILY_SCHEMA
from etl.sqlfiles import query
from etl.transform import anti_join

INFO = (
    "INSERT INTO stock_info (symbol, stock_name, stock_code, market_code, stock_type, is_active, is_etf, "
    "created_at, updated_at) VALUES ('SH.510050', '50ETF', '510050', 'SH', 'ETF', 'Y', 'Y', now(), now())"
)


def rows(*days: int, close: str = "2.3450") -> pl.DataFrame:
    return pl.DataFrame(
        [
            {
                "trade_date": datetime(2024, 1, d),
                "symbol": "SH.510050",
                "stock_name": "50ETF",
                "close_price": Decimal(close),
                "open_price": Decimal(close),
                "high_price": Decimal(close),
                "low_price": Decimal(close),
                "volume": 2**40,
                "turnover": Decimal("123456789012.35"),
                "price_change": None,
                "price_change_pct": Decimal("-1.2345"),
                "premium_rate": None,
                "market_code": "SH",
            }
            for d in days
        ],
        schema=DAILY_SCHEMA,
    )


# Sessions of this database waiting for a lock (a key another transaction holds).
WAITING = (
    "SELECT count(*) FROM pg_stat_activity "
    "WHERE datname = current_database() AND wait_event_type = 'Lock'"
)


def stored(db) -> list[tuple]:
    return db.fetch(
        "SELECT trade_date::text, close_price::text, volume, turnover::text, price_change_pct::text, "
        "created_at IS NOT NULL FROM stock_daily_data ORDER BY trade_date"
    )


def test_direct_copy_stores_exact_values_and_bookkeeping(migrated_db):
    migrated_db.execute(INFO)
    loader = Loader(migrated_db)
    try:
        counts = loader.load_daily(rows(2, 3))
    finally:
        loader.close()
    assert counts.inserted == 2
    assert stored(migrated_db) == [
        ("2024-01-02 00:00:00", "2.3450", 2**40, "123456789012.35", "-1.2345", True),
        ("2024-01-03 00:00:00", "2.3450", 2**40, "123456789012.35", "-1.2345", True),
    ]
    info = migrated_db.fetch(
        "SELECT last_sync_date::text, first_fetch_time IS NOT NULL FROM stock_info"
    )
    assert info == [("2024-01-03 00:00:00", True)]


def test_a_row_written_behind_our_back_sends_the_batch_through_staging(migrated_db):
    migrated_db.execute(INFO)
    loader = Loader(migrated_db)
    try:
        loader.load_daily(rows(3, close="9.9900"))  # the "other writer"
        counts = loader.load_daily(rows(2, 3, 4))  # COPY hits the key of the 3rd, falls back
    finally:
        loader.close()
    assert counts.inserted == 2
    closes = [r[1] for r in stored(migrated_db)]
    assert closes == ["2.3450", "9.9900", "2.3450"]  # the stored row is not overwritten


def test_a_key_committed_during_the_copy_sends_the_batch_through_staging(migrated_db):
    """Another writer commits day 3 while our COPY waits on its key: the COPY fails
    with a unique violation, and the staging path stores the other two days."""
    db = migrated_db
    db.execute(INFO)
    other = adbc.connect(db.url)  # a transaction of its own, left open
    loader = Loader(db)
    try:
        with other.cursor() as cur:
            cur.execute(
                "INSERT INTO stock_daily_data (trade_date, symbol, stock_name, close_price, "
                "volume, turnover, market_code, created_at, updated_at) VALUES "
                "('2024-01-03', 'SH.510050', '50ETF', 9.99, 1, 9.99, 'SH', now(), now())"
            )
        with ThreadPoolExecutor(1) as pool:
            loading = pool.submit(loader.load_daily, rows(2, 3, 4))
            deadline = time.monotonic() + 30
            while not db.fetch(WAITING)[0][0]:  # our COPY waits on the uncommitted key
                assert time.monotonic() < deadline and not loading.done()
                time.sleep(0.02)
            other.commit()
            counts = loading.result(timeout=30)
    finally:
        loader.close()
        other.close()
    assert counts.inserted == 2
    assert [r[1] for r in stored(db)] == ["2.3450", "9.9900", "2.3450"]


def test_a_failure_other_than_a_key_conflict_is_not_retried(migrated_db):
    """A NULL where the table wants a value fails the COPY itself, at once: the
    message is the COPY's, and nothing is stored."""
    migrated_db.execute(INFO)
    bad = rows(2, 3).with_columns(pl.lit(None, pl.String).alias("stock_name"))
    loader = Loader(migrated_db)
    try:
        with pytest.raises(DatabaseError) as err:
            loader.load_daily(bad)
    finally:
        loader.close()
    message = str(err.value)
    assert message.startswith("loading 2 daily rows failed and was rolled back: ")
    assert 'null value in column "stock_name"' in message
    assert "COPY stock_daily_data" in message  # the direct path's statement, not staging's
    assert stored(migrated_db) == []


def test_overwrite_updates_only_rows_that_differ(migrated_db):
    loader = Loader(migrated_db)
    try:
        loader.load_daily(rows(2, 3))
        counts = loader.load_daily(pl.concat([rows(2), rows(3, close="2.5000")]), overwrite=True)
    finally:
        loader.close()
    assert (counts.inserted, counts.updated) == (0, 1)
    assert [r[1] for r in stored(migrated_db)] == ["2.3450", "2.5000"]


def test_existing_keys_are_read_per_symbol_over_its_own_window(migrated_db):
    other = "SZ.159915"
    loader = Loader(migrated_db)
    try:
        loader.load_daily(rows(2, 3))
        loader.load_daily(rows(2, 3, 4, 5).with_columns(pl.lit(other).alias("symbol")))
        # 510050 asks for days 3-4 only, 159915 for day 5 only: 159915's day 2-4 keys stay unread.
        batch = pl.concat([rows(3, 4), rows(5).with_columns(pl.lit(other).alias("symbol"))])
        keys = loader.existing_keys(batch)
        loader._conn.rollback()
    finally:
        loader.close()
    assert sorted(keys.rows()) == [("SH.510050", date(2024, 1, 3)), (other, date(2024, 1, 5))]
    assert anti_join(batch, keys)["trade_date"].to_list() == [datetime(2024, 1, 4)]


def _unanalyzed_table(db) -> None:
    """300,000 rows of 100 symbols in a stock_daily_data autovacuum never analyzed:
    a new table as a backfill or a replay finds it, part after part."""
    db.execute("ALTER TABLE stock_daily_data SET (autovacuum_enabled = false)")
    db.execute(
        "INSERT INTO stock_daily_data (trade_date, symbol, stock_name, close_price, volume, "
        "turnover, market_code, created_at, updated_at) "
        "SELECT timestamp '2016-01-01' + d * interval '1 day', 'SH.' || (510000 + s), 'x', 1, 0, "
        "0, 'SH', now(), now() FROM generate_series(1, 100) AS s, generate_series(1, 3000) AS d"
    )


def test_existing_keys_probe_the_index_before_the_table_has_statistics(migrated_db):
    # A backfill or a replay loads into a new table autovacuum has not analyzed yet.
    # A part's stored keys must still come from one index range scan per symbol of
    # the part, never from a read of the whole table (seconds per part at millions).
    _unanalyzed_table(migrated_db)
    symbols = [f"SH.{510000 + s}" for s in range(1, 71)]
    batch = pl.DataFrame(
        {
            "symbol": symbols,
            "first_day": [date(2016, 1, 1)] * 70,
            "last_day": [date(2024, 1, 1)] * 70,
        }
    )
    loader = Loader(migrated_db)
    try:
        cur = loader._conn.cursor()
        cur.execute(
            "EXPLAIN " + query("existing_keys"),
            parameters=batch.select(pl.all().implode()).to_arrow(),
        )
        plan = "\n".join(row[0] for row in cur.fetchall())
        cur.close()
        keys = loader.existing_keys(rows(2).with_columns(pl.lit("SH.510001").alias("symbol")))
        loader._conn.rollback()
    finally:
        loader.close()
    assert "Seq Scan" not in plan and "idx_symbol_date" in plan, plan
    assert keys.rows() == [("SH.510001", date(2024, 1, 2))]


def test_the_ex_date_recompute_probes_the_index_before_the_table_has_statistics(migrated_db):
    # The part holding a split's ex-date recomputes that one row's change: its
    # staging table is analyzed, so the plan is index probes, not two table reads.
    _unanalyzed_table(migrated_db)
    loader = Loader(migrated_db)
    try:
        cur = loader._conn.cursor()
        corporate.recompute([("SH.510001", date(2020, 3, 2))], cur, own_rows=True)
        cur.execute("EXPLAIN " + query("corporate_recompute"), (True,))
        plan = "\n".join(row[0] for row in cur.fetchall())
        cur.close()
        loader._conn.rollback()
    finally:
        loader.close()
    assert "Seq Scan on stock_daily_data" not in plan, plan


def test_columns_are_matched_by_name_not_position(db):
    # A production table whose columns were added in another order still loads.
    db.execute(
        "CREATE TABLE stock_daily_data (symbol VARCHAR(20) NOT NULL, updated_at TIMESTAMP NOT NULL, "
        "market_code VARCHAR(10) NOT NULL, premium_rate NUMERIC(8,4), price_change_pct NUMERIC(8,4), "
        "price_change NUMERIC(10,4), turnover NUMERIC(20,2) NOT NULL, volume BIGINT NOT NULL, "
        "low_price NUMERIC(10,4), high_price NUMERIC(10,4), open_price NUMERIC(10,4), "
        "close_price NUMERIC(10,4) NOT NULL, stock_name VARCHAR(100) NOT NULL, "
        "created_at TIMESTAMP NOT NULL, trade_date TIMESTAMP NOT NULL, PRIMARY KEY (trade_date, symbol))"
    )
    db.execute(
        "CREATE TABLE stock_info (symbol VARCHAR(20) PRIMARY KEY, last_sync_date TIMESTAMP, "
        "first_fetch_time TIMESTAMP, updated_at TIMESTAMP NOT NULL, stock_name VARCHAR(100))"
    )
    # The tool's own table of share splits: load reads it for the change on an ex-date,
    # and estimates its detected actions again around the rows it wrote.
    db.execute(
        "CREATE TABLE etl_corporate_actions (symbol VARCHAR(20), ex_date DATE, ratio NUMERIC, "
        "source TEXT, PRIMARY KEY (symbol, ex_date))"
    )
    # And the functions of the change against the previous close, which its SQL calls.
    for statement in split_statements((MIGRATIONS_DIR / "0009_exdate_change.sql").read_text()):
        db.execute(statement)
    loader = Loader(db)
    try:
        assert loader.load_daily(rows(2)).inserted == 1
    finally:
        loader.close()
    assert stored(db) == [
        ("2024-01-02 00:00:00", "2.3450", 2**40, "123456789012.35", "-1.2345", True)
    ]


def test_polars_leaves_one_core_to_postgresql_unless_told_otherwise():
    # Sized at polars' import: a fresh interpreter that imports etl first.
    probe = "import etl, polars; print(polars.thread_pool_size())"
    env = {k: v for k, v in os.environ.items() if k != "POLARS_MAX_THREADS"}
    default = subprocess.run([sys.executable, "-c", probe], env=env, capture_output=True, text=True)
    assert default.stdout.strip() == str(max(1, (os.cpu_count() or 1) - 1)), default.stderr
    chosen = subprocess.run(
        [sys.executable, "-c", probe],
        env={**env, "POLARS_MAX_THREADS": "3"},
        capture_output=True,
        text=True,
    )
    assert chosen.stdout.strip() == "3", chosen.stderr
