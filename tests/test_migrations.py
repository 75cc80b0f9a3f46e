"""Migrations on fresh and legacy databases, PostgreSQL 15 and 18.

Legacy databases are built here with the DDL the existing system's SQLAlchemy models
produced (no server-side defaults), independently of 0001, and hold stock rows whose
every value must survive the migration."""

from __future__ import annotations

import re
import shutil
import threading

import pytest

from etl.db import Database
from etl.errors import DatabaseError, MigrationError
from etl.migrate import MIGRATIONS_DIR, apply_migrations, migration_files

ALL = [p.name for p in migration_files()]

TS = "timestamp without time zone"
VC = "character varying"
STOCK_INFO = {
    "symbol": (f"{VC}(20)", True, None),
    "stock_name": (f"{VC}(100)", True, None),
    "stock_code": (f"{VC}(10)", True, None),
    "market_code": (f"{VC}(10)", True, None),
    "stock_type": (f"{VC}(20)", False, None),
    "industry": (f"{VC}(100)", False, None),
    "sector": (f"{VC}(100)", False, None),
    "list_date": (TS, False, None),
    "delist_date": (TS, False, None),
    "is_active": (f"{VC}(1)", True, None),
    "is_etf": (f"{VC}(1)", True, f"'N'::{VC}"),
    "last_sync_date": (TS, False, None),
    "first_fetch_time": (TS, False, None),
    "created_at": (TS, True, None),
    "updated_at": (TS, True, None),
}
STOCK_DAILY_DATA = {
    "trade_date": (TS, True, None),
    "symbol": (f"{VC}(20)", True, None),
    "stock_name": (f"{VC}(100)", True, None),
    "close_price": ("numeric(10,4)", True, None),
    "open_price": ("numeric(10,4)", False, None),
    "high_price": ("numeric(10,4)", False, None),
    "low_price": ("numeric(10,4)", False, None),
    "volume": ("bigint", True, None),
    "turnover": ("numeric(20,2)", True, None),
    "price_change": ("numeric(10,4)", False, None),
    "price_change_pct": ("numeric(8,4)", False, None),
    "premium_rate": ("numeric(8,4)", False, None),
    "market_code": (f"{VC}(10)", True, None),
    "created_at": (TS, True, None),
    "updated_at": (TS, True, None),
}
ETL_RUNS = {
    "run_id": ("text", True, None),
    "command": ("text", True, None),
    "started_at": ("timestamp with time zone", True, None),
    "finished_at": ("timestamp with time zone", False, None),
    "status": ("text", True, None),
    "counts": ("jsonb", True, "'{}'::jsonb"),
    "snapshot": ("text", False, None),
    "error": ("text", False, None),
    "host": ("text", False, None),
    "pid": ("integer", False, None),
}

