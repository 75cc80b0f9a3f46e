"""The fault matrix: what the API's bad nights leave in the database, the
rejects file, the summary and the exit code.

Faults come from the local API's switches (tests/fakeapi/server.py); each case
runs the real CLI against a real PostgreSQL.
"""

from __future__ import annotations

import json
import re
import signal
import time
from pathlib import Path

import polars as pl
import pytest
from crashhelper import (
    active_tickers,
    assert_consistent,
    child_env,
    rejects,
    runs,
    source_count,
    source_dates,
    spawn,
    wait_for,
)
from etlfixtures import TOKEN
from fakeapi import universe as universe_module


@pytest.fixture
def db(db_embedded_only):
    """The API's faults do not depend on the server version: embedded only, for speed."""
    return db_embedded_only


def price_rows(db) -> int:
    return db.fetch("SELECT count(*) FROM stock_daily_data")[0][0]


def assert_complete(out, db, universe) -> dict:
    """A clean outcome: exit 0, nobody failed, every source row stored once, no rejects."""
    assert out.exit_code == 0, out.stderr
    s = out.summary
    assert s["status"] == "ok"
    assert s["symbols_failed"] == 0 and s["failed"] == []
    assert s["rows_rejected"] == 0
    assert all(r["status"] == "ok" for r in s.get("exchanges", {}).values())
    assert_consistent(db, universe, whole=True)
    assert price_rows(db) == source_count(universe)
    assert rejects(Path(s["snapshot"])).is_empty()
    assert runs(db)[-1][2:] == ("ok", None)
    return s


# -- transient: retried until the data is complete ---------------------------------

TRANSIENT = {
    "429": {"retry_after": 1},
    "502": {},
    "503": {},
    "slow": {"delay": 1.5},  # longer than ETL_HTTP_TIMEOUT below: a read timeout
    "drop": {},
    "truncated": {},
    "truncated-length": {"full_length": True},  # Content-Length promises more than comes
    "malformed": {},
    "envelope": {},
    "body-blank503": {"status": 503, "body": "blank"},  # a 503 with no body at all
    "body-html502": {"status": 502, "body": "html"},
    "body-object200": {"status": 200, "body": "{}"},  # a 200 that is no envelope
}


@pytest.mark.slow
@pytest.mark.parametrize("case", list(TRANSIENT))
def test_a_transient_fault_on_every_endpoint_is_retried_and_the_data_is_complete(
    case, etl, db, api, universe
):
    kind, extra = case.split("-")[0], TRANSIENT[case]
    env = {"ETL_HTTP_TIMEOUT": "0.5"} if kind == "slow" else {}
    twice = 1 if kind == "429" else 2  # each 429 costs its Retry-After second
    ticker = active_tickers(universe, "XSHE")[1]
    faults = [
        api.add_fault(kind, endpoint="list", exchange="XSHG", times=1, **extra),
        api.add_fault(kind, endpoint="latest", exchange="XSHE", times=1, **extra),
        api.add_fault(kind, endpoint="daily", ticker=ticker, times=twice, **extra),
        api.add_fault(kind, endpoint="daily", times=1, **extra),  # whichever ticker comes
    ]
    out = etl("sync", env=env)
    s = assert_complete(out, db, universe)
    assert [f.hits for f in faults] == [1, 1, twice, 1] and api.faults == []
    assert s["requests"] == api.request_count()
    assert [r.fault for r in api.requests if r.ticker == ticker] == [kind] * twice + [None]
    if kind == "429":  # Retry-After is honoured (the backoff alone is 10 ms)
        at = [r.at for r in api.requests if r.kind == "list" and r.exchange == "XSHG"]
        assert len(at) == 2 and at[1] - at[0] >= 0.9

    # The next evening's rows come from /daily/latest alone: a fault there is
    # retried too, not papered over by fetching every ticker again.
    universe.advance(2)
    api.reset_log()
    fault = api.add_fault(kind, endpoint="latest", times=twice, **extra)
    out = etl("sync", env=env)
    s = assert_complete(out, db, universe)
    assert fault.hits == twice
    assert api.request_count("daily") == 0
    assert s["rows_inserted"] == 2 * s["symbols_total"]


# -- answers that are no envelope: named by status and body, the rest loads ----------

