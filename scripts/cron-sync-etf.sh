#!/usr/bin/env bash
# Nightly ETF sync for cron (see scripts/crontab.example).
#
#   scripts/cron-sync-etf.sh [etl sync options, e.g. --exchange XSHG]
#
# - Runs `etl --quiet sync` from the repository this script lives in, with the
#   environment it was given. Settings may also come from an env file,
#   ${ETF_SYNC_ENV:-$HOME/.config/etf-sync.env}, read by bash if it exists
#   (KEY=value lines: TSANGHI_TOKEN, DATABASE_URL, ETL_DATA_DIR, ...), so the
#   token never has to be written into the crontab.
# - One run at a time: a run that finds the previous one still going logs
#   that and exits 4 (a lock on ${ETL_DATA_DIR:-./data}/cron-sync-etf.lock).
# - Appends everything to ${ETL_DATA_DIR:-./data}/logs/sync-etf-YYYY-MM-DD.log
#   (the date in China, UTC+8: the trading day the run is for).
# - Exits with the code of `etl sync`: 0 ok, 1 failed, 3 partial, 4 another
#   sync is running. On anything but 0 it prints one line on stderr, so cron
#   mails a failure and nothing else.
set -uo pipefail

here="$(cd -- "$(dirname -- "${BASH_SOURCE[0]}")" && pwd -P)"
repo="$(dirname -- "$here")"
cd -- "$repo" || exit 1

env_file="${ETF_SYNC_ENV:-${HOME:-/nonexistent}/.config/etf-sync.env}"
if [[ -f "$env_file" ]]; then
    set -a
    # shellcheck source=/dev/null
    . "$env_file" || { echo "etf-sync: cannot read $env_file" >&2; exit 1; }
    set +a
fi

data_dir="${ETL_DATA_DIR:-./data}"
log_dir="$data_dir/logs"
if ! mkdir -p -- "$log_dir"; then
    echo "etf-sync: cannot create $log_dir (set ETL_DATA_DIR)" >&2
    exit 1
fi
# TZ=CST-8 is POSIX for UTC+8 (China has no daylight saving time); needs no tzdata.
log="$log_dir/sync-etf-$(TZ=CST-8 date +%F).log"
stamp() { date '+%F %T %z'; }

exec 9>>"$data_dir/cron-sync-etf.lock"
if ! flock -n 9; then
    echo "$(stamp) another cron-sync-etf.sh run holds $data_dir/cron-sync-etf.lock; not starting (exit 4)" >>"$log"
    echo "etf-sync: the previous run is still going; this one did not start (exit 4), see $log" >&2
    exit 4
fi

if [[ ! -f .venv/.runtime ]]; then
    # A fresh clone: let make build the virtualenv, then run etl itself so its
    # exit code is ours (make would turn every failure into 2).
    make -s .venv/.runtime >>"$log" 2>&1 9>&-
fi

echo "$(stamp) start: etl --quiet sync $* (pid $$)" >>"$log"
# 9>&- : the lock belongs to this script only, never to anything etl starts.
.venv/bin/etl --quiet sync "$@" >>"$log" 2>&1 9>&-
code=$?
echo "$(stamp) exit $code" >>"$log"
if [[ $code -ne 0 ]]; then
    echo "etf-sync: etl sync exited with $code (1 failed, 3 partial, 4 another sync running); see $log" >&2
fi
exit "$code"
