"""A hostile control loop: hypothesis drives the gate with arbitrary interleavings and checks the wire.

The gate runs on a real :class:`RfGenerator` over a memory pair with ``SimClock``; the device end decodes
every frame the host writes with :class:`FrameParser`, so the invariants are checked on the wire, not on
the gate's own account of itself. Two machines share every rule and invariant: :class:`GateMachine` on the
default plan (three monopolar lesions), :class:`MixedModeGateMachine` on plans with a bipolar pair, pulsed-RF
lesions and monopolar ones side by side. What the wire may carry is judged from the plan and the limits
(:class:`PlanOracle`, which restates docs/safety.md), not from the gate's compiled rules:

* output is never on (by the wire) while a latch covers the channel, and never while a condition holds
  at the moment of the gate's last decision; neither is a stimulus;
* every trip produces exactly one ``OUTPUT_OFF``, covering the trip's scope (its channel and a bipolar partner,
  or all four), before any other command, and it is on the wire by the time the trip is recorded;
* an acknowledgement never clears a latch whose condition still holds;
* nothing but the plan's channels, modes, pairings, waveforms and capped setpoints is ever enabled: a
  ``SET_OUTPUT`` drives whole lesions of one waveform, a bipolar pair's setpoint in its lead's slot (a pulsed
  lesion's peak voltage never above its plan and limit maximum), and a bipolar pair is never on by one side;
* RF and stimulation are never on together, and one channel at a time stimulates, on its own channel (a
  bipolar partner's too);
* at each decision no channel is on whose newest reading is beyond its plan: a tip over its trip level (a
  pulsed one over 45 °C), a pulsed peak voltage over its maximum, a pair whose two sides' power together is over
  the pair's cap (which is over_power on the lead);
* the conditions a request is judged by equal a fresh evaluation of every interlock, whatever happened since
  the tick: the gate reuses its tick's evaluation when only time has moved (``OutputGate._conditions``,
  ``safety.interlocks.reevaluate``).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import replace

from hypothesis import event, note, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, precondition, rule

from firmware_bridge.messages import (
    ALL_CHANNELS,
    AckResult,
    ChannelTelemetry,
    GeneratorState,
    Message,
    OutputOff,
    SetOutput,
    Status,
    Stim,
    TelemetryFlag,
)
from safety import limits as hard
from safety.config import SafetyLimits
from safety.gate import EventKind, SafetyEvent, StimKind
from safety.inputs import ImagingStatus
from safety.interlocks import InterlockId, Trip, evaluate_interlocks
from safety.plan import Electrode, Lesion, LesionMode, LesionPlan, PulsedSettings, default_genicular_plan
from safety.watchdog import Watchdog
from tests.safety.support import CONNECTED, Rig, telemetry

CHANNEL_KINDS = (
    "steady",
    "steady",
    "steady",
    "steady",
    "steady",
    "warm",
    "hot",
    "short",
    "open",
    "tc_open",
    "fault",
    "stray",
    "overpower",
    "half_over",
    "overshoot",
    "overvoltage",
    "stim_weak",
)
ALL_STEADY = ("steady",) * 4
ALL_WARMING = ("warm",) * 4
ALL_COOLING = ("cool",) * 4
ONE_CHANNEL_ODD = st.builds(
    lambda odd, kind: tuple(kind if index == odd else "steady" for index in range(4)),
    st.integers(0, 3), st.sampled_from(CHANNEL_KINDS),
)
"""Every channel steady but one: a fault that lands while the others (a bipolar pair's other side) deliver."""
LINK_KINDS = ("ok", "ok", "ok", "ok", "no_telemetry", "no_heartbeat", "generator_fault", "deaf", "refusing")
IMAGING_KINDS = ("live", "live", "live", "stale", "none", "boiling", "boiling_2_4", "probe_hot")
_JUDGING = frozenset({"evaluate", "request", "stim", "acknowledge"})
SETPOINTS = (0.0, 5.0, 10.0, 24.99, 25.0, 25.01, 45.0, 45.01, -1.0, math.nan, math.inf)
LEVELS = ("low", "low", "cap", "over", "nan")
"""A lesion's setpoint as a share of its own cap (power, or a pulsed lesion's peak voltage): see ``_level``."""
IMPEDANCE_OHM = 250.0


def _indices(mask: int) -> list[int]:
    """The channel indices (0..3) of a wire mask."""
    return [index for index in range(4) if mask & (1 << index)]


def _lesion(channel: int, mode: LesionMode, **changes: object) -> Lesion:
    """A lesion on ``channel`` with the electrode every slot of the rig reports (18 G, 10 mm)."""
    fields: dict[str, object] = dict(
        channel=channel, electrode=Electrode(gauge=18, active_tip_mm=10.0), mode=mode, set_temp_c=80.0,
        ramp_rate_c_per_s=2.0, lesion_time_s=90.0, power_cap_w=25.0, impedance_min_ohm=60.0,
        impedance_max_ohm=800.0,
    )
    if mode is LesionMode.PULSED:
        fields.update(set_temp_c=42.0, ramp_rate_c_per_s=1.0, lesion_time_s=120.0, power_cap_w=10.0,
                      pulsed=PulsedSettings(pulse_width_us=20_000, rate_hz=2.0, max_voltage_v=45.0))
    fields.update(changes)
    return Lesion.model_validate(fields)


MIXED_PLANS = {
    plan.name: plan
    for plan in (
        LesionPlan(name="bipolar-pulsed-continuous", imaging_required=True, lesions=(
            _lesion(1, LesionMode.BIPOLAR),
            _lesion(3, LesionMode.PULSED),
            _lesion(4, LesionMode.CONTINUOUS, power_cap_w=15.0),
        )),
        LesionPlan(name="pulsed-pulsed-bipolar", imaging_required=False, lesions=(
            _lesion(1, LesionMode.PULSED),
            _lesion(2, LesionMode.PULSED,  # the same waveform, a lower peak voltage
                    pulsed=PulsedSettings(pulse_width_us=20_000, rate_hz=2.0, max_voltage_v=30.0)),
            _lesion(3, LesionMode.BIPOLAR, power_cap_w=20.0),
        )),
        LesionPlan(name="two-bipolar-pairs", imaging_required=False, lesions=(
            _lesion(1, LesionMode.BIPOLAR),
            _lesion(3, LesionMode.BIPOLAR, power_cap_w=12.0, set_temp_c=70.0),
        )),
    )
}


class PlanOracle:
    """What docs/safety.md and the wire contract allow a plan, worked out from the plan and the limits alone
    (never from the gate's compiled rules, which are what is under test)."""

    def __init__(self, plan: LesionPlan, limits: SafetyLimits) -> None:
        self.plan = plan
        self.limits = limits

    def lesion_on(self, channel: int) -> Lesion | None:
        return self.plan.lesion_on(channel) if 1 <= channel <= 4 else None

    def mask(self, channel: int | None) -> int:
        """What one OUTPUT_OFF must stop for a condition on ``channel``: its lesion's electrodes (a bipolar pair
        together); None (a system interlock), or a channel outside the plan, all four."""
        lesion = None if channel is None else self.lesion_on(channel)
        if lesion is None:
            return ALL_CHANNELS
        return sum(1 << (c - 1) for c in lesion.channels)

    def cap(self, lesion: Lesion) -> float:
        """The highest setpoint: peak volts for a pulsed lesion, else watts (a bipolar lesion's for the pair)."""
        if lesion.pulsed is not None:
            return min(lesion.pulsed.max_voltage_v, self.limits.pulsed_voltage_max_v)
        return min(lesion.power_cap_w, self.limits.power_max_w)

    def power_trip_w(self, lesion: Lesion) -> float:
        """Measured power (a pair's: both sides) above this is over_power: the cap plus the measurement's accuracy,
        never above the hard maximum."""
        cap_w = min(lesion.power_cap_w, self.limits.power_max_w)
        return min(cap_w * (1 + hard.POWER_MEASUREMENT_TOLERANCE) + hard.POWER_MEASUREMENT_TOLERANCE_W,
                   hard.POWER_MAX_W)

    def trips_due(self, lesion: Lesion, readings: Sequence[ChannelTelemetry]) -> set[tuple[InterlockId, int]]:
        """What a frame showing ``readings`` must trip on a lesion that is on: its power (a pair's: both sides
        together, judged on the lead) above its cap + the measurement's accuracy, a pulsed peak voltage above its
        maximum + 1 V, a tip above set + margin or the tip maximum, a pulsed tip above 45 °C."""
        lead = lesion.channel
        due = set()
        if sum(readings[c - 1].power_centi_w for c in lesion.channels) / 100 > self.power_trip_w(lesion):
            due.add((InterlockId.OVER_POWER, lead))
        if lesion.pulsed is not None and readings[lead - 1].voltage_centi_v / 100 > (
                self.cap(lesion) + hard.OVER_VOLTAGE_TOLERANCE_V):
            due.add((InterlockId.OVER_POWER, lead))
        for channel in lesion.channels:
            reading = readings[channel - 1]
            if reading.flags & TelemetryFlag.THERMOCOUPLE_OPEN:  # no temperature: thermocouple_open's to trip
                continue
            tip_c = reading.tip_temp_centi_c / 100
            if tip_c > min(lesion.set_temp_c + self.limits.over_temp_margin_c, self.limits.tip_temp_max_c):
                due.add((InterlockId.OVER_TEMPERATURE, channel))
            if lesion.mode is LesionMode.PULSED and tip_c > self.limits.pulsed_tip_temp_max_c:
                due.add((InterlockId.PULSED_OVER_TEMPERATURE, channel))
        return due

    def waveform_groups(self) -> list[list[Lesion]]:
        """The lesions one SET_OUTPUT may carry together: one mode and, pulsed, one pulse width and rate."""
        groups: dict[tuple[LesionMode, int, int], list[Lesion]] = {}
        for lesion in self.plan.lesions:
            pulsed = lesion.pulsed
            key = (lesion.mode, 0, 0) if pulsed is None else (lesion.mode, pulsed.pulse_width_us, pulsed.rate_deci_hz)
            groups.setdefault(key, []).append(lesion)
        return list(groups.values())

    def check_set_output(self, msg: SetOutput) -> None:
        """A SET_OUTPUT enables whole planned lesions of one waveform, each setpoint within its cap, a bipolar pair's
        in its lead's slot."""
        assert 0 < msg.channel_mask <= ALL_CHANNELS, msg
        lesions = {self.lesion_on(ch) for ch in range(1, 5) if msg.channel_mask & (1 << (ch - 1))}
        assert None not in lesions, f"SET_OUTPUT enabled an unplanned channel: {msg}"
        for lesion in lesions:
            assert lesion is not None
            assert msg.channel_mask & self.mask(lesion.channel) == self.mask(lesion.channel), (
                f"SET_OUTPUT drives one side of the pair of channel {lesion.channel}: {msg}")
            assert msg.mode == int(lesion.mode.output_mode), f"channel {lesion.channel} is {lesion.mode}: {msg}"
            if lesion.pulsed is not None:
                assert (msg.pulse_width_us, msg.pulse_rate_deci_hz) == (
                    lesion.pulsed.pulse_width_us, lesion.pulsed.rate_deci_hz), f"not channel {lesion.channel}'s: {msg}"
            assert msg.setpoints[lesion.channel - 1] <= self.cap(lesion) * 100, f"channel {lesion.channel}: {msg}"
            for partner in lesion.channels[1:]:
                assert msg.setpoints[partner - 1] == 0, f"a bipolar pair's setpoint is in its lead's slot: {msg}"


class GateMachine(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.temps_c = [37.0] * 4
        self.wire_on = [False] * 4
        self.wire_setpoint = [0.0] * 4
        """The slot of the SET_OUTPUT that turned each channel on: W, or a pulsed lesion's peak V (0: a partner)."""
        self.wire_stim_mv = [0] * 4
        self.decided_at: float | None = None
        self.call_frames: list[Message] = []
        self.call_recorded = 0
        self.record_problems: list[str] = []
        self.withheld_for_cause = False
        self.evaluated_last = False
        """Whether the last gate call was the tick's evaluation: the gate's active conditions are as of then."""

    def _start(self, plan: LesionPlan) -> None:
        """Start where a procedure starts: the generator heard, electrodes reported, imaging live."""
        self.rig = Rig(plan=plan)
        self.oracle = PlanOracle(plan, self.rig.limits)
        self.rig.events.clear()
        self.rig.gate._record = self._record
        self.dog = Watchdog(self.rig.gate, self.rig.clock)
        self.imaging: ImagingStatus | None = self._imaging("live")
        self.rig.wire()
        for _ in range(2):
            self.tick(10, ALL_STEADY, "ok", "live")

    # -- helpers ------------------------------------------------------------------------------------------
    def _record(self, event: SafetyEvent) -> None:
        if event.kind is EventKind.TRIP:
            self._drain()
            need = self.oracle.mask(event.channel)
            if not any(isinstance(m, OutputOff) and m.channel_mask & need == need for m in self.call_frames):
                self.record_problems.append(f"trip {event.interlock} on {event.channel} recorded before an "
                                            f"OUTPUT_OFF covering 0x{need:02X}: {self.call_frames}")
        self.rig.events.append(event)

    def _drain(self) -> list[Message]:
        """Decode what reached the device, update the wire's view of each channel, keep this call's frames; check
        each frame against the plan and against what the wire already carries."""
        frames = self.rig.wire()
        for msg in frames:
            self.call_frames.append(msg)
            if isinstance(msg, OutputOff):
                for ch in _indices(msg.channel_mask):
                    self.wire_on[ch] = False
            elif isinstance(msg, Stim):
                channels = _indices(msg.channel_mask)
                if msg.amplitude_mv:
                    assert len(channels) == 1, f"a stimulus on more than one channel: {msg}"
                    assert self.oracle.lesion_on(channels[0] + 1) is not None, f"stimulus off the plan: {msg}"
                    assert msg.amplitude_mv <= min(self.oracle.plan.stimulation.max_amplitude_mv,
                                                   self.oracle.limits.stim_amplitude_max_mv), msg
                    assert not any(self.wire_on), f"stimulus {msg} while RF is on: {self.wire_on}"
                    others = [c + 1 for c in range(4) if self.wire_stim_mv[c] and c != channels[0]]
                    assert not others, f"stimulus {msg} while channel {others} stimulates"
                for ch in channels:
                    self.wire_stim_mv[ch] = msg.amplitude_mv
            elif isinstance(msg, SetOutput):
                self.oracle.check_set_output(msg)
                assert not any(self.wire_stim_mv), f"{msg} while stimulating: {self.wire_stim_mv}"
                for ch in _indices(msg.channel_mask):
                    self.wire_on[ch] = True
                    self.wire_setpoint[ch] = msg.setpoints[ch] / 100
            self._pairs_whole(f"after {msg}")
        return frames

    def _pairs_whole(self, when: str) -> None:
        for lesion in self.oracle.plan.lesions:
            sides = {self.wire_on[c - 1] for c in lesion.channels}
            assert len(sides) == 1, f"bipolar pair {lesion.channels} on by one side {when}: {self.wire_on}"

    def _imaging(self, kind: str) -> ImagingStatus | None:
        now = self.rig.clock.now()
        return {
            "live": ImagingStatus(now, 30.0, probe_face_read_at=now),
            "stale": ImagingStatus(now - 0.6, 30.0, probe_face_read_at=now),
            "none": None,
            "boiling": ImagingStatus(now, 30.0, frozenset({1}), now),
            "boiling_2_4": ImagingStatus(now, 30.0, frozenset({2, 4}), now),
            "probe_hot": ImagingStatus(now, 43.5, probe_face_read_at=now),
        }[kind]

    def _delivered(self, index: int) -> tuple[int, int]:
        """Power (0.01 W) and voltage (0.01 V) a generator doing as commanded reports on a channel: continuous, the
        setpoint's power; a bipolar pair, the lead's setpoint shared by its two sides (equal impedances); pulsed,
        the setpoint as peak voltage and the average power of its duty cycle."""
        lesion = self.oracle.lesion_on(index + 1)
        if not self.wire_on[index] or lesion is None:
            return 0, 0
        if lesion.mode is LesionMode.BIPOLAR:
            pair_centi_w = round(self.wire_setpoint[lesion.channel - 1] * 100)
            lead_centi_w = pair_centi_w // 2
            return (lead_centi_w if index + 1 == lesion.channel else pair_centi_w - lead_centi_w), 0
        if lesion.pulsed is not None:
            peak_v = self.wire_setpoint[index]
            duty = lesion.pulsed.pulse_width_us * 1e-6 * lesion.pulsed.rate_deci_hz / 10
            return round(peak_v * peak_v / IMPEDANCE_OHM * duty * 100), round(peak_v * 100)
        return round(self.wire_setpoint[index] * 100), 0

    def _channel(self, index: int, kind: str) -> ChannelTelemetry:
        on = self.wire_on[index]
        power_centi_w, voltage_centi_v = self._delivered(index)
        flags = CONNECTED | (int(TelemetryFlag.OUTPUT_ON) if on else 0)
        if kind == "warm":
            self.temps_c[index] = min(self.temps_c[index] + 0.5, 84.0)
        elif kind == "hot":
            self.temps_c[index] += 0.9
        elif kind == "cool":
            self.temps_c[index] = max(self.temps_c[index] - 0.5, 37.0)
        temp = round(self.temps_c[index] * 100)
        z_deci = {"short": 500, "open": 12000}.get(kind, round(IMPEDANCE_OHM * 10))
        if kind == "tc_open":
            flags |= int(TelemetryFlag.THERMOCOUPLE_OPEN)
        elif kind == "fault":
            flags |= int(TelemetryFlag.CHANNEL_FAULT)
        elif kind == "stray":
            flags |= int(TelemetryFlag.OUTPUT_ON)
            power_centi_w = 500
        elif kind == "overpower":
            power_centi_w = 3000
        elif kind == "half_over":  # with the other side of a 25 W pair at half of it, together over it (alone under)
            power_centi_w = 1320
        elif kind == "overshoot" and on:  # past what was commanded (a pulsed lesion: its peak voltage), not its cap
            power_centi_w = power_centi_w * 6 // 5 + 150
            voltage_centi_v += 200 if voltage_centi_v else 0
        # While it stimulates, the generator reports the pulse amplitude in the voltage field (a weak stimulator
        # delivers half of it): stimulation_mismatch is a condition of the gate's own commands.
        if self.wire_stim_mv[index]:
            voltage_centi_v = self.wire_stim_mv[index] // (2 if kind == "stim_weak" else 1) // 10
        if kind == "overvoltage":  # above any pulsed maximum in the plans, and above any stimulus
            voltage_centi_v = 5000
        return ChannelTelemetry(temp, z_deci, voltage_centi_v, 0, power_centi_w, flags)

    def _call(self, action: str, fn: object) -> list[Message]:
        """Run one gate call and return the frames it wrote, in order. A call that judges the interlocks is the
        gate's decision at this moment; one that only turns something off judges nothing."""
        self.call_frames = []
        self.call_recorded = len(self.rig.events)
        assert callable(fn)
        result = fn()
        self._drain()
        if action in _JUDGING:
            self.decided_at = self.rig.clock.now()
        self.evaluated_last = action == "evaluate"
        self.last_result = result
        return self.call_frames

    def _after_any_trip(self, frames: list[Message]) -> list[Message]:
        """A request's frames after the stops of a trip its own evaluation found (a clocked condition that began
        to hold since the tick): those come first, only with a trip recorded in the call, and nothing after
        them stops anything."""
        stops = 0
        for msg in frames:
            if not (isinstance(msg, OutputOff) or (isinstance(msg, Stim) and msg.amplitude_mv == 0)):
                break
            stops += 1
        if stops:
            recorded = self.rig.events[self.call_recorded:]
            assert any(e.kind is EventKind.TRIP for e in recorded), f"stops {frames[:stops]} with no trip recorded"
        rest = frames[stops:]
        assert not any(isinstance(m, OutputOff) for m in rest), frames
        return rest

    def _request(self, setpoints: dict[int, float]) -> None:
        """Ask for output; granted, exactly one SET_OUTPUT, driving the requested lesions whole (checked against the
        plan in ``_drain``); refused, nothing but a trip's stops."""
        frames = self._call("request", lambda: self.rig.gate.request_output(setpoints, self.imaging))
        event(f"output request {'granted' if self.last_result else 'refused'}")
        enabling = self._after_any_trip(frames)
        if self.last_result:
            assert len(enabling) == 1 and isinstance(enabling[0], SetOutput), enabling
            expected = 0
            for channel in setpoints:
                expected |= self.oracle.mask(channel)
            assert enabling[0].channel_mask == expected, (setpoints, enabling)
        else:
            assert enabling == []

    def _conditions(self) -> list[Trip]:
        gate = self.rig.gate
        return evaluate_interlocks(gate.snapshot(self.imaging), gate.rules, self.rig.clock.now())

    def _energised(self, index: int) -> bool:
        return self.wire_on[index] or self.wire_stim_mv[index] > 0

    # -- rules --------------------------------------------------------------------------------------------
    @initialize()
    def generator_heard(self) -> None:
        self._start(default_genicular_plan())

    @rule(
        dt_ms=st.sampled_from((5, 10, 10, 10, 15)),
        kinds=st.one_of(
            st.just(ALL_STEADY),
            st.just(ALL_STEADY),
            st.just(ALL_WARMING),
            ONE_CHANNEL_ODD,
            st.tuples(*(st.sampled_from(CHANNEL_KINDS) for _ in range(4))),
        ),
        link=st.one_of(st.just("ok"), st.sampled_from(LINK_KINDS)),
        imaging=st.one_of(st.just("live"), st.sampled_from(IMAGING_KINDS)),
        earlier=st.one_of(st.none(), st.none(), st.tuples(*(st.sampled_from(CHANNEL_KINDS) for _ in range(4)))),
    )
    def tick(self, dt_ms: int, kinds: tuple[str, str, str, str], link: str, imaging: str,
             earlier: tuple[str, str, str, str] | None = None) -> None:
        """``earlier``: a frame before this tick's own, read in the same poll (the host's period and the generator's
        drift past each other)."""
        self.rig.clock.advance(dt_ms / 1000)
        if earlier is not None and link != "no_telemetry":
            self.rig.gen_time_us += 5_000
            frame = telemetry({i + 1: self._channel(i, kind) for i, kind in enumerate(earlier)})
            self.rig.send(replace(frame, gen_time_us=self.rig.gen_time_us))
        chans = {i + 1: self._channel(i, kind) for i, kind in enumerate(kinds)}
        tele = None if link == "no_telemetry" else telemetry(chans)
        status = Status(int(GeneratorState.FAULT), 0x1, 0x0102) if link == "generator_fault" else None
        result = AckResult.REFUSED_STATE if link == "refusing" else AckResult.OK
        self.rig.feed(tele, status=status, heartbeat=link != "no_heartbeat", answer=link != "deaf", result=result)
        self.imaging = self._imaging(imaging)
        self.dog.kick()
        was_on = any(self.wire_on)
        on = [lesion for lesion in self.oracle.plan.lesions if self.wire_on[lesion.channel - 1]]
        frames = self._call("evaluate", lambda: self.rig.gate.evaluate(self.imaging))
        trips: list[Trip] = self.last_result
        event(f"tick with {'a trip' if trips else 'no trip'} while {'on' if was_on else 'off'}")
        if tele is not None:
            latched = {t.key for t in self.rig.gate.latched}
            for lesion in on:
                due = self.oracle.trips_due(lesion, tele.channels)
                assert due <= latched, f"{lesion.channels} on, then {due - latched} not tripped"
        if trips:
            mask = 0
            for trip in trips:
                # The scope docs/safety.md gives each interlock: the channel (a bipolar pair together), or all four.
                assert trip.mask == self.oracle.mask(trip.channel), trip
                mask |= self.oracle.mask(trip.channel)
            assert isinstance(frames[0], OutputOff), f"first command after a trip was {frames[0]}"
            assert frames[0].channel_mask & mask == mask
            assert sum(isinstance(m, OutputOff) for m in frames) == 1, frames
            assert all(isinstance(m, Stim) and m.amplitude_mv == 0 for m in frames[1:]), frames

    @rule(
        ticks=st.sampled_from((3, 10, 40)),
        kinds=st.sampled_from((ALL_STEADY, ALL_WARMING, ALL_COOLING)),
        group=st.integers(0, 3),
        level=st.sampled_from(("low", "cap")),
    )
    def undisturbed(self, ticks: int, kinds: tuple[str, str, str, str], group: int, level: str) -> None:
        """The loop's own rhythm for a while, nothing hostile: each tick an evaluation, then the request of one
        waveform's lesions (as the control loop asks each tick), every tip steady, warming (a pulsed tip passes
        45 °C in 16 ticks) or cooling back towards body temperature."""
        for _ in range(ticks):
            self.tick(10, kinds, "ok", "live")
            self.request_lesions(group, (level,) * 4)

    @rule(
        channels=st.one_of(
            st.just({1}), st.just({1, 2, 3}), st.sets(st.integers(1, 4), min_size=1, max_size=3)
        ),
        setpoint=st.one_of(st.just(10.0), st.sampled_from(SETPOINTS)),
    )
    def request_output(self, channels: set[int], setpoint: float) -> None:
        self._request(dict.fromkeys(sorted(channels), setpoint))

    @rule(group=st.integers(0, 3), levels=st.tuples(*(st.sampled_from(LEVELS) for _ in range(4))))
    def request_lesions(self, group: int, levels: tuple[str, str, str, str]) -> None:
        """As the control loop asks: every lesion of one waveform together, each at a level of its own cap (a
        setpoint above it is refused)."""
        groups = self.oracle.waveform_groups()
        lesions = groups[group % len(groups)]
        setpoints = {lesion.channel: self._level(lesion, levels[lesion.channel - 1]) for lesion in lesions}
        self._request(setpoints)
        if any(not setpoints[lesion.channel] <= self.oracle.cap(lesion) for lesion in lesions):
            assert not self.last_result, f"{setpoints} granted beyond a cap"

    def _level(self, lesion: Lesion, level: str) -> float:
        cap = self.oracle.cap(lesion)
        return {"low": round(cap * 0.4, 2), "cap": cap, "over": cap + 0.01, "nan": math.nan}[level]

    @rule(
        channel=st.integers(1, 4),
        kind=st.sampled_from(list(StimKind)),
        amplitude_mv=st.sampled_from((0, 400, 2000, 2001)),
    )
    def request_stim(self, channel: int, kind: StimKind, amplitude_mv: int) -> None:
        """Any planned electrode is stimulated on its own channel, a bipolar partner too (``_drain`` checks that no
        RF and no other stimulus is on then)."""
        frames = self._call(
            "stim", lambda: self.rig.gate.request_stim(channel, kind, amplitude_mv, self.imaging)
        )
        rest = self._after_any_trip(frames)
        event(f"stimulus {'granted' if self.last_result else 'refused'}")
        if self.last_result:
            assert len(rest) == 1 and isinstance(rest[0], Stim), rest
            assert (rest[0].channel_mask, rest[0].amplitude_mv) == (1 << (channel - 1), amplitude_mv), rest
        else:
            assert rest == []

    @rule()
    def stop_stim(self) -> None:
        self._call("stop_stim", self.rig.gate.stop_stim)

    @rule(channel=st.integers(1, 4))
    def channel_off(self, channel: int) -> None:
        frames = self._call("channel_off", lambda: self.rig.gate.channel_off(channel))
        need = self.oracle.mask(channel) if self.oracle.lesion_on(channel) else 1 << (channel - 1)
        assert isinstance(frames[0], OutputOff) and frames[0].channel_mask & need == need, frames

    @rule()
    def acknowledge(self) -> None:
        before = {t.key for t in self.rig.gate.latched}
        recorded = len(self.rig.events)
        self._call("acknowledge", lambda: self.rig.gate.acknowledge(self.imaging))
        cleared: list[Trip] = self.last_result
        holding = {t.key for t in self._conditions()}
        for trip in cleared:
            assert trip.key not in holding, f"acknowledge cleared {trip.key} while its cause persists"
        # A condition that began to hold under power since the tick trips at the acknowledgement, as at a request.
        tripped = {(e.interlock, e.channel) for e in self.rig.events[recorded:] if e.kind is EventKind.TRIP}
        assert {t.key for t in self.rig.gate.latched} - tripped == before - {t.key for t in cleared}

    @rule()
    def operator_stop(self) -> None:
        frames = self._call("stop", self.rig.gate.operator_stop)
        assert frames[0] == OutputOff(0x0F)

    @rule(dt_s=st.sampled_from((0.021, 0.05, 0.3, 2.0, 100.0)))
    def stall(self, dt_s: float) -> None:
        """The loop stalls; the watchdog (when armed) turns everything off on its own."""
        self.rig.clock.advance(dt_s)
        armed = self.dog.armed
        frames = self._call("watchdog", self.dog.tick)
        self.decided_at = None  # no interlock evaluation happened at this moment
        if self.last_result:
            assert frames[0] == OutputOff(0x0F)
        else:
            assert frames == []
        if armed:
            assert not any(self._energised(i) for i in range(4)), (
                "a stalled loop's output and stimulus are off (now or since the stall began)")

    @rule(dt_s=st.sampled_from((1e-6, 5e-5, 0.002, 0.03, 0.2)))
    def time_passes(self, dt_s: float) -> None:
        """Time moves between the tick and the next call, nothing arrives: on the cart the clock runs on through
        the tick, so a request comes a few microseconds after the evaluation (or much later, if the loop is held)."""
        self.rig.clock.advance(dt_s)

    @rule()
    def acks_arrive(self) -> None:
        """The generator's ACKs alone land and are read, no telemetry, status or heartbeat with them."""
        self.rig.answer()

    @rule()
    def slack(self) -> None:
        """The loop's slack between ticks: the host heartbeat, through the gate."""
        withheld = self.rig.gate.heartbeat_withheld_since is not None
        sent = self.rig.gate.keep_alive()
        event(f"slack with the heartbeat {'withheld' if withheld else 'free'}")
        assert sent is None or not withheld, "a host heartbeat went out while it was withheld"

    # -- invariants ---------------------------------------------------------------------------------------
    @invariant()
    def heartbeat_withheld_while_output_is_not_seen_off(self) -> None:
        """Withheld whenever the tick's evaluation found output against OUTPUT_OFF, or telemetry or link lost while a
        channel that was on has not been seen off, and never before any of that happened (how long:
        tests/safety/test_gate.py). The gate's active conditions are the last evaluation's: a stop sent since
        (a channel not yet seen off) meets a lost link the next evaluation may no longer find."""
        gate = self.rig.gate
        uncommanded = (InterlockId.UNCOMMANDED_OUTPUT, None) in gate._active
        unseen = gate._unseen_off != 0 and any(
            (i, None) in gate._active for i in (InterlockId.TELEMETRY_STALE, InterlockId.LINK_LOST))
        self.withheld_for_cause = self.withheld_for_cause or uncommanded or unseen
        if (uncommanded or unseen) and self.evaluated_last:
            assert gate.heartbeat_withheld_since is not None
        elif gate.heartbeat_withheld_since is not None:
            assert self.withheld_for_cause, "withheld with nothing that could have started it"

    @invariant()
    def wire_agrees_with_the_gate(self) -> None:
        commanded = self.rig.gate.commanded
        assert self.wire_on == [c.on for c in commanded]
        assert self.wire_stim_mv == [c.stim_amplitude_mv for c in commanded]

    @invariant()
    def never_energised_under_a_latch(self) -> None:
        """Neither RF nor a stimulus on a channel a latch covers: its lesion's (a bipolar pair's) or every one."""
        for trip in self.rig.gate.latched:
            mask = self.oracle.mask(trip.channel)
            for ch in range(4):
                if mask & (1 << ch):
                    assert not self._energised(ch), f"channel {ch + 1} energised under latch {trip.key}"

    @precondition(lambda self: self.decided_at == self.rig.clock.now())
    @invariant()
    def never_energised_while_a_condition_holds(self) -> None:
        for trip in self._conditions():
            mask = self.oracle.mask(trip.channel)
            for ch in range(4):
                if mask & (1 << ch):
                    assert not self._energised(ch), f"channel {ch + 1} energised while {trip.key}: {trip.reason}"

    @precondition(lambda self: self.decided_at == self.rig.clock.now())
    @invariant()
    def never_on_beyond_the_plan(self) -> None:
        """At the gate's decision, what the newest frame shows beyond a lesion's plan (``PlanOracle.trips_due``) is
        among the conditions a fresh evaluation finds, a pair's over_power on its lead and never on its partner;
        and no lesion is on with any of it."""
        rx = self.rig.driver.telemetry
        if rx is None:
            return
        conditions = {t.key for t in self._conditions()}
        for lesion in self.oracle.plan.lesions:
            due = self.oracle.trips_due(lesion, rx.msg.channels)
            assert due <= conditions, f"{lesion.channels}: {due - conditions} not found"
            for partner in lesion.channels[1:]:
                assert (InterlockId.OVER_POWER, partner) not in conditions, "a pair's power is judged on its lead"
            if self.wire_on[lesion.channel - 1]:
                assert not due, f"channel {lesion.channel} on with {due}"

    @invariant()
    def a_request_is_judged_as_a_fresh_evaluation_would_judge_it(self) -> None:
        """The conditions a request would be judged by now (reused from the tick where only time has moved) are
        the conditions every interlock finds on a fresh snapshot: same trips, same reasons, same order. Asking
        brings the gate's snapshot up to now (RF time, a new frame's trends, a settled setpoint), as the next
        request or tick would first do anyway."""
        gate, now = self.rig.gate, self.rig.clock.now()
        judged = gate._conditions(self.imaging, now)
        fresh = evaluate_interlocks(gate._refresh(self.imaging, now), gate.rules, now)
        assert judged == fresh

    @invariant()
    def trips_are_recorded_after_their_output_off(self) -> None:
        assert self.record_problems == []


class MixedModeGateMachine(GateMachine):
    """The same hostile loop over plans with a bipolar pair (its power the pair's, set in its lead's slot, mask
    0x03 or 0x0C), pulsed-RF lesions (peak-voltage setpoints, one waveform) and monopolar lesions side by side."""

    @initialize(plan=st.sampled_from(sorted(MIXED_PLANS)))
    def generator_heard(self, plan: str) -> None:
        note(f"plan {plan}")
        self._start(MIXED_PLANS[plan])


GateMachine.TestCase.settings = settings(stateful_step_count=40, deadline=None)
TestGateMachine = GateMachine.TestCase
MixedModeGateMachine.TestCase.settings = settings(stateful_step_count=40, deadline=None)
TestMixedModeGateMachine = MixedModeGateMachine.TestCase
