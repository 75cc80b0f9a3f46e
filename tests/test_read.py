"""Reading the data back: etl query, etl export, etl.read.daily, and the README's SQL."""

from __future__ import annotations

import json
import re
from datetime import date, datetime
from decimal import Decimal
from pathlib import Path

import polars as pl
import pytest
from click.testing import CliRunner

from etl import read
from etl.cli import cli
from etl.db import open_database

ROOT = Path(__file__).resolve().parent.parent


def invoke(args: list[str], env: dict[str, str | None]) -> tuple[int, str, str]:
    result = CliRunner().invoke(cli, args, env=env, catch_exceptions=False)
    return result.exit_code, result.stdout, result.stderr


@pytest.fixture
def synced(etl_env) -> dict[str, str]:
    code, _, err = invoke(["-q", "sync"], etl_env)
    assert code == 0, err
    return etl_env


PRICE_SQL = (
    "SELECT symbol, trade_date, close_price, volume, turnover FROM stock_daily_data "
    "WHERE symbol = 'SH.510050' ORDER BY trade_date LIMIT 3"
)


def stored(db, column: str = "close_price") -> list[str]:
    return [
        r[0]
        for r in db.fetch(
            f"SELECT {column}::text FROM stock_daily_data WHERE symbol = 'SH.510050' "
            "ORDER BY trade_date LIMIT 3"
        )
    ]


def test_query_prints_a_table_csv_json_and_parquet_with_exact_decimals(synced, db, tmp_path):
    closes = stored(db)
    code, out, err = invoke(["query", PRICE_SQL], synced)
    assert code == 0, err
    assert "| symbol" in out and "(3 rows)" in out
    for close in closes:
        assert close.rstrip("0").rstrip(".") in out

    code, out, _ = invoke(["query", PRICE_SQL, "--format", "csv"], synced)
    assert code == 0
    frame = pl.read_csv(out.encode(), infer_schema=False)
    assert [Decimal(v) for v in frame["close_price"]] == [Decimal(c) for c in closes]

    code, out, _ = invoke(["query", PRICE_SQL, "--json"], synced)  # --json: JSON rows
    assert code == 0
    rows = json.loads(out)["rows"]
    # Numbers are JSON numbers, read back as the exact decimals stored.
    raw = re.findall(r'"close_price": ([0-9.]+)', out)
    assert [Decimal(v) for v in raw] == [Decimal(c) for c in closes]
    assert all(isinstance(r["volume"], int) for r in rows)
    assert re.fullmatch(r"2024-01-\d\dT00:00:00", rows[0]["trade_date"])

    target = tmp_path / "out.parquet"
    code, out, _ = invoke(["query", PRICE_SQL, "--format", "parquet", "-o", str(target)], synced)
    assert code == 0
    back = pl.read_parquet(target)
    assert isinstance(back.schema["close_price"], pl.Decimal)
    assert back["close_price"].to_list() == [Decimal(c) for c in closes]

    code, _, err = invoke(["query", PRICE_SQL, "--format", "parquet"], synced)
    assert code == 2 and "-o FILE" in err


def test_query_is_read_only(synced, db):
    before = db.fetch("SELECT count(*) FROM stock_info")
    code, _, err = invoke(
        ["query", "WITH gone AS (DELETE FROM stock_info RETURNING symbol) SELECT * FROM gone"],
        synced,
    )
    assert code == 1
    assert (
        err == "Error: etl query is read-only: cannot execute SELECT in a read-only transaction\n"
    )
    assert db.fetch("SELECT count(*) FROM stock_info") == before


NOT_A_QUERY = "Error: etl query is read-only: it runs one SELECT, WITH, VALUES or TABLE statement"
REFUSED = "a server function that acts outside a read-only transaction or runs SQL text"


