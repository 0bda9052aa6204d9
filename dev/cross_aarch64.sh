#!/usr/bin/env bash
# Cross-compiles the C core for 64-bit ARM Linux (aarch64) and runs the C tests under qemu-user,
# once per CPU kernel variant (neon, generic). Correctness only: qemu says nothing about speed.
#
#   bash dev/cross_aarch64.sh                  # install (as root), oracle files, build, tests
#   bash dev/cross_aarch64.sh --oracle DIR     # reuse tiny*.bin / mid*.bin from an earlier run
#
# 1. tools: gcc/g++-aarch64-linux-gnu, libc6-dev-arm64-cross (the target's libc, libgomp with
#    the cross gcc) and qemu-user, from apt when missing (as root, or with sudo -n)
# 2. oracle files, written on this host by dev/train_gpt2.py (needs torch; the files do not
#    depend on the platform): a tiny model, and a mid one whose GEMMs reduce over more than one
#    packed block (4C = 1536 > 1024) and whose vocabulary spans several column blocks
# 3. configure with cmake/aarch64-linux-gnu.cmake (Release, as shipped; CUDA and MPI off, OpenMP
#    when the cross gcc has libgomp) and build test_gpt2, test_cpu_isa and train_gpt2
# 4. under qemu-aarch64 -L /usr/aarch64-linux-gnu, on 2 OpenMP threads:
#      test_cpu_isa                          every variant vs double references and vs generic
#      test_gpt2 tiny, mid                   with LLMPY_CPU_ISA=neon, then generic (the program
#                                            fails if the variant in use is not the one asked)
# 5. the same two programs built with LLMPY_SANITIZE=ON (Debug, in $BUILD-asan), test_cpu_isa and
#    test_gpt2 tiny with both variants: AddressSanitizer sees the NEON loads and stores that x86
#    runs never execute. LeakSanitizer is off: it cannot run under qemu-user (it needs ptrace).
# Environment: PYTHON for the oracle (default: python on PATH), BUILD (default build/aarch64).
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$(pwd)
PYTHON=${PYTHON:-$(command -v python || command -v python3)}
BUILD=${BUILD:-build/aarch64}
SYSROOT=/usr/aarch64-linux-gnu
ORACLE=""
while [ $# -gt 0 ]; do
  case "$1" in
    --oracle) ORACLE=$2; shift 2 ;;
    -h|--help) sed -n '2,20p' "$0"; exit 0 ;;
    *) echo "unknown argument: $1 (see --help)" >&2; exit 2 ;;
  esac
done
T0=$(date +%s)
stage() { printf '\n--- %s (%ss)\n' "$1" "$(( $(date +%s) - T0 ))"; }

stage "tools"
QEMU=$(command -v qemu-aarch64 || command -v qemu-aarch64-static || true)
if ! command -v aarch64-linux-gnu-gcc >/dev/null || ! command -v aarch64-linux-gnu-g++ >/dev/null \
   || [ ! -e "$SYSROOT/lib/libc.so.6" ] || [ ! -e "$SYSROOT/include/stdio.h" ] || [ -z "$QEMU" ]; then
  PKGS="gcc-aarch64-linux-gnu g++-aarch64-linux-gnu libc6-dev-arm64-cross qemu-user"
  if [ "$(id -u)" -eq 0 ]; then SUDO=""
  elif sudo -n true 2>/dev/null; then SUDO="sudo -n"
  else echo "missing the aarch64 cross tools; as root: apt-get install $PKGS" >&2; exit 1
  fi
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends $PKGS >/dev/null
  QEMU=$(command -v qemu-aarch64 || command -v qemu-aarch64-static)
fi
echo "$(aarch64-linux-gnu-gcc --version | head -1); $("$QEMU" --version | head -1)"

