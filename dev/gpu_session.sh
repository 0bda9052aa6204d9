#!/usr/bin/env bash
# The ONE command for a lent GPU (the device tool's `run`, or any CUDA machine with Python 3.12,
# PyTorch and the nvidia-cublas wheel): installs the prebuilt llmpy CUDA wheel, checks that it
# imports and trains, runs every CUDA test, the flash-attention and the GPT-2 124M benchmarks,
# and writes a summary with a block ready to paste into dev/bench/RESULTS.md. At most 480 s of
# wall time in all, install included.
#
#   here (no GPU):  bash dev/build_cuda_wheel.sh        # -> dist/llmpy-*-cp312-*.whl + stamp
#                   bash dev/gpu_session.sh --dry-run    # the plan: stages, limits, commands
#   device tool:    run(command="bash dev/gpu_session.sh", carry=["dist"], timeout_s=540)
#
# Stages, in order, each in its own process under its own `timeout` (limits below). After each
# one a line is appended to $OUT/summary.md at once, so a run killed from outside keeps what it
# measured. A failing stage is recorded and the next one runs, except smoke: when the package
# cannot import or train on the GPU nothing after it can work, so the run stops there (the
# summary and report are still written; KEEP_GOING=1 runs the rest anyway, for dry runs here).
#
#   env      nvidia-smi, driver, Python, torch, nvcc, cores; does the wheel match this tree
#   install  pip install --no-deps --force-reinstall dist/llmpy-*-cp312-*.whl into $PY, then
#            imports it; only when there is no wheel, pip refuses it, or it fails to load its
#            shared libraries: a source build there (sm_90, all cores). An import error in our
#            own code gets no rebuild (a build of the same sources fails the same way).
#   smoke    llmpy and llmpy._cuda imported in four orders (with torch before and after), one
#            process each; build_info(), cuda_available(); a 2-layer model forward/backward/
#            AdamW on device="cuda" in bf16 and fp32, flash and reference attention, with
#            LLMPY_CUDA_SYNC=1 (every CUDA op synchronised and checked).
#   parity   pytest on tests/test_cuda_*.py (ops vs the CPU backend, the model vs the PyTorch
#            oracle, bf16 vs fp32, AdamW, flash attention), slow ones included, -rs, short
#            tracebacks; a SKIPPED CUDA test on a GPU machine is reported as a failure.
#   flash    dev/bench/flash_attention.py: ours vs SDPA, bf16, causal (target >= 0.9x).
#   e2e      dev/bench/gpu_step.py: GPT-2 124M, T=1024: llmpy bf16 vs torch.compile (eager
#            if compile does not finish in time); tokens/s, MFU, peak memory (target >= 1.0x).
#   nccl     dev/bench/nccl_check.py: tests/test_nccl.py on the GPU — the data-parallel path over
#            NCCL with one rank (no MPI: a rendezvous file) equals the plain step bit for bit.
#   report   the RESULTS.md block (device, driver, date, command, every figure, the targets)
#            appended to $OUT/summary.md; everything merged into $OUT/results.json.
#
# Stage limits (seconds; sum 480), for one H100 with 16 cores:
#   env 15      nvidia-smi < 1 s; the first `import torch` on a fresh machine 2-5 s.
#   install 75  the wheel: pip ~5-10 s for 3 MB without dependencies, import check ~1 s. The
#               fallback source build (sm_90 only): configure ~10 s, then a ~25 s critical path
#               (bindings compile + LTO link of the modules); 76 s measured on 2 cores here.
#   smoke 40    four import processes (~1 s, ~3 s with torch), then CUDA context, cuBLAS
#               handles and 4 x 3 steps of a tiny model, synchronised: < 10 s expected.
#   parity 140  pytest and torch start-up ~5 s; the float64 CPU oracle of GPT-2 124M (forward/
#               backward, a 20-step AdamW curve at B=4 T=64) dominates: ~30-60 s on 16 cores.
#               Each test is capped at 120 s where pytest-timeout is installed (it is there).
#   flash 45    start-up ~6 s, 4 shapes x (fp32 reference + 10 timings of <= 65 calls) ~15-30 s.
#   e2e 125     llmpy ~15 s (start, 124M init, 18 steps, matmul ceiling); torch.compile of
#               GPT-2 on a cold cache ~40-70 s + steps; 25 s kept for the eager fallback. This
#               stage also gets whatever earlier stages left unused (the total stays <= 480).
#   nccl 30     pytest start ~2 s; 3 configurations x 2 child processes (CUDA context, NCCL
#               communicator of one rank, 5 steps of a small model) ~2-3 s each; a 3 s timeout.
#   report 10   one Python process reading JSON files.
# A stage gets SIGTERM 3 s before its limit and SIGKILL at it (timeout -k), and a global
# deadline (480 s from the start, less the limits of the stages still to come) clamps every
# stage, so neither a stuck stage nor the bookkeeping between stages can push the run past 480 s.
#
# The wheel's stamp (dist/llmpy-cuda-wheel.stamp) holds a hash of the sources it was built from;
# env recomputes it here and flags a STALE wheel (it is still used: rebuild it and rerun).
#
# Files in $OUT (the device tool brings back at most 8): summary.md, install.log, smoke.log,
# parity.log, flash.log, e2e.log, nccl.log (only when the nccl stage ran), results.json.
# Scratch (JSON of the benchmarks, pytest's XML, stage table) goes to $WORK, outside $OUT.
#
# Environment: OUT (default /tmp/llmpy-gpu), PY (default python3), WORK (default
# /tmp/llmpy-gpu-work), E2E_BATCH (default 32), KEEP_GOING=1 (do not stop after a failed smoke).
# Exit: 0 every stage ran cleanly (the targets are in the summary, not in the exit code);
# 1 a stage failed or timed out; 2 stopped after the smoke stage failed.
#
#   bash dev/gpu_session.sh --dry-run       # the plan; runs anywhere, needs nothing
#   bash dev/gpu_session.sh --source-hash   # hash of the sources a wheel is built from
set -u
cd "$(dirname "$0")/.." || exit 1
ROOT=$(pwd)
export PYTHONUNBUFFERED=1
export OUT=${OUT:-/tmp/llmpy-gpu}
export PY=${PY:-python3}
export WORK=${WORK:-/tmp/llmpy-gpu-work}
export E2E_BATCH=${E2E_BATCH:-32}