@pytest.mark.parametrize(
    ("sql", "message"),
    [
        ("DELETE FROM stock_info", f"{NOT_A_QUERY}, not DELETE"),
        ("  drop TABLE stock_daily_data", f"{NOT_A_QUERY}, not DROP"),
        ("/* c */ Insert INTO stock_info DEFAULT VALUES", f"{NOT_A_QUERY}, not INSERT"),
        ("COPY stock_info TO PROGRAM 'true'", f"{NOT_A_QUERY}, not COPY"),
        ("DO $$ BEGIN PERFORM 1; END $$", f"{NOT_A_QUERY}, not DO"),
        (
            "SELECT 1; DROP TABLE stock_info",
            "Error: etl query is read-only: it runs one statement, this text has 2",
        ),
        (
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity",
            f"Error: etl query is read-only: it refuses pg_terminate_backend(), {REFUSED}",
        ),
        (
            'SELECT "PG_CATALOG"."Pg_Cancel_Backend" /* x */ (1), PG_RELOAD_CONF()',
            "Error: etl query is read-only: it refuses pg_cancel_backend(), pg_reload_conf(), "
            + REFUSED,
        ),
        (
            "SELECT set_config('work_mem', '1GB', false)",
            f"Error: etl query is read-only: it refuses set_config(), {REFUSED}",
        ),
        (
            "SELECT lo_export(1, '/tmp/x')",
            f"Error: etl query is read-only: it refuses lo_export(), {REFUSED}",
        ),
        (
            "SELECT query_to_xml('SELECT pg_rotate_logfile()', true, false, '')",
            "Error: etl query is read-only: it refuses pg_rotate_logfile(), query_to_xml(), "
            + REFUSED,
        ),
        (
            "SELECT dblink_exec('dbname=postgres', 'DROP TABLE x')",
            f"Error: etl query is read-only: it refuses dblink_exec(), {REFUSED}",
        ),
    ],
)
def test_query_refuses_writes_and_functions_that_act_outside_in_one_line(synced, db, sql, message):
    before = db.fetch("SELECT count(*) FROM stock_info")
    code, out, err = invoke(["query", sql], synced)
    assert (code, out, err) == (1, "", message + "\n")
    code, out, _ = invoke(["query", sql, "--json"], synced)
    assert code == 1
    assert json.loads(out) == {
        "status": "failed",
        "exit_code": 1,
        "error": message[7:],
        "reasons": [message[7:]],
    }
    assert db.fetch("SELECT count(*) FROM stock_info") == before


def test_query_runs_where_a_denied_name_is_only_a_column(synced):
    sql = "SELECT lo_price FROM (SELECT 1 AS lo_price) AS t -- lo_export(1)"
    code, out, err = invoke(["query", sql, "--format", "csv"], synced)
    assert (code, out) == (0, "lo_price\n1\n"), err


def test_query_keeps_repeated_column_names_apart(synced, db):
    sql = (
        "SELECT count(*), count(DISTINCT symbol), 7 AS count_2, count(*) "
        "FROM stock_daily_data WHERE symbol = 'SH.510050'"
    )
    (rows,) = db.fetch("SELECT count(*) FROM stock_daily_data WHERE symbol = 'SH.510050'")[0]
    code, out, err = invoke(["query", sql, "--format", "csv"], synced)
    assert code == 0, err
    assert out == f"count,count_3,count_2,count_4\n{rows},1,7,{rows}\n"


def _readme_sql() -> list[str]:
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    return [block.strip() for block in re.findall(r"```sql\n(.*?)```", text, re.S)]


def test_readme_has_sql_examples():
    assert len(_readme_sql()) >= 3


@pytest.mark.slow
def test_the_default_install_answers_the_readme_sql(api, tmp_path):
    """No DATABASE_URL: the embedded server under ETL_DATA_DIR, reached by connectorx."""
    from etlfixtures import TOKEN

    env = {
        "DATABASE_URL": None,
        "TSANGHI_TOKEN": TOKEN,
        "TSANGHI_BASE_URL": api.base_url,
        "ETL_DATA_DIR": str(tmp_path / "data"),
        "ETL_HTTP_BACKOFF": "0.01",
    }
    code, _, err = invoke(["-q", "sync"], env)
    assert code == 0, err
    for sql in _readme_sql():
        code, out, err = invoke(["--json", "query", sql], env)
        assert code == 0, f"{sql}\n{err}"
        assert json.loads(out)["rows"], f"no rows from the README's\n{sql}"
    with open_database(None, tmp_path / "data") as db:
        daily = read.daily(db, symbols=["SH.510050"])
    assert daily.height > 0 and daily.schema["close_price"] == pl.Decimal(10, 4)


