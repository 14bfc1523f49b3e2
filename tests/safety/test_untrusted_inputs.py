"""What control/ hands the safety core is read as if control/ were hostile (ARCHITECTURE.md section 2): numbers as
they are stored, not as their class says they compare; a mapping once; times that could come from another clock;
readings that stopped being renewed. And a plan is checked as the generator will run it, not as it was written."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import replace

import pytest
from hypothesis import given
from hypothesis import strategies as st

from firmware_bridge.messages import GeneratorState, Heartbeat, OutputMode, SetOutput, Status, Stim
from safety import limits as hard
from safety.config import HARD_LIMITS
from safety.errors import RefusedInput
from safety.gate import StimKind
from safety.inputs import ClockRate, ImagingStatus, advance_clock_rate
from safety.interlocks import InterlockId, SafetyRules, evaluate_interlocks, imaging_not_live, over_power
from safety.plan import LesionMode, LesionPlan, check_plan, default_genicular_plan, parse_plan
from tests.safety.support import NOW, ON, PULSED_RULES, RULES, Rig, channel, inputs, on, pulsed_plan, telemetry


class AlwaysInRange(float):
    """A float whose comparisons always say "in range": ``isinstance(x, float)`` holds."""

    def __le__(self, other: object) -> bool:
        return True

    def __ge__(self, other: object) -> bool:
        return True

    def __float__(self) -> float:
        return 1.0


class AlwaysInRangeInt(int):
    def __le__(self, other: object) -> bool:
        return True

    def __lt__(self, other: object) -> bool:
        return False

    def __gt__(self, other: object) -> bool:
        return True

    def __index__(self) -> int:
        return 1000


def _sent(rig: Rig, kind: type) -> list[object]:
    return [m for m in rig.wire() if isinstance(m, kind)]


@given(volts=st.floats(min_value=0.0, max_value=120.0))
def test_a_setpoint_is_judged_and_sent_as_the_number_it_stores_whatever_its_class_says(volts: float) -> None:
    """A pulsed plan capped at 45 V: a float subclass that compares as in range and converts as 1.0 is granted
    exactly when its stored value is within the cap, and that value goes on the wire."""
    rig = Rig(plan=pulsed_plan())
    rig.healthy_tick()
    rig.healthy_tick()
    decision = rig.gate.request_output({1: AlwaysInRange(volts)})
    sent = _sent(rig, SetOutput)
    assert bool(decision) == (volts <= 45.0)
    assert [m.setpoints[0] for m in sent if isinstance(m, SetOutput)] == ([int(volts * 100)] if decision else [])


def test_a_stimulus_amplitude_is_judged_and_sent_as_the_number_it_stores() -> None:
    rig = Rig()
    rig.healthy_tick()
    rig.healthy_tick()
    refused = rig.gate.request_stim(1, StimKind.MOTOR, AlwaysInRangeInt(60_000), rig.imaging())  # 60 V
    assert not refused and _sent(rig, Stim) == []
    assert rig.gate.request_stim(1, StimKind.MOTOR, AlwaysInRangeInt(2_000), rig.imaging())
    (stim,) = _sent(rig, Stim)
    assert isinstance(stim, Stim) and stim.amplitude_mv == 2_000 and type(stim.amplitude_mv) is int


class ShiftingSetpoints(Mapping[int, float]):
    """A mapping whose keys change after it has been read twice."""

    def __init__(self) -> None:
        self.reads = 0

    def __iter__(self) -> Iterator[int]:
        self.reads += 1
        return iter([1] if self.reads <= 2 else [2])

    def __len__(self) -> int:
        return 1

    def __getitem__(self, key: int) -> float:
        return 45.0


def test_a_request_is_read_once_so_the_mode_sent_is_the_mode_checked() -> None:
    """Channel 1 pulsed (45 V cap), channel 2 continuous (10 W cap): a mapping that names channel 1 to the checks
    and channel 2 afterwards must not put 45 W continuous on the wire."""
    continuous = pulsed_plan().lesions[0].model_copy(update={"channel": 2, "mode": LesionMode.CONTINUOUS,
                                                             "pulsed": None, "set_temp_c": 80.0})
    plan = LesionPlan(name="mixed", imaging_required=False, lesions=(pulsed_plan().lesions[0], continuous))
    rig = Rig(plan=check_plan(plan, HARD_LIMITS))
    rig.healthy_tick()
    rig.healthy_tick()
    assert rig.gate.request_output(ShiftingSetpoints())
    (msg,) = _sent(rig, SetOutput)
    assert isinstance(msg, SetOutput)
    assert (msg.channel_mask, msg.mode, msg.setpoints[:2]) == (0b01, int(OutputMode.RF_PULSED), (4500, 0))
    assert rig.gate.commanded[0].on and not rig.gate.commanded[1].on


@given(volts=st.floats(min_value=0.0, max_value=80.0))
def test_a_pulsed_channel_above_its_peak_voltage_maximum_trips_whatever_was_commanded(volts: float) -> None:
    """As measured power above the channel maximum trips even with output commanded off, so does a measured peak
    voltage above the pulsed maximum (+ tolerance): the commanded value is no bound if it was never sound."""
    rules = PULSED_RULES.by_channel[1]
    frame = telemetry({1: channel(voltage_v=volts, flags=ON)})
    for commanded in (on(10.0, mode=OutputMode.RF_PULSED), on(60.0, mode=OutputMode.RF_PULSED)._replace(on=False)):
        reason = over_power(frame.channels, commanded, rules, NOW)
        beyond_maximum = round(volts * 100) / 100 > 45.0 + hard.OVER_VOLTAGE_TOLERANCE_V
        assert (reason is not None and "maximum" in reason) == beyond_maximum


def test_stimulation_on_a_pulsed_channel_is_not_judged_against_the_pulsed_maximum() -> None:
    rules = PULSED_RULES.by_channel[1]
    stimulating = on(0.0, mode=OutputMode.RF_PULSED)._replace(on=False, stim_amplitude_mv=3_000)
    low_cap = rules.__class__(**{**{f: getattr(rules, f) for f in rules.__slots__}, "voltage_max_v": 1.0})
    assert over_power(telemetry({1: channel(voltage_v=3.0, flags=ON)}).channels, stimulating, low_cap, NOW) is None


# -- imaging: times from another clock, readings no longer renewed ------------------------------------------------
def _imaging(frame_age_s: float, face_age_s: float | None = 0.0, face_c: float | None = 30.0) -> ImagingStatus:
    return ImagingStatus(NOW - frame_age_s, face_c, probe_face_read_at=None if face_age_s is None else NOW - face_age_s)


def _imaging_lost(status: ImagingStatus, *, energised: bool = False) -> bool:
    snapshot = inputs(imaging=status, commanded={1: on()} if energised else None)
    return any(t.interlock is InterlockId.IMAGING_LOST for t in evaluate_interlocks(snapshot, RULES, NOW))


@given(ahead_s=st.floats(min_value=0.0, max_value=1e6))
def test_a_frame_dated_ahead_of_the_clock_is_live_only_within_the_loops_own_lag(ahead_s: float) -> None:
    """The tick polls imaging after reading the clock, so a frame may be a little ahead of it; one from another
    clock (an hour ahead) would otherwise read as fresh for ever, RF on with nobody watching."""
    live = ahead_s <= hard.IMAGING_FRAME_AHEAD_MAX_S
    assert _imaging_lost(_imaging(-ahead_s)) != live
    assert _imaging_lost(_imaging(-ahead_s), energised=True) != live  # no grace for a frame that never aged


def test_a_frame_an_hour_ahead_neither_starts_rf_nor_keeps_it_on() -> None:
    rig = Rig()  # the genicular plan requires imaging
    ahead = ImagingStatus(rig.clock.now() + 3600.0, 30.0, probe_face_read_at=rig.clock.now())
    rig.healthy_tick(imaging=ahead)
    refused = rig.gate.request_output({1: 10.0}, ahead)
    assert not refused and any("dated 3599.99 s ahead" in reason for reason in refused.reasons)
    rig.energise()  # with live imaging; then the frames come dated an hour ahead, under power: no grace for them
    ahead = ImagingStatus(rig.clock.now() + 3600.0, 30.0, probe_face_read_at=rig.clock.now())
    rig.healthy_tick({1: channel(power_w=10.0, flags=ON)}, imaging=ahead)
    assert [t.interlock for t in rig.gate.latched] == [InterlockId.IMAGING_LOST] and not rig.gate.commanded[0].on


@given(face_age_s=st.floats(min_value=0.0, max_value=10.0), energised=st.booleans())
def test_guidance_is_live_only_while_the_probe_face_temperature_is_read(face_age_s: float, energised: bool) -> None:
    """A face reading older than PROBE_FACE_READING_MAX_AGE_S (+ the loss grace under power) is not known: the
    probe-face interlock would be blind, so guidance counts as lost (docs/imaging.md, imaging-lost policy)."""
    allowed = hard.PROBE_FACE_READING_MAX_AGE_S + (hard.IMAGING_LOSS_GRACE_S if energised else 0.0)
    assert _imaging_lost(_imaging(0.0, face_age_s), energised=energised) == (face_age_s > allowed)


@given(blind_s=st.floats(min_value=-10.0, max_value=10.0), energised=st.booleans())
def test_guidance_is_live_only_while_the_boiling_monitor_sees_its_tip(blind_s: float, energised: bool) -> None:
    """Frames whose image no longer covers the tip (the depth changed under it) cannot show boiling: the blind
    monitor ages like a probe that stopped sending (docs/imaging.md), and a blind time from the future is not
    trusted either."""
    allowed = RULES.imaging_max_age_s + (hard.IMAGING_LOSS_GRACE_S if energised else 0.0)
    status = ImagingStatus(NOW, 30.0, probe_face_read_at=NOW, boiling_blind_since=NOW - blind_s)
    blind_too_long = not -hard.IMAGING_FRAME_AHEAD_MAX_S <= blind_s <= allowed
    assert _imaging_lost(status, energised=energised) == blind_too_long
    assert not _imaging_lost(_imaging(0.0), energised=energised)  # the same status without blindness is live


@pytest.mark.parametrize("status", [_imaging(0.0, None), _imaging(0.0, 0.0, None), _imaging(0.0, -1.0)])
def test_an_unread_or_future_probe_face_reading_refuses_rf_under_guidance(status: ImagingStatus) -> None:
    rig = Rig()
    rig.clock.advance(-rig.clock.now())  # NOW, the time _imaging dates from
    rig.healthy_tick(imaging=status)
    status = ImagingStatus(rig.clock.now(), status.probe_face_temp_c,
                           probe_face_read_at=None if status.probe_face_read_at is None
                           else rig.clock.now() + status.probe_face_read_at)
    refused = rig.gate.request_output({1: 10.0}, status)
    assert not refused and any("probe face temperature" in reason for reason in refused.reasons)
    assert imaging_not_live(status, rig.clock.now(), 0.5, 0.0) is not None


def test_a_plan_without_imaging_does_not_need_the_probe_face() -> None:
    snapshot = inputs(imaging=_imaging(0.0, None))
    rules = PULSED_RULES
    assert not any(t.interlock is InterlockId.IMAGING_LOST for t in evaluate_interlocks(snapshot, rules, NOW))


# -- a pulsed plan as the generator runs it ----------------------------------------------------------------------
def _pulsed(width_us: int, rate_hz: float) -> LesionPlan:
    data = pulsed_plan().model_dump(mode="json")
    data["lesions"][0]["pulsed"].update(pulse_width_us=width_us, rate_hz=rate_hz)
    return parse_plan(data, HARD_LIMITS, "duty")


@given(width_us=st.integers(hard.PULSE_WIDTH_MIN_US, hard.PULSE_WIDTH_MAX_US),
       rate_hz=st.floats(min_value=0.01, max_value=hard.PULSE_RATE_MAX_HZ))
def test_a_pulsed_plan_is_accepted_only_if_its_duty_on_the_wire_is_within_the_maximum(width_us: int,
                                                                                   rate_hz: float) -> None:
    """The wire carries the rate in 0.1 Hz: 48.5 ms at 2.06 Hz is 9.99 % as written but 10.19 % as sent."""
    wire_deci_hz = round(rate_hz * 10)
    try:
        plan = _pulsed(width_us, rate_hz)
    except RefusedInput:
        assert wire_deci_hz < 1 or width_us * 1e-6 * wire_deci_hz / 10 > hard.PULSED_DUTY_MAX
        return
    rules = SafetyRules.compile(plan, HARD_LIMITS).by_channel[1]
    assert rules.pulse_rate_deci_hz == wire_deci_hz >= 1
    assert rules.pulse_width_us * 1e-6 * rules.pulse_rate_deci_hz / 10 <= hard.PULSED_DUTY_MAX


def test_the_reviewers_pulsed_plan_is_refused_naming_the_duty() -> None:
    with pytest.raises(RefusedInput, match=r"duty cycle 10\.2%"):
        _pulsed(48_500, 2.06)


# -- a request the interlocks would trip on at once -----------------------------------------------------------------
def test_output_is_not_granted_to_a_thermocouple_still_frozen_after_its_latch_is_acknowledged() -> None:
    """The reading stuck while power swung: frozen trips and output goes off. Off, the condition is not judged, so
    the latch can be acknowledged; the stillness counted under power is kept, so the next request would trip on its
    first frame: a period of RF per acknowledgement, for a tip nobody can read. It is refused instead, naming it."""
    rig = Rig()
    rig.energise()
    assert rig.gate.request_output({1: 20.0}, rig.imaging())
    for tick in range(400):
        rig.healthy_tick({1: channel(temp_c=37.0, power_w=10.0 + 3.0 * (tick % 2), flags=ON)})
        if rig.gate.latched:
            break
    assert [t.interlock for t in rig.gate.latched] == [InterlockId.THERMOCOUPLE_FROZEN]
    for _ in range(20):
        rig.healthy_tick({1: channel(temp_c=37.0)})
    assert [t.interlock for t in rig.gate.acknowledge(rig.imaging())] == [InterlockId.THERMOCOUPLE_FROZEN]
    refused = rig.gate.request_output({1: 10.0}, rig.imaging())
    assert not refused and any(r.startswith("thermocouple_frozen: channel 1:") for r in refused.reasons)
    rig.healthy_tick({1: channel(temp_c=37.5)})  # the reading moves: the tip is read again
    assert rig.gate.request_output({1: 10.0}, rig.imaging())


# -- a generator clock that advances, but crawls ------------------------------------------------------------------
def test_a_generator_clock_that_crawls_is_a_generator_fault_before_it_blinds_the_thermocouple_checks() -> None:
    """The generator's clock advances 1 µs a frame: never stalled, but the trends timing a frozen reading and
    counting energy see no time pass. 15 s of a stuck reading under swinging power tripped nothing; the clock's rate
    against the host's trips generator_fault within two windows."""
    rig = Rig()
    rig.energise()
    assert rig.gate.request_output({1: 20.0}, rig.imaging())
    for tick in range(1500):
        rig.clock.advance(0.01)
        rig.feed(telemetry({1: channel(temp_c=37.0, power_w=10.0 + 3.0 * (tick % 2), flags=ON)}), gen_step_us=1)
        rig.gate.evaluate(rig.imaging())
        if rig.gate.latched:
            break
    assert [t.interlock for t in rig.gate.latched] == [InterlockId.GENERATOR_FAULT]
    assert "generator clock ran at" in rig.gate.latched[0].reason
    assert tick * 0.01 <= 2 * hard.GENERATOR_CLOCK_RATE_WINDOW_S and not rig.gate.commanded[0].on