# What the reason says of each body the servers in front of the API may send.
BODY_SAID = {
    "blank": "an empty body",
    "text": "a body that is not JSON: 'Service Unavailable'",
    "{}": "JSON that is not the API envelope: {}",
    "[]": "JSON that is not the API envelope: []",
    "html": "an HTML page (Error)",
}


@pytest.mark.parametrize("status", [200, 404, 502, 503])
@pytest.mark.parametrize("body", list(BODY_SAID))
def test_a_ticker_answered_with_no_envelope_fails_with_its_status_and_body_and_the_rest_loads(
    body, status, etl, db, api, universe
):
    ticker = active_tickers(universe, "XSHG")[3]
    symbol = f"SH.{ticker}"
    api.add_fault("body", endpoint="daily", ticker=ticker, times=None, status=status, body=body)
    out = etl("sync", env={"ETL_HTTP_ATTEMPTS": "3"})
    assert out.exit_code == 3, out.stderr
    assert "Traceback" not in out.stderr
    s = out.summary
    asked = [r.status for r in api.requests if r.ticker == ticker]
    if status == 404:  # a client error: asked once, never again
        reason = (
            f"HTTP 404 with {BODY_SAID[body]}: no such address {api.base_url}/etf/XSHG/daily; "
            "check TSANGHI_BASE_URL (not retried)"
        )
        assert asked == [404]
    else:  # 5xx, and a 200 whose body is cut or garbled: retried, then named
        reason = f"HTTP {status} with {BODY_SAID[body]} (after 3 attempts)"
        assert asked == [status] * 3
    assert s["failed"] == [{"symbol": symbol, "reason": reason}]
    assert s["status"] == "partial" and s["symbols_failed"] == 1
    assert s["reasons"] == [f"1 of {s['symbols_total']} symbols failed ({symbol})"]
    assert s["error"] == s["reasons"][0]
    assert f"{symbol} skipped: {reason}" in out.stderr
    # Every other ETF is stored whole.
    stored = assert_consistent(db, universe, whole=True)
    assert set(stored) == set(source_dates(universe)) - {symbol}
    assert price_rows(db) == source_count(universe, skip=(symbol,))


def test_one_empty_503_for_one_etf_of_many_loads_every_etf(etl, db, api, universe):
    ticker = active_tickers(universe, "XSHE")[2]
    fault = api.add_fault("body", endpoint="daily", ticker=ticker, status=503, body="blank")
    out = etl("sync")
    assert_complete(out, db, universe)
    assert fault.hits == 1
    assert [r.status for r in api.requests if r.ticker == ticker] == [503, 200]


def test_a_list_answered_with_an_empty_404_fails_its_exchange_only(etl, db, api, universe):
    api.add_fault("body", endpoint="list", exchange="XSHE", times=None, status=404, body="blank")
    out = etl("sync")
    assert out.exit_code == 3, out.stderr
    s = out.summary
    assert s["exchanges"]["XSHE"] == {
        "status": "failed",
        "error": f"HTTP 404 with an empty body: no such address {api.base_url}/etf/XSHE/list; "
        "check TSANGHI_BASE_URL (not retried)",
    }
    assert s["reasons"] == ["1 of 2 ETF lists failed (XSHE)"] and s["error"] == s["reasons"][0]
    stored = assert_consistent(db, universe, whole=True)
    assert stored and all(symbol.startswith("SH.") for symbol in stored)


# -- persistent: skipped, named, partial ----------------------------------------------


def test_tickers_that_always_fail_are_named_with_their_reason_and_the_rest_loads(
    etl, db, api, universe
):
    down, garbled = active_tickers(universe, "XSHG")[2], active_tickers(universe, "XSHE")[0]
    api.add_fault("503", endpoint="daily", ticker=down, times=None)
    api.add_fault("malformed", endpoint="daily", ticker=garbled, times=None)
    out = etl("sync", as_json=False)
    assert out.exit_code == 3, out.stderr
    assert "PARTIAL" in out.stdout
    page = "an HTML page (503 Service Temporarily Unavailable)"
    assert f"SH.{down}: HTTP 503 with {page} (after 5 attempts)" in out.stdout
    assert f"SZ.{garbled}: HTTP 200 with an HTML page (Tsanghi) (after 5 attempts)" in out.stdout
    assert f"SH.{down} skipped" in out.stderr  # the log line as it happened

    failed = {f"SH.{down}", f"SZ.{garbled}"}
    stored = assert_consistent(db, universe, whole=True)
    assert set(stored) == set(source_dates(universe)) - failed
    assert price_rows(db) == source_count(universe, skip=tuple(failed))
    marks = db.fetch(
        "SELECT symbol, last_sync_date FROM stock_info WHERE symbol = ANY($1)", (sorted(failed),)
    )
    assert sorted(marks) == [(s, None) for s in sorted(failed)]
    (run,) = runs(db)
    assert run[2:] == ("partial", None)
    counts = db.fetch(
        "SELECT counts->>'symbols_failed', counts->'failed'->0->>'symbol' FROM etl_runs"
    )
    assert counts == [("2", f"SH.{down}")]

    api.clear_faults()
    healed = etl("sync")
    assert healed.exit_code == 0 and healed.summary["symbols_failed"] == 0
    assert_consistent(db, universe, whole=True)
    assert price_rows(db) == source_count(universe)


