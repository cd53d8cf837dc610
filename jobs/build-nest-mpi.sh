#!/usr/bin/env bash
# Builds NEST from source with MPI and OpenMP, and a Python environment with nestplast that uses it:
# the network-parallel mode, where every rank takes part in every simulation (for networks too
# large for one process). The PyPI wheel that ./setup.sh installs has no MPI inside NEST.
#
#   jobs/build-nest-mpi.sh PREFIX          # about 30 minutes on 2 cores
#   source PREFIX/venv/bin/activate        # then python, mpiexec and pytest use this NEST
#   NESTPLAST_VENV=PREFIX/venv sbatch jobs/search.slurm ...
#
# On Debian/Ubuntu it installs MPICH and the build headers with apt-get. On a cluster, load the
# site's compiler, MPI, Boost, GSL and CMake modules first and set NO_APT=1 and MPICC/MPICXX to
# the site's MPI compiler wrappers (default: Debian's mpicc.mpich, mpicxx.mpich).
set -euo pipefail

PREFIX="$(realpath -m "${1:?usage: $0 PREFIX (where NEST and its environment go)}")"
REPO="$(cd "$(dirname "$0")/.." && pwd)"
NEST_VERSION="${NEST_VERSION:-3.10.0}"
JOBS="${JOBS:-$(nproc)}"
PYTHON="${PYTHON:-python3}"

if [ -z "${NO_APT:-}" ] && command -v apt-get >/dev/null; then
    "$REPO/jobs/apt-install.sh" mpich libmpich-dev libboost-dev libgsl-dev libltdl-dev cmake g++ make
fi
MPICC="${MPICC:-mpicc.mpich}"
MPICXX="${MPICXX:-mpicxx.mpich}"
MPIEXEC="$(command -v "${MPIEXEC:-mpiexec.mpich}" || command -v mpiexec)"

mkdir -p "$PREFIX"
[ -x "$PREFIX/venv/bin/python" ] || "$PYTHON" -m venv "$PREFIX/venv"
PY="$PREFIX/venv/bin/python"
"$PY" -m pip install -q --upgrade pip
"$PY" -m pip install -q cython numpy
# mpi4py must speak the MPI that NEST links: build it against the same wrappers
MPICC="$MPICC" "$PY" -m pip install -q --no-binary mpi4py mpi4py

if [ ! -x "$PREFIX/bin/nest-config" ]; then
    # NEST's source only: with --no-binary :all: pip also compiled NEST's build tools (Cython, ...)
    # from source, silently, for many minutes before the download was done
    "$PY" -m pip download -q --no-deps --no-binary nest-simulator -d "$PREFIX/src" "nest-simulator==$NEST_VERSION"
    archive="$(ls "$PREFIX"/src/nest?simulator-"$NEST_VERSION".tar.gz | head -1)"  # nest_ or nest-
    source_dir="${archive%.tar.gz}"
    rm -rf "$source_dir" "$PREFIX/build"
    tar -xzf "$archive" -C "$PREFIX/src"
    cmake -S "$source_dir" -B "$PREFIX/build" -DCMAKE_INSTALL_PREFIX="$PREFIX" \
        -Dwith-mpi=ON -Dwith-openmp=ON -Dwith-python=ON -DPython_EXECUTABLE="$PY" \
        -DMPI_C_COMPILER="$MPICC" -DMPI_CXX_COMPILER="$MPICXX" >"$PREFIX/cmake.log"
    make -C "$PREFIX/build" -j"$JOBS" >"$PREFIX/make.log"
    make -C "$PREFIX/build" install >>"$PREFIX/make.log"
fi

# nestplast and its other requirements, but not the PyPI NEST wheel: the source build provides `nest`
# (pytest-xdist: the README's test command runs on every core. filter.slurm also needs the extra
# `families`, sbi and a CPU torch, a large download: "$PY" -m pip install torch --index-url
# https://download.pytorch.org/whl/cpu && "$PY" -m pip install "sbi>=0.27". Not `pip install -e
# "$REPO[families]"`: without --no-deps that brings the PyPI NEST wheel over the source build.)
"$PY" -m pip install -q "nestml==9.0.*" scipy "cma>=3.3" matplotlib pytest pytest-xdist
"$PY" -m pip install -q --no-deps -e "$REPO"
# `mpiexec` in the venv is the MPI's own (a wrapper: Hydra finds its proxy next to the path it was started by)
rm -f "$PREFIX/venv/bin/mpiexec"
printf '#!/bin/sh\nexec "%s" "$@"\n' "$MPIEXEC" >"$PREFIX/venv/bin/mpiexec"
chmod +x "$PREFIX/venv/bin/mpiexec"

# the venv sees the source build's PyNEST (a .pth file, so plain `activate` is enough); nestplast
# finds its nest-config next to it
site_packages="$(find "$PREFIX/lib" -maxdepth 3 -type d -name site-packages | head -1)"
"$PY" -c "import site, sys; open(site.getsitepackages()[0] + '/nest-mpi.pth', 'w').write(sys.argv[1] + '\\n')" "$site_packages"
"$PY" -c "from nestplast.kernel import nest_has_mpi; assert nest_has_mpi(), 'NEST was built without MPI'"
echo "NEST $NEST_VERSION with MPI is in $PREFIX; now: source $PREFIX/venv/bin/activate"
