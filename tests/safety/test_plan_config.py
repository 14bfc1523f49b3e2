"""Lesion plans and cart configurations: refused with the field and the reason; limits only ever tighten."""

from __future__ import annotations

import dataclasses
import typing
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from firmware_bridge.clock import SimClock
from firmware_bridge.errors import CartError
from firmware_bridge.generator import RfGenerator
from firmware_bridge.transport import memory_pair
from safety import limits as hard
from safety.config import HARD_LIMITS, LIMIT_FIELDS, MINIMUM_LIMITS, SafetyLimits, load_config, parse_config
from safety.errors import ConfigError, LimitExceeded, PlanError
from safety.gate import OutputGate
from safety.plan import check_plan, default_genicular_plan, load_plan, parse_plan

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "docs" / "examples" / "genicular.toml"


def lesion(**overrides: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "channel": 1,
        "electrode": {"gauge": 18, "active_tip_mm": 10.0},
        "mode": "continuous",
        "set_temp_c": 80.0,
        "ramp_rate_c_per_s": 2.0,
        "lesion_time_s": 90.0,
        "power_cap_w": 25.0,
        "impedance_min_ohm": 60.0,
        "impedance_max_ohm": 800.0,
    }
    base.update(overrides)
    return base


PULSED = {"pulse_width_us": 20_000, "rate_hz": 2.0, "max_voltage_v": 45.0}


def plan(*lesions: dict[str, Any], **overrides: Any) -> dict[str, Any]:
    return {"name": "test", "lesions": list(lesions) or [lesion()], **overrides}


def refused(data: dict[str, Any], limits: SafetyLimits = HARD_LIMITS) -> PlanError:
    with pytest.raises(PlanError) as info:
        parse_plan(data, limits)
    return info.value


def test_the_example_toml_is_the_default_plan() -> None:
    assert load_plan(EXAMPLE) == default_genicular_plan()


@pytest.mark.parametrize("example", ["genicular.toml", "cart.toml"])
def test_a_file_saved_with_a_byte_order_mark_reads_as_without_and_other_encodings_are_named_by_line(
    tmp_path: Path, example: str
) -> None:
    """Windows Notepad saves UTF-8 with a byte-order mark, which TOML refused ("Invalid statement (at line 1,
    column 1)"); text saved as Latin-1 was refused by byte offset. The first reads as without it; the second is
    refused naming the line and column, and what to do."""
    source = EXAMPLE.parent / example
    load = load_plan if example == "genicular.toml" else load_config
    marked = tmp_path / f"bom-{example}"
    marked.write_bytes(b"\xef\xbb\xbf" + source.read_bytes())
    assert load(marked) == load(source)
    latin = tmp_path / f"latin-{example}"
    latin.write_bytes(b"# r\xe9glage du chariot\n" + source.read_bytes())
    with pytest.raises((PlanError, ConfigError)) as refused:
        load(latin)
    assert str(refused.value) == (f"{latin} refused:\n  cannot read TOML: not UTF-8 text (byte 0xE9 at line 1, "
                                  "column 4); save the file as UTF-8")


def test_the_default_plan_reaches_its_set_temperature_within_the_lesion() -> None:
    plan_ = default_genicular_plan()
    assert [le.channel for le in plan_.lesions] == [1, 2, 3]
    assert plan_.imaging_required
    for le in plan_.lesions:
        assert le.set_temp_c == 80.0 and le.ramp_time_s < le.lesion_time_s
        assert 1.5 <= le.ramp_rate_c_per_s <= 2.0


