"""The pure parts of honest outcomes: the status policy, the circuit breaker,
the classes of API answers, exact decimals and range checks on derived columns."""

from __future__ import annotations

import json
import threading
from datetime import UTC, date, datetime
from decimal import Decimal

import polars as pl
import pytest

from etl import transform
from etl.api import _envelope, classify, describe_body
from etl.breaker import Breaker
from etl.envelope import DAILY_FIELDS, envelope_dtype
from etl.outcome import Outcome, Policy, decide, no_lists_message
from etl.schema import PLAN_SCHEMA, RAW_SCHEMA
from etl.settings import Settings

# -- the outcome policy ---------------------------------------------------------------

POLICY = Policy(max_failed_share=0.10, reject_partial_share=0.0, reject_failed_share=0.5)


@pytest.mark.parametrize(
    ("figures", "status", "reasons"),
    [
        ({"units": 100, "rows_ok": 1000}, "ok", ()),
        ({"units": 100, "failed": 3, "rows_ok": 10}, "partial", ("3 of 100 symbols failed",)),
        (
            {"units": 100, "failed": 11},
            "failed",
            ("11 of 100 symbols failed, more than 10%",),
        ),
        ({"units": 4, "failed": 4}, "failed", ("all 4 symbols failed",)),
        ({"rows_ok": 997, "rows_rejected": 3}, "partial", ("3 of 1,000 rows rejected",)),
        (
            {"rows_ok": 400, "rows_rejected": 600},
            "failed",
            ("600 of 1,000 rows rejected, more than 50%",),
        ),
        ({"rows_rejected": 7}, "failed", ("all 7 rows were rejected",)),
        (
            {"units": 10, "failed": 1, "stopped": "5 requests in a row failed"},
            "failed",
            ("stopped fetching: 5 requests in a row failed", "1 of 10 symbols failed"),
        ),
        (
            {"degraded": ("the XSHE list looks truncated",)},
            "partial",
            ("the XSHE list looks truncated",),
        ),
    ],
)
def test_the_policy_decides_the_status_and_says_why(figures, status, reasons):
    assert decide(POLICY, **figures) == Outcome(status, reasons)


def test_the_failed_share_names_the_first_failed_units():
    names = [f"SH.51000{i}" for i in range(7)]
    assert decide(POLICY, units=30, failed=7, names=names).reasons == (
        "7 of 30 symbols failed (SH.510000, SH.510001, SH.510002, SH.510003, SH.510004 "
        "and 2 more), more than 10%",
    )
    assert decide(POLICY, units=30, failed=1, names=["SZ.159915"]) == Outcome(
        "partial", ("1 of 30 symbols failed (SZ.159915)",)
    )
    assert decide(POLICY, units=1, failed=1, names=["SZ.159915"]) == Outcome(
        "failed", ("all 1 symbols failed (SZ.159915)",)
    )


def test_the_reject_thresholds_come_from_the_settings_and_the_environment():
    settings = Settings.from_env(
        {"ETL_REJECT_PARTIAL_SHARE": "0.01", "ETL_REJECT_FAILED_SHARE": "0.2"}
    )
    policy = Policy.from_settings(settings)
    assert decide(policy, rows_ok=995, rows_rejected=5).status == "ok"  # 0.5% <= 1%
    assert decide(policy, rows_ok=950, rows_rejected=50).status == "partial"
    assert decide(policy, rows_ok=700, rows_rejected=300).status == "failed"
    defaults = Policy.from_settings(Settings.from_env({}))
    assert defaults == Policy(0.10, 0.0, 0.5)


# -- the circuit breaker ----------------------------------------------------------------


