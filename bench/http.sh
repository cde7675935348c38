#!/usr/bin/env bash
# HTTP load benchmark of rollgate's OFREP endpoints, on loopback only.
#
#   bench/http.sh                 # 10 s per load run
#   BENCH_SECONDS=3 bench/http.sh # shorter
#
# 1. builds `rollgate` and `rollgate-ceiling` in release; installs `oha` (cargo) and `wrk`
#    (apt-get, as root) if missing;
# 2. starts bench/ceiling (bare actix-web, constant answer) and rollgate on 127.0.0.1 (temp
#    data dir, admin token from this script, 50 varied flags), each pinned to CPU 0 with one
#    HTTP worker, the load generators pinned to CPU 1 (BENCH_PIN=0 turns pinning off); in each
#    of BENCH_ROUNDS rounds drives the ceiling, OFREP single (`flag-7`) and OFREP bulk (all 50)
#    with both load generators, `-c 64` for ${BENCH_SECONDS}s each: wrk with a random user per
#    request (bench/random_user.lua), oha with one fixed user (it cannot vary a body). Printed
#    per generator: the median of each target, and per round single ÷ ceiling and
#    bulk ÷ single (issue 15's ratios);
# 3. runs both at a fixed rate (half the ceiling's peak) for the latency at a steady load,
#    then rollgate's bulk endpoint; records req/s, p50, p99 and the server's peak RSS (VmHWM);
# 4. starts a fresh server, writes 10,000 flags over the API, restarts it on the same data dir
#    (startup time), and records RSS after the load and after a short bulk run.
# Every load run is bounded by -z; every wait has a timeout; a trap stops what it started.
# Knobs: BENCH_SECONDS (10), BENCH_CONCURRENCY (64), BENCH_ROUNDS (3), BENCH_PIN (1),
# BENCH_BIG_FLAGS (10000; 0 skips step 4),
# BENCH_RATE (the fixed-rate runs' req/s; default half the ceiling's peak).
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
DURATION="${BENCH_SECONDS:-10}"
CONCURRENCY="${BENCH_CONCURRENCY:-64}"
BIG_FLAGS="${BENCH_BIG_FLAGS:-10000}"
ROUNDS="${BENCH_ROUNDS:-3}"
PIN="${BENCH_PIN:-1}"
[[ "$ROUNDS" =~ ^[0-9]+$ && "$ROUNDS" -ge 1 ]] || { echo "BENCH_ROUNDS must be a whole number >= 1" >&2; exit 2; }
[[ "$DURATION" =~ ^[0-9]+$ && "$DURATION" -ge 1 ]] || { echo "BENCH_SECONDS must be a whole number >= 1" >&2; exit 2; }
BIG_DURATION=$(( DURATION < 5 ? DURATION : 5 ))
ADMIN_TOKEN="bench-admin-$(od -An -N12 -tx1 /dev/urandom | tr -d ' \n')"
BODY='{"context":{"targetingKey":"user-4242","tier":"basic","country":"de","app_version":"3.2.1","age":34}}'
export PATH="$HOME/.cargo/bin:$PATH"
# Per-request logging would measure the terminal, not the server.
export RUST_LOG="${RUST_LOG:-warn}"

WORK="$(mktemp -d -t rollgate-bench.XXXXXX)"
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
die() { printf 'bench/http.sh: %s\n' "$*" >&2; exit 1; }

# --- build and tools ----------------------------------------------------------------------
command -v python3 >/dev/null || die "python3 is needed to parse oha's JSON"
log "building rollgate and rollgate-ceiling (release)"
(cd "$ROOT" && cargo build --release --quiet -p rollgate --bin rollgate -p rollgate-ceiling --bin rollgate-ceiling)
ROLLGATE="$ROOT/target/release/rollgate"
CEILING="$ROOT/target/release/rollgate-ceiling"
if ! command -v oha >/dev/null; then
    log "installing oha (cargo install oha --locked; a few minutes, once)"
    cargo install oha --locked --quiet
fi
if ! command -v wrk >/dev/null; then
    [[ "$(id -u)" == 0 ]] || die "wrk is missing: apt-get install wrk (as root)"
    log "installing wrk (apt-get)"
    apt-get install -y -qq wrk >/dev/null 2>&1 || { apt-get update -qq >/dev/null 2>&1 && apt-get install -y -qq wrk >/dev/null; }
