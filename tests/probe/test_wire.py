"""The wire codec and the frame reassembler: round trips, and no input ever makes them raise."""

from __future__ import annotations

import zlib

from hypothesis import given
from hypothesis import strategies as st

from firmware_bridge.probe.reassembler import FrameReassembler
from firmware_bridge.probe.wire import (
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
