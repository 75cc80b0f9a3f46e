#!/usr/bin/env python3
"""Time the decode of API answers: 1,000,000 synthetic daily rows in 400 answers.

    .venv/bin/python scripts/bench_decode.py

Measures the two places every answer is decoded: the client's check of each
answer as it arrives (``api._envelope``) and the transform of a batch
(``transform.daily_rows``), by way of pyarrow and by the text path alone, on
the whole batch and in the slices normalize cuts a part into. Prints the best
wall and CPU seconds of 3 runs.
"""

from __future__ import annotations

import time
from datetime import UTC, date, datetime

import polars as pl

from etl import api, transform
from etl.normalize import slices
from etl.schema import PLAN_SCHEMA, RAW_SCHEMA

ANSWERS, PER_ANSWER = 400, 2500


def _price(thousandths: pl.Expr) -> pl.Expr:
    whole = (thousandths // 1000).cast(pl.String)
    return whole + "." + (thousandths % 1000).cast(pl.String).str.zfill(3)


def answers() -> pl.DataFrame:
    i = pl.int_range(0, ANSWERS * PER_ANSWER, eager=True).alias("i")
    p = (i * 7919) % 9000 + 1000
    frame = pl.DataFrame({"i": i, "p": p}).with_columns(
        (pl.col("i") // PER_ANSWER).alias("a"),
        (500000 + pl.col("i") // PER_ANSWER * 100).cast(pl.String).alias("ticker"),
        (pl.lit(date(2005, 1, 3)) + pl.duration(days=pl.col("i") % PER_ANSWER))
        .dt.strftime("%Y-%m-%d")
        .alias("date"),
    )
    record = pl.concat_str(
        pl.lit('{"ticker":"'), "ticker", pl.lit('","date":"'), "date",
        pl.lit('","open":'), _price(pl.col("p")),
        pl.lit(',"high":'), _price(pl.col("p") + 20),
        pl.lit(',"low":'), _price(pl.col("p") - 20),
        pl.lit(',"close":'), _price(pl.col("p") + 5),
        pl.lit(',"volume":'), ((pl.col("i") * 104729) % 10_000_000).cast(pl.String),
        pl.lit("}"),
    )  # fmt: skip
    bodies = (
        frame.select("a", "ticker", record.alias("r"))
        .group_by("a", maintain_order=True)
        .agg(pl.col("ticker").first(), pl.col("r").str.join(","))
    )
    n = bodies.height
    return pl.DataFrame(
        {
            "endpoint": ["daily"] * n,
            "exchange": ["XSHG"] * n,
            "ticker": bodies["ticker"],
            "params": ["{}"] * n,
            "fetched_at": [datetime.now(UTC)] * n,
            "attempts": [1] * n,
            "http_status": [200] * n,
            "rows": [PER_ANSWER] * n,
            "error": [None] * n,
            "body": '{"msg":"操作成功","code":200,"data":[' + bodies["r"] + "]}",
        },
        schema=RAW_SCHEMA,
    )


def best(label: str, fn: object) -> None:
    runs = []
    for _ in range(3):
        wall, cpu = time.perf_counter(), time.process_time()
        fn()  # type: ignore[operator]
        runs.append((time.perf_counter() - wall, time.process_time() - cpu))
    wall, cpu = min(runs)
    print(f"{label:<44} wall {wall:5.2f} s   cpu {cpu:5.2f} s")


def main() -> None:
    raw = answers()
    plan = pl.DataFrame(
        {
            "symbol": "SH." + raw["ticker"],
            "stock_name": "ETF",
            "prev_date": None,
            "prev_close": None,
            "by_day": False,
        },
        schema=PLAN_SCHEMA,
    )
    mb = raw["body"].str.len_bytes().sum() / 1e6
    print(f"{ANSWERS * PER_ANSWER:,} rows in {ANSWERS} answers, {mb:.0f} MB of JSON")
    bodies = raw["body"].to_list()
    best("check every answer as it arrives", lambda: [api._envelope(b, "daily") for b in bodies])
    end = date(2030, 1, 1)
    best("transform (daily_rows)", lambda: transform.daily_rows(raw, plan, end))
    best("transform, text path alone", lambda: transform.daily_rows(raw, plan, end, arrow=False))
    cut = slices(raw)
    best(
        f"transform in {len(cut)} slices (as normalize)",
        lambda: [transform.daily_rows(s, plan, end) for s in cut],
    )
    best(
        f"transform in {len(cut)} slices, text path alone",
        lambda: [transform.daily_rows(s, plan, end, arrow=False) for s in cut],
    )


if __name__ == "__main__":
    main()
