"""The audit of stored ETF history behind ``etl check``: holes, suspect rows, share splits.

One read-only, repeatable-read transaction reads everything, so the findings are
of one consistent state even while a sync loads; nothing is written, nothing
migrated. It never asks the API: a finding is what the stored rows say against
the exchange calendar (etl/calendar.py), minus what the source already confirmed
real (``etl_check_confirmed``, written by ``etl check --repair``)::

    from etl.check import audit
    report = audit(db, exchanges=["XSHG"])
    for hole in report.holes:
        print(hole.symbol, hole.start, hole.end, hole.days)

For every ETF (``stock_info.is_etf = 'Y'``) it reports

* **holes**: runs of trading days missing between its first and last stored row,
  and, while it is active, the trading days after its last stored row up to the
  latest trading day any ETF of its exchange has stored (capped at a delist date);
* **suspect rows**, one entry per row and reason (see ``REASONS``);
* **corporate actions**: every ex-date the stored rows show (``etl.corporate``'s
  rules over consecutive stored rows) and every recorded action of
  ``etl_corporate_actions``; a recorded one carries its own ratio and source, an
  unrecorded one is ``detected`` and a finding;
* **needs_official_ratio**: the detected actions whose estimate is no round ratio:
  a finding until the official ratio is recorded (``etl record-action``).

A stored row's trading day is its calendar date in Asia/Shanghai,
``(trade_date + 8 h)::date``. A weekday beyond the holiday table counts as a
trading day of an exchange only where an ETF of that exchange has a row on it:
one nobody traded on was a closure (etl/calendar.py).
"""

from __future__ import annotations

import os
import re
import time
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from datetime import date, timedelta
from decimal import Decimal
from typing import Any

import polars as pl

from etl import corporate
from etl.calendar import closed_days, trading_days, unknown_days
from etl.db import Database
from etl.errors import DatabaseError, EtlError, NothingToAudit
from etl.plan import refuse_unknown
from etl.sqlfiles import query
from etl.symbols import EXCHANGES, MARKETS, check_symbol

# Reasons of a suspect row (the `reason` of each entry):
ZERO_VOLUME = "zero_volume"  # one of >= ZERO_VOLUME_STREAK consecutive stored rows with volume 0
OHLC = "ohlc"  # high below open, close or low; low above open or close; a price <= 0; a null o/h/l
NOT_MIDNIGHT = "not_midnight"  # trade_date not at 00:00 (the older system's 16:00 rows)
NOT_TRADING_DAY = "not_trading_day"  # its trading day is a weekend or a known closure
REASONS = (ZERO_VOLUME, OHLC, NOT_MIDNIGHT, NOT_TRADING_DAY)
ZERO_VOLUME_STREAK = 5
# The finding of a hole in etl_check_confirmed (a suspension the source has no row for).
HOLE = corporate.SUSPENSION

DETECTED = "detected"
_SHANGHAI = timedelta(hours=8)
# From this many ETFs on, the rows are read in parts on one connection per CPU (at most
# MAX_WORKERS), all in the first connection's snapshot: PostgreSQL runs one query on
# one core.
PARALLEL_MIN_ETFS = 200
MAX_WORKERS = 4
_SNAPSHOT_ID = re.compile(r"[0-9A-Fa-f]+(-[0-9A-Fa-f]+)+")


@dataclass(frozen=True)
class Hole:
    """Consecutive trading days with no stored row: ``start`` to ``end``, both included."""

    symbol: str
    start: date
    end: date
    days: int  # trading days in the run


@dataclass(frozen=True)
class SuspectRow:
    symbol: str
    trade_date: date  # the row's trading day
    reason: str  # one of REASONS


@dataclass(frozen=True)
class CorporateAction:
    symbol: str
    ex_date: date  # the first trading day at the new price
    ratio: Decimal  # new shares per old share: 2 for a 2-for-1 split, 0.1 for a 10-to-1 merge
    source: str  # "detected" (estimated from the prices) or "official"
    recorded: bool  # in etl_corporate_actions


