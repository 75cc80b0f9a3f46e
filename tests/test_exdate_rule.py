"""The change of a row against its previous close, on an ex-date in new shares: one
rule with two twins, the SQL functions of sql/migrations/0009_exdate_change.sql and
the polars expressions of etl/corporate.py. Both are evaluated here on the same
values, on a real PostgreSQL, and must give the same Decimals; then the queries
that call the SQL side, through the real load."""

from __future__ import annotations

from datetime import date, datetime
from decimal import ROUND_HALF_UP, Decimal, localcontext

import polars as pl
import pytest

from etl.corporate import adjusted_prev_close, change_pct
from etl.db import Database
from etl.load import Loader
from etl.schema import PRICE, RATIO, TYPED_SCHEMA
from etl.sqlfiles import query

FOUR = Decimal("0.0001")
D = Decimal

# (previous close, ratio, close) -> (previous close in new shares, price_change_pct),
# worked out by hand: round(prev / ratio, 4) and round((close - base) * 100 / base, 4),
# halves away from zero.
RULE = [
    # round ratios: a 2-for-1 split, a 10-to-1 merge
    ((D("2.4680"), D("2"), D("1.2500")), (D("1.2340"), D("1.2966"))),
    ((D("0.3456"), D("0.1"), D("3.5000")), (D("3.4560"), D("1.2731"))),
    # a conversion: 4.1234 / 3.8165 = 1.08041399...; 0.0196 * 100 / 1.0804 = 1.81414...
    ((D("4.1234"), D("3.8165"), D("1.1000")), (D("1.0804"), D("1.8141"))),
    # 1:1.1454: 1.0000 / 1.1454 = 0.87305744...; -0.0031 * 100 / 0.8731 = -0.35505...
    ((D("1.0000"), D("1.1454"), D("0.8700")), (D("0.8731"), D("-0.3551"))),
    # no action (ratio NULL): the previous close as it is
    ((D("1.0000"), None, D("1.0500")), (D("1.0000"), D("5.0000"))),
    # halves: the base 0.50005 and the pcts +-0.00125 round away from zero
    ((D("1.0001"), D("2"), D("0.5001")), (D("0.5001"), D("0.0000"))),
    ((D("8.0000"), None, D("8.0001")), (D("8.0000"), D("0.0013"))),
    ((D("8.0000"), None, D("7.9999")), (D("8.0000"), D("-0.0013"))),
    ((D("0.0003"), D("2"), D("0.0002")), (D("0.0002"), D("0.0000"))),
    # a base rounding to 0: no pct
    ((D("0.0001"), D("10"), D("0.0010")), (D("0.0000"), None)),
    # pcts that do not fit NUMERIC(8,4): 19900%, and 9999.99997% rounding to 10000;
    # 9999.99993% rounds to the largest pct that fits
    ((D("0.0100"), None, D("2.0000")), (D("0.0100"), None)),
    ((D("300.0000"), None, D("30299.9999")), (D("300.0000"), None)),
    ((D("300.0000"), None, D("30299.9998")), (D("300.0000"), D("9999.9999"))),
    # a base beyond a price's NUMERIC(10,4): no base, no change
    ((D("999999.9999"), D("0.5"), D("1.0000")), (None, None)),
    # 43169.2339 * 100 / 72950.1463 = 59.17634999999993...: 7e-14 below a half
    ((D("72950.1463"), None, D("116119.3802")), (D("72950.1463"), D("59.1763"))),
]


def near_halves() -> list[tuple[Decimal, Decimal | None, Decimal]]:
    """Inputs whose exact results lie a hair (1 / 2b) from a rounding half: a pct
    whose previous close b is 0.0100 to 99999.9999, a base whose ratio has up to 8
    digits. Both sides must round the exact value, not an early rounding of it."""
    out: list[tuple[Decimal, Decimal | None, Decimal]] = []
    for digits in range(3, 10):
        b = 10**digits // 3 | 1  # odd, not a multiple of 5: an inverse of 2e6 exists
        b += 2 if b % 5 == 0 else 0
        for r in (1, -1, 3, -3):
            d = r * pow(2_000_000, -1, b) % b  # 2e6 * d = r (mod b)
            out.append((D(b).scaleb(-4), None, D(b + d).scaleb(-4)))
    for digits in range(2, 9):
        ratio = 10**digits // 7 | 1
        ratio += 2 if ratio % 5 == 0 else 0
        for r in (1, -1):
            prev = r * pow(20_000, -1, ratio) % ratio  # 2e4 * prev = r (mod ratio)
            out.append((D(prev).scaleb(-4), D(ratio).scaleb(-4), D(prev).scaleb(-4)))
    return out


