"""The B-mode kernels in numba, one pass per scan line, no temporaries.

Each kernel has a numpy twin in :mod:`control.imaging.reference` computing the same arithmetic, which
the tests compare against and the benchmark measures. Single-threaded on purpose (no ``parallel=True``):
the cart's cores belong to the control loop first, and 60 fps fits in one core. They release the GIL
(``nogil=True``): in a real-time run they execute on the guidance thread while the loop ticks
(``control.guidance_thread``).
"""

from __future__ import annotations

import math

import numpy as np
import numpy.typing as npt
from numba import njit

_FLOOR_COUNTS = 1e-3
"""Envelope floor before the logarithm (a silent line must not become -inf dB)."""


@njit(cache=True, nogil=True)
def rf_to_beam_db(
    rf: npt.NDArray[np.int16],
    cos_table: npt.NDArray[np.float64],
    sin_table: npt.NDArray[np.float64],
    window: int,
    decimation: int,
    full_scale: float,
    out_db: npt.NDArray[np.float32],
) -> None:  # pragma: no cover - compiled
    """RF → envelope (quadrature demodulation, one-carrier-period box filter) → mean over ``decimation``
    samples → dB re ``full_scale``, into ``out_db`` (lines × bins)."""
    lines, samples = rf.shape
    bins = out_db.shape[1]
    half = window // 2
    prefix_i = np.zeros(samples + 1)
    prefix_q = np.zeros(samples + 1)
    scale = 2.0 / (window * decimation)
    for line in range(lines):
        acc_i = 0.0
        acc_q = 0.0
        for s in range(samples):
            value = float(rf[line, s])
            acc_i += value * cos_table[s]
            acc_q += value * sin_table[s]
            prefix_i[s + 1] = acc_i
            prefix_q[s + 1] = acc_q
        for b in range(bins):
            total = 0.0
            for k in range(decimation):
                s = b * decimation + k
                lo = min(max(s - half, 0), samples)
                hi = min(max(s - half + window, 0), samples)
                i = prefix_i[hi] - prefix_i[lo]
                q = prefix_q[hi] - prefix_q[lo]
                total += math.sqrt(i * i + q * q)
            out_db[line, b] = 20.0 * math.log10(max(total * scale, _FLOOR_COUNTS) / full_scale)


@njit(cache=True, nogil=True)
def envelope_to_beam_db(
    envelope: npt.NDArray[np.uint8], probe_range_db: float, decimation: int, out_db: npt.NDArray[np.float32]
) -> None:  # pragma: no cover - compiled
    """The probe's log-compressed u8 envelope → dB re full scale, averaged over ``decimation`` samples."""
    lines = envelope.shape[0]
    bins = out_db.shape[1]
    step = probe_range_db / 255.0
    for line in range(lines):
        for b in range(bins):
            total = 0.0
            for k in range(decimation):
                total += float(envelope[line, b * decimation + k])
            out_db[line, b] = total / decimation * step - probe_range_db


@njit(cache=True, nogil=True)
def scan_convert(
    beam_db: npt.NDArray[np.float32],
    line0: npt.NDArray[np.int32],
    bin0: npt.NDArray[np.int32],
    line_frac: npt.NDArray[np.float32],
    bin_frac: npt.NDArray[np.float32],
    valid: npt.NDArray[np.bool_],
    dynamic_range_db: float,
    out: npt.NDArray[np.uint8],
) -> None:  # pragma: no cover - compiled
    """Bilinear interpolation of the dB beam image at each display pixel, mapped to 0..255 over the
    dynamic range (0 dB re full scale is white); pixels outside the field are 0."""
    rows, cols = out.shape
    gain = 255.0 / dynamic_range_db
    for r in range(rows):
        for c in range(cols):
            if not valid[r, c]:
                out[r, c] = 0
                continue
            li = line0[r, c]
            bi = bin0[r, c]
            fl = float(line_frac[r, c])
            fb = float(bin_frac[r, c])
            top = float(beam_db[li, bi]) * (1.0 - fb) + float(beam_db[li, bi + 1]) * fb
            bottom = float(beam_db[li + 1, bi]) * (1.0 - fb) + float(beam_db[li + 1, bi + 1]) * fb
            level = ((top * (1.0 - fl) + bottom * fl) + dynamic_range_db) * gain
            out[r, c] = np.uint8(min(max(math.floor(level + 0.5), 0.0), 255.0))
