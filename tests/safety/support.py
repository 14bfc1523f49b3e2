"""Builders shared by the safety tests: healthy snapshots, telemetry frames and a gate on a memory link."""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any

from firmware_bridge.clock import SimClock
from firmware_bridge.framing import Frame, FrameEncoder, FrameParser
from firmware_bridge.generator import Received, RfGenerator, Unanswered
from firmware_bridge.messages import (
    Ack,
    AckResult,
    ChannelTelemetry,
    ElectrodeFlag,
    ElectrodeInfo,
    ElectrodeSlot,
    GeneratorState,
    Heartbeat,
    Message,
    OutputMode,
    SetOutput,
    Status,
    Telemetry,
    TelemetryFlag,
)
from firmware_bridge.transport import MemoryTransport, memory_pair
from safety.config import HARD_LIMITS, SafetyLimits
from safety.gate import OutputGate, SafetyEvent
from safety.inputs import EMPTY_TREND, ChannelTrend, CommandedChannel, ImagingStatus, SafetyInputs
from safety.interlocks import SafetyRules
from safety.plan import (
    Electrode,
    Lesion,
    LesionMode,
    LesionPlan,
    PulsedSettings,
    default_genicular_plan,
)

# Zero, so that ``NOW - (NOW - age) == age`` exactly and boundary ages land exactly on their limits.
NOW = 0.0
CONNECTED = int(TelemetryFlag.ELECTRODE_CONNECTED)
ON = int(TelemetryFlag.OUTPUT_ON | TelemetryFlag.ELECTRODE_CONNECTED)


def channel(
    temp_c: float = 37.0,
    impedance_ohm: float = 250.0,
    voltage_v: float = 0.0,
    current_ma: float = 0.0,
    power_w: float = 0.0,
    flags: int = CONNECTED,
) -> ChannelTelemetry:
    return ChannelTelemetry(
        round(temp_c * 100),
        round(impedance_ohm * 10),
        round(voltage_v * 100),
        round(current_ma * 10),
        round(power_w * 100),
        flags,
    )


def telemetry(channels: dict[int, ChannelTelemetry] | None = None, gen_time_us: int = 1_000_000) -> Telemetry:
    """A frame with healthy idle channels, overridden by ``{channel: ChannelTelemetry}``."""
    chans = [channel() for _ in range(4)]
    for ch, value in (channels or {}).items():
        chans[ch - 1] = value
    return Telemetry(gen_time_us, (chans[0], chans[1], chans[2], chans[3]))


def electrodes(
    gauge: int = 18, tip_mm: float = 10.0, cooled: bool = False, fitted: bool = True
) -> ElectrodeInfo:
    flags = (ElectrodeFlag.COOLED if cooled else 0) | (ElectrodeFlag.THERMOCOUPLE_FITTED if fitted else 0)
    slot = ElectrodeSlot(7, gauge, round(tip_mm * 10), int(flags))
    return ElectrodeInfo((slot, slot, slot, slot))


def pulsed_plan() -> LesionPlan:
    return LesionPlan(
        name="pulsed",
        imaging_required=False,
        lesions=(
            Lesion(
                channel=1,
                electrode=Electrode(gauge=18, active_tip_mm=10.0),
                mode=LesionMode.PULSED,
                set_temp_c=42.0,
                ramp_rate_c_per_s=1.0,
                lesion_time_s=120.0,
                power_cap_w=10.0,
                impedance_min_ohm=60.0,
                impedance_max_ohm=800.0,
                pulsed=PulsedSettings(pulse_width_us=20_000, rate_hz=2.0, max_voltage_v=45.0),
            ),
        ),
    )


def bipolar_plan() -> LesionPlan:
    return LesionPlan(
        name="bipolar",
        imaging_required=False,
        lesions=(
            Lesion(
                channel=1,
                electrode=Electrode(gauge=18, active_tip_mm=10.0),
                mode=LesionMode.BIPOLAR,
                set_temp_c=80.0,
                ramp_rate_c_per_s=2.0,
                lesion_time_s=90.0,
                power_cap_w=25.0,
                impedance_min_ohm=60.0,
                impedance_max_ohm=800.0,
            ),
        ),
    )


RULES = SafetyRules.compile(default_genicular_plan(), HARD_LIMITS)
PULSED_RULES = SafetyRules.compile(pulsed_plan(), HARD_LIMITS)
LIVE_IMAGING = ImagingStatus(last_frame_at=NOW, probe_face_temp_c=30.0, probe_face_read_at=NOW)


def inputs(
    telemetry_msg: Telemetry | None = None,
    *,
    now: float = NOW,
    telemetry_age_s: float = 0.0,
    status: Status | None = None,
    status_age_s: float = 0.0,
    heartbeat_age_s: float | None = 0.0,
    electrode_info: ElectrodeInfo | None = None,
    commanded: dict[int, CommandedChannel] | None = None,
    rf_on_s: dict[int, float] | None = None,
    trends: dict[int, ChannelTrend] | None = None,
    loop_tick_age_s: float | None = 0.01,
    operator_stop: bool = False,
    imaging: ImagingStatus | None = LIVE_IMAGING,
    no_telemetry: bool = False,
    unanswered_age_s: float | None = None,
    electrodes_age_s: float = 0.0,
) -> SafetyInputs:
    """A healthy snapshot at ``now`` (everything fresh, electrodes as planned), with overrides."""
    tele = None if no_telemetry else Received(telemetry_msg or telemetry(), 0, now - telemetry_age_s)
    cmds = [CommandedChannel(on=False, since=NOW - 1000.0) for _ in range(4)]
    for ch, value in (commanded or {}).items():
        cmds[ch - 1] = value
    rf = [0.0] * 4
    for ch, seconds in (rf_on_s or {}).items():
        rf[ch - 1] = seconds
    trend_list = [EMPTY_TREND] * 4
    for ch, trend in (trends or {}).items():
        trend_list[ch - 1] = trend
    return SafetyInputs(
        telemetry=tele,
        status=Received(status or Status(int(GeneratorState.IDLE), 0, 0x0102), 0, now - status_age_s),
        generator_heartbeat_at=None if heartbeat_age_s is None else now - heartbeat_age_s,
        electrodes=Received(electrode_info or electrodes(), 0, now - electrodes_age_s),
        commanded=tuple(cmds),
        rf_on_s=tuple(rf),
        trends=tuple(trend_list),
        loop_tick_at=None if loop_tick_age_s is None else now - loop_tick_age_s,
        operator_stop=operator_stop,
        imaging=imaging,
        unanswered=None if unanswered_age_s is None else Unanswered(SetOutput.MSG_ID, 7, now - unanswered_age_s),
    )


