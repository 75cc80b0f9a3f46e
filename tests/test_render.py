"""The text the commands print, from typed results alone: no database, no API.

The CLI tests see these through real runs; here are the lines a run rarely
reaches (capped lists, repairs, warnings, interrupted runs, dry runs)."""

from __future__ import annotations

from datetime import date, datetime
from decimal import Decimal
from pathlib import Path

import polars as pl

from etl import render
from etl.actions import ActionRecorded
from etl.check import CheckReport, CorporateAction, Hole, SuspectRow
from etl.export import ExportResult
from etl.retention import PruneResult


def test_a_full_sync_summary_line_by_line():
    summary = {
        "command": "sync",
        "run_id": "20261127T103000Z-1a2b3c",
        "status": "partial",
        "seconds": 12.5,
        "requests": 27,
        "snapshot": "data/raw/20261127T103000Z-1a2b3c",
        "etfs_listed": 1200,
        "etfs_new": 3,
        "etfs_updated": 2,
        "etfs_deactivated": 1,
        "exchanges": {
            "XSHG": {"status": "ok"},
            "XSHE": {"status": "failed", "error": "HTTP 503 (after 5 attempts)"},
        },
        "symbols_total": 1201,
        "inactive_synced": 1,
        "symbols_ok": 1180,
        "symbols_up_to_date": 20,
        "symbols_failed": 1,
        "failed": [{"symbol": "SZ.159001", "reason": "HTTP 404 (not retried)"}],
        "rows_fetched": 1234567,
        "rows_inserted": 1200000,
        "rows_updated": 0,
        "rows_rejected": 3,
        "reasons": ["1 of 1,201 ETFs failed", "3 of 1,234,567 rows rejected"],
        "warnings": ["2 rows stored with price_change_pct NULL"],
    }
    assert render.summary_text(summary) == "\n".join(
        [
            "sync 20261127T103000Z-1a2b3c: PARTIAL in 12.5s, 27 API requests",
            "  ETF lists: 1200 listed, 3 new, 2 updated, 1 deactivated",
            "    XSHE: failed HTTP 503 (after 5 attempts)",
            "  Prices: 1201 ETFs (1 inactive), 1180 fetched, 20 up to date, 1 failed; "
            "1,234,567 rows fetched, 1,200,000 inserted, 0 updated, 3 rejected",
            "    SZ.159001: HTTP 404 (not retried)",
            "  Why partial: 1 of 1,201 ETFs failed",
            "  Why partial: 3 of 1,234,567 rows rejected",
            "  Warning: 2 rows stored with price_change_pct NULL",
            "  Rejected rows and reasons: data/raw/20261127T103000Z-1a2b3c/rejects/",
            "  Snapshot: data/raw/20261127T103000Z-1a2b3c",
        ]
    )


def test_an_interrupted_repair_lists_twenty_failures_and_counts_the_rest():
    failed = [{"symbol": f"SH.5100{i:02d}", "reason": "timeout"} for i in range(23)]
    summary = {
        "command": "repair",
        "run_id": "r1",
        "status": "interrupted",
        "interrupted_by": "SIGTERM",
        "snapshot": "s",
        "symbols_total": 23,
        "symbols_ok": 0,
        "symbols_up_to_date": 0,
        "symbols_failed": 23,
        "failed": failed,
        "rows_fetched": 0,
        "rows_inserted": 0,
        "rows_rejected": 0,
        "repair_ranges": [("SH.510000", date(2024, 1, 2), date(2024, 1, 5))],
        "findings_confirmed": 2,
        "splits_recorded": 0,
    }
    lines = render.summary_text(summary).split("\n")
    assert lines[0] == "repair r1: INTERRUPTED (SIGTERM) in 0s, 0 API requests"
    assert lines[1] == (
        "  Prices: 23 ETFs (0 inactive), 0 fetched, 0 up to date, 23 failed; "
        "0 rows fetched, 0 inserted, 0 updated, 0 rejected"
    )
    assert lines[2:22] == [f"    SH.5100{i:02d}: timeout" for i in range(20)]
    assert lines[22:] == [
        "    … and 3 more (see --json)",
        "  Repair: 1 ETFs asked again, 2 findings confirmed by the source, 0 splits recorded",
        "  Snapshot: s",
    ]


def test_status_with_no_etf_and_no_run():
    counts = pl.DataFrame(
        schema={
            "market_code": pl.String,
            "active": pl.Int64,
            "inactive": pl.Int64,
            "latest_trade_date": pl.Date,
            "behind": pl.Int64,
        }
    )
    runs = pl.DataFrame(
        schema={
            "run_id": pl.String,
            "command": pl.String,
            "status": pl.String,
            "started": pl.Datetime("us"),
            "seconds": pl.Float64,
            "error": pl.String,
        }
    )
    assert render.status_text(counts, runs) == (
        "ETFs by market:\n  none yet: run 'make sync-etf' (or 'etl sync')\nLast runs:\n  none"
    )


