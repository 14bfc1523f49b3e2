"""One procedure, end to end: self-test, stimulation, arming, lesions, cooldown (ARCHITECTURE.md 6, 8, 9).

The session runs the phases of a lesion plan on top of the 100 Hz :class:`~control.loop.ControlLoop`:
each tick the loop reads the generator, polls imaging and evaluates the interlocks; the session then
handles trips, runs the numba control step for the lesions being delivered and asks the gate for the new
output. The state machine (:mod:`control.procedure`) hears only edges: "self-test passed", "set
temperature reached", "fault". Nothing here can enable output except by asking the gate, which holds the
driver's only output capability.

The phases are generators that yield after every tick (:meth:`ProcedureSession.steps`), so a test can act
between ticks (the procedure state machine test does).
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import time
from collections.abc import Callable, Generator, Iterator
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any, Final, NoReturn, TextIO

import numpy as np

from control.controller import PULSED_GAINS, ChannelControllers, continuous_gains_for, warm_up
from control.display import ChannelView, PartnerView, ProgressDisplay, alarm_text, format_line
from control.durable import CommitWaiter
from control.loop import PERIOD_S, ControlLoop, Guidance, Pacer
from control.operator import Operator, Question
from control.procedure import Procedure, State
from control.record import ProcedureRecord, RecordError
from control.recorder import Recorder
from control.summary import ChannelTrace, LesionSummary, summarise, summary_table
from firmware_bridge.clock import Clock
from firmware_bridge.errors import CartError, LinkError
from firmware_bridge.generator import RfGenerator
from firmware_bridge.messages import (
    ChannelTelemetry,
    SelfTestCheck,
    Telemetry,
)
from safety import limits as hard
from safety.config import HARD_LIMITS, SafetyLimits
from safety.gate import OutputGate, StimKind
from safety.inputs import ImagingStatus
from safety.interlocks import Trip
from safety.plan import Lesion, LesionMode, LesionPlan

SELF_TEST_TIMEOUT_S: Final = 3.0
IMAGING_READY_TIMEOUT_S: Final = 10.0
"""How long self-test waits for the probe's first frame when the plan requires imaging."""
STIM_STEP_MV: Final = hard.STIM_AMPLITUDE_STEP_MV
STIM_STEP_S: Final = 0.5
"""Stimulation amplitude climbs 0.1 V every 0.5 s until the patient responds or the plan's maximum."""
MOTOR_QUESTION: Final = "motor twitch in a limb (the local multifidus twitch of a lumbar medial branch is expected: no)"
"""What the motor test asks. "Motor twitch?" alone reads yes for the twitch a lumbar medial branch's stimulation is
expected to give (multifidus, beside the spine), and any yes stops the procedure; what stops it is a twitch in a limb:
a nerve root or a motor nerve near the tip, which the lesion would reach."""
SET_TEMP_BAND_C: Final = 1.0
"""A channel has reached its set temperature within this band; its hold starts then."""
COOLDOWN_TARGET_C: Final = 45.0
COOLDOWN_MAX_S: Final = 30.0
COOLANT_FLOW_DECI_ML_MIN: Final = 150
"""Coolant for internally cooled electrodes, 15 ml/min: on before RF, off after cooldown."""
SETTLE_S: Final = 0.3
"""Fresh telemetry after each phase before the next guard is asked."""

EXIT_OK: Final = 0
EXIT_FAULT: Final = 1


LesionEstimator = Callable[[Lesion, ChannelTrace], tuple[float, float]]
"""``(lesion, trace) -> (width_mm, length_mm)``: the lesion's size from the tip temperatures it delivered (the
trace, RF on to RF off), for the summary."""


class Faulted(Exception):
    """The procedure entered ``fault``: unwinds the phase that was running."""


class Stopped(Exception):
    """The procedure ended early without a fault (operator stop, refused arming)."""


class OperatorOutputLost(CartError):
    """The display or the ``--json`` event stream can no longer be written (a closed pipe or terminal): the
    procedure cannot go on with nobody, and no script, seeing it, so it ends in the safe state as a fault."""


@dataclass
class SessionResult:
    exit_code: int
    final_state: str
    record_path: Path
    summaries: list[LesionSummary] = field(default_factory=list)
    stimulation: list[dict[str, Any]] = field(default_factory=list)
    first_trip: str = ""
    first_trip_row: int | None = None
    message: str = ""
    loop: dict[str, Any] = field(default_factory=dict)
    """How the loop kept its period: ticks, the longest period, ticks run while a commit was awaited."""
    realtime: bool = False

    def as_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["record_path"] = str(self.record_path)
        d["summaries"] = [s.as_dict() for s in self.summaries]
        return d


@dataclass
class _Active:
    """One lesion being delivered: its plan, controller row, trace and progress."""

    lesion: Lesion
    index: int
    trace: ChannelTrace
    rf_started_at: float
    done: bool = False


