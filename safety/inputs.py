"""What the interlocks look at: one immutable snapshot per tick, plus the short per-channel history.

:class:`SafetyInputs` is everything an interlock may depend on, frozen, so every interlock is a pure
function of ``(inputs, rules, now)`` and can be tested by building a snapshot by hand. The gate builds it
from sources it trusts: the driver's received messages (with their arrival times), the commands the gate
itself sent, its own RF-time accounting and tick times. The only outside input is :class:`ImagingStatus`,
filled by the imaging code.

Trends (impedance rise, frozen or non-tracking thermocouple, slew) need a little history. Rather than hide
state inside an interlock, :func:`advance_trend` is a pure reducer ``(trend, sample) -> trend`` that the
gate applies once per new telemetry frame; the interlocks read the resulting :class:`ChannelTrend`. All
trend arithmetic runs on the generator's own timestamps, so host scheduling jitter does not show up as a
temperature slew.

The three records built every tick (:class:`SafetyInputs`, :class:`ChannelTrend`,
:class:`CommandedChannel`) are named tuples rather than frozen dataclasses: just as immutable, and built
four times faster (a frozen dataclass sets each field through ``object.__setattr__``), which matters at
a dozen of them per 10 ms tick.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import NamedTuple

from firmware_bridge.generator import Received, Unanswered
from firmware_bridge.messages import Ack, ChannelTelemetry, ElectrodeInfo, OutputMode, Status, Telemetry
from safety import limits as hard


@dataclass(frozen=True, slots=True)
class ImagingStatus:
    """What the imaging pipeline reports; ``None`` values mean "not known" and count as not live."""

    last_frame_at: float | None
    """Host clock time of the last good frame."""
    probe_face_temp_c: float | None
    """The transducer face's temperature at its last reading (``GET_STATUS``)."""
    boiling_channels: frozenset[int] = frozenset()
    """Channels (1..4) where the echo-brightness monitor sees gas forming around the tip."""
    probe_face_read_at: float | None = None
    """Host clock time of that reading: a reading no longer renewed (the status requests failing while frames
    still stream) ages like a frame, so the face temperature is never taken as known from one old reading."""
    boiling_blind_since: float | None = None
    """Host clock time of the first frame since which the boiling monitor could not watch a tip it was started on
    (its disk outside the image); ``None`` while it watches every one, or none. Such frames cannot show boiling,
    so they age as if they had not come."""
    probe_fault_bits: int | None = None
    """The error bits of the last status reading if it said the probe is in its fault state (``GET_STATUS`` state
    2), ``None`` if it did not: a probe that says it has failed is not trusted for guidance, whatever it still
    streams."""


class Settling(NamedTuple):
    """A setpoint the measurement may still show after a lower one was commanded, until ``until``."""

    setpoint: float
    until: float


class CommandedChannel(NamedTuple):
    """What the gate last commanded on one channel."""

    on: bool
    since: float
    """When the channel last went from off to on or from on to off."""
    mode: OutputMode | None = None
    setpoint: float = 0.0
    """Continuous and bipolar: power in W; pulsed: peak voltage in V."""
    settling: tuple[Settling, ...] = ()
    """The setpoints before recent lowerings, oldest first, each with its deadline: a lowered setpoint takes time
    to show, and until it has, the measurement may show the one before it. Each has its own deadline, so a
    setpoint lowered every tick allows the setpoint of a settling time ago, never the first one for ever; those
    past their deadline count for nothing and are dropped at the next lowering (safety.gate)."""
    stim_amplitude_mv: int = 0
    stim_since: float = 0.0
    """When the stimulation amplitude was last commanded: what it is measured against settles from then."""

    @property
    def energised(self) -> bool:
        """RF or stimulation is commanded on this channel."""
        return self.on or self.stim_amplitude_mv > 0

    def allowed_setpoint(self, now: float) -> float:
        """The setpoint the measurement is compared with: the highest of it and those still settling."""
        allowed = self.setpoint
        for previous in self.settling:
            if now < previous.until and previous.setpoint > allowed:
                allowed = previous.setpoint
        return allowed


class ChannelTrend(NamedTuple):
    """Derived history of one channel, in generator time (see module docstring)."""

    gen_time_s: float | None = None
    tip_temp_centi_c: int | None = None
    slew_c_per_s: float = 0.0
    """Tip temperature change per second between the last two samples."""
    frozen_s: float = 0.0
    """Generator seconds with output commanded on since the tip temperature reading last moved by one count:
    the frozen-thermocouple window. Only time with output on counts, so a reading that froze before RF (at
    body temperature, where stillness is normal) is judged from the start of RF, and switching output off
    for a moment does not start the count again."""
    power_min_w: float = math.inf
    power_max_w: float = -math.inf
    """Measured power range over the samples with output on in that window (inf, -inf: none yet)."""
    powered_on: bool = False
    """Whether the gate had output commanded on at the last sample."""
    temp_at_on_c: float = 0.0
    max_temp_since_on_c: float = 0.0
    energy_since_on_j: float = 0.0
    impedance_window: tuple[tuple[float, float], ...] = ()
    """``(gen time s, impedance Ω)`` candidates for the window minimum, impedance strictly increasing."""
    clock_stalled: bool = False
    """The last sample's generator time did not advance past the one before (a frozen clock, or a reboot).

    The history before it is dropped, being incomparable; this flag keeps that from passing silently: the
    generator-fault interlock reports it, so output never runs on a generator whose clock is stuck or has
    restarted. The first sample of a trend has nothing to advance past and never sets it.
    """

    @property
    def impedance_rise_ohm(self) -> float:
        """Latest impedance minus the lowest over the roll-off window (only while output is commanded on)."""
        window = self.impedance_window
        return window[-1][1] - window[0][1] if window else 0.0


