"""Honest outcomes end to end: the real CLI against the local API and a real PostgreSQL.

Requests that cannot succeed are not retried, a run stops early when nothing
can succeed, the exit code says what happened to the rows, prices are stored
from the digits the API sent, and no error body carries the token to disk.
"""

from __future__ import annotations

import socket
import time
from decimal import Decimal
from pathlib import Path

import polars as pl
import pytest
from crashhelper import (
    active_tickers,
    assert_consistent,
    rejects,
    runs,
    source_count,
    source_dates,
)
from etlfixtures import TOKEN


@pytest.fixture
def db(db_embedded_only):
    return db_embedded_only


def price_rows(db) -> int:
    return db.fetch("SELECT count(*) FROM stock_daily_data")[0][0]


# -- nothing can succeed: stop early -----------------------------------------------------


@pytest.mark.parametrize("how", ["wrong-path", "html404", "json404"])
def test_a_base_url_answering_404_everywhere_stops_after_the_two_lists(how, etl, db, api):
    env = {}
    if how == "wrong-path":  # e.g. a missing /api/fin: the server's own 404 envelope
        env["TSANGHI_BASE_URL"] = api.base_url.removesuffix("/api/fin") + "/api"
    else:
        api.add_fault(how.removeprefix("json"), times=None)
    out = etl("sync", env=env)
    assert out.exit_code == 1, out.stderr
    assert api.request_count() == 2  # one per list, never retried, no prices asked
    assert "no ETF list could be fetched" in out.stderr
    assert "Check TSANGHI_BASE_URL" in out.stderr
    came = " with an HTML page (404 Not Found)" if how == "html404" else ""
    assert f"HTTP 404{came}: no such address" in out.stderr and "(not retried)" in out.stderr
    assert TOKEN not in out.stderr + out.stdout
    assert out.summary["status"] == "failed"
    assert db.fetch("SELECT count(*) FROM stock_info")[0][0] == 0
    (run,) = runs(db)
    assert run[2] == "failed" and "TSANGHI_BASE_URL" in run[3]


def test_sync_list_alone_says_what_to_check_when_no_list_comes(etl, db, api):
    api.add_fault("html404", times=None)
    out = etl("sync-list")
    assert out.exit_code == 1, out.stderr
    assert api.request_count() == 2 and "Check TSANGHI_BASE_URL" in out.stderr


def test_client_errors_fail_their_request_at_once_and_the_rest_loads(etl, db, api, universe):
    refused, gone = active_tickers(universe, "XSHG")[:2]
    api.add_fault("400", endpoint="daily", ticker=refused, times=None)
    api.add_fault("html404", endpoint="daily", ticker=gone, times=None)
    out = etl("sync")
    assert out.exit_code == 3, out.stderr
    failed = {f["symbol"]: f["reason"] for f in out.summary["failed"]}
    assert failed == {
        f"SH.{refused}": "API error code 400: 参数错误 (bad parameter) (not retried)",
        f"SH.{gone}": failed[f"SH.{gone}"],
    }
    assert failed[f"SH.{gone}"].startswith(
        "HTTP 404 with an HTML page (404 Not Found): no such address http://127.0.0.1:"
    )
    assert "token" not in failed[f"SH.{gone}"]
    assert [r.ticker for r in api.requests if r.fault].count(refused) == 1
    assert [r.ticker for r in api.requests if r.fault].count(gone) == 1
    assert price_rows(db) == source_count(universe, skip=(f"SH.{refused}", f"SH.{gone}"))


# -- a used-up quota is not a bad token ----------------------------------------------------


