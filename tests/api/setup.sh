#!/usr/bin/env bash
# What tests/api needs beyond cargo: strace, with which tests/api/fsync.rs counts the server's
# real sync calls. Idempotent: does nothing when strace is already installed. Installs it with
# apt-get when running as root; otherwise fails and says what to do (the test itself then fails
# with the same advice rather than skipping).
set -euo pipefail

if command -v strace >/dev/null 2>&1; then
    exit 0
fi
if [ "${EUID}" -ne 0 ]; then
    echo "tests/api/setup.sh: strace is missing and this is not root; install it (e.g. sudo apt-get install -y strace) and rerun" >&2
    exit 1
fi
if ! command -v apt-get >/dev/null 2>&1; then
    echo "tests/api/setup.sh: strace is missing and apt-get is not available; install strace with this system's package manager" >&2
    exit 1
fi
echo "installing strace (apt-get)"
DEBIAN_FRONTEND=noninteractive apt-get update -qq
DEBIAN_FRONTEND=noninteractive apt-get install -y -qq strace >/dev/null
strace -V | head -n 1
