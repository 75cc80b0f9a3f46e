"""etl.db: URL handling, error wrapping, driver type mappings, the embedded server."""

from __future__ import annotations

import os
import subprocess
import sys
from datetime import datetime
from decimal import Decimal
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import polars as pl
import pytest

from etl.db import Database, connectorx_url, open_database
from etl.errors import ConfigError, DatabaseError
from etl.secrets import mask_url

REPO = Path(__file__).resolve().parent.parent


@pytest.mark.parametrize(
    ("url", "masked"),
    [
        ("postgresql://u:s3cret@db.example:5432/etf", "postgresql://u:***@db.example:5432/etf"),
        ("postgres://u:p%40ss%3Aw@h/d?sslmode=require", "postgres://u:***@h/d?sslmode=require"),
        ("postgresql://u:p@ss@h/d", "postgresql://u:***@h/d"),  # raw @ in the password
        (
            "postgresql://u@h/d?password=s3cret&sslmode=require",
            "postgresql://u@h/d?password=***&sslmode=require",
        ),
        ("host=h user=u password=s3cret dbname=d", "host=h user=u password=*** dbname=d"),
        ("host=h password='s3 cret' dbname=d", "host=h password=*** dbname=d"),
        ("postgresql://u@h/d", "postgresql://u@h/d"),
        (
            "postgresql://postgres:@/postgres?host=/tmp/x",
            "postgresql://postgres:@/postgres?host=/tmp/x",
        ),
        (
            'failed: missing "=" after "postgresql://u:s3cret@h/d" in connection info string',
            'failed: missing "=" after "postgresql://u:***@h/d" in connection info string',
        ),
    ],
)
def test_mask_url(url, masked):
    assert mask_url(url) == masked


@pytest.mark.parametrize(
    ("url", "cx"),
    [
        # pgserver's unix-socket URL: connectorx cannot parse the empty host
        (
            "postgresql://postgres:@/postgres?host=/tmp/x",
            "postgresql://postgres@localhost/postgres?host=/tmp/x",
        ),
        ("postgresql://u@/d?host=/s&port=5433", "postgresql://u@localhost/d?host=/s&port=5433"),
        ("postgresql://u:pw@h:5433/d", "postgresql://u:pw@h:5433/d"),
        ("postgres://u:p%40ss@h/d", "postgres://u:p%40ss@h/d"),
    ],
)
def test_connectorx_url(url, cx):
    assert connectorx_url(url) == cx


def test_non_url_database_url_is_a_config_error_without_the_password():
    with pytest.raises(ConfigError, match=r"postgresql://") as err:
        Database("host=h user=u password=s3cret dbname=d")
    assert "s3cret" not in str(err.value)


def test_reads_and_writes_through_both_drivers(db):
    """The embedded server's socket URL and the system server's password URL work for
    ADBC and, after conversion, for connectorx."""
    if "@/" in db.url:
        assert "@localhost/" in db.cx_url
    db.execute("CREATE TABLE t (id int PRIMARY KEY, name text)")
    db.execute("INSERT INTO t VALUES ($1, $2), ($3, $4)", (1, "一", 2, None))
    assert db.fetch("SELECT id, name FROM t WHERE id >= $1 ORDER BY id", (1,)) == [
        (1, "一"),
        (2, None),
    ]
    frame = db.read("SELECT id, name FROM t ORDER BY id")
    assert frame.to_dicts() == [{"id": 1, "name": "一"}, {"id": 2, "name": None}]


def test_execute_is_one_transaction(db):
    db.execute("CREATE TABLE t (id int PRIMARY KEY)")
    with pytest.raises(DatabaseError, match="duplicate key"):
        db.execute("INSERT INTO t SELECT 1 UNION ALL SELECT 1")
    assert db.fetch("SELECT count(*)::int FROM t") == [(0,)]


def test_type_mappings_the_loader_relies_on(migrated_db):
    """connectorx: NUMERIC as Decimal(38, 10) whatever the column's scale, TIMESTAMP as
    naive Datetime("us"). ADBC fetch: NUMERIC as str, TIMESTAMP as naive datetime."""
    migrated_db.execute(
        "INSERT INTO stock_daily_data (trade_date, symbol, stock_name, close_price, volume,"
        " turnover, market_code, created_at, updated_at) VALUES ('2024-06-28', 'SH.510050',"
        " '50ETF', 12.3456, 123456789, 1523456789.12, 'SH', '2024-06-28 18:00:00.5', now())"
    )
    frame = migrated_db.read(
        "SELECT trade_date, close_price, turnover, volume, created_at FROM stock_daily_data"
    )
    assert frame.schema["close_price"] == pl.Decimal(38, 10)
    assert frame.schema["turnover"] == pl.Decimal(38, 10)
    assert frame.schema["trade_date"] == pl.Datetime("us", time_zone=None)
    assert frame.schema["volume"] == pl.Int64
    row = frame.row(0, named=True)
    assert row["close_price"] == Decimal("12.3456")
    assert row["turnover"] == Decimal("1523456789.12")
    assert row["trade_date"] == datetime(2024, 6, 28)
    assert row["created_at"] == datetime(2024, 6, 28, 18, 0, 0, 500000)
    assert frame.select(pl.col("close_price").cast(pl.Decimal(10, 4))).item() == Decimal("12.3456")

    fetched = migrated_db.fetch("SELECT close_price, trade_date FROM stock_daily_data")
    assert fetched == [("12.3456", datetime(2024, 6, 28))]