class ProcedureSession:
    """Runs one lesion plan on one cart (see module docstring)."""

    def __init__(
        self,
        *,
        plan: LesionPlan,
        generator: RfGenerator,
        clock: Clock,
        pacer: Pacer,
        record: ProcedureRecord,
        operator: Operator,
        guidance: Guidance | None = None,
        limits: SafetyLimits = HARD_LIMITS,
        realtime: bool = False,
        display: ProgressDisplay | None = None,
        events: TextIO | None = None,
        wall_clock: Callable[[], float] = time.monotonic,
        lesion_estimator: LesionEstimator | None = None,
    ) -> None:
        self.plan = plan
        self.generator = generator
        self.clock = clock
        self.record = record
        self.operator = operator
        self.guidance = guidance
        self.display = display
        self.events = events
        self._wall = wall_clock
        self._estimate = lesion_estimator
        self.recorder = Recorder(record)
        self._confirmed = False
        self._imaging: ImagingStatus | None = None
        self.first_trip = ""
        self.first_trip_row: int | None = None
        self.stimulation: list[dict[str, Any]] = []
        self.traces: list[ChannelTrace] = []
        self._active: list[_Active] = []
        self._controllers = ChannelControllers(len(plan.lesions))
        generator.on_sent(self.recorder.command)
        generator.on_received(self.recorder.frame)
        record.append("plan", plan.model_dump(mode="json"))
        self.gate = OutputGate(generator, plan, limits, clock, self.recorder.safety_event)
        self.loop = ControlLoop(clock=clock, pacer=pacer, generator=generator, gate=self.gate, guidance=guidance,
                                realtime=realtime)
        self._pending_trips: list[Trip] = []
        """Trips the loop found that the session has still to act on (one tick's, or a hold's)."""
        self._ending_alarms: list[str] = []
        """Trips while the procedure's end waits for its final OUTPUT_OFF to be taken: they change its result."""
        self.commits = CommitWaiter(record, self.loop, self._pending_trips.extend, self._stop_output_if_requested)
        self.recorder.defer_commit = self.commits.defers_alarms
        self.procedure = Procedure(record, self, self._outputs_off, self._on_transition, durable=self.commits.durable)
        self._stop_requested = ""
        self._stop_sent = False
        """Whether the gate has had the operator's stop (output off, latched) for this procedure."""
        self.ending = False
        """Whether the procedure has begun to end (a stop, an abort, or its phases done): output is being turned
        off, and the summary and the record finished. An interrupt now would only cut those short."""
        self._heartbeat_withheld = False
        self._unstoppable_said = False
        self._started_at = clock.now()
        self._session_fault: tuple[str, Callable[[], bool]] | None = None
        self.result: SessionResult | None = None

    # -- public --------------------------------------------------------------------------------------
    def run(self) -> SessionResult:
        """Run the whole plan; returns how it ended. Output is off whenever this returns, or raises: a defect of this
        program is raised once the procedure is in ``fault`` and the record holds its summary."""
        for _ in self.steps():
            pass
        assert self.result is not None
        return self.result

    def request_stop(self, reason: str = "operator stop") -> None:
        """The operator's stop button: acted on at the start of the next tick (output off at once if that tick is
        a commit's hold: :meth:`_stop_output_if_requested`)."""
        self._stop_requested = reason

    def _stop_output_if_requested(self) -> None:
        """A stop requested while a state change or an alarm commits (real time: the loop ticks through the wait,
        but the session's own tick, which acts on the stop, waits for the disk, up to DURABLE_TIMEOUT_S): output off
        and the stop latched now; the procedure takes its stop at its next tick."""
        if self._stop_requested and not self._stop_sent:
            self._stop_sent = True
            self.gate.operator_stop()

    def steps(self) -> Iterator[None]:
        """The procedure as a generator that yields after every tick, so tests can act between ticks."""
        messages: list[str] = []
        defect: Exception | None = None
        warm_up()  # compile or load the numba kernel now, never on a lesion tick (nor after the GC freeze)
        try:
            self.loop.start()
            self.commits.begin()
            try:
                try:
                    yield from self._self_test()
                    yield from self._stimulation()
                    yield from self._lesions()
                except Stopped as exc:
                    messages.append(str(exc))
                # A trip the loop found while a transition or an answer was committed (real time) waits for the
                # next tick, and none may come: a guard refused for its latch, the operator's "no" or the final
                # transition ends the phases first. It is acted on here, so the procedure ends in fault for it.
                self._act_on_trips_between_ticks()
            except Faulted as exc:
                messages.append(str(exc))
                yield from self._await_acknowledge()  # a stop may come while waiting: caught below
        except Stopped as exc:
            messages.append(str(exc))
        except KeyboardInterrupt:
            try:
                messages.append(self._operator_stop("operator stop (interrupt)"))
            except CartError as exc:  # the stop itself met a dead link or a failed record: the safe state as below
                messages.append(self._abort_on(exc))
        except CartError as exc:  # the link died, the record failed, a device refused: the safe state
            messages.append(self._abort_on(exc))
        except Exception as exc:  # a defect of this program: the safe state and the record first, then it is raised
            defect = exc
            messages.append(self._abort(f"internal error: {type(exc).__name__}: {exc}", tolerated=Exception))
        finally:
            self.ending = True
            try:
                with contextlib.suppress(CartError):  # the display gone: the alarms are in the record all the same
                    self._tell_ending(self._pending_trips)  # found by the last tick or hold, never acted on
                with contextlib.suppress(CartError):  # a dead link: the generator's own watchdog turns it off
                    self._end_output()
                unconfirmed = self._off_unconfirmed()  # before the watchdog's own last OUTPUT_OFF, just below
            finally:  # even if interrupted while settling: supervision ends, the interpreter is restored
                self.commits.end()
                self.loop.stop()
        messages += [f"as the procedure ended: {text}" for text in self._ending_alarms]
        if unconfirmed:
            messages.append(unconfirmed)
        if self.gate.output_unstoppable:
            messages.append("OUTPUT MAY STILL BE ON: the generator obeyed neither OUTPUT_OFF nor its own watchdog; "
                            "switch it off at its mains switch")
        state = self.procedure.state
        summaries = [self._predicted(summarise(t), t) for t in self.traces]
        messages += [f"ch{s.channel}: {s.shortfall}" for s in summaries if s.shortfall and not s.tripped]
        message = "; ".join(messages)
        ok = state is State.STANDBY and not message and all(s.as_planned for s in summaries)
        result = SessionResult(
            exit_code=EXIT_OK if ok else EXIT_FAULT,
            final_state=state.value,
            record_path=self.record.path,
            summaries=summaries,
            stimulation=self.stimulation,
            first_trip=self.first_trip,
            first_trip_row=self.first_trip_row,
            message=message,
            loop={
                "ticks": self.loop.ticks,
                "longest_period_ms": round(self.loop.longest_period_s * 1000, 2),
                "longest_period_ended_at": self.loop.longest_period_ended_at,
                "hold_ticks": self.commits.hold_ticks,
            },
            realtime=self.loop.realtime,
        )
        self.result = result
        try:
            self.record.append_durable("summary", result.as_dict())
            if self.record.abandoned:
                raise RecordError("the record failed before it (above)")
        except CartError as exc:
            result.message = "; ".join([*messages, f"the summary could not be recorded: {exc}"])
            result.exit_code = EXIT_FAULT
        if defect is not None:  # its traceback is for whoever mends it
            raise defect

    def _predicted(self, summary: LesionSummary, trace: ChannelTrace) -> LesionSummary:
        """The summary with the lesion's size from what its tip did: a lesion that fell short of its set
        temperature, or was cut short by a trip or a stop, gets the smaller size it made.

        The estimate is advisory and runs while the procedure ends: whatever it raises is said in the summary
        (``size_note``, shown as ``?``) and never takes the summary, its record row or the result with it."""
        lesion = self.plan.lesion_on(summary.channel)
        if self._estimate is None or lesion is None or summary.rf_time_s <= 0.0 or lesion.mode is LesionMode.PULSED:
            # Pulsed RF makes no thermal lesion to estimate (its tip is held under 42 °C): "-", not "0.0×0.0".
            return summary
        if len(trace.t_s) < 2:  # stopped at its first tick: RF for one period coagulates nothing
            return replace(summary, predicted_width_mm=0.0, predicted_length_mm=0.0)
        try:
            width_mm, length_mm = self._estimate(lesion, trace)
        except Exception as exc:
            return replace(summary, size_note=f"lesion size not estimated: {type(exc).__name__}: {exc}")
        return replace(summary, predicted_width_mm=width_mm, predicted_length_mm=length_mm)

    # -- the tick ------------------------------------------------------------------------------------
    def _tick(self) -> None:
        self._pending_trips.extend(self.loop.tick())
        self._imaging = self.loop.imaging
        self._commit_pending_alarm()
        try:
            self._act_on_trips()
            if self._stop_requested:  # after its tick's trips, which it must not hide
                raise Stopped(self._operator_stop(self._stop_requested))
        finally:  # after the trip's own alarm, which says what happened
            self._say_heartbeat()

    def _act_on_trips(self) -> None:
        """Tell every trip the loop found (this tick's, or a commit hold's), then act: a channel trip while
        lesioning stops that channel's lesion; any other ends the procedure in ``fault``. All are told before
        the first is acted on, so a second trip in the same tick is never lost behind the first's fault."""
        trips = self._pending_trips[:]
        self._pending_trips.clear()
        fault = ""
        for trip in trips:
            text = self._tell_trip(trip)
            if trip.channel is not None and self.procedure.state in (State.RAMPING, State.LESIONING):
                self._stop_lesion_on(trip.channel, text)
            elif not fault:
                fault = text
        if fault:
            self._abort_lesions(fault)
            self.procedure.raise_fault(fault)
            raise Faulted(fault)

    def _end_output(self) -> None:
        """The end's OUTPUT_OFF, and the wait to see it taken (:meth:`_settle_withholding`). A record found failed
        only now is abandoned and said, and the end goes on without it: once more, from its OUTPUT_OFF."""
        try:
            self.gate.all_off("end of procedure")
            self._settle_withholding()
        except RecordError as exc:
            self.record.abandon()
            self._ending_alarms.append(_failure(exc))
            self.gate.all_off("end of procedure")
            self._settle_withholding()

    def _settle_withholding(self) -> None:
        """Before the loop stops: until the final OUTPUT_OFF is acknowledged, and while the gate withholds the host
        heartbeat, keep ticking (the generator's own watchdog acting, the gate watching) until output is seen off
        or reported unstoppable, so a procedure never ends without saying which. A generator that does not take
        the final OUTPUT_OFF is a lost link after ``COMMAND_ANSWER_S``, and the heartbeat is withheld if a channel
        that was on has not been seen off. Bounded by the gate's own limits: under a second."""
        deadline = self.clock.now() + (hard.COMMAND_ANSWER_S + hard.WITHHELD_HEARTBEAT_LIMIT_S
                                       + hard.GENERATOR_HEARTBEAT_TIMEOUT_S + 0.1)
        while self.clock.now() < deadline and (
                self.generator.unanswered is not None
                or (self.gate.heartbeat_withheld_since is not None and not self.gate.output_unstoppable)):
            self._pending_trips.extend(self.loop.tick())  # latched and recorded by the gate
            alarm = self.recorder.take_uncommitted_alarm()
            if alarm is not None:  # on disk before going on, as on any tick
                self.commits.commit(alarm)
            self._tell_ending(self._pending_trips)  # the procedure is ending: told, never acted on
            self._say_heartbeat()

    def _tell_ending(self, trips: list[Trip]) -> None:
        """Trips the procedure's end cannot act on any more: told, and they change its result."""
        self._ending_alarms += [self._tell_trip(trip) for trip in trips]
        trips.clear()

    def _off_unconfirmed(self) -> str:
        """Why output is not known to be off as the procedure ends ('' if it is): the final OUTPUT_OFF not
        acknowledged, output not seen off where it was commanded off, or no fresh telemetry to see it by. The
        procedure is no success then, whatever its lesions did (an unstoppable output is said on its own)."""
        pending = self.generator.unanswered
        if pending is not None:
            age_ms = (self.clock.now() - pending.sent_at) * 1000
            return (f"output off not confirmed: the generator has not acknowledged the final commands "
                    f"(SEQ {pending.seq} unanswered after {age_ms:.0f} ms)")
        if self.gate.heartbeat_withheld_since is not None and not self.gate.output_unstoppable:
            return "output off not confirmed: output was not seen off where it was commanded off"
        stale = self._link_reasons() if self.generator.telemetry is not None else []  # none: faulted on that
        if stale:
            return f"output off not confirmed: {stale[0]}"
        return ""

    def _say_heartbeat(self) -> None:
        """Tell the operator when the gate begins or ends withholding the host heartbeat (safety.gate), and when
        output outlasts it."""
        withheld = self.gate.heartbeat_withheld_since is not None
        if withheld != self._heartbeat_withheld:
            self._heartbeat_withheld, self._unstoppable_said = withheld, False
            if withheld:
                self._say("ALARM (high) output not seen off where it was commanded off: host heartbeat withheld, "
                          "so that the generator's own watchdog turns all output off", event="alarm",
                          detail="heartbeat_withheld")
            else:
                self._say("output seen off after the generator's watchdog: host heartbeat resumed", event="warning")
        elif withheld and not self._unstoppable_said and self.gate.output_unstoppable:
            self._unstoppable_said = True
            self._say("ALARM (high) the generator keeps output on against OUTPUT_OFF and its own watchdog: "
                      "SWITCH THE GENERATOR OFF AT ITS MAINS SWITCH", event="alarm", detail="output_unstoppable")

    def _ticks(self, seconds: float) -> Iterator[None]:
        end = self.clock.now() + seconds
        while self.clock.now() < end - 1e-9:
            self._tick()
            yield

    def _operator_stop(self, reason: str) -> str:
        """Stop button: the gate turns everything off and latches the stop; the machine goes to stopped. A lesion
        it cuts short is stopped, not complete, in the summary and the record."""
        self.ending = True
        if not self._stop_sent:
            self._stop_sent = True
            self.gate.operator_stop()
        self._abort_lesions(reason)
        if self.procedure.state not in (State.FAULT, State.STOPPED, State.OFF):
            self.procedure.trigger("operator_stop", reason=reason)
        return reason

    def _tell_trip(self, trip: Trip) -> str:
        """The operator's alarm for a trip, with its record row (the first trip is the procedure's); its text."""
        text = alarm_text(trip.interlock.value, trip.channel, trip.reason)
        row = self.recorder.trip_rows.get((trip.interlock.value, trip.channel))
        if not self.first_trip:
            self.first_trip, self.first_trip_row = text, row
        self._say(f"ALARM ({trip.priority.name.lower()}) {text}", event="alarm", detail=text, row=row)
        return text

    # -- phases --------------------------------------------------------------------------------------
    def _self_test(self) -> Iterator[None]:
        self.procedure.trigger("begin_self_test")
        self._say("self-test: generator checks", event="phase", phase="self_test")
        self.generator.request_self_test()
        deadline = self.clock.now() + SELF_TEST_TIMEOUT_S
        # ELECTRODE_INFO too: it comes once a second (and at once on a change or a new connection, which a host
        # opening a serial port may miss), and the electrode check refuses stimulation until it has come.
        while awaited := [what for what, received in (("self-test result", self.generator.self_test_result),
                                                      ("telemetry", self.generator.telemetry),
                                                      ("ELECTRODE_INFO", self.generator.electrodes))
                          if received is None]:
            if self.clock.now() > deadline:
                self._fault(f"self-test: no {' or '.join(awaited)} from the generator within "
                            f"{SELF_TEST_TIMEOUT_S:.0f} s")
            self._tick()
            yield
        result = self.generator.self_test_result
        assert result is not None  # awaited above
        passed = SelfTestCheck(result.msg.checks_passed)
        planned = [ch for lesion in self.plan.lesions for ch in lesion.channels]
        missing = SelfTestCheck.required(planned) & ~passed
        if missing:
            names = ", ".join(flag.name or str(int(flag)) for flag in SelfTestCheck if flag & missing)
            self._fault(f"self-test failed: {names}")
        if self.plan.imaging_required and self.guidance is not None:
            yield from self._await_first_frame()
        yield from self._ticks(SETTLE_S)
        self.procedure.trigger("self_test_passed")

    def _await_first_frame(self) -> Iterator[None]:
        """A guided plan needs the probe streaming before anything is energised: wait for its first frame.

        In real time the frames come from the guidance thread, whose first frame can follow the generator's
        self-test by a second (opening the probe, loading the B-mode kernels); stimulating before it would
        only be refused for lost imaging."""
        deadline = self.clock.now() + IMAGING_READY_TIMEOUT_S
        if self._imaging is None or self._imaging.last_frame_at is None:
            self._say("self-test: waiting for the first ultrasound frame", event="phase", phase="self_test")
        while self._imaging is None or self._imaging.last_frame_at is None:
            if self.clock.now() > deadline:
                self._fault(f"self-test: imaging not live, no ultrasound frame within {IMAGING_READY_TIMEOUT_S:.0f} s")
            self._tick()
            yield

    def _stimulation(self) -> Iterator[None]:
        settings = self.plan.stimulation
        # Every electrode, a bipolar pair's partner too: each is a needle near a nerve of its own.
        for ch in (ch for lesion in self.plan.lesions for ch in lesion.channels):
            result: dict[str, Any] = {"channel": ch}
            for kind in (StimKind.SENSORY, StimKind.MOTOR):
                result[f"{kind.value}_threshold_mv"] = yield from self._stimulate(
                    ch, kind, settings.max_amplitude_mv
                )
            self.stimulation.append(result)
            self.commits.durable("stimulation", result)
            if result["sensory_threshold_mv"] is None:
                self._say(
                    f"ch{ch}: no sensory response up to {_highest_step_mv(settings.max_amplitude_mv) / 1000:.2f} V: "
                    "the electrode may be far from the nerve",
                    event="warning",
                    channel=ch,
                )
            if result["motor_threshold_mv"] is not None:
                raise Stopped(
                    f"ch{ch}: motor response at {result['motor_threshold_mv'] / 1000:.2f} V: the "
                    "electrode is too close to a motor nerve; reposition before lesioning"
                )

    def _stimulate(self, channel: int, kind: StimKind, max_mv: int) -> Generator[None, None, int | None]:
        if not self.procedure.trigger("start_stimulation", channel=channel, test=kind.value):
            raise Stopped(f"stimulation refused: {'; '.join(self.procedure.refusals)}")
        threshold: int | None = None
        for amplitude_mv in range(STIM_STEP_MV, max_mv + 1, STIM_STEP_MV):
            decision = self.gate.request_stim(channel, kind, amplitude_mv, self._imaging)
            if not decision:
                self._act_on_trips_between_ticks()
                self._fault(f"stimulation refused by the gate: {'; '.join(decision.reasons)}",
                            still_present=lambda: bool(self._alarm_reasons()))
            self._show(f"{kind.value} ch{channel} {amplitude_mv / 1000:.1f} V")
            yield from self._ticks(STIM_STEP_S)
            what = "sensory response (tingling, concordant)" if kind is StimKind.SENSORY else MOTOR_QUESTION
            # What the generator measured, beside what was asked for: the physician's answer is about it.
            delivered_v = self._telemetry().channels[channel - 1].voltage_v
            question = Question(f"ch{channel} {kind.value} at {amplitude_mv / 1000:.2f} V (delivered "
                                f"{delivered_v:.2f} V): {what}?", "response",
                                stim=kind, channel=channel, amplitude_mv=amplitude_mv)
            if (yield from self._ask(question)):
                threshold = amplitude_mv
                break
        self.gate.stop_stim()
        self.procedure.trigger(
            "stimulation_done",
            channel=channel,
            test=kind.value,
            threshold_mv=threshold if threshold is not None else -1,
        )
        verdict = (f"no response up to {_highest_step_mv(max_mv) / 1000:.2f} V" if threshold is None
                   else f"response at {threshold / 1000:.2f} V")
        self._say(
            f"ch{channel} {kind.value} test: {verdict}",
            event="stimulation",
            channel=channel,
            test=kind.value,
            threshold_mv=threshold,
        )
        yield from self._ticks(SETTLE_S)
        return threshold

    def _lesions(self) -> Iterator[None]:
        lesions = "; ".join(_arming_text(lesion) for lesion in self.plan.lesions)
        self._confirmed = yield from self._ask(Question(f"Arm {len(self.plan.lesions)} lesion(s): {lesions}?",
                                                        "confirm"))
        if not self._confirmed:
            raise Stopped("the operator did not confirm arming")
        if not self.procedure.trigger("arm"):
            raise Stopped(f"arming refused: {'; '.join(self.procedure.refusals)}")
        if not self.procedure.trigger("start_rf"):
            self.procedure.trigger("disarm")
            raise Stopped(f"RF start refused: {'; '.join(self.procedure.refusals)}")
        cooled = any(lesion.electrode.cooled for lesion in self.plan.lesions)
        if cooled:
            self.generator.pump(True, COOLANT_FLOW_DECI_ML_MIN)
        try:
            yield from self._deliver()
        finally:
            if cooled:  # after cooldown, or at once on a fault: the tip no longer needs cooling
                with contextlib.suppress(CartError):
                    self.generator.pump(False, 0)

    def _deliver(self) -> Iterator[None]:
        plan_lesions = self.plan.lesions
        controllers = self._controllers
        telemetry = self._telemetry()
        now = self.clock.now()
        active: list[_Active] = []
        for index, lesion in enumerate(plan_lesions):
            sample = telemetry.channels[lesion.channel - 1]
            pulsed = lesion.mode is LesionMode.PULSED
            # Regulate below the hard maximum by the measurement's tolerance, so noise at 50 W never trips.
            cap = (lesion.pulsed.max_voltage_v if pulsed and lesion.pulsed
                   else min(lesion.power_cap_w, hard.POWER_REGULATION_MAX_W))
            controllers.configure(
                index,
                set_c=lesion.set_temp_c,
                ramp_c_per_s=lesion.ramp_rate_c_per_s,
                cap=cap,
                gains=(PULSED_GAINS if pulsed
                       else continuous_gains_for(lesion.electrode.gauge, lesion.electrode.active_tip_mm)),
            )
            start_c = _regulated_tip_c(lesion, telemetry)  # the ramp starts from it (body temperature if unread)
            controllers.start(index, tip_c=start_c if math.isfinite(start_c) else hard.BODY_TEMP_C,
                              impedance_ohm=sample.impedance_ohm)
            trace = ChannelTrace(lesion.channel, lesion.set_temp_c, rf_started_s=now, thermal=not pulsed)
            for partner in lesion.channels[1:]:  # a bipolar pair's second electrode: its own tip, sampled beside
                trace.partner = ChannelTrace(partner, lesion.set_temp_c, rf_started_s=now)
            self.traces.append(trace)
            active.append(_Active(lesion, index, trace, now))
        self._active = active
        tips = np.zeros(len(active))
        impedances = np.zeros(len(active))
        while any(not a.done for a in active):
            running = [not a.done for a in active]
            self._tick()
            telemetry = self._telemetry()
            now = self.clock.now()
            for a, was_running in zip(active, running, strict=True):
                sample = telemetry.channels[a.lesion.channel - 1]
                regulated_c = _regulated_tip_c(a.lesion, telemetry)
                tips[a.index], impedances[a.index] = regulated_c, sample.impedance_ohm
                if not was_running:
                    continue
                # The reading a trip in this tick stopped the lesion on belongs to it: a lesion stopped for a
                # 90.2 °C tip or a shorted electrode shows that in its maximum and its end impedance. A reading
                # flagged open or disconnected is no reading (327.67 °C is an open thermocouple's full scale).
                measured = sample.tip_measured
                if measured:
                    a.trace.add(now, sample.tip_temp_c, sample.impedance_ohm, _lesion_power_w(a.lesion, telemetry))
                if a.trace.partner is not None:
                    _sample_partner(a.trace.partner, telemetry, now)
                if a.done:
                    continue
                # The lesion's hold starts when its regulated tip (a pair's hotter one) is at the set temperature.
                if a.trace.hold_started_s is None and regulated_c >= a.lesion.set_temp_c - SET_TEMP_BAND_C:
                    a.trace.hold_started_s = now
                if now - a.rf_started_at >= a.lesion.lesion_time_s - 1e-9:
                    self._finish(a, "")
            # A pulsed lesion's set temperature is a ceiling: one not stopped by a trip is at it. Lesions that all
            # stopped before any reached its set temperature (a tripped pulsed lesion reached nothing) go on below,
            # with the reason in the record, not as having reached it.
            if self.procedure.state is State.RAMPING and all(
                a.done or a.trace.hold_started_s is not None or not a.trace.thermal for a in active
            ) and any(a.trace.hold_started_s is not None or not (a.trace.thermal or a.trace.tripped) for a in active):
                self.procedure.trigger("set_temperature_reached")
            drive = controllers.step(PERIOD_S, tips, impedances)
            self._request_output(active, drive)
            self._show_lesions(active, telemetry)
            yield
        if self.procedure.state is State.RAMPING:  # the contract's only way on: the record says why
            self.procedure.trigger("set_temperature_reached",
                                   reason="every channel stopped before reaching its set temperature")
        self.procedure.trigger("lesion_complete")
        yield from self._cooldown()
        tripped = [a.trace for a in active if a.trace.tripped]
        if tripped:
            # The causes are the gate's latched channel trips, which acknowledge re-checks itself.
            self._fault("; ".join(f"ch{t.channel}: {t.tripped}" for t in tripped), still_present=lambda: False)

    def _request_output(self, active: list[_Active], drive: np.ndarray) -> None:
        groups: dict[LesionMode, dict[int, float]] = {}
        for a in active:
            if not a.done:
                groups.setdefault(a.lesion.mode, {})[a.lesion.channel] = float(drive[a.index])
        for setpoints in groups.values():
            self._drive(setpoints)

    def _drive(self, setpoints: dict[int, float]) -> None:
        """Request ``setpoints`` (one mode) through the gate. If it refuses, act on what its check tripped, then ask
        again for each lesion still running on its own: a refusal may be one channel's alone (its trip or latch,
        its RF time, its over-power as requested), and a per-channel fault stops only that channel (ARCHITECTURE.md
        section 6). A channel refused on its own stops, with the reasons."""
        decision = self.gate.request_output(setpoints, self._imaging)
        if decision:
            return
        self._act_on_trips_between_ticks()  # stops the lesion a channel trip covers; a system trip faults
        if len(setpoints) == 1:
            for channel in setpoints:
                self._stop_lesion_on(channel, "output refused: " + "; ".join(decision.reasons))
            return
        for channel, setpoint in setpoints.items():
            if self._running(channel):
                self._drive({channel: setpoint})

    def _act_on_trips_between_ticks(self) -> None:
        """A refused request, or an acknowledgement, may have tripped an interlock its own evaluation found
        (safety.gate): commit that alarm and act on the trip now, as a tick would, before acting on the refusal
        or the acknowledgement, which only follow from it."""
        self._pending_trips.extend(self.gate.take_trips_between_ticks())
        if not self._pending_trips:
            return
        self._commit_pending_alarm()
        self._act_on_trips()

    def _commit_pending_alarm(self) -> None:
        """Put the alarm the gate emitted since the last commit (real time: it is left to the session) on disk
        before anything acts on it. The loop may tick through the commit: what follows (a tick's acting, a
        refused request asked again channel by channel) then uses the newest imaging."""
        alarm = self.recorder.take_uncommitted_alarm()
        if alarm is not None:
            self.commits.commit(alarm)
            self._imaging = self.loop.imaging

    def _running(self, channel: int) -> bool:
        return any(channel in a.lesion.channels and not a.done for a in self._active)

    def _stop_lesion_on(self, channel: int, reason: str) -> None:
        for a in self._active:
            if channel in a.lesion.channels and not a.done:
                self._finish(a, reason)

    def _abort_lesions(self, reason: str) -> None:
        """A system trip or fault: every unfinished lesion stopped (output is already off on all channels)."""
        for a in self._active:
            if not a.done:
                a.done = True
                a.trace.tripped = reason
                self._controllers.stop(a.index)

    def _finish(self, a: _Active, tripped: str) -> None:
        a.done = True
        a.trace.tripped = tripped
        self._controllers.stop(a.index)
        self.gate.channel_off(a.lesion.channel)
        if tripped:
            verdict = f"stopped: {tripped}"
        elif a.trace.fell_short:
            peak = max(a.trace.tip_temp_c, default=float("nan"))
            verdict = (f"lesion time ({a.lesion.lesion_time_s:.0f} s) ended, set temperature "
                       f"{a.lesion.set_temp_c:.0f} °C NOT reached (peak {peak:.1f} °C): a smaller lesion than planned")
        else:
            verdict = f"lesion complete ({a.lesion.lesion_time_s:.0f} s)"
        self._say(
            f"ch{a.lesion.channel} {verdict}", event="lesion_end", channel=a.lesion.channel, tripped=tripped
        )

    def _cooldown(self) -> Iterator[None]:
        """Wait for the tips to cool (or ``COOLDOWN_MAX_S``). Output is off, so a lost link trips nothing here, but
        a stale reading is no tip temperature: cooldown faults rather than call an unseen tip cool. Tips still
        hot when the time is up are named to the operator and in the record's transition to standby."""
        end = self.clock.now() + COOLDOWN_MAX_S
        # Every electrode that was in the lesions, a bipolar pair's partner too: its tip heats as the lead's does,
        # and an unknown partner tip (its thermocouple open) is no more known to be cool than a lead's.
        electrodes = [ch for lesion in self.plan.lesions for ch in lesion.channels]
        hot: list[tuple[int, float | None]] = []
        while self.clock.now() < end:
            self._tick()
            stale = self._link_reasons()
            if stale:
                self._fault(f"cooldown: {stale[0]}: the tip temperatures are unknown",
                            still_present=lambda: bool(self._link_reasons()))
            samples = [(ch, self._telemetry().channels[ch - 1]) for ch in electrodes]
            # An open thermocouple or a disconnected electrode reads no temperature: not known to be cool.
            tips = [(ch, s.tip_temp_c if s.tip_measured else None) for ch, s in samples]
            known = [tip for _, tip in tips if tip is not None]
            self._show(f"cooldown: max tip {max(known):.1f} °C" if known else "cooldown: tip temperatures unknown")
            hot = [(ch, tip) for ch, tip in tips if tip is None or tip >= COOLDOWN_TARGET_C]
            if not hot:
                break
            yield
        if not hot:
            self.procedure.trigger("cooled")
            return
        # Output is off and stays off, so standby is still safe; but a hot tip burns the track it is drawn along.
        tips_text = ", ".join(f"ch{ch} {tip:.1f} °C" if tip is not None else f"ch{ch} temperature unknown "
                              f"({_unmeasured_why(self._telemetry().channels[ch - 1])})"
                              for ch, tip in hot)  # formatted once, not every tick
        warning = (f"cooldown time ({COOLDOWN_MAX_S:.0f} s) over with tips still at or above "
                   f"{COOLDOWN_TARGET_C:.0f} °C: {tips_text}; let them cool before withdrawing or moving "
                   "an electrode")
        self._say(f"WARNING {warning}", event="warning", detail="cooldown_incomplete")
        self.procedure.trigger("cooled", reason=warning)

    def _await_acknowledge(self) -> Iterator[None]:
        """Wait in ``fault`` until the operator acknowledges and every cause has cleared.

        A trip found while the acknowledgement itself was being committed (the loop ticks through a commit in
        real time) is acted on before anything else: the procedure goes straight back to ``fault``."""
        while self.procedure.state is State.FAULT:
            alarms = tuple(alarm_text(t.interlock.value, t.channel, t.reason) for t in self.gate.active_alarms)
            question = Question("Acknowledge (the causes must have cleared)?", "acknowledge", alarms=alarms)
            try:
                if not (yield from self._ask(question)):
                    return
                yield from self._ticks(SETTLE_S)
                if not self.procedure.trigger("acknowledge"):
                    self._say("acknowledge refused: " + "; ".join(self.procedure.refusals), event="warning")
                self._act_on_trips_between_ticks()
            except Faulted:
                continue

    def _ask(self, question: Question) -> Generator[None, None, bool]:
        """Put a question to the operator and keep the loop ticking until the answer comes.

        With ``--json`` the question is an event on the stream too (the console's prompt goes to stderr), so a
        script reading the events knows what it is answering on stdin."""
        if self.events is not None:
            stimulus = {} if question.stim is None else {
                "channel": question.channel, "test": question.stim.value, "amplitude_mv": question.amplitude_mv}
            self._say(question.text, event="question", kind=question.kind, alarms=list(question.alarms), **stimulus)
        with self._to_operator():  # a console's prompt: its stream may have gone too
            self.operator.ask(question)
        while (answer := self.operator.answer()) is None:
            self._tick()
            yield
        row = {"kind": question.kind, "question": question.text, "answer": answer, "by": self.operator.name}
        if question.kind == "response":  # one per stimulation step: not a decision the record must hold first
            self.record.append("operator", row)
        else:
            self.commits.durable("operator", row)
        return answer

    # -- guards (control.procedure.Guards) -----------------------------------------------------------
    def refuse_stimulation(self) -> list[str]:
        return self._alarm_reasons() + self._link_reasons()

    def refuse_arming(self) -> list[str]:
        reasons = self._alarm_reasons() + self._link_reasons()
        if not self._confirmed:
            reasons.append("the operator has not confirmed")
        telemetry = self.generator.telemetry
        for lesion in self.plan.lesions:
            if telemetry is None:
                break
            sample = telemetry.msg.channels[lesion.channel - 1]
            if not sample.electrode_connected:
                reasons.append(f"ch{lesion.channel}: no electrode connected")
            if not lesion.impedance_min_ohm <= sample.impedance_ohm <= lesion.impedance_max_ohm:
                reasons.append(
                    f"ch{lesion.channel}: impedance {sample.impedance_ohm:.0f} Ω outside "
                    f"{lesion.impedance_min_ohm:.0f}..{lesion.impedance_max_ohm:.0f} Ω"
                )
        if self.plan.imaging_required:
            imaging = self._imaging
            now = self.clock.now()
            if imaging is None or imaging.last_frame_at is None:
                reasons.append("imaging required by the plan but no image")
            elif now - imaging.last_frame_at > self.plan.imaging_frame_max_age_s:
                reasons.append(
                    f"imaging required by the plan but the last frame is "
                    f"{now - imaging.last_frame_at:.2f} s old"
                )
        return reasons

    def refuse_rf_start(self) -> list[str]:
        reasons = self.refuse_arming()
        if self.plan.imaging_required and self.guidance is not None:
            reasons += self.guidance.rf_start_refusals()
        for lesion in self.plan.lesions:
            if not self.gate.output_permitted(lesion.channel):
                reasons.append(f"ch{lesion.channel}: the gate does not permit output")
        return reasons

    def refuse_acknowledge(self) -> list[str]:
        self.gate.acknowledge(self._imaging)
        reasons = [
            f"{t.interlock.value}" + (f" ch{t.channel}" if t.channel else "") + ": cause still present"
            for t in self.gate.latched
        ]
        if self._session_fault is not None:
            reason, still_present = self._session_fault
            if still_present():
                reasons.insert(0, f"{reason}: cause still present")
            elif not reasons:  # forgotten only with the fault itself: a refused acknowledgement keeps checking it
                self._session_fault = None
        return reasons

    def _alarm_reasons(self) -> list[str]:
        return [
            f"alarm {alarm_text(t.interlock.value, t.channel, t.reason)}" for t in self.gate.active_alarms
        ]

    def _link_reasons(self) -> list[str]:
        rx = self.generator.telemetry
        if rx is None:
            return ["no telemetry from the generator"]
        age = self.clock.now() - rx.arrived_at
        if age > hard.TELEMETRY_STALE_S:
            return [f"telemetry is {age * 1000:.0f} ms old"]
        return []

    # -- helpers -------------------------------------------------------------------------------------
    def _telemetry(self) -> Telemetry:
        rx = self.generator.telemetry
        if rx is None:
            self._fault("no telemetry from the generator", still_present=lambda: bool(self._link_reasons()))
        return rx.msg

    def _fault(self, reason: str, still_present: Callable[[], bool] = lambda: True) -> NoReturn:
        """Enter ``fault`` for a reason the session found itself (not an interlock): output off first.

        The gate re-checks its own latches at acknowledge; a session fault carries its own check,
        ``still_present``. The default, for causes that only a new self-test could clear, keeps the fault
        latched for the rest of this session.
        """
        self._session_fault = (reason, still_present)
        self.gate.all_off(reason)
        self._abort_lesions(reason)
        if not self.first_trip:
            self.first_trip = reason
        self._say(f"FAULT {reason}", event="fault", detail=reason)
        self.procedure.raise_fault(reason)
        raise Faulted(reason)

    def _abort_on(self, exc: CartError) -> str:
        """:meth:`_abort` for a device's or the record's error; a failed record is abandoned first, the session
        having been told: the safe state is not to be stopped by the failure it is for."""
        if isinstance(exc, RecordError):
            self.record.abandon()
        return self._abort(_failure(exc))

    def _abort(self, reason: str, tolerated: type[Exception] = CartError) -> str:
        """An error the procedure cannot continue after: output off, lesions stopped, fault, best effort.

        Each step may fail in turn (a dead link cannot carry OUTPUT_OFF, a failed record cannot take the
        fault); none of them may stop the next. The generator turns itself off 250 ms after the host's last
        heartbeat, so a dead link is safe even when nothing here reaches it. After a defect of this program
        (``tolerated`` is then any exception) the defect may be in a step here too.
        """
        self.ending = True
        if not self.first_trip:
            self.first_trip = reason
        with contextlib.suppress(tolerated):
            self.gate.all_off(reason)
        with contextlib.suppress(tolerated):
            self._abort_lesions(reason)
        with contextlib.suppress(tolerated):
            self._say(f"FAULT {reason}", event="fault", detail=reason)
        with contextlib.suppress(tolerated):  # even if the display is what failed
            self.procedure.raise_fault(reason)
        return reason

    def _outputs_off(self, why: str) -> None:
        self.gate.all_off(why)

    def _on_transition(self, source: State, dest: State) -> None:
        self._say(f"state {source.value} → {dest.value}", event="state", source=source.value, dest=dest.value)
        if self.guidance is None:
            return
        if dest is State.RAMPING:
            self.guidance.rf_started([ch for lesion in self.plan.lesions for ch in lesion.channels])
        elif source in (State.RAMPING, State.LESIONING) and dest is not State.LESIONING:
            self.guidance.rf_stopped()
        self.guidance.record_frame(f"state {dest.value}")

    def _say(self, text: str, *, event: str, **fields: Any) -> None:
        with self._to_operator():
            if self.events is not None:
                self.events.write(
                    json.dumps({"event": event, "t": round(self._elapsed_s(), 3), "text": text, **fields}) + "\n"
                )
                self.events.flush()
            elif self.display is not None:
                self.display.message(f"[{self._elapsed_s():7.2f}s] {text}")

    @contextlib.contextmanager
    def _to_operator(self) -> Iterator[None]:
        """Write to the display or the event stream; if it has gone (a closed pipe or terminal), stop writing
        and end the procedure as a fault (:class:`OperatorOutputLost`): the safe state, recorded, exit 1."""
        try:
            yield
        except (OSError, ValueError) as exc:  # ValueError: a write to a closed file
            self.events = self.display = None
            raise OperatorOutputLost(f"the operator's display is gone ({type(exc).__name__}: {exc})") from exc

    def _elapsed_s(self) -> float:
        """Time since the procedure started, what the operator reads (the clock itself may be monotonic)."""
        return self.clock.now() - self._started_at

    def _show(self, status: str) -> None:
        if self.display is None:
            return
        view = self.guidance.view() if self.guidance is not None else None
        line = format_line(self._elapsed_s(), self.procedure.state.value, [], view) + " | " + status
        with self._to_operator():
            self.display.update(self._wall(), line)

    def _show_lesions(self, active: list[_Active], telemetry: Telemetry) -> None:
        if self.display is None:
            return
        now = self.clock.now()
        views = []
        for a in active:
            s = telemetry.channels[a.lesion.channel - 1]
            left = None if a.done else max(0.0, a.lesion.lesion_time_s - (now - a.rf_started_at))
            # A bipolar pair's second electrode: its own tip and impedance beside the lead's.
            partner = None
            for ch in a.lesion.channels[1:]:
                other = telemetry.channels[ch - 1]
                partner = PartnerView(ch, _tip_or_nan(other), other.impedance_ohm)
            views.append(
                ChannelView(
                    a.lesion.channel,
                    _tip_or_nan(s),
                    s.impedance_ohm,
                    _lesion_power_w(a.lesion, telemetry),
                    left,
                    "stopped" if a.trace.tripped else ("done" if a.done else ""),
                    partner,
                    s.voltage_v if a.lesion.mode is LesionMode.PULSED else None,
                )
            )
        view = self.guidance.view() if self.guidance is not None else None
        with self._to_operator():
            self.display.update(self._wall(), format_line(self._elapsed_s(), self.procedure.state.value, views, view))


