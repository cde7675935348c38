#!/usr/bin/env bash
# A throwaway PostgreSQL server for tests and benches, on a free loopback port in a directory of
# its own.
#
#   scripts/pg.sh start DIR   initialises DIR (if new) and starts the server; prints its URL
#                             (postgres://rollgate@127.0.0.1:PORT/postgres) on stdout
#   scripts/pg.sh stop DIR    stops it (fast shutdown)
#   scripts/pg.sh kill DIR    stops it the hard way (pg_ctl stop -m immediate: a crash)
#   scripts/pg.sh restart DIR starts a stopped DIR again on the same port
#   scripts/pg.sh bin         prints the directory holding initdb/pg_ctl/postgres
#
# Finds the machine's initdb/pg_ctl (Debian's /usr/lib/postgresql/*/bin first); when there are
# none and we are root, installs Debian's `postgresql` package. initdb refuses to run as root,
# so as root the server runs as the unprivileged user `rollgate-pg` (created when missing).
# An initialised cluster is kept as a template under target/pg-template and copied, so a new
# DIR costs a copy, not an initdb.
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"

find_bin() {
    local d
    for d in /usr/lib/postgresql/*/bin /usr/local/pgsql/bin /usr/local/bin /usr/bin; do
        if [ -x "$d/initdb" ] && [ -x "$d/pg_ctl" ] && [ -x "$d/postgres" ]; then
            echo "$d"
            return 0
        fi
    done
    return 1
}

bin_dir() {
    if find_bin; then return 0; fi
    if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
        echo "pg.sh: installing Debian's postgresql package" >&2
        (DEBIAN_FRONTEND=noninteractive apt-get install -y -q postgresql >/dev/null 2>&1 ||
            { apt-get update -q >/dev/null 2>&1 &&
                DEBIAN_FRONTEND=noninteractive apt-get install -y -q postgresql >/dev/null; }) >&2
        # Debian's package starts a cluster of its own; we do not use it.
        (service postgresql stop || true) >/dev/null 2>&1
        find_bin && return 0
    fi
    echo "pg.sh: no PostgreSQL binaries (initdb, pg_ctl) found and cannot install them" >&2
    return 1
}

# Runs a command as the server's user.
as_pg() {
    if [ "$(id -u)" = 0 ]; then
        runuser -u rollgate-pg -- "$@"
    else
        "$@"
    fi
}

ensure_user() {
    if [ "$(id -u)" = 0 ] && ! id rollgate-pg >/dev/null 2>&1; then
        useradd --system --no-create-home --shell /usr/sbin/nologin rollgate-pg 2>/dev/null ||
            id rollgate-pg >/dev/null
    fi
}

free_port() {
    python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'
}

template() {
    local bin="$1" tpl="$ROOT/target/pg-template"
    mkdir -p "$ROOT/target"
    # Parallel starts (tests) build the template once: the others wait for it.
    exec 9>"$ROOT/target/pg-template.lock"
    flock 9
    if [ ! -f "$tpl/ready" ]; then
        mkdir -p "$ROOT/target"
        local tmp
        tmp="$(mktemp -d "$ROOT/target/pg-template.XXXXXX")"
        chmod 755 "$tmp"
        [ "$(id -u)" = 0 ] && chown rollgate-pg "$tmp"
        as_pg "$bin/initdb" -D "$tmp/data" -U rollgate --auth=trust -E UTF8 --no-locale >/dev/null
        touch "$tmp/ready"
        rm -rf "$tpl"
        mv "$tmp" "$tpl" 2>/dev/null || rm -rf "$tmp"
    fi
    flock -u 9
    echo "$tpl"
}

start() {
    local dir="$1" bin port
    bin="$(bin_dir)"
    ensure_user
    mkdir -p "$dir"
    dir="$(cd "$dir" && pwd)"
    if [ ! -d "$dir/data" ]; then
        local tpl
        tpl="$(template "$bin")"
        cp -a "$tpl/data" "$dir/data"
        port="$(free_port)"
        echo "$port" >"$dir/port"
        cat >>"$dir/data/postgresql.conf" <<CONF
listen_addresses = '127.0.0.1'
port = $port
unix_socket_directories = '$dir'
max_connections = 200
fsync = on
synchronous_commit = on
shared_buffers = 32MB
log_min_messages = warning
CONF
        [ "$(id -u)" = 0 ] && chown -R rollgate-pg "$dir"
        chmod 755 "$dir"
    fi
    port="$(cat "$dir/port")"
    as_pg "$bin/pg_ctl" -D "$dir/data" -l "$dir/log" -w -t 60 start >/dev/null
    echo "postgres://rollgate@127.0.0.1:$port/postgres"
}

stop() {
    local bin
    bin="$(bin_dir)"
    as_pg "$bin/pg_ctl" -D "$1/data" -w -m "${2:-fast}" stop >/dev/null
}

case "${1:-}" in
start) start "$2" ;;
restart) start "$2" ;;
stop) stop "$2" fast ;;
kill) stop "$2" immediate ;;
bin) bin_dir ;;
*)
    echo "usage: $0 start|stop|kill|restart DIR | bin" >&2
    exit 2
    ;;
esac
