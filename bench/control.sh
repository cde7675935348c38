#!/usr/bin/env bash
# Control-plane benchmarks of rollgate, on loopback only: SSE fan-out, signal ingestion and
# detection latency, driven by `rollgate-load` (bench/load).
#
#   bench/control.sh                  # all three (about 1.5 minutes after the build)
#   bench/control.sh fanout           # or: ingest, detect, latency (several may be given)
#   BENCH_SECONDS=3 bench/control.sh  # shorter ingestion run
#
# 1. builds `rollgate` and `rollgate-load` in release;
# 2. per scenario, starts a fresh `rollgate serve --bind 127.0.0.1:0` (temp data dir, admin token
#    from this script, policies dir holding a copy of policies/checkout.toml), with `ulimit -n`
#    raised for both processes, and runs
#    - fanout: 1,000 SSE subscribers; server RSS before/after connecting (per idle subscriber);
#      100 sequential rollout changes, each timed from the PUT's response to the LAST
#      subscriber having the change event (p50/p99/max);
#    - ingest: batches of 1,000 signals over 32 keep-alive connections for BENCH_SECONDS;
#      signals/s, request p50/p99; server-side counts on /metrics must match exactly;
#    - latency (issue 12, not in the default set): on one server, ingestion of rate signals,
#      then of latency values, then of latency histograms (half exposures each), and the ratios
#      of the latency runs to the rate run;
#    - detect: a release under policy `checkout`; 100 times one `data_loss` signal, timed from
#      the batch's response to the rollback `change` event on the stream, then resume; once on
#      an idle server and once while 4 connections post 1,000-signal batches for another flag.
# Every wait is bounded (timeouts in rollgate-load, `timeout` around each run); a trap stops
# the server and deletes the temp dir. Only 127.0.0.1 is contacted.
# Knobs: BENCH_SUBSCRIBERS (1000), BENCH_CHANGES (100), BENCH_BATCH (1000),
# BENCH_CONNECTIONS (32), BENCH_SECONDS (10), BENCH_ITERATIONS (100), BENCH_LOAD_THREADS (2),
# BENCH_DETECT_BACKGROUND (4; 0 skips the loaded detection run).
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
SUBSCRIBERS="${BENCH_SUBSCRIBERS:-1000}"
CHANGES="${BENCH_CHANGES:-100}"
BATCH="${BENCH_BATCH:-1000}"
CONNECTIONS="${BENCH_CONNECTIONS:-32}"
DURATION="${BENCH_SECONDS:-10}"
ITERATIONS="${BENCH_ITERATIONS:-100}"
LOAD_THREADS="${BENCH_LOAD_THREADS:-2}"
DETECT_BACKGROUND="${BENCH_DETECT_BACKGROUND:-4}"
[[ "$DETECT_BACKGROUND" =~ ^[0-9]+$ ]] || { echo "bench/control.sh: BENCH_DETECT_BACKGROUND must be a whole number" >&2; exit 2; }
for v in SUBSCRIBERS CHANGES BATCH CONNECTIONS DURATION ITERATIONS LOAD_THREADS; do
    [[ "${!v}" =~ ^[0-9]+$ && "${!v}" -ge 1 ]] || { echo "bench/control.sh: $v must be a whole number >= 1" >&2; exit 2; }
