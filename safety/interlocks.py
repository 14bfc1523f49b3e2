"""The interlocks: pure functions ``(SafetyInputs, rules, now) -> Trip | None`` (ARCHITECTURE.md section 7).

Each interlock has an id, an IEC 60601-1-8 priority, whether it latches, and a scope: a channel interlock
stops that channel (a bipolar pair together), a system interlock stops all four. :class:`SafetyRules` is
the plan and the effective limits compiled into plain per-channel numbers once, so the per-tick work does
not touch pydantic.

An active condition is a *trip* when energy is flowing in its scope (or, for the few marked
``trips_when_idle``, always); otherwise it is an *inhibit*: it refuses output requests but neither sends
``OUTPUT_OFF`` nor latches. That keeps an electrode that is not yet in tissue (impedance open) from
latching a fault before the procedure starts, while the same condition during a lesion stops RF and
latches. The gate applies this rule; the functions here only say whether the condition holds.
"""

from __future__ import annotations

import enum
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Final, NamedTuple

from firmware_bridge.messages import (
    ALL_CHANNELS,
    MESSAGES_BY_ID,
    N_CHANNELS,
    AckResult,
    ChannelTelemetry,
    ElectrodeFlag,
    GeneratorState,
    OutputMode,
    TelemetryFlag,
)
from safety import limits as hard
from safety.config import SafetyLimits
from safety.inputs import ChannelTrend, CommandedChannel, ImagingStatus, SafetyInputs
from safety.plan import Lesion, LesionMode, LesionPlan


class InterlockId(enum.StrEnum):
    OVER_TEMPERATURE = "over_temperature"
    PULSED_OVER_TEMPERATURE = "pulsed_over_temperature"
    IMPEDANCE_LOW = "impedance_low"
    IMPEDANCE_HIGH = "impedance_high"
    IMPEDANCE_ROLL_OFF = "impedance_roll_off"
    THERMOCOUPLE_OPEN = "thermocouple_open"
    THERMOCOUPLE_IMPLAUSIBLE = "thermocouple_implausible"
    THERMOCOUPLE_FROZEN = "thermocouple_frozen"
    TEMPERATURE_NOT_TRACKING = "temperature_not_tracking"
    OVER_POWER = "over_power"
    STIMULATION_MISMATCH = "stimulation_mismatch"
    CHANNEL_FAULT = "channel_fault"
    ELECTRODE_MISMATCH = "electrode_mismatch"
    BOILING_DETECTED = "boiling_detected"
    LESION_TIME_EXCEEDED = "lesion_time_exceeded"
    TELEMETRY_STALE = "telemetry_stale"
    LINK_LOST = "link_lost"
    GENERATOR_FAULT = "generator_fault"
    UNCOMMANDED_OUTPUT = "uncommanded_output"
    CONTROL_LOOP_OVERRUN = "control_loop_overrun"
    IMAGING_LOST = "imaging_lost"
    PROBE_FACE_OVER_TEMPERATURE = "probe_face_over_temperature"
    OPERATOR_STOP = "operator_stop"


class Priority(enum.IntEnum):
    """IEC 60601-1-8 alarm priority: how fast the operator must respond."""

    LOW = 1
    """Awareness: no injury if the operator responds at leisure."""
    MEDIUM = 2
    """Prompt response: reversible or minor injury otherwise."""
    HIGH = 3
    """Immediate response: death or irreversible injury otherwise (a burn)."""


class Scope(enum.Enum):
    CHANNEL = "channel"
    SYSTEM = "system"


@dataclass(frozen=True, slots=True)
class InterlockSpec:
    priority: Priority
    latching: bool
    scope: Scope
    trips_when_idle: bool = False
    """Trips (OUTPUT_OFF, latch) even when no output is commanded: the condition itself is the fault.

    The default for the interlock's trips; a check may lower it for one of its conditions
    (:attr:`Trip.trips_when_idle`)."""


_C, _S = Scope.CHANNEL, Scope.SYSTEM
_H, _M, _L = Priority.HIGH, Priority.MEDIUM, Priority.LOW
SPECS: Final[dict[InterlockId, InterlockSpec]] = {
    InterlockId.OVER_TEMPERATURE: InterlockSpec(_H, True, _C),
    InterlockId.PULSED_OVER_TEMPERATURE: InterlockSpec(_H, True, _C),
    InterlockId.IMPEDANCE_LOW: InterlockSpec(_H, True, _C),
    InterlockId.IMPEDANCE_HIGH: InterlockSpec(_M, True, _C),
    InterlockId.IMPEDANCE_ROLL_OFF: InterlockSpec(_M, True, _C),
    InterlockId.THERMOCOUPLE_OPEN: InterlockSpec(_H, True, _C),
    InterlockId.THERMOCOUPLE_IMPLAUSIBLE: InterlockSpec(_H, True, _C),
    InterlockId.THERMOCOUPLE_FROZEN: InterlockSpec(_H, True, _C),
    InterlockId.TEMPERATURE_NOT_TRACKING: InterlockSpec(_H, True, _C),
    InterlockId.OVER_POWER: InterlockSpec(_H, True, _C),
    InterlockId.STIMULATION_MISMATCH: InterlockSpec(_M, True, _C),
    InterlockId.CHANNEL_FAULT: InterlockSpec(_H, True, _C),
    InterlockId.ELECTRODE_MISMATCH: InterlockSpec(_M, True, _C),
    InterlockId.BOILING_DETECTED: InterlockSpec(_H, True, _C),
    InterlockId.LESION_TIME_EXCEEDED: InterlockSpec(_M, True, _C),
    InterlockId.TELEMETRY_STALE: InterlockSpec(_H, True, _S),
    InterlockId.LINK_LOST: InterlockSpec(_H, True, _S),
    InterlockId.GENERATOR_FAULT: InterlockSpec(_H, True, _S, trips_when_idle=True),
    InterlockId.UNCOMMANDED_OUTPUT: InterlockSpec(_H, True, _S, trips_when_idle=True),
    InterlockId.CONTROL_LOOP_OVERRUN: InterlockSpec(_H, True, _S),
    InterlockId.IMAGING_LOST: InterlockSpec(_M, True, _S),
    InterlockId.PROBE_FACE_OVER_TEMPERATURE: InterlockSpec(_M, True, _S, trips_when_idle=True),
    InterlockId.OPERATOR_STOP: InterlockSpec(_L, True, _S, trips_when_idle=True),
}


