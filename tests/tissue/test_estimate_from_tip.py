"""The lesion a recorded tip-temperature history makes (``estimate_lesion_from_tip``): what ``rfa run``'s summary
gives for each lesion, from what its tip really did."""

from __future__ import annotations

import math

import numpy as np
import pytest

from sim.tissue.estimate import LesionRun, estimate_lesion, estimate_lesion_from_tip
from sim.tissue.params import ElectrodeSpec, LesionModelConfig

CONFIG = LesionModelConfig(electrode=ElectrodeSpec(gauge=18, active_tip_mm=10.0))


def _history(run: LesionRun) -> tuple[np.ndarray, np.ndarray]:
    """A planning run's tip curve as the cart records one: from RF on (tissue at 37 °C) to RF off."""
    return np.concatenate([[0.0], run.times_s]), np.concatenate([[37.0], run.tip_temp_c])


@pytest.fixture(scope="module")
def planned_80() -> LesionRun:
    return estimate_lesion(CONFIG, 80.0, 40.0, max_power_w=25.0, ramp_c_per_s=2.0)


def test_a_tip_that_followed_the_plan_makes_the_planned_lesion(planned_80: LesionRun) -> None:
    times, temps = _history(planned_80)
    size = estimate_lesion_from_tip(CONFIG, times, temps, max_power_w=25.0)
    assert (size.width_mm, size.length_mm) == pytest.approx(
        (planned_80.lesion.width_mm, planned_80.lesion.length_mm), abs=0.05)


def test_a_tip_held_cooler_than_its_set_temperature_makes_the_cooler_plans_lesion(planned_80: LesionRun) -> None:
    """A hold the power cap kept at 70 °C is a 70 °C lesion, not the 80 °C one the plan asked for."""
    times, temps = _history(planned_80)
    held = estimate_lesion_from_tip(CONFIG, times, np.minimum(temps, 70.0), max_power_w=25.0)
    planned_70 = estimate_lesion(CONFIG, 70.0, 40.0, max_power_w=25.0, ramp_c_per_s=2.0).lesion
    assert held.width_mm == pytest.approx(planned_70.width_mm, abs=0.1)
    assert held.width_mm < planned_80.lesion.width_mm - 0.5


def test_a_lesion_cut_short_is_smaller_and_noise_on_the_reading_changes_nothing(planned_80: LesionRun) -> None:
    times, temps = _history(planned_80)
    full = estimate_lesion_from_tip(CONFIG, times, temps, max_power_w=25.0)
    cut = estimate_lesion_from_tip(CONFIG, times[times <= 20.0], temps[times <= 20.0], max_power_w=25.0)
    noisy = temps + np.random.default_rng(5).normal(0.0, 0.1, temps.size)  # the thermocouple's own noise
    assert cut.width_mm < full.width_mm - 0.5
    assert estimate_lesion_from_tip(CONFIG, times, noisy, max_power_w=25.0).width_mm == pytest.approx(
        full.width_mm, abs=0.05)


def test_a_tip_that_never_got_hot_makes_no_lesion() -> None:
    times = np.arange(0.0, 30.0, 0.01)
    size = estimate_lesion_from_tip(CONFIG, times, np.full(times.size, 41.0))
    assert size.width_mm == 0.0 and size.length_mm == 0.0


def test_the_power_cap_bounds_how_far_the_model_follows(planned_80: LesionRun) -> None:
    """A model that would need more than the cap to follow lags the recording: the estimate errs small."""
    times, temps = _history(planned_80)
    capped = estimate_lesion_from_tip(CONFIG, times, temps, max_power_w=2.0)
    assert capped.width_mm < planned_80.lesion.width_mm - 1.0


@pytest.mark.parametrize(("times", "temps", "says"), [
    ([0.0], [37.0], "at least two"),
    ([0.0, 1.0], [37.0], "matching times and readings"),
    ([0.0, 1.0], [37.0, math.nan], "finite"),
    ([0.0, math.inf], [37.0, 40.0], "finite"),
    ([0.0, 1.0, 1.0], [37.0, 40.0, 41.0], "must increase"),
    ([0.0, 601.0], [37.0, 80.0], "at most 600 s"),
])
def test_a_history_that_is_no_lesion_is_refused_saying_why(times: list[float], temps: list[float], says: str) -> None:
    with pytest.raises(ValueError, match=says):
        estimate_lesion_from_tip(CONFIG, times, temps)