def _sample_partner(partner: ChannelTrace, telemetry: Telemetry, now: float) -> None:
    """A bipolar partner's tip, impedance and share of the pair's power, when its reading is one (an open
    thermocouple's full scale is no temperature); its hold starts when its own tip reaches the set temperature."""
    sample = telemetry.channels[partner.channel - 1]
    if not sample.tip_measured:
        return
    partner.add(now, sample.tip_temp_c, sample.impedance_ohm, sample.power_w)
    if partner.hold_started_s is None and sample.tip_temp_c >= partner.set_temp_c - SET_TEMP_BAND_C:
        partner.hold_started_s = now


def _tip_or_nan(sample: ChannelTelemetry) -> float:
    """The tip temperature to show: NaN (shown ``--.-``) where the reading is none (``tip_temperature_measured``)."""
    return sample.tip_temp_c if sample.tip_measured else math.nan


def _unmeasured_why(sample: ChannelTelemetry) -> str:
    return "thermocouple open" if sample.electrode_connected else "no electrode connected"


def _regulated_tip_c(lesion: Lesion, telemetry: Telemetry) -> float:
    """The tip temperature a lesion's controller holds at the set temperature: its electrode's, or for a bipolar pair
    the hotter of the two tips that read one (NaN if neither does).

    Both electrodes of a pair carry the same current and each heats the tissue around it; tissue of other impedance
    or perfusion under one of them makes its tip run hotter. Regulated on the lead's tip alone, a partner 10 Ω higher
    held 82-84 °C beside an 80 °C lead, and 80 Ω higher it tripped ``over_temperature`` (85 °C) and ended the
    procedure in fault. Held on the hotter tip, neither tip is driven past the set temperature; the cooler one makes
    the smaller lesion, which its own row of the table shows. An open thermocouple's reading is no temperature
    (``tip_measured``): a pair with one is stopped by ``thermocouple_open``, and until then held on the other tip;
    with none readable the NaN makes the control step command nothing (``control.controller``)."""
    measured = [telemetry.channels[ch - 1] for ch in lesion.channels]
    readings = [sample.tip_temp_c for sample in measured if sample.tip_measured]
    return max(readings) if readings else math.nan


