"""The physical model behind the ``TissueModel`` interface, the way the simulated generator drives it."""

from __future__ import annotations

import math

import numpy as np
import pytest

from sim.tissue import RfLesionModel, TissueModel, TissueReading
from sim.tissue.params import GridSettings

COARSE = GridSettings(spacing_mm=0.5)


def drive(tissue: TissueModel, seconds: float, power_w: float, dt_s: float = 0.01) -> TissueReading:
    """What the generator does: one call per control period."""
    reading = TissueReading(0.0, tissue.impedance_ohm)
    for _ in range(round(seconds / dt_s)):
        reading = tissue.step(dt_s, power_w)
    return reading


def test_generator_periods_and_one_long_step_give_the_same_tissue() -> None:
    by_period = RfLesionModel.for_electrode(18, 10.0, grid=COARSE)
    drive(by_period, 5.0, 8.0)
    at_once = RfLesionModel.for_electrode(18, 10.0, grid=COARSE)
    at_once.step(5.0, 8.0)
    np.testing.assert_allclose(by_period.snapshot().temp_c, at_once.snapshot().temp_c, rtol=1e-9)
    assert by_period.impedance_ohm == pytest.approx(at_once.impedance_ohm, rel=1e-9)
    assert by_period.elapsed_s == pytest.approx(5.0)


def test_the_thermocouple_lags_the_tip() -> None:
    model = RfLesionModel.for_electrode(18, 10.0, grid=COARSE)
    reading = drive(model, 2.0, 15.0)
    assert 37.0 < reading.tip_temp_c < model.electrode_temp_c
    drive(model, 3.0, 0.0)
    assert model.thermocouple_temp_c == pytest.approx(model.electrode_temp_c, abs=0.5)


def test_reset_restores_tissue_at_rest() -> None:
    model = RfLesionModel.for_electrode(20, 10.0, grid=COARSE)
    at_rest_ohm = model.impedance_ohm
    drive(model, 20.0, 10.0)
    assert model.impedance_ohm < at_rest_ohm and model.lesion().width_mm > 0.0
    model.reset(37.0)
    assert model.impedance_ohm == pytest.approx(at_rest_ohm, rel=1e-12)
    assert model.lesion().width_mm == 0.0 and model.thermocouple_temp_c == 37.0


def test_constant_voltage_delivers_v_squared_over_z() -> None:
    model = RfLesionModel.for_electrode(18, 10.0, grid=COARSE)
    impedance_ohm = model.impedance_ohm
    model.step_voltage(0.01, 30.0)
    assert model.delivered_power_w == pytest.approx(30.0**2 / impedance_ohm)
    # The series resistance (pad, cable) takes its share; the field around the tip gets the rest.
    share = model.tissue_power_w / model.delivered_power_w
    assert share == pytest.approx((impedance_ohm - model.config.series_resistance_ohm) / impedance_ohm)


def test_cooling_can_be_stopped() -> None:
    model = RfLesionModel.for_electrode(18, 10.0, cooled=True, grid=COARSE)
    drive(model, 10.0, 15.0)
    cooled_c = model.electrode_temp_c
    model.set_cooling(0.0)
    drive(model, 10.0, 15.0)
    assert model.electrode_temp_c > cooled_c + 10.0
    assert math.isfinite(model.energy().to_coolant_j)
