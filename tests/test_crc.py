"""CRC-16/MCRF4XX: the fast C-backed path and the scanner's table must equal the bit-by-bit definition."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from firmware_bridge.crc import CRC_INIT, CRC_TABLE, crc16_bitwise, crc16_mcrf4xx


def test_check_value_of_the_catalogue() -> None:
    # The CRC catalogue's check value for CRC-16/MCRF4XX over ASCII "123456789" is 0x6F91
    # (poly 0x1021 reflected, init 0xFFFF, no final xor): it pins the algorithm, not just our code.
    assert crc16_bitwise(b"123456789") == 0x6F91
    assert crc16_mcrf4xx(b"123456789") == 0x6F91


def test_empty_input_leaves_the_init_value() -> None:
    assert crc16_mcrf4xx(b"") == CRC_INIT


@given(st.binary(max_size=300), st.integers(0, 0xFFFF))
def test_fast_path_equals_the_definition(data: bytes, crc: int) -> None:
    assert crc16_mcrf4xx(data, crc) == crc16_bitwise(data, crc)


@given(st.binary(max_size=200), st.binary(max_size=200))
def test_accumulating_in_pieces_equals_one_pass(head: bytes, tail: bytes) -> None:
    # The frame CRC is accumulated over the header+payload and then over CRC_EXTRA.
    assert crc16_mcrf4xx(tail, crc16_mcrf4xx(head)) == crc16_mcrf4xx(head + tail)


@given(st.binary(min_size=1, max_size=100), st.data())
def test_any_single_bit_flip_changes_the_crc(data: bytes, draw: st.DataObject) -> None:
    i = draw.draw(st.integers(0, len(data) - 1))
    bit = draw.draw(st.integers(0, 7))
    flipped = bytearray(data)
    flipped[i] ^= 1 << bit
    assert crc16_mcrf4xx(bytes(flipped)) != crc16_mcrf4xx(data)


def test_table_holds_one_byte_of_the_definition() -> None:
    assert [CRC_TABLE[b] for b in range(256)] == [crc16_bitwise(bytes([b]), 0) for b in range(256)]


@given(st.binary(max_size=300), st.integers(0, 0xFFFF))
def test_table_driven_update_equals_the_definition(data: bytes, crc: int) -> None:
    """The byte step the compiled scanner uses (``_scan.scan``), written out here in Python."""
    for b in data:
        crc_ref = crc
        crc = (crc >> 8) ^ CRC_TABLE[(crc ^ b) & 0xFF]
        assert crc == crc16_bitwise(bytes([b]), crc_ref)