# Plain ints: IntFlag arithmetic costs microseconds per test, and these run every tick on every channel.
_OUTPUT_ON: Final = int(TelemetryFlag.OUTPUT_ON)
_THERMOCOUPLE_OPEN: Final = int(TelemetryFlag.THERMOCOUPLE_OPEN)
_CHANNEL_FAULT: Final = int(TelemetryFlag.CHANNEL_FAULT)
_ELECTRODE_CONNECTED: Final = int(TelemetryFlag.ELECTRODE_CONNECTED)
_COOLED: Final = int(ElectrodeFlag.COOLED)
_THERMOCOUPLE_FITTED: Final = int(ElectrodeFlag.THERMOCOUPLE_FITTED)
_FAULT_STATE: Final = int(GeneratorState.FAULT)
_READY_STATES: Final = frozenset({int(GeneratorState.IDLE), int(GeneratorState.OUTPUT)})
_PULSED: Final = OutputMode.RF_PULSED
_OVER_POWER_FACTOR: Final = 1.0 + hard.OVER_POWER_TOLERANCE


def channel_bit(channel: int) -> int:
    return 1 << (channel - 1)


@dataclass(frozen=True, slots=True)
class Trip:
    """An interlock condition that holds: which one, on which channel (None: system), and why."""

    interlock: InterlockId
    channel: int | None
    reason: str
    mask: int
    """The channels ``OUTPUT_OFF`` must stop: the channel (or its bipolar pair), or all four."""
    trips_when_idle: bool
    """Whether this occurrence trips even with its scope idle: the interlock's spec, unless the check says
    otherwise for one of its conditions (a booting generator is a fault only under power)."""

    @property
    def key(self) -> tuple[InterlockId, int | None]:
        return (self.interlock, self.channel)

    @property
    def priority(self) -> Priority:
        return SPECS[self.interlock].priority


@dataclass(frozen=True, slots=True)
class ChannelRules:
    """One planned channel's limits, from its lesion and the effective limits."""

    channel: int
    index: int
    lead_channel: int
    """The channel the lesion is planned on (a bipolar partner points at its lead)."""
    mask: int
    mode: LesionMode
    output_mode: OutputMode
    set_temp_c: float
    over_temp_c: float
    """Trip above this: the lower of set + margin and the tip maximum."""
    pulsed_tip_max_c: float
    power_max_w: float
    """The lower of the plan's power cap and the effective per-channel maximum."""
    over_power_w: float
    """Measured power trips strictly above this: the cap plus the measurement's tolerance, never above the
    hard maximum (an allowance for measuring must not become permission to deliver more than 50 W)."""
    voltage_max_v: float
    impedance_min_ohm: float
    impedance_max_ohm: float
    rf_time_budget_s: float
    gauge: int
    tip_length_deci_mm: int
    cooled: bool
    pulse_width_us: int
    pulse_rate_deci_hz: int
    setpoint_max: float
    """The highest setpoint a request may ask for: ``voltage_max_v`` (V) if pulsed, else ``power_max_w`` (W)."""
    waveform: tuple[OutputMode, int, int]
    """Mode, pulse width and pulse rate: what every channel of one SET_OUTPUT must share."""

    @classmethod
    def for_lesion(cls, lesion: Lesion, channel: int, limits: SafetyLimits) -> ChannelRules:
        mask = 0
        for c in lesion.channels:
            mask |= channel_bit(c)
        pulsed = lesion.pulsed
        power_max_w = min(lesion.power_cap_w, limits.power_max_w)
        voltage_max_v = min(pulsed.max_voltage_v, limits.pulsed_voltage_max_v) if pulsed else 0.0
        output_mode = lesion.mode.output_mode
        pulse_width_us = pulsed.pulse_width_us if pulsed else 0
        pulse_rate_deci_hz = pulsed.rate_deci_hz if pulsed else 0
        return cls(
            channel=channel,
            index=channel - 1,
            lead_channel=lesion.channel,
            mask=mask,
            mode=lesion.mode,
            output_mode=output_mode,
            set_temp_c=lesion.set_temp_c,
            over_temp_c=min(lesion.set_temp_c + limits.over_temp_margin_c, limits.tip_temp_max_c),
            pulsed_tip_max_c=limits.pulsed_tip_temp_max_c,
            power_max_w=power_max_w,
            over_power_w=min(
                power_max_w * (1.0 + hard.POWER_MEASUREMENT_TOLERANCE) + hard.POWER_MEASUREMENT_TOLERANCE_W,
                hard.POWER_MAX_W,
            ),
            voltage_max_v=voltage_max_v,
            impedance_min_ohm=lesion.impedance_min_ohm,
            impedance_max_ohm=lesion.impedance_max_ohm,
            rf_time_budget_s=min(
                lesion.lesion_time_s + hard.LESION_TIME_TOLERANCE_S, limits.lesion_rf_time_max_s
            ),
            gauge=lesion.electrode.gauge,
            tip_length_deci_mm=round(lesion.electrode.active_tip_mm * 10),
            cooled=lesion.electrode.cooled,
            pulse_width_us=pulse_width_us,
            pulse_rate_deci_hz=pulse_rate_deci_hz,
            setpoint_max=voltage_max_v if output_mode == OutputMode.RF_PULSED else power_max_w,
            waveform=(output_mode, pulse_width_us, pulse_rate_deci_hz),
        )


@dataclass(frozen=True, slots=True)
class SafetyRules:
    """The plan and the effective limits as the interlocks use them."""

    plan: LesionPlan
    limits: SafetyLimits
    channels: tuple[ChannelRules, ...]
    """Every channel the plan drives (bipolar partners included), in channel order."""
    by_channel: dict[int, ChannelRules]
    imaging_required: bool
    imaging_max_age_s: float

    @classmethod
    def compile(cls, plan: LesionPlan, limits: SafetyLimits) -> SafetyRules:
        """Compile an already validated plan (see :func:`safety.plan.check_plan`)."""
        rules = sorted(
            (
                ChannelRules.for_lesion(lesion, ch, limits)
                for lesion in plan.lesions
                for ch in lesion.channels
            ),
            key=lambda r: r.channel,
        )
        return cls(
            plan,
            limits,
            tuple(rules),
            {r.channel: r for r in rules},
            plan.imaging_required,
            min(plan.imaging_frame_max_age_s, limits.imaging_frame_age_max_s),
        )