@dataclass(frozen=True)
class CheckReport:
    etfs: int  # ETFs checked
    latest: dict[str, date | None]  # exchange -> latest stored trading day of its ETFs
    holes: list[Hole]
    suspect_rows: list[SuspectRow]
    corporate_actions: list[CorporateAction]
    seconds: float
    # Per ETF: market code, first and last stored day, list and delist dates, and the
    # runs of missing trading days before the confirmed ones were taken out (for the
    # coverage picture).
    spans: pl.DataFrame = field(repr=False, compare=False, default_factory=pl.DataFrame)
    raw_holes: list[Hole] = field(repr=False, compare=False, default_factory=list)
    # Exchange -> the weekdays beyond the holiday table on which an ETF of it has a row:
    # its trading days there (etl.calendar.trading_days).
    traded_unknown: dict[str, frozenset[date]] = field(
        repr=False, compare=False, default_factory=dict
    )

    @property
    def unrecorded_actions(self) -> list[CorporateAction]:
        return [a for a in self.corporate_actions if not a.recorded]

    @property
    def needs_official_ratio(self) -> list[CorporateAction]:
        """Detected actions whose estimate is no round ratio (a conversion, a split that
        opened off, a large dividend): only the fund's announcement gives the factor."""
        return [
            a
            for a in self.corporate_actions
            if a.source == DETECTED and not corporate.is_round(a.ratio)
        ]

    @property
    def clean(self) -> bool:
        """No hole, no suspect row, no corporate action left unrecorded or with an
        estimated ratio that needs the official one."""
        return not (
            self.holes or self.suspect_rows or self.unrecorded_actions or self.needs_official_ratio
        )

    @property
    def counts(self) -> dict[str, int]:
        return {
            "etfs": self.etfs,
            "holes": len(self.holes),
            "hole_days": sum(h.days for h in self.holes),
            "suspect_rows": len(self.suspect_rows),
            "corporate_actions": len(self.corporate_actions),
            "unrecorded_corporate_actions": len(self.unrecorded_actions),
            "needs_official_ratio": len(self.needs_official_ratio),
        }

    def as_dict(self) -> dict[str, Any]:
        """What ``etl check --json`` prints: every finding, typed values."""
        return {
            "status": "ok" if self.clean else "findings",
            "clean": self.clean,
            "counts": self.counts,
            "latest": self.latest,
            "seconds": round(self.seconds, 3),
            "holes": [asdict(h) for h in self.holes],
            "suspect_rows": [asdict(s) for s in self.suspect_rows],
            "corporate_actions": [asdict(a) for a in self.corporate_actions],
            "needs_official_ratio": [asdict(a) for a in self.needs_official_ratio],
        }


def audit(
    db: Database,
    exchanges: Iterable[str] | None = None,
    symbols: Iterable[str] | None = None,
) -> CheckReport:
    """Audit the stored history of the ETFs of ``exchanges`` (XSHG, XSHE; None: both),
    or only ``symbols`` (SH.510050, ...). Read-only: works on a read-only connection."""
    started = time.perf_counter()
    markets = {MARKETS[e.upper()] for e in exchanges} if exchanges else set(EXCHANGES)
    wanted = {check_symbol(s) for s in symbols} if symbols else None
    with db.connect() as conn:
        try:
            with conn.cursor() as cur:
                snapshot = _begin(conn, cur)
                etfs = _frame(cur, query("check_etfs"))
                chosen = etfs.filter(
                    pl.col("market_code").is_in(sorted(markets))
                    & (pl.col("symbol").is_in(sorted(wanted)) if wanted is not None else True)
                )
                if wanted is not None:
                    refuse_unknown(
                        etfs.filter(pl.col("market_code").is_in(sorted(markets))), wanted
                    )
                names = chosen["symbol"].to_list()
                stored = chosen.drop_nulls("first_day")
                if stored.is_empty():
                    raise NothingToAudit(_nothing_stored(markets, wanted))
                lo = stored["first_day"].min() if stored.height else None
                hi = stored["last_day"].max() if stored.height else None
                rows, recorded, confirmed = _empty_rows(), [], []
                latest = _latest(etfs)
                # The calendar runs to the latest day any ETF of an exchange has stored.
                last = max([hi, *(d for d in latest.values() if d is not None)]) if hi else None
                traded: dict[str, frozenset[date]] = {}
                if names:
                    if lo is not None and hi is not None:
                        names_stored = stored["symbol"].to_list()
                        rows = _candidate_rows(db, cur, snapshot, names_stored, lo, hi)
                    recorded = _tuples(cur, query("check_recorded"), (names,))
                    confirmed = _tuples(cur, query("check_confirmed"), (names,))
                    if lo is not None and last is not None:
                        traded = _traded_unknown_days(cur, unknown_days(lo, last), markets)
        except EtlError:
            raise
        except Exception as exc:
            raise DatabaseError(
                f"etl check failed on {db.display_url}: {db.scrub(str(exc)).strip()}"
            ) from None
        finally:
            conn.rollback()

    rows = rows.with_columns(
        day=(pl.col("trade_date") + _SHANGHAI).dt.date(),
        prev_day=(pl.col("prev_ts") + _SHANGHAI).dt.date(),
    )
    raw: list[Hole] = []
    holes: list[Hole] = []
    # Per exchange: a weekday beyond the holiday table is a trading day of its own ETFs
    # only where one of them has a row.
    for market in sorted(set(chosen["market_code"].to_list()) & set(EXCHANGES)):
        days = trading_days(lo, last, traded.get(market, ())) if lo and last else []
        calendar = pl.Series("day", days, dtype=pl.Date)
        etfs_here = chosen.filter(pl.col("market_code") == market)
        mine = rows.filter(pl.col("symbol").is_in(etfs_here["symbol"].implode()))
        found = _interior_holes(mine, calendar) + _trailing_holes(etfs_here, latest, calendar)
        raw += found
        holes += _unconfirmed_holes(found, confirmed, calendar)
    raw.sort(key=lambda h: (h.symbol, h.start))
    holes.sort(key=lambda h: (h.symbol, h.start))
    spans = chosen.with_columns(
        pl.col("market_code").replace_strict(EXCHANGES, default=None).alias("exchange")
    )
    return CheckReport(
        etfs=chosen.height,
        latest={e: latest.get(e) for e in sorted(MARKETS) if MARKETS[e] in markets},
        holes=holes,
        suspect_rows=_suspect_rows(rows, confirmed),
        corporate_actions=_actions(rows, chosen, recorded, confirmed),
        seconds=time.perf_counter() - started,
        traded_unknown={EXCHANGES[m]: days for m, days in traded.items()},
        spans=spans,
        raw_holes=raw,
    )


