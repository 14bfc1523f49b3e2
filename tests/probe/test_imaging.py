"""The numba B-mode pipeline against its numpy reference, and against known signals."""

from __future__ import annotations

import math

import numpy as np
import pytest

from control.imaging.bmode import I16_FULL_SCALE, BModePipeline
from control.imaging.geometry import ScanGeometry
from firmware_bridge.probe import FrameFormat, Geometry
from sim.probe.render import NeedlePose, ScanLayout
from tests.probe.scenes import CONVEX, LINEAR, TRANSMIT_KHZ, frame, host_geometry


@pytest.fixture(scope="module")
def compiled() -> BModePipeline:
    pipeline = BModePipeline()
    pipeline.warm_up()
    return pipeline


@pytest.mark.parametrize("layout", [LINEAR, CONVEX], ids=["linear", "convex"])
@pytest.mark.parametrize("fmt", [FrameFormat.RF_I16, FrameFormat.ENVELOPE_U8], ids=["rf", "envelope"])
def test_numba_matches_the_numpy_reference(
    compiled: BModePipeline, layout: ScanLayout, fmt: FrameFormat
) -> None:
    samples = frame(np.random.default_rng(3), layout, 128, 2048, 60.0, NeedlePose(3.0, 30.0), fmt)
    geometry = host_geometry(layout, 128, 2048, 60.0)
    reference = BModePipeline(use_numba=False)
    fast_beam = compiled.beam_image(samples, fmt, geometry, TRANSMIT_KHZ)
    slow_beam = reference.beam_image(samples, fmt, geometry, TRANSMIT_KHZ)
    assert fast_beam.db.shape == (128, 512)
    np.testing.assert_allclose(fast_beam.db, slow_beam.db, atol=1e-3)
    fast, slow = compiled.display(fast_beam), reference.display(fast_beam)
    assert np.array_equal(fast.pixels, slow.pixels)
    assert np.array_equal(fast.valid, slow.valid)


def test_the_envelope_of_a_tone_is_its_amplitude(compiled: BModePipeline) -> None:
    geometry = ScanGeometry(Geometry.LINEAR, 4, 2048, 60.0, aperture_mm=1.2)
    cycles = geometry.carrier_cycles_per_sample(TRANSMIT_KHZ)
    amplitude = 8000.0
    tone = amplitude * np.cos(2 * math.pi * cycles * np.arange(2048) + 0.7)
    beam = compiled.beam_image(
        np.tile(np.rint(tone).astype(np.int16), (4, 1)), FrameFormat.RF_I16, geometry, TRANSMIT_KHZ
    )
    expected_db = 20 * math.log10(amplitude / I16_FULL_SCALE)
    np.testing.assert_allclose(beam.db[:, 4:-4], expected_db, atol=0.6)  # box ripple at 2f0, < 7 %


def test_rf_and_probe_envelope_give_the_same_brightness(compiled: BModePipeline) -> None:
    geometry = host_geometry(LINEAR, 64, 2048, 60.0)
    levels = []
    for fmt in (FrameFormat.RF_I16, FrameFormat.ENVELOPE_U8):
        samples = frame(np.random.default_rng(5), LINEAR, 64, 2048, 60.0, None, fmt)
        levels.append(float(np.median(compiled.beam_image(samples, fmt, geometry, TRANSMIT_KHZ).db)))
    assert levels[0] == pytest.approx(levels[1], abs=1.0)


def test_convex_display_leaves_the_corners_empty(compiled: BModePipeline) -> None:
    geometry = host_geometry(CONVEX, 64, 1024, 60.0)
    samples = frame(np.random.default_rng(1), CONVEX, 64, 1024, 60.0, None)
    display = compiled.display(compiled.beam_image(samples, FrameFormat.RF_I16, geometry, TRANSMIT_KHZ))
    assert not display.valid[0, 0] and not display.valid[-1, 0]
    assert display.valid[display.valid.shape[0] // 2, display.valid.shape[1] // 2]
    assert np.all(display.pixels[~display.valid] == 0)
    assert max(display.pixels.shape) == 512
