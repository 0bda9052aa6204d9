"""The collective transports of csrc/dist/comm.h: the core's registry and the CUDA backend's NCCL transport.

What runs without a GPU, for real:
  - build_info()["nccl"]: a bool, and never true without the CUDA backend;
  - the registry (llm_register_comm / llm_comm_factory_for in libllmpy.so, csrc/dist/comm.c), called
    through ctypes: there is no Python binding for it, and the core the bindings use is the same
    library (checked first: an error raised through llmpy._C is the one ctypes reads back);
  - with an NCCL build: the transport's factory (cuda/nccl.cu), in a fresh process where the CUDA
    backend was never initialised: make_id() yields distinct 128-byte ids (ncclGetUniqueId needs
    no GPU) and create() refuses to run before llm_cuda_init, or with bad arguments, with a message.

With a GPU (skipped here with the reason "no CUDA device"): the data-parallel code path over NCCL
with one rank (a launch without MPI: LLMPY_RANK=0, LLMPY_WORLD_SIZE=1, the id through a file in
LLMPY_DIST_DIR) trains exactly as the plain model does, bit for bit over 5 steps (zero_stage 0 and 1 in bf16,
zero_stage 1 in fp32); and a rank whose peers never come times out naming itself.
"""

from __future__ import annotations

import ctypes
import subprocess
import sys
from pathlib import Path

import llmpy
import pytest
from llmpy import _C

LLM_OK, LLM_EINVAL, LLM_ESTATE = 0, 1, 5
ID_BYTES = 128  # LLM_COMM_ID_BYTES

# comm.h's llm_comm_factory: {name, make_id, create}
MAKE_ID = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.POINTER(ctypes.c_ubyte))
CREATE = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.POINTER(ctypes.c_void_p), ctypes.POINTER(ctypes.c_ubyte), ctypes.c_int,
                          ctypes.c_int, ctypes.c_double)


class Factory(ctypes.Structure):
    _fields_ = [("name", ctypes.c_char_p), ("make_id", MAKE_ID), ("create", CREATE)]


def core_library_path() -> Path:
    """libllmpy.so (or .dylib), beside llmpy._C, which links it."""
    here = Path(_C.__file__).parent
    found = sorted(here.glob("libllmpy.so")) + sorted(here.glob("libllmpy*.dylib"))
    assert found, f"no libllmpy shared library beside {_C.__file__}"
    return found[0]


def load_core(path) -> ctypes.CDLL:
    lib = ctypes.CDLL(str(path))
    lib.llm_last_error.restype = ctypes.c_char_p
    lib.llm_register_comm.argtypes = [ctypes.c_char_p, ctypes.POINTER(Factory)]
    lib.llm_register_comm.restype = ctypes.c_int
    lib.llm_comm_factory_for.argtypes = [ctypes.c_char_p]
    lib.llm_comm_factory_for.restype = ctypes.POINTER(Factory)
    lib.llm_build_has_nccl.restype = ctypes.c_int
    return lib


@pytest.fixture(scope="module")
def core():
    lib = load_core(core_library_path())
    # the same core as the bindings' (one error slot): ctypes reads back what llmpy._C just failed with
    with pytest.raises(ValueError):
        _C.parse_device("no-such-device")
    assert b"no-such-device" in lib.llm_last_error(), "ctypes loaded another libllmpy than llmpy._C uses"
    return lib


# registered factories stay referenced by the C registry until the process ends: so do they here
_REGISTERED: list = []


def noop_factory(name: bytes, calls: list) -> Factory:
    """A factory whose callbacks record that they ran, kept alive for the rest of the process."""

    def make_id(buf):
        calls.append(("make_id", name))
        return LLM_OK

    def create(out, id_, rank, world_size, timeout_s):
        calls.append(("create", name, rank, world_size, timeout_s))
        return LLM_OK

    f = Factory(name, MAKE_ID(make_id), CREATE(create))
    _REGISTERED.append(f)
    return f


# ----------------------------------------------------------------------------
# build info


def test_build_info_nccl_is_a_bool_that_needs_cuda(core):
    info = llmpy.build_info()
    assert type(info["nccl"]) is bool
    assert info["nccl"] == bool(core.llm_build_has_nccl())
    if not info["cuda"]:
        assert info["nccl"] is False, "NCCL transport reported in a build without the CUDA backend"


# ----------------------------------------------------------------------------
# the registry


