#!/usr/bin/env bash
# One-step set-up on a fresh Debian/Ubuntu machine: the C++ headers that NESTML modules
# compile against, then a virtual environment in .venv with nestplast and everything it needs.
set -euo pipefail
cd "$(dirname "$0")"

jobs/apt-install.sh libboost-dev libgsl-dev libltdl-dev cmake g++ make

PYTHON="${PYTHON:-python3}"
[ -x .venv/bin/python ] || "$PYTHON" -m venv .venv
.venv/bin/python -m pip install -q --upgrade pip
# torch for the families extra (sbi): this CPU build first, so that sbi does not pull a CUDA one
.venv/bin/python -m pip install -q torch==2.13.0
.venv/bin/python -m pip install -q -e '.[mpi,plots,test,families]'   # the library and its MPI, plot, test and filter extras
echo "nestplast is set up in $(pwd)/.venv"
