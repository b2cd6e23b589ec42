#!/usr/bin/env bash
# Start a throw-away PostgreSQL server on 127.0.0.1 for the scale-out tests (issue 6).
#
#   source .ci/postgres.sh         # installs PostgreSQL if missing, starts it, exports AUTOML_TEST_PG_URL
#   ... run pytest ...
#   automl_pg_stop                 # stops the server and deletes its data (also: bash .ci/postgres.sh stop DIR)
#
# Debian packages (apt-get install postgresql); the server runs as the 'postgres' user from a temp dir
# on a free port, so it never touches a system cluster. Safe to source twice: a running server is reused.

_automl_pg_main() {
    if [ -n "${AUTOML_TEST_PG_URL:-}" ] && [ -n "${AUTOML_TEST_PG_DATA:-}" ] && [ -f "$AUTOML_TEST_PG_DATA/db/postmaster.pid" ]; then
        echo "postgres: already running: AUTOML_TEST_PG_URL=$AUTOML_TEST_PG_URL"
        return 0
    fi
    local bindir
    bindir=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1 || true)
    if [ -z "$bindir" ]; then
        echo "postgres: installing PostgreSQL from Debian packages" >&2
        local sudo=""
        [ "$(id -u)" -ne 0 ] && sudo="sudo"
        $sudo apt-get update -qq >/dev/null && DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq postgresql >/dev/null \
            || { echo "postgres: apt-get install postgresql failed" >&2; return 1; }
        bindir=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1 || true)
    fi
    local run_as=()
    if [ "$(id -u)" -eq 0 ]; then
        id postgres >/dev/null 2>&1 || useradd --system --no-create-home postgres
        run_as=(runuser -u postgres --)
    fi
    local data port
    data=$(mktemp -d /tmp/automl-pg.XXXXXX)
    [ "$(id -u)" -eq 0 ] && chown postgres "$data"
    port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
    (cd /tmp && "${run_as[@]}" "$bindir/initdb" -D "$data/db" -U postgres --auth=trust -E UTF8 >"$data/initdb.log" 2>&1) \
        || { echo "postgres: initdb failed (see $data/initdb.log)" >&2; return 1; }
    (cd /tmp && "${run_as[@]}" "$bindir/pg_ctl" -D "$data/db" -l "$data/server.log" -w -t 60 \
        -o "-h 127.0.0.1 -p $port -k $data -c max_connections=200 -c fsync=off" start >/dev/null) \
        || { echo "postgres: server did not start (see $data/server.log)" >&2; return 1; }
    (cd /tmp && "${run_as[@]}" "$bindir/psql" -h 127.0.0.1 -p "$port" -U postgres -q -v ON_ERROR_STOP=1 \
        -c "CREATE USER automl WITH PASSWORD 'automl';" -c "CREATE DATABASE automl OWNER automl;" >/dev/null) \
        || { echo "postgres: creating the automl user/database failed" >&2; return 1; }
    export AUTOML_TEST_PG_DATA="$data"
    export AUTOML_TEST_PG_BIN="$bindir"
    export AUTOML_TEST_PG_URL="postgresql://automl:automl@127.0.0.1:$port/automl"
    echo "postgres: running on 127.0.0.1:$port (data $data)"
    echo "AUTOML_TEST_PG_URL=$AUTOML_TEST_PG_URL"
}

automl_pg_stop() {
    local data="${1:-${AUTOML_TEST_PG_DATA:-}}"
    local bindir="${AUTOML_TEST_PG_BIN:-$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1 || true)}"
    [ -n "$data" ] && [ -d "$data/db" ] || return 0
    local run_as=()
    [ "$(id -u)" -eq 0 ] && run_as=(runuser -u postgres --)
    (cd /tmp && "${run_as[@]}" "$bindir/pg_ctl" -D "$data/db" -m fast -w stop >/dev/null 2>&1)
    rm -rf "$data"
    unset AUTOML_TEST_PG_URL AUTOML_TEST_PG_DATA AUTOML_TEST_PG_BIN
    echo "postgres: stopped"
}

if [ "${BASH_SOURCE[0]}" = "$0" ]; then
    # Executed rather than sourced: 'stop DIR' stops a server; otherwise start one and print the URL.
    if [ "${1:-}" = "stop" ]; then
        automl_pg_stop "${2:-}"
    else
        _automl_pg_main || exit 1
        echo "stop it with: bash .ci/postgres.sh stop $AUTOML_TEST_PG_DATA"
    fi
else
    _automl_pg_main
fi
