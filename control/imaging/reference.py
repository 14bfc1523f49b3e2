"""The numpy reference of the B-mode kernels: the same arithmetic, written for reading.

It is what :mod:`control.imaging.kernels` is tested against and what the benchmark compares with; it is
not used on the cart.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

_FLOOR_COUNTS = 1e-3


def rf_to_beam_db(
    rf: npt.NDArray[np.int16],
    cos_table: npt.NDArray[np.float64],
    sin_table: npt.NDArray[np.float64],
    window: int,
    decimation: int,
    full_scale: float,
    bins: int,
) -> npt.NDArray[np.float32]:
    samples = rf.shape[1]
    zero = np.zeros((rf.shape[0], 1))
    prefix_i = np.concatenate([zero, np.cumsum(rf * cos_table[None, :], axis=1)], axis=1)
    prefix_q = np.concatenate([zero, np.cumsum(rf * sin_table[None, :], axis=1)], axis=1)
    starts = np.arange(bins * decimation) - window // 2
    lo = np.clip(starts, 0, samples)
    hi = np.clip(starts + window, 0, samples)
    magnitude = np.hypot(prefix_i[:, hi] - prefix_i[:, lo], prefix_q[:, hi] - prefix_q[:, lo])
    envelope = magnitude.reshape(rf.shape[0], bins, decimation).sum(axis=2) * (2.0 / (window * decimation))
    return (20.0 * np.log10(np.maximum(envelope, _FLOOR_COUNTS) / full_scale)).astype(np.float32)


def envelope_to_beam_db(
    envelope: npt.NDArray[np.uint8], probe_range_db: float, decimation: int, bins: int
) -> npt.NDArray[np.float32]:
    blocks = envelope[:, : bins * decimation].reshape(envelope.shape[0], bins, decimation)
    mean = blocks.astype(np.float64).sum(axis=2) / decimation
    return (mean * (probe_range_db / 255.0) - probe_range_db).astype(np.float32)


def scan_convert(
    beam_db: npt.NDArray[np.float32],
    line0: npt.NDArray[np.int32],
    bin0: npt.NDArray[np.int32],
    line_frac: npt.NDArray[np.float32],
    bin_frac: npt.NDArray[np.float32],
    valid: npt.NDArray[np.bool_],
    dynamic_range_db: float,
) -> npt.NDArray[np.uint8]:
    fl = line_frac.astype(np.float64)
    fb = bin_frac.astype(np.float64)
    db = beam_db.astype(np.float64)
    top = db[line0, bin0] * (1.0 - fb) + db[line0, bin0 + 1] * fb
    bottom = db[line0 + 1, bin0] * (1.0 - fb) + db[line0 + 1, bin0 + 1] * fb
    level = ((top * (1.0 - fl) + bottom * fl) + dynamic_range_db) * (255.0 / dynamic_range_db)
    pixels = np.clip(np.floor(level + 0.5), 0.0, 255.0).astype(np.uint8)
    pixels[~valid] = 0
    return pixels