fi
# Server on CPU 0, load on CPU 1: the two never compete for a core, and the server's one
# worker is the only thing measured. Without two CPUs (or with BENCH_PIN=0) nothing is pinned
# and the server keeps one worker per core.
SERVER_PIN=()
LOAD_PIN=()
WORKERS=()
if [[ "$PIN" != 0 && "$(nproc)" -ge 2 ]]; then
    SERVER_PIN=(taskset -c 0)
    LOAD_PIN=(taskset -c 1)
    WORKERS=(--workers 1)
fi

# --- helpers ------------------------------------------------------------------------------
LAST_PID=""
LAST_URL=""

# start NAME LOGFILE CMD... : runs CMD in the background, waits (30 s max) for its
# `listening on http://…` line on stdout, sets LAST_PID and LAST_URL.
start() {
    local name="$1" out="$WORK/$1.stdout" err="$2"
    shift 2
    "$@" >"$out" 2>"$err" &
    LAST_PID=$!
    PIDS+=("$LAST_PID")
    local i
    for ((i = 0; i < 300; i++)); do
        LAST_URL="$(sed -n 's/^.*listening on \(http:\/\/[^ ]*\).*$/\1/p' "$out" | head -n1)"
        [[ -n "$LAST_URL" ]] && return 0
        kill -0 "$LAST_PID" 2>/dev/null || { cat "$err" >&2; die "$name exited before listening"; }
        sleep 0.1
    done
    cat "$err" >&2
    die "$name did not print its listening line within 30 s"
}

stop() {
    local pid="$1" p kept=()
    kill "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
    for p in "${PIDS[@]}"; do
        [[ "$p" == "$pid" ]] || kept+=("$p")
    done
    PIDS=("${kept[@]}")
}

start_rollgate() { # DATA_DIR
    mkdir -p "$1" "$WORK/policies"
    start rollgate "$WORK/rollgate.log" \
        "${SERVER_PIN[@]}" env ROLLGATE_ADMIN_TOKEN="$ADMIN_TOKEN" "$ROLLGATE" serve --bind 127.0.0.1:0 \
        "${WORKERS[@]}" --data-dir "$1" --policies-dir "$WORK/policies"
}

# kib FIELD PID: a /proc/PID/status field (VmRSS, VmHWM) in KiB.
kib() { awk -v f="$2:" '$1 == f { print $2 }' "/proc/$1/status"; }
mib() { awk -v k="$1" 'BEGIN { printf "%.1f", k / 1024 }'; }

# api METHOD PATH [BODY]: an admin API call on $BASE; prints the body, fails on non-2xx.
api() {
    python3 - "$BASE" "$ADMIN_TOKEN" "$@" <<'PY'
import json, sys, urllib.request
base, token, method, path = sys.argv[1:5]
body = sys.argv[5].encode() if len(sys.argv) > 5 else None
req = urllib.request.Request(base + path, data=body, method=method, headers={
    "Authorization": f"Bearer {token}", "Content-Type": "application/json"})
with urllib.request.urlopen(req, timeout=30) as resp:
    sys.stdout.write(resp.read().decode())
PY
}

# load NAME URL CONCURRENCY SECONDS TOKEN [OHA_ARGS...]: one oha run; prints
# "rps p50_ms p99_ms".
load() {
    local name="$1" url="$2" conc="$3" secs="$4" token="$5"
    shift 5
    "${LOAD_PIN[@]}" oha --no-tui --output-format json -c "$conc" -z "${secs}s" -m POST "$@" \
        -H "Authorization: Bearer $token" -H "Content-Type: application/json" -d "$BODY" \
        "$url" >"$WORK/$name.json"
    python3 - "$WORK/$name.json" "$name" <<'PY'
import json, sys
path, name = sys.argv[1:3]
r = json.load(open(path))
codes = {str(k): v for k, v in (r.get("statusCodeDistribution") or {}).items()}
ok = codes.get("200", 0)
# Requests cut off by -z are expected; any other error or non-200 is a broken run.
errors = {k: v for k, v in (r.get("errorDistribution") or {}).items() if "deadline" not in k}
total = sum(codes.values()) + sum(errors.values())
if total == 0 or ok / total < 0.99:
    sys.exit(f"{name}: only {ok} of {total} responses were 200: {codes} {errors}")
p = r["latencyPercentiles"]
print(f'{r["summary"]["requestsPerSec"]:.0f} {p["p50"] * 1000:.3f} {p["p99"] * 1000:.3f}')
PY
}

