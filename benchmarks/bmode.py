"""B-mode pipeline throughput: 128 lines × 2048 RF samples → display image, numba against numpy.

Both run in the same process on the same frame, on one core (numba's thread pool is pinned to one
thread and the kernels are not parallel), so the ratio is a fair measure of the compiled kernels and the
absolute figure is what the cart gets while its other core runs the control loop.
Targets (issue 7): ≥ 60 frames per second with numba, ≥ 5× the numpy reference.
"""

from __future__ import annotations

import time
from typing import Final

import numba
import numpy as np

from benchmarks.result import BenchResult
from control.imaging.bmode import BModePipeline
from control.imaging.geometry import ScanGeometry
from firmware_bridge.probe import FrameFormat, Geometry
from sim.probe.render import (
    NeedlePose,
    ScanLayout,
    carrier_cycles_per_sample,
    render_baseband,
    to_wire_samples,
)

LINES: Final = 128
SAMPLES: Final = 2048
DEPTH_MM: Final = 60.0
TRANSMIT_KHZ: Final = 5000
TARGET_FPS: Final = 60.0
TARGET_RATIO: Final = 5.0


def _frame() -> np.ndarray:
    layout = ScanLayout(Geometry.LINEAR, aperture_mm=38.4, radius_mm=0.0, sector_rad=0.0)
    baseband = render_baseband(
        np.random.default_rng(7), layout, LINES, SAMPLES, DEPTH_MM, NeedlePose(4.0, 30.0), boiling=False
    )
    data = to_wire_samples(
        baseband, FrameFormat.RF_I16, 40.0, carrier_cycles_per_sample(TRANSMIT_KHZ, DEPTH_MM, SAMPLES)
    )
    return np.frombuffer(data, dtype=np.int16).reshape(LINES, SAMPLES)


def _frames_per_s(pipeline: BModePipeline, rf: np.ndarray, geometry: ScanGeometry, seconds: float) -> float:
    pipeline.display(pipeline.beam_image(rf, FrameFormat.RF_I16, geometry, TRANSMIT_KHZ))  # tables built
    frames = 0
    start = time.perf_counter()
    while True:
        pipeline.display(pipeline.beam_image(rf, FrameFormat.RF_I16, geometry, TRANSMIT_KHZ))
        frames += 1
        elapsed = time.perf_counter() - start
        if elapsed >= seconds and frames >= 3:
            return frames / elapsed


def run(quick: bool = False) -> list[BenchResult]:
    numba.set_num_threads(1)
    seconds = 0.5 if quick else 3.0
    rf = _frame()
    geometry = ScanGeometry(Geometry.LINEAR, LINES, SAMPLES, DEPTH_MM, aperture_mm=38.4)
    compiled = BModePipeline()
    compiled.warm_up()
    numba_fps = _frames_per_s(compiled, rf, geometry, seconds)
    numpy_fps = _frames_per_s(BModePipeline(use_numba=False), rf, geometry, seconds)
    ratio = numba_fps / numpy_fps
    detail = f"{LINES}x{SAMPLES} RF i16 -> 512 px display, one core"
    return [
        BenchResult(
            "bmode",
            "numba_frames_per_s",
            numba_fps,
            "fps",
            f">= {TARGET_FPS:g}",
            numba_fps >= TARGET_FPS,
            detail,
        ),
        BenchResult("bmode", "numpy_reference_frames_per_s", numpy_fps, "fps", detail=detail),
        BenchResult(
            "bmode",
            "numba_speedup_vs_numpy",
            ratio,
            "x",
            f">= {TARGET_RATIO:g}",
            ratio >= TARGET_RATIO,
            detail,
        ),
    ]


if __name__ == "__main__":
    for result in run():
        print(result.as_dict())