def test_read_daily_returns_exact_types_for_etfs_only(synced, db):
    now = datetime(2024, 5, 1)
    # A stock row and an older writer's ETF row at 16:00 of the day before (UTC session).
    db.execute(
        "INSERT INTO stock_info (symbol, stock_name, stock_code, market_code, is_active, "
        "is_etf, created_at, updated_at) VALUES ('SH.600000', 'bank', '600000', 'SH', 'Y', "
        "'N', $1, $1)",
        (now,),
    )
    db.execute(
        "INSERT INTO stock_daily_data (trade_date, symbol, stock_name, close_price, volume, "
        "turnover, market_code, created_at, updated_at) VALUES "
        "('2024-03-28 16:00', 'SH.600000', 'bank', 1.2345, 1, 1.23, 'SH', $1, $1), "
        "('2024-04-01 16:00', 'SH.510050', 'x', 9.8765, 1, 9.88, 'SH', $1, $1)",
        (now,),
    )
    frame = read.daily(db, symbols=["SH.510050"], start=date(2024, 3, 1), end=date(2024, 4, 2))
    assert dict(frame.schema) == read.DAILY_READ_SCHEMA
    assert frame["symbol"].unique().to_list() == ["SH.510050"]
    assert frame["trade_date"].is_sorted()
    assert frame["close_price"][-1] == Decimal("9.8765")  # trading day 2024-04-02
    assert frame["trade_date"][0] >= datetime(2024, 3, 1)
    everything = read.daily(db)
    assert "SH.600000" not in everything["symbol"].to_list()
    stored_rows = db.fetch(
        "SELECT count(*) FROM stock_daily_data d JOIN stock_info i USING (symbol) "
        "WHERE i.is_etf = 'Y'"
    )[0][0]
    assert everything.height == stored_rows
    texts = db.fetch(
        "SELECT turnover::text, price_change_pct::text FROM stock_daily_data "
        "WHERE symbol = 'SH.510050' ORDER BY trade_date LIMIT 1"
    )[0]
    first = everything.filter(pl.col("symbol") == "SH.510050").row(0, named=True)
    assert (str(first["turnover"]), first["price_change_pct"]) == (
        texts[0],
        Decimal(texts[1]) if texts[1] is not None else None,
    )
    assert read.daily(db, markets=["SZ"])["market_code"].unique().to_list() == ["SZ"]


def test_export_writes_hive_partitions_and_only_what_changed(synced, db, tmp_path):
    target = tmp_path / "export"
    code, out, err = invoke(["export", str(target), "--json"], synced)
    assert code == 0, err
    first = json.loads(out)
    assert sorted(first["partitions_written"]) == [
        "exchange=XSHE/year=2024",
        "exchange=XSHG/year=2024",
    ]
    scanned = pl.scan_parquet(target / "**" / "*.parquet", hive_partitioning=True).collect()
    etf_rows = db.fetch(
        "SELECT count(*) FROM stock_daily_data d JOIN stock_info i USING (symbol) "
        "WHERE i.is_etf = 'Y'"
    )[0][0]
    assert scanned.height == first["rows_written"] == etf_rows
    assert scanned.schema["close_price"] == pl.Decimal(10, 4)
    assert set(scanned["exchange"].unique()) == {"XSHG", "XSHE"}
    assert (scanned.filter(pl.col("exchange") == "XSHG")["market_code"] == "SH").all()

    code, out, _ = invoke(["export", str(target), "--json"], synced)
    assert json.loads(out)["partitions_written"] == [] and code == 0

    xshg = target / "exchange=XSHG" / "year=2024" / "data.parquet"
    xshe = target / "exchange=XSHE" / "year=2024" / "data.parquet"
    xshe_mtime = xshe.stat().st_mtime_ns
    db.execute(
        "UPDATE stock_daily_data SET close_price = close_price + 0.0001 "
        "WHERE symbol = 'SH.510050' AND trade_date = '2024-03-29'"
    )
    db.execute(  # an older year appears in one exchange
        "INSERT INTO stock_daily_data (trade_date, symbol, stock_name, close_price, volume, "
        "turnover, market_code, created_at, updated_at) SELECT '2023-12-29', symbol, "
        "stock_name, close_price, volume, turnover, market_code, created_at, updated_at "
        "FROM stock_daily_data WHERE symbol = 'SH.510050' AND trade_date = '2024-03-29'"
    )
    code, out, _ = invoke(["export", str(target), "--json"], synced)
    second = json.loads(out)
    assert sorted(second["partitions_written"]) == [
        "exchange=XSHG/year=2023",
        "exchange=XSHG/year=2024",
    ]
    assert xshe.stat().st_mtime_ns == xshe_mtime  # untouched
    changed = pl.read_parquet(xshg).filter(
        (pl.col("symbol") == "SH.510050") & (pl.col("trade_date") == datetime(2024, 3, 29))
    )
    expected = db.fetch(
        "SELECT close_price::text FROM stock_daily_data "
        "WHERE symbol = 'SH.510050' AND trade_date = '2024-03-29'"
    )[0][0]
    assert changed["close_price"].to_list() == [Decimal(expected)]

    db.execute("DELETE FROM stock_daily_data WHERE trade_date < '2024-01-01'")
    code, out, _ = invoke(["export", str(target), "--json"], synced)
    assert json.loads(out)["partitions_removed"] == ["exchange=XSHG/year=2023"]
    assert not (target / "exchange=XSHG" / "year=2023").exists()
    assert not list(target.rglob(".*.tmp"))


