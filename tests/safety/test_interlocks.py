"""Every interlock at its boundary (just below, at, just above) and as a property over its whole range.

Numeric interlocks are described once as a :class:`Case`: a snapshot builder taking ``limit + k * step``
(``step`` is one wire unit or one millisecond), so ``k = -1, 0, +1`` are the boundary examples and the
property test draws ``k`` over a wide range. A maximum trips iff ``k > 0``, a minimum iff ``k < 0``.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from firmware_bridge.generator import Received, Unanswered
from firmware_bridge.messages import (
    Ack,
    AckResult,
    ChannelTelemetry,
    ElectrodeInfo,
    ElectrodeSlot,
    GeneratorState,
    OutputMode,
    SetOutput,
    Status,
    TelemetryFlag,
)
from safety import limits as hard
from safety.config import HARD_LIMITS, SafetyLimits
from safety.inputs import (
    EMPTY_TREND,
    ChannelTrend,
    CommandedChannel,
    ImagingStatus,
    SafetyInputs,
    Settling,
    advance_trend,
)
from safety.interlocks import (
    CHANNEL_CHECKS,
    CLOCKED,
    SPECS,
    SYSTEM_CHECKS,
    TIME_ONLY_INPUTS,
    ChannelRules,
    Evaluation,
    InterlockId,
    Priority,
    SafetyRules,
    Scope,
    Trip,
    evaluate_interlocks,
    only_time_has_moved,
    reevaluate,
)
from safety.plan import Electrode, Lesion, LesionPlan, default_genicular_plan
from tests.safety.support import (
    CONNECTED,
    NOW,
    ON,
    PULSED_RULES,
    RULES,
    channel,
    electrodes,
    inputs,
    on,
    telemetry,
)

CH1 = RULES.by_channel[1]


def stimulating(amplitude_mv: int, age_s: float = 1.0) -> CommandedChannel:
    """Stimulation commanded at ``amplitude_mv`` ``age_s`` ago (RF off)."""
    return CommandedChannel(on=False, since=NOW - age_s, stim_amplitude_mv=amplitude_mv, stim_since=NOW - age_s)
PULSED_CH1 = PULSED_RULES.by_channel[1]


def _tripped(interlock: InterlockId, snapshot: SafetyInputs, rules: SafetyRules = RULES) -> bool:
    return any(t.interlock is interlock for t in evaluate_interlocks(snapshot, rules, NOW))


def _hot_plan_rules() -> SafetyRules:
    """Set temperature 93 °C: set + margin (98) passes the hard maximum, so 95 °C is what binds."""
    lesion = Lesion(
        channel=1,
        electrode=Electrode(gauge=18, active_tip_mm=10.0),
        set_temp_c=93.0,
        ramp_rate_c_per_s=2.0,
        lesion_time_s=360.0,
        power_cap_w=50.0,
        impedance_min_ohm=50.0,
        impedance_max_ohm=1000.0,
    )
    return SafetyRules.compile(LesionPlan(name="hot", imaging_required=False, lesions=(lesion,)), HARD_LIMITS)


HOT_RULES = _hot_plan_rules()


def _rolloff_trend(rise_ohm: float) -> ChannelTrend:
    trend = advance_trend(ChannelTrend(), channel(60.0, 200.0, power_w=10.0), 1.0, True)
    return advance_trend(
        trend, channel(60.0, 200.0 + rise_ohm, power_w=10.0), 1.0 + hard.ROLLOFF_WINDOW_S, True
    )


def _slew_trend(step_c: float) -> ChannelTrend:
    trend = advance_trend(ChannelTrend(), channel(37.0), 1.0, False)
    return advance_trend(trend, channel(37.0 + step_c), 1.5, False)


def _falling_trend(rate_c_per_s: float) -> ChannelTrend:
    """A reading that collapses from 90 °C at ``rate_c_per_s``: a thermocouple torn from the tip reads no less
    implausibly than one that jumps."""
    trend = advance_trend(ChannelTrend(), channel(90.0), 1.0, False)
    return advance_trend(trend, channel(90.0 - rate_c_per_s * 0.5), 1.5, False)


def _frozen_trend(frozen_s: float, p_low: float = 5.0, p_high: float = 8.0) -> ChannelTrend:
    trend = advance_trend(ChannelTrend(), channel(50.0, power_w=p_low), 10.0, True)
    trend = advance_trend(trend, channel(50.0, power_w=p_high), 10.0 + frozen_s / 2, True)
    return advance_trend(trend, channel(50.0, power_w=p_low), 10.0 + frozen_s, True)


def _tracking_trend(energy_j: float, peak_c: float) -> ChannelTrend:
    return ChannelTrend(
        gen_time_s=5.0,
        tip_temp_centi_c=round(peak_c * 100),
        powered_on=True,
        temp_at_on_c=37.0,
        max_temp_since_on_c=peak_c,
        energy_since_on_j=energy_j,
    )


@dataclass(frozen=True)
class Case:
    interlock: InterlockId
    make: Callable[[float], SafetyInputs]
    limit: float
    step: float
    maximum: bool = True
    rules: SafetyRules = RULES
    label: str = ""

    def __str__(self) -> str:
        return f"{self.interlock.value}{'-' + self.label if self.label else ''}"


CASES = [
    Case(
        InterlockId.OVER_TEMPERATURE,
        lambda v: inputs(telemetry({1: channel(v)})),
        85.0,
        0.01,
        label="set+margin",
    ),
    Case(
        InterlockId.OVER_TEMPERATURE,
        lambda v: inputs(telemetry({1: channel(v)})),
        95.0,
        0.01,
        rules=HOT_RULES,
        label="hard-max",
    ),
    Case(
        InterlockId.PULSED_OVER_TEMPERATURE,
        lambda v: inputs(telemetry({1: channel(v)})),
        45.0,
        0.01,
        rules=PULSED_RULES,
    ),
    Case(
        InterlockId.IMPEDANCE_LOW,
        lambda v: inputs(telemetry({1: channel(impedance_ohm=v)})),
        60.0,
        0.1,
        maximum=False,
    ),
    Case(InterlockId.IMPEDANCE_HIGH, lambda v: inputs(telemetry({1: channel(impedance_ohm=v)})), 800.0, 0.1),
    Case(
        InterlockId.IMPEDANCE_ROLL_OFF,
        lambda v: inputs(trends={1: _rolloff_trend(v * hard.ROLLOFF_WINDOW_S)}),
        hard.ROLLOFF_MAX_RISE_OHM_PER_S,
        0.2,
    ),
    Case(
        InterlockId.THERMOCOUPLE_IMPLAUSIBLE,
        lambda v: inputs(telemetry({1: channel(v)})),
        hard.THERMOCOUPLE_PLAUSIBLE_MIN_C,
        0.01,
        maximum=False,
        label="low",
    ),
    Case(
        InterlockId.THERMOCOUPLE_IMPLAUSIBLE,
        lambda v: inputs(telemetry({1: channel(v)})),
        hard.THERMOCOUPLE_PLAUSIBLE_MAX_C,
        0.01,
        label="high",
    ),
    Case(
        InterlockId.THERMOCOUPLE_IMPLAUSIBLE,
        lambda v: inputs(trends={1: _slew_trend(v * 0.5)}),
        hard.THERMOCOUPLE_MAX_SLEW_C_PER_S,
        0.02,
        label="slew",
    ),
    Case(
        InterlockId.THERMOCOUPLE_IMPLAUSIBLE,
        lambda v: inputs(trends={1: _falling_trend(v)}),
        hard.THERMOCOUPLE_MAX_SLEW_C_PER_S,
        0.02,
        label="slew falling",
    ),
    Case(
        InterlockId.THERMOCOUPLE_FROZEN,
        lambda v: inputs(trends={1: _frozen_trend(v)}),
        hard.THERMOCOUPLE_FROZEN_S,
        0.01,
        label="duration",
    ),
    Case(
        InterlockId.THERMOCOUPLE_FROZEN,
        lambda v: inputs(trends={1: _frozen_trend(3.5, 5.0, 5.0 + v)}),
        hard.THERMOCOUPLE_FROZEN_POWER_SWING_W,
        0.01,
        label="swing",
    ),
    Case(
        InterlockId.THERMOCOUPLE_FROZEN,
        lambda v: inputs(trends={1: _frozen_trend(v, 6.0, 6.0)}),
        hard.THERMOCOUPLE_STILL_S,
        0.01,
        label="still",
    ),
    Case(
        InterlockId.TEMPERATURE_NOT_TRACKING,
        lambda v: inputs(trends={1: _tracking_trend(v, 38.0)}),
        hard.NOT_TRACKING_ENERGY_J,
        0.5,
        label="energy",
    ),
    Case(
        InterlockId.TEMPERATURE_NOT_TRACKING,
        lambda v: inputs(trends={1: _tracking_trend(200.0, v)}),
        37.0 + hard.NOT_TRACKING_RISE_C,
        0.01,
        maximum=False,
        label="rise",
    ),
    Case(
        InterlockId.OVER_POWER,
        lambda v: inputs(telemetry({1: channel(power_w=v)})),
        round(25.0 * (1 + hard.POWER_MEASUREMENT_TOLERANCE) + hard.POWER_MEASUREMENT_TOLERANCE_W, 2),
        0.01,
        label="plan-cap",
    ),
    # A plan cap at the hard maximum: the measurement allowance must not lift the threshold above 50 W.
    Case(
        InterlockId.OVER_POWER,
        lambda v: inputs(telemetry({1: channel(power_w=v)})),
        hard.POWER_MAX_W,
        0.01,
        rules=HOT_RULES,
        label="hard-max",
    ),
    Case(
        InterlockId.OVER_POWER,
        lambda v: inputs(telemetry({1: channel(power_w=v, flags=ON)}), commanded={1: on(10.0)}),
        12.0,
        0.01,
        label="commanded",
    ),
    Case(
        InterlockId.OVER_POWER,
        lambda v: inputs(
            telemetry({1: channel(power_w=v, flags=ON)}),
            commanded={1: on(10.0, settling=(Settling(20.0, NOW + 0.05),))},
        ),
        23.0,
        0.01,
        label="settling",
    ),
    Case(
        InterlockId.OVER_POWER,
        lambda v: inputs(
            telemetry({1: channel(voltage_v=v, flags=ON)}), commanded={1: on(40.0, mode=OutputMode.RF_PULSED)}
        ),
        41.0,
        0.01,
        rules=PULSED_RULES,
        label="pulsed-voltage",
    ),
    # A lowered pulsed setpoint's predecessor, still settling, allows its own peak voltage + 1 V.
    Case(
        InterlockId.OVER_POWER,
        lambda v: inputs(
            telemetry({1: channel(voltage_v=v, flags=ON)}),
            commanded={1: on(30.0, mode=OutputMode.RF_PULSED, settling=(Settling(40.0, NOW + 0.05),))},
        ),
        41.0,
        0.01,
        rules=PULSED_RULES,
        label="pulsed-settling",
    ),
    # The plan's pulsed maximum (45 V) + 1 V holds whatever was commanded, even nothing.
    Case(
        InterlockId.OVER_POWER,
        lambda v: inputs(telemetry({1: channel(voltage_v=v)})),
        45.0 + hard.OVER_VOLTAGE_TOLERANCE_V,
        0.01,
        rules=PULSED_RULES,
        label="pulsed-maximum",
    ),
    Case(InterlockId.LESION_TIME_EXCEEDED, lambda v: inputs(rf_on_s={1: v}), 92.0, 0.01),
    Case(
        InterlockId.LESION_TIME_EXCEEDED,
        lambda v: inputs(rf_on_s={1: v}),
        360.0,
        0.01,
        rules=HOT_RULES,
        label="hard-max",
    ),
    # Ages here are since the loop *read* the message; it may have landed one period earlier (landed_age_s),
    # so the read-age limit is the contract's limit less one period.
    Case(InterlockId.TELEMETRY_STALE, lambda v: inputs(telemetry_age_s=v),
         round(hard.TELEMETRY_STALE_S - hard.LOOP_PERIOD_S, 3), 0.001),
    Case(InterlockId.ELECTRODE_MISMATCH, lambda v: inputs(electrodes_age_s=v),
         round(hard.ELECTRODE_INFO_MAX_AGE_S - hard.LOOP_PERIOD_S, 3), 0.001, label="electrode-info-age"),
    Case(InterlockId.LINK_LOST, lambda v: inputs(heartbeat_age_s=v),
         round(hard.LINK_LOSS_S - hard.LOOP_PERIOD_S, 3), 0.001, label="heartbeat"),
    Case(InterlockId.LINK_LOST, lambda v: inputs(status_age_s=v),
         round(hard.LINK_LOSS_S - hard.LOOP_PERIOD_S, 3), 0.001, label="status"),
    # A command's age is exact (the host's clock when it was sent), so its limit is the constant itself.
    Case(InterlockId.LINK_LOST, lambda v: inputs(unanswered_age_s=v), hard.COMMAND_ANSWER_S, 0.001,
         label="unanswered"),
    Case(
        InterlockId.UNCOMMANDED_OUTPUT,
        lambda v: inputs(
            telemetry({4: channel(power_w=5.0)}), commanded={4: CommandedChannel(on=False, since=NOW - v)}
        ),
        hard.UNCOMMANDED_GRACE_S,
        0.001,
        label="grace",
    ),
    Case(
        InterlockId.UNCOMMANDED_OUTPUT,
        lambda v: inputs(telemetry({4: channel(power_w=v)})),
        hard.UNCOMMANDED_POWER_W,
        0.01,
        label="power",
    ),
    Case(InterlockId.CONTROL_LOOP_OVERRUN, lambda v: inputs(loop_tick_age_s=v), 0.020, 0.001),
    # The generator's clock against the host's: 0.5 and 2 times are the last rates allowed.
    Case(InterlockId.GENERATOR_FAULT, lambda v: inputs()._replace(generator_clock_rate=v),
         hard.GENERATOR_CLOCK_RATE_MIN, 0.001, maximum=False, label="clock-rate-min"),
    Case(InterlockId.GENERATOR_FAULT, lambda v: inputs()._replace(generator_clock_rate=v),
         hard.GENERATOR_CLOCK_RATE_MAX, 0.001, label="clock-rate-max"),
    Case(
        InterlockId.IMAGING_LOST,
        lambda v: inputs(imaging=ImagingStatus(NOW - v, 30.0, probe_face_read_at=NOW)),
        0.5,
        0.001,
        label="idle",
    ),
    Case(
        InterlockId.IMAGING_LOST,
        lambda v: inputs(imaging=ImagingStatus(NOW - v, 30.0, probe_face_read_at=NOW), commanded={1: on()}),
        0.5 + hard.IMAGING_LOSS_GRACE_S,
        0.001,
        label="during-rf",
    ),
    # Frames in which the boiling monitor cannot see its tip show no boiling: they age as if they had not come.
    Case(
        InterlockId.IMAGING_LOST,
        lambda v: inputs(imaging=ImagingStatus(NOW, 30.0, probe_face_read_at=NOW, boiling_blind_since=NOW - v),
                         commanded={1: on()}),
        0.5 + hard.IMAGING_LOSS_GRACE_S,
        0.001,
        label="boiling-blind",
    ),
    # A time dated ahead of the clock by more than the loop may lag is from another clock: a frame, a face reading,
    # the start of a blind monitor (each ahead by v).
    Case(
        InterlockId.IMAGING_LOST,
        lambda v: inputs(imaging=ImagingStatus(NOW + v, 30.0, probe_face_read_at=NOW)),
        hard.IMAGING_FRAME_AHEAD_MAX_S,
        0.001,
        label="frame-ahead",
    ),
    Case(
        InterlockId.IMAGING_LOST,
        lambda v: inputs(imaging=ImagingStatus(NOW, 30.0, probe_face_read_at=NOW + v)),
        hard.IMAGING_FRAME_AHEAD_MAX_S,
        0.001,
        label="face-reading-ahead",
    ),
    Case(
        InterlockId.IMAGING_LOST,
        lambda v: inputs(imaging=ImagingStatus(NOW, 30.0, probe_face_read_at=NOW, boiling_blind_since=NOW + v)),
        hard.IMAGING_FRAME_AHEAD_MAX_S,
        0.001,
        label="boiling-blind-ahead",
    ),
    # The probe face's temperature read at 1 Hz: a reading older than 2 s is not known (+ the grace under power).
    Case(
        InterlockId.IMAGING_LOST,
        lambda v: inputs(imaging=ImagingStatus(NOW, 30.0, probe_face_read_at=NOW - v)),
        hard.PROBE_FACE_READING_MAX_AGE_S,
        0.001,
        label="face-reading-idle",
    ),
    Case(
        InterlockId.IMAGING_LOST,
        lambda v: inputs(imaging=ImagingStatus(NOW, 30.0, probe_face_read_at=NOW - v), commanded={1: on()}),
        hard.PROBE_FACE_READING_MAX_AGE_S + hard.IMAGING_LOSS_GRACE_S,
        0.001,
        label="face-reading-during-rf",
    ),
    Case(
        InterlockId.PROBE_FACE_OVER_TEMPERATURE,
        lambda v: inputs(imaging=ImagingStatus(NOW, v, probe_face_read_at=NOW)),
        43.0,
        0.01,
    ),
    # The stimulus is judged once 0.1 s have passed since its amplitude was commanded (its two-sided
    # tolerance has its own boundary test and property below).
    Case(InterlockId.STIMULATION_MISMATCH, lambda v: inputs(telemetry({1: channel(voltage_v=1.0, flags=ON)}),
                                                            commanded={1: stimulating(2000, age_s=v)}),
         hard.STIM_SETTLE_S, 0.001, label="settle"),
]


def _trips_at(case: Case, k: int) -> bool:
    return _tripped(case.interlock, case.make(case.limit + k * case.step), case.rules)


@pytest.mark.parametrize("case", CASES, ids=str)
def test_boundary_below_at_above(case: Case) -> None:
    inside, outside = (-1, 1) if case.maximum else (1, -1)
    assert not _trips_at(case, inside), "just inside the limit"
    assert not _trips_at(case, 0), "at the limit (limits are the last allowed value)"
    assert _trips_at(case, outside), "just beyond the limit"


@pytest.mark.parametrize("case", CASES, ids=str)
@given(k=st.integers(-400, 400))
def test_trips_exactly_beyond_the_limit(case: Case, k: int) -> None:
    assert _trips_at(case, k) == (k > 0 if case.maximum else k < 0)


def test_the_healthy_snapshot_trips_nothing() -> None:
    assert evaluate_interlocks(inputs(), RULES, NOW) == []


# -- flags and sets -----------------------------------------------------------------------------------------


@given(flags=st.integers(0, 255))
def test_thermocouple_open_and_channel_fault_follow_their_flags(flags: int) -> None:
    snapshot = inputs(telemetry({2: channel(flags=flags)}))
    assert _tripped(InterlockId.THERMOCOUPLE_OPEN, snapshot) == bool(flags & TelemetryFlag.THERMOCOUPLE_OPEN)
    assert _tripped(InterlockId.CHANNEL_FAULT, snapshot) == bool(flags & TelemetryFlag.CHANNEL_FAULT)


@pytest.mark.parametrize(("flags", "trips"), [(0x08, False), (0x0A, True), (0x0C, False)])
def test_thermocouple_open_examples(flags: int, trips: bool) -> None:
    assert _tripped(InterlockId.THERMOCOUPLE_OPEN, inputs(telemetry({1: channel(flags=flags)}))) == trips


@pytest.mark.parametrize(("flags", "trips"), [(0x08, False), (0x0C, True), (0x0A, False)])
def test_channel_fault_examples(flags: int, trips: bool) -> None:
    assert _tripped(InterlockId.CHANNEL_FAULT, inputs(telemetry({1: channel(flags=flags)}))) == trips


@given(flags=st.integers(0, 255), power_centi_w=st.integers(0, 100))
def test_uncommanded_output_flag_trips_whatever_the_power(flags: int, power_centi_w: int) -> None:
    ch = ChannelTelemetry(3700, 2500, 0, 0, power_centi_w, flags)
    snapshot = inputs(telemetry({4: ch}))
    assert _tripped(InterlockId.UNCOMMANDED_OUTPUT, snapshot) == bool(flags & TelemetryFlag.OUTPUT_ON)


def _generator_fault(snapshot: SafetyInputs) -> Trip | None:
    found = [t for t in evaluate_interlocks(snapshot, RULES, NOW) if t.interlock is InterlockId.GENERATOR_FAULT]
    return found[0] if found else None


_READY = (int(GeneratorState.IDLE), int(GeneratorState.OUTPUT))


@given(state=st.integers(0, 255), bits=st.integers(0, 2**32 - 1))
@example(state=int(GeneratorState.FAULT), bits=0)  # the FAULT state is the fault, with no bit set
def test_generator_fault_iff_not_idle_or_output_or_any_bit(state: int, bits: int) -> None:
    trip = _generator_fault(inputs(status=Status(state, bits, 0x0102)))
    assert (trip is not None) == (state not in _READY or bits != 0)
    if trip is not None:
        assert trip.trips_when_idle == (state == GeneratorState.FAULT or bits != 0), (
            "FAULT and fault bits trip even when idle; BOOT or an unknown state only under power"
        )


@pytest.mark.parametrize(
    ("state", "bits", "trips"),
    [
        (GeneratorState.OUTPUT, 0, False),
        (GeneratorState.IDLE, 0, False),
        (GeneratorState.OUTPUT, 1, True),
        (GeneratorState.FAULT, 0, True),
        (GeneratorState.BOOT, 0, True),
        (4, 0, True),
    ],
)
def test_generator_fault_examples(state: int, bits: int, trips: bool) -> None:
    assert _tripped(InterlockId.GENERATOR_FAULT, inputs(status=Status(int(state), bits, 0))) == trips


@pytest.mark.parametrize(("state", "bits", "said"), [
    (GeneratorState.FAULT, 4, "generator state FAULT (3), fault bits 0x00000004"),
    (GeneratorState.OUTPUT, 1, "generator state OUTPUT (2), fault bits 0x00000001"),
    (9, 1, "generator state unknown (9), fault bits 0x00000001"),
])
def test_a_generator_fault_names_the_state_as_the_other_generator_alarms_do(state: int, bits: int, said: str) -> None:
    found = [t for t in evaluate_interlocks(inputs(status=Status(int(state), bits, 0)), RULES, NOW)
             if t.interlock is InterlockId.GENERATOR_FAULT]
    assert [t.reason for t in found] == [said]


@given(
    since_s=st.floats(-10.0, 0.0),
    arrived_s=st.floats(-20.0, 0.0),
    result=st.sampled_from([r for r in AckResult if r is not AckResult.OK] + [7]),
    energised=st.sampled_from(["off", "rf", "stim"]),
)
def test_a_refused_command_is_a_generator_fault_iff_it_came_while_energised(
    since_s: float, arrived_s: float, result: int, energised: str
) -> None:
    """Host and generator disagree: the host commanded output the generator refused. It trips (never while
    idle: then nothing is believed to flow); a refusal from before the present energised period does not."""
    commanded = {
        "off": CommandedChannel(on=False, since=NOW + since_s),
        "rf": on(since=NOW + since_s),
        "stim": CommandedChannel(on=False, since=NOW + since_s, stim_amplitude_mv=800),
    }[energised]
    refusal = Received(Ack(SetOutput.MSG_ID, 7, int(result)), 3, NOW + arrived_s)
    trip = _generator_fault(inputs(commanded={2: commanded})._replace(refusal=refusal))
    assert (trip is not None) == (energised != "off" and since_s < arrived_s)
    if trip is not None:
        name = AckResult(result).name if result in set(AckResult) else f"result {result}"
        assert trip.reason == f"generator refused SetOutput (SEQ 7): {name}"
        assert not trip.trips_when_idle and trip.mask == 0x0F


def test_a_refusal_read_at_the_moment_output_turned_on_belongs_to_the_period_before() -> None:
    """Same clock reading: read by the poll that preceded the request that turned the channel on."""
    refusal = Received(Ack(0x13, 3, int(AckResult.REFUSED_LIMIT)), 3, NOW - 1.0)
    assert _generator_fault(inputs(commanded={1: on(since=NOW - 1.0)})._replace(refusal=refusal)) is None
    later = refusal._replace(arrived_at=NOW - 0.99)
    trip = _generator_fault(inputs(commanded={1: on(since=NOW - 1.0)})._replace(refusal=later))
    assert trip is not None and trip.reason == "generator refused Pump (SEQ 3): REFUSED_LIMIT"


def test_a_generator_clock_that_does_not_advance_is_a_generator_fault_under_power() -> None:
    first = advance_trend(ChannelTrend(), channel(60.0, power_w=10.0, flags=ON), 5.0, True)
    assert not first.clock_stalled, "the first sample has nothing to advance past"
    assert _generator_fault(inputs(trends={1: first})) is None
    for gen_time_s in (5.0, 4.0):  # frozen, then reset (a reboot)
        stalled = advance_trend(first, channel(60.0, power_w=10.0, flags=ON), gen_time_s, True)
        assert stalled.clock_stalled
        trip = _generator_fault(inputs(trends={4: stalled}))  # any channel's trend: the clock is shared
        assert trip is not None and not trip.trips_when_idle and trip.mask == 0x0F
    moving = advance_trend(stalled, channel(60.0, power_w=10.0, flags=ON), 4.01, True)
    assert not moving.clock_stalled and _generator_fault(inputs(trends={1: moving})) is None


@pytest.mark.parametrize("rate", [0.0, 0.499, 2.001, 1000.0])
def test_a_generator_clock_that_crawls_or_races_refuses_output_while_idle_and_trips_under_power(rate: float) -> None:
    """Like a stalled clock, a clock at the wrong rate blinds the trends that time RF (docs/safety.md: generator_fault
    is idle-trip only for FAULT and the fault bits): while idle it refuses output, and latches nothing."""
    trip = _generator_fault(inputs()._replace(generator_clock_rate=rate))
    assert trip is not None and not trip.trips_when_idle and trip.mask == 0x0F
    assert trip.reason.startswith(f"generator clock ran at {rate:.3g} times the host's")


_TEMPERATURE_CHECKS = {InterlockId.OVER_TEMPERATURE, InterlockId.PULSED_OVER_TEMPERATURE,
                       InterlockId.THERMOCOUPLE_OPEN, InterlockId.THERMOCOUPLE_IMPLAUSIBLE}


@given(centi_c=st.integers(-32768, 32767), pulsed=st.booleans(), open_flag=st.booleans())
def test_a_reading_flagged_open_trips_thermocouple_open_and_is_judged_as_no_temperature(
    centi_c: int, pulsed: bool, open_flag: bool
) -> None:
    """An open thermocouple's reading (often 327.67 °C, the field's maximum) is no temperature: the alarm named
    `over_temperature ... 327.67 °C` (first, by the alarm order), and the physician looked for heat. A flagged
    reading trips `thermocouple_open` alone; the same reading without the flag is judged as ever."""
    flags = ON | (int(TelemetryFlag.THERMOCOUPLE_OPEN) if open_flag else 0)
    reading = ChannelTelemetry(centi_c, 2500, 0, 0, 0, flags)
    rules = PULSED_RULES if pulsed else RULES
    found = {t.interlock for t in evaluate_interlocks(inputs(telemetry({1: reading})), rules, NOW)
             if t.channel == 1} & _TEMPERATURE_CHECKS
    if open_flag:
        assert found == {InterlockId.THERMOCOUPLE_OPEN}
        return
    temp_c = centi_c / 100.0
    trip_c = rules.by_channel[1].pulsed_tip_max_c if pulsed else rules.by_channel[1].over_temp_c
    over = InterlockId.PULSED_OVER_TEMPERATURE if pulsed else InterlockId.OVER_TEMPERATURE
    assert (over in found) == (temp_c > trip_c)
    plausible = hard.THERMOCOUPLE_PLAUSIBLE_MIN_C <= temp_c <= hard.THERMOCOUPLE_PLAUSIBLE_MAX_C
    assert (InterlockId.THERMOCOUPLE_IMPLAUSIBLE in found) == (not plausible)


def test_missing_messages_count_as_stale_or_lost() -> None:
    assert _tripped(InterlockId.TELEMETRY_STALE, inputs(no_telemetry=True))
    assert _tripped(InterlockId.LINK_LOST, inputs(heartbeat_age_s=None))
    assert _tripped(InterlockId.IMAGING_LOST, inputs(imaging=None))
    assert _tripped(InterlockId.IMAGING_LOST, inputs(imaging=ImagingStatus(None, 30.0, probe_face_read_at=NOW)))
    assert _tripped(InterlockId.IMAGING_LOST, inputs(imaging=ImagingStatus(float("nan"), 30.0, probe_face_read_at=NOW)))
    nan_blind = ImagingStatus(NOW, 30.0, probe_face_read_at=NOW, boiling_blind_since=float("nan"))
    assert _tripped(InterlockId.IMAGING_LOST, inputs(imaging=nan_blind))
    nan_face = ImagingStatus(NOW, float("nan"), probe_face_read_at=NOW)
    assert _tripped(InterlockId.PROBE_FACE_OVER_TEMPERATURE, inputs(imaging=nan_face))
    assert _tripped(InterlockId.ELECTRODE_MISMATCH, inputs(electrodes_age_s=float("nan")))


def test_a_stimulus_with_no_telemetry_yet_is_judged_stale_and_the_evaluation_does_not_fail() -> None:
    """Nothing measured the stimulus: telemetry_stale says so (all channels off); stimulation_mismatch has nothing to
    judge, and must not take the missing frame for one (an exception here would leave the tick without a verdict)."""
    snapshot = inputs(no_telemetry=True, commanded={1: stimulating(2000)})
    assert [t.interlock for t in evaluate_interlocks(snapshot, RULES, NOW)] == [InterlockId.TELEMETRY_STALE]


@pytest.mark.parametrize(("blind_for_s", "energised", "said"), [
    (2.51, True, "for 2.51 s (limit 2.50 s)"),  # docs/safety.md's example
    (0.6, False, "for 0.60 s (limit 0.50 s)"),
    (-0.03, False, "dated 0.03 s ahead of the host clock (limit 0.50 s)"),
    (-0.5, True, "dated 0.50 s ahead of the host clock (limit 2.50 s)"),
])
def test_a_blind_boiling_monitor_is_named_with_how_long_it_has_been_blind(
    blind_for_s: float, energised: bool, said: str
) -> None:
    """The operator is told how long the monitor has not seen the tip, or that its time is from another clock."""
    imaging = ImagingStatus(NOW, 30.0, probe_face_read_at=NOW, boiling_blind_since=NOW - blind_for_s)
    snapshot = inputs(imaging=imaging, commanded={1: on()} if energised else None)
    assert [t.reason for t in evaluate_interlocks(snapshot, RULES, NOW)] == [
        f"boiling monitor blind to the tip (not in the image) {said}"
    ]


@given(error_bits=st.integers(0, 2**32 - 1), energised=st.booleans(), fault=st.booleans())
def test_a_probe_that_reports_its_fault_state_is_imaging_lost_at_once_however_fresh_its_frames(
    error_bits: int, energised: bool, fault: bool
) -> None:
    """GET_STATUS state 2: the probe says its images cannot be trusted. The loss grace (for a drop-out the last good
    image outlives) does not apply; error bits alone (state streaming) are the probe's to mean and the host's
    interlocks judge what they can measure (the face temperature), so they trip nothing."""
    imaging = ImagingStatus(NOW, 30.0, probe_face_read_at=NOW, probe_fault_bits=error_bits if fault else None)
    snapshot = inputs(imaging=imaging, commanded={1: on()} if energised else None)
    assert snapshot.energised == energised
    trips = [t for t in evaluate_interlocks(snapshot, RULES, NOW) if t.interlock is InterlockId.IMAGING_LOST]
    if not fault:
        assert trips == []
        return
    assert len(trips) == 1
    assert trips[0].reason == f"the probe reports a fault (GET_STATUS state 2, error bits 0x{error_bits:08X})"
    assert not _tripped(InterlockId.IMAGING_LOST, snapshot, PULSED_RULES), "a plan without imaging asks nothing"


def test_a_pulled_electrode_is_named_first_from_the_telemetry_frame_that_shows_it() -> None:
    """TELEMETRY's flags say no electrode is connected before the 1 Hz ELECTRODE_INFO does, and the readings of a
    pulled electrode (0.00 °C, 6553.5 Ω) trip the reading checks too: the first alarm of the channel names the
    cause, not "tip reading 0.00 °C"."""
    pulled = channel(temp_c=0.0, impedance_ohm=6553.5, flags=0)
    found = [t for t in evaluate_interlocks(inputs(telemetry({1: pulled})), RULES, NOW) if t.channel == 1]
    assert found[0].interlock is InterlockId.ELECTRODE_MISMATCH
    assert found[0].reason == "channel 1: no electrode connected (telemetry)"
    assert InterlockId.THERMOCOUPLE_IMPLAUSIBLE in {t.interlock for t in found}, "the readings still trip too"
    connected = [t for t in evaluate_interlocks(inputs(telemetry({1: channel(flags=CONNECTED)})), RULES, NOW)
                 if t.channel == 1]
    assert connected == []


@given(centi_c=st.integers(-32768, 32767), deci_ohm=st.integers(0, 65535), flags=st.integers(0, 255))
@example(centi_c=9000, deci_ohm=2500, flags=0)  # a floating input that reads hot: over-temperature holds too
def test_a_pulled_electrode_is_its_channels_first_alarm_whatever_the_readings_show(
    centi_c: int, deci_ohm: int, flags: int
) -> None:
    """electrode_mismatch is checked first of a channel's interlocks (docs/safety.md), so the alarm names the cause
    whatever an input with nothing plugged in reads: hot, cold, open or shorted."""
    pulled = ChannelTelemetry(centi_c, deci_ohm, 0, 0, 0, flags & ~CONNECTED)
    found = [t for t in evaluate_interlocks(inputs(telemetry({1: pulled})), RULES, NOW) if t.channel == 1]
    assert found[0].key == (InterlockId.ELECTRODE_MISMATCH, 1)
    assert found[0].reason == "channel 1: no electrode connected (telemetry)"


def test_imaging_is_ignored_when_the_plan_does_not_need_it() -> None:
    assert not _tripped(InterlockId.IMAGING_LOST, inputs(imaging=None), PULSED_RULES)


@given(amplitude_mv=st.integers(0, hard.STIM_AMPLITUDE_MAX_MV), rf=st.booleans())
@example(amplitude_mv=1, rf=False)
def test_a_channel_is_energised_by_rf_or_by_any_stimulus_the_gate_may_command(amplitude_mv: int, rf: bool) -> None:
    """The gate commands stimuli from 1 mV up (request_stim: 1..the plan's maximum): any of them is energy flowing,
    for the imaging grace, the refusal check and what counts as output the gate did not command."""
    commanded = CommandedChannel(on=rf, since=NOW - 1.0, stim_amplitude_mv=amplitude_mv)
    assert commanded.energised == (rf or amplitude_mv > 0)
    assert inputs(commanded={2: commanded}).energised == commanded.energised


def test_a_snapshot_is_energised_by_a_stimulus_as_by_rf() -> None:
    assert not inputs().energised
    assert inputs(commanded={3: stimulating(1000)}).energised
    assert inputs(commanded={2: on()}).energised


def test_control_loop_overrun_needs_a_previous_tick() -> None:
    assert not _tripped(InterlockId.CONTROL_LOOP_OVERRUN, inputs(loop_tick_age_s=None))


@given(stop=st.booleans())
def test_operator_stop_follows_its_flag(stop: bool) -> None:
    assert _tripped(InterlockId.OPERATOR_STOP, inputs(operator_stop=stop)) == stop


@given(boiling=st.frozensets(st.integers(1, 4)))
def test_boiling_trips_exactly_the_planned_boiling_channels(boiling: frozenset[int]) -> None:
    trips = evaluate_interlocks(inputs(imaging=ImagingStatus(NOW, 30.0, boiling, probe_face_read_at=NOW)), RULES, NOW)
    found = {t.channel for t in trips if t.interlock is InterlockId.BOILING_DETECTED}
    assert found == boiling & {1, 2, 3}


@pytest.mark.parametrize(
    ("boiling", "trips"), [(frozenset(), False), (frozenset({2}), False), (frozenset({1}), True)]
)
def test_boiling_examples(boiling: frozenset[int], trips: bool) -> None:
    snapshot = inputs(imaging=ImagingStatus(NOW, 30.0, boiling, probe_face_read_at=NOW))
    assert (
        any(
            t.interlock is InterlockId.BOILING_DETECTED and t.channel == 1
            for t in evaluate_interlocks(snapshot, RULES, NOW)
        )
        == trips
    )


# -- electrodes ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("info", "trips"),
    [
        (electrodes(), False),
        (electrodes(gauge=20), True),
        (electrodes(tip_mm=10.1), True),
        (electrodes(tip_mm=9.9), True),
        (electrodes(cooled=True), True),
        (electrodes(fitted=False), True),
        (ElectrodeInfo(tuple(ElectrodeSlot(0, 0, 0, 0) for _ in range(4))), True),  # type: ignore[arg-type]
    ],
)
def test_electrode_mismatch_examples(info: ElectrodeInfo, trips: bool) -> None:
    assert _tripped(InterlockId.ELECTRODE_MISMATCH, inputs(electrode_info=info)) == trips


@given(model=st.integers(0, 3), gauge=st.integers(14, 24), tip=st.integers(40, 160), flags=st.integers(0, 3))
@example(model=0, gauge=18, tip=100, flags=0x02)  # none connected, whatever the slot's other fields say
def test_electrode_mismatch_iff_not_the_planned_electrode(
    model: int, gauge: int, tip: int, flags: int
) -> None:
    slot = ElectrodeSlot(model, gauge, tip, flags)
    snapshot = inputs(electrode_info=ElectrodeInfo((slot, slot, slot, slot)))
    planned = model != 0 and gauge == 18 and tip == 100 and flags == 0x02
    assert _tripped(InterlockId.ELECTRODE_MISMATCH, snapshot) == (not planned)


# -- scope, masks and the whole table ------------------------------------------------------------------------


@pytest.mark.parametrize(("measured_v", "trips"), [(1.77, True), (1.78, False), (2.0, False), (2.22, False),
                                                    (2.23, True), (0.0, True)])
def test_a_2_v_motor_stimulus_is_judged_within_10_percent_plus_20_mv(measured_v: float, trips: bool) -> None:
    snapshot = inputs(telemetry({1: channel(voltage_v=measured_v, flags=ON)}), commanded={1: stimulating(2000)})
    assert _tripped(InterlockId.STIMULATION_MISMATCH, snapshot) is trips


@given(amplitude_mv=st.integers(1, hard.STIM_AMPLITUDE_MAX_MV), measured_centi_v=st.integers(0, 500),
       age_s=st.floats(0.0, 5.0), stim_channel=st.integers(1, 4))
# 2979 mV allows 297 + 20 mV: 2.66 V (319 mV under) trips, as 3.30 V (319 mV over) does for 2981 mV (298 + 20)
@example(amplitude_mv=2979, measured_centi_v=266, age_s=1.0, stim_channel=1)
@example(amplitude_mv=2981, measured_centi_v=330, age_s=1.0, stim_channel=1)
def test_stimulation_trips_iff_measured_off_the_commanded_amplitude_once_settled(
    amplitude_mv: int, measured_centi_v: int, age_s: float, stim_channel: int
) -> None:
    """Only a planned channel that stimulates is judged, only after the settling time, and then by both
    sides of the tolerance: under-delivery (the dangerous side) and over-delivery alike."""
    snapshot = inputs(telemetry({stim_channel: channel(voltage_v=measured_centi_v / 100, flags=ON)}),
                      commanded={stim_channel: stimulating(amplitude_mv, age_s)})
    off_by_mv = abs(measured_centi_v * 10 - amplitude_mv)
    tolerance_mv = amplitude_mv / 10 + 20  # 10 % + 20 mV, the integer floor of which is what is allowed
    expected = stim_channel in RULES.by_channel and age_s > hard.STIM_SETTLE_S and off_by_mv >= int(tolerance_mv) + 1
    trips = [t for t in evaluate_interlocks(snapshot, RULES, NOW) if t.interlock is InterlockId.STIMULATION_MISMATCH]
    assert [t.channel for t in trips] == ([stim_channel] if expected else [])
    assert all("commanded" in t.reason and "measured" in t.reason for t in trips)


def test_a_stimulation_mismatch_states_the_tolerance_it_was_judged_by() -> None:
    """In integer millivolts, as judged: 10 % of 2979 mV is 297 mV, so the alarm states 317 mV, not 317.9."""
    snapshot = inputs(telemetry({1: channel(voltage_v=2.66, flags=ON)}), commanded={1: stimulating(2979)})
    found = [t for t in evaluate_interlocks(snapshot, RULES, NOW) if t.interlock is InterlockId.STIMULATION_MISMATCH]
    assert [t.reason for t in found] == [
        "channel 1: stimulation measured 2.66 V, commanded 2.98 V (tolerance 0.317 V): a response, or its absence, at "
        "this amplitude would mislead"
    ]


@given(measured_centi_v=st.integers(0, 5000))
def test_without_stimulation_the_voltage_is_not_judged_against_any_amplitude(measured_centi_v: int) -> None:
    snapshot = inputs(telemetry({1: channel(voltage_v=measured_centi_v / 100)}))
    assert not _tripped(InterlockId.STIMULATION_MISMATCH, snapshot)


def test_every_interlock_has_a_spec_and_a_check() -> None:
    assert set(SPECS) == set(InterlockId)
    assert len(SYSTEM_CHECKS) + len(CHANNEL_CHECKS) == len(InterlockId)
    assert {check.__name__.removeprefix("check_") for check in (*SYSTEM_CHECKS, *CHANNEL_CHECKS)} == set(InterlockId)
    assert set(InterlockId) > CLOCKED


_DOCUMENTED_ROW = re.compile(r"^\| `(\w+)` \| (.*) \| ([HML]) \| (yes|no) \| (ch|sys) \| .* \|$")


def _documented_specs() -> dict[str, tuple[Priority, bool, Scope, bool]]:
    """docs/safety.md's table of interlocks, row by row: priority, latch, scope, and whether the condition is marked
    idle-trip."""
    text = (Path(__file__).parents[2] / "docs" / "safety.md").read_text(encoding="utf-8")
    rows = {}
    for line in text.splitlines():
        if match := _DOCUMENTED_ROW.match(line):
            interlock, condition, priority, latch, scope = match.groups()
            rows[interlock] = (
                {"H": Priority.HIGH, "M": Priority.MEDIUM, "L": Priority.LOW}[priority],
                latch == "yes",
                {"ch": Scope.CHANNEL, "sys": Scope.SYSTEM}[scope],
                "idle-trip" in condition,
            )
    return rows


def test_every_interlock_has_the_priority_latch_scope_and_idle_trip_docs_safety_md_gives_it() -> None:
    """The alarm's priority (IEC 60601-1-8: how fast the physician must act), whether the gate latches it, which
    channels it stops and whether it trips while idle are what SPECS says; the table in docs/safety.md is what the
    operator's manual and the risk file rely on. A spec that drifted from it (over-temperature sounded as a medium
    alarm, an impedance trip that no longer latches) would pass every other test."""
    documented = _documented_specs()
    assert set(documented) == {interlock.value for interlock in InterlockId}
    for interlock, spec in SPECS.items():
        assert (spec.priority, spec.latching, spec.scope, spec.trips_when_idle) == documented[interlock.value], (
            interlock
        )


@pytest.mark.parametrize("case", CASES, ids=str)
def test_a_trip_stops_what_its_interlocks_scope_says(case: Case) -> None:
    """A system trip stops all four channels; a channel trip names its channel and stops it (its bipolar pair with
    it), whatever the interlock's spec is used for elsewhere."""
    snapshot = case.make(case.limit + (1 if case.maximum else -1) * case.step)
    trips = evaluate_interlocks(snapshot, case.rules, NOW)
    assert case.interlock in {t.interlock for t in trips}
    for trip in trips:
        if SPECS[trip.interlock].scope is Scope.SYSTEM:
            assert (trip.channel, trip.mask) == (None, 0x0F), trip
        else:
            assert trip.channel is not None and trip.mask == case.rules.by_channel[trip.channel].mask, trip