@given(rate=st.floats(min_value=0.0, max_value=5.0), jitter_s=st.floats(min_value=0.0, max_value=0.03))
def test_the_clock_rate_is_measured_over_whole_windows_of_host_time(rate: float, jitter_s: float) -> None:
    """Frames every 10 ms of host time, read up to ``jitter_s`` late: the rate measured is the generator's within
    what the late reading can move a window's end, and it is judged only once a whole window has passed."""
    clock = ClockRate()
    host_s = gen_s = 0.0
    for frame in range(int(hard.GENERATOR_CLOCK_RATE_WINDOW_S / 0.01) * 2 + 2):
        read_s = host_s + (jitter_s if frame % 7 == 3 else 0.0)
        clock = advance_clock_rate(clock, read_s, gen_s)
        if read_s < hard.GENERATOR_CLOCK_RATE_WINDOW_S:
            assert clock.rate is None
        host_s, gen_s = host_s + 0.01, gen_s + 0.01 * rate
    assert clock.rate is not None
    assert abs(clock.rate - rate) <= rate * 2 * jitter_s / hard.GENERATOR_CLOCK_RATE_WINDOW_S + 1e-9


def test_the_clock_rate_is_judged_as_soon_as_a_whole_window_has_passed() -> None:
    """A window is whole at exactly GENERATOR_CLOCK_RATE_WINDOW_S of host time: its rate is judged then, not a frame
    later, nor before."""
    start = advance_clock_rate(ClockRate(), 10.0, 100.0)
    assert advance_clock_rate(start, 10.0 + hard.GENERATOR_CLOCK_RATE_WINDOW_S - 0.001, 100.5) == start
    assert advance_clock_rate(start, 10.0 + hard.GENERATOR_CLOCK_RATE_WINDOW_S, 100.5) == ClockRate(11.0, 100.5, 0.5)