@pytest.mark.parametrize("code", [429, 403])
def test_a_quota_message_stops_the_extract_keeps_what_arrived_and_is_no_bad_token(
    code, etl, db, api, universe
):
    tickers = active_tickers(universe, "XSHG")
    later = tickers[6:]
    for ticker in later:
        api.add_fault("quota", endpoint="daily", ticker=ticker, times=None, code=code)
    api.add_fault("quota", endpoint="daily", exchange="XSHE", times=None, code=code)
    out = etl("sync", env={"ETL_WORKERS": "1"})
    assert out.exit_code == 1, out.stderr
    assert "check TSANGHI_TOKEN" not in out.stderr and "rejected the token" not in out.stderr
    s = out.summary
    assert s["status"] == "failed"
    assert s["reasons"][0].startswith(
        "stopped fetching: the API's call quota for this token is used up "
        f"(code {code}: token今日调用次数已用完"
    )
    assert "quota" in out.stderr
    # Asked once, never retried, and nothing after it was sent.
    assert api.request_count("daily") <= 6 + 2
    assert sum(1 for r in api.requests if r.fault == "quota") == 1
    # What arrived before is stored.
    stored = db.fetch("SELECT count(DISTINCT symbol) FROM stock_daily_data")[0][0]
    assert stored == 6
    assert s["symbols_not_fetched"] > 0
    (run,) = runs(db)
    assert run[2] == "failed" and "quota" in run[3]


# -- the breaker -------------------------------------------------------------------------------


def test_the_breaker_stops_a_run_whose_requests_keep_failing_and_keeps_what_arrived(
    etl, db, api, universe
):
    symbols = sorted(source_dates(universe))
    good = symbols[:3]
    for symbol in symbols[3:]:
        api.add_fault("503", endpoint="daily", ticker=symbol[3:], times=None)
    env = {"ETL_BREAKER_CONSECUTIVE": "5", "ETL_HTTP_ATTEMPTS": "2", "ETL_WORKERS": "2"}
    out = etl("sync", env=env)
    assert out.exit_code == 1, out.stderr
    s = out.summary
    assert s["status"] == "failed"
    assert s["reasons"][0] == (
        "stopped fetching: 5 requests in a row failed "
        "(last: HTTP 503 with an HTML page (503 Service Temporarily Unavailable) (after 2 attempts))"
    )
    assert f"Error: {s['reasons'][0]}" in out.stderr
    # At most the requests in flight when it opened followed; far from all symbols.
    assert api.request_count("daily") <= 2 * (3 + 5 + 4)
    assert s["symbols_not_fetched"] >= len(symbols) - 3 - 5 - 4
    assert s["symbols_ok"] == 3
    stored = db.fetch("SELECT DISTINCT symbol FROM stock_daily_data ORDER BY 1")
    assert [x for (x,) in stored] == good
    (run,) = runs(db)
    assert run[2] == "failed" and run[3].startswith("stopped fetching")


# -- rejects decide the status -----------------------------------------------------------


def test_a_date_format_change_rejects_every_row_and_fails_the_run(etl, db, api, universe):
    api.add_fault("dateformat", endpoint="daily", times=None)
    api.add_fault("dateformat", endpoint="latest", times=None)
    out = etl("sync")
    assert out.exit_code == 1, out.stderr
    s = out.summary
    assert s["status"] == "failed"
    assert s["rows_rejected"] == source_count(universe) and s["rows_inserted"] == 0
    assert s["reasons"] == [f"all {source_count(universe):,} rows were rejected"]
    assert f"Error: all {source_count(universe):,} rows were rejected" in out.stderr
    got = rejects(Path(s["snapshot"]))
    assert set(got["reason"]) == {"date is not a yyyy-mm-dd date"}
    assert got["trade_date"].str.contains(r"^\d{8}$").all()
    assert price_rows(db) == 0


# -- exact decimals, range checks ------------------------------------------------------------


