"""The output gate on a real driver and a memory link: what reaches the wire, in which order, and why."""

from __future__ import annotations

import ast
import itertools
import threading
from dataclasses import replace
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from firmware_bridge.clock import SimClock
from firmware_bridge.errors import CapabilityError, LinkError
from firmware_bridge.framing import Frame
from firmware_bridge.generator import OutputCapability, RfGenerator
from firmware_bridge.messages import (
    Ack,
    AckResult,
    ChannelTelemetry,
    GeneratorState,
    Message,
    OutputMode,
    OutputOff,
    SelfTest,
    SetOutput,
    Status,
    Stim,
    TelemetryFlag,
)
from firmware_bridge.transport import Transport, memory_pair
from safety import limits as hard
from safety.config import HARD_LIMITS
from safety.gate import Decision, EventKind, OutputGate, SafetyEvent, StimKind
from safety.inputs import ImagingStatus
from safety.interlocks import InterlockId, Priority, Trip
from safety.plan import Electrode, Lesion, LesionMode, LesionPlan, default_genicular_plan
from safety.watchdog import Watchdog
from sim.generator.device import HOST_HEARTBEAT_TIMEOUT_S
from tests.safety.support import CONNECTED, NOW, ON, Rig, bipolar_plan, channel, pulsed_plan, telemetry

ROOT = Path(__file__).resolve().parents[2]


def ready(rig: Rig) -> None:
    """Two healthy ticks so every message is fresh and the loop has a previous tick."""
    rig.healthy_tick()
    rig.healthy_tick()
    rig.wire()


def test_the_gate_starts_by_turning_everything_off() -> None:
    rig = Rig()
    assert rig.written == [OutputOff(0x0F)]
    assert rig.events[0].kind is EventKind.OFF


def test_a_healthy_request_sends_one_set_output_with_the_plan_mode() -> None:
    rig = Rig()
    ready(rig)
    decision = rig.gate.request_output({1: 12.345, 2: 10.0}, rig.imaging())
    assert decision, decision.reasons
    assert rig.wire() == [SetOutput(0b0011, int(OutputMode.RF_CONTINUOUS), (1234, 1000, 0, 0), 0, 0)]
    assert [c.on for c in rig.gate.commanded] == [True, True, False, False]
    assert rig.events[-1].kind is EventKind.GRANTED and rig.events[-1].seq == decision.seq


@pytest.mark.parametrize(
    ("setpoints", "words"),
    [
        ({4: 5.0}, "not in the plan"),
        ({1: 25.01}, "outside"),
        ({1: -0.01}, "outside"),
        ({1: float("nan")}, "outside"),
        ({1: True}, "outside"),
        ({}, "no channel"),
    ],
)
def test_requests_beyond_the_plan_are_refused_and_nothing_is_sent(
    setpoints: dict[int, float], words: str
) -> None:
    rig = Rig()
    ready(rig)
    decision = rig.gate.request_output(setpoints, rig.imaging())
    assert not decision and any(words in r for r in decision.reasons), decision.reasons
    assert rig.wire() == []
    assert rig.events[-1].kind is EventKind.REFUSED


def test_nothing_is_enabled_before_the_generator_has_been_heard() -> None:
    rig = Rig()
    decision = rig.gate.request_output({1: 5.0}, rig.imaging())
    reasons = " ".join(decision.reasons)
    for interlock in ("telemetry_stale", "link_lost", "electrode_mismatch"):
        assert interlock in reasons
    assert rig.wire() == []


def test_starting_rf_needs_live_imaging_but_a_running_lesion_has_a_grace() -> None:
    rig = Rig()
    ready(rig)
    stale = ImagingStatus(rig.clock.now() - 0.6, 30.0, probe_face_read_at=rig.clock.now())
    assert not rig.gate.request_output({1: 5.0}, stale)
    assert rig.gate.request_output({1: 5.0}, rig.imaging())
    assert not rig.gate.request_output({1: 5.0, 2: 5.0}, stale), (
        "a second channel starting needs live imaging"
    )
    assert rig.gate.request_output({1: 6.0}, stale), "within the grace a running channel may continue"


def test_a_nerve_test_rides_out_an_imaging_drop_out_within_the_grace_and_stops_past_it() -> None:
    """The imaging-loss grace is for output that is on, RF or a nerve-test stimulus (docs/safety.md): a stimulus of
    at most 3 V heats nothing, and tripping it on a 0.6 s USB stall would fault the procedure and send the physician
    back to its start. Starting a stimulus still needs live imaging; past the grace, imaging_lost stops it."""
    rig = Rig()
    rig.healthy_tick()
    rig.healthy_tick()
    frame_at = rig.clock.now()
    stale = ImagingStatus(frame_at - 0.6, 30.0, probe_face_read_at=frame_at)
    assert not rig.gate.request_stim(1, StimKind.MOTOR, 1000, stale), "a stimulus starts only under live imaging"
    assert rig.gate.request_stim(1, StimKind.MOTOR, 1000, rig.imaging())
    trips: list[Trip] = []
    stepped = False
    while not trips and rig.clock.now() - frame_at < 4.0:
        rig.clock.advance(0.01)
        rig.feed(telemetry({1: channel(voltage_v=1.0, flags=ON)}))
        trips = rig.gate.evaluate(ImagingStatus(frame_at, 30.0, probe_face_read_at=rig.clock.now()))
        if not stepped and rig.clock.now() - frame_at >= 1.0:  # past the frame age, within the grace
            stepped = True
            step = ImagingStatus(frame_at, 30.0, probe_face_read_at=rig.clock.now())
            assert rig.gate.request_stim(1, StimKind.MOTOR, 1100, step), "an amplitude step within the grace"
    age_s = rig.clock.now() - frame_at
    assert [t.interlock for t in trips] == [InterlockId.IMAGING_LOST]
    assert stepped and 0.5 + 2.0 <= age_s < 0.5 + 2.0 + 0.02, age_s
    assert rig.gate.commanded[0].stim_amplitude_mv == 0, "the stimulus is off"


def test_an_over_temperature_trip_puts_output_off_on_the_wire_before_recording() -> None:
    rig = Rig()
    for _ in range(3):
        rig.healthy_tick({1: channel(84.9), 2: channel(60.0)})
    assert rig.gate.request_output({1: 10.0, 2: 10.0}, rig.imaging())
    rig.wire()
    seen_on_wire_at_record: list[list[Message]] = []
    rig.gate._record = lambda event: seen_on_wire_at_record.append(rig.wire())
    rig.clock.advance(0.01)
    rig.feed(telemetry({1: channel(85.01, power_w=10.0, flags=ON), 2: channel(60.0, power_w=10.0, flags=ON)}))
    trips = rig.gate.evaluate(rig.imaging())
    assert [t.interlock for t in trips] == [InterlockId.OVER_TEMPERATURE]
    assert seen_on_wire_at_record[0] == [OutputOff(0b0001)], "OUTPUT_OFF is on the wire before the record"
    assert [c.on for c in rig.gate.commanded] == [False, True, False, False]
    assert not rig.gate.output_permitted(1) and rig.gate.output_permitted(2)


def test_acknowledge_keeps_a_latch_while_its_cause_persists() -> None:
    rig = Rig()
    ready(rig)
    assert rig.gate.request_output({1: 10.0}, rig.imaging())
    rig.clock.advance(0.01)
    rig.feed(telemetry({1: channel(impedance_ohm=55.0, power_w=10.0, flags=ON)}))
    rig.gate.evaluate(rig.imaging())
    assert rig.gate.acknowledge(rig.imaging()) == []
    assert rig.events[-1].kind is EventKind.ACK_REFUSED
    assert not rig.gate.request_output({1: 10.0}, rig.imaging())
    rig.healthy_tick()
    cleared = rig.gate.acknowledge(rig.imaging())
    assert [t.interlock for t in cleared] == [InterlockId.IMPEDANCE_LOW]
    assert rig.gate.request_output({1: 10.0}, rig.imaging())


def test_a_stall_after_an_acknowledged_one_trips_again_before_the_next_tick() -> None:
    """The watchdog trips a stall while idle; the late tick still finds it; the operator acknowledges and starts a
    lesion. When the loop stalls again under power, the request finds it and trips: an acknowledged trip is no
    longer counted as tripped (before, it stayed so until a tick saw the condition gone, and the second stall was
    taken for the first: output stayed on, for the watchdog's thread alone to catch)."""
    rig = Rig()
    ready(rig)
    rig.clock.advance(0.021)
    assert rig.gate.trip_from_watchdog("loop stalled")
    rig.gate.take_trips_between_ticks()
    rig.clock.advance(0.005)
    rig.feed(telemetry())
    assert rig.gate.evaluate(rig.imaging()) == [], "the late tick finds the stall the watchdog already tripped"
    assert [t.interlock for t in rig.gate.acknowledge(rig.imaging())] == [InterlockId.CONTROL_LOOP_OVERRUN]
    assert rig.gate.request_output({1: 10.0}, rig.imaging())
    rig.wire()
    rig.clock.advance(0.03)  # stalled again, under power
    assert not rig.gate.request_output({1: 10.0}, rig.imaging())
    assert [t.interlock for t in rig.gate.take_trips_between_ticks()] == [InterlockId.CONTROL_LOOP_OVERRUN]
    assert rig.wire()[0] == OutputOff(0x0F)


def test_an_acknowledged_latch_whose_cause_is_gone_permits_output_at_once() -> None:
    """The acknowledgement found the cause gone: nothing of it is active any longer, so output is permitted before
    the next tick, as the request that follows will find (output_permitted is what a display shows)."""
    rig = Rig()
    ready(rig)
    assert rig.gate.request_output({1: 10.0}, rig.imaging())
    rig.healthy_tick({1: channel(power_w=10.0, flags=ON | TelemetryFlag.CHANNEL_FAULT)})
    assert not rig.gate.output_permitted(1)
    rig.feed(telemetry())  # the fault has gone in the frame read since
    assert [t.interlock for t in rig.gate.acknowledge(rig.imaging())] == [InterlockId.CHANNEL_FAULT]
    assert rig.gate.output_permitted(1)
    assert rig.gate.request_output({1: 10.0}, rig.imaging())


