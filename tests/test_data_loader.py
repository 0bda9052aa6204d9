"""llmpy.data.DataLoader (the C loader, csrc/data/dataloader.c): order, rank slicing, shuffling,
epochs, resume, errors.

Oracles, independent of the loader:
* the shard files read with plain numpy (``np.fromfile`` past the 1024-byte header) and cut into
  windows and batches as csrc/data/dataloader.h specifies;
* for shuffling, splitmix64 written out here in plain Python ints, itself checked against its
  published outputs, and sorted with Python's ``sorted``;
* for rank slicing and resuming, one process with ``B * world_size`` and an uninterrupted run.
The shards hold their global token positions as tokens (all < 65536), so a row names its window.
"""

from __future__ import annotations

import fnmatch
import glob
import itertools
import json
import os
import re
from pathlib import Path

import numpy as np
import pytest
from data_helpers import HEADER_BYTES, tiktoken_cache  # noqa: F401
from llmpy.data import DataLoader, MissingShardError, ShardError, write_shard
from llmpy.data.loader import permutation, stream_seed

T = 8

# ----------------------------------------------------------------------------
# the oracle: splitmix64 in plain Python ints, and the batches straight from the files

M64 = (1 << 64) - 1
GOLDEN = 0x9E3779B97F4A7C15


def mix64(z: int) -> int:
    z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & M64
    z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & M64
    return z ^ (z >> 31)


def splitmix64(seed: int, n: int) -> list[int]:
    """The first n outputs of splitmix64 started at seed."""
    return [mix64((seed + i * GOLDEN) & M64) for i in range(1, n + 1)]


def oracle_permutation(n: int, seed: int) -> list[int]:
    keys = splitmix64(seed & M64, n)
    return sorted(range(n), key=lambda i: (keys[i], i))


def oracle_stream_seed(seed: int, epoch: int, which: int) -> int:
    h = 0
    for v in (seed, epoch, which):
        h = mix64(((h ^ (v & M64)) + GOLDEN) & M64)
    return h


def shard_tokens(path) -> np.ndarray:
    return np.fromfile(path, dtype="<u2", offset=HEADER_BYTES).astype(np.int64)