SystemCheck = Callable[[SafetyInputs, SafetyRules, float], "Trip | None"]
ChannelCheck = Callable[[SafetyInputs, ChannelRules, float], "Trip | None"]


def _sys(interlock: InterlockId, reason: str, *, when_idle: bool | None = None) -> Trip:
    """A system condition; ``when_idle`` overrides the spec's idle-trip for this occurrence."""
    idle_trip = SPECS[interlock].trips_when_idle if when_idle is None else when_idle
    return Trip(interlock, None, reason, ALL_CHANNELS, idle_trip)


def _ch(interlock: InterlockId, rules: ChannelRules, reason: str) -> Trip:
    return Trip(
        interlock,
        rules.channel,
        f"channel {rules.channel}: {reason}",
        rules.mask,
        SPECS[interlock].trips_when_idle,
    )


# -- system interlocks ------------------------------------------------------------------------------------


def landed_age_s(now: float, arrived_at: float) -> float:
    """How old a message may be: the driver dates it when the loop reads it, but it can have landed up to one
    loop period earlier. Ageing it from that earliest moment keeps a staleness trip within one period of the
    moment the data really became too old (ARCHITECTURE.md section 8), erring on the safe side."""
    return now - arrived_at + hard.LOOP_PERIOD_S


def check_telemetry_stale(inputs: SafetyInputs, rules: SafetyRules, now: float) -> Trip | None:
    """Telemetry older than the staleness limit (or none yet): the host cannot see what RF is doing."""
    rx = inputs.telemetry
    if rx is None:
        return _sys(InterlockId.TELEMETRY_STALE, "no telemetry received")
    age = landed_age_s(now, rx.arrived_at)
    if age > rules.limits.telemetry_stale_s:
        return _sys(
            InterlockId.TELEMETRY_STALE,
            f"last telemetry read {(now - rx.arrived_at) * 1000:.0f} ms ago: it may be {age * 1000:.0f} ms old, "
            f"at or past the {rules.limits.telemetry_stale_s * 1000:.0f} ms limit",
        )
    return None


def check_link_lost(inputs: SafetyInputs, rules: SafetyRules, now: float) -> Trip | None:
    """No generator heartbeat or STATUS within the link-loss time: its state and faults are unknown. Or the
    link is lost the other way: the generator has acknowledged nothing the host sent for ``COMMAND_ANSWER_S``
    (the host's transmit line, or the generator's command handling), so the host's commands, ``OUTPUT_OFF``
    among them, no longer govern output.

    Only the oldest command after the newest answered one counts (:attr:`SafetyInputs.unanswered`): an ACK
    lost on the wire while later commands are answered is no loss of control (each SET_OUTPUT carries whole
    setpoints, and a lost command's effect is judged by its own interlock: over-power, stimulation mismatch,
    uncommanded output). A command held with nothing after it (a stimulus through a nerve test) is sent again
    by the gate once its ACK is overdue by half the limit, so its twin's ACK passes a lost one."""
    pending = inputs.unanswered
    if pending is not None and now - pending.sent_at > hard.COMMAND_ANSWER_S:
        return _sys(
            InterlockId.LINK_LOST,
            f"no ACK for {_message_name(pending.msg_id)} (SEQ {pending.seq}) {(now - pending.sent_at) * 1000:.0f} ms "
            f"after it was sent, nor for anything sent since (limit {hard.COMMAND_ANSWER_S * 1000:.0f} ms): the "
            "generator is not taking commands",
        )
    limit = rules.limits.link_loss_s
    for name, at in (
        ("HEARTBEAT", inputs.generator_heartbeat_at),
        ("STATUS", None if inputs.status is None else inputs.status.arrived_at),
    ):
        if at is None:
            return _sys(InterlockId.LINK_LOST, f"no generator {name} received")
        age = landed_age_s(now, at)
        if age > limit:
            return _sys(
                InterlockId.LINK_LOST, f"no generator {name} for {age * 1000:.0f} ms (limit {limit * 1000:.0f} ms)"
            )
    return None


def check_generator_fault(inputs: SafetyInputs, rules: SafetyRules, now: float) -> Trip | None:
    """The generator is faulty, or not in a state in which its output and telemetry can be trusted.

    FAULT or any fault bit is a fault even when idle (idle-trip). A STATUS state other than IDLE or OUTPUT
    (BOOT: it rebooted; an unknown value) or a generator clock that did not advance between telemetry
    frames (frozen, or reset by a reboot: the trends restarted and cannot see roll-off, a frozen or a
    non-tracking thermocouple) only refuses output while idle (a generator still booting must not latch a
    fault) and trips under power, so output never runs on a rebooted or frozen generator. So does a
    command the generator refused (an ACK other than OK) while output or stimulation is commanded on: the
    host would believe in output the generator is not giving (or giving otherwise than commanded).
    """
    rx = inputs.status
    if rx is not None:
        status = rx.msg
        if status.state == _FAULT_STATE or status.fault_bits:
            return _sys(
                InterlockId.GENERATOR_FAULT,
                f"generator state {_state_name(status.state)}, fault bits 0x{status.fault_bits:08X}",
            )
        if status.state not in _READY_STATES:
            return _sys(
                InterlockId.GENERATOR_FAULT,
                f"generator state {_state_name(status.state)}, not IDLE or OUTPUT",
                when_idle=False,
            )
    for trend in inputs.trends:
        if trend.clock_stalled:
            return _sys(
                InterlockId.GENERATOR_FAULT,
                "generator clock did not advance between telemetry frames (frozen, or reset by a reboot)",
                when_idle=False,
            )
    rate = inputs.generator_clock_rate
    if rate is not None and not hard.GENERATOR_CLOCK_RATE_MIN <= rate <= hard.GENERATOR_CLOCK_RATE_MAX:
        return _sys(
            InterlockId.GENERATOR_FAULT,
            f"generator clock ran at {rate:.3g} times the host's over {hard.GENERATOR_CLOCK_RATE_WINDOW_S:.0f} s "
            f"(allowed {hard.GENERATOR_CLOCK_RATE_MIN}..{hard.GENERATOR_CLOCK_RATE_MAX}): the trends that time a "
            "frozen reading and count energy run on it",
            when_idle=False,
        )
    refusal = inputs.refusal
    if refusal is not None and _refused_while_energised(inputs, refusal.arrived_at):
        ack = refusal.msg
        refused = f"{_message_name(ack.acked_msg_id)} (SEQ {ack.acked_seq})"
        return _sys(InterlockId.GENERATOR_FAULT, f"generator refused {refused}: {AckResult.name_of(ack.result)}",
                    when_idle=False)
    return None


