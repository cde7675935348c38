#!/usr/bin/env bash
# Installs what the dashboard's browser tests need: Debian's `chromium` (apt, as root, when
# /usr/bin/chromium is missing) and playwright-core into tests/ui/node_modules, exactly as
# package-lock.json pins it (no browser download: the tests drive /usr/bin/chromium).
# Idempotent: npm runs again only when the lockfile changes. Called by scripts/test.sh; the
# tests are run by tests/api/ui.rs.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
cd "$here"

die() { echo "tests/ui/setup.sh: $*" >&2; exit 1; }
command -v node >/dev/null || die "node not found"
command -v npm >/dev/null || die "npm not found"

if [[ ! -x /usr/bin/chromium ]]; then
    [[ "$(id -u)" == 0 ]] || die "/usr/bin/chromium is missing: run 'apt-get install -y chromium' as root"
    DEBIAN_FRONTEND=noninteractive apt-get install -y chromium >/dev/null || {
        apt-get update >/dev/null && DEBIAN_FRONTEND=noninteractive apt-get install -y chromium >/dev/null
    } || die "apt-get install chromium failed"
fi

stamp="node_modules/.package-lock.sha256"
want="$(sha256sum package-lock.json | cut -d' ' -f1)"
if [[ "$(cat "$stamp" 2>/dev/null || true)" != "$want" ]]; then
    PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD=1 npm ci --no-audit --no-fund --loglevel=error >/dev/null || die "npm ci failed"
    echo "$want" >"$stamp"
fi
node -e 'require.resolve("playwright-core")' || die "node cannot resolve playwright-core"
echo "tests/ui ready: playwright-core@$(node -p 'require("playwright-core/package.json").version'), $(/usr/bin/chromium --version 2>/dev/null | head -1)"
