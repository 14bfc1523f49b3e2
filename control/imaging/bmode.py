"""The B-mode pipeline: a probe frame → a beam-space dB image → a display image.

RF (i16) is demodulated at the transmit frequency and box-filtered over one carrier period (which
cancels the 2f₀ term), giving the envelope without a Hilbert transform; the envelope is averaged down to
at most ``max_axial_bins`` per line (the display cannot show more) and log-compressed against the i16
full scale. A fixed reference, not the frame's own maximum, on purpose: echo brightness must mean the
same from frame to frame, or the boiling detector would see gas echoes normalised away. The probe's own
envelope format (u8, log-compressed over ``PROBE_ENVELOPE_RANGE_DB``) joins the same path in dB.

Scan conversion interpolates the dB image bilinearly at every display pixel through a lookup table
built once per geometry, for linear and convex arrays alike.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Final

import numpy as np
import numpy.typing as npt

from control.imaging import kernels, reference
from control.imaging.geometry import MAX_DISPLAY_PIXELS, DisplayGrid, ScanGeometry
from firmware_bridge.probe import FrameFormat, Geometry

I16_FULL_SCALE: Final = 32767.0
PROBE_ENVELOPE_RANGE_DB: Final = 60.0
"""The probe's log compression of its u8 envelope format (not in the wire contract; docs/imaging.md)."""


@dataclass(frozen=True, slots=True)
class BModeSettings:
    dynamic_range_db: float = 60.0
    """The display spans this many dB below full scale."""
    max_axial_bins: int = 512
    max_display_pixels: int = MAX_DISPLAY_PIXELS


@dataclass(frozen=True, slots=True)
class BeamImage:
    """Log-compressed echo amplitude in beam space: ``lines × bins``, dB re full scale."""

    db: npt.NDArray[np.float32]
    geometry: ScanGeometry

    @property
    def bins(self) -> int:
        return int(self.db.shape[1])

    def positions_mm(self) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.float64]]:
        return self.geometry.positions_mm(self.bins)


@dataclass(frozen=True, slots=True)
class DisplayImage:
    """The scan-converted image; pixel ``(row, col)`` lies at ``(x0 + col·p, z0 + row·p)`` mm.

    It satisfies ``safety.boiling.EchoImage``, so the boiling detector reads it directly.
    """

    pixels: npt.NDArray[np.uint8]
    valid: npt.NDArray[np.bool_]
    """Pixels inside the field of view (a convex sector leaves corners empty)."""
    mm_per_pixel: float
    lateral_origin_mm: float
    depth_origin_mm: float
    dynamic_range_db: float


@dataclass(frozen=True, slots=True)
class _ScanTable:
    grid: DisplayGrid
    line0: npt.NDArray[np.int32]
    bin0: npt.NDArray[np.int32]
    line_frac: npt.NDArray[np.float32]
    bin_frac: npt.NDArray[np.float32]
    valid: npt.NDArray[np.bool_]


def demodulation_tables(
    samples: int, cycles_per_sample: float
) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.float64], int]:
    """Carrier cosine and sine per sample, and the box length (one carrier period, at least 2)."""
    phase = 2.0 * math.pi * cycles_per_sample * np.arange(samples)
    window = max(2, round(1.0 / cycles_per_sample)) if cycles_per_sample > 0 else 2
    return np.cos(phase), -np.sin(phase), window


def axial_decimation(samples_per_line: int, max_bins: int) -> int:
    return max(1, math.ceil(samples_per_line / max_bins))


def scan_table(geometry: ScanGeometry, bins: int, max_pixels: int) -> _ScanTable:
    """Where each display pixel falls in the beam image, as integer corner and fractional weights."""
    grid = DisplayGrid.covering(geometry, max_pixels)
    x, z = grid.pixel_positions_mm()
    line, bin_ = geometry.to_beam(x, z, bins)
    lines = geometry.lines
    # Half a line or bin beyond the outer centres still belongs to the field (edge pixels are clamped).
    valid = (line >= -0.5) & (line <= lines - 0.5) & (bin_ >= -0.5) & (bin_ <= bins - 0.5)
    line = np.clip(line, 0.0, lines - 1.0)
    bin_ = np.clip(bin_, 0.0, bins - 1.0)
    line0 = np.minimum(np.floor(line), max(lines - 2, 0)).astype(np.int32)
    bin0 = np.minimum(np.floor(bin_), max(bins - 2, 0)).astype(np.int32)
    return _ScanTable(
        grid=grid,
        line0=line0,
        bin0=bin0,
        line_frac=(line - line0).astype(np.float32),
        bin_frac=(bin_ - bin0).astype(np.float32),
        valid=valid,
    )


