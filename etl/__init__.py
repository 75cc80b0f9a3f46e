"""etf-sync: keep a PostgreSQL database of Chinese ETFs current from the Tsanghi API."""

import os

__version__ = "0.1.0"

# polars sizes its thread pool once, at import, to every core. Normalize needs far
# less than that (one core transforms rows several times faster than COPY stores
# them), while PostgreSQL's COPY backend, the load's bottleneck, needs a core of
# its own: on two cores polars' two threads took turns with it and every part
# loaded slower. One core is left to PostgreSQL; POLARS_MAX_THREADS, when set, wins.
os.environ.setdefault("POLARS_MAX_THREADS", str(max(1, (os.cpu_count() or 1) - 1)))

# Allocators, chosen here because each library reads its setting once, when it
# loads. Freed memory the allocator keeps for later counts as resident: a
# catch-up run (every ETF a few days behind, a few whole histories) peaked at
# about 455 MB, nearly half of it pages freed but kept. pyarrow's default pool
# (mimalloc) kept the pages of the JSON reads of normalize (etl/decode.py);
# the system allocator hands them back, at no cost in time. polars' jemalloc
# spreads the threads of a run (fetch workers, normalize, load) over arenas of
# their own and keeps each arena's freed pages for half a second, purged only
# when that arena allocates again; with one arena a thread reuses the pages
# another freed, and a background thread purges what stays free for 20 ms.
# Purging at every free (dirty_decay_ms:0) cost normalize 30% more CPU.
# Set either variable to override.
os.environ.setdefault("ARROW_DEFAULT_MEMORY_POOL", "system")
os.environ.setdefault(
    "_RJEM_MALLOC_CONF", "narenas:1,background_thread:true,dirty_decay_ms:20,muzzy_decay_ms:0"
)