# The existing system's tables, as its SQLAlchemy models created them: no server-side
# defaults, NOT NULL where the model said nullable=False.
LEGACY_DDL = """
CREATE TABLE stock_info (
    symbol VARCHAR(20) NOT NULL, stock_name VARCHAR(100) NOT NULL,
    stock_code VARCHAR(10) NOT NULL, market_code VARCHAR(10) NOT NULL,
    stock_type VARCHAR(20), industry VARCHAR(100), sector VARCHAR(100),
    list_date TIMESTAMP WITHOUT TIME ZONE, delist_date TIMESTAMP WITHOUT TIME ZONE,
    is_active VARCHAR(1) NOT NULL, {is_etf}
    last_sync_date TIMESTAMP WITHOUT TIME ZONE, first_fetch_time TIMESTAMP WITHOUT TIME ZONE,
    created_at TIMESTAMP WITHOUT TIME ZONE NOT NULL, updated_at TIMESTAMP WITHOUT TIME ZONE NOT NULL,
    PRIMARY KEY (symbol)
);
CREATE TABLE stock_daily_data (
    trade_date TIMESTAMP WITHOUT TIME ZONE NOT NULL, symbol VARCHAR(20) NOT NULL,
    stock_name VARCHAR(100) NOT NULL, close_price NUMERIC(10, 4) NOT NULL,
    open_price NUMERIC(10, 4), high_price NUMERIC(10, 4), low_price NUMERIC(10, 4),
    volume BIGINT NOT NULL, turnover NUMERIC(20, 2) NOT NULL,
    price_change NUMERIC(10, 4), price_change_pct NUMERIC(8, 4), premium_rate NUMERIC(8, 4),
    market_code VARCHAR(10) NOT NULL,
    created_at TIMESTAMP WITHOUT TIME ZONE NOT NULL, updated_at TIMESTAMP WITHOUT TIME ZONE NOT NULL,
    PRIMARY KEY (trade_date, symbol)
);
CREATE INDEX idx_symbol_date ON stock_daily_data (symbol, trade_date);
INSERT INTO stock_info (symbol, stock_name, stock_code, market_code, stock_type, industry,
    sector, list_date, delist_date, is_active, last_sync_date, first_fetch_time,
    created_at, updated_at)
VALUES
    ('SH.600000', '浦发银行', '600000', 'SH', 'A', '银行', '金融', '1999-11-10', NULL, 'Y',
     '2024-06-28', '2024-01-02 09:30:00.123456', '2024-01-02 10:00:00', '2024-06-28 18:00:00'),
    ('SZ.000001', '平安银行', '000001', 'SZ', 'A', '银行', '金融', '1991-04-03', NULL, 'Y',
     '2024-06-28', NULL, '2024-01-02 10:00:00', '2024-06-28 18:00:01'),
    ('SZ.000005', 'ST星源', '000005', 'SZ', NULL, NULL, NULL, '1990-12-10', '2024-04-26', 'N',
     NULL, NULL, '2023-05-05 08:00:00', '2024-04-26 08:00:00');
INSERT INTO stock_daily_data VALUES
    ('2024-06-27', 'SH.600000', '浦发银行', 12.3456, 12.3, 12.5, 12.1, 123456789,
     1523456789.12, 0.0456, 0.3706, NULL, 'SH', '2024-06-27 18:00:00', '2024-06-27 18:00:00'),
    ('2024-06-28', 'SH.600000', '浦发银行', 9999.9999, 0.0001, 9999.9999, 0.0001, 0,
     0.01, -0.1, -99.9999, 1.2345, 'SH', '2024-06-28 18:00:00', '2024-06-28 18:30:00.5'),
    ('2024-06-28', 'SZ.000001', '平安银行', 10.01, NULL, NULL, NULL, 9223372036854775807,
     999999999999999999.99, NULL, NULL, NULL, 'SZ', '2024-06-28 18:00:00', '2024-06-28 18:00:00');
"""


def run_script(db: Database, sql: str) -> None:
    """Run a multi-statement script in one transaction (test set-up only)."""
    from etl.migrate import split_statements

    with db.connect() as conn, conn.cursor() as cur:
        for statement in split_statements(sql):
            cur.execute(statement)
        conn.commit()


def make_legacy(db: Database, is_etf: str = "", extra: str = "") -> None:
    run_script(db, LEGACY_DDL.format(is_etf=is_etf) + extra)


def columns(db: Database, table: str) -> dict[str, tuple]:
    rows = db.fetch(
        """SELECT a.attname::text, format_type(a.atttypid, a.atttypmod), a.attnotnull,
                  pg_get_expr(d.adbin, d.adrelid)
             FROM pg_attribute a
             LEFT JOIN pg_attrdef d ON d.adrelid = a.attrelid AND d.adnum = a.attnum
            WHERE a.attrelid = $1::text::regclass AND a.attnum > 0 AND NOT a.attisdropped""",
        (table,),
    )
    return {name: (typ, notnull, default) for name, typ, notnull, default in rows}


def checks(db: Database, table: str) -> dict[str, str]:
    rows = db.fetch(
        """SELECT conname::text, pg_get_constraintdef(oid) FROM pg_constraint
            WHERE conrelid = $1::text::regclass AND contype = 'c' AND convalidated""",
        (table,),
    )
    return dict(rows)


