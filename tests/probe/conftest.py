"""Fixtures: a simulated probe on a SimClock, found and driven through pyusb's own ``usb.core.find``."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from firmware_bridge.clock import SimClock
from firmware_bridge.probe import FrameFormat, ProbeOptions, UltrasoundProbe
from sim.probe import NeedlePose, SimProbe, SimProbeBackend, SimProbeConfig

SMALL_RF = SimProbeConfig(
    lines=32, samples_per_line=1024, depth_mm=40, frame_format=FrameFormat.RF_I16, seed=11
)
"""Small frames keep the driver tests fast; 1024 samples over 40 mm still carry a 5 MHz carrier."""
TICK_S = 0.01


@pytest.fixture
def clock() -> SimClock:
    return SimClock()


@pytest.fixture
def sim_probe(clock: SimClock) -> SimProbe:
    probe = SimProbe(clock, SMALL_RF)
    probe.set_needle(NeedlePose(tip_lateral_mm=0.0, tip_depth_mm=20.0))
    return probe


@pytest.fixture
def probe(clock: SimClock, sim_probe: SimProbe) -> Iterator[UltrasoundProbe]:
    driver = UltrasoundProbe.open(
        clock, backend=SimProbeBackend(sim_probe), options=ProbeOptions(frame_timeout_s=0.5)
    )
    yield driver
    driver.close()


def run_for(clock: SimClock, probe: UltrasoundProbe, seconds: float) -> list[int]:
    """Poll every tick for ``seconds`` of simulated time; the frame numbers received."""
    numbers: list[int] = []
    end = clock.now() + seconds
    while clock.now() < end - 1e-9:
        clock.advance(TICK_S)
        numbers.extend(frame.frame_number for frame in probe.poll())
    return numbers