def test_prices_are_stored_from_the_digits_sent_as_postgresql_rounds_them(etl, db, universe):
    ticker = active_tickers(universe, "XSHG")[0]
    rows = universe.daily_rows("XSHG", ticker)
    closes = [
        "2.34499999999999997",  # f64: 2.3449999999999998
        "1.00004999999",  # the cast to Decimal(38,10) alone rounds it to 1.00005
        "1.00004999999999999",  # f64: 1.00005
        "3.14159265358979323846",
    ]
    served = [
        dict(r, open=Decimal(c), high=Decimal("9"), low=Decimal("0.5"), close=Decimal(c))
        for r, c in zip(rows, closes, strict=False)
    ]
    served[0]["volume"] = 9007199254740993  # 2^53 + 1: no f64 holds it
    universe.set_rows("XSHG", ticker, served + rows[len(closes) :])
    out = etl("sync")
    assert out.exit_code == 0, out.stderr
    got = db.fetch(
        "SELECT close_price::text, open_price::text, volume, turnover::text "
        "FROM stock_daily_data WHERE symbol = $1 ORDER BY trade_date LIMIT 4",
        (f"SH.{ticker}",),
    )
    expected = [
        db.fetch("SELECT round($1::numeric, 4)::text", (c,))[0][0] for c in closes
    ]  # PostgreSQL's own rounding of the literal text
    assert (
        [g[0] for g in got]
        == [g[1] for g in got]
        == expected
        == [
            "2.3450",
            "1.0000",
            "1.0000",
            "3.1416",
        ]
    )
    assert got[0][2] == 9007199254740993
    turnover = db.fetch("SELECT round(2.3450 * 9007199254740993, 2)::text")[0][0]
    assert got[0][3] == turnover


def test_derived_values_that_do_not_fit_never_stop_the_other_rows(etl, db, universe):
    ticker = active_tickers(universe, "XSHE")[0]
    rows = universe.daily_rows("XSHE", ticker)
    served = [dict(r) for r in rows]
    served[3] = dict(rows[3], open=100, high=100, low=100, close=100, volume=9 * 10**18)
    served[5] = dict(rows[5], open=0.001, high=0.001, low=0.001, close=0.001)
    served[6] = dict(rows[6], open=50, high=50, low=50, close=50)  # +4,999,900%
    universe.set_rows("XSHE", ticker, served)
    out = etl("sync", as_json=False)
    assert out.exit_code == 3, out.stderr  # one row refused: partial
    assert "Why partial: 1 of" in out.stdout
    assert "1 rows changed by 10,000% or more" in out.stdout
    got = rejects(Path(out.stdout.split("Snapshot: ")[1].strip()))
    assert got.select("ticker", "trade_date", "reason").rows() == [
        (ticker, rows[3]["date"], "turnover (close × volume) does not fit NUMERIC(20,2)")
    ]
    stored = db.fetch(
        "SELECT trade_date::date::text, turnover::text, price_change::text, "
        "price_change_pct::text FROM stock_daily_data WHERE symbol = $1 ORDER BY trade_date",
        (f"SZ.{ticker}",),
    )
    assert [d for d, *_ in stored] == [r["date"] for i, r in enumerate(rows) if i != 3]
    by_day = {d: rest for d, *rest in stored}
    assert by_day[rows[6]["date"]] == [f"{50 * rows[6]['volume']}.00", "49.9990", None]
    assert all(t is not None for t, _, _ in by_day.values())
    assert price_rows(db) == source_count(universe) - 1


# -- no token in any persisted error body ----------------------------------------------------


def test_an_error_page_echoing_the_url_leaves_no_token_in_the_snapshot(etl, db, api, universe):
    ticker = active_tickers(universe, "XSHG")[1]
    api.add_fault("echo", endpoint="list", exchange="XSHE", times=None)
    api.add_fault("echo", endpoint="daily", ticker=ticker, times=None)
    out = etl("sync")
    assert out.exit_code == 3, out.stderr
    snapshot = Path(out.summary["snapshot"])
    parts = sorted(snapshot.rglob("*.parquet"))
    assert len(parts) >= 3
    bodies = []
    for part in parts:
        frame = pl.read_parquet(part)
        for column in frame.columns:
            text = "\n".join(str(v) for v in frame[column].to_list())
            assert TOKEN not in text, (part, column)
            assert TOKEN.split("-")[1] not in text, (part, column)
        if "body" in frame.columns:
            bodies += [b for b in frame["body"].to_list() if b and "upstream failed" in b]
    # The pages were kept, with the token masked: the test could have failed.
    assert len(bodies) == 2 and all("token=***" in b for b in bodies)
    assert all(f"ticker={ticker}" in b for b in bodies if "daily" in b)


# -- nothing answers at the base URL: said at once, never blamed on the token ---------------