def _lesion_power_w(lesion: Lesion, telemetry: Telemetry) -> float:
    """The power a lesion delivers: its channel's, or for a bipolar lesion the pair's, the sum of both sides (each
    side reports its own share, docs/contract.md; the plan's cap and the commanded setpoint are the pair's). The
    lead side alone showed half the pair's power against the pair's cap, and half its energy in the summary."""
    return sum(telemetry.channels[ch - 1].power_w for ch in lesion.channels)


def _arming_text(lesion: Lesion) -> str:
    """What the operator confirms of a lesion at arming: where, how, how hot and how long, the electrode, and the
    limit on its output (a bipolar pair's cap is the pair's; pulsed RF is capped in volts)."""
    electrode = lesion.electrode
    needle = f"{electrode.gauge} G {electrode.active_tip_mm:g} mm{' cooled' if electrode.cooled else ''}"
    where = "+".join(f"ch{ch}" for ch in lesion.channels)
    if lesion.pulsed is not None:
        pulsed = lesion.pulsed
        output = (f"{pulsed.rate_hz:g} Hz × {pulsed.pulse_width_us / 1000:g} ms up to {pulsed.max_voltage_v:g} V, "
                  f"tip ≤ {lesion.set_temp_c:.0f} °C")
    else:
        output = f"{lesion.set_temp_c:.0f} °C, cap {lesion.power_cap_w:g} W"
    return f"{where} {lesion.mode.value} {output}, {lesion.lesion_time_s:.0f} s, {needle}"