def test_query_errors_are_database_errors(db):
    with pytest.raises(DatabaseError, match='relation "nope" does not exist'):
        db.read("SELECT * FROM nope")
    with pytest.raises(DatabaseError, match='relation "nope" does not exist'):
        db.fetch("SELECT * FROM nope")


def _with_password(url: str, password: str) -> str:
    parts = urlsplit(url)
    user = parts.username or "postgres"
    return urlunsplit(parts._replace(netloc=f"{user}:{password}@{parts.netloc.rpartition('@')[2]}"))


@pytest.mark.system_pg
def test_wrong_password_does_not_leak(system_pg, tmp_path):
    url = _with_password(system_pg.url, "wr0ng-Secret")
    with pytest.raises(DatabaseError) as err:
        with open_database(url, tmp_path):
            pass
    message = str(err.value)
    assert "wr0ng-Secret" not in message
    assert "password authentication failed" in message
    assert "etl_test:***@127.0.0.1" in message
    assert "check DATABASE_URL" in message


def test_unreachable_server_does_not_leak(tmp_path):
    with pytest.raises(DatabaseError) as err:
        with open_database("postgresql://u:t0pSecret@127.0.0.1:1/d", tmp_path):
            pass
    message = str(err.value)
    assert "t0pSecret" not in message
    assert "u:***@127.0.0.1:1/d" in message
    assert "is PostgreSQL running? check DATABASE_URL" in message


def test_driver_messages_are_scrubbed():
    """libpq echoes an unparseable connection string whole; the password is masked by its
    place in each URL or `password=` the message holds, also percent-decoded."""
    db = Database("postgresql://u:p%40ss-s3cret@h/d")
    echoed = (
        'invalid: "postgresql://u:p%40ss-s3cret@h/d", as postgresql://u:p@ss-s3cret@h/d, '
        "host=h password=p@ss-s3cret"
    )
    assert db.scrub(echoed) == (
        'invalid: "postgresql://u:***@h/d", as postgresql://u:***@h/d, host=h password=***'
    )
    assert "s3cret" not in repr(db)


def test_embedded_server_is_created_kept_and_stopped(tmp_path):
    data_dir = tmp_path / "data"  # does not exist yet
    with open_database(None, data_dir) as db:
        db.execute("CREATE TABLE kept (x int)")
        db.execute("INSERT INTO kept VALUES (42)")
        assert db.read("SELECT x FROM kept")["x"].to_list() == [42]
        assert (data_dir / "pg" / "postmaster.pid").exists()
    assert not (data_dir / "pg" / "postmaster.pid").exists()  # stopped cleanly
    with open_database(None, data_dir) as db:  # restarted on the same files
        assert db.fetch("SELECT x FROM kept") == [(42,)]
    assert not (data_dir / "pg" / "postmaster.pid").exists()


@pytest.mark.slow
def test_embedded_server_is_shared_between_processes(tmp_path):
    """A second process joining the server does not stop it under the first one."""
    code = (
        "import sys; from pathlib import Path; from etl.db import open_database\n"
        "with open_database(None, Path(sys.argv[1])) as db: print(db.fetch('SELECT 7')[0][0])\n"
    )
    with open_database(None, tmp_path) as db:
        out = subprocess.run(
            [sys.executable, "-c", code, str(tmp_path)], capture_output=True, text=True, check=True
        )
        assert out.stdout.strip() == "7"
        assert db.fetch("SELECT 1") == [(1,)]  # still up after the other process left
    assert not (tmp_path / "pg" / "postmaster.pid").exists()


def test_unwritable_data_dir_is_a_config_error(tmp_path):
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    with pytest.raises(ConfigError, match=str(blocker / "data")):
        with open_database(None, blocker / "data"):
            pass


def test_no_runtime_dir_warning():
    env = {k: v for k, v in os.environ.items() if k != "XDG_RUNTIME_DIR"}
    out = subprocess.run(
        [sys.executable, "-W", "error", "-c", "import etl.db as d; d.import_pgserver()"],
        capture_output=True, text=True, env=env, cwd=REPO,
    )  # fmt: skip
    assert out.returncode == 0, out.stderr
    assert out.stderr == ""
