"""B-mode frames of a simulated scene: fully developed speckle, a needle with its tip, and gas echoes.

Rendered in beam space (one row per scan line, one column per depth sample), as a probe's beamformer
would deliver them. The scene is a complex baseband image: circular Gaussian scatterers shaped by the
transmit pulse in depth (so the envelope is Rayleigh-distributed speckle), a coherent reflector along
the needle blurred by the beam, and, while the tissue boils, a brighter scatterer cloud around the tip.
RF is that baseband on the transmit carrier; the envelope format is its log-compressed magnitude.

The geometry here (where line ``l``, sample ``s`` lies in millimetres) is written independently of the
host's ``control/imaging/geometry.py`` on purpose: the tip-detection tests compare the two, so a mistake
in either shows up instead of cancelling out. Both follow the conventions in ``docs/imaging.md``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Final

import numpy as np
import numpy.typing as npt
from numba import njit

from firmware_bridge.probe.wire import FrameFormat, Geometry

SOUND_SPEED_M_S: Final = 1540.0
I16_FULL_SCALE: Final = 32767.0
ENVELOPE_DYNAMIC_RANGE_DB: Final = 60.0
"""The probe's own log compression for the envelope format: full scale down to -60 dB over 0..255."""
REFERENCE_GAIN_DB: Final = 40.0
"""At this receive gain the speckle has ``speckle_rms_counts``; each dB more raises every echo by 1 dB."""


@dataclass(frozen=True, slots=True)
class NeedlePose:
    """A straight needle seen in the image plane, entering from one side and ending at its tip."""

    tip_lateral_mm: float
    """Lateral position of the tip, from the array centre (positive to the right)."""
    tip_depth_mm: float
    """Depth of the tip below the probe face at the array centre."""
    angle_deg: float = 40.0
    """Insertion angle between the shaft and the probe face."""
    from_left: bool = True
    """The shaft comes from the left of the tip (it points down and to the right)."""


@dataclass(frozen=True, slots=True)
class ScanLayout:
    """How the simulated array lays its lines out (see the conventions in ``docs/imaging.md``)."""

    geometry: Geometry
    aperture_mm: float
    """Linear: width covered by the lines (element count × pitch)."""
    radius_mm: float
    """Convex: radius of curvature of the array."""
    sector_rad: float
    """Convex: angle covered by the lines."""


@dataclass(frozen=True, slots=True)
class SceneLook:
    """Echo levels of the scene at the reference gain."""

    speckle_rms_counts: float = 400.0
    needle_contrast_db: float = 20.0
    """Needle echo amplitude over the speckle RMS: the default scene's speckle SNR."""
    needle_beam_width_mm: float = 0.3
    """Gaussian σ of the needle's blurred image (beam width and pulse length together)."""
    gas_contrast_db: float = 14.0
    """Gas (boiling) scatterers over tissue speckle, in the cloud's centre."""
    gas_radius_mm: float = 3.0
    pulse_sigma_mm: float = 0.2
    """Axial σ of the transmit pulse envelope; sets the speckle grain in depth."""


def sample_positions_mm(
    layout: ScanLayout, lines: int, samples_per_line: int, depth_mm: float
) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.float64]]:
    """Lateral and depth position (mm) of every sample, each ``lines × samples_per_line``."""
    range_mm = (np.arange(samples_per_line) + 0.5) * (depth_mm / samples_per_line)
    line_offsets = np.arange(lines) + 0.5 - lines / 2.0
    if layout.geometry is Geometry.LINEAR:
        x = np.broadcast_to((line_offsets * (layout.aperture_mm / lines))[:, None], (lines, samples_per_line))
        z = np.broadcast_to(range_mm[None, :], (lines, samples_per_line))
        return np.array(x), np.array(z)
    theta = line_offsets * (layout.sector_rad / lines)
    radial = layout.radius_mm + range_mm[None, :]
    return radial * np.sin(theta)[:, None], radial * np.cos(theta)[:, None] - layout.radius_mm


