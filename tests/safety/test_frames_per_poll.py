"""Every telemetry frame is judged, however the frames fall into the loop's polls.

The host's period and the generator's drift past each other, so now and then one poll reads two frames (and,
after a late tick, more). The gate folds each into the trends and judges each one before the newest as its own
tick would have: a condition one frame showed trips even when a newer frame in the same poll no longer shows
it.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from hypothesis import example, given
from hypothesis import strategies as st

from firmware_bridge.framing import Frame
from firmware_bridge.generator import TELEMETRY_KEPT
from firmware_bridge.messages import (
    Ack,
    AckResult,
    GeneratorState,
    Heartbeat,
    OutputOff,
    SetOutput,
    Status,
    Telemetry,
    TelemetryFlag,
)
from safety import limits as hard
from safety.gate import EventKind
from safety.interlocks import InterlockId, Trip
from tests.safety.support import CONNECTED, ON, Rig, channel, electrodes, telemetry


def _energised() -> Rig:
    """Channel 1 on at 10 W after two healthy ticks and one under power; the clock then stands still, so that
    every check of time finds the same however the frames are polled."""
    rig = Rig()
    rig.energise()
    return rig


def _write(rig: Rig, tele: Telemetry) -> None:
    """One frame from the generator, 10 ms on in its clock; the host reads it at its next poll."""
    rig.gen_time_us += 10_000
    rig.send(replace(tele, gen_time_us=rig.gen_time_us))


def _poll_and_evaluate(rig: Rig) -> list[Trip]:
    rig.driver.poll()
    return rig.gate.evaluate(rig.imaging())


def _keys(trips: list[Trip]) -> set[tuple[InterlockId, int | None]]:
    return {t.key for t in trips}


def test_a_condition_in_a_frame_read_with_a_newer_one_trips_all_the_same() -> None:
    rig = _energised()
    _write(rig, telemetry({1: channel(power_w=10.0, flags=ON)}))
    assert _poll_and_evaluate(rig) == []
    _write(rig, telemetry({1: channel(power_w=10.0, flags=ON | TelemetryFlag.CHANNEL_FAULT)}))  # one frame: a fault
    _write(rig, telemetry({1: channel(power_w=10.0, flags=ON)}))  # and gone again in the next
    trips = _poll_and_evaluate(rig)
    assert [t.interlock for t in trips] == [InterlockId.CHANNEL_FAULT]
    assert rig.wire() == [OutputOff(0b0001)], "one OUTPUT_OFF, for the trip's channel"
    assert [t.interlock for t in rig.gate.latched] == [InterlockId.CHANNEL_FAULT]
    _write(rig, telemetry())
    assert _poll_and_evaluate(rig) == []
    cleared = [e for e in rig.events if e.kind is EventKind.CLEARED and e.interlock is InterlockId.CHANNEL_FAULT]
    assert cleared, "the next tick records it cleared; the latch stays for the operator's acknowledge"
    assert [t.interlock for t in rig.gate.latched] == [InterlockId.CHANNEL_FAULT]


def test_frames_of_one_poll_that_trip_differently_send_one_output_off() -> None:
    rig = _energised()
    _write(rig, telemetry({1: channel(power_w=10.0, flags=ON | TelemetryFlag.CHANNEL_FAULT)}))
    _write(rig, telemetry({1: channel(power_w=10.0, flags=ON | TelemetryFlag.THERMOCOUPLE_OPEN)}))
    trips = _poll_and_evaluate(rig)
    assert {t.interlock for t in trips} >= {InterlockId.CHANNEL_FAULT, InterlockId.THERMOCOUPLE_OPEN}
    assert rig.wire() == [OutputOff(0b0001)]


def test_the_trends_see_every_frame_of_a_poll() -> None:
    """Energy and the roll-off window add up the same whether three frames come in three polls or in one."""
    frames = [telemetry({1: channel(37.5 + 0.5 * i, impedance_ohm=250.0 + 5 * i, power_w=10.0, flags=ON)})
              for i in range(3)]
    apart, together = _energised(), _energised()
    for tele in frames:
        _write(apart, tele)
        assert _poll_and_evaluate(apart) == []
    for tele in frames:
        _write(together, tele)
    assert _poll_and_evaluate(together) == []
    assert together.gate.snapshot().trends == apart.gate.snapshot().trends


def test_a_frame_read_before_the_first_one_judged_is_not_judged() -> None:
    """Frames the driver read before the gate first looked predate its trends and its plan; the first frame it
    folds starts them, as before."""
    rig = Rig()
    _write(rig, telemetry({1: channel(120.0)}))
    _write(rig, telemetry())
    rig.driver.poll()
    assert rig.gate.evaluate(rig.imaging()) == []
    assert not [e for e in rig.events if e.interlock is InterlockId.OVER_TEMPERATURE]


def test_eight_frames_in_one_poll_are_all_judged() -> None:
    rig = _energised()
    _write(rig, telemetry({1: channel(power_w=10.0, flags=ON | TelemetryFlag.CHANNEL_FAULT)}))
    for _ in range(TELEMETRY_KEPT - 1):
        _write(rig, telemetry({1: channel(power_w=10.0, flags=ON)}))
    assert [t.interlock for t in _poll_and_evaluate(rig)] == [InterlockId.CHANNEL_FAULT]


def test_a_condition_several_frames_show_is_recorded_as_the_first_showed_it() -> None:
    rig = _energised()
    for temp_c in (95.0, 95.5):
        _write(rig, telemetry({1: channel(temp_c, power_w=10.0, flags=ON)}))
    over = [t for t in _poll_and_evaluate(rig) if t.interlock is InterlockId.OVER_TEMPERATURE]
    assert len(over) == 1 and "95.00" in over[0].reason and "95.50" not in over[0].reason, over


def test_a_display_snapshot_between_the_poll_and_the_tick_changes_nothing() -> None:
    """A display's snapshot folds the frames (with no imaging: its default); the tick still judges each frame with
    its own imaging, and the frame the display folded as the newest too."""
    rig = _energised()
    _write(rig, telemetry({1: channel(power_w=10.0, flags=ON | TelemetryFlag.CHANNEL_FAULT)}))
    rig.driver.poll()
    rig.gate.snapshot()  # folds the fault frame as the newest, judges nothing
    _write(rig, telemetry({1: channel(power_w=10.0, flags=ON)}))
    _write(rig, telemetry({1: channel(power_w=10.0, flags=ON)}))
    rig.driver.poll()
    rig.gate.snapshot()
    assert [t.interlock for t in rig.gate.evaluate(rig.imaging())] == [InterlockId.CHANNEL_FAULT]


def _snapshot_between_frames_of_a_poll(rig: Rig) -> None:
    """A display's thread takes the gate's lock while the loop's thread dispatches the frames of one poll: from the
    driver's own listener, a snapshot before each telemetry frame but the first."""
    telemetry_seen: list[Frame] = []

    def display(frame: Frame, _now: float) -> None:
        if isinstance(frame.msg, Telemetry):
            if telemetry_seen:
                rig.gate.snapshot()
            telemetry_seen.append(frame)

    rig.driver.on_received(display)


