"""Command line: thin click wrappers over the library; errors become exit codes here.

Exit codes: 0 ok · 1 failed (configuration, database, token, or too many
symbols failed) · 3 partial (some symbols or an exchange failed; the rest is
loaded) · 4 another sync holds the database's lock · 2 bad usage.
"""

from __future__ import annotations

import json
import logging
import sys
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import click

from etl import queries, sync
from etl.db import open_database
from etl.errors import ConfigError, EtlError, LockHeldError
from etl.migrate import apply_migrations
from etl.plan import PriceOptions
from etl.progress import ProgressBar
from etl.run import EXIT_FAILED, EXIT_LOCKED, RunFailed, execute, exit_code
from etl.settings import Settings
from etl.symbols import MARKETS, check_symbol

CHINA = timezone(timedelta(hours=8))  # Asia/Shanghai has no daylight saving time
GROUP_HELP = """Keep a PostgreSQL database of Chinese ETFs (XSHG, XSHE) current from the
Tsanghi API: ETF lists into stock_info, daily prices into stock_daily_data.

\b
Environment:
  TSANGHI_TOKEN     API token (or the older STOCK_API_TOKEN)
  DATABASE_URL      target database; unset: embedded PostgreSQL in ETL_DATA_DIR/pg
  TSANGHI_BASE_URL  API base [https://tsanghi.com/api/fin]
  ETL_DATA_DIR      snapshots and the embedded database [./data]
"""
EXIT_HELP = """
\b
Exit codes:
  0  ok
  1  failed: configuration, database or token error, or more than
     --max-failed-share of the symbols failed (what loaded is kept)
  2  bad usage
  3  partial: some symbols or an exchange failed; everything else loaded
  4  another sync is running on this database (see --wait)
  130, 143  interrupted by SIGINT or SIGTERM: what had arrived is
     loaded, the run is recorded as interrupted
"""
log = logging.getLogger("etl")


class Ctx:
    def __init__(self, as_json: bool, quiet: bool, verbose: int) -> None:
        self.as_json, self.quiet, self.verbose = as_json, quiet, verbose


def _setup_logging(quiet: bool, verbose: int) -> None:
    level = logging.WARNING if quiet else logging.DEBUG if verbose else logging.INFO
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(message)s", "%H:%M:%S"))
    root = logging.getLogger("etl")
    root.handlers[:] = [handler]
    root.setLevel(level)
    root.propagate = False  # only our own loggers: urllib3 would log URLs with the token


@click.group(help=GROUP_HELP + EXIT_HELP)
@click.option(
    "--json", "as_json", is_flag=True, help="Print the run summary as one JSON object on stdout."
)
@click.option("-q", "--quiet", is_flag=True, help="No progress bar and only warnings on stderr.")
@click.option("-v", "--verbose", count=True, help="More detail in the log lines.")
@click.version_option(package_name="etf-sync")
@click.pass_context
def cli(ctx: click.Context, as_json: bool, quiet: bool, verbose: int) -> None:
    """Keep a PostgreSQL database of Chinese ETFs current from the Tsanghi API."""
    _setup_logging(quiet, verbose)
    ctx.obj = Ctx(as_json, quiet, verbose)


def _settings(**flags: Any) -> Settings:
    try:
        return Settings.from_env(**flags)
    except ConfigError as exc:
        raise click.ClickException(str(exc)) from None


def _common(fn: Any) -> Any:
    fn = click.option(
        "--data-dir",
        type=click.Path(path_type=Path),
        help="Snapshots and the embedded database [env ETL_DATA_DIR; ./data].",
    )(fn)
    fn = click.option("--base-url", help="API base URL [env TSANGHI_BASE_URL].")(fn)
    return fn


def _sync_options(fn: Any) -> Any:
    for decorator in reversed(
        [
            click.option(
                "--exchange",
                "exchanges",
                multiple=True,
                type=click.Choice(list(MARKETS), case_sensitive=False),
                help="Only this exchange (repeatable); both by default.",
            ),
            click.option(
                "--wait",
                is_flag=True,
                help="Wait for a running sync to finish instead of exiting with 4.",
            ),
            click.option(
                "--workers", type=click.IntRange(1, 64), help="Concurrent API requests [8]."
            ),
            click.option(
                "--rate-limit",
                type=float,
                help="Requests per second over all workers [100; 0 = no limit].",
            ),
            click.option(
                "--max-failed-share",
                type=click.FloatRange(0, 1),
                help="Share of failed symbols above which the run fails [0.10].",
            ),
        ]
    ):
        fn = decorator(fn)
    return _common(fn)