def indexes(db: Database, table: str) -> dict[str, str]:
    rows = db.fetch(
        "SELECT indexname::text, indexdef FROM pg_indexes WHERE tablename = $1", (table,)
    )
    # The definition without the schema-qualified table name (schema differs per test).
    return {name: re.sub(r" ON \S+\.", " ON ", d) for name, d in rows}


def primary_key(db: Database, table: str) -> list[str]:
    rows = db.fetch(
        """SELECT a.attname::text FROM pg_index i
             JOIN LATERAL unnest(i.indkey) WITH ORDINALITY AS k(attnum, pos) ON TRUE
             JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = k.attnum
            WHERE i.indrelid = $1::text::regclass AND i.indisprimary ORDER BY k.pos""",
        (table,),
    )
    return [r[0] for r in rows]


def dump(db: Database, table: str, order: str) -> list[str]:
    """Every row as exact text (NUMERIC scale and timestamps as stored), is_etf aside."""
    return [
        r[0]
        for r in db.fetch(f"SELECT (to_jsonb(t) - 'is_etf')::text FROM {table} t ORDER BY {order}")
    ]


def physical(db: Database, table: str, order: str) -> tuple:
    """Where and by which transaction each row was written, and the table's file: equal
    before and after means no row was rewritten or updated."""
    rows = db.fetch(f"SELECT ctid::text, xmin::text FROM {table} ORDER BY {order}")
    (filenode,) = db.fetch("SELECT pg_relation_filenode($1::text::regclass)::text", (table,))[0]
    return filenode, rows


def catalog_state(db: Database) -> list[tuple]:
    """Catalog rows of our tables, their columns, constraints, indexes and functions,
    with the transaction that last wrote each: any ALTER/CREATE shows up as a new xmin."""
    return db.fetch(
        """SELECT 'class', c.relname::text, c.xmin::text, c.relfilenode::text FROM pg_class c
            WHERE c.relnamespace = 'public'::regnamespace
           UNION ALL
           SELECT 'attr', a.attrelid::regclass::text || '.' || a.attname, a.xmin::text, ''
             FROM pg_attribute a JOIN pg_class c ON c.oid = a.attrelid
            WHERE c.relnamespace = 'public'::regnamespace AND a.attnum > 0
           UNION ALL
           SELECT 'con', conname::text, xmin::text, '' FROM pg_constraint
            WHERE connamespace = 'public'::regnamespace
           UNION ALL
           SELECT 'proc', oid::regprocedure::text, xmin::text, '' FROM pg_proc
            WHERE pronamespace = 'public'::regnamespace
           ORDER BY 1, 2"""
    )


def assert_final_is_etf(db: Database) -> None:
    assert columns(db, "stock_info")["is_etf"] == STOCK_INFO["is_etf"]
    is_etf_checks = [d for d in checks(db, "stock_info").values() if "is_etf" in d]
    assert len(is_etf_checks) == 1, is_etf_checks
    assert set(re.findall(r"'([^']*)'", is_etf_checks[0])) == {"Y", "N"}
    idx = indexes(db, "stock_info")
    assert idx["idx_is_etf"].endswith("USING btree (is_etf)")
    assert idx["idx_etf_market"].endswith("USING btree (market_code, is_etf)")
    assert [r[0] for r in db.fetch("SELECT name FROM schema_migrations ORDER BY version")] == ALL


def is_etf_values(db: Database) -> dict[str, str]:
    return dict(db.fetch("SELECT symbol::text, is_etf::text FROM stock_info"))