def test_status_rows():
    counts = pl.DataFrame(
        {
            "market_code": ["SH", "SZ"],
            "active": [700, 500],
            "inactive": [3, 0],
            "latest_trade_date": [date(2024, 12, 31), None],
            "behind": [2, 0],
        }
    )
    runs = pl.DataFrame(
        {
            "run_id": ["r2", "r1"],
            "command": ["sync", "sync-prices"],
            "status": ["dead", "ok"],
            "started": [None, datetime(2024, 12, 31, 19, 30, 5)],
            "seconds": [None, 4.2],
            "error": ["load stage of run r2: boom", None],
        }
    )
    assert render.status_text(counts, runs).split("\n") == [
        "ETFs by market:",
        "  SH: 700 active, 3 inactive; latest trade date 2024-12-31, 2 active ETFs behind it",
        "  SZ: 500 active, 0 inactive; latest trade date -, 0 active ETFs behind it",
        "Last runs:",
        "  -  sync        dead     r2  -s  load stage of run r2: boom",
        "  2024-12-31 19:30:05  sync-prices ok       r1  4.2s",
    ]


def test_check_text_shows_ten_of_each_finding():
    holes = [Hole(f"SH.51{i:04d}", date(2024, 1, 2), date(2024, 1, 3), 2) for i in range(12)]
    report = CheckReport(
        etfs=1150,
        latest={"XSHG": date(2024, 12, 31), "XSHE": None},
        holes=holes,
        suspect_rows=[SuspectRow("SZ.159001", date(2024, 5, 6), "zero_volume")],
        corporate_actions=[
            CorporateAction("SH.510300", date(2024, 3, 11), Decimal("3.8165"), "official", True),
            CorporateAction("SZ.159919", date(2024, 6, 3), Decimal("2"), "detected", False),
        ],
        seconds=3.04,
    )
    assert render.check_text(report, Path("coverage.html")).split("\n") == [
        "check: FINDINGS, 1,150 ETFs in 3.0s (latest: XSHG 2024-12-31, XSHE -)",
        "  12 holes (24 trading days), 1 suspect rows, 2 corporate actions (1 unrecorded)",
        "Holes (symbol, first day, last day, trading days):",
        *[f"  SH.51{i:04d}  2024-01-02  2024-01-03      2" for i in range(10)],
        "  ... and 2 more (see --json)",
        "Suspect rows (symbol, trading day, reason):",
        "  SZ.159001  2024-05-06  zero_volume",
        "Corporate actions (symbol, ex-date, new shares per old, source):",
        "  SH.510300  2024-03-11     3.8165  official",
        "  SZ.159919  2024-06-03          2  detected  unrecorded",
        "Coverage picture: coverage.html",
    ]


def test_query_table_csv_and_json():
    frame = pl.DataFrame(
        {"symbol": ["SH.510050"], "close_price": [Decimal("2.5000")]},
        schema={"symbol": pl.String, "close_price": pl.Decimal(10, 4)},
    )
    assert render.frame_text(frame, "table") == (
        "| symbol    | close_price |\n"
        "|-----------|-------------|\n"
        "| SH.510050 | 2.5000      |\n"
        "(1 rows)\n"
    )
    assert render.frame_text(frame, "csv") == "symbol,close_price\nSH.510050,2.5000\n"
    assert render.frame_text(frame, "json") == (
        '{"status": "ok", "columns": ["symbol", "close_price"], '
        '"rows": [{"symbol": "SH.510050", "close_price": 2.5000}]}\n'
    )


def test_export_prune_and_record_action_lines():
    export = ExportResult(
        Path("out"), written=["exchange=XSHG/year=2024"], unchanged=["a", "b"], rows_written=12345
    )
    assert render.export_text(Path("out"), export) == (
        "export out: 1 partitions written (12,345 rows), 2 unchanged, 0 removed"
    )
    pruned = PruneResult(
        removed=["raw/r1", "raw/r2"], kept=3, kept_unloaded=1, bytes_freed=2_500_000
    )
    assert render.prune_text(pruned, dry_run=True) == (
        "would remove raw/r1\nwould remove raw/r2\n"
        "would remove 2 snapshots (0 of failed runs, 2.5 MB), kept 3 (1 not known to be loaded)"
    )
    assert render.prune_text(PruneResult(), dry_run=False) == (
        "removed 0 snapshots (0 of failed runs, 0.0 MB), kept 0 (0 not known to be loaded)"
    )
    action = ActionRecorded(
        symbol="SH.510300",
        ex_date=date(2024, 3, 11),
        ratio=Decimal("3.8165"),
        previous_ratio=None,
        previous_source=None,
        detected_ratio=None,
        note=None,
        trade_date=datetime(2024, 3, 11),
        price_change=(Decimal("-2.9000"), Decimal("0.0100")),
        price_change_pct=(None, None),
    )
    assert render.action_text(action) == (
        "SH.510300 2024-03-11: ratio 3.8165 (official), none recorded before\n"
        "  price_change: -2.9000 -> 0.0100\n"
        "  price_change_pct: None (unchanged)"
    )
