"""The coverage picture of ``etl check --picture FILE``: one self-contained HTML file.

Per exchange, one column per month: the ETFs expected (listed that month, by
stock_info's list_date / delist_date, or else the span of their stored rows) as
a grey bar, the ETFs present (at least one stored row that month) as a blue bar
over it, and a red mark under each month in which ETFs have holes, darker the
more ETFs. Every month carries its numbers in a tooltip (``<title>``) and in
``data-`` attributes. Inline SVG and CSS only: no script, no font, no link, so
it renders offline in any browser.
"""

from __future__ import annotations

from collections import defaultdict
from datetime import date
from html import escape
from pathlib import Path

import polars as pl

from etl.calendar import trading_days
from etl.check import CheckReport, Hole
from etl.symbols import MARKETS

BAR = 4  # px per month at least; wider for a short history, to about 960 px
HEIGHT = 120  # px of the tallest bar
MARK = 8  # px of the hole marks under the bars


def _month(day: date) -> date:
    return day.replace(day=1)


def _months(first: date, last: date) -> list[date]:
    out, m = [], _month(first)
    while m <= last:
        out.append(m)
        m = date(m.year + m.month // 12, m.month % 12 + 1, 1)
    return out


def coverage(report: CheckReport) -> dict[str, list[tuple[date, int, int, int]]]:
    """Per exchange: (month, ETFs expected, ETFs present, ETFs with holes), every month
    from the first listing to the latest stored day."""
    spans = report.spans.filter(pl.col("exchange").is_not_null())
    if spans.is_empty():
        return {}
    latest = {MARKETS[e]: d for e, d in report.latest.items() if d is not None}
    gaps: dict[str, list[Hole]] = defaultdict(list)
    for hole in report.raw_holes:
        gaps[hole.symbol].append(hole)
    expected: dict[tuple[str, date], int] = defaultdict(int)
    present: dict[tuple[str, date], int] = defaultdict(int)
    holed: dict[tuple[str, date], set[str]] = defaultdict(set)
    bounds: dict[str, list[date]] = defaultdict(list)
    ranges: list[tuple[str, str, date, date, date | None, date | None]] = []
    for row in spans.iter_rows(named=True):
        first, last = row["first_day"], row["last_day"]
        start = row["list_date"] or first
        if row["delist_date"] is not None:
            end = row["delist_date"]
        elif row["is_active"] == "Y":
            end = latest.get(row["market_code"]) or last
        else:
            end = last
        if start is None or end is None or end < start:
            continue
        bounds[row["exchange"]] += [start, end]
        ranges.append((row["exchange"], row["symbol"], start, end, first, last))
    everything = [d for days in bounds.values() for d in days]
    # Each month's first and last (possible) trading day: a month is empty for an ETF
    # when one run of missing days covers both.
    edges: dict[tuple[str, date], tuple[date, date]] = {}
    for exchange in bounds:
        traded = report.traded_unknown.get(exchange, ())
        for day in trading_days(min(everything), max(everything), traded):
            k = (exchange, _month(day))
            edges[k] = (edges[k][0], day) if k in edges else (day, day)
    for exchange, symbol, start, end, first, last in ranges:
        for m in _months(start, end):
            expected[(exchange, m)] += 1
        if first is None or last is None:
            continue
        for m in _months(first, last):
            lo, hi = edges.get((exchange, m), (m, m))
            if not any(h.start <= lo and h.end >= hi for h in gaps[symbol]):
                present[(exchange, m)] += 1
    exchange_of = dict(zip(spans["symbol"], spans["exchange"], strict=True))
    for hole in report.holes:
        for m in _months(hole.start, hole.end):
            holed[(exchange_of[hole.symbol], m)].add(hole.symbol)
    return {
        exchange: [
            (m, expected[(exchange, m)], present[(exchange, m)], len(holed[(exchange, m)]))
            for m in _months(min(days), max(days))
        ]
        for exchange, days in sorted(bounds.items())
    }


def coverage_html(report: CheckReport) -> str:
    """The whole HTML document."""
    data = coverage(report)
    c = report.counts
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        "<title>etf-sync: stored coverage per exchange and month</title>",
        "<style>body{font:13px sans-serif;margin:16px;color:#222}"
        "svg{display:block;margin:4px 0 18px}.exp{fill:#d0d0d0}.pre{fill:#3b6fb6}"
        ".hole{fill:#c62828}.axis{font:10px sans-serif;fill:#555}"
        "td,th{padding:1px 8px;text-align:right}</style></head><body>",
        '<h1 style="font-size:16px">Stored coverage per exchange and month</h1>',
        f"<p>{c['etfs']:,} ETFs checked; {c['holes']:,} holes ({c['hole_days']:,} trading "
        f"days), {c['suspect_rows']:,} suspect rows, {c['unrecorded_corporate_actions']:,} "
        "unrecorded corporate actions. Grey: ETFs expected (listed that month); blue: ETFs "
        "with at least one stored row that month; red marks: months in which ETFs have "
        "holes (darker: more ETFs). Hover a month for its numbers.</p>",
    ]
    for exchange, months in data.items():
        parts.append(_svg(exchange, months))
        parts.append(_table(exchange, months))
    parts.append("</body></html>")
    return "\n".join(parts) + "\n"