STAGES=(env install smoke parity flash e2e nccl report)
declare -A LIMIT=([env]=15 [install]=75 [smoke]=40 [parity]=140 [flash]=45 [e2e]=125 [nccl]=30 [report]=10)
DEADLINE=480   # seconds for the whole script
GRACE=3        # timeout's -k: SIGKILL this long after SIGTERM
CUDA_TESTS_FIXED=(tests/test_cuda_ops.py tests/test_cuda_model.py tests/test_cuda_flash.py)
SOURCES=(csrc cuda python CMakeLists.txt pyproject.toml)

# ----------------------------------------------------------------------------
# helpers

# sha256 over the files a wheel is built from (relative paths, sorted: the same on every machine)
source_hash() {
  find "${SOURCES[@]}" -type f \( -name '*.c' -o -name '*.h' -o -name '*.cu' -o -name '*.cuh' -o -name '*.cpp' \
    -o -name '*.py' -o -name 'CMakeLists.txt' -o -name '*.toml' \) -not -path '*/__pycache__/*' -print0 |
    LC_ALL=C sort -z | xargs -0 sha256sum | sha256sum | cut -d' ' -f1
}

cuda_tests() { # the fixed list, then every other tests/test_cuda_*.py, each once, existing ones only
  local t seen=" "
  for t in "${CUDA_TESTS_FIXED[@]}" tests/test_cuda_*.py; do
    [ -f "$t" ] || continue
    [[ "$seen" == *" $t "* ]] && continue
    seen+="$t "
    printf '%s\n' "$t"
  done
}

newest_wheel() { ls -t dist/llmpy-*-cp312-*.whl 2>/dev/null | head -1; }

# ----------------------------------------------------------------------------
# the stages (each runs as `bash dev/gpu_session.sh --stage NAME`, under timeout)

stage_env() {
  echo "date: $(date -u +%FT%TZ)"
  if command -v nvidia-smi >/dev/null; then
    echo "gpu: $(nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.max.sm --format=csv,noheader 2>&1 | head -1)"
    echo "cuda (driver): $(nvidia-smi 2>/dev/null | sed -n 's/.*CUDA Version: *\([0-9.]*\).*/\1/p' | head -1)"
  else
    echo "gpu: none (no nvidia-smi)"
  fi
  echo "nvcc: $(nvcc --version 2>/dev/null | sed -n 's/.*release \([0-9.]*\).*/\1/p')"
  echo "cpu: $(nproc) cores, $(awk '/MemTotal/ {printf "%.0f GiB", $2/1048576}' /proc/meminfo)"
  echo "python: $($PY --version 2>&1) ($(command -v "$PY"))"
  echo "torch: $($PY -c 'import torch; print(torch.__version__, "cuda", torch.version.cuda, "available", torch.cuda.is_available())' 2>&1 | tail -1)"
  echo "nvidia-cublas: $($PY -m pip show nvidia-cublas 2>/dev/null | sed -n 's/^Version: //p')"
  local whl stamp_hash here_hash
  whl=$(newest_wheel)
  echo "wheel: ${whl:-none in dist/}"
  if [ -n "$whl" ] && [ -f dist/llmpy-cuda-wheel.stamp ]; then
    stamp_hash=$(sed -n 's/^source_sha256 //p' dist/llmpy-cuda-wheel.stamp)
    here_hash=$(source_hash)
    if [ "$stamp_hash" = "$here_hash" ]; then
      echo "wheel sources: match this tree ($here_hash)"
    else
      echo "wheel sources: STALE - the wheel was built from other sources ($stamp_hash) than this tree ($here_hash); rebuild with dev/build_cuda_wheel.sh"
    fi
  elif [ -n "$whl" ]; then
    echo "wheel sources: unknown (no dist/llmpy-cuda-wheel.stamp)"
  fi
}

