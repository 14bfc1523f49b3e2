"""The output gate: the only code that can enable RF or stimulation (ARCHITECTURE.md section 7).

The gate claims the generator's one output capability when it is built, so nothing else can send
``SET_OUTPUT`` or a non-zero ``STIM``. It builds the interlocks' snapshot itself from sources it trusts
(the driver's received messages, its own commands, its own clock); ``control`` supplies only the imaging
status. Each tick the control loop calls :meth:`OutputGate.evaluate`:

* a condition that holds while energy flows in its scope is a **trip**: ``OUTPUT_OFF`` for the union of
  the new trips' channels goes on the wire first (one frame per tick however many trips), then the gate
  stops any stimulation there, latches the latching trips, and only then calls ``record``;
* a condition that holds while its scope is idle is an **inhibit**: requests are refused, nothing latches;
* while the gate cannot see output off where it commanded it off (output against ``OUTPUT_OFF``, or stale
  telemetry or a lost link before a frame has shown off a channel that was on), ``OUTPUT_OFF`` (all
  channels) is re-sent every tick, in case a frame was lost, and the host heartbeat is withheld
  (:meth:`OutputGate.keep_alive`; requests are refused meanwhile) for at least as long as the generator's
  own watchdog needs to act: a generator that does not obey ``OUTPUT_OFF`` is stopped by that watchdog, the
  one path left that does not go through its command handling. The heartbeat is the generator's dead man's
  switch, so, like the output capability, it is the gate's to give. A generator that went on delivering
  through ten re-sent ``OUTPUT_OFF``, or past its own watchdog, keeps its uncommanded-output latch for the
  rest of the session: acknowledging cannot re-arm it;
* while a command waits for its ACK and nothing has been sent for ``COMMAND_RESTATE_S`` (70 ms), the newest
  command goes out again (an idle cart's OUTPUT_OFF, a held stimulus): a lost ACK is passed by its twin's, and
  a generator that answers nothing for ``COMMAND_ANSWER_S`` (150 ms) is a lost link (``link_lost``) until one
  is answered. An enabling command is repeated only while the gate still commands it and nothing blocks it.

:meth:`OutputGate.request_output` and :meth:`OutputGate.request_stim` re-check every interlock, every
latch and the setpoint against the plan and the limits before sending anything, and return a
:class:`Decision` that says why when they refuse; a condition their own evaluation finds under power trips there,
as the next tick's would have. :meth:`OutputGate.acknowledge` clears a latch only when
its condition no longer holds. All public methods are serialised by one lock, so the watchdog thread may
call :meth:`OutputGate.trip_from_watchdog` at any time.
"""

from __future__ import annotations

import enum
import math
import threading
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Final, NamedTuple

from firmware_bridge.clock import Clock
from firmware_bridge.generator import Received, RfGenerator
from firmware_bridge.messages import (
    ALL_CHANNELS,
    N_CHANNELS,
    ChannelTelemetry,
    Message,
    OutputMode,
    SetOutput,
    Stim,
    Telemetry,
    TelemetryFlag,
)
from safety import limits as hard
from safety.config import SafetyLimits, validated_limits
from safety.inputs import (
    EMPTY_TREND,
    ChannelTrend,
    ClockRate,
    CommandedChannel,
    ImagingStatus,
    SafetyInputs,
    Settling,
    advance_clock_rate,
    advance_trend,
)
from safety.interlocks import (
    SPECS,
    Evaluation,
    InterlockId,
    Priority,
    SafetyRules,
    Trip,
    channel_bit,
    evaluate_interlocks,
    imaging_not_live,
    over_power,
    reevaluate,
    thermocouple_frozen,
)
from safety.plan import LesionPlan, check_plan

_TripKey = tuple[InterlockId, int | None]
_UNCOMMANDED: Final[_TripKey] = (InterlockId.UNCOMMANDED_OUTPUT, None)
_UNSEEN: Final[tuple[_TripKey, ...]] = ((InterlockId.TELEMETRY_STALE, None), (InterlockId.LINK_LOST, None))
"""Conditions under which the host cannot see whether output went off."""

_OUTPUT_ON_FLAG: Final = int(TelemetryFlag.OUTPUT_ON)
_UNCOMMANDED_CENTI_W: Final = round(hard.UNCOMMANDED_POWER_W * 100)

_TELEMETRY_PERIOD_S: Final = hard.LOOP_PERIOD_S
"""The generator sends telemetry at 100 Hz (ARCHITECTURE.md section 4), the loop's own rate."""


class _Folded(NamedTuple):
    """A telemetry frame folded into the trends, waiting for its judgement."""

    frame: Received[Telemetry]
    earliest: float
    """The read of the frame folded before it: it cannot have landed before that read, which would have found it."""
    trends: tuple[ChannelTrend, ...]
    """The trends as they stood once it was folded."""


def _landed_at(folded: _Folded, newest: Received[Telemetry], frames_after: int) -> float:
    """When a frame ``frames_after`` frames older than ``newest`` reached the host, as near as can be told.

    A frame is dated by the read that found it, so two of one poll share a moment, and the older one, judged
    then, would be judged a period or more late: past the settling of a setpoint it was within when it landed.
    So it is dated back from the newest one's read by the generator time between them: at most a telemetry
    period a frame (a generator clock that jumps, or frames lost on the link, never date it further back; the
    error is then towards judging it later), never before ``folded.earliest``, never after its own read."""
    frame = folded.frame
    between_s = min((newest.msg.gen_time_us - frame.msg.gen_time_us) / 1e6, frames_after * _TELEMETRY_PERIOD_S)
    return min(frame.arrived_at, max(newest.arrived_at - between_s, folded.earliest))


class EventKind(enum.StrEnum):
    TRIP = "trip"
    """A condition held while energy flowed in its scope: OUTPUT_OFF sent (``seq``), latched if latching."""
    INHIBIT = "inhibit"
    """A condition began to hold while its scope was idle: output is refused, nothing latched."""
    CLEARED = "cleared"
    """A condition stopped holding (a latch stays until acknowledged)."""
    ACKNOWLEDGED = "acknowledged"
    """A latch was cleared by the operator's acknowledgement."""
    ACK_REFUSED = "ack_refused"
    """A latch was kept at acknowledgement: its condition still holds."""
    GRANTED = "granted"
    REFUSED = "refused"
    OFF = "off"
    """Output or stimulation turned off on request (not a trip)."""
    PLAN_LOADED = "plan_loaded"
    HEARTBEAT_WITHHELD = "heartbeat_withheld"
    """Output may be on against OUTPUT_OFF: the host heartbeat stops so the generator's own watchdog acts."""
    HEARTBEAT_RESUMED = "heartbeat_resumed"
    """The watchdog has had its time and output is seen off: the host heartbeat goes out again."""
    OUTPUT_UNSTOPPABLE = "output_unstoppable"
    """Output still on ``WITHHELD_HEARTBEAT_LIMIT_S`` after the heartbeat stopped: only the mains switch is left."""


