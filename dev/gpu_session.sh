#!/usr/bin/env bash
# One call on a GPU machine (the device tool's `run`, or any CUDA box): builds llmpy with the
# CUDA backend, runs the CUDA tests, the dev/cuda kernel checks and the benchmarks, and leaves
# the logs in $OUT (default /tmp/llmpy-gpu). Device time is scarce: everything in one go, each
# stage bounded, later stages run even when an earlier one fails.
#
#   bash dev/gpu_session.sh                # all stages
#   STAGES="build tests" bash dev/gpu_session.sh
#
# Logs (at most 8 files come back from the device tool): build.log, tests.log, dev_cuda.log,
# gpu_step.log, flash.log, summary.txt.
set -uo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-/tmp/llmpy-gpu}
mkdir -p "$OUT"
export PYTHONUNBUFFERED=1
PY=${PY:-python3}
STAGES=${STAGES:-"build tests dev bench"}
ARCH=${LLMPY_CUDA_ARCHITECTURES:-90}
SUMMARY="$OUT/summary.txt"
: >"$SUMMARY"
note() { echo "$*" | tee -a "$SUMMARY"; }
has() { [[ " $STAGES " == *" $1 "* ]]; }

note "== $(date -u +%FT%TZ) $(nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader 2>&1)"
note "nvcc: $(nvcc --version | tail -1); python: $($PY --version 2>&1); torch: $($PY -c 'import torch; print(torch.__version__)' 2>&1)"

if has build; then
  # --no-build-isolation: the build must see this Python's nvidia-cublas wheel and pybind11
  timeout 900 $PY -m pip install -v --no-build-isolation --no-deps -e . \
    --config-settings=cmake.define.LLMPY_CUDA=ON \
    --config-settings=cmake.define.LLMPY_CUDA_ARCHITECTURES="$ARCH" >"$OUT/build.log" 2>&1
  note "build: exit $? ($(grep -m1 'cuda backend' "$OUT/build.log"))"
  $PY -c "import llmpy; print('cuda_available', llmpy.cuda_available())" 2>&1 | tee -a "$SUMMARY"
fi

if has tests; then
  timeout 1200 $PY -m pytest -q -rs tests/test_cuda_ops.py tests/test_cuda_model.py tests/test_cuda_flash.py \
    tests/test_parity.py tests/test_api.py >"$OUT/tests.log" 2>&1
  note "tests: exit $? ($(tail -1 "$OUT/tests.log"))"
fi

if has dev; then
  # every dev/cuda program: its own build line is in dev/cuda/Makefile
  (timeout 900 make -C dev/cuda ARCH="-arch=sm_$ARCH" run) >"$OUT/dev_cuda.log" 2>&1
  note "dev/cuda: exit $? ($(grep -c -i 'fail' "$OUT/dev_cuda.log") lines mention a failure)"
fi

if has bench; then
  timeout 900 $PY dev/bench/gpu_step.py --json "$OUT/gpu_step.json" >"$OUT/gpu_step.log" 2>&1
  note "gpu_step: exit $?"
  grep -E "^llmpy|^torch|ratio|/ torch" "$OUT/gpu_step.log" | tee -a "$SUMMARY"
  if [ -f dev/bench/flash_attention.py ]; then
    timeout 600 $PY dev/bench/flash_attention.py >"$OUT/flash.log" 2>&1
    note "flash_attention bench: exit $?"
    tail -20 "$OUT/flash.log" >>"$SUMMARY"
  fi
fi
cat "$SUMMARY"