def _nothing_stored(markets: set[str], wanted: set[str] | None) -> str:
    """The one line of a check that has no stored prices to audit."""
    if wanted:
        scope = ", ".join(sorted(wanted))
    elif markets != set(EXCHANGES):
        scope = "the ETFs of " + ", ".join(sorted(EXCHANGES[m] for m in markets))
    else:
        scope = "any ETF"
    return f"nothing to audit: no prices stored for {scope}; run 'etl sync' first"


def _begin(conn: Any, cur: Any) -> str | None:
    """Start the read-only, repeatable-read transaction; return its snapshot exported for
    other connections, or None where the server cannot export one (a standby)."""
    cur.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")
    if min(MAX_WORKERS, os.cpu_count() or 1) < 2:
        return None
    try:
        cur.execute("SELECT pg_export_snapshot()")
        (snapshot,) = cur.fetchone()
    except Exception:
        conn.rollback()
        cur.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")
        return None
    return snapshot if _SNAPSHOT_ID.fullmatch(str(snapshot)) else None


def _candidate_rows(
    db: Database, cur: Any, snapshot: str | None, names: list[str], lo: date, hi: date
) -> pl.DataFrame:
    """check_rows.sql for these ETFs: on this transaction's cursor, or in parts on one
    connection per CPU that share its snapshot (the same rows, read in parallel)."""
    closed = closed_days(lo, hi)  # dates: the SQL takes them as timestamps at midnight
    limits = (str(corporate.CANDIDATE_FLOOR), str(corporate.CANDIDATE_CEILING))
    sql = query("check_rows")
    workers = min(MAX_WORKERS, os.cpu_count() or 1)
    if snapshot is None or len(names) < PARALLEL_MIN_ETFS or workers < 2:
        return _frame(cur, sql, (names, closed, *limits))
    parts = [names[i::workers] for i in range(workers)]

    def other(part: list[str]) -> pl.DataFrame:
        with db.connect() as conn:
            try:
                with conn.cursor() as their:
                    their.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")
                    # An identifier the server made (checked above), not data: it cannot
                    # be a bound parameter in SET TRANSACTION SNAPSHOT.
                    their.execute(f"SET TRANSACTION SNAPSHOT '{snapshot}'")
                    return _frame(their, sql, (part, closed, *limits))
            finally:
                conn.rollback()

    with ThreadPoolExecutor(workers - 1) as pool:
        others = pool.map(other, parts[1:])
        mine = _frame(cur, sql, (parts[0], closed, *limits))
        return pl.concat([mine, *others])


