"""ETF list sync against the local API and a real PostgreSQL."""

from __future__ import annotations

from pathlib import Path

from etlfixtures import TOKEN

from etl.migrate import apply_migrations

STOCKS = """
INSERT INTO stock_info (symbol, stock_name, stock_code, market_code, stock_type, industry,
    sector, list_date, is_active, is_etf, created_at, updated_at)
VALUES
 ('SH.600000', '浦发银行', '600000', 'SH', 'STOCK', '银行', '金融', '1999-11-10', 'Y', 'N',
  '2020-01-01 09:00:00', '2020-01-01 09:00:00'),
 ('SZ.000001', '平安银行', '000001', 'SZ', 'STOCK', '银行', '金融', '1991-04-03', 'Y', 'N',
  '2020-01-01 09:00:00', '2020-01-01 09:00:00')
"""


def stock_info(db) -> dict[str, dict]:
    frame = db.read("SELECT * FROM stock_info ORDER BY symbol")
    return {row["symbol"]: row for row in frame.to_dicts()}


def expected_etfs(universe) -> dict[str, tuple[str, str]]:
    out = {}
    for exchange, market in (("XSHG", "SH"), ("XSHE", "SZ")):
        for row in universe.list_rows(exchange):
            out[f"{market}.{row['ticker']}"] = (row["name"], "Y" if row["is_active"] else "N")
    return out


def test_lists_land_exactly_and_a_rerun_changes_nothing(etl, db, universe):
    first = etl("sync-list")
    assert first.exit_code == 0, first.stderr
    s = first.summary
    assert s["status"] == "ok"
    assert s["etfs_new"] == s["etfs_listed"] == len(expected_etfs(universe))
    assert set(s["exchanges"]) == {"XSHG", "XSHE"}

    rows = stock_info(db)
    assert {k: (v["stock_name"], v["is_active"]) for k, v in rows.items()} == expected_etfs(
        universe
    )
    for symbol, row in rows.items():
        assert (row["is_etf"], row["stock_type"]) == ("Y", "ETF")
        assert row["market_code"] == symbol[:2] and row["stock_code"] == symbol[3:]
        assert row["created_at"] is not None and row["updated_at"] is not None

    second = etl("sync-list")
    assert second.exit_code == 0
    assert (
        second.summary["etfs_new"],
        second.summary["etfs_updated"],
        second.summary["etfs_deactivated"],
    ) == (0, 0, 0)
    assert stock_info(db) == rows  # updated_at included: nothing was touched


def test_new_changed_vanished_and_a_stock_that_is_an_etf(etl, db, universe):
    apply_migrations(db, echo=lambda _: None)
    db.execute(STOCKS)
    assert etl("sync-list").exit_code == 0
    before = stock_info(db)

    sh = [r["ticker"] for r in universe.list_rows("XSHG")]
    universe.rename("XSHG", sh[0], "改名ETF")
    universe.remove_etf("XSHG", sh[1])
    universe.add_etf("XSHG", "588888", "科创新ETF")
    # The bank turns out to be listed as an ETF (a data fix upstream).
    universe.add_etf("XSHE", "000001", "平安ETF")

    s = etl("sync-list").summary
    assert (s["etfs_new"], s["etfs_updated"], s["etfs_deactivated"]) == (1, 2, 1)
    after = stock_info(db)
    assert after[f"SH.{sh[0]}"]["stock_name"] == "改名ETF"
    assert after[f"SH.{sh[0]}"]["created_at"] == before[f"SH.{sh[0]}"]["created_at"]
    assert after[f"SH.{sh[1]}"]["is_active"] == "N"  # retired, not deleted
    assert after["SH.588888"]["is_etf"] == "Y"
    assert (after["SZ.000001"]["is_etf"], after["SZ.000001"]["stock_type"]) == ("Y", "ETF")
    assert after["SZ.000001"]["created_at"] == before["SZ.000001"]["created_at"]
    # The other stock keeps every value, updated_at included.
    assert after["SH.600000"] == before["SH.600000"]
    unchanged = [k for k in before if k.startswith("SZ.") and k != "SZ.000001"]
    assert all(after[k] == before[k] for k in unchanged)


