"""The reference implementation: the kernels of ``kernels_numba`` in plain numpy, term by term.

Kept for the tests (numba and numpy agree to 1e-6 relative on the same run) and for the benchmark's
speed ratio. Each expression groups its sums in the same order as the compiled loop so that both round
the same way; the red-black SOR updates all cells of one colour at once, which is exactly what the loop
does because a cell's neighbours are all of the other colour.
"""

from __future__ import annotations

import numpy as np

from sim.tissue.mesh import FloatArray

KELVIN = 273.15


def _neighbours(values: FloatArray) -> tuple[FloatArray, FloatArray, FloatArray, FloatArray]:
    """West, east, south and north neighbour of every cell; zero beyond the grid."""
    padded = np.pad(values, 1)
    return padded[1:-1, :-2], padded[1:-1, 2:], padded[:-2, 1:-1], padded[2:, 1:-1]


def conductivity(
    temp_c: FloatArray,
    desiccation: FloatArray,
    sigma37_s_m: float,
    temp_coeff_per_k: float,
    ln_dry_ratio: float,
    sigma: FloatArray,
    resistivity: FloatArray,
) -> None:
    warm = np.maximum(1.0 + temp_coeff_per_k * (temp_c - 37.0), 0.1)
    sigma[:] = sigma37_s_m * warm * np.exp(ln_dry_ratio * desiccation)
    resistivity[:] = 1.0 / sigma


def face_conductances(
    sigma: FloatArray,
    resistivity: FloatArray,
    r_lo: FloatArray,
    r_hi: FloatArray,
    open_r: FloatArray,
    z_lo: FloatArray,
    z_hi: FloatArray,
    open_z: FloatArray,
    tip_contact: FloatArray,
    far_robin: FloatArray,
    active: FloatArray,
    g_r: FloatArray,
    g_z: FloatArray,
    g_tip: FloatArray,
    g_far: FloatArray,
    inv_diag: FloatArray,
) -> None:
    g_r[:, 1:-1] = open_r[:, 1:-1] / (
        r_lo[:, 1:-1] * resistivity[:, :-1] + r_hi[:, 1:-1] * resistivity[:, 1:] + (1.0 - open_r[:, 1:-1])
    )
    g_z[1:-1, :] = open_z[1:-1, :] / (
        z_lo[1:-1, :] * resistivity[:-1, :] + z_hi[1:-1, :] * resistivity[1:, :] + (1.0 - open_z[1:-1, :])
    )
    g_tip[:] = sigma * tip_contact
    g_far[:] = sigma * far_robin
    total = g_r[:, :-1] + g_r[:, 1:] + g_z[:-1, :] + g_z[1:, :] + g_tip + g_far
    inv_diag[:] = active / (total + (1.0 - active))


def sor_sweeps(
    phi: FloatArray,
    g_r: FloatArray,
    g_z: FloatArray,
    g_tip: FloatArray,
    inv_diag: FloatArray,
    omega: float,
    tolerance: float,
    max_sweeps: int,
) -> tuple[int, int]:
    nz, nr = inv_diag.shape
    parity = np.add.outer(np.arange(nz), np.arange(nr)) % 2
    colours = [parity == c for c in range(2)]
    inner = phi[1:-1, 1:-1]
    unsettled = 0
    sweeps = 0
    while sweeps < max_sweeps:
        unsettled = 0
        for mask in colours:
            num = (
                g_r[:, :-1] * phi[1:-1, :-2]
                + g_r[:, 1:] * phi[1:-1, 2:]
                + g_z[:-1, :] * phi[:-2, 1:-1]
                + g_z[1:, :] * phi[2:, 1:-1]
            )
            num = num + g_tip
            step = omega * (num * inv_diag - inner)
            inner[mask] = inner[mask] + step[mask]
            unsettled += int(np.count_nonzero(np.abs(step[mask]) > tolerance))
        sweeps += 1
        if unsettled == 0:
            break
    return sweeps, unsettled


def joule_weights(
    phi: FloatArray,
    g_r: FloatArray,
    g_z: FloatArray,
    g_tip: FloatArray,
    g_far: FloatArray,
    out: FloatArray,
) -> float:
    p = phi[1:-1, 1:-1]
    faces = (
        g_r[:, :-1] * (p - phi[1:-1, :-2]) ** 2
        + g_r[:, 1:] * (p - phi[1:-1, 2:]) ** 2
        + g_z[:-1, :] * (p - phi[:-2, 1:-1]) ** 2
        + g_z[1:, :] * (p - phi[2:, 1:-1]) ** 2
    )
    out[:] = g_tip * (1.0 - p) ** 2 + 0.5 * faces
    return float(np.sum(g_far * p * p))


def thermal_step(
    temp_c: FloatArray,
    enthalpy_j_m3: FloatArray,
    desiccation: FloatArray,
    damage: FloatArray,
    heat_w: FloatArray,
    k_r: FloatArray,
    k_z: FloatArray,
    k_tip: FloatArray,
    k_far: FloatArray,
    perfusion_w_k: FloatArray,
    volume_m3: FloatArray,
    active: FloatArray,
    electrode_temp_c: float,
    body_temp_c: float,
    dt_s: float,
    rho_c_j_m3_k: float,
    latent_j_m3: float,
    ln_frequency_factor: float,
    activation_temp_k: float,
) -> tuple[float, float]:
    live = active != 0.0
    t = temp_c
    west, east, south, north = _neighbours(t)
    conducted = (
        k_r[:, :-1] * (west - t)
        + k_r[:, 1:] * (east - t)
        + k_z[:-1, :] * (south - t)
        + k_z[1:, :] * (north - t)
    )
    tip = k_tip * (electrode_temp_c - t)
    far = k_far * (body_temp_c - t)
    blood = perfusion_w_k * np.exp(-damage) * (t - body_temp_c)
    net = conducted + tip + far - blood + heat_w
    enthalpy_j_m3[live] = (enthalpy_j_m3 + dt_s * net / volume_m3)[live]
    h = enthalpy_j_m3
    boil_h = rho_c_j_m3_k * 100.0
    new_t = np.where(
        h <= boil_h,
        h / rho_c_j_m3_k,
        np.where(h <= boil_h + latent_j_m3, 100.0, 100.0 + (h - boil_h - latent_j_m3) / rho_c_j_m3_k),
    )
    boiled = np.where(h <= boil_h, 0.0, np.where(h <= boil_h + latent_j_m3, (h - boil_h) / latent_j_m3, 1.0))
    temp_c[live] = new_t[live]
    desiccation[live] = np.maximum(desiccation, boiled)[live]
    rate = np.exp(ln_frequency_factor - activation_temp_k / (temp_c + KELVIN))
    damage[live] = (damage + dt_s * rate)[live]
    return -float(np.sum(far[live])), float(np.sum(blood[live]))