def _refused_while_energised(inputs: SafetyInputs, refused_at: float) -> bool:
    """A refusal that arrived while some channel has been commanded on: the host believes output (or
    stimulation) is on that the generator may not be delivering, an inconsistency; refusals older than
    the present energised period are history.

    Strictly after ``since``: the ACK of the command that turned a channel on is read by a later poll, so
    nothing real is lost, while a refusal read in the same tick just before the turn-on (same clock
    reading in simulated time) belongs to the period before."""
    return any(commanded.energised and commanded.since < refused_at for commanded in inputs.commanded)


def _message_name(msg_id: int) -> str:
    cls = MESSAGES_BY_ID.get(msg_id)
    return f"message 0x{msg_id:02X}" if cls is None else cls.__name__


def _state_name(state: int) -> str:
    try:
        return f"{GeneratorState(state).name} ({state})"
    except ValueError:
        return f"unknown ({state})"


def check_uncommanded_output(inputs: SafetyInputs, rules: SafetyRules, now: float) -> Trip | None:
    """Output on a channel the gate has had off for longer than the generator needs to obey."""
    rx = inputs.telemetry
    if rx is None:
        return None
    for index in range(N_CHANNELS):
        commanded = inputs.commanded[index]
        if commanded.energised or rx.arrived_at <= commanded.since + hard.UNCOMMANDED_GRACE_S:
            continue
        ch = rx.msg.channels[index]
        if ch.flags & _OUTPUT_ON or ch.power_centi_w > hard.UNCOMMANDED_POWER_W * 100:
            return _sys(
                InterlockId.UNCOMMANDED_OUTPUT,
                f"channel {index + 1} delivers {ch.power_w:.2f} W "
                f"(output flag {int(ch.output_on)}) but is commanded off",
            )
    return None


def check_control_loop_overrun(inputs: SafetyInputs, rules: SafetyRules, now: float) -> Trip | None:
    """More than two loop periods since the previous evaluation: the loop is not in control."""
    last = inputs.loop_tick_at
    limit = hard.LOOP_PERIOD_S * hard.LOOP_MISSED_PERIODS
    if last is not None and now - last > limit:
        return _sys(
            InterlockId.CONTROL_LOOP_OVERRUN,
            f"{(now - last) * 1000:.1f} ms since the last tick (limit {limit * 1000:.0f} ms)",
        )
    return None


def imaging_not_live(imaging: ImagingStatus | None, now: float, frame_max_age_s: float, grace_s: float) -> str | None:
    """Why guidance is not live at ``now``, or None: no frame, or the last one older than ``frame_max_age_s`` +
    ``grace_s``; or the probe face's temperature not read within ``PROBE_FACE_READING_MAX_AGE_S`` + ``grace_s``
    (the probe-face interlock would be blind); or the boiling monitor blind to a tip for longer than a frame may
    be old (its frames cannot show boiling: docs/imaging.md). A time dated ahead of ``now`` by more than
    ``IMAGING_FRAME_AHEAD_MAX_S`` is from another clock or a defect: not live either (it would read as fresh for
    ever). Written so that a NaN time is never live. A probe that reports its fault state is not live at once, the
    grace or not: the grace lets the last good image outlive a drop-out, and the probe has said its images are not
    good."""
    if imaging is None or imaging.last_frame_at is None:
        return "no imaging frame"
    if imaging.probe_fault_bits is not None:
        return f"the probe reports a fault (GET_STATUS state 2, error bits 0x{imaging.probe_fault_bits:08X})"
    frame_age_s = now - imaging.last_frame_at
    if not -hard.IMAGING_FRAME_AHEAD_MAX_S <= frame_age_s <= frame_max_age_s + grace_s:
        return f"last imaging frame {_age(frame_age_s)} (limit {frame_max_age_s + grace_s:.2f} s)"
    read_at = imaging.probe_face_read_at
    if imaging.probe_face_temp_c is None or read_at is None:
        return "probe face temperature not read"
    reading_age_s = now - read_at
    if not -hard.IMAGING_FRAME_AHEAD_MAX_S <= reading_age_s <= hard.PROBE_FACE_READING_MAX_AGE_S + grace_s:
        return (f"probe face temperature last read {_age(reading_age_s)} "
                f"(limit {hard.PROBE_FACE_READING_MAX_AGE_S + grace_s:.2f} s)")
    blind_since = imaging.boiling_blind_since
    if blind_since is not None:
        blind_s = now - blind_since
        if not -hard.IMAGING_FRAME_AHEAD_MAX_S <= blind_s <= frame_max_age_s + grace_s:
            how_long = _age(blind_s) if blind_s < 0 else f"for {blind_s:.2f} s"
            return (f"boiling monitor blind to the tip (not in the image) {how_long} "
                    f"(limit {frame_max_age_s + grace_s:.2f} s)")
    return None


def _age(age_s: float) -> str:
    return f"dated {-age_s:.2f} s ahead of the host clock" if age_s < 0 else f"{age_s:.2f} s old"