def test_a_latch_whose_condition_has_cleared_still_forbids_output_until_acknowledged() -> None:
    """output_permitted (what the arming guard and a display read) counts the latches, not only the conditions
    holding now: a channel fault that came and went leaves its channel refused until acknowledged."""
    rig = Rig()
    ready(rig)
    assert rig.gate.request_output({1: 10.0}, rig.imaging())
    rig.healthy_tick({1: channel(power_w=10.0, flags=ON | TelemetryFlag.CHANNEL_FAULT)})
    rig.healthy_tick()  # the fault has gone: cleared, still latched
    assert [t.interlock for t in rig.gate.latched] == [InterlockId.CHANNEL_FAULT]
    assert not rig.gate.output_permitted(1) and rig.gate.output_permitted(2)
    assert not rig.gate.request_output({1: 10.0}, rig.imaging())
    rig.gate.acknowledge(rig.imaging())
    assert rig.gate.output_permitted(1)


def test_a_bipolar_partner_or_an_unplanned_channel_is_never_permitted_output_of_its_own() -> None:
    rig = Rig(plan=bipolar_plan())
    ready(rig)
    assert rig.gate.output_permitted(1)
    assert not rig.gate.output_permitted(2), "the partner is driven through its lead, channel 1"
    assert not rig.gate.output_permitted(3)


def test_output_stays_forbidden_while_the_heartbeat_is_withheld_though_the_latch_is_acknowledged() -> None:
    """A lost OUTPUT_OFF: one frame of output against it, then off. The latch can be acknowledged at once, but the
    heartbeat stays withheld until the generator's own watchdog has certainly acted; until then nothing may be
    granted (the generator would refuse output without a live heartbeat anyway)."""
    rig = settled()
    _heartbeats_sent(rig, 1, {4: channel(power_w=6.0, flags=ON)})
    _heartbeats_sent(rig, 2, None)
    assert [t.interlock for t in rig.gate.acknowledge(rig.imaging())] == [InterlockId.UNCOMMANDED_OUTPUT]
    assert rig.gate.latched == () and rig.gate.heartbeat_withheld_since is not None
    assert not rig.gate.output_permitted(1)
    refused = rig.gate.request_output({1: 5.0}, rig.imaging())
    assert not refused and any("heartbeat withheld" in r for r in refused.reasons)
    assert all(not isinstance(m, SetOutput) for m in rig.wire())
    _heartbeats_sent(rig, LIMIT_TICKS, None)
    assert rig.gate.heartbeat_withheld_since is None
    assert rig.gate.output_permitted(1) and rig.gate.request_output({1: 5.0}, rig.imaging())


def test_active_alarms_come_highest_priority_first() -> None:
    rig = Rig()
    ready(rig)
    rig.healthy_tick({1: channel(impedance_ohm=900.0), 3: channel(impedance_ohm=55.0)})
    alarms = rig.gate.active_alarms
    assert [(t.interlock, t.channel) for t in alarms] == [
        (InterlockId.IMPEDANCE_LOW, 3), (InterlockId.IMPEDANCE_HIGH, 1)]
    assert [t.priority for t in alarms] == sorted((t.priority for t in alarms), reverse=True)


def test_a_condition_while_idle_inhibits_without_latching() -> None:
    rig = Rig()
    ready(rig)
    rig.clock.advance(0.01)
    rig.feed(telemetry({1: channel(impedance_ohm=2000.0)}))
    assert rig.gate.evaluate(rig.imaging()) == []
    assert rig.wire() == [] and rig.gate.latched == ()
    assert any(e.kind is EventKind.INHIBIT and e.interlock is InterlockId.IMPEDANCE_HIGH for e in rig.events)
    assert not rig.gate.output_permitted(1)
    rig.healthy_tick()
    assert rig.gate.output_permitted(1)


def test_a_generator_fault_trips_even_when_idle() -> None:
    rig = Rig()
    ready(rig)
    rig.clock.advance(0.01)
    rig.feed(telemetry(), status=Status(int(GeneratorState.FAULT), 0x10, 0x0102))
    trips = rig.gate.evaluate(rig.imaging())
    assert [t.interlock for t in trips] == [InterlockId.GENERATOR_FAULT]
    assert rig.wire() == [OutputOff(0x0F)]


@pytest.mark.parametrize("gen_step_us", [0, -500_000], ids=["frozen", "reset"])
def test_a_generator_clock_that_does_not_advance_trips_within_one_tick(gen_step_us: int) -> None:
    rig = Rig()
    rig.energise()
    rig.clock.advance(0.01)
    rig.feed(telemetry({1: channel(power_w=10.0, flags=ON)}), gen_step_us=gen_step_us)
    trips = rig.gate.evaluate(rig.imaging())
    assert [t.interlock for t in trips] == [InterlockId.GENERATOR_FAULT]
    assert rig.wire() == [OutputOff(0x0F)]
    assert [t.interlock for t in rig.gate.latched] == [InterlockId.GENERATOR_FAULT]


def test_a_telemetry_frame_the_link_repeats_is_not_taken_for_a_frozen_generator_clock() -> None:
    """A repeated frame (same SEQ, same bytes) is the link's doing, not the generator's: the driver drops it, so
    the trend sees no clock standing still and nothing trips (a different frame with a stalled clock does)."""
    rig = Rig()
    rig.energise()
    rig.clock.advance(0.01)
    rig.gen_time_us += 10_000
    _, frame = rig.encoder.encode(replace(telemetry({1: channel(power_w=10.0, flags=ON)}), gen_time_us=rig.gen_time_us))
    rig.device.write(frame + frame)
    rig.driver.poll()
    assert rig.gate.evaluate(rig.imaging()) == []
    assert (rig.driver.stats.duplicates, rig.driver.stats.seq_gaps) == (1, 0)
    assert rig.wire() == [] and rig.gate.latched == ()


def test_a_generator_replaying_its_last_frame_reads_as_silent() -> None:
    """A transmitter stuck replaying one TELEMETRY frame: the repeats are dropped, so the host sees no new frame
    and trips on stale telemetry (50 ms), with output off and the heartbeat withheld."""
    rig = Rig()
    rig.energise()
    rig.gen_time_us += 10_000
    _, frame = rig.encoder.encode(replace(telemetry({1: channel(power_w=10.0, flags=ON)}), gen_time_us=rig.gen_time_us))
    tripped_at = None
    for tick in range(10):
        rig.clock.advance(0.01)
        rig.device.write(frame)
        rig.driver.poll()
        if rig.gate.evaluate(rig.imaging()) and tripped_at is None:
            tripped_at = tick
    assert [t.interlock for t in rig.gate.latched] == [InterlockId.TELEMETRY_STALE]
    assert tripped_at is not None and tripped_at <= 5
    assert rig.driver.stats.duplicates == 9
    assert rig.gate.heartbeat_withheld_since is not None


@pytest.mark.parametrize("state", [int(GeneratorState.BOOT), 9], ids=["boot", "unknown"])
def test_a_generator_state_other_than_idle_or_output_trips_under_power(state: int) -> None:
    rig = Rig()
    rig.energise()
    rig.clock.advance(0.01)
    rig.feed(telemetry({1: channel(power_w=10.0, flags=ON)}), status=Status(state, 0, 0x0102))
    trips = rig.gate.evaluate(rig.imaging())
    assert [t.interlock for t in trips] == [InterlockId.GENERATOR_FAULT]
    assert rig.wire() == [OutputOff(0x0F)]


def test_a_booting_generator_only_refuses_output_while_idle() -> None:
    rig = Rig()
    ready(rig)
    rig.clock.advance(0.01)
    rig.feed(telemetry(), status=Status(int(GeneratorState.BOOT), 0, 0x0102))
    assert rig.gate.evaluate(rig.imaging()) == []
    assert rig.wire() == [] and rig.gate.latched == ()
    refused = rig.gate.request_output({1: 10.0}, rig.imaging())
    assert not refused and any("generator_fault" in r for r in refused.reasons)
    rig.healthy_tick()
    assert rig.gate.request_output({1: 10.0}, rig.imaging())


def test_a_normal_run_under_power_raises_no_generator_fault() -> None:
    rig = Rig()
    rig.energise()
    for _ in range(50):
        rig.healthy_tick({1: channel(power_w=10.0, flags=ON)})
        assert rig.gate.request_output({1: 10.0}, rig.imaging())
    assert not any(e.interlock is InterlockId.GENERATOR_FAULT for e in rig.events)
    assert rig.gate.commanded[0].on


def test_uncommanded_output_is_switched_off_again_every_tick() -> None:
    rig = Rig()
    rig.clock.advance(0.2)  # past the grace the generator has to obey the gate's initial OUTPUT_OFF
    ready(rig)
    for _ in range(3):
        rig.clock.advance(0.01)
        rig.feed(telemetry({4: channel(power_w=8.0, flags=ON)}))
        rig.gate.evaluate(rig.imaging())
    assert rig.wire() == [OutputOff(0x0F)] * 3
    assert sum(e.kind is EventKind.TRIP for e in rig.events) == 1


def settled() -> Rig:
    """A gate past the grace the generator has to obey its initial OUTPUT_OFF, after two healthy ticks."""
    rig = Rig()
    rig.clock.advance(0.2)
    ready(rig)
    return rig


def _heartbeats_sent(rig: Rig, ticks: int, chans: dict[int, ChannelTelemetry] | None) -> int:
    """Run ``ticks`` loop ticks (slack heartbeat through the gate, then the generator's frame, then evaluate);
    how many host heartbeats went on the wire."""
    sent = 0
    for _ in range(ticks):
        sent += rig.gate.keep_alive() is not None
        rig.clock.advance(0.01)
        rig.feed(telemetry(chans))
        rig.gate.evaluate(rig.imaging())
    return sent


LIMIT_TICKS = round(hard.WITHHELD_HEARTBEAT_LIMIT_S / 0.01)
WATCHDOG_TICKS = round(hard.GENERATOR_HEARTBEAT_TIMEOUT_S / 0.01)


