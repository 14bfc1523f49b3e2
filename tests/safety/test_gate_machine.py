"""A hostile control loop: hypothesis drives the gate with arbitrary interleavings and checks the wire.

The gate runs on a real :class:`RfGenerator` over a memory pair with ``SimClock``; the device end decodes
every frame the host writes with :class:`FrameParser`, so the invariants are checked on the wire, not on
the gate's own account of itself:

* output is never on (by the wire) while a latch covers the channel, and never while a condition holds
  at the moment of the gate's last decision;
* every trip produces exactly one ``OUTPUT_OFF``, covering the trip, before any other command, and it is on
  the wire by the time the trip is recorded;
* an acknowledgement never clears a latch whose condition still holds;
* nothing but the plan's channels, modes and capped setpoints is ever enabled;
* the conditions a request is judged by equal a fresh evaluation of every interlock, whatever happened since
  the tick: the gate reuses its tick's evaluation when only time has moved (``OutputGate._conditions``,
  ``safety.interlocks.reevaluate``).
"""

from __future__ import annotations

import math
from dataclasses import replace

from hypothesis import event, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, precondition, rule

from firmware_bridge.messages import (
    AckResult,
    ChannelTelemetry,
    GeneratorState,
    Message,
    OutputMode,
    OutputOff,
    SetOutput,
    Status,
    Stim,
    TelemetryFlag,
)
from safety.gate import EventKind, SafetyEvent, StimKind
from safety.inputs import ImagingStatus
from safety.interlocks import InterlockId, Trip, evaluate_interlocks
from safety.watchdog import Watchdog
from tests.safety.support import CONNECTED, Rig, telemetry

CHANNEL_KINDS = (
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
    "stim_weak",
)
ALL_STEADY = ("steady",) * 4
ALL_WARMING = ("warm",) * 4
LINK_KINDS = ("ok", "ok", "ok", "ok", "no_telemetry", "no_heartbeat", "generator_fault", "deaf", "refusing")
IMAGING_KINDS = ("live", "live", "live", "stale", "none", "boiling", "probe_hot")
_JUDGING = frozenset({"evaluate", "request", "stim", "acknowledge"})
SETPOINTS = (0.0, 5.0, 10.0, 24.99, 25.0, 25.01, -1.0, math.nan, math.inf)


