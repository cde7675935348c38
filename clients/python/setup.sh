#!/usr/bin/env bash
# Installs what the tests and benchmark of rollgate-openfeature need: a venv in
# clients/python/.venv with requirements-dev.txt (pinned) and the package itself in editable
# mode. Idempotent: redone only when requirements-dev.txt or pyproject.toml change, so a second
# run takes well under a second. Needs python3 (>= 3.10 for openfeature-sdk 0.10); reaches PyPI
# only on a (re)install. Run by scripts/test.sh.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
cd "$here"

die() { echo "clients/python/setup.sh: $*" >&2; exit 1; }
command -v python3 >/dev/null || die "python3 not found"

stamp=".venv/.setup.sha256"
want="$(cat requirements-dev.txt pyproject.toml | sha256sum | cut -d' ' -f1)"
if [[ ! -x .venv/bin/python ]]; then
    python3 -m venv .venv || die "python3 -m venv failed (on Debian: apt-get install python3-venv)"
fi
if [[ "$(cat "$stamp" 2>/dev/null || true)" != "$want" ]]; then
    pip=(.venv/bin/python -m pip --disable-pip-version-check --no-input --quiet)
    "${pip[@]}" install -r requirements-dev.txt || die "pip install -r requirements-dev.txt failed"
    # --no-build-isolation: build with the venv's own setuptools (no download of a build env).
    "${pip[@]}" install --no-deps --no-build-isolation -e . || die "pip install -e . failed"
    echo "$want" >"$stamp"
fi
.venv/bin/python -c 'import rollgate_openfeature, openfeature.contrib.provider.ofrep, pytest' \
    || die "the venv cannot import rollgate_openfeature, the OFREP provider or pytest"
echo "rollgate-openfeature ready: $(.venv/bin/python -c 'import rollgate_openfeature as r; print(r.__version__)')"
