"""The per-step kernels, compiled by numba: conductivity, face conductances, SOR sweeps, Joule heat, and
one explicit thermal step.

``kernels_numpy`` holds the same algorithm in plain numpy with the same arithmetic, term by term, as
the reference for tests and the benchmark. Change both together.
Array layout: cells ``[j, i]`` (z, r); r-faces ``[j, i]`` with i = 0..nr (face i lies below cell i);
z-faces ``[j, i]`` with j = 0..nz. Out-of-grid neighbours contribute a zero conductance times a zero value.
"""

from __future__ import annotations

import math

import numpy as np
from numba import njit

from sim.tissue.mesh import FloatArray

KELVIN = 273.15


@njit(cache=True)
def conductivity(
    temp_c: FloatArray,
    desiccation: FloatArray,
    sigma37_s_m: float,
    temp_coeff_per_k: float,
    ln_dry_ratio: float,
    sigma: FloatArray,
    resistivity: FloatArray,
) -> None:
    """σ = σ37·max(0.1, 1 + α(T-37))·ratio^D: +α per °C while wet, falling two decades as water boils off.

    Also 1/σ, so that each face costs one division instead of three."""
    nz, nr = temp_c.shape
    for j in range(nz):
        for i in range(nr):
            warm = 1.0 + temp_coeff_per_k * (temp_c[j, i] - 37.0)
            warm = max(warm, 0.1)
            sigma[j, i] = sigma37_s_m * warm * math.exp(ln_dry_ratio * desiccation[j, i])
            resistivity[j, i] = 1.0 / sigma[j, i]


@njit(cache=True)
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
    """Face conductances (S) from cell conductivities: the two half-resistances in series. ``inv_diag``
    is 1 / (their sum) per tissue cell and 0 in blocked cells, so the SOR multiplies instead of dividing
    and leaves blocked cells at 0 without a test."""
    nz, nr = sigma.shape
    for j in range(nz):
        for i in range(1, nr):
            g_r[j, i] = open_r[j, i] / (
                r_lo[j, i] * resistivity[j, i - 1] + r_hi[j, i] * resistivity[j, i] + (1.0 - open_r[j, i])
            )
    for j in range(1, nz):
        for i in range(nr):
            g_z[j, i] = open_z[j, i] / (
                z_lo[j, i] * resistivity[j - 1, i] + z_hi[j, i] * resistivity[j, i] + (1.0 - open_z[j, i])
            )
    for j in range(nz):
        for i in range(nr):
            g_tip[j, i] = sigma[j, i] * tip_contact[j, i]
            g_far[j, i] = sigma[j, i] * far_robin[j, i]
            total = g_r[j, i] + g_r[j, i + 1] + g_z[j, i] + g_z[j + 1, i] + g_tip[j, i] + g_far[j, i]
            inv_diag[j, i] = active[j, i] / (total + (1.0 - active[j, i]))


@njit(cache=True)
def sor_sweeps(
    phi: FloatArray,
    g_r: FloatArray,
    g_z: FloatArray,
    g_tip: FloatArray,
    inv_diag: FloatArray,
    omega: float,
    tolerance: float,
    max_sweeps: int,
) -> tuple[int, float]:
    """Red-black SOR on ∇·(σ∇φ) = 0 with the tip at 1 V, warm-started from ``phi``.

    ``phi`` carries a ring of zero ghost cells, (nz + 2, nr + 2), so no cell needs a boundary test;
    blocked cells have ``inv_diag`` 0 and stay at 0.
    Stops after the first sweep in which no potential moves by more than ``tolerance`` (or after
    ``max_sweeps``); returns the sweeps done and the largest change in the last one.
    """
    nz, nr = inv_diag.shape
    change = 0.0
    sweeps = 0
    while sweeps < max_sweeps:
        change = 0.0
        for colour in range(2):
            for j in range(nz):
                for i in range((j + colour) % 2, nr, 2):
                    num = (
                        g_r[j, i] * phi[j + 1, i]
                        + g_r[j, i + 1] * phi[j + 1, i + 2]
                        + g_z[j, i] * phi[j, i + 1]
                        + g_z[j + 1, i] * phi[j + 2, i + 1]
                    )
                    num = num + g_tip[j, i]
                    step = omega * (num * inv_diag[j, i] - phi[j + 1, i + 1])
                    phi[j + 1, i + 1] = phi[j + 1, i + 1] + step
                    change = max(change, abs(step))
        sweeps += 1
        if change <= tolerance:
            break
    return sweeps, change


