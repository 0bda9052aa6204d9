"""The NCCL stage of dev/gpu_session.sh: the data-parallel code path over NCCL on the lent GPU.

Runs tests/test_nccl.py (with a GPU: one rank through NCCL trains exactly as the plain model, bit
for bit over 5 steps, zero_stage 0 and 1, fp32 and bf16; a rank without peers times out naming
itself) and prints pytest's summary. Exit code: pytest's (0: every test passed).

    python dev/bench/nccl_check.py
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def main() -> int:
    import llmpy

    nccl = llmpy.build_info()["nccl"]
    print(f"llmpy {llmpy.__version__}: cuda {llmpy.cuda_status()}, nccl {nccl}", flush=True)
    return subprocess.call([sys.executable, "-m", "pytest", "-q", "-rs", "-p", "no:cacheprovider",
                            str(ROOT / "tests" / "test_nccl.py")], cwd=ROOT)


if __name__ == "__main__":
    sys.exit(main())