# load_wrk NAME URL CONCURRENCY SECONDS TOKEN: one wrk run, a random user per request;
# prints "rps p50_ms p99_ms".
load_wrk() {
    local name="$1" url="$2" conc="$3" secs="$4" token="$5"
    TOKEN="$token" "${LOAD_PIN[@]}" wrk -t 1 -c "$conc" -d "${secs}s" --latency \
        -s "$ROOT/bench/random_user.lua" "$url" >"$WORK/$name.wrk" 2>&1 \
        || { cat "$WORK/$name.wrk" >&2; die "$name: wrk failed"; }
    awk -v name="$name" '$1 == "wrk-result" {
        if ($6 > 0 || $2 == 0) { printf "%s: %d of %d answers were not 2xx/3xx\n", name, $6, $2 > "/dev/stderr"; exit 1 }
        printf "%.0f %s %s\n", $2 / ($3 / 1e6), $4, $5; found = 1 }
        END { if (!found) exit 1 }' "$WORK/$name.wrk" || die "$name: no wrk result"
}

# --- 1. both servers up --------------------------------------------------------------------
log "ceiling (bare actix-web)"
start ceiling "$WORK/ceiling.log" "${SERVER_PIN[@]}" "$CEILING" --bind 127.0.0.1:0
CEILING_PID="$LAST_PID"
CEILING_URL="$LAST_URL/ofrep/v1/evaluate/flags/flag-7"
log "rollgate: 50 flags"
start_rollgate "$WORK/data-50"
SERVER_PID="$LAST_PID"
BASE="$LAST_URL"
SINGLE_URL="$BASE/ofrep/v1/evaluate/flags/flag-7"
python3 "$ROOT/bench/seed_flags.py" "$BASE" "$ADMIN_TOKEN" 50 4 >&2
CLIENT_TOKEN="$(api POST /api/v1/tokens '{"name":"bench-client","role":"client"}' \
    | python3 -c 'import json, sys; print(json.load(sys.stdin)["token"])')"

# --- 2. ceiling, single and bulk in alternating rounds, with both load generators ---------
# The machine is shared: its speed drifts by tens of percent over a minute. Alternating the
# targets round by round and taking the median of each keeps a slow phase from landing on one
# side only; the ratios are also printed per round (each from runs seconds apart). The idle
# servers use no CPU while another is measured.
BULK_URL="$BASE/ofrep/v1/evaluate/flags"
declare -A RUNS=()
for ((round = 1; round <= ROUNDS; round++)); do
    for gen in wrk oha; do
        log "round $round/$ROUNDS, $gen: ceiling, OFREP single (flag-7), OFREP bulk (50), -c $CONCURRENCY -z ${DURATION}s each"
        loader=load
        [[ "$gen" == wrk ]] && loader=load_wrk
        RUNS[$gen,ceiling,$round]="$($loader "$gen-ceiling-$round" "$CEILING_URL" "$CONCURRENCY" "$DURATION" "any-token")"
        RUNS[$gen,single,$round]="$($loader "$gen-single-$round" "$SINGLE_URL" "$CONCURRENCY" "$DURATION" "$CLIENT_TOKEN")"
        RUNS[$gen,bulk,$round]="$($loader "$gen-bulk-$round" "$BULK_URL" "$CONCURRENCY" "$DURATION" "$CLIENT_TOKEN")"
    done
done
# median_run RUN...: the run ("rps p50 p99") with the median req/s.
median_run() { printf '%s\n' "$@" | sort -n -k1,1 | awk '{ runs[NR] = $0 } END { print runs[int((NR + 1) / 2)] }'; }
# runs GEN TARGET: every round's run of TARGET by GEN.
runs() { local r; for ((r = 1; r <= ROUNDS; r++)); do printf '%s\n' "${RUNS[$1,$2,$r]}"; done; }
# ratios GEN A B: per round, A's req/s ÷ B's.
ratios() {
    local r a b
    for ((r = 1; r <= ROUNDS; r++)); do
        read -r a _ _ <<<"${RUNS[$1,$2,$r]}"
        read -r b _ _ <<<"${RUNS[$1,$3,$r]}"
        awk -v a="$a" -v b="$b" 'BEGIN { printf "%.2f ", a / b }'
    done
}
# median_ratio GEN A B: the median of the per-round ratios.
median_ratio() { ratios "$@" | tr ' ' '\n' | sed '/^$/d' | sort -n | awk '{ v[NR] = $1 } END { print v[int((NR + 1) / 2)] }'; }
mapfile -t CEIL_LIST < <(runs oha ceiling)
mapfile -t SINGLE_LIST < <(runs oha single)
read -r CEIL_RPS CEIL_P50 CEIL_P99 <<<"$(median_run "${CEIL_LIST[@]}")"
read -r SINGLE_RPS SINGLE_P50 SINGLE_P99 <<<"$(median_run "${SINGLE_LIST[@]}")"