def test_the_breaker_opens_after_failures_in_a_row_and_stays_open():
    breaker = Breaker(consecutive=3, failed_share=0.9, min_requests=1000)
    assert not breaker.record(False, "HTTP 503") and not breaker.record(False)
    assert not breaker.record(True)  # a success resets the run of failures
    assert not breaker.record(False) and not breaker.record(False)
    assert breaker.record(False, "HTTP 503 (after 5 attempts)")
    assert breaker.reason == "3 requests in a row failed (last: HTTP 503 (after 5 attempts))"
    assert breaker.record(True) and breaker.open


def test_the_breaker_opens_on_the_failed_share_only_after_enough_requests():
    breaker = Breaker(consecutive=0, failed_share=0.5, min_requests=10)
    for _ in range(3):
        assert not breaker.record(False)  # 100% failed, but only 3 requests
    for i in range(6):
        assert not breaker.record(i % 2 == 0)
    # 10 requests, 7 failed: 70% > 50%
    assert breaker.record(False, "HTTP 404")
    assert breaker.reason == "7 of 10 requests failed, more than 50% (last: HTTP 404)"


def test_a_tripped_breaker_keeps_its_first_reason_across_threads():
    breaker = Breaker(consecutive=50)
    threads = [threading.Thread(target=breaker.record, args=(False,)) for _ in range(200)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert breaker.failures == 200 and breaker.reason == "50 requests in a row failed"
    breaker.trip("quota")
    assert breaker.reason == "50 requests in a row failed"


# -- the classes of answers ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("status", "code", "msg", "kind"),
    [
        (200, "200", "操作成功", "ok"),
        (200, "200", "操作成功, 今日剩余调用次数不足 100", "ok"),  # a good answer is good
        (429, None, "", "transient"),
        (503, None, "", "transient"),
        (502, "502", "bad gateway", "transient"),
        (408, None, "", "transient"),
        (200, "500", "系统繁忙", "transient"),
        (200, "1001", "未知错误", "transient"),  # unknown wording: retried, never fatal
        (200, "429", "请求过于频繁", "transient"),
        (200, "500", "rate limit exceeded, slow down", "transient"),
        (404, None, "", "client"),  # an HTML 404 page
        (404, "404", "接口不存在", "client"),
        (405, None, "", "client"),
        (200, "400", "参数错误", "client"),
        (200, "404", "not found", "client"),
        (401, None, "", "auth"),
        (403, None, "", "auth"),
        (200, "401", "whatever", "auth"),
        (200, "403", "", "auth"),
        (200, "500", "token无效或已过期", "auth"),
        (200, "1002", "Invalid token", "auth"),
        (200, "1002", "your token has expired", "auth"),
        (200, "1003", "token 今日调用次数已用完", "quota"),  # names the token, is no bad token
        (200, "403", "token今日调用次数已用完", "quota"),
        (429, "429", "quota exceeded", "quota"),
        (200, "500", "Daily request limit reached", "quota"),
        (200, "500", "无权限访问: 请稍后再试", "transient"),  # 权限 alone is no verdict
        (200, "500", "token service busy", "transient"),  # "token" alone neither
    ],
)
def test_answers_are_classified_by_status_code_then_wording(status, code, msg, kind):
    assert classify(status, code, msg) == kind


@pytest.mark.parametrize(
    ("body", "said"),
    [
        ("", "an empty body"),
        (" \r\n", "an empty body"),
        ("{}", "JSON that is not the API envelope: {}"),
        ("[]", "JSON that is not the API envelope: []"),
        ("null", "JSON that is not the API envelope: null"),
        ('{"code": null, "data": []}', 'JSON that is not the API envelope: {"code": null, "data": []}'),
        ("Service Unavailable", "a body that is not JSON: 'Service Unavailable'"),
        ("<html><head><title>502 Bad\n Gateway</title></head></html>", "an HTML page (502 Bad Gateway)"),
        ("<html><body><h1>Oops <b>down</b></h1></body></html>", "an HTML page (Oops down)"),
        ("<!DOCTYPE html><p>nothing named</p>", "an HTML page"),
        ('{"msg":"操作成功","code":200,"data":[{"tic', """a body that is not JSON: '{"msg":"操作成功","code":200,"data":[{"tic'"""),
        ("x" * 70, f"a body that is not JSON: '{'x' * 60}…'"),
    ],
)  # fmt: skip
def test_a_body_that_is_no_envelope_is_described_in_a_few_words(body, said):
    assert describe_body(body) == said
    assert _envelope(body, "daily")[0] is None  # no code: never taken for an answer