def by_hand(prev: Decimal, ratio: Decimal | None, close: Decimal) -> tuple:
    """The rule in exact decimal arithmetic (50 digits), halves away from zero."""
    with localcontext() as ctx:
        ctx.prec = 50
        base = (prev / (ratio or 1)).quantize(FOUR, rounding=ROUND_HALF_UP)
        if abs(base) >= 1_000_000:
            return None, None
        if base <= 0:
            return base, None
        pct = ((close - base) * 100 / base).quantize(FOUR, rounding=ROUND_HALF_UP)
        return base, (pct if abs(pct) < 10_000 else None)


def in_sql(db: Database, rows: list[tuple]) -> list[tuple]:
    """(base, pct) of the SQL functions, as Decimals, in the order of ``rows``."""
    columns = zip(*rows, strict=True)
    arrays = ["{" + ",".join("NULL" if v is None else str(v) for v in c) + "}" for c in columns]
    out = db.fetch(
        "SELECT etl_base_in_new_shares(p, r)::text, "
        "etl_change_pct(c, etl_base_in_new_shares(p, r))::text "
        "FROM unnest($1::numeric[], $2::numeric[], $3::numeric[]) WITH ORDINALITY AS v(p, r, c, i) "
        "ORDER BY i",
        arrays,
    )
    return [tuple(None if v is None else D(v) for v in row) for row in out]


def in_polars(rows: list[tuple]) -> list[tuple]:
    """(base, pct) of etl/corporate.py, on the columns' types (PRICE, RATIO)."""
    frame = pl.DataFrame(
        rows, schema={"prev": PRICE, "ratio": RATIO, "close": PRICE}, orient="row"
    ).with_columns(base=adjusted_prev_close(pl.col("prev"), pl.col("ratio")))
    out = frame.select("base", change_pct(pl.col("close"), pl.col("base")))
    return list(out.iter_rows())


def test_the_table_of_the_rule_by_hand(migrated_db):
    inputs = [i for i, _ in RULE]
    expected = [e for _, e in RULE]
    assert [by_hand(*i) for i in inputs] == expected  # the hand values are the rule's
    assert in_sql(migrated_db, inputs) == expected
    assert in_polars(inputs) == expected


def test_sql_and_polars_round_the_exact_value_next_to_a_half(migrated_db):
    inputs = near_halves()
    assert len(inputs) == 42
    expected = [by_hand(*i) for i in inputs]
    assert in_sql(migrated_db, inputs) == expected
    assert in_polars(inputs) == expected


@pytest.mark.parametrize("name", ["corporate_recompute", "daily_rechain"])
def test_the_functions_are_inlined_into_the_queries(migrated_db, name):
    """PostgreSQL replaces the calls by their expressions: a bulk UPDATE calls no
    function per row (an IMMUTABLE one-SELECT SQL function, not STRICT)."""
    conn = migrated_db.connect()
    try:
        with conn.cursor() as cur:
            cur.execute("CREATE TEMP TABLE etl_stage_recompute (symbol text, ex_date date)")
            cur.execute(
                "CREATE TEMP TABLE etl_stage_sync (symbol text, min_date timestamp, "
                "max_date timestamp)"
            )
            # EXPLAIN through plpgsql: the driver wraps a bare statement in COPY.
            cur.execute(
                "CREATE FUNCTION pg_temp.plan(q text) RETURNS SETOF text LANGUAGE plpgsql "
                "AS $$ BEGIN RETURN QUERY EXECUTE 'EXPLAIN (VERBOSE) ' || q; END $$"
            )
            cur.execute("SELECT pg_temp.plan($1)", (query(name).replace("$1::boolean", "true"),))
            plan = "\n".join(r[0] for r in cur.fetchall())
    finally:
        conn.rollback()
        conn.close()
    assert "Update on public.stock_daily_data" in plan, plan
    assert "CASE WHEN" in plan, plan
    assert "etl_base_in_new_shares" not in plan and "etl_change_pct" not in plan, plan


# -- the queries calling the SQL side, through the real load --------------------------

SYMBOL = "SH.510050"


def add_etf(db: Database) -> None:
    db.execute(
        "INSERT INTO stock_info (symbol, stock_name, stock_code, market_code, stock_type, "
        "is_active, is_etf, created_at, updated_at) VALUES ($1, '50ETF', '510050', 'SH', "
        "'ETF', 'Y', 'Y', now(), now())",
        (SYMBOL,),
    )