def test_a_snapshot_in_the_middle_of_a_poll_leaves_no_frame_unjudged() -> None:
    rig = _energised()
    _snapshot_between_frames_of_a_poll(rig)
    _write(rig, telemetry({1: channel(power_w=10.0, flags=ON | TelemetryFlag.CHANNEL_FAULT)}))
    _write(rig, telemetry({1: channel(power_w=10.0, flags=ON)}))
    rig.driver.poll()
    assert [t.interlock for t in rig.gate.evaluate(rig.imaging())] == [InterlockId.CHANNEL_FAULT]


def _lowered_and_read(together: bool) -> list[Trip]:
    """Channel 1 lowered from 10 to 5 W at t0, its ACK read at t0 + 10 ms: 10 W is allowed until t0 + 110 ms. The
    generator's frame from about t0 + 100 ms still shows 10 W, the next 5 W; read each by its own tick, or both by
    one tick 17 ms after the last (late, but within the overrun limit)."""
    rig = _energised()
    for _ in range(3):
        rig.healthy_tick({1: channel(power_w=10.0, flags=ON)})
    t0 = rig.clock.now()
    assert rig.gate.request_output({1: 5.0}, rig.imaging())
    old, new = telemetry({1: channel(power_w=10.0, flags=ON)}), telemetry({1: channel(power_w=5.0, flags=ON)})

    def tick_at(t: float, frames: list[Telemetry]) -> list[Trip]:
        rig.clock.advance(t - rig.clock.now())
        for tele in frames:
            _write(rig, tele)
        rig.feed()  # the ACKs, STATUS and heartbeat of the tick; then the host polls
        return rig.gate.evaluate(rig.imaging())

    trips: list[Trip] = []
    for k in range(1, 10):
        trips += tick_at(t0 + 0.01 * k + (0.005 if k == 9 else 0.0), [old])
    if together:
        trips += tick_at(t0 + 0.112, [old, new])
    else:
        trips += tick_at(t0 + 0.102, [old])
        trips += tick_at(t0 + 0.112, [new])
    return trips


