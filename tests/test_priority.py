"""The threads that feed the load yield the CPU to it: fetch, decode and
normalize run at a lower priority, the load and the caller's thread at the
process's own (Linux, where each thread has a niceness of its own)."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from etl import pipeline
from etl.priority import FEEDER_NICENESS, lower_priority
from etl.settings import Settings

pytestmark = pytest.mark.skipif(sys.platform != "linux", reason="per-thread niceness is Linux's")


def niceness(native_id: int | None = None) -> int:
    return os.getpriority(os.PRIO_PROCESS, native_id or threading.get_native_id())


def test_a_thread_lowers_its_own_priority_once_and_no_other_thread_changes():
    base = niceness()
    seen: list[int] = []

    def feeder() -> None:
        lower_priority()
        lower_priority()  # again: still one level below the process, not two
        seen.append(niceness())
        # A thread started by a lowered one inherits its niceness; lowering it
        # again keeps it at the same level.
        child = threading.Thread(target=lambda: (lower_priority(), seen.append(niceness())))
        child.start()
        child.join()

    thread = threading.Thread(target=feeder)
    thread.start()
    thread.join()
    expected = min(base + FEEDER_NICENESS, 19)
    assert seen == [expected, expected]
    assert niceness() == base


def test_polars_workers_keep_the_process_priority_when_a_feeding_thread_asks_first():
    # A fresh interpreter: polars starts its workers on first use, and in this one
    # they are running already. Here a lowered thread is the first to use polars.
    code = """
import os, threading
from pathlib import Path
import polars as pl
from etl.priority import lower_priority

def feed():
    lower_priority()
    pl.DataFrame({"a": list(range(200_000))}).sort("a").group_by("a").len()

thread = threading.Thread(target=feed)
thread.start()
thread.join()
for task in sorted(os.listdir("/proc/self/task")):
    try:  # a short-lived thread may be gone by now
        name = Path(f"/proc/self/task/{task}/comm").read_text().strip()
        if name.startswith("polars-") and name[7:].isdigit():  # the pool's workers
            print(os.getpriority(os.PRIO_PROCESS, int(task)))
    except OSError:
        pass
"""
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True
    )
    assert done.stdout.split() and set(done.stdout.split()) == {str(niceness())}


def test_during_a_sync_only_the_feeding_threads_run_at_the_lower_priority(etl_env, api, db):
    api.latency_ms = 30  # answers take a while: the fetch threads are seen working
    base = niceness()
    seen: dict[str, set[int]] = {}
    done = threading.Event()

    def watch() -> None:
        while not done.is_set():
            for thread in threading.enumerate():
                if thread.native_id is None or thread is threading.current_thread():
                    continue
                name = thread.name.split("_")[0].split("-")[0]
                try:
                    seen.setdefault(name, set()).add(niceness(thread.native_id))
                except OSError:  # it ended meanwhile
                    pass
            for task in os.listdir("/proc/self/task"):  # polars' own threads, by their names
                try:
                    name = Path(f"/proc/self/task/{task}/comm").read_text().strip()
                    if name.startswith("polars-") and name[7:].isdigit():
                        seen.setdefault("polars", set()).add(niceness(int(task)))
                except OSError:
                    pass
            time.sleep(0.002)

    watcher = threading.Thread(target=watch)
    watcher.start()
    try:
        result = pipeline.sync(Settings.from_env(env=etl_env))
    finally:
        done.set()
        watcher.join()
    assert result.status == "ok" and result.rows_inserted > 0
    lowered = min(base + FEEDER_NICENESS, 19)
    assert seen["fetch"] == {lowered}
    assert seen["decode"] == {lowered}
    assert seen["normalize"] == {lowered}
    assert seen["load"] == {base}
    assert seen["polars"] == {base}  # its workers serve the load as much as normalize
    assert niceness() == base  # the caller's thread: the extract's loop and the writes
