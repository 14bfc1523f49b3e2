"""Bad input is refused at the edge, naming the field; an unstable thermal step is refused or avoided."""

from __future__ import annotations

import math

import pytest
from hypothesis import given
from hypothesis import strategies as st
from pydantic import ValidationError

from sim.tissue.model import RfLesionModel, UnstableStepError
from sim.tissue.params import (
    MUSCLE,
    OUTER_DIAMETER_MM,
    ElectrodeSpec,
    GridSettings,
    LesionModelConfig,
    TissueProperties,
)

COARSE = GridSettings(spacing_mm=0.5)


def refused_fields(exc: ValidationError) -> set[str]:
    return {".".join(str(p) for p in e["loc"]) for e in exc.errors()}


@given(st.integers().filter(lambda g: not 16 <= g <= 22))
def test_a_gauge_outside_16_to_22_is_refused_naming_gauge(gauge: int) -> None:
    with pytest.raises(ValidationError) as info:
        ElectrodeSpec(gauge=gauge, active_tip_mm=10.0)
    assert refused_fields(info.value) == {"gauge"}


@given(st.floats(allow_nan=True).filter(lambda t: not 5.0 <= t <= 15.0))
def test_an_active_tip_outside_5_to_15_mm_is_refused_naming_it(tip_mm: float) -> None:
    with pytest.raises(ValidationError) as info:
        ElectrodeSpec(gauge=18, active_tip_mm=tip_mm)
    assert refused_fields(info.value) == {"active_tip_mm"}


@given(st.integers(16, 22), st.floats(5.0, 15.0))
def test_every_valid_electrode_has_its_iso_9626_radius(gauge: int, tip_mm: float) -> None:
    electrode = ElectrodeSpec(gauge=gauge, active_tip_mm=tip_mm)
    assert electrode.outer_radius_m == OUTER_DIAMETER_MM[gauge] / 2000.0


@pytest.mark.parametrize(
    "field",
    [
        "electrical_conductivity_s_m",
        "thermal_conductivity_w_m_k",
        "density_kg_m3",
        "specific_heat_j_kg_k",
        "perfusion_per_s",
        "water_mass_fraction",
        "arrhenius_activation_energy_j_mol",
    ],
)
@given(bad=st.one_of(st.sampled_from([math.inf, math.nan]), st.floats(max_value=-1e-9)))
def test_impossible_tissue_properties_are_refused_naming_the_field(field: str, bad: float) -> None:
    with pytest.raises(ValidationError) as info:
        TissueProperties.model_validate(MUSCLE.model_dump() | {field: bad})
    assert field in refused_fields(info.value)


def test_a_grid_too_coarse_for_the_tip_is_refused_naming_spacing() -> None:
    with pytest.raises(ValidationError, match=r"grid\.spacing_mm"):
        LesionModelConfig(
            electrode=ElectrodeSpec(gauge=22, active_tip_mm=5.0), grid=GridSettings(spacing_mm=1.0)
        )


def test_margins_must_nest() -> None:
    with pytest.raises(ValidationError, match="domain_margin_mm"):
        GridSettings(uniform_margin_mm=20.0, domain_margin_mm=10.0)


def test_a_thermal_step_above_the_stability_bound_is_refused_naming_it() -> None:
    bound = RfLesionModel.for_electrode(18, 10.0, grid=COARSE).stability_bound_s
    unstable = COARSE.model_copy(update={"thermal_step_s": 1.5 * bound})
    with pytest.raises(UnstableStepError, match="thermal_step_s"):
        RfLesionModel.for_electrode(18, 10.0, grid=unstable)


def test_the_automatic_step_stays_under_the_bound_and_an_explicit_stable_one_is_used() -> None:
    for spacing_mm in (0.125, 0.25, 0.5):
        model = RfLesionModel.for_electrode(22, 5.0, grid=GridSettings(spacing_mm=spacing_mm))
        assert 0.0 < model.thermal_step_s < model.stability_bound_s
    bound = RfLesionModel.for_electrode(18, 10.0, grid=COARSE).stability_bound_s
    chosen = RfLesionModel.for_electrode(
        18, 10.0, grid=COARSE.model_copy(update={"thermal_step_s": 0.5 * bound})
    )
    assert chosen.thermal_step_s == 0.5 * bound


@pytest.mark.parametrize(
    ("name", "dt_s", "power_w"),
    [("dt_s", 0.0, 5.0), ("dt_s", math.nan, 5.0), ("power_w", 0.01, -1.0), ("power_w", 0.01, math.inf)],
)
def test_bad_step_arguments_are_refused_naming_them(name: str, dt_s: float, power_w: float) -> None:
    model = RfLesionModel.for_electrode(18, 10.0, grid=COARSE)
    with pytest.raises(ValueError, match=name):
        model.step(dt_s, power_w)


def test_an_unknown_tissue_preset_is_refused() -> None:
    with pytest.raises(ValueError, match="tissue"):
        RfLesionModel.for_electrode(18, 10.0, tissue="bone")
