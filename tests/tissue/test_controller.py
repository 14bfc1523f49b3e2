"""The estimate's small tip-temperature loop."""

from __future__ import annotations

import math

import pytest

from sim.tissue import LumpedTissue
from sim.tissue.controller import TipTemperaturePI


def test_reaches_and_holds_the_set_temperature_without_exceeding_the_cap() -> None:
    tissue = LumpedTissue()
    loop = TipTemperaturePI(80.0, max_power_w=20.0)
    tip_c, powers, peak_c = 37.0, [], 37.0
    for _ in range(6000):
        power_w = loop.update(tip_c, 0.01)
        powers.append(power_w)
        tip_c = tissue.step(0.01, power_w).tip_temp_c
        peak_c = max(peak_c, tip_c)
    assert tip_c == pytest.approx(80.0, abs=0.5)
    assert peak_c < 84.0
    assert all(0.0 <= p <= 20.0 for p in powers)


def test_the_set_point_ramps_from_the_first_reading() -> None:
    loop = TipTemperaturePI(80.0, ramp_c_per_s=5.0)
    loop.update(37.0, 1.0)
    assert loop.target_c == pytest.approx(42.0)
    loop.reset()
    assert loop.target_c is None


def test_anti_windup_does_not_charge_the_integral_while_saturated() -> None:
    loop = TipTemperaturePI(80.0, max_power_w=5.0, ramp_c_per_s=1000.0)
    for _ in range(1000):
        loop.update(40.0, 0.01)  # the tip cannot follow: output pinned at the cap
    assert loop.update(81.0, 0.01) == 0.0


@pytest.mark.parametrize("name", ["set_temp_c", "max_power_w", "kp_w_per_k", "ki_w_per_k_s", "ramp_c_per_s"])
def test_bad_settings_are_refused_naming_them(name: str) -> None:
    settings = {"set_temp_c": 80.0, name: -1.0} if name != "set_temp_c" else {"set_temp_c": math.nan}
    with pytest.raises(ValueError, match=name):
        TipTemperaturePI(**settings)