def _svg(exchange: str, months: list[tuple[date, int, int, int]]) -> str:
    top = max((e for _, e, _, _ in months), default=0) or 1
    most_holes = max((h for *_, h in months), default=0) or 1
    bar = max(BAR, min(24, 960 // max(1, len(months))))
    width = bar * len(months) + 40
    base = HEIGHT + 14
    out = [
        f'<h2 style="font-size:14px">{escape(exchange)}: up to {top:,} ETFs</h2>',
        f'<svg width="{width}" height="{base + MARK + 18}" role="img" '
        f'aria-label="{escape(exchange)} coverage per month">',
    ]
    for i, (m, expected, present, holes) in enumerate(months):
        x = 30 + i * bar
        he = round(HEIGHT * expected / top)
        hp = round(HEIGHT * present / top)
        label = f"{m:%Y-%m} {exchange}: {expected} expected, {present} present, {holes} with holes"
        out.append(
            f'<g data-month="{m:%Y-%m}" data-expected="{expected}" data-present="{present}" '
            f'data-holes="{holes}"><title>{escape(label)}</title>'
            f'<rect class="exp" x="{x}" y="{base - he}" width="{bar}" height="{he}"/>'
            f'<rect class="pre" x="{x}" y="{base - hp}" width="{bar - 1}" height="{hp}"/>'
            + (
                f'<rect class="hole" x="{x}" y="{base + 2}" width="{bar}" height="{MARK}" '
                f'fill-opacity="{0.3 + 0.7 * holes / most_holes:.2f}"/>'
                if holes
                else ""
            )
            + "</g>"
        )
        if m.month == 1 or i == 0:
            out.append(f'<text class="axis" x="{x}" y="{base + MARK + 14}">{m.year}</text>')
    out.append(f'<text class="axis" x="0" y="{base - HEIGHT + 8}">{top:,}</text>')
    out.append(f'<text class="axis" x="0" y="{base}">0</text>')
    out.append("</svg>")
    return "".join(out)


def _table(exchange: str, months: list[tuple[date, int, int, int]]) -> str:
    """The months where present falls short of expected or ETFs have holes (at most 24)."""
    short = [r for r in months if r[2] < r[1] or r[3]]
    if not short:
        return f"<p>{escape(exchange)}: every expected ETF has rows in every month, no holes.</p>"
    rows = "".join(
        f"<tr><td>{m:%Y-%m}</td><td>{e:,}</td><td>{p:,}</td><td>{h:,}</td></tr>"
        for m, e, p, h in short[-24:]
    )
    more = f" (the latest 24 of {len(short)})" if len(short) > 24 else ""
    return (
        f"<details><summary>{escape(exchange)}: months short of ETFs or with holes{more}"
        "</summary><table><tr><th>month</th><th>expected</th><th>present</th>"
        f"<th>with holes</th></tr>{rows}</table></details>"
    )


def write_coverage(report: CheckReport, path: Path) -> None:
    """Write the picture to ``path`` (its directory created where missing)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(coverage_html(report), encoding="utf-8")