@njit(cache=True)
def joule_weights(
    phi: FloatArray,
    g_r: FloatArray,
    g_z: FloatArray,
    g_tip: FloatArray,
    g_far: FloatArray,
    out: FloatArray,
) -> float:
    """Heat per cell at 1 V (W/V²) from the padded ``phi``: half of each face's G·Δφ² to either side,
    all of a tip contact's.

    Returns the part dissipated beyond the far boundary. The sum of both is the discrete conductance seen
    from the tip (Dirichlet energy: second-order accurate in the error of ``phi``).
    """
    nz, nr = out.shape
    far = 0.0
    for j in range(nz):
        for i in range(nr):
            p = phi[j + 1, i + 1]
            west = phi[j + 1, i]
            east = phi[j + 1, i + 2]
            south = phi[j, i + 1]
            north = phi[j + 2, i + 1]
            faces = (
                g_r[j, i] * (p - west) ** 2
                + g_r[j, i + 1] * (p - east) ** 2
                + g_z[j, i] * (p - south) ** 2
                + g_z[j + 1, i] * (p - north) ** 2
            )
            out[j, i] = g_tip[j, i] * (1.0 - p) ** 2 + 0.5 * faces
            far += g_far[j, i] * p * p
    return far


@njit(cache=True)
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
    """One explicit (forward Euler) step of the Pennes equation on enthalpy, then Arrhenius damage.

    Enthalpy H = ρc·T up to 100 °C; the next ``latent_j_m3`` boils the water off at 100 °C (the boiled
    fraction is the irreversible desiccation D); beyond that the dry tissue heats again. Perfusion falls
    as exp(-Ω): coagulated vessels carry no blood. Returns the heat flows (W) during the step to the far
    boundary and to the blood.
    """
    nz, nr = temp_c.shape
    to_far = 0.0
    to_blood = 0.0
    for j in range(nz):
        for i in range(nr):
            if active[j, i] == 0.0:
                continue
            t = temp_c[j, i]
            west = temp_c[j, i - 1] if i > 0 else 0.0
            east = temp_c[j, i + 1] if i < nr - 1 else 0.0
            south = temp_c[j - 1, i] if j > 0 else 0.0
            north = temp_c[j + 1, i] if j < nz - 1 else 0.0
            conducted = (
                k_r[j, i] * (west - t)
                + k_r[j, i + 1] * (east - t)
                + k_z[j, i] * (south - t)
                + k_z[j + 1, i] * (north - t)
            )
            tip = k_tip[j, i] * (electrode_temp_c - t)
            far = k_far[j, i] * (body_temp_c - t)
            blood = perfusion_w_k[j, i] * math.exp(-damage[j, i]) * (t - body_temp_c)
            net = conducted + tip + far - blood + heat_w[j, i]
            enthalpy_j_m3[j, i] = enthalpy_j_m3[j, i] + dt_s * net / volume_m3[j, i]
            to_far -= far
            to_blood += blood
    boil_h = rho_c_j_m3_k * 100.0
    for j in range(nz):
        for i in range(nr):
            if active[j, i] == 0.0:
                continue
            h = enthalpy_j_m3[j, i]
            if h <= boil_h:
                t = h / rho_c_j_m3_k
                boiled = 0.0
            elif h <= boil_h + latent_j_m3:
                t = 100.0
                boiled = (h - boil_h) / latent_j_m3
            else:
                t = 100.0 + (h - boil_h - latent_j_m3) / rho_c_j_m3_k
                boiled = 1.0
            temp_c[j, i] = t
            desiccation[j, i] = max(desiccation[j, i], boiled)
            damage[j, i] = damage[j, i] + dt_s * math.exp(
                ln_frequency_factor - activation_temp_k / (t + KELVIN)
            )
    return to_far, to_blood


def warm_up() -> None:
    """Compile (or load from the on-disk cache) every kernel on a tiny grid, so the first real step of a
    procedure does not pay for compilation inside a control period."""
    cells, r_faces, z_faces = np.ones((3, 4)), np.ones((3, 5)), np.ones((4, 4))
    sigma, resistivity, g_tip, g_far, diag, out = (np.zeros((3, 4)) for _ in range(6))
    g_r, g_z, phi = np.zeros((3, 5)), np.zeros((4, 4)), np.zeros((5, 6))
    conductivity(cells * 37.0, cells * 0.0, 0.4, 0.015, math.log(0.01), sigma, resistivity)
    face_conductances(
        sigma, resistivity, r_faces, r_faces, r_faces, z_faces, z_faces, z_faces,
        cells, cells, cells, g_r, g_z, g_tip, g_far, diag,
    )  # fmt: skip
    sor_sweeps(phi, g_r, g_z, g_tip, diag, 1.5, 1e-6, 2)
    joule_weights(phi, g_r, g_z, g_tip, g_far, out)
    thermal_step(
        cells * 37.0, cells * 1.5e8, cells * 0.0, cells * 0.0, cells * 0.0, r_faces, z_faces, cells, cells,
        cells, cells, cells, 37.0, 37.0, 1e-3, 4e6, 1.8e9, 90.0, 3e4,
    )  # fmt: skip
