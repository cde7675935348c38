#!/usr/bin/env bash
# What tests/api needs beyond cargo:
# - strace, with which tests/api/fsync.rs counts the server's real sync calls;
# - systemd-analyze (package systemd), with which tests/api/deploy.rs verifies the shipped unit;
# - script (package bsdutils), which gives the CLI a terminal in the colour test;
# - prometheus and promtool (package prometheus): tests/api/prometheus.rs runs a real Prometheus
#   as a guard source, tests/api/deploy.rs checks and unit-tests the shipped alert rules.
# Idempotent: does nothing when all are installed. Installs what is missing with apt-get when
# running as root; otherwise fails and says what to do (the tests themselves then fail with the
# same advice rather than skipping).
set -euo pipefail

missing=()
command -v strace >/dev/null 2>&1 || missing+=(strace)
command -v systemd-analyze >/dev/null 2>&1 || missing+=(systemd)
command -v script >/dev/null 2>&1 || missing+=(bsdutils)
if ! command -v prometheus >/dev/null 2>&1 || ! command -v promtool >/dev/null 2>&1; then
    missing+=(prometheus)
fi
if [ "${#missing[@]}" -eq 0 ]; then
    exit 0
fi
if [ "${EUID}" -ne 0 ]; then
    echo "tests/api/setup.sh: ${missing[*]} missing and this is not root; install (e.g. sudo apt-get install -y ${missing[*]}) and rerun" >&2
    exit 1
fi
if ! command -v apt-get >/dev/null 2>&1; then
    echo "tests/api/setup.sh: ${missing[*]} missing and apt-get is not available; install with this system's package manager" >&2
    exit 1
fi
echo "installing ${missing[*]} (apt-get)"
DEBIAN_FRONTEND=noninteractive apt-get update -qq
DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
strace -V | head -n 1
systemd-analyze --version | head -n 1
prometheus --version 2>&1 | head -n 1
promtool --version 2>&1 | head -n 1