class BModePipeline:
    """Frame → beam image → display image, numba by default or the numpy reference for comparison.

    Lookup tables are cached per geometry, so a change of depth costs one rebuild, not one per frame.
    """

    def __init__(self, settings: BModeSettings = BModeSettings(), *, use_numba: bool = True) -> None:
        self.settings = settings
        self.use_numba = use_numba
        self._demod: dict[
            tuple[int, float], tuple[npt.NDArray[np.float64], npt.NDArray[np.float64], int]
        ] = {}
        self._tables: dict[tuple[ScanGeometry, int], _ScanTable] = {}

    def warm_up(self) -> None:
        """Compile (or load from cache) every kernel before the first real frame needs it."""
        geometry = ScanGeometry(Geometry.LINEAR, lines=4, samples_per_line=64, depth_mm=20.0, aperture_mm=1.2)
        for writeable in (True, False):  # frames from the driver are read-only views of the USB buffer
            rf = np.zeros((4, 64), dtype=np.int16)
            envelope = np.zeros((4, 64), dtype=np.uint8)
            rf.flags.writeable = envelope.flags.writeable = writeable
            self.display(self.beam_image(rf, FrameFormat.RF_I16, geometry, transmit_khz=5000))
            self.beam_image(envelope, FrameFormat.ENVELOPE_U8, geometry, transmit_khz=5000)

    def beam_image(
        self,
        samples: npt.NDArray[np.int16] | npt.NDArray[np.uint8],
        fmt: FrameFormat,
        geometry: ScanGeometry,
        transmit_khz: float,
    ) -> BeamImage:
        lines, count = samples.shape
        decimation = axial_decimation(count, self.settings.max_axial_bins)
        bins = count // decimation
        if fmt is FrameFormat.RF_I16:
            cycles = geometry.carrier_cycles_per_sample(transmit_khz)
            key = (count, round(cycles, 12))
            if key not in self._demod:
                self._demod[key] = demodulation_tables(count, cycles)
            cos_table, sin_table, window = self._demod[key]
            rf = np.ascontiguousarray(samples, dtype=np.int16)
            if self.use_numba:
                db = np.empty((lines, bins), dtype=np.float32)
                kernels.rf_to_beam_db(rf, cos_table, sin_table, window, decimation, I16_FULL_SCALE, db)
            else:
                db = reference.rf_to_beam_db(
                    rf, cos_table, sin_table, window, decimation, I16_FULL_SCALE, bins
                )
        else:
            envelope = np.ascontiguousarray(samples, dtype=np.uint8)
            if self.use_numba:
                db = np.empty((lines, bins), dtype=np.float32)
                kernels.envelope_to_beam_db(envelope, PROBE_ENVELOPE_RANGE_DB, decimation, db)
            else:
                db = reference.envelope_to_beam_db(envelope, PROBE_ENVELOPE_RANGE_DB, decimation, bins)
        return BeamImage(db=db, geometry=geometry)

    def display(self, beam: BeamImage) -> DisplayImage:
        key = (beam.geometry, beam.bins)
        table = self._tables.get(key)
        if table is None:
            table = self._tables[key] = scan_table(beam.geometry, beam.bins, self.settings.max_display_pixels)
        dynamic_range_db = self.settings.dynamic_range_db
        if self.use_numba:
            pixels = np.empty((table.grid.rows, table.grid.cols), dtype=np.uint8)
            kernels.scan_convert(
                beam.db,
                table.line0,
                table.bin0,
                table.line_frac,
                table.bin_frac,
                table.valid,
                dynamic_range_db,
                pixels,
            )
        else:
            pixels = reference.scan_convert(
                beam.db,
                table.line0,
                table.bin0,
                table.line_frac,
                table.bin_frac,
                table.valid,
                dynamic_range_db,
            )
        return DisplayImage(
            pixels=pixels,
            valid=table.valid,
            mm_per_pixel=table.grid.mm_per_pixel,
            lateral_origin_mm=table.grid.lateral_origin_mm,
            depth_origin_mm=table.grid.depth_origin_mm,
            dynamic_range_db=dynamic_range_db,
        )
