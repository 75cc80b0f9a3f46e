#!/usr/bin/env bash
# make demo: the offline tour, no token and no network needed.
#
# Starts the local Tsanghi-compatible API (python -m fakeapi, 60 synthetic
# ETFs since 2020) on a free port, runs a complete `make sync-etf` against it
# into the embedded PostgreSQL under ${DEMO_DATA_DIR:-./data/demo}, then shows
# `etl status` and `etl check` (whose findings the test API plants). The server
# is stopped on exit. Running it again syncs incrementally into the same
# database; `rm -rf data/demo` starts over.
#
# DEMO_DATA_DIR rather than ETL_DATA_DIR: the demo must never write its
# synthetic ETFs into the data directory of a real installation.
set -euo pipefail

here="$(cd -- "$(dirname -- "${BASH_SOURCE[0]}")" && pwd -P)"
cd -- "$(dirname -- "$here")"

if [[ ! -f .venv/.runtime ]]; then
    make -s .venv/.runtime
fi

demo_dir="${DEMO_DATA_DIR:-./data/demo}"
mkdir -p -- "$demo_dir"
server_log="$demo_dir/fakeapi.log"
: >"$server_log"

PYTHONUNBUFFERED=1 PYTHONPATH=tests .venv/bin/python -m fakeapi --port 0 --etfs 60 --token demo-token \
    >"$server_log" 2>&1 &
api_pid=$!
stop_api() {
    kill "$api_pid" 2>/dev/null || true
    wait "$api_pid" 2>/dev/null || true
}
trap stop_api EXIT
trap 'exit 130' INT TERM

# The server prints its URL once it listens (port 0: the system picks a free one).
base_url=""
for _ in $(seq 300); do
    base_url="$(grep -o 'http://[^ ]*/api/fin' "$server_log" | head -n 1 || true)"
    [[ -n "$base_url" ]] && break
    if ! kill -0 "$api_pid" 2>/dev/null; then
        echo "demo: the local API did not start:" >&2
        cat "$server_log" >&2
        exit 1
    fi
    sleep 0.1
done
if [[ -z "$base_url" ]]; then
    echo "demo: the local API did not answer within 30 s (see $server_log)" >&2
    exit 1
fi

export TSANGHI_TOKEN=demo-token TSANGHI_BASE_URL="$base_url" ETL_DATA_DIR="$demo_dir"
unset DATABASE_URL STOCK_API_TOKEN

echo "== Local Tsanghi-compatible API: $base_url (60 synthetic ETFs, token demo-token)"
echo "== make sync-etf: ETF lists and daily prices into the embedded PostgreSQL in $demo_dir"
make -s sync-etf
echo
echo "== etl status"
.venv/bin/etl status
echo
# The test API is not a perfect source on purpose: the first check's findings are
# the ones it plants, and a newcomer should know that before reading them.
echo "== etl check: the test API simulates suspensions (days some ETFs have no row) and"
echo "   three share actions (a 2-for-1 split, a 10-to-1 merge, a 1:3.8165 conversion),"
echo "   so holes, detected corporate actions and a ratio that needs the official one"
echo "   are expected here (exit 3: findings). etl check --repair asks the API again and"
echo "   records what it confirms; etl record-action records an official ratio."
check=0
.venv/bin/etl check || check=$?
if [[ $check -ne 0 && $check -ne 3 ]]; then
    exit "$check"
fi
echo
echo "Done. The database stays in $demo_dir (rm -rf it to start over)."
echo "See it again: ETL_DATA_DIR=$demo_dir make status  (or .venv/bin/etl query \"SQL\" with the same ETL_DATA_DIR)"
