"""The lesion plan (TOML): what the procedure will deliver, validated against the effective limits.

A plan names its electrodes, channels, modes and targets. It is refused, naming the field and the reason,
when a value passes a hard or configured limit or when it is inconsistent: a pulsed set temperature
above the pulsed limit, a channel used twice (a bipolar lesion uses its partner channel too), a ramp that
cannot reach the set temperature within the lesion time, an empty impedance window.

``lesion_time_s`` is the RF time of the lesion *including the ramp*: it is the number the gate's
"lesion time exceeded" interlock compares RF-on time with, so there is one meaning for both.

The limits to validate against come in the pydantic validation context (``{"limits": SafetyLimits}``);
without one the hard limits apply, so a plan built in code can never pass more than the hard limits.

Each field's ``description`` says what it means, and ``json_schema_extra={"bounds": ...}`` the bounds its
validator checks beyond the field's own constraints: docs/plan.md's field tables are generated from them
(``python -m tests.docs_tables --write``), and a test fails when the two differ.
"""

from __future__ import annotations

import enum
from pathlib import Path
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, Strict, ValidationError, ValidationInfo, model_validator

from firmware_bridge.messages import N_CHANNELS, OutputMode
from safety import limits as hard
from safety.config import HARD_LIMITS, SafetyLimits, read_toml
from safety.errors import FieldRefusal, PlanError

_Positive = Annotated[float, Field(gt=0, allow_inf_nan=False)]
_Finite = Annotated[float, Field(allow_inf_nan=False)]


def _limits(info: ValidationInfo) -> SafetyLimits:
    context = info.context
    if isinstance(context, dict):
        found = context.get("limits")
        if isinstance(found, SafetyLimits):
            return found
    return HARD_LIMITS


class LesionMode(enum.StrEnum):
    CONTINUOUS = "continuous"
    PULSED = "pulsed"
    BIPOLAR = "bipolar"

    @property
    def output_mode(self) -> OutputMode:
        """The ``SET_OUTPUT`` mode byte for this lesion mode."""
        return _OUTPUT_MODES[self]


_OUTPUT_MODES = {
    LesionMode.CONTINUOUS: OutputMode.RF_CONTINUOUS,
    LesionMode.PULSED: OutputMode.RF_PULSED,
    LesionMode.BIPOLAR: OutputMode.RF_BIPOLAR,
}


class _Strict(BaseModel):
    """No unknown field, and no value of the wrong type taken for the right one: pydantic's default would read
    ``power_cap_w = true`` as 1 W and ``set_temp_c = "80"`` as 80 °C, a typo in a plan that then runs. (A whole
    number is still a number: ``set_temp_c = 80`` is 80.0.)"""

    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)


class Electrode(_Strict):
    """The electrode the plan expects on a channel; checked against the generator's ELECTRODE_INFO."""

    gauge: int = Field(ge=hard.ELECTRODE_GAUGE_MIN, le=hard.ELECTRODE_GAUGE_MAX,
                       description="Cannula gauge of the electrode the plan expects on the channel; checked against "
                       "the generator's ELECTRODE_INFO (`electrode_mismatch`).")
    active_tip_mm: float = Field(ge=hard.ACTIVE_TIP_MIN_MM, le=hard.ACTIVE_TIP_MAX_MM, allow_inf_nan=False,
                                 description="Length of the active (uninsulated) tip; checked like the gauge.")
    cooled: bool = Field(default=False, description="An internally cooled electrode; checked like the gauge.")


