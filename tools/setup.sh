#!/usr/bin/env bash
# One-time set-up on a fresh Debian/Ubuntu machine: the cross toolchains and emulators bitgen
# drives, a virtual environment in .venv, PyTorch (CPU build) and bitgen itself (editable).
set -euo pipefail
cd "$(dirname "$0")/.."

# chromium and chromium-driver: the browser test of `bitgen monitor` (tests/test_monitor.py)
APT_PACKAGES="gcc make python3-venv gcc-riscv64-unknown-elf gcc-arm-none-eabi libnewlib-arm-none-eabi qemu-system-misc qemu-system-arm chromium chromium-driver"
missing=""
for p in $APT_PACKAGES; do dpkg -s "$p" >/dev/null 2>&1 || missing="$missing $p"; done
if [ -n "$missing" ]; then
    if ! command -v apt-get >/dev/null; then
        echo "setup: please install these packages with your package manager:$missing" >&2
        exit 1
    fi
    SUDO=""
    [ "$(id -u)" -ne 0 ] && SUDO="sudo"
    echo "setup: installing$missing"
    $SUDO apt-get update -qq
    $SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $missing >/dev/null
fi

PYTHON="${PYTHON:-python3}"
[ -x .venv/bin/python ] || "$PYTHON" -m venv .venv
# The CPU build of PyTorch first: a bare `torch` requirement would pull a multi-GB CUDA build.
.venv/bin/python -m pip install -q "torch==2.13.0"
# [sweep]: Ray Tune, Optuna and matplotlib for `bitgen sweep` (its tests run in make test)
.venv/bin/python -m pip install -q -e ".[test,sweep]"
# ADI's izer (a test oracle for the MAX78000 accelerator, tests/izer_oracle.py) runs in its own
# environment, made only where the oracle is present (../shared/oracles); its tests skip without it.
if [ -x ../shared/oracles/izer-venv.sh ] && [ ! -x .izer-venv/bin/python ]; then
    ../shared/oracles/izer-venv.sh .izer-venv || echo "setup: the izer environment could not be made; its tests skip" >&2
fi
echo "setup: done (.venv)"
