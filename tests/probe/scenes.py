"""Frames of simulated scenes rendered straight from the simulator's renderer (no USB), for imaging tests."""

from __future__ import annotations

import math

import numpy as np
import numpy.typing as npt

from control.imaging.geometry import ScanGeometry
from firmware_bridge.probe import FrameFormat, Geometry
from sim.probe.render import (
    NeedlePose,
    ScanLayout,
    carrier_cycles_per_sample,
    render_baseband,
    to_wire_samples,
)

LINEAR = ScanLayout(Geometry.LINEAR, aperture_mm=38.4, radius_mm=0.0, sector_rad=0.0)
CONVEX = ScanLayout(Geometry.CONVEX, aperture_mm=0.0, radius_mm=50.0, sector_rad=math.radians(60.0))
TRANSMIT_KHZ = 5000


def host_geometry(layout: ScanLayout, lines: int, samples: int, depth_mm: float) -> ScanGeometry:
    """What the host derives from GET_INFO (written here from the layout, as the driver would report it)."""
    return ScanGeometry(
        layout.geometry,
        lines,
        samples,
        depth_mm,
        aperture_mm=layout.aperture_mm,
        radius_mm=layout.radius_mm,
        sector_rad=layout.sector_rad,
    )


def frame(
    rng: np.random.Generator,
    layout: ScanLayout,
    lines: int,
    samples: int,
    depth_mm: float,
    needle: NeedlePose | None,
    fmt: FrameFormat = FrameFormat.RF_I16,
    boiling: bool = False,
    gain_db: float = 40.0,
) -> npt.NDArray[np.int16] | npt.NDArray[np.uint8]:
    baseband = render_baseband(rng, layout, lines, samples, depth_mm, needle, boiling)
    data = to_wire_samples(baseband, fmt, gain_db, carrier_cycles_per_sample(TRANSMIT_KHZ, depth_mm, samples))
    if fmt is FrameFormat.RF_I16:
        return np.frombuffer(data, dtype=np.int16).reshape(lines, samples)
    return np.frombuffer(data, dtype=np.uint8).reshape(lines, samples)
