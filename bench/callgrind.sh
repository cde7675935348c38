#!/usr/bin/env bash
# Instructions per OFREP request, counted by valgrind's callgrind: repeatable on a shared,
# noisy machine where req/s drifts by tens of percent (issue 15).
#
#   bench/callgrind.sh                      # builds release, measures target/release
#   bench/callgrind.sh DIR                  # measures DIR/rollgate and DIR/rollgate-ceiling
#   CALLGRIND_REQUESTS=1000 bench/callgrind.sh
#
# For each target (the bare actix-web ceiling, rollgate OFREP single `flag-7`, rollgate OFREP
# bulk over 50 flags, and bulk over CALLGRIND_BIG_FLAGS flags) the server runs under
# `valgrind --tool=callgrind` with one HTTP worker; a Python client on one keep-alive
# connection sends warm-up requests (a tenth as many), the counters are zeroed (`callgrind_control -z`), then
# CALLGRIND_REQUESTS requests (a random user per request, fixed seed) are sent and the
# counters dumped (`callgrind_control -d`). Printed: instructions (Ir) per request, and each
# rollgate figure as a multiple of the ceiling's; the dumps and a `callgrind_annotate` of
# each run stay in CALLGRIND_OUT (default target/callgrind) for reading.
# Every wait has a timeout; a trap stops what it started.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
REQUESTS="${CALLGRIND_REQUESTS:-2000}"
BIG_FLAGS="${CALLGRIND_BIG_FLAGS:-10000}"
OUT="${CALLGRIND_OUT:-$ROOT/target/callgrind}"
[[ "$REQUESTS" =~ ^[0-9]+$ && "$REQUESTS" -ge 10 ]] || { echo "CALLGRIND_REQUESTS must be a whole number >= 10" >&2; exit 2; }
[[ "$BIG_FLAGS" =~ ^[0-9]+$ ]] || { echo "CALLGRIND_BIG_FLAGS must be a whole number" >&2; exit 2; }
ADMIN_TOKEN="bench-admin-$(od -An -N12 -tx1 /dev/urandom | tr -d ' \n')"
export RUST_LOG="${RUST_LOG:-warn}"

die() { printf 'bench/callgrind.sh: %s\n' "$*" >&2; exit 1; }
log() { printf '== %s\n' "$*" >&2; }
command -v valgrind >/dev/null && command -v callgrind_control >/dev/null \
    || die "valgrind (with callgrind_control) is needed: apt-get install valgrind"

