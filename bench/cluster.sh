#!/usr/bin/env bash
# Cluster benchmarks of rollgate (issue 11), on loopback only: 3 nodes on one throwaway
# PostgreSQL against a single-node server (the reference), both in the same run.
#
#   bench/cluster.sh                  # all three (about 3 minutes after the build)
#   bench/cluster.sh reach            # or: eval, ingest (several may be given)
#   BENCH_SECONDS=3 bench/cluster.sh  # shorter ingestion and evaluation runs
#
# 1. builds `rollgate` and `rollgate-load` in release; needs `oha` (as bench/http.sh);
# 2. starts PostgreSQL (`scripts/pg.sh start`), then 3 nodes `rollgate serve --bind
#    127.0.0.1:0 --database-url … --data-dir <own> --policies-dir <copy of policies/>` one
#    after the other, and a single-node server (no --database-url); `ulimit -n` raised;
# 3. runs
#    - reach: 1,000 SSE subscribers spread evenly over the 3 nodes; 100 changes, each written
#      on ONE node (in turn), timed from the write's response (and from its send) to the LAST
#      subscriber having the `change` event: rollout PUTs, then guard rollbacks (one
#      `data_loss` signal posted to a node; the controller rolls the flag back; resumed on the
#      next node). The same with 1,000 subscribers on the single server; ratios cluster/single;
#    - eval: OFREP single-flag evaluation (`flag-7` of bench/seed_flags.py's 50 flags, seeded
#      on node 1 and on the single server) on node 2 vs on the single server with
#      `oha -c 64 -z BENCH_SECONDS`, BENCH_ROUNDS alternating rounds, median; ratio;
#    - ingest: batches of 1,000 signals over 32 keep-alive connections for BENCH_SECONDS on
#      node 1, then on the single server; signals/s and ratio; the node's /metrics must count
#      exactly what was accepted; the other nodes' /metrics and PostgreSQL's
#      rollgate_signal_totals are read after the flush settles (exact, or not there).
# Every wait is bounded (timeouts in rollgate-load, `timeout` around each run); a trap stops
# the servers and PostgreSQL and deletes the temp dir. Only 127.0.0.1 is contacted.
# Knobs: BENCH_SUBSCRIBERS (1000), BENCH_CHANGES (100), BENCH_REACH (rollout,rollback),
# BENCH_BATCH (1000), BENCH_CONNECTIONS (32), BENCH_SECONDS (10), BENCH_ROUNDS (3),
# BENCH_CONCURRENCY (64), BENCH_LOAD_THREADS (2), BENCH_SETTLE (15 s for global totals).
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
SUBSCRIBERS="${BENCH_SUBSCRIBERS:-1000}"
CHANGES="${BENCH_CHANGES:-100}"
REACH_KINDS="${BENCH_REACH:-rollout,rollback}"
BATCH="${BENCH_BATCH:-1000}"
CONNECTIONS="${BENCH_CONNECTIONS:-32}"
DURATION="${BENCH_SECONDS:-10}"
ROUNDS="${BENCH_ROUNDS:-3}"
CONCURRENCY="${BENCH_CONCURRENCY:-64}"
LOAD_THREADS="${BENCH_LOAD_THREADS:-2}"
SETTLE="${BENCH_SETTLE:-15}"
NODES=3
for v in SUBSCRIBERS CHANGES BATCH CONNECTIONS DURATION ROUNDS CONCURRENCY LOAD_THREADS SETTLE; do
    [[ "${!v}" =~ ^[0-9]+$ && "${!v}" -ge 1 ]] || { echo "bench/cluster.sh: $v must be a whole number >= 1" >&2; exit 2; }
done
IFS=, read -r -a REACH_LIST <<<"$REACH_KINDS"
for k in "${REACH_LIST[@]}"; do
    case "$k" in rollout | rollback) ;; *) echo "bench/cluster.sh: BENCH_REACH: unknown change $k (rollout, rollback)" >&2; exit 2 ;; esac
