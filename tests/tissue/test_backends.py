"""The numba kernels and the plain numpy reference run the same algorithm: same run, same numbers."""

from __future__ import annotations

import numpy as np

from sim.tissue.model import RfLesionModel
from sim.tissue.params import GridSettings


def run(backend: str) -> RfLesionModel:
    grid = GridSettings(spacing_mm=0.5, uniform_margin_mm=5.0, domain_margin_mm=15.0, backend=backend)
    model = RfLesionModel.for_electrode(18, 10.0, grid=grid)
    for k in range(2500):
        # Hard enough to coagulate and to start boiling at the tip, so every branch of the kernels runs.
        model.step(0.01, 12.0 if k < 1500 else 30.0)
    return model


def test_numba_and_numpy_agree_to_1e_6_relative() -> None:
    fast, reference = run("numba"), run("numpy")
    assert reference.boiling and fast.lesion().width_mm > 3.0
    snap_fast, snap_ref = fast.snapshot(), reference.snapshot()
    np.testing.assert_allclose(snap_fast.temp_c, snap_ref.temp_c, rtol=1e-6)
    np.testing.assert_allclose(snap_fast.damage, snap_ref.damage, rtol=1e-6, atol=1e-300)
    np.testing.assert_allclose(fast.impedance_ohm, reference.impedance_ohm, rtol=1e-6)
    np.testing.assert_allclose(fast.thermocouple_temp_c, reference.thermocouple_temp_c, rtol=1e-6)
    np.testing.assert_allclose(fast.lesion().width_mm, reference.lesion().width_mm, rtol=1e-6)
