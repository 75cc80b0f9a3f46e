#!/usr/bin/env python3
"""Benchmarks of etf-sync on the synthetic universe of the local Tsanghi-compatible API.

    make bench                      # the full universe: 1,200 ETFs, ~3.97 M daily rows
    make bench ARGS="--etfs 100"    # a quick run on a smaller universe
    make bench ARGS="--json"        # also one JSON object with every figure, last on stdout

The universe is ``fakeapi.Universe.full()`` (the same one as
``python -m fakeapi --full``). It is served from a child process of its
own, so the server's CPU is never counted in the measured process; the child
also takes an "advance by one trading day" command for the nightly runs. The
database is a fresh embedded PostgreSQL under a temporary directory, or an
empty database given with ``--database-url``. Every figure comes from the
real CLI (``etl --json ...`` as a subprocess, its summary JSON) or from the
database drivers the project uses; each line names the command behind it.

The floor is a bare ``adbc_ingest`` of the backfill's rows into the
``stock_daily_data`` of a new, empty database after ``etl migrate`` (its
primary key and indexes); the replay is ``etl --json replay SNAPSHOT`` as a
fresh process into another such database, timed from spawn to exit. They are
measured in pairs, back to back (``--repeats``), and the figure is the median
of the pairs' ratios; the server must therefore allow CREATE DATABASE. Each
floor is also paired with a backfill (``etl --json sync`` as a process into a
new empty database) measured right beside it: the first large write on a
fresh server is slower whoever makes it (the floor itself, by 1.4 to 10.6 s),
so the backfill is compared with the floor on the same server at the same
time; the first backfill, on the fresh server, is shown beside it.

It prints whether each target is met and exits 0 either way; it exits 1 only
when a measurement itself could not be made.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import platform
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.parse
import urllib.request
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import asdict, dataclass, field
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import Any

from etl.calendar import shanghai_today
from etl.errors import EtlError

REPO = Path(__file__).resolve().parent.parent
# The test API lives with the tests, outside the installed package.
sys.path.insert(0, str(REPO / "tests"))
TOKEN = "bench-token"
LATENCY_MS = 50
READ_RUNS = 20
REPLAY_REPEATS = 3  # floors measured, each with a replay and a backfill beside it
# Variables of the caller's environment that would change what is measured.
_SCRUB = ("DATABASE_URL", "TSANGHI_TOKEN", "STOCK_API_TOKEN", "TSANGHI_BASE_URL")


class BenchError(Exception):
    """A measurement could not be made (not a missed target)."""


@dataclass
class Figure:
    key: str
    name: str
    value: float
    unit: str
    target: str  # e.g. ">= 0.6"
    met: bool | None  # None: no target, shown for context
    command: str
    detail: str = ""


@dataclass
class Report:
    figures: list[Figure] = field(default_factory=list)
    machine: dict[str, Any] = field(default_factory=dict)

    def add(self, figure: Figure) -> Figure:
        self.figures.append(figure)
        value = _fmt(figure.value, figure.unit)
        verdict = "" if figure.met is None else ("  [met]" if figure.met else "  [MISSED]")
        target = f" (target {figure.target})" if figure.target else ""
        detail = f"; {figure.detail}" if figure.detail else ""
        print(
            f"[{figure.key}] {figure.name}: {value}{target}{verdict}{detail}  <- {figure.command}",
            flush=True,
        )
        return figure


def _fmt(value: float, unit: str) -> str:
    if unit in ("rows/s", "requests", "rows"):
        return f"{value:,.0f} {unit}"
    if unit == "x":  # three places: a ratio just under its target must not print as on it
        return f"{value:.3f}x"
    if unit == "MB":
        return f"{value:,.0f} MB"
    if unit in ("s", "ms", "ETFs/s"):
        return f"{value:,.1f} {unit}" if value >= 10 else f"{value:,.2f} {unit}"
    return f"{value} {unit}"


def _list(values: Any, spec: str = ".1f") -> str:
    return ", ".join(format(v, spec) for v in values)


def say(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


# -- the API server, in a child process ------------------------------------------


def _serve(conn: Any, n_etfs: int, token: str, start: str | None = None) -> None:
    """Child process: serve Universe.full(n_etfs) (from ``start``, ISO, if given)
    until told to stop.

    Commands on the pipe: ("advance", days) -> new trading days as ISO text,
    ("latency", ms), ("requests", None) -> requests served so far, ("stop", None).
    """
    from fakeapi import FakeTsanghi, Universe

    universe = (
        Universe.full(n_etfs=n_etfs, start=date.fromisoformat(start))
        if start
        else Universe.full(n_etfs=n_etfs)
    )
    rows = universe.row_count()  # what --warm does: every history generated up front
    active = [e for e in universe.etfs() if e.is_active]
    active_rows = sum(universe.daily_frame(e.exchange, e.ticker).height for e in active)
    server = FakeTsanghi(universe, token=token).start()
    # The backfill's requests (each ETF's whole history up to today, as `etl sync`
    # asks them) are encoded before it starts: the real API is remote, so the
    # measured process must not share the two cores with a server building answers.
    today = shanghai_today().isoformat()
    for etf in universe.etfs():
        params = {"ticker": etf.ticker, "order": "1", "end_date": today}
        server.preencode("daily", etf.exchange, params)
    conn.send(
        {
            "base_url": server.base_url,
            "rows": rows,
            "etfs": universe.n_etfs,
            "active": len(active),
            "active_rows": active_rows,
            "start": universe.start.isoformat(),
            "end": universe.end.isoformat(),
            "days": len(universe.trading_days()),
        }
    )
    try:
        while True:
            try:
                command, arg = conn.recv()
            except EOFError:
                break
            if command == "stop":
                break
            if command == "advance":
                server.forget()  # the answers encoded ahead hold the old universe
                conn.send([d.isoformat() for d in universe.advance(arg)])
            elif command == "latency":
                server.latency_ms = arg
                conn.send(arg)
            elif command == "requests":
                conn.send(server.request_count())
            else:
                conn.send(None)
    finally:
        server.stop()


class ApiServer:
    """The child process serving the universe, and its command pipe."""

    def __init__(self, n_etfs: int, start: str | None = None) -> None:
        ctx = mp.get_context("spawn")  # no fork of a process that already runs threads
        self._conn, child = ctx.Pipe()
        self._proc = ctx.Process(
            target=_serve, args=(child, n_etfs, TOKEN, start), daemon=True, name="bench-api"
        )
        self._proc.start()
        child.close()
        if not self._conn.poll(300):
            self.close()
            raise BenchError("the API server did not start within 300 s")
        self.info: dict[str, Any] = self._conn.recv()
        self.base_url: str = self.info["base_url"]
        self.pid: int | None = self._proc.pid
        self._wait_until_answering()

    def _wait_until_answering(self) -> None:
        url = f"{self.base_url}/etf/XSHG/list?" + urllib.parse.urlencode({"token": TOKEN})
        deadline = time.monotonic() + 30
        while True:
            try:
                with urllib.request.urlopen(url, timeout=5) as answer:
                    if json.loads(answer.read()).get("code") == 200:
                        return
            except OSError:
                pass
            if time.monotonic() > deadline:
                raise BenchError(f"the API server at {self.base_url} does not answer")
            time.sleep(0.1)

    def call(self, command: str, arg: Any = None) -> Any:
        self._conn.send((command, arg))
        return self._conn.recv()

    def close(self) -> None:
        if self._proc.is_alive():
            try:
                self._conn.send(("stop", None))
            except OSError:
                pass
            self._proc.join(10)
        if self._proc.is_alive():
            self._proc.terminate()
            self._proc.join(5)
        self._conn.close()


# -- running the CLI -------------------------------------------------------------


def etl_command() -> list[str]:
    script = Path(sys.executable).parent / "etl"
    return [str(script)] if script.exists() else [sys.executable, "-m", "etl"]


@dataclass
class CliRun:
    summary: dict[str, Any]
    wall: float  # seconds from spawn to exit, Python start-up included
    max_rss_mb: float  # peak resident memory of the etl process
    exit_code: int
    cpu: float = 0.0  # CPU seconds of the etl process (user + system)


class Cli:
    def __init__(self, env: dict[str, str], log_dir: Path) -> None:
        self.env = env
        self.log_dir = log_dir
        self._n = 0

    def run(
        self, *args: str, ok_codes: tuple[int, ...] = (0,), env: dict[str, str] | None = None
    ) -> CliRun:
        """`etl --json <args>` as a subprocess; its summary, wall time and peak RSS.

        The peak is the child's own VmHWM (/proc/<pid>/status), read until it
        exits. Not ru_maxrss: Linux carries the parent's resident size at fork
        into the child's ru_maxrss, and this process holds millions of rows
        once it has measured the floor.
        """
        self._n += 1
        stem = self.log_dir / f"{self._n:02d}-{args[0]}"
        argv = [*etl_command(), "--json", *args]
        with open(f"{stem}.out", "wb") as out, open(f"{stem}.err", "wb") as err:
            started = time.perf_counter()
            proc = subprocess.Popen(
                argv, stdout=out, stderr=err, env={**self.env, **(env or {})}, cwd=REPO
            )
            peak = PeakRss(proc.pid)
            _, status, usage = os.wait4(proc.pid, 0)
            wall = time.perf_counter() - started
            peak.stop()
        proc.returncode = code = os.waitstatus_to_exitcode(status)
        text = Path(f"{stem}.out").read_text().strip()
        try:
            summary = json.loads(text.splitlines()[-1]) if text else {}
        except json.JSONDecodeError:
            summary = {}
        if code not in ok_codes or not summary:
            tail = Path(f"{stem}.err").read_text()[-2000:]
            raise BenchError(f"`etl {' '.join(args)}` exited with {code}:\n{tail}")
        cpu = usage.ru_utime + usage.ru_stime
        return CliRun(summary, wall, peak.mb, code, cpu)

    def migrate(self, url: str) -> None:
        """`etl migrate` on the database at `url` (not timed)."""
        done = subprocess.run(
            [*etl_command(), "--quiet", "migrate"],
            env={**self.env, "DATABASE_URL": url},
            cwd=REPO,
            capture_output=True,
            text=True,
        )
        if done.returncode != 0:
            raise BenchError(f"`etl migrate` exited with {done.returncode}:\n{done.stderr[-2000:]}")


class PeakRss:
    """Polls a process's VmHWM (its peak resident set since exec) until stopped."""

    def __init__(self, pid: int, every: float = 0.02) -> None:
        self._path = Path(f"/proc/{pid}/status")
        self._every = every
        self.mb = 0.0
        self._done = threading.Event()
        self._thread = threading.Thread(target=self._poll, daemon=True)
        self._thread.start()

    def _poll(self) -> None:
        while not self._done.is_set():
            try:
                for line in self._path.read_text().splitlines():
                    if line.startswith("VmHWM:"):
                        self.mb = max(self.mb, int(line.split()[1]) / 1024)
            except (OSError, ValueError):  # exited (a zombie has no VmHWM line)
                pass
            self._done.wait(self._every)

    def stop(self) -> None:
        self._done.set()
        self._thread.join()