import_check() { # the installed llmpy and its CUDA module load (run outside the repo), from site-packages
  (cd "$WORK" && $PY - <<'PYEOF') 2>&1
import os, sys, sysconfig
import llmpy, llmpy._cuda
where = os.path.realpath(llmpy.__file__)
print("imported", where, llmpy.build_info())
site = {os.path.realpath(sysconfig.get_paths()[k]) for k in ("purelib", "platlib")}
if not any(where.startswith(s + os.sep) for s in site):
    sys.exit(f"llmpy is imported from {where}, not from this Python's site-packages {sorted(site)} "
             "(an editable install elsewhere?): the tests would not test the wheel")
PYEOF
}

# an import failure that a build on this machine can cure: the dynamic loader's, not our code's
loader_error() { grep -qE 'cannot open shared object|undefined symbol|GLIBC|GLIBCXX|CXXABI|ELF|not a supported wheel' <<<"$1"; }

stage_install() {
  local whl out
  whl=$(newest_wheel)
  if [ -n "$whl" ]; then
    echo "+ $PY -m pip install --no-deps --force-reinstall --no-index $whl"
    if out=$($PY -m pip install --no-deps --force-reinstall --no-index "$whl" 2>&1); then
      echo "$out"
      if out=$(import_check); then
        echo "$out"
        echo "INSTALLED wheel $whl"
        return 0
      fi
    fi
    echo "$out"
    if ! loader_error "$out"; then
      echo "FAILED: the wheel installed but the import check above failed, and not for a missing library: a build here would not help"
      return 1
    fi
    echo "the wheel cannot be used here; building from source"
  else
    echo "no dist/llmpy-*-cp312-*.whl (run bash dev/build_cuda_wheel.sh here and carry dist/); building from source"
  fi
  echo "+ $PY -m pip install -v --no-build-isolation --no-deps --force-reinstall --no-index . (LLMPY_CUDA=ON, sm_90, MPI off, $(nproc) jobs)"
  CMAKE_BUILD_PARALLEL_LEVEL=$(nproc) $PY -m pip install -v --no-build-isolation --no-deps --force-reinstall --no-index . \
    --config-settings=cmake.define.LLMPY_CUDA=ON \
    --config-settings=cmake.define.LLMPY_CUDA_ARCHITECTURES=90 \
    --config-settings=cmake.define.LLMPY_MPI=OFF 2>&1 || { echo "FAILED: source build"; return 1; }
  import_check || { echo "FAILED: built from source, still does not import"; return 1; }
  echo "INSTALLED from source"
}

