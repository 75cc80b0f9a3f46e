"""Evenings of cron beside the existing system: the test API advances a trading day
each evening, PostgreSQL goes away in the middle of one evening, a fetch fails on
another, and the old system stores rows past the days we missed. No `check
--repair` is run: at the end the table holds every source row, once."""

from __future__ import annotations

from datetime import date
from decimal import Decimal

import pytest
from click.testing import CliRunner
from crashhelper import dbname
from etlfixtures import TOKEN, Outcome
from fakeapi.server import FakeTsanghi
from test_shared_tables import SHANGHAI, UTC, old_system_writes

from etl.cli import cli
from etl.db import Database
from etl.load import Loader

MARKET = {"XSHG": "SH", "XSHE": "SZ"}


def source_rows(universe) -> set[tuple]:
    """(symbol, trading day, open, high, low, close, volume) of every row the API serves."""
    out = set()
    for exchange, market in MARKET.items():
        for etf in universe.list_rows(exchange):
            for r in universe.daily_rows(exchange, etf["ticker"]):
                out.add(
                    (
                        f"{market}.{etf['ticker']}",
                        r["date"],
                        *(Decimal(str(r[k])) for k in ("open", "high", "low", "close")),
                        int(r["volume"]),
                    )
                )
    return out


def stored_rows(db: Database) -> list[tuple]:
    """The same of every stored row, by trading day whoever wrote it (twins kept)."""
    rows = db.fetch(
        "SELECT symbol, (trade_date + interval '8 hours')::date::text, open_price::text, "
        "high_price::text, low_price::text, close_price::text, volume FROM stock_daily_data"
    )
    return [
        (s, d, *(Decimal(v) for v in (o, h, lo, c)), int(vol)) for s, d, o, h, lo, c, vol in rows
    ]


def changes_refer_to_the_previous_trading_day(db: Database) -> list[tuple]:
    """Rows with a change that does not refer to the close of the stored row before
    them (on a share split's ex-date, that close in new shares). The old system
    leaves the change empty: those rows are not compared."""
    return db.fetch(
        "SELECT symbol, day FROM ("
        "  SELECT d.symbol, (d.trade_date + interval '8 hours')::date AS day, d.price_change, "
        "  d.close_price - CASE WHEN a.ratio IS NULL THEN lag(d.close_price) OVER w "
        "  ELSE round(lag(d.close_price) OVER w / a.ratio, 4) END AS want "
        "  FROM stock_daily_data AS d LEFT JOIN etl_corporate_actions AS a "
        "  ON a.symbol = d.symbol AND a.ex_date = (d.trade_date + interval '8 hours')::date "
        "  WINDOW w AS (PARTITION BY d.symbol ORDER BY d.trade_date)) AS r "
        "WHERE price_change IS NOT NULL AND want IS NOT NULL AND price_change <> want"
    )


def restart(server, db: Database) -> None:
    """What a PostgreSQL restart does to the run: every open session of the
    database is gone; new ones are accepted again."""
    server.admin(
        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
        f"WHERE datname = '{dbname(db)}' AND pid <> pg_backend_pid()"
    )


def holding(db: Database, symbol: str, day: date) -> int:
    return db.fetch(
        "SELECT count(*) FROM stock_daily_data WHERE symbol = $1 "
        "AND (trade_date + interval '8 hours')::date = $2::date",
        (symbol, day.isoformat()),
    )[0][0]


def name_of(db: Database, symbol: str) -> str:
    return db.fetch("SELECT stock_name FROM stock_info WHERE symbol = $1", (symbol,))[0][0]


