#!/usr/bin/env bash
# Stops the test PostgreSQL started by scripts/pg-start.sh (no-op when it is not running).
#
#   scripts/pg-stop.sh [DATA_DIR]      (default: <repo>/target/pg)
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
# shellcheck source=scripts/pg-common.sh
. "$ROOT/scripts/pg-common.sh"
PGDATA_DIR=$(pg_data_dir "${1:-}")

if [ -z "$PGBIN" ] || [ ! -s "$PGDATA_DIR/PG_VERSION" ]; then
    exit 0
fi

if as_owner "$PGBIN/pg_ctl" -D "$PGDATA_DIR" status >/dev/null 2>&1; then
    as_owner "$PGBIN/pg_ctl" -D "$PGDATA_DIR" -m fast -w stop >/dev/null
    echo "pg-stop: stopped $PGDATA_DIR" >&2
fi