def test_a_generator_clock_that_went_back_starts_a_new_window() -> None:
    clock = advance_clock_rate(advance_clock_rate(ClockRate(), 0.0, 100.0), 1.5, 101.5)
    assert clock.rate == 1.0
    assert advance_clock_rate(clock, 1.51, 0.01) == ClockRate(1.51, 0.01, None)  # a reboot: clock_stalled's case


class NamesChannelOne(int):
    """An int that hashes and compares as channel 1 whatever it stores: a dict takes it for channel 1."""

    def __hash__(self) -> int:
        return hash(1)

    def __eq__(self, other: object) -> bool:
        return other == 1

    def __ne__(self, other: object) -> bool:
        return other != 1


def _two_caps() -> LesionPlan:
    """Channel 1 capped at 25 W, channel 2 at 5 W."""
    plan = default_genicular_plan()
    second = plan.lesions[1].model_copy(update={"power_cap_w": 5.0})
    return check_plan(plan.model_copy(update={"lesions": (plan.lesions[0], second), "imaging_required": False}),
                      HARD_LIMITS)


def test_a_channel_is_judged_and_driven_as_the_number_it_stores() -> None:
    """A key that a dict (and the plan's table) takes for channel 1 but whose value is 2 was judged against channel
    1's 25 W cap and sent 20 W on channel 2, capped at 5 W. Judged as stored, it is channel 2: refused, or, beside
    a plain 2, named twice."""
    rig = Rig(plan=_two_caps())
    rig.healthy_tick()
    rig.healthy_tick()
    requests: list[Mapping[int, float]] = [{NamesChannelOne(2): 20.0}, {2: 1.0, NamesChannelOne(2): 20.0}]
    for request in requests:
        refused = rig.gate.request_output(request)
        assert not refused and _sent(rig, SetOutput) == []
    assert "channel 2 is named twice" in refused.reasons
    assert not rig.gate.request_output({"1": 5.0})  # type: ignore[dict-item]
    assert rig.gate.request_stim(NamesChannelOne(2), StimKind.MOTOR, 1_000)
    (stim,) = _sent(rig, Stim)
    assert isinstance(stim, Stim) and stim.channel_mask == 0b10 and rig.gate.commanded[1].stim_amplitude_mv == 1_000


