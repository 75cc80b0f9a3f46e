"""The Tsanghi-compatible test server, exercised over real HTTP on loopback."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
from datetime import date, timedelta
from decimal import ROUND_HALF_UP, Decimal
from pathlib import Path

import pytest
import requests
from fakeapi import FakeTsanghi, Universe, is_trading_day

TOKEN = "test-token"


@pytest.fixture
def universe():
    return Universe()


@pytest.fixture
def api(universe):
    with FakeTsanghi(universe, token=TOKEN) as server:
        yield server


@pytest.fixture
def http():
    with requests.Session() as session:
        yield session


def get(http, api, path, timeout=5, **params):
    params.setdefault("token", TOKEN)
    return http.get(f"{api.base_url}{path}", params=params, timeout=timeout)


def data(response):
    assert response.status_code == 200
    body = response.json()
    assert body["code"] == 200, body
    assert body["msg"] == "操作成功"
    return body["data"]


def compact(value):
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"))


# ------------------------------------------------------------------- list


def test_base_url_has_the_api_prefix(api):
    assert re.fullmatch(r"http://127\.0\.0\.1:\d+/api/fin", api.base_url)
    assert api.port > 0


def test_list_both_exchanges(api, http, universe):
    tickers = set()
    for exchange, pattern in (("XSHG", r"5[1-8]\d{4}"), ("XSHE", r"159\d{3}")):
        r = get(http, api, f"/etf/{exchange}/list")
        assert r.headers["Content-Type"] == "application/json; charset=utf-8"
        assert "操作成功".encode() in r.content  # UTF-8, not \u escapes
        rows = data(r)
        assert rows == universe.list_rows(exchange)
        assert rows and all(re.fullmatch(pattern, row["ticker"]) for row in rows)
        assert {row["exchange_code"] for row in rows} == {exchange}
        assert {(row["country_code"], row["currency_code"]) for row in rows} == {("CHN", "CNY")}
        assert {row["is_active"] for row in rows} <= {0, 1}
        tickers |= {row["ticker"] for row in rows}
    assert len(tickers) == universe.n_etfs == 40
    assert {"510050", "510300", "159915", "159919"} <= tickers
    names = [e.name for e in universe.etfs()]
    assert len(set(names)) == len(names)
    assert sum(1 for e in universe.etfs() if not e.is_active) >= 1


# ------------------------------------------------------------------ daily


def test_daily_range_and_order(api, http, universe):
    path, ticker = "/etf/XSHG/daily", "510300"
    rows = data(
        get(http, api, path, ticker=ticker, start_date="2024-03-01", end_date="2024-03-29", order=1)
    )
    assert rows == universe.daily_rows("XSHG", ticker, "2024-03-01", "2024-03-29")
    dates = [r["date"] for r in rows]
    assert dates == sorted(dates) and dates[0] == "2024-03-01" and dates[-1] == "2024-03-29"
    assert all(is_trading_day(date.fromisoformat(d)) for d in dates)

    desc = data(
        get(http, api, path, ticker=ticker, start_date="2024-03-01", end_date="2024-03-29", order=2)
    )
    assert desc == rows[::-1]

    shuffled = data(
        get(http, api, path, ticker=ticker, start_date="2024-03-01", end_date="2024-03-29")
    )
    again = data(
        get(http, api, path, ticker=ticker, start_date="2024-03-01", end_date="2024-03-29", order=0)
    )
    assert shuffled == again != rows
    assert sorted(shuffled, key=lambda r: r["date"]) == rows

    everything = data(get(http, api, path, ticker=ticker, order=1))
    assert everything == universe.daily_rows("XSHG", ticker)
    assert everything[0]["date"] == universe.trading_days()[0].isoformat()
    assert everything[-1]["date"] == universe.trading_days()[-1].isoformat()
    assert (
        data(get(http, api, path, ticker=ticker, start_date="2024-12-01", end_date="2024-11-01"))
        == []
    )


def test_same_seed_same_rows_other_seed_other_rows():
    a, b, c = Universe(seed=7), Universe(seed=7), Universe(seed=8)
    assert a.list_rows("XSHE") == b.list_rows("XSHE")
    for e in a.etfs():
        assert a.daily_rows(e.exchange, e.ticker) == b.daily_rows(e.exchange, e.ticker)
    assert a.daily_json("XSHG", "510050", order=0) == b.daily_json("XSHG", "510050", order=0)
    assert a.daily_rows("XSHG", "510050") != c.daily_rows("XSHG", "510050")


def test_prices_are_exact_three_decimal_numbers(api, http, universe):
    r = get(http, api, "/etf/XSHE/daily", ticker="159915", order=1)
    rows = universe.daily_rows("XSHE", "159915")
    assert r.text == '{"msg":"操作成功","code":200,"data":' + compact(rows) + "}"
    numbers = re.findall(r'"(?:open|high|low|close)":([^,}]+)', r.text)
    assert len(numbers) == 4 * len(rows)
    assert all(re.fullmatch(r"\d+\.\d{1,3}", n) for n in numbers)


def test_rows_are_consistent_ohlcv(universe):
    days = universe.trading_days()
    big_volume = suspended = 0
    for etf in universe.etfs():
        rows = universe.daily_rows(etf.exchange, etf.ticker)
        for r in rows:
            assert r["low"] <= min(r["open"], r["close"]) <= max(r["open"], r["close"]) <= r["high"]
            assert r["close"] > 0 and isinstance(r["volume"], int) and r["volume"] >= 0
        big_volume += any(r["volume"] > 2**31 for r in rows)
        first = max(etf.list_date, universe.start)
        last = etf.delist_date or universe.end
        span = [d for d in days if first <= d <= last]
        assert len(rows) <= len(span)
        suspended += len(rows) < len(span)
        if etf.delist_date:
            assert all(r["date"] <= etf.delist_date.isoformat() for r in rows)
    assert big_volume >= 1 and suspended >= 1


def test_trading_calendar():
    days = Universe().trading_days()
    assert all(d.weekday() < 5 for d in days)
    # The official calendar: New Year's Day and the National Day week closed, the
    # make-up working Sunday before it closed too (the exchanges never trade on weekends).
    assert date(2024, 1, 1) not in days and date(2024, 1, 2) in days
    assert date(2024, 10, 1) not in days and date(2024, 9, 29) not in days
    assert date(2024, 10, 8) in days
    assert 240 <= sum(1 for d in days if d.year == 2023) <= 245  # 242 sessions in 2023


# ----------------------------------------------------------------- latest


def test_latest_default_date_and_given_date(api, http, universe):
    rows = data(get(http, api, "/etf/XSHE/daily/latest"))
    last = universe.trading_days()[-1].isoformat()
    expected = [
        r[-1]
        for e in universe.etfs("XSHE")
        if (r := universe.daily_rows("XSHE", e.ticker)) and r[-1]["date"] == last
    ]
    assert rows == expected == universe.latest_rows("XSHE")
    assert {r["date"] for r in rows} == {last}

    day = "2023-06-01"
    rows = data(get(http, api, "/etf/XSHG/daily/latest", date=day))
    assert rows and {r["date"] for r in rows} == {day}
    for r in rows:
        assert universe.daily_rows("XSHG", r["ticker"], day, day) == [r]
    assert all(
        e.list_date > date(2023, 6, 1)
        for e in universe.etfs("XSHG")
        if e.ticker not in {r["ticker"] for r in rows} and e.is_active and not e.suspend_rate
    )


def test_latest_on_a_non_trading_day_is_empty(api, http):
    assert data(get(http, api, "/etf/XSHG/daily/latest", date="2024-10-01")) == []
    assert data(get(http, api, "/etf/XSHG/daily/latest", date="2024-06-08")) == []  # Saturday
    assert data(get(http, api, "/etf/XSHG/daily/latest", date="2031-01-06")) == []  # future


# ----------------------------------------------------------------- errors


@pytest.mark.parametrize("token", [None, "wrong"])
def test_bad_token_envelope(api, http, token):
    params = {} if token is None else {"token": token}
    r = http.get(f"{api.base_url}/etf/XSHG/list", params=params, timeout=5)
    assert r.status_code == 200
    assert r.json() == {
        "msg": "token无效或已过期 (invalid or expired token)",
        "code": 401,
        "data": None,
    }


def test_request_errors(api, http):
    r = get(http, api, "/etf/XSHX/list")
    assert r.status_code == 200 and r.json()["code"] == 400 and r.json()["data"] is None
    assert get(http, api, "/etf/XSHG/daily").json()["code"] == 400  # no ticker
    assert (
        get(http, api, "/etf/XSHG/daily", ticker="510050", start_date="20240102").json()["code"]
        == 400
    )
    assert get(http, api, "/etf/XSHG/daily", ticker="510050", order=3).json()["code"] == 400
    assert data(get(http, api, "/etf/XSHG/daily", ticker="999999")) == []  # unknown ticker
    assert get(http, api, "/etf/XSHG/nothing").status_code == 404


# ----------------------------------------------------------------- faults


def test_http_error_faults(api, http):
    api.add_fault("429", retry_after=3)
    r = get(http, api, "/etf/XSHG/list")
    assert r.status_code == 429 and r.headers["Retry-After"] == "3"
    for kind in ("502", "503"):
        api.add_fault(kind)
        r = get(http, api, "/etf/XSHG/list")
        assert r.status_code == int(kind) and r.headers["Content-Type"].startswith("text/html")
        assert r.text.startswith("<html><body><h1>" + kind)
    assert get(http, api, "/etf/XSHG/list").status_code == 200
    assert api.add_fault("502").hits == 0
    get(http, api, "/etf/XSHG/list")
    assert api.requests[-1].status == 502 and api.requests[-1].fault == "502"


def test_drop_fault_is_a_connection_error(api, http):
    api.add_fault("drop", endpoint="daily")
    with pytest.raises(requests.ConnectionError):
        get(http, api, "/etf/XSHG/daily", ticker="510050")
    assert data(get(http, api, "/etf/XSHG/daily", ticker="510050", start_date="2024-12-31"))
    assert api.requests[0].status is None and api.requests[0].fault == "drop"


def test_slow_fault_is_a_read_timeout(api, http):
    api.add_fault("slow", delay=1.0)
    started = time.monotonic()
    with pytest.raises(requests.ReadTimeout):
        get(http, api, "/etf/XSHG/list", timeout=0.2)
    assert time.monotonic() - started < 0.9
    assert data(get(http, api, "/etf/XSHG/list", timeout=0.5))


def test_truncated_malformed_envelope_and_auth_faults(api, http):
    api.add_fault("truncated")
    r = get(http, api, "/etf/XSHG/daily", ticker="510050")
    assert r.status_code == 200 and r.headers["Content-Type"].startswith("application/json")
    assert r.text.startswith('{"msg":"操作成功"')
    with pytest.raises(requests.JSONDecodeError):
        r.json()

    api.add_fault("truncated", full_length=True)
    with pytest.raises(requests.exceptions.ChunkedEncodingError):
        get(http, api, "/etf/XSHG/daily", ticker="510050")

    api.add_fault("malformed")
    r = get(http, api, "/etf/XSHG/list")
    assert r.status_code == 200 and r.text.startswith("<!DOCTYPE html>")
    with pytest.raises(requests.JSONDecodeError):
        r.json()

    api.add_fault("envelope")
    assert get(http, api, "/etf/XSHG/list").json() == {"msg": "系统繁忙", "code": 500, "data": None}
    api.add_fault("auth")
    assert get(http, api, "/etf/XSHG/list").json()["code"] == 401
    assert data(get(http, api, "/etf/XSHG/list"))


def test_fault_times_and_filters(api, http):
    api.add_fault("503", endpoint="daily", exchange="XSHE", ticker="159915", times=2)
    assert data(get(http, api, "/etf/XSHE/daily", ticker="159919", start_date="2024-12-31"))
    assert data(get(http, api, "/etf/XSHE/daily/latest"))
    assert get(http, api, "/etf/XSHE/daily", ticker="159915").status_code == 503
    assert get(http, api, "/etf/XSHE/daily", ticker="159915").status_code == 503
    assert get(http, api, "/etf/XSHE/daily", ticker="159915").status_code == 200
    assert api.faults == []

    api.add_fault("envelope", endpoint="list", times=None)
    for _ in range(3):
        assert get(http, api, "/etf/XSHG/list").json()["code"] == 500
    api.clear_faults()
    assert data(get(http, api, "/etf/XSHG/list"))
    with pytest.raises(ValueError):
        api.add_fault("418")


def test_latency_is_added_to_every_answer(api, http):
    get(http, api, "/etf/XSHG/list")
    api.latency_ms = 150
    started = time.monotonic()
    get(http, api, "/etf/XSHG/list", token="wrong")
    assert time.monotonic() - started >= 0.15


# --------------------------------------------------------------- mutations


def test_advance_adds_rows_for_active_etfs(api, http, universe):
    before = universe.end
    inactive = next(e for e in universe.etfs() if not e.is_active)
    inactive_rows = universe.daily_rows(inactive.exchange, inactive.ticker)
    old = data(get(http, api, "/etf/XSHG/daily", ticker="510050", order=1))
    new_days = universe.advance(2)
    assert [d.isoformat() for d in new_days] == ["2025-01-02", "2025-01-03"]  # Jan 1 closed
    assert universe.end == new_days[-1] > before
    rows = data(get(http, api, "/etf/XSHG/daily", ticker="510050", order=1))
    assert rows[:-2] == old and [r["date"] for r in rows[-2:]] == ["2025-01-02", "2025-01-03"]
    latest = data(get(http, api, "/etf/XSHG/daily/latest"))
    assert {r["date"] for r in latest} == {"2025-01-03"}
    assert universe.daily_rows(inactive.exchange, inactive.ticker) == inactive_rows

    fresh = Universe()
    fresh.advance(2)
    assert fresh.daily_rows("XSHG", "510050") == rows


def test_an_answer_encoded_ahead_is_served_until_forgotten(api, http, universe):
    etf = universe.etfs("XSHG")[0]
    params = {"ticker": etf.ticker, "order": "1", "end_date": universe.end.isoformat()}
    before = get(http, api, "/etf/XSHG/daily", **params).content
    api.preencode("daily", "XSHG", params)
    universe.advance(1)  # not seen while the encoded answer stands
    assert get(http, api, "/etf/XSHG/daily", **params).content == before
    # Another token is refused as ever, not answered from what was encoded.
    assert get(http, api, "/etf/XSHG/daily", token="other", **params).json()["code"] == 401
    api.forget()
    params["end_date"] = universe.end.isoformat()
    after = data(get(http, api, "/etf/XSHG/daily", **params))
    assert after[-1]["date"] == universe.end.isoformat() and len(after) == len(
        json.loads(before)["data"]
    ) + (1 if etf.is_active else 0)


def test_list_mutations(api, http, universe):
    universe.add_etf("XSHE", "159999", "测试ETF新发")
    universe.remove_etf("XSHG", "510500")
    universe.rename("XSHG", "510050", "上证50ETF改名")
    universe.set_active("XSHE", "159915", False)
    xshg = {r["ticker"]: r for r in data(get(http, api, "/etf/XSHG/list"))}
    xshe = {r["ticker"]: r for r in data(get(http, api, "/etf/XSHE/list"))}
    assert "510500" not in xshg and xshg["510050"]["name"] == "上证50ETF改名"
    assert xshe["159999"]["name"] == "测试ETF新发" and xshe["159915"]["is_active"] == 0
    assert data(get(http, api, "/etf/XSHG/daily", ticker="510500")) == []
    assert data(get(http, api, "/etf/XSHE/daily", ticker="159999")) == []

    universe.advance()
    assert len(data(get(http, api, "/etf/XSHE/daily", ticker="159999"))) == 1
    assert (
        data(get(http, api, "/etf/XSHE/daily", ticker="159915", order=1))[-1]["date"]
        == "2024-12-31"
    )
    universe.set_active("XSHE", "159915", True)
    assert (
        data(get(http, api, "/etf/XSHE/daily", ticker="159915", order=1))[-1]["date"]
        == "2025-01-02"
    )


def test_raw_rows_are_served_as_given(api, http, universe):
    raw = [
        {
            "ticker": "510050",
            "date": "2024-12-30",
            "open": "2.5",
            "high": None,
            "low": 2.4,
            "close": 2.45,
            "volume": -5,
        },
        {"ticker": "510050", "date": "2024/12/31", "close": 0},
        {
            "ticker": "510050",
            "date": "2024-12-31",
            "open": 1,
            "high": 1,
            "low": 1,
            "close": 1,
            "volume": 9_000_000_000,
        },
    ]
    universe.set_rows("XSHG", "510050", raw)
    assert data(get(http, api, "/etf/XSHG/daily", ticker="510050", order=1)) == raw
    assert data(get(http, api, "/etf/XSHG/daily", ticker="510050", order=2)) == raw[::-1]
    assert (
        data(get(http, api, "/etf/XSHG/daily", ticker="510050", start_date="2024-12-31")) == raw[1:]
    )
    assert raw[2] in data(get(http, api, "/etf/XSHG/daily/latest"))

    universe.extra_list_rows("XSHG", [{"ticker": "51005", "name": None}, {"ticker": "510050"}])
    rows = data(get(http, api, "/etf/XSHG/list"))
    assert rows[-2:] == [{"ticker": "51005", "name": None}, {"ticker": "510050"}]
    assert rows == universe.list_rows("XSHG")

    universe.clear_rows("XSHG", "510050")
    assert (
        data(get(http, api, "/etf/XSHG/daily", ticker="510050", start_date="2024-12-31"))[0][
            "volume"
        ]
        > 0
    )


# ------------------------------------------------------------- request log


def test_request_log(api, http, capsys):
    get(http, api, "/etf/XSHG/list")
    get(http, api, "/etf/XSHE/daily", ticker="159915", start_date="2024-12-02")
    get(http, api, "/etf/XSHE/daily", ticker="159919", token="nope")
    get(http, api, "/etf/XSHG/daily/latest", date="2024-12-31")
    assert api.request_count() == 4
    assert [api.request_count(k) for k in ("list", "daily", "latest")] == [1, 2, 1]
    first, second, third, _ = api.requests
    assert (first.method, first.path, first.kind, first.exchange) == (
        "GET",
        "/api/fin/etf/XSHG/list",
        "list",
        "XSHG",
    )
    assert second.ticker == "159915" and second.params == {
        "ticker": "159915",
        "start_date": "2024-12-02",
    }
    assert (second.status, second.code, third.code) == (200, 200, 401)
    assert all("token" not in r.params for r in api.requests)
    api.reset_log()
    assert api.request_count() == 0 and api.requests == []
    out = capsys.readouterr()
    assert TOKEN not in out.out + out.err and "nope" not in out.err


def test_concurrent_clients(api):
    errors = []

    def client(ticker):
        with requests.Session() as session:
            for _ in range(10):
                r = session.get(
                    f"{api.base_url}/etf/XSHE/daily",
                    params={"token": TOKEN, "ticker": ticker},
                    timeout=5,
                )
                if r.json()["code"] != 200:
                    errors.append(r.text)

    threads = [
        threading.Thread(target=client, args=(e.ticker,)) for e in api.universe.etfs("XSHE")[:8]
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == [] and api.request_count("daily") == 80


# -------------------------------------------------------------------- scale


def test_full_universe_size_and_one_history_speed(http):
    full = Universe.full()
    assert full.n_etfs >= 1100
    # Each ETF skips at most 4% of its days (suspensions): bound the total cheaply.
    assert full.max_row_count() * 0.96 >= 3_000_000
    assert full.trading_days()[0] <= date(2005, 1, 10)
    assert len({e.list_date for e in full.etfs()}) > 500
    with FakeTsanghi(full, token=TOKEN) as server:
        get(http, server, "/etf/XSHE/daily", ticker="159919", order=1)  # warm up
        started = time.perf_counter()
        rows = data(get(http, server, "/etf/XSHG/daily", ticker="510050", order=1))
        elapsed = time.perf_counter() - started
    assert len(rows) > 4500
    assert elapsed < 0.5  # about 20 ms on a laptop; generous for busy CI machines


# ---------------------------------------------------------------------- CLI


def test_cli_serves_until_sigterm_without_printing_the_token():
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "fakeapi",
            "--port",
            "0",
            "--etfs",
            "6",
            "--token",
            "s3cret-xyz",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1", "PYTHONPATH": str(Path(__file__).parent)},
    )
    try:
        line = proc.stdout.readline()
        match = re.match(
            r"Tsanghi-compatible test API on (http://127\.0\.0\.1:\d+/api/fin) \(6 ETFs, (\d+) trading days\); token from --token$",
            line.strip(),
        )
        assert match, line
        r = requests.get(
            f"{match.group(1)}/etf/XSHG/list", params={"token": "s3cret-xyz"}, timeout=5
        )
        assert r.json()["code"] == 200
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=10)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0
    assert "s3cret-xyz" not in line + out + err


def test_date_helpers_accept_strings(universe):
    day = universe.trading_days()[100]
    assert universe.daily_rows("XSHG", "510050", day.isoformat(), day) == universe.daily_rows(
        "XSHG", "510050", day, day + timedelta(days=0)
    )
    with pytest.raises(ValueError):
        universe.list_rows("XSHX")


def test_faults_for_honest_outcomes(api, http, universe):
    api.add_fault("404")
    r = get(http, api, "/etf/XSHG/list")
    assert r.status_code == 404 and r.json()["code"] == 404
    api.add_fault("html404")
    r = get(http, api, "/etf/XSHG/list")
    assert r.status_code == 404 and "<h1>404 Not Found</h1>" in r.text
    api.add_fault("400")
    assert get(http, api, "/etf/XSHG/list").json()["code"] == 400
    api.add_fault("echo", endpoint="daily")
    r = get(http, api, "/etf/XSHG/daily", ticker="510050")
    assert r.status_code == 502 and f"ticker=510050&token={TOKEN}" in r.text
    api.add_fault("quota", code=403)
    assert get(http, api, "/etf/XSHG/list").json() == {
        "msg": "token今日调用次数已用完 (daily quota used up)",
        "code": 403,
        "data": None,
    }
    api.add_fault("dateformat", endpoint="daily")
    dates = {row["date"] for row in data(get(http, api, "/etf/XSHG/daily", ticker="510050"))}
    assert dates and all(re.fullmatch(r"\d{8}", d) for d in dates)
    assert api.faults == []


def test_decimal_rows_are_served_as_the_bare_json_numbers_of_their_digits(api, http, universe):
    from decimal import Decimal

    row = {"ticker": "510050", "date": "2024-01-02", "close": Decimal("2.34499999999999997")}
    universe.set_rows("XSHG", "510050", [dict(row, volume=9 * 10**18)])
    text = get(http, api, "/etf/XSHG/daily", ticker="510050").text
    assert '"close":2.34499999999999997,"volume":9000000000000000000' in text
    day = universe.latest_trading_day()
    universe.set_rows("XSHG", "510050", [dict(row, date=day.isoformat())])
    assert '"close":2.34499999999999997' in get(http, api, "/etf/XSHG/daily/latest").text


# ------------------------------------------------------- corporate actions


def _by_date(rows):
    return {r["date"]: r for r in rows}


def test_standard_actions_are_the_default_and_jump_on_the_ex_date(api, http, universe):
    from fakeapi import STANDARD_ACTIONS

    assert universe.actions == sorted(
        STANDARD_ACTIONS, key=lambda a: (a.exchange, a.ticker, a.ex_date)
    )
    assert {(a.symbol, str(a.ratio)) for a in universe.actions} == {
        ("SH.510050", "2"),
        ("SZ.159915", "0.1"),
        ("SH.510300", "3.8165"),
    }
    plain = Universe(actions=())
    assert plain.actions == []
    days = universe.trading_days()
    for action in STANDARD_ACTIONS:
        assert is_trading_day(action.ex_date) and action.ex_date in days
        assert action.ex_date in Universe.full(n_etfs=40).trading_days()
        assert Universe(n_etfs=40).etf(action.exchange, action.ticker)
        path = f"/etf/{action.exchange}/daily"
        served = data(get(http, api, path, ticker=action.ticker, order=1))
        original = plain.daily_rows(action.exchange, action.ticker)
        ex = action.ex_date.isoformat()
        before = [r for r in served if r["date"] < ex]
        # Prices before the ex-date are the generated ones, unchanged.
        assert before == [r for r in original if r["date"] < ex] and before
        # From the ex-date on: generated price / ratio to the tick, volume * ratio.
        raw, new = _by_date(original), _by_date(served)
        ratio = action.ratio
        tick = Decimal("0.001")
        for day in [d for d in new if d >= ex]:
            for field in ("open", "high", "low", "close"):
                exact = Decimal(str(raw[day][field])) / ratio
                expected = max(tick, exact.quantize(tick, rounding=ROUND_HALF_UP))
                assert Decimal(str(new[day][field])) == expected, (day, field)
            assert abs(new[day]["volume"] - raw[day]["volume"] * ratio) <= Decimal("0.5")
        # The jump on the ex-date: open / previous close is about 1 / ratio.
        prev = before[-1]["close"]
        assert new[ex]["open"] / prev == pytest.approx(1 / float(ratio), rel=0.02)
        latest = data(get(http, api, f"/etf/{action.exchange}/daily/latest", date=ex))
        assert [r for r in latest if r["ticker"] == action.ticker] == [new[ex]]


def test_add_action_on_the_next_day_changes_no_served_row(universe):
    before = universe.daily_rows("XSHG", "510500")
    nxt = universe.latest_trading_day() + timedelta(days=1)
    while not is_trading_day(nxt):
        nxt += timedelta(days=1)
    universe.add_action("XSHG", "510500", nxt, "0.25")
    assert universe.daily_rows("XSHG", "510500") == before
    universe.advance(2)
    after = universe.daily_rows("XSHG", "510500")
    assert after[: len(before)] == before
    assert after[len(before)]["date"] == nxt.isoformat()
    assert after[len(before)]["open"] / before[-1]["close"] == pytest.approx(4, rel=0.03)
    with pytest.raises(ValueError):
        universe.add_action("XSHG", "510500", nxt, 0)