def on(
    setpoint: float = 20.0,
    since: float = NOW - 10,
    mode: OutputMode = OutputMode.RF_CONTINUOUS,
    **kwargs: Any,
) -> CommandedChannel:
    """A channel the gate has commanded on."""
    return CommandedChannel(on=True, since=since, mode=mode, setpoint=setpoint, **kwargs)


@dataclass
class Rig:
    """A real driver on a memory pair, the device end decoded with FrameParser, and a gate on SimClock."""

    plan: LesionPlan = field(default_factory=default_genicular_plan)
    limits: SafetyLimits = HARD_LIMITS
    clock: SimClock = field(default_factory=lambda: SimClock(NOW))
    events: list[SafetyEvent] = field(default_factory=list)

    def __post_init__(self) -> None:
        host, self.device = memory_pair("gate")
        self.host: MemoryTransport = host
        self.driver = RfGenerator(host, self.clock)
        self.parser = FrameParser()
        self.encoder = FrameEncoder()
        self.gen_time_us = 1_000_000
        self.written: list[Message] = []
        self._unread: list[Message] = []
        self._unanswered: list[Frame] = []
        self.gate = OutputGate(self.driver, self.plan, self.limits, self.clock, self._record)
        self.wire()

    def _record(self, event: SafetyEvent) -> None:
        self.events.append(event)

    def _arrived(self) -> None:
        """Decode what the host wrote: commands for :meth:`wire` and for the generator to answer."""
        frames = [f for f in self.parser.feed(self.device.read()) if not isinstance(f.msg, Heartbeat)]
        self.written += [f.msg for f in frames]
        self._unread += [f.msg for f in frames]
        self._unanswered += frames

    def wire(self) -> list[Message]:
        """Commands the host wrote since the last call, decoded at the device end, in order."""
        self._arrived()
        msgs, self._unread = self._unread, []
        return msgs

    def send(self, msg: Message) -> None:
        self.device.write(self.encoder.encode(msg)[1])

    def feed(
        self,
        tele: Telemetry | None = None,
        *,
        status: Status | None = None,
        heartbeat: bool = True,
        electrode_info: ElectrodeInfo | None = None,
        gen_step_us: int = 10_000,
        answer: bool = True,
        result: AckResult = AckResult.OK,
    ) -> None:
        """The generator's side of one tick (an ACK with ``result`` for each command since the last, unless not
        ``answer``: then they are lost;
        telemetry ``gen_step_us`` on in its own clock: 10 ms unless a test freezes or resets that clock, status,
        heartbeat); then the host polls."""
        self._reply(result if answer else None)
        self.gen_time_us += gen_step_us
        if tele is not None:
            self.send(replace(tele, gen_time_us=self.gen_time_us))
        self.send(status or Status(int(GeneratorState.IDLE), 0, 0x0102))
        if heartbeat:
            self.send(Heartbeat(int(GeneratorState.IDLE), self.gen_time_us // 1000))
        self.send(electrode_info or electrodes())
        self.driver.poll()

    def lose(self, seq: int) -> None:
        """The generator's ACK of the command sent with ``seq`` is lost on the wire (the others still come)."""
        self._arrived()
        self._unanswered = [frame for frame in self._unanswered if frame.seq != seq]

    def answer(self) -> None:
        """The generator's ACKs alone, for each command since the last feed or answer; then the host polls."""
        self._reply(AckResult.OK)
        self.driver.poll()

    def _reply(self, result: AckResult | None) -> None:
        """An ACK with ``result`` for each command written since the last reply; None: they are lost (a generator
        not taking commands)."""
        self._arrived()
        if result is not None:
            for frame in self._unanswered:
                self.send(Ack(frame.msg.MSG_ID, frame.seq, int(result)))
        self._unanswered = []

    def healthy_tick(
        self, chans: dict[int, ChannelTelemetry] | None = None, imaging: ImagingStatus | None = None
    ) -> None:
        """Advance 10 ms, feed telemetry (healthy unless ``chans`` overrides channels) and evaluate."""
        self.clock.advance(0.01)
        self.feed(telemetry(chans))
        self.gate.evaluate(imaging or self.imaging())

    def energise(self) -> None:
        """Two healthy ticks, then channel 1 on at 10 W and one healthy tick under power; what the host wrote read."""
        self.healthy_tick()
        self.healthy_tick()
        assert self.gate.request_output({1: 10.0}, self.imaging())
        self.healthy_tick({1: channel(power_w=10.0, flags=ON)})
        assert self.gate.commanded[0].on and self.gate.latched == ()
        self.wire()

    def imaging(self) -> ImagingStatus:
        """Live guidance now: a fresh frame and a fresh probe-face reading."""
        return ImagingStatus(self.clock.now(), 30.0, probe_face_read_at=self.clock.now())
