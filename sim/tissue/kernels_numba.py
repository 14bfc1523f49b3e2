"""The per-step kernels, compiled by numba: conductivity, face conductances, SOR sweeps, Joule heat, and
one explicit thermal step.

``kernels_numpy`` holds the same algorithm in plain numpy with the same arithmetic, term by term, as
the reference for tests and the benchmark. Change both together.
They release the GIL (``nogil=True``): in a real-time in-process run the simulated generator steps the
tissue on its own thread (``sim.lockstep.Realtime``), and the control loop must not wait for a step.
Array layout: cells ``[j, i]`` (z, r); r-faces ``[j, i]`` with i = 0..nr (face i lies below cell i);
z-faces ``[j, i]`` with j = 0..nz. Out-of-grid neighbours contribute a zero conductance times a zero value.
"""

from __future__ import annotations

import math

import numpy as np
from numba import njit

from sim.tissue.mesh import FloatArray

KELVIN = 273.15


@njit(cache=True, nogil=True)
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

    Also 1/σ, so that each face costs one division instead of three. Tissue that has not boiled (D = 0,
    nearly all of it) skips the exponential: exp(±0) is exactly 1, so the result is the same bit for bit.
    """
    nz, nr = temp_c.shape
    for j in range(nz):
        for i in range(nr):
            warm = 1.0 + temp_coeff_per_k * (temp_c[j, i] - 37.0)
            warm = max(warm, 0.1)
            dried = desiccation[j, i]
            wet = 1.0 if dried == 0.0 else math.exp(ln_dry_ratio * dried)
            sigma[j, i] = sigma37_s_m * warm * wet
            resistivity[j, i] = 1.0 / sigma[j, i]


@njit(cache=True, nogil=True)
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


@njit(cache=True, nogil=True, boundscheck=False)
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
    """Red-black SOR on ∇·(σ∇φ) = 0 with the tip at 1 V, warm-started from ``phi``.

    ``phi`` carries a ring of zero ghost cells, (nz + 2, nr + 2), so no cell needs a boundary test;
    blocked cells have ``inv_diag`` 0 and stay at 0.
    Stops after the first sweep in which no potential moves by more than ``tolerance`` (or after
    ``max_sweeps``); returns the sweeps done and how many potentials still moved by more than
    ``tolerance`` in the last one (0: converged).

    The sweeps run on a colour-packed copy (``_pack_colours``): each half-sweep is then one unit-stride
    loop that LLVM turns into SIMD code, where the natural layout's stride-2 colour access kept it
    scalar. Every cell's update is the same expression, in the same order, as in ``kernels_numpy``, so
    the two agree bit for bit. The stop test counts the cells still moving instead of tracking the
    largest change: an integer count vectorises, a float maximum does not without fast-math.
    """
    nz, nr = inv_diag.shape
    width = nr + 3 - nr % 2
    packed = np.empty((5, 2, ((nz + 2) * width + 1) // 2))
    _pack_colours(phi, g_r, g_z, g_tip, inv_diag, width, packed)
    half_row = width // 2
    # Interior rows only (flat indices width .. (nz + 1)·width - 1), as red and as black indices.
    red_cells = ((width + 1) // 2, ((nz + 1) * width + 1) // 2)
    black_cells = (width // 2, (nz + 1) * width // 2)
    unsettled = 0
    sweeps = 0
    while sweeps < max_sweeps:
        unsettled = _colour_sweep(packed, 0, red_cells, (-1, 0, -half_row - 1, half_row), omega, tolerance)
        unsettled += _colour_sweep(packed, 1, black_cells, (0, 1, -half_row, half_row + 1), omega, tolerance)
        sweeps += 1
        if unsettled == 0:
            break
    _unpack_colours(packed[0], width, phi)
    return sweeps, unsettled


@njit(cache=True, nogil=True, boundscheck=False)
def _pack_colours(
    phi: FloatArray,
    g_r: FloatArray,
    g_z: FloatArray,
    g_tip: FloatArray,
    inv_diag: FloatArray,
    width: int,
    packed: FloatArray,
) -> None:
    """Split the padded grid by colour: ``packed[k, colour]`` is one flat array per quantity and colour.

    Rows are laid out ``width`` long, ``width`` odd (the ghost ring plus, for an even ``nr``, one more
    ghost column), so that a cell's colour is the parity of its flat index n = row·width + col: red (0)
    is n even, black (1) n odd, each stored at n // 2. Every neighbour of a cell then sits at one fixed
    offset in the other colour's array whatever the row (west, east, south, north: -1, 0, -width//2 - 1,
    width//2 from red; 0, +1, -width//2, width//2 + 1 from black).

    Quantities: 0 the potential, 1 the conductance of the cell's west face, 2 of its south face, 3 the
    tip conductance, 4 the inverse diagonal. A cell's east (north) face is its east (north) neighbour's
    west (south) face, read at the neighbour's offset, so each face is stored once. Ghost cells keep a
    potential and inverse diagonal of 0: their update is 0 and they stay 0. When the padded grid has an
    odd number of cells, black's last slot is left unset: no sweep reaches it.
    """
    nz, nr = inv_diag.shape
    for row in range(nz + 2):
        j = row - 1
        for col in range(width):
            n = row * width + col
            colour, q = n % 2, n // 2
            i = col - 1
            cell = 0 <= j < nz and 0 <= i < nr
            packed[0, colour, q] = phi[row, col] if col < nr + 2 else 0.0
            packed[1, colour, q] = g_r[j, i] if 0 <= j < nz and 0 <= i <= nr else 0.0
            packed[2, colour, q] = g_z[j, i] if 0 <= j <= nz and 0 <= i < nr else 0.0
            packed[3, colour, q] = g_tip[j, i] if cell else 0.0
            packed[4, colour, q] = inv_diag[j, i] if cell else 0.0


@njit(cache=True, nogil=True, boundscheck=False)
def _colour_sweep(
    packed: FloatArray,
    colour: int,
    cells: tuple[int, int],
    offsets: tuple[int, int, int, int],
    omega: float,
    tolerance: float,
) -> int:
    """One colour's half-sweep over its packed ``cells`` (first, end: the interior rows, ghost columns
    included, which stay 0), ``offsets`` the west, east, south and north neighbour in the other colour.
    Returns how many potentials moved by more than ``tolerance``.

    Written over slices so that every index is the loop counter itself: LLVM then sees unit-stride
    accesses without negative-index wraparound and vectorises the loop.
    """
    first, end = cells
    west, east, south, north = offsets
    other = 1 - colour
    centre = packed[0, colour, first:end]
    phi_w = packed[0, other, first + west : end + west]
    phi_e = packed[0, other, first + east : end + east]
    phi_s = packed[0, other, first + south : end + south]
    phi_n = packed[0, other, first + north : end + north]
    g_w = packed[1, colour, first:end]
    g_e = packed[1, other, first + east : end + east]
    g_s = packed[2, colour, first:end]
    g_n = packed[2, other, first + north : end + north]
    g_tip = packed[3, colour, first:end]
    inv_diag = packed[4, colour, first:end]
    unsettled = 0
    for k in range(end - first):
        num = g_w[k] * phi_w[k] + g_e[k] * phi_e[k] + g_s[k] * phi_s[k] + g_n[k] * phi_n[k]
        num = num + g_tip[k]
        step = omega * (num * inv_diag[k] - centre[k])
        centre[k] = centre[k] + step
        unsettled += abs(step) > tolerance
    return unsettled


@njit(cache=True, nogil=True, boundscheck=False)
def _unpack_colours(potentials: FloatArray, width: int, phi: FloatArray) -> None:
    """Copy the packed potentials back into the padded grid (interior cells; the ghosts stay 0)."""
    nz, nr = phi.shape[0] - 2, phi.shape[1] - 2
    for row in range(1, nz + 1):
        for col in range(1, nr + 1):
            n = row * width + col
            phi[row, col] = potentials[n % 2, n // 2]


@njit(cache=True, nogil=True)
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


@njit(cache=True, nogil=True)
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