def expected(pattern: str, B: int, T: int, rank=0, world=1, shuffle=False, seed=0, epochs=2):
    """[(position, x, y)] of `epochs` epochs, computed from the files as dataloader.h specifies."""
    files = sorted(glob.glob(pattern))
    toks = [shard_tokens(f) for f in files]
    out = []
    for e in range(epochs):
        order = oracle_permutation(len(files), oracle_stream_seed(seed, e, 0)) if shuffle else range(len(files))
        for k, f in enumerate(order):
            nseq = max(toks[f].size - 1, 0) // T
            seqs = oracle_permutation(nseq, oracle_stream_seed(seed, e, f + 1)) if shuffle else range(nseq)
            for b in range(nseq // (B * world)):
                first = (b * world + rank) * B
                win = np.stack([toks[f][s * T : s * T + T + 1] for s in seqs[first : first + B]])
                out.append(((e, k, b), win[:, :-1], win[:, 1:]))
    return out


@pytest.fixture
def shards(tmp_path):
    """Five shards (one too small for any batch) with tokens = position in the concatenation."""
    sizes = [12 * 8 * T + 1, 24 * T + 1, 3, 36 * T + 5, 12 * T + 1]  # sequences: 96, 24, 0, 36, 12
    pos = 0
    for i, n in enumerate(sizes):
        write_shard(tmp_path / f"pos_train_{i:06d}.bin", np.arange(pos, pos + n))
        pos += n
    return str(tmp_path / "pos_train_*.bin")


# ----------------------------------------------------------------------------
# permutations


def test_oracle_is_splitmix64():
    # published outputs of splitmix64 (Vigna's reference code) for seeds 0 and 1234567
    assert splitmix64(0, 3) == [0xE220A8397B1DCDAF, 0x6E789E6AA1B965F4, 0x06C45D188009454F]
    assert splitmix64(1234567, 3) == [6457827717110365317, 3203168211198807973, 9817491932198370423]


@pytest.mark.parametrize(
    "n, seed", [(0, 1), (1, 1), (2, 0), (37, 5), (1000, 2**64 - 1), (513, 2**63 + 12345), (100, 2**64 + 5), (64, -1)]
)
def test_permutation_is_the_sorted_splitmix64_stream(n, seed):
    got = permutation(n, seed)
    assert got.dtype == np.int64 and got.shape == (n,)
    want = oracle_permutation(n, seed)
    assert got.tolist() == want, f"first difference at {next(i for i, (a, b) in enumerate(zip(got, want)) if a != b)}"


def test_stream_seed_and_seed_range():
    for seed, epoch, which in [(0, 0, 0), (5, 6, 7), (2**64 - 1, 3, 1), (2**64 + 5, 6, 7), (-1, 0, 2)]:
        assert stream_seed(seed, epoch, which) == oracle_stream_seed(seed, epoch, which), (seed, epoch, which)
    assert stream_seed(2**64 + 5, 6, 7) == stream_seed(5, 6, 7), "seeds are taken modulo 2**64"
    assert permutation(50, 1).tolist() != permutation(50, 2).tolist()
    with pytest.raises(ValueError, match="n must be >= 0, got -1"):
        permutation(-1, 0)


# ----------------------------------------------------------------------------
# batches


def _check_against_oracle(dl, want, label):
    for i, (pos, ex, ey) in enumerate(want):
        assert dl.position == pos, f"{label}: batch {i}: position {dl.position}, expected {pos}"
        x, y = dl.next_batch()
        assert type(x) is np.ndarray and x.dtype == np.int32 and x.shape == ex.shape and x.flags.c_contiguous
        assert y.dtype == np.int32 and y.shape == ey.shape and y.flags.c_contiguous
        np.testing.assert_array_equal(x, ex, err_msg=f"{label}: x of batch {i} at {pos}")
        np.testing.assert_array_equal(y, ey, err_msg=f"{label}: y of batch {i} at {pos}")


@pytest.mark.parametrize("shuffle", [False, True])
@pytest.mark.parametrize("rank, world, B", [(0, 1, 4), (1, 2, 2), (2, 3, 1)])
def test_batches_are_the_windows_of_the_files(shards, shuffle, rank, world, B):
    dl = DataLoader(shards, B, T, rank=rank, world_size=world, shuffle=shuffle, seed=99)
    files = sorted(glob.glob(shards))
    assert dl.files == files
    sizes = [(os.path.getsize(f) - HEADER_BYTES) // 2 for f in files]
    assert dl.file_tokens == sizes and dl.num_tokens == sum(sizes)
    want = expected(shards, B, T, rank, world, shuffle, seed=99, epochs=3)
    assert len(dl) == dl.batches_per_epoch == len(want) // 3
    _check_against_oracle(dl, want, f"rank {rank}/{world}, shuffle={shuffle}")
    assert dl.epoch == 3 and dl.position[2] == 0


def test_single_process_matches_llm_c_order(shards):
    """Unshuffled, one process: llm.c's contiguous chunks of B*T+1 tokens, shard after shard."""
    B = 4
    chunks = []
    for toks in map(shard_tokens, sorted(glob.glob(shards))):
        for pos in range(0, toks.size - B * T, B * T):
            buf = toks[pos : pos + B * T + 1]
            chunks.append((buf[:-1].reshape(B, T), buf[1:].reshape(B, T)))
    dl = DataLoader(shards, B, T)
    assert len(dl) == len(chunks) == 24 + 6 + 0 + 9 + 3
    got = list(dl)
    assert len(got) == len(chunks), "iterating yields exactly one epoch"
    for i, ((x, y), (ex, ey)) in enumerate(zip(got, chunks)):
        np.testing.assert_array_equal(x, ex, err_msg=f"batch {i}")
        np.testing.assert_array_equal(y, ey, err_msg=f"batch {i}")
    assert dl.epoch == 1 and dl.position == (1, 0, 0)
    np.testing.assert_array_equal(dl.next_batch()[0], chunks[0][0], err_msg="the next epoch must start over")


@pytest.mark.parametrize("world", [2, 3])
@pytest.mark.parametrize("shuffle", [False, True])
def test_ranks_are_disjoint_and_interleave_to_the_single_process_stream(shards, world, shuffle):
    B = 2
    single = DataLoader(shards, B * world, T, shuffle=shuffle, seed=7)
    ranks = [DataLoader(shards, B, T, rank=r, world_size=world, shuffle=shuffle, seed=7) for r in range(world)]
    assert all(len(r) == len(single) for r in ranks)
    for step in range(2 * len(single) + 3):  # across two epoch boundaries
        xs, ys = zip(*(r.next_batch() for r in ranks))
        ex, ey = single.next_batch()
        np.testing.assert_array_equal(np.concatenate(xs), ex, err_msg=f"step {step}")
        np.testing.assert_array_equal(np.concatenate(ys), ey, err_msg=f"step {step}")
        starts = [set(x[:, 0].tolist()) for x in xs]
        assert all(not (a & b) for a, b in itertools.combinations(starts, 2)), f"ranks overlap at step {step}"
        assert len({r.position for r in ranks} | {single.position}) == 1


def _epoch_windows(dl):
    return [tuple(row) for x, _ in dl for row in x[:, [0, -1]].tolist()]


def test_shuffle_is_a_reproducible_permutation(tmp_path):
    B = 4  # every shard holds a multiple of B sequences, so an epoch covers all of them
    pos = 0
    for i, nseq in enumerate([8, 16, 4, 12]):
        write_shard(tmp_path / f"s_{i}.bin", np.arange(pos, pos + nseq * T + 1))
        pos += nseq * T + 1
    pattern = str(tmp_path / "s_*.bin")
    plain = _epoch_windows(DataLoader(pattern, B, T))
    dl = DataLoader(pattern, B, T, shuffle=True, seed=3)
    e0, e1 = _epoch_windows(dl), _epoch_windows(dl)
    assert sorted(e0) == sorted(plain) == sorted(e1) and len(set(e0)) == len(e0), "an epoch must be a permutation"
    assert e0 != plain and e0 != e1, "shuffle must change the order, and per epoch"
    assert _epoch_windows(DataLoader(pattern, B, T, shuffle=True, seed=3)) == e0, "same seed, same order"
    assert _epoch_windows(DataLoader(pattern, B, T, shuffle=True, seed=4)) != e0
    assert _epoch_windows(DataLoader(pattern, B, T, shuffle=True, seed=3 + 2**64)) == e0, "seed modulo 2**64"


# ----------------------------------------------------------------------------
# position, resume, epochs


@pytest.mark.parametrize("shuffle", [False, True])
def test_resume_from_state_dict(shards, shuffle):
    dl = DataLoader(shards, 2, T, rank=1, world_size=2, shuffle=shuffle, seed=11)
    n = len(dl)
    for _ in range(n + 5):  # into the second epoch
        dl.next_batch()
    state = json.loads(json.dumps(dl.state_dict()))  # survives a JSON checkpoint
    expect = [dl.next_batch() for _ in range(n + 3)]

    for rank, world, B in [(1, 2, 2), (0, 1, 4)]:  # same rank, or a single process with B * world
        other = DataLoader(shards, B, T, rank=rank, world_size=world, shuffle=shuffle, seed=11)
        other.load_state_dict(state)
        got = [other.next_batch() for _ in range(n + 3)]
        for i, ((x, y), (ex, ey)) in enumerate(zip(got, expect)):
            sl = slice(2, 4) if world == 1 else slice(None)  # rank 1 of 2 is rows 2:4 of the B=4 batch
            np.testing.assert_array_equal(x[sl], ex, err_msg=f"batch {i} after resume ({rank}/{world})")
            np.testing.assert_array_equal(y[sl], ey, err_msg=f"batch {i} after resume ({rank}/{world})")


def test_state_dict_is_the_checkpoint_format(shards):
    dl = DataLoader([Path(shards)], 2, T, rank=1, world_size=2, shuffle=True, seed=2**64 + 11)
    for _ in range(len(dl) + 2):
        dl.next_batch()
    state = dl.state_dict()
    epoch, shard, batch = dl.position
    assert epoch == 1
    assert state == {
        "version": 1,
        "epoch": epoch,
        "shard": shard,
        "batch": batch,
        "seed": 2**64 + 11,  # as given: the checkpoint keeps the user's number
        "shuffle": True,
        "seq_len": T,
        "global_batch": 4,
        "files": [f"pos_train_{i:06d}.bin" for i in range(5)],
    }
    assert json.loads(json.dumps(state)) == state


def test_load_state_dict_refuses_another_loader(shards):
    dl = DataLoader(shards, 2, T, rank=1, world_size=2, shuffle=True, seed=11)
    dl.next_batch()
    state = dl.state_dict()
    epoch, shard = state["epoch"], state["shard"]

    cases = [
        (DataLoader(shards, 2, T + 1, rank=1, world_size=2, shuffle=True, seed=11), state,
         f"cannot resume: the saved data loader had seq_len={T}, this one has {T + 1}"),
        (DataLoader(shards, 3, T, shuffle=True, seed=11), state,
         "cannot resume: the saved data loader had global_batch=4, this one has 3"),
        (DataLoader(shards, 4, T, shuffle=False, seed=11), state,
         "cannot resume: the saved data loader had shuffle=True, this one has False"),
        (DataLoader(shards, 4, T, shuffle=True, seed=12), state,
         "cannot resume: the saved data loader had seed=11, this one has 12"),
        (dl, dict(state, version=2), "data loader state has version 2, expected 1"),
        (dl, dict(state, files=state["files"][1:]),
         "cannot resume: the shards changed since the state was saved (4 saved, 5 now; first saved: pos_train_000001.bin)"),
        (dl, dict(state, shard=5), f"data loader state has an invalid position (epoch {epoch}, shard 5)"),
        (dl, dict(state, epoch=-1), f"data loader state has an invalid position (epoch -1, shard {shard})"),
        (dl, dict(state, batch=10**6), "data loader state has batch 1000000 but that shard holds"),
    ]
    for loader, bad, message in cases:
        before = loader.position
        with pytest.raises(ValueError) as e:
            loader.load_state_dict(bad)
        assert message in str(e.value), f"expected {message!r}, got {str(e.value)!r}"
        assert loader.position == before, "a refused state must not move the loader"


def test_reset_and_epoch_iteration(shards):
    dl = DataLoader(shards, 4, T, shuffle=True, seed=1)
    first = [x for x, _ in dl]
    assert len(first) == len(dl) and dl.epoch == 1
    dl.reset()
    np.testing.assert_array_equal(dl.next_batch()[0], first[0], err_msg="reset() goes back to the first batch")
    dl.reset(epoch=1)
    want = expected(shards, 4, T, shuffle=True, seed=1, epochs=2)
    assert dl.position == want[len(dl)][0], "reset(1) goes to the first batch of epoch 1"
    np.testing.assert_array_equal(dl.next_batch()[0], want[len(dl)][1], err_msg="first batch of epoch 1")
    with pytest.raises(ValueError, match="epoch must be >= 0, got -1"):
        dl.reset(-1)


def _open_shards(pattern):
    """Paths of this process's open file descriptors that match pattern (Linux /proc)."""
    fds = Path("/proc/self/fd")
    targets = []
    for fd in fds.iterdir():
        try:
            targets.append(os.readlink(fd))
        except OSError:
            pass
    return sorted(t for t in targets if fnmatch.fnmatch(t, pattern))


@pytest.mark.skipif(not Path("/proc/self/fd").is_dir(), reason="needs /proc/self/fd (Linux)")
def test_close_releases_the_shard_and_reading_resumes(shards):
    dl = DataLoader(shards, 4, T)
    want = expected(shards, 4, T, epochs=1)
    assert _open_shards(shards) == [], "building the loader keeps no shard open"
    dl.next_batch()
    assert _open_shards(shards) == [min(glob.glob(shards))]
    dl.close()
    assert _open_shards(shards) == [], "close() must release the shard"
    np.testing.assert_array_equal(dl.next_batch()[0], want[1][1], err_msg="the batch after close()")
    del dl
    assert _open_shards(shards) == []


def test_threads_sharing_a_loader_get_each_batch_once(shards):
    """The GIL is released while reading; calls on one loader are serialised, never interleaved."""
    from concurrent.futures import ThreadPoolExecutor

    dl = DataLoader(shards, 1, T, shuffle=True, seed=5)
    want = expected(shards, 1, T, shuffle=True, seed=5, epochs=8)
    with ThreadPoolExecutor(8) as pool:
        got = list(pool.map(lambda _: dl.next_batch(), range(len(want))))
    key = lambda x: x.astype(np.int64).tobytes()
    assert sorted(key(x) for x, _ in got) == sorted(key(ex) for _, ex, _ in want), "batches lost or mixed up"
    for x, y in got:
        np.testing.assert_array_equal(x[:, 1:], y[:, :-1], err_msg="y must be x shifted by one")
    assert dl.position[0] == 8


def test_repr(shards):
    dl = DataLoader(shards, 4, T, shuffle=True, seed=1)
    assert repr(dl) == (
        f"DataLoader(5 shards, {dl.num_tokens} tokens, B=4, T={T}, rank 0/1, shuffle=True, position={dl.position})"
    )


# ----------------------------------------------------------------------------
# arguments and errors


def test_patterns_paths_and_lists(shards):
    files = sorted(glob.glob(shards))
    # a list of patterns and paths (str or PathLike): the union, sorted, without duplicates
    both = DataLoader([files[3], Path(files[0]), shards], 1, T)
    assert both.files == files
    assert DataLoader(Path(files[1]), 1, T).files == [files[1]]
    assert DataLoader((f for f in files[:2]), 1, T).files == files[:2], "any iterable of patterns"


def test_loader_argument_errors(shards, tmp_path):
    with pytest.raises(ShardError) as e:
        DataLoader(shards, 1000, T)
    assert str(e.value) == (
        f"no shard matching '{shards}' holds a full batch: B*world_size*T+1 = {1000 * T + 1} tokens are needed, "
        f"the largest of 5 shard(s) has {12 * 8 * T + 1}; use a smaller batch or seq_len"
    )
    with pytest.raises(ShardError, match="or the other 1 pattern"):
        DataLoader([shards, min(glob.glob(shards))], 1000, T)
    for B, T_ in [(0, T), (1, 0), (-2, T)]:
        with pytest.raises(ValueError, match=f"batch_size and seq_len must be >= 1, got {B}, {T_}"):
            DataLoader(shards, B, T_)
    for rank, world in [(2, 2), (-1, 2), (0, 0)]:
        with pytest.raises(ValueError, match=f"need world_size >= 1 and 0 <= rank < world_size, got rank {rank}"):
            DataLoader(shards, 1, T, rank=rank, world_size=world)
    with pytest.raises(ValueError, match="no shard pattern given"):
        DataLoader([], 1, T)


def test_missing_shards(tmp_path):
    missing = tmp_path / "nope_000000.bin"
    with pytest.raises(MissingShardError) as e:
        DataLoader(missing, 1, T)
    assert str(e.value) == f"token shard {missing} does not exist; create it first (python -m llmpy.data --help)"
    assert isinstance(e.value, FileNotFoundError)
    pattern = str(tmp_path / "*.bin")
    with pytest.raises(MissingShardError) as e:
        DataLoader(pattern, 1, T)
    assert str(e.value) == f"no token shard matches '{pattern}'; create the shards first (python -m llmpy.data --help)"


def test_shards_changed_under_the_loader(shards):
    files = sorted(glob.glob(shards))
    dl = DataLoader(shards, 4, T)
    dl.next_batch()
    write_shard(files[1], np.arange(10 * T + 1))  # valid, but another size than when the loader opened
    Path(files[3]).unlink()
    for _ in range(23):  # the rest of shard 0
        dl.next_batch()
    with pytest.raises(ShardError, match=re.escape(f"token shard {files[1]} changed since the loader opened it: "
                                                   f"{24 * T + 1} tokens then, {10 * T + 1} now")):
        dl.next_batch()
    assert dl.position == (0, 1, 0), "a failed read must not move the loader"
    dl.load_state_dict(dict(dl.state_dict(), shard=3))
    with pytest.raises(MissingShardError, match=re.escape(f"token shard {files[3]} does not exist")):
        dl.next_batch()