@pytest.mark.parametrize(
    ("data", "field", "words"),
    [
        (plan(lesion(set_temp_c=95.01)), "lesions.0.set_temp_c", "tip_temp_max_c"),
        (
            plan(
                lesion(
                    mode="pulsed", set_temp_c=45.01, pulsed=PULSED, ramp_rate_c_per_s=1.0, lesion_time_s=120.0
                )
            ),
            "lesions.0.set_temp_c",
            "pulsed_tip_temp_max_c",
        ),
        (plan(lesion(), lesion(channel=1)), "lesions.1.channel", "already used"),
        (plan(name="é" * 101), "name", "at most 100"),  # the record's file name would pass 255 bytes
        (plan(lesion(mode="bipolar"), lesion(channel=2)), "lesions.1.channel", "already used"),
        (plan(lesion(mode="bipolar", channel=2)), "lesions.0.channel", "bipolar"),
        (
            plan(lesion(ramp_rate_c_per_s=0.4, lesion_time_s=90.0)),
            "lesions.0.ramp_rate_c_per_s",
            "not within",
        ),
        (plan(lesion(ramp_rate_c_per_s=5.01)), "lesions.0.ramp_rate_c_per_s", "ramp_rate_max"),
        (plan(lesion(lesion_time_s=360.01)), "lesions.0.lesion_time_s", "lesion_rf_time_max_s"),
        (plan(lesion(power_cap_w=50.01)), "lesions.0.power_cap_w", "power_max_w"),
        (plan(lesion(impedance_min_ohm=49.9)), "lesions.0.impedance_min_ohm", "impedance_min_ohm"),
        (plan(lesion(impedance_max_ohm=1000.1)), "lesions.0.impedance_max_ohm", "impedance_max_ohm"),
        (
            plan(lesion(impedance_min_ohm=500.0, impedance_max_ohm=500.0)),
            "lesions.0.impedance_min_ohm",
            "not below",
        ),
        (plan(lesion(mode="pulsed", set_temp_c=42.0)), "lesions.0.pulsed", "needs"),
        (plan(lesion(pulsed=PULSED)), "lesions.0.pulsed", "continuous"),
        (
            plan(lesion(mode="pulsed", set_temp_c=42.0, pulsed={**PULSED, "max_voltage_v": 60.1})),
            "lesions.0.pulsed.max_voltage_v",
            "pulsed_voltage_max_v",
        ),
        (
            plan(lesion(mode="pulsed", set_temp_c=42.0, pulsed={**PULSED, "rate_hz": 8.0})),
            "lesions.0.pulsed.pulse_width_us",
            "duty",
        ),
        (plan(lesion(channel=5)), "lesions.0.channel", ""),
        (plan(lesion(electrode={"gauge": 23, "active_tip_mm": 10.0})), "lesions.0.electrode.gauge", ""),
        (
            plan(lesion(electrode={"gauge": 18, "active_tip_mm": 4.9})),
            "lesions.0.electrode.active_tip_mm",
            "",
        ),
        (plan(lesion(set_temp_c=float("nan"))), "lesions.0.set_temp_c", ""),
        (plan(lesion(set_temp_c=36.0)), "lesions.0.set_temp_c", "body temperature"),
        (plan(lesion(colour="red")), "lesions.0.colour", ""),
        (
            plan(stimulation={"max_amplitude_mv": 3001}),
            "stimulation.max_amplitude_mv",
            "stim_amplitude_max_mv",
        ),
        (  # volts written in the mV field: the tests would climb from 100 mV to 2 mV, stimulating nothing
            plan(stimulation={"max_amplitude_mv": 2}),
            "stimulation.max_amplitude_mv",
            "first stimulation step",
        ),
        (
            plan(stimulation={"sensory_frequency_hz": 200.5}),
            "stimulation.sensory_frequency_hz",
            "stim_frequency",
        ),
        (plan(stimulation={"pulse_width_us": 1001}), "stimulation.pulse_width_us", "stim_pulse_width"),
        (
            plan(stimulation={"scripted": {"motor_threshold_mv": 2500}}),
            "stimulation.scripted.motor_threshold_mv",
            "never reaches",
        ),
        (plan(imaging_frame_max_age_s=1.5), "imaging_frame_max_age_s", "imaging_frame_age_max_s"),
        ({"name": "empty", "lesions": []}, "lesions", "at least one"),
        (
            plan(
                lesion(mode="pulsed", set_temp_c=42.0, pulsed=PULSED),
                lesion(channel=2, mode="pulsed", set_temp_c=42.0, pulsed={**PULSED, "pulse_width_us": 10_000}),
            ),
            "lesions.1.pulsed.pulse_width_us",
            "share one waveform",
        ),
        (
            plan(
                lesion(mode="pulsed", set_temp_c=42.0, pulsed=PULSED),
                lesion(channel=2),
                lesion(channel=3, mode="pulsed", set_temp_c=42.0, pulsed={**PULSED, "rate_hz": 1.0}),
            ),
            "lesions.2.pulsed.rate_hz",
            "share one waveform",
        ),
    ],
)
def test_refusals_name_the_field_and_the_reason(data: dict[str, Any], field: str, words: str) -> None:
    error = refused(data)
    assert field in error.fields, error
    assert words in dict(error.problems)[field]