@dataclass(frozen=True, slots=True)
class SafetyEvent:
    """One entry for the procedure record."""

    kind: EventKind
    at: float
    detail: str
    interlock: InterlockId | None = None
    channel: int | None = None
    priority: Priority | None = None
    seq: int | None = None
    """The SEQ of the command sent for this event (OUTPUT_OFF, SET_OUTPUT, STIM), if any."""


@dataclass(frozen=True, slots=True)
class Decision:
    """The answer to a request: allowed and sent (``seq``), or refused with every reason."""

    allowed: bool
    reasons: tuple[str, ...] = ()
    seq: int | None = None

    def __bool__(self) -> bool:
        return self.allowed


class StimKind(enum.StrEnum):
    SENSORY = "sensory"
    MOTOR = "motor"


RecordCallback = Callable[[SafetyEvent], None]
_CHANNELS_OF_MASK: Final = tuple(
    tuple(c for c in range(1, N_CHANNELS + 1) if mask & channel_bit(c)) for mask in range(ALL_CHANNELS + 1)
)
_OFF: Final = CommandedChannel(on=False, since=0.0)


def _stored_setpoints(setpoints: Mapping[int, float]) -> tuple[dict[int, float], list[str]]:
    """The request read once, its channels as the plain ints they store (see :func:`_stored_channel`), with why any
    key is refused: a mapping that changed between readings, or an int subclass whose hash and equality name one
    channel while its value indexes another, could pass one channel's check and drive another."""
    stored: dict[int, float] = {}
    refused: list[str] = []
    for key, value in list(setpoints.items()):
        channel = _stored_channel(key)
        if channel is None:
            refused.append(f"channel {key!r} is not a channel number")
        elif channel in stored:
            refused.append(f"channel {channel} is named twice")
        else:
            stored[channel] = value
    return stored, refused


def _stored_channel(channel: object) -> int | None:
    """``channel`` as the plain int it stores, or None if it is no int (a bool is none)."""
    if isinstance(channel, bool) or not isinstance(channel, int):
        return None
    return int.__index__(channel)


def _stored_number(value: object) -> float | None:
    """``value`` as a plain float, or None if it is no real number (a bool, a string, a numpy integer).

    Read from the number as stored (``float.__float__``, ``int.__index__`` of the base class), never through the
    comparisons or conversions of the value's own class: a subclass that overrides them could pass a check with
    one number and go on the wire as another. So the number checked is the number sent."""
    if isinstance(value, bool):
        return None
    if isinstance(value, float):
        return float.__float__(value)
    if isinstance(value, int):
        try:
            return float(int.__index__(value))
        except OverflowError:  # beyond any float: beyond any cap
            return math.inf
    return None


def _wire_setpoint(value: float) -> int:
    """A setpoint in the wire's 0.01 W or 0.01 V: rounded down, so rounding never passes a cap."""
    return math.floor(value * 100)


def _lowers(previous: CommandedChannel, setpoint: float) -> bool:
    """Whether commanding ``setpoint`` lowers the output of a channel that is on: then the one before settles."""
    return previous.on and setpoint < previous.setpoint


def _turned_on(previous: CommandedChannel, mode: OutputMode, setpoint: float, now: float) -> CommandedChannel:
    """A channel's commanded state once a request for ``setpoint`` is sent (see the settling note below); if it
    :func:`_lowers` the setpoint, the one before is the last of its ``settling``."""
    if not previous.on:
        return CommandedChannel(True, now, mode, setpoint)
    # The measurement may show a lowered setpoint's predecessor until SETPOINT_SETTLE_S after the generator
    # took the lowering command: until its ACK is read, at most COMMAND_ANSWER_S (then the link is lost anyway);
    # request_output dates it from the end of the write, as link_lost dates the answer, and the gate shortens it
    # when the ACK comes (OutputGate._settle_from_acks). With SETPOINT_SETTLE_S counted from the send instead of
    # the ACK, a generator held up before taking the command (seen on a loaded VM: the simulator process stalled)
    # delivered the old setpoint past the deadline and tripped over-power. Every lowering keeps its own
    # predecessor with its own deadline. One ceiling for them all tripped a generator doing nothing wrong: a
    # lowering while an earlier, higher one still settled took no deadline of its own, and when the earlier
    # one's ran out a tick later, the measurement still showing the setpoint just before was judged against
    # the new one (a real-time HIL run, 6.50 W "above the commanded 3.28 W" 10 ms after the lowering). Nor can
    # a setpoint lowered every tick keep an old one alive: each expires on its own. A new one replaces those it
    # covers (no higher, and its deadline the latest), which keeps a steady hold's few: the generator takes
    # commands in order, so once it has taken this one it has taken theirs. Expired ones go then too (a raise
    # keeps the tuple as it is: allowed_setpoint skips them).
    settling = previous.settling
    if _lowers(previous, setpoint):
        before = previous.setpoint
        kept = [s for s in settling if now < s.until and s.setpoint > before]
        kept.append(Settling(before, now + hard.COMMAND_ANSWER_S + hard.SETPOINT_SETTLE_S))
        settling = tuple(kept)
    return CommandedChannel(True, previous.since, mode, setpoint, settling, previous.stim_amplitude_mv,
                            previous.stim_since)


class _CheckedOutput(NamedTuple):
    """An output request after every check: refused if ``reasons``, else what to send and commit."""

    reasons: list[str]
    mask: int
    wire: list[int]
    """Setpoints per channel 1..4 in the wire's 0.01 W or 0.01 V (0 for channels not requested)."""
    prospective: dict[int, CommandedChannel]
    """The commanded state of every channel the request drives (bipolar partners too)."""
    starting: bool
    """The request turns output on in at least one of its channels."""