def test_a_generator_that_keeps_output_on_against_output_off_has_its_heartbeat_withheld_until_it_stops() -> None:
    """OUTPUT_OFF re-sent every tick cannot stop a generator that ignores it; its own watchdog can, 250 ms after
    the last host heartbeat. So the gate sends no heartbeat while the output persists, nor until that watchdog
    has certainly acted, and resumes once output is seen off; the latch then outlives any acknowledgement."""
    rig = settled()
    _heartbeats_sent(rig, 5, None)
    assert _heartbeats_sent(rig, 30, None) == 3, "10 Hz while all is well"
    stuck = {2: channel(power_w=8.0, flags=ON)}
    assert _heartbeats_sent(rig, 1, stuck) <= 1  # the slack before the frame that shows it
    tripped_at = rig.clock.now()
    assert rig.gate.heartbeat_withheld_since == tripped_at
    assert _heartbeats_sent(rig, 20, stuck) == 0, "withheld while the output persists"
    kinds = [e.kind for e in rig.events if e.at >= tripped_at]
    assert kinds[:2] == [EventKind.TRIP, EventKind.HEARTBEAT_WITHHELD]
    withheld = next(e for e in rig.events if e.kind is EventKind.HEARTBEAT_WITHHELD)
    assert (withheld.interlock, withheld.priority) == (InterlockId.UNCOMMANDED_OUTPUT, Priority.HIGH)
    assert "channel 2 delivers 8.00 W" in withheld.detail
    assert _heartbeats_sent(rig, WATCHDOG_TICKS - 1, None) == 0, "output off at 0.21 s: seen off 0.25 s first"
    assert rig.gate.heartbeat_withheld_since == tripped_at
    _heartbeats_sent(rig, 2, None)
    assert rig.gate.heartbeat_withheld_since is None
    assert rig.events[-1].kind is EventKind.HEARTBEAT_RESUMED
    assert rig.events[-1].at - tripped_at >= 0.20 + hard.GENERATOR_HEARTBEAT_TIMEOUT_S
    assert not rig.gate.output_unstoppable
    assert _heartbeats_sent(rig, 20, None) == 2, "and the heartbeat goes out again at 10 Hz"
    assert rig.gate.acknowledge(rig.imaging()) == [], "ten OUTPUT_OFF ignored: no acknowledgement re-arms it"
    refused = rig.events[-1]
    assert refused.kind is EventKind.ACK_REFUSED and "must be serviced" in refused.detail
    assert not rig.gate.request_output({1: 5.0}, rig.imaging())


def test_output_that_comes_and_goes_cannot_reset_the_generators_watchdog() -> None:
    """Output flickering against OUTPUT_OFF (on for a frame, off for the next few) would send a heartbeat on each
    clean frame if a clean frame ended the withholding, and the watchdog would never act. It stays withheld,
    and output that outlasts the watchdog's time this way is reported unstoppable."""
    rig = settled()
    stuck = {3: channel(power_w=6.0, flags=ON)}
    _heartbeats_sent(rig, 1, stuck)
    sent = sum(_heartbeats_sent(rig, 1, stuck if tick % 20 == 0 else None) for tick in range(200))
    assert sent == 0 and rig.gate.heartbeat_withheld_since is not None
    assert rig.gate.output_unstoppable


def test_a_lost_output_off_costs_a_watchdog_cut_but_no_lasting_latch() -> None:
    """The OUTPUT_OFF was lost: the trip's own re-sent OUTPUT_OFF is obeyed on the next frame. The heartbeat is
    still withheld until the generator's watchdog has acted (output is commanded off everywhere anyway), and the
    latch can be acknowledged once the cause has cleared."""
    rig = settled()
    _heartbeats_sent(rig, 1, {4: channel(power_w=6.0, flags=ON)})
    assert _heartbeats_sent(rig, LIMIT_TICKS - 1, None) == 0
    _heartbeats_sent(rig, 2, None)
    assert rig.gate.heartbeat_withheld_since is None
    assert [t.interlock for t in rig.gate.acknowledge(rig.imaging())] == [InterlockId.UNCOMMANDED_OUTPUT]


def test_a_trip_on_lost_telemetry_withholds_the_heartbeat_but_silence_before_any_output_does_not() -> None:
    """After a trip on stale telemetry nothing shows that output went off, so the generator's own watchdog is
    left to make sure; before output was ever commanded the same silence is only an inhibit."""
    rig = Rig()
    rig.clock.advance(0.2)
    assert rig.gate.keep_alive() is not None, "the generator not yet heard: nothing is on, the heartbeat goes out"
    ready(rig)
    assert rig.gate.request_output({1: 10.0}, rig.imaging())
    for _ in range(6):  # the generator falls silent while RF is on
        rig.clock.advance(0.01)
        rig.gate.keep_alive()
        rig.gate.evaluate(rig.imaging())
    assert rig.gate.heartbeat_withheld_since is not None
    withheld = next(e for e in rig.events if e.kind is EventKind.HEARTBEAT_WITHHELD)
    assert withheld.interlock is InterlockId.TELEMETRY_STALE
    assert rig.gate.keep_alive() is None


def test_a_generator_that_falls_silent_before_a_channel_is_seen_off_has_its_heartbeat_withheld() -> None:
    """The lesion ends (channel_off), and the generator hangs before any frame shows the channel off: nothing
    is commanded, so stale telemetry is only an inhibit, yet output may be on. OUTPUT_OFF goes out every tick,
    the heartbeat is withheld, and requests are refused meanwhile."""
    rig = Rig()
    rig.energise()
    rig.gate.channel_off(1)
    rig.wire()
    for _ in range(6):  # silent from here on
        rig.clock.advance(0.01)
        rig.gate.keep_alive()
        assert rig.gate.evaluate(rig.imaging()) == [], "an inhibit: nothing latches"
    assert rig.gate.heartbeat_withheld_since is not None
    withheld = next(e for e in rig.events if e.kind is EventKind.HEARTBEAT_WITHHELD)
    assert withheld.interlock is InterlockId.TELEMETRY_STALE
    assert rig.wire()[-1] == OutputOff(0x0F)
    refused = rig.gate.request_output({2: 5.0}, rig.imaging())
    assert not refused and any("heartbeat withheld" in r for r in refused.reasons)
    assert not rig.gate.output_permitted(2)


def test_a_generator_seen_off_before_it_falls_silent_keeps_its_heartbeat() -> None:
    rig = Rig()
    rig.energise()
    rig.gate.channel_off(1)
    rig.healthy_tick()  # a frame read after the OUTPUT_OFF shows channel 1 off
    rig.healthy_tick()
    for _ in range(6):
        rig.clock.advance(0.01)
        rig.gate.evaluate(rig.imaging())
    assert rig.gate.heartbeat_withheld_since is None and rig.gate.keep_alive() is not None


@pytest.mark.parametrize(
    ("flags", "power_w", "seen_off"),
    [
        (ON, 0.0, False),
        (CONNECTED, hard.UNCOMMANDED_POWER_W + 0.01, False),
        (CONNECTED, hard.UNCOMMANDED_POWER_W, True),
    ],
)
def test_a_channel_is_seen_off_only_with_no_output_flag_and_no_more_than_the_uncommanded_power(
    flags: int, power_w: float, seen_off: bool
) -> None:
    """The frame after a channel's OUTPUT_OFF shows it off only as uncommanded_output would judge it off: no output
    flag and at most UNCOMMANDED_POWER_W. Otherwise a generator that falls silent next has its heartbeat withheld."""
    rig = Rig()
    rig.energise()
    rig.gate.channel_off(1)
    rig.healthy_tick({1: channel(power_w=power_w, flags=flags)})  # within the grace: no uncommanded_output yet
    for _ in range(6):  # silent from here on
        rig.clock.advance(0.01)
        rig.gate.evaluate(rig.imaging())
    assert (rig.gate.heartbeat_withheld_since is None) is seen_off


def test_a_generator_silent_past_the_withheld_heartbeat_limit_is_not_called_unstoppable() -> None:
    """Unstoppable means output seen on against OUTPUT_OFF and the generator's own watchdog: silence only hides
    whether output went off. It keeps the heartbeat withheld; once frames show the channel off, the heartbeat
    resumes and nothing is left latched for the session."""
    rig = Rig()
    rig.energise()
    rig.gate.channel_off(1)
    for _ in range(2 * LIMIT_TICKS):  # silent well past the limit
        rig.clock.advance(0.01)
        rig.gate.evaluate(rig.imaging())
    assert rig.gate.heartbeat_withheld_since is not None
    assert not rig.gate.output_unstoppable
    assert all(e.kind is not EventKind.OUTPUT_UNSTOPPABLE for e in rig.events)
    for _ in range(WATCHDOG_TICKS + 2):
        rig.healthy_tick()
    assert rig.gate.heartbeat_withheld_since is None
    rig.gate.acknowledge(rig.imaging())
    assert rig.gate.latched == () and rig.gate.request_output({2: 5.0}, rig.imaging())


def test_output_that_flickers_past_the_generators_watchdog_is_not_re_armed() -> None:
    rig = settled()
    stuck = {3: channel(power_w=6.0, flags=ON)}
    _heartbeats_sent(rig, 1, stuck)
    for tick in range(60):  # never ten frames in a row: only the watchdog's time tells it is not obeying
        _heartbeats_sent(rig, 1, stuck if tick % 5 == 0 else None)
    assert rig.gate.output_unstoppable
    _heartbeats_sent(rig, 60, None)
    assert rig.gate.heartbeat_withheld_since is None
    assert rig.gate.acknowledge(rig.imaging()) == []
    assert rig.events[-1].kind is EventKind.ACK_REFUSED and "must be serviced" in rig.events[-1].detail


def test_the_generators_heartbeat_timeout_is_the_simulators_and_the_contracts() -> None:
    assert hard.GENERATOR_HEARTBEAT_TIMEOUT_S == HOST_HEARTBEAT_TIMEOUT_S == 0.25  # ARCHITECTURE.md section 4


