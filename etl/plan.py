"""Which prices to fetch: per symbol a range, or per exchange a day.

Pure: the stored context (one row per ETF with its watermark) and the options
in, the requests out. The watermark of a symbol is its latest stored trading
day (a row's calendar date in Asia/Shanghai, whoever wrote it); an incremental
run asks from the day after it, so no option ever leaves a hole behind it.

Which ETFs: every active one, and every inactive (delisted) one until its whole
history (from --start-date, when a run gave one) has been fetched once;
``--symbol`` names any ETF, active or not.
"""

from __future__ import annotations

import logging
from collections.abc import Collection, Iterable
from dataclasses import dataclass, field
from datetime import date, timedelta

import polars as pl

from etl.calendar import shanghai_today, trading_days, trading_days_between
from etl.errors import ConfigError
from etl.extract import Request
from etl.schema import PLAN_SCHEMA
from etl.symbols import EXCHANGES, MARKETS

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class PriceOptions:
    exchanges: tuple[str, ...] = tuple(MARKETS)
    symbols: tuple[str, ...] = ()
    # Where a symbol with no stored history begins (None: the API's earliest). A
    # symbol with history always continues from its watermark, earlier or later.
    start: date | None = None
    end: date = field(default_factory=shanghai_today)  # the trading day in Asia/Shanghai
    full: bool = False  # fetch start..end again for every symbol, filling gaps
    overwrite: bool = False  # correct stored rows whose source fields differ


@dataclass
class Plan:
    symbols: pl.DataFrame  # PLAN_SCHEMA + exchange, ticker, by_day, fetch
    requests: list[Request]
    up_to_date: int
    days: dict[str, list[date]]  # exchange -> days asked of /daily/latest
    inactive_complete: int = 0  # inactive ETFs left out: their history is complete

    def context(self) -> pl.DataFrame:
        """What the transform needs to know per symbol (also kept in the snapshot)."""
        return self.symbols.select(list(PLAN_SCHEMA))

    def counts(self) -> dict[str, int]:
        """Inactive ETFs, apart from the rest, for the run summary."""
        known = "is_active" in self.symbols.columns  # a replayed plan has no activity
        inactive = self.symbols.filter(pl.col("is_active") != "Y").height if known else 0
        return {"inactive_synced": inactive, "inactive_complete": self.inactive_complete}

    def completed_inactive(self, failed: Iterable[str], options: PriceOptions) -> list[str]:
        """Inactive ETFs whose history this run has fetched as far as the user asked:
        all of them that did not fail, when the run asked up to today (an earlier
        --end-date may stop short of a late delisting). A --start-date run asked an
        ETF with nothing stored from that date: that is the history the user wants,
        so later runs, with --start-date or without, do not ask for it again."""
        if options.end < shanghai_today():
            return []
        if "is_active" not in self.symbols.columns:
            return []
        done = self.symbols.filter(pl.col("is_active") != "Y")["symbol"].to_list()
        return sorted(set(done) - set(failed))


def select_symbols(context: pl.DataFrame, options: PriceOptions) -> pl.DataFrame:
    """The ETFs of a run, narrowed by --exchange and --symbol.

    Without --symbol: the active ETFs, and the inactive ones whose history is not
    known complete yet (``history_complete``). A named symbol is synced whether
    active or not. No ETF at all, or an unknown symbol, is an error.
    """
    markets = [MARKETS[e] for e in options.exchanges]
    etfs = context.filter(pl.col("market_code").is_in(markets))
    if etfs.is_empty() and options.exchanges:  # none chosen: an interrupted run
        raise ConfigError(
            f"no ETFs of {', '.join(options.exchanges)} in stock_info: run 'etl sync-list' first"
        )
    if not options.symbols:
        return etfs.filter((pl.col("is_active") == "Y") | ~pl.col("history_complete"))
    refuse_unknown(etfs, options.symbols)
    return etfs.filter(pl.col("symbol").is_in(list(options.symbols)))


def refuse_unknown(etfs: pl.DataFrame, symbols: Iterable[str]) -> None:
    """Refuse the named symbols that are not among ``etfs`` (the ETFs of the chosen
    exchanges in stock_info): one message for every command that takes --symbol."""
    unknown = sorted(set(symbols) - set(etfs["symbol"].to_list()))
    if unknown:
        raise ConfigError(
            f"not an ETF of the chosen exchanges in stock_info: {', '.join(unknown)}; "
            "run 'etl sync-list' first, or check the symbol"
        )


