"""The ultrasound probe's USB wire contract (ARCHITECTURE.md section 5), declared once.

Both ends use this module: the driver decodes with it and the simulated probe encodes with it, so the
byte layout lives in exactly one place. Every ``struct`` is little-endian, as in the contract table.

One deviation from the contract's prose, written down in ``docs/imaging.md``: the contract says
``GET_INFO`` answers 48 bytes but its ``struct`` ``<16s16sHIHBx5x`` is 47 bytes long. The probe sends 48
(the struct and one trailing reserved byte); the decoder reads the struct from the first 47 and ignores
the rest, so a probe that sends exactly 47 is understood too.
"""

from __future__ import annotations

import struct
import zlib
from dataclasses import dataclass
from enum import IntEnum
from typing import Final

VENDOR_ID: Final = 0x1209
PRODUCT_ID: Final = 0x0001
INTERFACE: Final = 0
"""Vendor requests are addressed to interface 0 (``wIndex``)."""
BULK_IN_ENDPOINT: Final = 0x81
PACKET_BYTES: Final = 512
"""Bulk packets of a high-speed endpoint; the last packet of a frame is short."""

REQUEST_TYPE_IN: Final = 0xC1
"""Device-to-host, vendor, recipient interface."""
REQUEST_TYPE_OUT: Final = 0x41
"""Host-to-device, vendor, recipient interface."""


class Request(IntEnum):
    """``bRequest`` codes of the vendor control requests."""

    GET_INFO = 0x01
    SET_DEPTH = 0x10
    SET_GAIN = 0x11
    SET_FREQUENCY = 0x12
    FREEZE = 0x20
    UNFREEZE = 0x21
    GET_STATUS = 0x30


DEPTH_MIN_MM: Final = 20
DEPTH_MAX_MM: Final = 120
GAIN_MAX_DB: Final = 90.0
GAIN_STEP_DB: Final = 0.1
FREQUENCY_STEP_KHZ: Final = 10
"""``SET_FREQUENCY`` carries the transmit frequency in units of 10 kHz in a u16."""


class Geometry(IntEnum):
    LINEAR = 0
    CONVEX = 1


class ProbeState(IntEnum):
    IDLE = 0
    STREAMING = 1
    FAULT = 2


class FrameFormat(IntEnum):
    ENVELOPE_U8 = 0
    """Log-compressed envelope, one byte per sample, computed by the probe."""
    RF_I16 = 1
    """Raw beamformed RF, one signed 16-bit sample per sample."""


BYTES_PER_SAMPLE: Final = {FrameFormat.ENVELOPE_U8: 1, FrameFormat.RF_I16: 2}

INFO_STRUCT: Final = struct.Struct("<16s16sHIHBx5x")
INFO_BYTES: Final = 48
"""What the driver asks for and the probe sends: the 47-byte struct and one reserved byte."""
STATUS_STRUCT: Final = struct.Struct("<BhxI")
HEADER_STRUCT: Final = struct.Struct("<4sIQHHHBBII")
HEADER_BYTES: Final = HEADER_STRUCT.size
FRAME_MAGIC: Final = b"USF1"


@dataclass(frozen=True, slots=True)
class ProbeInfo:
    """The answer to ``GET_INFO``: what the probe is and how its array is laid out."""

    model: str
    serial: str
    element_count: int
    centre_frequency_khz: int
    pitch_or_radius_mm: float
    """Element pitch (linear) or array radius of curvature (convex), in mm (0.01 mm on the wire)."""
    geometry: Geometry

    def encode(self) -> bytes:
        packed = INFO_STRUCT.pack(
            self.model.encode("ascii")[:16],
            self.serial.encode("ascii")[:16],
            self.element_count,
            self.centre_frequency_khz,
            round(self.pitch_or_radius_mm * 100),
            int(self.geometry),
        )
        return packed + bytes(INFO_BYTES - len(packed))

    @classmethod
    def decode(cls, data: bytes) -> ProbeInfo:
        """Decode an answer; raises ``ValueError`` when it is too short or names an unknown geometry."""
        model, serial, elements, centre_khz, pitch, geometry = INFO_STRUCT.unpack_from(data)
        return cls(
            model=_text(model),
            serial=_text(serial),
            element_count=elements,
            centre_frequency_khz=centre_khz,
            pitch_or_radius_mm=pitch / 100.0,
            geometry=Geometry(geometry),
        )