class PulsedSettings(_Strict):
    """Pulsed-RF waveform: the generator regulates peak voltage, the duty cycle keeps the tip cool."""

    pulse_width_us: int = Field(
        ge=hard.PULSE_WIDTH_MIN_US, le=hard.PULSE_WIDTH_MAX_US, description="Width of each RF pulse.",
        json_schema_extra={"bounds": f"duty cycle (width × rate as sent) ≤ {hard.PULSED_DUTY_MAX:.0%}"})
    rate_hz: float = Field(
        gt=0, le=hard.PULSE_RATE_MAX_HZ, allow_inf_nan=False,
        description="Pulses per second; sent to the generator in steps of 0.1 Hz (rounded).",
        json_schema_extra={"bounds": "at least 0.1 Hz once rounded to 0.1 Hz"})
    max_voltage_v: _Positive = Field(
        description="Highest peak voltage the controller may command; it lowers the voltage to keep the tip under "
        "the set temperature.",
        json_schema_extra={"bounds": f"≤ pulsed_voltage_max_v ({hard.PULSED_VOLTAGE_MAX_V:g} V hard)"})

    @property
    def rate_deci_hz(self) -> int:
        """The pulse rate as SET_OUTPUT carries it, in 0.1 Hz: what the generator runs, and what is checked."""
        return round(self.rate_hz * 10)

    @model_validator(mode="after")
    def _check(self, info: ValidationInfo) -> PulsedSettings:
        limits = _limits(info)
        if self.max_voltage_v > limits.pulsed_voltage_max_v:
            raise FieldRefusal(
                "max_voltage_v",
                f"{self.max_voltage_v} V exceeds pulsed_voltage_max_v = {limits.pulsed_voltage_max_v} V",
            )
        if self.rate_deci_hz < 1:
            raise FieldRefusal("rate_hz", f"{self.rate_hz} Hz is below the wire's 0.1 Hz resolution: it would be 0 Hz")
        duty = self.pulse_width_us * 1e-6 * self.rate_deci_hz / 10  # at the rate sent, not the rate written
        if duty > hard.PULSED_DUTY_MAX:
            raise FieldRefusal(
                "pulse_width_us",
                f"duty cycle {duty:.1%} (width × rate) exceeds "
                f"{hard.PULSED_DUTY_MAX:.0%}: that is continuous RF",
            )
        return self


