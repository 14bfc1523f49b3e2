"""The generator-link parser against pymavlink on the same noisy stream size, measured in one run.

Why a ratio: absolute frames/s depend on the machine and on what else it runs; pymavlink parsing a
MAVLink v2 stream of similar frames in the same process, moments apart, cancels most of that out.

Our stream: mostly TELEMETRY frames (52-byte payload, as at 100 Hz on the cart) with STATUS, HEARTBEAT
and ACK mixed in, 1 % of the frames with one bit flipped. pymavlink's stream: the same number of
RC_CHANNELS frames (42-byte payload, every field non-zero so MAVLink v2 does not trim it), 1 % corrupted
the same way. Both are fed in 4 KiB chunks, as a serial read would deliver them.

pymavlink is measured as installed, which (since 2.4.4x) computes its CRC with the Rust ``fastcrc``
extension; the ratio against pymavlink with its pure-Python CRC is reported beside it as context, since
that is the comparison a pure-Python parser was designed against.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable
from typing import Final

from benchmarks.result import BenchResult
from firmware_bridge.framing import FrameEncoder, FrameParser
from firmware_bridge.messages import Ack, ChannelTelemetry, Heartbeat, Message, Status, Telemetry

FULL_STREAM_BYTES: Final = 10 * 1024 * 1024
QUICK_STREAM_BYTES: Final = 512 * 1024
CORRUPT_FRACTION: Final = 0.01
CHUNK_BYTES: Final = 4096
TARGET_RATIO: Final = 10.0


def _our_message(rng: random.Random, n: int) -> Message:
    if n % 10 == 9:
        return rng.choice([Status(2, 0, 0x0100), Heartbeat(2, n), Ack(0x11, n & 0xFF, 0)])
    ch = tuple(ChannelTelemetry(rng.randrange(3700, 9000), rng.randrange(500, 3000), rng.randrange(0, 10000),
                                rng.randrange(0, 5000), rng.randrange(0, 5000), 9) for _ in range(4))
    return Telemetry(n * 10_000, (ch[0], ch[1], ch[2], ch[3]))


def _corrupt(frame: bytes, rng: random.Random) -> bytes:
    """Flip one bit after the STX, so the frame is damaged but its start is still found."""
    out = bytearray(frame)
    i = rng.randrange(1, len(out))
    out[i] ^= 1 << rng.randrange(8)
    return bytes(out)


def our_stream(size_bytes: int, seed: int = 1) -> tuple[bytes, int, int]:
    """``(stream, frames, corrupted frames)`` of about ``size_bytes``."""
    rng = random.Random(seed)
    encoder = FrameEncoder()
    parts: list[bytes] = []
    total = frames = corrupted = 0
    while total < size_bytes:
        _, frame = encoder.encode(_our_message(rng, frames))
        if rng.random() < CORRUPT_FRACTION:
            frame = _corrupt(frame, rng)
            corrupted += 1
        parts.append(frame)
        total += len(frame)
        frames += 1
    return b"".join(parts), frames, corrupted


def mavlink_stream(n_frames: int, seed: int = 2) -> bytes:
    """``n_frames`` MAVLink v2 RC_CHANNELS frames, 1 % with one bit flipped."""
    from pymavlink.dialects.v20 import common as mavlink

    rng = random.Random(seed)
    mav = mavlink.MAVLink(None, srcSystem=1, srcComponent=1)
    parts: list[bytes] = []
    for n in range(n_frames):
        chans = [rng.randrange(1000, 2000) for _ in range(18)]
        frame = bytes(mavlink.MAVLink_rc_channels_message(n + 1, 18, *chans, 200).pack(mav))
        if rng.random() < CORRUPT_FRACTION:
            frame = _corrupt(frame, rng)
        parts.append(frame)
    return b"".join(parts)


def _time_feed(feed: Callable[[bytes], object], stream: bytes) -> float:
    start = time.perf_counter()
    for i in range(0, len(stream), CHUNK_BYTES):
        feed(stream[i : i + CHUNK_BYTES])
    return time.perf_counter() - start


def run(quick: bool) -> list[BenchResult]:
    from pymavlink.dialects.v20 import common as mavlink

    stream, n_frames, corrupted = our_stream(QUICK_STREAM_BYTES if quick else FULL_STREAM_BYTES)
    parser = FrameParser()
    ours_s = _time_feed(parser.feed, stream)
    ours_fps = n_frames / ours_s

    mav_stream = mavlink_stream(n_frames)
    mav = mavlink.MAVLink(None)
    mav.robust_parsing = True
    mav_s = _time_feed(mav.parse_buffer, mav_stream)
    mav_fps = n_frames / mav_s

    # Context: pymavlink without its optional Rust CRC (``fastcrc``), i.e. pymavlink as pure Python.
    pure_crc, mavlink.x25crc = mavlink.x25crc, mavlink._x25crc_slow
    try:
        mav = mavlink.MAVLink(None)
        mav.robust_parsing = True
        mav_pure_fps = n_frames / _time_feed(mav.parse_buffer, mav_stream)
    finally:
        mavlink.x25crc = pure_crc

    ratio = ours_fps / mav_fps
    stats = parser.stats
    detail = (f"{len(stream) / 1e6:.1f} MB, {n_frames} frames, {corrupted} corrupted; "
              f"frames_ok {stats.frames_ok}, crc_errors {stats.crc_errors}, "
              f"length_errors {stats.length_errors}, unknown_msg {stats.unknown_msg}")
    return [
        BenchResult("parser", "frames_per_s", ours_fps, "frames/s", detail=detail),
        BenchResult("parser", "pymavlink_frames_per_s", mav_fps, "frames/s",
                    detail=f"{len(mav_stream) / 1e6:.1f} MB, {n_frames} RC_CHANNELS v2 frames"),
        BenchResult("parser", "frames_per_s_ratio_vs_pymavlink_pure_python_crc", ours_fps / mav_pure_fps, "x",
                    detail=f"pymavlink with its pure-Python CRC: {mav_pure_fps:.0f} frames/s"),
        BenchResult("parser", "frames_per_s_ratio_vs_pymavlink", ratio, "x", target=f">= {TARGET_RATIO:g}",
                    met=ratio >= TARGET_RATIO),
    ]
