#!/bin/sh
# Make the system PostgreSQL binaries available for the tests (tests/pg.py runs its own
# throwaway cluster from /usr/lib/postgresql/<major>/bin; no service is needed).
# Idempotent: does nothing when the binaries are already there.
set -eu

if ls /usr/lib/postgresql/*/bin/pg_ctl >/dev/null 2>&1; then
    echo "system PostgreSQL present: $(ls -d /usr/lib/postgresql/*/bin | tr '\n' ' ')"
    exit 0
fi

if ! command -v apt-get >/dev/null 2>&1; then
    echo "no /usr/lib/postgresql/*/bin/pg_ctl and no apt-get: install PostgreSQL server binaries by hand" >&2
    exit 1
fi

SUDO=""
if [ "$(id -u)" -ne 0 ]; then
    SUDO="sudo"
fi

# The package would create and start a "main" cluster as a service; the tests start
# their own. A policy-rc.d answering 101 tells invoke-rc.d not to start services.
POLICY=/usr/sbin/policy-rc.d
ADDED_POLICY=""
if [ ! -e "$POLICY" ]; then
    printf '#!/bin/sh\nexit 101\n' | $SUDO tee "$POLICY" >/dev/null
    $SUDO chmod 755 "$POLICY"
    ADDED_POLICY=1
fi
cleanup() {
    if [ -n "$ADDED_POLICY" ]; then
        $SUDO rm -f "$POLICY"
    fi
}
trap cleanup EXIT

$SUDO env DEBIAN_FRONTEND=noninteractive apt-get update
$SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends postgresql

ls /usr/lib/postgresql/*/bin/pg_ctl