def _frame(cur: Any, sql: str, params: tuple | None = None) -> pl.DataFrame:
    cur.execute(sql, params)
    frame = pl.from_arrow(cur.fetch_arrow_table())
    assert isinstance(frame, pl.DataFrame)
    return frame


def _tuples(cur: Any, sql: str, params: tuple) -> list[tuple]:
    cur.execute(sql, params)
    return cur.fetchall()


def _traded_unknown_days(
    cur: Any, days: list[date], markets: Iterable[str]
) -> dict[str, frozenset[date]]:
    """Market -> which of ``days`` (weekdays beyond the holiday table) an ETF of it has a
    stored row on. No unknown day: no query."""
    if not days:
        return {}
    found: dict[str, set[date]] = {}
    params = (list(days), sorted(markets))
    for market, day in _tuples(cur, query("check_traded_days"), params):
        found.setdefault(market, set()).add(day)
    return {m: frozenset(d) for m, d in found.items()}


def _empty_rows() -> pl.DataFrame:
    ts = pl.Datetime("us")
    return pl.DataFrame(
        schema={
            "symbol": pl.String,
            "trade_date": ts,
            "prev_ts": ts,
            "prev_close": pl.String,
            "open_price": pl.String,
            "high_price": pl.String,
            "low_price": pl.String,
            "zero_volume": pl.Boolean,
            "bad_ohlc": pl.Boolean,
        }
    )


def _latest(etfs: pl.DataFrame) -> dict[str, date | None]:
    """Exchange -> the latest trading day any of its ETFs has stored."""
    out: dict[str, date | None] = {e: None for e in MARKETS}
    for market, day in etfs.group_by("market_code").agg(pl.col("last_day").max()).iter_rows():
        if market in EXCHANGES:
            out[EXCHANGES[market]] = day
    return out


def _interior_holes(rows: pl.DataFrame, calendar: pl.Series) -> list[Hole]:
    """Trading days strictly between a row's previous stored day and its own."""
    pairs = rows.filter(pl.col("prev_day").is_not_null())
    gaps = pairs.select(
        "symbol",
        first=calendar.search_sorted(pairs["prev_day"], side="right"),
        stop=calendar.search_sorted(pairs["day"], side="left"),
    )
    return _runs(gaps, calendar)


def _trailing_holes(
    chosen: pl.DataFrame, latest: dict[str, date | None], calendar: pl.Series
) -> list[Hole]:
    """Active ETFs: the trading days after their last stored row up to their exchange's
    latest stored day (or their delist date, where one is set and earlier)."""
    ends = {MARKETS[e]: d for e, d in latest.items() if d is not None}
    active = chosen.filter(
        (pl.col("is_active") == "Y")
        & pl.col("last_day").is_not_null()
        & pl.col("market_code").is_in(list(ends))
    ).with_columns(end=pl.col("market_code").replace_strict(ends, return_dtype=pl.Date))
    active = active.with_columns(
        end=pl.when(pl.col("delist_date").is_not_null() & (pl.col("delist_date") < pl.col("end")))
        .then(pl.col("delist_date"))
        .otherwise(pl.col("end"))
    )
    if active.is_empty():
        return []
    gaps = active.select(
        "symbol",
        first=calendar.search_sorted(active["last_day"], side="right"),
        stop=calendar.search_sorted(active["end"], side="right"),
    )
    return _runs(gaps, calendar)


def _runs(gaps: pl.DataFrame, calendar: pl.Series) -> list[Hole]:
    days = calendar.to_list()
    return [
        Hole(symbol, days[first], days[stop - 1], stop - first)
        for symbol, first, stop in gaps.filter(pl.col("stop") > pl.col("first")).iter_rows()
    ]


def _unconfirmed_holes(
    holes: list[Hole], confirmed: list[tuple], calendar: pl.Series
) -> list[Hole]:
    """The holes without the trading days the source confirmed missing (a suspension)."""
    ranges: dict[str, list[tuple[date, date]]] = {}
    for symbol, finding, first, last in confirmed:
        if finding == HOLE:
            ranges.setdefault(symbol, []).append((first, last))
    out: list[Hole] = []
    days = calendar.to_list()
    for hole in holes:
        covers = [
            (a, b) for a, b in ranges.get(hole.symbol, []) if a <= hole.end and b >= hole.start
        ]
        if not covers:
            out.append(hole)
            continue
        lo = calendar.search_sorted(hole.start, side="left")
        run: list[date] = []
        for day in days[lo : lo + hole.days]:
            if any(a <= day <= b for a, b in covers):
                if run:
                    out.append(Hole(hole.symbol, run[0], run[-1], len(run)))
                run = []
            else:
                run.append(day)
        if run:
            out.append(Hole(hole.symbol, run[0], run[-1], len(run)))
    return out