class Lesion(_Strict):
    """One lesion on one channel (a bipolar lesion on channel 1 or 3 also uses channel 2 or 4)."""

    channel: int = Field(
        ge=1, le=N_CHANNELS,
        description="Generator channel; a bipolar lesion also drives the next one (pair 1–2 or 3–4).",
        json_schema_extra={"bounds": "bipolar: 1 or 3"})
    electrode: Electrode = Field(description="The electrode expected on the channel (table below).")
    mode: Annotated[LesionMode, Strict(False)] = Field(  # written as its name ("pulsed")
        default=LesionMode.CONTINUOUS, description="Conventional RF, pulsed RF, or bipolar RF between a pair.")
    set_temp_c: _Finite = Field(
        description="Tip temperature to ramp to and hold; for a pulsed lesion a ceiling, which its voltage cap may "
        "keep the tip under.",
        json_schema_extra={"bounds": f"> {hard.BODY_TEMP_C:g} °C (body temperature); ≤ tip_temp_max_c − "
                                     f"{hard.SET_TEMP_HEADROOM_C:g} °C "
                                     f"({hard.TIP_TEMP_MAX_C - hard.SET_TEMP_HEADROOM_C:g} °C hard); pulsed: ≤ "
                                     f"pulsed_tip_temp_max_c − {hard.SET_TEMP_HEADROOM_C:g} °C "
                                     f"({hard.PULSED_TIP_TEMP_MAX_C - hard.SET_TEMP_HEADROOM_C:g} °C hard), "
                                     "room for the loop's overshoot below the trip"})
    ramp_rate_c_per_s: _Positive = Field(
        description=f"How fast the set point climbs from {hard.BODY_TEMP_C:g} °C to the set temperature.",
        json_schema_extra={"bounds": f"≤ ramp_rate_max_c_per_s ({hard.RAMP_RATE_MAX_C_PER_S:g} °C/s hard); the "
                                     "ramp must end before lesion_time_s"})
    lesion_time_s: _Positive = Field(
        description="RF time of the lesion, ramp included: the channel stops when it is up.",
        json_schema_extra={"bounds": f"≤ lesion_rf_time_max_s ({hard.LESION_RF_TIME_MAX_S:g} s hard)"})
    power_cap_w: _Positive = Field(
        description="Highest power the controller may command on the channel (bipolar: for the pair).",
        json_schema_extra={"bounds": f"≤ power_max_w ({hard.POWER_MAX_W:g} W hard)"})
    impedance_min_ohm: _Positive = Field(
        description="Lower end of the impedance window: arming needs the impedance inside it, and "
        "`impedance_low` (a short) trips below it.",
        json_schema_extra={"bounds": f"≥ impedance_min_ohm ({hard.IMPEDANCE_MIN_OHM:g} Ω hard); below "
                                     "impedance_max_ohm"})
    impedance_max_ohm: _Positive = Field(
        description="Upper end of the impedance window: `impedance_high` (not in tissue) trips above it.",
        json_schema_extra={"bounds": f"≤ impedance_max_ohm ({hard.IMPEDANCE_MAX_OHM:g} Ω hard)"})
    pulsed: PulsedSettings | None = Field(
        default=None, description="The pulsed waveform (table below): required for a pulsed lesion, refused for "
        "the others.")

    @property
    def ramp_time_s(self) -> float:
        """Time to ramp from body temperature to the set temperature at the planned rate."""
        return (self.set_temp_c - hard.BODY_TEMP_C) / self.ramp_rate_c_per_s

    @property
    def channels(self) -> tuple[int, ...]:
        """The channels this lesion drives: its own, and its partner when bipolar."""
        return (self.channel, self.channel + 1) if self.mode is LesionMode.BIPOLAR else (self.channel,)

    @model_validator(mode="after")
    def _check(self, info: ValidationInfo) -> Lesion:
        limits = _limits(info)
        temp_max, temp_name = (
            (limits.pulsed_tip_temp_max_c, "pulsed_tip_temp_max_c")
            if self.mode is LesionMode.PULSED
            else (limits.tip_temp_max_c, "tip_temp_max_c")
        )
        if self.set_temp_c > temp_max:
            raise FieldRefusal("set_temp_c", f"{self.set_temp_c} °C exceeds {temp_name} = {temp_max} °C")
        if self.set_temp_c > temp_max - hard.SET_TEMP_HEADROOM_C:
            raise FieldRefusal(
                "set_temp_c",
                f"{self.set_temp_c} °C is within {hard.SET_TEMP_HEADROOM_C:g} °C of {temp_name} = {temp_max} °C, "
                f"where the tip trips: the loop's overshoot would stop the lesion (at most "
                f"{temp_max - hard.SET_TEMP_HEADROOM_C:g} °C)",
            )
        if self.set_temp_c <= hard.BODY_TEMP_C:
            raise FieldRefusal(
                "set_temp_c", f"{self.set_temp_c} °C is not above body temperature {hard.BODY_TEMP_C} °C"
            )
        if self.ramp_rate_c_per_s > limits.ramp_rate_max_c_per_s:
            raise FieldRefusal(
                "ramp_rate_c_per_s",
                f"{self.ramp_rate_c_per_s} °C/s exceeds "
                f"ramp_rate_max_c_per_s = {limits.ramp_rate_max_c_per_s} °C/s",
            )
        if self.lesion_time_s > limits.lesion_rf_time_max_s:
            raise FieldRefusal(
                "lesion_time_s",
                f"{self.lesion_time_s} s exceeds lesion_rf_time_max_s = {limits.lesion_rf_time_max_s} s",
            )
        if self.ramp_time_s >= self.lesion_time_s:
            raise FieldRefusal(
                "ramp_rate_c_per_s",
                f"at {self.ramp_rate_c_per_s} °C/s the tip reaches "
                f"{self.set_temp_c} °C only after {self.ramp_time_s:.1f} s, "
                f"not within lesion_time_s = {self.lesion_time_s} s",
            )
        if self.power_cap_w > limits.power_max_w:
            raise FieldRefusal(
                "power_cap_w", f"{self.power_cap_w} W exceeds power_max_w = {limits.power_max_w} W"
            )
        if self.impedance_min_ohm < limits.impedance_min_ohm:
            raise FieldRefusal(
                "impedance_min_ohm",
                f"{self.impedance_min_ohm} Ω is below impedance_min_ohm = {limits.impedance_min_ohm} Ω",
            )
        if self.impedance_max_ohm > limits.impedance_max_ohm:
            raise FieldRefusal(
                "impedance_max_ohm",
                f"{self.impedance_max_ohm} Ω exceeds impedance_max_ohm = {limits.impedance_max_ohm} Ω",
            )
        if self.impedance_min_ohm >= self.impedance_max_ohm:
            raise FieldRefusal(
                "impedance_min_ohm",
                f"{self.impedance_min_ohm} Ω is not below impedance_max_ohm = {self.impedance_max_ohm} Ω",
            )
        if self.mode is LesionMode.PULSED and self.pulsed is None:
            raise FieldRefusal("pulsed", "a pulsed lesion needs its pulsed settings")
        if self.mode is not LesionMode.PULSED and self.pulsed is not None:
            raise FieldRefusal("pulsed", f"pulsed settings given for a {self.mode.value} lesion")
        if self.mode is LesionMode.BIPOLAR and self.channel % 2 == 0:
            raise FieldRefusal(
                "channel", "a bipolar lesion is planned on channel 1 (pair 1–2) or 3 (pair 3–4)"
            )
        return self


