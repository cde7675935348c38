#!/usr/bin/env bash
# The one command that runs every test of rollgate (the README's test command; CI runs it too).
# It installs what the tests need on a clean machine (the OpenFeature SDKs for the interop
# tests, in tests/interop/.venv and tests/interop/node_modules; the Python hook and its tests in
# clients/python/.venv; the JS client's dev dependencies in clients/js/node_modules; schemathesis
# in tests/schemathesis/.venv; strace for tests/api/fsync.rs), then checks formatting and lints,
# then runs the whole workspace's tests with nextest, then the black-box API suite again with
# every server a cluster node on PostgreSQL, then schemathesis over every operation of the
# OpenAPI document.
#
# One throwaway PostgreSQL server (scripts/pg.sh, in a fresh dir under target/) serves every
# test that does not stop its server: its URL is exported as ROLLGATE_TEST_PG and each test
# creates a database of its own on it; the server is stopped and removed on exit. Tests that
# stop or kill their server (tests/cluster) start their own.
set -euo pipefail
cd "$(dirname "$0")/.."

# API tests that are about the single node's embedded store itself, so they are left out of the
# cluster-mode run (they still run, in single-node mode, in the workspace run above it):
# - fsync::  counts sled's fdatasync calls under strace (a cluster node commits to PostgreSQL);
# - the u64 counter ceiling (signals::…counter_ceiling…, guards::saturated_exposure_counts…):
#   cluster totals are PostgreSQL bigints, clamped at i64::MAX (docs/cluster.md, Signals);
# - durability::revisions_survive_sigkill_and_keep_growing: the single node's revision
#   numbering and what a restarted node forgets of it (cluster revisions are global, and the
#   cluster's resume on any node is tests/cluster/feed.rs).
SINGLE_NODE_ONLY='test(/^fsync::/) | test(=signals::in_bound_batches_repeated_at_the_counter_ceiling_saturate_without_wrapping) | test(=guards::saturated_exposure_counts_raise_no_sample_ratio_mismatch_and_hold_the_stage) | test(=durability::revisions_survive_sigkill_and_keep_growing)'

echo "== interop dependencies (OpenFeature Python + JS SDKs)"
bash tests/interop/setup.sh

echo "== Python hook dependencies (clients/python/.venv: openfeature-sdk, OFREP provider, pytest)"
bash clients/python/setup.sh

echo "== clients/js dependencies (OpenFeature server + web SDKs, TypeScript)"
bash clients/js/setup.sh

echo "== schemathesis dependencies"
bash tests/schemathesis/setup.sh

echo "== api test dependencies (strace for the fsync test, systemd-analyze for the deploy test)"
bash tests/api/setup.sh

echo "== dashboard browser test dependencies (chromium, playwright-core)"
bash tests/ui/setup.sh

echo "== cargo fmt --check"
cargo fmt --all -- --check

echo "== cargo clippy"
cargo clippy --workspace --all-targets --quiet -- -D warnings

echo "== a throwaway PostgreSQL server for the tests (scripts/pg.sh)"
mkdir -p target
PG_DIR="$(mktemp -d target/pg-shared-XXXXXX)"
trap 'bash scripts/pg.sh kill "$PG_DIR" >/dev/null 2>&1 || true; rm -rf "$PG_DIR"' EXIT
ROLLGATE_TEST_PG="$(bash scripts/pg.sh start "$PG_DIR")"
export ROLLGATE_TEST_PG

echo "== tests"
cargo nextest run --workspace --no-fail-fast

echo "== the API tests again, every server a cluster node on PostgreSQL (ROLLGATE_TEST_CLUSTER=1)"
ROLLGATE_TEST_CLUSTER=1 cargo nextest run --test api --no-fail-fast -E "not ($SINGLE_NODE_ONLY)"

echo "== rollgate-client doctests (every public item's example compiles; nextest does not run them)"
cargo test --doc -p rollgate-client --quiet

echo "== schemathesis (the OpenAPI document against the real server)"
bash tests/schemathesis/run.sh
