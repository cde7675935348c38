#!/usr/bin/env bash
# Installs schemathesis (pinned in requirements.txt) into tests/schemathesis/.venv.
# Idempotent: reinstalls only when requirements.txt changes. Needs python3 (>= 3.9) with venv;
# reaches only PyPI.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
cd "$here"

die() { echo "setup.sh: $*" >&2; exit 1; }
command -v python3 >/dev/null || die "python3 not found"

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
echo "schemathesis ready: $(.venv/bin/schemathesis --version)"