def test_output_that_outlasts_the_withheld_heartbeat_is_reported_once_as_unstoppable() -> None:
    rig = settled()
    stuck = {1: channel(power_w=12.0, flags=ON)}
    _heartbeats_sent(rig, 1, stuck)
    since = rig.gate.heartbeat_withheld_since
    assert since is not None
    _heartbeats_sent(rig, LIMIT_TICKS - 1, stuck)
    assert not rig.gate.output_unstoppable, "not before the generator's watchdog has had its time"
    _heartbeats_sent(rig, 50, stuck)
    assert rig.gate.output_unstoppable
    unstoppable = [e for e in rig.events if e.kind is EventKind.OUTPUT_UNSTOPPABLE]
    assert len(unstoppable) == 1
    assert hard.WITHHELD_HEARTBEAT_LIMIT_S - 1e-9 <= unstoppable[0].at - since <= hard.WITHHELD_HEARTBEAT_LIMIT_S + 0.01
    assert "mains switch" in unstoppable[0].detail


def test_operator_stop_turns_off_at_once_and_needs_acknowledge() -> None:
    rig = Rig()
    ready(rig)
    assert rig.gate.request_output({1: 10.0}, rig.imaging())
    rig.wire()
    rig.gate.operator_stop()
    assert rig.wire() == [OutputOff(0x0F)]
    rig.healthy_tick()
    assert rig.wire() == [], "the stop already sent its OUTPUT_OFF"
    assert not rig.gate.request_output({1: 10.0}, rig.imaging())
    assert [t.interlock for t in rig.gate.acknowledge(rig.imaging())] == [InterlockId.OPERATOR_STOP]
    rig.healthy_tick()
    assert rig.gate.request_output({1: 10.0}, rig.imaging())


def test_lesion_time_is_accounted_by_the_gate_and_ends_the_lesion() -> None:
    rig = Rig()
    ready(rig)
    assert rig.gate.request_output({1: 10.0}, rig.imaging())
    rig.wire()
    rig.clock.advance(92.0)
    assert rig.gate.snapshot().rf_on_s[0] == pytest.approx(92.0)
    rig.clock.advance(0.01)
    rig.feed(telemetry({1: channel(80.0, power_w=7.0, flags=ON)}))
    trips = rig.gate.evaluate(rig.imaging())
    assert {t.interlock for t in trips} >= {InterlockId.LESION_TIME_EXCEEDED}
    assert rig.wire()[0] == OutputOff(0x0F), "the loop overrun (92 s without a tick) stops all channels"
    rig.healthy_tick()
    assert InterlockId.LESION_TIME_EXCEEDED not in {t.interlock for t in rig.gate.acknowledge(rig.imaging())}


def test_a_request_at_exactly_its_rf_time_budget_is_refused_for_want_of_rf_time() -> None:
    """A request needs RF time left: at exactly the budget (planned time + tolerance) there is none. Times are
    whole binary fractions here, so the RF time accounted lands on the budget exactly."""
    rig = Rig()
    ready(rig)
    rig.clock.sleep_until(0.125)
    rig.feed(telemetry())
    rig.gate.evaluate(rig.imaging())
    assert rig.gate.request_output({1: 10.0}, rig.imaging())
    budget_s = rig.gate.rules.by_channel[1].rf_time_budget_s
    rig.clock.sleep_until(0.125 + budget_s)
    assert rig.gate.snapshot(rig.imaging()).rf_on_s[0] == budget_s
    refused = rig.gate.request_output({1: 10.0}, rig.imaging())
    assert not refused and any("no RF time left" in r for r in refused.reasons), refused.reasons


def test_channels_of_different_modes_are_refused_in_one_request() -> None:
    """One SET_OUTPUT carries one mode and waveform: a continuous and a pulsed lesion asked for together would
    send one of them in the other's mode. Each on its own is granted."""
    pulsed = Lesion.model_validate({**pulsed_plan().lesions[0].model_dump(), "channel": 2})
    rig = Rig(plan=LesionPlan(name="mixed", imaging_required=False,
                              lesions=(default_genicular_plan().lesions[0], pulsed)))
    ready(rig)
    refused = rig.gate.request_output({1: 5.0, 2: 20.0})
    assert not refused and any("share a mode and waveform" in r for r in refused.reasons)
    assert all(not isinstance(m, SetOutput) for m in rig.wire())
    assert rig.gate.request_output({1: 5.0}) and rig.gate.request_output({2: 20.0})


def test_a_request_the_measurement_would_trip_on_at_once_is_refused_as_requested() -> None:
    """A channel just turned off may still show its old power within the grace the generator has to obey: turning
    it on again at a far lower setpoint would trip over_power on the next frame, so the request is refused, naming
    the interlock, and nothing is sent."""
    rig = Rig()
    rig.energise()
    rig.gate.channel_off(1)
    rig.healthy_tick({1: channel(power_w=10.0, flags=ON)})  # still delivering, within the grace
    rig.wire()
    refused = rig.gate.request_output({1: 2.0}, rig.imaging())
    assert not refused
    assert any(r.startswith("over_power: channel 1") and r.endswith("(as requested)") for r in refused.reasons)
    assert rig.wire() == [] and not rig.gate.commanded[0].on


def test_pulsed_requests_carry_the_plan_waveform() -> None:
    rig = Rig(plan=pulsed_plan())
    ready(rig)
    assert not rig.gate.request_output({1: 45.01})
    assert rig.gate.request_output({1: 40.0})
    assert rig.wire() == [SetOutput(0b0001, int(OutputMode.RF_PULSED), (4000, 0, 0, 0), 20_000, 20)]


def test_bipolar_requests_drive_the_pair_and_the_partner_alone_is_refused() -> None:
    rig = Rig(plan=bipolar_plan())
    ready(rig)
    assert not rig.gate.request_output({2: 10.0})
    assert rig.gate.request_output({1: 10.0})
    assert rig.wire() == [SetOutput(0b0011, int(OutputMode.RF_BIPOLAR), (1000, 0, 0, 0), 0, 0)]
    assert [c.on for c in rig.gate.commanded] == [True, True, False, False]


def test_ending_a_bipolar_lesion_turns_off_both_sides_of_the_pair() -> None:
    rig = Rig(plan=bipolar_plan())
    ready(rig)
    assert rig.gate.request_output({1: 10.0})
    rig.wire()
    rig.gate.channel_off(1)
    assert rig.wire() == [OutputOff(0b0011)]
    assert [c.on for c in rig.gate.commanded] == [False, False, False, False]


def test_a_stimulus_just_stopped_may_still_show_within_the_grace_without_tripping() -> None:
    """The generator needs a moment to obey the stop, as it does OUTPUT_OFF: the grace counts from the stop, not from
    when the stimulus started."""
    rig = Rig()
    ready(rig)
    assert rig.gate.request_stim(1, StimKind.SENSORY, 1000, rig.imaging())
    stimulating = {1: channel(voltage_v=1.0, flags=ON)}
    for _ in range(50):
        rig.healthy_tick(stimulating)
    rig.gate.stop_stim()
    rig.clock.advance(0.01)
    rig.feed(telemetry(stimulating))  # read before the generator took the stop
    assert rig.gate.evaluate(rig.imaging()) == []
    rig.healthy_tick()
    assert rig.gate.latched == () and rig.gate.heartbeat_withheld_since is None


def test_stimulation_uses_plan_settings_and_excludes_rf() -> None:
    rig = Rig()
    ready(rig)
    assert not rig.gate.request_stim(1, StimKind.SENSORY, 2001, rig.imaging())
    assert rig.gate.request_stim(1, StimKind.SENSORY, 400, rig.imaging())
    assert rig.wire() == [Stim(0b0001, 500, 1000, 400)]
    assert not rig.gate.request_stim(2, StimKind.MOTOR, 400, rig.imaging())
    assert not rig.gate.request_output({1: 5.0}, rig.imaging())
    rig.gate.stop_stim()
    assert rig.wire() == [Stim(0x0F, 0, 0, 0)]
    assert rig.gate.request_stim(2, StimKind.MOTOR, 1000, rig.imaging())
    assert rig.wire() == [Stim(0b0010, 20, 1000, 1000)]


def test_a_trip_during_stimulation_stops_it_after_output_off() -> None:
    rig = Rig()
    ready(rig)
    assert rig.gate.request_stim(1, StimKind.SENSORY, 400, rig.imaging())
    rig.wire()
    rig.clock.advance(0.01)
    rig.feed(telemetry({1: channel(flags=0x0A)}))
    rig.gate.evaluate(rig.imaging())
    assert rig.wire() == [OutputOff(0b0001), Stim(0b0001, 0, 0, 0)]
    assert not rig.gate.commanded[0].energised, "the gate counts the stimulus stopped, as it is on the wire"


def test_stimulation_is_refused_while_rf_is_on_on_any_channel() -> None:
    rig = Rig()
    ready(rig)
    assert rig.gate.request_output({1: 10.0}, rig.imaging())
    rig.wire()
    refused = rig.gate.request_stim(2, StimKind.SENSORY, 400, rig.imaging())
    assert not refused and any("RF output is on" in r for r in refused.reasons)
    assert rig.wire() == [] and rig.gate.commanded[1].stim_amplitude_mv == 0


def test_a_bipolar_partners_electrode_is_stimulated_on_its_own_channel_and_judged_there() -> None:
    """Each needle of a bipolar pair lies near a nerve of its own: the motor test must reach the partner's too (it
    was refused, so a pair's second needle went to its lesion untested). The stimulus goes out on the partner's
    channel alone, and a weak one there trips there."""
    rig = Rig(plan=bipolar_plan())
    ready(rig)
    assert rig.gate.request_stim(2, StimKind.MOTOR, 400, rig.imaging())
    assert rig.wire() == [Stim(0b0010, 20, 1000, 400)]
    trips: list[Trip] = []
    for _ in range(round((hard.STIM_SETTLE_S + 0.05) / 0.01)):
        rig.clock.advance(0.01)
        rig.feed(telemetry({2: channel(voltage_v=0.1, flags=ON)}))
        trips += rig.gate.evaluate(rig.imaging())
    assert [(t.interlock, t.channel) for t in trips] == [(InterlockId.STIMULATION_MISMATCH, 2)]
    refused = rig.gate.request_stim(3, StimKind.MOTOR, 400, rig.imaging())
    assert not refused and "channel 3 has no electrode in the plan" in refused.reasons


