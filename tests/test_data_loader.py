"""DataLoader (Python) and the C loader (llmpy._C.data): rank slicing, resume, shuffle, epochs.

Oracle: shards whose token values are their global positions (all < 65536), so every batch
row names the window it came from; expected batches are computed from plain slicing."""

from __future__ import annotations

import itertools
import json

import numpy as np
import pytest
from data_helpers import tiktoken_cache  # noqa: F401
from llmpy import _C
from llmpy.data import DataLoader, ShardError, write_shard
from llmpy.data.loader import permutation, stream_seed

T = 8


@pytest.fixture
def shards(tmp_path):
    """Five shards (one too small for any batch) with tokens = position in the concatenation."""
    sizes = [12 * 8 * T + 1, 24 * T + 1, 3, 36 * T + 5, 12 * T + 1]  # sequences: 96, 24, 0, 36, 12
    pos = 0
    for i, n in enumerate(sizes):
        write_shard(tmp_path / f"pos_train_{i:06d}.bin", np.arange(pos, pos + n))
        pos += n
    return str(tmp_path / "pos_train_*.bin")


def _tokens(pattern):
    from llmpy.data.loader import expand_pattern
    from llmpy.data.shards import read_shard

    return [np.asarray(read_shard(f), dtype=np.int64) for f in expand_pattern(pattern)]


def _llm_c_epoch(pattern, B, T):
    """Single-process batches of one unshuffled epoch, llm.c style: contiguous B*T+1 chunks."""
    out = []
    for toks in _tokens(pattern):
        pos = 0
        while pos + B * T + 1 <= toks.size:
            buf = toks[pos : pos + B * T + 1]
            out.append((buf[:-1].reshape(B, T), buf[1:].reshape(B, T)))
            pos += B * T
    return out


def test_single_process_matches_llm_c_order(shards):
    B = 4
    dl = DataLoader(shards, B, T)
    expect = _llm_c_epoch(shards, B, T)
    assert len(dl) == len(expect) == 24 + 6 + 0 + 9 + 3
    got = list(dl)
    assert len(got) == len(expect)
    for i, ((x, y), (ex, ey)) in enumerate(zip(got, expect)):
        assert type(x) is np.ndarray and x.dtype == np.int32 and x.shape == (B, T) and x.flags.c_contiguous
        np.testing.assert_array_equal(x, ex, err_msg=f"batch {i}")
        np.testing.assert_array_equal(y, ey, err_msg=f"batch {i}")
    assert dl.epoch == 1 and dl.position == (1, 0, 0)
    np.testing.assert_array_equal(dl.next_batch()[0], expect[0][0])  # the next epoch starts over


@pytest.mark.parametrize("world", [2, 3])
@pytest.mark.parametrize("shuffle", [False, True])
def test_ranks_are_disjoint_and_interleave_to_the_single_process_stream(shards, world, shuffle):
    B = 2
    single = DataLoader(shards, B * world, T, shuffle=shuffle, seed=7)
    ranks = [
        DataLoader(shards, B, T, rank=r, world_size=world, shuffle=shuffle, seed=7) for r in range(world)
    ]
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
    assert sorted(e0) == sorted(plain) == sorted(e1) and len(set(e0)) == len(e0), (
        "an epoch must be a permutation"
    )
    assert e0 != plain and e0 != e1, "shuffle must change the order, and per epoch"
    assert _epoch_windows(DataLoader(pattern, B, T, shuffle=True, seed=3)) == e0, "same seed, same order"
    assert _epoch_windows(DataLoader(pattern, B, T, shuffle=True, seed=4)) != e0
    # the permutation helper: a permutation, identical in C, seed-dependent
    for n, s in [(0, 1), (1, 1), (1000, 2**64 - 1), (37, stream_seed(5, 6, 7))]:
        p = permutation(n, s)
        assert sorted(p.tolist()) == list(range(n))
        np.testing.assert_array_equal(_C.data.permutation(n, s), p)
    assert _C.data.stream_seed(5, 6, 7) == stream_seed(5, 6, 7)
    assert not np.array_equal(permutation(50, 1), permutation(50, 2))


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

    with pytest.raises(ValueError, match="seq_len"):
        DataLoader(shards, 2, T + 1, rank=1, world_size=2, shuffle=shuffle, seed=11).load_state_dict(state)
    with pytest.raises(ValueError, match="global_batch"):
        DataLoader(shards, 3, T, shuffle=shuffle, seed=11).load_state_dict(state)
    bad = dict(state, batch=10**6)
    with pytest.raises(ValueError, match="batch"):
        dl.load_state_dict(bad)


def test_reset_and_epoch_iteration(shards):
    dl = DataLoader(shards, 4, T, shuffle=True, seed=1)
    first = [x for x, _ in dl]
    assert len(first) == len(dl) and dl.epoch == 1
    dl.reset()
    np.testing.assert_array_equal(dl.next_batch()[0], first[0])
    dl.reset(epoch=1)
    assert dl.position == (1, 0, 0)
    with pytest.raises(ValueError):
        dl.reset(-1)


@pytest.mark.parametrize("shuffle", [False, True])
@pytest.mark.parametrize("rank, world, B", [(0, 1, 4), (1, 2, 2), (2, 3, 1)])
def test_c_loader_yields_the_python_batches(shards, shuffle, rank, world, B):
    py = DataLoader(shards, B, T, rank=rank, world_size=world, shuffle=shuffle, seed=99)
    c = _C.data.DataLoader([shards], B, T, rank=rank, world_size=world, shuffle=shuffle, seed=99)
    assert c.batches_per_epoch == len(py) and c.files == py.files
    for step in range(2 * len(py) + 1):
        assert c.position == py.position, f"step {step}"
        cx, cy = c.next_batch()
        px, py_ = py.next_batch()
        np.testing.assert_array_equal(cx, px, err_msg=f"x at step {step}")
        np.testing.assert_array_equal(cy, py_, err_msg=f"y at step {step}")
    # resume: the C position is the Python one
    state = py.state_dict()
    c2 = _C.data.DataLoader([shards], B, T, rank=rank, world_size=world, shuffle=shuffle, seed=99)
    c2.position = (state["epoch"], state["shard"], state["batch"])
    for _ in range(5):
        np.testing.assert_array_equal(c2.next_batch()[0], py.next_batch()[0])
    with pytest.raises(ValueError, match="invalid data position"):
        c2.position = (0, 99, 0)
    c2.reset(0)
    py.reset(0)
    assert c2.position == py.position  # (0, 0, 0), or past an empty shard drawn first


def test_loader_argument_errors(shards, tmp_path):
    with pytest.raises(ShardError, match="holds a full batch"):
        DataLoader(shards, 1000, T)
    with pytest.raises(ValueError, match="holds a full batch"):
        _C.data.DataLoader([shards], 1000, T)
    with pytest.raises(ValueError, match="rank"):
        DataLoader(shards, 1, T, rank=2, world_size=2)
    with pytest.raises(ValueError, match="rank"):
        _C.data.DataLoader([shards], 1, T, rank=2, world_size=2)
    # a list of patterns: the union, sorted, without duplicates
    files = DataLoader(shards, 1, T).files
    both = DataLoader([files[3], files[0], shards], 1, T)
    assert both.files == files
    assert _C.data.DataLoader([files[3], files[0], shards], 1, T).files == files
