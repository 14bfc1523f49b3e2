"""The cart configuration (TOML), and the effective limits it yields: hard limits, only ever tightened.

A configuration value that would loosen a hard limit is refused, naming the field and the limit it tried
to pass; there is no switch that disables a check. Unknown keys are refused too, so a misspelt limit can
never be silently ignored.

:class:`SafetyLimits` checks itself as well: the configuration is not the only way to build one, and
``safety`` must hold even if the code that hands the gate its limits is wrong or hostile.
"""

from __future__ import annotations

import math
import tomllib
from dataclasses import dataclass, fields, replace
from pathlib import Path
from typing import Annotated, Any, Final, cast

from pydantic import BaseModel, ConfigDict, Field, Strict, ValidationError, model_validator

from safety import limits as hard
from safety.errors import ConfigError, FieldRefusal, LimitExceeded


@dataclass(frozen=True, slots=True)
class SafetyLimits:
    """The limits the gate enforces: the hard limits, or tighter values from the configuration.

    Every instance is checked as it is built (:meth:`__post_init__`), so one that loosens a hard limit
    cannot exist: each value must be a positive finite number no looser than its hard limit (a maximum at
    most it, a minimum at least it), and the impedance window must stay open. Values are stored as plain
    ``float``/``int``, so a number type with its own comparisons cannot pass the check and act differently
    in the interlocks.
    """

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

    def __post_init__(self) -> None:
        """Refuse (:class:`LimitExceeded`) any value that loosens its hard limit, then store plain numbers."""
        for name, limit in _HARD_VALUES.items():
            value = getattr(self, name)
            try:
                object.__setattr__(self, name, checked_limit(name, value))
            except ValueError as exc:
                raise LimitExceeded(name, value, limit, str(exc)) from None
        reason = window_refusal(self.impedance_min_ohm, self.impedance_max_ohm)
        if reason is not None:
            raise LimitExceeded("impedance_min_ohm", self.impedance_min_ohm, self.impedance_max_ohm, reason)


# The hard limits by field, taken from this class's defaults (not from an instance's class, which could be
# a subclass with other defaults). Defined before the first instance is built.
_HARD_VALUES: Final[dict[str, float]] = {f.name: cast(float, f.default) for f in fields(SafetyLimits)}
LIMIT_FIELDS: Final = tuple(_HARD_VALUES)
# Limits that are minima: tightening raises them. Every other limit is a maximum.
MINIMUM_LIMITS: Final = frozenset({"impedance_min_ohm"})
USABLE_FLOORS: Final[dict[str, float]] = {"stim_amplitude_max_mv": hard.STIM_AMPLITUDE_STEP_MV}
"""The least a maximum may be tightened to and still allow a plan: a stimulation maximum below the first 100 mV
step would refuse every plan (each must reach that step), a cart configured to do nothing, found only at the cart."""


def checked_limit(name: str, value: object) -> float:
    """``value`` as a plain ``int``/``float`` for the limit ``name``; ``ValueError(reason)`` if it is not a
    number, not positive and finite, looser than the hard limit, or tighter than any plan could run under
    (:data:`USABLE_FLOORS`). Converted *before* it is checked, so the
    number checked is the number kept. Shared by :class:`SafetyLimits` and :class:`LimitsConfig`."""
    limit = _HARD_VALUES[name]
    integral = isinstance(limit, int)
    if isinstance(value, bool) or not isinstance(value, int if integral else int | float):
        raise ValueError(f"{value!r} is not {'an integer' if integral else 'a number'}")
    try:
        number: float = int(value) if integral else float(value)
        finite = math.isfinite(number)
    except OverflowError:  # an int beyond any float
        finite = False
    if not (finite and number > 0):
        raise ValueError(f"{value} is not a positive finite number")
    if name in MINIMUM_LIMITS and number < limit:
        raise ValueError(f"{value} is below the hard limit {limit}")
    if name not in MINIMUM_LIMITS and number > limit:
        raise ValueError(f"{value} exceeds the hard limit {limit}")
    if number < USABLE_FLOORS.get(name, 0.0):
        raise ValueError(f"{value} is below {USABLE_FLOORS[name]:g}, under which no plan can be run")
    return number


