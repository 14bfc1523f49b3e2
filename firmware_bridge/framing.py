"""Frames on the generator link: the encoder and the streaming parser (ARCHITECTURE.md section 4).

``STX LEN SEQ MSG payload CRC16``; the CRC covers bytes 1..3+LEN and then the message's ``CRC_EXTRA``.

The parser is an explicit state machine fed arbitrary chunks. It never raises on input: a bad CRC, a
length that does not match the id, or an unknown id discards only the STX byte and rescans from the
next byte, so a good frame hidden inside a bad one is never lost. Everything it drops is counted.

The state machine exists twice, with identical behaviour (a property test feeds both the same bytes):
a pure-Python loop for a control tick's few dozen bytes, where calling compiled code costs more than it
saves, and a numba kernel (``_scan.py``) for bulk input, which decodes into columns (:class:`FrameBatch`)
and builds message objects only for the frames someone actually looks at. Building frozen message
objects, not framing, is what costs most per frame in Python.
"""

from __future__ import annotations

import re
import typing
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, fields, is_dataclass
from typing import Any, Final, NamedTuple, overload

import numpy as np

from firmware_bridge import _scan
from firmware_bridge.crc import crc16_mcrf4xx
from firmware_bridge.messages import MESSAGES_BY_ID, Message

STX: Final = _scan.STX
HEADER_LEN: Final = _scan.HEADER_LEN
CRC_LEN: Final = _scan.CRC_LEN
KERNEL_FROM_BYTES: Final = 256
"""``feed`` hands input of at least this many bytes (pending ones included) to the compiled scanner.

Below it the pure-Python loop is as fast or faster: a 100 Hz tick brings about 60 bytes, and calling the
kernel plus building its columns costs more than the loop spends on one or two frames. Measured on the
development machine, both paths cost the same at about 250 bytes (60 bytes: 5 µs Python, 9 µs kernel);
``rfa bench`` reports the 60-byte feed latency."""
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
    duplicates: int = 0
    """Frames identical to the good frame just before them (same SEQ, message id and CRC): a link that repeated
    a frame. Dropped, as they carry nothing new, and not counted as the 255 frames a SEQ gap would make them."""
    bytes_discarded: int = 0

    def as_dict(self) -> dict[str, int]:
        return {f.name: getattr(self, f.name) for f in fields(self)}


# -- columns -----------------------------------------------------------------------------------------
_NUMPY_CODES: Final = {"B": "u1", "b": "i1", "H": "<u2", "h": "<i2", "I": "<u4", "i": "<i4", "Q": "<u8",
                       "q": "<i8"}


def record_dtype(cls: type[Message]) -> np.dtype[np.void]:
    """The packed numpy record layout of ``cls``'s payload, named like its fields.

    Derived from the message's own ``STRUCT`` and dataclass fields rather than written out again, so the
    wire format stays declared once: a tuple of ints becomes a sub-array (``SetOutput.setpoints``), a
    tuple of dataclasses a sub-array of nested records (``Telemetry.channels``)."""
    mismatch = f"{cls.__name__}: fields do not match STRUCT {cls.STRUCT.format!r}"
    try:
        codes = iter([_NUMPY_CODES[code] for count, code in re.findall(r"(\d*)(\w)", cls.STRUCT.format)
                      for _ in range(int(count or 1))])
        dtype = np.dtype(_record_fields(cls, codes))
    except (KeyError, StopIteration) as exc:  # a struct code numpy has no field for; too few codes
        raise TypeError(mismatch) from exc
    if dtype.itemsize != cls.STRUCT.size or next(codes, None) is not None:
        raise TypeError(mismatch)
    return dtype


def _record_fields(cls: type, codes: Iterator[str]) -> list[tuple[Any, ...]]:
    """numpy fields for the record class ``cls``, taking one struct code per wire value, in order."""
    hints = typing.get_type_hints(cls)
    out: list[tuple[Any, ...]] = []
    for name in _field_names(cls):
        hint = hints[name]
        if hint is int:
            out.append((name, next(codes)))
            continue
        items = typing.get_args(hint)
        if typing.get_origin(hint) is not tuple or not items or len(set(items)) != 1:
            raise TypeError(f"{cls.__name__}.{name}: no record layout for {hint}")
        item = items[0]
        if item is int:
            parts: list[Any] = [next(codes) for _ in items]
        elif _is_record(item):
            parts = [np.dtype(_record_fields(item, codes)) for _ in items]
        else:
            raise TypeError(f"{cls.__name__}.{name}: no record layout for {hint}")
        if len(set(parts)) != 1:
            raise TypeError(f"{cls.__name__}.{name}: elements differ on the wire")
        out.append((name, parts[0], (len(items),)))
    return out


