"""The pyarrow decode of daily answers against the text path: the same typed rows
and the same rejects, byte for byte, on ordinary and on hostile answers."""

from __future__ import annotations

import io
import random
from datetime import date, datetime
from decimal import Decimal

import polars as pl
import pytest

from etl import decode
from etl import transform as T
from etl.schema import PLAN_SCHEMA, RAW_SCHEMA, TYPED_SCHEMA

END = date(2024, 12, 31)
TICKERS = ["510050", "510300", "159915"]
PLAN = pl.DataFrame(
    {
        "symbol": ["SH.510050", "SH.510300", "SZ.159915"],
        "stock_name": ["ETF 50", "ETF 300", "ETF 159915"],
        "prev_date": [datetime(2024, 1, 1), None, datetime(2024, 1, 1)],
        "prev_close": ["2.3", None, None],
        "by_day": [False, False, True],
    },
    schema={**PLAN_SCHEMA, "prev_close": pl.String},
).cast(PLAN_SCHEMA)


def answer(
    body: str, ticker: str | None = "510050", endpoint: str = "daily", exchange: str = "XSHG"
) -> dict:
    return {
        "endpoint": endpoint,
        "exchange": "XSHE" if ticker and ticker.startswith("159") else exchange,
        "ticker": ticker,
        "params": "{}",
        "fetched_at": datetime(2024, 1, 1),
        "attempts": 1,
        "http_status": 200,
        "rows": 1,
        "error": None,
        "body": body,
    }


def frame(*answers: dict) -> pl.DataFrame:
    return pl.DataFrame(list(answers), schema=RAW_SCHEMA)


def records(*rows: str) -> str:
    """An envelope around record texts, written as given (numbers as their own digits)."""
    return '{"msg":"操作成功","code":200,"data":[' + ",".join(rows) + "]}"


def rec(d: str, close: str, open_: str | None = None, volume: str = "100", t: str = "510050"):
    """A record with prices as given; high and low bound open and close where they
    are numbers, and equal close where it is not."""
    o, hi, lo = open_ or close, close, close
    try:
        hi, lo = max(o, close, key=Decimal), min(o, close, key=Decimal)
    except ArithmeticError:
        pass
    return (
        f'{{"ticker":"{t}","date":"{d}","open":{o},"high":{hi},"low":{lo},"close":{close},'
        f'"volume":{volume}}}'
    )


def good(n: int = 3, t: str = "510050", close: str = "2.345") -> str:
    return records(*[rec(f"2024-02-{i + 1:02d}", close, t=t) for i in range(n)])


def parquet(df: pl.DataFrame) -> bytes:
    out = io.BytesIO()
    df.write_parquet(out)
    return out.getvalue()


def both(raw: pl.DataFrame) -> tuple[T.Result, T.Result]:
    """daily_rows by way of pyarrow and by the text path alone; equal to the byte."""
    fast, text = T.daily_rows(raw, PLAN, END), T.daily_rows(raw, PLAN, END, arrow=False)
    return same(fast, text)


def same(fast: T.Result, text: T.Result) -> tuple[T.Result, T.Result]:
    assert fast.rows.schema == text.rows.schema == pl.Schema(TYPED_SCHEMA)
    assert parquet(fast.rows) == parquet(text.rows)
    assert parquet(fast.rejects) == parquet(text.rejects)
    assert fast.pct_out_of_range == text.pct_out_of_range
    return fast, text


def read(raw: pl.DataFrame) -> pl.DataFrame | None:
    return decode.records(raw, T.DAILY_TEXTS, T.DAILY_NUMBERS, T.DECODED)


def test_ordinary_answers_are_read_by_pyarrow_and_type_as_the_text_path():
    raw = frame(
        answer(good(5)),
        answer(good(4, t="510300", close="10.5"), ticker="510300"),
        answer(records(rec("2024-02-01", "1.0", t="159915")), None, "latest", "XSHE"),
    )
    assert read(raw) is not None  # the fast path really ran
    fast, _ = both(raw)
    assert fast.rows.height == 10 and fast.rejects.is_empty()
    assert fast.rows["close_price"].to_list()[:2] == [Decimal("2.3450")] * 2


