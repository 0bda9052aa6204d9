#!/usr/bin/env bash
# Builds, on a machine WITHOUT a GPU, the llmpy wheel with the CUDA backend for the lent GPU
# machine (Python 3.12, H100/A100), so that dev/gpu_session.sh only has to pip-install it there
# (device time is scarce; compiling the CUDA kernels there would eat minutes of it).
#
#   bash dev/build_cuda_wheel.sh            # -> dist/llmpy-<version>-cp312-cp312-linux_x86_64.whl
#
# Then, with the device tool: run(command="bash dev/gpu_session.sh", carry=["dist"]).
#
# Environment (all optional):
#   LLMPY_WHEEL_VENV     venv used for the build (default /work/venv312; created when missing)
#   LLMPY_WHEEL_PYTHON   Python 3.12 that creates it (default: pyenv's 3.12.1, else python3.12)
#   LLMPY_CUDA_ARCHITECTURES   default "80;90" (A100; H100/H200)
#   LLMPY_WHEEL_MPI      LLMPY_MPI of the build, default OFF: an MPI-linked wheel needs
#                        libmpi.so.40 at import, which the GPU machine is not known to have
#   CMAKE_BUILD_PARALLEL_LEVEL  compile jobs (default: all cores)
#
# The venv holds what the build needs, from the package registry: scikit-build-core and
# pybind11 (the build backend; --no-build-isolation uses them from here), numpy, and
# nvidia-cublas 13.0 (headers and libcublas*.so.13 that CMakeLists.txt finds under
# site-packages/nvidia/cu13 when the system toolkit has no cuBLAS). The wheel's _cuda module
# finds libcublas at run time through its RPATH $ORIGIN/../nvidia/cu13/lib, i.e. the cuBLAS
# wheel of the Python it is installed into (on the GPU machine: torch's venv, /opt/torch/.venv).
# CUDA's runtime is linked statically; only the driver (libcuda.so.1) is needed there.
#
# The build directory (build/{wheel_tag}, pyproject.toml) is kept, so a second run recompiles
# only what changed. Old cp312 llmpy wheels in dist/ are removed first, so that
# dist/llmpy-*-cp312-*.whl names exactly one wheel.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
cd "$ROOT"

VENV=${LLMPY_WHEEL_VENV:-/work/venv312}
ARCHS=${LLMPY_CUDA_ARCHITECTURES:-80;90}
MPI=${LLMPY_WHEEL_MPI:-OFF}
export CMAKE_BUILD_PARALLEL_LEVEL=${CMAKE_BUILD_PARALLEL_LEVEL:-$(nproc)}

pick_python() {
  if [ -n "${LLMPY_WHEEL_PYTHON:-}" ]; then echo "$LLMPY_WHEEL_PYTHON"; return; fi
  for p in /root/.pyenv/versions/3.12.1/bin/python3.12 "$(command -v python3.12 || true)"; do
    if [ -n "$p" ] && [ -x "$p" ]; then echo "$p"; return; fi
  done
  echo "no Python 3.12 found: set LLMPY_WHEEL_PYTHON=/path/to/python3.12" >&2
  exit 2
}

command -v nvcc >/dev/null || { echo "nvcc not found: the CUDA backend needs the CUDA compiler (CUDA 13)" >&2; exit 2; }

# --- the build venv (reused when it already has everything) -----------------
if [ ! -x "$VENV/bin/python" ]; then
  PY312=$(pick_python)
  echo "creating $VENV with $PY312"
  "$PY312" -m venv "$VENV"
fi
VPY="$VENV/bin/python"
ver=$("$VPY" -c 'import sys; print("%d.%d" % sys.version_info[:2])')
if [ "$ver" != "3.12" ]; then
  echo "$VENV is Python $ver, the GPU machine runs 3.12: remove it or set LLMPY_WHEEL_VENV" >&2
  exit 2
fi
if ! "$VPY" -c 'import scikit_build_core, pybind11, numpy' 2>/dev/null ||
   ! "$VPY" -m pip show -q nvidia-cublas >/dev/null 2>&1; then
  echo "installing the build requirements into $VENV"
  "$VPY" -m pip install -q --upgrade pip
  "$VPY" -m pip install -q "scikit-build-core>=0.11" "pybind11>=2.13" numpy "nvidia-cublas==13.0.*"
fi
# scikit-build-core takes cmake and ninja from PATH when they are recent enough; else from the venv
if ! command -v cmake >/dev/null || ! command -v ninja >/dev/null; then
  "$VPY" -m pip install -q cmake ninja
  export PATH="$VENV/bin:$PATH"
fi
echo "python $("$VPY" --version 2>&1 | cut -d' ' -f2), nvcc $(nvcc --version | sed -n 's/.*release \([0-9.]*\).*/\1/p'), cuBLAS wheel $("$VPY" -m pip show nvidia-cublas | sed -n 's/^Version: //p'), archs $ARCHS, MPI $MPI, $CMAKE_BUILD_PARALLEL_LEVEL jobs"

# --- the wheel -----------------------------------------------------------------
mkdir -p dist
rm -f dist/llmpy-*-cp312-*.whl dist/llmpy-cuda-wheel.stamp
src_hash=$(bash dev/gpu_session.sh --source-hash)  # before the build: what it compiles
LOG=build/cuda_wheel.log  # the whole CMake/compiler output (build/ is git-ignored)
mkdir -p build
echo "building (log: $ROOT/$LOG) ..."
start=$(date +%s)
if ! "$VPY" -m pip wheel -v --no-build-isolation --no-deps -w dist . \
     --config-settings=cmake.define.LLMPY_CUDA=ON \
     --config-settings=cmake.define.LLMPY_CUDA_ARCHITECTURES="$ARCHS" \
     --config-settings=cmake.define.LLMPY_MPI="$MPI" >"$LOG" 2>&1; then
  tail -40 "$LOG" >&2
  echo "wheel build failed after $(( $(date +%s) - start )) s; full log: $ROOT/$LOG" >&2
  exit 1
fi
secs=$(( $(date +%s) - start ))
# CMakeLists.txt's configuration summary: what went into the wheel
grep -E -- '-- +(cuda backend|openmp|mpi|cpu kernels) ' "$LOG" | sed 's/^ *-- */  /' || true

shopt -s nullglob
wheels=(dist/llmpy-*-cp312-*.whl)
if [ ${#wheels[@]} -ne 1 ]; then
  echo "expected one cp312 wheel in dist/, found ${#wheels[@]}" >&2
  exit 1
fi
whl=${wheels[0]}
# the CUDA module must be in it (LLMPY_CUDA=ON fails the build otherwise, but check the result)
if ! "$VPY" -m zipfile -l "$whl" | grep -q 'llmpy/_cuda'; then
  echo "$whl has no llmpy/_cuda module" >&2
  exit 1
fi
# What the wheel was built from: dev/gpu_session.sh recomputes this over the tree it runs in and
# warns when they differ (a wheel from older sources would test old code).
printf 'wheel %s\nsource_sha256 %s\nbuilt %s\narchs %s\n' "$(basename "$whl")" "$src_hash" \
  "$(date -u +%FT%TZ)" "$ARCHS" >dist/llmpy-cuda-wheel.stamp
echo "built in ${secs} s: $ROOT/$whl ($(du -h "$whl" | cut -f1), $(stat -c %s "$whl") bytes); sources $src_hash"