class ScriptedResponses(_Strict):
    """Patient responses for unattended runs: the amplitude at which each test responds (None: none)."""

    sensory_threshold_mv: int | None = Field(
        default=None, gt=0, description="Amplitude at which the scripted patient reports the sensory response; "
        "absent: no response.", json_schema_extra={"bounds": "≤ max_amplitude_mv"})
    motor_threshold_mv: int | None = Field(
        default=None, gt=0, description="Amplitude at which the scripted patient twitches (a motor response stops "
        "the procedure before arming); absent: no response.", json_schema_extra={"bounds": "≤ max_amplitude_mv"})


class StimulationSettings(_Strict):
    """Sensory (50 Hz) and motor (2 Hz) testing before the lesion."""

    sensory_frequency_hz: _Positive = Field(
        default=50.0, description="Pulse frequency of the sensory test.",
        json_schema_extra={"bounds": f"≤ stim_frequency_max_hz ({hard.STIM_FREQUENCY_MAX_HZ:g} Hz hard)"})
    motor_frequency_hz: _Positive = Field(
        default=2.0, description="Pulse frequency of the motor test.",
        json_schema_extra={"bounds": f"≤ stim_frequency_max_hz ({hard.STIM_FREQUENCY_MAX_HZ:g} Hz hard)"})
    pulse_width_us: int = Field(
        default=1000, gt=0, description="Stimulation pulse width, both tests.",
        json_schema_extra={"bounds": f"≤ stim_pulse_width_max_us ({hard.STIM_PULSE_WIDTH_MAX_US} µs hard)"})
    max_amplitude_mv: int = Field(
        default=2000, gt=0, description="Highest amplitude each test climbs to (0.1 V every 0.5 s until the patient "
        "responds); a motor response below it stops the procedure before arming.",
        json_schema_extra={"bounds": f"≥ {hard.STIM_AMPLITUDE_STEP_MV} mV (the first step); ≤ stim_amplitude_max_mv "
                                     f"({hard.STIM_AMPLITUDE_MAX_MV} mV hard)"})
    scripted: ScriptedResponses | None = Field(
        default=None, description="The patient's answers for unattended runs (`--yes`): table below.")

    @model_validator(mode="after")
    def _check(self, info: ValidationInfo) -> StimulationSettings:
        limits = _limits(info)
        for name in ("sensory_frequency_hz", "motor_frequency_hz"):
            value = getattr(self, name)
            if value > limits.stim_frequency_max_hz:
                raise FieldRefusal(
                    name, f"{value} Hz exceeds stim_frequency_max_hz = {limits.stim_frequency_max_hz} Hz"
                )
        if self.pulse_width_us > limits.stim_pulse_width_max_us:
            raise FieldRefusal(
                "pulse_width_us",
                f"{self.pulse_width_us} µs exceeds stim_pulse_width_max_us = "
                f"{limits.stim_pulse_width_max_us} µs",
            )
        if self.max_amplitude_mv < hard.STIM_AMPLITUDE_STEP_MV:
            raise FieldRefusal(
                "max_amplitude_mv",
                f"{self.max_amplitude_mv} mV is below the first stimulation step ({hard.STIM_AMPLITUDE_STEP_MV} mV): "
                "the sensory and motor tests would deliver nothing and report no response (the unit is mV: "
                "2 V is 2000)",
            )
        if self.max_amplitude_mv > limits.stim_amplitude_max_mv:
            raise FieldRefusal(
                "max_amplitude_mv",
                f"{self.max_amplitude_mv} mV exceeds stim_amplitude_max_mv = "
                f"{limits.stim_amplitude_max_mv} mV",
            )
        if self.scripted is not None:
            for name in ("sensory_threshold_mv", "motor_threshold_mv"):
                value = getattr(self.scripted, name)
                if value is not None and value > self.max_amplitude_mv:
                    raise FieldRefusal(
                        f"scripted.{name}",
                        f"{value} mV is above max_amplitude_mv = "
                        f"{self.max_amplitude_mv} mV: the test never reaches it",
                    )
        return self