def check_imaging_lost(inputs: SafetyInputs, rules: SafetyRules, now: float) -> Trip | None:
    """The plan needs guidance and it is not live (IMAGING_LOSS_GRACE_S more while output is on: RF or a nerve-test
    stimulus, docs/safety.md)."""
    if not rules.imaging_required:
        return None
    imaging = inputs.imaging
    if imaging_not_live(imaging, now, rules.imaging_max_age_s, 0.0) is None:  # live: no need to ask about the grace
        return None
    reason = imaging_not_live(imaging, now, rules.imaging_max_age_s,
                              hard.IMAGING_LOSS_GRACE_S if inputs.energised else 0.0)
    return None if reason is None else _sys(InterlockId.IMAGING_LOST, reason)


def check_probe_face_over_temperature(inputs: SafetyInputs, rules: SafetyRules, now: float) -> Trip | None:
    """The transducer face is hotter than skin may be held at."""
    imaging = inputs.imaging
    if imaging is None or imaging.probe_face_temp_c is None:
        return None
    limit = rules.limits.probe_face_temp_max_c
    if not imaging.probe_face_temp_c <= limit:  # a NaN reading trips too
        return _sys(
            InterlockId.PROBE_FACE_OVER_TEMPERATURE,
            f"probe face {imaging.probe_face_temp_c:.1f} °C (limit {limit:.1f} °C)",
        )
    return None


def check_operator_stop(inputs: SafetyInputs, rules: SafetyRules, now: float) -> Trip | None:
    """The operator pressed stop; it holds until acknowledged."""
    return _sys(InterlockId.OPERATOR_STOP, "operator stop") if inputs.operator_stop else None


# -- channel interlocks -----------------------------------------------------------------------------------


def _tip_reading_c(inputs: SafetyInputs, rules: ChannelRules) -> float | None:
    """The tip temperature to judge, or None: no telemetry, or a thermocouple the generator flags open, whose
    reading (often the field's maximum, 327.67 °C) is no temperature. ``thermocouple_open`` trips on that flag,
    with the same priority, latch and scope, and the alarm then names the cause, not an over-temperature."""
    rx = inputs.telemetry
    if rx is None:
        return None
    reading = rx.msg.channels[rules.index]
    return None if reading.flags & _THERMOCOUPLE_OPEN else reading.tip_temp_centi_c / 100.0


def check_over_temperature(inputs: SafetyInputs, rules: ChannelRules, now: float) -> Trip | None:
    """Tip above set temperature + margin, or above the tip maximum."""
    temp_c = _tip_reading_c(inputs, rules)
    if temp_c is None:
        return None
    if temp_c > rules.over_temp_c:
        return _ch(
            InterlockId.OVER_TEMPERATURE, rules, f"tip {temp_c:.2f} °C above {rules.over_temp_c:.2f} °C"
        )
    return None


def check_pulsed_over_temperature(inputs: SafetyInputs, rules: ChannelRules, now: float) -> Trip | None:
    """A pulsed-RF channel above the pulsed tip limit."""
    temp_c = _tip_reading_c(inputs, rules)
    if temp_c is None or rules.mode is not LesionMode.PULSED:
        return None
    if temp_c > rules.pulsed_tip_max_c:
        return _ch(
            InterlockId.PULSED_OVER_TEMPERATURE,
            rules,
            f"pulsed tip {temp_c:.2f} °C above {rules.pulsed_tip_max_c:.2f} °C",
        )
    return None


def check_impedance_low(inputs: SafetyInputs, rules: ChannelRules, now: float) -> Trip | None:
    """Impedance below the plan's window: a short."""
    rx = inputs.telemetry
    if rx is None:
        return None
    z = rx.msg.channels[rules.index].impedance_deci_ohm / 10.0
    if z < rules.impedance_min_ohm:
        return _ch(
            InterlockId.IMPEDANCE_LOW, rules, f"impedance {z:.1f} Ω below {rules.impedance_min_ohm:.1f} Ω"
        )
    return None


def check_impedance_high(inputs: SafetyInputs, rules: ChannelRules, now: float) -> Trip | None:
    """Impedance above the plan's window: tip not in tissue, or desiccated."""
    rx = inputs.telemetry
    if rx is None:
        return None
    z = rx.msg.channels[rules.index].impedance_deci_ohm / 10.0
    if z > rules.impedance_max_ohm:
        return _ch(
            InterlockId.IMPEDANCE_HIGH, rules, f"impedance {z:.1f} Ω above {rules.impedance_max_ohm:.1f} Ω"
        )
    return None


def check_impedance_roll_off(inputs: SafetyInputs, rules: ChannelRules, now: float) -> Trip | None:
    """While output is on, impedance rising faster than the roll-off rate over the roll-off window."""
    rise_ohm = inputs.trends[rules.index].impedance_rise_ohm
    rate = rise_ohm / hard.ROLLOFF_WINDOW_S
    if rate > hard.ROLLOFF_MAX_RISE_OHM_PER_S:
        return _ch(
            InterlockId.IMPEDANCE_ROLL_OFF,
            rules,
            f"impedance rising {rate:.0f} Ω/s (limit {hard.ROLLOFF_MAX_RISE_OHM_PER_S:.0f} Ω/s)",
        )
    return None


def check_thermocouple_open(inputs: SafetyInputs, rules: ChannelRules, now: float) -> Trip | None:
    """The generator flags the thermocouple as open: no temperature control is possible."""
    rx = inputs.telemetry
    if rx is not None and rx.msg.channels[rules.index].flags & _THERMOCOUPLE_OPEN:
        return _ch(InterlockId.THERMOCOUPLE_OPEN, rules, "thermocouple open")
    return None


def check_thermocouple_implausible(inputs: SafetyInputs, rules: ChannelRules, now: float) -> Trip | None:
    """A reading no tip in tissue can produce: out of range, or a step faster than tissue can heat."""
    temp_c = _tip_reading_c(inputs, rules)
    if temp_c is None:
        return None
    if not hard.THERMOCOUPLE_PLAUSIBLE_MIN_C <= temp_c <= hard.THERMOCOUPLE_PLAUSIBLE_MAX_C:
        return _ch(
            InterlockId.THERMOCOUPLE_IMPLAUSIBLE,
            rules,
            f"tip reading {temp_c:.2f} °C outside "
            f"{hard.THERMOCOUPLE_PLAUSIBLE_MIN_C:.0f}.."
            f"{hard.THERMOCOUPLE_PLAUSIBLE_MAX_C:.0f} °C",
        )
    slew = inputs.trends[rules.index].slew_c_per_s
    if abs(slew) > hard.THERMOCOUPLE_MAX_SLEW_C_PER_S:
        return _ch(
            InterlockId.THERMOCOUPLE_IMPLAUSIBLE,
            rules,
            f"tip reading changes {slew:.0f} °C/s (limit {hard.THERMOCOUPLE_MAX_SLEW_C_PER_S:.0f})",
        )
    return None


