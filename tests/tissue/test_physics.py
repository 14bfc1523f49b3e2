"""Physical behaviour the model must show (coarse 0.5 mm grid: the convergence test covers the fine one)."""

from __future__ import annotations

from sim.tissue.estimate import LesionRun, estimate_lesion
from sim.tissue.model import RfLesionModel
from sim.tissue.params import LIVER, MUSCLE, ElectrodeSpec, GridSettings, LesionModelConfig, TissueProperties

COARSE = GridSettings(spacing_mm=0.5)


def lesion(
    gauge: int = 18,
    tip_mm: float = 10.0,
    temp_c: float = 80.0,
    time_s: float = 60.0,
    *,
    cooled: bool = False,
    tissue: TissueProperties = MUSCLE,
    perfused: bool = True,
) -> LesionRun:
    config = LesionModelConfig(
        electrode=ElectrodeSpec(gauge=gauge, active_tip_mm=tip_mm, cooled=cooled),
        tissue=tissue,
        grid=COARSE,
        perfused=perfused,
    )
    return estimate_lesion(config, temp_c, time_s)


def test_hotter_lesions_are_larger() -> None:
    runs = [lesion(temp_c=t) for t in (65.0, 80.0, 90.0)]
    widths = [r.lesion.width_mm for r in runs]
    lengths = [r.lesion.length_mm for r in runs]
    assert widths == sorted(widths) and widths[0] < widths[-1] - 1.0
    assert lengths == sorted(lengths)


def test_longer_lesions_are_larger() -> None:
    widths = [lesion(time_s=t).lesion.width_mm for t in (30.0, 60.0, 120.0)]
    assert widths == sorted(widths) and widths[0] < widths[-1] - 1.0


def test_a_larger_gauge_gives_a_wider_lesion() -> None:
    widths = [lesion(gauge=g).lesion.width_mm for g in (22, 20, 18, 16)]
    assert widths == sorted(widths) and widths[0] < widths[-1] - 0.5


def test_without_temperature_control_high_power_boils_the_tip_and_the_impedance_rolls_off() -> None:
    model = RfLesionModel.for_electrode(18, 10.0, grid=COARSE)
    lowest_ohm = model.impedance_ohm
    peak_tip_c, rolled_off_at = 0.0, None
    for k in range(6000):
        reading = model.step(0.01, 40.0)
        lowest_ohm = min(lowest_ohm, reading.impedance_ohm)
        peak_tip_c = max(peak_tip_c, reading.tip_temp_c)
        if reading.impedance_ohm > 3.0 * lowest_ohm:
            rolled_off_at = (k + 1) * 0.01
            break
    assert rolled_off_at is not None and rolled_off_at < 60.0
    assert peak_tip_c >= 99.0 and model.boiling


def test_perfusion_gives_a_smaller_lesion_than_ex_vivo() -> None:
    # Muscle at rest is barely perfused; liver (6.4e-3 /s) visibly shrinks the lesion.
    for tissue, margin_mm in ((MUSCLE, 0.0), (LIVER, 0.2)):
        perfused = lesion(tissue=tissue, perfused=True).lesion
        ex_vivo = lesion(tissue=tissue, perfused=False).lesion
        assert perfused.width_mm < ex_vivo.width_mm - margin_mm
        assert perfused.length_mm < ex_vivo.length_mm


def test_a_cooled_tip_gives_a_larger_lesion_at_a_lower_tip_temperature() -> None:
    conventional = lesion(temp_c=80.0)
    cooled = lesion(temp_c=60.0, cooled=True)
    assert cooled.max_tip_temp_c < conventional.max_tip_temp_c - 15.0
    assert cooled.lesion.width_mm > conventional.lesion.width_mm + 2.0


def test_typical_impedance_is_in_the_clinical_range() -> None:
    for gauge, tip_mm in ((16, 15.0), (18, 10.0), (22, 5.0)):
        model = RfLesionModel.for_electrode(gauge, tip_mm, grid=COARSE)
        assert 150.0 <= model.impedance_ohm <= 400.0


def test_a_slower_ramp_is_a_smaller_lesion_in_the_same_rf_time() -> None:
    """The plan's ramp rate is part of the estimate: at 0.5 °C/s a 60 s lesion spends most of its RF time on
    the way to 80 °C, so its lesion is smaller than at 5 °C/s, and it reaches the set temperature later."""
    config = LesionModelConfig(electrode=ElectrodeSpec(gauge=18, active_tip_mm=10.0), tissue=MUSCLE, grid=COARSE)
    fast = estimate_lesion(config, 80.0, 60.0, ramp_c_per_s=5.0)
    slow = estimate_lesion(config, 80.0, 60.0, ramp_c_per_s=0.5)
    assert fast.time_to_set_temp_s is not None and fast.time_to_set_temp_s < 15.0
    assert slow.time_to_set_temp_s is None or slow.time_to_set_temp_s > 60.0 * 0.9
    assert slow.lesion.width_mm < fast.lesion.width_mm - 0.5