def _suspect_rows(rows: pl.DataFrame, confirmed: list[tuple]) -> list[SuspectRow]:
    zero = rows.filter(pl.col("zero_volume")).sort("symbol", "trade_date")
    # A streak continues where the previous stored row is the previous zero-volume row.
    zero = zero.with_columns(
        start=(pl.col("symbol") != pl.col("symbol").shift(1)).fill_null(True)
        | (pl.col("prev_ts") != pl.col("trade_date").shift(1)).fill_null(True)
    ).with_columns(streak=pl.col("start").cum_sum())
    zero = zero.filter(pl.len().over("streak") >= ZERO_VOLUME_STREAK)
    closed = pl.Series(
        closed_days(rows["day"].min(), rows["day"].max()) if rows.height else [], dtype=pl.Date
    )
    found = pl.concat(
        [
            zero.select("symbol", "day", reason=pl.lit(ZERO_VOLUME)),
            rows.filter(pl.col("bad_ohlc")).select("symbol", "day", reason=pl.lit(OHLC)),
            rows.filter(pl.col("trade_date") != pl.col("trade_date").dt.truncate("1d")).select(
                "symbol", "day", reason=pl.lit(NOT_MIDNIGHT)
            ),
            rows.filter(pl.col("day").is_in(closed.implode())).select(
                "symbol", "day", reason=pl.lit(NOT_TRADING_DAY)
            ),
        ]
    )
    hidden: dict[tuple[str, str], list[tuple[date, date]]] = {}
    for symbol, finding, first, last in confirmed:
        hidden.setdefault((symbol, finding), []).append((first, last))
    order = {r: i for i, r in enumerate(REASONS)}
    out = [
        SuspectRow(symbol, day, reason)
        for symbol, day, reason in found.unique().iter_rows()
        if not any(a <= day <= b for a, b in hidden.get((symbol, reason), []))
    ]
    out.sort(key=lambda s: (s.symbol, s.trade_date, order[s.reason]))
    return out


def _ratio(value: Decimal) -> Decimal:
    """A ratio without trailing zeros (2, not 2.0000); exact."""
    return value.normalize()


def _actions(
    rows: pl.DataFrame, chosen: pl.DataFrame, recorded: list[tuple], confirmed: list[tuple]
) -> list[CorporateAction]:
    """Every ex-date the stored rows show (etl/corporate.py's rules over consecutive
    stored rows, the suspensions the source confirmed not counting as missing days)
    and every recorded action; a recorded one carries its own ratio."""
    price = pl.Decimal(38, 10)
    # Most rows come back for a gap or a volume: only the candidates pay for the rules.
    jump = pl.col("open_price").cast(pl.Float64) / pl.col("prev_close").cast(pl.Float64)
    jumps = rows.filter(
        ((jump < corporate.CANDIDATE_FLOOR) | (jump > corporate.CANDIDATE_CEILING)).fill_null(False)
        & pl.col("high_price").is_not_null()
        & pl.col("low_price").is_not_null()
    ).join(chosen.select("symbol", "stock_name"), on="symbol", how="left")
    jumps = jumps.select(
        "symbol",
        "day",
        "prev_day",
        "stock_name",
        *(pl.col(c).cast(price) for c in ("prev_close", "open_price", "high_price", "low_price")),
    )
    suspended = corporate.suspensions(confirmed)
    jumps = jumps.with_columns(ratio=corporate.estimate_rows(jumps, suspended)).filter(
        pl.col("ratio").is_not_null()
    )
    found: dict[tuple[str, date], CorporateAction] = {}
    for symbol, day, ratio in jumps.select("symbol", "day", "ratio").iter_rows():
        found[(symbol, day)] = CorporateAction(symbol, day, _ratio(ratio), DETECTED, False)
    for symbol, ex_date, ratio, source in recorded:
        found[(symbol, ex_date)] = CorporateAction(
            symbol, ex_date, _ratio(Decimal(ratio)), source, True
        )
    return [found[k] for k in sorted(found)]
