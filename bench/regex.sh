#!/usr/bin/env bash
# What the bounds on `matches` patterns do over HTTP, on loopback (issue 8, defect 2):
#   1. time of a PUT refused for 300 and for 1,000 × `\w{20}` vs. a PUT of a normal flag, same
#      server, same run (median of BENCH_REPEAT each);
#   2. server RSS: idle; after filling the pattern budget (17 flags of 14 × `\w{5}`, ~64 MiB
#      compiled) and evaluating each once over OFREP (search caches built); after deleting them;
#      after filling it again (is the freed memory reused?).
#
#   bash bench/regex.sh            # builds rollgate in release first
#   BENCH_REPEAT=21 bash bench/regex.sh
#
# A trap stops the server and deletes the temp dir. Only 127.0.0.1 is contacted.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
REPEAT="${BENCH_REPEAT:-11}"
[[ "$REPEAT" =~ ^[0-9]+$ && "$REPEAT" -ge 1 ]] || { echo "bench/regex.sh: BENCH_REPEAT must be a whole number >= 1" >&2; exit 2; }
ADMIN_TOKEN="bench-admin-$(od -An -N12 -tx1 /dev/urandom | tr -d ' \n')"
export PATH="$HOME/.cargo/bin:$PATH"
export RUST_LOG="${RUST_LOG:-warn}"
WORK="$(mktemp -d -t rollgate-regex.XXXXXX)"
SERVER_PID=""
cleanup() {
    [[ -z "$SERVER_PID" ]] || { kill "$SERVER_PID" 2>/dev/null || true; wait "$SERVER_PID" 2>/dev/null || true; }
    rm -rf "$WORK"
}
trap cleanup EXIT
trap 'exit 130' INT TERM
die() { printf 'bench/regex.sh: %s\n' "$*" >&2; exit 1; }

(cd "$ROOT" && cargo build --release --quiet -p rollgate --bin rollgate)
mkdir -p "$WORK/data" "$WORK/policies"
env ROLLGATE_ADMIN_TOKEN="$ADMIN_TOKEN" "$ROOT/target/release/rollgate" serve --bind 127.0.0.1:0 \
    --data-dir "$WORK/data" --policies-dir "$WORK/policies" >"$WORK/stdout" 2>"$WORK/log" &
SERVER_PID=$!
BASE=""
for ((i = 0; i < 300; i++)); do
    BASE="$(sed -n 's/^.*listening on \(http:\/\/[^ ]*\).*$/\1/p' "$WORK/stdout" | head -n1)"
    [[ -n "$BASE" ]] && break
    kill -0 "$SERVER_PID" 2>/dev/null || { cat "$WORK/log" >&2; die "rollgate exited before listening"; }
    sleep 0.1
done
[[ -n "$BASE" ]] || die "rollgate did not listen within 30 s"

rss_mib() { awk '/^VmRSS/ {printf "%.1f", $2 / 1024}' "/proc/$SERVER_PID/status"; }
# flag KEY PATTERN COUNT: a boolean flag whose one rule matches `email` against COUNT × PATTERN.
flag() {
    python3 -c 'import json,sys; k,p,n=sys.argv[1],sys.argv[2],int(sys.argv[3]); print(json.dumps({"key":k,"type":"boolean","variants":{"off":False,"on":True},"off_variant":"off","on_variant":"on","rollout":5,"rules":[{"when":[{"attribute":"email","op":"matches","values":[p]*n}],"variant":"on"}] if n else []}))' "$@"
}
# put KEY FILE: PUT, prints "status seconds".
put() {
    curl -sS -o /dev/null -w '%{http_code} %{time_total}\n' -X PUT -H "Authorization: Bearer $ADMIN_TOKEN" \
        -H 'Content-Type: application/json' --data-binary "@$2" --max-time 120 "$BASE/api/v1/flags/$1"
}
# timed LABEL KEY FILE EXPECTED_STATUS: median of REPEAT PUTs, in ms.
timed() {
    local label="$1" key="$2" file="$3" want="$4" out status t times=()
    for ((i = 0; i < REPEAT; i++)); do
        out="$(put "$key" "$file")"
        status="${out% *}"; t="${out#* }"
        [[ "$status" == "$want" ]] || die "$label: answered $status, expected $want"
        times+=("$t")
    done
    printf '%s\n' "${times[@]}" | sort -n | awk -v l="$label" -v n="$REPEAT" '{a[NR]=$1} END {m=a[int((n+1)/2)]*1000; printf "%-44s median %8.2f ms (min %.2f, max %.2f, n=%d)\n", l, m, a[1]*1000, a[n]*1000, n; print m > "/dev/stderr"}' 2>"$WORK/$key.median"
}

