"""The RF generator's messages, declared once (ARCHITECTURE.md section 4, the wire contract).

Each message class carries its id, its ``CRC_EXTRA`` byte and a precompiled little-endian ``struct``.
Fields hold the integers that travel on the wire, named with their units (``tip_temp_centi_c`` is in
0.01 °C); properties give SI values. Keeping the wire integers as the stored truth makes encode → parse an
exact round trip and keeps unit conversion in one visible place.
"""

from __future__ import annotations

import enum
import struct
from dataclasses import dataclass, fields
from typing import ClassVar, Final, NamedTuple, Self

ALL_CHANNELS: Final = 0x0F
N_CHANNELS: Final = 4


class OutputMode(enum.IntEnum):
    RF_CONTINUOUS = 1
    RF_PULSED = 2
    RF_BIPOLAR = 3


class GeneratorState(enum.IntEnum):
    BOOT = 0
    IDLE = 1
    OUTPUT = 2
    FAULT = 3


class AckResult(enum.IntEnum):
    OK = 0
    REFUSED_LIMIT = 1
    REFUSED_STATE = 2
    BAD_PARAMETER = 3

    @classmethod
    def name_of(cls, result: int) -> str:
        """The result's name, or ``result N`` for a value this build does not know (a newer firmware's)."""
        try:
            return cls(result).name
        except ValueError:
            return f"result {result}"


class TelemetryFlag(enum.IntFlag):
    OUTPUT_ON = 0x01
    THERMOCOUPLE_OPEN = 0x02
    CHANNEL_FAULT = 0x04
    ELECTRODE_CONNECTED = 0x08


def tip_temperature_measured(flags: int) -> bool:
    """Whether a channel's tip temperature field is a reading, from the flags sent beside it: not with the
    thermocouple open (the generator then sends the field's full scale, 327.67 °C) nor with no electrode connected
    (0 °C). The one definition for everything that shows or sums a tip temperature, live (``rfa run``) or from
    the record (``rfa console``, ``rfa record report``), so that no reader takes either for a temperature."""
    return bool(flags & TelemetryFlag.ELECTRODE_CONNECTED) and not flags & TelemetryFlag.THERMOCOUPLE_OPEN


class SelfTestCheck(enum.IntFlag):
    """Bits of the ``SELF_TEST`` result bitmap. The contract leaves the bits to the device; both ends of
    this project share this definition (docs/contract.md), so the host can say *which* check failed."""

    POWER_STAGE = 0x01
    MEASUREMENT = 0x02
    WATCHDOG = 0x04
    CHANNEL_1 = 0x10
    CHANNEL_2 = 0x20
    CHANNEL_3 = 0x40
    CHANNEL_4 = 0x80

    @classmethod
    def required(cls, channels: tuple[int, ...] | list[int]) -> SelfTestCheck:
        """The checks a procedure on ``channels`` (1..4) needs to pass."""
        needed = cls.POWER_STAGE | cls.MEASUREMENT | cls.WATCHDOG
        for ch in channels:
            needed |= cls(cls.CHANNEL_1 << (ch - 1))
        return needed


class ElectrodeFlag(enum.IntFlag):
    COOLED = 0x01
    THERMOCOUPLE_FITTED = 0x02


@dataclass(frozen=True, slots=True)
class Message:
    """Base of every message: a flat message packs its fields in declaration order."""

    MSG_ID: ClassVar[int]
    CRC_EXTRA: ClassVar[int]
    STRUCT: ClassVar[struct.Struct]

    def pack_payload(self) -> bytes:
        try:
            return self.STRUCT.pack(*(getattr(self, f.name) for f in fields(self)))
        except struct.error as exc:
            raise ValueError(f"{type(self).__name__}: field out of range: {exc}") from exc

    @classmethod
    def unpack_payload(cls, payload: bytes | memoryview) -> Self:
        return cls(*cls.STRUCT.unpack(payload))


@dataclass(frozen=True, slots=True)
class Heartbeat(Message):
    MSG_ID: ClassVar[int] = 0x01
    CRC_EXTRA: ClassVar[int] = 0x32
    STRUCT: ClassVar[struct.Struct] = struct.Struct("<BI")
    state: int
    uptime_ms: int


@dataclass(frozen=True, slots=True)
class OutputOff(Message):
    """Turn output off on the channels in the mask; idempotent and always accepted."""

    MSG_ID: ClassVar[int] = 0x10
    CRC_EXTRA: ClassVar[int] = 0x5E
    STRUCT: ClassVar[struct.Struct] = struct.Struct("<B")
    channel_mask: int = ALL_CHANNELS