def window_refusal(impedance_min_ohm: float, impedance_max_ohm: float) -> str | None:
    """Why the impedance window is empty, or None (each end is already inside the hard window)."""
    if impedance_min_ohm >= impedance_max_ohm:
        return f"{impedance_min_ohm} Ω leaves no impedance window below {impedance_max_ohm} Ω"
    return None


def validated_limits(limits: SafetyLimits) -> SafetyLimits:
    """A fresh, checked copy of ``limits``: what the gate keeps.

    A frozen dataclass can still be changed after its check (``object.__setattr__``), or be a subclass;
    rebuilding a plain :class:`SafetyLimits` from the values re-runs the check on what will be enforced.
    """
    return SafetyLimits(**{name: getattr(limits, name) for name in LIMIT_FIELDS})


HARD_LIMITS: Final = SafetyLimits()

_Positive = Annotated[float, Field(gt=0, allow_inf_nan=False)]
_PositiveInt = Annotated[int, Field(gt=0)]


def _limit(description: str) -> Any:
    """A :class:`LimitsConfig` field: an optional tighter value for a hard limit (absent keeps the hard limit)."""
    return Field(default=None, description=description)


class LimitsConfig(BaseModel):
    """Optional tighter values for the hard limits; a field left out keeps the hard limit.

    Each ``description`` says what the limit bounds; docs/config.md's limits table is generated from them and
    from the hard values (``python -m tests.docs_tables --write``), and a test fails when the two differ.
    """

    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)  # as a plan's: no true for 1

    tip_temp_max_c: _Positive | None = _limit(
        "Tip temperature limit of a continuous or bipolar lesion: its set temperature may be at most 2 °C below "
        "it; `over_temperature` trips above the lower of set temperature + over_temp_margin_c and this.")
    pulsed_tip_temp_max_c: _Positive | None = _limit(
        "Tip temperature limit of a pulsed lesion: its set temperature may be at most 2 °C below it; "
        "`pulsed_over_temperature` trips above it.")
    power_max_w: _Positive | None = _limit(
        "Highest power cap a lesion may plan (`power_cap_w`), per channel or bipolar pair.")
    impedance_min_ohm: _Positive | None = _limit(
        "Lowest lower end of a lesion's impedance window (`impedance_min_ohm`).")
    impedance_max_ohm: _Positive | None = _limit(
        "Highest upper end of a lesion's impedance window (`impedance_max_ohm`).")
    lesion_rf_time_max_s: _Positive | None = _limit(
        "Longest `lesion_time_s` (RF time, ramp included); `lesion_time_exceeded` trips at the lower of "
        f"lesion_time_s + {hard.LESION_TIME_TOLERANCE_S:g} s and this.")
    telemetry_stale_s: _Positive | None = _limit(
        "`telemetry_stale` trips when the newest telemetry may be older than this.")
    link_loss_s: _Positive | None = _limit("`link_lost` trips after this long without a generator HEARTBEAT or STATUS.")
    stim_amplitude_max_mv: _PositiveInt | None = _limit(
        "Highest stimulation amplitude a plan may reach (`max_amplitude_mv`) and the gate may send; at least 100 "
        "(the first step).")
    stim_frequency_max_hz: _Positive | None = _limit("Highest sensory or motor test frequency a plan may set.")
    stim_pulse_width_max_us: _PositiveInt | None = _limit("Longest stimulation pulse width a plan may set.")
    ramp_rate_max_c_per_s: _Positive | None = _limit("Fastest ramp a lesion may plan (`ramp_rate_c_per_s`).")
    pulsed_voltage_max_v: _Positive | None = _limit("Highest peak voltage a pulsed lesion may plan (`max_voltage_v`).")
    over_temp_margin_c: _Positive | None = _limit(
        "How far a tip may go above its set temperature before `over_temperature` trips.")
    probe_face_temp_max_c: _Positive | None = _limit(
        "`probe_face_over_temperature` trips when the ultrasound probe's face is hotter.")
    imaging_frame_age_max_s: _Positive | None = _limit(
        "Highest `imaging_frame_max_age_s` a plan may set: how old the newest ultrasound frame may be for the image "
        "to count as live.")

    @model_validator(mode="after")
    def _only_tightens(self) -> LimitsConfig:
        for name in LIMIT_FIELDS:
            value = getattr(self, name)
            if value is None:
                continue
            try:
                checked_limit(name, value)
            except ValueError as exc:
                raise FieldRefusal(name, f"{exc} (configuration may only tighten limits)") from None
        low = hard.IMPEDANCE_MIN_OHM if self.impedance_min_ohm is None else self.impedance_min_ohm
        high = hard.IMPEDANCE_MAX_OHM if self.impedance_max_ohm is None else self.impedance_max_ohm
        reason = window_refusal(low, high)
        if reason is not None:
            raise FieldRefusal("impedance_min_ohm", reason)
        return self

    def effective(self) -> SafetyLimits:
        """The hard limits with this configuration's tighter values applied."""
        changes: dict[str, Any] = {n: getattr(self, n) for n in LIMIT_FIELDS if getattr(self, n) is not None}
        return replace(HARD_LIMITS, **changes)


