"""Hostile input: symbols from the command line and tickers from the API are
validated before they go anywhere, data never becomes SQL text, and bad
configuration (an unwritable data directory among it) stops a run before any
API call.
"""

from __future__ import annotations

from pathlib import Path

import polars as pl
import pytest
from crashhelper import active_tickers, dbname, rejects
from etlfixtures import TOKEN

# Pieces of the hostile values below that no statement of the tool contains.
HOSTILE = ("510050'", "Robert'", "1'; DROP", "5100501", "15991", "坏ETF", "５１００５０")


@pytest.fixture
def db(db_embedded_only):
    """Embedded only: its superuser can switch on statement logging for one database."""
    return db_embedded_only


def untouched(db) -> bool:
    """No table was ever created: the run stopped before opening the database for work."""
    return db.fetch("SELECT to_regclass('etl_runs') IS NULL AND to_regclass('stock_info') IS NULL")[
        0
    ][0]


BAD_SYMBOLS = [
    "SH.51005'; DROP TABLE stock_info; --",
    "SH.510050' OR '1'='1",
    "SZ.159915;",
    "XX.510050",  # no such market
    "SS.510050",
    "SH.51005",  # five digits
    "SH.5100500",  # seven
    "510050",  # no market
    "SH510050",
    "SH.51O050",  # a letter O
    "SH.５１００５０",  # fullwidth digits
    "SH.510050\x00",
    "",
]


def test_bad_symbols_are_usage_errors_before_anything_happens(etl, db, api, data_dir):
    for symbol in BAD_SYMBOLS:
        for command in ("sync-prices", "sync"):
            out = etl(command, "--symbol", "SH.510050", "--symbol", symbol)
            assert out.exit_code == 2, (command, symbol)
            assert "Invalid value for --symbol" in out.stderr.replace("'--symbol'", "--symbol")
            assert f"invalid symbol {symbol!r}" in out.stderr
            assert "expected SH.<6 digits> or SZ.<6 digits>" in out.stderr
    assert api.request_count() == 0
    assert untouched(db)
    assert not data_dir.exists()  # not even a snapshot directory


@pytest.mark.parametrize(
    "args",
    [
        ["sync", "--exchange", "XSHX"],
        ["sync-prices", "--start-date", "2024-13-01"],
        ["sync-prices", "--start-date", "2024-03-01", "--end-date", "2024-02-01"],
        ["sync", "--workers", "0"],
        ["sync", "--max-failed-share", "1.5"],
    ],
)
def test_bad_flags_are_usage_errors(etl, db, api, args):
    out = etl(*args)
    assert out.exit_code == 2, out.stderr
    assert "Invalid value" in out.stderr or "Error:" in out.stderr
    assert api.request_count() == 0 and untouched(db)


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"ETL_WORKERS": "8; rm -rf /"}, "ETL_WORKERS='8; rm -rf /' is not a valid int"),
        ({"TSANGHI_BASE_URL": "file:///etc/passwd"}, "TSANGHI_BASE_URL must start with http"),
        ({"TSANGHI_TOKEN": None, "STOCK_API_TOKEN": None}, "set TSANGHI_TOKEN"),
        ({"DATABASE_URL": "mysql://u:pw-31f@host/db"}, "mysql://u:***@host/db"),
    ],
)
def test_bad_configuration_is_fatal_before_any_fetch(etl, db, api, env, message):
    out = etl("sync", env=env)
    assert out.exit_code == 1, out.stderr
    assert message in out.stderr
    assert "pw-31f" not in out.stderr
    assert api.request_count() == 0 and untouched(db)


@pytest.mark.parametrize("database", ["given", "embedded"])
def test_an_unwritable_data_directory_is_reported_before_any_fetch(
    etl, db, api, tmp_path, database
):
    # Tests run as root, whom permissions do not stop: a regular file in the
    # path stops everyone.
    blocker = tmp_path / "not-a-directory"
    blocker.write_text("a file, not a directory")
    env = {"ETL_DATA_DIR": str(blocker / "data")}
    if database == "embedded":
        env["DATABASE_URL"] = None
    for command in ("sync", "sync-list"):
        out = etl(command, env=env)
        assert out.exit_code == 1, out.stderr
        assert str(blocker / "data") in out.stderr
        assert "set ETL_DATA_DIR to a writable directory" in out.stderr
    out = etl("sync", env={"ETL_DATA_DIR": str(blocker)})  # the data directory is a file
    assert out.exit_code == 1 and str(blocker) in out.stderr
    assert api.request_count() == 0
    assert untouched(db)