def needle_entry_mm(pose: NeedlePose, length_mm: float = 200.0) -> tuple[float, float]:
    """A point far up the shaft (beyond any field of view), so the shaft crosses the whole image."""
    angle = math.radians(pose.angle_deg)
    side = -1.0 if pose.from_left else 1.0
    return pose.tip_lateral_mm + side * length_mm * math.cos(angle), pose.tip_depth_mm - length_mm * math.sin(angle)


def render_baseband(
    rng: np.random.Generator,
    layout: ScanLayout,
    lines: int,
    samples_per_line: int,
    depth_mm: float,
    needle: NeedlePose | None,
    boiling: bool,
    look: SceneLook = SceneLook(),
) -> npt.NDArray[np.complex128]:
    """The complex baseband echo at the reference gain, ``lines × samples_per_line``."""
    x, z = sample_positions_mm(layout, lines, samples_per_line, depth_mm)
    sample_mm = depth_mm / samples_per_line
    scatter = rng.standard_normal((lines, samples_per_line)) + 1j * rng.standard_normal((lines, samples_per_line))
    if boiling and needle is not None:
        tip_distance2 = (x - needle.tip_lateral_mm) ** 2 + (z - needle.tip_depth_mm) ** 2
        cloud = np.exp(-tip_distance2 / (2.0 * look.gas_radius_mm**2 / 4.0))
        scatter *= 1.0 + (10.0 ** (look.gas_contrast_db / 20.0) - 1.0) * cloud
    # Shape the white scatterers by the pulse in depth (a Gaussian in frequency, applied by FFT), and
    # normalise so the speckle RMS is the same at every sampling density.
    freqs = np.fft.fftfreq(samples_per_line, d=sample_mm)
    pulse_response = np.exp(-2.0 * (math.pi * look.pulse_sigma_mm * freqs) ** 2)
    speckle = np.fft.ifft(np.fft.fft(scatter, axis=1) * pulse_response[None, :], axis=1)
    speckle *= look.speckle_rms_counts / math.sqrt(2.0 * float(np.mean(pulse_response**2)))
    if needle is not None:
        speckle += _needle_echo(x, z, needle, look)
    return speckle


def _needle_echo(
    x: npt.NDArray[np.float64], z: npt.NDArray[np.float64], needle: NeedlePose, look: SceneLook
) -> npt.NDArray[np.float64]:
    entry_x, entry_z = needle_entry_mm(needle)
    dx, dz = needle.tip_lateral_mm - entry_x, needle.tip_depth_mm - entry_z
    length2 = dx * dx + dz * dz
    along = np.clip(((x - entry_x) * dx + (z - entry_z) * dz) / length2, 0.0, 1.0)
    dist2 = (x - (entry_x + along * dx)) ** 2 + (z - (entry_z + along * dz)) ** 2
    amplitude = look.speckle_rms_counts * 10.0 ** (look.needle_contrast_db / 20.0)
    echo: npt.NDArray[np.float64] = amplitude * np.exp(-dist2 / (2.0 * look.needle_beam_width_mm**2))
    return echo


def carrier_cycles_per_sample(transmit_khz: float, depth_mm: float, samples_per_line: int) -> float:
    """Transmit frequency over the RF sampling rate implied by depth and sample count (two-way path)."""
    sample_time_s = 2.0 * (depth_mm / samples_per_line) * 1e-3 / SOUND_SPEED_M_S
    return transmit_khz * 1e3 * sample_time_s


def to_wire_samples(
    baseband: npt.NDArray[np.complex128], fmt: FrameFormat, gain_db: float, cycles_per_sample: float
) -> bytes:
    """The frame data as the probe sends it: RF i16 on the carrier, or log-compressed envelope u8."""
    scaled = baseband * (10.0 ** ((gain_db - REFERENCE_GAIN_DB) / 20.0))
    if fmt is FrameFormat.RF_I16:
        phase = np.exp(2j * math.pi * cycles_per_sample * np.arange(baseband.shape[1]))
        rf = np.clip(np.rint((scaled * phase[None, :]).real), -I16_FULL_SCALE, I16_FULL_SCALE)
        return rf.astype("<i2").tobytes()
    magnitude_db = 20.0 * np.log10(np.maximum(np.abs(scaled), 1e-3) / I16_FULL_SCALE)
    levels = (magnitude_db + ENVELOPE_DYNAMIC_RANGE_DB) * (255.0 / ENVELOPE_DYNAMIC_RANGE_DB)
    return np.clip(np.rint(levels), 0, 255).astype(np.uint8).tobytes()