@pytest.mark.parametrize(
    ("data", "field"),
    [
        (plan(lesion(power_cap_w=True)), "lesions.0.power_cap_w"),  # lax pydantic: 1 W
        (plan(lesion(set_temp_c="80")), "lesions.0.set_temp_c"),
        (plan(lesion(channel=True)), "lesions.0.channel"),  # lax: channel 1
        (plan(lesion(electrode={"gauge": 18.0, "active_tip_mm": 10.0})), "lesions.0.electrode.gauge"),
        (plan(lesion(electrode={"gauge": 18, "active_tip_mm": 10.0, "cooled": "no"})), "lesions.0.electrode.cooled"),
        (plan(lesion(mode="pulsed", set_temp_c=42.0, pulsed={**PULSED, "pulse_width_us": "20000"})),
         "lesions.0.pulsed.pulse_width_us"),
        (plan(imaging_required="off"), "imaging_required"),  # lax: False
        (plan(stimulation={"max_amplitude_mv": 1500.5}), "stimulation.max_amplitude_mv"),
    ],
)
def test_a_value_of_the_wrong_type_is_refused_not_converted(data: dict[str, Any], field: str) -> None:
    """A typo of type in a plan (``true`` for a number, a quoted number, a fraction for a whole number) is refused
    naming the field, never converted into a value nobody wrote and then run."""
    assert field in refused(data).fields


_PULSED_AT = {"mode": "pulsed", "set_temp_c": 42.0}
_AT_THE_LIMIT: dict[str, dict[str, Any]] = {
    "set_temp_c": plan(lesion(set_temp_c=hard.TIP_TEMP_MAX_C - hard.SET_TEMP_HEADROOM_C)),
    "pulsed set_temp_c": plan(lesion(
        **{**_PULSED_AT, "set_temp_c": hard.PULSED_TIP_TEMP_MAX_C - hard.SET_TEMP_HEADROOM_C}, pulsed=PULSED)),
    "ramp_rate_c_per_s": plan(lesion(ramp_rate_c_per_s=hard.RAMP_RATE_MAX_C_PER_S)),
    "lesion_time_s": plan(lesion(lesion_time_s=hard.LESION_RF_TIME_MAX_S)),
    "power_cap_w": plan(lesion(power_cap_w=hard.POWER_MAX_W)),
    "impedance_min_ohm": plan(lesion(impedance_min_ohm=hard.IMPEDANCE_MIN_OHM)),
    "impedance_max_ohm": plan(lesion(impedance_max_ohm=hard.IMPEDANCE_MAX_OHM)),
    "max_voltage_v": plan(lesion(**_PULSED_AT, pulsed={**PULSED, "max_voltage_v": hard.PULSED_VOLTAGE_MAX_V})),
    "duty": plan(lesion(**_PULSED_AT, pulsed={**PULSED, "pulse_width_us": 20_000, "rate_hz": 5.0})),  # 10 % exactly
    "imaging_frame_max_age_s": plan(imaging_frame_max_age_s=hard.IMAGING_FRAME_AGE_MAX_S),
    "one stimulation step": plan(stimulation={"max_amplitude_mv": 100}),
    "stimulation": plan(stimulation={
        "sensory_frequency_hz": hard.STIM_FREQUENCY_MAX_HZ, "motor_frequency_hz": hard.STIM_FREQUENCY_MAX_HZ,
        "pulse_width_us": hard.STIM_PULSE_WIDTH_MAX_US, "max_amplitude_mv": hard.STIM_AMPLITUDE_MAX_MV,
        "scripted": {"sensory_threshold_mv": hard.STIM_AMPLITUDE_MAX_MV,
                     "motor_threshold_mv": hard.STIM_AMPLITUDE_MAX_MV}}),
}


@pytest.mark.parametrize("data", _AT_THE_LIMIT.values(), ids=_AT_THE_LIMIT.keys())
def test_a_plan_exactly_at_each_limit_is_accepted(data: dict[str, Any]) -> None:
    """Limits are the last allowed value (as the interlocks' are): a plan on one is accepted."""
    parse_plan(data)


_JUST_REFUSED: dict[str, tuple[dict[str, Any], str]] = {
    "body temperature": (plan(lesion(set_temp_c=hard.BODY_TEMP_C)), "lesions.0.set_temp_c"),
    "ramp ends as the lesion does": (plan(lesion(set_temp_c=77.0, ramp_rate_c_per_s=2.0, lesion_time_s=20.0)),
                                     "lesions.0.ramp_rate_c_per_s"),
    "below the first stimulation step": (plan(stimulation={"max_amplitude_mv": 99}),
                                         "stimulation.max_amplitude_mv"),
    "empty impedance window": (plan(lesion(impedance_min_ohm=300.0, impedance_max_ohm=300.0)),
                               "lesions.0.impedance_min_ohm"),
}


