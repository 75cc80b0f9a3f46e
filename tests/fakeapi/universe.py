"""Deterministic synthetic ETF universe behind the Tsanghi-compatible test server.

Everything is derived from ``seed`` and each ETF's exchange and ticker, so two
``Universe`` objects built with the same arguments serve byte-identical answers,
and a history only ever grows at its end (``advance`` never changes past rows).

Prices are integer thousandths (Chinese ETFs quote three decimals). The daily
walk is vectorised with polars: per-day random numbers come from a
``random.Random`` seeded per (ETF, block of days), the log price is an integer
cumulative sum (exact whatever the block boundaries), and the price is folded
back into a band around the listing price so it stays plausible over 20 years.

Corporate actions (share splits, merges and conversions, 份额拆分 / 合并 / 折算):
a Universe carries ``actions``, each an ``Action(exchange, ticker, ex_date,
ratio)`` with ``ratio`` new shares per old share (2 for a 2-for-1 split, 0.1 for
a 10-to-1 merge). From the ex-date on (the first row on or after it) the ETF
trades in new shares: every price is the generated price divided by the
cumulative ratio, rounded half up to the 0.001 tick and never below 0.001, and
the volume is multiplied by it (rounded half up to whole shares). Rows before
the ex-date never change. By default a Universe carries ``STANDARD_ACTIONS``:

    XSHG 510050  2024-01-15  ratio 2       a 2-for-1 split
    XSHE 159915  2024-02-26  ratio 0.1     a 10-to-1 merge
    XSHG 510300  2024-03-11  ratio 3.8165  a conversion 1:3.8165

trading days inside the default range (2020..2024), ``Universe.full``
(2005..2024) and the tests' quarter (2024-01-02..2024-03-29), on funds present
in every universe of two or more ETFs on each exchange. ``Universe(actions=())``
has none; ``universe.add_action(exchange, ticker, day, ratio)`` plants one (on a
day after ``end``, so no history changes, then ``advance``). An action on a
ticker the universe does not list is ignored.
"""

from __future__ import annotations

import bisect
import json
import math
import random
import re
import threading
from array import array
from collections.abc import Iterable
from dataclasses import dataclass, replace
from datetime import date, timedelta
from decimal import Decimal
from fractions import Fraction
from functools import cache
from typing import Any

import chinese_calendar
import polars as pl
import pyarrow as pa

EXCHANGES = ("XSHG", "XSHE")
COUNTRY_CODE = "CHN"
CURRENCY_CODE = "CNY"
DAILY_FIELDS = ("ticker", "date", "open", "high", "low", "close", "volume")

# Spring Festival (lunar new year's day); the exchanges close for about a week.
_SPRING_FESTIVAL = {
    2000: (2, 5), 2001: (1, 24), 2002: (2, 12), 2003: (2, 1), 2004: (1, 22),
    2005: (2, 9), 2006: (1, 29), 2007: (2, 18), 2008: (2, 7), 2009: (1, 26),
    2010: (2, 14), 2011: (2, 3), 2012: (1, 23), 2013: (2, 10), 2014: (1, 31),
    2015: (2, 19), 2016: (2, 8), 2017: (1, 28), 2018: (2, 16), 2019: (2, 5),
    2020: (1, 25), 2021: (2, 12), 2022: (2, 1), 2023: (1, 22), 2024: (2, 10),
    2025: (1, 29), 2026: (2, 17), 2027: (2, 6), 2028: (1, 26), 2029: (2, 13),
    2030: (2, 3),
}  # fmt: skip

# Well-known funds placed first so tests and demos see familiar symbols.
_FAMOUS = {
    "XSHG": [
        ("510050", "上证50ETF华夏", date(2005, 2, 23), 2.5, 1.6e9),
        ("510300", "沪深300ETF华泰柏瑞", date(2012, 5, 28), 3.9, 1.8e9),
        ("510500", "中证500ETF南方", date(2013, 3, 15), 6.0, 2.0e8),
        ("588000", "科创50ETF华夏", date(2020, 11, 16), 1.0, 1.2e9),
    ],
    "XSHE": [
        ("159915", "创业板ETF易方达", date(2011, 12, 9), 2.0, 9.0e8),
        ("159919", "沪深300ETF嘉实", date(2012, 5, 28), 4.0, 1.5e8),
    ],
}
_XSHG_PREFIXES = ("510", "512", "513", "515", "516", "517", "560", "561", "562", "563", "588")
_XSHE_PREFIXES = ("159",)
_THEMES = (
    "沪深300", "上证50", "中证500", "中证1000", "创业板", "科创50", "红利", "医药",
    "证券", "半导体", "新能源车", "光伏", "军工", "黄金", "纳指", "恒生科技",
    "国债", "消费", "银行", "芯片", "有色金属", "煤炭", "传媒", "游戏", "养老",
)  # fmt: skip
_MANAGERS = (
    "华夏", "易方达", "华泰柏瑞", "南方", "嘉实", "广发", "博时", "富国",
    "汇添富", "国泰", "招商", "鹏华", "天弘", "工银瑞信", "平安",
)  # fmt: skip


