"""Needle-tip detection on simulated frames of the default scene."""

from __future__ import annotations

import math

import numpy as np
import pytest

from control.imaging.bmode import BModePipeline
from control.imaging.geometry import ScanGeometry
from control.imaging.needle import TipDetector
from firmware_bridge.clock import SimClock
from firmware_bridge.probe import FrameFormat, UltrasoundProbe
from sim.probe import NeedlePose, SimProbe, SimProbeBackend
from sim.probe.render import ScanLayout
from tests.probe.scenes import CONVEX, LINEAR, TRANSMIT_KHZ, frame, host_geometry

DEPTH_MM = 60.0


@pytest.fixture(scope="module")
def imaging() -> tuple[BModePipeline, TipDetector]:
    pipeline, detector = BModePipeline(), TipDetector()
    pipeline.warm_up()
    detector.warm_up()
    return pipeline, detector


def _random_tip(rng: np.random.Generator, layout: ScanLayout) -> tuple[float, float]:
    """A tip anywhere in the field, at least 5 mm deep so some shaft is visible above it."""
    depth = rng.uniform(5.0, DEPTH_MM - 2.0)
    if layout is LINEAR:
        return rng.uniform(-0.48, 0.48) * layout.aperture_mm, depth
    angle = rng.uniform(-0.48, 0.48) * layout.sector_rad
    radial = layout.radius_mm + depth
    return radial * math.sin(angle), radial * math.cos(angle) - layout.radius_mm


@pytest.mark.parametrize(("layout", "count"), [(LINEAR, 200), (CONVEX, 60)], ids=["linear", "convex"])
def test_tip_error_is_within_1_mm_anywhere_in_the_field(
    imaging: tuple[BModePipeline, TipDetector], layout: ScanLayout, count: int
) -> None:
    pipeline, detector = imaging
    rng = np.random.default_rng(2024)
    geometry = host_geometry(layout, 128, 2048, DEPTH_MM)
    errors, confidences = [], []
    for _ in range(count):
        x, z = _random_tip(rng, layout)
        pose = NeedlePose(x, z, angle_deg=rng.uniform(15.0, 75.0), from_left=bool(rng.integers(2)))
        samples = frame(rng, layout, 128, 2048, DEPTH_MM, pose)
        tip = detector.detect(pipeline.beam_image(samples, FrameFormat.RF_I16, geometry, TRANSMIT_KHZ))
        errors.append(math.hypot(tip.lateral_mm - x, tip.depth_mm - z))
        confidences.append(tip.confidence)
    assert max(errors) <= 1.0
    assert float(np.median(confidences)) > 0.9  # lower only where little shaft is in the field


def test_a_frame_without_a_needle_has_low_confidence(imaging: tuple[BModePipeline, TipDetector]) -> None:
    pipeline, detector = imaging
    rng = np.random.default_rng(99)
    geometry = host_geometry(LINEAR, 128, 2048, DEPTH_MM)
    for _ in range(20):
        samples = frame(rng, LINEAR, 128, 2048, DEPTH_MM, None)
        assert (
            detector.detect(
                pipeline.beam_image(samples, FrameFormat.RF_I16, geometry, TRANSMIT_KHZ)
            ).confidence
            < 0.1
        )


def test_tip_detection_through_the_driver(imaging: tuple[BModePipeline, TipDetector]) -> None:
    pipeline, detector = imaging
    clock = SimClock()
    sim = SimProbe(clock)
    sim.set_needle(NeedlePose(-6.0, 35.0, angle_deg=50.0, from_left=False))
    probe = UltrasoundProbe.open(clock, backend=SimProbeBackend(sim))
    probe.set_depth_mm(50)
    probe.unfreeze()
    clock.advance(0.01)
    (received,) = probe.poll()
    geometry = ScanGeometry.from_info(
        probe.info, received.lines, received.samples_per_line, received.depth_mm
    )
    tip = detector.detect(pipeline.beam_image(received.samples, received.format, geometry, 5000))
    assert math.hypot(tip.lateral_mm + 6.0, tip.depth_mm - 35.0) <= 1.0
    assert tip.confidence > 0.9
    assert tip.shaft_angle_deg == pytest.approx(50.0, abs=3.0)
