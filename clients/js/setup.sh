#!/usr/bin/env bash
# Installs what clients/js's tests and benchmark need (the OpenFeature server and web SDKs,
# their OFREP providers, TypeScript for the type check) into clients/js/node_modules, exactly
# as package-lock.json pins them. Idempotent: redone only when the lockfile changes.
# Called by scripts/test.sh; the tests are run by tests/api/js_client.rs.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
cd "$here"

die() { echo "clients/js/setup.sh: $*" >&2; exit 1; }
command -v node >/dev/null || die "node not found"
command -v npm >/dev/null || die "npm not found"

stamp="node_modules/.package-lock.sha256"
want="$(sha256sum package-lock.json | cut -d' ' -f1)"
if [[ "$(cat "$stamp" 2>/dev/null || true)" != "$want" ]]; then
    npm ci --no-audit --no-fund --loglevel=error >/dev/null || die "npm ci failed"
    echo "$want" >"$stamp"
fi
node -e 'for (const p of ["server-sdk", "web-sdk", "ofrep-provider", "ofrep-web-provider"]) require.resolve(`@openfeature/${p}`); require.resolve("typescript/bin/tsc")' \
    || die "node cannot resolve the OpenFeature packages or typescript"
echo "clients/js ready: $(node -p 'Object.entries(require("./package-lock.json").packages).filter(([k]) => k.startsWith("node_modules/")).map(([k, v]) => k.slice(13) + "@" + v.version).join(" ")')"
