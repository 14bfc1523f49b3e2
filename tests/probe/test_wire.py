"""The wire codec and the frame reassembler: round trips, and no input ever makes them raise."""

from __future__ import annotations

import zlib

from hypothesis import given
from hypothesis import strategies as st

from firmware_bridge.probe.reassembler import FrameReassembler
from firmware_bridge.probe.wire import (
    FRAME_MAGIC,
    HEADER_BYTES,
    INFO_BYTES,
    FrameFormat,
    FrameHeader,
    Geometry,
    ProbeInfo,
    ProbeState,
    ProbeStatus,
    decode_header,
    encode_frame,
    frame_header,
)

u16 = st.integers(0, 0xFFFF)
u32 = st.integers(0, 0xFFFF_FFFF)


@given(st.binary(max_size=80))
def test_header_parser_never_raises(data: bytes) -> None:
    header = decode_header(data)
    assert header is None or isinstance(header.is_consistent(), bool)


@given(u32, st.integers(0, 2**64 - 1), u16, u16, u16, st.integers(0, 255), st.integers(0, 255), u32, u32)
def test_header_round_trip(
    number: int,
    stamp: int,
    lines: int,
    samples: int,
    depth: int,
    fmt: int,
    reserved: int,
    length: int,
    crc: int,
) -> None:
    header = FrameHeader(number, stamp, lines, samples, depth, fmt, reserved, length, crc)
    encoded = header.encode()
    assert len(encoded) == HEADER_BYTES
    assert decode_header(encoded) == header


def _frame(number: int, lines: int = 3, samples: int = 7) -> bytes:
    data = bytes((number + i) % 256 for i in range(lines * samples * 2))
    return encode_frame(
        frame_header(number, number * 1000, lines, samples, 40, FrameFormat.RF_I16, data), data
    )


@given(st.lists(st.binary(max_size=300), max_size=20))
def test_reassembler_never_raises_on_any_bytes(chunks: list[bytes]) -> None:
    reassembler = FrameReassembler(max_frame_bytes=4096)
    for chunk in chunks:
        for frame in reassembler.feed(chunk):
            assert zlib.crc32(frame.data) == frame.header.data_crc32


@given(
    st.binary(max_size=200), st.binary(max_size=200), st.lists(st.integers(1, 97), min_size=1, max_size=30)
)
def test_frames_survive_garbage_and_any_chunking(before: bytes, between: bytes, cuts: list[int]) -> None:
    stream = before + _frame(1) + between + _frame(2)
    reassembler = FrameReassembler(max_frame_bytes=4096)
    numbers: list[int] = []
    pos = 0
    step = 0
    while pos < len(stream):
        cut = cuts[step % len(cuts)]
        numbers.extend(f.header.frame_number for f in reassembler.feed(stream[pos : pos + cut]))
        pos += cut
        step += 1
    assert numbers[-2:] == [1, 2]


def test_corrupt_and_dropped_frames_are_counted_apart() -> None:
    damaged = bytearray(_frame(2))
    damaged[HEADER_BYTES + 3] ^= 0xFF
    stream = _frame(1) + bytes(damaged) + _frame(3) + _frame(6)
    reassembler = FrameReassembler()
    frames = reassembler.feed(stream)
    assert [f.header.frame_number for f in frames] == [1, 3, 6]
    assert reassembler.stats.corrupt_frames == 1
    assert reassembler.stats.dropped_frames == 2  # 4 and 5; 2 was corrupt, not dropped


def test_a_truncated_frame_does_not_hide_the_next_one() -> None:
    truncated = _frame(1, lines=8, samples=64)[:-100]
    reassembler = FrameReassembler()
    frames = reassembler.feed(truncated + _frame(2, lines=8, samples=64) + _frame(3, lines=8, samples=64))
    assert [f.header.frame_number for f in frames] == [2, 3]
    assert reassembler.stats.corrupt_frames >= 1


def test_info_is_48_bytes_and_round_trips() -> None:
    info = ProbeInfo("L38", "SN123", 128, 5000, 0.3, Geometry.LINEAR)
    encoded = info.encode()
    assert len(encoded) == INFO_BYTES
    assert ProbeInfo.decode(encoded) == info
    assert ProbeInfo.decode(encoded[:47]) == info


def test_status_round_trips_negative_temperatures() -> None:
    status = ProbeStatus(ProbeState.FAULT, -4.5, 0x8001)
    assert ProbeStatus.decode(status.encode()) == status


# Magic bytes inside damaged data. An envelope image can hold b"USF1"; when the frame around it is rejected,
# the rescan finds it, and it must not count as another corrupt frame (nor hide a real gap from the drops).

_LINES, _SAMPLES = 8, 16
_DATA_BYTES = _LINES * _SAMPLES
_MAGIC_AT = st.lists(st.integers(0, _DATA_BYTES - 2 * HEADER_BYTES), max_size=3)
"""Where false magics go: far enough from the end that the false header lies in the data (zeros and magics),
which can never make a consistent header, even when the frame loses up to 32 bytes of its tail."""


