"""Lesion-size estimates: the tissue model under closed-loop tip-temperature control.

Steps the model exactly as the simulated generator does (one control period of 10 ms at a time), with the
small PI of ``controller`` commanding constant power. Before a lesion, :func:`estimate_lesion` ramps and holds
the plan's set temperature and summarises what a clinician asks: how large, how soon at temperature, at what
impedance and power. After it, :func:`estimate_lesion_from_tip` holds the model's tip on the temperatures the
cart measured, so the size reflects what was delivered (a ramp slowed by the power cap, a hold below the set
temperature, a lesion cut short), not what was planned.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
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
MAX_DURATION_S = 600.0
"""The longest lesion either estimate runs (a plan's lesion time is at most this)."""
FOLLOW_KP_W_PER_K = 10.0
FOLLOW_KI_W_PER_K_S = 5.0
"""Gains of the loop that makes the model's tip follow a recorded one: five and ten times the planning loop's, for
a target that is already the tip's own curve. A lag is a smaller lesion: on the default plan's curve (80 °C, ramp
2 °C/s) the model's tip keeps within 0.5 °C of it, against 2 °C with the planning gains (a 20 s lesion estimated
0.1 mm narrow), and a thermocouple's 0.1 °C noise moves the size by under 0.05 mm (tests/tissue)."""


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
    if not 0.0 < duration_s <= MAX_DURATION_S:
        raise ValueError(f"duration_s must be in (0, {MAX_DURATION_S:.0f}] s, not {duration_s}")
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


def estimate_lesion_from_tip(
    config: LesionModelConfig,
    times_s: Sequence[float] | FloatArray,
    tip_temp_c: Sequence[float] | FloatArray,
    *,
    start_temp_c: float = 37.0,
    max_power_w: float = 30.0,
    control_period_s: float = 0.01,
) -> LesionSize:
    """The lesion the model makes when its tip follows a recorded tip-temperature history.

    ``times_s`` (increasing, from RF on to RF off) and ``tip_temp_c`` are the thermocouple's readings; at every
    control period the model's PI drives its tip towards the reading of that moment (linearly interpolated),
    under ``max_power_w``, from tissue at ``start_temp_c``. Where the recorded tip ran cooler than the plan, or
    for less time, the lesion is smaller, as the patient's is. Where the model's tissue would need more power
    than the cap to follow, it lags behind the recording and the estimate errs small."""
    times = np.asarray(times_s, dtype=float)
    temps = np.asarray(tip_temp_c, dtype=float)
    if times.ndim != 1 or times.shape != temps.shape or times.size < 2:
        raise ValueError(f"a tip-temperature history needs matching times and readings, at least two: "
                         f"{times.shape} times, {temps.shape} readings")
    if not (np.all(np.isfinite(times)) and np.all(np.isfinite(temps))):
        raise ValueError("a tip-temperature history must be finite numbers (a NaN or infinite reading)")
    if np.any(np.diff(times) <= 0.0):
        raise ValueError("a tip-temperature history's times must increase")
    duration_s = float(times[-1] - times[0])
    if not duration_s <= MAX_DURATION_S:
        raise ValueError(f"a tip-temperature history must span at most {MAX_DURATION_S:.0f} s, not {duration_s:.1f} s")
    model = RfLesionModel(config, body_temp_c=start_temp_c)
    # follow() sets each period's target itself; the loop's own set temperature and ramp are not used.
    loop = TipTemperaturePI(set_temp_c=start_temp_c, max_power_w=max_power_w, kp_w_per_k=FOLLOW_KP_W_PER_K,
                            ki_w_per_k_s=FOLLOW_KI_W_PER_K_S)
    n_steps = max(1, round(duration_s / control_period_s))
    # The target of each period is the reading at its end: where the tip is to be when the next reading comes.
    targets = np.interp(times[0] + control_period_s * np.arange(1, n_steps + 1), times, temps)
    tip_c = start_temp_c
    for target_c in targets:
        tip_c = model.step(control_period_s, loop.follow(float(target_c), tip_c, control_period_s)).tip_temp_c
    return model.lesion()