def build_plan(
    context: pl.DataFrame,
    options: PriceOptions,
    latest: dict[str, date | None] | None = None,
    max_days_behind: int = 5,
    holes: pl.DataFrame | None = None,
    closed: Collection[date] = (),
) -> Plan:
    """Decide the requests of a price sync.

    ``latest`` maps an exchange to its latest trading day as /daily/latest told
    it (None or missing: unknown). With it, symbols already holding that day
    cost nothing, and the pack of an exchange (the ETFs sharing the most common
    watermark, at most ``max_days_behind`` weekdays behind) is served by one
    request per exchange and day instead of one per ticker. An ETF a run of
    ours asked through a later day than its watermark (``asked_through``: it
    was suspended) is as current as that day. ETFs behind the pack (a fetch
    that failed) go per ticker from their own watermark: a few requests more,
    and never a day skipped. Inactive ETFs
    always go per ticker: a delisted fund is in no per-exchange answer.

    Dates: without ``full``, a symbol with history asks from the day after its
    watermark, and ``start`` only places the first day of a symbol with none, so
    a ``start`` after a watermark never skips the days between. With ``full``,
    every symbol asks ``start``..``end`` (``start`` None: its whole history).

    ``holes`` (HOLES_SCHEMA, see ``hole_candidates``) are days active ETFs miss
    behind a watermark another writer moved past them: they are asked again
    (see ``_fill_holes``), so a missed day is never hidden by a later row.

    ``closed`` are weekdays beyond the holiday table known closed this evening
    (etl/closures.py): not asked.
    """
    latest = latest or {}
    if "history_complete" not in context.columns:  # a context from before etl_etf_history
        context = context.with_columns(history_complete=pl.lit(False))
    selected = select_symbols(context, options)
    complete = context.filter(
        pl.col("market_code").is_in([MARKETS[e] for e in options.exchanges])
        & (pl.col("is_active") != "Y")
        & pl.col("history_complete")
    )
    inactive_complete = 0 if options.symbols else complete.height
    frame = selected.with_columns(
        pl.col("market_code").replace_strict(EXCHANGES, return_dtype=pl.String).alias("exchange"),
        pl.col("symbol").str.slice(3).alias("ticker"),
    )
    requests: list[Request] = []
    days: dict[str, list[date]] = {}
    rows = []
    up_to_date = 0
    for exchange in options.exchanges:
        part = frame.filter(pl.col("exchange") == exchange).sort("symbol").to_dicts()
        target = min(options.end, latest.get(exchange) or options.end)
        by_day_ok = not options.full and latest.get(exchange) is not None
        marks = [s["prev_date"].date() if s["prev_date"] is not None else None for s in part]
        # An ETF a run of ours asked through a later day than its last row was missing
        # from that day's answers (suspended): it is as current as that day, so a
        # suspension costs no request of its own, on its first evening or its hundredth.
        current = [
            max(w, s["asked_through"]) if by_day_ok and w and s.get("asked_through") else w
            for s, w in zip(part, marks, strict=True)
        ]
        active = [s["is_active"] == "Y" for s in part]
        near = [
            w
            for w, a in zip(current, active, strict=True)
            if by_day_ok
            and a
            and w is not None
            and w < target
            # Weekdays beyond the holiday table are asked day by day too but do not count:
            # most are holidays nobody has published yet (an empty answer).
            and len(trading_days(w + timedelta(days=1), target, (target,))) <= max_days_behind
        ]
        pack = max(set(near), key=lambda w: (near.count(w), w)) if near else None
        pack_days = (
            [d for d in trading_days_between(pack, target) if d not in closed]
            if pack is not None
            else []
        )
        fill = _fill_holes(
            holes, MARKETS[exchange], part, marks, target, pack_days, by_day_ok, max_days_behind
        )
        for sym, watermark, now, is_active in zip(part, marks, current, active, strict=True):
            fetch = options.full or now is None or now < target
            by_day = fetch and is_active and pack is not None and now in near and now >= pack
            if options.full:
                start = options.start
            else:
                start = watermark + timedelta(days=1) if watermark else options.start
            gap = fill.gaps.get(sym["symbol"])
            if gap is not None:  # from the day before its first hole on
                sym = {**sym, "prev_date": gap[1], "prev_close": gap[2]}
                by_day = sym["symbol"] in fill.by_day
                fetch, start = True, gap[0]
            if not fetch:
                up_to_date += 1
            elif not by_day:
                requests.append(Request("daily", exchange, sym["ticker"], start, options.end))
            rows.append({**sym, "by_day": by_day})
        if pack_days or fill.days:
            days[exchange] = sorted(set(pack_days) | set(fill.days))
            # The undated request for the latest day was made to learn it; the
            # caller reuses that answer, so it is not asked again here.
            requests.extend(
                Request("latest", exchange, day=d)
                for d in days[exchange]
                if d != latest.get(exchange)
            )
    schema = {**frame.schema, "by_day": pl.Boolean}
    symbols = pl.DataFrame(rows, schema=schema) if rows else pl.DataFrame(schema=schema)
    by_day = sum(1 for r in rows if r["by_day"])
    log.debug(
        "plan: %d ETFs: %d up to date, %d by range (one /daily request each), %d by day (%s)",
        len(rows),
        up_to_date,
        len(rows) - up_to_date - by_day,
        by_day,
        "; ".join(f"{ex} {len(d)} day(s) from {d[0]}" for ex, d in days.items() if d) or "none",
    )
    return Plan(symbols, requests, up_to_date, days, inactive_complete)