def _price_options(fn: Any) -> Any:
    for decorator in reversed(
        [
            click.option(
                "--symbol",
                "symbols",
                multiple=True,
                help="Only this ETF, e.g. SH.510050 (repeatable).",
            ),
            click.option(
                "--start-date",
                type=click.DateTime(["%Y-%m-%d"]),
                help="First trade date for symbols with no stored history [API's earliest].",
            ),
            click.option(
                "--end-date",
                type=click.DateTime(["%Y-%m-%d"]),
                help="Last trade date to fetch [today in Asia/Shanghai].",
            ),
            click.option(
                "--full",
                is_flag=True,
                help="Fetch the whole range again and fill gaps; never duplicates.",
            ),
            click.option(
                "--overwrite",
                is_flag=True,
                help="Correct stored rows whose values differ from the source.",
            ),
            click.option(
                "--batch-rows",
                type=click.IntRange(1),
                help="Daily rows per load transaction [250000].",
            ),
        ]
    ):
        fn = decorator(fn)
    return fn


def _price_opts(
    exchanges: tuple[str, ...],
    symbols: tuple[str, ...],
    start_date: datetime | None,
    end_date: datetime | None,
    full: bool,
    overwrite: bool,
) -> PriceOptions:
    try:
        chosen = tuple(check_symbol(s) for s in symbols)
    except ConfigError as exc:
        raise click.BadParameter(str(exc), param_hint="--symbol") from None
    today = datetime.now(CHINA).date()
    end = end_date.date() if end_date else today
    start = start_date.date() if start_date else None
    if start and start > end:
        raise click.BadParameter(f"--start-date {start} is after --end-date {end}")
    return PriceOptions(
        exchanges=_exchanges(exchanges),
        symbols=chosen,
        start=start,
        end=end,
        full=full,
        overwrite=overwrite,
    )


def _exchanges(exchanges: tuple[str, ...]) -> tuple[str, ...]:
    return tuple(dict.fromkeys(e.upper() for e in exchanges)) or tuple(MARKETS)


def _run(
    ctx: Ctx,
    settings: Settings,
    command: str,
    body: Any,
    *,
    needs_api: bool = True,
    snapshot: Path | None = None,
    options: dict[str, Any] | None = None,
    wait: bool = False,
) -> None:
    bar = ProgressBar(enabled=not ctx.quiet and not ctx.as_json)
    try:
        summary = execute(
            settings,
            command,
            body,
            needs_api=needs_api,
            snapshot=snapshot,
            options=options,
            wait=wait,
            progress=bar.update,
        )
    except LockHeldError as exc:
        click.echo(f"Error: {exc}", err=True)
        sys.exit(EXIT_LOCKED)
    except RunFailed as exc:
        bar.close()
        _print_summary(ctx, exc.summary)
        click.echo(f"Error: {exc.error}", err=True)
        sys.exit(EXIT_FAILED)
    except EtlError as exc:
        bar.close()
        click.echo(f"Error: {exc}", err=True)
        sys.exit(EXIT_FAILED)
    bar.close()
    _print_summary(ctx, summary)
    sys.exit(exit_code(summary))


def _print_summary(ctx: Ctx, summary: dict[str, Any]) -> None:
    if ctx.as_json:
        click.echo(json.dumps(summary, ensure_ascii=False, default=str))
        return
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
            f"  Prices: {summary['symbols_total']} ETFs, {summary['symbols_ok']} fetched, "
            f"{summary['symbols_up_to_date']} up to date, {summary['symbols_failed']} failed; "
            f"{summary['rows_fetched']:,} rows fetched, {summary['rows_inserted']:,} inserted, "
            f"{summary.get('rows_updated', 0):,} updated, {summary['rows_rejected']:,} rejected"
        )
        for failure in summary.get("failed", [])[:20]:
            lines.append(f"    {failure['symbol']}: {failure['reason']}")
        if len(summary.get("failed", [])) > 20:
            lines.append(f"    … and {len(summary['failed']) - 20} more (see --json)")
    for warning in summary.get("warnings", []):
        lines.append(f"  Warning: {warning}")
    if summary.get("rows_rejected") or summary.get("list_rows_rejected"):
        lines.append(f"  Rejected rows and reasons: {summary['snapshot']}/rejects/")
    lines.append(f"  Snapshot: {summary['snapshot']}")
    click.echo("\n".join(lines))


@cli.command()
@_common
def migrate(data_dir: Path | None, base_url: str | None) -> None:
    """Create or upgrade the schema (sql/migrations), one line per applied file.

    Example: DATABASE_URL=postgresql://user@host/db etl migrate
    """
    settings = _settings(data_dir=data_dir, base_url=base_url)
    try:
        with open_database(settings.database_url, settings.data_dir) as db:
            click.echo(f"Database: {db.display_url}")
            apply_migrations(db, echo=click.echo)
    except EtlError as exc:
        raise click.ClickException(str(exc)) from None