done
SCENARIOS=("$@")
[[ ${#SCENARIOS[@]} -gt 0 ]] || SCENARIOS=(fanout ingest detect)
for s in "${SCENARIOS[@]}"; do
    case "$s" in fanout | ingest | detect | latency) ;; *) echo "bench/control.sh: unknown scenario $s (fanout, ingest, detect, latency)" >&2; exit 2 ;; esac
done
ADMIN_TOKEN="bench-admin-$(od -An -N12 -tx1 /dev/urandom | tr -d ' \n')"
export PATH="$HOME/.cargo/bin:$PATH"
# Per-request logging would measure the terminal, not the server.
export RUST_LOG="${RUST_LOG:-warn}"

WORK="$(mktemp -d -t rollgate-control.XXXXXX)"
PIDS=()
cleanup() {
    local pid
    for pid in "${PIDS[@]}"; do
        kill "$pid" 2>/dev/null || true
    done
    for pid in "${PIDS[@]}"; do
        wait "$pid" 2>/dev/null || true
    done
    rm -rf "$WORK"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

log() { printf '== %s\n' "$*" >&2; }
die() { printf 'bench/control.sh: %s\n' "$*" >&2; exit 1; }

# 1,000 subscribers + their client side need well over the usual 1,024 descriptors; the
# limit is inherited by the server and the load generator.
HARD_NOFILE="$(ulimit -Hn)"
WANT_NOFILE=65536
[[ "$HARD_NOFILE" == unlimited || "$HARD_NOFILE" -ge "$WANT_NOFILE" ]] || WANT_NOFILE="$HARD_NOFILE"
ulimit -n "$WANT_NOFILE" || die "cannot raise ulimit -n to $WANT_NOFILE"
(( $(ulimit -n) >= 2 * SUBSCRIBERS + 256 )) || die "ulimit -n is $(ulimit -n): too low for $SUBSCRIBERS subscribers"

# --- build --------------------------------------------------------------------------------
log "building rollgate and rollgate-load (release)"
(cd "$ROOT" && cargo build --release --quiet -p rollgate --bin rollgate -p rollgate-load --bin rollgate-load)
ROLLGATE="$ROOT/target/release/rollgate"
LOAD="$ROOT/target/release/rollgate-load"
mkdir -p "$WORK/policies"
cp "$ROOT/policies/checkout.toml" "$WORK/policies/"

# --- server -------------------------------------------------------------------------------
SERVER_PID=""
BASE=""
# start_rollgate NAME: a fresh server on its own data dir; waits (30 s max) for its
# `rollgate listening on http://…` line, sets SERVER_PID and BASE.
start_rollgate() {
    local name="$1" out="$WORK/$1.stdout" err="$WORK/$1.log" i
    mkdir -p "$WORK/data-$name"
    : >"$out"
    env ROLLGATE_ADMIN_TOKEN="$ADMIN_TOKEN" "$ROLLGATE" serve --bind 127.0.0.1:0 \
        --data-dir "$WORK/data-$name" --policies-dir "$WORK/policies" >"$out" 2>"$err" &
    SERVER_PID=$!
    PIDS+=("$SERVER_PID")
    for ((i = 0; i < 300; i++)); do
        BASE="$(sed -n 's/^.*listening on \(http:\/\/[^ ]*\).*$/\1/p' "$out" | head -n1)"
        [[ -n "$BASE" ]] && return 0
        kill -0 "$SERVER_PID" 2>/dev/null || { cat "$err" >&2; die "rollgate exited before listening"; }
        sleep 0.1
    done
    cat "$err" >&2
    die "rollgate did not print its listening line within 30 s"
}

stop_rollgate() {
    local p kept=()
    kill "$SERVER_PID" 2>/dev/null || true
    wait "$SERVER_PID" 2>/dev/null || true
    for p in "${PIDS[@]}"; do
        [[ "$p" == "$SERVER_PID" ]] || kept+=("$p")
    done
    PIDS=("${kept[@]}")
}

# run LABEL SUBCOMMAND LIMIT_S ARGS...: one rollgate-load run against the current server,
# bounded by `timeout`; its report goes to stderr as it runs and to $WORK/LABEL.out for the
# summary. An argument `@SERVER_PID@` becomes the server's pid.
FAILED=()
RAN=()
run() {
    local label="$1" sub="$2" limit="$3"
    shift 3
    local args=("${@//@SERVER_PID@/$SERVER_PID}")
    RAN+=("$label")
    if ! timeout --kill-after=5 "$limit" "$LOAD" --url "$BASE" --token "$ADMIN_TOKEN" \
        --threads "$LOAD_THREADS" "$sub" "${args[@]}" 2>&1 | tee "$WORK/$label.out" >&2; then
        FAILED+=("$label")
        log "$label FAILED; server log tail:"
        tail -n 20 "$WORK/$SERVER_NAME.log" >&2 || true
    fi
}

# fresh NAME: stops the previous server (after checking its log) and starts a new one.
SERVER_NAME=""
fresh() {
    [[ -z "$SERVER_NAME" ]] || finish_server
    SERVER_NAME="$1"
    start_rollgate "$1"
    log "$1: rollgate pid $SERVER_PID at $BASE"
}
finish_server() {
    if grep -qiE 'panick|fell behind' "$WORK/$SERVER_NAME.log"; then
        log "$SERVER_NAME: the server log has warnings:"
        grep -iE 'panick|fell behind' "$WORK/$SERVER_NAME.log" | head -n 5 >&2
    fi
    stop_rollgate
    SERVER_NAME=""
}

for s in "${SCENARIOS[@]}"; do
    case "$s" in
    fanout)
        fresh fanout
        log "fanout: $SUBSCRIBERS subscribers, $CHANGES changes"
        run fanout fanout 120 --subscribers "$SUBSCRIBERS" --changes "$CHANGES" --server-pid @SERVER_PID@ ;;
    ingest)
        fresh ingest
        log "ingest: batch $BATCH, $CONNECTIONS connections, ${DURATION}s"
        run ingest ingest $((DURATION + 60)) --batch "$BATCH" --connections "$CONNECTIONS" \
            --seconds "$DURATION" --server-pid @SERVER_PID@ ;;
    latency)
        fresh latency
        for shape in rate values histogram; do
            log "latency: $shape signals, batch $BATCH, $CONNECTIONS connections, ${DURATION}s"
            extra=()
            [[ "$shape" == rate ]] || extra=(--latency "$shape")
            run "latency-$shape" ingest $((DURATION + 60)) --batch "$BATCH" --connections "$CONNECTIONS" \
                --seconds "$DURATION" --exposure-share 0.5 --server-pid @SERVER_PID@ "${extra[@]}"
        done
        rate_of() { sed -n 's/^summary: .* signals_per_s=\([0-9]*\) .*$/\1/p' "$WORK/latency-$1.out" | head -n1; }
        base="$(rate_of rate)"
        for shape in values histogram; do
            got="$(rate_of "$shape")"
            [[ -n "$base" && -n "$got" ]] && echo "  latency ratio: $shape / rate = $(awk -v a="$got" -v b="$base" 'BEGIN { printf "%.2f", a / b }') ($got vs $base signals/s)" | tee -a "$WORK/latency-$shape.out" >&2
        done ;;
    detect)
        fresh detect
        log "detect: $ITERATIONS iterations, idle server"
        run detect detect 90 --iterations "$ITERATIONS"
        if [[ "$DETECT_BACKGROUND" -gt 0 ]]; then
            log "detect: $ITERATIONS iterations under ingestion ($DETECT_BACKGROUND connections of 1,000-signal batches)"
            run detect-loaded detect 90 --iterations "$ITERATIONS" --background "$DETECT_BACKGROUND"
        fi ;;
    esac
done
[[ -z "$SERVER_NAME" ]] || finish_server

# --- summary ------------------------------------------------------------------------------
echo
echo "rollgate control-plane benchmark: $(nproc) cores shared by server and load generator" \
    "(load generator: $LOAD_THREADS threads)"
for s in "${RAN[@]}"; do
    [[ -f "$WORK/$s.out" ]] && grep -E '^(note|summary|  )' "$WORK/$s.out" | grep -vE '^  \(negative' || true
done
[[ ${#FAILED[@]} -eq 0 ]] || die "failed: ${FAILED[*]}"