def test_fresh_database_gets_the_full_schema(db):
    lines: list[str] = []
    assert apply_migrations(db, echo=lines.append) == ALL
    assert len(lines) == 2 * len(ALL)
    for name, applying, applied in zip(ALL, lines[::2], lines[1::2], strict=True):
        assert applying == f"Applying: {name}"
        assert re.fullmatch(rf"Applied {re.escape(name)} in \d+ms", applied)

    assert columns(db, "stock_info") == STOCK_INFO
    assert columns(db, "stock_daily_data") == STOCK_DAILY_DATA
    assert columns(db, "etl_runs") == ETL_RUNS
    assert primary_key(db, "stock_info") == ["symbol"]
    assert primary_key(db, "stock_daily_data") == ["trade_date", "symbol"]
    assert primary_key(db, "etl_runs") == ["run_id"]
    assert indexes(db, "stock_daily_data")["idx_symbol_date"].endswith(
        "USING btree (symbol, trade_date)"
    )
    assert indexes(db, "etl_runs")["idx_etl_runs_started_at"].endswith("USING btree (started_at)")
    (status_check,) = checks(db, "etl_runs").values()
    for status in ("running", "ok", "partial", "failed"):
        assert f"'{status}'" in status_check
    assert columns(db, "schema_migrations") == {
        "version": ("text", True, None),
        "name": ("text", False, None),
        "applied_at": (TS, True, None),
    }
    assert_final_is_etf(db)
    assert "stock_info_is_etf_check" in checks(db, "stock_info")


def test_rerun_applies_nothing_and_changes_nothing(migrated_db):
    before = catalog_state(migrated_db)
    ledger = migrated_db.fetch("SELECT version, applied_at FROM schema_migrations ORDER BY 1")
    lines: list[str] = []
    assert apply_migrations(migrated_db, echo=lines.append) == []
    assert lines == ["Schema up to date"]
    assert catalog_state(migrated_db) == before
    assert (
        migrated_db.fetch("SELECT version, applied_at FROM schema_migrations ORDER BY 1") == ledger
    )


def test_every_file_is_idempotent_on_its_own(db):
    """Even with the ledger lost, running every file again changes nothing."""
    make_legacy(db)
    apply_migrations(db, echo=lambda _: None)
    before = catalog_state(db)
    rows = (
        physical(db, "stock_info", "symbol"),
        physical(db, "stock_daily_data", "trade_date, symbol"),
    )
    db.execute("DELETE FROM schema_migrations")
    assert apply_migrations(db, echo=lambda _: None) == ALL
    assert catalog_state(db) == before
    assert (
        physical(db, "stock_info", "symbol"),
        physical(db, "stock_daily_data", "trade_date, symbol"),
    ) == rows


def test_legacy_database_without_is_etf(db):
    make_legacy(db)
    info, daily = (
        dump(db, "stock_info", "symbol"),
        dump(db, "stock_daily_data", "trade_date, symbol"),
    )
    info_phys, daily_phys = (
        physical(db, "stock_info", "symbol"),
        physical(db, "stock_daily_data", "trade_date, symbol"),
    )
    assert "12.3456" in daily[0] and "2024-01-02T09:30:00.123456" in info[0]

    assert apply_migrations(db, echo=lambda _: None) == ALL

    assert dump(db, "stock_info", "symbol") == info
    assert dump(db, "stock_daily_data", "trade_date, symbol") == daily
    # PostgreSQL 11+ adds a column with a constant default without touching the rows.
    assert physical(db, "stock_info", "symbol") == info_phys
    assert physical(db, "stock_daily_data", "trade_date, symbol") == daily_phys
    assert set(is_etf_values(db).values()) == {"N"}
    assert columns(db, "stock_info") == STOCK_INFO
    assert columns(db, "stock_daily_data") == STOCK_DAILY_DATA
    assert_final_is_etf(db)


def test_legacy_database_where_the_old_migration_ran(db):
    """is_etf VARCHAR(1) DEFAULT 'N', nullable, no CHECK; some NULLs, some 'Y'."""
    make_legacy(
        db,
        is_etf="is_etf VARCHAR(1) DEFAULT 'N',",
        extra="""
        UPDATE stock_info SET is_etf = NULL WHERE symbol = 'SZ.000001';
        UPDATE stock_info SET is_etf = 'Y' WHERE symbol = 'SZ.000005';
        """,
    )
    info, daily = (
        dump(db, "stock_info", "symbol"),
        dump(db, "stock_daily_data", "trade_date, symbol"),
    )
    daily_phys = physical(db, "stock_daily_data", "trade_date, symbol")

    apply_migrations(db, echo=lambda _: None)

    assert is_etf_values(db) == {"SH.600000": "N", "SZ.000001": "N", "SZ.000005": "Y"}
    assert dump(db, "stock_info", "symbol") == info
    assert dump(db, "stock_daily_data", "trade_date, symbol") == daily
    assert physical(db, "stock_daily_data", "trade_date, symbol") == daily_phys
    assert_final_is_etf(db)


