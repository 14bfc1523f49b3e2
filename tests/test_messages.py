"""The message codecs against the contract table of ARCHITECTURE.md section 4.

The hypothesis strategies here (one per message type, drawing every field over its whole wire range)
are shared with the framing tests.
"""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from firmware_bridge.messages import (
    MESSAGE_TYPES,
    MESSAGES_BY_ID,
    Ack,
    ChannelTelemetry,
    ElectrodeInfo,
    ElectrodeSlot,
    Heartbeat,
    Message,
    OutputOff,
    Pump,
    SelfTest,
    SetOutput,
    Status,
    Stim,
    Telemetry,
    TelemetryFlag,
    tip_temperature_measured,
)

u8 = st.integers(0, 0xFF)
u16 = st.integers(0, 0xFFFF)
u32 = st.integers(0, 0xFFFF_FFFF)
u64 = st.integers(0, 0xFFFF_FFFF_FFFF_FFFF)
i16 = st.integers(-0x8000, 0x7FFF)

channel_telemetry = st.builds(ChannelTelemetry, i16, u16, u16, u16, u16, u8)
electrode_slot = st.builds(ElectrodeSlot, u16, u8, u16, u8)

STRATEGIES: dict[type[Message], st.SearchStrategy[Message]] = {
    Heartbeat: st.builds(Heartbeat, u8, u32),
    OutputOff: st.builds(OutputOff, u8),
    SetOutput: st.builds(SetOutput, u8, u8, st.tuples(u16, u16, u16, u16), u16, u16),
    Stim: st.builds(Stim, u8, u16, u16, u16),
    Pump: st.builds(Pump, u8, u16),
    Telemetry: st.builds(Telemetry, u64, st.tuples(*[channel_telemetry] * 4)),
    Status: st.builds(Status, u8, u32, u16),
    ElectrodeInfo: st.builds(ElectrodeInfo, st.tuples(*[electrode_slot] * 4)),
    Ack: st.builds(Ack, u8, u8, u8),
    SelfTest: st.builds(SelfTest, u8, u32),
}
any_message: st.SearchStrategy[Message] = st.one_of(*STRATEGIES.values())

# The contract table: id, name, struct, CRC_EXTRA.
CONTRACT = [
    (0x01, Heartbeat, "<BI", 0x32),
    (0x10, OutputOff, "<B", 0x5E),
    (0x11, SetOutput, "<BB4HHH", 0x8C),
    (0x12, Stim, "<BHHH", 0x47),
    (0x13, Pump, "<BH", 0x2B),
    (0x20, Telemetry, "<Q" + "hHHHHB" * 4, 0xB1),
    (0x21, Status, "<BIH", 0x6D),
    (0x22, ElectrodeInfo, "<" + "HBHB" * 4, 0x9A),
    (0x30, Ack, "<BBB", 0x19),
    (0x40, SelfTest, "<BI", 0xE4),
]


def test_every_message_type_has_a_strategy() -> None:
    assert set(STRATEGIES) == set(MESSAGE_TYPES)


@pytest.mark.parametrize(("msg_id", "cls", "fmt", "crc_extra"), CONTRACT)
def test_message_table_matches_the_contract(
    msg_id: int, cls: type[Message], fmt: str, crc_extra: int
) -> None:
    assert (cls.MSG_ID, cls.STRUCT.format, cls.CRC_EXTRA) == (msg_id, fmt, crc_extra)
    assert MESSAGES_BY_ID[msg_id] is cls


def test_the_table_has_no_other_messages() -> None:
    assert sorted(MESSAGES_BY_ID) == [row[0] for row in CONTRACT]


@pytest.mark.parametrize("cls", MESSAGE_TYPES, ids=lambda c: c.__name__)
@given(data=st.data())
def test_pack_unpack_round_trips(cls: type[Message], data: st.DataObject) -> None:
    msg = data.draw(STRATEGIES[cls])
    payload = msg.pack_payload()
    assert len(payload) == cls.STRUCT.size
    assert cls.unpack_payload(payload) == msg


@pytest.mark.parametrize(
    "msg",
    [Heartbeat(256, 0), Ack(0x11, -1, 0), Pump(1, 0x1_0000),
     Telemetry(-1, (ChannelTelemetry(0, 0, 0, 0, 0, 0),) * 4)],
    ids=["u8-overflow", "negative-seq", "u16-overflow", "negative-u64"],
)
def test_out_of_range_field_is_a_value_error(msg: Message) -> None:
    with pytest.raises(ValueError, match="out of range"):
        msg.pack_payload()


def test_si_properties_convert_wire_units() -> None:
    ch = ChannelTelemetry(tip_temp_centi_c=-150, impedance_deci_ohm=2505, voltage_centi_v=3162,
                          current_deci_ma=1265, power_centi_w=1000, flags=0b1011)
    assert (ch.tip_temp_c, ch.impedance_ohm, ch.voltage_v, ch.current_ma, ch.power_w) == (
        -1.5, 250.5, 31.62, 126.5, 10.0)
    assert ch.output_on and ch.thermocouple_open and not ch.channel_fault and ch.electrode_connected
    slot = ElectrodeSlot(model_id=7, gauge=20, tip_length_deci_mm=105, flags=0b11)
    assert slot.connected and slot.cooled and slot.thermocouple_fitted and slot.tip_length_mm == 10.5
    assert Status(1, 0, 0x0102).firmware == "1.2"


@pytest.mark.parametrize(("flags", "measured"), [
    (TelemetryFlag.ELECTRODE_CONNECTED, True),
    (TelemetryFlag.ELECTRODE_CONNECTED | TelemetryFlag.OUTPUT_ON | TelemetryFlag.CHANNEL_FAULT, True),
    (TelemetryFlag.ELECTRODE_CONNECTED | TelemetryFlag.THERMOCOUPLE_OPEN, False),  # full scale, 327.67 °C
    (TelemetryFlag(0), False),  # no electrode: 0 °C
    (TelemetryFlag.THERMOCOUPLE_OPEN, False),
])
def test_a_tip_temperature_is_a_reading_only_with_an_electrode_and_a_closed_thermocouple(
    flags: TelemetryFlag, measured: bool
) -> None:
    """One rule for the session, the console and the report, asked of a message or of a record's flags alike."""
    assert tip_temperature_measured(int(flags)) is measured
    assert ChannelTelemetry(32767, 1800, 0, 0, 0, int(flags)).tip_measured is measured