stage_smoke() {
  export LLMPY_CUDA_SYNC=1
  cd "$WORK" || return 1
  local rc=0 order
  for order in "import llmpy, llmpy._cuda" "import llmpy._cuda, llmpy._C" \
               "import torch, llmpy, llmpy._cuda" "import llmpy, llmpy._cuda, torch"; do
    echo "+ $PY -c '$order'"
    if $PY -c "$order; import llmpy; print('  ok, llmpy', llmpy.__version__)" 2>&1; then :; else
      echo "IMPORT FAILED: $order"
      rc=1
    fi
  done
  echo "+ smoke: build_info, cuda_available, 2-layer model on cuda (LLMPY_CUDA_SYNC=$LLMPY_CUDA_SYNC)"
  $PY - <<'PYEOF' 2>&1 || rc=1
import math, sys
import numpy as np
import llmpy
from llmpy import cuda

print("build_info:", llmpy.build_info())
print("cuda_available:", llmpy.cuda_available())
try:
    from llmpy import _cuda
except ImportError as e:  # cuda_available() says only False then
    sys.exit(f"SMOKE FAILED: llmpy._cuda does not import: {e}")
if not llmpy.cuda_available():
    sys.exit(f"SMOKE FAILED: llmpy.cuda_available() is False ({_cuda.device_count()} CUDA devices)")
mod = cuda.module("cuda")
print("device:", mod.device_name(), "| attention:", mod.attention(), "| raw ops:",
      [n for n in ("raw_fp32", "raw_bf16") if hasattr(mod, n)] or "none")
libs = sorted({line.split()[-1] for line in open("/proc/self/maps") if "libcublas" in line})
print("libcublas loaded from:", libs)
cfg = llmpy.GPT2Config(n_layer=2, n_head=4, n_embd=256, vocab_size=1000, block_size=128)  # head size 64: flash
rng = np.random.default_rng(0)
x = rng.integers(0, cfg.vocab_size, (4, 64), dtype=np.int32)
y = rng.integers(0, cfg.vocab_size, (4, 64), dtype=np.int32)
cpu = llmpy.GPT2(cfg, device="cpu", seed=0).forward(x, y)
failed = []
for precision in ("bf16", "fp32"):
    for attention in ("flash", "reference"):
        mod.set_attention(attention)
        m = llmpy.GPT2(cfg, device="cuda", precision=precision, seed=0)
        losses, norms = [], []
        for _ in range(3):
            losses.append(m.forward(x, y))
            m.zero_grad()
            m.backward()
            norms.append(m.step(1e-3, 0.9, 0.95, 1e-8, weight_decay=0.1, grad_clip=1.0))
        ok = all(math.isfinite(v) for v in losses + norms) and losses[-1] < losses[0]
        print(f"{precision:>4} {attention:<9} losses {[round(v, 4) for v in losses]} grad norms "
              f"{[round(v, 3) for v in norms]} (cpu fp32 first loss {cpu:.4f}) {'ok' if ok else 'FAILED'}")
        if not ok:
            failed.append(f"{precision}/{attention}")
        del m
mod.set_attention("flash")
mod.synchronize()
print("memory (peak, device):", mod.memory())
if failed:
    sys.exit("SMOKE FAILED: non-finite or non-decreasing loss: " + ", ".join(failed))
print("SMOKE OK")
PYEOF
  return $rc
}

stage_parity() {
  local tests extra=()
  mapfile -t tests < <(cuda_tests)
  [ ${#tests[@]} -gt 0 ] || { echo "no tests/test_cuda_*.py"; return 1; }
  if $PY -c 'import pytest_timeout' 2>/dev/null; then extra+=(--timeout=120); fi
  # -m overrides pyproject's "not slow": on the GPU every CUDA test runs
  echo "+ $PY -m pytest ${tests[*]} -v -rs --tb=short -m 'slow or not slow' --continue-on-collection-errors -p no:cacheprovider ${extra[*]}"
  $PY -m pytest "${tests[@]}" -v -rs --tb=short -m "slow or not slow" --continue-on-collection-errors -p no:cacheprovider \
    --junitxml="$WORK/parity.xml" "${extra[@]}" 2>&1
}

stage_flash() {
  echo "+ $PY dev/bench/flash_attention.py --json $WORK/flash.json"
  $PY dev/bench/flash_attention.py --json "$WORK/flash.json" 2>&1
}

stage_e2e() {
  local budget=$(( ${STAGE_LIMIT:-${LIMIT[e2e]}} - 8 ))
  echo "+ $PY dev/bench/gpu_step.py --batch $E2E_BATCH --warmup 3 --steps 15 --eager fallback --budget $budget --json $WORK/e2e.json"
  $PY dev/bench/gpu_step.py --batch "$E2E_BATCH" --warmup 3 --steps 15 --eager fallback --budget "$budget" \
    --json "$WORK/e2e.json" 2>&1
}

stage_nccl() {
  if [ ! -f dev/bench/nccl_check.py ]; then
    echo "dev/bench/nccl_check.py is not there: nothing to run"
    return 0
  fi
  echo "+ $PY dev/bench/nccl_check.py"
  $PY dev/bench/nccl_check.py 2>&1
}

# ----------------------------------------------------------------------------
# bookkeeping: the stage table ($WORK/stages.tsv), summary lines, results.json

# what summary.md says after a stage, from its log
stage_detail() {
  local name=$1 log=$2
  case $name in
    env) grep -E '^(gpu|wheel sources):' "$log" | tr '\n' ';' ;;
    install) grep -E '^(INSTALLED|FAILED)' "$log" | tail -1 ;;
    smoke) {
        n=$(grep -c 'IMPORT FAILED' "$log")
        [ "$n" -gt 0 ] && echo "$n of 4 import orders failed:"
        grep -E '^[A-Za-z_.]*(Error|Exception):' "$log" | sort -u | head -3
        grep -E '^device:|SMOKE (OK|FAILED)' "$log" | tail -2
      } | tr '\n' ' ' ;;
    parity) tail -1 "$log" ;;
    flash) grep -E '^(flash attention / SDPA|no CUDA device|error:)' "$log" | tail -1 ;;
    e2e) grep -E 'tokens/s:|peak memory:|^note:|^[a-z-]+: ERROR' "$log" | tr '\n' ';' ;;
    nccl) tail -1 "$log" ;;
  esac
}

