"""Tissue-model benchmark for ``rfa bench``: real-time factor of a 90 s lesion at 0.25 mm spacing with the
numba kernels, and their speed against the plain numpy reference, measured in the same run.

The real-time factor is timed the way the simulated generator uses the model: closed loop, one ``step``
per 10 ms control period. For the ratio both implementations run the first ``numpy_s`` seconds (numpy is
slow) with one call per thermal step, so the figure compares the kernels' work per step rather than the
Python call overhead both share. Model construction (mesh, one converged field solve) is not timed.

The machine is shared, so every figure is the best of ``REPEATS`` runs (the run least disturbed by other
load, as ``timeit`` does), and the numba and numpy runs of the ratio alternate so that a burst of load
cannot fall on one implementation only.
"""

from __future__ import annotations

import time
from typing import Literal

from benchmarks.result import BenchResult
from sim.tissue.controller import TipTemperaturePI
from sim.tissue.kernels import warm_up_kernels
from sim.tissue.model import RfLesionModel
from sim.tissue.params import ElectrodeSpec, GridSettings, LesionModelConfig

LESION_S = 90.0
PERIOD_S = 0.01
REALTIME_TARGET = 100.0
RATIO_TARGET = 20.0
REPEATS = 3


def _config(backend: Literal["numba", "numpy"]) -> LesionModelConfig:
    return LesionModelConfig(
        electrode=ElectrodeSpec(gauge=18, active_tip_mm=10.0),
        grid=GridSettings(spacing_mm=0.25, backend=backend),
    )


def _timed_lesion(backend: Literal["numba", "numpy"], seconds: float, *, per_thermal_step: bool = False) -> float:
    """Wall seconds to simulate ``seconds`` of an 80 °C lesion, one call per control period (or per
    thermal step)."""
    model = RfLesionModel(_config(backend))
    period_s = model.thermal_step_s if per_thermal_step else PERIOD_S
    loop = TipTemperaturePI(80.0)
    tip_c = model.thermocouple_temp_c
    start = time.perf_counter()
    for _ in range(round(seconds / period_s)):
        tip_c = model.step(period_s, loop.update(tip_c, period_s)).tip_temp_c
    return time.perf_counter() - start


def run(quick: bool = False) -> list[BenchResult]:
    warm_up_kernels()
    numpy_s = 3.0 if quick else 10.0
    full_wall_s = min(_timed_lesion("numba", LESION_S) for _ in range(REPEATS))
    realtime = LESION_S / full_wall_s
    numba_runs, numpy_runs = [], []
    for _ in range(REPEATS):
        numba_runs.append(_timed_lesion("numba", numpy_s, per_thermal_step=True))
        numpy_runs.append(_timed_lesion("numpy", numpy_s, per_thermal_step=True))
    numba_wall_s, numpy_wall_s = min(numba_runs), min(numpy_runs)
    ratio = numpy_wall_s / numba_wall_s
    return [
        BenchResult(
            bench="tissue",
            metric="simulated_s_per_wall_s_90s_lesion_0.25mm",
            value=realtime,
            unit="x",
            target=f">= {REALTIME_TARGET:g}",
            met=realtime >= REALTIME_TARGET,
            detail=f"{LESION_S:g} s lesion, 18 G 10 mm at 80 °C, 100 Hz steps: {full_wall_s:.3f} s wall "
            f"(best of {REPEATS})",
        ),
        BenchResult(
            bench="tissue",
            metric="numba_vs_numpy_speed_ratio",
            value=ratio,
            unit="x",
            target=f">= {RATIO_TARGET:g}",
            met=ratio >= RATIO_TARGET,
            detail=f"first {numpy_s:g} s of the lesion, one call per thermal step, best of {REPEATS}: "
            f"numpy {numpy_wall_s:.3f} s, numba {numba_wall_s:.4f} s",
        ),
    ]


if __name__ == "__main__":
    for result in run():
        print(result.as_dict())
