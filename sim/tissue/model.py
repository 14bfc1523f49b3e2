"""The RF lesion model: an axisymmetric finite-volume electro-thermal solver behind ``TissueModel``.

Per thermal step (ARCHITECTURE.md section 10; equations and sources in ``docs/tissue.md``):

1. Joule heat: the tissue's share of the generator power, spread over the cells in proportion to the
   dissipation of the present potential field (so the heat deposited equals the power delivered, exactly).
2. Pennes bioheat, explicit on enthalpy: conduction, perfusion (off once coagulated), latent heat of
   boiling; the electrode tip is one lumped metal temperature updated implicitly (it may be cooled).
3. Arrhenius damage Ω.
4. The electric field for the new conductivities: red-black SOR warm-started from the last field; the
   field moves little per step, so a few sweeps restore the tolerance.

The generator calls ``step`` at 100 Hz; the model gathers those calls into thermal steps of
``thermal_step_s`` (90 % of the explicit stability bound, at most ``max_thermal_step_s``), carrying the
remainder over, so any ``dt_s`` works and the stability bound is never crossed. The thermocouple lag is
applied on every call.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from firmware_bridge.errors import CartError
from sim.tissue.base import TissueReading
from sim.tissue.kernels import KernelSet, kernel_set
from sim.tissue.mesh import AxisymmetricMesh, BoolArray, FloatArray, cannula_mesh
from sim.tissue.params import (
    GAS_CONSTANT_J_PER_MOL_K,
    TISSUES,
    ElectrodeSpec,
    GridSettings,
    LesionModelConfig,
)

STEEL_RHO_C_J_M3_K = 7900.0 * 477.0
"""AISI 304 stainless steel, ρ·c (Incropera & DeWitt, Fundamentals of Heat and Mass Transfer, table A.1)."""
WATER_CONDUCTIVITY_W_M_K = 0.6
WATER_RHO_C_J_M3_K = 1000.0 * 4180.0
LAMINAR_NUSSELT = 3.66
"""Fully developed laminar flow in a tube at constant wall temperature (Incropera & DeWitt, ch. 8)."""
COLD_TOLERANCE = 1e-10
"""Tolerance of the one full solve at construction (uniform conductivity)."""


class UnstableStepError(CartError):
    """A thermal step above the explicit stability bound was requested: it would produce nonsense."""


@dataclass(frozen=True)
class LesionSize:
    """Lesion dimensions along (length) and across (width) the cannula, needle track included."""

    width_mm: float
    """Diameter of the coagulated zone (Arrhenius Ω ≥ 1)."""
    length_mm: float
    isotherm_width_mm: float
    """Diameter of the zone at or above ``isotherm_c`` at this moment."""
    isotherm_length_mm: float
    isotherm_c: float


@dataclass(frozen=True)
class EnergyAccount:
    """Where the delivered energy went since the last reset (J)."""

    joule_in_domain_j: float
    far_field_j: float
    """Dissipated in tissue beyond the model's far boundary (part of the field resistance)."""
    stored_j: float
    """Rise in enthalpy of the tissue and the electrode, latent heat included."""
    to_far_boundary_j: float
    to_blood_j: float
    to_coolant_j: float

    @property
    def imbalance(self) -> float:
        """Joule energy in minus everything accounted for, relative to the Joule energy in."""
        out = self.stored_j + self.to_far_boundary_j + self.to_blood_j + self.to_coolant_j
        return (self.joule_in_domain_j - out) / self.joule_in_domain_j


@dataclass(frozen=True)
class FieldSnapshot:
    """The fields at one moment, for plots and lesion contours."""

    r_centres_mm: FloatArray
    z_centres_mm: FloatArray
    temp_c: FloatArray
    damage: FloatArray
    tissue: FloatArray
    electrode_radius_mm: float
    active_tip_mm: float


def coolant_conductance_w_k(electrode: ElectrodeSpec, flow_ml_min: float) -> float:
    """Heat the coolant carries away per kelvin of tip over coolant temperature.

    Effectiveness-NTU for a wall at one temperature: ṁc·(1 - exp(-hA/ṁc)), with laminar hA over the supply
    and return paths (2 × tip length); hA does not depend on the bore because Nu·k/D·πD·2L = 2πL·Nu·k.
    """
    if not electrode.cooled or flow_ml_min <= 0.0:
        return 0.0
    m_c = flow_ml_min * 1e-6 / 60.0 * WATER_RHO_C_J_M3_K
    h_a = LAMINAR_NUSSELT * WATER_CONDUCTIVITY_W_M_K * 2.0 * math.pi * electrode.active_tip_m
    return m_c * (1.0 - math.exp(-h_a / m_c))