def test_channel_trips_stop_their_channel_and_system_trips_stop_all() -> None:
    hot = evaluate_interlocks(inputs(telemetry({2: channel(90.0)}), loop_tick_age_s=1.0), RULES, NOW)
    by_id = {t.interlock: t for t in hot}
    assert by_id[InterlockId.OVER_TEMPERATURE].mask == 0b0010
    assert by_id[InterlockId.CONTROL_LOOP_OVERRUN].mask == 0x0F


def test_a_bipolar_channel_trip_stops_the_pair() -> None:
    from tests.safety.support import bipolar_plan

    rules = SafetyRules.compile(bipolar_plan(), HARD_LIMITS)
    trips = evaluate_interlocks(inputs(telemetry({2: channel(90.0)})), rules, NOW)
    assert [t.mask for t in trips if t.interlock is InterlockId.OVER_TEMPERATURE] == [0b0011]


@given(side_1=st.floats(0.0, 30.0), side_2=st.floats(0.0, 30.0), setpoint=st.floats(1.0, 25.0))
def test_a_bipolar_pair_is_judged_by_the_power_of_both_sides(side_1: float, side_2: float, setpoint: float) -> None:
    # The pair's setpoint and its 25 W cap are the power of the pair: each side carries part of it, so a
    # runaway to twice the setpoint shows as about the setpoint on each side.
    from tests.safety.support import bipolar_plan

    rules = SafetyRules.compile(bipolar_plan(), HARD_LIMITS)
    on = CommandedChannel(True, 0.0, OutputMode.RF_BIPOLAR, setpoint)
    snapshot = inputs(telemetry({1: channel(60.0, power_w=side_1), 2: channel(60.0, power_w=side_2)}),
                      commanded={1: on, 2: on})
    trips = [t for t in evaluate_interlocks(snapshot, rules, NOW) if t.interlock is InterlockId.OVER_POWER]
    pair_w = (round(side_1 * 100) + round(side_2 * 100)) / 100.0  # as the interlock sums the wire values
    lead = rules.by_channel[1]
    expected = pair_w > min(lead.over_power_w, setpoint * (1 + hard.OVER_POWER_TOLERANCE) + hard.OVER_POWER_TOLERANCE_W)
    assert [(t.channel, t.mask) for t in trips] == ([(1, 0b0011)] if expected else [])