def test_a_bool_is_no_channel_number_though_python_takes_true_for_1() -> None:
    """``True == 1`` and ``hash(True) == hash(1)``: read as an int it would drive channel 1. It names no channel."""
    rig = Rig()
    rig.healthy_tick()
    rig.healthy_tick()
    refused = rig.gate.request_output({True: 5.0}, rig.imaging())
    assert not refused and "channel True is not a channel number" in refused.reasons
    assert not rig.gate.request_stim(True, StimKind.MOTOR, 1_000, rig.imaging())
    assert _sent(rig, SetOutput) == [] and _sent(rig, Stim) == []


def test_frames_read_in_a_burst_do_not_date_a_fresh_probe_frame_ahead_of_the_clock() -> None:
    """30 ms without bytes (the loop ticking, under the 50 ms stale limit), then four frames in one poll: the older
    ones are judged as of when they landed, up to 30 ms back. Judged then, a probe frame 5 ms old read as dated
    ahead of the clock and tripped imaging_lost under power, with no grace: a lesion cut short by a hiccup on the
    serial line."""
    rig = Rig()  # the genicular plan requires imaging
    rig.energise()
    for _ in range(3):
        rig.clock.advance(0.01)
        rig.driver.poll()
        rig.gate.evaluate(rig.imaging())
    for _ in range(4):
        rig.gen_time_us += 10_000
        rig.send(replace(telemetry({1: channel(power_w=10.0, flags=ON)}), gen_time_us=rig.gen_time_us))
    rig.send(Status(int(GeneratorState.OUTPUT), 0, 0x0102))
    rig.send(Heartbeat(int(GeneratorState.OUTPUT), rig.gen_time_us // 1000))
    rig.driver.poll()
    now = rig.clock.now()
    rig.gate.evaluate(ImagingStatus(now - 0.005, 30.0, probe_face_read_at=now - 0.5))
    assert rig.gate.latched == () and rig.gate.commanded[0].on