@pytest.mark.parametrize(("data", "field"), _JUST_REFUSED.values(), ids=_JUST_REFUSED.keys())
def test_a_plan_on_an_exclusive_bound_is_refused(data: dict[str, Any], field: str) -> None:
    assert field in str(refused(data))


def test_a_whole_number_is_a_number() -> None:
    checked = parse_plan(plan(lesion(set_temp_c=80, power_cap_w=25)))
    assert checked.lesions[0].set_temp_c == 80.0 and checked.lesions[0].power_cap_w == 25.0


def test_pulsed_lesions_sharing_one_waveform_are_accepted_beside_other_modes() -> None:
    pulsed_lesion = {"mode": "pulsed", "set_temp_c": 42.0, "pulsed": {**PULSED, "max_voltage_v": 40.0}}
    accepted = parse_plan(
        plan(
            lesion(mode="pulsed", set_temp_c=42.0, pulsed=PULSED),
            lesion(channel=2, **pulsed_lesion),
            lesion(channel=3),
        )
    )
    assert [le.mode.value for le in accepted.lesions] == ["pulsed", "pulsed", "continuous"]


@given(set_c=st.floats(min_value=37.01, max_value=95.0), tip_max=st.floats(min_value=60.0, max_value=95.0),
       pulsed=st.booleans())
def test_a_set_temperature_leaves_the_loop_its_overshoot_below_the_trip(set_c: float, tip_max: float,
                                                                         pulsed: bool) -> None:
    """At the maximum itself (95 °C, or a cart's 90), every lesion tripped over-temperature on the loop's first
    overshoot; a set temperature is allowed up to 2 °C below the temperature at which the tip trips."""
    pulsed_max = min(tip_max, hard.PULSED_TIP_TEMP_MAX_C)
    config = parse_config({"limits": {"tip_temp_max_c": tip_max, "pulsed_tip_temp_max_c": pulsed_max}})
    trips_at = pulsed_max if pulsed else tip_max
    extra = {"mode": "pulsed", "pulsed": PULSED} if pulsed else {}
    data = plan(lesion(set_temp_c=set_c, ramp_rate_c_per_s=1.0, lesion_time_s=120.0, **extra))
    if set_c <= trips_at - hard.SET_TEMP_HEADROOM_C:
        assert check_plan(parse_plan(data), config.effective_limits).lesions[0].set_temp_c == set_c
        return
    with pytest.raises(PlanError) as info:
        check_plan(parse_plan(data), config.effective_limits)
    assert tuple(info.value.fields) == ("lesions.0.set_temp_c",)
    assert ("pulsed_tip_temp_max_c" if pulsed else "tip_temp_max_c") in str(info.value)


def test_a_tighter_configuration_refuses_a_plan_the_hard_limits_allow() -> None:
    config = parse_config({"limits": {"tip_temp_max_c": 75.0}})
    with pytest.raises(PlanError) as info:
        check_plan(default_genicular_plan(), config.effective_limits)
    assert "lesions.0.set_temp_c" in info.value.fields


def test_unreadable_files_are_typed_errors(tmp_path: Path) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text("name = [", encoding="utf-8")
    with pytest.raises(PlanError):
        load_plan(bad)
    with pytest.raises(ConfigError):
        load_config(bad)
    with pytest.raises(PlanError):
        load_plan(tmp_path / "missing.toml")


def test_a_configuration_file_loads(tmp_path: Path) -> None:
    path = tmp_path / "cart.toml"
    path.write_text(
        'generator_url = "/dev/ttyUSB0"\nprobe = "usb:1209:0001"\nrecord_dir = "/var/rfa"\n'
        "[limits]\npower_max_w = 30.0\nimpedance_min_ohm = 80.0\n",
        encoding="utf-8",
    )
    config = load_config(path)
    assert config.effective_limits.power_max_w == 30.0
    assert config.effective_limits.impedance_min_ohm == 80.0
    assert config.effective_limits.tip_temp_max_c == hard.TIP_TEMP_MAX_C


