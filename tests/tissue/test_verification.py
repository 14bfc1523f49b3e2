"""The discretisation against analytic solutions, the energy balance, grid convergence and the warm-started
electric solver against a fully converged one."""

from __future__ import annotations

import math

import numpy as np
import pytest

from sim.tissue import kernels_numba as kn
from sim.tissue.estimate import estimate_lesion
from sim.tissue.mesh import AxisymmetricMesh, axisymmetric_mesh, graded_faces_m
from sim.tissue.model import RfLesionModel, thermal_conductances
from sim.tissue.params import LIVER, ElectrodeSpec, GridSettings, LesionModelConfig


def coaxial_mesh(inner_m: float, outer_m: float, length_m: float) -> AxisymmetricMesh:
    """An electrode filling r < inner over the whole height; only the outer cylinder is a far boundary,
    so the field is purely radial (a long coaxial shell). Radial spacing deliberately non-uniform."""
    r_faces = np.concatenate(
        [np.linspace(0.0, inner_m, 4), graded_faces_m(inner_m, 1e-3, outer_m - inner_m, 2e-4, 1.2)[1:]]
    )
    z_faces = np.linspace(0.0, length_m, 4)
    r_c = 0.5 * (r_faces[1:] + r_faces[:-1])
    tip = np.broadcast_to(r_c < inner_m, (3, len(r_c))).copy()
    return axisymmetric_mesh(r_faces, z_faces, tip, tip.copy(), (0.0, length_m / 2.0), frozenset({"outer"}))


def converged_conductance(mesh: AxisymmetricMesh, sigma_s_m: float, far: np.ndarray) -> float:
    nz, nr = mesh.shape
    sigma = np.full((nz, nr), sigma_s_m)
    active = mesh.tissue.astype(np.float64)
    g_r, g_z = np.zeros((nz, nr + 1)), np.zeros((nz + 1, nr))
    g_tip, g_far, diag, weights = (np.zeros((nz, nr)) for _ in range(4))
    phi = np.zeros((nz + 2, nr + 2))
    r_lo, r_hi = mesh.r_face_res
    z_lo, z_hi = mesh.z_face_res
    kn.face_conductances(
        sigma, 1.0 / sigma, r_lo, r_hi, mesh.open_r, z_lo, z_hi, mesh.open_z, mesh.tip_contact, far,
        active, g_r, g_z, g_tip, g_far, diag,
    )  # fmt: skip
    omega = 2.0 / (1.0 + math.sin(math.pi / max(nz, nr)))
    _, unsettled = kn.sor_sweeps(phi, g_r, g_z, g_tip, diag, omega, 1e-13, 200_000)
    assert unsettled == 0
    far_s = kn.joule_weights(phi, g_r, g_z, g_tip, g_far, weights)
    return float(weights.sum()) + far_s


def test_steady_conduction_between_coaxial_cylinders_matches_the_log_profile() -> None:
    inner, outer, length = 1e-3, 6e-3, 1e-3
    mesh = coaxial_mesh(inner, outer, length)
    k_r, k_z, k_tip, k_far = thermal_conductances(mesh, 0.5)
    nz, nr = mesh.shape
    rho_c = 4e6
    capacity = rho_c * mesh.volume_m3
    outflow = k_r[:, :-1] + k_r[:, 1:] + k_z[:-1, :] + k_z[1:, :] + k_tip + k_far
    dt_s = 0.9 * float(np.min(capacity[mesh.tissue] / outflow[mesh.tissue]))
    temp = np.full((nz, nr), 37.0)
    enthalpy = rho_c * temp
    zeros = np.zeros((nz, nr))
    active = mesh.tissue.astype(np.float64)
    for _ in range(40):
        before = temp.copy()
        for _ in range(500):
            kn.thermal_step(
                temp,
                enthalpy,
                zeros.copy(),
                zeros.copy(),
                zeros,
                k_r,
                k_z,
                k_tip,
                k_far,
                zeros,
                mesh.volume_m3,
                active,
                80.0,
                37.0,
                dt_s,
                rho_c,
                1e9,
                0.0,
                1e9,
            )
        if np.max(np.abs(temp - before)) < 1e-11:
            break
    r_c = mesh.r_centres_m
    expected = 80.0 + (37.0 - 80.0) * np.log(r_c / inner) / math.log(outer / inner)
    live = r_c > inner
    np.testing.assert_allclose(temp[1, live], expected[live], rtol=1e-8)