def test_a_truncated_list_deactivates_nobody_and_ends_partial(etl, db, universe):
    assert etl("sync-list").exit_code == 0
    inactive = sum(1 for r in universe.list_rows("XSHG") if not r["is_active"])
    for row in universe.list_rows("XSHG")[3:]:
        universe.remove_etf("XSHG", row["ticker"])
    out = etl("sync-list")
    assert out.exit_code == 3
    s = out.summary
    assert s["status"] == "partial" and s["etfs_deactivated"] == 0
    assert s["exchanges"]["XSHG"]["status"] == "partial"
    assert "truncated" in " ".join(s["warnings"])
    stored = "SELECT count(*) FROM stock_info WHERE is_active = 'N' AND market_code = 'SH'"
    assert db.fetch(stored)[0][0] == inactive


def test_one_exchange_down_does_not_stop_the_other(etl, db, api, universe):
    api.add_fault("503", endpoint="list", exchange="XSHE", times=None)
    out = etl("sync-list")
    assert out.exit_code == 3
    s = out.summary
    assert s["exchanges"]["XSHE"]["status"] == "failed"
    assert "HTTP 503" in s["exchanges"]["XSHE"]["error"]
    assert s["exchanges"]["XSHG"]["status"] == "ok"
    assert set(stock_info(db)) == {f"SH.{r['ticker']}" for r in universe.list_rows("XSHG")}


def test_a_bad_token_is_fatal_and_writes_nothing(etl, db, data_dir):
    out = etl("sync-list", env={"TSANGHI_TOKEN": "wrong-token"})
    assert out.exit_code == 1
    assert "TSANGHI_TOKEN" in out.stderr
    assert db.fetch("SELECT count(*) FROM stock_info")[0][0] == 0
    runs = db.fetch("SELECT status, error FROM etl_runs")
    assert runs[0][0] == "failed" and "token" in runs[0][1]
    assert "wrong-token" not in out.stdout + out.stderr


def test_no_token_stops_before_anything(etl, db, data_dir):
    out = etl("sync-list", env={"TSANGHI_TOKEN": None, "STOCK_API_TOKEN": None})
    assert out.exit_code == 1
    assert "TSANGHI_TOKEN" in out.stderr
    assert not data_dir.exists()
    assert db.fetch("SELECT count(*) FROM pg_tables WHERE tablename = 'stock_info'")[0][0] == 0


def test_the_old_token_variable_is_accepted(etl):
    out = etl("sync-list", env={"TSANGHI_TOKEN": None, "STOCK_API_TOKEN": TOKEN})
    assert out.exit_code == 0, out.stderr


def test_the_token_is_in_no_output_and_no_snapshot_file(etl, data_dir, api):
    api.add_fault("drop", endpoint="list", exchange="XSHG", times=1)
    out = etl("sync-list", as_json=False)
    assert out.exit_code == 0, out.stderr
    assert TOKEN not in out.stdout + out.stderr
    files = [p for p in Path(data_dir).rglob("*") if p.is_file()]
    assert any(p.suffix == ".parquet" for p in files)
    for path in files:
        assert TOKEN.encode() not in path.read_bytes(), path


def test_status_shows_counts_by_market_and_runs(etl, db, universe):
    assert etl("sync-list").exit_code == 0
    out = etl("status")
    assert out.exit_code == 0
    status = out.summary
    counts = {m["market_code"]: (m["active"], m["inactive"]) for m in status["markets"]}
    expected = expected_etfs(universe)
    for market in ("SH", "SZ"):
        flags = [a for s, (_, a) in expected.items() if s.startswith(market)]
        assert counts[market] == (flags.count("Y"), flags.count("N"))
    assert status["runs"][0]["command"] == "sync-list" and status["runs"][0]["status"] == "ok"
    human = etl("status", as_json=False)
    assert "SH:" in human.stdout and "sync-list" in human.stdout


def test_etf_queries_filter_by_market_and_activity(etl, db, universe):
    from etl import queries

    apply_migrations(db, echo=lambda _: None)
    db.execute(STOCKS)
    assert etl("sync-list").exit_code == 0
    expected = expected_etfs(universe)
    for market in ("SH", "SZ"):
        for active in (True, False):
            got = queries.etfs(db, market=market, active=active)["symbol"].to_list()
            want = sorted(
                s for s, (_, a) in expected.items() if s[:2] == market and (a == "Y") == active
            )
            assert got == want
    assert sorted(queries.etfs(db)["symbol"].to_list()) == sorted(expected)  # never the stocks
    counts = {
        r["market_code"]: r["active"] + r["inactive"] for r in queries.etf_counts(db).to_dicts()
    }
    assert counts == {m: sum(1 for s in expected if s[:2] == m) for m in ("SH", "SZ")}