run_stage() { # name -> status in STATUS, writes the stage table and a summary line
  local name=$1 limit=${LIMIT[$1]} log eff start rc secs detail later=0 s after=0 left
  # the time kept for the stages after this one: their limits
  for s in "${STAGES[@]}"; do
    if [ "$after" = 1 ]; then later=$(( later + LIMIT[$s] )); fi
    [ "$s" = "$name" ] && after=1
  done
  left=$(( DEADLINE - ($(date +%s) - T0) - later ))
  eff=$limit
  if [ "$name" = e2e ] && [ "$left" -gt "$eff" ]; then eff=$left; fi   # e2e takes the unused time
  if [ "$left" -lt "$eff" ]; then eff=$left; fi
  case $name in env|report) log="$WORK/$name.log" ;; *) log="$OUT/$name.log" ;; esac
  if [ "$eff" -le "$GRACE" ]; then
    STATUS=TIMEOUT
    printf '%s\t%s\t%s\t%s\t%s\n' "$name" "$STATUS" 0 "$limit" "not run: no time left" >>"$WORK/stages.tsv"
    echo "- **$name**: not run, no time left of the ${DEADLINE} s" >>"$OUT/summary.md"
    return
  fi
  echo "== $name (limit $eff s) $(date -u +%T)"
  start=$(date +%s)
  # SIGTERM at eff - GRACE, SIGKILL at eff: the stage never outlasts eff
  STAGE_LIMIT=$eff timeout -k "$GRACE" $(( eff - GRACE )) bash "$ROOT/dev/gpu_session.sh" --stage "$name" >"$log" 2>&1
  rc=$?
  secs=$(( $(date +%s) - start ))
  case $rc in
    0) STATUS=ok ;;
    124|137) STATUS=TIMEOUT ;;
    3) if [ "$name" = flash ]; then STATUS=SKIP; else STATUS=FAILED; fi ;;
    *) STATUS=FAILED ;;
  esac
  detail=$(stage_detail "$name" "$log" 2>/dev/null | tr '\t' ' ' | cut -c1-600)
  [ "$STATUS" = TIMEOUT ] && detail="killed at its ${eff} s limit; $detail"
  if [ "$name" = parity ]; then # on a GPU machine a skipped CUDA test hides a broken backend
    local skipped
    skipped=$(tail -1 "$log" | grep -oE '[0-9]+ skipped' | cut -d' ' -f1)
    if [ -n "$skipped" ] && [ "$skipped" -gt 0 ]; then
      STATUS=FAILED
      detail="**$skipped CUDA tests SKIPPED on a GPU machine: that is a failure** (reasons: parity.log, -rs); $detail"
    fi
  fi
  printf '%s\t%s\t%s\t%s\t%s\n' "$name" "$STATUS" "$secs" "$eff" "$detail" >>"$WORK/stages.tsv"
  echo "- **$name**: $STATUS in ${secs} s (limit ${eff} s, exit $rc) — $detail" >>"$OUT/summary.md"
  tail -5 "$log" | sed 's/^/   | /'
  merge_results || true
}

# results.json from everything measured so far (also after every stage: a killed run keeps it)
merge_results() {
  $PY - "$WORK" "$OUT/results.json" <<'PYEOF' 2>>"$WORK/report.log"
import json, os, sys, xml.etree.ElementTree as ET
work, dest = sys.argv[1], sys.argv[2]
res = {"stages": []}
for line in open(os.path.join(work, "stages.tsv")):
    name, status, secs, limit, detail = (line.rstrip("\n").split("\t") + [""] * 5)[:5]
    res["stages"].append({"name": name, "status": status, "seconds": int(secs), "limit": int(limit), "detail": detail})
try:
    res["env"] = dict(l.split(": ", 1) for l in open(os.path.join(work, "env.log")).read().splitlines() if ": " in l)
except OSError:
    pass
for key in ("flash", "e2e"):
    try:
        res[key] = json.load(open(os.path.join(work, f"{key}.json")))
    except (OSError, ValueError):
        pass
def parity():
    xmlf = os.path.join(work, "parity.xml")
    if os.path.exists(xmlf):
        cases = ET.parse(xmlf).getroot().iter("testcase")
        out = {"passed": 0, "failed": 0, "errors": 0, "skipped": 0, "failures": [], "skips": []}
        for c in cases:
            name = "::".join(x for x in (c.get("classname"), c.get("name")) if x)
            kids = {k.tag: k for k in c}
            if "failure" in kids or "error" in kids:
                tag = "failure" if "failure" in kids else "error"
                out["failed" if tag == "failure" else "errors"] += 1
                out["failures"].append(f"{name}: {(kids[tag].get('message') or '').splitlines()[0][:300] if kids[tag].get('message') else tag}")
            elif "skipped" in kids:
                out["skipped"] += 1
                why = kids["skipped"].get("message") or kids["skipped"].text or ""
                out["skips"].append(f"{name}: {why.strip()[:200]}")
            else:
                out["passed"] += 1
        return out
    log = os.path.join(os.path.dirname(dest), "parity.log")  # killed before pytest wrote its XML
    if os.path.exists(log):
        text = open(log).read()
        return {"passed": text.count(" PASSED"), "failed": text.count(" FAILED"), "errors": text.count(" ERROR"),
                "skipped": text.count(" SKIPPED"), "partial": True, "failures": [], "skips": []}
    return None
p = parity()
if p is not None:
    res["parity"] = p
tmp = dest + ".tmp"
json.dump(res, open(tmp, "w"), indent=1, default=str)
os.replace(tmp, dest)
PYEOF
}

