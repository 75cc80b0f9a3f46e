"""CPU priority of the threads that only feed the load.

A backfill can go no faster than PostgreSQL takes its rows, and on a machine
with few cores the threads that fetch, decode and normalize compete for the CPU
with the load thread and the database server. Linux schedules every thread on
its own niceness, so those feeding threads lower theirs: the load and the
server get the CPU first, and the extract, far faster than the load, still runs
ahead of it. (On two cores a full backfill took 37.6 s instead of 44.1 s, the
medians of three runs each.)
"""

from __future__ import annotations

import os
import sys
import threading

import polars as pl

FEEDER_NICENESS = 10  # added to the process's own; 19 is the lowest priority there is
_LOWEST = 19
# polars starts its worker threads when first asked for them, from whichever
# thread asks, and they inherit that thread's niceness. They work for the load
# as much as for normalize, so they are started now, on import, at the
# process's own priority (asking for the pool's size starts it).
pl.thread_pool_size()


def lower_priority(by: int = FEEDER_NICENESS) -> None:
    """Set the calling thread's CPU priority ``by`` below the process's own
    (its niceness that much higher), leaving the other threads as they are.

    Only on Linux, where a thread has a niceness of its own; elsewhere, or
    where the system refuses, the thread keeps its priority: it is a matter of
    speed, never of correctness.
    """
    if sys.platform != "linux":
        return
    try:
        # The process's own niceness is its main thread's (on Linux the pid
        # names that thread). Counting from it, not from the calling thread's,
        # keeps a feeding thread one level down however it was started: a
        # thread inherits its starter's niceness, and the decode thread is
        # started from a fetch thread.
        process = os.getpriority(os.PRIO_PROCESS, os.getpid())
        os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), min(process + by, _LOWEST))
    except OSError:
        pass