@pytest.mark.parametrize(
    ("data", "field"),
    [
        ({"limits": {"tip_temp_max_c": 95.5}}, "limits.tip_temp_max_c"),
        ({"limits": {"impedance_min_ohm": 40.0}}, "limits.impedance_min_ohm"),
        ({"limits": {"impedance_min_ohm": 900.0, "impedance_max_ohm": 800.0}}, "limits.impedance_min_ohm"),
        ({"limits": {"power_max_w": -1.0}}, "limits.power_max_w"),
        ({"limits": {"power_max_w": float("inf")}}, "limits.power_max_w"),
        ({"limits": {"powr_max_w": 10.0}}, "limits.powr_max_w"),
        ({"probe": "usb:zz:01"}, "probe"),
        ({"probe": "tcp:"}, "probe"),
        ({"probe": "tcp:host:70000"}, "probe"),
        ({"probe": "tcp:+5555"}, "probe"),
        ({"probe": "udp:5761"}, "probe"),
        ({"generator_url": " "}, "generator_url"),
        ({"limits": {"power_max_w": True}}, "limits.power_max_w"),
        ({"limits": {"stim_amplitude_max_mv": 1500.0}}, "limits.stim_amplitude_max_mv"),
        ({"debug_bypass": True}, "debug_bypass"),
    ],
)
def test_configuration_refusals_name_the_field(data: dict[str, Any], field: str) -> None:
    with pytest.raises(ConfigError) as info:
        parse_config(data)
    assert field in info.value.fields, info.value


@pytest.mark.parametrize("probe", ["sim", "none", "usb:1209:0001", "tcp:5761", "tcp:127.0.0.1:5761", "tcp:::1:5761"])
def test_every_probe_rfa_run_accepts_is_accepted_in_the_configuration(probe: str) -> None:
    assert parse_config({"probe": probe}).probe == probe


def test_a_stimulation_maximum_below_the_first_step_is_refused_as_configuration() -> None:
    """Tightened below 100 mV, stim_amplitude_max_mv would refuse every plan (each must reach the first step): a
    cart that can do nothing, found only when a procedure is refused at the cart. Refused where it is written."""
    with pytest.raises(ConfigError) as refused:
        parse_config({"limits": {"stim_amplitude_max_mv": 99}})
    assert refused.value.fields == ("limits.stim_amplitude_max_mv",)
    assert "99 is below 100, under which no plan can be run" in str(refused.value)
    assert parse_config({"limits": {"stim_amplitude_max_mv": 100}}).effective_limits.stim_amplitude_max_mv == 100


def test_the_config_error_names_the_limit() -> None:
    with pytest.raises(ConfigError) as info:
        parse_config({"limits": {"power_max_w": 60.0}})
    assert "hard limit 50.0" in dict(info.value.problems)["limits.power_max_w"]


def _limit_values() -> st.SearchStrategy[dict[str, Any]]:
    """Any subset of the limit fields, each with any value: near the limits, far beyond, NaN, infinite."""
    hints = typing.get_type_hints(SafetyLimits)
    values = {
        name: (
            st.integers(-10, 10_000) if hints[name] is int else st.one_of(st.floats(-10, 10_000), st.floats())
        )
        for name in LIMIT_FIELDS
    }
    return st.fixed_dictionaries({}, optional=values)


@given(values=_limit_values())
def test_no_configuration_value_can_raise_a_hard_limit(values: dict[str, Any]) -> None:
    try:
        effective = parse_config({"limits": values}).effective_limits
    except ConfigError:
        return
    for field in dataclasses.fields(SafetyLimits):
        value, limit = getattr(effective, field.name), getattr(HARD_LIMITS, field.name)
        if field.name in MINIMUM_LIMITS:
            assert value >= limit
        else:
            assert 0 < value <= limit
    assert effective.impedance_min_ohm < effective.impedance_max_ohm


@given(cap=st.floats(0.1, 100.0), config_max=st.floats(1.0, 50.0))
def test_a_plan_never_passes_the_configured_limit(cap: float, config_max: float) -> None:
    limits = parse_config({"limits": {"power_max_w": config_max}}).effective_limits
    try:
        accepted = parse_plan(plan(lesion(power_cap_w=cap)), limits)
    except PlanError as error:
        assert "lesions.0.power_cap_w" in error.fields
        assert cap > config_max
        return
    assert accepted.lesions[0].power_cap_w <= config_max <= hard.POWER_MAX_W


# -- SafetyLimits built in code: the hard limits hold whoever builds them ---------------------------------