@dataclass(frozen=True, slots=True)
class SetOutput(Message):
    """Enable RF output. Setpoints are power in 0.01 W (continuous) or peak voltage in 0.01 V (pulsed)."""

    MSG_ID: ClassVar[int] = 0x11
    CRC_EXTRA: ClassVar[int] = 0x8C
    STRUCT: ClassVar[struct.Struct] = struct.Struct("<BB4HHH")
    channel_mask: int
    mode: int
    setpoints: tuple[int, int, int, int]
    pulse_width_us: int = 0
    pulse_rate_deci_hz: int = 0

    def pack_payload(self) -> bytes:
        try:
            return self.STRUCT.pack(
                self.channel_mask, self.mode, *self.setpoints, self.pulse_width_us, self.pulse_rate_deci_hz
            )
        except struct.error as exc:
            raise ValueError(f"SetOutput: field out of range: {exc}") from exc

    @classmethod
    def unpack_payload(cls, payload: bytes | memoryview) -> Self:
        mask, mode, s1, s2, s3, s4, width, rate = cls.STRUCT.unpack(payload)
        return cls(mask, mode, (s1, s2, s3, s4), width, rate)


@dataclass(frozen=True, slots=True)
class Stim(Message):
    """Sensory or motor stimulation; amplitude 0 stops it."""

    MSG_ID: ClassVar[int] = 0x12
    CRC_EXTRA: ClassVar[int] = 0x47
    STRUCT: ClassVar[struct.Struct] = struct.Struct("<BHHH")
    channel_mask: int
    frequency_deci_hz: int
    pulse_width_us: int
    amplitude_mv: int


@dataclass(frozen=True, slots=True)
class Pump(Message):
    MSG_ID: ClassVar[int] = 0x13
    CRC_EXTRA: ClassVar[int] = 0x2B
    STRUCT: ClassVar[struct.Struct] = struct.Struct("<BH")
    on: int
    flow_deci_ml_min: int


class ChannelTelemetry(NamedTuple):
    """One electrode channel's measurements, in wire units; properties give SI.

    A named tuple rather than a frozen dataclass like the messages: just as immutable, and four of them are
    built for every telemetry frame, 100 times a second, where a frozen dataclass costs four times as much
    (it sets each field through ``object.__setattr__``)."""

    tip_temp_centi_c: int
    impedance_deci_ohm: int
    voltage_centi_v: int
    current_deci_ma: int
    power_centi_w: int
    flags: int

    @property
    def tip_temp_c(self) -> float:
        return self.tip_temp_centi_c / 100.0

    @property
    def impedance_ohm(self) -> float:
        return self.impedance_deci_ohm / 10.0

    @property
    def voltage_v(self) -> float:
        return self.voltage_centi_v / 100.0

    @property
    def current_ma(self) -> float:
        return self.current_deci_ma / 10.0

    @property
    def power_w(self) -> float:
        return self.power_centi_w / 100.0

    @property
    def output_on(self) -> bool:
        return bool(self.flags & TelemetryFlag.OUTPUT_ON)

    @property
    def thermocouple_open(self) -> bool:
        return bool(self.flags & TelemetryFlag.THERMOCOUPLE_OPEN)

    @property
    def channel_fault(self) -> bool:
        return bool(self.flags & TelemetryFlag.CHANNEL_FAULT)

    @property
    def electrode_connected(self) -> bool:
        return bool(self.flags & TelemetryFlag.ELECTRODE_CONNECTED)

    @property
    def tip_measured(self) -> bool:
        """Whether :attr:`tip_temp_c` is a reading (:func:`tip_temperature_measured`)."""
        return tip_temperature_measured(self.flags)


@dataclass(frozen=True, slots=True)
class Telemetry(Message):
    """All four channels in one frame, at 100 Hz."""

    MSG_ID: ClassVar[int] = 0x20
    CRC_EXTRA: ClassVar[int] = 0xB1
    STRUCT: ClassVar[struct.Struct] = struct.Struct("<Q" + "hHHHHB" * N_CHANNELS)
    gen_time_us: int
    channels: tuple[ChannelTelemetry, ChannelTelemetry, ChannelTelemetry, ChannelTelemetry]

    def pack_payload(self) -> bytes:
        values: list[int] = [self.gen_time_us]
        for ch in self.channels:
            values += (ch.tip_temp_centi_c, ch.impedance_deci_ohm, ch.voltage_centi_v,
                       ch.current_deci_ma, ch.power_centi_w, ch.flags)
        try:
            return self.STRUCT.pack(*values)
        except struct.error as exc:
            raise ValueError(f"Telemetry: field out of range: {exc}") from exc

    @classmethod
    def unpack_payload(cls, payload: bytes | memoryview) -> Self:
        v = cls.STRUCT.unpack(payload)
        channel = ChannelTelemetry._make
        return cls(v[0], (channel(v[1:7]), channel(v[7:13]), channel(v[13:19]), channel(v[19:25])))


