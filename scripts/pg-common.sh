# Shared by pg-start.sh and pg-stop.sh (sourced, not run).
#
# Sets PGBIN (the newest /usr/lib/postgresql/*/bin) and PGDATA_DIR, and defines `as_owner`.
# Input: ROOT (the repository) and the optional data-directory argument $1.

PGBIN=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1 || true)

# Runs a server command as the cluster owner: `postgres` when we are root (initdb and the server
# refuse root), else ourselves. `cd /`: the owner may not be allowed into the caller's directory.
as_owner() {
    if [ "$(id -u)" -eq 0 ]; then
        (cd / && runuser -u postgres -- "$@")
    else
        (cd / && "$@")
    fi
}

# The data directory: $1, else <repo>/target/pg. As root, when the `postgres` user cannot reach
# that place (a clone under /root, say), a directory under /tmp named after the repository path.
pg_data_dir() {
    local dir=${1:-$ROOT/target/pg}
    if [ "$(id -u)" -eq 0 ] && ! runuser -u postgres -- test -x "$(dirname "$dir")" 2>/dev/null; then
        dir=/tmp/switchboard-pg-$(printf '%s' "$dir" | md5sum | cut -c1-12)
    fi
    printf '%s\n' "$dir"
}
