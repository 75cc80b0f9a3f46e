"""Command line: thin click wrappers over the library; errors become exit codes here.

Exit codes: 0 ok · 1 failed (configuration, database, token, or the outcome
policy in etl/outcome.py says failed) · 3 partial (some symbols or an exchange
failed, or rows were rejected; the rest is loaded), or for `etl check`: it found
something · 4 another sync holds the database's lock · 2 bad usage.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from datetime import datetime
from decimal import Decimal
from pathlib import Path
from typing import Any, NoReturn

import click

from etl import actions, jsonout, picture, pipeline, queries, read, render, retention
from etl import export as exporter
from etl.calendar import shanghai_today
from etl.context import Progress
from etl.db import Database, open_database
from etl.errors import ConfigError, EtlError, LockHeldError
from etl.migrate import apply_migrations, require_schema
from etl.plan import PriceOptions
from etl.progress import LogHandler, ProgressBar
from etl.run import (
    EXIT_FAILED,
    EXIT_INTERRUPTED,
    EXIT_LOCKED,
    EXIT_OK,
    RunFailed,
    SignalAbort,
)
from etl.secrets import mask_url
from etl.settings import Settings
from etl.symbols import MARKETS, check_symbol

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
  1  failed: configuration, database or token error; no ETF list could be
     fetched; more than --max-failed-share of the symbols failed; more than
     ETL_REJECT_FAILED_SHARE (0.5) or all of the rows rejected; or the circuit
     breaker stopped the fetching (ETL_BREAKER_*). What loaded is kept.
  2  bad usage (unknown option, invalid value)
  3  partial: some symbols or an exchange failed, or rows were rejected
     (over ETL_REJECT_PARTIAL_SHARE, 0 = any); everything else loaded.
     etl check: it found holes, suspect rows, unrecorded splits or
     detected ratios that need the official one
  4  another sync is running on this database (see --wait)
  130, 143  interrupted by SIGINT or SIGTERM: what had arrived is
     loaded, the run is recorded as interrupted. A second signal aborts
     at once, with the code of that signal

\b
--json, -q and -v go before or after the command. With --json every outcome,
errors included, is one JSON object on stdout.
"""
log = logging.getLogger("etl")


class Ctx:
    def __init__(self, as_json: bool = False, quiet: bool = False, verbose: int = 0) -> None:
        self.as_json, self.quiet, self.verbose = as_json, quiet, verbose


def _setup_logging(quiet: bool, verbose: int) -> None:
    level = logging.WARNING if quiet else logging.DEBUG if verbose else logging.INFO
    handler = LogHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(message)s", "%H:%M:%S"))
    root = logging.getLogger("etl")
    root.handlers[:] = [handler]
    root.setLevel(level)
    root.propagate = False  # only our own loggers: urllib3 would log URLs with the token


class Fatal(click.ClickException):
    """A run that could not start or finish: exit 1, `Error: ...` (or JSON)."""

    exit_code = EXIT_FAILED


class Locked(click.ClickException):
    """Another sync holds the database's lock: exit 4."""

    exit_code = EXIT_LOCKED


# The JSON "status" of an outcome that has no run summary, by exit code.
_ERROR_STATUS = {
    EXIT_FAILED: "failed",
    2: "usage_error",
    EXIT_LOCKED: "locked",
    **{code: "interrupted" for code in EXIT_INTERRUPTED.values()},
}


def _error_object(message: str, exit_code: int) -> str:
    status = _ERROR_STATUS.get(exit_code, "failed")
    return jsonout.dumps(
        {"status": status, "exit_code": exit_code, "error": message, "reasons": [message]}
    )


def _wants_json(args: Sequence[str]) -> bool:
    """Whether --json was given anywhere, before `--`: known before click parses a thing,
    so that a usage error is reported as JSON too."""
    args = list(args)
    head = args[: args.index("--")] if "--" in args else args
    return "--json" in head


