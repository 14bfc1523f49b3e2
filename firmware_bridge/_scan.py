"""The compiled bulk frame scanner behind ``FrameParser`` (ARCHITECTURE.md section 4), built with numba.

Why compiled: a Python loop pays one to two microseconds per frame for framing alone, before building
any object, and bulk consumers of the link (the issue 3 benchmark: >= 10x pymavlink) need far less. The kernel walks the
buffer with exactly the state machine of the pure-Python loop in ``framing.py`` (same checks, same
order, same counters) and, instead of building objects, copies each good frame's payload into one
buffer grouped by message type, so that each type's payloads read as one numpy record array.

Compiling is slow (seconds the first time, then a cache load), so it happens in :func:`warm_up`, which
``FrameParser`` calls when it is built: never in ``feed`` on the control path.
"""

from __future__ import annotations

from typing import Final

import numpy as np
import numpy.typing as npt
from numba import njit

from firmware_bridge.crc import CRC_INIT, CRC_TABLE

STX: Final = 0xFD
HEADER_LEN: Final = 4
CRC_LEN: Final = 2
UNKNOWN_ID: Final = -1
"""``table`` entry of an id that is not in the message table."""

_CRC_TABLE: Final = np.array(CRC_TABLE, dtype=np.uint16)

U8Array = npt.NDArray[np.uint8]
I64Array = npt.NDArray[np.int64]
ScanResult = tuple[U8Array, U8Array, I64Array, U8Array, I64Array, int, int, int, int, int, int, int, int]


def message_table(sizes_and_extras: dict[int, tuple[int, int]]) -> I64Array:
    """The kernel's view of the message table: per id, ``payload size | CRC_EXTRA << 8``, or -1."""
    table = np.full(256, UNKNOWN_ID, dtype=np.int64)
    for msg_id, (size, extra) in sizes_and_extras.items():
        table[msg_id] = size | (extra << 8)
    return table


@njit(cache=True)
def scan(buf: U8Array, table: I64Array, last_key: int) -> ScanResult:
    """Frame everything complete in ``buf``; see :func:`run_scan` for what comes back.

    Pass 1 is the state machine; pass 2 copies the payloads, grouped by message id in id order (each
    group in arrival order), so each group is one contiguous run of packed records."""
    n = buf.size
    cap = n // (HEADER_LEN + CRC_LEN) + 1
    starts = np.empty(cap, np.int64)
    ids = np.empty(cap, np.uint8)
    seqs = np.empty(cap, np.uint8)
    per_id = np.zeros(256, np.int64)
    n_frames = crc_errors = length_errors = unknown_msg = seq_gaps = duplicates = discarded = 0
    pos = 0
    while pos < n:
        if buf[pos] != STX:
            discarded += 1
            pos += 1
            continue
        if n - pos < HEADER_LEN:
            break
        msg_id = int(buf[pos + 3])
        entry = table[msg_id]
        if entry == UNKNOWN_ID:
            unknown_msg += 1
            discarded += 1
            pos += 1
            continue
        size = entry & 0xFF
        if int(buf[pos + 1]) != size:
            length_errors += 1
            discarded += 1
            pos += 1
            continue
        frame_end = pos + HEADER_LEN + size + CRC_LEN
        if frame_end > n:
            break
        crc = CRC_INIT
        for i in range(pos + 1, frame_end - CRC_LEN):
            crc = (crc >> 8) ^ int(_CRC_TABLE[(crc ^ int(buf[i])) & 0xFF])
        crc = (crc >> 8) ^ int(_CRC_TABLE[(crc ^ (entry >> 8)) & 0xFF])
        if crc != int(buf[frame_end - 2]) | (int(buf[frame_end - 1]) << 8):
            crc_errors += 1
            discarded += 1
            pos += 1
            continue
        seq = int(buf[pos + 2])
        key = seq | (msg_id << 8) | (crc << 16)
        if key == last_key:
            duplicates += 1
            pos = frame_end
            continue
        if last_key >= 0:
            seq_gaps += (seq - (last_key & 0xFF) - 1) & 0xFF
        last_key = key
        starts[n_frames] = pos + HEADER_LEN
        ids[n_frames] = msg_id
        seqs[n_frames] = seq
        per_id[msg_id] += 1
        n_frames += 1
        pos = frame_end

    groups = np.empty((np.count_nonzero(per_id), 3), np.int64)
    cursor = np.empty(256, np.int64)
    total = 0
    g = 0
    for msg_id in range(256):
        cursor[msg_id] = total
        if per_id[msg_id]:
            groups[g, 0] = msg_id
            groups[g, 1] = total
            groups[g, 2] = per_id[msg_id]
            g += 1
            total += per_id[msg_id] * (table[msg_id] & 0xFF)
    payload = np.empty(total, np.uint8)
    offsets = np.empty(n_frames, np.int64)
    for f in range(n_frames):
        msg_id = int(ids[f])
        size = table[msg_id] & 0xFF
        dst = cursor[msg_id]
        payload[dst : dst + size] = buf[starts[f] : starts[f] + size]
        offsets[f] = dst
        cursor[msg_id] = dst + size
    return (ids[:n_frames], seqs[:n_frames], offsets, payload, groups, pos, last_key,
            crc_errors, length_errors, unknown_msg, seq_gaps, duplicates, discarded)


def run_scan(data: bytes, table: I64Array, last_key: int) -> ScanResult:
    """Scan ``data`` (the parser's pending bytes plus the new chunk); ``last_key`` is the last good frame's
    ``SEQ | id << 8 | CRC << 16`` (-1 before any): a frame with the same key is a repeat of it, dropped.

    Returns, per good frame in order, its message id, SEQ and the offset of its payload in the
    returned payload buffer; the payload buffer; one row ``(message id, byte offset, frames)`` per
    message id present, for its contiguous group of payloads; then the bytes consumed (the rest is an
    incomplete frame to keep), the last good frame's key, and the increments of ``crc_errors``,
    ``length_errors``, ``unknown_msg``, ``seq_gaps``, ``duplicates`` and ``bytes_discarded``. ``data`` is always
    ``bytes``, so the kernel only ever sees one argument type and never recompiles after
    :func:`warm_up`."""
    result: ScanResult = scan(np.frombuffer(data, dtype=np.uint8), table, last_key)
    return result


def warm_up() -> None:
    """Compile (or load from the on-disk cache) the kernel for the only argument types it is given."""
    run_scan(bytes([STX, 0, 0, 0, 0, 0]), message_table({0: (0, 0)}), -1)