def thermal_conductances(
    mesh: AxisymmetricMesh, conductivity_w_m_k: float
) -> tuple[FloatArray, FloatArray, FloatArray, FloatArray]:
    """Thermal conductances (W/K) of r-faces, z-faces, tip contacts and far-boundary contacts for a uniform
    thermal conductivity (constant: its +0.1-0.2 %/°C rise is left out, see docs/tissue.md)."""
    k = conductivity_w_m_k
    r_lo, r_hi = mesh.r_face_res
    z_lo, z_hi = mesh.z_face_res
    k_r = k * mesh.open_r / (r_lo + r_hi + (1.0 - mesh.open_r))
    k_z = k * mesh.open_z / (z_lo + z_hi + (1.0 - mesh.open_z))
    return k_r, k_z, k * mesh.tip_contact, k * mesh.far_dirichlet


class RfLesionModel:
    """One electrode in tissue: the physical ``TissueModel`` the simulated generator drives by default."""

    def __init__(self, config: LesionModelConfig, body_temp_c: float = 37.0) -> None:
        self.config = config
        self.mesh: AxisymmetricMesh = cannula_mesh(config.electrode, config.grid)
        self._kernels: KernelSet = kernel_set(config.grid.backend)
        self._build_static()
        self.reset(body_temp_c)

    @classmethod
    def for_electrode(
        cls,
        gauge: int,
        tip_mm: float,
        cooled: bool = False,
        tissue: str = "muscle",
        *,
        perfused: bool = True,
        grid: GridSettings | None = None,
        body_temp_c: float = 37.0,
    ) -> RfLesionModel:
        """The factory the generator simulator uses: electrode by gauge and active tip, tissue preset."""
        if tissue not in TISSUES:
            raise ValueError(f"tissue must be one of {sorted(TISSUES)}, not {tissue!r}")
        config = LesionModelConfig(
            electrode=ElectrodeSpec(gauge=gauge, active_tip_mm=tip_mm, cooled=cooled),
            tissue=TISSUES[tissue],
            grid=grid or GridSettings(),
            perfused=perfused,
        )
        return cls(config, body_temp_c)

    # -- construction -------------------------------------------------------------------------------

    def _face_conductances(self) -> None:
        """The electric problem's face conductances (and stencil diagonal) from the present conductivity."""
        mesh = self.mesh
        r_lo, r_hi = mesh.r_face_res
        z_lo, z_hi = mesh.z_face_res
        self._kernels.face_conductances(
            self._sigma,
            self._resistivity,
            r_lo,
            r_hi,
            mesh.open_r,
            z_lo,
            z_hi,
            mesh.open_z,
            mesh.tip_contact,
            mesh.far_robin,
            self._active,
            self._g_r,
            self._g_z,
            self._g_tip,
            self._g_far,
            self._inv_diag,
        )


    def _build_static(self) -> None:
        mesh, tissue, grid = self.mesh, self.config.tissue, self.config.grid
        self._active = mesh.tissue.astype(np.float64)
        self._k_r, self._k_z, self._k_tip, self._k_far = thermal_conductances(
            mesh, tissue.thermal_conductivity_w_m_k
        )
        perfusion = tissue.perfusion_per_s if self.config.perfused else 0.0
        blood = perfusion * tissue.blood_density_kg_m3 * tissue.blood_specific_heat_j_kg_k
        self._perfusion_w_k = blood * mesh.volume_m3 * self._active
        self._rho_c = tissue.volumetric_heat_capacity_j_m3_k
        self._latent = tissue.latent_heat_j_m3
        self._ln_a = math.log(tissue.arrhenius_frequency_factor_per_s)
        self._activation_k = tissue.arrhenius_activation_energy_j_mol / GAS_CONSTANT_J_PER_MOL_K
        self._ln_dry = math.log(tissue.desiccated_conductivity_ratio)
        electrode = self.config.electrode
        a, length = electrode.outer_radius_m, electrode.active_tip_m
        self._electrode_heat_cap_j_k = STEEL_RHO_C_J_M3_K * math.pi * a * a * length
        self._contact = np.flatnonzero(mesh.tip_contact.ravel() > 0.0)
        self._k_tip_contact = self._k_tip.ravel()[self._contact]
        self._k_tip_total = float(self._k_tip_contact.sum())
        self._coolant_w_k = coolant_conductance_w_k(electrode, electrode.coolant_flow_ml_min)

        self.stability_bound_s = self._stability_bound()
        if grid.thermal_step_s is None:
            self.thermal_step_s = min(0.9 * self.stability_bound_s, grid.max_thermal_step_s)
        elif grid.thermal_step_s > self.stability_bound_s:
            raise UnstableStepError(
                f"grid.thermal_step_s = {grid.thermal_step_s:g} s exceeds the explicit stability bound "
                f"{self.stability_bound_s:.4g} s for spacing_mm = {grid.spacing_mm:g}; leave it unset to "
                "choose the step automatically"
            )
        else:
            self.thermal_step_s = grid.thermal_step_s

        nz, nr = mesh.shape
        self._sigma = np.ones((nz, nr))
        self._resistivity = np.ones((nz, nr))
        self._g_r = np.zeros((nz, nr + 1))
        self._g_z = np.zeros((nz + 1, nr))
        self._g_tip = np.zeros((nz, nr))
        self._g_far = np.zeros((nz, nr))
        self._inv_diag = np.zeros((nz, nr))
        self._weights = np.zeros((nz, nr))
        self._heat_w = np.zeros((nz, nr))
        self._omega = 2.0 / (1.0 + math.sin(math.pi / max(nz, nr)))
        # Uniform conductivity: the unit-voltage field depends on geometry alone, so solve it once here.
        self._phi_rest = np.zeros((nz + 2, nr + 2))  # a ring of zero ghost cells around the grid
        self._face_conductances()
        sweeps, unsettled = self._kernels.sor_sweeps(
            self._phi_rest,
            self._g_r,
            self._g_z,
            self._g_tip,
            self._inv_diag,
            self._omega,
            COLD_TOLERANCE,
            200_000,
        )
        if unsettled:
            raise CartError(
                f"electric field did not converge in {sweeps} sweeps ({unsettled} potentials still moving "
                f"by more than {COLD_TOLERANCE:g})"
            )
        self.last_sweeps = sweeps

    def _stability_bound(self) -> float:
        """Largest explicit step keeping each tissue cell's update a convex combination (max principle)."""
        outflow = (
            self._k_r[:, :-1]
            + self._k_r[:, 1:]
            + self._k_z[:-1, :]
            + self._k_z[1:, :]
            + self._k_tip
            + self._k_far
            + self._perfusion_w_k
        )
        capacity = self._rho_c * self.mesh.volume_m3
        live = self.mesh.tissue & (outflow > 0.0)
        return float(np.min(capacity[live] / outflow[live]))

    # -- TissueModel ---------------------------------------------------------------------------------

    def reset(self, body_temp_c: float = 37.0) -> None:
        if not (math.isfinite(body_temp_c) and 0.0 <= body_temp_c <= 45.0):
            raise ValueError(f"body_temp_c must be between 0 and 45 °C, not {body_temp_c}")
        nz, nr = self.mesh.shape
        self.body_temp_c = body_temp_c
        self._temp_c = np.full((nz, nr), body_temp_c)
        self._enthalpy = self._rho_c * self._temp_c
        self._desiccation = np.zeros((nz, nr))
        self._damage = np.zeros((nz, nr))
        self._electrode_c = body_temp_c
        self._thermocouple_c = body_temp_c
        self._phi = self._phi_rest.copy()
        self._pending_s = 0.0
        self._pending_j = 0.0
        self.elapsed_s = 0.0
        self.delivered_power_w = 0.0
        self.tissue_power_w = 0.0
        self._joule_j = 0.0
        self._far_field_j = 0.0
        self._to_far_j = 0.0
        self._to_blood_j = 0.0
        self._to_coolant_j = 0.0
        self._update_field()

    @property
    def impedance_ohm(self) -> float:
        return self.tissue_resistance_ohm + self.config.series_resistance_ohm

    @property
    def tissue_resistance_ohm(self) -> float:
        """Resistance of the field around the tip: 1/G, G the dissipation of the unit-voltage field."""
        return 1.0 / self._conductance_s

    def step(self, dt_s: float, power_w: float) -> TissueReading:
        """Deliver ``power_w`` at the generator's terminals (constant power) for ``dt_s``."""
        _check_finite("dt_s", dt_s, positive=True)
        _check_finite("power_w", power_w, positive=False)
        return self._advance(dt_s, power_w, constant_voltage=False)

    def step_voltage(self, dt_s: float, voltage_v: float) -> TissueReading:
        """Apply ``voltage_v`` (RMS) at the terminals for ``dt_s``; the power follows the impedance."""
        _check_finite("dt_s", dt_s, positive=True)
        _check_finite("voltage_v", voltage_v, positive=False)
        return self._advance(dt_s, voltage_v, constant_voltage=True)

    def set_cooling(self, flow_ml_min: float) -> None:
        """Coolant flow through a cooled tip (the pump's setting); zero stops the cooling."""
        _check_finite("flow_ml_min", flow_ml_min, positive=False)
        self._coolant_w_k = coolant_conductance_w_k(self.config.electrode, flow_ml_min)

    # -- outputs -------------------------------------------------------------------------------------

    @property
    def electrode_temp_c(self) -> float:
        """The tip metal's temperature (what the thermocouple settles to)."""
        return self._electrode_c

    @property
    def thermocouple_temp_c(self) -> float:
        return self._thermocouple_c

    @property
    def max_tissue_temp_c(self) -> float:
        return float(self._temp_c[self.mesh.tissue].max())

    @property
    def boiling(self) -> bool:
        """Tissue touching the tip is at 100 °C (boiling or dried out)."""
        return self._boiling

    def lesion(self, isotherm_c: float = 50.0) -> LesionSize:
        mesh = self.mesh
        log_damage = np.log(np.maximum(self._damage, 1e-300))
        width, length = _extent(mesh, log_damage, 0.0)
        iso_width, iso_length = _extent(mesh, self._temp_c, isotherm_c)
        return LesionSize(width * 1e3, length * 1e3, iso_width * 1e3, iso_length * 1e3, isotherm_c)

    def energy(self) -> EnergyAccount:
        stored = float(
            np.sum((self._enthalpy - self._rho_c * self.body_temp_c) * self.mesh.volume_m3 * self._active)
        )
        stored += self._electrode_heat_cap_j_k * (self._electrode_c - self.body_temp_c)
        return EnergyAccount(
            self._joule_j, self._far_field_j, stored, self._to_far_j, self._to_blood_j, self._to_coolant_j
        )

    def snapshot(self) -> FieldSnapshot:
        electrode = self.config.electrode
        return FieldSnapshot(
            self.mesh.r_centres_m * 1e3,
            self.mesh.z_centres_m * 1e3,
            self._temp_c.copy(),
            self._damage.copy(),
            self._active.copy(),
            electrode.outer_radius_m * 1e3,
            electrode.active_tip_mm,
        )

    # -- stepping ------------------------------------------------------------------------------------

    def _advance(self, dt_s: float, demand: float, *, constant_voltage: bool) -> TissueReading:
        """Advance by ``dt_s`` in chunks that end on thermal steps; each chunk splits the generator's output
        between the field around the tip and the series resistance at the impedance of that moment, so one
        long call and many short ones give the same tissue."""
        remaining = dt_s
        while remaining > 0.0:
            if constant_voltage:
                current_a = demand / self.impedance_ohm
                self.delivered_power_w = demand * current_a
            else:
                self.delivered_power_w = demand
                current_a = math.sqrt(demand / self.impedance_ohm)
            tissue_power_w = current_a * current_a * self.tissue_resistance_ohm
            self.tissue_power_w = tissue_power_w
            take = min(self.thermal_step_s - self._pending_s, remaining)
            self._pending_s += take
            self._pending_j += take * tissue_power_w
            remaining -= take
            if self._pending_s >= self.thermal_step_s * (1.0 - 1e-9):
                self._thermal_step(self._pending_s, self._pending_j / self._pending_s)
                self._pending_s = 0.0
                self._pending_j = 0.0
            lag = 1.0 - math.exp(-take / self.config.electrode.thermocouple_lag_s)
            self._thermocouple_c += (self._electrode_c - self._thermocouple_c) * lag
        self.elapsed_s += dt_s
        return TissueReading(self._thermocouple_c, self.impedance_ohm, self.boiling)

    def _thermal_step(self, dt_s: float, tissue_power_w: float) -> None:
        scale = tissue_power_w / self._conductance_s
        np.multiply(self._weights, scale, out=self._heat_w)
        self._joule_j += dt_s * scale * self._in_domain_s
        self._far_field_j += dt_s * scale * self._far_s
        # Electrode: backward Euler on its one temperature, against the tissue temperatures of this step.
        electrode = self.config.electrode
        touching = float(np.dot(self._k_tip_contact, self._temp_c.ravel()[self._contact]))
        cap = self._electrode_heat_cap_j_k
        new_electrode = (
            cap * self._electrode_c + dt_s * (touching + self._coolant_w_k * electrode.coolant_temp_c)
        ) / (cap + dt_s * (self._k_tip_total + self._coolant_w_k))
        self._to_coolant_j += dt_s * self._coolant_w_k * (new_electrode - electrode.coolant_temp_c)
        self._electrode_c = new_electrode
        to_far, to_blood = self._kernels.thermal_step(
            self._temp_c,
            self._enthalpy,
            self._desiccation,
            self._damage,
            self._heat_w,
            self._k_r,
            self._k_z,
            self._k_tip,
            self._k_far,
            self._perfusion_w_k,
            self.mesh.volume_m3,
            self._active,
            new_electrode,
            self.body_temp_c,
            dt_s,
            self._rho_c,
            self._latent,
            self._ln_a,
            self._activation_k,
        )
        self._to_far_j += dt_s * to_far
        self._to_blood_j += dt_s * to_blood
        self._update_field()

    def _update_field(self) -> None:
        tissue, grid, k = self.config.tissue, self.config.grid, self._kernels
        k.conductivity(
            self._temp_c,
            self._desiccation,
            tissue.electrical_conductivity_s_m,
            tissue.conductivity_temp_coeff_per_k,
            self._ln_dry,
            self._sigma,
            self._resistivity,
        )
        self._face_conductances()
        self.last_sweeps, _ = k.sor_sweeps(
            self._phi,
            self._g_r,
            self._g_z,
            self._g_tip,
            self._inv_diag,
            self._omega,
            grid.electric_tolerance,
            grid.sweeps_per_step,
        )
        self._boiling = bool(np.any(self._enthalpy.ravel()[self._contact] >= self._rho_c * 100.0))
        self._far_s = k.joule_weights(
            self._phi, self._g_r, self._g_z, self._g_tip, self._g_far, self._weights
        )
        self._in_domain_s = float(np.sum(self._weights))
        self._conductance_s = self._in_domain_s + self._far_s