def check_thermocouple_frozen(inputs: SafetyInputs, rules: ChannelRules, now: float) -> Trip | None:
    """With output on, the reading has not moved while delivered power swung, or has not moved for so long
    that no live thermocouple would: it is not reading the tip.

    Only time with output on counts (:attr:`ChannelTrend.frozen_s`), so a reading that froze before RF (at
    body temperature, where a still reading is normal) is caught once the ramp moves the power, and output
    switched off for a moment does not restart the count; requiring the power never to fall below a
    minimum, as this check once did, let the first case through, and the fault campaign found the tip at
    96 °C. A reading that froze at the set temperature during a steady hold gives the controller no reason
    to move the power, so the swing alone took 19 s to come, with the tip 6 °C over its set temperature:
    the stillness limit bounds that."""
    trend = inputs.trends[rules.index]
    if not trend.powered_on:
        return None
    reason = thermocouple_frozen(trend)
    return None if reason is None else _ch(InterlockId.THERMOCOUPLE_FROZEN, rules, reason)


def thermocouple_frozen(trend: ChannelTrend) -> str | None:
    """Why the channel's reading counts as frozen, or None, whether or not output is on now.

    Shared by the interlock (under power) and by the gate, which asks it about a channel it is asked to turn on:
    the stillness counted under power is kept while output is off, so a reading still frozen when the latch is
    acknowledged would trip on the first frame under power, after a period of RF it should never have had."""
    frozen_s = trend.frozen_s
    if frozen_s > hard.THERMOCOUPLE_STILL_S:
        return f"tip reading unchanged for {frozen_s:.1f} s with output on (limit {hard.THERMOCOUPLE_STILL_S:.0f} s)"
    if frozen_s > hard.THERMOCOUPLE_FROZEN_S and trend.power_max_w - trend.power_min_w > (
        hard.THERMOCOUPLE_FROZEN_POWER_SWING_W
    ):
        return (f"tip reading unchanged for {frozen_s:.1f} s while power swung {trend.power_min_w:.1f}.."
                f"{trend.power_max_w:.1f} W")
    return None


def check_temperature_not_tracking(inputs: SafetyInputs, rules: ChannelRules, now: float) -> Trip | None:
    """Energy delivered since output came on, yet the tip has not warmed (nor was it near set already)."""
    trend = inputs.trends[rules.index]
    if not trend.powered_on or trend.energy_since_on_j <= hard.NOT_TRACKING_ENERGY_J:
        return None
    needed_c = min(trend.temp_at_on_c + hard.NOT_TRACKING_RISE_C, rules.set_temp_c - hard.NOT_TRACKING_RISE_C)
    if trend.max_temp_since_on_c < needed_c:
        return _ch(
            InterlockId.TEMPERATURE_NOT_TRACKING,
            rules,
            f"{trend.energy_since_on_j:.0f} J delivered but the tip peaked at "
            f"{trend.max_temp_since_on_c:.2f} °C (needed {needed_c:.2f} °C)",
        )
    return None


def over_power(
    channels: Sequence[ChannelTelemetry], commanded: CommandedChannel, rules: ChannelRules, now: float
) -> str | None:
    """Why the measured output of ``rules``' channel exceeds what ``commanded`` allows, or None.

    Shared by the interlock and by the gate, which asks it about the command it is about to send, so a
    request is never granted into a measurement that would trip at once. A bipolar pair's current flows
    through both electrodes, and its setpoint and cap are the pair's power: the pair is judged once, on its
    lead channel, by the sum of the two sides. Judged side by side, each side carried half, so the pair could
    deliver twice its cap, or run away to twice its setpoint, unseen (the fault campaign found the latter).
    """
    ch = channels[rules.index]
    if rules.mode is LesionMode.BIPOLAR:
        if rules.channel != rules.lead_channel:
            return None
        power_w = (ch.power_centi_w + channels[rules.index + 1].power_centi_w) / 100.0
    else:
        power_w = ch.power_centi_w / 100.0
    if power_w > rules.over_power_w:
        maximum = f"the maximum {rules.over_power_w:.2f} W (cap {rules.power_max_w:.2f} W)"
        return f"{_measured(rules, power_w)} above {maximum}"
    # Pulsed RF is regulated on peak voltage: its maximum holds whatever was commanded, as the power maximum does
    # (the voltage field carries the stimulus while stimulating, judged by stimulation_mismatch).
    if rules.mode is LesionMode.PULSED and not commanded.stim_amplitude_mv:
        peak_v = ch.voltage_centi_v / 100.0
        if peak_v > rules.voltage_max_v + hard.OVER_VOLTAGE_TOLERANCE_V:
            return f"{peak_v:.2f} V peak above the maximum {rules.voltage_max_v:.2f} V + tolerance"
    if not commanded.on:
        return None
    # Within what the present setpoint allows, nothing settling can matter (it only allows more): the usual tick.
    if commanded.mode == _PULSED:
        voltage_v = ch.voltage_centi_v / 100.0
        if voltage_v > commanded.setpoint + hard.OVER_VOLTAGE_TOLERANCE_V:
            allowed = commanded.allowed_setpoint(now)
            if voltage_v > allowed + hard.OVER_VOLTAGE_TOLERANCE_V:
                return f"{voltage_v:.2f} V peak above the commanded {allowed:.2f} V + tolerance"
        return None
    if power_w > commanded.setpoint * _OVER_POWER_FACTOR + hard.OVER_POWER_TOLERANCE_W:
        allowed = commanded.allowed_setpoint(now)
        if power_w > allowed * _OVER_POWER_FACTOR + hard.OVER_POWER_TOLERANCE_W:
            return f"{_measured(rules, power_w)} above the commanded {allowed:.2f} W + tolerance"
    return None


