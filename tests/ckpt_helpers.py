"""Oracles for the checkpoint tests, written from the specifications, not from the core's code.

- ``crc32c``: CRC32C bit by bit from its definition (RFC 3720: polynomial 0x1EDC6F41, reflected
  0x82F63B78, initial value and final xor 0xFFFFFFFF; check value crc32c(b"123456789") = 0xE3069283).
- ``reseal``/``strip``: the integrity block of formats.h (the last header ints), rewritten after a
  test edits a header, or removed (a file without checksums, as llm.c writes them).
- ``llmc_read``: a reader as llm.c's ``gpt2_build_from_checkpoint`` (train_gpt2.c) is: it reads
  header ints 0..7 and the fp32/bf16 payload laid out by those sizes, and nothing else.
"""

from __future__ import annotations

from pathlib import Path

import llmpy
import numpy as np

FM = llmpy.formats
HEADER_INTS = FM["HEADER_INTS"]
HEADER_BYTES = 4 * HEADER_INTS
AT = FM["INTEGRITY_AT"]

_TABLE: list = []


def crc32c(data: bytes, crc: int = 0) -> int:
    """CRC32C of data continuing crc (0 to start), a byte at a time from a table made bit by bit."""
    if not _TABLE:
        for i in range(256):
            c = i
            for _ in range(8):
                c = (c >> 1) ^ 0x82F63B78 if c & 1 else c >> 1
            _TABLE.append(c)
    c = crc ^ 0xFFFFFFFF
    t = _TABLE
    for b in bytes(data):
        c = t[(c ^ b) & 0xFF] ^ (c >> 8)
    return c ^ 0xFFFFFFFF


def header(data: bytes) -> np.ndarray:
    return np.frombuffer(bytes(data[:HEADER_BYTES]), dtype="<i4").copy()


def header_checksum(h: np.ndarray) -> int:
    h = h.astype("<i4").copy()
    h[AT + 3] = 0
    return crc32c(h.tobytes())


def reseal(data: bytearray) -> bytearray:
    """Recomputes the header's checksum after an edit (the payload's stays what the writer stored)."""
    h = header(data)
    h[AT + 3] = np.uint32(header_checksum(h)).astype(np.int32)
    data[:HEADER_BYTES] = h.tobytes()
    return data


def strip(data: bytearray) -> bytearray:
    """Removes the integrity block: a file without checksums, as llm.c and older llmpy write them."""
    h = header(data)
    h[AT:AT + 4] = 0
    data[:HEADER_BYTES] = h.tobytes()
    return data


def check_block(path: Path) -> dict:
    """The integrity block of a file, checked against this oracle: what the writer must have put."""
    data = Path(path).read_bytes()
    h = header(data)
    has_block = h[AT] == FM["INTEGRITY_MAGIC"] and h[AT + 1] == FM["CHECKSUM_CRC32C"]
    assert has_block, f"{path}: no integrity block"
    payload, hcrc = int(np.uint32(h[AT + 2])), int(np.uint32(h[AT + 3]))
    assert payload == crc32c(data[HEADER_BYTES:]), f"{path}: payload checksum is not CRC32C of the payload"
    assert hcrc == header_checksum(h), f"{path}: header checksum is not CRC32C of the header"
    return {"checksum": payload, "header_checksum": hcrc}


def llmc_read(path: Path) -> tuple:
    """(config dict, {name: array}) the way llm.c reads a model file: header ints 0..7 only."""
    raw = Path(path).read_bytes()
    h = np.frombuffer(raw[:HEADER_BYTES], dtype="<i4")
    if h[0] != 20240326:
        raise ValueError("Bad magic model file")
    if h[1] not in (3, 5):
        raise ValueError("Bad version in model file")
    maxT, V, L, NH, C, Vp = (int(x) for x in h[2:8])
    shapes = [("wte", (Vp, C)), ("wpe", (maxT, C)), ("ln1w", (L, C)), ("ln1b", (L, C)),
              ("qkvw", (L, 3 * C, C)), ("qkvb", (L, 3 * C)), ("attprojw", (L, C, C)), ("attprojb", (L, C)),
              ("ln2w", (L, C)), ("ln2b", (L, C)), ("fcw", (L, 4 * C, C)), ("fcb", (L, 4 * C)),
              ("fcprojw", (L, C, 4 * C)), ("fcprojb", (L, C)), ("lnfw", (C,)), ("lnfb", (C,))]  # fmt: skip
    if h[1] == 3:
        payload = np.frombuffer(raw[HEADER_BYTES:], dtype="<f4")
    else:
        payload = (np.frombuffer(raw[HEADER_BYTES:], dtype="<u2").astype(np.uint32) << 16).view(np.float32)
    out, pos = {}, 0
    for name, shape in shapes:
        n = int(np.prod(shape))
        out[name] = payload[pos:pos + n].reshape(shape)
        pos += n
    if pos != payload.size:
        raise ValueError(f"payload holds {payload.size} values, the header implies {pos}")
    out["wte"] = out["wte"][:V]
    cfg = {"block_size": maxT, "vocab_size": V, "n_layer": L, "n_head": NH, "n_embd": C,
           "padded_vocab_size": Vp}
    return cfg, out