class OutputGate:
    """Decides whether RF may flow, and is the only holder of the generator's output capability."""

    def __init__(
        self,
        generator: RfGenerator,
        plan: LesionPlan,
        limits: SafetyLimits,
        clock: Clock,
        record: RecordCallback,
    ) -> None:
        """Check the limits and the plan, claim the capability (refused if anyone has it), send OUTPUT_OFF.

        ``limits`` is rebuilt and re-checked (:func:`safety.config.validated_limits`; ``LimitExceeded`` if
        it loosens a hard limit) before anything else, so limits changed after their own check never reach
        the interlocks, and a refused gate leaves the capability unclaimed.
        """
        limits = validated_limits(limits)
        rules = SafetyRules.compile(check_plan(plan, limits), limits)
        self._capability = generator.claim_output_capability()
        self._generator = generator
        self._clock = clock
        self._record = record
        self._limits = limits
        self._rules = rules
        self._lock = threading.RLock()
        now = clock.now()
        self._commanded: list[CommandedChannel] = [_OFF._replace(since=now)] * N_CHANNELS
        self._awaiting_settle: list[dict[int, Settling]] = [{} for _ in range(N_CHANNELS)]
        """Per channel, the SEQ of each SET_OUTPUT that lowered the setpoint and whose ACK has not been read yet,
        with the predecessor it left settling: its ACK starts that one's SETPOINT_SETTLE_S."""
        self._acks_looked_at = 0
        """The driver's ``acks_received`` when the gate last looked for those ACKs."""
        self._trends: list[ChannelTrend] = [EMPTY_TREND] * N_CHANNELS
        self._trend_source: Received[Telemetry] | None = None
        """The newest telemetry frame folded into the trends."""
        self._clock_rate = ClockRate()
        self._unjudged: list[_Folded] = []
        """Telemetry frames folded into the trends and not yet judged, oldest first: the newest alone, nearly every
        tick; up to TELEMETRY_KEPT after one poll, more if snapshots folded some between judgements."""
        self._rf_on_s = [0.0] * N_CHANNELS
        self._accounted_at = now
        self._last_tick_at: float | None = None
        self._operator_stop = False
        self._active: dict[_TripKey, Trip] = {}
        self._tripped: set[_TripKey] = set()
        self._latched: dict[_TripKey, Trip] = {}
        self._between_ticks: list[Trip] = []
        """Trips found outside the tick's evaluation (the watchdog's, a request's) since
        :meth:`take_trips_between_ticks` last handed them over."""
        self._withheld_since: float | None = None
        """When the host heartbeat was withheld (output may be on against OUTPUT_OFF); None while it goes out."""
        self._unstoppable = False
        self._unsafe_seen_at = 0.0
        """The last evaluation at which output could not be seen off where it was commanded off."""
        self._uncommanded_since: float | None = None
        """When output against OUTPUT_OFF began to be seen; None while it is not."""
        self._disobeyed = False
        """The generator went on delivering against OUTPUT_OFF re-sent for ``UNCOMMANDED_GRACE_S``, or beyond its
        own watchdog: its uncommanded-output latch cannot be acknowledged in this session."""
        self._unseen_off = 0
        """Channels turned off from energised that no telemetry frame read since has shown off."""
        self._unseen_off_since = now
        self._evaluated: Evaluation | None = None
        """The tick's last evaluation, for the requests and acknowledgements until the next (:meth:`_conditions`)."""
        seq = generator.output_off(ALL_CHANNELS)
        self._emit([SafetyEvent(EventKind.OFF, now, "gate started: output off on all channels", seq=seq)])

    # -- state, read-only ----------------------------------------------------------------------------------
    @property
    def rules(self) -> SafetyRules:
        return self._rules

    @property
    def active_alarms(self) -> tuple[Trip, ...]:
        """Conditions holding at the last evaluation and unacknowledged latches; highest priority first."""
        with self._lock:
            merged = {**self._latched, **self._active}
        return tuple(sorted(merged.values(), key=lambda t: (-t.priority, t.channel or 0, t.interlock.value)))

    @property
    def heartbeat_withheld_since(self) -> float | None:
        """Since when the host heartbeat is withheld (output not seen off where commanded off); None if it is not."""
        with self._lock:
            return self._withheld_since

    @property
    def output_unstoppable(self) -> bool:
        """Output went on ``WITHHELD_HEARTBEAT_LIMIT_S`` after the heartbeat stopped: switch off at the mains."""
        with self._lock:
            return self._unstoppable

    @property
    def latched(self) -> tuple[Trip, ...]:
        with self._lock:
            return tuple(self._latched.values())

    @property
    def commanded(self) -> tuple[CommandedChannel, ...]:
        """What the gate last commanded per channel 1..4."""
        with self._lock:
            return tuple(self._commanded)

    def output_permitted(self, channel: int) -> bool:
        """Whether a request for ``channel`` could pass the last evaluation's conditions and the latches."""
        with self._lock:
            rules = self._rules.by_channel.get(channel)
            if rules is None or rules.lead_channel != channel:
                return False
            if self._withheld_since is not None:
                return False
            return not any(t.mask & rules.mask for t in (*self._latched.values(), *self._active.values()))

    def snapshot(self, imaging: ImagingStatus | None = None) -> SafetyInputs:
        """The interlocks' inputs as of now (for display and tests; evaluation builds its own)."""
        with self._lock:
            return self._refresh(imaging, self._clock.now())

    # -- the tick ------------------------------------------------------------------------------------------
    def evaluate(self, imaging: ImagingStatus | None = None) -> list[Trip]:
        """Run every interlock; on new trips send one OUTPUT_OFF first, then latch and record. Every tick."""
        with self._lock:
            now = self._clock.now()
            inputs = self._refresh(imaging, now)
            self._last_tick_at = now
            conditions = evaluate_interlocks(inputs, self._rules, now)
            self._evaluated = Evaluation(inputs, self._rules, conditions)
            trips = self._apply(self._with_unjudged(conditions, imaging), now)
            self._restate_if_overdue(now)
            return trips

    def _apply(self, conditions: list[Trip], now: float) -> list[Trip]:
        if not conditions and not self._active and self._withheld_since is None:  # the usual tick: all quiet
            return []
        active = {t.key: t for t in conditions}
        new_trips = self._new_trips(conditions)
        events = self._trip(new_trips, now) if new_trips else []
        cause = self._unconfirmed_off(active)
        if cause is not None and not new_trips:  # a trip has just sent its own
            self._generator.output_off(ALL_CHANNELS)
        tripped_now = {t.key for t in new_trips}
        for key, trip in active.items():
            if key not in self._active and key not in tripped_now:
                events.append(self._event(EventKind.INHIBIT, now, trip))
        for key, trip in self._active.items():
            if key not in active:
                self._tripped.discard(key)
                events.append(self._event(EventKind.CLEARED, now, trip))
        self._active = active
        self._watch_uncommanded(active.get(_UNCOMMANDED), now)
        self._withhold_heartbeat(cause, now, events)
        self._emit(events)
        return new_trips

    def _new_trips(self, conditions: list[Trip]) -> list[Trip]:
        """The conditions that trip now: not tripped already, and in a scope where energy flows (or idle-trip)."""
        return [t for t in conditions if t.key not in self._tripped and (t.trips_when_idle or self._energised(t.mask))]

    def _trip(self, new_trips: list[Trip], now: float) -> list[SafetyEvent]:
        """One OUTPUT_OFF for the union of their channels, then latch them; their events, to record after."""
        mask = 0
        for trip in new_trips:
            mask |= trip.mask
        seq = self._off(mask, now)
        for trip in new_trips:
            self._tripped.add(trip.key)
            if SPECS[trip.interlock].latching:
                self._latched[trip.key] = trip
        return [self._event(EventKind.TRIP, now, trip, seq) for trip in new_trips]

    def _restate_if_overdue(self, now: float) -> None:
        """While a command waits for its ACK and nothing has been sent for ``COMMAND_RESTATE_S``, send the newest
        command again: it states what the gate already commands (the driver repeats it only if it is still the
        newest), and its ACK passes one lost on the wire. A stimulus is held for seconds through a nerve test,
        and an idle cart sends nothing else that is acknowledged: without this a single lost ACK would read as a
        generator not taking commands (``link_lost``), or, once that held, could never clear. A self-test request
        is not repeated; an idle cart sends OUTPUT_OFF instead."""
        gen = self._generator
        newest = gen.newest_command
        if newest is None or now - newest.sent_at < hard.COMMAND_RESTATE_S or gen.unanswered is None:
            return
        repeated = gen.repeat(self._capability, newest.place) if self._still_commanded(newest.msg) else None
        if repeated is None and not any(c.energised for c in self._commanded):
            gen.output_off(ALL_CHANNELS)

    def _still_commanded(self, msg: Message) -> bool:
        """Whether repeating ``msg`` states only what the gate commands now: any stop may be repeated; an enabling
        command only while every channel it drives is still commanded so and nothing blocks it (a latch, a
        condition, the withheld heartbeat, the operator's stop). The driver keeps a stop whose write failed as the
        newest command, so that is what a repeat retries; this is the second guard, on the gate's own account."""
        if isinstance(msg, SetOutput):
            mask = msg.channel_mask
            driven = all(self._commanded[c - 1].on for c in self._channels_of(mask))
        elif isinstance(msg, Stim) and msg.amplitude_mv:
            mask = msg.channel_mask
            driven = all(self._commanded[c - 1].stim_amplitude_mv == msg.amplitude_mv for c in self._channels_of(mask))
        else:
            return True
        if not driven or self._withheld_since is not None or self._operator_stop:
            return False
        return not any(t.mask & mask for t in (*self._latched.values(), *self._active.values()))

    def _watch_uncommanded(self, uncommanded: Trip | None, now: float) -> None:
        """Note how long output against OUTPUT_OFF has lasted; past the grace (ten re-sent OUTPUT_OFF, where a
        lost frame is put right by the first) the generator is not obeying, and its latch stays."""
        if uncommanded is None:
            self._uncommanded_since = None
        elif self._uncommanded_since is None:
            self._uncommanded_since = now
        elif now - self._uncommanded_since >= hard.UNCOMMANDED_GRACE_S:
            self._disobeyed = True

    def _unconfirmed_off(self, active: Mapping[_TripKey, Trip]) -> Trip | None:
        """Why output may be on where the gate commanded it off: output seen against OUTPUT_OFF, or stale
        telemetry or a lost link while a channel that was on has not yet been seen off (a trip on them turns
        every channel off; a lesion's own end does too, and the generator may hang just then)."""
        uncommanded = active.get(_UNCOMMANDED)
        if uncommanded is not None or not self._unseen_off:
            return uncommanded
        return next((active[key] for key in _UNSEEN if key in active), None)

    def _see_off(self, channels: Sequence[ChannelTelemetry]) -> None:
        """Clear the channels a frame read after their OUTPUT_OFF shows off (no output flag, at most 1 W)."""
        for index in range(N_CHANNELS):
            if self._unseen_off & (1 << index):
                ch = channels[index]
                if not ch.flags & _OUTPUT_ON_FLAG and ch.power_centi_w <= _UNCOMMANDED_CENTI_W:
                    self._unseen_off &= ~(1 << index)

    def _withhold_heartbeat(self, cause: Trip | None, now: float, events: list[SafetyEvent]) -> None:
        """Withhold the host heartbeat while ``cause`` holds, at least until the generator's own watchdog has
        certainly acted (:data:`~safety.limits.WITHHELD_HEARTBEAT_LIMIT_S`), and until output has been seen off
        for a whole watchdog timeout: a heartbeat sent on the first clean frame would reset that watchdog, and
        an output that comes and goes could keep it from ever acting (it is reported unstoppable instead)."""
        if cause is not None:
            self._unsafe_seen_at = now
        since = self._withheld_since
        if since is None:
            if cause is not None:
                self._withheld_since = now
                events.append(SafetyEvent(
                    EventKind.HEARTBEAT_WITHHELD, now,
                    f"{cause.reason}: host heartbeat withheld, so that the generator's own watchdog turns all output "
                    f"off within {hard.GENERATOR_HEARTBEAT_TIMEOUT_S * 1000:.0f} ms", cause.interlock, None,
                    Priority.HIGH))
            return
        if now - since < hard.WITHHELD_HEARTBEAT_LIMIT_S:
            return
        if cause is None:
            if now - self._unsafe_seen_at < hard.GENERATOR_HEARTBEAT_TIMEOUT_S:
                return
            self._withheld_since, self._unstoppable = None, False
            events.append(SafetyEvent(EventKind.HEARTBEAT_RESUMED, now,
                                      "output seen off after the generator's watchdog: host heartbeat resumed"))
        elif not self._unstoppable and cause.interlock is InterlockId.UNCOMMANDED_OUTPUT:
            self._unstoppable = self._disobeyed = True
            events.append(SafetyEvent(
                EventKind.OUTPUT_UNSTOPPABLE, now,
                f"{cause.reason} {(now - since) * 1000:.0f} ms after the host heartbeat was withheld: the generator "
                "obeys neither OUTPUT_OFF nor its own watchdog; switch it off at its mains switch",
                cause.interlock, None, Priority.HIGH))

    def keep_alive(self) -> int | None:
        """Send the host heartbeat if it is due and not withheld (module docstring); its SEQ if sent.

        The control loop calls this in its slack, every tick, instead of the driver's own ``keep_alive``. Only the
        loop's own evaluation changes whether it is withheld, so the write happens outside the gate's lock: a
        blocked serial write must not keep the watchdog's thread from the gate."""
        with self._lock:
            withheld = self._withheld_since is not None
        return None if withheld else self._generator.keep_alive()

    # -- requests ------------------------------------------------------------------------------------------
    def request_output(
        self, setpoints: Mapping[int, float], imaging: ImagingStatus | None = None
    ) -> Decision:
        """Enable or change RF: ``{channel: W}`` (continuous, bipolar) or ``{channel: V}`` (pulsed).

        The mode, the waveform and the channel pairing come from the plan, never from the caller. One call
        sends one SET_OUTPUT, so all channels of a call must share a mode (and a pulsed waveform).
        """
        setpoints, misnamed = _stored_setpoints(setpoints)
        with self._lock:
            now = self._clock.now()
            checked = self._check_output(setpoints, imaging, now, misnamed)
            if checked.reasons:
                self._emit(
                    [SafetyEvent(EventKind.REFUSED, now, f"output {dict(setpoints)}: " + "; ".join(checked.reasons))]
                )
                return Decision(False, tuple(checked.reasons))
            first = self._rules.by_channel[next(iter(setpoints))]
            wire = checked.wire
            msg = SetOutput(
                checked.mask,
                int(first.output_mode),
                (wire[0], wire[1], wire[2], wire[3]),
                first.pulse_width_us,
                first.pulse_rate_deci_hz,
            )
            seq = self._generator.set_output(self._capability, msg)
            written_at = self._clock.now()
            for driven, commanded in checked.prospective.items():
                if _lowers(self._commanded[driven - 1], commanded.setpoint):  # its ACK settles the one before
                    # Counted from the end of the write, as link_lost counts the answer: a write that blocked is
                    # the host's delay, and the generator had no command to take before it ended.
                    *kept, newest = commanded.settling
                    settling = Settling(newest.setpoint, written_at + hard.COMMAND_ANSWER_S + hard.SETPOINT_SETTLE_S)
                    commanded = commanded._replace(settling=(*kept, settling))
                    self._awaiting_settle[driven - 1][seq] = settling
                self._commanded[driven - 1] = commanded
            self._unseen_off &= ~checked.mask
            # Output turning on is an event of its own; a new setpoint on a channel already on is in the
            # command's own record row (same SEQ), which only the gate can have sent.
            if checked.starting:
                self._emit(
                    [SafetyEvent(EventKind.GRANTED, now, f"output on, mask 0x{checked.mask:02X} "
                                 f"{first.output_mode.name}", seq=seq)]
                )
            return Decision(True, (), seq)

    def _check_output(
        self, setpoints: Mapping[int, float], imaging: ImagingStatus | None, now: float, misnamed: list[str]
    ) -> _CheckedOutput:
        """Every reason to refuse the request (``misnamed``: its refused keys), and what it would command if granted."""
        reasons = list(misnamed)
        by_channel = self._rules.by_channel
        wire = [0] * N_CHANNELS
        mask = 0
        waveforms = set()
        if not setpoints:
            reasons.append("no channel requested")
        for channel, value in setpoints.items():
            rules = by_channel.get(channel)
            if rules is None:
                reasons.append(f"channel {channel} is not in the plan")
                continue
            if rules.lead_channel != channel:
                reasons.append(f"channel {channel} is the bipolar partner of channel {rules.lead_channel}")
                continue
            mask |= rules.mask
            waveforms.add(rules.waveform)
            cap = rules.setpoint_max
            number = _stored_number(value)
            # Written so that NaN and infinities fail the comparison; bool is an int, but no setpoint.
            if number is None or not 0.0 <= number <= cap:
                unit = "V" if rules.output_mode == OutputMode.RF_PULSED else "W"
                reasons.append(f"channel {channel}: setpoint {value!r} {unit} outside 0..{cap} {unit}")
            else:
                wire[channel - 1] = _wire_setpoint(number)
            if self._rf_on_s[rules.index] >= rules.rf_time_budget_s:
                reasons.append(f"channel {channel}: no RF time left ({self._rf_on_s[rules.index]:.1f} s used)")
        if len(waveforms) > 1:
            reasons.append("channels of one request must share a mode and waveform")
        reasons += self._blocking(mask, imaging, now)
        prospective: dict[int, CommandedChannel] = {}
        if not reasons:
            prospective = self._prospective(setpoints, wire, now)
            reasons += self._prospective_over_power(prospective, now)
            reasons += self._prospective_frozen(prospective)
        commanded = self._commanded
        for index, state in enumerate(commanded):
            if state.stim_amplitude_mv:
                reasons.append(f"stimulation is on (channel {index + 1}); stop it first")
                break
        starting = False
        for channel in self._channels_of(mask):
            if not commanded[channel - 1].on:
                starting = True
                break
        if starting and self._rules.imaging_required:
            not_live = imaging_not_live(imaging, now, self._rules.imaging_max_age_s, 0.0)
            if not_live is not None:
                reasons.append(f"starting RF needs live imaging (the loss grace applies only once RF is on): "
                               f"{not_live}")
        return _CheckedOutput(reasons, mask, wire, prospective, starting)

    def _prospective(self, setpoints: Mapping[int, float], wire: list[int], now: float) -> dict[int, CommandedChannel]:
        """What each channel the request drives (bipolar partners too) will be commanded if it is sent."""
        states: dict[int, CommandedChannel] = {}
        by_channel = self._rules.by_channel
        commanded = self._commanded
        for channel in setpoints:
            rules = by_channel[channel]
            setpoint = wire[channel - 1] / 100
            for driven in _CHANNELS_OF_MASK[rules.mask]:
                states[driven] = _turned_on(commanded[driven - 1], rules.output_mode, setpoint, now)
        return states

    def _prospective_over_power(self, prospective: Mapping[int, CommandedChannel], now: float) -> list[str]:
        """Would the measurement trip over-power under the command about to be sent? Then refuse it."""
        rx = self._generator.telemetry
        if rx is None:
            return []
        reasons = []
        channels = rx.msg.channels
        by_channel = self._rules.by_channel
        for driven, commanded in prospective.items():
            reason = over_power(channels, commanded, by_channel[driven], now)
            if reason is not None:
                reasons.append(f"{InterlockId.OVER_POWER.value}: channel {driven}: {reason} (as requested)")
        return reasons

    def _prospective_frozen(self, prospective: Mapping[int, CommandedChannel]) -> list[str]:
        """Would a channel turning on trip thermocouple_frozen on its first frame? Then refuse it."""
        reasons = []
        for driven in prospective:
            if not self._commanded[driven - 1].on:
                reason = thermocouple_frozen(self._trends[driven - 1])
                if reason is not None:
                    reasons.append(f"{InterlockId.THERMOCOUPLE_FROZEN.value}: channel {driven}: {reason} "
                                   "(as requested)")
        return reasons

    def _judge(self, imaging: ImagingStatus | None, now: float) -> list[Trip]:
        """The conditions holding now, for a decision between ticks (a request, an acknowledgement).

        What the decision finds is acted on as the tick's evaluation would have acted on it a period later: a
        condition under power trips (output off, latched, handed over with the next tick's trips). Refusing
        alone would latch nothing, and a lesion ended on the refusal leaves its scope idle, where the condition
        (a lost link, say) never trips: the procedure would end with no alarm naming its cause.
        """
        newest_only = self._conditions(imaging, now)
        conditions = self._with_unjudged(newest_only, imaging)
        if self._new_trips(conditions) or len(conditions) > len(newest_only):  # or an older frame's: recorded
            # The tick's own handling, heartbeat withholding included (before the next tick's keep_alive).
            self._between_ticks += self._apply(conditions, now)
        return conditions

    def _blocking(self, mask: int, imaging: ImagingStatus | None, now: float) -> list[str]:
        """Every condition holding now (acted on: :meth:`_judge`), and every latch, that covers a channel of
        ``mask``."""
        conditions = self._judge(imaging, now)
        reasons = [f"{t.interlock.value}: {t.reason}" for t in conditions if t.mask & mask]
        reasons += [
            f"latched {t.interlock.value}: {t.reason}" for t in self._latched.values() if t.mask & mask
        ]
        if self._withheld_since is not None:  # the generator refuses output without a live host heartbeat anyway
            reasons.append("host heartbeat withheld until output is seen off (safety.gate)")
        return reasons

    def request_stim(
        self, channel: int, kind: StimKind, amplitude_mv: int, imaging: ImagingStatus | None = None
    ) -> Decision:
        """Start (or change) sensory or motor stimulation on one planned channel, with the plan's settings.

        Any electrode the plan places, a bipolar pair's partner too: each is a needle near a nerve, and the motor
        test is what keeps a lesion off a motor nerve. The stimulus goes out on that electrode's own channel and its
        stimulation_mismatch is judged there; what blocks it is what blocks its lesion (the pair's mask)."""
        with self._lock:
            now = self._clock.now()
            settings = self._rules.plan.stimulation
            limit_mv = min(settings.max_amplitude_mv, self._limits.stim_amplitude_max_mv)
            stored = _stored_channel(channel)  # the channel judged is the channel stimulated (_stored_setpoints)
            rules = None if stored is None else self._rules.by_channel.get(stored)
            reasons: list[str] = []
            if rules is None:
                reasons.append(f"channel {channel!r} has no electrode in the plan")
            channel = 0 if stored is None else stored  # 0: no channel (refused above)
            # Whole millivolts, read as stored (see _stored_number): the number checked is the number sent.
            stored = None if isinstance(amplitude_mv, bool) or not isinstance(amplitude_mv, int) else (
                int.__index__(amplitude_mv))
            if stored is None or not 0 < stored <= limit_mv:
                reasons.append(f"amplitude {amplitude_mv!r} mV outside 1..{limit_mv} mV")
            else:
                amplitude_mv = stored
            reasons += self._blocking(0 if rules is None else rules.mask, imaging, now)  # judged whatever it asks
            if any(c.on for c in self._commanded):
                reasons.append("RF output is on; stimulation waits until it is off")
            others = [
                c
                for c in range(1, N_CHANNELS + 1)
                if c != channel and self._commanded[c - 1].stim_amplitude_mv
            ]
            if others:
                reasons.append(f"stimulation is on channel {others[0]}; one channel at a time")
            if reasons:
                self._emit(
                    [
                        SafetyEvent(
                            EventKind.REFUSED,
                            now,
                            f"stim {kind.value} channel {channel} {amplitude_mv!r} mV: " + "; ".join(reasons),
                        )
                    ]
                )
                return Decision(False, tuple(reasons))
            frequency_hz = (
                settings.sensory_frequency_hz if kind is StimKind.SENSORY else settings.motor_frequency_hz
            )
            msg = Stim(channel_bit(channel), round(frequency_hz * 10), settings.pulse_width_us, amplitude_mv)
            seq = self._generator.stim(self._capability, msg)
            previous = self._commanded[channel - 1]
            self._commanded[channel - 1] = previous._replace(
                stim_amplitude_mv=amplitude_mv,
                since=previous.since if previous.energised else now,
                # The measurement settles from a new amplitude; re-sending the same one must not keep the
                # check blind by restarting the settling time.
                stim_since=previous.stim_since if amplitude_mv == previous.stim_amplitude_mv else now,
            )
            self._emit(
                [
                    SafetyEvent(
                        EventKind.GRANTED,
                        now,
                        f"stim {kind.value} {frequency_hz} Hz {amplitude_mv} mV",
                        channel=channel,
                        seq=seq,
                    )
                ]
            )
            return Decision(True, (), seq)

    # -- turning things off (needs no justification) ------------------------------------------------------
    def stop_stim(self) -> int:
        """Stop stimulation on every channel; returns the STIM command's SEQ."""
        with self._lock:
            now = self._clock.now()
            seq = self._generator.stim(None, Stim(ALL_CHANNELS, 0, 0, 0))
            for index, commanded in enumerate(self._commanded):
                if commanded.stim_amplitude_mv:
                    self._commanded[index] = commanded._replace(
                        stim_amplitude_mv=0, since=now if not commanded.on else commanded.since, stim_since=now
                    )
            self._emit([SafetyEvent(EventKind.OFF, now, "stimulation stopped", seq=seq)])
            return seq

    def channel_off(self, channel: int) -> int:
        """End RF on one channel (its bipolar pair with it), e.g. at the end of its lesion."""
        with self._lock:
            rules = self._rules.by_channel.get(channel)
            mask = rules.mask if rules is not None else channel_bit(channel)
            now = self._clock.now()
            self._account(now)
            seq = self._off(mask, now)
            self._emit(
                [SafetyEvent(EventKind.OFF, now, f"output off, mask 0x{mask:02X}", channel=channel, seq=seq)]
            )
            return seq

    def all_off(self, reason: str = "requested") -> int:
        """Turn output and stimulation off on every channel."""
        with self._lock:
            now = self._clock.now()
            self._account(now)
            seq = self._off(ALL_CHANNELS, now)
            self._emit([SafetyEvent(EventKind.OFF, now, f"all output off: {reason}", seq=seq)])
            return seq

    def operator_stop(self) -> Trip:
        """The operator's stop: all output off at once, latched until acknowledged."""
        with self._lock:
            now = self._clock.now()
            self._account(now)
            self._operator_stop = True
            return self._force_trip(InterlockId.OPERATOR_STOP, "operator stop", now)

    def trip_from_watchdog(self, detail: str, lock_timeout_s: float = hard.LOOP_PERIOD_S) -> bool:
        """Called by the watchdog thread: all output off and latch CONTROL_LOOP_OVERRUN.

        If the gate's lock cannot be had within ``lock_timeout_s`` (a caller stuck inside the gate),
        OUTPUT_OFF is still written, unlatched, and False is returned so the watchdog tries again.
        """
        if not self._lock.acquire(timeout=lock_timeout_s):
            self.emergency_off()
            return False
        try:
            now = self._clock.now()
            self._account(now)
            # Handed over once per trip: not when the loop's own evaluation already tripped (and returned)
            # this stall, nor again when a failed record makes the watchdog force the same trip once more.
            fresh = (InterlockId.CONTROL_LOOP_OVERRUN, None) not in self._tripped
            self._force_trip(InterlockId.CONTROL_LOOP_OVERRUN, detail, now,
                             hand_over=self._between_ticks if fresh else None)
            return True
        finally:
            self._lock.release()

    def take_trips_between_ticks(self) -> list[Trip]:
        """The trips found since the last call outside the tick's evaluation, each once and never one an
        evaluation already returned: the watchdog's (on its own thread) and those a request's or an
        acknowledgement's own evaluation found (see :meth:`_judge`). The loop hands them to its owner with the
        tick's own."""
        with self._lock:
            trips, self._between_ticks = self._between_ticks, []
            return trips

    def emergency_off(self) -> int:
        """OUTPUT_OFF on every channel straight to the wire: no lock, no state change, no record.

        For the watchdog when the orderly path cannot be trusted (the lock is held, or the trip raised):
        turning output off needs no justification, and whatever failed must not be in its way.
        """
        return self._generator.output_off(ALL_CHANNELS)

    def _force_trip(self, interlock: InterlockId, reason: str, now: float, hand_over: list[Trip] | None = None) -> Trip:
        """Off, latched, handed over (if ``hand_over``), then recorded: a record that fails loses none of those."""
        trip = Trip(interlock, None, reason, ALL_CHANNELS, SPECS[interlock].trips_when_idle)
        seq = self._off(ALL_CHANNELS, now)
        self._tripped.add(trip.key)
        self._latched[trip.key] = trip
        self._active[trip.key] = trip
        if hand_over is not None:
            hand_over.append(trip)
        self._emit([self._event(EventKind.TRIP, now, trip, seq)])
        return trip

    # -- acknowledgement and plans -------------------------------------------------------------------------
    def acknowledge(self, imaging: ImagingStatus | None = None) -> list[Trip]:
        """The operator's acknowledgement: clear each latch whose condition no longer holds; return those.

        Acknowledging also ends an operator stop (its cause is the stop itself). A latch whose condition
        still holds is kept and recorded as refused; a condition found under power trips, as a request's does
        (:meth:`_judge`).
        """
        with self._lock:
            now = self._clock.now()
            self._operator_stop = False
            latched = list(self._latched.items())  # what the operator saw: not a trip found just now
            holding = {t.key for t in self._judge(imaging, now)}
            cleared: list[Trip] = []
            events: list[SafetyEvent] = []
            for key, trip in latched:
                if key in holding:
                    events.append(self._event(EventKind.ACK_REFUSED, now, trip))
                elif key == _UNCOMMANDED and self._disobeyed:
                    events.append(SafetyEvent(
                        EventKind.ACK_REFUSED, now, f"{trip.reason}; the generator went on delivering against "
                        "OUTPUT_OFF: it must be serviced before any more output (this latch stays for the session)",
                        trip.interlock, trip.channel, trip.priority))
                else:
                    # Not holding now, by this judgement: so not active either. Left tripped, the condition coming
                    # back before the next tick would not trip again (a second stall under power, granted meanwhile).
                    del self._latched[key]
                    self._tripped.discard(key)
                    self._active.pop(key, None)
                    cleared.append(trip)
                    events.append(self._event(EventKind.ACKNOWLEDGED, now, trip))
            self._emit(events)
            return cleared

    def load_plan(self, plan: LesionPlan) -> Decision:
        """Replace the plan (to repeat or add lesions): only with every channel off; RF time restarts."""
        with self._lock:
            now = self._clock.now()
            if any(c.energised for c in self._commanded):
                return Decision(False, ("output or stimulation is on",))
            self._rules = SafetyRules.compile(check_plan(plan, self._limits), self._limits)
            self._rf_on_s = [0.0] * N_CHANNELS
            self._emit([SafetyEvent(EventKind.PLAN_LOADED, now, f"plan {plan.name!r} loaded")])
            return Decision(True)

    # -- internals -----------------------------------------------------------------------------------------
    def _conditions(self, imaging: ImagingStatus | None, now: float) -> list[Trip]:
        """The conditions holding now, on a snapshot of now, from the tick's own evaluation where it still holds.

        A request after the evaluation with the same received messages, the same imaging, and no command or
        stop since, differs from it only in time (a few microseconds on the cart): only the clocked interlocks
        run again (:func:`~safety.interlocks.reevaluate`, which compares the two snapshots itself); anything
        else is evaluated afresh. The clocked ones run again even at the evaluation's own moment (simulated
        time): the evaluation's snapshot predates the tick it records, so a late tick's control_loop_overrun,
        found by that evaluation, no longer holds once the loop has ticked. A request is judged as a fresh
        evaluation would judge it (tests/safety/test_gate_machine.py).
        """
        inputs = self._refresh(imaging, now)
        if self._evaluated is None:
            return evaluate_interlocks(inputs, self._rules, now)
        return reevaluate(self._evaluated, inputs, self._rules, now)

    def _refresh(self, imaging: ImagingStatus | None, now: float) -> SafetyInputs:
        """Account RF time, fold new telemetry into the trends, and build the snapshot of the newest frame.

        Every frame read since the last refresh is folded, in order, and waits to be judged with the trends as
        they stood after it (:meth:`_with_unjudged`): the newest by this snapshot, any before it (two frames in
        one poll; one a display's snapshot folded) on its own, so that what one frame showed is judged even when
        a newer frame came before the next judgement."""
        self._account(now)
        self._settle_from_acks(now)
        rx = self._generator.telemetry
        if rx is not None and rx is not self._trend_source:
            for frame in self._unfolded(rx):
                previous = self._trend_source
                self._fold(frame)
                earliest = frame.arrived_at if previous is None else previous.arrived_at
                self._unjudged.append(_Folded(frame, earliest, tuple(self._trends)))
            trends = self._unjudged[-1].trends
        else:
            trends = tuple(self._trends)
        return self._inputs_with(rx, imaging, trends)

    def _unfolded(self, rx: Received[Telemetry]) -> tuple[Received[Telemetry], ...]:
        """The frames the driver read after the last one folded, up to ``rx``, oldest first: ``rx`` alone when each
        poll reads one frame, or when nothing was folded yet (frames read before the gate could judge them only
        start the trends). If the last one folded has left the driver's short history, every kept frame up to
        ``rx`` is new."""
        last = self._trend_source
        kept = self._generator.recent_telemetry
        if last is None or (len(kept) > 1 and kept[-1] is rx and kept[-2] is last):  # nearly every tick
            return (rx,)
        recent = tuple(kept)  # one read: snapshot() may run on a display's thread while the loop polls
        newest = len(recent) - 1
        while newest >= 0 and recent[newest] is not rx:
            newest -= 1
        if newest < 0:  # not kept (a driver that keeps no history): the newest alone, as before there was one
            return (rx,)
        oldest = newest
        while oldest > 0 and recent[oldest - 1] is not last:
            oldest -= 1
        return recent[oldest:newest + 1]

    def _fold(self, rx: Received[Telemetry]) -> None:
        """One telemetry frame into the trends, and into what has been seen off."""
        self._trend_source = rx
        if self._unseen_off and rx.arrived_at > self._unseen_off_since:
            self._see_off(rx.msg.channels)
        gen_time_s = rx.msg.gen_time_us / 1e6
        self._clock_rate = advance_clock_rate(self._clock_rate, rx.arrived_at, gen_time_s)
        for index in range(N_CHANNELS):
            self._trends[index] = advance_trend(
                self._trends[index], rx.msg.channels[index], gen_time_s, self._commanded[index].on
            )

    def _with_unjudged(self, conditions: list[Trip], imaging: ImagingStatus | None) -> list[Trip]:
        """``conditions`` (the newest frame's) and every condition a frame folded before it and not yet judged
        shows, each once (the first frame's finding): what a tick of its own would have found, acted on in this
        one, so however many frames trip, one OUTPUT_OFF goes out.

        Such a frame is judged at the moment it landed, as dated back from the newest frame (:func:`_landed_at`),
        with the gate's commands and this judgement's imaging: it contributes what it carries. What changes with
        time alone and the frame (a settling setpoint or stimulus, the grace for output seen against OUTPUT_OFF)
        is judged as it stood then; everything else that changes with time only grows with it, and holds at
        least as much for the newest frame, judged now. The newest is the last folded (the snapshot's own)."""
        unjudged = self._unjudged
        if not unjudged:
            return conditions
        self._unjudged = []
        if len(unjudged) == 1:  # nearly every call
            return conditions
        newest = unjudged[-1].frame
        found: dict[_TripKey, Trip] = {}
        for place, folded in enumerate(unjudged[:-1]):
            landed_at = _landed_at(folded, newest, len(unjudged) - 1 - place)
            earlier = self._inputs_with(folded.frame._replace(arrived_at=landed_at), imaging, folded.trends)
            for trip in evaluate_interlocks(earlier, self._rules, landed_at):
                # Imaging is this judgement's, not the frame's: its age is judged now, on the newest. Judged at the
                # moment an older frame landed, a probe frame stamped since reads as dated ahead of the clock.
                if trip.interlock is not InterlockId.IMAGING_LOST:
                    found.setdefault(trip.key, trip)
        for trip in conditions:
            found.setdefault(trip.key, trip)
        return list(found.values())

    def _inputs_with(
        self, rx: Received[Telemetry] | None, imaging: ImagingStatus | None, trends: tuple[ChannelTrend, ...]
    ) -> SafetyInputs:
        """The interlocks' inputs with ``rx`` as the telemetry and ``trends`` as they stood after it; everything
        else as it stands now."""
        gen = self._generator
        heartbeat = gen.heartbeat
        return SafetyInputs(  # positionally, in SafetyInputs' field order: built every tick
            rx,
            gen.status,
            None if heartbeat is None else heartbeat.arrived_at,
            gen.electrodes,
            tuple(self._commanded),
            tuple(self._rf_on_s),
            trends,
            self._last_tick_at,
            self._operator_stop,
            imaging,
            gen.last_refusal,
            gen.unanswered,
            self._clock_rate.rate,
        )

    def _settle_from_acks(self, now: float) -> None:
        """A lowered setpoint's predecessor settles SETPOINT_SETTLE_S from the ACK of the command that lowered it
        (one whose ACK never comes, lost while later commands were answered, keeps its deadline from the send)."""
        received = self._generator.acks_received
        if received == self._acks_looked_at:  # no ACK since: nothing can have settled sooner (most calls)
            return
        self._acks_looked_at = received
        for index, awaiting in enumerate(self._awaiting_settle):
            if not awaiting:
                continue
            for seq, previous in list(awaiting.items()):
                ack = self._generator.ack_for(SetOutput.MSG_ID, seq)
                if ack is None:
                    if now >= previous.until:
                        del awaiting[seq]
                    continue
                del awaiting[seq]
                commanded = self._commanded[index]
                settling = commanded.settling
                for place, entry in enumerate(settling):
                    if entry is previous:  # else a later lowering has replaced it
                        until = min(previous.until, ack.arrived_at + hard.SETPOINT_SETTLE_S)
                        settled = (*settling[:place], Settling(previous.setpoint, until), *settling[place + 1:])
                        self._commanded[index] = commanded._replace(settling=settled)
                        break

    def _account(self, now: float) -> None:
        elapsed = now - self._accounted_at
        if elapsed > 0:
            for index, commanded in enumerate(self._commanded):
                if commanded.on:
                    self._rf_on_s[index] += elapsed
            self._accounted_at = now

    def _energised(self, mask: int) -> bool:
        return any(self._commanded[c - 1].energised for c in self._channels_of(mask))

    @staticmethod
    def _channels_of(mask: int) -> tuple[int, ...]:
        return _CHANNELS_OF_MASK[mask & ALL_CHANNELS]

    def _off(self, mask: int, now: float) -> int:
        """OUTPUT_OFF on the wire first, then stop stimulation there, then update the commanded state."""
        seq = self._generator.output_off(mask)
        channels = self._channels_of(mask)
        stim_mask = 0
        for channel in channels:
            if self._commanded[channel - 1].stim_amplitude_mv:
                stim_mask |= channel_bit(channel)
        if stim_mask:
            self._generator.stim(None, Stim(stim_mask, 0, 0, 0))
        for channel in channels:
            if self._commanded[channel - 1].energised:
                self._commanded[channel - 1] = _OFF._replace(since=now)
                self._awaiting_settle[channel - 1].clear()
                self._unseen_off |= channel_bit(channel)
                self._unseen_off_since = now
        return seq

    @staticmethod
    def _event(kind: EventKind, now: float, trip: Trip, seq: int | None = None) -> SafetyEvent:
        return SafetyEvent(kind, now, trip.reason, trip.interlock, trip.channel, trip.priority, seq)

    def _emit(self, events: list[SafetyEvent]) -> None:
        for event in events:
            self._record(event)