_channel_values = st.builds(
    ChannelTelemetry,
    st.integers(-32768, 32767),
    st.integers(0, 65535),
    st.integers(0, 65535),
    st.integers(0, 65535),
    st.integers(0, 65535),
    st.integers(0, 255),
)


@given(chans=st.lists(_channel_values, min_size=4, max_size=4), rf=st.floats(0, 1000), age=st.floats(0, 10))
def test_evaluation_is_total_and_deterministic(chans: list[ChannelTelemetry], rf: float, age: float) -> None:
    snapshot = inputs(
        telemetry(dict(enumerate(chans, start=1))), telemetry_age_s=age, rf_on_s={1: rf}, commanded={1: on()}
    )
    first = evaluate_interlocks(snapshot, RULES, NOW)
    assert first == evaluate_interlocks(snapshot, RULES, NOW)
    assert all(isinstance(t, Trip) and t.mask for t in first)


_ages = st.floats(0.0, 0.6)


def test_a_settling_setpoint_is_allowed_until_its_deadline_and_not_at_it() -> None:
    commanded = on(5.0, settling=(Settling(20.0, NOW + 1.0), Settling(12.0, NOW + 2.0)))
    assert [commanded.allowed_setpoint(NOW + dt) for dt in (0.0, 1.0 - 1e-9, 1.0, 2.0 - 1e-9, 2.0)] == [
        20.0, 20.0, 12.0, 12.0, 5.0
    ]


