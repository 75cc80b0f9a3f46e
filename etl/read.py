"""Reading the data back into polars, with exact types.

From Python::

    from datetime import date
    from pathlib import Path
    from etl.db import open_database
    from etl import read

    # None: the embedded database under ./data, as the CLI uses it
    with open_database(None, Path("data")) as db:
        prices = read.daily(db, symbols=["SH.510050"], start=date(2024, 1, 1))
        top = read.query(db, "SELECT symbol, count(*) AS days FROM stock_daily_data GROUP BY 1")

``daily`` returns the columns of ``stock_daily_data`` with their exact types:
prices as ``Decimal(10, 4)``, turnover ``Decimal(20, 2)``, percentages
``Decimal(8, 4)``, never floats. ``query`` runs one read-only query (etl.sqlguard).
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from datetime import date
from urllib.parse import quote, urlsplit, urlunsplit

import connectorx as cx
import polars as pl

from etl.db import Database
from etl.errors import ConfigError, DatabaseError, ReadOnlyError
from etl.schema import DAILY_SCHEMA, TS
from etl.sqlfiles import query as sql_file
from etl.sqlguard import refuse_writes
from etl.symbols import MARKETS, check_symbol

# What daily() returns: the table's columns, in its order, with its exact types.
DAILY_READ_SCHEMA: dict[str, pl.DataType] = {**DAILY_SCHEMA, "created_at": TS, "updated_at": TS}
# Every session of `query` is read-only: a statement that writes fails in PostgreSQL.
_READ_ONLY = "-c default_transaction_read_only=on"


def daily(
    db: Database,
    symbols: Iterable[str] | None = None,
    start: date | None = None,
    end: date | None = None,
    markets: Iterable[str] | None = None,
) -> pl.DataFrame:
    """ETF daily rows (``is_etf = 'Y'`` only) as a polars DataFrame with exact decimals.

    ``symbols`` like ``SH.510050`` (None: every ETF); ``start``/``end`` trading days,
    both included (None: open); ``markets`` ``SH``/``SZ`` (None: both). Sorted by
    symbol and trade date.
    """
    chosen = [check_symbol(s) for s in symbols] if symbols is not None else []
    if symbols is not None and not chosen:
        return pl.DataFrame(schema=DAILY_READ_SCHEMA)
    market_list = [m.upper() for m in markets] if markets is not None else []
    unknown = sorted(set(market_list) - set(MARKETS.values()))
    if unknown:
        raise ConfigError(f"unknown market code {', '.join(unknown)}: expected SH or SZ")
    params = (
        chosen,
        start.isoformat() if start else "-infinity",
        end.isoformat() if end else "infinity",
        market_list,
    )
    with db.connect() as conn:
        with conn.cursor() as cur:
            try:
                cur.execute(sql_file("daily_read"), params)
                table = cur.fetch_arrow_table()
            except Exception as exc:
                raise DatabaseError(
                    f"reading daily rows failed on {db.display_url}: {db.scrub(str(exc)).strip()}"
                ) from None
        conn.rollback()
    frame = pl.from_arrow(table)
    assert isinstance(frame, pl.DataFrame)
    # NUMERIC came as text (every digit kept); text -> Decimal(p, s) is exact.
    return frame.cast(DAILY_READ_SCHEMA)  # type: ignore[arg-type]


def query(db: Database, sql: str) -> pl.DataFrame:
    """Run one read-only SQL statement through connectorx and return the rows.

    The statement is refused before it runs when it is no query or calls a server
    function that acts outside the transaction (etl.sqlguard); the session is
    read-only, so the server refuses any write, and that refusal is a
    ReadOnlyError too. Repeated column names (``count(*), count(x)``) are kept,
    the second one as ``count_2``. NUMERIC columns keep exact decimals:
    connectorx reads them as ``Decimal(38, 10)``, which is narrowed here to the
    smallest scale that holds every value.
    """
    refuse_writes(sql)
    try:
        # connectorx wraps the statement in its own: a trailing comment must not eat it.
        statement = sql.rstrip().removesuffix(";") + "\n"
        table = cx.read_sql(read_only_url(db.cx_url), statement, return_type="arrow")
    except Exception as exc:
        text = " ".join(db.scrub(str(exc)).split())  # one line, the server's HINT too
        server = re.search(r"ERROR:\s*(.*in a read-only transaction)", text)
        if server:
            raise ReadOnlyError(f"etl query is read-only: {server.group(1)}") from None
        raise DatabaseError(f"query failed on {db.display_url}: {text}") from None
    frame = pl.from_arrow(table.rename_columns(unique_names(table.column_names)))
    assert isinstance(frame, pl.DataFrame)
    return tidy_decimals(frame)


def unique_names(names: list[str]) -> list[str]:
    """Column names made unique as psql shows them apart: a repeated name gets _2, _3, ..."""
    taken = set(names)
    seen: set[str] = set()
    out = []
    for name in names:
        if name in seen:
            n = 2
            while f"{name}_{n}" in taken:
                n += 1
            name = f"{name}_{n}"
            taken.add(name)
        seen.add(name)
        out.append(name)
    return out


def read_only_url(url: str) -> str:
    """`url` with the libpq `options` that make every transaction read-only."""
    parts = urlsplit(url)
    extra = "options=" + quote(_READ_ONLY, safe="")
    query_text = f"{parts.query}&{extra}" if parts.query else extra
    return urlunsplit(parts._replace(query=query_text))


def tidy_decimals(frame: pl.DataFrame) -> pl.DataFrame:
    """Every Decimal column at the smallest scale its values need (exact, no rounding)."""
    casts = []
    for name, dtype in frame.schema.items():
        if not isinstance(dtype, pl.Decimal) or dtype.scale == 0:
            continue
        fractions = frame[name].cast(pl.String).str.extract(r"\.(\d*?)0*$").str.len_chars().max()
        scale = int(fractions or 0)  # type: ignore[arg-type]
        precision = min(38, (dtype.precision or 38) - dtype.scale + scale)
        casts.append(pl.col(name).cast(pl.Decimal(precision, scale)))
    return frame.with_columns(casts) if casts else frame
