"""Where each RF sample lies in millimetres, and the display grid that covers the field of view.

Conventions (shared with the simulated probe's renderer and written in ``docs/imaging.md``):

- Lateral ``x`` is measured from the array centre, positive to the right; depth ``z`` from the probe
  face at the array centre, positive into the body.
- A frame has ``lines`` scan lines; line ``l`` sits at offset ``l + 0.5 - lines / 2`` line pitches from
  the centre. A linear array spreads the lines over its aperture (elements × pitch); a convex array
  spreads them over its sector angle, each line a ray from the centre of curvature.
- Sample ``s`` of ``samples_per_line`` lies at range ``(s + 0.5) × depth / samples_per_line`` along its
  line (from the face).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Final

import numpy as np
import numpy.typing as npt

from firmware_bridge.probe import Geometry, ProbeInfo

SOUND_SPEED_M_S: Final = 1540.0
DEFAULT_CONVEX_SECTOR_DEG: Final = 60.0
"""GET_INFO carries no sector angle for convex arrays; this constant supplies it (no configuration key sets it)."""
MAX_DISPLAY_PIXELS: Final = 512
"""The display image's longer side; small enough to convert at frame rate, fine enough for 0.1 mm."""


@dataclass(frozen=True, slots=True)
class ScanGeometry:
    """The layout of one frame's samples (beam space) in the image plane."""

    geometry: Geometry
    lines: int
    samples_per_line: int
    depth_mm: float
    aperture_mm: float = 0.0
    """Linear arrays: lateral span of the lines."""
    radius_mm: float = 0.0
    """Convex arrays: radius of curvature (the face is this far from the centre of curvature)."""
    sector_rad: float = 0.0
    """Convex arrays: angle spanned by the lines."""

    @classmethod
    def from_info(
        cls,
        info: ProbeInfo,
        lines: int,
        samples_per_line: int,
        depth_mm: float,
        convex_sector_deg: float = DEFAULT_CONVEX_SECTOR_DEG,
    ) -> ScanGeometry:
        if info.geometry is Geometry.LINEAR:
            return cls(
                Geometry.LINEAR,
                lines,
                samples_per_line,
                depth_mm,
                aperture_mm=info.element_count * info.pitch_or_radius_mm,
            )
        return cls(
            Geometry.CONVEX,
            lines,
            samples_per_line,
            depth_mm,
            radius_mm=info.pitch_or_radius_mm,
            sector_rad=math.radians(convex_sector_deg),
        )

    @property
    def sample_mm(self) -> float:
        return self.depth_mm / self.samples_per_line

    def line_offsets(self) -> npt.NDArray[np.float64]:
        return np.asarray(np.arange(self.lines) + 0.5 - self.lines / 2.0, dtype=np.float64)

    def positions_mm(
        self, samples_per_line: int | None = None
    ) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.float64]]:
        """Lateral and depth (mm) of every sample, each ``lines × n`` (``n`` samples over the depth)."""
        n = self.samples_per_line if samples_per_line is None else samples_per_line
        range_mm = (np.arange(n) + 0.5) * (self.depth_mm / n)
        if self.geometry is Geometry.LINEAR:
            x = np.repeat((self.line_offsets() * (self.aperture_mm / self.lines))[:, None], n, axis=1)
            z = np.repeat(range_mm[None, :], self.lines, axis=0)
            return x, z
        theta = self.line_offsets() * (self.sector_rad / self.lines)
        radial = self.radius_mm + range_mm[None, :]
        x = np.asarray(radial * np.sin(theta)[:, None], dtype=np.float64)
        return x, np.asarray(radial * np.cos(theta)[:, None] - self.radius_mm, dtype=np.float64)

    def to_beam(
        self, x_mm: npt.NDArray[np.float64], z_mm: npt.NDArray[np.float64], samples_per_line: int
    ) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.float64]]:
        """Fractional (line, sample) indices of image-plane points, for a line of ``samples_per_line``."""
        sample_mm = self.depth_mm / samples_per_line
        if self.geometry is Geometry.LINEAR:
            line = x_mm / (self.aperture_mm / self.lines) + self.lines / 2.0 - 0.5
            return line, z_mm / sample_mm - 0.5
        dz = z_mm + self.radius_mm
        theta = np.arctan2(x_mm, dz)
        line = theta / (self.sector_rad / self.lines) + self.lines / 2.0 - 0.5
        return line, (np.hypot(x_mm, dz) - self.radius_mm) / sample_mm - 0.5

    def field_bounds_mm(self) -> tuple[float, float, float, float]:
        """``(x_min, x_max, z_min, z_max)`` of the field of view."""
        if self.geometry is Geometry.LINEAR:
            half = self.aperture_mm / 2.0
            return -half, half, 0.0, self.depth_mm
        half_angle = self.sector_rad / 2.0
        outer = self.radius_mm + self.depth_mm
        x_max = outer * math.sin(half_angle)
        z_min = self.radius_mm * math.cos(half_angle) - self.radius_mm
        return -x_max, x_max, z_min, self.depth_mm

    def carrier_cycles_per_sample(self, transmit_khz: float) -> float:
        """The transmit frequency over the RF sampling rate implied by the depth (two-way path)."""
        sample_time_s = 2.0 * self.sample_mm * 1e-3 / SOUND_SPEED_M_S
        return transmit_khz * 1e3 * sample_time_s


@dataclass(frozen=True, slots=True)
class DisplayGrid:
    """The display image's pixel grid: pixel ``(row, col)`` is at ``(x0 + col·p, z0 + row·p)`` mm."""

    rows: int
    cols: int
    mm_per_pixel: float
    lateral_origin_mm: float
    depth_origin_mm: float

    @classmethod
    def covering(cls, geometry: ScanGeometry, max_pixels: int = MAX_DISPLAY_PIXELS) -> DisplayGrid:
        x_min, x_max, z_min, z_max = geometry.field_bounds_mm()
        pixel = max(x_max - x_min, z_max - z_min) / max_pixels
        return cls(
            rows=max(1, math.ceil((z_max - z_min) / pixel)),
            cols=max(1, math.ceil((x_max - x_min) / pixel)),
            mm_per_pixel=pixel,
            lateral_origin_mm=x_min + pixel / 2.0,
            depth_origin_mm=z_min + pixel / 2.0,
        )

    def pixel_positions_mm(self) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.float64]]:
        cols = self.lateral_origin_mm + np.arange(self.cols) * self.mm_per_pixel
        rows = self.depth_origin_mm + np.arange(self.rows) * self.mm_per_pixel
        return np.broadcast_to(cols[None, :], (self.rows, self.cols)), np.broadcast_to(
            rows[:, None], (self.rows, self.cols)
        )
