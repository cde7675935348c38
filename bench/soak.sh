#!/usr/bin/env bash
# Soak bench: SOAK_SECONDS (default 600) of mixed load against a release-built `rollgate serve`
# on 127.0.0.1 with a temp data dir, driven by `rollgate-load soak` (bench/load/src/soak.rs):
# OFREP single + bulk evaluation, signal batches, ops writes (flag PUTs, rollouts, kill/unkill),
# 200 SSE streams held open (20 of them torn down and reopened every 3-12 s), and releases
# created, ramping and rolled back by a core guard breached with injected errors.
# Prints the server's RSS (/proc/PID/status) and open fds (/proc/PID/fd) each minute, and at
# the end whether both stayed flat: last sample vs. the one after the second minute, RSS within
# +SOAK_RSS_TOLERANCE_PCT % (10) and fds within +SOAK_FD_TOLERANCE (25). Exit code 1 if not,
# or if any request got a 5xx. Stops by itself; a trap stops the server and deletes the temp dir.
#
#   bench/soak.sh                      # 10 minutes
#   SOAK_SECONDS=120 SOAK_SAMPLE_SECONDS=20 bench/soak.sh   # a short run
# Other knobs: SOAK_STREAMS (200), SOAK_RECONNECTING (20), SOAK_SINGLE_RATE (300/s),
# SOAK_BULK_RATE (30/s), SOAK_SIGNAL_RATE (20 batches of 100 /s), SOAK_OPS_RATE (4/s),
# BENCH_LOAD_THREADS (2). Not part of the test command: it runs for minutes.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
SECONDS_TOTAL="${SOAK_SECONDS:-600}"
SAMPLE="${SOAK_SAMPLE_SECONDS:-60}"
STREAMS="${SOAK_STREAMS:-200}"
RECONNECTING="${SOAK_RECONNECTING:-20}"
LOAD_THREADS="${BENCH_LOAD_THREADS:-2}"
for v in SECONDS_TOTAL SAMPLE STREAMS LOAD_THREADS; do
    [[ "${!v}" =~ ^[0-9]+$ && "${!v}" -ge 1 ]] || { echo "bench/soak.sh: $v must be a whole number >= 1" >&2; exit 2; }
done
ADMIN_TOKEN="soak-admin-$(od -An -N12 -tx1 /dev/urandom | tr -d ' \n')"
export PATH="$HOME/.cargo/bin:$PATH"
export RUST_LOG="${RUST_LOG:-warn}"

WORK="$(mktemp -d -t rollgate-soak.XXXXXX)"
SERVER_PID=""
cleanup() {
    if [[ -n "$SERVER_PID" ]]; then
        kill "$SERVER_PID" 2>/dev/null || true
        wait "$SERVER_PID" 2>/dev/null || true
    fi
    rm -rf "$WORK"
}
trap cleanup EXIT
trap 'exit 130' INT TERM
die() { printf 'bench/soak.sh: %s\n' "$*" >&2; exit 1; }

HARD_NOFILE="$(ulimit -Hn)"
WANT_NOFILE=65536
[[ "$HARD_NOFILE" == unlimited || "$HARD_NOFILE" -ge "$WANT_NOFILE" ]] || WANT_NOFILE="$HARD_NOFILE"
ulimit -n "$WANT_NOFILE" || die "cannot raise ulimit -n to $WANT_NOFILE"

echo "== building rollgate and rollgate-load (release)" >&2
(cd "$ROOT" && cargo build --release --quiet -p rollgate --bin rollgate -p rollgate-load --bin rollgate-load)
mkdir -p "$WORK/policies" "$WORK/data"
cp "$ROOT/policies/checkout.toml" "$WORK/policies/"

env ROLLGATE_ADMIN_TOKEN="$ADMIN_TOKEN" "$ROOT/target/release/rollgate" serve --bind 127.0.0.1:0 \
    --data-dir "$WORK/data" --policies-dir "$WORK/policies" >"$WORK/server.stdout" 2>"$WORK/server.log" &
SERVER_PID=$!
BASE=""
for ((i = 0; i < 300; i++)); do
    BASE="$(sed -n 's/^.*listening on \(http:\/\/[^ ]*\).*$/\1/p' "$WORK/server.stdout" | head -n1)"
    [[ -n "$BASE" ]] && break
    kill -0 "$SERVER_PID" 2>/dev/null || { cat "$WORK/server.log" >&2; die "rollgate exited before listening"; }
    sleep 0.1
done
[[ -n "$BASE" ]] || die "rollgate did not print its listening line within 30 s"
echo "== rollgate pid $SERVER_PID at $BASE; $(nproc) cores shared with the load generator" >&2

status=0
timeout --kill-after=10 $((SECONDS_TOTAL + 120)) "$ROOT/target/release/rollgate-load" \
    --url "$BASE" --token "$ADMIN_TOKEN" --threads "$LOAD_THREADS" soak \
    --seconds "$SECONDS_TOTAL" --sample-seconds "$SAMPLE" --server-pid "$SERVER_PID" \
    --streams "$STREAMS" --reconnecting "$RECONNECTING" \
    --single-rate "${SOAK_SINGLE_RATE:-300}" --bulk-rate "${SOAK_BULK_RATE:-30}" \
    --signal-rate "${SOAK_SIGNAL_RATE:-20}" --ops-rate "${SOAK_OPS_RATE:-4}" \
    --rss-tolerance-pct "${SOAK_RSS_TOLERANCE_PCT:-10}" --fd-tolerance "${SOAK_FD_TOLERANCE:-25}" || status=$?
if grep -qiE 'panick' "$WORK/server.log"; then
    echo "== the server log has panics:" >&2
    grep -iE 'panick' "$WORK/server.log" | head -n 5 >&2
    status=1
fi
echo "== server log: $(wc -l <"$WORK/server.log") lines at RUST_LOG=$RUST_LOG (ERROR: $(grep -c ERROR "$WORK/server.log" || true))" >&2
exit "$status"