# -- days missed behind a watermark ------------------------------------------------

# Days looked at for an ETF no run of ours has asked yet, and at most after the
# day one last asked an ETF up to, when that is long ago (`etl check --repair`
# audits the rest).
HOLE_DAYS_FIRST = 5
HOLE_DAYS_MAX = 250


def hole_candidates(
    options: PriceOptions,
    latest: dict[str, date | None],
    asked: dict[str, tuple[date | None, bool]],
    first_days: int = HOLE_DAYS_FIRST,
) -> dict[str, list[tuple[date, bool]]]:
    """Per market, the days to look for holes behind watermarks, each flagged
    when it is among the last ``first_days`` up to the run's target day.

    ``asked`` maps an exchange to the earliest day through which a run of ours
    asked each of its active ETFs, and whether some ETF was never asked (see
    history.asked_days). The days after that earliest one may hold a hole for
    some ETF (the query looks at each ETF after its own day only); an ETF never
    asked is looked at over the last ``first_days``. None with --full, which
    asks every day again anyway."""
    if options.full:
        return {}
    out: dict[str, list[tuple[date, bool]]] = {}
    for exchange in options.exchanges:
        target = min(options.end, latest.get(exchange) or options.end)
        oldest, unrecorded = asked.get(exchange, (None, True))
        recent = trading_days_between(target - timedelta(days=7 * first_days), target)
        recent = recent[-first_days:]
        # The days right after the oldest first: the ones a failed evening left.
        days = trading_days_between(oldest, target)[:HOLE_DAYS_MAX] if oldest else []
        if unrecorded or oldest is None:
            days = sorted(set(days) | set(recent))
        if days:
            out[MARKETS[exchange]] = [(d, d in recent) for d in days]
    return out


@dataclass
class _Fill:
    gaps: dict[str, tuple[date, object, object]]  # symbol -> (first day, prev_date, prev_close)
    by_day: set[str]  # symbols whose holes the per-day answers fill
    days: list[date]  # days asked for them beyond the pack's


def _fill_holes(
    holes: pl.DataFrame | None,
    market: str,
    part: list[dict],
    marks: list[date | None],
    target: date,
    pack_days: list[date],
    by_day_ok: bool,
    max_days_behind: int,
) -> _Fill:
    """How one exchange's holes are asked again, at no more than one request per
    day, or per ETF where that is fewer.

    A hole counts where it was surely a trading day: some ETF stored a row that
    day, or the run asks that day of the exchange anyway. An ETF otherwise up to
    date gets every day from its first hole to its last one from per-day
    answers (the change of a filled row refers to the row before it in the
    answers, so none may be left out between). An ETF that also needs days past
    its watermark, or any ETF where the per-day answers would cost more
    requests than asking per ticker, asks its range from its first hole on. The
    load's anti-join drops every day already stored.
    """
    fill = _Fill({}, set(), [])
    if holes is None or holes.is_empty():
        return fill
    asked = set(pack_days) | {target}
    mine = holes.filter(
        (pl.col("market_code") == market)
        & (pl.col("traded") | pl.col("day").is_in(sorted(asked) if by_day_ok else []))
    ).sort("symbol", "day")
    if mine.is_empty():
        return fill
    wanted = {s["symbol"]: w for s, w in zip(part, marks, strict=True)}
    ranges: dict[str, tuple[date, date]] = {}
    for symbol, group in mine.group_by("symbol", maintain_order=True):
        first = group.row(0, named=True)
        name = str(symbol[0])
        if name not in wanted:  # not an ETF of this run (--symbol)
            continue
        fill.gaps[name] = (first["day"], first["prev_date"], first["prev_close"])
        if by_day_ok and wanted[name] is not None and wanted[name] >= target:
            ranges[name] = (first["day"], group["day"].max())
    spans = {
        d
        for lo, hi in ranges.values()
        for d in [lo, *trading_days_between(lo, hi)]
        if d not in asked
    }
    if ranges and len(spans) <= min(max_days_behind, len(ranges)):
        fill.by_day = set(ranges)
        fill.days = sorted(spans)
    return fill
