"""Validated inputs of the RF lesion model: tissue properties, electrode, grid and solver settings.

Every default carries its source (see also ``docs/tissue.md``). Pydantic refuses an impossible value at
the edge and names the field, so a bad plan never reaches the solver. Units are SI inside the solver;
the fields here say their unit in their name.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from firmware_bridge.electrode import OUTER_DIAMETER_MM

LATENT_HEAT_WATER_J_PER_KG = 2.257e6
"""Latent heat of vaporisation of water at 100 °C (CRC Handbook of Chemistry and Physics)."""
GAS_CONSTANT_J_PER_MOL_K = 8.314462618
"""Molar gas constant (CODATA 2018), for the Arrhenius rate."""



class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class TissueProperties(_Frozen):
    """Bulk properties of one tissue at body temperature and ~500 kHz.

    The presets :data:`MUSCLE` and :data:`LIVER` cite their sources; a caller may build another tissue,
    and validation keeps each value inside a physically possible range.
    """

    name: str = Field(min_length=1)
    density_kg_m3: float = Field(gt=500.0, lt=2500.0)
    specific_heat_j_kg_k: float = Field(gt=500.0, lt=5000.0)
    thermal_conductivity_w_m_k: float = Field(gt=0.05, lt=2.0)
    electrical_conductivity_s_m: float = Field(gt=1e-3, lt=5.0)
    """At 37 °C and the generator's frequency (~500 kHz)."""
    conductivity_temp_coeff_per_k: float = Field(default=0.015, ge=0.0, le=0.05)
    """Rise of electrical conductivity per °C below boiling: +1.5 %/°C (Duck 1990, ch. 6)."""
    perfusion_per_s: float = Field(ge=0.0, lt=0.1)
    """Volumetric blood flow per tissue volume (m³/s per m³) at rest."""
    blood_density_kg_m3: float = Field(default=1050.0, gt=900.0, lt=1200.0)
    """IT'IS Foundation tissue database v4.1, blood."""
    blood_specific_heat_j_kg_k: float = Field(default=3617.0, gt=2000.0, lt=5000.0)
    """IT'IS Foundation tissue database v4.1, blood."""
    water_mass_fraction: float = Field(gt=0.0, lt=1.0)
    """Mass fraction of water: sets the latent heat absorbed while the tissue dries out."""
    desiccated_conductivity_ratio: float = Field(default=0.01, gt=0.0, le=1.0)
    """Conductivity of fully desiccated tissue over that of wet tissue: the two-decade fall used in RF
    ablation models since Haemmerich et al. 2003 (IEEE TBME 50:493) and Berjano 2006."""
    arrhenius_frequency_factor_per_s: float = Field(gt=1.0, lt=1e200)
    arrhenius_activation_energy_j_mol: float = Field(gt=1e4, lt=2e6)

    @property
    def volumetric_heat_capacity_j_m3_k(self) -> float:
        return self.density_kg_m3 * self.specific_heat_j_kg_k

    @property
    def latent_heat_j_m3(self) -> float:
        """Heat that boils off all the tissue's water, per unit volume."""
        return self.density_kg_m3 * self.water_mass_fraction * LATENT_HEAT_WATER_J_PER_KG


MUSCLE = TissueProperties(
    name="muscle",
    # IT'IS Foundation tissue database v4.1, skeletal muscle: density, heat capacity, conductivity.
    density_kg_m3=1090.0,
    specific_heat_j_kg_k=3421.0,
    thermal_conductivity_w_m_k=0.49,
    # IT'IS v4.1 (Gabriel et al. 1996 parametric model) at 500 kHz.
    electrical_conductivity_s_m=0.446,
    # IT'IS v4.1 heat transfer rate 37 ml/min/kg × 1090 kg/m³.
    perfusion_per_s=37e-6 / 60.0 * 1090.0,
    # Duck 1990, "Physical Properties of Tissue", table 9.1: skeletal muscle ~75 % water.
    water_mass_fraction=0.75,
    # Henriques & Moritz 1947 (Am J Pathol 23:531), the classic protein-coagulation constants also used
    # for muscle by Diller (Adv Heat Transfer 22, 1992).
    arrhenius_frequency_factor_per_s=3.1e98,
    arrhenius_activation_energy_j_mol=6.28e5,
)
"""Skeletal muscle: the medial-branch and most pain-procedure targets."""