@st.composite
def _commanded(draw: st.DrawFn) -> CommandedChannel:
    """Off, stimulating, or on with a setpoint and maybe earlier setpoints settling, each ending within the draw's
    times."""
    kind = draw(st.sampled_from(["off", "stim", "on"]))
    since = NOW - draw(st.floats(0.0, 2.0))
    if kind == "off":
        return CommandedChannel(on=False, since=since)
    if kind == "stim":
        return CommandedChannel(on=False, since=since, stim_amplitude_mv=draw(st.integers(1, 3000)),
                                stim_since=NOW - draw(_ages))
    previous = st.builds(Settling, st.floats(0.0, 40.0), st.floats(-0.1, 0.6).map(lambda dt: NOW + dt))
    settling = draw(st.lists(previous, max_size=3))
    return on(setpoint=draw(st.floats(0.0, 40.0)), since=since, settling=tuple(settling))


@given(
    chans=st.lists(_channel_values, min_size=4, max_size=4),
    commanded=st.lists(_commanded(), min_size=4, max_size=4),
    ages=st.tuples(_ages, _ages, _ages, _ages, st.one_of(st.none(), _ages), st.floats(0.0, 4.0)),
    rf_on_s=st.lists(st.floats(0.0, 400.0), min_size=4, max_size=4),
    later=st.tuples(st.floats(0.0, 0.5), st.one_of(st.none(), _ages), st.one_of(st.none(), st.floats(0.0, 0.5))),
    pulsed=st.booleans(),
)
def test_a_later_moment_needs_only_the_clocked_interlocks_run_again(
    chans: list[ChannelTelemetry],
    commanded: list[CommandedChannel],
    ages: tuple[float, float, float, float, float | None, float],
    rf_on_s: list[float],
    later: tuple[float, float | None, float | None],
    pulsed: bool,
) -> None:
    """What the gate does for a request after its tick (ARCHITECTURE.md section 7: every request is checked
    against every interlock): keep the unclocked conditions, run the clocked ones at the later moment, on a
    snapshot whose RF time, last tick, oldest unanswered command and heartbeat have moved on, and whose settling
    setpoints may have expired. It must give exactly what evaluating everything then gives; a check left out of
    CLOCKED that reads the time, or a field of TIME_ONLY_INPUTS, makes the two differ for some draw."""
    rules = PULSED_RULES if pulsed else RULES
    telemetry_age, status_age, heartbeat_age, tick_age, unanswered_age, frame_age = ages
    dt, unanswered_age_then, heartbeat_since = later
    earlier = inputs(
        telemetry(dict(enumerate(chans, start=1))),
        telemetry_age_s=telemetry_age,
        status_age_s=status_age,
        heartbeat_age_s=heartbeat_age,
        loop_tick_age_s=tick_age,
        unanswered_age_s=unanswered_age,
        commanded=dict(enumerate(commanded, start=1)),
        rf_on_s=dict(enumerate(rf_on_s, start=1)),
        imaging=ImagingStatus(last_frame_at=NOW - frame_age, probe_face_temp_c=30.0, probe_face_read_at=NOW),
    )
    now = NOW + dt
    then = earlier._replace(
        rf_on_s=tuple(rf + dt if c.on else rf for rf, c in zip(earlier.rf_on_s, earlier.commanded, strict=True)),
        loop_tick_at=NOW,
        unanswered=None if unanswered_age_then is None else earlier.unanswered,
        generator_heartbeat_at=earlier.generator_heartbeat_at if heartbeat_since is None else NOW + heartbeat_since,
    )
    assert only_time_has_moved(earlier, then)
    reused = reevaluate(Evaluation(earlier, rules, evaluate_interlocks(earlier, rules, NOW)), then, rules, now)
    assert reused == evaluate_interlocks(then, rules, now)