def test_odd_tickers_from_the_api_are_rejected_rows_and_never_reach_sql(
    etl, db, embedded_pg, api, universe
):
    log_file = Path(db.fetch("SELECT current_setting('data_directory')")[0][0]) / "log"
    embedded_pg.admin(f"ALTER DATABASE \"{dbname(db)}\" SET log_statement = 'all'")
    start = log_file.stat().st_size

    bad_list = {
        "51005": "ticker is not six digits",
        "5100501": "ticker is not six digits",
        "510050'; DROP TABLE stock_info; --": "ticker is not six digits",
        "５１００５０": "ticker is not six digits",
        " 510050": "ticker is not six digits",
        None: "ticker missing",
    }
    universe.extra_list_rows(
        "XSHG",
        [{"ticker": t, "name": "坏ETF", "is_active": 1, "exchange_code": "XSHG"} for t in bad_list]
        + [
            {
                "ticker": "510999",
                "name": "Robert'); DROP TABLE stock_info; --",
                "is_active": 1,
                "exchange_code": "XSHG",
            }
        ],
    )
    ticker = active_tickers(universe, "XSHE")[0]
    rows = universe.daily_rows("XSHE", ticker)
    odd = [
        dict(rows[0], ticker="1'; DROP TABLE stock_daily_data; --"),
        dict(rows[1], ticker="15991"),
        dict(rows[2], ticker=None),  # no ticker: the one asked for
    ]
    universe.set_rows("XSHE", ticker, [*odd, *rows[3:]])

    out = etl("sync")
    assert out.exit_code == 3, out.stderr  # rows were refused: partial
    s = out.summary
    assert s["list_rows_rejected"] == len(bad_list) and s["rows_rejected"] == 2
    got = rejects(Path(s["snapshot"]))
    listed = got.filter(got["endpoint"] == "list")
    assert sorted(zip(listed["ticker"], listed["reason"], strict=True), key=str) == sorted(
        bad_list.items(), key=str
    )
    daily = got.filter(got["endpoint"] == "daily")
    assert sorted(daily["ticker"]) == sorted(["1'; DROP TABLE stock_daily_data; --", "15991"])
    assert set(daily["reason"]) == {"ticker is not six digits"}

    # Only well-formed symbols were stored; a hostile name is stored as data, verbatim.
    symbols = [r[0] for r in db.fetch("SELECT symbol FROM stock_info")]
    assert symbols and all(
        len(s) == 9 and s[3:].isdigit() and s[:3] in ("SH.", "SZ.") for s in symbols
    )
    name = db.fetch("SELECT stock_name FROM stock_info WHERE symbol = 'SH.510999'")
    assert name == [("Robert'); DROP TABLE stock_info; --",)]
    stored = db.fetch("SELECT count(*) FROM stock_daily_data WHERE symbol = $1", (f"SZ.{ticker}",))
    assert stored[0][0] == len(rows) - 2

    # The server saw every statement of the run; none carried the hostile text.
    with open(log_file, encoding="utf-8", errors="replace") as handle:
        handle.seek(start)
        logged = handle.read()
    statements = [line for line in logged.splitlines() if "statement:" in line or "execute" in line]
    assert any("stock_daily_data" in line for line in statements)  # logging did work
    assert not [line for line in statements if any(h in line for h in HOSTILE)]


def test_a_text_body_quoting_the_request_leaves_no_token_in_any_reason(etl, db, api, universe):
    api.add_fault("body", endpoint="list", exchange="XSHE", times=None, status=502, body="echo")
    out = etl("sync", env={"ETL_HTTP_ATTEMPTS": "2"})
    assert out.exit_code == 3, out.stderr
    reason = out.summary["exchanges"]["XSHE"]["error"]
    assert reason == (
        "HTTP 502 with a body that is not JSON: 'bad gateway: GET /api/fin/etf/XSHE/list?"
        "token=***' (after 2 attempts)"
    )
    files = [p for p in Path(out.summary["snapshot"]).rglob("*") if p.is_file()]
    written = [
        pl.read_parquet(p).write_ndjson() if p.suffix == ".parquet" else p.read_text()
        for p in files
    ]
    assert any("bad gateway: GET /api/fin/etf/XSHE/list?token=***" in text for text in written)
    for text in (out.stdout, out.stderr, *written):
        assert TOKEN not in text and TOKEN.split("-")[1] not in text
    assert db.fetch(
        "SELECT count(*) FROM etl_runs WHERE counts::text LIKE $1", (f"%{TOKEN}%",)
    ) == [(0,)]
