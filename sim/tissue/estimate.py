"""Lesion-size estimate for planning: the tissue model under closed-loop tip-temperature control.

Steps the model exactly as the simulated generator does (one control period of 10 ms at a time), with the
small PI of ``controller`` commanding constant power, and summarises what a clinician asks before a
lesion: how large, how soon at temperature, at what impedance and power.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from sim.tissue.controller import TipTemperaturePI
from sim.tissue.mesh import FloatArray
from sim.tissue.model import FieldSnapshot, LesionSize, RfLesionModel
from sim.tissue.params import LesionModelConfig

AT_TEMPERATURE_K = 1.0
"""The tip counts as at set temperature once the thermocouple is within this of it."""
SAMPLE_PERIOD_S = 0.1
"""Resolution of the recorded curves (the control loop itself runs every ``control_period_s``)."""


@dataclass(frozen=True)
class LesionRun:
    """The outcome of one simulated lesion."""

    set_temp_c: float
    duration_s: float
    lesion: LesionSize
    time_to_set_temp_s: float | None
    """``None`` if the tip never came within 1 °C of the set temperature (e.g. the power cap was too low)."""
    final_impedance_ohm: float
    min_impedance_ohm: float
    max_tip_temp_c: float
    max_tissue_temp_c: float
    mean_power_w: float
    peak_power_w: float
    final_power_w: float
    """Mean over the last 10 s: the power that holds the set temperature."""
    energy_j: float
    boiled: bool
    """Tissue at the tip reached 100 °C at some moment."""
    times_s: FloatArray
    tip_temp_c: FloatArray
    impedance_ohm: FloatArray
    power_w: FloatArray
    snapshot: FieldSnapshot

    def summary(self) -> dict[str, float | bool | None]:
        """The figures for ``--json`` and the human report."""
        return {
            "set_temp_c": self.set_temp_c,
            "duration_s": self.duration_s,
            "lesion_width_mm": round(self.lesion.width_mm, 2),
            "lesion_length_mm": round(self.lesion.length_mm, 2),
            "isotherm_c": self.lesion.isotherm_c,
            "isotherm_width_mm": round(self.lesion.isotherm_width_mm, 2),
            "isotherm_length_mm": round(self.lesion.isotherm_length_mm, 2),
            "time_to_set_temp_s": None
            if self.time_to_set_temp_s is None
            else round(self.time_to_set_temp_s, 2),
            "final_impedance_ohm": round(self.final_impedance_ohm, 1),
            "min_impedance_ohm": round(self.min_impedance_ohm, 1),
            "max_tip_temp_c": round(self.max_tip_temp_c, 2),
            "max_tissue_temp_c": round(self.max_tissue_temp_c, 2),
            "mean_power_w": round(self.mean_power_w, 2),
            "peak_power_w": round(self.peak_power_w, 2),
            "final_power_w": round(self.final_power_w, 2),
            "energy_j": round(self.energy_j, 1),
            "boiled": self.boiled,
        }


def estimate_lesion(
    config: LesionModelConfig,
    set_temp_c: float,
    duration_s: float,
    *,
    start_temp_c: float = 37.0,
    max_power_w: float = 30.0,
    ramp_c_per_s: float = 5.0,
    control_period_s: float = 0.01,
    progress: Callable[[float, float], None] | None = None,
) -> LesionRun:
    """Run one lesion of ``duration_s`` at ``set_temp_c``, its set point ramped at ``ramp_c_per_s`` as the
    plan ramps it (a slow ramp is RF time spent below the set temperature: a smaller lesion), calling
    ``progress(elapsed_s, duration_s)`` every simulated second."""
    if not 0.0 < duration_s <= 600.0:
        raise ValueError(f"duration_s must be in (0, 600] s, not {duration_s}")
    if not 0.0 < ramp_c_per_s < math.inf:  # a set point that never rises would never heat; NaN fails too
        raise ValueError(f"ramp_c_per_s must be a positive number of °C/s, not {ramp_c_per_s}")
    if not start_temp_c < set_temp_c <= 105.0:
        raise ValueError(
            f"set_temp_c must be above start_temp_c ({start_temp_c}) and at most 105 °C, not {set_temp_c}"
        )
    model = RfLesionModel(config, body_temp_c=start_temp_c)
    loop = TipTemperaturePI(set_temp_c, max_power_w=max_power_w, ramp_c_per_s=ramp_c_per_s)
    n_steps = round(duration_s / control_period_s)
    per_sample = max(1, round(SAMPLE_PERIOD_S / control_period_s))
    per_second = max(1, round(1.0 / control_period_s))
    times, temps, impedances, powers = [], [], [], []
    tip_c = start_temp_c
    reached: float | None = None
    boiled = False
    energy_j = 0.0
    peak_w = 0.0
    hottest_c = start_temp_c
    for k in range(n_steps):
        power_w = loop.update(tip_c, control_period_s)
        reading = model.step(control_period_s, power_w)
        tip_c = reading.tip_temp_c
        t = (k + 1) * control_period_s
        energy_j += power_w * control_period_s
        peak_w = max(peak_w, power_w)
        boiled = boiled or reading.boiling
        if reached is None and tip_c >= set_temp_c - AT_TEMPERATURE_K:
            reached = t
        if (k + 1) % per_sample == 0:
            hottest_c = max(hottest_c, model.max_tissue_temp_c)
            times.append(t)
            temps.append(tip_c)
            impedances.append(reading.impedance_ohm)
            powers.append(power_w)
        if progress is not None and (k + 1) % per_second == 0:
            progress(t, duration_s)
    power_arr = np.asarray(powers)
    times_arr = np.asarray(times)
    last = times_arr > times_arr[-1] - 10.0
    return LesionRun(
        set_temp_c=set_temp_c,
        duration_s=duration_s,
        lesion=model.lesion(),
        time_to_set_temp_s=reached,
        final_impedance_ohm=model.impedance_ohm,
        min_impedance_ohm=float(min(impedances)),
        max_tip_temp_c=float(max(temps)),
        max_tissue_temp_c=hottest_c,
        mean_power_w=energy_j / duration_s,
        peak_power_w=peak_w,
        final_power_w=float(power_arr[last].mean()),
        energy_j=energy_j,
        boiled=boiled,
        times_s=times_arr,
        tip_temp_c=np.asarray(temps),
        impedance_ohm=np.asarray(impedances),
        power_w=power_arr,
        snapshot=model.snapshot(),
    )