def _free_port() -> int:
    """A loopback port nobody listens on (bound, then released)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.mark.parametrize("where", ["refused", "unresolvable"])
def test_a_base_url_nobody_answers_at_fails_fast_and_says_why(where, etl, db, data_dir):
    if where == "refused":
        host = f"127.0.0.1:{_free_port()}"
        said = f"cannot connect to {host}: connection refused (after 3 attempts)"
    else:
        host = "etf-sync-test.invalid"  # .invalid never resolves (RFC 2606)
        said = f"cannot resolve host {host} (not retried)"
    # A real backoff: the quick retries of a refused connection must not wait on it.
    env = {"TSANGHI_BASE_URL": f"http://{host}/api/fin", "ETL_HTTP_BACKOFF": "2"}
    started = time.monotonic()
    out = etl("sync", env=env)
    assert time.monotonic() - started < 5
    assert out.exit_code == 1, out.stderr
    error = (
        f"no ETF list could be fetched (XSHG: {said}; XSHE: {said}). Nothing was changed and "
        f"no prices were asked for. Check TSANGHI_BASE_URL (now http://{host}/api/fin) and "
        "the network: no server answered there"
    )
    assert f"Error: {error}" in out.stderr
    assert "token" not in out.stderr.lower() and "Traceback" not in out.stderr
    s = out.summary
    assert s["status"] == "failed" and s["error"] == error and s["reasons"] == [error]
    assert db.fetch("SELECT count(*) FROM stock_info")[0][0] == 0
    (run,) = runs(db)
    assert run[2:] == ("failed", error)


# -- one ETF that always fails: partial every evening, named with its reason ----------------


def test_one_etf_failing_every_evening_leaves_each_evening_partial(etl, db, api, universe):
    ticker = active_tickers(universe, "XSHE")[1]
    symbol = f"SZ.{ticker}"
    api.add_fault("body", endpoint="daily", ticker=ticker, times=None, status=503, body="blank")
    env = {"ETL_HTTP_ATTEMPTS": "2"}
    reason = "HTTP 503 with an empty body (after 2 attempts)"
    evenings = []
    for evening in range(4):
        if evening < 3:
            universe.advance(1)  # the fourth run asks again the same evening: all up to date
        out = etl("sync", env=env)
        assert out.exit_code == 3, out.stderr
        s = out.summary
        total = s["symbols_total"]
        assert s["status"] == "partial"
        assert s["failed"] == [{"symbol": symbol, "reason": reason}]
        assert s["reasons"] == [f"1 of {total} symbols failed ({symbol})"]
        assert s["error"] == s["reasons"][0]
        evenings.append((s["symbols_up_to_date"], s["symbols_ok"]))
    # The evenings asked little of the API: the others came by day, or were up to date.
    assert evenings[-1] == (total - 1, 0)
    stored = assert_consistent(db, universe, whole=True)
    assert set(stored) == set(source_dates(universe)) - {symbol}
    assert [r[2] for r in runs(db)] == ["partial"] * 4


def test_every_summary_that_is_not_ok_says_why_in_reasons_and_error(etl, db, api, universe):
    down = [s for s in sorted(source_dates(universe)) if s.startswith("SH.")][:4]
    for symbol in down:
        api.add_fault("502", endpoint="daily", ticker=symbol[3:], times=None)
    out = etl("sync", env={"ETL_HTTP_ATTEMPTS": "1"})
    assert out.exit_code == 1, out.stderr
    s = out.summary
    total = s["symbols_total"]
    assert s["reasons"] == [f"4 of {total} symbols failed ({', '.join(down)}), more than 10%"]
    assert s["error"] == s["reasons"][0]
    (run,) = runs(db)
    assert run[2:] == ("failed", s["error"])

    api.clear_faults()
    healed = etl("sync")
    assert healed.exit_code == 0 and "reasons" not in healed.summary
    assert "error" not in healed.summary

    # An outcome with no run behind it (here: no token) says why the same way.
    refused = etl("sync", env={"TSANGHI_TOKEN": None, "STOCK_API_TOKEN": None})
    assert refused.exit_code == 1
    assert refused.summary["status"] == "failed"
    assert refused.summary["reasons"] == [refused.summary["error"]]
    assert refused.summary["error"].startswith("no API token")