# Each answer is read by pyarrow, and its values are what the text path makes of them.
READABLE = {
    "null prices": records(
        '{"ticker":"510050","date":"2024-02-01","open":null,"high":null,"low":null,'
        '"close":2.5,"volume":7}'
    ),
    "optional fields missing": records(
        '{"ticker":"510050","date":"2024-02-01","close":2.5,"volume":7}'
    ),
    "ten decimals, halves up": records(
        rec("2024-02-01", "2.3444500000"),
        rec("2024-02-02", "2.3445499999"),
        rec("2024-02-05", "2.0000500000"),
    ),
    "sixteen digits, quoted by the text path": records(rec("2024-02-01", "123456.1234567890")),
    "a huge volume that fits decimal128": records(
        rec("2024-02-01", "1.5", volume="90000000000000000")
    ),
    "no data": '{"msg":"操作成功","code":200,"data":null}',
    "empty data": '{"msg":"操作成功","code":200,"data":[]}',
    "a null record": '{"msg":"ok","code":200,"data":[null,' + rec("2024-02-01", "2") + "]}",
    "extra fields anywhere": '{"msg":"ok","code":200,"x":[1,{"y":null}],"data":['
    '{"ticker":"510050","date":"2024-02-01","close":2,"volume":1,"amount":{"a":[1.5]}}]}',
    "blanks between tokens": '{ "msg" : "ok" , "data" : [ { "ticker" : "510050" , "date" : '
    '"2024-02-01" , "close" : 2.25 , "volume" : 3 } ] }',
    "identical repeats": records(rec("2024-02-01", "2"), rec("2024-02-01", "2")),
    "negative zero open, close above": records(
        '{"ticker":"510050","date":"2024-02-01","close":1,"volume":1,"open":null,"high":-0.0,'
        '"low":null}'
    ),
}


@pytest.mark.parametrize("body", READABLE.values(), ids=READABLE.keys())
def test_readable_answers_give_the_same_rows(body):
    raw = frame(answer(body), answer(good(2, t="510300"), ticker="510300"))
    assert read(raw) is not None
    both(raw)


# Each answer makes pyarrow decline (or is kept from it), so the text path reads it.
DECLINED = {
    "17 decimals": rec("2024-02-01", "2.34499999999999997"),
    "11 decimals": rec("2024-02-01", "1.00004999999"),
    "more digits than decimal128": rec("2024-02-01", "1.5", volume="1" + "0" * 30),
    "29 whole digits": rec("2024-02-01", "1.5", volume="1" + "0" * 28 + ".5"),
    "exponent": rec("2024-02-01", "2.5e0"),
    "long mantissa and exponent": rec("2024-02-01", "1.2345678901234567e3"),
    "string price": rec("2024-02-01", '"2.345"'),
    "string price with blanks": rec("2024-02-01", '" 2.345 "'),
    "string volume": rec("2024-02-01", "2", volume='"100"'),
    "boolean price": rec("2024-02-01", "true"),
    "numeric ticker": '{"ticker":510050,"date":"2024-02-01","close":2,"volume":1}',
    "numeric date": '{"ticker":"510050","date":20240201,"close":2,"volume":1}',
    "escaped ticker": '{"ticker":"51005\\u0030","date":"2024-02-01","close":2,"volume":1}',
    "duplicate key": '{"ticker":"510050","date":"2024-02-01","close":2,"close":3,"volume":1}',
}


@pytest.mark.parametrize("row", DECLINED.values(), ids=DECLINED.keys())
def test_answers_pyarrow_declines_take_the_text_path(row):
    raw = frame(answer(records(row, rec("2024-02-02", "2"))), answer(good(2, "510300"), "510300"))
    assert read(raw) is None
    both(raw)


@pytest.mark.parametrize(
    "bodies",
    [
        ['{"data":[]}\n'],
        ['{"data":[]}{"data":[]}'],
        [""],
        ["[1]"],
        ['{"data":{}}'],
        ['{"data":[]}{"data":[]}', ""],  # one line too many, one too few
    ],
    ids=["line break", "two objects", "empty", "not an object", "data not a list", "both"],
)
def test_answers_that_are_not_one_envelope_never_shift_the_others(bodies):
    """Line i of pyarrow's input must be answer i: an answer that is not exactly
    one JSON value makes it decline, whatever the text path then does with it."""
    odd = [answer(b, ticker="510300") for b in bodies]
    raw = frame(answer(good(2)), *odd, answer(good(2, "159915"), None, "latest", "XSHE"))
    assert read(raw) is None