def test_a_list_that_stays_down_fails_its_exchange_only_and_retires_nobody(etl, db, api, universe):
    assert etl("sync").exit_code == 0
    universe.advance(1)
    api.add_fault("502", endpoint="list", exchange="XSHE", times=None)
    out = etl("sync")
    assert out.exit_code == 3, out.stderr
    s = out.summary
    assert s["status"] == "partial"
    assert s["exchanges"]["XSHG"]["status"] == "ok"
    assert s["exchanges"]["XSHE"] == {
        "status": "failed",
        "error": "HTTP 502 with an HTML page (502 Bad Gateway) (after 5 attempts)",
    }
    assert s["etfs_deactivated"] == 0
    active = db.fetch("SELECT count(*) FROM stock_info WHERE is_etf = 'Y' AND is_active = 'Y'")
    assert active[0][0] == len(source_dates(universe))
    # Prices of both exchanges still advance, from the list already stored.
    assert s["symbols_failed"] == 0 and s["rows_inserted"] == s["symbols_total"]
    assert_consistent(db, universe, whole=True)


def test_latest_endpoint_down_falls_back_to_per_ticker_requests(etl, db, api, universe):
    assert etl("sync").exit_code == 0
    universe.advance(1)
    api.reset_log()
    api.add_fault("503", endpoint="latest", times=None)
    out = etl("sync")
    s = assert_complete(out, db, universe)
    assert api.request_count("daily") == s["symbols_total"]
    assert s["rows_inserted"] == s["symbols_total"]


def test_an_empty_day_on_a_trading_day_is_not_taken_for_a_holiday(etl, db, api, universe):
    assert etl("sync").exit_code == 0
    first, _ = universe.advance(2)
    api.reset_log()
    # XSHE's answer for the first new day comes back empty while XSHG traded that day.
    api.add_fault("empty", endpoint="latest", exchange="XSHE", day=first.isoformat())
    out = etl("sync")
    s = assert_complete(out, db, universe)
    assert api.request_count("daily") == len(
        [x for x in source_dates(universe) if x.startswith("SZ.")]
    )
    assert s["rows_inserted"] == 2 * s["symbols_total"]


@pytest.mark.parametrize("exchanges", [(), ("XSHG",)], ids=["both-empty", "xshg-alone"])
def test_an_empty_trading_day_on_every_exchange_asked_leaves_no_gap(
    exchanges, etl, db, api, universe
):
    """No other exchange to compare with: the calendar says the day was a
    trading day, so its empty answers are a glitch, served per ticker."""
    args = [a for e in exchanges for a in ("--exchange", e)]
    assert etl("sync", *args).exit_code == 0
    first, _ = universe.advance(2)
    asked = exchanges or ("XSHG", "XSHE")
    for exchange in asked:
        api.add_fault("empty", endpoint="latest", exchange=exchange, day=first.isoformat())
    api.reset_log()
    out = etl("sync", *args)
    assert out.exit_code == 0, out.stderr
    markets = tuple("SH." if e == "XSHG" else "SZ." for e in asked)
    days = {
        sym: d
        for sym, d in db.fetch(
            "SELECT symbol, array_agg(trade_date::date::text ORDER BY trade_date) "
            "FROM stock_daily_data GROUP BY symbol"
        )
    }
    expected = {s: d for s, d in source_dates(universe).items() if s.startswith(markets)}
    assert {s: days.get(s) for s in expected} == expected  # the empty day is stored too
    assert api.request_count("daily") == len(expected)