@pytest.mark.parametrize(
    "close", ["2.345", "2.34499999999999997", "123456789012345678901234567890"]
)
def test_an_answer_with_long_numbers_is_counted_like_any_other(close):
    # Numbers past f64's 15 digits take the quoting pass; the envelope must not notice.
    record = (
        '{"ticker":"510300","date":"2024-02-0%d","open":2.3,"high":2.4,"low":2.2,'
        f'"close":{close},"volume":100}}'
    )
    body = f'{{"msg":"ok","code":200,"data":[{record % 1},{record % 2}]}}'
    assert _envelope(body, "daily") == ("200", "ok", 2)


def test_no_list_blames_the_token_only_when_a_server_answered():
    unreachable = {
        "XSHG": {"status": "failed", "error": "cannot connect to h:1: connection refused (after 3 attempts)"},
        "XSHE": {"status": "failed", "error": "cannot resolve host h (not retried)"},
    }  # fmt: skip
    assert no_lists_message(unreachable, "http://u:pw@h:1/api") == (
        "no ETF list could be fetched (XSHG: cannot connect to h:1: connection refused "
        "(after 3 attempts); XSHE: cannot resolve host h (not retried)). Nothing was changed "
        "and no prices were asked for. Check TSANGHI_BASE_URL (now http://***@h:1/api) and "
        "the network: no server answered there"
    )
    answered = {**unreachable, "XSHE": {"status": "failed", "error": "HTTP 503 with an empty body"}}
    assert no_lists_message(answered, "http://h:1/api").endswith(
        "if both are right, the API is down or refusing this token: try again later"
    )


# -- exact decimals from the wire ---------------------------------------------------------


def _raw(*bodies: str, endpoint: str = "daily", ticker: str = "510050") -> pl.DataFrame:
    n = len(bodies)
    return pl.DataFrame(
        {
            "endpoint": [endpoint] * n,
            "exchange": ["XSHG"] * n,
            "ticker": [ticker] * n,
            "params": ["{}"] * n,
            "fetched_at": [datetime.now(UTC)] * n,
            "attempts": [1] * n,
            "http_status": [200] * n,
            "rows": [1] * n,
            "error": [None] * n,
            "body": list(bodies),
        },
        schema=RAW_SCHEMA,
    )


def _plan(symbols=("SH.510050",), prev_close=None) -> pl.DataFrame:
    return pl.DataFrame(
        {
            "symbol": list(symbols),
            "stock_name": ["ETF"] * len(symbols),
            "prev_date": [datetime(2000, 1, 3) if prev_close else None] * len(symbols),
            "prev_close": [prev_close] * len(symbols),
            "by_day": [False] * len(symbols),
        },
        schema=PLAN_SCHEMA,
    )


def _body(rows: list[str]) -> str:
    return '{"msg": "操作成功", "code": 200, "data": [' + ",".join(rows) + "]}"


def test_json_numbers_are_decoded_from_their_own_digits_never_through_f64():
    body = _body(
        [
            '{"ticker":"510050","date":"2024-01-02","open": 2.34499999999999997,'
            '"high":1.00004999999,"low" :-0.5e-3,"close":12,"volume":9007199254740993}',
            # an escaped quote and a colon inside a string are not a key, nor is
            # a string value that starts with a colon and a digit
            '{"ticker":"51\\":1,","date":":2","open":1,"high":1,"low":1,"close":1,"volume":1}',
        ]
    )
    decoded = transform.explode_bodies(_raw(body), DAILY_FIELDS)
    assert decoded.select(DAILY_FIELDS).rows() == [
        ("510050", "2024-01-02", "2.34499999999999997", "1.00004999999", "-0.5e-3", "12", "9007199254740993"),
        ('51":1,', ":2", "1", "1", "1", "1", "1"),
    ]  # fmt: skip
    # What polars alone would have made of them:
    alone = pl.Series([body]).str.json_decode(envelope_dtype(DAILY_FIELDS))
    assert alone.struct.field("data").list.first().struct.field("open")[0] == "2.3449999999999998"


