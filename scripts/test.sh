#!/usr/bin/env bash
# The one command that runs every test of rollgate (the README's test command; CI runs it too).
# It installs what the tests need on a clean machine (the OpenFeature SDKs for the interop
# tests, in tests/interop/.venv and tests/interop/node_modules; the Python hook and its tests in
# clients/python/.venv; schemathesis in
# tests/schemathesis/.venv; strace for tests/api/fsync.rs), then checks formatting and lints,
# then runs the whole workspace's tests with nextest, then schemathesis over every operation of
# the OpenAPI document.
set -euo pipefail
cd "$(dirname "$0")/.."

echo "== interop dependencies (OpenFeature Python + JS SDKs)"
bash tests/interop/setup.sh

echo "== Python hook dependencies (clients/python/.venv: openfeature-sdk, OFREP provider, pytest)"
bash clients/python/setup.sh

echo "== schemathesis dependencies"
bash tests/schemathesis/setup.sh

echo "== api test dependencies (strace, for the fsync test)"
bash tests/api/setup.sh

echo "== cargo fmt --check"
cargo fmt --all -- --check

echo "== cargo clippy"
cargo clippy --workspace --all-targets --quiet -- -D warnings

echo "== tests"
cargo nextest run --workspace --no-fail-fast

echo "== rollgate-client doctests (every public item's example compiles; nextest does not run them)"
cargo test --doc -p rollgate-client --quiet

echo "== schemathesis (the OpenAPI document against the real server)"
bash tests/schemathesis/run.sh