def _measured(rules: ChannelRules, power_w: float) -> str:
    """The measured power as :func:`over_power` names it: a bipolar pair's as the pair's (written only when it
    trips: formatting costs more than the test, which runs eight times a tick)."""
    if rules.mode is LesionMode.BIPOLAR:
        return f"pair {rules.channel}–{rules.channel + 1} {power_w:.2f} W"
    return f"{power_w:.2f} W"


def check_over_power(inputs: SafetyInputs, rules: ChannelRules, now: float) -> Trip | None:
    """Measured power above the channel maximum, or above what was commanded beyond regulation tolerance."""
    rx = inputs.telemetry
    if rx is None:
        return None
    reason = over_power(rx.msg.channels, inputs.commanded[rules.index], rules, now)
    return None if reason is None else _ch(InterlockId.OVER_POWER, rules, reason)


def check_stimulation_mismatch(inputs: SafetyInputs, rules: ChannelRules, now: float) -> Trip | None:
    """Stimulation delivered at another amplitude than commanded: the sensory or motor test would mislead.

    The generator reports the stimulation pulse amplitude in the voltage field while it stimulates
    (docs/contract.md). A frame read within ``STIM_SETTLE_S`` of the amplitude's command may still show the
    previous one and is not judged; every later frame is. A missing or weak stimulus is the dangerous side: no
    twitch "at 2 V" reads as a motor nerve safely far from the tip, and the lesion that follows may reach it."""
    commanded = inputs.commanded[rules.index]
    amplitude_mv = commanded.stim_amplitude_mv
    rx = inputs.telemetry
    if not amplitude_mv or rx is None or not rx.arrived_at > commanded.stim_since + hard.STIM_SETTLE_S:
        return None
    measured_mv = rx.msg.channels[rules.index].voltage_centi_v * 10
    tolerance_mv = amplitude_mv * hard.STIM_AMPLITUDE_TOLERANCE_PERCENT // 100 + hard.STIM_AMPLITUDE_TOLERANCE_MV
    if abs(measured_mv - amplitude_mv) > tolerance_mv:
        return _ch(
            InterlockId.STIMULATION_MISMATCH,
            rules,
            f"stimulation measured {measured_mv / 1000:.2f} V, commanded {amplitude_mv / 1000:.2f} V "
            f"(tolerance {tolerance_mv / 1000:.3f} V): a response, or its absence, at this amplitude would mislead",
        )
    return None


def check_channel_fault(inputs: SafetyInputs, rules: ChannelRules, now: float) -> Trip | None:
    """The generator flags a fault on this channel."""
    rx = inputs.telemetry
    if rx is not None and rx.msg.channels[rules.index].flags & _CHANNEL_FAULT:
        return _ch(InterlockId.CHANNEL_FAULT, rules, "generator flags a channel fault")
    return None


def check_electrode_mismatch(inputs: SafetyInputs, rules: ChannelRules, now: float) -> Trip | None:
    """The connected electrode is not the planned one (or none, or it has no thermocouple), or which electrode is
    connected is no longer known (ELECTRODE_INFO older than ``ELECTRODE_INFO_MAX_AGE_S``).

    None connected is also read from TELEMETRY's flag, 100 times a second, not only from the 1 Hz ELECTRODE_INFO: a
    pulled electrode then trips here in the frame that shows it, and first of its channel (CHANNEL_CHECKS order),
    so the alarm names the cause rather than what its readings look like without it (a 0.00 °C tip)."""
    telemetry = inputs.telemetry
    if telemetry is not None and not telemetry.msg.channels[rules.index].flags & _ELECTRODE_CONNECTED:
        return _ch(InterlockId.ELECTRODE_MISMATCH, rules, "no electrode connected (telemetry)")
    rx = inputs.electrodes
    if rx is None:
        return _ch(InterlockId.ELECTRODE_MISMATCH, rules, "no ELECTRODE_INFO received")
    age = landed_age_s(now, rx.arrived_at)
    if not age <= hard.ELECTRODE_INFO_MAX_AGE_S:  # a NaN arrival trips too
        return _ch(InterlockId.ELECTRODE_MISMATCH, rules, f"no ELECTRODE_INFO for {age:.1f} s (sent at 1 Hz; limit "
                   f"{hard.ELECTRODE_INFO_MAX_AGE_S:.0f} s): which electrode is connected is not known")
    slot = rx.msg.electrodes[rules.index]
    if not slot.connected:
        return _ch(InterlockId.ELECTRODE_MISMATCH, rules, "no electrode connected")
    if (slot.gauge, slot.tip_length_deci_mm, bool(slot.flags & _COOLED)) != (
        rules.gauge,
        rules.tip_length_deci_mm,
        rules.cooled,
    ):
        return _ch(
            InterlockId.ELECTRODE_MISMATCH,
            rules,
            f"electrode {slot.gauge} G {slot.tip_length_mm:.1f} mm{' cooled' if slot.cooled else ''}, "
            f"plan {rules.gauge} G {rules.tip_length_deci_mm / 10:.1f} mm{' cooled' if rules.cooled else ''}",
        )
    if not slot.flags & _THERMOCOUPLE_FITTED:
        return _ch(InterlockId.ELECTRODE_MISMATCH, rules, "electrode has no thermocouple")
    return None


def check_boiling_detected(inputs: SafetyInputs, rules: ChannelRules, now: float) -> Trip | None:
    """The imaging echo-brightness monitor sees gas around this tip, whatever the thermocouple says."""
    imaging = inputs.imaging
    if imaging is not None and rules.channel in imaging.boiling_channels:
        return _ch(InterlockId.BOILING_DETECTED, rules, "gas echoes around the tip (boiling)")
    return None


def check_lesion_time_exceeded(inputs: SafetyInputs, rules: ChannelRules, now: float) -> Trip | None:
    """RF time of this channel's lesion beyond the planned time plus tolerance (or the hard maximum)."""
    rf_s = inputs.rf_on_s[rules.index]
    if rf_s > rules.rf_time_budget_s:
        return _ch(
            InterlockId.LESION_TIME_EXCEEDED,
            rules,
            f"{rf_s:.1f} s of RF, budget {rules.rf_time_budget_s:.1f} s",
        )
    return None