def test_a_stimulus_off_its_commanded_amplitude_trips_once_each_new_amplitude_has_settled() -> None:
    """The session raises the amplitude step by step: a frame that still shows the previous step within the
    settling time is not a mismatch; a stimulus that stays weak is, and is stopped like any trip."""
    rig = Rig()
    ready(rig)

    def stimulus_for(seconds: float, volts: float) -> list[Trip]:
        trips = []
        for _ in range(round(seconds / 0.01)):
            rig.clock.advance(0.01)
            rig.feed(telemetry({1: channel(voltage_v=volts, flags=ON)}))
            trips += rig.gate.evaluate(rig.imaging())
        return trips

    assert rig.gate.request_stim(1, StimKind.MOTOR, 1000, rig.imaging())
    assert stimulus_for(0.05, 0.0) == []  # the generator has not applied it yet
    assert stimulus_for(0.5, 1.0) == []
    assert rig.gate.request_stim(1, StimKind.MOTOR, 1500, rig.imaging())
    assert stimulus_for(hard.STIM_SETTLE_S - 0.01, 1.0) == []  # the previous step, still settling
    assert stimulus_for(0.5, 1.5) == []
    rig.wire()
    (trip,) = stimulus_for(0.02, 0.7)
    assert (trip.interlock, trip.channel) == (InterlockId.STIMULATION_MISMATCH, 1)
    assert "measured 0.70 V, commanded 1.50 V" in trip.reason
    assert rig.wire() == [OutputOff(0b0001), Stim(0b0001, 0, 0, 0)]
    assert not rig.gate.request_stim(1, StimKind.MOTOR, 1500, rig.imaging()), "latched until acknowledged"


def test_re_sending_the_same_amplitude_does_not_restart_the_settling_time() -> None:
    """Only a new amplitude takes time to show: a caller re-sending the same one often must not keep the
    check blind."""
    rig = Rig()
    ready(rig)
    assert rig.gate.request_stim(1, StimKind.MOTOR, 1000, rig.imaging())
    for _ in range(30):
        rig.clock.advance(0.01)
        rig.feed(telemetry({1: channel(voltage_v=1.0, flags=ON)}))
        assert rig.gate.evaluate(rig.imaging()) == []
    assert rig.gate.request_stim(1, StimKind.MOTOR, 1000, rig.imaging())
    rig.clock.advance(0.01)
    rig.feed(telemetry({1: channel(voltage_v=0.5, flags=ON)}))
    assert [t.interlock for t in rig.gate.evaluate(rig.imaging())] == [InterlockId.STIMULATION_MISMATCH]


def test_a_watchdog_trip_is_handed_over_once_and_a_failed_one_not_at_all() -> None:
    rig = Rig()
    dog = Watchdog(rig.gate, rig.clock)
    dog.kick()
    rig.clock.advance(0.03)
    assert dog.tick()
    (trip,) = rig.gate.take_trips_between_ticks()
    assert trip.interlock is InterlockId.CONTROL_LOOP_OVERRUN and trip.reason.startswith("watchdog: no loop kick")
    assert rig.gate.take_trips_between_ticks() == []
    rig.wire()
    latched: list[bool] = []
    rig.gate._lock.acquire()  # a caller stuck inside the gate: the watchdog can only turn output off
    try:
        done = threading.Thread(
            target=lambda: latched.append(rig.gate.trip_from_watchdog("stuck", lock_timeout_s=0.01)))
        done.start()
        done.join()
    finally:
        rig.gate._lock.release()
    assert rig.gate.take_trips_between_ticks() == []
    assert latched == [False] and rig.wire() == [OutputOff(0x0F)], "OUTPUT_OFF written all the same, unlatched"


def test_a_stall_an_evaluation_already_tripped_is_not_handed_over_again_by_the_watchdog() -> None:
    """The watchdog's thread read a stale kick, then waited for the gate while the loop evaluated (and
    returned) the same overrun: forcing it afterwards must not make it a second trip for the procedure."""
    rig = Rig()
    ready(rig)
    dog = Watchdog(rig.gate, rig.clock)
    assert rig.gate.request_output({1: 5.0}, rig.imaging())
    rig.healthy_tick()
    dog.kick()
    rig.clock.advance(0.03)
    rig.feed(telemetry())
    assert [t.interlock for t in rig.gate.evaluate(rig.imaging())] == [InterlockId.CONTROL_LOOP_OVERRUN]
    rig.gate.trip_from_watchdog("watchdog: no loop kick for 30.0 ms (limit 20 ms)")
    assert rig.gate.take_trips_between_ticks() == []


def test_a_watchdog_trip_whose_record_failed_is_handed_over_all_the_same_and_once() -> None:
    failing = [True]

    def record(event: SafetyEvent) -> None:
        if failing[0] and event.kind is EventKind.TRIP:
            raise OSError("disk full")

    clock = SimClock(0.0)
    gate = OutputGate(RfGenerator(memory_pair("gate")[0], clock), default_genicular_plan(), HARD_LIMITS, clock,
                      record)
    with pytest.raises(OSError):
        gate.trip_from_watchdog("watchdog: no loop kick for 30.0 ms (limit 20 ms)")
    failing[0] = False
    gate.trip_from_watchdog("watchdog: no loop kick for 35.0 ms (limit 20 ms)")  # the thread's next check
    (trip,) = gate.take_trips_between_ticks()
    assert trip.reason.endswith("30.0 ms (limit 20 ms)") and [t.key for t in gate.latched] == [trip.key]


def test_channel_off_and_load_plan() -> None:
    rig = Rig()
    ready(rig)
    assert rig.gate.request_output({1: 10.0}, rig.imaging())
    assert not rig.gate.load_plan(default_genicular_plan()), "no plan change while RF is on"
    rig.gate.channel_off(1)
    rig.gate.all_off()
    assert rig.wire()[-2:] == [OutputOff(0b0001), OutputOff(0x0F)]
    assert rig.gate.load_plan(pulsed_plan())
    assert rig.gate.rules.plan.name == "pulsed"


def test_a_plan_loaded_restarts_every_channels_rf_time() -> None:
    """A plan uses each channel once; loading another (to repeat or add lesions) gives each its whole budget again."""
    rig = Rig()
    ready(rig)
    assert rig.gate.request_output({1: 10.0}, rig.imaging())
    for _ in range(10):
        rig.healthy_tick({1: channel(power_w=10.0, flags=ON)})
    rig.gate.channel_off(1)
    assert rig.gate.snapshot(rig.imaging()).rf_on_s[0] == pytest.approx(0.1)
    assert rig.gate.load_plan(default_genicular_plan())
    assert rig.gate.snapshot(rig.imaging()).rf_on_s == (0.0, 0.0, 0.0, 0.0)


def test_a_plan_is_not_replaced_while_a_channel_stimulates() -> None:
    rig = Rig()
    ready(rig)
    assert rig.gate.request_stim(1, StimKind.SENSORY, 400, rig.imaging())
    refused = rig.gate.load_plan(default_genicular_plan())
    assert not refused and refused.reasons == ("output or stimulation is on",)
    rig.gate.stop_stim()
    assert rig.gate.load_plan(default_genicular_plan())


def test_an_operator_stop_holds_as_a_condition_until_acknowledged() -> None:
    """The stop is its own cause: ticks after it keep it active (no CLEARED event), as the snapshot says, and the
    acknowledgement ends it."""
    rig = Rig()
    ready(rig)
    rig.gate.operator_stop()
    for _ in range(3):
        rig.healthy_tick()
    assert rig.gate.snapshot(rig.imaging()).operator_stop
    stop = (InterlockId.OPERATOR_STOP, None)
    assert stop in {(t.interlock, t.channel) for t in rig.gate.active_alarms}
    assert [e.kind for e in rig.events if e.interlock is InterlockId.OPERATOR_STOP] == [EventKind.TRIP], (
        "one trip, then active: no inhibit, no clearing, recorded for it")
    assert [t.interlock for t in rig.gate.acknowledge(rig.imaging())] == [InterlockId.OPERATOR_STOP]
    assert not rig.gate.snapshot(rig.imaging()).operator_stop


def test_a_frame_read_in_the_same_moment_as_an_output_off_does_not_show_the_channel_off() -> None:
    """Read before the OUTPUT_OFF went out (one poll, then the lesion's end, in one tick), the frame cannot show
    the generator obeying it: a generator that falls silent next has its heartbeat withheld."""
    rig = Rig()
    rig.energise()
    rig.clock.advance(0.01)
    rig.feed(telemetry())  # the frame read at this moment, before the OUTPUT_OFF
    rig.gate.channel_off(1)
    for _ in range(6):  # then silent
        rig.gate.evaluate(rig.imaging())
        rig.clock.advance(0.01)
    assert rig.gate.heartbeat_withheld_since is not None


def test_decision_is_truthy_only_when_allowed() -> None:
    assert Decision(True) and not Decision(False, ("no",))


# -- the capability: nobody but the gate can enable output ---------------------------------------------


def test_the_gate_is_the_only_holder_of_the_capability() -> None:
    rig = Rig()
    with pytest.raises(CapabilityError):
        rig.driver.claim_output_capability()
    with pytest.raises(CapabilityError):
        OutputGate(rig.driver, default_genicular_plan(), rig.limits, rig.clock, lambda e: None)
    forged = OutputCapability(rig.driver)
    msg = SetOutput(0x01, int(OutputMode.RF_CONTINUOUS), (5000, 0, 0, 0))
    for capability in (forged, None, object()):
        with pytest.raises(CapabilityError):
            rig.driver.set_output(capability, msg)  # type: ignore[arg-type]
        with pytest.raises(CapabilityError):
            rig.driver.stim(capability, Stim(0x01, 500, 1000, 400))  # type: ignore[arg-type]
    assert rig.wire() == []


def _references(package: str, name: str) -> list[str]:
    found = []
    for path in sorted((ROOT / package).rglob("*.py")):
        tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
        for node in ast.walk(tree):
            if (isinstance(node, ast.Attribute) and node.attr == name) or (
                isinstance(node, ast.Name | ast.alias)
                and getattr(node, "id", getattr(node, "name", "")) == name
            ):
                found.append(f"{path.relative_to(ROOT)}:{getattr(node, 'lineno', '?')}")
    return found