SPECKLE_BANK: Final = 6
"""Independent speckle fields synthesised once per geometry (see :class:`SceneRenderer`)."""


class SceneRenderer:
    """Renders a still probe's frames at a fraction of :func:`render_baseband`'s cost.

    Tissue speckle does not change while the probe is held still; what changes from frame to frame is a
    slow decorrelation (breathing, the hand's tremor). So a small bank of independent pulse-shaped speckle
    fields is synthesised once per geometry, and each frame is a random, energy-preserving mix of two of
    them (so speckle statistics and RMS are those of :func:`render_baseband`). The needle's echo and the
    gas cloud are computed once per pose. Gas multiplies the filtered speckle rather than the raw
    scatterers; the cloud is far smoother than the pulse, so the two orders agree to within the grain.
    :meth:`render` composes a frame with numpy (for tests); :meth:`render_wire` composes the wire samples
    in one compiled pass (what the simulated probe streams).
    """

    def __init__(self, rng: np.random.Generator, look: SceneLook = SceneLook()) -> None:
        self._rng = rng
        self._look = look
        self._geometry_key: tuple[object, ...] | None = None
        self._bank: list[npt.NDArray[np.complex128]] = []
        self._positions: tuple[npt.NDArray[np.float64], npt.NDArray[np.float64]] | None = None
        self._pose_key: tuple[object, ...] | None = None
        self._needle: npt.NDArray[np.float64] = _NONE
        self._gas_gain: npt.NDArray[np.float64] = _NONE

    def render(
        self,
        layout: ScanLayout,
        lines: int,
        samples_per_line: int,
        depth_mm: float,
        needle: NeedlePose | None,
        boiling: bool,
    ) -> npt.NDArray[np.complex128]:
        """The next frame's complex baseband echo at the reference gain."""
        a, b, weight_a, weight_b, gas, echo = self._next_mix(layout, lines, samples_per_line, depth_mm, needle, boiling)
        frame = a * weight_a + b * weight_b
        if gas.size:
            frame *= gas
        if echo.size:
            frame += echo
        return frame

    def render_wire(
        self,
        layout: ScanLayout,
        lines: int,
        samples_per_line: int,
        depth_mm: float,
        needle: NeedlePose | None,
        boiling: bool,
        fmt: FrameFormat,
        gain_db: float,
        cycles_per_sample: float,
    ) -> bytes:
        """``to_wire_samples(render(...))``, composed in one compiled pass."""
        a, b, weight_a, weight_b, gas, echo = self._next_mix(layout, lines, samples_per_line, depth_mm, needle, boiling)
        scale = 10.0 ** ((gain_db - REFERENCE_GAIN_DB) / 20.0)
        if fmt is FrameFormat.RF_I16:
            phase = np.exp(2j * math.pi * cycles_per_sample * np.arange(samples_per_line))
            rf = np.empty((lines, samples_per_line), dtype="<i2")
            _compose_rf(a, b, weight_a, weight_b, gas, echo, phase, scale, rf)
            return rf.tobytes()
        levels = np.empty((lines, samples_per_line), dtype=np.uint8)
        _compose_envelope(a, b, weight_a, weight_b, gas, echo, scale, levels)
        return levels.tobytes()

    def _next_mix(
        self,
        layout: ScanLayout,
        lines: int,
        samples_per_line: int,
        depth_mm: float,
        needle: NeedlePose | None,
        boiling: bool,
    ) -> tuple[
        npt.NDArray[np.complex128],
        npt.NDArray[np.complex128],
        float,
        float,
        npt.NDArray[np.float64],
        npt.NDArray[np.float64],
    ]:
        """Bring the caches up to date and draw this frame's mix: two bank fields and their weights."""
        geometry_key = self.prime(layout, lines, samples_per_line, depth_mm)
        if (geometry_key, needle) != self._pose_key:
            self._pose_key = (geometry_key, needle)
            self._cache_pose(needle)
        first, second = self._rng.choice(SPECKLE_BANK, size=2, replace=False)
        angle = self._rng.uniform(0.0, 0.5 * math.pi)
        gas = self._gas_gain if boiling else _NONE
        return self._bank[first], self._bank[second], math.cos(angle), math.sin(angle), gas, self._needle

    def prime(self, layout: ScanLayout, lines: int, samples_per_line: int, depth_mm: float) -> tuple[object, ...]:
        """Synthesise the speckle bank for this geometry now (tens of ms of FFTs), when the probe is set up,
        not when the first frame is due; returns the geometry's cache key."""
        geometry_key = (layout, lines, samples_per_line, depth_mm)
        if geometry_key != self._geometry_key:
            self._geometry_key = geometry_key
            self._positions = sample_positions_mm(layout, lines, samples_per_line, depth_mm)
            self._bank = [
                render_baseband(self._rng, layout, lines, samples_per_line, depth_mm, None, False, self._look)
                for _ in range(SPECKLE_BANK)
            ]
            self._pose_key = None
        return geometry_key

    def _cache_pose(self, needle: NeedlePose | None) -> None:
        assert self._positions is not None
        if needle is None:
            self._needle = self._gas_gain = _NONE
            return
        x, z = self._positions
        look = self._look
        self._needle = _needle_echo(x, z, needle, look)
        tip_distance2 = (x - needle.tip_lateral_mm) ** 2 + (z - needle.tip_depth_mm) ** 2
        cloud = np.exp(-tip_distance2 / (2.0 * look.gas_radius_mm**2 / 4.0))
        self._gas_gain = 1.0 + (10.0 ** (look.gas_contrast_db / 20.0) - 1.0) * cloud


