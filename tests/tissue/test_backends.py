"""The numba kernels and the plain numpy reference run the same algorithm: same run, same numbers."""

from __future__ import annotations

import math
from typing import Literal

import numpy as np
import pytest

from sim.tissue import kernels_numba, kernels_numpy
from sim.tissue.model import RfLesionModel
from sim.tissue.params import GridSettings


def run(backend: Literal["numba", "numpy"]) -> RfLesionModel:
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


@pytest.mark.parametrize("shape", [(7, 9), (7, 10), (8, 9), (8, 10)])
def test_packed_sor_sweeps_match_the_reference_bit_for_bit_on_every_grid_parity(
    shape: tuple[int, int],
) -> None:
    # The compiled SOR sweeps a colour-packed copy whose row length depends on the parity of nr, and
    # whose last slot on that of the padded grid's size: each parity must reproduce the reference.
    nz, nr = shape
    rng = np.random.default_rng(nz * 100 + nr)
    g_r, g_z = rng.uniform(0.5, 2.0, (nz, nr + 1)), rng.uniform(0.5, 2.0, (nz + 1, nr))
    g_tip = np.where(rng.random((nz, nr)) < 0.2, rng.uniform(0.5, 2.0, (nz, nr)), 0.0)
    g_far = rng.uniform(0.0, 0.5, (nz, nr))
    active = (rng.random((nz, nr)) < 0.9).astype(np.float64)  # some blocked cells, which stay at 0
    total = g_r[:, :-1] + g_r[:, 1:] + g_z[:-1, :] + g_z[1:, :] + g_tip + g_far
    inv_diag = active / (total + (1.0 - active))
    omega = 2.0 / (1.0 + math.sin(math.pi / max(nz, nr)))
    fast, reference = np.zeros((nz + 2, nr + 2)), np.zeros((nz + 2, nr + 2))
    for tolerance, max_sweeps in ((0.0, 3), (1e-9, 500)):
        done = kernels_numba.sor_sweeps(fast, g_r, g_z, g_tip, inv_diag, omega, tolerance, max_sweeps)
        expected = kernels_numpy.sor_sweeps(reference, g_r, g_z, g_tip, inv_diag, omega, tolerance, max_sweeps)
        assert done == expected
        np.testing.assert_array_equal(fast, reference)
    assert done[1] == 0 and done[0] < 500  # converged on the second call
    assert not fast[1:-1, 1:-1][active == 0.0].any()
    assert not fast[0, :].any() and not fast[-1, :].any() and not fast[:, 0].any() and not fast[:, -1].any()