class EtlGroup(click.Group):
    """A group whose errors become one JSON object on stdout when --json is given."""

    def main(  # type: ignore[override]
        self,
        args: Sequence[str] | None = None,
        prog_name: str | None = None,
        complete_var: str | None = None,
        standalone_mode: bool = True,
        **extra: Any,
    ) -> Any:
        argv = list(sys.argv[1:] if args is None else args)
        as_json = standalone_mode and _wants_json(argv)
        try:
            return self._main(argv, prog_name, complete_var, standalone_mode, as_json, **extra)
        except SignalAbort as exc:  # a second Ctrl-C or SIGTERM: its own exit code, not 1
            if as_json:
                click.echo(_error_object(str(exc), exc.exit_code))
            click.echo(f"Error: {exc}", err=True)
            sys.exit(exc.exit_code)

    def _main(
        self,
        argv: list[str],
        prog_name: str | None,
        complete_var: str | None,
        standalone_mode: bool,
        as_json: bool,
        **extra: Any,
    ) -> Any:
        if not as_json:
            return super().main(argv, prog_name, complete_var, standalone_mode, **extra)
        try:
            result = super().main(argv, prog_name, complete_var, False, **extra)
        except click.ClickException as exc:
            click.echo(_error_object(exc.format_message(), exc.exit_code))
            click.echo(f"Error: {exc.format_message()}", err=True)
            sys.exit(exc.exit_code)
        except click.Abort:
            click.echo(_error_object("aborted", EXIT_FAILED))
            click.echo("Aborted!", err=True)
            sys.exit(EXIT_FAILED)
        except Exception as exc:  # a bug: still one JSON object, then the traceback
            click.echo(_error_object(mask_url(f"{type(exc).__name__}: {exc}"), EXIT_FAILED))
            raise
        sys.exit(result if isinstance(result, int) else EXIT_OK)


def _set_global(ctx: click.Context, param: click.Parameter, value: Any) -> Any:
    """--json, -q, -v: the same flags at the group and at every command."""
    if value:
        obj = ctx.ensure_object(Ctx)
        if param.name == "as_json":
            obj.as_json = True
        elif param.name == "quiet":
            obj.quiet = True
        elif param.name == "verbose":
            obj.verbose += value
        _setup_logging(obj.quiet, obj.verbose)
    return value


def _options(*decorators: Any) -> Callable[[Any], Any]:
    """Several options as one decorator, in the order --help lists them."""

    def apply(fn: Any) -> Any:
        for decorator in reversed(decorators):
            fn = decorator(fn)
        return fn

    return apply


_global_options = _options(
    click.option(
        "--json",
        "as_json",
        is_flag=True,
        expose_value=False,
        is_eager=True,
        callback=_set_global,
        help="Print the outcome as one JSON object on stdout.",
    ),
    click.option(
        "-q",
        "--quiet",
        is_flag=True,
        expose_value=False,
        is_eager=True,
        callback=_set_global,
        help="No progress bar and only warnings on stderr.",
    ),
    click.option(
        "-v",
        "--verbose",
        count=True,
        expose_value=False,
        is_eager=True,
        callback=_set_global,
        help="Show the plan, each request (no token) and the target database.",
    ),
)


@click.group(
    cls=EtlGroup,
    help=GROUP_HELP + EXIT_HELP,
    context_settings={"help_option_names": ["-h", "--help"]},
)
@_global_options
@click.version_option(package_name="etf-sync")
@click.pass_context
def cli(ctx: click.Context) -> None:
    """Keep a PostgreSQL database of Chinese ETFs current from the Tsanghi API."""
    obj = ctx.ensure_object(Ctx)
    _setup_logging(obj.quiet, obj.verbose)


def _settings(**flags: Any) -> Settings:
    try:
        return Settings.from_env(**flags)
    except ConfigError as exc:
        raise Fatal(str(exc)) from None


@contextmanager
def _errors(ctx: Ctx) -> Iterator[None]:
    """The library's named errors as the CLI's exit codes, in one place: 4 for the
    sync lock; 1 for the rest, after the summary of a run that failed (it carries
    the error)."""
    try:
        yield
    except LockHeldError as exc:
        raise Locked(str(exc)) from None
    except RunFailed as exc:
        _print_summary(ctx, exc.summary)
        click.echo(f"Error: {exc.error}", err=True)
        sys.exit(EXIT_FAILED)
    except EtlError as exc:
        raise Fatal(str(exc)) from None


