"""How a procedure ends when something goes wrong at its edges: as its lesions end, while a stop or an
acknowledgement is being handled, or when nobody can see it any more. The result, the summary and the
record must say what happened; none of these may read as a complete procedure."""

from __future__ import annotations

import io
import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

import control.cli as cli
import control.session as session_module
from control.console import Follower, follow
from control.operator import ConsoleOperator, ScriptedOperator
from control.procedure import State
from control.record import Payload, RecordError, RecordReader, RecordRow
from control.session import EXIT_FAULT, EXIT_OK
from control.summary import ChannelTrace, summary_table
from firmware_bridge.errors import LinkError
from safety.plan import Lesion, LesionPlan, load_plan
from sim.generator import Fault, FaultKind
from sim.link_faults import LinkFaultConfig
from tests.control.harness import SimCart, build_cart
from tests.control.test_procedure_stateful import short_plan
from tests.control.test_session import plan_without_imaging


def _run_until(cart: SimCart, state: State) -> Any:
    steps = cart.session.steps()
    while cart.session.procedure.state is not state:
        next(steps)
    return steps


def _finish(cart: SimCart, steps: Any) -> None:
    for _ in steps:
        pass
    cart.record.close()


def _dests(cart: SimCart) -> list[str]:
    return [r.payload["dest"] for r in RecordReader(cart.record.path).rows("state")]


def test_a_cable_pulled_as_the_lesions_end_is_a_fault_not_a_complete_procedure(tmp_path: Path) -> None:
    """The OUTPUT_OFFs that end the lesions are lost with the cable: the cart cannot see output go off, nor the
    tips cool. Cooldown faults on the stale reading instead of calling a 30 s old 80 °C tip cool, and the end
    says output off was never confirmed."""
    cart = build_cart(plan_without_imaging(), tmp_path, link=LinkFaultConfig())
    assert cart.link is not None
    gate, link = cart.session.gate, cart.link
    channel_off = gate.channel_off

    def pull_then_off(channel: int) -> int:
        link.unplug()  # just before the first lesion's end goes on the wire
        return channel_off(channel)

    steps = _run_until(cart, State.LESIONING)
    gate.channel_off = pull_then_off  # type: ignore[method-assign]
    _finish(cart, steps)
    result = cart.session.result
    assert result is not None
    assert result.exit_code == EXIT_FAULT and result.final_state == "fault"
    assert "cooldown: telemetry" in result.message and "the tip temperatures are unknown" in result.message
    assert "output off not confirmed" in result.message
    assert "standby" not in _dests(cart)[-2:], "never 'cooled' on a reading nobody can renew"


def test_a_generator_that_stops_taking_commands_in_cooldown_leaves_the_end_unconfirmed(tmp_path: Path) -> None:
    """Output was seen off before the fault, so nothing trips (idle, lost link is an inhibit); but the final
    OUTPUT_OFF is never acknowledged, and a procedure whose end is not confirmed is no success."""
    cart = build_cart(plan_without_imaging(), tmp_path)
    steps = _run_until(cart, State.COOLDOWN)
    cart.sim.inject(Fault(FaultKind.COMMANDS_IGNORED, at_s=cart.sim.elapsed_s + 0.2))
    _finish(cart, steps)
    result = cart.session.result
    assert result is not None and cart.generator.unanswered is not None
    assert result.exit_code == EXIT_FAULT
    assert "output off not confirmed: the generator has not acknowledged the final commands" in result.message


def test_a_procedure_that_ends_well_has_its_end_confirmed(tmp_path: Path) -> None:
    """The counterpart: the watchdog's own OUTPUT_OFF as the loop stops is not awaited, and the end is clean."""
    cart = build_cart(plan_without_imaging(), tmp_path)
    result = cart.session.run()
    cart.record.close()
    assert result.exit_code == EXIT_OK and result.message == ""


def test_an_operator_stop_mid_lesion_reports_the_lesions_stopped_not_complete(tmp_path: Path) -> None:
    cart = build_cart(plan_without_imaging(), tmp_path)
    steps = _run_until(cart, State.LESIONING)
    started = cart.clock.now()
    while cart.clock.now() < started + 5.0:
        next(steps)
    cart.session.request_stop()
    _finish(cart, steps)
    result = cart.session.result
    assert result is not None and result.final_state == "stopped" and result.exit_code == EXIT_FAULT
    assert [s.tripped for s in result.summaries] == ["operator stop"] * 3
    assert all(s.rf_time_s < 60.0 for s in result.summaries)
    summary = next(RecordReader(cart.record.path).rows("summary")).payload
    assert {lesion["tripped"] for lesion in summary["summaries"]} == {"operator stop"}