def test_an_answer_the_text_path_cannot_decode_fails_the_same_way():
    raw = frame(answer(records(rec("2024-02-01", '{"v":1}'))), answer(good(2)))
    assert read(raw) is None
    errors = []
    for arrow in (True, False):
        with pytest.raises(pl.exceptions.ComputeError) as failed:
            T.daily_rows(raw, PLAN, END, arrow=arrow)
        errors.append(str(failed.value))
    assert errors[0] == errors[1]


# Rows rejected for a reason: pyarrow reads them, the rejects come from the text path.
REJECTED = {
    "odd date": rec("2024/02/01", "2"),
    "compact date": rec("20240201", "2"),
    "empty date": rec("", "2"),
    "no date": '{"ticker":"510050","close":2,"volume":1}',
    "null close": '{"ticker":"510050","date":"2024-02-01","close":null,"volume":1}',
    "no volume": '{"ticker":"510050","date":"2024-02-01","close":2}',
    "price beyond NUMERIC(10,4)": rec("2024-02-01", "1234567.5"),
    "fractional volume": rec("2024-02-01", "2", volume="1.5"),
    "negative volume": rec("2024-02-01", "2", volume="-1"),
    "volume beyond bigint": rec("2024-02-01", "2", volume="9223372036854775808"),
    "zero close": rec("2024-02-01", "0"),
    "open outside low..high": '{"ticker":"510050","date":"2024-02-01","open":3,"high":2.5,'
    '"low":1,"close":2,"volume":1}',
    "conflicting repeats": rec("2024-02-01", "2") + "," + rec("2024-02-01", "2.5"),
    "another ticker": rec("2024-02-01", "2", t="510051"),
    "after the end date": rec("2025-01-02", "2"),
}


@pytest.mark.parametrize("row", REJECTED.values(), ids=REJECTED.keys())
def test_rejected_rows_are_the_same_with_the_same_reasons(row):
    raw = frame(answer(records(row, rec("2024-02-03", "2"))), answer(good(2, "510300"), "510300"))
    assert read(raw) is not None
    fast, _ = both(raw)
    assert fast.rejects.height >= 1
    assert fast.rejects["row"].null_count() == 0  # the record as the text path decoded it
    kept = fast.rows.filter(pl.col("symbol") == "SH.510050")
    assert kept["trade_date"].cast(pl.Date).to_list()[-1] == date(2024, 2, 3)


def test_random_numbers_of_every_shape_give_the_same_rows():
    """Prices with 0 to 12 decimals and 1 to 17 significant digits, volumes up to
    19 digits: the fast path where it reads them, the same typed rows always."""
    rng = random.Random(9)

    def number(max_int: int, max_frac: int) -> str:
        whole = str(rng.randrange(10**max_int))
        frac = "".join(rng.choice("0123456789") for _ in range(rng.randrange(max_frac + 1)))
        return whole + ("." + frac if frac else "")

    answers, fast_reads = [], 0
    for a in range(60):
        t = TICKERS[a % 3]
        rows = []
        fractions = [0, 3, 4, 6, 10] + [12] * (a % 2)
        for i in range(40):
            p = [number(rng.choice([1, 2, 4, 6]), rng.choice(fractions)) for _ in "olhc"]
            o, lo, hi, c = sorted(p, key=Decimal)[1], min(p, key=Decimal), max(p, key=Decimal), p[2]
            rows.append(
                f'{{"ticker":"{t}","date":"{date.fromordinal(738000 + a * 40 + i)}","open":{o},'
                f'"high":{hi},"low":{lo},"close":{c},"volume":{number(rng.choice([3, 9, 19]), 0)}}}'
            )
        raw = frame(answer(records(*rows), ticker=t))
        fast_reads += read(raw) is not None
        answers.append(raw)
        both(raw)
    assert 10 < fast_reads < 60  # both paths were exercised
    both(pl.concat(answers))


def test_the_synthetic_universe_is_read_by_pyarrow():
    """The answers the test API (and make bench) serves take the fast path."""
    from fakeapi.server import envelope
    from fakeapi.universe import Universe

    universe = Universe(n_etfs=6, seed=3)
    etfs = universe.etfs("XSHG")[:3]
    raw = frame(
        *[
            answer(
                envelope(200, "操作成功", universe.daily_json("XSHG", e.ticker)).decode(), e.ticker
            )
            for e in etfs
        ]
    )
    records = read(raw)
    assert records is not None and records.height > 100
    both(raw)