# -- CPU accounting --------------------------------------------------------------

_TICK = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100


def _stat(pid: int) -> tuple[int, float]:
    """(parent pid, CPU seconds of the process and its reaped children) from /proc."""
    text = Path(f"/proc/{pid}/stat").read_text()
    fields = text[text.rindex(")") + 2 :].split()
    return int(fields[1]), sum(int(x) for x in fields[11:15]) / _TICK


def process_cpu(pid: int | None, tree: bool = False) -> float | None:
    """CPU seconds used so far by `pid` (and, with tree, its live descendants); None if unknown."""
    if pid is None:
        return None
    try:
        total = _stat(pid)[1]
    except (OSError, ValueError, IndexError):
        return None
    if tree:
        children: dict[int, list[int]] = {}
        for entry in Path("/proc").iterdir():
            if entry.name.isdigit():
                try:
                    children.setdefault(_stat(int(entry.name))[0], []).append(int(entry.name))
                except (OSError, ValueError, IndexError):
                    continue
        todo = list(children.get(pid, []))
        while todo:
            child = todo.pop()
            try:
                total += _stat(child)[1]
            except (OSError, ValueError, IndexError):
                continue
            todo.extend(children.get(child, []))
    return total


def machine_busy() -> float:
    """CPU seconds the whole machine spent busy since boot (all processes)."""
    try:
        ticks = [int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    except (OSError, ValueError):
        return 0.0
    idle = ticks[3] + (ticks[4] if len(ticks) > 4 else 0)
    return (sum(ticks[:8]) - idle) / _TICK


def postmaster_pid(db: Any) -> int | None:
    """PID of the embedded server's postmaster (None for a --database-url server)."""
    try:
        pgdata = db.fetch("SELECT current_setting('data_directory')")[0][0]
        return int((Path(pgdata) / "postmaster.pid").read_text().split()[0])
    except Exception:
        return None


# -- database helpers ------------------------------------------------------------


@contextmanager
def database(url: str | None, scratch: Path) -> Iterator[Any]:
    """The Database to bench on: `url` (must hold no daily rows) or a fresh embedded one."""
    from etl.db import Database, open_database

    if url:
        db = Database(url)
        table = db.fetch("SELECT to_regclass('stock_daily_data') IS NOT NULL")[0][0]
        if table and db.fetch("SELECT EXISTS (SELECT 1 FROM stock_daily_data)")[0][0]:
            raise BenchError(
                "--database-url must name an empty database: stock_daily_data has rows"
            )
        yield db
        return
    with open_database(None, scratch / "embedded") as db:
        yield db


@contextmanager
def second_database(db: Any) -> Iterator[str | None]:
    """URL of a new empty database on the same server (dropped after), None if not allowed."""
    import adbc_driver_postgresql.dbapi as adbc

    name = f"etf_bench_{os.getpid()}"
    parts = urllib.parse.urlsplit(db.url)
    try:
        admin = adbc.connect(db.url, autocommit=True)
    except Exception:
        yield None
        return
    try:
        with admin.cursor() as cur:
            cur.execute(f'CREATE DATABASE "{name}"')
    except Exception:
        admin.close()
        yield None
        return
    try:
        yield urllib.parse.urlunsplit(parts._replace(path=f"/{name}"))
    finally:
        with admin.cursor() as cur:
            cur.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        admin.close()


def polars_schema(db: Any, table: str) -> dict[str, Any]:
    """The exact polars type of every column of `table` (stack notes: cast before COPY)."""
    import polars as pl

    rows = db.fetch(
        "SELECT column_name, data_type, numeric_precision, numeric_scale "
        "FROM information_schema.columns WHERE table_schema = current_schema() "
        "AND table_name = $1 ORDER BY ordinal_position",
        [table],
    )
    simple = {
        "character varying": pl.String,
        "text": pl.String,
        "character": pl.String,
        "timestamp without time zone": pl.Datetime("us"),
        "date": pl.Date,
        "bigint": pl.Int64,
        "integer": pl.Int32,
        "smallint": pl.Int16,
        "double precision": pl.Float64,
        "boolean": pl.Boolean,
    }
    schema: dict[str, Any] = {}
    for name, kind, precision, scale in rows:
        if kind == "numeric":
            schema[name] = pl.Decimal(int(precision), int(scale))
        elif kind in simple:
            schema[name] = simple[kind]
        else:
            raise BenchError(f"{table}.{name}: no polars type for {kind}")
    return schema


def floor_rows(db: Any) -> Any:
    """Every row of stock_daily_data read back, cast to the exact column types, as
    one Arrow table (the input of the floor; reading and casting are not timed)."""
    schema = polars_schema(db, "stock_daily_data")
    frame = db.read("SELECT * FROM stock_daily_data").select(list(schema)).cast(schema)
    return frame.to_arrow()


@contextmanager
def migrated_database(db: Any, cli: Cli) -> Iterator[str]:
    """URL of a new empty database on the same server with the schema of
    `etl migrate` (stock_daily_data with its primary key and indexes), dropped after."""
    with second_database(db) as url:
        if url is None:
            raise BenchError("cannot CREATE DATABASE on this server: the floor needs one")
        cli.migrate(url)
        yield url


def bare_ingest(url: str, table: Any) -> float:
    """Seconds of one `adbc_ingest` + commit of `table` into the empty, migrated
    stock_daily_data at `url`: the floor, on the table the replay fills."""
    import adbc_driver_postgresql.dbapi as adbc

    with adbc.connect(url) as conn:
        cur = conn.cursor()
        started = time.perf_counter()
        cur.adbc_ingest("stock_daily_data", table, mode="append")
        conn.commit()
        seconds = time.perf_counter() - started
        cur.execute("SELECT count(*) FROM stock_daily_data")
        loaded = cur.fetchone()[0]
        cur.close()
    if loaded != table.num_rows:
        raise BenchError(f"bare ingest loaded {loaded} rows of {table.num_rows}")
    return seconds


@dataclass
class Pair:
    """One floor, and the replay and backfill processes measured right beside it."""

    floor: float  # seconds of the bare ingest
    replay: CliRun  # the `etl --json replay` process
    sync: CliRun  # the `etl --json sync` process (a full backfill)

    @property
    def ratio(self) -> float:
        return self.floor / self.replay.wall

    @property
    def sync_ratio(self) -> float:
        return self.floor / self.sync.wall


def floor_replay_backfill(
    db: Any, cli: Cli, snapshot: str, table: Any, repeats: int, scratch: Path
) -> list[Pair]:
    """`repeats` times a bare ingest, `etl --json replay SNAPSHOT` and a full
    `etl --json sync` as processes, each into a new empty database (migrated
    first for the ingest and the replay; the sync migrates it itself, as a
    first backfill does), the order reversed from one to the next so that drift
    in the machine's load falls on every side."""
    pairs = []
    for i in range(repeats):
        say(f"    pair {i + 1}/{repeats}: the floor, the replay and the backfill processes ...")
        floor: float | None = None
        replay: CliRun | None = None
        sync: CliRun | None = None
        steps = ("floor", "replay", "sync")
        for step in steps if i % 2 == 0 else reversed(steps):
            if step == "sync":
                with second_database(db) as url:
                    if url is None:
                        raise BenchError("cannot CREATE DATABASE on this server")
                    env = {"DATABASE_URL": url, "ETL_DATA_DIR": str(scratch / f"data-{i}")}
                    sync = cli.run("sync", env=env)
                shutil.rmtree(scratch / f"data-{i}", ignore_errors=True)
                continue
            with migrated_database(db, cli) as url:
                if step == "floor":
                    floor = bare_ingest(url, table)
                else:
                    replay = cli.run("replay", snapshot, env={"DATABASE_URL": url})
        assert floor is not None and replay is not None and sync is not None
        for what, run in (("replay", replay), ("backfill", sync)):
            if run.summary.get("status") != "ok" or run.summary["rows_inserted"] != table.num_rows:
                raise BenchError(
                    f"the {what} ended {run.summary.get('status')} with "
                    f"{run.summary.get('rows_inserted'):,} rows inserted of {table.num_rows:,}"
                )
        pairs.append(Pair(floor, replay, sync))
    return pairs


def settle(db: Any) -> None:
    """VACUUM ANALYZE and CHECKPOINT, so no background work of the backfill competes."""
    import adbc_driver_postgresql.dbapi as adbc

    with adbc.connect(db.url, autocommit=True) as conn, conn.cursor() as cur:
        cur.execute("VACUUM ANALYZE stock_daily_data")
        cur.execute("VACUUM ANALYZE stock_info")
        cur.execute("CHECKPOINT")


def median_ms(conn: Any, sql: str, params: list[list[Any]]) -> tuple[float, float]:
    """Median and maximum milliseconds of `sql` (execute + fetch), one run per params."""
    times = []
    with conn.cursor() as cur:
        cur.execute(sql, params[0])  # warm-up: plan and connection caches, not counted
        cur.fetch_arrow_table()
        for values in params:
            started = time.perf_counter()
            cur.execute(sql, values)
            cur.fetch_arrow_table()
            times.append((time.perf_counter() - started) * 1000)
    conn.rollback()
    return statistics.median(times), max(times)


# -- machine ---------------------------------------------------------------------


def machine(db: Any) -> dict[str, Any]:
    import polars as pl

    model = "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    ram_gb = 0.0
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                ram_gb = int(line.split()[1]) / 1024 / 1024
    except OSError:
        pass
    return {
        "nproc": os.cpu_count(),
        "ram_gb": round(ram_gb, 1),
        "cpu": model,
        "os": platform.platform(),
        "python": platform.python_version(),
        "polars": pl.__version__,
        "postgresql": db.fetch("SELECT current_setting('server_version')")[0][0],
    }


# -- the benchmark ---------------------------------------------------------------


def run(args: argparse.Namespace, report: Report, scratch: Path) -> None:
    with ExitStack() as stack:
        say(f"starting the API server: Universe.full(n_etfs={args.etfs}) in a child process ...")
        api = ApiServer(args.etfs)
        stack.callback(api.close)
        info = api.info
        db = stack.enter_context(database(args.database_url, scratch))
        report.machine = machine(db)
        m = report.machine
        print(
            f"machine: {m['nproc']} CPUs ({m['cpu']}), {m['ram_gb']} GB RAM, "
            f"PostgreSQL {m['postgresql']}, Python {m['python']}, polars {m['polars']}"
        )
        print(
            f"universe: Universe.full(n_etfs={args.etfs}) = {info['etfs']:,} ETFs, "
            f"{info['rows']:,} daily rows, all synced ({info['active']:,} active ETFs with "
            f"{info['active_rows']:,} of them), {info['days']:,} trading days up to {info['end']} "
            f"(the same as `python -m fakeapi --full"
            f"{'' if args.etfs == 1200 else f' --etfs {args.etfs}'}`), served at {api.base_url}"
        )
        print(
            f"database: {'--database-url' if args.database_url else 'embedded PostgreSQL in a temp dir'}"
            f"; commands run as `etl --json ...` with DATABASE_URL, TSANGHI_BASE_URL, "
            f"TSANGHI_TOKEN and ETL_DATA_DIR set, every tuning variable at its default",
            flush=True,
        )

        env = {k: v for k, v in os.environ.items() if k not in _SCRUB and not k.startswith("ETL_")}
        env.update(
            {
                "DATABASE_URL": db.url,
                "TSANGHI_BASE_URL": api.base_url,
                "TSANGHI_TOKEN": TOKEN,
                "ETL_DATA_DIR": str(scratch / "data"),
            }
        )
        log_dir = scratch / "logs"
        log_dir.mkdir()
        cli = Cli(env, log_dir)

        # 1 + 5: the full backfill into an empty database, and its peak memory.
        say("1/6 full backfill (etl sync) ...")
        pg_pid = None if args.database_url else postmaster_pid(db)
        before = (process_cpu(api.pid), process_cpu(pg_pid, tree=True), machine_busy())
        backfill = cli.run("sync")
        after = (process_cpu(api.pid), process_cpu(pg_pid, tree=True), machine_busy())
        s = backfill.summary
        rows = s["rows_inserted"]
        if s["status"] != "ok" or rows != info["rows"]:
            raise BenchError(
                f"the backfill ended {s['status']} with {rows:,} rows inserted; the ETFs, "
                f"delisted ones included, have {info['rows']:,}"
            )
        pipeline_rate = rows / s["seconds"]
        report.add(
            Figure(
                "1a",
                "full backfill, whole pipeline",
                pipeline_rate,
                "rows/s",
                "",
                None,
                "etl --json sync  (rows_inserted / seconds of its summary)",
                f"{rows:,} rows in {s['seconds']:.1f} s ({s['price_seconds']:.1f} s prices, "
                f"wall {backfill.wall:.1f} s), {s['requests']:,} API requests",
            )
        )
        report.add(cpu_figure(backfill, before, after))
        say("    settling (VACUUM ANALYZE, CHECKPOINT), then the floor and the replay ...")
        settle(db)
        table = floor_rows(db)
        pairs = floor_replay_backfill(db, cli, s["snapshot"], table, args.repeats, scratch)
        del table
        floor_seconds = statistics.median(p.floor for p in pairs)
        floor_rate = rows / floor_seconds
        report.add(
            Figure(
                "1b",
                "bare adbc_ingest of the same rows (floor)",
                floor_rate,
                "rows/s",
                "",
                None,
                "cursor.adbc_ingest('stock_daily_data', rows, mode='append') + commit into an "
                "empty database after `etl migrate` (primary key and indexes)",
                f"{rows:,} rows in {floor_seconds:.1f} s, the median of "
                f"{_list(p.floor for p in pairs)} s; read back with connectorx and cast to the "
                "exact column types first (not timed)",
            )
        )
        # The backfill as an operator sees it: the process, start-up included, each
        # one measured beside a floor on the same server (see the module's notes).
        sync_ratios = [p.sync_ratio for p in pairs]
        ratio = statistics.median(sync_ratios)
        report.add(
            Figure(
                "1c",
                "backfill as a process / floor",
                ratio,
                "x",
                ">= 0.7",
                ratio >= 0.7,
                "floor seconds / wall seconds of an `etl --json sync` process (a full backfill "
                "into a new empty database) measured beside each floor of 1b, the median",
                f"{len(pairs)} pairs: {_list(sync_ratios, '.2f')} (backfills of "
                f"{_list(p.sync.wall for p in pairs)} s); the first backfill (1a), on the "
                f"fresh server: {(rows / backfill.wall) / floor_rate:.2f}",
            )
        )

        # The replay as an operator runs it: `etl replay SNAPSHOT`, a fresh process,
        # timed from spawn to exit, into an empty migrated database; each one paired
        # with a floor measured right before or after it on the same kind of table.
        replays = [p.replay for p in pairs]
        wall = statistics.median(r.wall for r in replays)
        inside = statistics.median(r.summary["seconds"] for r in replays)
        report.add(
            Figure(
                "1d",
                "replay of the backfill snapshot as a process (no network)",
                rows / wall,
                "rows/s",
                "",
                None,
                "etl --json replay <snapshot of 1a>  into an empty database after `etl migrate` "
                "(rows_inserted / wall time of the process, spawn to exit)",
                f"{rows:,} rows in {wall:.1f} s, the median of {_list(r.wall for r in replays)} s; "
                f"{inside:.1f} s inside the command ({(rows / inside) / floor_rate:.2f} of the "
                f"floor); peak {max(r.max_rss_mb for r in replays):,.0f} MB, "
                f"{statistics.median(r.cpu for r in replays):.1f} CPU-s",
            )
        )
        ratios = [p.ratio for p in pairs]
        ratio = statistics.median(ratios)
        report.add(
            Figure(
                "1f",
                "replay as a process / floor",
                ratio,
                "x",
                ">= 0.85",
                ratio >= 0.85,
                "floor seconds / replay wall seconds of each pair of 1b and 1d, the median",
                f"{len(pairs)} pairs measured back to back: {_list(ratios, '.2f')} "
                f"(spread {max(ratios) - min(ratios):.2f})",
            )
        )

        # 7: the audit of the whole stored history (etl check), as run nightly after
        # the sync: the command as a process, then the library call in this one. The
        # target is the universe, 1,150 ETFs since 2012, synced into a database
        # of its own; the bench's own universe (larger, since 2005) is shown for context.
        say("    etl check on ETFs since 2012 (7a, 7b), then on this universe (7c) ...")
        with second_database(db) as other:
            if other is None:
                say("    (7a, 7b skipped: cannot CREATE DATABASE here)")
            else:
                # A small bench (--etfs below the full universe) checks as many ETFs.
                check_api = ApiServer(min(CHECK_ETFS, args.etfs), CHECK_START)
                try:
                    to_other = {"DATABASE_URL": other, "TSANGHI_BASE_URL": check_api.base_url}
                    cli.run("sync", env=to_other)
                    check_figures(cli, report, to_other, check_api.info, "7a", "7b", "< 5 s")
                finally:
                    check_api.close()
        check_figures(cli, report, {}, info, "7c", None, "")

        # 2: nightly runs, one new trading day each; the first one after the
        # universe's last day crosses the New Year holidays, where each holiday
        # weekday costs an empty /daily/latest per exchange (the API publishes
        # no calendar): shown for context. The targets are the ordinary evening's.
        # The request count is targeted on both evenings (after a holiday, each day
        # the calendar does not know costs an empty /daily/latest per exchange); the
        # seconds on the ordinary one.
        def nightly(keys: tuple[str, str], label: str, timed: bool) -> dict[str, Any]:
            before = api.call("requests")
            new_days = api.call("advance", 1)
            say(f"2/6 nightly run for {new_days[0]} ({label}) ...")
            result = cli.run("sync")
            served = api.call("requests") - before
            n = result.summary
            report.add(
                Figure(
                    keys[0],
                    f"nightly run, API requests ({label})",
                    n["requests"],
                    "requests",
                    "<= 6",
                    n["requests"] <= 6,
                    f"advance the universe to {new_days[0]}, then etl --json sync  (requests)",
                    f"{served} seen by the server; {n['rows_inserted']:,} rows inserted",
                )
            )
            report.add(
                Figure(
                    keys[1],
                    f"nightly run, seconds ({label})",
                    result.wall,
                    "s",
                    "< 10 s" if timed else "",
                    result.wall < 10 if timed else None,
                    "the same run: wall time of the process",
                    f"{n['seconds']:.2f} s inside the run",
                )
            )
            return n

        holiday = nightly(("2a", "2b"), "after the New Year holidays", timed=False)
        ordinary = nightly(("2c", "2d"), "an ordinary evening", timed=True)
        for n in (holiday, ordinary):
            if n["status"] != "ok":
                say(f"    note: nightly run status {n['status']}")

        # 3: nothing new since the last run.
        say("3/6 no-op rerun ...")
        noop = cli.run("sync")
        ns = noop.summary
        report.add(
            Figure(
                "3a",
                "no-op rerun, API requests",
                ns["requests"],
                "requests",
                "<= 4",
                ns["requests"] <= 4,
                "etl --json sync again, nothing new on the server",
            )
        )
        report.add(
            Figure(
                "3b",
                "no-op rerun, rows inserted",
                ns["rows_inserted"],
                "rows",
                "0",
                ns["rows_inserted"] == 0,
                "the same run",
            )
        )
        report.add(
            Figure(
                "3c",
                "no-op rerun, seconds",
                noop.wall,
                "s",
                "",
                None,
                "the same run: wall time of the process",
                f"{ns['seconds']:.2f} s inside the run",
            )
        )

        # 4: extract throughput with 50 ms of latency on every answer.
        api.call("latency", LATENCY_MS)
        try:
            since = (date.fromisoformat(info["end"]) - timedelta(days=30)).isoformat()
            say(f"4/6 extract at {LATENCY_MS} ms latency, one month per ETF ...")
            month = cli.run("sync-prices", "--full", "--start-date", since)
            ms = month.summary
            rate = ms["symbols_ok"] / ms["price_seconds"]
            report.add(
                Figure(
                    "4a",
                    f"extract at {LATENCY_MS} ms latency, per-ticker requests",
                    rate,
                    "ETFs/s",
                    ">= 50",
                    rate >= 50,
                    f"etl --json sync-prices --full --start-date {since}  (symbols_ok / price_seconds)",
                    f"{ms['symbols_ok']:,} ETFs in {ms['price_seconds']:.1f} s, "
                    f"{ms['rows_fetched']:,} rows fetched, {ms['rows_inserted']} inserted; "
                    "default workers and rate limit",
                )
            )
            if not args.quick:
                say(f"4/6 extract at {LATENCY_MS} ms latency, whole histories ...")
                whole = cli.run("sync-prices", "--full")
                ws = whole.summary
                rate = ws["symbols_ok"] / ws["price_seconds"]
                report.add(
                    Figure(
                        "4b",
                        f"extract at {LATENCY_MS} ms latency, whole histories",
                        rate,
                        "ETFs/s",
                        "",
                        None,
                        "etl --json sync-prices --full  (symbols_ok / price_seconds)",
                        f"{ws['symbols_ok']:,} ETFs, {ws['rows_fetched']:,} rows in "
                        f"{ws['price_seconds']:.1f} s, all already stored ({ws['rows_inserted']} "
                        f"inserted): fetch + parse + anti-join, no load; "
                        f"{ws['rows_fetched'] / ws['price_seconds']:,.0f} rows/s",
                    )
                )
        finally:
            api.call("latency", 0)

        report.add(
            Figure(
                "5a",
                "peak memory of the full backfill",
                backfill.max_rss_mb,
                "MB",
                "<= 1024 MB",
                backfill.max_rss_mb <= 1024,
                "peak RSS (VmHWM) of the `etl --json sync` process of 1a",
            )
        )
        catch_up(api, db, cli, report)

        # 6: read queries on the loaded table.
        say("6/6 read queries ...")
        read_queries(db, report, args.read_runs)


CATCH_UP_DAYS = 5
CATCH_UP_NEW = 20


CHECK_ETFS, CHECK_START = 1150, "2012-01-04"  # the universe the check's target names


def check_figures(
    cli: Cli,
    report: Report,
    env: dict[str, str],
    info: dict[str, Any],
    key: str,
    library_key: str | None,
    target: str,
) -> None:
    """`etl check` on the database ``env`` points at (the process), and the library
    call in this process when ``library_key`` is given."""
    from etl.check import audit
    from etl.db import Database

    universe = f"{info['etfs']:,} ETFs, {info['rows']:,} rows since {info['start']}"
    checked = cli.run("check", ok_codes=(0, 3), env=env)
    c = checked.summary
    found = (
        f"{c['counts']['holes']:,} holes ({c['counts']['hole_days']:,} trading days, the "
        f"universe's suspensions), {c['counts']['suspect_rows']:,} suspect rows, "
        f"{c['counts']['corporate_actions']:,} corporate actions"
    )
    met = checked.wall < 5 if target else None
    report.add(
        Figure(
            key,
            f"check, {universe}",
            checked.wall,
            "s",
            target,
            met,
            "etl --json check  (wall time of the process, start-up included)",
            f"{found}; {c['seconds']:.2f} s inside the command",
        )
    )
    if library_key is None:
        return
    url = env.get("DATABASE_URL") or cli.env["DATABASE_URL"]
    started = time.perf_counter()
    audit(Database(url))
    library = time.perf_counter() - started
    report.add(
        Figure(
            library_key,
            "check, library call",
            library,
            "s",
            target,
            library < 5,
            "etl.check.audit(db)  in this process",
            universe,
        )
    )


def catch_up(api: ApiServer, db: Any, cli: Cli, report: Report) -> None:
    """Peak memory of a catch-up run: every ETF some trading days behind, and a
    few with long histories none of which is stored (new to the table)."""
    oldest = (
        "SELECT symbol FROM stock_daily_data GROUP BY symbol "
        f"ORDER BY min(trade_date), symbol LIMIT {CATCH_UP_NEW}"
    )
    count, since = db.fetch(
        f"SELECT count(DISTINCT symbol), min(trade_date)::date FROM stock_daily_data "
        f"WHERE symbol IN ({oldest})"
    )[0]
    db.execute(f"UPDATE stock_info SET last_sync_date = NULL WHERE symbol IN ({oldest})")
    db.execute(f"DELETE FROM stock_daily_data WHERE symbol IN ({oldest})")
    api.call("advance", CATCH_UP_DAYS)
    say(
        f"5/6 catch-up: {CATCH_UP_DAYS} trading days behind, {count} ETFs with no stored history ..."
    )
    run = cli.run("sync")
    c = run.summary
    report.add(
        Figure(
            "5b",
            "peak memory of a catch-up run",
            run.max_rss_mb,
            "MB",
            "<= 400 MB",
            run.max_rss_mb <= 400,
            f"advance {CATCH_UP_DAYS} trading days, delete every row of the {count} ETFs "
            "with the oldest histories, then etl --json sync  (peak RSS, VmHWM)",
            f"{c['rows_inserted']:,} rows inserted ({count} histories since {since}), "
            f"{c['requests']:,} API requests, {run.wall:.1f} s",
        )
    )


def cpu_figure(run: CliRun, before: tuple, after: tuple) -> Figure:
    """Where the machine's CPU went during a run: etl, PostgreSQL, the API server, the rest."""
    api = after[0] - before[0] if None not in (after[0], before[0]) else None
    pg = after[1] - before[1] if None not in (after[1], before[1]) else None
    busy = after[2] - before[2]
    rest = busy - run.cpu - (api or 0) - (pg or 0)
    cpus = os.cpu_count() or 1
    parts = [
        f"PostgreSQL {pg:.1f} s" if pg is not None else "PostgreSQL not measured (remote)",
        f"API server {api:.1f} s" if api is not None else "API server not measured",
        f"other processes {max(rest, 0):.1f} s",
        f"of {run.wall * cpus:.0f} CPU-s available ({run.wall:.1f} s x {cpus} CPUs)",
    ]
    return Figure(
        "1e",
        "CPU time of the etl process during the backfill",
        run.cpu,
        "s",
        "",
        None,
        "rusage of 1a; /proc/<pid>/stat of the API server and PostgreSQL; /proc/stat",
        "; ".join(parts),
    )


Q_YEAR = (
    "SELECT trade_date, open_price, high_price, low_price, close_price, volume, turnover "
    "FROM stock_daily_data WHERE symbol = $1 AND trade_date >= $2 AND trade_date < $3 "
    "ORDER BY trade_date"
)
Q_DAY = (
    "SELECT d.symbol, i.stock_name, d.open_price, d.high_price, d.low_price, d.close_price, "
    "d.volume, d.turnover FROM stock_daily_data AS d JOIN stock_info AS i ON i.symbol = d.symbol "
    "WHERE i.is_etf = 'Y' AND i.market_code = $1 AND d.trade_date = $2 ORDER BY d.symbol"
)


def read_queries(db: Any, report: Report, runs: int) -> None:
    rng = random.Random(0)
    latest = db.fetch("SELECT max(trade_date) FROM stock_daily_data")[0][0]
    year_ago = latest - timedelta(days=365)
    symbols = [
        r[0]
        for r in db.fetch(
            "SELECT symbol FROM stock_info WHERE is_etf = 'Y' AND is_active = 'Y' "
            "AND last_sync_date >= $1 ORDER BY symbol",
            [latest],
        )
    ]
    days = [
        r[0]
        for r in db.fetch(
            "SELECT DISTINCT trade_date FROM stock_daily_data WHERE trade_date > $1 "
            "ORDER BY trade_date",
            [year_ago],
        )
    ]
    if not symbols or not days:
        raise BenchError("no loaded rows to query")
    year_params = [
        [s, year_ago, latest + timedelta(days=1)]
        for s in (rng.choice(symbols) for _ in range(runs))
    ]
    day_params = [[rng.choice(["SH", "SZ"]), rng.choice(days)] for _ in range(runs)]
    counts = [
        db.fetch(
            "SELECT count(*) FROM stock_daily_data WHERE symbol = $1 AND trade_date >= $2 "
            "AND trade_date < $3",
            year_params[0],
        )[0][0],
        db.fetch(
            "SELECT count(*) FROM stock_daily_data AS d JOIN stock_info AS i USING (symbol) "
            "WHERE i.is_etf = 'Y' AND i.market_code = $1 AND d.trade_date = $2",
            day_params[0],
        )[0][0],
    ]
    with db.connect() as conn:
        year_med, year_max = median_ms(conn, Q_YEAR, year_params)
        day_med, day_max = median_ms(conn, Q_DAY, day_params)
    # The same queries through connectorx (a new connection each time), for comparison.
    cx_year = _cx_median(db, Q_YEAR, year_params[:5])
    cx_day = _cx_median(db, Q_DAY, day_params[:5])
    report.add(
        Figure(
            "6a",
            "one ETF's prices over a year",
            year_med,
            "ms",
            "< 50 ms",
            year_med < 50,
            f"ADBC, one open connection: {_short(Q_YEAR)}",
            f"median of {runs} runs over random active ETFs (max {year_max:.1f} ms, "
            f"~{counts[0]} rows each); connectorx with its own connection: {cx_year:.1f} ms",
        )
    )
    report.add(
        Figure(
            "6b",
            "all ETFs of one market on one day, with stock_info",
            day_med,
            "ms",
            "< 50 ms",
            day_med < 50,
            f"ADBC, one open connection: {_short(Q_DAY)}",
            f"median of {runs} runs over random markets and days of the last year "
            f"(max {day_max:.1f} ms, ~{counts[1]} rows each); connectorx with its own connection: "
            f"{cx_day:.1f} ms",
        )
    )


def _cx_median(db: Any, sql: str, params: list[list[Any]]) -> float:
    times = []
    for values in params:
        text = sql
        for i, value in reversed(list(enumerate(values, start=1))):
            literal = value.isoformat(sep=" ") if isinstance(value, datetime) else str(value)
            text = text.replace(f"${i}", f"'{literal}'")
        started = time.perf_counter()
        db.read(text)
        times.append((time.perf_counter() - started) * 1000)
    return statistics.median(times)


def _short(sql: str) -> str:
    return sql if len(sql) < 90 else sql[:87] + "..."


# The figures an operator asks about first, printed above the table.
HEADLINE = {
    "1f": "replay as a process / floor",
    "1c": "sync (backfill) as a process / floor",
    "5b": "catch-up peak RSS",
    "2a": "nightly API requests after a holiday",
}


def print_headline(report: Report) -> None:
    by_key = {f.key: f for f in report.figures}
    print("\nheadline:")
    for key, name in HEADLINE.items():
        f = by_key.get(key)
        if f is None:
            print(f"  {name:<40} not measured")
            continue
        met = "" if f.met is None else ("  met" if f.met else "  MISSED")
        print(f"  {name:<40} {_fmt(f.value, f.unit):>10}  (target {f.target or '-'}){met}  [{key}]")


def print_table(report: Report) -> None:
    print_headline(report)
    rows = [("figure", "value", "target", "met?")]
    for f in report.figures:
        met = "-" if f.met is None else ("yes" if f.met else "NO")
        rows.append((f"{f.key} {f.name}", _fmt(f.value, f.unit), f.target or "-", met))
    widths = [max(len(r[i]) for r in rows) for i in range(4)]
    print()
    for i, r in enumerate(rows):
        print(f"{r[0]:<{widths[0]}}  {r[1]:>{widths[1]}}  {r[2]:<{widths[2]}}  {r[3]}")
        if i == 0:
            print("  ".join("-" * w for w in widths))
    m = report.machine
    print(
        f"\nmachine: {m.get('nproc')} CPUs, {m.get('cpu')}, {m.get('ram_gb')} GB RAM, "
        f"PostgreSQL {m.get('postgresql')}"
    )
    missed = [f.key for f in report.figures if f.met is False]
    print(
        f"targets: {sum(f.met is True for f in report.figures)} met, "
        f"{len(missed)} missed{' (' + ', '.join(missed) + ')' if missed else ''}"
    )


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="bench.py",
        description=__doc__.split("\n\n")[0],
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "--etfs",
        type=int,
        default=1200,
        help="ETFs in the universe (default 1200, the full one: ~3.97 M rows)",
    )
    parser.add_argument(
        "--json",
        action="store_true",
        help="also print every figure as one JSON object (the last line)",
    )
    parser.add_argument(
        "--database-url",
        help="an empty PostgreSQL database to fill instead of a fresh embedded one",
    )
    parser.add_argument(
        "--read-runs",
        type=int,
        default=READ_RUNS,
        help=f"runs per read query (default {READ_RUNS})",
    )
    parser.add_argument(
        "--quick", action="store_true", help="skip the extra whole-history extract measurement (4b)"
    )
    parser.add_argument(
        "--repeats",
        type=int,
        default=REPLAY_REPEATS,
        help=f"floors measured, each beside a replay and a backfill process (default {REPLAY_REPEATS})",
    )
    parser.add_argument(
        "--keep",
        action="store_true",
        help="keep the temp directory (logs, snapshots, database) and print it",
    )
    args = parser.parse_args(argv)
    if args.etfs < 2:
        parser.error("--etfs must be at least 2")
    if args.repeats < 1:
        parser.error("--repeats must be at least 1")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    scratch = Path(tempfile.mkdtemp(prefix="etf-bench-"))
    report = Report()
    started = time.monotonic()
    code = 0
    try:
        run(args, report, scratch)
    except (BenchError, EtlError) as exc:
        print(f"bench: {exc}", file=sys.stderr)
        code = 1
    except KeyboardInterrupt:
        code = 130
    finally:
        if args.keep:
            say(f"kept {scratch}")
        else:
            shutil.rmtree(scratch, ignore_errors=True)
    if report.figures:
        print_table(report)
        print(f"bench took {time.monotonic() - started:.0f} s")
    if args.json:
        print(
            json.dumps(
                {
                    "machine": report.machine,
                    "figures": [asdict(f) for f in report.figures],
                    "complete": code == 0,
                },
                ensure_ascii=False,
            )
        )
    return code


if __name__ == "__main__":
    sys.exit(main())
