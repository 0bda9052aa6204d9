"""Device strings and the CUDA status: one parser (csrc/core/device.c) behind every entry point.

The oracle is the rule table of csrc/core/device.c's header comment, written out case by case:
auto -> a GPU when one is usable, else the CPU; cuda -> cuda:<local rank>; cuda:N -> N when it
exists. The CUDA status is checked against what this machine is: these tests run everywhere,
and on a machine without a GPU the reason must name the cause (not built / no driver / no
device), never an unexplained False.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys

import llmpy
import pytest
from llmpy import _C, cuda, device
from binaries import find_train_gpt2

# ----------------------------------------------------------------------------
# parsing


@pytest.mark.parametrize("spec,canon", [("auto", "auto"), ("cpu", "cpu"), ("cuda", "cuda"),
                                        ("cuda:0", "cuda:0"), ("cuda:7", "cuda:7"), ("cuda:1023", "cuda:1023")])
def test_parse_accepts(spec, canon):
    assert device.parse(spec) == canon


@pytest.mark.parametrize("spec,match", [
    ("gpu", "unknown device 'gpu' \\(expected auto, cpu, cuda or cuda:N\\)"),
    ("CUDA", "unknown device 'CUDA'"),
    ("", "unknown device ''"),
    (" cpu", "unknown device ' cpu'"),
    ("cuda:", "bad device 'cuda:'"),
    ("cuda:x", "bad device 'cuda:x'"),
    ("cuda:-1", "bad device 'cuda:-1'"),
    ("cuda:01", "bad device 'cuda:01'"),
    ("cuda:1024", "bad device 'cuda:1024'"),
    ("cuda:0 ", "bad device 'cuda:0 '"),
    ("cuda:99999999999", "bad device"),
])
def test_parse_rejects(spec, match):
    with pytest.raises(ValueError, match=match):
        device.parse(spec)


def test_parse_rejects_non_strings():
    with pytest.raises(TypeError, match="device must be a string"):
        device.parse(0)


# ----------------------------------------------------------------------------
# resolving: (spec, GPUs on the machine, local rank) -> device, the rules of csrc/core/device.c


@pytest.mark.parametrize("spec,count,local_rank,want", [
    ("cpu", 0, 0, "cpu"), ("cpu", 8, 3, "cpu"),
    ("auto", 0, 0, "cpu"), ("auto", 0, 5, "cpu"),
    ("auto", 1, 0, "cuda:0"), ("auto", 8, 3, "cuda:3"), ("auto", 8, -1, "cuda:0"),
    ("cuda", 1, 0, "cuda:0"), ("cuda", 8, 7, "cuda:7"), ("cuda", 2, -1, "cuda:0"),
    ("cuda:1", 2, 0, "cuda:1"), ("cuda:0", 8, 5, "cuda:0"),
])
def test_resolve_rules(spec, count, local_rank, want):
    assert _C.resolve_device(spec, count, local_rank, "") == want


def test_resolve_refusals_name_the_cause():
    with pytest.raises(NotImplementedError, match=r"device 'cuda': CUDA is not available \(no driver: x\)"):
        _C.resolve_device("cuda", 0, 0, "no driver: x")
    with pytest.raises(NotImplementedError, match=r"device 'cuda:2': CUDA is not available$"):
        _C.resolve_device("cuda:2", 0, 0, "")
    with pytest.raises(ValueError, match=r"device 'cuda:2': this machine has 2 GPUs \(cuda:0 \.\. cuda:1\)"):
        _C.resolve_device("cuda:2", 2, 0, "")
    # more ranks on a machine than GPUs: refused with what to do, never two ranks on one GPU
    for spec in ("cuda", "auto"):
        with pytest.raises(ValueError, match=r"local rank 2, which takes cuda:2, but this machine has 2 GPUs; "
                                             r"start at most 2 ranks per machine"):
            _C.resolve_device(spec, 2, 2, "")


def test_resolve_on_this_machine_matches_cuda_status():
    st = cuda.status()
    assert device.resolve("cpu") == "cpu"
    if st.available:
        assert device.resolve("auto", local_rank=0) == "cuda:0"
        assert device.resolve("cuda", local_rank=0) == "cuda:0"
    else:
        assert device.resolve("auto") == "cpu"
        with pytest.raises(NotImplementedError, match=re.escape(f"CUDA is not available ({st.reason})")):
            device.resolve("cuda")


def test_local_rank_comes_from_the_launcher_environment():
    """Before joining the process group, the launcher's variables decide the rank's GPU (Open MPI,
    MPICH's Hydra, MVAPICH, Slurm); without any, it is 0. Each case in a fresh process, so that no
    process group joined by another test answers instead."""
    code = "from llmpy import dist, _C; print(dist.launched_local_rank(), _C.resolve_device('cuda', 8, " \
           "dist.launched_local_rank(), ''))"
    launcher = ("OMPI_COMM_WORLD_LOCAL_RANK", "MPI_LOCALRANKID", "MV2_COMM_WORLD_LOCAL_RANK", "SLURM_LOCALID",
                "LLMPY_LOCAL_RANK", "TORCHELASTIC_RUN_ID")
    clean = {k: v for k, v in os.environ.items() if k not in launcher}
    for var, value, want in [(None, None, "0 cuda:0"), ("OMPI_COMM_WORLD_LOCAL_RANK", "3", "3 cuda:3"),
                             ("MPI_LOCALRANKID", "5", "5 cuda:5"), ("SLURM_LOCALID", "1", "1 cuda:1"),
                             ("OMPI_COMM_WORLD_LOCAL_RANK", "junk", "0 cuda:0")]:
        env = dict(clean)
        if var:
            env[var] = value
        out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=60)
        assert out.returncode == 0, out.stderr
        assert out.stdout.strip() == want, f"{var}={value}: got {out.stdout.strip()!r}, want {want!r}"


# ----------------------------------------------------------------------------
# why CUDA is (not) usable


def test_cuda_status_names_the_cause():
    st = llmpy.cuda_status()
    assert st.available == llmpy.cuda_available() == cuda.available()
    assert str(st) == st.reason
    if not llmpy.build_info()["cuda"]:
        assert not cuda.built() and not st.available
        assert st.reason.startswith("not built: ") and "LLMPY_CUDA=ON" in st.reason
        with pytest.raises(NotImplementedError, match="not built"):
            cuda.module("cuda")
    elif st.available:
        assert st.device_count >= 1 and st.reason.startswith("available: ")
    else:  # built, no usable GPU: the driver's answer, never an import problem
        assert cuda.built()
        assert re.match(r"(no driver|no device|driver error): ", st.reason), st.reason
        assert st.device_count == 0


def test_cuda_import_error_is_reported_and_raised(monkeypatch):
    """A _cuda that exists but does not load (a missing cuBLAS, say) is not "not built": the
    status says "import error" with the loader's message and module() raises that ImportError."""
    def broken(name, *a, **k):
        raise ImportError("libcublasLt.so.13: cannot open shared object file: No such file or directory")

    monkeypatch.setattr(cuda, "built", lambda: True)
    monkeypatch.setattr(cuda.importlib, "import_module", broken)
    st = cuda.status()
    assert not st.available and not llmpy.cuda_available()
    assert st.reason == ("import error: llmpy._cuda does not load: libcublasLt.so.13: cannot open shared object "
                         "file: No such file or directory")
    with pytest.raises(ImportError, match="libcublasLt.so.13"):
        cuda.module("cuda")
    with pytest.raises(NotImplementedError, match=r"import error: llmpy._cuda does not load: libcublasLt"):
        llmpy.GPT2(llmpy.GPT2Config(n_layer=1, n_head=1, n_embd=8, vocab_size=16, block_size=8), device="cuda")


def test_cuda_module_imports_in_either_order_when_built():
    """With the CUDA backend built, llmpy._cuda imports before or after llmpy in a fresh process, and
    a model made through llmpy._C after it (the core exists once). Without the backend there is no
    module to import: the test then checks the CPU-only package imports cleanly both ways."""
    built = llmpy.build_info()["cuda"]
    first = "import llmpy._cuda as c, llmpy" if built else "import llmpy"
    second = "import llmpy; import llmpy._cuda as c" if built else "import llmpy, llmpy.cuda"
    for code in (first, second):
        probe = "; print(c.probe()[0] >= 0)" if built else "; print(True)"
        code += probe + "; m = llmpy.GPT2(llmpy.GPT2Config(1, 1, 8, 16, 8)); print(m.device)"
        out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
        assert out.returncode == 0, f"{code!r} failed:\n{out.stderr}"
        assert out.stdout.split() == ["True", "cpu"], out.stdout


# ----------------------------------------------------------------------------
# the command lines use the same parser


def test_train_cli_rejects_bad_devices(tmp_path):
    bad = subprocess.run([sys.executable, "-m", "llmpy.train", "--device", "gpu"], capture_output=True, text=True,
                         timeout=120, cwd=tmp_path)
    assert bad.returncode == 2 and "--device: unknown device 'gpu'" in bad.stderr, bad.stderr
    if llmpy.cuda_available():
        return
    res = subprocess.run([sys.executable, "-m", "llmpy.train", "--device", "cuda", "--max-steps", "1"],
                         capture_output=True, text=True, timeout=300, cwd=tmp_path)
    assert res.returncode != 0
    assert f"--device cuda: device 'cuda': CUDA is not available ({llmpy.cuda_status().reason})" in res.stderr
    assert "Traceback" not in res.stderr, res.stderr


@pytest.mark.parametrize("module", ["llmpy.sample", "llmpy.hellaswag"])
def test_other_clis_take_the_same_device_strings(module):
    res = subprocess.run([sys.executable, "-m", module, "--checkpoint", "x.bin", "--device", "cuda:x"],
                         capture_output=True, text=True, timeout=120)
    assert res.returncode == 2 and "bad device 'cuda:x'" in res.stderr, res.stderr


def test_train_gpt2_binary_parses_devices_the_same_way(tmp_path):
    exe = find_train_gpt2()
    base = [exe, "--init-from", str(tmp_path / "none.bin"), "--data", str(tmp_path / "x_train.bin"),
            "--out-dir", str(tmp_path / "run")]
    res = subprocess.run(base + ["--device", "gpu"], capture_output=True, text=True, timeout=60)
    assert res.returncode != 0 and "unknown device 'gpu' (expected auto, cpu, cuda or cuda:N)" in res.stderr
    st = llmpy.cuda_status()
    if not st.available:  # the binary gives the same reason as the Python package (or: not built)
        why = st.reason if llmpy.build_info()["cuda"] else "this train_gpt2 is built without the CUDA backend"
        res = subprocess.run(base + ["--device", "cuda:1"], capture_output=True, text=True, timeout=60)
        assert res.returncode != 0 and f"device 'cuda:1': CUDA is not available ({why}" in res.stderr, res.stderr
    # auto and cpu get past the device to the (missing) model file
    for spec in ("auto", "cpu"):
        res = subprocess.run(base + ["--device", spec], capture_output=True, text=True, timeout=60)
        assert res.returncode != 0 and "none.bin" in res.stderr and "device" not in res.stderr, res.stderr