def _is_record(item: object) -> bool:
    """A dataclass or a named tuple: a class whose fields, in declaration order, are the wire's values."""
    return isinstance(item, type) and (is_dataclass(item) or (issubclass(item, tuple) and hasattr(item, "_fields")))


def _field_names(cls: type) -> tuple[str, ...]:
    """The fields of a record class (see :func:`_is_record`), in declaration order."""
    if is_dataclass(cls):
        return tuple(f.name for f in fields(cls))
    names: tuple[str, ...] = getattr(cls, "_fields")  # noqa: B009 (``type`` declares no ``_fields`` for mypy)
    return names


class _Layout(NamedTuple):
    cls: type[Message]
    size: int
    dtype: np.dtype[np.void]


class FrameBatch(Sequence[Frame]):
    """The frames one bulk feed completed, decoded into columns; ``Frame`` objects only on demand.

    ``msg_ids`` and ``seqs`` hold one entry per frame in arrival order; :meth:`columns` gives one message
    type's payloads as a numpy record array (fields named as in the message class, wire units, arrival
    order). Every payload is validated and copied into its record when the batch is made; indexing or
    iterating builds the ``Frame(seq, msg)`` objects (all of them, once), exactly as the pure-Python
    loop would have built them, so a caller written for ``list[Frame]`` works unchanged."""

    __slots__ = ("_columns", "_frames", "_layouts", "_offsets", "_payload", "msg_ids", "seqs")

    def __init__(self, msg_ids: _scan.U8Array, seqs: _scan.U8Array, offsets: _scan.I64Array,
                 payload: _scan.U8Array, groups: _scan.I64Array, layouts: dict[int, _Layout]) -> None:
        self.msg_ids = msg_ids
        self.seqs = seqs
        self._offsets = offsets
        payload.flags.writeable = False  # the records are the decoded messages: values, like them
        self._payload = payload
        self._layouts = layouts
        self._columns: dict[type[Message], np.ndarray[Any, np.dtype[np.void]]] = {}
        for msg_id, start, count in groups.tolist():
            layout = layouts[msg_id]
            self._columns[layout.cls] = payload[start : start + count * layout.size].view(layout.dtype)
        self._frames: list[Frame] | None = None

    def columns(self, cls: type[Message]) -> np.ndarray[Any, np.dtype[np.void]]:
        """Every ``cls`` message of the batch as records, in arrival order (empty if there is none)."""
        found = self._columns.get(cls)
        if found is not None:
            return found
        return np.empty(0, dtype=self._layouts[cls.MSG_ID].dtype)

    def frames(self) -> list[Frame]:
        """The frames as objects, in arrival order (a new list each call)."""
        return list(self._materialised())

    def _materialised(self) -> list[Frame]:
        if self._frames is None:
            payload = self._payload.data
            layouts = self._layouts
            frames: list[Frame] = []
            for msg_id, seq, offset in zip(self.msg_ids.tolist(), self.seqs.tolist(), self._offsets.tolist(),
                                           strict=True):
                cls, size, _ = layouts[msg_id]
                frames.append(Frame(seq, cls.unpack_payload(payload[offset : offset + size])))
            self._frames = frames
        return self._frames

    def __len__(self) -> int:
        return len(self.msg_ids)

    @overload
    def __getitem__(self, index: int) -> Frame: ...

    @overload
    def __getitem__(self, index: slice) -> list[Frame]: ...

    def __getitem__(self, index: int | slice) -> Frame | list[Frame]:
        return self._materialised()[index]

    def __iter__(self) -> Iterator[Frame]:
        return iter(self._materialised())

    def __eq__(self, other: object) -> bool:
        """Equal to another batch, list or tuple holding the same frames in the same order."""
        if isinstance(other, FrameBatch):
            return self._materialised() == other._materialised()
        if isinstance(other, list | tuple):
            return self._materialised() == list(other)
        return NotImplemented

    def __repr__(self) -> str:
        return f"FrameBatch({len(self)} frames)"