_BASE = inputs()
_ANOTHER: dict[str, Any] = {
    "telemetry": Received(telemetry(), 0, NOW),
    "status": Received(Status(int(GeneratorState.IDLE), 0, 0x0102), 0, NOW),
    "generator_heartbeat_at": NOW - 0.1,
    "electrodes": Received(electrodes(), 0, NOW),
    "commanded": (on(5.0), *_BASE.commanded[1:]),
    "rf_on_s": (1.0, 0.0, 0.0, 0.0),
    "trends": (advance_trend(EMPTY_TREND, channel(), 1.0, True), *_BASE.trends[1:]),
    "loop_tick_at": NOW - 0.5,
    "operator_stop": True,
    "imaging": ImagingStatus(NOW - 0.1, 30.0, probe_face_read_at=NOW),
    "refusal": Received(Ack(SetOutput.MSG_ID, 3, int(AckResult.REFUSED_STATE)), 3, NOW),
    "unanswered": Unanswered(SetOutput.MSG_ID, 9, NOW - 0.05),
    "generator_clock_rate": 0.001,
}
"""Per field of the snapshot, a value other than ``_BASE``'s (a message received again is another object)."""


def test_every_field_of_the_snapshot_has_another_value_to_try() -> None:
    assert set(_ANOTHER) == set(SafetyInputs._fields)
    assert set(SafetyInputs._fields) > TIME_ONLY_INPUTS