@contextmanager
def _progress(ctx: Ctx) -> Iterator[Progress]:
    """A run's progress bar, gone before anything else is printed."""
    bar = ProgressBar(enabled=not ctx.quiet and not ctx.as_json)
    try:
        yield bar.update
    finally:
        bar.close()


def _finish(ctx: Ctx, settings: Settings, result: pipeline.RunResult) -> NoReturn:
    """Prune old snapshots (ETL_KEEP_*), print a run's summary and exit with its code."""
    _apply_retention(settings)
    _print_summary(ctx, result.summary)
    if result.status == "failed" and result.summary.get("reasons"):
        click.echo(f"Error: {'; '.join(result.summary['reasons'])}", err=True)
    sys.exit(result.exit_code)


def _apply_retention(settings: Settings) -> None:
    """ETL_KEEP_DAYS / ETL_KEEP_SNAPSHOTS after a run; never fails the run."""
    if settings.keep_days is None and settings.keep_snapshots is None:
        return
    try:
        retention.prune(settings.raw_dir, settings.keep_days, settings.keep_snapshots)
    except (EtlError, OSError) as exc:
        log.warning("snapshot retention: %s", exc)


def _print_summary(ctx: Ctx, summary: dict[str, Any]) -> None:
    click.echo(jsonout.dumps(summary) if ctx.as_json else render.summary_text(summary))


@contextmanager
def _read_database(settings: Settings) -> Iterator[Database]:
    """The database a read command works on. A read never creates the embedded one:
    where there is none yet, say how to make it (or where the demo's is)."""
    pg = settings.data_dir / "pg"
    if settings.database_url is None and not pg.is_dir():
        hint = "run 'etl sync' (make sync-etf) first, or set DATABASE_URL"
        demo = settings.data_dir / "demo" / "pg"
        if demo.is_dir():
            hint += (
                f"; the demo's database is in {demo.parent}: "
                f"ETL_DATA_DIR={demo.parent} etl status (or make status ETL_DATA_DIR={demo.parent})"
            )
        raise Fatal(f"no database yet: {pg} does not exist; {hint}")
    with open_database(settings.database_url, settings.data_dir) as db:
        log.debug("target database: %s", db.display_url)
        yield db


# Options: each declared once here, and put together per command below.


def _exchanges_arg(ctx: click.Context, param: click.Parameter, value: tuple[str, ...]) -> Any:
    """The exchanges chosen, upper-case and once each; both when none is given."""
    return tuple(dict.fromkeys(e.upper() for e in value)) or tuple(MARKETS)


def _symbols_arg(ctx: click.Context, param: click.Parameter, value: tuple[str, ...]) -> Any:
    try:
        return tuple(check_symbol(s) for s in value)
    except ConfigError as exc:
        raise click.BadParameter(str(exc), param_hint="--symbol") from None


_DATA_DIR = click.option(
    "--data-dir",
    type=click.Path(path_type=Path),
    help="Snapshots and the embedded database [env ETL_DATA_DIR; ./data].",
)
_BASE_URL = click.option("--base-url", help="API base URL [env TSANGHI_BASE_URL].")
_EXCHANGE = click.option(
    "--exchange",
    "exchanges",
    multiple=True,
    type=click.Choice(list(MARKETS), case_sensitive=False),
    callback=_exchanges_arg,
    help="Only this exchange (repeatable); both by default.",
)
_SYMBOL = click.option(
    "--symbol",
    "symbols",
    multiple=True,
    callback=_symbols_arg,
    help="Only this ETF, active or delisted, e.g. SH.510050 (repeatable).",
)
_WAIT_TIMEOUT = click.option(
    "--wait-timeout",
    type=click.FloatRange(0),
    metavar="SECONDS",
    help="Wait at most this long for a running sync, then exit with 4 [env ETL_WAIT_TIMEOUT].",
)


def _wait(help: str = "Wait for a running sync to finish instead of exiting with 4.") -> Any:
    return click.option("--wait", is_flag=True, help=help)


# A command that reads (or only writes files) needs the data directory; one that
# runs against the API also its base URL.
_read_options = _options(_DATA_DIR, _global_options)
_common = _options(_global_options, _BASE_URL, _DATA_DIR)