@cli.command("sync-list")
@_sync_options
@click.pass_obj
def sync_list(ctx: Ctx, exchanges: tuple[str, ...], wait: bool, **flags: Any) -> None:
    """Sync the ETF lists of XSHG and XSHE into stock_info (is_etf = 'Y').

    Example: TSANGHI_TOKEN=... etl sync-list --exchange XSHG
    """
    chosen = _exchanges(exchanges)
    _run(
        ctx,
        _settings(**flags),
        "sync-list",
        lambda job: sync.sync_lists(job, chosen),
        options={"exchanges": chosen},
        wait=wait,
    )


@cli.command("sync-prices")
@_sync_options
@_price_options
@click.pass_obj
def sync_prices(ctx: Ctx, wait: bool, **params: Any) -> None:
    """Sync daily prices of the active ETFs into stock_daily_data, incrementally.

    Example: etl sync-prices --symbol SH.510050 --start-date 2024-01-01
    """
    opts, settings = _price_run(params)
    _run(
        ctx,
        settings,
        "sync-prices",
        lambda job: sync.sync_prices(job, opts),
        options=_describe(opts),
        wait=wait,
    )


@cli.command("sync")
@_sync_options
@_price_options
@click.pass_obj
def sync_all(ctx: Ctx, wait: bool, **params: Any) -> None:
    """ETF lists, then daily prices: the nightly job behind `make sync-etf`.

    Example: TSANGHI_TOKEN=... etl sync --json
    """
    opts, settings = _price_run(params)
    _run(
        ctx,
        settings,
        "sync",
        lambda job: sync.sync_all(job, opts),
        options=_describe(opts),
        wait=wait,
    )


def _price_run(params: dict[str, Any]) -> tuple[PriceOptions, Settings]:
    """Split a price command's parameters into its options and its settings flags."""
    names = ("exchanges", "symbols", "start_date", "end_date", "full", "overwrite")
    opts = _price_opts(*(params.pop(name) for name in names))
    return opts, _settings(**params)


def _describe(opts: PriceOptions) -> dict[str, Any]:
    return {
        "exchanges": list(opts.exchanges),
        "symbols": list(opts.symbols),
        "start": opts.start.isoformat() if opts.start else None,
        "end": opts.end.isoformat(),
        "full": opts.full,
        "overwrite": opts.overwrite,
    }


@cli.command()
@click.argument("snapshot", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.option(
    "--wait", is_flag=True, help="Wait for a running sync to finish instead of exiting with 4."
)
@click.option("--data-dir", type=click.Path(path_type=Path), help="[env ETL_DATA_DIR; ./data].")
@click.pass_obj
def replay(ctx: Ctx, snapshot: Path, wait: bool, data_dir: Path | None) -> None:
    """Load a snapshot directory again, with no API calls.

    Rebuilds the rows the run that wrote it loaded; safe to repeat.

    Example: etl replay data/raw/20261126T103000Z-1a2b3c
    """
    _run(
        ctx,
        _settings(data_dir=data_dir),
        "replay",
        sync.replay,
        needs_api=False,
        snapshot=snapshot,
        wait=wait,
    )


@cli.command()
@click.option("--data-dir", type=click.Path(path_type=Path), help="[env ETL_DATA_DIR; ./data].")
@click.pass_obj
def status(ctx: Ctx, data_dir: Path | None) -> None:
    """ETF counts by market, freshness, and the last runs.

    Example: etl status --json
    """
    settings = _settings(data_dir=data_dir)
    try:
        with open_database(settings.database_url, settings.data_dir) as db:
            apply_migrations(db, echo=log.debug)
            counts, runs = queries.etf_counts(db), queries.recent_runs(db)
    except EtlError as exc:
        raise click.ClickException(str(exc)) from None
    if ctx.as_json:
        click.echo(
            json.dumps(
                {"markets": counts.to_dicts(), "runs": runs.to_dicts()},
                ensure_ascii=False,
                default=str,
            )
        )
        return
    click.echo("ETFs by market:")
    if counts.is_empty():
        click.echo("  none yet: run 'make sync-etf' (or 'etl sync')")
    for row in counts.iter_rows(named=True):
        latest = row["latest_trade_date"].date() if row["latest_trade_date"] else "-"
        click.echo(
            f"  {row['market_code']}: {row['active']} active, {row['inactive']} inactive; "
            f"latest trade date {latest}, {row['behind']} active ETFs behind it"
        )
    click.echo("Last runs:")
    if runs.is_empty():
        click.echo("  none")
    for row in runs.iter_rows(named=True):
        error = f"  {row['error']}" if row["error"] else ""
        click.echo(
            f"  {row['started']}  {row['command']:<11} {row['status']:<8} {row['run_id']}"
            f"  {row['seconds'] if row['seconds'] is not None else '-'}s{error}"
        )


def main() -> None:
    cli(prog_name="etl")