def test_registry_finds_replaces_and_keeps_devices_apart(core):
    calls: list = []
    first, second, other = (noop_factory(b"first", calls), noop_factory(b"second", calls),
                            noop_factory(b"other", calls))
    assert not core.llm_comm_factory_for(b"pytest-nowhere"), "a device nobody registered has a transport"
    assert core.llm_register_comm(b"pytest-a", ctypes.byref(first)) == LLM_OK, core.llm_last_error()
    assert core.llm_register_comm(b"pytest-b", ctypes.byref(other)) == LLM_OK, core.llm_last_error()
    got = core.llm_comm_factory_for(b"pytest-a")
    assert ctypes.addressof(got.contents) == ctypes.addressof(first)
    assert got.contents.name == b"first"
    # replacing one device's transport leaves the other's alone
    assert core.llm_register_comm(b"pytest-a", ctypes.byref(second)) == LLM_OK, core.llm_last_error()
    assert core.llm_comm_factory_for(b"pytest-a").contents.name == b"second"
    assert core.llm_comm_factory_for(b"pytest-b").contents.name == b"other"
    # the table points at the registered callbacks
    buf = (ctypes.c_ubyte * ID_BYTES)()
    assert core.llm_comm_factory_for(b"pytest-a").contents.make_id(buf) == LLM_OK
    assert calls == [("make_id", b"second")]
    # names are exact (no prefix match)
    assert not core.llm_comm_factory_for(b"pytest-")
    assert not core.llm_comm_factory_for(None)


@pytest.mark.parametrize("device,factory_fields,message", [
    (None, ("x", True, True), "NULL device or factory"),
    (b"", ("x", True, True), "device name must have 1 to 15 characters, got ''"),
    (b"a-device-name-too-long", ("x", True, True), "got 'a-device-name-too-long'"),
    (b"pytest-c", (None, True, True), "lacks its name, make_id or create"),
    (b"pytest-c", ("x", False, True), "lacks its name, make_id or create"),
    (b"pytest-c", ("x", True, False), "lacks its name, make_id or create"),
])
def test_registry_refuses_bad_registrations(core, device, factory_fields, message):
    name, with_make_id, with_create = factory_fields
    full = noop_factory(b"x", [])
    f = Factory(name.encode() if name else None, full.make_id if with_make_id else MAKE_ID(),
                full.create if with_create else CREATE())
    assert core.llm_register_comm(device, ctypes.byref(f)) == LLM_EINVAL
    err = core.llm_last_error().decode()
    assert "register_comm" in err and message in err, err
    if device:
        assert not core.llm_comm_factory_for(device), "a refused registration was kept"


def test_registry_refuses_a_null_factory(core):
    assert core.llm_register_comm(b"pytest-d", None) == LLM_EINVAL
    assert "NULL device or factory" in core.llm_last_error().decode()


# ----------------------------------------------------------------------------
# the NCCL transport's factory, without a GPU

# Runs in a fresh process: there the CUDA backend is certainly not initialised (llm_cuda_init is
# what registers the transport; here it is registered by hand, which needs no GPU).
NCCL_FACTORY_SCRIPT = r"""
import ctypes, sys
sys.path.insert(0, sys.argv[1])
import llmpy, llmpy._cuda
from test_nccl import Factory, ID_BYTES, core_library_path, load_core

core = load_core(core_library_path())
cuda = ctypes.CDLL(llmpy._cuda.__file__)
register = getattr(cuda, "llm_cuda_register_nccl", None)
assert register is not None, ("llmpy._cuda has no llm_cuda_register_nccl although build_info()['nccl'] is True: "
                              "the transport is not linked in (llm_cuda_init must call it)")
register.restype = ctypes.c_int
assert register() == 0, core.llm_last_error()
f = core.llm_comm_factory_for(b"cuda")
assert f and f.contents.name == b"nccl", "device 'cuda' has no NCCL transport after registration"
f = f.contents

ids = []
for _ in range(2):
    buf = (ctypes.c_ubyte * ID_BYTES)()
    assert f.make_id(buf) == 0, core.llm_last_error()
    ids.append(bytes(buf))
assert any(ids[0]) and ids[0] != ids[1], "make_id: two ids should differ (and not be all zero)"

out = ctypes.c_void_p(1)
def create(rank, world, timeout):
    st = f.create(ctypes.byref(out), ctypes.cast(ctypes.c_char_p(ids[0]), ctypes.POINTER(ctypes.c_ubyte)),
                  rank, world, timeout)
    assert not out.value, "create: a failed call left a communicator"
    return st, core.llm_last_error().decode()

for rank, world, timeout, want, text in [
    (2, 2, 5.0, 1, "rank 2 of 2 is out of range"),
    (-1, 2, 5.0, 1, "rank -1 of 2 is out of range"),
    (0, 0, 5.0, 1, "rank 0 of 0 is out of range"),
    (0, 2, 0.0, 1, "timeout_s must be > 0 seconds"),
    (0, 2, float("nan"), 1, "timeout_s must be > 0 seconds"),
    (1, 2, 5.0, 5, "rank 1 of 2: the NCCL transport needs the CUDA backend initialised first (llm_cuda_init)"),
]:
    st, err = create(rank, world, timeout)
    assert st == want and text in err, (rank, world, timeout, st, err)
print("ok")
"""


def test_nccl_factory_without_gpu(tmp_path):
    if not llmpy.build_info()["nccl"]:
        pytest.skip("llmpy built without the NCCL transport")
    res = subprocess.run([sys.executable, "-c", NCCL_FACTORY_SCRIPT, str(Path(__file__).parent)],
                         capture_output=True, text=True, timeout=120, cwd=tmp_path, check=False)
    assert res.returncode == 0 and res.stdout.strip().endswith("ok"), res.stdout + res.stderr


