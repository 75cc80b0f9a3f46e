"""What the commands print for a person: typed results in, text out.

Pure functions, no click and no I/O, so the CLI stays parse → call → print and
every line a user reads is written in one place. JSON output is etl.jsonout's.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import polars as pl

from etl import jsonout

if TYPE_CHECKING:
    from etl.actions import ActionRecorded
    from etl.check import CheckReport
    from etl.export import ExportResult
    from etl.retention import PruneResult

# Entries of each list the check's text shows; --json has them all.
SHOWN = 10
# Failed symbols a run's summary lists; --json has them all.
FAILED_SHOWN = 20


def summary_text(summary: dict[str, Any]) -> str:
    """A run's summary (etl.pipeline.RunResult.summary) as the lines printed after it."""
    status = summary["status"].upper()
    if summary.get("interrupted_by"):
        status += f" ({summary['interrupted_by']})"
    lines = [
        f"{summary.get('command', 'run')} {summary['run_id']}: {status} "
        f"in {summary.get('seconds', 0)}s, {summary.get('requests', 0)} API requests"
    ]
    if "etfs_listed" in summary:
        lines.append(
            f"  ETF lists: {summary['etfs_listed']} listed, {summary['etfs_new']} new, "
            f"{summary['etfs_updated']} updated, {summary['etfs_deactivated']} deactivated"
        )
        for exchange, result in summary.get("exchanges", {}).items():
            if result.get("status") != "ok":
                lines.append(
                    f"    {exchange}: {result['status']} {result.get('error', '')}".rstrip()
                )
    if "symbols_total" in summary:
        lines.append(
            f"  Prices: {summary['symbols_total']} ETFs "
            f"({summary.get('inactive_synced', 0)} inactive), {summary['symbols_ok']} fetched, "
            f"{summary['symbols_up_to_date']} up to date, {summary['symbols_failed']} failed; "
            f"{summary['rows_fetched']:,} rows fetched, {summary['rows_inserted']:,} inserted, "
            f"{summary.get('rows_updated', 0):,} updated, {summary['rows_rejected']:,} rejected"
        )
        for failure in summary.get("failed", [])[:FAILED_SHOWN]:
            lines.append(f"    {failure['symbol']}: {failure['reason']}")
        if len(summary.get("failed", [])) > FAILED_SHOWN:
            lines.append(f"    … and {len(summary['failed']) - FAILED_SHOWN} more (see --json)")
    if "repair_ranges" in summary:
        lines.append(
            f"  Repair: {len(summary['repair_ranges'])} ETFs asked again, "
            f"{summary['findings_confirmed']} findings confirmed by the source, "
            f"{summary['splits_recorded']} splits recorded"
        )
    for reason in summary.get("reasons", []):
        lines.append(f"  Why {summary['status']}: {reason}")
    for warning in summary.get("warnings", []):
        lines.append(f"  Warning: {warning}")
    if summary.get("rows_rejected") or summary.get("list_rows_rejected"):
        lines.append(f"  Rejected rows and reasons: {summary['snapshot']}/rejects/")
    lines.append(f"  Snapshot: {summary['snapshot']}")
    return "\n".join(lines)


def status_text(counts: pl.DataFrame, runs: pl.DataFrame) -> str:
    """`etl status`: ETFs per market (etl.queries.etf_counts), then the last runs
    (etl.queries.recent_runs)."""
    lines = ["ETFs by market:"]
    if counts.is_empty():
        lines.append("  none yet: run 'make sync-etf' (or 'etl sync')")
    for row in counts.iter_rows(named=True):
        latest = row["latest_trade_date"] or "-"
        lines.append(
            f"  {row['market_code']}: {row['active']} active, {row['inactive']} inactive; "
            f"latest trade date {latest}, {row['behind']} active ETFs behind it"
        )
    lines.append("Last runs:")
    if runs.is_empty():
        lines.append("  none")
    for row in runs.iter_rows(named=True):
        error = f"  {row['error']}" if row["error"] else ""
        started = f"{row['started']:%Y-%m-%d %H:%M:%S}" if row["started"] else "-"
        lines.append(
            f"  {started}  {row['command']:<11} {row['status']:<8} {row['run_id']}"
            f"  {row['seconds'] if row['seconds'] is not None else '-'}s{error}"
        )
    return "\n".join(lines)


def _capped(lines: list[str], total: int) -> list[str]:
    if total > SHOWN:
        lines = lines[:SHOWN] + [f"  ... and {total - SHOWN:,} more (see --json)"]
    return lines