done
SCENARIOS=("$@")
[[ ${#SCENARIOS[@]} -gt 0 ]] || SCENARIOS=(reach eval ingest)
for s in "${SCENARIOS[@]}"; do
    case "$s" in reach | eval | ingest) ;; *) echo "bench/cluster.sh: unknown scenario $s (reach, eval, ingest)" >&2; exit 2 ;; esac
done
ADMIN_TOKEN="bench-admin-$(od -An -N12 -tx1 /dev/urandom | tr -d ' \n')"
BODY='{"context":{"targetingKey":"user-4242","tier":"basic","country":"de","app_version":"3.2.1","age":34}}'
export PATH="$HOME/.cargo/bin:$PATH"
# Per-request logging would measure the terminal, not the server.
export RUST_LOG="${RUST_LOG:-warn}"

WORK="$(mktemp -d -t rollgate-cluster.XXXXXX)"
# PostgreSQL runs as an unprivileged user when we are root: it must reach its dir.
chmod 755 "$WORK"
PIDS=()
PG_STARTED=""
cleanup() {
    local pid
    for pid in "${PIDS[@]}"; do
        kill "$pid" 2>/dev/null || true
    done
    for pid in "${PIDS[@]}"; do
        wait "$pid" 2>/dev/null || true
    done
    [[ -z "$PG_STARTED" ]] || timeout 30 "$ROOT/scripts/pg.sh" kill "$WORK/pg" >/dev/null 2>&1 || true
    rm -rf "$WORK"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

log() { printf '== %s\n' "$*" >&2; }
die() { printf 'bench/cluster.sh: %s\n' "$*" >&2; exit 1; }

# 1,000 subscribers + their client side need well over the usual 1,024 descriptors.
HARD_NOFILE="$(ulimit -Hn)"
WANT_NOFILE=65536
[[ "$HARD_NOFILE" == unlimited || "$HARD_NOFILE" -ge "$WANT_NOFILE" ]] || WANT_NOFILE="$HARD_NOFILE"
ulimit -n "$WANT_NOFILE" || die "cannot raise ulimit -n to $WANT_NOFILE"
(( $(ulimit -n) >= 2 * SUBSCRIBERS + 256 )) || die "ulimit -n is $(ulimit -n): too low for $SUBSCRIBERS subscribers"

# --- build and tools ------------------------------------------------------------------------
command -v python3 >/dev/null || die "python3 is needed (oha's JSON, /readyz)"
command -v psql >/dev/null || die "psql is needed to read the global signal totals"
log "building rollgate and rollgate-load (release)"
(cd "$ROOT" && cargo build --release --quiet -p rollgate --bin rollgate -p rollgate-load --bin rollgate-load)
ROLLGATE="$ROOT/target/release/rollgate"
LOAD="$ROOT/target/release/rollgate-load"
if [[ " ${SCENARIOS[*]} " == *" eval "* ]] && ! command -v oha >/dev/null; then
    log "installing oha (cargo install oha --locked; a few minutes, once)"
    cargo install oha --locked --quiet
fi
mkdir -p "$WORK/policies"
cp "$ROOT"/policies/*.toml "$WORK/policies/"

# --- servers --------------------------------------------------------------------------------
log "PostgreSQL (scripts/pg.sh start)"
PG_STARTED=yes
PG_URL="$(timeout 120 "$ROOT/scripts/pg.sh" start "$WORK/pg")" || die "PostgreSQL did not start"

LAST_PID=""
LAST_URL=""
# start NAME ARGS...: a rollgate server on its own data dir; waits (30 s max) for its
# `listening on http://…` line, sets LAST_PID and LAST_URL.
start() {
    local name="$1" out="$WORK/$1.stdout" err="$WORK/$1.log" i
    shift
    mkdir -p "$WORK/data-$name"
    : >"$out"
    env ROLLGATE_ADMIN_TOKEN="$ADMIN_TOKEN" "$ROLLGATE" serve --bind 127.0.0.1:0 \
        --data-dir "$WORK/data-$name" --policies-dir "$WORK/policies" "$@" >"$out" 2>"$err" &
    LAST_PID=$!
    PIDS+=("$LAST_PID")
    for ((i = 0; i < 300; i++)); do
        LAST_URL="$(sed -n 's/^.*listening on \(http:\/\/[^ ]*\).*$/\1/p' "$out" | head -n1)"
        [[ -n "$LAST_URL" ]] && return 0
        kill -0 "$LAST_PID" 2>/dev/null || { cat "$err" >&2; die "$name exited before listening"; }
        sleep 0.1
    done
    cat "$err" >&2
    die "$name did not print its listening line within 30 s"
}

NODE_URL=()
NODE_PID=()
for ((i = 1; i <= NODES; i++)); do
    start "node$i" --database-url "$PG_URL" --node-id "bench-node-$i"
    NODE_URL+=("$LAST_URL")
    NODE_PID+=("$LAST_PID")
    log "node$i: pid $LAST_PID at $LAST_URL"
done
start single
SINGLE_URL="$LAST_URL"
SINGLE_PID="$LAST_PID"
log "single: pid $SINGLE_PID at $SINGLE_URL"
OTHERS="$(IFS=,; echo "${NODE_URL[*]:1}")"

# api BASE METHOD PATH [BODY]: an admin API call; prints the body, fails on non-2xx.
api() {
    python3 - "$ADMIN_TOKEN" "$@" <<'PY'
import sys, urllib.request
token, base, method, path = sys.argv[1:5]
body = sys.argv[5].encode() if len(sys.argv) > 5 else None
req = urllib.request.Request(base + path, data=body, method=method, headers={
    "Authorization": f"Bearer {token}", "Content-Type": "application/json"})
with urllib.request.urlopen(req, timeout=30) as resp:
    sys.stdout.write(resp.read().decode())
PY
}
revision() { api "$1" GET /readyz | python3 -c 'import json, sys; print(json.load(sys.stdin)["revision"])'; }
# await_revision URL REVISION: waits (30 s max) until the node applied REVISION.
await_revision() {
    local i
    for ((i = 0; i < 300; i++)); do
        (( $(revision "$1") >= $2 )) && return 0
        sleep 0.1
    done
    die "$1 did not reach revision $2 within 30 s"
}

# run LABEL SUBCOMMAND LIMIT_S URL ARGS...: one rollgate-load run, bounded by `timeout`; its
# report goes to stderr as it runs and to $WORK/LABEL.out for the summary.
FAILED=()
RAN=()
run() {
    local label="$1" sub="$2" limit="$3" url="$4"
    shift 4
    RAN+=("$label")
    if ! timeout --kill-after=5 "$limit" "$LOAD" --url "$url" --token "$ADMIN_TOKEN" \
        --threads "$LOAD_THREADS" "$sub" "$@" 2>&1 | tee "$WORK/$label.out" >&2; then
        FAILED+=("$label")
        log "$label FAILED; server log tails:"
        for f in "$WORK"/node*.log "$WORK/single.log"; do
            echo "-- $f" >&2
            tail -n 10 "$f" >&2 || true
        done
    fi
}
# field LABEL KEY: KEY=value from the summary line of run LABEL.
field() { sed -n "s/^summary:.* $2=\([^ ]*\).*$/\1/p" "$WORK/$1.out" 2>/dev/null | head -n1; }
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (a == "" || b == "" || b + 0 == 0) print "n/a"; else printf "%.2f", a / b }'; }

# oha_run NAME URL TOKEN: one `oha -c CONCURRENCY -z DURATION` run of the OFREP single
# request; prints "rps p50_ms p99_ms".
oha_run() {
    local name="$1" url="$2" token="$3"
    oha --no-tui --output-format json -c "$CONCURRENCY" -z "${DURATION}s" -m POST \
        -H "Authorization: Bearer $token" -H "Content-Type: application/json" -d "$BODY" \
        "$url" >"$WORK/$name.json"
    python3 - "$WORK/$name.json" "$name" <<'PY'
import json, sys
path, name = sys.argv[1:3]
r = json.load(open(path))
codes = {str(k): v for k, v in (r.get("statusCodeDistribution") or {}).items()}
ok = codes.get("200", 0)
errors = {k: v for k, v in (r.get("errorDistribution") or {}).items() if "deadline" not in k}
total = sum(codes.values()) + sum(errors.values())
if total == 0 or ok / total < 0.99:
    sys.exit(f"{name}: only {ok} of {total} responses were 200: {codes} {errors}")
p = r["latencyPercentiles"]
print(f'{r["summary"]["requestsPerSec"]:.0f} {p["p50"] * 1000:.3f} {p["p99"] * 1000:.3f}')
PY
}
median_run() { printf '%s\n' "$@" | sort -n -k1,1 | awk '{ runs[NR] = $0 } END { print runs[int((NR + 1) / 2)] }'; }

# global_totals FLAG: the flag's signal count in PostgreSQL (0 when none was flushed).
global_totals() {
    psql "$PG_URL" -Atq -v ON_ERROR_STOP=1 \
        -c "SELECT coalesce(sum(count), 0) FROM rollgate_signal_totals WHERE flag = '$1'"
}

SUMMARY=()
add() { SUMMARY+=("$(printf '%-58s %s' "$1" "$2")"); }

for s in "${SCENARIOS[@]}"; do
    case "$s" in
    reach)
        for kind in "${REACH_LIST[@]}"; do
            log "reach ($kind): $SUBSCRIBERS subscribers over $NODES nodes, $CHANGES changes"
            run "reach-$kind-cluster" reach 150 "${NODE_URL[0]}" --node "$OTHERS" \
                --change "$kind" --subscribers "$SUBSCRIBERS" --changes "$CHANGES"
            log "reach ($kind): $SUBSCRIBERS subscribers on the single server, $CHANGES changes"
            run "reach-$kind-single" reach 150 "$SINGLE_URL" \
                --change "$kind" --subscribers "$SUBSCRIBERS" --changes "$CHANGES"
            c="reach-$kind-cluster" r="reach-$kind-single"
            add "reach $kind, write response -> last of $SUBSCRIBERS, cluster" \
                "p50 $(field $c p50_ms) ms, p99 $(field $c p99_ms) ms, max $(field $c max_ms) ms (target p99 <= 100 ms: $(field $c target_p99))"
            add "  from the write's send, cluster" "p50 $(field $c send_p50_ms) ms, p99 $(field $c send_p99_ms) ms; first -> last subscriber p99 $(field $c spread_p99_ms) ms"
            [[ "$kind" != rollback ]] || add "  rollbacks seen before their signal was sent, cluster" "$(field $c early)"
            add "  single server (reference)" \
                "p50 $(field $r p50_ms) ms, p99 $(field $r p99_ms) ms, max $(field $r max_ms) ms; from the send p99 $(field $r send_p99_ms) ms"
            add "  ratio cluster / single" "p50 $(ratio "$(field $c p50_ms)" "$(field $r p50_ms)")x, p99 $(ratio "$(field $c p99_ms)" "$(field $r p99_ms)")x, from the send p99 $(ratio "$(field $c send_p99_ms)" "$(field $r send_p99_ms)")x"
        done ;;
    eval)
        log "eval: seeding 50 flags on node1 and on the single server"
        python3 "$ROOT/bench/seed_flags.py" "${NODE_URL[0]}" "$ADMIN_TOKEN" 50 4 >&2
        python3 "$ROOT/bench/seed_flags.py" "$SINGLE_URL" "$ADMIN_TOKEN" 50 4 >&2
        token_of() { api "$1" POST /api/v1/tokens "{\"name\":\"bench-eval-$2\",\"role\":\"client\"}" | python3 -c 'import json, sys; print(json.load(sys.stdin)["token"])'; }
        CLUSTER_TOKEN="$(token_of "${NODE_URL[0]}" "$RANDOM")"
        SINGLE_TOKEN="$(token_of "$SINGLE_URL" "$RANDOM")"
        await_revision "${NODE_URL[1]}" "$(revision "${NODE_URL[0]}")"
        C_RUNS=()
        S_RUNS=()
        for ((round = 1; round <= ROUNDS; round++)); do
            log "eval round $round/$ROUNDS: node2, then the single server, -c $CONCURRENCY -z ${DURATION}s each"
            C_RUNS+=("$(oha_run "eval-cluster-$round" "${NODE_URL[1]}/ofrep/v1/evaluate/flags/flag-7" "$CLUSTER_TOKEN")") || { FAILED+=(eval); break; }
            S_RUNS+=("$(oha_run "eval-single-$round" "$SINGLE_URL/ofrep/v1/evaluate/flags/flag-7" "$SINGLE_TOKEN")") || { FAILED+=(eval); break; }
            log "  node2 ${C_RUNS[-1]%% *} req/s, single ${S_RUNS[-1]%% *} req/s"
        done
        if [[ ${#S_RUNS[@]} -eq "$ROUNDS" ]]; then
            read -r C_RPS C_P50 C_P99 <<<"$(median_run "${C_RUNS[@]}")"
            read -r S_RPS S_P50 S_P99 <<<"$(median_run "${S_RUNS[@]}")"
            PER_ROUND="$(for ((i = 0; i < ROUNDS; i++)); do
                awk -v a="${C_RUNS[$i]%% *}" -v b="${S_RUNS[$i]%% *}" 'BEGIN { printf "%.1f ", 100 * a / b }'
            done)"
            SHARE="$(awk -v a="$C_RPS" -v b="$S_RPS" 'BEGIN { printf "%.1f", 100 * a / b }')"
            add "OFREP single (flag-7 of 50), cluster node 2" "$C_RPS req/s, p50 $C_P50 ms, p99 $C_P99 ms (median of $ROUNDS, oha -c $CONCURRENCY -z ${DURATION}s)"
            add "  single server (reference)" "$S_RPS req/s, p50 $S_P50 ms, p99 $S_P99 ms"
            add "  cluster node as a share of the single server" "$SHARE % (per round: ${PER_ROUND}%) (target >= 95 %: $(awk -v s="$SHARE" 'BEGIN { print (s >= 95 ? "met" : "MISSED") }'))"
        fi ;;
    ingest)
        log "ingest on node1: batch $BATCH, $CONNECTIONS connections, ${DURATION}s"
        run ingest-cluster ingest $((DURATION + SETTLE + 60)) "${NODE_URL[0]}" --batch "$BATCH" \
            --connections "$CONNECTIONS" --seconds "$DURATION" --server-pid "${NODE_PID[0]}" \
            --also-check "$OTHERS" --settle-s "$SETTLE" --target-per-s 500000
        log "ingest on the single server: batch $BATCH, $CONNECTIONS connections, ${DURATION}s"
        run ingest-single ingest $((DURATION + 60)) "$SINGLE_URL" --batch "$BATCH" \
            --connections "$CONNECTIONS" --seconds "$DURATION" --server-pid "$SINGLE_PID"
        FLAG="$(field ingest-cluster flag)"
        ACCEPTED="$(field ingest-cluster accepted)"
        GLOBAL="n/a"
        if [[ -n "$FLAG" && -n "$ACCEPTED" ]]; then
            for ((i = 0; i < SETTLE * 5; i++)); do
                GLOBAL="$(global_totals "$FLAG")"
                [[ "$GLOBAL" == "$ACCEPTED" ]] && break
                sleep 0.2
            done
        fi
        if [[ "$GLOBAL" == "$ACCEPTED" ]]; then
            GLOBAL_NOTE="exact ($GLOBAL of $ACCEPTED)"
        elif [[ "$GLOBAL" == 0 ]]; then
            GLOBAL_NOTE="none flushed to PostgreSQL within ${SETTLE}s (this build has no outbox flush)"
        else
            GLOBAL_NOTE="NOT exact: $GLOBAL in PostgreSQL, $ACCEPTED accepted"
        fi
        c=ingest-cluster r=ingest-single
        add "signal ingestion, node 1 of 3 (batch $BATCH, $CONNECTIONS conns, ${DURATION}s)" \
            "$(field $c signals_per_s) signals/s, p99 $(field $c p99_ms) ms; node's own counts exact: $(field $c counts_exact) (target >= 500k/s: $(field $c target))"
        add "  global totals: rollgate_signal_totals in PostgreSQL" "$GLOBAL_NOTE"
        add "  other nodes' /metrics showing the same totals" "$(field $c others_exact)"
        add "  single server (reference)" "$(field $r signals_per_s) signals/s, p99 $(field $r p99_ms) ms; counts exact: $(field $r counts_exact)"
        add "  ratio cluster / single" "$(ratio "$(field $c signals_per_s)" "$(field $r signals_per_s)")x" ;;
    esac
done

for f in "$WORK"/node*.log "$WORK/single.log"; do
    if grep -qiE 'panick|fell behind' "$f"; then
        log "$(basename "$f"): warnings in the server log:"
        grep -iE 'panick|fell behind' "$f" | head -n 5 >&2
    fi
done

# --- summary --------------------------------------------------------------------------------
echo
echo "rollgate cluster benchmark: $NODES nodes + PostgreSQL + a single-node reference on" \
    "$(nproc) cores shared with the load generator (load average at the end: $(cut -d' ' -f1-3 /proc/loadavg))"
printf '%s\n' "${SUMMARY[@]}"
[[ ${#FAILED[@]} -eq 0 ]] || die "failed: ${FAILED[*]}"