@dataclass(frozen=True, slots=True)
class Status(Message):
    MSG_ID: ClassVar[int] = 0x21
    CRC_EXTRA: ClassVar[int] = 0x6D
    STRUCT: ClassVar[struct.Struct] = struct.Struct("<BIH")
    state: int
    fault_bits: int
    firmware_version: int

    @property
    def firmware(self) -> str:
        return f"{self.firmware_version >> 8}.{self.firmware_version & 0xFF}"


@dataclass(frozen=True, slots=True)
class ElectrodeSlot:
    """The electrode on one channel: model id 0 means none connected."""

    model_id: int
    gauge: int
    tip_length_deci_mm: int
    flags: int

    @property
    def connected(self) -> bool:
        return self.model_id != 0

    @property
    def tip_length_mm(self) -> float:
        return self.tip_length_deci_mm / 10.0

    @property
    def cooled(self) -> bool:
        return bool(self.flags & ElectrodeFlag.COOLED)

    @property
    def thermocouple_fitted(self) -> bool:
        return bool(self.flags & ElectrodeFlag.THERMOCOUPLE_FITTED)


@dataclass(frozen=True, slots=True)
class ElectrodeInfo(Message):
    MSG_ID: ClassVar[int] = 0x22
    CRC_EXTRA: ClassVar[int] = 0x9A
    STRUCT: ClassVar[struct.Struct] = struct.Struct("<" + "HBHB" * N_CHANNELS)
    electrodes: tuple[ElectrodeSlot, ElectrodeSlot, ElectrodeSlot, ElectrodeSlot]

    def pack_payload(self) -> bytes:
        values: list[int] = []
        for s in self.electrodes:
            values += (s.model_id, s.gauge, s.tip_length_deci_mm, s.flags)
        try:
            return self.STRUCT.pack(*values)
        except struct.error as exc:
            raise ValueError(f"ElectrodeInfo: field out of range: {exc}") from exc

    @classmethod
    def unpack_payload(cls, payload: bytes | memoryview) -> Self:
        v = cls.STRUCT.unpack(payload)
        return cls((ElectrodeSlot(*v[0:4]), ElectrodeSlot(*v[4:8]),
                    ElectrodeSlot(*v[8:12]), ElectrodeSlot(*v[12:16])))


@dataclass(frozen=True, slots=True)
class Ack(Message):
    MSG_ID: ClassVar[int] = 0x30
    CRC_EXTRA: ClassVar[int] = 0x19
    STRUCT: ClassVar[struct.Struct] = struct.Struct("<BBB")
    acked_msg_id: int
    acked_seq: int
    result: int


@dataclass(frozen=True, slots=True)
class SelfTest(Message):
    """``phase`` 0 is a request (host → generator), 1 a result with the bitmap of checks passed."""

    MSG_ID: ClassVar[int] = 0x40
    CRC_EXTRA: ClassVar[int] = 0xE4
    STRUCT: ClassVar[struct.Struct] = struct.Struct("<BI")
    phase: int
    checks_passed: int = 0


MESSAGE_TYPES: Final[tuple[type[Message], ...]] = (
    Heartbeat, OutputOff, SetOutput, Stim, Pump, Telemetry, Status, ElectrodeInfo, Ack, SelfTest,
)
MESSAGES_BY_ID: Final[dict[int, type[Message]]] = {m.MSG_ID: m for m in MESSAGE_TYPES}
GENERATOR_TO_HOST: Final[dict[int, type[Message]]] = {
    m.MSG_ID: m for m in (Heartbeat, Telemetry, Status, ElectrodeInfo, Ack, SelfTest)
}
"""The messages the host reads: section 4's "gen→host" and "both" rows. The host parses with this table: a frame
with a command's id (echoed by a looped-back cable, or a generator defect) is an unknown id, counted and dropped,
never taken or recorded as something the generator said."""