EMPTY_TREND = ChannelTrend()


class ClockRate(NamedTuple):
    """The generator's clock against the host's: how far each advanced over the last whole window of
    ``GENERATOR_CLOCK_RATE_WINDOW_S`` host time, from the frames' generator times and the host's reading of them."""

    host_start_s: float | None = None
    gen_start_s: float = 0.0
    rate: float | None = None
    """Generator seconds per host second over the last whole window; None until one has passed."""


def advance_clock_rate(clock: ClockRate, host_s: float, gen_s: float) -> ClockRate:
    """The measurement after one more frame, read at ``host_s``, stamped ``gen_s`` by the generator. A clock that
    went back (a reboot) starts a new window; its stall is the trends' ``clock_stalled``."""
    start = clock.host_start_s
    if start is None or gen_s < clock.gen_start_s:
        return ClockRate(host_s, gen_s, None)
    elapsed = host_s - start
    if elapsed < hard.GENERATOR_CLOCK_RATE_WINDOW_S:
        return clock
    return ClockRate(host_s, gen_s, (gen_s - clock.gen_start_s) / elapsed)


def advance_trend(
    trend: ChannelTrend, sample: ChannelTelemetry, gen_time_s: float, output_on: bool
) -> ChannelTrend:
    """The trend after one more telemetry sample; ``output_on`` is what the gate commanded at the time.

    A generator clock that does not advance (frozen, or gone back in a reboot) restarts the trend, since
    nothing before it is comparable, and marks it ``clock_stalled`` so the restart is itself a condition.
    """
    temp = sample.tip_temp_centi_c
    temp_c = temp / 100.0
    power_w = sample.power_centi_w / 100.0
    impedance_ohm = sample.impedance_deci_ohm / 10.0
    last_t = trend.gen_time_s
    stalled = last_t is not None and gen_time_s <= last_t
    if last_t is None or stalled or trend.tip_temp_centi_c is None:
        trend = EMPTY_TREND
        dt = 0.0
        slew = 0.0
        changed = True
    else:
        dt = gen_time_s - last_t
        slew = (temp - trend.tip_temp_centi_c) / 100.0 / dt
        changed = temp != trend.tip_temp_centi_c
    if changed:
        frozen_s, p_min, p_max = 0.0, math.inf, -math.inf
    else:
        frozen_s, p_min, p_max = trend.frozen_s, trend.power_min_w, trend.power_max_w
        if output_on:
            frozen_s += dt
    if output_on:
        p_min, p_max = min(p_min, power_w), max(p_max, power_w)
        if trend.powered_on:
            temp_at_on = trend.temp_at_on_c
            max_temp = max(trend.max_temp_since_on_c, temp_c)
            energy = trend.energy_since_on_j + power_w * dt
            window = _push_impedance(trend.impedance_window, gen_time_s, impedance_ohm)
        else:
            temp_at_on, max_temp, energy = temp_c, temp_c, 0.0
            window = ((gen_time_s, impedance_ohm),)
    else:
        temp_at_on, max_temp, energy, window = 0.0, 0.0, 0.0, ()
    return ChannelTrend(  # positionally, in field order: four of these a tick
        gen_time_s, temp, slew, frozen_s, p_min, p_max, output_on, temp_at_on, max_temp, energy, window, stalled
    )


def _push_impedance(
    window: tuple[tuple[float, float], ...], t: float, z: float
) -> tuple[tuple[float, float], ...]:
    """Monotonic-queue update: the first entry is always the minimum over the last ROLLOFF_WINDOW_S."""
    keep = len(window)
    while keep and window[keep - 1][1] >= z:  # drop the entries the new sample undercuts
        keep -= 1
    oldest = t - hard.ROLLOFF_WINDOW_S
    start = 0
    while start < keep and window[start][0] < oldest:  # and those that have left the window
        start += 1
    return (*window[start:keep], (t, z))


class SafetyInputs(NamedTuple):
    """Everything the interlocks may look at, at one moment (see module docstring)."""

    telemetry: Received[Telemetry] | None
    status: Received[Status] | None
    generator_heartbeat_at: float | None
    electrodes: Received[ElectrodeInfo] | None
    commanded: tuple[CommandedChannel, ...]
    """Per channel 1..4 (index 0..3)."""
    rf_on_s: tuple[float, ...]
    """RF-on time per channel since the plan was loaded; a plan uses each channel once, so per lesion."""
    trends: tuple[ChannelTrend, ...]
    loop_tick_at: float | None
    """When the control loop last evaluated the interlocks before this snapshot; None before the first."""
    operator_stop: bool
    imaging: ImagingStatus | None
    refusal: Received[Ack] | None = None
    """The generator's newest refusal of a command (an ACK whose result is not OK), if any."""
    unanswered: Unanswered | None = None
    """The oldest command sent after the newest one the generator acknowledged (``RfGenerator.unanswered``)."""
    generator_clock_rate: float | None = None
    """The generator's clock rate against the host's over the last whole window (:class:`ClockRate`)."""

    @property
    def energised(self) -> bool:
        """RF or stimulation is commanded on some channel."""
        for commanded in self.commanded:  # noqa: SIM110 (any() over a generator costs twice this, several times a tick)
            if commanded.energised:
                return True
        return False