def part(*days: tuple) -> pl.DataFrame:
    """Typed rows (day, close, open, price_change, price_change_pct, action_ratio)."""
    return pl.DataFrame(
        [
            {
                "trade_date": datetime(day.year, day.month, day.day),
                "symbol": SYMBOL,
                "stock_name": "50ETF",
                "close_price": close,
                "open_price": opn,
                "high_price": max(close, opn),
                "low_price": min(close, opn),
                "volume": 100,
                "turnover": (close * 100).quantize(D("0.01")),
                "price_change": change,
                "price_change_pct": pct,
                "premium_rate": None,
                "market_code": "SH",
                "action_ratio": ratio,
            }
            for day, close, opn, change, pct, ratio in days
        ],
        schema=TYPED_SCHEMA,
    )


def load(db: Database, rows: pl.DataFrame) -> int:
    loader = Loader(db)
    try:
        return loader.load_daily(rows).inserted
    finally:
        loader.close()


def stored(db: Database) -> list[tuple]:
    return db.fetch(
        "SELECT trade_date::date::text, close_price::text, price_change::text, "
        "price_change_pct::text FROM stock_daily_data WHERE symbol = $1 ORDER BY trade_date",
        (SYMBOL,),
    )


def test_a_rechained_change_beyond_numeric_8_4_is_stored_without_pct(migrated_db):
    """A filled day whose close is tiny makes the next row's change 19900%: its pct is
    stored NULL, as normalize does, where the rechain used to fail the whole load on
    a numeric overflow."""
    add_etf(migrated_db)
    two = D("2.0000")
    assert (
        load(
            migrated_db,
            part(
                (date(2024, 1, 2), two, two, None, None, None),
                (date(2024, 1, 4), two, two, D("0.0000"), D("0.0000"), None),
            ),
        )
        == 2
    )
    filled = part((date(2024, 1, 3), D("0.0100"), D("0.0100"), D("-1.9900"), D("-99.5000"), None))
    assert load(migrated_db, filled) == 1
    assert stored(migrated_db) == [
        ("2024-01-02", "2.0000", None, None),
        ("2024-01-03", "0.0100", "-1.9900", "-99.5000"),
        ("2024-01-04", "2.0000", "1.9900", None),
    ]


def test_a_load_takes_an_earlier_ratio_for_its_own_rows_only(migrated_db):
    """An official ratio recorded before the rows arrive: the ex-date row the load
    inserts gets its change from it, not from the batch's estimate; another writer's
    row on an ex-date the load skips keeps what it has."""
    add_etf(migrated_db)
    migrated_db.execute(
        "INSERT INTO etl_corporate_actions (symbol, ex_date, ratio, source, recorded_at) "
        "VALUES ($1, '2024-01-04', 2.5, 'official', now()), "
        "($1, '2024-01-08', 2, 'official', now())",
        (SYMBOL,),
    )
    # The other writer's row for 2024-01-08, at 16:00 of the day before (a UTC session).
    migrated_db.execute(
        "INSERT INTO stock_daily_data (trade_date, symbol, stock_name, close_price, "
        "open_price, high_price, low_price, volume, turnover, price_change, "
        "price_change_pct, market_code, created_at, updated_at) VALUES "
        "('2024-01-07 16:00', $1, '50ETF', 0.5000, 0.5000, 0.5000, 0.5000, 100, 50.00, "
        "-0.5000, -50.0000, 'SH', now(), now())",
        (SYMBOL,),
    )
    est = D("2")  # the batch estimated 2 where 2.5 is official
    rows = part(
        (date(2024, 1, 3), D("2.0000"), D("2.0000"), None, None, None),
        (date(2024, 1, 4), D("0.8100"), D("1.0000"), D("-0.1900"), D("-19.0000"), est),
        (date(2024, 1, 5), D("1.0000"), D("0.8100"), D("0.1900"), D("23.4568"), None),
        (date(2024, 1, 8), D("0.5000"), D("0.5000"), D("0.0000"), D("0.0000"), est),
    )
    assert load(migrated_db, rows) == 3
    assert stored(migrated_db) == [
        ("2024-01-03", "2.0000", None, None),
        ("2024-01-04", "0.8100", "0.0100", "1.2500"),  # against 2.0000 / 2.5 = 0.8000
        ("2024-01-05", "1.0000", "0.1900", "23.4568"),
        ("2024-01-07", "0.5000", "-0.5000", "-50.0000"),  # the other writer's, untouched
    ]