def check_text(report: CheckReport, picture_path: Path | None) -> str:
    """`etl check`: the verdict and counts, then at most SHOWN entries of each finding."""
    c = report.counts
    latest = ", ".join(f"{e} {d or '-'}" for e, d in report.latest.items())
    verdict = "clean" if report.clean else "FINDINGS"
    out = [
        f"check: {verdict}, {c['etfs']:,} ETFs in {report.seconds:.1f}s (latest: {latest})",
        f"  {c['holes']:,} holes ({c['hole_days']:,} trading days), "
        f"{c['suspect_rows']:,} suspect rows, {c['corporate_actions']:,} corporate actions "
        f"({c['unrecorded_corporate_actions']:,} unrecorded)",
    ]
    if report.needs_official_ratio:
        n = c["needs_official_ratio"]
        out.append(
            f"  {n:,} detected {'ratio is' if n == 1 else 'ratios are'} not round: "
            "needs_official_ratio (etl record-action)"
        )
    if report.holes:
        out.append("Holes (symbol, first day, last day, trading days):")
        out += _capped(
            [f"  {h.symbol}  {h.start}  {h.end}  {h.days:>5,}" for h in report.holes],
            len(report.holes),
        )
    if report.suspect_rows:
        out.append("Suspect rows (symbol, trading day, reason):")
        out += _capped(
            [f"  {s.symbol}  {s.trade_date}  {s.reason}" for s in report.suspect_rows],
            len(report.suspect_rows),
        )
    if report.corporate_actions:
        out.append("Corporate actions (symbol, ex-date, new shares per old, source):")
        out += _capped(
            [
                f"  {a.symbol}  {a.ex_date}  {format(a.ratio, 'f'):>9}  {a.source}"
                + ("" if a.recorded else "  unrecorded")
                + ("  needs_official_ratio" if a in report.needs_official_ratio else "")
                for a in report.corporate_actions
            ],
            len(report.corporate_actions),
        )
    if picture_path is not None:
        out.append(f"Coverage picture: {picture_path}")
    return "\n".join(out)


def frame_text(frame: pl.DataFrame, fmt: str) -> str:
    """`etl query`'s rows as text: "csv", "json" (one object) or "table" (a markdown
    table with every row and column, then the row count). Ends with a newline."""
    if fmt == "csv":
        return frame.write_csv()
    if fmt == "json":
        return jsonout.dumps({"status": "ok", "columns": frame.columns, "rows": frame}) + "\n"
    with pl.Config(
        tbl_rows=-1,
        tbl_cols=-1,
        tbl_hide_dataframe_shape=True,
        tbl_hide_column_data_types=True,
        tbl_formatting="ASCII_MARKDOWN",
        fmt_str_lengths=200,
        tbl_width_chars=10_000,
    ):
        return f"{frame}\n({frame.height} rows)\n"


def export_text(directory: Path, result: ExportResult) -> str:
    """`etl export`: one line of partitions written, unchanged and removed."""
    return (
        f"export {directory}: {len(result.written)} partitions written "
        f"({result.rows_written:,} rows), {len(result.unchanged)} unchanged, "
        f"{len(result.removed)} removed"
    )


def action_text(result: ActionRecorded) -> str:
    """`etl record-action`: the ratio now recorded, what it replaced, and the ex-date
    row's change before and after."""
    was = (
        f"was {result.previous_ratio} ({result.previous_source})"
        if result.previous_ratio is not None
        else "none recorded before"
    )
    lines = [f"{result.symbol} {result.ex_date}: ratio {result.ratio} (official), {was}"]
    for name, (before, after) in (
        ("price_change", result.price_change),
        ("price_change_pct", result.price_change_pct),
    ):
        if before == after:
            lines.append(f"  {name}: {after} (unchanged)")
        else:
            lines.append(f"  {name}: {before} -> {after}")
    return "\n".join(lines)


def prune_text(result: PruneResult, dry_run: bool) -> str:
    """`etl prune`: each snapshot removed (or that would be), then the totals."""
    verb = "would remove" if dry_run else "removed"
    lines = [f"{verb} {path}" for path in result.removed]
    lines.append(
        f"{verb} {len(result.removed)} snapshots ({result.removed_failed} of failed runs, "
        f"{result.bytes_freed / 1e6:,.1f} MB), "
        f"kept {result.kept} ({result.kept_unloaded} not known to be loaded)"
    )
    return "\n".join(lines)