@pytest.mark.parametrize("field", SafetyInputs._fields)
def test_only_time_has_moved_unless_a_field_an_unclocked_interlock_reads_has_changed(field: str) -> None:
    """The reuse's guard compares every field but the time-only ones: a field left out of the comparison would let
    a request keep its tick's answer to a snapshot that has changed."""
    changed = _BASE._replace(**{field: _ANOTHER[field]})
    assert getattr(changed, field) is not getattr(_BASE, field)
    assert only_time_has_moved(_BASE, changed) == (field in TIME_ONLY_INPUTS)
    earlier = Evaluation(_BASE, RULES, evaluate_interlocks(_BASE, RULES, NOW))
    assert reevaluate(earlier, changed, RULES, NOW) == evaluate_interlocks(changed, RULES, NOW)


def test_under_other_rules_every_interlock_runs_again() -> None:
    """A plan loaded between a tick and a request: the same snapshot, judged by the new plan's rules. Here 20 G
    electrodes are plugged in: an unclocked mismatch on the genicular plan's three channels, on the pulsed
    plan's one; kept from the earlier evaluation, the other two would stay."""
    thinner = _BASE._replace(electrodes=Received(electrodes(gauge=20), 0, NOW))
    earlier = Evaluation(thinner, RULES, evaluate_interlocks(thinner, RULES, NOW))
    under_other_rules = evaluate_interlocks(thinner, PULSED_RULES, NOW)
    assert [t.key for t in under_other_rules] == [(InterlockId.ELECTRODE_MISMATCH, 1)]
    assert len(earlier.found) == 3
    assert reevaluate(earlier, thinner, PULSED_RULES, NOW) == under_other_rules