def test_resistance_of_a_coaxial_shell_is_exact() -> None:
    inner, outer, length, sigma = 1e-3, 6e-3, 1e-3, 0.4
    mesh = coaxial_mesh(inner, outer, length)
    conductance = converged_conductance(mesh, sigma, mesh.far_dirichlet)
    expected_ohm = math.log(outer / inner) / (2.0 * math.pi * sigma * length)
    assert 1.0 / conductance == pytest.approx(expected_ohm, rel=1e-8)


def test_spherical_electrode_resistance_is_one_over_four_pi_sigma_a_within_5_percent() -> None:
    radius, sigma = 2e-3, 0.4
    r_faces = graded_faces_m(0.0, 4e-3, 40e-3, 1e-4, 1.15)
    half = graded_faces_m(0.0, 4e-3, 40e-3, 1e-4, 1.15)
    z_faces = np.concatenate([-half[::-1], half[1:]])
    r_c = 0.5 * (r_faces[1:] + r_faces[:-1])
    z_c = 0.5 * (z_faces[1:] + z_faces[:-1])
    sphere = np.hypot(r_c[None, :], z_c[:, None]) < radius
    mesh = axisymmetric_mesh(r_faces, z_faces, sphere, sphere.copy(), (0.0, 0.0))
    conductance = converged_conductance(mesh, sigma, mesh.far_robin)
    expected_ohm = 1.0 / (4.0 * math.pi * sigma * radius)
    assert abs(1.0 / conductance / expected_ohm - 1.0) < 0.05


def test_energy_balance_closes_within_2_percent() -> None:
    # Liver: strong perfusion; cooled tip: heat also leaves through the coolant; long enough to boil.
    config = LesionModelConfig(
        electrode=ElectrodeSpec(gauge=18, active_tip_mm=10, cooled=True),
        tissue=LIVER,
        grid=GridSettings(spacing_mm=0.5),
    )
    model = RfLesionModel(config)
    delivered_j = 0.0
    for _ in range(3000):
        model.step(0.01, 25.0)
        delivered_j += 0.01 * model.tissue_power_w
    energy = model.energy()
    assert energy.to_blood_j > 0.0 and energy.to_coolant_j > 0.0 and energy.to_far_boundary_j > 0.0
    assert abs(energy.imbalance) < 0.02
    # Everything the field dissipates lands in the domain or beyond its far boundary, nothing is lost
    # (the last, unfinished thermal step still holds its share).
    settled_j = energy.joule_in_domain_j + energy.far_field_j
    assert settled_j == pytest.approx(delivered_j, rel=0.01)


def test_halving_the_spacing_changes_lesion_width_by_less_than_0_3_mm() -> None:
    widths = []
    for spacing_mm in (0.25, 0.125):
        config = LesionModelConfig(
            electrode=ElectrodeSpec(gauge=18, active_tip_mm=10), grid=GridSettings(spacing_mm=spacing_mm)
        )
        widths.append(estimate_lesion(config, 80.0, 60.0).lesion.width_mm)
    assert widths[0] > 4.0
    assert abs(widths[0] - widths[1]) < 0.3


def test_a_few_warm_started_sweeps_per_step_track_the_converged_field() -> None:
    def run(grid: GridSettings) -> tuple[list[float], float, int]:
        config = LesionModelConfig(electrode=ElectrodeSpec(gauge=18, active_tip_mm=10), grid=grid)
        model = RfLesionModel(config)
        impedances, sweeps = [], 0
        for k in range(4000):
            reading = model.step(0.01, 8.0 if k < 3000 else 20.0)
            sweeps = max(sweeps, model.last_sweeps)
            if k % 100 == 0:
                impedances.append(reading.impedance_ohm)
        return impedances, model.lesion().width_mm, sweeps

    fast, fast_width, _ = run(GridSettings(spacing_mm=0.5))
    exact, exact_width, _ = run(
        GridSettings(spacing_mm=0.5, electric_tolerance=1e-12, sweeps_per_step=10_000)
    )
    assert max(abs(a / b - 1.0) for a, b in zip(fast, exact, strict=True)) < 0.005
    assert abs(fast_width - exact_width) < 0.02