def test_a_stop_in_the_tick_of_a_trip_does_not_hide_the_trip(tmp_path: Path) -> None:
    """The physician presses stop during the very tick that finds a thermocouple open on ch2: the trip is told
    first (it is the procedure's first trip, and ch2's lesion is stopped by it), then the stop is acted on."""
    cart = build_cart(plan_without_imaging(), tmp_path, faults=[Fault(FaultKind.THERMOCOUPLE_OPEN, at_s=70.0,
                                                                      channel=2)])
    loop, session = cart.session.loop, cart.session
    tick = loop.tick

    def tick_and_press_stop() -> list[Any]:
        trips = tick()
        if trips:
            session.request_stop("operator stop")
        return trips

    loop.tick = tick_and_press_stop  # type: ignore[method-assign]
    result = session.run()
    cart.record.close()
    assert result.final_state == "stopped" and result.exit_code == EXIT_FAULT
    assert result.first_trip.startswith("thermocouple_open ch2: ") and result.first_trip_row is not None
    by_channel = {s.channel: s.tripped for s in result.summaries}
    assert by_channel[2] == result.first_trip and by_channel[1] == by_channel[3] == "operator stop"


def test_every_trip_of_a_tick_is_told_before_the_first_is_acted_on(tmp_path: Path) -> None:
    """A fault acted on first must not swallow the other trips of its tick. During the sensory test on ch1 its
    thermocouple opens and its electrode shorts at once: the frame that shows them trips two interlocks, each of
    which ends the procedure outside a lesion."""
    cart = build_cart(plan_without_imaging(), tmp_path)
    told: list[str] = []
    say = cart.session._say

    def listen(text: str, *, event: str, **fields: Any) -> None:
        if event == "alarm":
            told.append(str(fields["detail"]).split(":")[0])
        say(text, event=event, **fields)

    cart.session._say = listen  # type: ignore[method-assign]
    steps = _run_until(cart, State.STIMULATING)
    cart.sim.inject(Fault(FaultKind.THERMOCOUPLE_OPEN, at_s=cart.sim.elapsed_s, channel=1))
    cart.sim.inject(Fault(FaultKind.IMPEDANCE_SHORT, at_s=cart.sim.elapsed_s, channel=1))
    _finish(cart, steps)  # unattended: the fault ends the run
    assert {"thermocouple_open ch1", "impedance_low ch1"} <= set(told), told
    assert cart.session.result is not None and cart.session.result.final_state == "fault"


def _hold_the_commit_of(cart: SimCart, trigger: str, fault: FaultKind, channel: int = 1, hold_s: float = 0.3,
                        then: Callable[[], None] = lambda: None) -> list[float]:
    """Make the first commit of ``trigger``'s state row slow, as a disk can be, with the loop ticking through it as
    the real-time loop does, and inject ``fault`` as it begins, so that a tick of the hold finds it; call ``then``
    once it is committed. Returns when the commit was held (empty: never).

    Each hold tick waits for the disk until the tick is due, about a period of real time, so ``hold_s`` of 0.3 s
    holds some 30 simulated periods: time for the 10 Hz STATUS that reports a generator fault."""
    session, record = cart.session, cart.record
    commits = session.commits
    durable = commits.durable
    held: list[float] = []

    def slow(kind: str, payload: Payload, mono: float | None = None) -> int:
        if kind != "state" or not isinstance(payload, dict) or payload.get("trigger") != trigger or held:
            return durable(kind, payload, mono)
        held.append(cart.clock.now())
        cart.sim.inject(Fault(fault, at_s=cart.sim.elapsed_s, channel=channel))
        release = threading.Event()
        record.append("frame", lambda: (release.wait(5.0), {"slow": True})[1])  # a batch that takes its time
        threading.Timer(hold_s, release.set).start()
        commits.on_loop_thread = lambda: True  # type: ignore[method-assign]  # the real-time loop's own thread
        try:
            return durable(kind, payload, mono)
        finally:
            del commits.on_loop_thread
            then()

    commits.durable = slow  # type: ignore[method-assign]
    session.procedure._durable = slow
    return held


class _Acknowledging(ScriptedOperator):
    """Acknowledges until told to stop (then the unattended run ends in fault), counting the questions."""

    def __init__(self, plan: LesionPlan) -> None:
        super().__init__(plan)
        self.willing = True
        self.asked = 0

    def acknowledge(self, alarms: list[str]) -> bool:
        self.asked += 1
        return self.willing

    def decline(self) -> None:
        """From now on, and counting afresh."""
        self.willing, self.asked = False, 0


def test_a_trip_found_while_the_acknowledgement_commits_puts_the_procedure_back_in_fault(tmp_path: Path) -> None:
    """In real time the loop ticks while a state row is committed; a trip such a tick finds is the session's to
    act on. Found during the acknowledgement's own commit, it must send the procedure straight back to fault,
    never let it end in standby with the new fault latched and untold."""
    plan = plan_without_imaging()
    operator = _Acknowledging(plan)
    cart = build_cart(plan, tmp_path, faults=[Fault(FaultKind.GENERATOR_FAULT, at_s=60.0, duration_s=0.5)],
                      operator=operator)
    session = cart.session
    held = _hold_the_commit_of(cart, "acknowledge", FaultKind.GENERATOR_FAULT, then=operator.decline)
    result = session.run()
    cart.record.close()
    assert held and session.commits.hold_ticks > 0, "the acknowledgement's commit was held, ticking"
    assert result.final_state == "fault" and result.exit_code == EXIT_FAULT
    dests = _dests(cart)
    assert dests[-2:] == ["standby", "fault"], dests[-4:]
    assert operator.asked == 1, "asked again, about the new fault"


