"""The axisymmetric (r, z) finite-volume mesh and its geometric conductance factors.

Cells are rings around the axis. Faces carry the geometry once, as a resistance per unit conductivity
(``1/(σ·G)``) from each neighbouring cell centre to the face, so the solver turns any conductivity field
into face conductances with one harmonic sum. Radial half-resistances use the exact cylindrical form
``ln(r_face/r_centre)/(2π·dz)``, which makes steady radial conduction exact on any radial spacing; axial
ones use ``distance/area``.

The electrode is a set of cells: *tip* cells are the metal of the active tip (1 V electrically, one lumped
temperature thermally); *blocked* cells are the tip and the insulated shaft (no tissue). Tissue cells touching
the tip get a contact factor to it; tissue cells on the domain edge get a factor to the far boundary.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from sim.tissue.params import ElectrodeSpec, GridSettings

FloatArray = npt.NDArray[np.float64]
BoolArray = npt.NDArray[np.bool_]


@dataclass(frozen=True)
class AxisymmetricMesh:
    """Cell and face geometry. Arrays are indexed ``[j, i]``: ``j`` along z, ``i`` along r."""

    r_faces_m: FloatArray
    z_faces_m: FloatArray
    tip: BoolArray
    blocked: BoolArray
    centre_m: tuple[float, float]
    """(r, z) of the electrical centre that the far-field condition radiates from."""
    volume_m3: FloatArray
    r_face_res: tuple[FloatArray, FloatArray]
    """Half-resistances (per unit conductivity) of each r-face ``[j, i]`` (i = 0..nr) from the lower and the
    upper cell; zero where the face is not between two tissue cells."""
    z_face_res: tuple[FloatArray, FloatArray]
    open_r: FloatArray
    """1.0 where an r-face joins two tissue cells."""
    open_z: FloatArray
    tip_contact: FloatArray
    """Conductance per unit conductivity from each tissue cell to the tip surfaces it touches."""
    far_dirichlet: FloatArray
    """Conductance per unit conductivity from each edge cell to the far boundary (at body temperature)."""
    far_robin: FloatArray
    """Same for the electric far-field condition ∂φ/∂n = -φ·cosθ/ρ (a point source seen from far away)."""

    @property
    def shape(self) -> tuple[int, int]:
        return (len(self.z_faces_m) - 1, len(self.r_faces_m) - 1)

    @property
    def r_centres_m(self) -> FloatArray:
        return 0.5 * (self.r_faces_m[1:] + self.r_faces_m[:-1])

    @property
    def z_centres_m(self) -> FloatArray:
        return 0.5 * (self.z_faces_m[1:] + self.z_faces_m[:-1])

    @property
    def tissue(self) -> BoolArray:
        return ~self.blocked


def axisymmetric_mesh(
    r_faces_m: FloatArray,
    z_faces_m: FloatArray,
    tip: BoolArray,
    blocked: BoolArray,
    centre_m: tuple[float, float],
    far_sides: frozenset[str] = frozenset({"outer", "bottom", "top"}),
) -> AxisymmetricMesh:
    """Build the geometry factors for any electrode shape given as cell masks (``tip`` ⊆ ``blocked``).

    ``far_sides`` names the domain sides ("outer" r = R, "bottom", "top") that are far boundaries; the
    others are insulating and adiabatic (planes of symmetry, or the ends of an infinitely long electrode).
    """
    r_f = np.asarray(r_faces_m, dtype=np.float64)
    z_f = np.asarray(z_faces_m, dtype=np.float64)
    if r_f[0] != 0.0 or np.any(np.diff(r_f) <= 0.0) or np.any(np.diff(z_f) <= 0.0):
        raise ValueError("r_faces_m must start at the axis (0) and both face lists must increase")
    nz, nr = len(z_f) - 1, len(r_f) - 1
    if tip.shape != (nz, nr) or blocked.shape != (nz, nr) or np.any(tip & ~blocked):
        raise ValueError("tip and blocked must be cell masks of the mesh shape, with tip inside blocked")
    r_c = 0.5 * (r_f[1:] + r_f[:-1])
    z_c = 0.5 * (z_f[1:] + z_f[:-1])
    dz = np.diff(z_f)
    ring_area = math.pi * (r_f[1:] ** 2 - r_f[:-1] ** 2)
    volume = dz[:, None] * ring_area[None, :]
    tissue = ~blocked

    two_pi_dz = 2.0 * math.pi * dz[:, None]
    # Radial half-resistances: from centre i-1 out to face i, and from face i out to centre i.
    r_lo = np.zeros((nz, nr + 1))
    r_hi = np.zeros((nz, nr + 1))
    r_lo[:, 1:] = np.log(r_f[1:] / r_c)[None, :] / two_pi_dz
    r_hi[:, 1:nr] = np.log(r_c[1:] / r_f[1:nr])[None, :] / two_pi_dz
    r_hi[:, 0] = 0.0
    # Axial half-resistances: from centre j-1 up to face j, and from face j up to centre j.
    z_lo = np.zeros((nz + 1, nr))
    z_hi = np.zeros((nz + 1, nr))
    z_lo[1:, :] = (z_f[1:] - z_c)[:, None] / ring_area[None, :]
    z_hi[:-1, :] = (z_c - z_f[:-1])[:, None] / ring_area[None, :]

    open_r = np.zeros((nz, nr + 1))
    open_r[:, 1:nr] = (tissue[:, :-1] & tissue[:, 1:]).astype(np.float64)
    open_z = np.zeros((nz + 1, nr))
    open_z[1:nz, :] = (tissue[:-1, :] & tissue[1:, :]).astype(np.float64)

    tip_contact = np.zeros((nz, nr))
    # A tissue cell meets the tip across a face whose other side is a tip cell.
    inner_r = tissue[:, 1:] & tip[:, :-1]  # tissue at i, tip at i-1: half-resistance r_hi of face i
    tip_contact[:, 1:] += np.where(inner_r, 1.0 / np.where(inner_r, r_hi[:, 1:nr], 1.0), 0.0)
    outer_r = tissue[:, :-1] & tip[:, 1:]  # tissue at i, tip at i+1: half-resistance r_lo of face i+1
    tip_contact[:, :-1] += np.where(outer_r, 1.0 / np.where(outer_r, r_lo[:, 1:nr], 1.0), 0.0)
    below = tissue[1:, :] & tip[:-1, :]  # tissue at j, tip at j-1
    tip_contact[1:, :] += np.where(below, 1.0 / np.where(below, z_hi[1:nz, :], 1.0), 0.0)
    above = tissue[:-1, :] & tip[1:, :]  # tissue at j, tip at j+1
    tip_contact[:-1, :] += np.where(above, 1.0 / np.where(above, z_lo[1:nz, :], 1.0), 0.0)

    far_dirichlet = np.zeros((nz, nr))
    far_robin = np.zeros((nz, nr))
    rc0, zc0 = centre_m
    # Outer cylinder r = R: outward normal +r.
    half = r_lo[:, nr]
    dist = np.hypot(r_f[nr] - rc0, z_c - zc0)
    area = 2.0 * math.pi * r_f[nr] * dz
    cos_theta = (r_f[nr] - rc0) / dist
    if "outer" in far_sides:
        far_dirichlet[:, -1] += tissue[:, -1] / half
        far_robin[:, -1] += tissue[:, -1] / (half + dist / (area * cos_theta))
    # Bottom z = z0 (normal -z) and top z = z1 (normal +z).
    ends = (("bottom", 0, 0, z_hi[0, :], -1.0), ("top", nz - 1, nz, z_lo[nz, :], 1.0))
    for side, j, face, half_res, sign in ends:
        if side not in far_sides:
            continue
        dist_z = np.hypot(r_c - rc0, z_f[face] - zc0)
        cos_z = sign * (z_f[face] - zc0) / dist_z
        far_dirichlet[j, :] += tissue[j, :] / half_res
        far_robin[j, :] += tissue[j, :] / (half_res + dist_z / (ring_area * cos_z))

    return AxisymmetricMesh(
        r_faces_m=r_f,
        z_faces_m=z_f,
        tip=tip.copy(),
        blocked=blocked.copy(),
        centre_m=centre_m,
        volume_m3=volume,
        r_face_res=(r_lo * open_r, r_hi * open_r),
        z_face_res=(z_lo * open_z, z_hi * open_z),
        open_r=open_r,
        open_z=open_z,
        tip_contact=tip_contact,
        far_dirichlet=far_dirichlet,
        far_robin=far_robin,
    )


def graded_faces_m(
    start_m: float, uniform_m: float, total_m: float, spacing_m: float, ratio: float
) -> FloatArray:
    """Face offsets from ``start_m`` outward: uniform ``spacing_m`` up to ``uniform_m``, then each cell
    ``ratio`` times the last until ``total_m`` (the last cell is stretched to land on it)."""
    n_uniform = max(1, math.ceil(uniform_m / spacing_m - 1e-9))
    faces = [start_m + uniform_m * k / n_uniform for k in range(n_uniform + 1)]
    h = uniform_m / n_uniform
    end = start_m + total_m
    while end - faces[-1] > 1e-12:
        h *= ratio
        if faces[-1] + 1.5 * h >= end:
            faces.append(end)
        else:
            faces.append(faces[-1] + h)
    return np.asarray(faces, dtype=np.float64)


def cannula_mesh(electrode: ElectrodeSpec, grid: GridSettings) -> AxisymmetricMesh:
    """The mesh around a straight cannula: the active tip spans z = 0..L at radius a, the insulated shaft
    continues from z = L to the top boundary. Faces fall on r = a, z = 0 and z = L exactly."""
    a = electrode.outer_radius_m
    length = electrode.active_tip_m
    h = grid.spacing_mm / 1000.0
    uniform = grid.uniform_margin_mm / 1000.0
    margin = grid.domain_margin_mm / 1000.0
    n_inside = max(1, math.ceil(a / h - 1e-9))
    r_inner = np.linspace(0.0, a, n_inside + 1)
    r_outer = graded_faces_m(a, uniform, margin, h, grid.stretch_ratio)
    r_faces = np.concatenate([r_inner, r_outer[1:]])
    n_tip = max(1, math.ceil(length / h - 1e-9))
    z_tip = np.linspace(0.0, length, n_tip + 1)
    z_up = graded_faces_m(length, uniform, margin, h, grid.stretch_ratio)
    z_down = -graded_faces_m(0.0, uniform, margin, h, grid.stretch_ratio)[::-1]
    z_faces = np.concatenate([z_down[:-1], z_tip, z_up[1:]])
    r_c = 0.5 * (r_faces[1:] + r_faces[:-1])
    z_c = 0.5 * (z_faces[1:] + z_faces[:-1])
    inside = (r_c < a)[None, :]
    tip = inside & ((z_c > 0.0) & (z_c < length))[:, None]
    blocked = inside & (z_c > 0.0)[:, None]
    return axisymmetric_mesh(r_faces, z_faces, tip, blocked, (0.0, length / 2.0))
