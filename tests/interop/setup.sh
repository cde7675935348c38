#!/usr/bin/env bash
# Installs the official OpenFeature clients used by the interop tests (tests/api/interop.rs):
# a Python venv in tests/interop/.venv from requirements.txt and node_modules from
# package-lock.json. Idempotent: a second run only checks that both are up to date.
# Needs python3 (>= 3.9) and node (>= 20) with npm; reaches only PyPI and the npm registry.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
cd "$here"

die() { echo "setup.sh: $*" >&2; exit 1; }
command -v python3 >/dev/null || die "python3 not found"
command -v node >/dev/null || die "node not found"
command -v npm >/dev/null || die "npm not found"

# --- Python: venv + pinned requirements (reinstalled only when requirements.txt changes).
stamp=".venv/.requirements.sha256"
want="$(sha256sum requirements.txt | cut -d' ' -f1)"
if [[ ! -x .venv/bin/python ]]; then
    python3 -m venv .venv || die "python3 -m venv failed (on Debian: apt-get install python3-venv)"
fi
if [[ "$(cat "$stamp" 2>/dev/null || true)" != "$want" ]]; then
    .venv/bin/python -m pip install --quiet --disable-pip-version-check --no-input -r requirements.txt \
        || die "pip install -r requirements.txt failed"
    echo "$want" >"$stamp"
fi
.venv/bin/python -c 'import openfeature.contrib.provider.ofrep' \
    || die "the venv cannot import the OFREP provider"

# --- Node: exactly the lockfile (npm ci), redone only when the lockfile changes.
node_stamp="node_modules/.package-lock.sha256"
want_node="$(sha256sum package-lock.json | cut -d' ' -f1)"
if [[ "$(cat "$node_stamp" 2>/dev/null || true)" != "$want_node" ]]; then
    npm ci --no-audit --no-fund --loglevel=error >/dev/null || die "npm ci failed"
    echo "$want_node" >"$node_stamp"
fi
node -e 'require.resolve("@openfeature/ofrep-provider"); require.resolve("@openfeature/server-sdk")' \
    || die "node cannot resolve the OpenFeature packages"

py_versions="$(.venv/bin/python -m pip --disable-pip-version-check freeze | grep -i '^openfeature' | tr '\n' ' ')"
# shellcheck disable=SC2016 # the ${...} below are JavaScript template literals
js_versions="$(node -e 'const fs = require("fs");
for (const p of ["server-sdk", "ofrep-provider"]) {
  const v = JSON.parse(fs.readFileSync(`node_modules/@openfeature/${p}/package.json`)).version;
  process.stdout.write(`@openfeature/${p}@${v} `);
}')"
echo "interop clients ready: ${py_versions}${js_versions}"
