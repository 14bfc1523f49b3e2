"""The boiling detector: fires within 0.5 s of simulated boiling, never over 1,000 s without it."""

from __future__ import annotations

import numpy as np
import pytest

from control.imaging.bmode import BModePipeline, BModeSettings
from control.imaging.geometry import ScanGeometry
from firmware_bridge.clock import SimClock
from firmware_bridge.probe import FrameFormat, Geometry, UltrasoundProbe
from safety.boiling import BoilingDetector, WatchState
from sim.probe import NeedlePose, SimProbe, SimProbeBackend, SimProbeConfig
from sim.probe.render import ScanLayout
from tests.probe.conftest import TICK_S
from tests.probe.scenes import TRANSMIT_KHZ, frame, host_geometry

SMALL = ScanLayout(Geometry.LINEAR, aperture_mm=19.2, radius_mm=0.0, sector_rad=0.0)
"""A 64-line, 40 mm field: large enough around the tip, small enough to simulate 1,000 s quickly."""
TIP = NeedlePose(tip_lateral_mm=1.5, tip_depth_mm=22.0, angle_deg=35.0)
FRAME_RATE_HZ = 20.0


@pytest.fixture(scope="module")
def pipeline() -> BModePipeline:
    compiled = BModePipeline(BModeSettings(max_display_pixels=256))
    compiled.warm_up()
    return compiled


@pytest.mark.parametrize("seed", range(5))
def test_boiling_is_detected_within_half_a_second_through_the_driver(
    pipeline: BModePipeline, seed: int
) -> None:
    clock = SimClock()
    config = SimProbeConfig(
        element_count=64,
        lines=64,
        samples_per_line=512,
        depth_mm=40,
        frame_format=FrameFormat.ENVELOPE_U8,
        frame_rate_hz=FRAME_RATE_HZ,
        seed=seed,
    )
    sim = SimProbe(clock, config)
    sim.set_needle(TIP)
    probe = UltrasoundProbe.open(clock, backend=SimProbeBackend(sim))
    probe.unfreeze()
    detector = BoilingDetector()
    detector.start(
        channel=2, tip_lateral_mm=TIP.tip_lateral_mm, tip_depth_mm=TIP.tip_depth_mm, now_s=clock.now()
    )
    onset_s = 5.0
    detected_at: float | None = None
    while detected_at is None and clock.now() < onset_s + 2.0:
        clock.advance(TICK_S)
        if clock.now() >= onset_s:
            sim.set_boiling(True)
        for received in probe.poll():
            geometry = ScanGeometry.from_info(
                probe.info, received.lines, received.samples_per_line, received.depth_mm
            )
            display = pipeline.display(
                pipeline.beam_image(received.samples, received.format, geometry, TRANSMIT_KHZ)
            )
            if detector.update(display, clock.now()) == frozenset({2}):
                detected_at = clock.now()
    assert detected_at is not None
    assert onset_s <= detected_at <= onset_s + 0.5
    assert detector.state(2) is WatchState.BOILING


def test_no_false_alarm_over_1000_lesion_seconds(pipeline: BModePipeline) -> None:
    rng = np.random.default_rng(1000)
    geometry = host_geometry(SMALL, 64, 256, 40.0)
    detector = BoilingDetector()
    detector.start(channel=1, tip_lateral_mm=TIP.tip_lateral_mm, tip_depth_mm=TIP.tip_depth_mm, now_s=0.0)
    frames = int(1000 * FRAME_RATE_HZ)
    for index in range(frames):
        samples = frame(rng, SMALL, 64, 256, 40.0, TIP, FrameFormat.ENVELOPE_U8)
        display = pipeline.display(
            pipeline.beam_image(samples, FrameFormat.ENVELOPE_U8, geometry, TRANSMIT_KHZ)
        )
        assert detector.update(display, index / FRAME_RATE_HZ) == frozenset()
    assert detector.state(1) is WatchState.WATCHING


def test_a_gain_change_is_not_boiling(pipeline: BModePipeline) -> None:
    rng = np.random.default_rng(7)
    geometry = host_geometry(SMALL, 64, 256, 40.0)
    detector = BoilingDetector()
    detector.start(channel=1, tip_lateral_mm=TIP.tip_lateral_mm, tip_depth_mm=TIP.tip_depth_mm, now_s=0.0)
    for index in range(200):
        gain_db = 40.0 if index < 100 else 48.0
        samples = frame(rng, SMALL, 64, 256, 40.0, TIP, FrameFormat.ENVELOPE_U8, gain_db=gain_db)
        display = pipeline.display(
            pipeline.beam_image(samples, FrameFormat.ENVELOPE_U8, geometry, TRANSMIT_KHZ)
        )
        assert detector.update(display, index / FRAME_RATE_HZ) == frozenset()


def test_boiling_latches_until_the_lesion_ends_and_channels_are_separate(pipeline: BModePipeline) -> None:
    rng = np.random.default_rng(8)
    geometry = host_geometry(SMALL, 64, 256, 40.0)
    detector = BoilingDetector()
    detector.start(channel=1, tip_lateral_mm=TIP.tip_lateral_mm, tip_depth_mm=TIP.tip_depth_mm, now_s=0.0)
    detector.start(channel=3, tip_lateral_mm=-6.0, tip_depth_mm=35.0, now_s=0.0)
    for index in range(120):
        boiling = 60 <= index < 70
        samples = frame(rng, SMALL, 64, 256, 40.0, TIP, FrameFormat.ENVELOPE_U8, boiling=boiling)
        display = pipeline.display(
            pipeline.beam_image(samples, FrameFormat.ENVELOPE_U8, geometry, TRANSMIT_KHZ)
        )
        detector.update(display, index / FRAME_RATE_HZ)
    assert detector.boiling_channels == frozenset({1})
    detector.stop(1)
    assert detector.boiling_channels == frozenset()


def test_a_tip_outside_the_field_cannot_be_watched(pipeline: BModePipeline) -> None:
    geometry = host_geometry(SMALL, 64, 256, 40.0)
    samples = frame(np.random.default_rng(9), SMALL, 64, 256, 40.0, TIP, FrameFormat.ENVELOPE_U8)
    display = pipeline.display(pipeline.beam_image(samples, FrameFormat.ENVELOPE_U8, geometry, TRANSMIT_KHZ))
    detector = BoilingDetector()
    detector.start(channel=1, tip_lateral_mm=40.0, tip_depth_mm=20.0, now_s=0.0)
    detector.update(display, 0.0)
    assert detector.unwatchable_channels == frozenset({1})
    assert detector.state(1) is WatchState.UNWATCHABLE