_NONE: Final = np.zeros((0, 0))
"""No needle, no gas: an empty field the compiled composer skips."""


@njit(cache=True, nogil=True, inline="always")
def _mixed(
    a: npt.NDArray[np.complex128],
    b: npt.NDArray[np.complex128],
    weight_a: float,
    weight_b: float,
    gas: npt.NDArray[np.float64],
    echo: npt.NDArray[np.float64],
    i: int,
    j: int,
) -> complex:
    """One sample of the frame: the bank mix, gas where it boils, and the needle's echo."""
    v = a[i, j] * weight_a + b[i, j] * weight_b
    if gas.size > 0:
        v *= gas[i, j]
    if echo.size > 0:
        v += echo[i, j]
    return v


@njit(cache=True, nogil=True)
def _compose_rf(
    a: npt.NDArray[np.complex128],
    b: npt.NDArray[np.complex128],
    weight_a: float,
    weight_b: float,
    gas: npt.NDArray[np.float64],
    echo: npt.NDArray[np.float64],
    phase: npt.NDArray[np.complex128],
    scale: float,
    out: npt.NDArray[np.int16],
) -> None:
    lines, samples = out.shape
    for i in range(lines):
        for j in range(samples):
            r = round((_mixed(a, b, weight_a, weight_b, gas, echo, i, j) * scale * phase[j]).real)
            out[i, j] = min(max(r, -I16_FULL_SCALE), I16_FULL_SCALE)


@njit(cache=True, nogil=True)
def _compose_envelope(
    a: npt.NDArray[np.complex128],
    b: npt.NDArray[np.complex128],
    weight_a: float,
    weight_b: float,
    gas: npt.NDArray[np.float64],
    echo: npt.NDArray[np.float64],
    scale: float,
    out: npt.NDArray[np.uint8],
) -> None:
    lines, samples = out.shape
    for i in range(lines):
        for j in range(samples):
            v = _mixed(a, b, weight_a, weight_b, gas, echo, i, j)
            magnitude_db = 20.0 * math.log10(max(abs(v * scale), 1e-3) / I16_FULL_SCALE)
            level = round((magnitude_db + ENVELOPE_DYNAMIC_RANGE_DB) * (255.0 / ENVELOPE_DYNAMIC_RANGE_DB))
            out[i, j] = min(max(level, 0), 255)