stage_report() {
  merge_results
  $PY - "$OUT/results.json" <<'PYEOF'
import json, math, sys
res = json.load(open(sys.argv[1]))
env, stages = res.get("env", {}), res.get("stages", [])
st = {s["name"]: s for s in stages}
gpu = env.get("gpu", "?").split(",")
name, driver = gpu[0].strip(), (gpu[1].strip() if len(gpu) > 1 else "?")
def f(x, spec):
    return "n/a" if x is None or (isinstance(x, float) and math.isnan(x)) else format(x, spec)
def verdict(ok):
    return "n/a (not measured)" if ok is None else ("**PASS**" if ok else "**FAIL**")
L = []
L.append(f"## GPU session {env.get('date', '?')[:10]} — {name}")
L.append("")
L.append(f"{env.get('date', '?')}, {name} (driver {driver}, CUDA {env.get('cuda (driver)', '?')}), "
         f"{env.get('cpu', '?')}; {env.get('python', '?')}, torch {env.get('torch', '?')}, "
         f"nvcc {env.get('nvcc', '?')}, nvidia-cublas {env.get('nvidia-cublas', '?')}. Wheel: {env.get('wheel', '?')} "
         f"({env.get('wheel sources', '?')}).")
L.append("Command: `bash dev/gpu_session.sh` (device tool: `run(command=\"bash dev/gpu_session.sh\", "
         "carry=[\"dist\"])`, the wheel built without a GPU by `bash dev/build_cuda_wheel.sh`).")
L.append("")
L.append("| stage | result | seconds (limit) |")
L.append("|---|---|---:|")
for s in stages:
    L.append(f"| {s['name']} | {s['status']} | {s['seconds']} ({s['limit']}) |")
# tests
p = res.get("parity")
tests_ok = None
L.append("")
if p:
    total = p["passed"] + p["failed"] + p["errors"] + p["skipped"]
    tests_ok = total > 0 and p["failed"] == 0 and p["errors"] == 0 and p["skipped"] == 0 and not p.get("partial")
    L.append(f"CUDA tests (`pytest tests/test_cuda_*.py`): {p['passed']} passed, {p['failed']} failed, "
             f"{p['errors']} errors, {p['skipped']} skipped{' (partial: the stage was killed)' if p.get('partial') else ''}.")
    if p["skipped"]:
        L.append(f"**{p['skipped']} CUDA tests SKIPPED on a GPU machine — that is a failure:** "
                 + "; ".join(p["skips"][:5]))
    for line in p["failures"][:10]:
        L.append(f"- FAILED {line}")
else:
    L.append("CUDA tests: not run.")
# flash
fl = res.get("flash")
flash_ok = None
L.append("")
if fl and fl.get("results"):
    L.append(f"Flash attention vs `F.scaled_dot_product_attention` (bf16, causal, B={fl['B']}, NH={fl['NH']}; "
             f"FLOPs {fl['flops']}; medians, CUDA events; `python dev/bench/flash_attention.py`):")
    L.append("")
    L.append("| T | hs | pass | ours ms | ours TFLOP/s | SDPA ms | SDPA TFLOP/s | ours/SDPA |")
    L.append("|---:|---:|---|---:|---:|---:|---:|---:|")
    for r in fl["results"]:
        if "error" in r:
            L.append(f"| {r['T']} | {r['hs']} | ERROR | {r['error'][:120]} | | | | |")
            continue
        for row in r["rows"]:
            L.append(f"| {row['T']} | {row['hs']} | {row['pass']} | {row['ours']['median_ms']:.3f} | "
                     f"{row['ours_tflops']:.1f} | {row['sdpa']['median_ms']:.3f} | {row['sdpa_tflops']:.1f} | "
                     f"{row['ratio']:.3f} |")
    errs = [f"T={r['T']} hs={r['hs']}: out {r['errors']['out_ours_fp32']:.1e} (SDPA {r['errors']['out_sdpa_fp32']:.1e}), "
            f"dqkv {r['errors']['dqkv_ours_fp32']:.1e} (SDPA {r['errors']['dqkv_sdpa_fp32']:.1e})"
            for r in fl["results"] if "errors" in r]
    L.append("")
    L.append("Max abs error against an fp32 reference: " + "; ".join(errs) + ".")
    flash_ok = bool(fl.get("pass"))
    if fl.get("failures"):
        L.append("Problems: " + "; ".join(fl["failures"]))
else:
    L.append(f"Flash attention: not measured ({st.get('flash', {}).get('detail', 'stage not run')}).")
# e2e
e = res.get("e2e")
e2e_ok, mem_ok = None, None
L.append("")
if e and e.get("rows"):
    L.append(f"GPT-2 124M training step, T={e['T']}, llmpy {e['precision']} ({e['attention']} attention) vs PyTorch "
             f"(bf16 autocast, SDPA, fused AdamW); bf16 matmul ceiling {f(e.get('ceiling_tflops'), '.0f')} TFLOP/s "
             f"(8192³ torch.mm); `python dev/bench/gpu_step.py --batch {e['batch']} --eager fallback`:")
    L.append("")
    L.append("| contender | B | ms/step (median) | min | max | tokens/s | MFU | peak GiB | first step s |")
    L.append("|---|---:|---:|---:|---:|---:|---:|---:|---:|")
    for w, r in e["rows"].items():
        L.append(f"| {w} | {r['B']} | {r['median_ms']:.1f} | {r['min_ms']:.1f} | {r['max_ms']:.1f} | "
                 f"{r['tokens_per_s']:,.0f} | {f(r['mfu'], '.1%')} | {r['peak_gib']:.2f} | "
                 f"{f(r.get('first_step_s'), '.1f')} |")
    for w, msg in e.get("errors", {}).items():
        L.append(f"| {w} | error: {msg[:150]} | | | | | | | |")
    L.append("")
    for n in e.get("notes", []):
        L.append(f"Note: {n}.")
    if "ratio_tokens_per_s" in e:
        e2e_ok = e["ratio_tokens_per_s"] >= 1.0
        mem_ok = e["ratio_peak_memory"] <= 1.0
else:
    L.append(f"GPT-2 124M step: not measured ({st.get('e2e', {}).get('detail', 'stage not run')}).")
L.append("")
L.append("Targets:")
L.append(f"- every CUDA test passes: {verdict(tests_ok)}"
         + (f" ({p['passed']} of {p['passed'] + p['failed'] + p['errors'] + p['skipped']})" if p else ""))
L.append(f"- GPT-2 124M tokens/s >= 1.0 x PyTorch: {verdict(e2e_ok)}"
         + (f" ({e['ratio_tokens_per_s']:.3f} x {e['reference']}; issue 12's 1.2 x: "
            f"{'PASS' if e['ratio_tokens_per_s'] >= 1.2 else 'FAIL'}; peak memory {e['ratio_peak_memory']:.3f} x: "
            f"{'PASS' if mem_ok else 'FAIL'})" if e2e_ok is not None else ""))
L.append(f"- flash attention >= 0.9 x SDPA: {verdict(flash_ok)}"
         + (f" (min {fl['min_ratio']:.3f} over {sum(len(r.get('rows', [])) for r in fl['results'])} cases)"
            if fl and fl.get("results") else ""))
print("\n".join(L))
PYEOF
}