def test_a_channel_trip_found_while_a_transition_commits_under_power_stops_only_that_channel(tmp_path: Path) -> None:
    """Reaching set temperature is committed with RF on. A channel trip a tick of that commit finds is latched by
    the gate, so the next request for all three channels is refused: the session must stop that channel's lesion
    alone, as it does for a trip found by a tick (ARCHITECTURE.md section 6), not the healthy ones with it."""
    cart = build_cart(plan_without_imaging(), tmp_path)
    held = _hold_the_commit_of(cart, "set_temperature_reached", FaultKind.THERMOCOUPLE_OPEN, channel=2)
    result = cart.session.run()
    cart.record.close()
    assert held and cart.session.commits.hold_ticks > 0
    stopped = {s.channel: s.tripped for s in result.summaries}
    assert "thermocouple_open" in stopped[2] or "over_temperature" in stopped[2], stopped
    assert stopped[1] == stopped[3] == "", f"only channel 2 stops: {stopped}"
    assert result.final_state == "fault" and result.exit_code == EXIT_FAULT


@pytest.mark.parametrize(("trigger", "states"), [
    ("self_test_passed", ["self_test", "standby", "fault"]),  # the next guard (stimulation) refuses for the latch
    ("cooled", ["cooldown", "standby", "fault"]),  # the last transition: no tick follows it
])
def test_a_trip_found_while_a_transition_commits_ends_in_fault_though_no_tick_follows(
    tmp_path: Path, trigger: str, states: list[str]
) -> None:
    """The generator faults while a transition is committed, and the procedure goes on without a tick that would
    act on the trip: a guard refuses for its latch, or the procedure ends. The trip must still take it to fault,
    never end it in standby with the fault merely told."""
    cart = build_cart(plan_without_imaging(), tmp_path)
    held = _hold_the_commit_of(cart, trigger, FaultKind.GENERATOR_FAULT)
    result = cart.session.run()
    cart.record.close()
    assert held and cart.session.commits.hold_ticks > 0
    assert result.final_state == "fault" and result.exit_code == EXIT_FAULT
    assert _dests(cart)[-3:] == states
    assert result.first_trip.startswith("generator_fault")


def test_a_refused_acknowledgement_keeps_checking_the_sessions_own_fault(tmp_path: Path) -> None:
    """A session fault whose cause is gone at an acknowledgement that a gate latch refuses must still be checked
    at the next: its cause may be back by then, and the procedure leaves fault only once every cause has
    cleared (ARCHITECTURE.md section 6)."""
    cart = build_cart(plan_without_imaging(), tmp_path)
    session = cart.session
    steps = _run_until(cart, State.STANDBY)
    cart.sim.inject(Fault(FaultKind.GENERATOR_FAULT, at_s=cart.sim.elapsed_s, duration_s=1.0))
    while not session.gate.latched:  # ticked here, not by the session, which would act on the trip itself
        session.loop.tick()
    cause_present = [True]
    session._session_fault = ("tip temperatures unknown", lambda: cause_present[0])
    session.procedure.raise_fault("generator_fault")
    cause_present[0] = False
    assert not session.procedure.trigger("acknowledge"), "refused: the generator fault still holds"
    cause_present[0] = True
    for _ in range(150):  # the generator fault ends after 1 s
        session.loop.tick()
    assert not session.procedure.trigger("acknowledge")
    assert session.procedure.state is State.FAULT and not session.gate.latched, "the gate's own latch has cleared"
    assert session.procedure.refusals == ["tip temperatures unknown: cause still present"]
    cause_present[0] = False
    assert session.procedure.trigger("acknowledge") and session.procedure.state is State.STANDBY
    _finish(cart, steps)


def test_a_trip_the_acknowledgement_itself_finds_is_told_before_the_operator_is_asked_again(tmp_path: Path) -> None:
    """The gate acts on a condition it finds while acknowledging (safety.gate: _judge), or the watchdog trips
    meanwhile: the trip is handed over between ticks. The session tells it at once, as it does a refused
    request's, so the operator is never asked to acknowledge an alarm the record and the display do not yet
    hold."""
    plan = plan_without_imaging()
    operator = _Acknowledging(plan)
    cart = build_cart(plan, tmp_path, faults=[Fault(FaultKind.GENERATOR_FAULT, at_s=60.0, duration_s=0.5)],
                      operator=operator)
    session, gate = cart.session, cart.session.gate
    acknowledge = gate.acknowledge

    def stalled_meanwhile(imaging: Any = None) -> Any:
        cleared = acknowledge(imaging)
        if operator.willing:
            operator.willing = False
            gate.trip_from_watchdog("the loop stalled while acknowledging")
        return cleared

    gate.acknowledge = stalled_meanwhile  # type: ignore[method-assign]
    told_at_question: list[int] = []
    say = session._say

    def listen(text: str, *, event: str, **fields: Any) -> None:
        if event == "alarm" and "stalled while acknowledging" in str(fields["detail"]):
            told_at_question.append(operator.asked)
        say(text, event=event, **fields)

    session._say = listen  # type: ignore[method-assign]
    result = session.run()
    cart.record.close()
    assert result.final_state == "fault" and result.exit_code == EXIT_FAULT
    assert told_at_question == [1], "told after the first acknowledgement, before the second question"
    assert operator.asked == 2