_sync_options = _options(
    _common,
    _EXCHANGE,
    _wait(),
    _WAIT_TIMEOUT,
    click.option("--workers", type=click.IntRange(1, 64), help="Concurrent API requests [8]."),
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
)

_price_options = _options(
    _SYMBOL,
    click.option(
        "--start-date",
        type=click.DateTime(["%Y-%m-%d"]),
        help=(
            "Where an ETF with no stored prices begins [the API's earliest]. ETFs "
            "with prices always continue from their latest stored day, so a later "
            "date never skips days and costs no extra request. With --full: the "
            "first day fetched again. E.g. --start-date 2020-01-01"
        ),
    ),
    click.option(
        "--end-date",
        type=click.DateTime(["%Y-%m-%d"]),
        help=(
            "Last trade date to fetch [today in Asia/Shanghai]. Later days are "
            "fetched by the next run without it. E.g. --end-date 2024-06-28"
        ),
    ),
    click.option(
        "--full",
        is_flag=True,
        help=(
            "Fetch every chosen ETF again from --start-date (or its first day) to "
            "--end-date and insert the days missing, gaps included; stored days "
            "are kept and never duplicated. E.g. --full --start-date 2024-01-01"
        ),
    ),
    click.option(
        "--overwrite",
        is_flag=True,
        help=(
            "Also correct stored rows whose open, high, low, close or volume differ "
            "from the source, and their derived columns. Only the days fetched are "
            "compared, so use it with --full: alone it changes nothing already "
            "stored. E.g. --full --overwrite --symbol SH.510050"
        ),
    ),
    click.option(
        "--batch-rows",
        type=click.IntRange(1),
        help="Daily rows per load transaction [250000].",
    ),
)

_PRICE_PARAMS = ("exchanges", "symbols", "start_date", "end_date", "full", "overwrite")


def _price_run(params: dict[str, Any]) -> tuple[PriceOptions, Settings]:
    """Split a price command's parameters into its options and its settings flags."""
    exchanges, symbols, start_date, end_date, full, overwrite = (
        params.pop(name) for name in _PRICE_PARAMS
    )
    end = end_date.date() if end_date else shanghai_today()
    start = start_date.date() if start_date else None
    if start and start > end:
        raise click.BadParameter(f"--start-date {start} is after --end-date {end}")
    options = PriceOptions(
        exchanges=exchanges, symbols=symbols, start=start, end=end, full=full, overwrite=overwrite
    )
    return options, _settings(**params)


@cli.command()
@_common
@click.pass_obj
def migrate(ctx: Ctx, data_dir: Path | None, base_url: str | None) -> None:
    """Create or upgrade the schema (sql/migrations), one line per applied file.

    Example: DATABASE_URL=postgresql://user@host/db etl migrate
    """
    settings = _settings(data_dir=data_dir, base_url=base_url)
    echo = log.info if ctx.as_json else click.echo
    with _errors(ctx), open_database(settings.database_url, settings.data_dir) as db:
        echo(f"Database: {db.display_url}")
        applied = apply_migrations(db, echo=echo)
    if ctx.as_json:
        click.echo(jsonout.dumps({"status": "ok", "database": db.display_url, "applied": applied}))


@cli.command("sync-list")
@_sync_options
@click.pass_obj
def sync_list(ctx: Ctx, exchanges: tuple[str, ...], wait: bool, **flags: Any) -> None:
    """Sync the ETF lists of XSHG and XSHE into stock_info (is_etf = 'Y').

    Example: TSANGHI_TOKEN=... etl sync-list --exchange XSHG
    """
    settings = _settings(**flags)
    with _errors(ctx):
        result = pipeline.sync_lists(settings, exchanges, wait=wait)
    _finish(ctx, settings, result)


@cli.command("sync-prices")
@_sync_options
@_price_options
@click.pass_obj
def sync_prices(ctx: Ctx, wait: bool, **params: Any) -> None:
    """Sync daily prices of the active ETFs into stock_daily_data, incrementally.

    Example: etl sync-prices --symbol SH.510050 --start-date 2024-01-01
    """
    options, settings = _price_run(params)
    with _errors(ctx), _progress(ctx) as progress:
        result = pipeline.sync_prices(settings, options, wait=wait, progress=progress)
    _finish(ctx, settings, result)