# Latency at a fixed offered load: half the ceiling's peak unless BENCH_RATE says otherwise.
# At full saturation every request queues behind the other 63 and behind the load generator
# on the same 2 cores, so p99 there measures the machine as much as the server; at a fixed
# rate it shows the server's own stalls. --latency-correction counts from each request's
# scheduled send time (no coordinated omission).
RATE="${BENCH_RATE:-$(awk -v r="$CEIL_RPS" 'BEGIN { printf "%d", int(r / 2000) * 1000 }')}"
[[ "$RATE" =~ ^[0-9]+$ && "$RATE" -ge 1000 ]] || die "fixed rate $RATE is not a whole number >= 1000 (BENCH_RATE)"
log "ceiling, then OFREP single, at a fixed $RATE req/s"
read -r CEILF_RPS CEILF_P50 CEILF_P99 <<<"$(load ceiling-fixed "$CEILING_URL" "$CONCURRENCY" "$DURATION" "any-token" -q "$RATE" --latency-correction)"
read -r SINGLEF_RPS SINGLEF_P50 SINGLEF_P99 <<<"$(load single-fixed "$SINGLE_URL" "$CONCURRENCY" "$DURATION" "$CLIENT_TOKEN" -q "$RATE" --latency-correction)"
stop "$CEILING_PID"

PEAK_50="$(kib "$SERVER_PID" VmHWM)"
stop "$SERVER_PID"

# --- 3. rollgate with many flags ----------------------------------------------------------
if [[ "$BIG_FLAGS" -gt 0 ]]; then
    log "rollgate: $BIG_FLAGS flags"
    start_rollgate "$WORK/data-big"
    BASE="$LAST_URL"
    SEED_LINE="$(python3 "$ROOT/bench/seed_flags.py" "$BASE" "$ADMIN_TOKEN" "$BIG_FLAGS" 8)"
    log "$SEED_LINE"
    RSS_SEEDED="$(kib "$LAST_PID" VmRSS)"
    stop "$LAST_PID"

    log "restarting on the same data dir"
    T0="$(date +%s.%N)"
    start_rollgate "$WORK/data-big"
    STARTUP_S="$(awk -v a="$T0" -v b="$(date +%s.%N)" 'BEGIN { printf "%.2f", b - a }')"
    BIG_PID="$LAST_PID"
    BASE="$LAST_URL"
    RSS_LOADED="$(kib "$BIG_PID" VmRSS)"
    # The client token lived in the other data dir: make one here.
    CLIENT_TOKEN="$(api POST /api/v1/tokens '{"name":"bench-client","role":"client"}' \
        | python3 -c 'import json, sys; print(json.load(sys.stdin)["token"])')"
    # A bulk answer carries every flag (~1 MB here): fewer connections, shorter run.
    log "OFREP bulk with $BIG_FLAGS flags: -c 8 -z ${BIG_DURATION}s"
    BIG_RESULT="$(load bulk-big "$BASE/ofrep/v1/evaluate/flags" 8 "$BIG_DURATION" "$CLIENT_TOKEN")"
    read -r BIG_RPS BIG_P50 BIG_P99 <<<"$BIG_RESULT"
    log "OFREP single with $BIG_FLAGS flags: -c $CONCURRENCY -z ${BIG_DURATION}s"
    BIGS_RESULT="$(load single-big "$BASE/ofrep/v1/evaluate/flags/flag-7" "$CONCURRENCY" "$BIG_DURATION" "$CLIENT_TOKEN")"
    read -r BIGS_RPS BIGS_P50 BIGS_P99 <<<"$BIGS_RESULT"
    RSS_AFTER_BULK="$(kib "$BIG_PID" VmRSS)"
    PEAK_BIG="$(kib "$BIG_PID" VmHWM)"
    stop "$BIG_PID"