@pytest.mark.parametrize(
    ("text", "stored"),
    [
        ("2.34499999999999997", "2.3450"),
        ("1.00004999999", "1.0000"),  # the Decimal(38,10) cast alone rounds it up to 1.0001
        ("1.00004999999999999", "1.0000"),  # f64 makes it 1.00005, and so 1.0001
        ("1.00005", "1.0001"),
        ("2.00004999999999999999999", "2.0000"),
        ("1.23456789012345e2", "123.4568"),
        ("7", "7.0000"),
    ],
)
def test_prices_round_from_the_text_as_postgresql_round_does(text, stored):
    row = (
        f'{{"ticker":"510050","date":"2024-01-02","open":{text},"high":{text},'
        f'"low":{text},"close":{text},"volume":100}}'
    )
    result = transform.daily_rows(_raw(_body([row])), _plan(), date(2024, 12, 31))
    assert result.rejects.is_empty()
    assert str(result.rows["close_price"][0]) == stored
    assert Decimal(text).quantize(Decimal("0.0001"), "ROUND_HALF_UP") == Decimal(stored)


# -- range checks on derived columns -------------------------------------------------------


def test_a_turnover_beyond_numeric_20_2_is_a_reject_with_its_reason_and_never_null():
    rows = [
        '{"ticker":"510050","date":"2024-01-02","open":100,"high":100,"low":100,"close":100,'
        '"volume":9000000000000000000}',
        '{"ticker":"510050","date":"2024-01-03","open":1,"high":1,"low":1,"close":1,"volume":5}',
    ]
    result = transform.daily_rows(_raw(_body(rows)), _plan(), date(2024, 12, 31))
    assert result.rejects["reason"].to_list() == [
        "turnover (close × volume) does not fit NUMERIC(20,2)"
    ]
    assert json.loads(result.rejects["row"][0])["volume"] == "9000000000000000000"
    assert result.rows["trade_date"].dt.date().to_list() == [date(2024, 1, 3)]
    assert result.rows["turnover"].to_list() == [Decimal("5.00")]
    # The biggest turnover that fits still loads.
    edge = (
        '{"ticker":"510050","date":"2024-01-04","open":999999.9999,"high":999999.9999,'
        '"low":999999.9999,"close":999999.9999,"volume":1000000000000}'
    )
    fits = transform.daily_rows(_raw(_body([edge])), _plan(), date(2024, 12, 31))
    assert fits.rejects.is_empty() and str(fits.rows["turnover"][0]) == "999999999900000000.00"


def test_a_change_beyond_numeric_8_4_is_stored_as_null_and_counted():
    rows = [
        '{"ticker":"510050","date":"2024-01-02","open":100,"high":100,"low":100,"close":100,'
        '"volume":1}',
        '{"ticker":"510050","date":"2024-01-03","open":99,"high":99,"low":99,"close":99,"volume":1}',
    ]
    result = transform.daily_rows(
        _raw(_body(rows)), _plan(prev_close=Decimal("0.0010")), date(2024, 12, 31)
    )
    assert result.rejects.is_empty() and result.pct_out_of_range == 1
    assert result.rows["price_change"].to_list() == [Decimal("99.9990"), Decimal("-1.0000")]
    assert result.rows["price_change_pct"].to_list() == [None, Decimal("-1.0000")]
    assert result.rows["turnover"].null_count() == 0