@cli.command("sync")
@_sync_options
@_price_options
@click.pass_obj
def sync_all(ctx: Ctx, wait: bool, **params: Any) -> None:
    """ETF lists, then daily prices: the nightly job behind `make sync-etf`.

    Example: TSANGHI_TOKEN=... etl sync --json
    """
    options, settings = _price_run(params)
    with _errors(ctx), _progress(ctx) as progress:
        result = pipeline.sync(settings, options, wait=wait, progress=progress)
    _finish(ctx, settings, result)


@cli.command()
@click.argument("snapshot", type=click.Path(exists=True, file_okay=False, path_type=Path))
@_wait()
@_WAIT_TIMEOUT
@_read_options
@click.pass_obj
def replay(
    ctx: Ctx, snapshot: Path, wait: bool, wait_timeout: float | None, data_dir: Path | None
) -> None:
    """Load a snapshot directory again, with no API calls.

    Rebuilds the rows the run that wrote it loaded; safe to repeat.

    Example: etl replay data/raw/20261126T103000Z-1a2b3c --json
    """
    settings = _settings(data_dir=data_dir, wait_timeout=wait_timeout)
    with _errors(ctx):
        result = pipeline.replay(settings, snapshot, wait=wait)
    _finish(ctx, settings, result)


@cli.command()
@_read_options
@click.pass_obj
def status(ctx: Ctx, data_dir: Path | None) -> None:
    """ETF counts by market, freshness, and the last runs.

    Example: etl status --json
    """
    settings = _settings(data_dir=data_dir)
    # A read command: it never creates a database nor changes its schema.
    with _errors(ctx), _read_database(settings) as db:
        require_schema(db)
        counts, runs = queries.etf_counts(db), queries.recent_runs(db)
    if ctx.as_json:
        click.echo(jsonout.dumps({"status": "ok", "markets": counts, "runs": runs}))
    else:
        click.echo(render.status_text(counts, runs))


# etl check: exit 3 when it finds something (the code of a partial sync: look).
EXIT_FINDINGS = 3


@cli.command("check")
@_EXCHANGE
@_SYMBOL
@click.option(
    "--picture",
    "picture_path",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Also write the stored coverage per exchange and month as one HTML file.",
)
@click.option(
    "--repair",
    is_flag=True,
    help="Fetch the holes and suspect rows again (one range per ETF), then check again.",
)
@_wait("With --repair: wait for a running sync instead of exiting with 4.")
@_read_options
@click.pass_obj
def check_cmd(
    ctx: Ctx,
    exchanges: tuple[str, ...],
    symbols: tuple[str, ...],
    picture_path: Path | None,
    repair: bool,
    wait: bool,
    data_dir: Path | None,
) -> None:
    """Audit the stored ETF history against the exchange calendar.

    Reports holes (trading days with no row between an ETF's first and last
    stored row, and after its last one while it is active), suspect rows
    (zero_volume streaks, ohlc inconsistencies, not_midnight trade dates, rows on
    a not_trading_day) and share splits (an open beyond the ETF's daily limit
    that the whole bar agrees with; unrecorded ones are findings, and so are
    detected ratios that are not round: needs_official_ratio). Findings confirmed in
    etl_check_confirmed are left out. Only reads. Exit 0 when clean, 3 when it
    finds something, 1 when there is nothing to audit (no stored prices for the
    ETFs chosen) or a --symbol is not an ETF of the chosen exchanges.

    --repair asks the API again for each ETF's findings in one request, from its
    first to its last: missing days are inserted, stored rows whose prices differ
    from the source are corrected, unrecorded splits are recorded, and what the
    source confirms (a suspension, a row it gives as stored) is noted in
    etl_check_confirmed. Then the check runs again and its exit code says what is
    left.

    \b
    Example: etl check
    Example: etl check --symbol SH.510050 --json
    Example: etl check --exchange XSHG --picture coverage.html
    Example: etl check --repair
    """
    settings = _settings(data_dir=data_dir)
    repaired = _repair(ctx, settings, exchanges, symbols, wait) if repair else None
    with _errors(ctx):
        report = pipeline.check(settings, exchanges, symbols or None)
    if picture_path is not None:
        _write_picture(report, picture_path)
    if ctx.as_json:
        click.echo(jsonout.dumps(_check_object(report, picture_path, repaired)))
    else:
        click.echo(render.check_text(report, picture_path))
    if repaired is not None and repaired.status in ("failed", "interrupted"):
        sys.exit(repaired.exit_code)
    sys.exit(EXIT_OK if report.clean else EXIT_FINDINGS)