class CartConfig(BaseModel):
    """Device settings and tighter limits for one cart."""

    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)  # as a plan's: no true for 1

    generator_url: str | None = Field(
        default=None, description="The generator: a pyserial URL or device path (`/dev/ttyUSB0`, "
        "`socket://127.0.0.1:5760`); the procedure then runs in real time. Absent: the in-process simulator.",
        json_schema_extra={"bounds": "not empty"})
    probe: str = Field(
        default="sim", description="The ultrasound probe: `sim` (the in-process simulator's), `none` (a plan "
        "without imaging), `usb:VID:PID` in hex, or `tcp:[HOST:]PORT` (the probe `rfa sim --probe tcp:PORT` "
        "serves).", json_schema_extra={"bounds": "one of those four forms"})
    record_dir: Annotated[Path, Strict(False)] = Field(  # written as a string
        default=Path("records"), description="Directory the procedure records are written to (relative to the "
        "directory `rfa` runs in).")
    limits: LimitsConfig = Field(
        default=LimitsConfig(), description="Tighter values for the hard limits (table below).")

    @model_validator(mode="after")
    def _probe_selection(self) -> CartConfig:
        if self.generator_url is not None and not self.generator_url.strip():
            raise FieldRefusal("generator_url", "an empty URL; leave it out to run the in-process simulator")
        if self.probe in ("sim", "none"):
            return self
        kind, _, ids = self.probe.partition(":")
        try:
            if kind == "usb":
                vid, _, pid = ids.partition(":")
                valid = 0 <= int(vid, 16) <= 0xFFFF and 0 <= int(pid, 16) <= 0xFFFF
            else:  # tcp:[HOST:]PORT, the probe `rfa sim --probe tcp:PORT` serves; as sim.probe.remote parses it
                port = ids.rpartition(":")[2]
                valid = kind == "tcp" and port.isascii() and port.isdigit() and int(port) <= 0xFFFF
        except ValueError:
            valid = False
        if not valid:
            raise FieldRefusal("probe", f"{self.probe!r} is not 'sim', 'none', 'usb:VID:PID' (hex) or "
                                        "'tcp:[HOST:]PORT'")
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


def read_toml(path: Path) -> dict[str, Any]:
    """A TOML file's table; ``ValueError`` ("cannot read TOML: …") saying why not. A UTF-8 byte-order mark, which
    Windows Notepad writes, is allowed; text in another encoding is refused naming the line of its first such byte,
    where the decoder would name only a byte offset."""
    try:
        raw = path.read_bytes()
        return tomllib.loads(raw.decode("utf-8-sig"))
    except UnicodeDecodeError as exc:
        line = raw.count(b"\n", 0, exc.start) + 1
        column = exc.start - (raw.rfind(b"\n", 0, exc.start) + 1) + 1
        raise ValueError(f"cannot read TOML: not UTF-8 text (byte 0x{raw[exc.start]:02X} at line {line}, column "
                         f"{column}); save the file as UTF-8") from exc
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise ValueError(f"cannot read TOML: {exc}") from exc


def load_config(path: Path) -> CartConfig:
    """Read and validate a cart configuration TOML file."""
    try:
        data = read_toml(path)
    except ValueError as exc:
        raise ConfigError(str(path), [("", str(exc))]) from exc
    return parse_config(data, str(path))