@pytest.mark.parametrize(("share", "code", "status"), [(None, 1, "failed"), ("0.2", 3, "partial")])
def test_too_many_failed_symbols_fail_the_run_and_keep_what_loaded(
    share, code, status, etl, db, api, universe
):
    symbols = source_dates(universe)
    down = [s for s in symbols if s.startswith("SH.")][:4]
    assert 0.1 < len(down) / len(symbols) < 0.2
    for symbol in down:
        api.add_fault("502", endpoint="daily", ticker=symbol[3:], times=None)
    out = etl("sync", env={"ETL_MAX_FAILED_SHARE": share} if share else None)
    assert out.exit_code == code, out.stderr
    s = out.summary
    assert s["status"] == status
    assert s["symbols_failed"] == 4 and [f["symbol"] for f in s["failed"]] == sorted(down)
    assert s["rows_inserted"] == source_count(universe, skip=tuple(down)) == price_rows(db)
    stored = assert_consistent(db, universe, whole=True)
    assert set(stored) == set(symbols) - set(down)
    assert runs(db)[-1][2] == status


# -- bad rows: rejected with a reason, the rest of the ticker loads ----------------


def test_bad_rows_are_rejected_with_their_reason_and_good_rows_of_the_ticker_load(
    etl, db, universe, monkeypatch
):
    # A server that ignores end_date, so a row after it can arrive at all.
    monkeypatch.setattr(universe_module, "_raw_in_range", lambda row, lo, hi: True)
    ticker = active_tickers(universe, "XSHG")[0]
    rows = universe.daily_rows("XSHG", ticker)
    others = source_count(universe) - len(rows)
    bad = {
        1: (dict(rows[1], open="12,5"), "open is not a number that fits NUMERIC(10,4)"),
        2: (dict(rows[2], close=None), "close missing"),
        3: (dict(rows[3], volume=-300), "volume is not a non-negative whole number"),
        4: (dict(rows[4], high=rows[4]["low"], low=rows[4]["high"]), "high below low"),
        5: ({k: v for k, v in rows[5].items() if k != "volume"}, "volume missing"),
        6: ({k: v for k, v in rows[6].items() if k != "date"}, "date missing"),
        7: (dict(rows[7], close=1e12), "close is not a number that fits NUMERIC(10,4)"),
        8: (dict(rows[8], date="2024/01/15"), "date is not a yyyy-mm-dd date"),
    }
    served = [bad[i][0] if i in bad else r for i, r in enumerate(rows)]
    conflict = [rows[10], dict(rows[10], close=rows[10]["high"])]  # same day, two closes
    served[10:11] = conflict
    served.insert(12, dict(rows[12]))  # an identical repeat counts once
    late = dict(rows[-1], date="2024-04-02")
    served.append(late)
    universe.set_rows("XSHG", ticker, served)

    out = etl("sync", "--end-date", "2024-03-29")
    assert out.exit_code == 3, out.stderr  # rejected rows make a run partial
    s = out.summary
    assert s["status"] == "partial" and s["symbols_failed"] == 0
    (reason,) = s["reasons"]
    assert re.fullmatch(rf"{s['rows_rejected']} of [\d,]+ rows rejected", reason)

    got = rejects(Path(s["snapshot"])).sort("reason", "trade_date", "row")
    expected = sorted(
        [(reason, row.get("date")) for row, reason in bad.values()]
        + [("conflicting rows for the same key in one answer", rows[10]["date"])] * 2
        + [("date after the run's end date 2024-03-29", "2024-04-02")],
        key=lambda x: (x[0], x[1] or ""),
    )
    assert (
        sorted(zip(got["reason"], got["trade_date"], strict=True), key=lambda x: (x[0], x[1] or ""))
        == expected
    )
    assert set(got["ticker"]) == {ticker} and set(got["exchange"]) == {"XSHG"}
    assert s["rows_rejected"] == got.height == len(expected)
    # Each reject keeps the row as it came, e.g. the offending value.
    assert '"open":"12,5"' in got.filter(pl.col("reason").str.starts_with("open"))["row"][0]

    refused = {rows[i]["date"] for i in bad} | {rows[10]["date"]}
    good = [r["date"] for r in rows if r["date"] not in refused]
    stored = db.fetch(
        "SELECT trade_date::date::text FROM stock_daily_data WHERE symbol = $1 ORDER BY 1",
        (f"SH.{ticker}",),
    )
    assert [d for (d,) in stored] == good
    close = db.fetch(
        "SELECT close_price::text FROM stock_daily_data WHERE symbol = $1 AND "
        "trade_date = $2::timestamp",
        (f"SH.{ticker}", rows[12]["date"]),
    )
    assert float(close[0][0]) == rows[12]["close"]
    last = db.fetch(
        "SELECT last_sync_date::date::text FROM stock_info WHERE symbol = $1", (f"SH.{ticker}",)
    )
    assert last[0][0] == good[-1] < "2024-04-02"
    assert price_rows(db) == others + len(good)

    # Replaying the snapshot (e.g. after a failed load) refuses the same rows
    # again, and the rejects file still lists each of them once.
    for _ in range(2):
        again = etl("replay", s["snapshot"])
        assert again.exit_code == 3, again.stderr
        assert again.summary["rows_rejected"] == got.height
        assert again.summary["rows_inserted"] == 0
    after = rejects(Path(s["snapshot"]))
    assert after.sort(after.columns).equals(got.sort(got.columns))