class _ClosingPipe(io.StringIO):
    closed_by_reader = False

    def write(self, s: str) -> int:
        if self.closed_by_reader:
            raise BrokenPipeError(32, "Broken pipe")
        return super().write(s)


def test_an_event_stream_that_closes_mid_lesion_ends_the_procedure_as_a_recorded_fault(tmp_path: Path) -> None:
    cart = build_cart(plan_without_imaging(), tmp_path)
    cart.session.events = pipe = _ClosingPipe()
    steps = _run_until(cart, State.RAMPING)  # the next event is the state change to lesioning
    pipe.closed_by_reader = True
    _finish(cart, steps)
    result = cart.session.result
    assert result is not None and result.exit_code == EXIT_FAULT and result.final_state == "fault"
    assert "the operator's display is gone (BrokenPipeError" in result.message
    reader = RecordReader(cart.record.path)
    assert reader.count("summary") == 1 and _dests(cart)[-1] == "fault"
    assert all(s.tripped for s in result.summaries)
    cart.sim.step()
    assert not any(ch.output_on for ch in cart.sim.channels)


class _GonePipe(io.StringIO):
    def write(self, s: str) -> int:
        raise BrokenPipeError(32, "Broken pipe")


def test_a_prompt_stream_that_is_gone_ends_the_procedure_as_a_recorded_fault(tmp_path: Path) -> None:
    """With ``--json`` the console's prompts go to stderr. If that stream has gone when a stimulation question is
    put, nobody can answer what they cannot see: the procedure ends in fault, recorded, as for a lost display."""
    operator = ConsoleOperator(inp=io.StringIO("y\n" * 100), out=_GonePipe())
    cart = build_cart(plan_without_imaging(), tmp_path, operator=operator)
    cart.session.events = io.StringIO()  # the event stream itself is fine
    result = cart.session.run()
    cart.record.close()
    assert result.exit_code == EXIT_FAULT and result.final_state == "fault"
    assert "the operator's display is gone (BrokenPipeError" in result.message
    assert RecordReader(cart.record.path).count("summary") == 1 and _dests(cart)[-2:] == ["stimulating", "fault"]
    cart.sim.step()
    assert not any(ch.output_on for ch in cart.sim.channels)


def test_rfa_run_cut_short_by_a_broken_pipe_it_did_not_expect_exits_1(monkeypatch: pytest.MonkeyPatch) -> None:
    """``rfa record show | head`` quitting early is no error (exit 0), but a run ended by a broken pipe before it
    could give its result is no success."""
    def broken(args: Any) -> int:
        raise BrokenPipeError(32, "Broken pipe")

    silenced: list[bool] = []
    monkeypatch.setattr(cli, "_silence_stdout", lambda: silenced.append(True))
    monkeypatch.setattr(cli, "_run", broken)
    monkeypatch.setattr(cli, "_protocol", broken)
    assert cli.main(["run", "--yes"]) == EXIT_FAULT
    assert cli.main(["protocol"]) == EXIT_OK
    assert silenced == [True, True]