SYSTEM_CHECKS: Final[tuple[SystemCheck, ...]] = (
    check_operator_stop,
    check_generator_fault,
    check_link_lost,
    check_telemetry_stale,
    check_uncommanded_output,
    check_control_loop_overrun,
    check_imaging_lost,
    check_probe_face_over_temperature,
)
CHANNEL_CHECKS: Final[tuple[ChannelCheck, ...]] = (
    check_electrode_mismatch,  # first: a pulled electrode trips the reading checks too, and is their cause
    check_over_temperature,
    check_pulsed_over_temperature,
    check_thermocouple_open,
    check_thermocouple_implausible,
    check_thermocouple_frozen,
    check_temperature_not_tracking,
    check_over_power,
    check_stimulation_mismatch,
    check_channel_fault,
    check_impedance_low,
    check_impedance_high,
    check_impedance_roll_off,
    check_boiling_detected,
    check_lesion_time_exceeded,
)


def _interlock_of(check: Callable[..., Trip | None]) -> InterlockId:
    """The interlock a check judges, by its name (``check_<id>``): a misnamed check fails at import."""
    return InterlockId(check.__name__.removeprefix("check_"))


_CLOCKED: Final[frozenset[Callable[..., Trip | None]]] = frozenset({
    check_electrode_mismatch,
    check_link_lost,
    check_telemetry_stale,
    check_control_loop_overrun,
    check_imaging_lost,
    check_over_power,
    check_lesion_time_exceeded,
})
CLOCKED_SYSTEM_CHECKS: Final[tuple[SystemCheck, ...]] = tuple(check for check in SYSTEM_CHECKS if check in _CLOCKED)
CLOCKED_CHANNEL_CHECKS: Final[tuple[ChannelCheck, ...]] = tuple(check for check in CHANNEL_CHECKS if check in _CLOCKED)
_ALL_CHECKS: Final[tuple[Callable[..., Trip | None], ...]] = (*SYSTEM_CHECKS, *CHANNEL_CHECKS)
CLOCKED: Final = frozenset(_interlock_of(check) for check in _ALL_CHECKS if check in _CLOCKED)
"""The interlocks whose condition can change with time alone, the snapshot otherwise the same: they read
``now``, or what grows or expires with it (RF time, the loop's last tick, the oldest unanswered command, the
heartbeat's and ELECTRODE_INFO's arrival, the settling of a lowered setpoint's predecessors). Every other check
reads only the snapshot's other fields: the received messages, the commands, the trends, the operator's stop and
imaging."""
TIME_ONLY_INPUTS: Final = frozenset({"generator_heartbeat_at", "rf_on_s", "loop_tick_at", "unanswered"})
"""The snapshot's fields that only :data:`CLOCKED` interlocks read; :func:`only_time_has_moved` compares the rest."""
_ORDER: Final = {_interlock_of(check): index for index, check in enumerate(_ALL_CHECKS)}


def evaluate_interlocks(inputs: SafetyInputs, rules: SafetyRules, now: float) -> list[Trip]:
    """Every condition that holds now: system interlocks first, then each planned channel in order."""
    return _run([], SYSTEM_CHECKS, CHANNEL_CHECKS, inputs, rules, now)


def only_time_has_moved(earlier: SafetyInputs, later: SafetyInputs) -> bool:
    """Whether ``later`` agrees with ``earlier`` in every field an unclocked interlock reads (all but
    :data:`TIME_ONLY_INPUTS`): the same received messages, commands, trends, stop and imaging. Messages are
    compared by identity (the driver replaces one when a new one arrives), the rest by value."""
    return (
        later.telemetry is earlier.telemetry
        and later.status is earlier.status
        and later.electrodes is earlier.electrodes
        and later.refusal is earlier.refusal
        and later.operator_stop == earlier.operator_stop
        and later.commanded == earlier.commanded
        and later.trends == earlier.trends
        and later.imaging == earlier.imaging
        and later.generator_clock_rate == earlier.generator_clock_rate
    )


class Evaluation(NamedTuple):
    """What :func:`evaluate_interlocks` found, with what it was given (for :func:`reevaluate`)."""

    inputs: SafetyInputs
    rules: SafetyRules
    found: list[Trip]


def reevaluate(earlier: Evaluation, inputs: SafetyInputs, rules: SafetyRules, now: float) -> list[Trip]:
    """What :func:`evaluate_interlocks` returns for ``inputs`` and ``rules`` at ``now``, given an earlier evaluation.

    If the rules are the same and only time has moved between the two snapshots, the unclocked conditions cannot
    have changed: they are taken from the earlier evaluation and only the clocked checks run again. That is the
    gate's answer to an output request a few microseconds after its tick's evaluation, on the cart, where the
    clock has moved (four of the eight system checks and three of the fifteen per channel). Otherwise every check
    runs. Same trips, same order, either way; whether the reuse is sound is decided here, from the rules and the
    snapshots themselves, so no caller has to keep track of what it changed.
    """
    if rules is not earlier.rules or not only_time_has_moved(earlier.inputs, inputs):
        return evaluate_interlocks(inputs, rules, now)
    found = [trip for trip in earlier.found if trip.interlock not in CLOCKED]
    kept = len(found)
    _run(found, CLOCKED_SYSTEM_CHECKS, CLOCKED_CHANNEL_CHECKS, inputs, rules, now)
    if kept and len(found) > kept:  # merge into evaluate_interlocks' order
        found.sort(key=lambda trip: (trip.channel or 0, _ORDER[trip.interlock]))
    return found


def _run(
    found: list[Trip],
    system_checks: Sequence[SystemCheck],
    channel_checks: Sequence[ChannelCheck],
    inputs: SafetyInputs,
    rules: SafetyRules,
    now: float,
) -> list[Trip]:
    """Append to ``found`` what the checks find: the system checks, then each planned channel's in order."""
    for system_check in system_checks:
        trip = system_check(inputs, rules, now)
        if trip is not None:
            found.append(trip)
    for channel_rules in rules.channels:
        for channel_check in channel_checks:
            trip = channel_check(inputs, channel_rules, now)
            if trip is not None:
                found.append(trip)
    return found
