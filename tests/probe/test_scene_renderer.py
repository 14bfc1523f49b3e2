"""The simulated probe's fast renderer keeps the speckle statistics of the reference renderer."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from firmware_bridge.probe.wire import FrameFormat, Geometry
from sim.probe.render import (
    NeedlePose,
    ScanLayout,
    SceneLook,
    SceneRenderer,
    carrier_cycles_per_sample,
    render_baseband,
    to_wire_samples,
)

SMALL = ScanLayout(Geometry.LINEAR, aperture_mm=19.2, radius_mm=0.0, sector_rad=0.0)
TIP = NeedlePose(tip_lateral_mm=0.0, tip_depth_mm=20.0)


def test_speckle_rms_matches_the_reference_and_frames_decorrelate() -> None:
    renderer = SceneRenderer(np.random.default_rng(3))
    frames = [renderer.render(SMALL, 64, 256, 40.0, None, False) for _ in range(20)]
    reference = render_baseband(np.random.default_rng(4), SMALL, 64, 256, 40.0, None, False)
    rms = [float(np.sqrt(np.mean(np.abs(f) ** 2))) for f in frames]
    reference_rms = float(np.sqrt(np.mean(np.abs(reference) ** 2)))
    assert np.mean(rms) == pytest.approx(reference_rms, rel=0.05)
    assert np.mean(rms) == pytest.approx(SceneLook().speckle_rms_counts, rel=0.05)
    correlations = [
        abs(np.vdot(a, b)) / (np.linalg.norm(a) * np.linalg.norm(b)) for a, b in itertools.pairwise(frames)
    ]
    assert max(correlations) < 0.999, "consecutive frames must not be identical"


def test_gas_brightens_the_tissue_around_the_tip_only() -> None:
    renderer = SceneRenderer(np.random.default_rng(5))
    x = np.broadcast_to(((np.arange(64) + 0.5 - 32) * (SMALL.aperture_mm / 64))[:, None], (64, 256))
    z = np.broadcast_to(((np.arange(256) + 0.5) * (40.0 / 256))[None, :], (64, 256))
    # Just beyond the tip, off the shaft (the shaft comes from above-left), where the needle echo is faint.
    distance2 = (x - TIP.tip_lateral_mm) ** 2 + (z - TIP.tip_depth_mm) ** 2
    near = (distance2 > 0.8**2) & (distance2 < 1.5**2) & (z > TIP.tip_depth_mm + 0.5)
    far = z > 35.0
    calm = np.mean([np.abs(renderer.render(SMALL, 64, 256, 40.0, TIP, False)) for _ in range(10)], axis=0)
    boiling = np.mean([np.abs(renderer.render(SMALL, 64, 256, 40.0, TIP, True)) for _ in range(10)], axis=0)
    assert boiling[near].mean() > 2.0 * calm[near].mean()
    assert boiling[far].mean() == pytest.approx(calm[far].mean(), rel=0.1)


@pytest.mark.parametrize("fmt", list(FrameFormat))
@pytest.mark.parametrize("boiling", [False, True])
def test_the_compiled_composer_matches_the_numpy_path(fmt: FrameFormat, boiling: bool) -> None:
    compiled = SceneRenderer(np.random.default_rng(9))
    reference = SceneRenderer(np.random.default_rng(9))
    cycles = carrier_cycles_per_sample(5000, 40.0, 256)
    for _ in range(3):
        wire = compiled.render_wire(SMALL, 64, 256, 40.0, TIP, boiling, fmt, 46.0, cycles)
        expected = to_wire_samples(reference.render(SMALL, 64, 256, 40.0, TIP, boiling), fmt, 46.0, cycles)
        dtype = np.int16 if fmt is FrameFormat.RF_I16 else np.uint8
        diff = np.abs(np.frombuffer(wire, dtype).astype(int) - np.frombuffer(expected, dtype).astype(int))
        assert diff.max() <= 1, "rounding may differ by one count, nothing more"