@pytest.mark.parametrize(
    ("package", "name"),
    [
        ("control", "claim_output_capability"),
        ("control", "OutputCapability"),
        ("control", "_capability"),
        ("control", "set_output"),
        ("sim", "claim_output_capability"),
        ("sim", "OutputCapability"),
    ],
)
def test_no_code_outside_safety_touches_the_enabling_path(package: str, name: str) -> None:
    """control/ never claims the capability nor calls SET_OUTPUT; sim/ never claims the host's capability."""
    assert _references(package, name) == []


def test_the_scanner_finds_the_gate_claiming_the_capability() -> None:
    assert _references("safety", "claim_output_capability") != []


def test_a_setpoint_lowered_every_tick_does_not_keep_the_settling_ceiling_alive() -> None:
    # The loop asks for a new, lower setpoint every tick. Each lowered setpoint may show in the measurement
    # for SETPOINT_SETTLE_S, but no longer: a generator still delivering the first 20 W 0.3 s later trips.
    rig = Rig()
    ready(rig)
    assert rig.gate.request_output({1: 20.0}, rig.imaging())
    for k in range(1, 31):  # 20 W down to 5 W over 0.3 s, 0.5 W per tick
        rig.clock.advance(0.01)
        rig.feed(telemetry({1: channel(power_w=20.0, flags=ON)}))
        trips = rig.gate.evaluate(rig.imaging())
        if trips:
            break
        rig.gate.request_output({1: 20.0 - 0.5 * k}, rig.imaging())
    assert [t.interlock for t in trips] == [InterlockId.OVER_POWER]
    # The allowance is the setpoint of at most SETPOINT_SETTLE_S ago (+ tolerance), never the first 20 W.
    assert rig.clock.now() - NOW < 0.3


def _lowered(rig: Rig) -> int:
    """Channel 1 delivering 20 W, then lowered to 5 W: the lowering command's SEQ (nothing sent is answered yet)."""
    ready(rig)
    assert rig.gate.request_output({1: 20.0}, rig.imaging())
    rig.healthy_tick({1: channel(power_w=20.0, flags=ON)})
    rig.wire()
    lowered = rig.gate.request_output({1: 5.0}, rig.imaging())
    assert lowered and lowered.seq is not None
    return lowered.seq


def test_a_generator_slow_to_take_a_lowered_setpoint_may_deliver_the_old_one_until_it_has_settled_after_its_ack(
) -> None:
    """Held up before taking the lowering command (a busy firmware; in the HIL suite, a simulator process its VM
    stalled), the generator goes on delivering 20 W: allowed until SETPOINT_SETTLE_S after its ACK, not after the
    send, which tripped over-power on a generator doing nothing wrong."""
    rig = Rig()
    seq = _lowered(rig)
    old = {1: channel(power_w=20.0, flags=ON)}
    for _ in range(12):  # 120 ms: past the send + SETPOINT_SETTLE_S, within COMMAND_ANSWER_S
        assert _deaf_tick(rig, old) == []
    rig.send(Ack(SetOutput.MSG_ID, seq, int(AckResult.OK)))  # taken at last
    acked_at = rig.clock.now()
    trips: list[Trip] = []
    while not trips and rig.clock.now() - acked_at < 0.5:
        rig.clock.advance(0.01)
        rig.feed(telemetry(old))  # answering again, but delivering 20 W still
        trips = rig.gate.evaluate(rig.imaging())
    assert [t.interlock for t in trips] == [InterlockId.OVER_POWER]
    assert hard.SETPOINT_SETTLE_S < rig.clock.now() - acked_at <= hard.SETPOINT_SETTLE_S + 0.01 + 1e-9


def test_a_lowered_setpoint_answered_at_once_settles_from_its_ack() -> None:
    rig = Rig()
    _lowered(rig)
    sent_at = rig.clock.now()
    trips: list[Trip] = []
    while not trips and rig.clock.now() - sent_at < 0.5:
        rig.clock.advance(0.01)
        rig.feed(telemetry({1: channel(power_w=20.0, flags=ON)}))  # the ACK comes with the first tick
        trips = rig.gate.evaluate(rig.imaging())
    assert [t.interlock for t in trips] == [InterlockId.OVER_POWER]
    assert rig.clock.now() - sent_at <= 0.01 + hard.SETPOINT_SETTLE_S + 0.01 + 1e-9


def test_a_setpoint_lowered_while_an_earlier_one_settles_gets_a_settling_time_of_its_own() -> None:
    """A real-time HIL run: lowered 20 -> 15 W, raised to 17 W, then lowered to 8 W a tick before the 20 W's settling
    ended. The next frame still showed 17 W (the generator had not taken the 8 W yet) and tripped over-power, as if
    the 17 W had never been commanded: the lowering to 8 W had no settling of its own while the 20 W's went on."""
    rig = Rig()
    ready(rig)
    assert rig.gate.request_output({1: 20.0}, rig.imaging())
    rig.healthy_tick({1: channel(power_w=20.0, flags=ON)})
    assert rig.gate.request_output({1: 15.0}, rig.imaging())
    rig.healthy_tick({1: channel(power_w=15.0, flags=ON)})  # its ACK: the 20 W settles 100 ms from now
    first_settled_at = rig.clock.now() + hard.SETPOINT_SETTLE_S
    assert rig.gate.request_output({1: 17.0}, rig.imaging())
    while rig.clock.now() < first_settled_at - 0.01 - 1e-9:
        rig.healthy_tick({1: channel(power_w=17.0, flags=ON)})
    assert rig.gate.request_output({1: 8.0}, rig.imaging())
    still_17 = {1: channel(power_w=17.0, flags=ON)}
    rig.clock.advance(0.01)
    rig.feed(telemetry(still_17))  # with the 8 W's ACK: the 17 W may show for SETPOINT_SETTLE_S more, no longer
    acked_at = rig.clock.now()
    trips = rig.gate.evaluate(rig.imaging())
    assert trips == [], "17 W just after the lowering to 8 W is the generator settling"
    while not trips and rig.clock.now() - acked_at < 0.5:
        rig.clock.advance(0.01)
        rig.feed(telemetry(still_17))
        trips = rig.gate.evaluate(rig.imaging())
    assert [t.interlock for t in trips] == [InterlockId.OVER_POWER]
    assert hard.SETPOINT_SETTLE_S <= rig.clock.now() - acked_at <= hard.SETPOINT_SETTLE_S + 0.01 + 1e-9


def test_a_lowering_whose_ack_is_lost_keeps_its_predecessor_no_longer_than_answer_plus_settle_after_the_send(
) -> None:
    """The lowering's ACK is lost (later commands are answered, so the link is not lost) and a stray copy of it comes
    200 ms after the send: the 20 W may show until COMMAND_ANSWER_S + SETPOINT_SETTLE_S after the send, no longer."""
    rig = Rig()
    ready(rig)
    assert rig.gate.request_output({1: 20.0}, rig.imaging())
    rig.healthy_tick({1: channel(power_w=20.0, flags=ON)})
    lowered = rig.gate.request_output({1: 5.0}, rig.imaging())
    assert lowered and lowered.seq is not None
    sent_at = rig.clock.now()
    rig.lose(lowered.seq)
    old = {1: channel(power_w=20.0, flags=ON)}
    trips: list[Trip] = []
    while not trips and rig.clock.now() - sent_at < 0.6:
        rig.clock.advance(0.01)
        if abs(rig.clock.now() - sent_at - 0.2) < 1e-6:
            rig.send(Ack(SetOutput.MSG_ID, lowered.seq, int(AckResult.OK)))
        rig.feed(telemetry(old))
        trips = rig.gate.evaluate(rig.imaging())
        if not trips:
            assert rig.gate.request_output({1: 5.0}, rig.imaging())  # the loop goes on asking for 5 W
    assert [t.interlock for t in trips] == [InterlockId.OVER_POWER]
    bound = hard.COMMAND_ANSWER_S + hard.SETPOINT_SETTLE_S
    assert bound - 1e-9 <= rig.clock.now() - sent_at <= bound + 0.01 + 1e-9


def test_a_lowering_whose_write_blocked_settles_from_the_end_of_the_write(monkeypatch: pytest.MonkeyPatch) -> None:
    """The host's write of the lowering blocks for 8 ms (a full serial buffer, a stalled USB adapter); the generator,
    held up, answers it 147 ms after the write ended (within COMMAND_ANSWER_S, so the link is not lost) and goes on
    delivering the old 20 W until it has settled, within SETPOINT_SETTLE_S of that ACK. Nothing wrong there:
    link_lost counts the answer from the end of the write, and so does the settling now. Counted from the request
    it ended 8 ms early, and a tick that came late in that window tripped over-power on a correct generator."""
    rig = Rig()
    ready(rig)
    assert rig.gate.request_output({1: 20.0}, rig.imaging())
    rig.healthy_tick({1: channel(power_w=20.0, flags=ON)})
    rig.wire()
    write = rig.host.write

    def blocking_write(data: bytes) -> None:
        rig.clock.advance(0.008)
        write(data)

    monkeypatch.setattr(rig.host, "write", blocking_write)
    lowered = rig.gate.request_output({1: 5.0}, rig.imaging())
    monkeypatch.undo()
    assert lowered and lowered.seq is not None
    written_at = rig.clock.now()
    old = {1: channel(power_w=20.0, flags=ON)}

    def tick_at(t: float, *, answer: bool = True) -> list[Trip]:
        rig.clock.advance(written_at + t - rig.clock.now())
        rig.feed(telemetry(old), answer=answer)
        return rig.gate.evaluate(rig.imaging())

    for k in range(1, 15):
        assert tick_at(0.01 * k, answer=False) == []
    rig.send(Ack(SetOutput.MSG_ID, lowered.seq, int(AckResult.OK)))
    acked = 0.147
    for t in (acked, *(acked + 0.01 * k for k in range(1, 10))):
        assert tick_at(t) == []
    assert tick_at(acked + hard.SETPOINT_SETTLE_S - 0.003) == [], "a late tick, still within the settling"
    assert [t.interlock for t in tick_at(acked + hard.SETPOINT_SETTLE_S + 0.007)] == [InterlockId.OVER_POWER]


