#!/usr/bin/env bash
# Nightly ETF sync for cron (see scripts/crontab.example).
#
#   scripts/cron-sync-etf.sh [etl sync options, e.g. --exchange XSHG]
#
# - Runs `etl --quiet sync` from the repository this script lives in, with the
#   environment it was given. Settings may also come from an env file,
#   ${ETF_SYNC_ENV:-$HOME/.config/etf-sync.env}, if it exists (KEY=value lines:
#   TSANGHI_TOKEN, DATABASE_URL, ETL_DATA_DIR, ...), so the token never has to be
#   written into the crontab. The file is read as data, never run as shell code:
#   a value is taken literally ($, `, quotes and parentheses included) up to the
#   first blank, or between '...' or "..." when it holds blanks; what follows it
#   on the line, and lines starting with #, are notes. Its values win over the
#   environment's.
# - One run at a time: a run that finds the previous one still going logs
#   that and exits 4 (a lock on ${ETL_DATA_DIR:-./data}/cron-sync-etf.lock).
# - Appends everything to ${ETL_DATA_DIR:-./data}/logs/sync-etf-YYYY-MM-DD.log
#   (the date in China, UTC+8: the trading day the run is for).
# - Exits with the code of `etl sync`: 0 ok, 1 failed, 3 partial, 4 another
#   sync is running. On anything but 0 it prints the code and the run's error
#   line on stderr, so cron mails a failure, with its reason, and nothing else.
set -uo pipefail

here="$(cd -- "$(dirname -- "${BASH_SOURCE[0]}")" && pwd -P)"
repo="$(dirname -- "$here")"
cd -- "$repo" || exit 1

# read_env FILE: export its KEY=value lines without any shell expansion.
read_env() {
    local file="$1" line key value n=0
    local re_pair='^[[:space:]]*(export[[:space:]]+)?([A-Za-z_][A-Za-z0-9_]*)=(.*)$'
    while IFS= read -r line || [[ -n "$line" ]]; do
        n=$((n + 1))
        line="${line%$'\r'}"
        [[ "$line" =~ ^[[:space:]]*(#.*)?$ ]] && continue
        if [[ ! "$line" =~ $re_pair ]]; then
            echo "etf-sync: $file line $n is not KEY=value; nothing was run" >&2
            return 1
        fi
        key="${BASH_REMATCH[2]}"
        value="${BASH_REMATCH[3]}"
        if [[ "$value" =~ ^\'([^\']*)\'([[:space:]].*)?$ || "$value" =~ ^\"([^\"]*)\"([[:space:]].*)?$ ]]; then
            value="${BASH_REMATCH[1]}"
        else
            value="${value%%[[:space:]]*}"  # the rest of the line is a note
        fi
        export "$key=$value"
    done <"$file"
}

env_file="${ETF_SYNC_ENV:-${HOME:-/nonexistent}/.config/etf-sync.env}"
if [[ -f "$env_file" ]]; then
    if [[ ! -r "$env_file" ]]; then
        echo "etf-sync: cannot read $env_file" >&2
        exit 1
    fi
    read_env "$env_file" || exit 1
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
run_out="$(mktemp "${TMPDIR:-/tmp}/etf-sync.XXXXXX")" || exit 1
trap 'rm -f -- "$run_out"' EXIT
# 9>&- : the lock belongs to this script only, never to anything etl starts.
.venv/bin/etl --quiet sync "$@" >"$run_out" 2>&1 9>&-
code=$?
cat -- "$run_out" >>"$log"
echo "$(stamp) exit $code" >>"$log"
if [[ $code -ne 0 ]]; then
    echo "etf-sync: etl sync exited with $code (1 failed, 3 partial, 4 another sync running); see $log" >&2
    # The reason, for the mail: etl's error line, else the summary's status line.
    reason="$(grep -m 1 '^Error: ' -- "$run_out" || grep -m 1 -E '^[a-z-]+ [^ ]+: [A-Z]+ in ' -- "$run_out")"
    [[ -n "$reason" ]] && echo "etf-sync: $reason" >&2
fi
exit "$code"