# -- a bad token: fatal before anything is written -------------------------------


def test_a_rejected_token_is_fatal_before_any_data_is_written(etl, db, api, data_dir):
    out = etl("sync", env={"TSANGHI_TOKEN": "not-the-token"})
    assert out.exit_code == 1
    assert "check TSANGHI_TOKEN" in out.stderr and "not-the-token" not in out.stderr
    assert api.request_count() == 1  # the first answer stops the run: no retries, no more calls
    assert out.summary["status"] == "failed"
    assert db.fetch("SELECT count(*) FROM stock_info")[0][0] == 0
    assert price_rows(db) == 0
    (run,) = runs(db)
    assert run[2] == "failed" and "check TSANGHI_TOKEN" in run[3]
    snapshot = Path(out.summary["snapshot"])
    assert not (snapshot / "kind=list").exists() and not (snapshot / "kind=prices").exists()


def test_a_token_rejected_by_the_prices_endpoint_stops_sync_prices(etl, db, api, universe):
    assert etl("sync-list").exit_code == 0
    api.reset_log()
    api.add_fault("auth", endpoint="daily", times=None)
    out = etl("sync-prices")
    assert out.exit_code == 1
    assert "rejected the token" in out.stderr and "check TSANGHI_TOKEN" in out.stderr
    assert price_rows(db) == 0
    assert db.fetch("SELECT count(*) FROM stock_info WHERE last_sync_date IS NOT NULL")[0][0] == 0
    assert api.request_count("daily") <= 2 * 4  # the requests already in flight, no more
    assert runs(db)[-1][1:3] == ("sync-prices", "failed")
    assert sum(1 for r in api.requests if r.kind == "daily") < len(source_dates(universe))


# -- a stop during a retry's wait ----------------------------------------------------------


def test_sigterm_during_a_retry_backoff_ends_the_run_at_once(db, api, universe, data_dir, tmp_path):
    ticker = active_tickers(universe, "XSHG")[0]
    api.add_fault("body", endpoint="daily", ticker=ticker, times=None, status=503, body="blank")
    # A 30 s backoff: only a wait that wakes on the signal ends the run within seconds.
    env = child_env(db.url, api.base_url, TOKEN, data_dir, ETL_HTTP_BACKOFF="30", ETL_WORKERS="2")
    log = tmp_path / "backoff"
    proc = spawn(["--json", "sync"], env, log)
    try:
        wait_for(lambda: any(r.ticker == ticker for r in api.requests), proc=proc)
        time.sleep(0.5)  # the failed attempt is in, the worker waits out its backoff
        proc.send_signal(signal.SIGTERM)
        sent = time.monotonic()
        code = proc.wait(60)
        took = time.monotonic() - sent
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    err = log.with_suffix(".err").read_text()
    assert code == 143, err
    assert took < 5, took
    assert [r.status for r in api.requests if r.ticker == ticker] == [503]  # no second attempt
    s = json.loads(log.with_suffix(".out").read_text())
    assert s["status"] == "interrupted" and s["interrupted_by"] == "SIGTERM"
    assert s["reasons"][0] == "interrupted by SIGTERM; what had arrived was loaded"
    assert s["error"].startswith(s["reasons"][0])
    assert_consistent(db, universe, whole=True)