def test_a_lowering_drops_the_lower_predecessors_it_covers_though_one_of_their_acks_was_lost() -> None:
    """12 W lowered to 10 W (that ACK lost), raised to 20 W, then lowered to 5 W: the 20 W predecessor covers the
    12 W one, which goes. Once the 5 W command's ACK has come and the settling time passed, the generator has taken
    every command before it (it takes them in order), so 10 W then is over power, though the lost ACK's 12 W would
    still be settling by the deadline it had from its send."""
    rig = Rig()
    ready(rig)
    assert rig.gate.request_output({1: 12.0}, rig.imaging())
    rig.healthy_tick({1: channel(power_w=12.0, flags=ON)})
    lowered = rig.gate.request_output({1: 10.0}, rig.imaging())
    assert lowered.seq is not None
    rig.lose(lowered.seq)
    assert rig.gate.request_output({1: 20.0}, rig.imaging())
    assert rig.gate.request_output({1: 5.0}, rig.imaging())
    lowered_at = rig.clock.now()
    assert [s.setpoint for s in rig.gate.commanded[0].settling] == [20.0]
    tripped_at = None
    while tripped_at is None and rig.clock.now() - lowered_at < 0.3:
        rig.clock.advance(0.01)
        rig.feed(telemetry({1: channel(power_w=10.0, flags=ON)}))
        if any(t.interlock is InterlockId.OVER_POWER for t in rig.gate.evaluate(rig.imaging())):
            tripped_at = rig.clock.now()
    assert tripped_at is not None
    assert tripped_at - lowered_at <= 0.01 + hard.SETPOINT_SETTLE_S + 0.01 + 1e-9, "ACK read at the first tick"


def test_a_setpoint_lowered_every_tick_for_seconds_keeps_little_settling() -> None:
    """Each lowering's predecessor leaves once settled: 5 s of lowering every tick keeps about a settling time's."""
    rig = Rig()
    ready(rig)
    setpoint = 25.0
    assert rig.gate.request_output({1: setpoint}, rig.imaging())
    for tick in range(500):
        rig.clock.advance(0.01)
        rig.feed(telemetry({1: channel(power_w=setpoint, flags=ON)}))  # the generator follows at once
        assert rig.gate.evaluate(rig.imaging()) == []
        setpoint = round(setpoint - 0.04, 2) if tick % 50 else 25.0
        assert rig.gate.request_output({1: setpoint}, rig.imaging())
        assert len(rig.gate.commanded[0].settling) <= (hard.SETPOINT_SETTLE_S + 0.01) / 0.01 + 1


@given(st.lists(st.integers(0, 2000), min_size=2, max_size=40))
def test_a_generator_that_settles_every_setpoint_in_time_never_trips_over_power(centi_watts: list[int]) -> None:
    """Any setpoints, one a tick, from a generator that takes each with its ACK, read at the next tick, and whose
    output falls from the setpoint before within SETPOINT_SETTLE_S of it (5 ms sooner, clear of the boundary's
    rounding): every frame shows the highest power it could still show, and none trips over-power."""
    rig = Rig()
    ready(rig)
    setpoints = [c / 100 for c in centi_watts]
    assert rig.gate.request_output({1: setpoints[0]}, rig.imaging())
    taken_at: list[float] = []  # when the generator took each setpoint: with its ACK, at the next tick's read
    for tick, setpoint in enumerate(setpoints[1:], start=1):
        rig.clock.advance(0.01)
        now = rig.clock.now()
        taken_at.append(now)
        still_showing = [setpoints[j - 1] for j in range(1, tick) if now < taken_at[j] + hard.SETPOINT_SETTLE_S - 0.005]
        shown = max([setpoints[tick - 1], *still_showing])
        rig.feed(telemetry({1: channel(power_w=shown, flags=ON)}))
        trips = rig.gate.evaluate(rig.imaging())
        assert trips == [], (tick, shown, setpoints[: tick + 1])
        assert rig.gate.request_output({1: setpoint}, rig.imaging()), (tick, shown, setpoints[: tick + 1])


@pytest.mark.parametrize("result", [AckResult.REFUSED_LIMIT, AckResult.REFUSED_STATE, AckResult.BAD_PARAMETER])
def test_a_refused_set_output_trips_on_the_tick_it_is_read_and_clears_once_output_is_off(result: AckResult) -> None:
    rig = Rig()
    rig.energise()
    rig.send(Ack(SetOutput.MSG_ID, 42, int(result)))
    rig.clock.advance(0.01)
    rig.feed(telemetry({1: channel(power_w=10.0, flags=ON)}))
    trips = rig.gate.evaluate(rig.imaging())
    assert [(t.interlock, t.reason) for t in trips] == [
        (InterlockId.GENERATOR_FAULT, f"generator refused SetOutput (SEQ 42): {result.name}")
    ]
    assert rig.wire() == [OutputOff(0x0F)]
    rig.healthy_tick()  # output is off now: the refusal belongs to the period that ended
    assert rig.gate.acknowledge(rig.imaging()) and rig.gate.latched == ()


def test_an_ok_ack_is_no_refusal() -> None:
    rig = Rig()
    rig.energise()
    rig.send(Ack(SetOutput.MSG_ID, 42, int(AckResult.OK)))
    rig.healthy_tick({1: channel(power_w=10.0, flags=ON)})
    assert rig.driver.last_refusal is None and rig.gate.latched == () and rig.gate.commanded[0].on


def _deaf_tick(rig: Rig, chans: dict[int, ChannelTelemetry] | None = None) -> list[Trip]:
    """A tick of a generator that takes no commands: telemetry, STATUS and heartbeat go on, nothing is answered."""
    rig.clock.advance(0.01)
    rig.feed(telemetry(chans), answer=False)
    return rig.gate.evaluate(rig.imaging())


def test_a_generator_that_stops_acknowledging_under_power_trips_link_lost_within_a_period_of_the_limit() -> None:
    rig = Rig()
    rig.energise()
    first_unanswered_at = rig.clock.now()
    assert rig.gate.request_output({1: 10.0}, rig.imaging())
    trips: list[Trip] = []
    while not trips and rig.clock.now() - first_unanswered_at < 1.0:
        rig.wire()
        trips = _deaf_tick(rig, {1: channel(power_w=10.0, flags=ON)})
        if not trips:
            assert rig.gate.request_output({1: 10.0}, rig.imaging()), "refused before the limit"
    waited = rig.clock.now() - first_unanswered_at
    assert [t.interlock for t in trips] == [InterlockId.LINK_LOST]
    assert hard.COMMAND_ANSWER_S < waited <= hard.COMMAND_ANSWER_S + 0.01 + 1e-9
    assert "no ACK for SetOutput (SEQ" in trips[0].reason and "not taking commands" in trips[0].reason
    assert rig.wire()[0] == OutputOff(0x0F)
    assert not rig.gate.acknowledge(rig.imaging()), "cleared while the generator still answers nothing"
    rig.healthy_tick()  # it takes commands again: the trip's OUTPUT_OFF is answered
    assert [t.interlock for t in rig.gate.acknowledge(rig.imaging())] == [InterlockId.LINK_LOST]


def test_a_lost_link_a_request_finds_between_ticks_trips_there_and_is_handed_over_once() -> None:
    """In real time a request comes milliseconds after its tick's evaluation and evaluates afresh. A condition it
    finds under power trips there, as the next tick's evaluation would have: a refusal alone latched nothing, and
    the lesion ended on it left the scope idle, where a lost link never trips, so the procedure ended with no
    alarm naming its cause (seen in the HIL suite: first trip "ch1: output refused: link_lost: ...")."""
    rig = Rig()
    rig.energise()
    assert rig.gate.request_output({1: 10.0}, rig.imaging())
    on = {1: channel(power_w=10.0, flags=ON)}
    for _ in range(14):  # 140 ms unanswered: within the limit
        assert _deaf_tick(rig, on) == []
    rig.wire()
    rig.events.clear()
    rig.clock.advance(0.02)  # past it, before the next tick
    refused = rig.gate.request_output({1: 10.0}, rig.imaging())
    assert not refused and any(r.startswith("link_lost: no ACK for") for r in refused.reasons), refused.reasons
    assert OutputOff(0x0F) in rig.wire()
    assert [t.interlock for t in rig.gate.latched] == [InterlockId.LINK_LOST]
    assert [(e.kind, e.interlock) for e in rig.events][:1] == [(EventKind.TRIP, InterlockId.LINK_LOST)]
    (trip,) = rig.gate.take_trips_between_ticks()
    assert trip.interlock is InterlockId.LINK_LOST
    assert rig.gate.take_trips_between_ticks() == []
    assert _deaf_tick(rig, on) == [], "the tick's evaluation does not trip it a second time"
    assert [e.kind for e in rig.events].count(EventKind.TRIP) == 1
    assert (EventKind.INHIBIT, InterlockId.LINK_LOST) not in [(e.kind, e.interlock) for e in rig.events]


def test_a_plan_loaded_between_a_tick_and_a_request_judges_the_request() -> None:
    """The tick's evaluation was under the old plan, which had no lesion on channel 4: kept, it would have let
    output onto a 18 G electrode planned as a 20 G one."""
    rig = Rig()
    ready(rig)
    thin_on_ch4 = LesionPlan(name="ch4", imaging_required=False, lesions=(Lesion(
        channel=4, electrode=Electrode(gauge=20, active_tip_mm=10.0), mode=LesionMode.CONTINUOUS, set_temp_c=80.0,
        ramp_rate_c_per_s=2.0, lesion_time_s=90.0, power_cap_w=25.0, impedance_min_ohm=60.0,
        impedance_max_ohm=800.0),))
    assert rig.gate.load_plan(thin_on_ch4)
    refused = rig.gate.request_output({4: 10.0}, rig.imaging())
    assert not refused
    assert refused.reasons == ("electrode_mismatch: channel 4: electrode 18 G 10.0 mm, plan 20 G 10.0 mm",)
    assert not any(isinstance(m, SetOutput) for m in rig.wire())


