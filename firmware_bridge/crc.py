"""CRC-16/MCRF4XX, the MAVLink X.25 checksum (ARCHITECTURE.md section 4).

Poly 0x1021 reflected (0x8408), init 0xFFFF, no final xor. The fast path runs in C: a reflected CRC
equals the bit-reversal of the non-reflected CRC (``binascii.crc_hqx``, poly 0x1021) over bit-reversed
bytes, and ``bytes.translate`` reverses the bytes at C speed. This one identity is what lets a
pure-Python parser keep up with a tick's worth of bytes cheaply. The compiled bulk scanner
(``_scan.py``) cannot call into C, so it uses the classic byte-at-a-time table, :data:`CRC_TABLE`.
:func:`crc16_bitwise` is the definition, kept as the reference the tests compare both against.
"""

from __future__ import annotations

import binascii
from array import array
from typing import Final

CRC_INIT: Final = 0xFFFF


def _reverse_bits(value: int, width: int) -> int:
    out = 0
    for _ in range(width):
        out = (out << 1) | (value & 1)
        value >>= 1
    return out


_REV8: Final = bytes(_reverse_bits(b, 8) for b in range(256))


_REV16: Final = array("H", ((_REV8[v & 0xFF] << 8) | _REV8[v >> 8] for v in range(1 << 16)))
"""Every 16-bit value bit-reversed: one lookup instead of a call per reversal (128 KiB)."""


def crc16_mcrf4xx(data: bytes | bytearray | memoryview, crc: int = CRC_INIT) -> int:
    """Accumulate ``data`` into ``crc`` and return the new 16-bit value."""
    return _REV16[binascii.crc_hqx(bytes(data).translate(_REV8), _REV16[crc])]


def crc16_bitwise(data: bytes | bytearray, crc: int = CRC_INIT) -> int:
    """The same CRC computed bit by bit, straight from the definition; the reference for tests."""
    for b in data:
        crc ^= b
        for _ in range(8):
            crc = (crc >> 1) ^ 0x8408 if crc & 1 else crc >> 1
    return crc & 0xFFFF


CRC_TABLE: Final[tuple[int, ...]] = tuple(crc16_bitwise(bytes([b]), 0) for b in range(256))
"""Byte-at-a-time table: ``crc = (crc >> 8) ^ CRC_TABLE[(crc ^ byte) & 0xFF]`` is one byte of the CRC."""