LIVER = TissueProperties(
    name="liver",
    # IT'IS Foundation tissue database v4.1, liver.
    density_kg_m3=1079.0,
    specific_heat_j_kg_k=3540.0,
    thermal_conductivity_w_m_k=0.52,
    # Tungjitkusolmun et al. 2002 (IEEE TBME 49:3), liver at 500 kHz.
    electrical_conductivity_s_m=0.148,
    # Tungjitkusolmun et al. 2002: ω·ρb·cb = 6.4e-3·ρb·cb, the value most RF-ablation models use.
    perfusion_per_s=6.4e-3,
    # Duck 1990, table 9.1: liver ~71-76 % water.
    water_mass_fraction=0.73,
    # Jacques et al. 1996 as used by Chang & Nguyen 2004 (BioMed Eng OnLine 3:27) for liver coagulation.
    arrhenius_frequency_factor_per_s=7.39e39,
    arrhenius_activation_energy_j_mol=2.577e5,
)
"""Liver: the most studied RF-ablation tissue, for comparison with the hepatic literature."""

TISSUES: dict[str, TissueProperties] = {t.name: t for t in (MUSCLE, LIVER)}
"""The presets by name, for ``rfa lesion --tissue``."""


class ElectrodeSpec(_Frozen):
    """A straight cannula: an active (uninsulated) tip at the distal end of an insulated shaft."""

    gauge: int = Field(ge=16, le=22)
    """Birmingham gauge, 16 to 22; the outer diameter comes from ISO 9626."""
    active_tip_mm: float = Field(ge=5.0, le=15.0)
    cooled: bool = False
    """Internally cooled electrode: coolant circulating inside holds the tip near coolant temperature."""
    coolant_temp_c: float = Field(default=20.0, ge=0.0, le=40.0)
    coolant_flow_ml_min: float = Field(default=15.0, ge=0.0, le=100.0)
    thermocouple_lag_s: float = Field(default=0.3, gt=0.0, le=5.0)
    """First-order time constant of the tip thermocouple (a fine junction inside the tip; assumed)."""

    @property
    def outer_radius_m(self) -> float:
        return OUTER_DIAMETER_MM[self.gauge] / 2000.0

    @property
    def active_tip_m(self) -> float:
        return self.active_tip_mm / 1000.0


class GridSettings(_Frozen):
    """The finite-difference grid and the solver's numerical choices."""

    spacing_mm: float = Field(default=0.25, ge=0.05, le=1.0)
    """Cell size in the uniform region around the electrode."""
    uniform_margin_mm: float = Field(default=7.0, ge=3.0, le=40.0)
    """The uniform region extends this far beyond the active tip in every direction."""
    domain_margin_mm: float = Field(default=25.0, ge=5.0, le=200.0)
    """Far boundary (body temperature; electrically the far-field condition) beyond the tip."""
    stretch_ratio: float = Field(default=1.2, ge=1.0, le=1.5)
    """Growth of the cell size from one cell to the next outside the uniform region."""
    thermal_step_s: float | None = Field(default=None, gt=0.0)
    """Explicit thermal step; ``None`` picks 90 % of the stability bound (capped by ``max_thermal_step_s``).
    A value above the bound is refused."""
    max_thermal_step_s: float = Field(default=0.1, gt=0.0, le=1.0)
    """Upper limit of the automatic step: keeps the power of a fast control loop resolved in time."""
    electric_tolerance: float = Field(default=1e-5, gt=0.0, le=1e-3)
    """Stop the SOR sweeps once no potential (of 1 V at the tip) moves by more than this."""
    sweeps_per_step: int = Field(default=40, ge=1, le=10_000)
    """Most SOR sweeps per thermal step (the warm start needs few; roll-off may need more)."""
    backend: Literal["numba", "numpy"] = "numba"
    """``numba`` kernels, or the plain numpy reference of the same arithmetic."""

    @model_validator(mode="after")
    def _margins_nest(self) -> GridSettings:
        if self.domain_margin_mm < self.uniform_margin_mm:
            raise ValueError(
                f"domain_margin_mm ({self.domain_margin_mm}) must be at least uniform_margin_mm "
                f"({self.uniform_margin_mm})"
            )
        return self


class LesionModelConfig(_Frozen):
    """Everything that defines one electrode's tissue model."""

    electrode: ElectrodeSpec
    tissue: TissueProperties = MUSCLE
    grid: GridSettings = GridSettings()
    perfused: bool = True
    """``False`` for ex-vivo tissue: no blood flow carries heat away."""
    series_resistance_ohm: float = Field(default=100.0, ge=0.0, le=1000.0)
    """Return pad, cable and body bulk in series with the field around the tip."""

    @model_validator(mode="after")
    def _grid_resolves_electrode(self) -> LesionModelConfig:
        tip_mm = self.electrode.active_tip_mm
        if self.grid.spacing_mm > tip_mm / 8.0:
            raise ValueError(
                f"grid.spacing_mm ({self.grid.spacing_mm}) must be at most an eighth of "
                f"electrode.active_tip_mm ({tip_mm}) to resolve the tip"
            )
        return self