def test_under_other_rules_no_unclocked_condition_is_kept_from_the_earlier_evaluation() -> None:
    """An unclocked condition (impedance) would be kept from the tick's evaluation if only time had moved; under a
    plan loaded since, channel 2 is planned no more and its high impedance is no condition."""
    snapshot = _BASE._replace(telemetry=Received(telemetry({2: channel(impedance_ohm=900.0)}), 0, NOW))
    earlier = Evaluation(snapshot, RULES, evaluate_interlocks(snapshot, RULES, NOW))
    assert [t.key for t in earlier.found] == [(InterlockId.IMPEDANCE_HIGH, 2)]
    assert reevaluate(earlier, snapshot, PULSED_RULES, NOW) == evaluate_interlocks(snapshot, PULSED_RULES, NOW) == []


def _begins_to_hold_with_time(interlock: InterlockId) -> tuple[SafetyInputs, SafetyInputs, float]:
    """A tick's snapshot in which ``interlock``'s condition does not hold at NOW, the snapshot of a request
    ``dt`` later (RF time and the last tick moved on as the gate moves them), in which it does, and ``dt``:
    time alone turned it on."""
    dt = 0.01
    limit_s = hard.LOOP_PERIOD_S * hard.LOOP_MISSED_PERIODS
    earlier = {
        InterlockId.LINK_LOST: inputs(unanswered_age_s=hard.COMMAND_ANSWER_S - 0.005),
        InterlockId.TELEMETRY_STALE: inputs(telemetry_age_s=RULES.limits.telemetry_stale_s - 0.015),
        InterlockId.CONTROL_LOOP_OVERRUN: inputs(),
        InterlockId.IMAGING_LOST: inputs(
            imaging=ImagingStatus(NOW - RULES.imaging_max_age_s + 0.005, 30.0, probe_face_read_at=NOW)
        ),
        InterlockId.OVER_POWER: inputs(telemetry({1: channel(power_w=15.0, flags=ON)}),
                                       commanded={1: on(5.0, settling=(Settling(20.0, NOW + 0.005),))}),
        InterlockId.LESION_TIME_EXCEEDED: inputs(commanded={1: on(10.0)}, rf_on_s={1: CH1.rf_time_budget_s - 0.005}),
        InterlockId.ELECTRODE_MISMATCH: inputs(electrodes_age_s=hard.ELECTRODE_INFO_MAX_AGE_S - 0.015),
    }[interlock]
    if interlock is InterlockId.CONTROL_LOOP_OVERRUN:
        dt = limit_s + 0.005  # the loop stalled between its tick and its request
    then = earlier._replace(
        rf_on_s=tuple(rf + dt if c.on else rf for rf, c in zip(earlier.rf_on_s, earlier.commanded, strict=True)),
        loop_tick_at=NOW,  # the tick's evaluation, now the last
    )
    return earlier, then, dt


_TIME_ALONE = (
    InterlockId.LINK_LOST,
    InterlockId.TELEMETRY_STALE,
    InterlockId.CONTROL_LOOP_OVERRUN,
    InterlockId.IMAGING_LOST,
    InterlockId.OVER_POWER,
    InterlockId.LESION_TIME_EXCEEDED,
    InterlockId.ELECTRODE_MISMATCH,
)


def test_the_clocked_interlocks_are_those_time_alone_can_turn_on() -> None:
    assert set(_TIME_ALONE) == CLOCKED


@pytest.mark.parametrize("interlock", _TIME_ALONE, ids=str)
def test_each_clocked_interlock_can_begin_to_hold_with_time_alone_and_is_run_again(interlock: InterlockId) -> None:
    """Why each one is in CLOCKED: left out, a request after its tick would keep the tick's answer (not holding)
    and be granted into a condition a full evaluation finds."""
    earlier, then, dt = _begins_to_hold_with_time(interlock)
    before = evaluate_interlocks(earlier, RULES, NOW)
    after = evaluate_interlocks(then, RULES, NOW + dt)
    assert interlock not in {t.interlock for t in before}
    assert interlock in {t.interlock for t in after}
    assert only_time_has_moved(earlier, then)
    assert reevaluate(Evaluation(earlier, RULES, before), then, RULES, NOW + dt) == after


# -- the trend reducer ---------------------------------------------------------------------------------------


@given(samples=st.lists(st.tuples(st.integers(1, 30), st.integers(500, 9000)), min_size=1, max_size=60))
@example(samples=[(1, 500)] + [(30, 9000)] * 20)  # the minimum left the window 0.1 s before the newest sample
@example(samples=[(1, 500)] + [(26, 9000)] * 20)  # ... 0.02 s before it
@example(samples=[(1, 500), (1, 600), (1, 700), (499, 800)])  # the oldest of three rising candidates leaves
@example(samples=[(1, 500), (1, 3000), (1, 2000), (499, 2500)])  # 200 Ω undercut 300 Ω: the minimum once 50 Ω leaves
@example(samples=[(1, 500), (600, 900)])  # a frame after more than the window (a link gap): every candidate left
def test_rolloff_window_minimum_matches_brute_force(samples: list[tuple[int, int]]) -> None:
    trend = ChannelTrend()
    history: list[tuple[float, float]] = []
    t_ms = 1000
    for dt_ms, z_deci in samples:
        t_ms += dt_ms
        trend = advance_trend(trend, ChannelTelemetry(5000, z_deci, 0, 0, 1000, ON), t_ms / 1000, True)
        history.append((t_ms / 1000, z_deci / 10))
    newest_t, newest_z = history[-1]
    expected = newest_z - min(z for t, z in history if t >= newest_t - hard.ROLLOFF_WINDOW_S)
    assert trend.impedance_rise_ohm == pytest.approx(expected)


def test_a_steady_impedance_keeps_a_single_window_entry() -> None:
    """The window holds candidates for its minimum, impedance strictly increasing: a reading equal to the newest
    replaces it, so a steady hold (the usual tick, four channels at 100 Hz) keeps one entry, not a window's worth."""
    trend = ChannelTrend()
    for i in range(200):
        trend = advance_trend(trend, channel(60.0, 250.0, power_w=10.0), 1.0 + i * 0.01, True)
    assert trend.impedance_window == ((1.0 + 199 * 0.01, 250.0),)
    assert trend.impedance_rise_ohm == 0.0


@given(powers=st.lists(st.integers(0, 5000), min_size=2, max_size=40))
def test_energy_integrates_measured_power_while_on(powers: list[int]) -> None:
    trend = ChannelTrend()
    for i, p in enumerate(powers):
        trend = advance_trend(trend, ChannelTelemetry(5000, 2500, 0, 0, p, ON), 1.0 + i * 0.01, True)
    assert trend.energy_since_on_j == pytest.approx(sum(p / 100 * 0.01 for p in powers[1:]))


