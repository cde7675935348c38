#!/usr/bin/env bash
# The Rust SDK's speed (bench/sdk, crate rollgate-bench-sdk), with the references measured in
# the same run:
#
#   bench/sdk.sh                      # criterion eval bench + 3 s per scaling point
#   SCALING_SECONDS=5 bench/sdk.sh
#
# 1. `cargo bench -p rollgate-bench-sdk --bench eval`: allocations per evaluation (the SDK's
#    must be 0), the SDK's local evaluation of a boolean flag with a rollout and 3 rules against
#    unleash-yggdrasil evaluating the equivalent gradual-rollout toggle with 3 constraints, and
#    evaluation + exposure against evaluation alone; prints the ratios of the medians.
# 2. `sdk-scaling`: evaluation + recording on 1, 2, 4 and 8 threads, SCALING_SECONDS each,
#    SDK and yggdrasil.
# Both start a rollgate server in-process on 127.0.0.1:0 (the SDK fetches its config from it).
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
SCALING_SECONDS="${SCALING_SECONDS:-3}"
[[ "$SCALING_SECONDS" =~ ^[0-9]+([.][0-9]+)?$ ]] || { echo "SCALING_SECONDS must be a number" >&2; exit 2; }
cd "$ROOT"

echo "== machine: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //'), load $(cut -d' ' -f1-3 /proc/loadavg)"
EVAL_LOG="$(mktemp)"
trap 'rm -f "$EVAL_LOG"' EXIT

echo "== cargo bench -p rollgate-bench-sdk --bench eval"
cargo bench -q -p rollgate-bench-sdk --bench eval 2>&1 | tee "$EVAL_LOG"

echo "== sdk-scaling ($SCALING_SECONDS s per point)"
cargo run -q --release -p rollgate-bench-sdk --bin sdk-scaling -- "$SCALING_SECONDS"

echo "== ratios (same run)"
grep -E '^(RATIO|medians:)' "$EVAL_LOG"