@dataclass(frozen=True)
class Action:
    """A share split, merge or conversion: ``ratio`` new shares per old share from
    ``ex_date`` (the first trading day at the new price) on."""

    exchange: str
    ticker: str
    ex_date: date
    ratio: Decimal

    @property
    def symbol(self) -> str:
        """The symbol as stored (SH.510050)."""
        return ("SH." if self.exchange == "XSHG" else "SZ.") + self.ticker


STANDARD_ACTIONS = (
    Action("XSHG", "510050", date(2024, 1, 15), Decimal("2")),  # 2-for-1 split
    Action("XSHE", "159915", date(2024, 2, 26), Decimal("0.1")),  # 10-to-1 merge
    Action("XSHG", "510300", date(2024, 3, 11), Decimal("3.8165")),  # conversion 1:3.8165
)

_BLOCK = 256  # days per independently seeded block of random numbers
_NSTREAM = 8  # random numbers drawn per day (a few spare)
_U32 = 1 << 32
_BAND = 1_600_000  # the log price (micro units) stays within +-1.6 of the listing price


# The test API's calendar is its own, never etl.calendar's: the code under test is
# checked against the exchanges' published schedules. Where the State Council's
# table (chinese_calendar) reaches, SSE and SZSE close on its holidays, on every
# weekend (make-up working Saturdays and Sundays included), and on these weekdays
# the table calls working days (the exchanges' Spring Festival notices of 2005,
# 2006 and 2024):
EXCHANGE_ONLY_CLOSURES = (
    date(2005, 2, 7), date(2005, 2, 8), date(2006, 1, 26), date(2006, 1, 27), date(2024, 2, 9),
)  # fmt: skip
_TABLE_YEARS = range(min(chinese_calendar.holidays).year, max(chinese_calendar.holidays).year + 1)


@cache
def _holidays(year: int) -> frozenset[date]:
    """A year the table does not reach (not published yet): New Year, Spring
    Festival, May Day and National Day, as the exchanges close for them."""
    days = {date(year, 1, d) for d in (1, 2, 3)}
    days |= {date(year, 5, d) for d in (1, 2, 3)}
    days |= {date(year, 10, d) for d in range(1, 8)}
    new_year = date(year, *_SPRING_FESTIVAL.get(year, (2, 1)))
    days |= {new_year + timedelta(days=k) for k in range(-1, 6)}
    return frozenset(days)


def is_trading_day(day: date) -> bool:
    """Whether SSE and SZSE trade on ``day`` (the test API's answer, also beyond
    the State Council's table: see ``_holidays``)."""
    if day.weekday() >= 5 or day in EXCHANGE_ONLY_CLOSURES:
        return False
    if day.year in _TABLE_YEARS:
        return day not in chinese_calendar.holidays
    return day not in _holidays(day.year)


def trading_days_between(first: date, last: date) -> list[date]:
    """Trading days from ``first`` to ``last``, both included."""
    out = []
    day = first
    one = timedelta(days=1)
    while day <= last:
        if is_trading_day(day):
            out.append(day)
        day += one
    return out


def _as_date(value: date | str | None) -> date | None:
    if value is None or isinstance(value, date):
        return value
    return date.fromisoformat(value)


def _check_exchange(exchange: str) -> None:
    if exchange not in EXCHANGES:
        raise ValueError(f"unknown exchange {exchange!r}; expected one of {EXCHANGES}")


@dataclass(frozen=True)
class Etf:
    """One fund of the universe: list metadata plus the parameters of its price walk."""

    exchange: str
    ticker: str
    name: str
    list_date: date
    delist_date: date | None = None  # no rows after this day; set for inactive funds
    is_active: bool = True
    price0: float = 1.0  # listing price, yuan
    sigma: int = 15_000  # daily volatility, micro log units
    volume_base: float = 1e6  # typical daily volume, shares
    suspend_rate: float = 0.0  # probability that a day has no row


def _walk_params(seed: int, exchange: str, ticker: str) -> dict[str, Any]:
    rng = random.Random(f"{seed}|{exchange}|{ticker}|params")
    big = rng.random() < 0.04
    return {
        "price0": round(rng.uniform(0.8, 4.5), 3),
        "sigma": rng.randrange(8_000, 20_000),
        "volume_base": rng.uniform(1.2e9, 2.0e9) if big else 10 ** rng.uniform(5.0, 8.5),
    }