def test_read_commands_never_create_a_database(tmp_path):
    data = tmp_path / "data"
    env = {"DATABASE_URL": None, "ETL_DATA_DIR": str(data)}
    for args in (["status"], ["query", "SELECT 1"], ["export", str(tmp_path / "x")]):
        code, _, err = invoke(args, env)
        assert code == 1
        assert f"no database yet: {data / 'pg'} does not exist" in err
        assert "etl sync" in err
    assert not (data / "pg").exists()
    (data / "demo" / "pg").mkdir(parents=True)  # where make demo keeps its database
    code, out, _ = invoke(["--json", "status"], env)
    assert code == 1
    assert f"ETL_DATA_DIR={data / 'demo'} etl status" in json.loads(out)["error"]


@pytest.mark.parametrize(
    "sql",
    [
        "SELECT 'pg_reload_conf' AS name",  # a name, not a call
        'SELECT "lo_price" FROM (SELECT 1 AS "lo_price") AS t',
        "select 1 -- ; DROP TABLE stock_info",
        "SELECT $q$ a; b $q$ AS text;",
        "(VALUES (1), (2))",
        "TABLE stock_info",
        "WITH x AS (SELECT 1) SELECT * FROM x",
    ],
)
def test_the_guard_lets_reads_through(sql):
    from etl.sqlguard import refuse_writes

    assert refuse_writes(sql) is None


@pytest.mark.parametrize(
    ("sql", "refused"),
    [
        ("SELECT E'it\\'s', pg_reload_conf()", "pg_reload_conf()"),
        ("SELECT pg_catalog.PG_TERMINATE_BACKEND\n(1)", "pg_terminate_backend()"),
        ('SELECT "pg_advisory_lock"(1)', "pg_advisory_lock()"),
        ("SELECT $x$SELECT lo_unlink(1)$x$", "lo_unlink()"),
        ("SELECT ts_stat('SELECT 1')", "ts_stat()"),
        ("SELECT pg_stat_reset_shared('wal')", "pg_stat_reset_shared()"),
        ("SELECT 1 WHERE pg_cancel_backend /* */ (2)", "pg_cancel_backend()"),
    ],
)
def test_the_guard_finds_calls_however_they_are_spelled(sql, refused):
    from etl.errors import ReadOnlyError
    from etl.sqlguard import refuse_writes

    with pytest.raises(ReadOnlyError) as caught:
        refuse_writes(sql)
    assert str(caught.value) == (
        f"etl query is read-only: it refuses {refused}, a server function that acts "
        "outside a read-only transaction or runs SQL text"
    )