class GateMachine(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.rig = Rig()
        self.rig.events.clear()
        self.rig.gate._record = self._record
        self.dog = Watchdog(self.rig.gate, self.rig.clock)
        self.temps_c = [37.0] * 4
        self.imaging: ImagingStatus | None = self._imaging("live")
        self.wire_on = [False] * 4
        self.wire_setpoint_w = [0.0] * 4
        self.wire_stim_mv = [0] * 4
        self.decided_at: float | None = None
        self.call_frames: list[Message] = []
        self.call_recorded = 0
        self.record_problems: list[str] = []
        self.withheld_for_cause = False
        self.evaluated_last = False
        """Whether the last gate call was the tick's evaluation: the gate's active conditions are as of then."""
        self.rig.wire()

    # -- helpers ------------------------------------------------------------------------------------------
    def _record(self, event: SafetyEvent) -> None:
        if event.kind is EventKind.TRIP:
            frames = self._drain()
            if not any(isinstance(m, OutputOff) for m in self.call_frames + frames):
                self.record_problems.append(f"trip {event.interlock} recorded before its OUTPUT_OFF")
        self.rig.events.append(event)

    def _drain(self) -> list[Message]:
        """Decode what reached the device, update the wire's view of each channel, keep this call's frames."""
        frames = self.rig.wire()
        for msg in frames:
            self.call_frames.append(msg)
            if isinstance(msg, OutputOff):
                for ch in range(4):
                    if msg.channel_mask & (1 << ch):
                        self.wire_on[ch] = False
            elif isinstance(msg, Stim):
                for ch in range(4):
                    if msg.channel_mask & (1 << ch):
                        self.wire_stim_mv[ch] = msg.amplitude_mv
            elif isinstance(msg, SetOutput):
                plan_rules = self.rig.gate.rules
                for ch in range(4):
                    if msg.channel_mask & (1 << ch):
                        rules = plan_rules.by_channel.get(ch + 1)
                        assert rules is not None, f"SET_OUTPUT enabled unplanned channel {ch + 1}"
                        assert msg.mode == int(rules.output_mode)
                        assert msg.setpoints[ch] <= rules.power_max_w * 100
                        self.wire_on[ch] = True
                        self.wire_setpoint_w[ch] = msg.setpoints[ch] / 100
        return frames

    def _imaging(self, kind: str) -> ImagingStatus | None:
        now = self.rig.clock.now()
        return {
            "live": ImagingStatus(now, 30.0, probe_face_read_at=now),
            "stale": ImagingStatus(now - 0.6, 30.0, probe_face_read_at=now),
            "none": None,
            "boiling": ImagingStatus(now, 30.0, frozenset({1}), now),
            "probe_hot": ImagingStatus(now, 43.5, probe_face_read_at=now),
        }[kind]

    def _channel(self, index: int, kind: str) -> ChannelTelemetry:
        on = self.wire_on[index]
        power_centi_w = round(self.wire_setpoint_w[index] * 100) if on else 0
        flags = CONNECTED | (int(TelemetryFlag.OUTPUT_ON) if on else 0)
        if kind == "warm":
            self.temps_c[index] = min(self.temps_c[index] + 0.5, 84.0)
        elif kind == "hot":
            self.temps_c[index] += 0.9
        temp = round(self.temps_c[index] * 100)
        z_deci = {"short": 500, "open": 12000}.get(kind, 2500)
        if kind == "tc_open":
            flags |= int(TelemetryFlag.THERMOCOUPLE_OPEN)
        elif kind == "fault":
            flags |= int(TelemetryFlag.CHANNEL_FAULT)
        elif kind == "stray":
            flags |= int(TelemetryFlag.OUTPUT_ON)
            power_centi_w = 500
        elif kind == "overpower":
            power_centi_w = 3000
        # While it stimulates, the generator reports the pulse amplitude in the voltage field (a weak stimulator
        # delivers half of it): stimulation_mismatch is a condition of the gate's own commands.
        stim_mv = self.wire_stim_mv[index] // (2 if kind == "stim_weak" else 1)
        return ChannelTelemetry(temp, z_deci, stim_mv // 10, 0, power_centi_w, flags)

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

    def _conditions(self) -> list[Trip]:
        gate = self.rig.gate
        return evaluate_interlocks(gate.snapshot(self.imaging), gate.rules, self.rig.clock.now())

    # -- rules --------------------------------------------------------------------------------------------
    @initialize()
    def generator_heard(self) -> None:
        """Start where a procedure starts: the generator heard, electrodes reported, imaging live."""
        for _ in range(2):
            self.tick(10, ALL_STEADY, "ok", "live")

    @rule(
        dt_ms=st.sampled_from((5, 10, 10, 10, 15)),
        kinds=st.one_of(
            st.just(ALL_STEADY),
            st.just(ALL_STEADY),
            st.just(ALL_WARMING),
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
        frames = self._call("evaluate", lambda: self.rig.gate.evaluate(self.imaging))
        trips: list[Trip] = self.last_result
        event(f"tick with {'a trip' if trips else 'no trip'} while {'on' if was_on else 'off'}")
        if trips:
            mask = 0
            for trip in trips:
                mask |= trip.mask
            assert isinstance(frames[0], OutputOff), f"first command after a trip was {frames[0]}"
            assert frames[0].channel_mask & mask == mask
            assert sum(isinstance(m, OutputOff) for m in frames) == 1, frames
            assert all(isinstance(m, Stim) and m.amplitude_mv == 0 for m in frames[1:]), frames

    @rule(
        channels=st.one_of(
            st.just({1}), st.just({1, 2, 3}), st.sets(st.integers(1, 4), min_size=1, max_size=3)
        ),
        setpoint=st.one_of(st.just(10.0), st.sampled_from(SETPOINTS)),
    )
    def request_output(self, channels: set[int], setpoint: float) -> None:
        frames = self._call(
            "request",
            lambda: self.rig.gate.request_output(dict.fromkeys(sorted(channels), setpoint), self.imaging),
        )
        event(f"output request {'granted' if self.last_result else 'refused'}")
        enabling = self._after_any_trip(frames)
        if self.last_result:
            assert len(enabling) == 1 and isinstance(enabling[0], SetOutput)
            assert enabling[0].mode == int(OutputMode.RF_CONTINUOUS)
        else:
            assert enabling == []

    @rule(
        channel=st.integers(1, 4),
        kind=st.sampled_from(list(StimKind)),
        amplitude_mv=st.sampled_from((0, 400, 2000, 2001)),
    )
    def request_stim(self, channel: int, kind: StimKind, amplitude_mv: int) -> None:
        frames = self._call(
            "stim", lambda: self.rig.gate.request_stim(channel, kind, amplitude_mv, self.imaging)
        )
        assert len(self._after_any_trip(frames)) == (1 if self.last_result else 0)

    @rule()
    def stop_stim(self) -> None:
        self._call("stop_stim", self.rig.gate.stop_stim)

    @rule(channel=st.integers(1, 4))
    def channel_off(self, channel: int) -> None:
        self._call("channel_off", lambda: self.rig.gate.channel_off(channel))

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
            assert not any(self.wire_on), "a stalled loop's output is off (now or since the stall began)"

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
        commanded = [c.on for c in self.rig.gate.commanded]
        assert self.wire_on == commanded

    @invariant()
    def never_on_under_a_latch(self) -> None:
        for trip in self.rig.gate.latched:
            for ch in range(4):
                if trip.mask & (1 << ch):
                    assert not self.wire_on[ch], f"channel {ch + 1} on under latch {trip.key}"

    @precondition(lambda self: self.decided_at == self.rig.clock.now())
    @invariant()
    def never_on_while_a_condition_holds(self) -> None:
        for trip in self._conditions():
            for ch in range(4):
                if trip.mask & (1 << ch):
                    assert not self.wire_on[ch], f"channel {ch + 1} on while {trip.key}: {trip.reason}"

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


GateMachine.TestCase.settings = settings(stateful_step_count=40, deadline=None)
TestGateMachine = GateMachine.TestCase
