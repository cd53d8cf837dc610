#!/usr/bin/env bash
# One-step set-up on a fresh Debian/Ubuntu machine: the C++ headers that NESTML modules
# compile against, then a virtual environment in .venv with nestplast and everything it needs.
set -euo pipefail
cd "$(dirname "$0")"

need_apt=()
for pkg in libboost-dev libgsl-dev libltdl-dev cmake g++ make; do
    dpkg -s "$pkg" >/dev/null 2>&1 || need_apt+=("$pkg")
done
if [ ${#need_apt[@]} -gt 0 ]; then
    SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO="sudo"
    $SUDO apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${need_apt[@]}" >/dev/null
fi

PYTHON="${PYTHON:-python3}"
[ -x .venv/bin/python ] || "$PYTHON" -m venv .venv
.venv/bin/python -m pip install -q --upgrade pip
.venv/bin/python -m pip install -q -e .
echo "nestplast is set up in $(pwd)/.venv"