class LesionPlan(_Strict):
    """A validated lesion plan: the only input from which the gate derives what it may enable."""

    name: str = Field(  # it names the record's file too
        min_length=1, max_length=100, description="Names the plan on the display, in the record, and in the "
        "record's file name (where characters other than letters, digits, - and _ become _).")
    imaging_required: bool = Field(
        default=True, description="The procedure needs live ultrasound guidance: arming, stimulation and RF need "
        "a live image, and `rfa run --probe none` is refused.")
    imaging_frame_max_age_s: _Positive = Field(
        default=0.5, description="How old the newest ultrasound frame may be for the image to count as live "
        f"(during RF a drop-out may last {hard.IMAGING_LOSS_GRACE_S:g} s longer).",
        json_schema_extra={"bounds": f"≤ imaging_frame_age_max_s ({hard.IMAGING_FRAME_AGE_MAX_S:g} s hard)"})
    stimulation: StimulationSettings = Field(
        default=StimulationSettings(), description="The sensory and motor tests before the lesions (table below).")
    lesions: Annotated[tuple[Lesion, ...], Strict(False)] = Field(  # a TOML array; each lesion strict itself
        description="One `[[lesions]]` table per lesion (table below).",
        json_schema_extra={"bounds": "at least one; each channel used once"})

    @model_validator(mode="after")
    def _check(self, info: ValidationInfo) -> LesionPlan:
        limits = _limits(info)
        if self.imaging_frame_max_age_s > limits.imaging_frame_age_max_s:
            raise FieldRefusal(
                "imaging_frame_max_age_s",
                f"{self.imaging_frame_max_age_s} s exceeds "
                f"imaging_frame_age_max_s = {limits.imaging_frame_age_max_s} s",
            )
        if not self.lesions:
            raise FieldRefusal("lesions", "a plan needs at least one lesion")
        used: dict[int, int] = {}
        for index, lesion in enumerate(self.lesions):
            for channel in lesion.channels:
                if channel in used:
                    raise FieldRefusal(
                        f"lesions.{index}.channel",
                        f"channel {channel} is already used by lesions.{used[channel]}",
                    )
                used[channel] = index
        self._one_pulsed_waveform()
        return self

    def _one_pulsed_waveform(self) -> None:
        """Every pulsed lesion must share one waveform (pulse width and rate).

        The control loop requests each mode's channels together and one SET_OUTPUT carries one waveform,
        so the gate would refuse pulsed lesions that differ at their first RF tick, mid-procedure. Refusing
        the plan says so before the procedure starts, naming the field that differs.
        """
        first: tuple[int, PulsedSettings] | None = None
        for index, lesion in enumerate(self.lesions):
            if lesion.pulsed is None:
                continue
            if first is None:
                first = (index, lesion.pulsed)
                continue
            ref_index, ref = first
            for name in ("pulse_width_us", "rate_hz"):
                if getattr(lesion.pulsed, name) != getattr(ref, name):
                    raise FieldRefusal(
                        f"lesions.{index}.pulsed.{name}",
                        f"{getattr(lesion.pulsed, name)} differs from lesions.{ref_index}.pulsed.{name} = "
                        f"{getattr(ref, name)}: pulsed lesions share one waveform (one SET_OUTPUT)",
                    )

    def lesion_on(self, channel: int) -> Lesion | None:
        """The lesion that drives ``channel`` (a bipolar lesion drives its partner too), if any."""
        for lesion in self.lesions:
            if channel in lesion.channels:
                return lesion
        return None


