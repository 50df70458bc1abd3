#!/usr/bin/env bash
# Starts the PostgreSQL used by the tests, idempotently, and prints its URL on stdout.
#
#   scripts/pg-start.sh [DATA_DIR]     (default: <repo>/target/pg; as root, a directory under
#                                       /tmp when the postgres user cannot reach that one)
#
# * initdb (trust auth, user `postgres`) when DATA_DIR has no cluster yet. initdb refuses to run
#   as root, so as root every server command runs as the `postgres` user.
# * starts the server on 127.0.0.1:$PG_PORT (default 55432, unix socket in /tmp) unless it is
#   already running, or something already answers on that port (e.g. another work tree's server).
# * creates the database $PG_DB (default switchboard_test) when it is missing.
#
# The caller exports SWITCHBOARD_TEST_PG=postgres://postgres@127.0.0.1:55432/switchboard_test
# (the Makefile does); the same URL is printed for `export SWITCHBOARD_TEST_PG=$(scripts/pg-start.sh)`.
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
PG_PORT=${PG_PORT:-55432}
PG_DB=${PG_DB:-switchboard_test}
# shellcheck source=scripts/pg-common.sh
. "$ROOT/scripts/pg-common.sh"

if [ -z "$PGBIN" ] || [ ! -x "$PGBIN/initdb" ]; then
    echo "pg-start: PostgreSQL server binaries not found under /usr/lib/postgresql (apt package postgresql)" >&2
    exit 1
fi
mkdir -p "$(dirname "${1:-$ROOT/target/pg}")"
PGDATA_DIR=$(pg_data_dir "${1:-}")

ready() {
    "$PGBIN/pg_isready" -q -h 127.0.0.1 -p "$PG_PORT" >/dev/null 2>&1
}

if [ ! -s "$PGDATA_DIR/PG_VERSION" ]; then
    mkdir -p "$PGDATA_DIR"
    if [ "$(id -u)" -eq 0 ]; then
        chown postgres:postgres "$PGDATA_DIR"
    fi
    chmod 700 "$PGDATA_DIR"
    echo "pg-start: initdb $PGDATA_DIR" >&2
    as_owner "$PGBIN/initdb" -D "$PGDATA_DIR" -U postgres -A trust \
        --encoding=UTF8 --locale=C.UTF-8 >/dev/null
fi

if as_owner "$PGBIN/pg_ctl" -D "$PGDATA_DIR" status >/dev/null 2>&1; then
    : # already running from this data directory
elif ready; then
    echo "pg-start: something already answers on 127.0.0.1:$PG_PORT; using it" >&2
else
    echo "pg-start: starting PostgreSQL on 127.0.0.1:$PG_PORT" >&2
    as_owner "$PGBIN/pg_ctl" -D "$PGDATA_DIR" -l "$PGDATA_DIR/server.log" -w -t 60 \
        -o "-p $PG_PORT -c listen_addresses=127.0.0.1 -k /tmp" start >/dev/null || {
        echo "pg-start: pg_ctl start failed; last lines of $PGDATA_DIR/server.log:" >&2
        tail -n 20 "$PGDATA_DIR/server.log" >&2 || true
        exit 1
    }
fi

for _ in $(seq 1 50); do
    ready && break
    sleep 0.2
done

PSQL=("$PGBIN/psql" -X -q -h 127.0.0.1 -p "$PG_PORT" -U postgres -d postgres)
exists=$("${PSQL[@]}" -tAc "SELECT 1 FROM pg_database WHERE datname = '$PG_DB'")
if [ "$exists" != "1" ]; then
    # A concurrent run may create it first: "already exists" is fine.
    "${PSQL[@]}" -c "CREATE DATABASE \"$PG_DB\"" 2>/dev/null ||
        [ "$("${PSQL[@]}" -tAc "SELECT 1 FROM pg_database WHERE datname = '$PG_DB'")" = "1" ]
fi

echo "postgres://postgres@127.0.0.1:$PG_PORT/$PG_DB"