@pytest.mark.slow
def test_evenings_of_cron_beside_the_old_system_end_with_every_row_once(
    embedded_pg, db_embedded_only, universe, tmp_path, monkeypatch
):
    db = db_embedded_only
    sh, sz = "SH.510050", "SZ.159915"
    with FakeTsanghi(universe, token=TOKEN) as api:
        env = {
            "DATABASE_URL": db.url,
            "TSANGHI_TOKEN": TOKEN,
            "TSANGHI_BASE_URL": api.base_url,
            "ETL_DATA_DIR": str(tmp_path / "data"),
            "ETL_HTTP_BACKOFF": "0.01",
            "ETL_HTTP_TIMEOUT": "2",
            "ETL_WORKERS": "4",
        }

        def evening() -> Outcome:
            """The next trading day's data is out; cron runs `etl sync`."""
            (day,) = universe.advance(1)
            api.reset_log()
            result = CliRunner().invoke(cli, ["--json", "sync"], env=env, catch_exceptions=False)
            return Outcome(result.exit_code, result.stdout, result.stderr), day

        first = CliRunner().invoke(cli, ["--json", "sync"], env=env, catch_exceptions=False)
        assert first.exit_code == 0, first.stderr
        out, d1 = evening()
        assert out.exit_code == 0, out.stderr
        asked = "SELECT DISTINCT complete_through::text FROM etl_etf_days"
        assert db.fetch(asked) == [(d1.isoformat(),)]

        # PostgreSQL restarts while the lists load (a fund is listed that day): the
        # evening fails before any price is asked.
        universe.add_etf("XSHG", "517777", "新上市ETF")
        original = Loader.load_list

        def load_list(self, stage):
            restart(embedded_pg, db)
            return original(self, stage)

        monkeypatch.setattr(Loader, "load_list", load_list)
        out, d2 = evening()
        monkeypatch.undo()
        assert out.exit_code == 1, out.stderr
        assert "failed and was rolled back" in out.stderr
        assert api.request_count("daily") + api.request_count("latest") == 0
        assert holding(db, sh, d2) == 0

        # The next evening's data is out, and the old system stores it for two ETFs
        # first, moving their watermark past the day we missed.
        (d3,) = universe.advance(1)
        for symbol, exchange in ((sh, "XSHG"), (sz, "XSHE")):
            row = universe.daily_rows(exchange, symbol[3:], d3, d3)
            old_system_writes(db, UTC, symbol, name_of(db, symbol), row)
        api.reset_log()
        result = CliRunner().invoke(cli, ["--json", "sync"], env=env, catch_exceptions=False)
        assert result.exit_code == 0, result.stderr
        # Two lists, the latest day and the missed day per exchange, the new fund's
        # history: the missed day's answer serves the two ETFs too, at no extra request.
        assert api.request_count("list") == 2
        assert [r.ticker for r in api.requests if r.kind == "daily"] == ["517777"]
        assert sorted(r.params.get("date", "") for r in api.requests if r.kind == "latest") == [
            "", "", d2.isoformat(), d2.isoformat()
        ]  # fmt: skip
        assert (holding(db, sh, d2), holding(db, sz, d2)) == (1, 1)

        # An evening on which Shenzhen's per-day answer comes back empty and one ETF's
        # own request keeps failing: it misses the day (exit 3) ...
        ticker = "159919" if sz != "SZ.159919" else "159920"
        late = f"SZ.{ticker}"
        assert any(r["ticker"] == ticker for r in universe.list_rows("XSHE"))
        api.add_fault("empty", endpoint="latest", exchange="XSHE", times=1)
        api.add_fault("502", endpoint="daily", ticker=ticker, times=None)
        out, d4 = evening()
        api.clear_faults()
        assert out.exit_code == 3, out.stderr
        assert out.summary["failed"][0]["symbol"] == late
        assert holding(db, late, d4) == 0
        # Shanghai's ETFs were asked up to that day; Shenzhen's latest day was not
        # known, so none of its ETFs counts as asked past the evening before.
        asked_through = db.fetch(
            "SELECT DISTINCT left(symbol, 2), complete_through FROM etl_etf_days ORDER BY 1"
        )
        assert asked_through == [("SH", d4), ("SZ", d3)]
        # ... and the old system stores the next day for it before our next evening.
        (d5,) = universe.advance(1)
        row = universe.daily_rows("XSHE", ticker, d5, d5)
        old_system_writes(db, SHANGHAI, late, name_of(db, late), row)
        api.reset_log()
        result = CliRunner().invoke(cli, ["--json", "sync"], env=env, catch_exceptions=False)
        assert result.exit_code == 0, result.stderr
        # One request more than any evening: Shenzhen's missed day, once.
        dated = [(r.exchange, r.params.get("date")) for r in api.requests if r.kind == "latest"]
        assert sorted(d for d in dated if d[1]) == [("XSHE", d4.isoformat())]
        assert api.request_count() == 5 and api.request_count("daily") == 0
        assert holding(db, late, d4) == 1

        # PostgreSQL restarts while the prices load: every answer is on disk, and the
        # next evening loads them first, though the old system stored a later day.
        load_daily = Loader.load_daily

        def load_daily_restarting(self, rows, overwrite=False):
            restart(embedded_pg, db)
            return load_daily(self, rows, overwrite)

        monkeypatch.setattr(Loader, "load_daily", load_daily_restarting)
        out, d6 = evening()
        monkeypatch.undo()
        assert out.exit_code == 1, out.stderr
        assert "the next 'etl sync' loads them first" in out.stderr
        (d7,) = universe.advance(1)
        row = universe.daily_rows("XSHG", "510300", d7, d7)
        old_system_writes(db, UTC, "SH.510300", name_of(db, "SH.510300"), row)
        api.reset_log()
        result = CliRunner().invoke(cli, ["--json", "sync"], env=env, catch_exceptions=False)
        assert result.exit_code == 0, result.stderr
        assert Outcome(0, result.stdout, "").summary["answers_resumed"] > 0
        assert api.request_count() == 4
        assert holding(db, "SH.510300", d6) == 1

        # Ordinary evenings after that cost four requests each.
        for _ in range(2):
            out, _day = evening()
            assert out.exit_code == 0, out.stderr
            assert api.request_count() == 4

    stored = stored_rows(db)
    assert len(stored) == len(set(stored))  # no twin
    assert set(stored) == source_rows(universe)
    twins = db.fetch(
        "SELECT symbol, (trade_date + interval '8 hours')::date FROM stock_daily_data "
        "GROUP BY 1, 2 HAVING count(*) > 1"
    )
    assert twins == []
    assert changes_refer_to_the_previous_trading_day(db) == []
    last = universe.end.isoformat()
    assert db.fetch("SELECT DISTINCT complete_through::text FROM etl_etf_days") == [(last,)]