@dataclass
class _History:
    """Generated rows of one ETF for its first ``n`` trading days since listing."""

    first_di: int
    n: int
    log_end: int  # integer log price (micro units) after day n-1, before folding
    frame: pl.DataFrame  # di, open, high, low, close (Int32, prices in thousandths), volume
    di: array  # frame["di"] as a plain array, for bisecting without polars calls


@dataclass(frozen=True)
class _Task:
    etf: Etf
    first_di: int
    k0: int  # walk days k0..k1-1 (k counts trading days since listing)
    k1: int
    log0: int  # unfolded log price before day k0


_COLUMNS = ("di", "open", "high", "low", "close", "volume")
_SCHEMA = {c: pl.Int32 for c in _COLUMNS} | {"volume": pl.Int64}  # compact: ~28 bytes a row
_EMPTY = pl.DataFrame(schema=_SCHEMA)


def _random_draws(seed: int, tasks: list[_Task]) -> tuple[pl.Series, list[int]]:
    """Uniform uint32 draws for every task, and where each task's day k0 starts.

    Day k of an ETF uses draws [k*8, k*8+8) of the block ``k // 256``, each block
    seeded on its own, so the values do not depend on how the days are split.
    """
    chunks: list[bytes] = []
    starts: list[int] = []
    pos = 0
    for t in tasks:
        key = f"{seed}|{t.etf.exchange}|{t.etf.ticker}"
        b0, b1 = t.k0 // _BLOCK, (t.k1 - 1) // _BLOCK
        starts.append(pos + (t.k0 - b0 * _BLOCK) * _NSTREAM)
        for b in range(b0, b1 + 1):
            chunks.append(random.Random(f"{key}|{b}").randbytes(_BLOCK * _NSTREAM * 4))
        pos += (b1 - b0 + 1) * _BLOCK * _NSTREAM
    raw = b"".join(chunks)
    arr = pa.Array.from_buffers(pa.uint32(), len(raw) // 4, [None, pa.py_buffer(raw)])
    return pl.Series(pl.from_arrow(arr)).cast(pl.Int64), starts


def _fold(expr: pl.Expr, lo: pl.Expr) -> pl.Expr:
    """Reflect an integer log price into [lo, lo + 2*_BAND] (a triangle wave: exact, elementwise)."""
    width = 2 * _BAND
    m = (expr - lo) % (2 * width)
    return pl.when(m <= width).then(m).otherwise(2 * width - m) + lo


def _thousandths(log_micro: pl.Expr) -> pl.Expr:
    return ((log_micro / 1e6).exp() * 1000).round().cast(pl.Int64).clip(lower_bound=1)


def _generate(seed: int, tasks: list[_Task]) -> list[tuple[pl.DataFrame, int]]:
    """Rows for every task in one vectorised pass: (frame, unfolded log price at k1-1)."""
    draws, starts = _random_draws(seed, tasks)
    params = pl.DataFrame(
        {
            "tid": list(range(len(tasks))),
            "k": [list(range(t.k1 - t.k0)) for t in tasks],
            "start": starts,
            "di0": [t.first_di + t.k0 for t in tasks],
            "log0": [t.log0 for t in tasks],
            "lo": [round(math.log(t.etf.price0) * 1e6) - _BAND for t in tasks],
            "sig": [t.etf.sigma for t in tasks],
            "vbase": [float(t.etf.volume_base) for t in tasks],
            "skip": [int(t.etf.suspend_rate * _U32) for t in tasks],
        },
        schema_overrides={"k": pl.List(pl.Int64), "tid": pl.Int64},
    ).explode("k")
    pos = params["start"] + params["k"] * _NSTREAM
    frame = params.with_columns([draws.gather(pos + j).alias(f"u{j}") for j in range(_NSTREAM - 1)])
    sig = pl.col("sig")
    spread = sig.cast(pl.Float64) / 1e6 * 1.2 / _U32
    step = ((pl.col("u0") + pl.col("u1") - _U32) * sig * 2449) // (_U32 * 1000)
    gap = ((pl.col("u2") - _U32 // 2) * sig * 30) // (_U32 * 50)
    frame = (
        frame.with_columns(step=step)
        .with_columns(log=pl.col("step").cum_sum().over("tid") + pl.col("log0"))
        .with_columns(
            close=_thousandths(_fold(pl.col("log"), pl.col("lo"))),
            open=_thousandths(_fold(pl.col("log") - pl.col("step"), pl.col("lo")) + gap),
        )
        .with_columns(
            top=pl.max_horizontal("open", "close"), bottom=pl.min_horizontal("open", "close")
        )
        .with_columns(
            high=pl.col("top") + (pl.col("top") * spread * pl.col("u3")).floor().cast(pl.Int64),
            low=(
                pl.col("bottom") - (pl.col("bottom") * spread * pl.col("u4")).floor().cast(pl.Int64)
            ).clip(lower_bound=1),
            volume=(
                (pl.col("vbase") * (1.6 * (pl.col("u5") / _U32 - 0.5)).exp() / 100).floor() * 100
            ).cast(pl.Int64),
            di=pl.col("di0") + pl.col("k"),
        )
    )
    log_end = frame.group_by("tid", maintain_order=True).agg(pl.col("log").last())["log"]
    kept = frame.filter(pl.col("u6") >= pl.col("skip")).select(
        "tid", *(pl.col(c).cast(t) for c, t in _SCHEMA.items())
    )
    parts = kept.partition_by("tid", as_dict=True, maintain_order=True, include_key=False)
    return [(parts.get((i,), _EMPTY), log_end[i]) for i in range(len(tasks))]


def _decimal(col: str) -> pl.Expr:
    """Thousandths as the shortest exact JSON number (what ``json.dumps(v / 1000)`` writes)."""
    whole = (pl.col(col) // 1000).cast(pl.String)
    frac = (pl.col(col) % 1000).cast(pl.String).str.zfill(3).str.strip_chars_end("0")
    return pl.when(frac == "").then(whole + ".0").otherwise(whole + "." + frac)


class Universe:
    """A deterministic set of XSHG/XSHE ETFs with daily OHLCV rows, mutable for tests.

    All methods are thread-safe. Raw overrides (``set_rows``, ``extra_list_rows``)
    take precedence over generated data and are served exactly as given.
    """

    def __init__(
        self,
        n_etfs: int = 40,
        start: date = date(2020, 1, 2),
        end: date = date(2024, 12, 31),
        seed: int = 0,
        actions: Iterable[Action] | None = None,
    ) -> None:
        if end < start:
            raise ValueError("end must not be before start")
        self.seed = seed
        self.start = start
        self._end = end
        self._lock = threading.RLock()
        self._days: list[date] = []
        self._day_text = pl.Series("date", [], dtype=pl.String)
        self._extend_calendar(trading_days_between(start, end))
        self._etfs: dict[str, dict[str, Etf]] = {ex: {} for ex in EXCHANGES}
        self._histories: dict[tuple[str, str], _History] = {}
        self._row_overrides: dict[tuple[str, str], list[dict]] = {}
        self._extra_list: dict[str, list[dict]] = {ex: [] for ex in EXCHANGES}
        self._actions: dict[tuple[str, str], list[Action]] = {}
        self._build(n_etfs)
        for action in STANDARD_ACTIONS if actions is None else actions:
            self.add_action(action.exchange, action.ticker, action.ex_date, action.ratio)

    @classmethod
    def full(
        cls,
        n_etfs: int = 1200,
        start: date = date(2005, 1, 4),
        end: date = date(2024, 12, 31),
        seed: int = 0,
        actions: Iterable[Action] | None = None,
    ) -> Universe:
        """Benchmark universe: 1,200 ETFs since 2005, about 4 million daily rows."""
        return cls(n_etfs=n_etfs, start=start, end=end, seed=seed, actions=actions)

    # ----------------------------------------------------------------- building

    def _build(self, n: int) -> None:
        n_xshe = 0 if n < 2 else max(1, n * 9 // 20)
        counts = {"XSHG": n - n_xshe, "XSHE": n_xshe}
        pools = {"XSHG": _XSHG_PREFIXES, "XSHE": _XSHE_PREFIXES}
        rng = random.Random(f"{self.seed}|universe")
        serial = 0
        for ex in EXCHANGES:
            famous = _FAMOUS[ex][: counts[ex]]
            taken = {f[0] for f in _FAMOUS[ex]}
            pool = [f"{p}{i:03d}" for p in pools[ex] for i in range(1000)]
            pool = [t for t in pool if t not in taken]
            need = counts[ex] - len(famous)
            if need > len(pool):
                raise ValueError(f"at most {len(pool) + len(famous)} ETFs fit on {ex}")
            for ticker, name, listed, price0, volume_base in famous:
                etf = self._new_etf(ex, ticker, name, listed)
                self._etfs[ex][ticker] = replace(etf, price0=price0, volume_base=volume_base)
            span = (self._end - timedelta(days=20)) - (self.start - timedelta(days=365))
            for ticker in sorted(rng.sample(pool, need)):
                serial += 1
                name = f"{rng.choice(_THEMES)}ETF{rng.choice(_MANAGERS)} {serial:04d}"
                listed = self.start - timedelta(days=365) + span * (rng.random() ** 2)
                etf = self._new_etf(ex, ticker, name, listed)
                life = (self._end - listed) * rng.uniform(0.3, 0.9)
                if serial % 16 == 9:  # about 6% delisted
                    etf = replace(etf, is_active=False, delist_date=listed + life)
                if serial % 10 == 5:  # 10% sometimes suspended
                    etf = replace(etf, suspend_rate=0.01 + (serial % 4) / 100)
                self._etfs[ex][ticker] = etf

    def _new_etf(self, exchange: str, ticker: str, name: str, listed: date) -> Etf:
        return Etf(exchange, ticker, name, listed, **_walk_params(self.seed, exchange, ticker))

    def _extend_calendar(self, days: list[date]) -> None:
        self._days.extend(days)
        self._day_text = pl.Series("date", [d.isoformat() for d in self._days], dtype=pl.String)

    # ---------------------------------------------------------------- calendar

    @property
    def end(self) -> date:
        """Last calendar day with data (moved forward by ``advance``)."""
        return self._end

    def trading_days(self) -> list[date]:
        """Trading days from ``start`` to ``end``, ascending."""
        with self._lock:
            return list(self._days)

    def latest_trading_day(self, on_or_before: date | None = None) -> date | None:
        """The last trading day <= ``on_or_before`` (default ``end``), None if none."""
        with self._lock:
            i = bisect.bisect_right(self._days, on_or_before or self._end)
            return self._days[i - 1] if i else None

    # --------------------------------------------------------------- listing

    def etfs(self, exchange: str | None = None) -> list[Etf]:
        """ETFs currently listed, by exchange then ticker."""
        with self._lock:
            exchanges = EXCHANGES if exchange is None else (exchange,)
            for ex in exchanges:
                _check_exchange(ex)
            return [self._etfs[ex][t] for ex in exchanges for t in sorted(self._etfs[ex])]

    def etf(self, exchange: str, ticker: str) -> Etf:
        """One listed ETF; KeyError if it is not listed."""
        with self._lock:
            _check_exchange(exchange)
            return self._etfs[exchange][ticker]

    @property
    def n_etfs(self) -> int:
        with self._lock:
            return sum(len(v) for v in self._etfs.values())

    def list_rows(self, exchange: str) -> list[dict]:
        """Exactly the ``data`` of ``/etf/{exchange}/list``."""
        with self._lock:
            rows = [
                {
                    "ticker": e.ticker,
                    "name": e.name,
                    "is_active": 1 if e.is_active else 0,
                    "exchange_code": e.exchange,
                    "country_code": COUNTRY_CODE,
                    "currency_code": CURRENCY_CODE,
                }
                for e in self.etfs(exchange)
            ]
            return rows + [dict(r) for r in self._extra_list[exchange]]

    # ------------------------------------------------------------- histories

    def _span(self, etf: Etf) -> tuple[int, int]:
        """Calendar indexes [first, stop) of the days ``etf`` has rows for (before suspensions)."""
        first = bisect.bisect_left(self._days, max(etf.list_date, self.start))
        last = self._end if etf.delist_date is None else min(self._end, etf.delist_date)
        return first, max(first, bisect.bisect_right(self._days, last))

    def _ensure(self, etfs: Iterable[Etf]) -> None:
        """Generate whatever rows these ETFs lack up to ``end``, in few vectorised batches."""
        batches: list[list[_Task]] = [[]]
        rows = 0
        for etf in etfs:
            first, stop = self._span(etf)
            if stop == first:
                continue
            key = (etf.exchange, etf.ticker)
            hist = self._histories.get(key)
            if hist is None or hist.first_di != first:
                log0 = round(math.log(etf.price0) * 1e6)
                hist = _History(first, 0, log0, _EMPTY, array("i"))
                self._histories[key] = hist
            if hist.n < stop - first:
                if rows > 100_000:  # bounds the memory of one batch
                    batches.append([])
                    rows = 0
                batches[-1].append(_Task(etf, first, hist.n, stop - first, hist.log_end))
                rows += stop - first - hist.n
        for batch in batches:
            if not batch:
                continue
            for task, (more, log_end) in zip(batch, _generate(self.seed, batch), strict=True):
                hist = self._histories[(task.etf.exchange, task.etf.ticker)]
                hist.frame = pl.concat([hist.frame, more], rechunk=True) if hist.n else more
                hist.di.extend(more["di"].to_list())
                hist.n, hist.log_end = task.k1, log_end

    def _frame(self, etf: Etf) -> pl.DataFrame:
        """All generated rows of ``etf`` up to ``end`` (or its delist date). Lock held."""
        self._ensure([etf])
        first, stop = self._span(etf)
        if stop == first:
            return _EMPTY
        hist = self._histories[(etf.exchange, etf.ticker)]
        if hist.di and hist.di[-1] >= stop:  # generated before a delisting
            return hist.frame.slice(0, bisect.bisect_left(hist.di, stop))
        return hist.frame

    def _range(self, frame: pl.DataFrame, start: date | None, end: date | None) -> pl.DataFrame:
        lo = 0 if start is None else bisect.bisect_left(self._days, start)
        hi = len(self._days) if end is None else bisect.bisect_right(self._days, end)
        if lo >= hi or frame.height == 0:
            return frame.clear()
        di = frame["di"]
        a = di.search_sorted(lo, side="left")
        b = di.search_sorted(hi, side="left")
        return frame.slice(a, b - a)

    def _listed(self, exchange: str, ticker: str) -> Etf | None:
        _check_exchange(exchange)
        return self._etfs[exchange].get(ticker)

    def daily_frame(
        self,
        exchange: str,
        ticker: str,
        start: date | str | None = None,
        end: date | str | None = None,
    ) -> pl.DataFrame | None:
        """Generated rows as a frame (di, open..close in thousandths, volume), ascending.

        None when the ticker has raw rows from ``set_rows`` or is not listed.
        ``di`` indexes ``trading_days()``.
        """
        with self._lock:
            etf = self._listed(exchange, ticker)
            if (exchange, ticker) in self._row_overrides or etf is None:
                return None
            frame = self._range(self._frame(etf), _as_date(start), _as_date(end))
            return self._adjusted(exchange, ticker, frame)

    def raw_rows(
        self,
        exchange: str,
        ticker: str,
        start: date | str | None = None,
        end: date | str | None = None,
    ) -> list[dict] | None:
        """Rows set by ``set_rows`` within the range, or None if there are none.

        A raw row is range-filtered only when its ``date`` is a ``yyyy-mm-dd``
        string; rows with a missing or odd date are always returned.
        """
        with self._lock:
            _check_exchange(exchange)
            rows = self._row_overrides.get((exchange, ticker))
            if rows is None:
                return None
            lo, hi = _as_date(start), _as_date(end)
            return [dict(r) for r in rows if _raw_in_range(r, lo, hi)]

    def daily_rows(
        self,
        exchange: str,
        ticker: str,
        start: date | str | None = None,
        end: date | str | None = None,
    ) -> list[dict]:
        """Exactly the ``data`` of ``/daily`` with ``order=1`` (ascending); [] if unknown."""
        raw = self.raw_rows(exchange, ticker, start, end)
        if raw is not None:
            return raw
        frame = self.daily_frame(exchange, ticker, start, end)
        if frame is None:
            return []
        return self._frame_dicts(ticker, frame)

    def _frame_dicts(self, ticker: str, frame: pl.DataFrame) -> list[dict]:
        days = self._days
        return [
            {
                "ticker": ticker,
                "date": days[di].isoformat(),
                "open": o / 1000,
                "high": h / 1000,
                "low": lo / 1000,
                "close": c / 1000,
                "volume": v,
            }
            for di, o, h, lo, c, v in frame.iter_rows()
        ]

    def daily_json(
        self,
        exchange: str,
        ticker: str,
        start: date | str | None = None,
        end: date | str | None = None,
        order: int = 1,
    ) -> str:
        """The ``data`` array of ``/daily`` as JSON text.

        ``order``: 1 ascending, 2 descending, 0 a fixed shuffle (same request,
        same order). Raw rows keep their given order for 0 and 1.
        """
        raw = self.raw_rows(exchange, ticker, start, end)
        if raw is not None:
            if order == 2:
                raw.reverse()
            return dumps_exact(raw)
        with self._lock:
            frame = self.daily_frame(exchange, ticker, start, end)
            day_text = self._day_text
        if frame is None or frame.height == 0:
            return "[]"
        if order == 2:
            frame = frame.reverse()
        elif order == 0:
            shuffle_seed = random.Random(f"{self.seed}|{exchange}|{ticker}|{start}|{end}")
            frame = frame.sample(fraction=1.0, shuffle=True, seed=shuffle_seed.randrange(_U32))
        return _render(frame, ticker, day_text)

    def latest_rows(self, exchange: str, day: date | str | None = None) -> list[dict]:
        """Exactly the ``data`` of ``/daily/latest``: one row per listed ETF that traded.

        ``day`` defaults to the latest trading day <= ``end``; a non-trading day,
        or one outside ``start``..``end``, gives [].
        """
        with self._lock:
            _check_exchange(exchange)
            target = _as_date(day) or self.latest_trading_day()
            if target is None:
                return []
            di = bisect.bisect_left(self._days, target)
            if di >= len(self._days) or self._days[di] != target:
                return []
            text = target.isoformat()
            etfs = self.etfs(exchange)
            self._ensure(e for e in etfs if (exchange, e.ticker) not in self._row_overrides)
            out = []
            for etf in etfs:
                raw = self._row_overrides.get((exchange, etf.ticker))
                if raw is not None:
                    out.extend(dict(r) for r in raw if r.get("date") == text)
                    continue
                first, stop = self._span(etf)
                hist = self._histories.get((exchange, etf.ticker))
                if hist is None or not first <= di < stop:
                    continue
                i = bisect.bisect_left(hist.di, di)
                if i < len(hist.di) and hist.di[i] == di:
                    row = self._adjusted(exchange, etf.ticker, hist.frame.slice(i, 1))
                    out.extend(self._frame_dicts(etf.ticker, row))
            return out

    def row_count(self) -> int:
        """Daily rows currently served over all listed ETFs (generates every history)."""
        with self._lock:
            etfs = self.etfs()
            self._ensure(etfs)
            return sum(self._frame(e).height for e in etfs)

    def max_row_count(self) -> int:
        """Trading days within every listed ETF's life, before suspensions (cheap bound)."""
        with self._lock:
            return sum(stop - first for first, stop in map(self._span, self.etfs()))

    # ------------------------------------------------------ corporate actions

    @property
    def actions(self) -> list[Action]:
        """Every action, by exchange, ticker and ex-date (also on tickers not listed)."""
        with self._lock:
            return sorted(
                (a for acts in self._actions.values() for a in acts),
                key=lambda a: (a.exchange, a.ticker, a.ex_date),
            )

    def add_action(
        self, exchange: str, ticker: str, ex_date: date | str, ratio: Decimal | str | float
    ) -> Action:
        """From ``ex_date`` on, ``ticker`` trades in new shares: ``ratio`` new per old.

        Plant it after ``end`` (then ``advance``) to keep every served row as it was."""
        with self._lock:
            _check_exchange(exchange)
            day = _as_date(ex_date)
            assert day is not None
            value = Decimal(str(ratio))
            if value <= 0:
                raise ValueError("ratio must be > 0")
            action = Action(exchange, ticker, day, value)
            acts = [a for a in self._actions.get((exchange, ticker), []) if a.ex_date != day]
            self._actions[(exchange, ticker)] = sorted([*acts, action], key=lambda a: a.ex_date)
            return action

    def _adjusted(self, exchange: str, ticker: str, frame: pl.DataFrame) -> pl.DataFrame:
        """Generated rows in the shares of each row's day. Lock held."""
        acts = self._actions.get((exchange, ticker))
        if not acts or frame.height == 0:
            return frame
        num: pl.Expr = pl.lit(1, pl.Int64)
        den: pl.Expr = pl.lit(1, pl.Int64)
        cumulative = Fraction(1)
        for action in acts:  # ascending: a later ex-date overrides with its larger product
            cumulative *= Fraction(action.ratio)
            at = bisect.bisect_left(self._days, action.ex_date)
            num = pl.when(pl.col("di") >= at).then(cumulative.numerator).otherwise(num)
            den = pl.when(pl.col("di") >= at).then(cumulative.denominator).otherwise(den)
        frame = frame.with_columns(_num=num.cast(pl.Int64), _den=den.cast(pl.Int64))
        n, d = pl.col("_num"), pl.col("_den")

        def price(col: str) -> pl.Expr:  # price * den / num, half up, at least one tick
            p = pl.col(col).cast(pl.Int64)
            return ((p * d * 2 + n) // (n * 2)).clip(lower_bound=1).cast(pl.Int32)

        return frame.with_columns(
            *(price(c) for c in ("open", "high", "low", "close")),
            volume=(pl.col("volume") * n * 2 + d) // (d * 2),
        ).drop("_num", "_den")

    # --------------------------------------------------------------- mutation

    def advance(self, days: int = 1) -> list[date]:
        """Move ``end`` forward by ``days`` trading days; active ETFs gain rows. Returns them."""
        if days < 1:
            raise ValueError("days must be >= 1")
        with self._lock:
            new: list[date] = []
            day = self._end
            while len(new) < days:
                day += timedelta(days=1)
                if is_trading_day(day):
                    new.append(day)
            self._end = day
            self._extend_calendar(new)
            return new

    def add_etf(
        self, exchange: str, ticker: str, name: str, list_date: date | str | None = None
    ) -> Etf:
        """List a new ETF. Without ``list_date`` it lists on the next trading day after ``end``,
        so it has no rows until ``advance``."""
        with self._lock:
            _check_exchange(exchange)
            if not (len(ticker) == 6 and ticker.isdigit()):
                raise ValueError("ticker must be six digits")
            listed = _as_date(list_date)
            if listed is None:
                listed = self._end + timedelta(days=1)
                while not is_trading_day(listed):
                    listed += timedelta(days=1)
            etf = self._new_etf(exchange, ticker, name, listed)
            self._etfs[exchange][ticker] = etf
            self._histories.pop((exchange, ticker), None)
            return etf

    def remove_etf(self, exchange: str, ticker: str) -> None:
        """Drop an ETF: it vanishes from the list and its daily answers become []."""
        with self._lock:
            _check_exchange(exchange)
            del self._etfs[exchange][ticker]
            self._histories.pop((exchange, ticker), None)

    def rename(self, exchange: str, ticker: str, new_name: str) -> None:
        with self._lock:
            self._etfs[exchange][ticker] = replace(self.etf(exchange, ticker), name=new_name)

    def set_active(self, exchange: str, ticker: str, active: bool) -> None:
        """Deactivating delists the ETF at ``end`` (no later rows); activating clears
        the delist date, so rows resume (including any days in between)."""
        with self._lock:
            etf = self.etf(exchange, ticker)
            if active:
                etf = replace(etf, is_active=True, delist_date=None)
            else:
                etf = replace(etf, is_active=False, delist_date=etf.delist_date or self._end)
            self._etfs[exchange][ticker] = etf

    def set_rows(self, exchange: str, ticker: str, rows: Iterable[dict]) -> None:
        """Serve exactly these raw dicts as the ticker's daily rows (any JSON-able values;
        a ``Decimal`` is sent as the bare JSON number of its digits)."""
        with self._lock:
            _check_exchange(exchange)
            self._row_overrides[(exchange, ticker)] = [dict(r) for r in rows]

    def clear_rows(self, exchange: str, ticker: str) -> None:
        """Undo ``set_rows``: back to generated rows."""
        with self._lock:
            self._row_overrides.pop((exchange, ticker), None)

    def extra_list_rows(self, exchange: str, rows: Iterable[dict]) -> None:
        """Append raw rows to the ``/list`` answer of ``exchange`` (kept until cleared)."""
        with self._lock:
            _check_exchange(exchange)
            self._extra_list[exchange].extend(dict(r) for r in rows)

    def clear_extra_list_rows(self, exchange: str | None = None) -> None:
        with self._lock:
            for ex in EXCHANGES if exchange is None else (exchange,):
                self._extra_list[ex].clear()

    def __repr__(self) -> str:
        return (
            f"Universe(n_etfs={self.n_etfs}, start={self.start}, end={self._end}, seed={self.seed}, "
            f"actions={len(self.actions)})"
        )


_EXACT = "\x00exact:"
_EXACT_RE = re.compile(r'"\\u0000exact:([^"]*)"')


def _exact(value: Any) -> str:
    if isinstance(value, Decimal):
        return _EXACT + str(value)
    raise TypeError(f"{type(value).__name__} is not JSON serialisable")


def dumps_exact(value: Any) -> str:
    """Compact JSON in which a ``Decimal`` is written as the bare JSON number of its
    own digits (``Decimal("2.34499999999999997")`` -> ``2.34499999999999997``):
    how a test serves numbers that no float can hold."""
    text = json.dumps(value, ensure_ascii=False, separators=(",", ":"), default=_exact)
    return _EXACT_RE.sub(lambda m: m[1], text)


def _raw_in_range(row: dict, lo: date | None, hi: date | None) -> bool:
    value = row.get("date")
    if not isinstance(value, str) or len(value) != 10:
        return True
    try:
        day = date.fromisoformat(value)
    except ValueError:
        return True
    return (lo is None or day >= lo) and (hi is None or day <= hi)


def _render(frame: pl.DataFrame, ticker: str, day_text: pl.Series) -> str:
    head = "{" + f'"ticker":{json.dumps(ticker)},"date":"'
    frame = frame.with_columns(date=day_text.gather(frame["di"]))
    body = frame.select(
        pl.concat_str(
            pl.lit(head),
            pl.col("date"),
            pl.lit('","open":'),
            _decimal("open"),
            pl.lit(',"high":'),
            _decimal("high"),
            pl.lit(',"low":'),
            _decimal("low"),
            pl.lit(',"close":'),
            _decimal("close"),
            pl.lit(',"volume":'),
            pl.col("volume").cast(pl.String),
            pl.lit("}"),
        ).str.join(",")
    ).item()
    return "[" + body + "]"
