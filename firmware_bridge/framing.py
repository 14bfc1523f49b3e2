"""Frames on the generator link: the encoder and the streaming parser (ARCHITECTURE.md section 4).

``STX LEN SEQ MSG payload CRC16``; the CRC covers bytes 1..3+LEN and then the message's ``CRC_EXTRA``.

The parser is an explicit state machine fed arbitrary chunks. It never raises on input: a bad CRC, a
length that does not match the id, or an unknown id discards only the STX byte and rescans from the
next byte, so a good frame hidden inside a bad one is never lost. Everything it drops is counted.
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Final, NamedTuple

from firmware_bridge.crc import crc16_mcrf4xx
from firmware_bridge.messages import MESSAGES_BY_ID, Message

STX: Final = 0xFD
HEADER_LEN: Final = 4
CRC_LEN: Final = 2
_STX_BYTE: Final = bytes([STX])


def encode_frame(msg: Message, seq: int) -> bytes:
    """The bytes of one frame carrying ``msg`` with sequence number ``seq`` (0..255)."""
    payload = msg.pack_payload()
    body = bytes((len(payload), seq & 0xFF, msg.MSG_ID)) + payload
    crc = crc16_mcrf4xx(body + bytes((msg.CRC_EXTRA,)))
    return _STX_BYTE + body + crc.to_bytes(2, "little")


class FrameEncoder:
    """Numbers outgoing frames with this direction's wrapping sequence counter."""

    def __init__(self) -> None:
        self._seq = 0

    @property
    def next_seq(self) -> int:
        return self._seq

    def encode(self, msg: Message) -> tuple[int, bytes]:
        """Return ``(seq, frame bytes)`` and advance the counter."""
        seq = self._seq
        self._seq = (seq + 1) & 0xFF
        return seq, encode_frame(msg, seq)


class Frame(NamedTuple):
    seq: int
    msg: Message


@dataclass
class ParserStats:
    """What the parser has seen; a malformed frame shows up here, never as an exception."""

    frames_ok: int = 0
    crc_errors: int = 0
    length_errors: int = 0
    unknown_msg: int = 0
    seq_gaps: int = 0
    bytes_discarded: int = 0

    def as_dict(self) -> dict[str, int]:
        return {f.name: getattr(self, f.name) for f in fields(self)}


class FrameParser:
    """Streaming parser: ``feed(chunk)`` returns the frames completed by that chunk, in order."""

    def __init__(self, messages: dict[int, type[Message]] | None = None) -> None:
        self._messages = dict(MESSAGES_BY_ID if messages is None else messages)
        self._sizes = {mid: cls.STRUCT.size for mid, cls in self._messages.items()}
        self._buf = bytearray()
        self._last_seq: int | None = None
        self.stats = ParserStats()

    @property
    def pending_bytes(self) -> int:
        """Bytes held back waiting for the rest of a frame."""
        return len(self._buf)

    def feed(self, chunk: bytes | bytearray | memoryview) -> list[Frame]:
        buf = self._buf
        buf += chunk
        out: list[Frame] = []
        stats = self.stats
        sizes = self._sizes
        messages = self._messages
        pos = 0
        end = len(buf)
        while True:
            start = buf.find(STX, pos)
            if start < 0:
                stats.bytes_discarded += end - pos
                pos = end
                break
            stats.bytes_discarded += start - pos
            pos = start
            if end - pos < HEADER_LEN:
                break
            length = buf[pos + 1]
            msg_id = buf[pos + 3]
            expected = sizes.get(msg_id)
            if expected is None:
                stats.unknown_msg += 1
                stats.bytes_discarded += 1
                pos += 1
                continue
            if length != expected:
                stats.length_errors += 1
                stats.bytes_discarded += 1
                pos += 1
                continue
            frame_end = pos + HEADER_LEN + length + CRC_LEN
            if frame_end > end:
                break
            cls = messages[msg_id]
            crc = crc16_mcrf4xx(buf[pos + 1 : frame_end - CRC_LEN] + bytes((cls.CRC_EXTRA,)))
            if crc != buf[frame_end - 2] | (buf[frame_end - 1] << 8):
                stats.crc_errors += 1
                stats.bytes_discarded += 1
                pos += 1
                continue
            seq = buf[pos + 2]
            if self._last_seq is not None:
                stats.seq_gaps += (seq - self._last_seq - 1) & 0xFF
            self._last_seq = seq
            stats.frames_ok += 1
            out.append(Frame(seq, cls.unpack_payload(bytes(buf[pos + HEADER_LEN : frame_end - CRC_LEN]))))
            pos = frame_end
        del buf[:pos]
        return out