stage "oracle files (dev/train_gpt2.py on this host)"
if [ -z "$ORACLE" ]; then
  ORACLE=$(mktemp -d)
  trap 'rm -rf "$ORACLE"' EXIT
  "$PYTHON" -c "import torch" 2>/dev/null || {
    echo "$PYTHON has no torch: pip install torch, set PYTHON, or pass --oracle DIR" >&2; exit 1; }
  "$PYTHON" dev/train_gpt2.py --n-layer 2 --n-head 3 --n-embd 48 --vocab-size 101 --block-size 32 \
    --batch 3 --seq 17 --seed 0 --model-out "$ORACLE/tiny.bin" --state-out "$ORACLE/tiny_state.bin" >/dev/null
  "$PYTHON" dev/train_gpt2.py --n-layer 1 --n-head 6 --n-embd 384 --vocab-size 2003 --block-size 64 \
    --batch 2 --seq 17 --seed 1 --model-out "$ORACLE/mid.bin" --state-out "$ORACLE/mid_state.bin" >/dev/null
fi
ls -l "$ORACLE"/tiny.bin "$ORACLE"/tiny_state.bin "$ORACLE"/mid.bin "$ORACLE"/mid_state.bin | awk '{print $5, $NF}'

stage "configure and build ($BUILD)"
mkdir -p "$BUILD"
cmake -S . -B "$BUILD" -G Ninja -DCMAKE_TOOLCHAIN_FILE="$ROOT/cmake/aarch64-linux-gnu.cmake" \
  -DCMAKE_BUILD_TYPE=Release -DLLMPY_BUILD_TESTS=ON -DLLMPY_CUDA=OFF -DLLMPY_MPI=OFF >"$BUILD/configure.log" 2>&1 \
  || { cat "$BUILD/configure.log"; exit 1; }
grep -E '^-- +(compiler|cpu kernels|openmp) ' "$BUILD/configure.log"
grep -q 'cpu kernels .*-> neon generic' "$BUILD/configure.log" || { echo "the build has no neon variant" >&2; exit 1; }
cmake --build "$BUILD" --target test_gpt2 test_cpu_isa train_gpt2

run() { OMP_NUM_THREADS=2 "$QEMU" -L "$SYSROOT" "$@"; }

stage "test_cpu_isa: every variant vs double references and vs generic"
run "$BUILD/test_cpu_isa" >"$BUILD/test_cpu_isa.log" || { cat "$BUILD/test_cpu_isa.log"; exit 1; }
grep -E 'built|ALL OK' "$BUILD/test_cpu_isa.log"

for isa in neon generic; do
  for model in tiny mid; do
    stage "test_gpt2 $model, LLMPY_CPU_ISA=$isa"
    LLMPY_CPU_ISA=$isa run "$BUILD/test_gpt2" "$ORACLE/$model.bin" "$ORACLE/${model}_state.bin" \
      >"$BUILD/test_gpt2.log" || { cat "$BUILD/test_gpt2.log"; exit 1; }
    grep -E '^(cpu kernels|model:|ALL OK)' "$BUILD/test_gpt2.log"
  done
done

stage "AddressSanitizer + UndefinedBehaviorSanitizer build ($BUILD-asan)"
mkdir -p "$BUILD-asan"
cmake -S . -B "$BUILD-asan" -G Ninja -DCMAKE_TOOLCHAIN_FILE="$ROOT/cmake/aarch64-linux-gnu.cmake" \
  -DCMAKE_BUILD_TYPE=Debug -DLLMPY_SANITIZE=ON -DLLMPY_BUILD_TESTS=ON -DLLMPY_CUDA=OFF -DLLMPY_MPI=OFF \
  >"$BUILD-asan/configure.log" 2>&1 || { cat "$BUILD-asan/configure.log"; exit 1; }
cmake --build "$BUILD-asan" --target test_gpt2 test_cpu_isa
export ASAN_OPTIONS=detect_leaks=0:abort_on_error=1 UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1
run "$BUILD-asan/test_cpu_isa" >"$BUILD-asan/test_cpu_isa.log" 2>&1 || { cat "$BUILD-asan/test_cpu_isa.log"; exit 1; }
tail -1 "$BUILD-asan/test_cpu_isa.log"
for isa in neon generic; do
  LLMPY_CPU_ISA=$isa run "$BUILD-asan/test_gpt2" "$ORACLE/tiny.bin" "$ORACLE/tiny_state.bin" \
    >"$BUILD-asan/test_gpt2.log" 2>&1 || { cat "$BUILD-asan/test_gpt2.log"; exit 1; }
  echo "test_gpt2 tiny, $isa: $(tail -1 "$BUILD-asan/test_gpt2.log")"
done

stage "aarch64: all C tests passed"