def parse_plan(
    data: dict[str, Any], limits: SafetyLimits = HARD_LIMITS, source: str = "lesion plan"
) -> LesionPlan:
    """Validate already-parsed plan data against ``limits``; a refusal names each field and reason."""
    try:
        return LesionPlan.model_validate(data, context={"limits": limits})
    except ValidationError as exc:
        raise PlanError.from_validation_error(source, exc) from exc


def check_plan(plan: LesionPlan, limits: SafetyLimits) -> LesionPlan:
    """Re-validate a plan (perhaps built in code) against tighter effective limits."""
    return parse_plan(plan.model_dump(), limits, f"lesion plan {plan.name!r}")


def load_plan(path: Path, limits: SafetyLimits = HARD_LIMITS) -> LesionPlan:
    """Read and validate a lesion plan TOML file."""
    try:
        data = read_toml(path)
    except ValueError as exc:
        raise PlanError(str(path), [("", str(exc))]) from exc
    return parse_plan(data, limits, str(path))


def default_genicular_plan() -> LesionPlan:
    """Three conventional genicular lesions (superomedial, superolateral, inferomedial), one per channel.

    18 G electrodes with 10 mm active tips at 80 °C: a 2 °C/s ramp reaches 80 °C after 21.5 s, then the
    lesion holds for the rest of its 90 s. Imaging is required; stimulation checks come first (sensory
    50 Hz, motor 2 Hz). The scripted responses let an unattended run pass its checks: a concordant
    sensory response at 0.4 V and no motor response up to 2 V. Shipped as ``docs/examples/genicular.toml``.
    """
    electrode = Electrode(gauge=18, active_tip_mm=10.0, cooled=False)
    lesions = tuple(
        Lesion(
            channel=channel,
            electrode=electrode,
            mode=LesionMode.CONTINUOUS,
            set_temp_c=80.0,
            ramp_rate_c_per_s=2.0,
            lesion_time_s=90.0,
            power_cap_w=25.0,
            impedance_min_ohm=60.0,
            impedance_max_ohm=800.0,
        )
        for channel in (1, 2, 3)
    )
    return LesionPlan(
        name="genicular-3",
        imaging_required=True,
        imaging_frame_max_age_s=0.5,
        stimulation=StimulationSettings(
            sensory_frequency_hz=50.0,
            motor_frequency_hz=2.0,
            pulse_width_us=1000,
            max_amplitude_mv=2000,
            scripted=ScriptedResponses(sensory_threshold_mv=400),
        ),
        lesions=lesions,
    )