@dataclass(frozen=True, slots=True)
class ProbeStatus:
    """The answer to ``GET_STATUS``."""

    state: ProbeState
    face_temp_c: float
    """Probe face (lens) temperature; 0.1 °C on the wire."""
    error_bits: int

    def encode(self) -> bytes:
        return STATUS_STRUCT.pack(int(self.state), round(self.face_temp_c * 10), self.error_bits)

    @classmethod
    def decode(cls, data: bytes) -> ProbeStatus:
        """Decode an answer; raises ``ValueError`` when it is too short or names an unknown state."""
        state, face_deci_c, error_bits = STATUS_STRUCT.unpack_from(data)
        return cls(state=ProbeState(state), face_temp_c=face_deci_c / 10.0, error_bits=error_bits)


@dataclass(frozen=True, slots=True)
class FrameHeader:
    """The 32-byte header in front of every frame on the bulk endpoint."""

    frame_number: int
    timestamp_us: int
    lines: int
    samples_per_line: int
    depth_mm: int
    format: int
    """A :class:`FrameFormat` value when valid; kept as the raw byte so any header can be represented."""
    reserved: int
    data_bytes: int
    data_crc32: int

    def encode(self) -> bytes:
        return HEADER_STRUCT.pack(
            FRAME_MAGIC,
            self.frame_number,
            self.timestamp_us,
            self.lines,
            self.samples_per_line,
            self.depth_mm,
            self.format,
            self.reserved,
            self.data_bytes,
            self.data_crc32,
        )

    def expected_data_bytes(self) -> int | None:
        """The data length the geometry and format imply, or ``None`` for an unknown format."""
        try:
            per_sample = BYTES_PER_SAMPLE[FrameFormat(self.format)]
        except ValueError:
            return None
        return self.lines * self.samples_per_line * per_sample

    def is_consistent(self) -> bool:
        """Whether the header describes a frame the driver can hold: known format, length matching."""
        return self.lines > 0 and self.samples_per_line > 0 and self.expected_data_bytes() == self.data_bytes


def decode_header(data: bytes | bytearray | memoryview) -> FrameHeader | None:
    """The header at the start of ``data``, or ``None`` when there are too few bytes or no magic.

    Never raises on any input: the frame reader feeds it whatever arrived on the wire.
    """
    if len(data) < HEADER_BYTES:
        return None
    magic, number, stamp, lines, samples, depth, fmt, reserved, length, crc = HEADER_STRUCT.unpack_from(data)
    if magic != FRAME_MAGIC:
        return None
    return FrameHeader(number, stamp, lines, samples, depth, fmt, reserved, length, crc)


def encode_frame(header: FrameHeader, data: bytes) -> bytes:
    """Header and data as the probe sends them (the caller sets length and CRC, see :func:`frame_header`)."""
    return header.encode() + data


def frame_header(
    frame_number: int,
    timestamp_us: int,
    lines: int,
    samples_per_line: int,
    depth_mm: int,
    fmt: FrameFormat,
    data: bytes,
) -> FrameHeader:
    """A header for ``data`` with its length and CRC-32 filled in."""
    return FrameHeader(
        frame_number=frame_number & 0xFFFF_FFFF,
        timestamp_us=timestamp_us,
        lines=lines,
        samples_per_line=samples_per_line,
        depth_mm=depth_mm,
        format=int(fmt),
        reserved=0,
        data_bytes=len(data),
        data_crc32=zlib.crc32(data),
    )


def _text(raw: bytes) -> str:
    return raw.split(b"\x00", 1)[0].decode("ascii", errors="replace")