# ----------------------------------------------------------------------------
# entry points

dry_run() {
  local s total=0 t
  echo "gpu_session.sh --dry-run: OUT=$OUT PY=$PY WORK=$WORK (nothing is run)"
  for s in "${STAGES[@]}"; do
    total=$(( total + LIMIT[$s] ))
    printf 'stage %-8s limit %4s s  ' "$s" "${LIMIT[$s]}"
    case $s in
      env) echo "nvidia-smi; nvcc --version; $PY -c 'import torch'; pip show nvidia-cublas; wheel stamp vs source hash ($(source_hash | cut -c1-12)...)" ;;
      install) t=$(newest_wheel); echo "$PY -m pip install --no-deps --force-reinstall --no-index ${t:-dist/llmpy-*-cp312-*.whl (none now: would build from source)}; import check; source build (sm_90, MPI off, all cores) only without a usable wheel" ;;
      smoke) echo "LLMPY_CUDA_SYNC=1: 4 import orders (torch before/after), build_info(), cuda_available(), 2-layer model fwd/bwd/AdamW on cuda x {bf16,fp32} x {flash,reference}; stops the run on failure" ;;
      parity) t=$(cuda_tests | tr '\n' ' '); echo "$PY -m pytest ${t}-v -rs --tb=short -m 'slow or not slow' --continue-on-collection-errors [--timeout=120] --junitxml=\$WORK/parity.xml" ;;
      flash) echo "$PY dev/bench/flash_attention.py --json \$WORK/flash.json  (exit 3 = no CUDA device)" ;;
      e2e) echo "$PY dev/bench/gpu_step.py --batch $E2E_BATCH --warmup 3 --steps 15 --eager fallback --budget <limit-8> --json \$WORK/e2e.json  (+ time earlier stages left unused)" ;;
      nccl) if [ -f dev/bench/nccl_check.py ]; then echo "$PY dev/bench/nccl_check.py"; else echo "$PY dev/bench/nccl_check.py -- absent now: would be skipped"; fi ;;
      report) echo "RESULTS.md block -> \$OUT/summary.md; everything -> \$OUT/results.json" ;;
    esac
  done
  echo "files: \$OUT/{summary.md,install.log,smoke.log,parity.log,flash.log,e2e.log,nccl.log,results.json} (8 at most)"
  echo "total limit $total s"
}

