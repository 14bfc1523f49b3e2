"""The cart configuration (TOML), and the effective limits it yields: hard limits, only ever tightened.

A configuration value that would loosen a hard limit is refused, naming the field and the limit it tried
to pass; there is no switch that disables a check. Unknown keys are refused too, so a misspelt limit can
never be silently ignored.
"""

from __future__ import annotations

import tomllib
from dataclasses import dataclass, fields, replace
from pathlib import Path
from typing import Annotated, Any, Final

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from safety import limits as hard
from safety.errors import ConfigError, FieldRefusal


@dataclass(frozen=True, slots=True)
class SafetyLimits:
    """The limits the gate enforces: the hard limits, or tighter values from the configuration."""

    tip_temp_max_c: float = hard.TIP_TEMP_MAX_C
    pulsed_tip_temp_max_c: float = hard.PULSED_TIP_TEMP_MAX_C
    power_max_w: float = hard.POWER_MAX_W
    impedance_min_ohm: float = hard.IMPEDANCE_MIN_OHM
    impedance_max_ohm: float = hard.IMPEDANCE_MAX_OHM
    lesion_rf_time_max_s: float = hard.LESION_RF_TIME_MAX_S
    telemetry_stale_s: float = hard.TELEMETRY_STALE_S
    link_loss_s: float = hard.LINK_LOSS_S
    stim_amplitude_max_mv: int = hard.STIM_AMPLITUDE_MAX_MV
    stim_frequency_max_hz: float = hard.STIM_FREQUENCY_MAX_HZ
    stim_pulse_width_max_us: int = hard.STIM_PULSE_WIDTH_MAX_US
    ramp_rate_max_c_per_s: float = hard.RAMP_RATE_MAX_C_PER_S
    pulsed_voltage_max_v: float = hard.PULSED_VOLTAGE_MAX_V
    over_temp_margin_c: float = hard.OVER_TEMP_MARGIN_C
    probe_face_temp_max_c: float = hard.PROBE_FACE_TEMP_MAX_C
    imaging_frame_age_max_s: float = hard.IMAGING_FRAME_AGE_MAX_S


HARD_LIMITS: Final = SafetyLimits()
LIMIT_FIELDS: Final = tuple(f.name for f in fields(SafetyLimits))
# Limits that are minima: tightening raises them. Every other limit is a maximum.
MINIMUM_LIMITS: Final = frozenset({"impedance_min_ohm"})

_Positive = Annotated[float, Field(gt=0, allow_inf_nan=False)]
_PositiveInt = Annotated[int, Field(gt=0)]


class LimitsConfig(BaseModel):
    """Optional tighter values for the hard limits; a field left out keeps the hard limit."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    tip_temp_max_c: _Positive | None = None
    pulsed_tip_temp_max_c: _Positive | None = None
    power_max_w: _Positive | None = None
    impedance_min_ohm: _Positive | None = None
    impedance_max_ohm: _Positive | None = None
    lesion_rf_time_max_s: _Positive | None = None
    telemetry_stale_s: _Positive | None = None
    link_loss_s: _Positive | None = None
    stim_amplitude_max_mv: _PositiveInt | None = None
    stim_frequency_max_hz: _Positive | None = None
    stim_pulse_width_max_us: _PositiveInt | None = None
    ramp_rate_max_c_per_s: _Positive | None = None
    pulsed_voltage_max_v: _Positive | None = None
    over_temp_margin_c: _Positive | None = None
    probe_face_temp_max_c: _Positive | None = None
    imaging_frame_age_max_s: _Positive | None = None

    @model_validator(mode="after")
    def _only_tightens(self) -> LimitsConfig:
        for name in LIMIT_FIELDS:
            value = getattr(self, name)
            if value is None:
                continue
            limit = getattr(HARD_LIMITS, name)
            if name in MINIMUM_LIMITS and value < limit:
                raise FieldRefusal(
                    name, f"{value} is below the hard limit {limit} (configuration may only tighten limits)"
                )
            if name not in MINIMUM_LIMITS and value > limit:
                raise FieldRefusal(
                    name, f"{value} exceeds the hard limit {limit} (configuration may only tighten limits)"
                )
        effective = self.effective()
        if effective.impedance_min_ohm >= effective.impedance_max_ohm:
            raise FieldRefusal(
                "impedance_min_ohm",
                f"{effective.impedance_min_ohm} Ω leaves no impedance "
                f"window below {effective.impedance_max_ohm} Ω",
            )
        return self

    def effective(self) -> SafetyLimits:
        """The hard limits with this configuration's tighter values applied."""
        changes: dict[str, Any] = {n: getattr(self, n) for n in LIMIT_FIELDS if getattr(self, n) is not None}
        return replace(HARD_LIMITS, **changes)


class CartConfig(BaseModel):
    """Device settings and tighter limits for one cart."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    generator_url: str | None = None
    """A pyserial URL or device path; ``None`` runs the in-process simulator."""
    probe: str = "sim"
    """``sim``, ``none`` or ``usb:VID:PID`` (hex)."""
    record_dir: Path = Path("records")
    limits: LimitsConfig = LimitsConfig()

    @model_validator(mode="after")
    def _probe_selection(self) -> CartConfig:
        if self.probe in ("sim", "none"):
            return self
        kind, _, ids = self.probe.partition(":")
        vid, _, pid = ids.partition(":")
        try:
            valid = kind == "usb" and 0 <= int(vid, 16) <= 0xFFFF and 0 <= int(pid, 16) <= 0xFFFF
        except ValueError:
            valid = False
        if not valid:
            raise FieldRefusal("probe", f"{self.probe!r} is not 'sim', 'none' or 'usb:VID:PID' (hex)")
        return self

    @property
    def effective_limits(self) -> SafetyLimits:
        return self.limits.effective()


def parse_config(data: dict[str, Any], source: str = "configuration") -> CartConfig:
    """Validate already-parsed TOML data; a refusal names each field path and the reason."""
    try:
        return CartConfig.model_validate(data)
    except ValidationError as exc:
        raise ConfigError.from_validation_error(source, exc) from exc


def load_config(path: Path) -> CartConfig:
    """Read and validate a cart configuration TOML file."""
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
        raise ConfigError(str(path), [("", f"cannot read TOML: {exc}")]) from exc
    return parse_config(data, str(path))
