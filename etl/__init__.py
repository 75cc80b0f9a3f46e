"""etf-sync: keep a PostgreSQL database of Chinese ETFs current from the Tsanghi API."""

import os

__version__ = "0.1.0"

# polars sizes its thread pool once, at import, to every core. Normalize needs far
# less than that (one core transforms rows several times faster than COPY stores
# them), while PostgreSQL's COPY backend, the load's bottleneck, needs a core of
# its own: on two cores polars' two threads took turns with it and every part
# loaded slower. One core is left to PostgreSQL; POLARS_MAX_THREADS, when set, wins.
os.environ.setdefault("POLARS_MAX_THREADS", str(max(1, (os.cpu_count() or 1) - 1)))