def _check_finite(name: str, value: float, *, positive: bool) -> None:
    if not math.isfinite(value) or value < 0.0 or (positive and value == 0.0):
        kind = "positive" if positive else "non-negative"
        raise ValueError(f"{name} must be finite and {kind}, not {value}")


def _extent(mesh: AxisymmetricMesh, field: FloatArray, threshold: float) -> tuple[float, float]:
    """Width (2 × largest radius) and axial length (m) of the tissue region where ``field >= threshold``,
    each edge interpolated linearly in ``field`` between the last cell inside and the first outside."""
    inside = (field >= threshold) & mesh.tissue
    if not inside.any():
        return 0.0, 0.0
    r_c, z_c = mesh.r_centres_m, mesh.z_centres_m
    outer = 0.0
    for j in np.flatnonzero(inside.any(axis=1)):
        i = int(np.flatnonzero(inside[j])[-1])
        outer = max(outer, _edge(r_c, field[j, :], i, +1, threshold, mesh.tissue[j, :]))
    top, bottom = -math.inf, math.inf
    for col in np.flatnonzero(inside.any(axis=0)):
        rows = np.flatnonzero(inside[:, col])
        top = max(top, _edge(z_c, field[:, col], int(rows[-1]), +1, threshold, mesh.tissue[:, col]))
        bottom = min(bottom, _edge(z_c, field[:, col], int(rows[0]), -1, threshold, mesh.tissue[:, col]))
    return 2.0 * outer, top - bottom


def _edge(
    centres: FloatArray, values: FloatArray, last: int, direction: int, threshold: float, tissue: BoolArray
) -> float:
    nxt = last + direction
    if nxt < 0 or nxt >= len(centres) or not tissue[nxt]:
        return float(centres[last])
    frac = (values[last] - threshold) / (values[last] - values[nxt])
    return float(centres[last] + frac * (centres[nxt] - centres[last]))