flag normal '' 0 >"$WORK/normal.json"
python3 - "$WORK/normal.json" <<'PY'
import json, sys
p = sys.argv[1]; f = json.load(open(p))
f["rules"] = [
    {"when": [{"attribute": "tier", "op": "in", "values": ["innovation", "beta-testers"]}], "variant": "on"},
    {"when": [{"attribute": "app_version", "op": "semver_gte", "values": ["3.1.0"]}], "variant": "on"},
    {"when": [{"attribute": "email", "op": "matches", "values": ["^[\\w.-]+@([\\w-]+\\.)*corp\\.com$", "(?i)^qa-\\d{1,6}@"]}], "variant": "on"},
]
json.dump(f, open(p, "w"))
PY
flag amp300 '\w{20}' 300 >"$WORK/amp300.json"
flag amp1000 '\w{20}' 1000 >"$WORK/amp1000.json"
flag over '\w{5}' 300 >"$WORK/over.json"
echo "== PUT timings (median of $REPEAT), release build, loopback"
put normal "$WORK/normal.json" >/dev/null
timed "accept: normal flag (3 rules, 2 patterns)" normal "$WORK/normal.json" 200
timed "refuse: 300 x \\w{20} ($(wc -c <"$WORK/amp300.json") B)" amp300 "$WORK/amp300.json" 422
timed "refuse: 1000 x \\w{20} ($(wc -c <"$WORK/amp1000.json") B)" amp1000 "$WORK/amp1000.json" 422
timed "refuse: 300 x \\w{5} (flag budget)" over "$WORK/over.json" 422
awk -v a="$(cat "$WORK/normal.median")" -v b="$(cat "$WORK/amp300.median")" -v c="$(cat "$WORK/amp1000.median")" \
    'BEGIN {printf "ratio refuse/accept: 300 x %.2f, 1000 x %.2f\n", b / a, c / a}'

TOKEN="$(curl -sS -X POST -H "Authorization: Bearer $ADMIN_TOKEN" -H 'Content-Type: application/json' \
    -d '{"name":"bench-client","role":"client"}' "$BASE/api/v1/tokens" | python3 -c 'import json,sys; print(json.load(sys.stdin)["token"])')"
fill() {
    local i status
    for ((i = 0; i < 17; i++)); do
        flag "heavy-$i" '\w{5}' 14 >"$WORK/heavy.json"
        status="$(put "heavy-$i" "$WORK/heavy.json")"
        [[ "${status% *}" =~ ^20[01]$ ]] || die "heavy-$i: $status"
        curl -sS -o /dev/null -X POST -H "Authorization: Bearer $TOKEN" -H 'Content-Type: application/json' \
            -d '{"context":{"targetingKey":"u1","email":"someone.with.a.long.name@example.org"}}' \
            "$BASE/ofrep/v1/evaluate/flags/heavy-$i"
    done
    flag "heavy-17" '\w{5}' 14 >"$WORK/heavy.json"
    status="$(put heavy-17 "$WORK/heavy.json")"
    [[ "${status% *}" == 422 ]] || die "the 18th heavy flag answered $status, expected 422"
}
empty() {
    local i
    for ((i = 0; i < 17; i++)); do
        curl -sS -o /dev/null -X DELETE -H "Authorization: Bearer $ADMIN_TOKEN" "$BASE/api/v1/flags/heavy-$i"
    done
}
echo "== server RSS (MiB)"
echo "idle (after the timings above):              $(rss_mib)"
fill
echo "budget full (17 x 14 x \\w{5}), each evaluated: $(rss_mib)"
empty
sleep 1
echo "after deleting the 17 flags:                 $(rss_mib)"
fill
echo "budget full again:                           $(rss_mib)"
empty
sleep 1
echo "after deleting them again:                   $(rss_mib)"
