"""Needle-tip detection on the beam-space dB image: where is the tip (mm), and how sure are we.

A needle is a specular reflector far brighter than tissue speckle, so it shows as a straight bright band.
The detector:

1. takes the pixels more than ``candidate_db`` above the image's median (the speckle level),
2. finds the dominant straight line through them with a Hough transform (numba), then refits it by
   weighted principal axes on the pixels within ``band_mm`` of that line,
3. keeps the longest run of those pixels along the line without a gap over ``max_gap_mm`` (the shaft;
   an isolated bright speckle further along is not part of it),
4. puts the tip at the deepest point of the run still within 6 dB of the shaft's brightness: the blurred
   image of a rod's end falls to half amplitude exactly at the end, so this is unbiased whatever the
   needle's contrast.

Confidence grows with the visible shaft length and the shaft's contrast over speckle; a frame without a
needle has no long bright run and scores near zero. Needles are assumed to go deeper towards the tip
(they are inserted from the skin), which tells the tip end from the entry end.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
from numba import njit

from control.imaging.bmode import BeamImage
from control.imaging.geometry import ScanGeometry


@dataclass(frozen=True, slots=True)
class TipEstimate:
    lateral_mm: float
    depth_mm: float
    confidence: float
    """0 (no needle seen) .. 1 (a long, high-contrast shaft)."""
    shaft_angle_deg: float
    """Angle between the shaft and the probe face."""
    visible_length_mm: float
    contrast_db: float
    """Shaft brightness over the speckle median."""


NO_NEEDLE = TipEstimate(math.nan, math.nan, 0.0, math.nan, 0.0, 0.0)


@dataclass(frozen=True, slots=True)
class TipDetectorSettings:
    candidate_db: float = 12.0
    """Pixels this far above the speckle median may belong to the needle (speckle rarely gets there)."""
    band_mm: float = 0.6
    max_gap_mm: float = 1.5
    tip_drop_db: float = 6.0
    max_candidates: int = 6000
    angle_step_deg: float = 1.0
    rho_step_mm: float = 0.5
    full_confidence_length_mm: float = 5.0
    min_contrast_db: float = 8.0
    full_confidence_contrast_db: float = 16.0
    min_candidates: int = 8


@njit(cache=True, nogil=True)
def _hough_peak(
    x: npt.NDArray[np.float64],
    z: npt.NDArray[np.float64],
    weight: npt.NDArray[np.float64],
    cos_t: npt.NDArray[np.float64],
    sin_t: npt.NDArray[np.float64],
    rho_min: float,
    rho_step: float,
    n_rho: int,
) -> tuple[int, float]:  # pragma: no cover - compiled
    """Index of the best normal angle and the best line offset ``rho`` (mm) by weighted votes."""
    acc = np.zeros((cos_t.size, n_rho))
    for a in range(cos_t.size):
        for i in range(x.size):
            r = int((x[i] * cos_t[a] + z[i] * sin_t[a] - rho_min) / rho_step)
            if 0 <= r < n_rho:
                acc[a, r] += weight[i]
    best = 0
    for k in range(acc.size):
        if acc.flat[k] > acc.flat[best]:
            best = k
    angle = best // n_rho
    return angle, rho_min + (best % n_rho + 0.5) * rho_step


class TipDetector:
    """Stateless between frames except for per-geometry position tables."""

    def __init__(self, settings: TipDetectorSettings = TipDetectorSettings()) -> None:
        self.settings = settings
        self._positions: dict[tuple[ScanGeometry, int], tuple[npt.NDArray[np.float64], ...]] = {}
        n_angles = round(180.0 / settings.angle_step_deg)
        angles = np.radians(np.arange(n_angles) * settings.angle_step_deg)
        self._cos, self._sin = np.cos(angles), np.sin(angles)

    def warm_up(self) -> None:
        """Compile (or load from cache) the Hough kernel."""
        points = np.arange(3.0)
        _hough_peak(points, points, points, self._cos, self._sin, -10.0, 1.0, 20)

    def detect(self, beam: BeamImage) -> TipEstimate:
        s = self.settings
        key = (beam.geometry, beam.bins)
        if key not in self._positions:
            x_all, z_all = beam.positions_mm()
            self._positions[key] = (np.ascontiguousarray(x_all.ravel()), np.ascontiguousarray(z_all.ravel()))
        x_all, z_all = self._positions[key]
        db = beam.db.ravel().astype(np.float64)
        background = float(np.median(db[:: max(1, db.size // 16384)]))
        threshold = background + s.candidate_db
        index = np.flatnonzero(db > threshold)
        if index.size < s.min_candidates:
            return NO_NEEDLE
        if index.size > s.max_candidates:
            index = index[np.argpartition(db[index], -s.max_candidates)[-s.max_candidates :]]
        x, z, level = x_all[index], z_all[index], db[index]
        weight = level - threshold
        extent = float(np.max(np.hypot(x_all, z_all))) + s.rho_step_mm
        n_rho = int(2 * extent / s.rho_step_mm) + 1
        angle_index, rho = _hough_peak(x, z, weight, self._cos, self._sin, -extent, s.rho_step_mm, n_rho)
        normal = np.array([self._cos[angle_index], self._sin[angle_index]])
        near = np.abs(x * normal[0] + z * normal[1] - rho) <= 2.0 * s.band_mm
        if np.count_nonzero(near) < 2:
            return NO_NEEDLE
        centre, direction = _principal_axis(x[near], z[near], weight[near])
        offset_x, offset_z = x - centre[0], z - centre[1]
        across = offset_x * direction[1] - offset_z * direction[0]
        on_line = np.abs(across) <= s.band_mm
        along = (offset_x * direction[0] + offset_z * direction[1])[on_line]
        run = _longest_run(along, s.max_gap_mm)
        run_along, run_level = along[run], level[on_line][run]
        shaft_db = float(np.percentile(run_level, 90))
        bright = run_level >= shaft_db - s.tip_drop_db
        tip_along = float(np.max(run_along[bright]))
        length_mm = float(np.max(run_along) - np.min(run_along))
        contrast_db = shaft_db - background
        confidence = _ramp(length_mm, 0.0, s.full_confidence_length_mm) * _ramp(
            contrast_db, s.min_contrast_db, s.full_confidence_contrast_db
        )
        return TipEstimate(
            lateral_mm=float(centre[0] + tip_along * direction[0]),
            depth_mm=float(centre[1] + tip_along * direction[1]),
            confidence=confidence,
            shaft_angle_deg=math.degrees(math.atan2(direction[1], abs(direction[0]))),
            visible_length_mm=length_mm,
            contrast_db=contrast_db,
        )


def _principal_axis(
    x: npt.NDArray[np.float64], z: npt.NDArray[np.float64], weight: npt.NDArray[np.float64]
) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.float64]]:
    """Weighted centroid and unit direction of the points, the direction pointing deeper."""
    w = weight / np.sum(weight)
    centre = np.array([np.sum(w * x), np.sum(w * z)])
    dx, dz = x - centre[0], z - centre[1]
    cov = np.array([[np.sum(w * dx * dx), np.sum(w * dx * dz)], [np.sum(w * dx * dz), np.sum(w * dz * dz)]])
    _, vectors = np.linalg.eigh(cov)
    direction = vectors[:, 1]
    if direction[1] < 0 or (direction[1] == 0 and direction[0] < 0):
        direction = -direction
    return centre, direction


def _longest_run(along: npt.NDArray[np.float64], max_gap: float) -> npt.NDArray[np.intp]:
    """Indices of the longest chain of positions without a gap over ``max_gap``."""
    order = np.argsort(along)
    breaks = np.flatnonzero(np.diff(along[order]) > max_gap) + 1
    runs = np.split(order, breaks)
    best: npt.NDArray[np.intp] = max(runs, key=len)
    return best


def _ramp(value: float, zero_at: float, one_at: float) -> float:
    return min(max((value - zero_at) / (one_at - zero_at), 0.0), 1.0)