if [[ $# -ge 1 ]]; then
    BIN="$(cd "$1" && pwd)"
else
    log "building rollgate and rollgate-ceiling (release)"
    (cd "$ROOT" && cargo build --release --quiet -p rollgate --bin rollgate -p rollgate-ceiling --bin rollgate-ceiling)
    BIN="$ROOT/target/release"
fi
[[ -x "$BIN/rollgate" && -x "$BIN/rollgate-ceiling" ]] || die "$BIN has no rollgate and rollgate-ceiling"

WORK="$(mktemp -d -t rollgate-callgrind.XXXXXX)"
mkdir -p "$OUT"
PIDS=()
cleanup() {
    local pid
    for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done
    for pid in "${PIDS[@]}"; do wait "$pid" 2>/dev/null || true; done
    rm -rf "$WORK"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# start NAME CMD...: runs CMD (under callgrind unless NAME is `seed`), waits (120 s max) for
# its listening line; sets PID, URL and CG_FILE (the dumps' prefix).
start() {
    local name="$1"
    shift
    if [[ "$name" == seed ]]; then
        "$@" >"$WORK/$name.stdout" 2>"$WORK/$name.stderr" &
    else
        CG_FILE="$OUT/$name.out"
        valgrind --tool=callgrind --callgrind-out-file="$CG_FILE" --dump-instr=no \
            "$@" >"$WORK/$name.stdout" 2>"$WORK/$name.stderr" &
    fi
    PID=$!
    PIDS+=("$PID")
    local i
    for ((i = 0; i < 1200; i++)); do
        URL="$(sed -n 's/^.*listening on \(http:\/\/[^ ]*\).*$/\1/p' "$WORK/$name.stdout" | head -n1)"
        [[ -n "$URL" ]] && return 0
        kill -0 "$PID" 2>/dev/null || { cat "$WORK/$name.stderr" >&2; die "$name exited before listening"; }
        sleep 0.1
    done
    die "$name did not listen within 120 s"
}

stop() {
    kill "$PID" 2>/dev/null || true
    wait "$PID" 2>/dev/null || true
}

# send URL TOKEN COUNT: COUNT requests on one keep-alive connection, a random user each.
send() {
    python3 - "$@" <<'PY'
import http.client, json, random, sys, urllib.parse
url, token, count = sys.argv[1], sys.argv[2], int(sys.argv[3])
u = urllib.parse.urlsplit(url)
conn = http.client.HTTPConnection(u.hostname, u.port, timeout=120)
rng = random.Random(15)
headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}
for _ in range(count):
    body = json.dumps({"context": {"targetingKey": f"user-{rng.randrange(10**9)}", "tier": "basic",
                                   "country": "de", "app_version": "3.2.1", "age": 34}})
    conn.request("POST", u.path, body=body, headers=headers)
    resp = conn.getresponse()
    data = resp.read()
    if resp.status != 200:
        sys.exit(f"{url}: HTTP {resp.status}: {data[:200]!r}")
PY
}

# measure NAME URL TOKEN: warm-up, zero, REQUESTS requests, dump; prints Ir per request.
measure() {
    local name="$1" url="$2" token="$3"
    send "$url" "$token" $(( REQUESTS / 10 > 10 ? REQUESTS / 10 : 10 ))
    callgrind_control -z "$PID" >/dev/null
    send "$url" "$token" "$REQUESTS"
    callgrind_control -d "$name" "$PID" >/dev/null
    local dump
    dump="$(ls -t "$CG_FILE".* 2>/dev/null | head -n1)"
    [[ -n "$dump" ]] || die "$name: no callgrind dump in $OUT"
    callgrind_annotate --inclusive=yes "$dump" >"$OUT/$name.annotate.txt" 2>/dev/null || true
    awk -v n="$REQUESTS" '/^(summary|totals):/ { ir = $2 } END { printf "%.0f", ir / n }' "$dump"
}

# api METHOD PATH [BODY]: an admin call on $URL; prints the body.
api() {
    python3 - "$URL" "$ADMIN_TOKEN" "$@" <<'PY'
import sys, urllib.request
base, token, method, path = sys.argv[1:5]
body = sys.argv[5].encode() if len(sys.argv) > 5 else None
req = urllib.request.Request(base + path, data=body, method=method, headers={
    "Authorization": f"Bearer {token}", "Content-Type": "application/json"})
with urllib.request.urlopen(req, timeout=120) as resp:
    sys.stdout.write(resp.read().decode())
PY
}

# rollgate FLAGS: seeds FLAGS flags and a client token (CLIENT_TOKEN) with a plain server,
# then starts rollgate on the same data dir under callgrind.
rollgate() {
    local flags="$1" name
    mkdir -p "$WORK/data-$flags" "$WORK/policies"
    for name in seed "rollgate-$flags"; do
        ROLLGATE_ADMIN_TOKEN="$ADMIN_TOKEN" start "$name" "$BIN/rollgate" serve \
            --bind 127.0.0.1:0 --workers 1 --data-dir "$WORK/data-$flags" --policies-dir "$WORK/policies"
        [[ "$name" == seed ]] || return 0
        python3 "$ROOT/bench/seed_flags.py" "$URL" "$ADMIN_TOKEN" "$flags" 4 >&2
        CLIENT_TOKEN="$(api POST /api/v1/tokens '{"name":"bench-client","role":"client"}' \
            | python3 -c 'import json, sys; print(json.load(sys.stdin)["token"])')"
        stop
    done
}

rm -f "$OUT"/*.out.* "$OUT"/*.annotate.txt
log "ceiling under callgrind"
start ceiling "$BIN/rollgate-ceiling" --bind 127.0.0.1:0
CEIL="$(measure ceiling "$URL/ofrep/v1/evaluate/flags/flag-7" any-token)"
stop

log "rollgate, 50 flags, under callgrind"
rollgate 50
SINGLE="$(measure single "$URL/ofrep/v1/evaluate/flags/flag-7" "$CLIENT_TOKEN")"
BULK="$(measure bulk "$URL/ofrep/v1/evaluate/flags" "$CLIENT_TOKEN")"
stop

if [[ "$BIG_FLAGS" -gt 0 ]]; then
    log "rollgate, $BIG_FLAGS flags, under callgrind"
    rollgate "$BIG_FLAGS"
    SAVED="$REQUESTS"
    REQUESTS=$(( REQUESTS / 20 > 10 ? REQUESTS / 20 : 10 ))
    BIG="$(measure "bulk-$BIG_FLAGS" "$URL/ofrep/v1/evaluate/flags" "$CLIENT_TOKEN")"
    REQUESTS="$SAVED"
    stop
fi

ratio() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.2f", a / b }'; }
echo
echo "instructions per request (callgrind Ir, $REQUESTS requests after $(( REQUESTS / 10 )) warm-up, one worker; $BIN)"
printf '%-36s %12s %14s\n' "target" "Ir/request" "× ceiling"
printf '%-36s %12s %14s\n' "ceiling (bare actix-web)" "$CEIL" "1.00"
printf '%-36s %12s %14s\n' "OFREP single, 50 flags" "$SINGLE" "$(ratio "$SINGLE" "$CEIL")"
printf '%-36s %12s %14s\n' "OFREP bulk, 50 flags" "$BULK" "$(ratio "$BULK" "$CEIL")"
if [[ "$BIG_FLAGS" -gt 0 ]]; then
    printf '%-36s %12s %14s\n' "OFREP bulk, $BIG_FLAGS flags" "$BIG" "$(ratio "$BIG" "$CEIL")"
    printf '%-36s %12s\n' "  per flag, bulk $BIG_FLAGS vs bulk 50" \
        "$(awk -v a="$BIG" -v b="$BULK" -v n="$BIG_FLAGS" 'BEGIN { printf "%.0f", (a - b) / (n - 50) }')"
fi
echo "bulk 50 / single: $(ratio "$BULK" "$SINGLE")×; annotations: $OUT/*.annotate.txt"