def test_a_frame_read_late_with_the_next_is_judged_when_it_landed_not_when_it_was_read() -> None:
    """Both frames of one poll are dated by the read; judged at that moment, the older one would be past the
    settling its setpoint was within when it landed, and trip over-power on a generator doing nothing wrong."""
    assert _lowered_and_read(together=False) == []
    assert _lowered_and_read(together=True) == []


_OLD = telemetry({1: channel(power_w=10.0, flags=ON)})
_NEW = telemetry({1: channel(power_w=5.0, flags=ON)})


def _lowered_at(rig: Rig) -> float:
    """Channel 1 at 10 W lowered to 5 W at the moment returned, t0; the next tick reads the ACK at t0 + 10 ms, so
    10 W is allowed until t0 + 110 ms."""
    for _ in range(3):
        rig.healthy_tick({1: channel(power_w=10.0, flags=ON)})
    t0 = rig.clock.now()
    assert rig.gate.request_output({1: 5.0}, rig.imaging())
    return t0


def _poll_at(rig: Rig, t: float, frames: list[Telemetry], gaps_us: list[int] | None = None) -> None:
    """At ``t``: ``frames`` land, ``gaps_us`` apart in the generator's clock (10 ms each unless given), with the
    tick's ACKs, STATUS and heartbeat; the host polls."""
    rig.clock.advance(t - rig.clock.now())
    for gap_us, tele in zip(gaps_us or [10_000] * len(frames), frames, strict=True):
        rig.gen_time_us += gap_us
        rig.send(replace(tele, gen_time_us=rig.gen_time_us))
    rig.gen_time_us -= 10_000  # feed steps the generator's clock again, for no frame
    rig.feed()


def _tick_at(rig: Rig, t: float, frames: list[Telemetry], gaps_us: list[int] | None = None) -> list[Trip]:
    _poll_at(rig, t, frames, gaps_us)
    return rig.gate.evaluate(rig.imaging())


def _settling_until_t0_plus_100_ms(rig: Rig) -> float:
    t0 = _lowered_at(rig)
    for k in range(1, 11):
        assert _tick_at(rig, t0 + 0.01 * k, [_OLD]) == [], "10 W within the settling"
    return t0


def test_a_snapshot_in_the_middle_of_a_late_poll_dates_its_frames_all_the_same() -> None:
    """As the late poll above, with a display's snapshot between its two frames: the older one, folded as the
    newest by the snapshot, is dated back from the newer one when it is judged, not at its read."""
    rig = _energised()
    t0 = _lowered_at(rig)
    for k in range(1, 10):
        assert _tick_at(rig, t0 + 0.01 * k + (0.005 if k == 9 else 0.0), [_OLD]) == []
    _snapshot_between_frames_of_a_poll(rig)
    assert _tick_at(rig, t0 + 0.112, [_OLD, _NEW]) == []


def test_a_frame_cannot_be_dated_before_the_read_that_did_not_find_it() -> None:
    """The read at t0 + 111 ms found no 10 W frame; the next, 3 ms later, finds one and a newer one 10 ms after it in
    the generator's clock. Dated back 10 ms it would fall within the settling (t0 + 104 ms), but it landed after the
    read at t0 + 111 ms, past the settling: over-power."""
    rig = _energised()
    t0 = _settling_until_t0_plus_100_ms(rig)
    assert _tick_at(rig, t0 + 0.111, [_NEW]) == []
    assert [t.interlock for t in _tick_at(rig, t0 + 0.114, [_OLD, _NEW])] == [InterlockId.OVER_POWER]


def test_a_frame_is_never_dated_after_its_own_read() -> None:
    """Two polls, one evaluation: the older frame read within the settling (t0 + 109 ms), a newer one only 2 ms after
    it in the generator's clock read at t0 + 118 ms. Dated back from the newer, it would be t0 + 116 ms: past the
    settling. It was read at t0 + 109 ms, so it landed by then."""
    rig = _energised()
    t0 = _settling_until_t0_plus_100_ms(rig)
    _poll_at(rig, t0 + 0.109, [_OLD])
    assert _tick_at(rig, t0 + 0.118, [_NEW], gaps_us=[2_000]) == []