def _highest_step_mv(max_mv: int) -> int:
    """The highest amplitude a test climbing in :data:`STIM_STEP_MV` steps delivers below ``max_mv``: what "no
    response up to" may claim (a maximum of 550 mV stops at 0.50 V, not the 0.6 V it rounds to)."""
    return max_mv - max_mv % STIM_STEP_MV


def _failure(exc: CartError) -> str:
    """What ended the procedure, in the operator's words and with what to check; the error's class last, for the
    engineer reading the record."""
    if isinstance(exc, LinkError):
        what = (f"generator link lost ({exc}): the generator turns its own output off "
                f"{hard.GENERATOR_HEARTBEAT_TIMEOUT_S * 1000:.0f} ms after the host's last heartbeat; check its "
                "front panel shows output off, and the cable")
    elif isinstance(exc, RecordError):
        what = (f"the procedure record failed ({exc}): output off; what it holds so far is on disk "
                "(rfa record verify), check the disk")
    else:
        what = str(exc)
    return f"{what} [{type(exc).__name__}]"


def _overrun_hint() -> str:
    """What a real-time run that control_loop_overrun ended asks of whoever reads it: the loop was not given the CPU
    in time, which a shared development machine causes as readily as a fault of the cart."""
    try:
        load = f"load average {os.getloadavg()[0]:.1f} on {os.cpu_count() or '?'} CPUs now"
    except OSError:
        load = "load average unknown"
    return (f"The control loop was not given the CPU in time ({load}). On a development or HIL machine, run it again "
            "with the machine to itself: no tests, builds or second procedure beside it (docs/procedure.md, \"A "
            "real-time run needs the machine to itself\"). On the cart, where the loop has a core of its own, report "
            "it as a fault of the cart.")


def render_result(result: SessionResult) -> str:
    """The human summary printed at the end of ``rfa run``."""
    lines = []
    if result.summaries:
        lines += ["", summary_table(result.summaries)]
    lines.append("")
    if result.exit_code == EXIT_OK:
        lines.append(f"Procedure complete: final state {result.final_state}.")
    else:
        lines.append(f"Procedure ended in {result.final_state}: {result.message or result.first_trip}")
        if result.first_trip:
            where = f" (record row {result.first_trip_row})" if result.first_trip_row else ""
            lines.append(f"First interlock trip: {result.first_trip}{where}")
            if result.first_trip.startswith("control_loop_overrun"):
                lines.append(_overrun_hint())
    if result.realtime and result.loop:
        lines.append(
            f"Loop: {result.loop['ticks']:,} ticks, longest period {result.loop['longest_period_ms']:.1f} ms "
            f"(watchdog limit {PERIOD_S * hard.LOOP_MISSED_PERIODS * 1000:.0f} ms), "
            f"{result.loop['hold_ticks']} ticked while the record committed"
        )
    lines.append(f"Record: {result.record_path}  (verify: rfa record verify {result.record_path})")
    return "\n".join(lines)