# ----------------------------------------------------------------------------
# NCCL with one rank on a GPU: the data-parallel path changes no bit

NCCL_CHILD = r"""
import sys
import numpy as np
from llmpy import GPT2, GPT2Config, _C, dist
stage, prec, mode, out = int(sys.argv[1]), sys.argv[2], sys.argv[3], sys.argv[4]
m = GPT2(GPT2Config(n_layer=2, n_head=4, n_embd=256, vocab_size=1000, block_size=64), device="cuda",
         precision=prec, seed=3)
if mode == "nccl":
    m.distribute(zero_stage=stage)  # the process group: NCCL over the rendezvous file
    assert dist.world_size == 1 and m.zero_stage == stage
rng = np.random.default_rng(0)
norms = []
for step in range(5):
    x = rng.integers(0, 1000, size=(4, 65))
    m.zero_grad()
    m.forward(x[:, :-1].copy(), x[:, 1:].copy())
    m.backward(sync=mode == "nccl")
    # no clipping: the norm is summed over the shard's parts with ZeRO-1 (another grouping of the
    # same squares), so it may differ in its last bit; it is compared on its own, with a tolerance
    norms.append(m.step(1e-3, weight_decay=0.1))
np.save(out, np.concatenate([p.ravel() for p in m.parameters().values()] + [np.array(norms, np.float32)]))
if mode == "nccl":
    assert _C.dist.comm_seconds(m._m) > 0, "the NCCL transport was not used"
    dist.finalize()
"""

gpu = pytest.mark.skipif(not llmpy.cuda_available(), reason="no CUDA device (or llmpy built without CUDA)")


def _plain_env() -> dict:
    import os

    drop = ("LLMPY_RANK", "LLMPY_WORLD_SIZE", "LLMPY_DIST_DIR", "LLMPY_DIST_RUN_ID", "TORCHELASTIC_RUN_ID",
            "OMPI_COMM_WORLD_SIZE", "OMPI_COMM_WORLD_RANK", "PMI_SIZE", "PMI_RANK", "PMIX_RANK")
    return {k: v for k, v in os.environ.items() if k not in drop}


@gpu
@pytest.mark.parametrize("zero_stage,precision", [(0, "bf16"), (1, "bf16"), (1, "fp32")])
def test_nccl_one_rank_equals_the_plain_step(tmp_path, zero_stage, precision):
    import numpy as np

    if not llmpy.build_info()["nccl"]:
        pytest.fail("this CUDA build has no NCCL transport (LLMPY_NCCL=ON builds it)")
    runs = {}
    for mode in ("plain", "nccl"):
        env = _plain_env()
        if mode == "nccl":
            env.update(LLMPY_RANK="0", LLMPY_WORLD_SIZE="1", LLMPY_DIST_DIR=str(tmp_path),
                       LLMPY_DIST_RUN_ID=f"test-{zero_stage}-{precision}")
        out = tmp_path / f"{mode}.npy"
        r = subprocess.run([sys.executable, "-c", NCCL_CHILD, str(zero_stage), precision, mode, str(out)], env=env,
                           capture_output=True, text=True, timeout=300)
        assert r.returncode == 0, f"{mode}: {r.stdout}\n{r.stderr}"
        runs[mode] = np.load(out)
    (plain, plain_norms), (nccl, nccl_norms) = ((r[:-5], r[-5:]) for r in (runs["plain"], runs["nccl"]))
    np.testing.assert_allclose(nccl_norms, plain_norms, rtol=1e-6, err_msg="gradient norms")
    runs = {"plain": plain, "nccl": nccl}
    diff = np.flatnonzero(runs["plain"] != runs["nccl"])
    assert diff.size == 0, (f"NCCL with one rank differs from the plain step in {diff.size} of {runs['plain'].size} "
                            f"parameters (max abs {np.abs(runs['plain'] - runs['nccl']).max():.3e})")
    assert not list(tmp_path.glob("llmpy-*.nccl-id")), "rank 0 must remove the rendezvous file once all joined"


@gpu
def test_nccl_rank_without_peers_times_out_naming_itself(tmp_path):
    """Rank 1 of 2 whose rank 0 never starts: it waits for the rendezvous file, then gives up."""
    env = _plain_env()
    env.update(LLMPY_RANK="1", LLMPY_WORLD_SIZE="2", LLMPY_DIST_DIR=str(tmp_path), LLMPY_DIST_RUN_ID="lonely",
               LLMPY_DIST_TIMEOUT="3")
    code = "import llmpy; from llmpy import cuda, dist; cuda.module('cuda'); dist.init()"
    r = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120)
    assert r.returncode != 0
    assert "rank 1 of 2: waited 3 s for rank 0's rendezvous file" in r.stderr, r.stderr