def _repair(
    ctx: Ctx, settings: Settings, exchanges: tuple[str, ...], symbols: tuple[str, ...], wait: bool
) -> pipeline.RunResult:
    """check --repair: the repair run, its summary printed before the check's text."""
    with _errors(ctx), _progress(ctx) as progress:
        result = pipeline.repair(settings, exchanges, symbols, wait=wait, progress=progress)
    _apply_retention(settings)
    if not ctx.as_json:
        _print_summary(ctx, result.summary)
    return result


def _write_picture(report: pipeline.CheckReport, path: Path) -> None:
    try:
        picture.write_coverage(report, path)
    except OSError as exc:
        raise Fatal(f"cannot write {path}: {exc.strerror or exc}") from None


def _check_object(
    report: pipeline.CheckReport, picture_path: Path | None, repaired: pipeline.RunResult | None
) -> dict[str, Any]:
    """etl check --json: the report, the picture's path and the repair's summary."""
    out = report.as_dict()
    if picture_path is not None:
        out["picture"] = str(picture_path)
    if repaired is not None:
        out["repair"] = repaired.summary
    return out


FORMATS = ("table", "csv", "json", "parquet")


@cli.command("query")
@click.argument("sql")
@click.option(
    "--format",
    "fmt",
    type=click.Choice(FORMATS),
    help="Output format [table; json with --json]. parquet needs -o.",
)
@click.option(
    "-o",
    "--output",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Write to this file instead of stdout.",
)
@_read_options
@click.pass_obj
def query_cmd(
    ctx: Ctx, sql: str, fmt: str | None, output: Path | None, data_dir: Path | None
) -> None:
    """Run one read-only SQL query on the configured database and print the rows.

    Works on the embedded database too. Decimals stay exact (NUMERIC(10,4) shows
    4 places at most, never a float); a repeated column name gets _2, _3, ...
    Read-only: one SELECT, WITH, VALUES or TABLE statement in a read-only
    transaction; writes and server functions that act outside it
    (pg_terminate_backend, set_config, lo_*, dblink, ...) are refused in one line.

    Example: etl query "SELECT symbol, stock_name FROM stock_info WHERE is_etf = 'Y' ORDER BY symbol LIMIT 5"
    """
    fmt = fmt or ("json" if ctx.as_json else "table")
    if fmt == "parquet" and output is None:
        raise click.BadParameter("parquet output needs -o FILE", param_hint="--format")
    settings = _settings(data_dir=data_dir)
    with _errors(ctx), _read_database(settings) as db:
        frame = read.query(db, sql)
    _write_frame(frame, fmt, output)
    if output is not None and ctx.as_json and fmt != "json":
        click.echo(jsonout.dumps({"status": "ok", "rows": frame.height, "output": output}))


def _write_frame(frame: Any, fmt: str, output: Path | None) -> None:
    if fmt == "parquet":
        assert output is not None
        frame.write_parquet(output)
        return
    text = render.frame_text(frame, fmt)
    if output is None:
        click.echo(text, nl=False)
    else:
        output.write_text(text, encoding="utf-8")


@cli.command("export")
@click.argument("directory", type=click.Path(file_okay=False, path_type=Path))
@click.option("--full", is_flag=True, help="Write every partition again.")
@_read_options
@click.pass_obj
def export_cmd(ctx: Ctx, directory: Path, full: bool, data_dir: Path | None) -> None:
    """Write the ETF daily rows as Parquet, partitioned by exchange and year.

    DIRECTORY/exchange=XSHG/year=2024/data.parquet and so on, exact decimals.
    Incremental: only partitions whose rows changed since the last export are
    written again (DIRECTORY/_export.json records what each was written from).
    Read it with polars: pl.scan_parquet("DIRECTORY/**/*.parquet", hive_partitioning=True).

    Example: etl export data/export
    """
    settings = _settings(data_dir=data_dir)
    with _errors(ctx), _read_database(settings) as db:
        result = exporter.export(db, directory, full=full)
    if ctx.as_json:
        click.echo(jsonout.dumps(result.as_dict()))
    else:
        click.echo(render.export_text(directory, result))