def test_rfa_run_whose_json_reader_goes_away_exits_1_not_0(tmp_path: Path) -> None:
    """``rfa run --yes --json | head -n 12``: the run is cut short, so its exit code says so."""
    proc = subprocess.Popen([sys.executable, "-m", "control.cli", "run", "--yes", "--json", "--record",
                             str(tmp_path)], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
    assert proc.stdout is not None
    for _ in range(12):
        proc.stdout.readline()
    proc.stdout.close()
    assert proc.wait(timeout=120) == EXIT_FAULT
    record = next(tmp_path.glob("*.rfa.db"))
    summary = next(RecordReader(record).rows("summary")).payload
    assert summary["final_state"] == "fault" and "display is gone" in summary["message"]


def test_a_defect_of_the_program_mid_lesion_ends_in_a_recorded_fault_then_is_raised(tmp_path: Path) -> None:
    """An exception no one foresaw (a bug) in the middle of a lesion: output off, the procedure in fault with its
    summary in the record, and only then the exception, with its traceback, for whoever mends it."""
    cart = build_cart(plan_without_imaging(), tmp_path)
    steps = _run_until(cart, State.LESIONING)

    def broken(*args: Any) -> None:
        raise ZeroDivisionError("a bug")

    cart.session._show_lesions = broken  # type: ignore[method-assign,assignment]
    with pytest.raises(ZeroDivisionError, match="a bug"):
        _finish(cart, steps)
    result = cart.session.result
    assert result is not None and result.exit_code == EXIT_FAULT and result.final_state == "fault"
    assert result.message.startswith("internal error: ZeroDivisionError: a bug")
    assert all(s.tripped for s in result.summaries)
    assert RecordReader(cart.record.path).count("summary") == 1 and _dests(cart)[-1] == "fault"
    cart.sim.step()
    assert not any(ch.output_on for ch in cart.sim.channels)


def test_a_defect_that_recurs_while_aborting_still_leaves_a_recorded_fault(tmp_path: Path) -> None:
    """The defect is in something the abort itself uses (stopping the controllers): each step of the abort is still
    taken, so output is off, the procedure in fault and the summary recorded before the defect is raised."""
    cart = build_cart(plan_without_imaging(), tmp_path)
    steps = _run_until(cart, State.LESIONING)

    def broken(*args: Any) -> None:
        raise ZeroDivisionError("a bug in the controllers")

    cart.session._controllers.stop = broken  # type: ignore[method-assign,assignment]
    cart.session._show_lesions = broken  # type: ignore[method-assign,assignment]
    with pytest.raises(ZeroDivisionError):
        _finish(cart, steps)
    assert RecordReader(cart.record.path).count("summary") == 1 and _dests(cart)[-1] == "fault"
    cart.sim.step()
    assert not any(ch.output_on for ch in cart.sim.channels)


def test_the_end_turns_output_off_even_if_its_alarms_cannot_be_told(tmp_path: Path) -> None:
    """The display has gone as the procedure ends: its last alarms cannot be shown, and the end's own OUTPUT_OFF
    and its wait to see output off must still happen (not be skipped with the telling)."""
    cart = build_cart(plan_without_imaging(), tmp_path)
    session = cart.session
    steps = _run_until(cart, State.LESIONING)

    def display_gone(trips: list[Any]) -> None:
        raise session_module.OperatorOutputLost("the operator's display is gone")

    offs: list[str] = []
    all_off = session.gate.all_off

    def noted_all_off(reason: str = "requested") -> int:
        offs.append(reason)
        return all_off(reason)

    session._tell_ending = display_gone  # type: ignore[method-assign]
    session.gate.all_off = noted_all_off  # type: ignore[method-assign]
    session.request_stop()
    _finish(cart, steps)
    assert "end of procedure" in offs, offs  # before the watchdog's own, as supervision ends


def test_the_console_ends_with_the_procedures_message_and_its_first_trip(tmp_path: Path) -> None:
    """The second screen must not drop 'OUTPUT MAY STILL BE ON' in favour of the first trip: both are shown."""
    cart = build_cart(plan_without_imaging(), tmp_path, faults=[Fault(FaultKind.OUTPUT_STUCK, at_s=60.0, channel=1)])
    cart.sim._host_alive = lambda now: True  # type: ignore[method-assign]  # its own watchdog is broken too
    result = cart.session.run()
    cart.record.close()
    out = io.StringIO()
    assert follow(result.record_path, out, once=True) == EXIT_FAULT
    closing = out.getvalue().rstrip().splitlines()[-2:]
    assert "OUTPUT MAY STILL BE ON" in closing[0] and "mains switch" in closing[0]
    assert closing[1].startswith("First interlock trip: uncommanded_output") and "(record row " in closing[1]


def test_the_console_says_why_the_procedure_entered_fault() -> None:
    follower = Follower()
    row = RecordRow(7, 1.0, 0.0, "state", {"trigger": "fault", "source": "lesioning", "dest": "fault",
                                           "reason": "self-test failed: WATCHDOG"})
    line = follower.feed(row)
    assert line is not None and line.endswith("state lesioning → fault: self-test failed: WATCHDOG")


def test_a_lesion_whose_tip_never_reaches_its_set_temperature_is_not_called_complete(tmp_path: Path) -> None:
    """Capped at 1 W, channel 2's tip cannot get near 80 °C: it runs its lesion time without a trip, but the
    lesion is smaller than planned, and the result, the summary and the record say so (exit 1). Its size is the one
    its own tip temperatures make (the cart's estimator, from the trace), not the plan's."""
    plan = plan_without_imaging()
    weak = plan.lesions[1].model_copy(update={"power_cap_w": 1.0})
    plan = plan.model_copy(update={"lesions": (plan.lesions[0], weak, plan.lesions[2])})
    cart = build_cart(plan, tmp_path, lesion_estimator=cli.lesion_estimator)
    events = io.StringIO()
    cart.session.events = events
    result = cart.session.run()
    cart.record.close()
    assert result.exit_code == EXIT_FAULT
    assert result.final_state == "standby"  # not a fault: nothing failed, the lesion fell short
    by_channel = {s.channel: s for s in result.summaries}
    assert [by_channel[ch].result for ch in (1, 3)] == ["complete", "complete"]
    short = by_channel[2]
    assert short.tripped == "" and short.time_to_set_s is None
    full = by_channel[1]
    assert full.predicted_width_mm is not None and short.predicted_width_mm is not None
    assert full.predicted_width_mm == pytest.approx(8.1, abs=0.2), "the default lesion's size (rfa lesion's)"
    assert short.predicted_width_mm < full.predicted_width_mm / 2, "a cold tip makes a small lesion, if any"
    assert short.result.startswith("set temperature not reached: peak") and "of 80 °C" in short.result
    assert "ch2: set temperature not reached" in result.message
    ends = [e for e in map(json.loads, events.getvalue().splitlines()) if e["event"] == "lesion_end"]
    assert [(e["channel"], "NOT reached" in e["text"]) for e in ends] == [(1, False), (2, True), (3, False)], ends
    (summary,) = [r.payload for r in RecordReader(cart.record.path).rows("summary")]
    assert summary["summaries"][1]["result"] == short.result


def test_an_estimate_that_fails_is_said_in_its_lesions_summary_and_takes_nothing_else_with_it(tmp_path: Path) -> None:
    """The size estimate runs while the procedure ends and is advisory: one that raises (any error, a defect
    included) leaves its lesion's size as "?" with the reason, and the summary, its record row and the exit code
    as they would have been."""
    plan = short_plan()

    def estimate(lesion: Lesion, trace: ChannelTrace) -> tuple[float, float]:
        if lesion.channel == 2:
            raise IndexError("index 7 is out of bounds")
        return 8.0, 14.0

    cart = build_cart(plan, tmp_path, lesion_estimator=estimate)
    result = cart.session.run()
    cart.record.close()
    assert result.exit_code == EXIT_OK and result.final_state == "standby", result.message
    first, second = result.summaries
    assert (first.predicted_width_mm, first.size_note) == (8.0, "")
    assert second.predicted_width_mm is None and second.result == "complete"
    assert second.size_note == "lesion size not estimated: IndexError: index 7 is out of bounds"
    assert summary_table(result.summaries).splitlines()[-1].split()[-2:] == ["?", "complete"]
    (summary,) = [r.payload for r in RecordReader(cart.record.path).rows("summary")]
    assert summary["summaries"][1]["size_note"] == second.size_note


def test_tips_still_hot_when_cooldown_time_is_up_are_named_not_called_cooled(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A cooldown cut to 0.5 s ends with the tips near 80 °C: the operator is warned which tips are hot, and the
    record's transition to standby says so instead of reading as a plain "cooled"."""
    monkeypatch.setattr(session_module, "COOLDOWN_MAX_S", 0.5)
    cart = build_cart(plan_without_imaging(), tmp_path)
    events = io.StringIO()
    cart.session.events = events
    result = cart.session.run()
    cart.record.close()
    assert result.final_state == "standby"
    (cooled,) = [r.payload for r in RecordReader(cart.record.path).rows("state") if r.payload["trigger"] == "cooled"]
    assert "tips still at or above 45 °C: ch1 " in cooled["reason"] and "ch3 " in cooled["reason"]
    warnings = [e for e in map(json.loads, events.getvalue().splitlines()) if e["event"] == "warning"]
    assert [w["detail"] for w in warnings] == ["cooldown_incomplete"]
    assert warnings[0]["text"].endswith(cooled["reason"])


def test_tips_that_cool_in_time_leave_cooldown_with_no_warning(tmp_path: Path) -> None:
    cart = build_cart(plan_without_imaging(), tmp_path)
    events = io.StringIO()
    cart.session.events = events
    result = cart.session.run()
    cart.record.close()
    assert result.exit_code == EXIT_OK, result.message
    (cooled,) = [r.payload for r in RecordReader(cart.record.path).rows("state") if r.payload["trigger"] == "cooled"]
    assert "reason" not in cooled
    assert not [e for e in map(json.loads, events.getvalue().splitlines()) if e["event"] == "warning"]


@pytest.mark.parametrize("interrupts_while_ending", [1, 2])
def test_ctrl_c_pressed_again_while_the_procedure_ends_is_answered_not_obeyed_once(
    interrupts_while_ending: int, tmp_path: Path, capfd: pytest.CaptureFixture[str]
) -> None:
    """Ctrl-C mid-lesion stops the procedure; a second Ctrl-C while it ends (here while the summary's lesion sizes
    are estimated, which takes seconds on the cart) would cut off the summary and leave the record without its end.
    It is answered with a word and the end goes on; a third quits at once (a finish that hangs must not trap the
    operator). Real signals, through the handlers `rfa run` installs."""
    def estimate(lesion: Any, trace: Any) -> tuple[float, float]:
        if estimates.pop() if estimates else False:
            os.kill(os.getpid(), signal.SIGINT)
        return 8.0, 14.0

    estimates = [True] * interrupts_while_ending
    cart = build_cart(plan_without_imaging(), tmp_path, lesion_estimator=estimate)
    session = cart.session
    steps = _run_until(cart, State.LESIONING)
    tick = session.loop.tick

    def tick_then_ctrl_c() -> list[Any]:
        trips = tick()
        if session.clock.now() > 40.0 and not pressed:
            pressed.append(True)
            os.kill(os.getpid(), signal.SIGINT)
        return trips

    pressed: list[bool] = []

    session.loop.tick = tick_then_ctrl_c  # type: ignore[method-assign]
    with cli._stop_on_termination(session):
        if interrupts_while_ending == 1:
            _finish(cart, steps)
        else:
            with pytest.raises(KeyboardInterrupt):
                _finish(cart, steps)
            cart.record.close()
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler  # restored
    assert "SIGINT received while the procedure is ending" in capfd.readouterr().err
    summaries = list(RecordReader(cart.record.path).rows("summary"))
    if interrupts_while_ending == 1:
        assert session.result is not None and session.result.final_state == "stopped"
        assert session.result.message == "operator stop (interrupt)"
        assert [s.predicted_width_mm for s in session.result.summaries] == [8.0] * 3
        assert len(summaries) == 1
    else:
        assert summaries == []


def test_a_record_that_fails_mid_lesion_ends_in_fault_with_output_seen_off(tmp_path: Path) -> None:
    """The disk fills mid-lesion. The failure goes to the safe state; after that, every row is dropped instead of
    raised: raised, it stopped each frame before the driver took it, so the end never saw its OUTPUT_OFF answered
    ("output off not confirmed ... after 0 ms"), and the fault could not be recorded, so the procedure ended in
    `ramping`. Now it ends in fault with output seen off, and says the record failed."""
    cart = build_cart(plan_without_imaging(), tmp_path)
    steps = _run_until(cart, State.LESIONING)
    started = cart.clock.now()
    while cart.clock.now() < started + 3.0:
        next(steps)
    cart.record._fail(OSError(28, "No space left on device"))  # the writer's next commit would fail so
    _finish_despite_the_record(cart, steps)
    result = cart.session.result
    assert result is not None and result.final_state == "fault" and result.exit_code == EXIT_FAULT
    assert "the procedure record failed" in result.message and "No space left on device" in result.message
    assert "not confirmed" not in result.message and "the summary could not be recorded" in result.message
    assert not any(ch.output_on for ch in cart.sim.channels)
    verdict = RecordReader(cart.record.path).verify()
    assert verdict.intact and not verdict.closed  # what was committed before the failure is there, and intact


def _finish_despite_the_record(cart: SimCart, steps: Any) -> None:
    for _ in steps:
        pass
    with pytest.raises(RecordError, match="No space left"):  # closing says it once more, as `rfa run` prints it
        cart.record.close()


def test_a_stop_requested_while_a_state_change_commits_turns_output_off_at_once(tmp_path: Path) -> None:
    """SIGTERM (or SIGHUP, or the stop button) while `ramping → lesioning` waits for a slow disk, RF on: in real time
    the loop ticks through the wait, but the session's own tick, which acts on the stop, waits with the commit. RF
    ran on at the held setpoint for the whole wait (2.2 s in the review's run, up to DURABLE_TIMEOUT_S). Now the
    hold's own ticks turn output off and latch the stop; the procedure ends stopped."""
    cart = build_cart(plan_without_imaging(), tmp_path)
    session, clock = cart.session, cart.clock
    session.commits.on_loop_thread = lambda: True  # type: ignore[method-assign]  # the real-time loop's thread
    session.recorder.defer_commit = lambda: True
    seen: dict[str, float] = {}
    durable, tick, off = session.procedure._durable, session.loop.tick, cart.generator.output_off

    def slow_row() -> dict[str, Any]:
        time.sleep(0.5)  # the writer needs 0.5 s of real time for the batch with the state row
        return {}

    def slow_lesioning_commit(kind: str, payload: dict[str, Any]) -> int:
        if kind == "state" and payload.get("dest") == "lesioning" and "slow" not in seen:
            seen["slow"] = clock.now()
            cart.record.append("slow", slow_row)
        return durable(kind, payload)

    def stop_once_holding() -> list[Any]:
        if "slow" in seen and "stop" not in seen:
            seen["stop"] = clock.now()
            session.request_stop("operator stop (SIGTERM received)")
        return tick()

    def output_off(channel_mask: int = 0x0F) -> int:
        if "stop" in seen:
            seen.setdefault("off", clock.now())
        return off(channel_mask)

    session.procedure._durable = slow_lesioning_commit
    session.loop.tick = stop_once_holding  # type: ignore[method-assign]
    cart.generator.output_off = output_off  # type: ignore[method-assign]
    result = session.run()
    cart.record.close()
    assert seen["off"] - seen["stop"] <= 0.02 and session.commits.hold_ticks >= 10  # off within the hold, not after
    assert result.final_state == "stopped" and result.message == "operator stop (SIGTERM received)"


def test_ctrl_c_whose_stop_meets_a_dead_link_ends_in_fault_not_a_traceback(tmp_path: Path) -> None:
    """Ctrl-C mid-lesion, and the stop's OUTPUT_OFF cannot be written (the cable went with it): the LinkError
    escaped the interrupt's handler, past the result, to a traceback. It ends as any lost link does: fault, said."""
    cart = build_cart(plan_without_imaging(), tmp_path)
    steps = _run_until(cart, State.LESIONING)
    gate = cart.session.gate

    def cable_gone() -> None:
        raise LinkError("write failed: the generator's port is gone")

    gate.operator_stop = cable_gone  # type: ignore[method-assign,assignment]
    with pytest.raises(StopIteration):
        steps.throw(KeyboardInterrupt)  # what Ctrl-C raises between two ticks
    cart.record.close()
    result = cart.session.result
    assert result is not None and result.final_state == "fault" and result.exit_code == EXIT_FAULT
    assert "generator link lost" in result.message


def test_the_reading_that_stopped_a_lesion_is_in_its_summary(tmp_path: Path) -> None:
    """ch2's electrode shorts mid-lesion: the frame that shows it trips impedance_low and stops the lesion. That
    reading was left out of the lesion's trace, so the summary's end impedance was the last healthy one, and a
    lesion stopped for a hot tip showed a maximum below the trip."""
    plan = plan_without_imaging()
    cart = build_cart(plan, tmp_path, faults=[Fault(FaultKind.IMPEDANCE_SHORT, at_s=70.0, channel=2)])
    result = cart.session.run()
    cart.record.close()
    by_channel = {s.channel: s for s in result.summaries}
    stopped = by_channel[2]
    assert stopped.tripped.startswith("impedance_low"), stopped.tripped
    lesion = next(le for le in plan.lesions if le.channel == 2)
    assert stopped.impedance_end_ohm is not None and stopped.impedance_end_ohm < lesion.impedance_min_ohm
    (trace,) = [t for t in cart.session.traces if t.channel == 2]
    assert trace.impedance_ohm[-1] == stopped.impedance_end_ohm


_EXAMPLES = Path(__file__).resolve().parents[2] / "docs" / "examples"


@pytest.mark.parametrize(("plan_of", "opens"), [
    (plan_without_imaging, ((45.0, 1), (45.0, 2), (45.0, 3))),
    (lambda: load_plan(_EXAMPLES / "bipolar-pulsed.toml"), ((22.0, 3), (24.0, 1))),
], ids=["thermal", "bipolar-and-pulsed"])
def test_lesions_all_stopped_during_the_ramp_are_not_recorded_as_having_reached_their_set_temperature(
        tmp_path: Path, plan_of: Callable[[], LesionPlan], opens: tuple[tuple[float, int], ...]) -> None:
    """Every lesion's thermocouple opens mid-ramp. The state machine only goes on through ``lesioning``, and the
    session meant to say why in that transition's record row; but the loop's own check (every lesion done or at
    its set temperature) fired first, so the record said ``set_temperature_reached`` and nothing else. A pulsed
    lesion's set temperature is a ceiling, so a *running* one counts as at it; a stopped one reached nothing."""
    cart = build_cart(plan_of(), tmp_path, faults=[
        Fault(FaultKind.THERMOCOUPLE_OPEN, at_s=at_s, channel=channel) for at_s, channel in opens])
    result = cart.session.run()
    cart.record.close()
    assert all(s.tripped.startswith("thermocouple_open") and s.time_to_set_s is None for s in result.summaries), \
        result.summaries
    (to_lesioning,) = [r.payload for r in RecordReader(cart.record.path).rows("state")
                       if r.payload["dest"] == "lesioning"]
    assert to_lesioning.get("reason") == "every channel stopped before reaching its set temperature", to_lesioning


def test_a_real_time_run_ended_by_a_loop_overrun_says_the_machine_may_be_the_cause(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """On a shared machine a real-time run against `rfa sim` ends in control_loop_overrun with nothing wrong in the
    cart or the generator (docs/procedure.md, "A real-time run needs the machine to itself"). The closing lines
    named the trip and the longest period, and nothing of what to do about it."""
    monkeypatch.setattr(session_module.os, "getloadavg", lambda: (2.9, 2.5, 2.4))
    monkeypatch.setattr(session_module.os, "cpu_count", lambda: 2)
    trip = "control_loop_overrun: 27.8 ms since the last tick (limit 20 ms)"
    result = session_module.SessionResult(EXIT_FAULT, "fault", Path("r.rfa.db"), first_trip=trip, first_trip_row=9,
                                          message=trip, realtime=True,
                                          loop={"ticks": 3546, "longest_period_ms": 27.8, "hold_ticks": 3})
    text = session_module.render_result(result)
    assert "load average 2.9 on 2 CPUs" in text and "machine to itself" in text, text
    assert "report it as a fault of the cart" in text, "on the cart an overrun is not the machine's to excuse"
    calm = session_module.render_result(session_module.SessionResult(
        EXIT_FAULT, "fault", Path("r.rfa.db"), first_trip="thermocouple_open ch1: open", message="x", realtime=True,
        loop={"ticks": 10, "longest_period_ms": 10.1, "hold_ticks": 0}))
    assert "load average" not in calm


def test_cooldown_does_not_call_a_bipolar_partner_with_an_open_thermocouple_cool(tmp_path: Path) -> None:
    """The partner's thermocouple opens mid-lesion (the pair stops). Its tip heated as the lead's did, and its
    temperature is now unknown: cooldown must not end "cooled" on the lead's reading alone, and its warning names the
    partner as unknown, as it would a lead channel (an open thermocouple is not known to be cool)."""
    plan = load_plan(_EXAMPLES / "bipolar-pulsed.toml")
    cart = build_cart(plan, tmp_path, faults=[Fault(FaultKind.THERMOCOUPLE_OPEN, at_s=30.0, channel=2)])
    result = cart.session.run()
    cart.record.close()
    bipolar = next(s for s in result.summaries if s.channel == 1)
    assert bipolar.tripped.startswith("thermocouple_open ch2"), bipolar
    (to_standby,) = [r.payload for r in RecordReader(cart.record.path).rows("state")
                     if r.payload["source"] == "cooldown"]
    assert "ch2 temperature unknown (thermocouple open)" in str(to_standby.get("reason")), to_standby