def _envelope(number: int, magic_at: list[int] | tuple[int, ...] = ()) -> bytes:
    data = bytearray(_DATA_BYTES)
    for at in magic_at:
        data[at : at + len(FRAME_MAGIC)] = FRAME_MAGIC
    header = frame_header(number, number * 1000, _LINES, _SAMPLES, 40, FrameFormat.ENVELOPE_U8, bytes(data))
    return encode_frame(header, bytes(data))


def _with_bad_crc(frame: bytes) -> bytes:
    return frame[:-1] + bytes([frame[-1] ^ 0xFF])


def _with_bad_header(frame: bytes) -> bytes:
    """An unknown format: the header is inconsistent, its length still right."""
    return frame[:22] + b"\x7f" + frame[23:]


def test_magic_bytes_inside_a_frame_that_fails_its_crc_are_not_more_frames() -> None:
    bad = _with_bad_crc(_envelope(2, magic_at=(10, 40)))
    reassembler = FrameReassembler()
    frames = reassembler.feed(_envelope(1) + bad + _envelope(4))  # 3 never sent
    assert [f.header.frame_number for f in frames] == [1, 4]
    assert (reassembler.stats.corrupt_frames, reassembler.stats.dropped_frames) == (1, 1)


def test_magic_bytes_inside_a_frame_with_a_bad_header_are_not_more_frames() -> None:
    bad = _with_bad_header(_envelope(2, magic_at=(0, 33, 64)))
    reassembler = FrameReassembler()
    frames = reassembler.feed(_envelope(1) + bad + _envelope(4))
    assert [f.header.frame_number for f in frames] == [1, 4]
    assert (reassembler.stats.corrupt_frames, reassembler.stats.dropped_frames) == (1, 1)


def test_consecutive_corrupt_frames_with_magic_bytes_each_count_once() -> None:
    bad = [_with_bad_crc(_envelope(n, magic_at=(5, 50))) for n in (2, 3)]
    reassembler = FrameReassembler()
    reassembler.feed(_envelope(1) + bad[0] + bad[1] + _with_bad_header(_envelope(4, magic_at=(7,))) + _envelope(5))
    assert (reassembler.stats.corrupt_frames, reassembler.stats.dropped_frames) == (3, 0)


def test_a_magic_in_garbage_outside_any_frame_still_counts_as_corrupt() -> None:
    """It cannot be told from a frame whose header was hit; the gap it stands for is then not a drop."""
    reassembler = FrameReassembler()
    frames = reassembler.feed(_envelope(1) + FRAME_MAGIC + bytes(40) + _envelope(3))
    assert [f.header.frame_number for f in frames] == [1, 3]
    assert (reassembler.stats.corrupt_frames, reassembler.stats.dropped_frames) == (1, 0)


_KINDS = ("good", "bad_crc", "bad_header", "truncated", "dropped", "bad_magic")


@given(
    st.lists(st.tuples(st.sampled_from(_KINDS), _MAGIC_AT, st.integers(1, HEADER_BYTES)), max_size=12),
    st.lists(st.integers(1, 200), min_size=1, max_size=20),
)
def test_counters_add_up_with_magic_bytes_inside_damaged_frames(
    middle: list[tuple[str, list[int], int]], cuts: list[int]
) -> None:
    plan = [("good", [], 0), *middle, ("good", [], 0)]
    stream = b""
    expected_corrupt = 0
    previous_sent = ""
    for number, (kind, magic_at, lost) in enumerate(plan, start=1):
        if kind == "dropped":
            continue
        if kind == "bad_magic":
            magic_at = []  # a false magic in unrecognisable bytes is, rightly, a frame with a damaged header
        frame = _envelope(number, magic_at)
        if kind == "bad_crc":
            frame = _with_bad_crc(frame)
        elif kind == "bad_header":
            frame = _with_bad_header(frame)
        elif kind == "truncated":
            frame = frame[:-lost]
        elif kind == "bad_magic":
            frame = b"X" + frame[1:]
        stream += frame
        # A bad header inside the bytes a truncated frame claims cannot be told from a false magic: a drop.
        if kind in ("bad_crc", "truncated") or (kind == "bad_header" and previous_sent != "truncated"):
            expected_corrupt += 1
        previous_sent = kind

    reassembler = FrameReassembler(max_frame_bytes=4096)
    numbers: list[int] = []
    pos = step = 0
    while pos < len(stream):
        cut = cuts[step % len(cuts)]
        numbers.extend(f.header.frame_number for f in reassembler.feed(stream[pos : pos + cut]))
        pos += cut
        step += 1

    good = [n for n, (kind, _, _) in enumerate(plan, start=1) if kind == "good"]
    stats = reassembler.stats
    assert numbers == good
    assert stats.frames_ok + stats.corrupt_frames + stats.dropped_frames == len(plan)
    assert stats.corrupt_frames == expected_corrupt
