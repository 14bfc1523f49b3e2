"""The wire codec and the frame reassembler: golden bytes from the contract, round trips, and no input ever
makes them raise."""

from __future__ import annotations

import struct
import zlib
from typing import Any

from hypothesis import given
from hypothesis import strategies as st

from firmware_bridge.clock import SimClock
from firmware_bridge.probe import UltrasoundProbe
from firmware_bridge.probe.reassembler import FrameReassembler, RawFrame
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
from sim.probe import SimProbe, SimProbeBackend

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


# -- golden bytes: written out by hand from ARCHITECTURE.md section 5, field by field, not from the code --

GOLDEN_INFO = bytes.fromhex(
    "43352d32" "000000000000000000000000"  # model 16s: "C5-2", NUL padded
    "534e30303432" "00000000000000000000"  # serial 16s: "SN0042", NUL padded
    "c000"  # element count H: 192
    "4c1d0000"  # centre frequency I: 7500 kHz
    "c611"  # pitch or radius H: 45.50 mm = 4550 (0.01 mm)
    "01"  # geometry B: convex
    "00" "0000000000"  # x, 5x: pad (the struct ends here, 47 bytes)
    "00"  # byte 48: the contract's "48 bytes"; docs/contract.md, GET_INFO length
)
GOLDEN_STATUS = bytes.fromhex(
    "01"  # state B: streaming
    "d3ff"  # probe face temperature h: -4.5 °C = -45 (0.1 °C)
    "00"  # x: pad
    "01000080"  # error bits I: 0x80000001
)
CHECK_DATA = b"123456789"
"""The CRC catalogue's check string; CRC-32 (IEEE 802.3, zlib's) of it is 0xCBF43926."""
GOLDEN_FRAME = bytes.fromhex(
    "55534631"  # magic 4s: "USF1"
    "04030201"  # frame number I: 0x01020304
    "ab89674523010000"  # timestamp Q: 0x0123456789AB µs
    "0100"  # lines H: 1
    "0900"  # samples per line H: 9
    "2800"  # depth H: 40 mm
    "00"  # format B: 0, envelope u8 (1 × 9 × 1 byte = 9 data bytes)
    "00"  # reserved B
    "09000000"  # data length I: 9
    "2639f4cb"  # CRC-32 of the data only I: 0xCBF43926
    "313233343536373839"  # data: "123456789"
)


def test_crc32_is_the_ieee_crc_with_its_check_value() -> None:
    assert zlib.crc32(CHECK_DATA) == 0xCBF43926


def test_get_info_golden_bytes() -> None:
    info = ProbeInfo("C5-2", "SN0042", 192, 7500, 45.5, Geometry.CONVEX)
    assert len(GOLDEN_INFO) == INFO_BYTES == 48
    assert info.encode() == GOLDEN_INFO
    assert ProbeInfo.decode(GOLDEN_INFO) == info
    assert ProbeInfo.decode(GOLDEN_INFO[:47]) == info  # a probe that sends the struct alone


def test_get_status_golden_bytes() -> None:
    status = ProbeStatus(ProbeState.STREAMING, -4.5, 0x8000_0001)
    assert len(GOLDEN_STATUS) == 8
    assert status.encode() == GOLDEN_STATUS
    assert ProbeStatus.decode(GOLDEN_STATUS) == status


def test_bulk_frame_golden_bytes() -> None:
    header = FrameHeader(0x01020304, 0x0123456789AB, 1, 9, 40, FrameFormat.ENVELOPE_U8, 0, 9, 0xCBF43926)
    assert GOLDEN_FRAME[:HEADER_BYTES] == header.encode() and HEADER_BYTES == 32
    assert frame_header(0x01020304, 0x0123456789AB, 1, 9, 40, FrameFormat.ENVELOPE_U8, CHECK_DATA) == header
    assert encode_frame(header, CHECK_DATA) == GOLDEN_FRAME
    assert decode_header(GOLDEN_FRAME) == header
    reassembler = FrameReassembler()
    assert reassembler.feed(GOLDEN_FRAME) == [RawFrame(header, CHECK_DATA)]
    assert reassembler.stats.frames_ok == 1


class _RecordingBackend(SimProbeBackend):
    """The simulated probe's backend, keeping each vendor request as its 8-byte USB setup packet."""

    def __init__(self, *probes: SimProbe) -> None:
        super().__init__(*probes)
        self.setups: list[bytes] = []

    def ctrl_transfer(
        self, dev_handle: Any, request_type: int, request: int, value: int, index: int, data: Any, timeout: int
    ) -> int:
        if request_type in (0xC1, 0x41):  # not pyusb's own standard requests (string descriptors)
            self.setups.append(struct.pack("<BBHHH", request_type, request, value, index, len(data) * data.itemsize))
        return super().ctrl_transfer(dev_handle, request_type, request, value, index, data, timeout)


def test_vendor_requests_golden_setup_packets(clock: SimClock, sim_probe: SimProbe) -> None:
    backend = _RecordingBackend(sim_probe)
    probe = UltrasoundProbe.open(clock, backend=backend)
    try:
        probe.set_depth_mm(40)
        probe.set_gain_db(30.5)
        probe.set_frequency_khz(5000)
        probe.unfreeze()
        probe.freeze()
        probe.read_status()
    finally:
        probe.close()
    # bmRequestType, bRequest, wValue (LE), wIndex = interface 0 (LE), wLength (LE)
    assert [setup.hex(" ") for setup in backend.setups] == [
        "c1 01 00 00 00 00 30 00",  # GET_INFO, in, 48 bytes
        "41 10 28 00 00 00 00 00",  # SET_DEPTH 40 mm
        "41 11 31 01 00 00 00 00",  # SET_GAIN 30.5 dB = 305 (0.1 dB)
        "41 12 f4 01 00 00 00 00",  # SET_FREQUENCY 5000 kHz = 500 (10 kHz)
        "41 21 00 00 00 00 00 00",  # UNFREEZE
        "41 20 00 00 00 00 00 00",  # FREEZE
        "c1 30 00 00 00 00 08 00",  # GET_STATUS, in, 8 bytes
    ]


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