fi

# --- summary ------------------------------------------------------------------------------
PIN_DESC="$([[ ${#SERVER_PIN[@]} -gt 0 ]] && echo "server pinned to CPU 0 (1 worker), load to CPU 1" || echo "not pinned")"
echo
echo "rollgate HTTP benchmark: $(nproc) cores, $PIN_DESC, -c $CONCURRENCY, ${DURATION}s per run, median of $ROUNDS alternating rounds ($(oha --version 2>/dev/null | head -n1); $(wrk -v 2>&1 | head -n1 | cut -d' ' -f1-2))"
printf '%-44s %12s %10s %10s\n' "scenario" "req/s" "p50 ms" "p99 ms"
for gen in wrk oha; do
    users="random user per request"
    [[ "$gen" == oha ]] && users="one fixed user"
    for target in ceiling single bulk; do
        case "$target" in
            ceiling) what="ceiling (bare actix-web)" ;;
            single) what="OFREP single, 50 flags" ;;
            bulk) what="OFREP bulk, 50 flags" ;;
        esac
        mapfile -t LIST < <(runs "$gen" "$target")
        read -r rps p50 p99 <<<"$(median_run "${LIST[@]}")"
        printf '%-44s %12s %10s %10s\n' "$gen: $what" "$rps" "$p50" "$p99"
    done
    printf '%-44s %s (per round: %s)\n' "$gen: single ÷ ceiling" "$(median_ratio "$gen" single ceiling)" "$(ratios "$gen" single ceiling)"
    printf '%-44s %s (per round: %s)\n' "$gen: bulk ÷ single" "$(median_ratio "$gen" bulk single)" "$(ratios "$gen" bulk single)"
    echo "  ($users)"
done
printf '%-44s %12s %10s %10s\n' "OFREP single, fixed $RATE req/s (oha)" "$SINGLEF_RPS" "$SINGLEF_P50" "$SINGLEF_P99"
printf '%-44s %12s %10s %10s\n' "ceiling, fixed $RATE req/s (oha)" "$CEILF_RPS" "$CEILF_P50" "$CEILF_P99"
if [[ "$BIG_FLAGS" -gt 0 ]]; then
    printf '%-44s %12s %10s %10s\n' "OFREP single, $BIG_FLAGS flags" "$BIGS_RPS" "$BIGS_P50" "$BIGS_P99"
    printf '%-44s %12s %10s %10s\n' "OFREP bulk, $BIG_FLAGS flags (-c 8, ${BIG_DURATION}s)" "$BIG_RPS" "$BIG_P50" "$BIG_P99"
fi
echo
printf '%-44s %s MiB\n' "peak RSS, 50 flags, after all runs" "$(mib "$PEAK_50")"
[[ "$BIG_FLAGS" -gt 0 ]] || exit 0
printf '%-44s %s\n' "writing $BIG_FLAGS flags over the API" "${SEED_LINE#seeded }"
printf '%-44s %s MiB\n' "RSS after writing $BIG_FLAGS flags" "$(mib "$RSS_SEEDED")"
printf '%-44s %s s\n' "restart with $BIG_FLAGS flags until listening" "$STARTUP_S"
printf '%-44s %s MiB\n' "RSS after restart ($BIG_FLAGS flags loaded)" "$(mib "$RSS_LOADED")"
printf '%-44s %s MiB\n' "RSS after the $BIG_FLAGS-flag runs" "$(mib "$RSS_AFTER_BULK")"
printf '%-44s %s MiB\n' "peak RSS, $BIG_FLAGS flags" "$(mib "$PEAK_BIG")"
# With the server saturated on its one worker, 1 / req/s is its time per answer.
mapfile -t LIST < <(runs oha bulk)
read -r BULK50_RPS _ _ <<<"$(median_run "${LIST[@]}")"
printf '%-44s %s\n' "bulk server time per flag (oha)" "$(awk -v a="$BULK50_RPS" -v b="$BIG_RPS" -v n="$BIG_FLAGS" \
    'BEGIN { printf "%.2f µs with 50 flags, %.2f µs with %d (%.2f×)", 1e6 / a / 50, 1e6 / b / n, n, (1e6 / b / n) / (1e6 / a / 50) }')"