# -- the parser --------------------------------------------------------------------------------------
class FrameParser:
    """Streaming parser: ``feed(chunk)`` returns the frames completed by that chunk, in order.

    ``feed_batch(chunk)`` does the same in columns, for bulk consumers. Building a parser compiles (or
    loads) the bulk kernel, so no compilation ever happens inside ``feed``. ``kernel_from_bytes`` picks
    the path by input size; both paths share the state, so a parser may switch between them freely."""

    def __init__(self, messages: dict[int, type[Message]] | None = None, *,
                 kernel_from_bytes: int = KERNEL_FROM_BYTES) -> None:
        self._messages = dict(MESSAGES_BY_ID if messages is None else messages)
        self._sizes = {mid: cls.STRUCT.size for mid, cls in self._messages.items()}
        self._extras = {mid: bytes((cls.CRC_EXTRA,)) for mid, cls in self._messages.items()}
        self._layouts = {mid: _Layout(cls, cls.STRUCT.size, record_dtype(cls)) for mid, cls in self._messages.items()}
        self._table = _scan.message_table({mid: (cls.STRUCT.size, cls.CRC_EXTRA)
                                           for mid, cls in self._messages.items()})
        self._kernel_from_bytes = kernel_from_bytes
        self._pending = b""
        self._last_key = -1
        """The last good frame's ``SEQ | id << 8 | CRC << 16``; -1 before any."""
        self.stats = ParserStats()
        _scan.warm_up()

    @property
    def pending_bytes(self) -> int:
        """Bytes held back waiting for the rest of a frame."""
        return len(self._pending)

    def feed(self, chunk: bytes | bytearray | memoryview) -> list[Frame]:
        data = self._pending + chunk if self._pending else bytes(chunk)
        if len(data) >= self._kernel_from_bytes:
            return self._scan(data).frames()
        return self._loop(data)

    def feed_batch(self, chunk: bytes | bytearray | memoryview) -> FrameBatch:
        """Like :meth:`feed`, always through the compiled kernel, with the frames decoded into columns."""
        return self._scan(self._pending + chunk if self._pending else bytes(chunk))

    def _scan(self, data: bytes) -> FrameBatch:
        (ids, seqs, offsets, payload, groups, consumed, self._last_key, crc_errors, length_errors, unknown_msg,
         seq_gaps, duplicates, discarded) = _scan.run_scan(data, self._table, self._last_key)
        self._pending = data[consumed:]
        stats = self.stats
        stats.frames_ok += len(ids)
        stats.crc_errors += crc_errors
        stats.length_errors += length_errors
        stats.unknown_msg += unknown_msg
        stats.seq_gaps += seq_gaps
        stats.duplicates += duplicates
        stats.bytes_discarded += discarded
        return FrameBatch(ids, seqs, offsets, payload, groups, self._layouts)

    def _loop(self, data: bytes) -> list[Frame]:
        """The state machine in Python; ``_scan.scan`` is the same machine compiled.

        It runs on every control tick, so the counters a good frame touches are kept in locals and added to
        :attr:`stats` once at the end (an attribute update per frame costs more than the framing test)."""
        out: list[Frame] = []
        stats = self.stats
        sizes = self._sizes
        extras = self._extras
        messages = self._messages
        last_key = self._last_key
        gaps = duplicates = discarded = 0
        pos = 0
        end = len(data)
        while True:
            start = data.find(STX, pos)
            if start < 0:
                discarded += end - pos
                pos = end
                break
            discarded += start - pos
            pos = start
            if end - pos < HEADER_LEN:
                break
            length = data[pos + 1]
            msg_id = data[pos + 3]
            expected = sizes.get(msg_id)
            if expected is None:
                stats.unknown_msg += 1
                discarded += 1
                pos += 1
                continue
            if length != expected:
                stats.length_errors += 1
                discarded += 1
                pos += 1
                continue
            frame_end = pos + HEADER_LEN + length + CRC_LEN
            if frame_end > end:
                break
            crc = crc16_mcrf4xx(data[pos + 1 : frame_end - CRC_LEN] + extras[msg_id])
            if crc != data[frame_end - 2] | (data[frame_end - 1] << 8):
                stats.crc_errors += 1
                discarded += 1
                pos += 1
                continue
            seq = data[pos + 2]
            key = seq | (msg_id << 8) | (crc << 16)
            if key == last_key:
                duplicates += 1
                pos = frame_end
                continue
            if last_key >= 0:
                gaps += (seq - (last_key & 0xFF) - 1) & 0xFF
            last_key = key
            out.append(Frame(seq, messages[msg_id].unpack_payload(data[pos + HEADER_LEN : frame_end - CRC_LEN])))
            pos = frame_end
        self._last_key = last_key
        stats.frames_ok += len(out)
        stats.seq_gaps += gaps
        stats.duplicates += duplicates
        stats.bytes_discarded += discarded
        self._pending = data[pos:]
        return out