def _loosening(name: str) -> st.SearchStrategy[Any]:
    """Values that loosen the hard limit ``name`` (or are no limit at all: NaN, infinite, not a number)."""
    limit = getattr(HARD_LIMITS, name)
    if name in MINIMUM_LIMITS:
        looser = st.floats(max_value=limit, exclude_max=True)
    elif isinstance(limit, int):
        looser = st.one_of(st.integers(min_value=limit + 1), st.floats(min_value=limit, exclude_min=True))
    else:
        looser = st.floats(min_value=limit, exclude_min=True)
    return st.one_of(looser, st.just(float("nan")), st.just(float("-inf")), st.just("1"), st.booleans())


@st.composite
def _loosened(draw: st.DrawFn) -> tuple[str, dict[str, Any]]:
    """One loosened field among other fields drawn tighter (or at) their hard limits."""
    name = draw(st.sampled_from(LIMIT_FIELDS))
    values = {name: draw(_loosening(name))}
    for other in LIMIT_FIELDS:
        limit = getattr(HARD_LIMITS, other)
        if other != name and other not in ("impedance_min_ohm", "impedance_max_ohm") and draw(st.booleans()):
            values[other] = limit if isinstance(limit, int) else draw(st.floats(limit / 2, limit))
    return name, values


@given(case=_loosened())
def test_no_safety_limits_that_loosen_a_field_can_be_built(case: tuple[str, dict[str, Any]]) -> None:
    name, values = case
    with pytest.raises(LimitExceeded) as info:
        SafetyLimits(**values)
    assert isinstance(info.value, CartError)
    assert info.value.field == name and info.value.limit == getattr(HARD_LIMITS, name)
    assert info.value.fields == (name,)


@given(case=_loosened())
def test_the_gate_refuses_limits_loosened_after_their_check(case: tuple[str, dict[str, Any]]) -> None:
    name, values = case
    limits = SafetyLimits()
    for field, value in values.items():
        object.__setattr__(limits, field, value)  # what a hostile caller can do to a frozen dataclass
    clock = SimClock(0.0)
    host, device = memory_pair("limits")
    driver = RfGenerator(host, clock)
    with pytest.raises(LimitExceeded) as info:
        OutputGate(driver, default_genicular_plan(), limits, clock, lambda event: None)
    assert info.value.field == name
    assert device.read() == b"", "nothing reaches the wire"
    driver.claim_output_capability()  # the refused gate never took the capability


@pytest.mark.parametrize(
    ("values", "field", "words"),
    [
        ({"power_max_w": 200.0, "tip_temp_max_c": 150.0}, "tip_temp_max_c", "hard limit 95.0"),
        ({"power_max_w": 50.01}, "power_max_w", "hard limit 50.0"),
        ({"impedance_min_ohm": 49.9}, "impedance_min_ohm", "below the hard limit 50.0"),
        ({"impedance_max_ohm": 1000.1}, "impedance_max_ohm", "hard limit 1000.0"),
        ({"impedance_min_ohm": 800.0, "impedance_max_ohm": 700.0}, "impedance_min_ohm", "no impedance window"),
        ({"telemetry_stale_s": float("nan")}, "telemetry_stale_s", "not a positive finite"),
        ({"power_max_w": -1.0}, "power_max_w", "not a positive finite"),
        ({"stim_amplitude_max_mv": 2999.5}, "stim_amplitude_max_mv", "not an integer"),
    ],
)
def test_a_loosened_safety_limits_names_the_field_and_the_limit(
    values: dict[str, Any], field: str, words: str
) -> None:
    with pytest.raises(LimitExceeded) as info:
        SafetyLimits(**values)
    assert info.value.field == field and words in info.value.reason, info.value


def test_built_limits_hold_plain_numbers() -> None:
    class Sly(float):
        """A number that compares as small but is not."""

        def __gt__(self, other: object) -> bool:
            return False

    limits = SafetyLimits(power_max_w=Sly(30.0), stim_amplitude_max_mv=2000)
    assert type(limits.power_max_w) is float and limits.power_max_w == 30.0
    assert type(limits.stim_amplitude_max_mv) is int
    with pytest.raises(LimitExceeded):
        SafetyLimits(power_max_w=Sly(200.0))


@given(values=_limit_values())
def test_any_safety_limits_that_can_be_built_is_within_the_hard_limits(values: dict[str, Any]) -> None:
    try:
        built = SafetyLimits(**values)
    except LimitExceeded:
        return
    for field in dataclasses.fields(SafetyLimits):
        value, limit = getattr(built, field.name), getattr(HARD_LIMITS, field.name)
        assert value >= limit if field.name in MINIMUM_LIMITS else 0 < value <= limit
    assert built.impedance_min_ohm < built.impedance_max_ohm