def test_a_generator_clock_that_jumps_dates_a_frame_no_further_back_than_a_period() -> None:
    """The generator's clock jumps 60 ms between the two frames of one poll (it advances, so it is no stalled clock).
    Dated back 60 ms the 10 W frame would fall before the last read (t0 + 105 ms, within the settling); frames come
    a period apart, so it is dated back one period (t0 + 113.5 ms), past the settling: over-power."""
    rig = _energised()
    t0 = _lowered_at(rig)
    for t in (*(t0 + 0.01 * k for k in range(1, 10)), t0 + 0.105):
        assert _tick_at(rig, t, [_OLD]) == []
    assert [t.interlock for t in _tick_at(rig, t0 + 0.1235, [_OLD, _NEW], gaps_us=[10_000, 60_000])] == [
        InterlockId.OVER_POWER
    ]


def test_output_seen_against_output_off_is_judged_within_its_grace_when_it_landed() -> None:
    """Channel 1 turned off; the generator's last frame still showing it on lands within the 100 ms grace, but a late
    tick reads it with the next (off) frame after the grace: no uncommanded output."""
    rig = _energised()
    rig.gate.channel_off(1)
    rig.wire()
    off_at = rig.clock.now()
    for k in range(1, 10):
        assert _tick_at(rig, off_at + 0.01 * k + (0.005 if k == 9 else 0.0), [_OLD]) == []
    assert _tick_at(rig, off_at + 0.108, [_OLD, telemetry()]) == []


def test_an_idle_condition_in_a_frame_read_before_an_acknowledgement_is_recorded() -> None:
    """Idle; a poll between the tick and an acknowledgement reads a frame with a channel fault and a clean one. The
    acknowledgement judges both: the fault is recorded (an inhibit) there, or it never would be."""
    rig = Rig()
    rig.healthy_tick()
    rig.healthy_tick()
    _write(rig, telemetry({1: channel(flags=CONNECTED | TelemetryFlag.CHANNEL_FAULT)}))
    _write(rig, telemetry())
    rig.driver.poll()
    rig.gate.acknowledge(rig.imaging())
    rig.healthy_tick()
    assert (EventKind.INHIBIT, InterlockId.CHANNEL_FAULT) in [(e.kind, e.interlock) for e in rig.events]


def test_a_request_between_ticks_judges_the_frames_read_since() -> None:
    """A poll between the tick and a request (the driver read on its own) leaves two frames: the request is judged
    on both, and a condition the older one showed under power trips and refuses it."""
    rig = _energised()
    _write(rig, telemetry({1: channel(power_w=10.0, flags=ON | TelemetryFlag.CHANNEL_FAULT)}))
    _write(rig, telemetry({1: channel(power_w=10.0, flags=ON)}))
    rig.driver.poll()
    decision = rig.gate.request_output({1: 9.0}, rig.imaging())
    assert not decision and any(InterlockId.CHANNEL_FAULT.value in reason for reason in decision.reasons)
    assert InterlockId.CHANNEL_FAULT in {t.interlock for t in rig.gate.take_trips_between_ticks()}


_FLAGS = st.sampled_from([ON] * 6 + [ON | TelemetryFlag.CHANNEL_FAULT, ON | TelemetryFlag.THERMOCOUPLE_OPEN])
_STEPS = st.tuples(  # mostly plausible: the tip reading walks, the power stays near its 10 W, a fault now and then
    st.floats(-1.2, 1.2), st.floats(40.0, 900.0), st.floats(8.0, 12.5), _FLAGS
)


def _frames(steps: list[tuple[float, float, float, int]]) -> list[Telemetry]:
    temp_c = 37.0
    frames = []
    for delta_c, impedance_ohm, power_w, flags in steps:
        temp_c += delta_c
        frames.append(telemetry({1: channel(temp_c, impedance_ohm, power_w=power_w, flags=flags)}))
    return frames


