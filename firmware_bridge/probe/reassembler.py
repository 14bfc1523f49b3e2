"""Frames out of the bulk byte stream: an explicit resynchronising state machine with counters.

The bulk endpoint delivers a byte stream cut into 512-byte packets; a frame is a 32-byte header and its
data. The reassembler never trusts a byte it has not checked: it looks for the magic, checks that the
header is self-consistent (known format, data length equal to lines × samples × bytes per sample, not
larger than the driver's buffer), waits for the data, and checks the CRC-32. Anything that fails is
counted and only its first byte is dropped before rescanning, so a good frame that starts inside the
remains of a damaged one (a truncated frame swallows the next frame's header) is still found.

The rescan also finds every ``USF1`` that happens to lie in the rejected frame's data (an envelope image
can hold those four bytes). Those are the rejected frame's own bytes, not frames, and counting each as
another corrupt frame would also hide as many real gaps from ``dropped_frames``. So every rejected header
claims the bytes it spans (itself and the data length it declares), and a rejection that starts inside a
claim is counted only if its header is consistent: a false magic in data practically never carries a
known format and a length equal to lines × samples, a real frame does (the next frame inside a truncated
one, damaged too). A magic in garbage outside any claim still counts, as a frame whose header was hit
would. A good frame ends the claims: the rejected frame was truncated, and what follows is not its.

It never raises on input (the header parser is fuzzed in the tests) and holds no clock, so it is a pure
function of the bytes it has been fed.
"""

from __future__ import annotations

import zlib
from dataclasses import asdict, dataclass
from typing import Final

from firmware_bridge.probe.wire import FRAME_MAGIC, HEADER_BYTES, FrameHeader, decode_header

DEFAULT_MAX_FRAME_BYTES: Final = 4 * 1024 * 1024
"""Bigger than any frame the contract can describe sensibly (1024 lines × 2048 RF samples)."""
_SEQUENCE_MODULUS: Final = 1 << 32


@dataclass
class ReaderStats:
    frames_ok: int = 0
    corrupt_frames: int = 0
    """Frames recognised by their magic whose header was inconsistent or whose data failed the CRC; a magic
    inside the bytes of a frame already rejected is that frame's data, not another frame."""
    dropped_frames: int = 0
    """Frame numbers that never arrived (gaps), not counting the frames already counted as corrupt. A
    frame whose magic itself was damaged is never recognised as a frame, so it counts here."""
    bytes_discarded: int = 0
    sequence_restarts: int = 0
    """Frame numbers that went backwards (the probe restarted) without a reconnect."""

    def as_dict(self) -> dict[str, int]:
        return asdict(self)


@dataclass(frozen=True, slots=True)
class RawFrame:
    header: FrameHeader
    data: bytes


class FrameReassembler:
    """Feed it bulk chunks of any size; it returns the complete, verified frames."""

    def __init__(self, max_frame_bytes: int = DEFAULT_MAX_FRAME_BYTES) -> None:
        self.max_frame_bytes = max_frame_bytes
        self.stats = ReaderStats()
        self._buffer = bytearray()
        self._last_frame_number: int | None = None
        self._corrupt_since_ok = 0
        self._claimed_until = 0
        """Buffer index up to which the bytes belong to a rejected frame (since the last good one)."""

    @property
    def pending_bytes(self) -> int:
        return len(self._buffer)

    def restart(self) -> None:
        """Forget the partial frame and the frame numbering, e.g. after the probe was replugged."""
        self.stats.bytes_discarded += len(self._buffer)
        self._buffer.clear()
        self._last_frame_number = None
        self._corrupt_since_ok = 0
        self._claimed_until = 0

    def feed(self, chunk: bytes | bytearray | memoryview) -> list[RawFrame]:
        buffer = self._buffer
        buffer += chunk
        frames: list[RawFrame] = []
        pos = 0
        while True:
            start = buffer.find(FRAME_MAGIC, pos)
            if start < 0:
                # Keep a tail that could be the first bytes of a magic split across chunks.
                keep_from = max(pos, len(buffer) - (len(FRAME_MAGIC) - 1))
                self._discard(keep_from - pos)
                pos = keep_from
                break
            self._discard(start - pos)
            pos = start
            if len(buffer) - pos < HEADER_BYTES:
                break
            header = decode_header(memoryview(buffer)[pos : pos + HEADER_BYTES])
            if header is None or not header.is_consistent() or header.data_bytes > self.max_frame_bytes:
                # A damaged length may claim too much or too little; one the reader could hold is the best guess.
                claimed = header.data_bytes if header is not None and header.data_bytes <= self.max_frame_bytes else 0
                pos = self._reject(pos, pos + HEADER_BYTES + claimed, header_consistent=False)
                continue
            end = pos + HEADER_BYTES + header.data_bytes
            if len(buffer) < end:
                break
            data = bytes(buffer[pos + HEADER_BYTES : end])
            if zlib.crc32(data) != header.data_crc32:
                pos = self._reject(pos, end, header_consistent=True)
                continue
            self._count_sequence(header.frame_number)
            frames.append(RawFrame(header, data))
            pos = end
            self._claimed_until = 0
        del buffer[:pos]
        self._claimed_until = max(0, self._claimed_until - pos)
        return frames

    def _discard(self, count: int) -> None:
        self.stats.bytes_discarded += count

    def _reject(self, pos: int, claimed_end: int, *, header_consistent: bool) -> int:
        """Drop the first byte of the frame at ``pos``; count it unless it is a false start in a rejected frame."""
        if header_consistent or pos >= self._claimed_until:
            self.stats.corrupt_frames += 1
            self._corrupt_since_ok += 1
        self._claimed_until = max(self._claimed_until, claimed_end)
        self._discard(1)
        return pos + 1

    def _count_sequence(self, frame_number: int) -> None:
        self.stats.frames_ok += 1
        last, self._last_frame_number = self._last_frame_number, frame_number
        corrupt, self._corrupt_since_ok = self._corrupt_since_ok, 0

        if last is None:
            return
        gap = (frame_number - last - 1) % _SEQUENCE_MODULUS
        if gap >= _SEQUENCE_MODULUS // 2:
            self.stats.sequence_restarts += 1
        else:
            self.stats.dropped_frames += max(0, gap - corrupt)