@given(centi_c=st.lists(st.integers(3000, 9500), min_size=2, max_size=40))
def test_the_peak_since_output_came_on_is_the_highest_reading_under_power(centi_c: list[int]) -> None:
    """temperature_not_tracking compares the peak since RF came on with the rise it needs: every reading under
    power counts, the first (the temperature at turn-on) too."""
    trend = ChannelTrend()
    for i, temp in enumerate(centi_c):
        trend = advance_trend(trend, ChannelTelemetry(temp, 2500, 0, 0, 2000, ON), 1.0 + i * 0.01, True)
    assert trend.temp_at_on_c == centi_c[0] / 100
    assert trend.max_temp_since_on_c == max(centi_c) / 100


def test_a_tip_that_warmed_under_power_is_tracking_whatever_the_energy() -> None:
    trend = ChannelTrend()
    for i, temp_c in enumerate((37.0, 45.0, 60.0, 58.0)):
        trend = advance_trend(trend, channel(temp_c, power_w=20.0), 1.0 + i * 5.0, True)
    assert trend.energy_since_on_j > hard.NOT_TRACKING_ENERGY_J
    assert not _tripped(InterlockId.TEMPERATURE_NOT_TRACKING, inputs(trends={1: trend}))


@given(start_centi_c=st.integers(3700, 8200), rise_centi_c=st.integers(0, 500))
@example(start_centi_c=7700, rise_centi_c=99)  # set 80 °C: from 77 °C the tip needs 78 °C (set − 2), not 79
@example(start_centi_c=7700, rise_centi_c=100)
@example(start_centi_c=7500, rise_centi_c=199)  # from 75 °C: 77 °C (start + 2) is the lower
@example(start_centi_c=7500, rise_centi_c=200)
def test_not_tracking_needs_the_lower_of_start_plus_2_and_set_minus_2(start_centi_c: int, rise_centi_c: int) -> None:
    """docs/safety.md: > 150 J since output on and the tip never reached min(start + 2 °C, set − 2 °C). A tip that
    was already near its set temperature when RF came on (a restart) need not rise 2 °C past it."""
    start_c, peak_c = start_centi_c / 100, (start_centi_c + rise_centi_c) / 100
    trend = _tracking_trend(200.0, peak_c)._replace(temp_at_on_c=start_c)
    needed_c = min(start_c + hard.NOT_TRACKING_RISE_C, CH1.set_temp_c - hard.NOT_TRACKING_RISE_C)
    assert _tripped(InterlockId.TEMPERATURE_NOT_TRACKING, inputs(trends={1: trend})) == (peak_c < needed_c)


def _frozen_then(samples: list[tuple[bool, float]], start_s: float = 10.0) -> ChannelTrend:
    """A reading stuck at 37 °C through ``(output on, power W)`` samples 10 ms apart."""
    trend = ChannelTrend()
    for i, (output_on, power_w) in enumerate(samples):
        trend = advance_trend(trend, channel(37.0, power_w=power_w), start_s + i * 0.01, output_on)
    return trend


def test_a_thermocouple_frozen_before_rf_is_caught_once_the_ramp_moves_the_power() -> None:
    # Frozen at body temperature for 5 s before RF (normal: nothing heats it), then RF ramps from 0 W.
    idle = [(False, 0.0)] * 500
    ramp = [(True, min(25.0, i * 0.05)) for i in range(1, 400)]
    at_3_s = _frozen_then(idle + ramp[:290])
    assert at_3_s.frozen_s < hard.THERMOCOUPLE_FROZEN_S  # the window started when output came on
    assert not _tripped(InterlockId.THERMOCOUPLE_FROZEN, inputs(trends={1: at_3_s}))
    later = _frozen_then(idle + ramp)
    assert later.frozen_s > hard.THERMOCOUPLE_FROZEN_S
    assert _tripped(InterlockId.THERMOCOUPLE_FROZEN, inputs(trends={1: later}))


def test_a_still_reading_with_output_off_is_never_frozen() -> None:
    # Output on for 1 s with the power swinging, then off: the measurement falls from 8 W to 0 and the
    # reading stands still for 20 s. Only time with output on counts.
    trend = _frozen_then([(True, 4.0 + (i % 2) * 4.0) for i in range(100)] + [(False, 8.0)] + [(False, 0.0)] * 2000)
    assert trend.frozen_s == pytest.approx(0.99)
    assert not _tripped(InterlockId.THERMOCOUPLE_FROZEN, inputs(trends={1: trend}))


@given(moves=st.lists(st.sampled_from([-2, -1, 1, 2]), min_size=2, max_size=60))
def test_a_reading_that_moves_by_a_single_count_each_frame_is_never_frozen(moves: list[int]) -> None:
    """One count (0.01 °C) is a move: a live thermocouple's noise, with output on and the power swinging, over
    longer than the stillness limit."""
    trend, centi_c = ChannelTrend(), 5000
    step_s = 2 * hard.THERMOCOUPLE_STILL_S / len(moves)
    for i, move in enumerate(moves):
        centi_c += move
        trend = advance_trend(trend, channel(centi_c / 100, power_w=4.0 + (i % 2) * 4.0), 1.0 + i * step_s, True)
        assert trend.frozen_s == 0.0
    assert not _tripped(InterlockId.THERMOCOUPLE_FROZEN, inputs(trends={1: trend}))


@pytest.mark.parametrize("power_w", [(10.0, 15.0), (6.0, 6.0)], ids=["swinging", "steady"])
def test_switching_output_off_for_a_moment_does_not_restart_the_frozen_count(power_w: tuple[float, float]) -> None:
    # A hostile or broken control layer turning output off for 20 ms every 2.9 s: each burst alone is below
    # both limits; together they are not.
    burst = [(True, power_w[i % 2]) for i in range(290)] + [(False, 0.0), (False, 0.0)]
    limit_s = hard.THERMOCOUPLE_FROZEN_S if power_w[0] != power_w[1] else hard.THERMOCOUPLE_STILL_S
    bursts = int(limit_s // 2.9) + 1
    trend = _frozen_then(burst * bursts + [(True, power_w[0])] * 2)
    assert trend.frozen_s > limit_s
    assert _tripped(InterlockId.THERMOCOUPLE_FROZEN, inputs(trends={1: trend}))


def test_trend_restarts_when_output_goes_off_or_the_generator_clock_jumps_back() -> None:
    trend = _rolloff_trend(80.0)
    assert trend.impedance_rise_ohm > 0
    off = advance_trend(trend, channel(60.0, 300.0), 2.0, False)
    assert off.impedance_rise_ohm == 0 and off.energy_since_on_j == 0
    assert not off.clock_stalled
    rebooted = advance_trend(trend, channel(60.0, 300.0, power_w=10.0), 0.5, True)
    assert rebooted.impedance_rise_ohm == 0 and rebooted.slew_c_per_s == 0
    assert rebooted.clock_stalled, "the restart is not silent: the generator-fault interlock sees it"


@given(cap=st.floats(0.1, hard.POWER_MAX_W), config_max=st.floats(1.0, hard.POWER_MAX_W))
def test_the_over_power_threshold_never_passes_the_hard_maximum(cap: float, config_max: float) -> None:
    lesion = Lesion(
        channel=1,
        electrode=Electrode(gauge=18, active_tip_mm=10.0),
        set_temp_c=80.0,
        ramp_rate_c_per_s=2.0,
        lesion_time_s=90.0,
        power_cap_w=min(cap, config_max),
        impedance_min_ohm=60.0,
        impedance_max_ohm=800.0,
    )
    limits = SafetyLimits(power_max_w=config_max)
    rules = SafetyRules.compile(LesionPlan(name="p", imaging_required=False, lesions=(lesion,)), limits)
    ch1 = rules.by_channel[1]
    assert ch1.power_max_w <= ch1.over_power_w <= hard.POWER_MAX_W


def test_regulating_at_the_headroom_limit_reads_at_most_the_hard_maximum() -> None:
    worst_reading_w = (
        hard.POWER_REGULATION_MAX_W * (1 + hard.POWER_MEASUREMENT_TOLERANCE) + hard.POWER_MEASUREMENT_TOLERANCE_W
    )
    assert worst_reading_w == pytest.approx(hard.POWER_MAX_W)
    assert hard.POWER_REGULATION_MAX_W < hard.POWER_MAX_W  # and B[over_power-hard-max]: 50 W does not trip


def test_pulsed_rules_come_from_the_plan() -> None:
    assert (PULSED_CH1.pulse_width_us, PULSED_CH1.pulse_rate_deci_hz, PULSED_CH1.voltage_max_v) == (
        20_000,
        20,
        45.0,
    )
    assert CH1.rf_time_budget_s == 90.0 + hard.LESION_TIME_TOLERANCE_S


def test_rules_cover_the_default_plan() -> None:
    rules = SafetyRules.compile(default_genicular_plan(), HARD_LIMITS)
    assert [r.channel for r in rules.channels] == [1, 2, 3]
    assert isinstance(rules.channels[0], ChannelRules)