def test_legacy_database_from_the_newer_orm_model(db):
    """is_etf VARCHAR(1) NOT NULL without default or CHECK."""
    make_legacy(
        db,
        is_etf="is_etf VARCHAR(1),",
        extra="""
        UPDATE stock_info SET is_etf = CASE WHEN symbol = 'SZ.000005' THEN 'Y' ELSE 'N' END;
        ALTER TABLE stock_info ALTER COLUMN is_etf SET NOT NULL;
        """,
    )
    assert columns(db, "stock_info")["is_etf"] == (f"{VC}(1)", True, None)
    info_phys = physical(db, "stock_info", "symbol")

    apply_migrations(db, echo=lambda _: None)

    assert is_etf_values(db) == {"SH.600000": "N", "SZ.000001": "N", "SZ.000005": "Y"}
    assert physical(db, "stock_info", "symbol") == info_phys
    assert_final_is_etf(db)
    db.execute(
        "INSERT INTO stock_info (symbol, stock_name, stock_code, market_code, is_active,"
        " created_at, updated_at) VALUES ('SH.510050', '50ETF', '510050', 'SH', 'Y', now(), now())"
    )
    assert is_etf_values(db)["SH.510050"] == "N"


def test_indexes_and_check_already_present_are_kept(db):
    """Indexes under our names and a CHECK with another name and spelling: reused."""
    make_legacy(
        db,
        is_etf="is_etf VARCHAR(1) NOT NULL DEFAULT 'N',",
        extra="""
        ALTER TABLE stock_info ADD CONSTRAINT ck_etf_flag CHECK (is_etf = 'N' OR is_etf = 'Y');
        CREATE INDEX idx_is_etf ON stock_info (is_etf);
        CREATE INDEX idx_etf_market ON stock_info (market_code, is_etf);
        """,
    )
    query = (
        "SELECT relname::text, oid::text FROM pg_class"
        " WHERE relname IN ('idx_is_etf', 'idx_etf_market', 'idx_symbol_date') ORDER BY 1"
    )
    oids = db.fetch(query)
    assert len(oids) == 3

    apply_migrations(db, echo=lambda _: None)

    assert db.fetch(query) == oids
    assert list(checks(db, "stock_info")) == ["ck_etf_flag"]
    assert_final_is_etf(db)


def test_a_not_valid_check_is_validated_not_duplicated(db):
    make_legacy(
        db,
        is_etf="is_etf VARCHAR(1) NOT NULL DEFAULT 'N',",
        extra="ALTER TABLE stock_info ADD CONSTRAINT ck_etf CHECK (is_etf IN ('N', 'Y')) NOT VALID;",
    )
    apply_migrations(db, echo=lambda _: None)
    assert list(checks(db, "stock_info")) == ["ck_etf"]


def test_values_other_than_y_and_n_stop_the_migration_with_advice(db):
    make_legacy(db, is_etf="is_etf VARCHAR(1),", extra="UPDATE stock_info SET is_etf = 'y';")
    with pytest.raises(MigrationError) as err:
        apply_migrations(db, echo=lambda _: None)
    message = str(err.value)
    assert "0002_is_etf.sql" in message
    assert "values other than Y and N: 'y'" in message and "rerun the migration" in message
    # 0001 committed, 0002 not at all: the column is untouched, the ledger says so.
    assert columns(db, "stock_info")["is_etf"] == (f"{VC}(1)", False, None)
    assert [r[0] for r in db.fetch("SELECT version FROM schema_migrations")] == ["0001"]


