#!/usr/bin/env bash
# Runs schemathesis over every operation of the OpenAPI document against a real
# `rollgate serve` (ephemeral port, throwaway data dir, known admin token). Fails on any 5xx,
# any answer whose status, content type, headers or body the document does not allow, any
# schema-valid request refused with 400, any schema-invalid request accepted, and any 405
# without a correct `Allow` (see schemathesis.toml and docs/api.md, "The OpenAPI document").
#
# Usage: tests/schemathesis/run.sh [extra schemathesis options]
# Env: ROLLGATE_BIN (default: target/debug/rollgate, built if missing),
#      ST_MAX_EXAMPLES (default 100: about 45 s of schemathesis on 2 cores), ST_SEED (default: a
#      fixed seed, so CI runs are repeatable; `ST_SEED=random` for a new one), ST_WORKERS
#      (default 2), ST_TIMEOUT (default 600: a run longer than this fails).
# Nothing is written into the repository: schemathesis runs in a temp dir, with its example
# database in memory.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(cd "$here/../.." && pwd)"
bash "$here/setup.sh"

bin="${ROLLGATE_BIN:-$root/target/debug/rollgate}"
if [[ -z "${ROLLGATE_BIN:-}" ]]; then
    (cd "$root" && cargo build --quiet --bin rollgate)
fi
[[ -x "$bin" ]] || { echo "run.sh: no rollgate binary at $bin" >&2; exit 1; }

work="$(mktemp -d)"
token="schemathesis-admin-$(od -An -N8 -tx1 /dev/urandom | tr -d ' \n')"
server_pid=""
cleanup() {
    if [[ -n "$server_pid" ]] && kill -0 "$server_pid" 2>/dev/null; then
        kill "$server_pid" && wait "$server_pid" 2>/dev/null || true
    fi
    rm -rf "$work"
}
trap cleanup EXIT

# The repository's policies, so policy-guarded flags and releases have something to name.
ROLLGATE_ADMIN_TOKEN="$token" "$bin" serve --bind 127.0.0.1:0 --data-dir "$work/data" \
    --policies-dir "$root/policies" --workers 2 --log-format json >"$work/server.log" 2>&1 &
server_pid=$!

url=""
for _ in $(seq 1 200); do
    url="$(grep -o 'listening on http://[0-9.:]*' "$work/server.log" 2>/dev/null | head -1 | sed 's/listening on //')" || true
    [[ -n "$url" ]] && break
    kill -0 "$server_pid" 2>/dev/null || { cat "$work/server.log" >&2; exit 1; }
    sleep 0.05
done
[[ -n "$url" ]] || { echo "run.sh: the server did not start" >&2; cat "$work/server.log" >&2; exit 1; }

seed="${ST_SEED:-20261201}"
seed_args=(--seed "$seed")
[[ "$seed" == random ]] && seed_args=()

status=0
(cd "$work" && PYTHONPATH="$here" timeout "${ST_TIMEOUT:-600}" "$here/.venv/bin/schemathesis" \
    --config-file "$here/schemathesis.toml" run "$url/api/v1/openapi.json" \
    -H "Authorization: Bearer $token" \
    --checks not_a_server_error,status_code_conformance,content_type_conformance,response_headers_conformance,response_schema_conformance,negative_data_rejection,positive_data_acceptance,unsupported_method,allow_header_conformance \
    --max-examples "${ST_MAX_EXAMPLES:-100}" \
    --generation-database :memory: \
    --workers "${ST_WORKERS:-2}" \
    --request-timeout 10 \
    --suppress-health-check all \
    --report junit --report-dir "$work/report" \
    "${seed_args[@]}" "$@") || status=$?
[[ "$status" == 124 ]] && echo "run.sh: schemathesis ran over ${ST_TIMEOUT:-600} s" >&2

# rollgate's own errors (an internal error, a failed commit) fail the run; actix's complaints
# about malformed requests that schemathesis sends on purpose do not.
if grep '"level":"ERROR"' "$work/server.log" | grep -q '"target":"rollgate'; then
    echo "run.sh: the server logged errors:" >&2
    grep '"level":"ERROR"' "$work/server.log" | grep '"target":"rollgate' | head -20 >&2
    status=1
fi
if [[ "$status" != 0 ]]; then
    echo "run.sh: the server's log ends with:" >&2
    tail -20 "$work/server.log" >&2
fi
exit "$status"