@given(
    steps=st.lists(_STEPS, min_size=1, max_size=12),
    group_sizes=st.lists(st.integers(1, TELEMETRY_KEPT), min_size=12, max_size=12),
)
def test_however_the_frames_fall_into_polls_the_first_trip_is_the_same(
    steps: list[tuple[float, float, float, int]], group_sizes: list[int]
) -> None:
    """Against one frame per poll: the same frames read in polls of up to TELEMETRY_KEPT trip at the poll that
    holds the first tripping frame, with at least its trips; with no trip, the trends end the same."""
    frames = _frames(steps)
    apart = _energised()
    first: tuple[int, list[Trip]] | None = None
    for index, tele in enumerate(frames):
        _write(apart, tele)
        trips = _poll_and_evaluate(apart)
        if trips:
            first = (index, trips)
            break

    together = _energised()
    start = 0
    found: tuple[range, list[Trip]] | None = None
    for size in group_sizes:
        group = range(start, min(start + size, len(frames)))
        if not group:
            break
        for index in group:
            _write(together, frames[index])
        trips = _poll_and_evaluate(together)
        if trips:
            found = (group, trips)
            break
        start = group.stop

    if first is None:
        assert found is None, f"trips on frames read together that no single frame trips: {found}"
        assert together.gate.snapshot().trends == apart.gate.snapshot().trends
        return
    assert found is not None, f"frame {first[0]} trips {first[1]} alone, nothing read together"
    group, trips = found
    assert first[0] in group, f"first trip at frame {first[0]}, read together at {group}"
    assert _keys(first[1]) <= _keys(trips)


@dataclass
class _Command:
    seq: int
    setpoint_w: float
    taken_at: float | None = None


def _shown_w(commands: list[_Command], at: float, settles_within_s: float) -> float:
    """The highest power a generator that settles within ``settles_within_s`` of taking a command may show ``at``:
    the setpoint it has taken last, or one before it still settling."""
    taken = [c for c in commands if c.taken_at is not None and c.taken_at <= at]
    if not taken:
        return 0.0
    settling = [taken[j - 1].setpoint_w for j in range(1, len(taken))
                if at < (taken[j].taken_at or 0.0) + settles_within_s]
    return max([taken[-1].setpoint_w, *settling])


@given(
    centi_watts=st.lists(st.sampled_from((0, 1000, 2000)) | st.integers(0, 2000), min_size=2, max_size=30),
    gaps_ms=st.lists(st.integers(5, 19), min_size=30, max_size=30),
)
@example(  # 10 W lowered to 0 W, then polls late enough to read its last 10 W frame with the next (found at 2,000)
    centi_watts=[0, 0, 0, 0, 1000] + [0] * 12, gaps_ms=[5] * 12 + [13, 19, 19, 19] + [5] * 14
)
def test_a_generator_that_settles_in_time_never_trips_over_power_however_the_polls_fall(
    centi_watts: list[int], gaps_ms: list[int]
) -> None:
    """A generator making a frame every 10 ms, taking each command at its next frame (its ACK lands then) and
    settling a lowered setpoint just within SETPOINT_SETTLE_S of taking it: its last frame still showing the old
    setpoint comes 90 ms after, and the newest frame of a read is less than a period old. The host polls 5-19 ms
    apart, so now none and now two frames a poll, evaluates, and asks for the next setpoint. Every frame shows the
    highest power it still may: none trips over-power, whatever the polls' timing. Judged at its read, the older
    frame of a poll, up to 19 ms old, would: it is dated back from the newer one."""
    rig = Rig()
    rig.healthy_tick()
    rig.healthy_tick()
    rig.wire()
    gen_offset_us = rig.gen_time_us - round(rig.clock.now() * 1e6)
    next_frame_at = rig.clock.now() + 0.01
    settles_within_s = hard.SETPOINT_SETTLE_S - 0.002
    commands: list[_Command] = []

    def request(setpoint_w: float) -> None:
        decision = rig.gate.request_output({1: setpoint_w}, rig.imaging())
        assert decision and decision.seq is not None, decision.reasons
        commands.append(_Command(decision.seq, setpoint_w))

    request(centi_watts[0] / 100)
    for gap_ms, centi_w in zip(gaps_ms, centi_watts[1:], strict=False):
        read_at = rig.clock.now() + gap_ms / 1000
        while next_frame_at <= read_at + 1e-9:
            for command in commands:
                if command.taken_at is None:
                    command.taken_at = next_frame_at
                    rig.send(Ack(SetOutput.MSG_ID, command.seq, int(AckResult.OK)))
            shown = _shown_w(commands, next_frame_at, settles_within_s)
            tele = telemetry({1: channel(power_w=shown, flags=ON)})
            rig.send(replace(tele, gen_time_us=gen_offset_us + round(next_frame_at * 1e6)))
            next_frame_at += 0.01
        rig.send(Status(int(GeneratorState.OUTPUT), 0, 0x0102))
        rig.send(Heartbeat(int(GeneratorState.OUTPUT), 0))
        rig.send(electrodes())
        rig.clock.advance(read_at - rig.clock.now())
        rig.driver.poll()
        assert rig.gate.evaluate(rig.imaging()) == [], commands
        request(centi_w / 100)