main() {
  T0=$(date +%s)
  mkdir -p "$OUT" "$WORK" || exit 1
  rm -f "$WORK"/{stages.tsv,env.log,report.log,parity.xml,flash.json,e2e.json}
  rm -f "$OUT"/{summary.md,install.log,smoke.log,parity.log,flash.log,e2e.log,nccl.log,results.json}
  : >"$WORK/stages.tsv"
  {
    echo "# llmpy GPU session, $(date -u +%FT%TZ)"
    echo
    echo "\`bash dev/gpu_session.sh\` in $ROOT; OUT=$OUT, PY=$PY; limits: $(for s in "${STAGES[@]}"; do printf '%s %s s, ' "$s" "${LIMIT[$s]}"; done)total $DEADLINE s."
    echo
  } >"$OUT/summary.md"
  local s failed=0 stopped=0
  for s in "${STAGES[@]}"; do
    if [ "$stopped" = 1 ] && [ "$s" != report ]; then
      printf '%s\t%s\t0\t%s\t%s\n' "$s" "not run" "${LIMIT[$s]}" "stopped after the smoke stage failed" >>"$WORK/stages.tsv"
      echo "- **$s**: not run (stopped after the smoke stage failed)" >>"$OUT/summary.md"
      continue
    fi
    if [ "$s" = report ]; then
      merge_results || true
      echo "== report"
      {
        echo
        echo "## Block for dev/bench/RESULTS.md"
        echo
        timeout -k "$GRACE" $(( LIMIT[report] - GRACE )) bash "$ROOT/dev/gpu_session.sh" --stage report 2>>"$WORK/report.log" ||
          echo "(the report failed: $(tail -3 "$WORK/report.log" | tr '\n' ' '))"
      } >>"$OUT/summary.md"
      merge_results || true
      continue
    fi
    run_stage "$s"
    if [ "$s" = env ] && [ -f "$WORK/env.log" ]; then
      { echo; echo '```'; cat "$WORK/env.log"; echo '```'; echo; } >>"$OUT/summary.md"
    fi
    if [ "$STATUS" != ok ] && [ "$STATUS" != SKIP ]; then failed=1; fi
    [ "$s" = flash ] && [ "$STATUS" = SKIP ] && failed=1  # no CUDA device: nothing measured
    if [ "$s" = smoke ] && [ "$STATUS" != ok ] && [ "${KEEP_GOING:-0}" != 1 ]; then
      echo "- **smoke failed: stopping** (the error is in smoke.log; KEEP_GOING=1 runs the rest anyway)" >>"$OUT/summary.md"
      stopped=1
    fi
  done
  echo
  cat "$OUT/summary.md"
  echo
  echo "[$(( $(date +%s) - T0 )) s; files in $OUT: $(cd "$OUT" && ls | tr '\n' ' ')]"
  if [ "$stopped" = 1 ]; then exit 2; fi
  exit "$failed"
}

case ${1:-} in
  --dry-run) dry_run ;;
  --source-hash) source_hash ;;
  --stage)
    mkdir -p "$WORK"
    "stage_$2" ;;
  "") main ;;
  -h|--help) sed -n '2,/^set -u/p' "$0" | sed '$d' | sed 's/^# \{0,1\}//' ;;
  *) echo "usage: bash dev/gpu_session.sh [--dry-run | --source-hash | --help]" >&2; exit 64 ;;
esac