def _time_passes_untended(rig: Rig) -> None:
    """RF on channel 1, then more than two periods with no tick: the loop has lost control (the watchdog's to
    catch; here a decision comes first)."""
    rig.energise()
    rig.events.clear()
    rig.clock.advance(hard.LOOP_PERIOD_S * hard.LOOP_MISSED_PERIODS + 0.005)


def test_an_acknowledgement_trips_what_it_finds_under_power_and_hands_it_over() -> None:
    rig = Rig()
    _time_passes_untended(rig)
    assert rig.gate.acknowledge(rig.imaging()) == []
    assert rig.wire()[0] == OutputOff(0x0F)
    (trip,) = rig.gate.take_trips_between_ticks()
    assert trip.interlock is InterlockId.CONTROL_LOOP_OVERRUN
    assert [(e.kind, e.interlock) for e in rig.events] == [(EventKind.TRIP, InterlockId.CONTROL_LOOP_OVERRUN)], (
        "a latch found by the acknowledgement itself is not one the operator refused to clear")
    assert [t.interlock for t in rig.gate.latched] == [InterlockId.CONTROL_LOOP_OVERRUN]


def test_a_stimulation_request_for_an_unplanned_channel_is_judged_too() -> None:
    rig = Rig()
    _time_passes_untended(rig)
    refused = rig.gate.request_stim(4, StimKind.SENSORY, 400, rig.imaging())
    assert not refused and "channel 4 has no electrode in the plan" in refused.reasons
    assert rig.wire()[0] == OutputOff(0x0F)
    assert [t.interlock for t in rig.gate.take_trips_between_ticks()] == [InterlockId.CONTROL_LOOP_OVERRUN]


def test_a_request_in_its_ticks_own_moment_trips_nothing_the_tick_did_not() -> None:
    """A trip the tick's evaluation returned is not tripped again, nor handed over, by requests at the same
    moment, however often they are refused."""
    rig = Rig()
    rig.energise()
    assert rig.gate.request_output({1: 10.0}, rig.imaging())
    on = {1: channel(power_w=10.0, flags=ON)}
    trips: list[Trip] = []
    while not trips:
        trips = _deaf_tick(rig, on)
    for _ in range(3):
        assert not rig.gate.request_output({1: 10.0}, rig.imaging())
    assert rig.gate.take_trips_between_ticks() == []


def test_an_ack_lost_while_later_commands_are_answered_trips_nothing() -> None:
    rig = Rig()
    rig.energise()
    assert rig.gate.request_output({1: 10.0}, rig.imaging())
    _deaf_tick(rig, {1: channel(power_w=10.0, flags=ON)})  # that SET_OUTPUT, or its ACK, is lost
    for _ in range(30):
        assert rig.gate.request_output({1: 10.0}, rig.imaging())
        rig.healthy_tick({1: channel(power_w=10.0, flags=ON)})
    assert rig.gate.latched == () and rig.gate.active_alarms == ()
    assert rig.driver.acks_missed == 1 and rig.driver.unanswered is None


def test_an_idle_generator_that_answers_nothing_is_asked_again_until_it_does_and_refuses_output_meanwhile() -> None:
    rig = Rig()
    ready(rig)
    rig.gate.all_off()
    rig.wire()
    rig.events.clear()
    off_at = [rig.clock.now()]
    for _ in range(30):  # 0.3 s
        assert _deaf_tick(rig) == []
        off_at += [rig.clock.now() for m in rig.wire() if isinstance(m, OutputOff)]
    assert rig.gate.latched == ()
    assert [(e.kind, e.interlock) for e in rig.events] == [(EventKind.INHIBIT, InterlockId.LINK_LOST)]
    gaps = [b - a for a, b in itertools.pairwise(off_at)]
    assert len(gaps) >= 3 and all(gap <= hard.COMMAND_RESTATE_S + 0.01 + 1e-9 for gap in gaps), gaps
    refused = rig.gate.request_output({1: 10.0}, rig.imaging())
    assert not refused and "not taking commands" in refused.reasons[0]
    for _ in range(round(hard.COMMAND_RESTATE_S / 0.01) + 2):  # it takes commands again: the next one is answered
        rig.healthy_tick()
    assert [(e.kind, e.interlock) for e in rig.events][-2:] == [
        (EventKind.REFUSED, None), (EventKind.CLEARED, InterlockId.LINK_LOST)]
    assert rig.gate.request_output({1: 10.0}, rig.imaging())


def test_a_self_test_request_left_unanswered_is_not_repeated_but_an_idle_cart_states_output_off_instead() -> None:
    """A SELF_TEST is never sent twice (it would start the test again), yet its lost ACK must still be passed, or
    the idle cart would read as a generator not taking commands: OUTPUT_OFF goes out in its place."""
    rig = Rig()
    ready(rig)
    rig.driver.request_self_test()
    for _ in range(round(hard.COMMAND_RESTATE_S / 0.01) + 1):
        _deaf_tick(rig)
    sent = rig.wire()
    assert sent[0] == SelfTest(0, 0) and SelfTest(0, 0) not in sent[1:]
    assert OutputOff(0x0F) in sent[1:], "the idle cart's OUTPUT_OFF restated"


def test_a_stimulus_whose_ack_is_lost_is_stated_again_and_the_nerve_test_goes_on() -> None:
    """A stimulus is held for seconds with nothing else sent but heartbeats: its lost ACK must not read as a
    generator not taking commands. Its twin goes out once the ACK is overdue, and the twin's ACK passes it."""
    rig = Rig()
    ready(rig)
    assert rig.gate.request_stim(1, StimKind.MOTOR, 2000, rig.imaging())
    stimulating = {1: channel(voltage_v=2.0, flags=ON)}
    _deaf_tick(rig, stimulating)  # the STIM is taken, its ACK lost on the wire
    rig.wire()
    for _ in range(100):  # 1 s of the test, answered as it should be
        rig.healthy_tick(stimulating)
    stims = [m for m in rig.wire() if isinstance(m, Stim)]
    assert stims == [Stim(0x01, 20, rig.plan.stimulation.pulse_width_us, 2000)], "stated once again, no more"
    assert rig.gate.active_alarms == () and rig.gate.commanded[0].stim_amplitude_mv == 2000
    assert rig.driver.unanswered is None and rig.driver.acks_missed == 1


def test_a_generator_that_stops_answering_during_a_held_stimulus_trips_within_a_period_of_the_limit() -> None:
    rig = Rig()
    ready(rig)
    assert rig.gate.request_stim(1, StimKind.MOTOR, 2000, rig.imaging())
    sent_at = rig.clock.now()
    trips: list[Trip] = []
    while not trips and rig.clock.now() - sent_at < 1.0:
        trips = _deaf_tick(rig, {1: channel(voltage_v=2.0, flags=ON)})
    assert [t.interlock for t in trips] == [InterlockId.LINK_LOST]
    assert hard.COMMAND_ANSWER_S < rig.clock.now() - sent_at <= hard.COMMAND_ANSWER_S + 0.01 + 1e-9


class _FailingWrites:
    """The host's transport, whose next ``fail_next`` writes raise LinkError (a USB-serial write timing out)."""

    def __init__(self, inner: Transport) -> None:
        self.inner, self.url, self.fail_next = inner, inner.url, 0

    def read(self, max_bytes: int = 65536) -> bytes:
        return self.inner.read(max_bytes)

    def write(self, data: bytes) -> None:
        if self.fail_next:
            self.fail_next -= 1
            raise LinkError("write timed out")
        self.inner.write(data)

    def close(self) -> None:
        self.inner.close()


def test_a_stop_whose_write_failed_is_what_is_repeated_never_the_command_it_stopped() -> None:
    rig = Rig()
    ready(rig)
    wire = rig.driver.transport = _FailingWrites(rig.host)
    assert rig.gate.request_output({1: 10.0}, rig.imaging())
    _deaf_tick(rig, {1: channel(power_w=10.0, flags=ON)})  # its ACK lost: the SET_OUTPUT still waits
    rig.wire()
    wire.fail_next = 1
    with pytest.raises(LinkError):
        rig.gate.channel_off(1)
    for _ in range(round(hard.COMMAND_RESTATE_S / 0.01) + 2):
        rig.healthy_tick({1: channel(power_w=10.0, flags=ON)})
    sent = rig.wire()
    assert sent and all(m == OutputOff(0x01) for m in sent), sent


@pytest.mark.parametrize("round_trip_ticks", [1, 4, 7])
def test_a_lost_ack_of_a_held_stimulus_is_passed_on_a_link_as_slow_as_the_round_trip_allows(
    round_trip_ticks: int,
) -> None:
    """ACKs that take up to ``COMMAND_ROUND_TRIP_S`` (70 ms): the stimulus stated again once its own is that late
    is answered before the lost link's limit, which counts from the first."""
    rig = Rig()
    ready(rig)
    assert rig.gate.request_stim(1, StimKind.MOTOR, 2000, rig.imaging())
    stimulating = {1: channel(voltage_v=2.0, flags=ON)}
    in_flight: list[tuple[int, Frame]] = []
    rig.clock.advance(0.01)
    rig.feed(telemetry(stimulating), answer=False)  # the STIM is taken, its ACK lost on the wire
    rig.gate.evaluate(rig.imaging())
    for tick in range(100):
        rig._arrived()
        in_flight += [(tick + round_trip_ticks, frame) for frame in rig._unanswered]
        rig._unanswered = []
        for _, frame in [f for f in in_flight if f[0] <= tick]:
            rig.send(Ack(frame.msg.MSG_ID, frame.seq, int(AckResult.OK)))
        in_flight = [f for f in in_flight if f[0] > tick]
        rig.clock.advance(0.01)
        rig.feed(telemetry(stimulating), answer=False)
        assert rig.gate.evaluate(rig.imaging()) == [], f"tripped at tick {tick}"
    assert rig.driver.acks_missed == 1 and rig.gate.commanded[0].stim_amplitude_mv == 2000
    assert hard.COMMAND_RESTATE_S + hard.LOOP_PERIOD_S + hard.COMMAND_ROUND_TRIP_S <= hard.COMMAND_ANSWER_S + 1e-9
