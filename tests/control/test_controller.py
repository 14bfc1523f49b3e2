"""The numba control step: limits that must hold for any input, and tracking on a tissue model."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from control.controller import (
    BACKOFF_CUT,
    BACKOFF_FLOOR,
    CONTINUOUS_GAINS,
    ChannelControllers,
    Gains,
)
from sim.tissue import LumpedTissue

temps = st.floats(-20.0, 150.0, allow_nan=False)
impedances = st.floats(1.0, 5000.0, allow_nan=False)


@given(
    cap=st.floats(0.0, 50.0),
    set_c=st.floats(40.0, 95.0),
    ramp=st.floats(0.1, 10.0),
    samples=st.lists(st.tuples(temps, impedances), min_size=1, max_size=300),
)
def test_drive_stays_within_zero_and_the_cap_for_any_measurements(
    cap: float, set_c: float, ramp: float, samples: list[tuple[float, float]]
) -> None:
    c = ChannelControllers(2)
    c.configure(0, set_c=set_c, ramp_c_per_s=ramp, cap=cap, gains=CONTINUOUS_GAINS)
    c.start(0, tip_c=samples[0][0], impedance_ohm=samples[0][1])
    for tip, z in samples:
        drive = c.step(0.01, np.array([tip, tip]), np.array([z, z]))
        assert 0.0 <= drive[0] <= cap
        assert drive[1] == 0.0, "an inactive channel must get no drive"


@given(set_c=st.floats(45.0, 95.0), ramp=st.floats(0.2, 5.0), start=st.floats(20.0, 44.0),
       ticks=st.integers(1, 3000))
def test_the_reference_never_outruns_the_ramp_rate_or_the_set_temperature(
    set_c: float, ramp: float, start: float, ticks: int
) -> None:
    c = ChannelControllers(1)
    c.configure(0, set_c=set_c, ramp_c_per_s=ramp, cap=20.0, gains=CONTINUOUS_GAINS)
    c.start(0, tip_c=start, impedance_ohm=200.0)
    for _ in range(ticks):
        c.step(0.01, np.array([start]), np.array([200.0]))
    expected = min(set_c, start + ramp * 0.01 * ticks)
    assert c.reference_c(0) == pytest.approx(expected, abs=1e-6)


def test_integral_does_not_wind_up_while_the_cap_holds_the_output() -> None:
    c = ChannelControllers(1)
    c.configure(0, set_c=80.0, ramp_c_per_s=100.0, cap=5.0, gains=CONTINUOUS_GAINS)
    c.start(0, tip_c=37.0, impedance_ohm=200.0)
    for _ in range(6000):  # a minute stuck far below the set temperature, pinned at the cap
        c.step(0.01, np.array([40.0]), np.array([200.0]))
    # The tip then reaches the set temperature: with no wind-up, the drive drops at once.
    drive = c.step(0.01, np.array([80.5]), np.array([200.0]))[0]
    assert drive < 5.0 * 0.5


def test_impedance_roll_off_cuts_the_cap_and_it_recovers_slowly() -> None:
    c = ChannelControllers(1)
    c.configure(0, set_c=90.0, ramp_c_per_s=100.0, cap=20.0, gains=Gains(kp=50, ki=0, kd=0, kff=0))
    c.start(0, tip_c=37.0, impedance_ohm=200.0)
    assert c.step(0.01, np.array([37.0]), np.array([200.0]))[0] == 20.0
    rolled = c.step(0.01, np.array([37.0]), np.array([200.0 * 1.31]))[0]
    assert rolled == pytest.approx(20.0 * BACKOFF_CUT)
    recovered = [c.step(0.01, np.array([37.0]), np.array([200.0]))[0] for _ in range(100)]
    assert recovered[-1] == pytest.approx(20.0 * (BACKOFF_CUT + 0.05), rel=1e-3)


@pytest.mark.parametrize("set_c", [60.0, 70.0, 80.0, 90.0])
def test_tracks_a_lumped_tissue_without_overshoot(set_c: float) -> None:
    tissue = LumpedTissue()
    c = ChannelControllers(1)
    ramp = 2.0
    c.configure(0, set_c=set_c, ramp_c_per_s=ramp, cap=20.0, gains=CONTINUOUS_GAINS)
    tip, z = 37.0, tissue.impedance_ohm
    c.start(0, tip_c=tip, impedance_ohm=z)
    trace = []
    for _ in range(6000):
        power = c.step(0.01, np.array([tip]), np.array([z]))[0]
        reading = tissue.step(0.01, power)
        tip, z = reading.tip_temp_c, reading.impedance_ohm
        trace.append(tip)
    temps_c = np.array(trace)
    ramp_time_s = (set_c - 37.0) / ramp
    assert np.argmax(temps_c >= set_c - 1.0) * 0.01 <= ramp_time_s + 2.0
    assert temps_c.max() - set_c <= 2.0
    hold = temps_c[int((ramp_time_s + 5.0) / 0.01):]
    assert np.sqrt(np.mean((hold - set_c) ** 2)) <= 1.0


def _holding(cap: float, kp: float = 6.0) -> ChannelControllers:
    """A proportional-only controller holding 1 °C below set: ``kp`` W of drive, steady, far under a large cap."""
    c = ChannelControllers(1)
    c.configure(0, set_c=80.0, ramp_c_per_s=100.0, cap=cap, gains=Gains(kp=kp, ki=0, kd=0, kff=0))
    c.start(0, tip_c=79.0, impedance_ohm=170.0)
    for _ in range(100):
        c.step(0.01, np.array([79.0]), np.array([170.0]))
    return c


def test_roll_off_backs_off_the_power_delivered_even_when_the_cap_is_far_above_it() -> None:
    # Holding 6 W under a 25 W cap: halving the cap (12.5 W) would change nothing the tissue sees.
    c = _holding(cap=25.0)
    before = c.step(0.01, np.array([79.0]), np.array([170.0]))[0]
    assert before == pytest.approx(6.0)
    for z in np.linspace(170.0, 1.35 * 170.0, 100):  # a roll-off: +35 % in a second
        after = c.step(0.01, np.array([79.0]), np.array([z]))[0]
    assert after <= BACKOFF_CUT * before + 1e-9


def test_roll_off_back_off_deepens_while_impedance_keeps_climbing() -> None:
    c = _holding(cap=20.0, kp=50.0)  # pinned at the cap
    for z in np.linspace(170.0, 3.0 * 170.0, 500):  # desiccation going on: 3x the minimum
        drive = c.step(0.01, np.array([79.0]), np.array([z]))[0]
    assert drive <= 0.25 * 20.0
    assert drive >= BACKOFF_FLOOR * 20.0 - 1e-9


def test_one_low_impedance_sample_does_not_become_the_roll_off_baseline() -> None:
    # A 10 ms dip (a glitch, the cable touched) to 120 Ω, then the tissue's normal 165 Ω: no roll-off.
    c = _holding(cap=12.0, kp=50.0)
    c.step(0.01, np.array([79.0]), np.array([120.0]))
    for _ in range(1000):
        drive = c.step(0.01, np.array([79.0]), np.array([165.0]))[0]
    assert drive == pytest.approx(12.0), "the cap must not stay cut for the rest of the lesion"


def test_a_measurement_that_is_not_a_number_gives_no_drive_and_does_not_poison_the_state() -> None:
    c = _holding(cap=25.0)
    assert c.step(0.01, np.array([np.nan]), np.array([170.0]))[0] == 0.0
    assert c.step(0.01, np.array([79.0]), np.array([np.inf]))[0] == 0.0
    drive = c.step(0.01, np.array([79.0]), np.array([170.0]))[0]
    assert drive == pytest.approx(6.0)
    assert np.all(np.isfinite(c.state))


def test_the_gains_scale_with_the_electrode_and_are_the_tuned_ones_on_18_g_10_mm() -> None:
    from control.controller import continuous_gains_for

    assert continuous_gains_for(18, 10.0) == CONTINUOUS_GAINS
    small, large = continuous_gains_for(22, 5.0), continuous_gains_for(16, 15.0)
    assert small.kp < 0.3 * CONTINUOUS_GAINS.kp
    assert large.kp > 1.9 * CONTINUOUS_GAINS.kp


@pytest.mark.parametrize(
    ("gauge", "tip_mm", "set_c", "ramp", "cap"),
    [
        (22, 5.0, 60.0, 5.0, 25.0),  # measured before: overshoot 2.79 °C, power 0↔3 W limit cycle in the hold
        (22, 5.0, 90.0, 2.0, 25.0),  # 1.81 °C overshoot, hold RMS 0.72 °C, tip ±1 °C
        (16, 15.0, 80.0, 3.0, 50.0),  # 2.42 °C overshoot, hold RMS 0.99 °C
    ],
)
def test_small_and_large_electrodes_track_on_the_physical_tissue_without_overshoot_or_limit_cycle(
    tmp_path: Path, gauge: int, tip_mm: float, set_c: float, ramp: float, cap: float
) -> None:
    from safety.plan import Electrode, Lesion, LesionPlan, StimulationSettings
    from sim.generator import physical_tissue
    from tests.control.harness import build_cart

    lesion = Lesion(channel=1, electrode=Electrode(gauge=gauge, active_tip_mm=tip_mm), set_temp_c=set_c,
                    ramp_rate_c_per_s=ramp, lesion_time_s=(set_c - 37.0) / ramp + 30.0, power_cap_w=cap,
                    impedance_min_ohm=60.0, impedance_max_ohm=800.0)
    plan = LesionPlan(name="electrode-size", imaging_required=False,
                      stimulation=StimulationSettings(max_amplitude_mv=100), lesions=(lesion,))
    cart = build_cart(plan, tmp_path, tissue_factory=physical_tissue)
    result = cart.session.run()
    cart.record.close()
    assert result.exit_code == 0, result.message or result.first_trip
    (summary,) = result.summaries
    assert summary.overshoot_c <= 1.5
    assert summary.hold_rms_error_c is not None and summary.hold_rms_error_c <= 0.75
    (trace,) = cart.session.traces
    t, temp = np.asarray(trace.t_s), np.asarray(trace.tip_temp_c)
    late = temp[t >= t[-1] - 10.0]  # the last 10 s of the hold: settled, no limit cycle
    assert late.max() - late.min() <= 1.0