def test_check_rejects_other_values(migrated_db):
    insert = (
        "INSERT INTO stock_info (symbol, stock_name, stock_code, market_code, is_active, is_etf,"
        " created_at, updated_at) VALUES ($1, 'x', '1', 'SH', 'Y', $2, now(), now())"
    )
    migrated_db.execute(insert, ("SH.1", "Y"))
    migrated_db.execute(insert, ("SH.2", "N"))
    with pytest.raises(DatabaseError, match="stock_info_is_etf_check"):
        migrated_db.execute(insert, ("SH.3", "X"))
    with pytest.raises(DatabaseError, match="is_etf"):
        migrated_db.execute(insert, ("SH.4", None))
    assert sorted(is_etf_values(migrated_db)) == ["SH.1", "SH.2"]


def test_production_tables_have_no_server_defaults(migrated_db):
    """Like production: omitting created_at/volume/... fails here too, not only there."""
    with pytest.raises(DatabaseError, match="created_at"):
        migrated_db.execute(
            "INSERT INTO stock_info (symbol, stock_name, stock_code, market_code, is_active)"
            " VALUES ('SH.1', 'x', '1', 'SH', 'Y')"
        )
    with pytest.raises(DatabaseError, match="volume"):
        migrated_db.execute(
            "INSERT INTO stock_daily_data (trade_date, symbol, stock_name, close_price,"
            " market_code, turnover, created_at, updated_at)"
            " VALUES ('2024-01-02', 'SH.1', 'x', 1, 'SH', 0, now(), now())"
        )


def test_broken_file_leaves_nothing_half_applied(db, tmp_path):
    shutil.copy(MIGRATIONS_DIR / ALL[0], tmp_path / ALL[0])
    broken = tmp_path / "0002_broken.sql"
    broken.write_text(
        "CREATE TABLE half_done (x int);\n"
        "-- the next statement fails\n"
        "INSERT INTO no_such_table (x) VALUES (1);\n"
        "CREATE TABLE never_reached (x int);\n"
    )
    lines: list[str] = []
    with pytest.raises(MigrationError) as err:
        apply_migrations(db, echo=lines.append, directory=tmp_path)
    message = str(err.value)
    assert "0002_broken.sql" in message
    assert "statement: INSERT INTO no_such_table (x) VALUES (1)" in message
    assert 'relation "no_such_table" does not exist' in message
    assert "CREATE TABLE half_done" not in message  # the failing statement, not the file
    assert lines[-1] == "Applying: 0002_broken.sql"
    tables = {
        r[0] for r in db.fetch("SELECT tablename::text FROM pg_tables WHERE schemaname = 'public'")
    }
    assert "half_done" not in tables and "stock_info" in tables
    assert db.fetch("SELECT version FROM schema_migrations") == [("0001",)]

    broken.write_text("CREATE TABLE half_done (x int);\nCREATE TABLE never_reached (x int);\n")
    assert apply_migrations(db, echo=lambda _: None, directory=tmp_path) == ["0002_broken.sql"]


def test_failing_do_block_is_reported_with_its_file(db, tmp_path):
    (tmp_path / "0001_do.sql").write_text(
        "CREATE TABLE t1 (x int);\n"
        "DO $$ BEGIN INSERT INTO t1 VALUES (1); RAISE EXCEPTION 'boom; really'; END $$;\n"
    )
    with pytest.raises(MigrationError, match=r"(?s)0001_do\.sql.*statement: DO \$\$.*boom; really"):
        apply_migrations(db, echo=lambda _: None, directory=tmp_path)
    assert db.fetch("SELECT to_regclass('t1') IS NULL") == [(True,)]


def test_concurrent_callers_apply_each_file_once(db):
    barrier = threading.Barrier(2)
    results: list[list[str]] = []
    errors: list[BaseException] = []

    def run() -> None:
        try:
            barrier.wait()
            results.append(apply_migrations(db, echo=lambda _: None))
        except BaseException as exc:  # surfaced below, in the test's thread
            errors.append(exc)

    threads = [threading.Thread(target=run) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert not errors, errors
    assert sorted(results[0] + results[1]) == ALL
    assert db.fetch("SELECT count(*)::int FROM schema_migrations") == [(len(ALL),)]
    assert_final_is_etf(db)