def _symbol_arg(ctx: click.Context, param: click.Parameter, value: str) -> str:
    try:
        return check_symbol(value)
    except ConfigError as exc:
        raise click.BadParameter(str(exc)) from None


def _ratio_arg(ctx: click.Context, param: click.Parameter, value: str) -> Decimal:
    try:
        return actions.check_ratio(value)
    except ConfigError as exc:
        raise click.BadParameter(str(exc)) from None


@cli.command("record-action")
@click.argument("symbol", callback=_symbol_arg)
@click.argument("ex_date", metavar="EX_DATE", type=click.DateTime(["%Y-%m-%d"]))
@click.argument("ratio", callback=_ratio_arg)
@click.option("--note", help="Where the ratio comes from, e.g. the announcement's title and date.")
@_wait()
@_WAIT_TIMEOUT
@_read_options
@click.pass_obj
def record_action(
    ctx: Ctx,
    symbol: str,
    ex_date: datetime,
    ratio: Decimal,
    note: str | None,
    wait: bool,
    wait_timeout: float | None,
    data_dir: Path | None,
) -> None:
    """Record the official ratio of a share split, merge or conversion (份额拆分/折算).

    RATIO is new shares per old share, from the fund's announcement: 2 for a
    2-for-1 split, 0.1 for a 10-to-1 merge, 3.8165 for a 1:3.8165 conversion:
    an exact decimal from 0.001 to 1000 with at most 8 decimal places (no
    exponent, nan or inf).
    EX_DATE is the first trading day at the new price; the ETF's row of that day
    must be stored. The ratio replaces the one a sync detected from the prices
    (kept as detected_ratio), or is inserted; that row's price_change and
    price_change_pct are recomputed from it, and etf_daily_adjusted follows.
    Takes the sync lock, as a sync does.

    Example: etl record-action SH.510300 2024-03-11 3.8165 --note "conversion announced 2024-03-05"
    """
    settings = _settings(data_dir=data_dir, wait_timeout=wait_timeout)
    with _errors(ctx):
        result = actions.record_action(settings, symbol, ex_date.date(), ratio, note, wait=wait)
    if ctx.as_json:
        click.echo(jsonout.dumps({"status": "ok", **result.as_dict()}))
    else:
        click.echo(render.action_text(result))


@cli.command()
@click.option("--keep-days", type=click.IntRange(0), help="Keep snapshots younger than N days.")
@click.option("--keep", type=click.IntRange(0), help="Keep the N newest snapshots.")
@click.option("--dry-run", is_flag=True, help="Only list what would be removed.")
@_read_options
@click.pass_obj
def prune(
    ctx: Ctx, keep_days: int | None, keep: int | None, dry_run: bool, data_dir: Path | None
) -> None:
    """Remove old snapshot directories under ETL_DATA_DIR/raw.

    A snapshot goes when it is older than --keep-days and older than the --keep
    newest loaded ones (manifest.json says "loaded": true), and it is loaded but
    not the newest loaded, or its run failed ("status": "failed") before the
    newest loaded one. Never removed: the newest snapshot, the newest loaded
    one, and any that says neither (a run still going, or a killed one).
    Without options: ETL_KEEP_DAYS / ETL_KEEP_SNAPSHOTS, also applied after every sync.

    Example: etl prune --keep-days 30 --keep 10
    """
    settings = _settings(data_dir=data_dir)
    if keep_days is None and keep is None:
        keep_days, keep = settings.keep_days, settings.keep_snapshots
    with _errors(ctx):
        result = retention.prune(settings.raw_dir, keep_days, keep, dry_run=dry_run)
    if ctx.as_json:
        click.echo(jsonout.dumps({**result.as_dict(), "dry_run": dry_run}))
    else:
        click.echo(render.prune_text(result, dry_run))


def main() -> None:
    cli(prog_name="etl")
