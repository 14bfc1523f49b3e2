"""Whole procedures on the in-process simulator, in simulated time."""

from __future__ import annotations

import io
import json
import re
from dataclasses import asdict
from pathlib import Path

import pytest

from control.console import follow
from control.display import ProgressDisplay
from control.operator import ScriptedOperator
from control.procedure import State
from control.record import RecordReader
from control.session import render_result
from control.summary import ChannelTrace
from firmware_bridge.messages import ElectrodeInfo, Message, Pump, SetOutput, Stim
from safety import limits as hard
from safety.gate import StimKind
from safety.plan import Lesion, LesionPlan, default_genicular_plan, load_plan
from sim.generator import Fault, FaultKind
from tests.control.harness import SimCart, build_cart


def plan_without_imaging() -> LesionPlan:
    return default_genicular_plan().model_copy(update={"imaging_required": False})


def test_the_default_plan_completes_and_its_record_verifies(tmp_path: Path) -> None:
    asked: list[tuple[int, float]] = []

    def estimator(lesion: Lesion, trace: ChannelTrace) -> tuple[float, float]:
        assert trace.channel == lesion.channel and trace.rf_started_s is not None
        asked.append((lesion.channel, trace.t_s[-1] - trace.rf_started_s))
        return 7.5, 12.5

    cart = build_cart(plan_without_imaging(), tmp_path, lesion_estimator=estimator)
    result = cart.session.run()
    cart.record.close()
    assert result.exit_code == 0, result.message
    assert [ch for ch, _ in asked] == [1, 2, 3]
    assert all(rf_time == pytest.approx(90.0, abs=0.02) for _, rf_time in asked), "RF ran the planned 90 s"
    assert {(s.predicted_width_mm, s.predicted_length_mm) for s in result.summaries} == {(7.5, 12.5)}
    assert result.final_state == "standby"
    assert [s.tripped for s in result.summaries] == ["", "", ""]
    for s in result.summaries:
        assert s.overshoot_c <= 2.0
        assert s.hold_rms_error_c is not None and s.hold_rms_error_c <= 1.0
    assert [r["sensory_threshold_mv"] for r in result.stimulation] == [400, 400, 400]
    reader = RecordReader(result.record_path)
    assert reader.verify().ok
    asked = [r.payload["question"] for r in reader.rows("operator") if r.payload["kind"] == "response"]
    assert any(str(q).startswith("ch2 sensory at 0.40 V (delivered 0.40 V): ") for q in asked), asked[:3]
    dests = [r.payload["dest"] for r in reader.rows("state")]
    assert dests[:3] == ["self_test", "standby", "stimulating"]
    assert dests[-5:] == ["armed", "ramping", "lesioning", "cooldown", "standby"]
    # 4 channels at 100 Hz: every telemetry sample is in the record.
    assert reader.count("telemetry") >= 4 * 100 * 100


def test_a_channel_fault_mid_lesion_stops_that_channel_and_ends_in_fault(tmp_path: Path) -> None:
    # Stimulation takes ~38 s of simulated time; the lesion runs from ~40 s to ~130 s.
    fault = Fault(FaultKind.THERMOCOUPLE_OPEN, at_s=70.0, channel=2)
    cart = build_cart(plan_without_imaging(), tmp_path, faults=[fault])
    result = cart.session.run()
    assert result.exit_code == 1
    assert result.final_state == "fault"
    tripped = {s.channel: s.tripped for s in result.summaries}
    assert tripped[2] and tripped[1] == tripped[3] == "", "only ch2 stops; the others complete their lesions"
    assert " ch2: " in result.first_trip
    assert result.first_trip_row is not None
    cart.record.close()
    alarms = list(RecordReader(result.record_path).rows("alarm"))
    first = next(r for r in alarms if r.id == result.first_trip_row)
    assert first.payload["channel"] == 2
    # The open thermocouple's full-scale reading is no temperature: it trips thermocouple_open, not over-temperature.
    interlocks = {r.payload.get("interlock") for r in alarms}
    assert first.payload["interlock"] == "thermocouple_open" and "over_temperature" not in interlocks
    assert not any(ch.output_on for ch in cart.sim.channels)


def test_an_open_thermocouples_full_scale_is_no_temperature_to_the_physician(tmp_path: Path) -> None:
    """An open thermocouple reads full scale (327.67 °C). It is no tip temperature: not in the lesion's maximum and
    overshoot, not on the live line, not as a hot tip in cooldown's warning, which says it is unknown."""
    fault = Fault(FaultKind.THERMOCOUPLE_OPEN, at_s=70.0, channel=2)
    cart = build_cart(plan_without_imaging(), tmp_path, faults=[fault])
    cart.session.display = ProgressDisplay(out := io.StringIO(), log_period_s=0.0)
    result = cart.session.run()
    cart.record.close()
    ch2 = next(s for s in result.summaries if s.channel == 2)
    assert ch2.tripped.startswith("thermocouple_open")
    assert ch2.hold_max_c is not None and ch2.hold_max_c < 85.0, ch2
    assert ch2.overshoot_c < 5.0, ch2
    shown = out.getvalue()
    assert "327.7" not in shown
    assert "ch2  --.-°C" in shown
    standby = [r for r in RecordReader(result.record_path).rows("state") if r.payload["dest"] == "standby"][-1]
    assert "ch2 temperature unknown (thermocouple open)" in str(standby.payload.get("reason")), standby.payload


def _electrode_info_from(monkeypatch: pytest.MonkeyPatch, cart: SimCart, from_s: float) -> None:
    """The generator's ELECTRODE_INFO is lost until ``from_s`` (it sends one at once, then once a second): a host
    that opened its serial port after the simulator had written the first to it, and was slow to get the next."""
    send = cart.sim._send

    def lossy_send(msg: Message) -> None:
        if not (isinstance(msg, ElectrodeInfo) and cart.sim.elapsed_s < from_s):
            send(msg)

    monkeypatch.setattr(cart.sim, "_send", lossy_send)


def test_stimulation_waits_for_the_generators_first_electrode_info(tmp_path: Path,
                                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    """Self-test ends only once ELECTRODE_INFO has come: stimulating before it is refused by the electrode
    check (seen in the HIL suite over a pty, where the first one went out before the host opened the port)."""
    cart = build_cart(plan_without_imaging(), tmp_path)
    _electrode_info_from(monkeypatch, cart, from_s=1.5)
    steps = cart.session.steps()
    while cart.session.procedure.state is not State.STIMULATING:
        next(steps)
    assert cart.generator.electrodes is not None
    for _ in steps:
        pass
    assert cart.session.result is not None and cart.session.result.exit_code == 0, cart.session.result


def test_a_generator_that_sends_no_electrode_info_fails_self_test_saying_so(tmp_path: Path,
                                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    cart = build_cart(plan_without_imaging(), tmp_path)
    _electrode_info_from(monkeypatch, cart, from_s=3600.0)
    result = cart.session.run()
    assert (result.exit_code, result.final_state) == (1, "fault")
    assert result.message.startswith("self-test: no ELECTRODE_INFO from the generator within"), result.message
    assert cart.session.stimulation == []


class StallOnce:
    """The loop's pacer, stalling once, 60 ms, when the lesions are ramping (the devices keep stepping)."""

    def __init__(self, cart: SimCart) -> None:
        self.cart, self.inner, self.stalled = cart, cart.session.loop.pacer, False

    def sleep_until(self, t: float) -> None:
        if not self.stalled and self.cart.session.procedure.state is State.RAMPING:
            self.stalled = True
            t += 0.06
        self.inner.sleep_until(t)


def test_a_stall_the_watchdog_trips_is_reported_as_its_interlock_with_its_record_row(tmp_path: Path) -> None:
    """The watchdog trips a stalled loop from outside the tick (its thread, on the cart); the procedure must
    still say which interlock tripped and where in the record, not only that output was then refused."""
    cart = build_cart(plan_without_imaging(), tmp_path)
    cart.session.loop.pacer = StallOnce(cart)
    result = cart.session.run()
    cart.record.close()
    assert (result.exit_code, result.final_state) == (1, "fault")
    assert result.first_trip.startswith("control_loop_overrun: watchdog: no loop kick for 7"), result.first_trip
    row = next(r for r in RecordReader(result.record_path).rows("alarm") if r.id == result.first_trip_row)
    assert (row.payload["event"], row.payload["interlock"]) == ("trip", "control_loop_overrun")
    assert not any(ch.output_on for ch in cart.sim.channels)


class OutputWatch:
    """The loop's pacer, noting each step when the simulated generator's channel 1 delivered RF."""

    def __init__(self, cart: SimCart) -> None:
        self.cart, self.inner = cart, cart.session.loop.pacer
        self.on_at: list[float] = []

    def sleep_until(self, t: float) -> None:
        self.inner.sleep_until(t)
        if self.cart.sim.channels[0].output_on:
            self.on_at.append(self.cart.clock.now())


def test_a_generator_that_ignores_output_off_is_stopped_by_its_own_watchdog_while_the_alarm_is_read(
    tmp_path: Path,
) -> None:
    """Channel 1's output stage sticks on: its OUTPUT_OFF at the end of the lesion is acknowledged and ignored,
    and so is every OUTPUT_OFF after it. Sending more cannot help; withholding the host heartbeat makes the
    generator's own watchdog cut all output, while the operator is still reading the alarm."""
    plan = plan_without_imaging()
    cart = build_cart(plan, tmp_path, faults=[Fault(FaultKind.OUTPUT_STUCK, at_s=60.0, channel=1)])
    cart.session.operator = ScriptedOperator(plan, clock=cart.clock, reading_s=5.0)
    watch = OutputWatch(cart)
    cart.session.loop.pacer = watch
    result = cart.session.run()
    cart.record.close()
    assert (result.exit_code, result.final_state) == (1, "fault")
    assert result.first_trip.startswith("uncommanded_output: channel 1 delivers"), result.first_trip
    reader = RecordReader(result.record_path)
    trip = next(r for r in reader.rows("alarm") if r.id == result.first_trip_row)
    withheld = [r for r in reader.rows("alarm") if r.payload["event"] == "heartbeat_withheld"]
    assert len(withheld) == 1 and withheld[0].mono == trip.mono
    assert [r.payload["event"] for r in reader.rows("safety")].count("heartbeat_resumed") == 1
    assert not [r for r in reader.rows("alarm") if r.payload["event"] == "output_unstoppable"]
    assert cart.sim.counters.watchdog_trips == 1, "the generator's own watchdog, not an OUTPUT_OFF, stopped it"
    last_on = max(watch.on_at)
    assert last_on - trip.mono <= hard.WITHHELD_HEARTBEAT_LIMIT_S, "off well before the operator answered"
    assert cart.clock.now() - trip.mono >= 5.0, "the procedure waited in fault, ticking, meanwhile"
    assert not any(ch.output_on for ch in cart.sim.channels)
    assert reader.verify().ok


def test_a_procedure_does_not_end_before_output_withheld_for_is_seen_off(tmp_path: Path) -> None:
    """Unattended (--yes), the procedure ends at the fault at once; before its loop stops it keeps ticking, the
    heartbeat withheld, until the generator's watchdog has cut the stuck channel and a frame shows it off."""
    cart = build_cart(plan_without_imaging(), tmp_path, faults=[Fault(FaultKind.OUTPUT_STUCK, at_s=60.0, channel=1)])
    result = cart.session.run()
    cart.record.close()
    assert result.first_trip.startswith("uncommanded_output") and "MAINS" not in result.message.upper()
    assert not any(ch.output_on for ch in cart.sim.channels), "off before the procedure ended"
    reader = RecordReader(result.record_path)
    resumed = next(r for r in reader.rows("safety") if r.payload["event"] == "heartbeat_resumed")
    assert resumed.id < next(reader.rows("summary")).id


def test_output_that_nothing_stops_ends_the_procedure_telling_the_operator_to_switch_off_at_the_mains(
    tmp_path: Path,
) -> None:
    cart = build_cart(plan_without_imaging(), tmp_path, faults=[Fault(FaultKind.OUTPUT_STUCK, at_s=60.0, channel=1)])
    cart.sim._host_alive = lambda now: True  # type: ignore[method-assign]  # its watchdog is broken too
    result = cart.session.run()
    cart.record.close()
    assert result.exit_code == 1
    assert "OUTPUT MAY STILL BE ON" in result.message and "mains switch" in result.message
    assert cart.sim.channels[0].output_on
    reader = RecordReader(result.record_path)
    assert [r.payload["event"] for r in reader.rows("alarm")].count("output_unstoppable") == 1


def test_with_json_events_every_question_is_an_event_before_it_is_answered(tmp_path: Path) -> None:
    """A script driving ``rfa run --json`` on stdin must see each question on the event stream, in order."""
    cart = build_cart(plan_without_imaging(), tmp_path, faults=[Fault(FaultKind.GENERATOR_FAULT, at_s=60.0)])
    cart.session.events = stream = io.StringIO()
    cart.session.run()
    events = [json.loads(line) for line in stream.getvalue().splitlines()]
    asked = [e for e in events if e["event"] == "question"]
    assert {e["kind"] for e in asked} == {"response", "confirm", "acknowledge"}
    assert asked[-1]["alarms"] and asked[-1]["alarms"][0].startswith("generator_fault")
    arm = next(i for i, e in enumerate(events) if e["event"] == "question" and e["kind"] == "confirm")
    assert all(e["event"] != "state" or e["dest"] != "armed" for e in events[:arm]), "asked before arming"
    # A script answers a nerve test from fields, not by parsing the text: which channel, test and amplitude.
    steps = [(e["channel"], e["test"], e["amplitude_mv"]) for e in asked if e["kind"] == "response"]
    assert steps[:2] == [(1, "sensory", 100), (1, "sensory", 200)] and ("channel" not in asked[-1]), asked[-1]
    assert {test for _, test, _ in steps} == {"sensory", "motor"} and {ch for ch, _, _ in steps} == {1, 2, 3}


class _DeclinesArming(ScriptedOperator):
    """The scripted patient, and an operator who declines to arm: the procedure ends after its nerve tests."""

    def confirm(self, text: str) -> bool:
        return False


def test_no_response_names_the_highest_amplitude_delivered_not_the_maximum_rounded(tmp_path: Path) -> None:
    """With a maximum of 550 mV the tests climb 0.1 V a step to 0.50 V: "no response up to 0.6 V" (the maximum
    rounded) claimed a stimulus that was never delivered."""
    base = plan_without_imaging()
    plan = base.model_copy(update={
        "stimulation": base.stimulation.model_copy(update={"max_amplitude_mv": 550, "scripted": None}),
        "lesions": base.lesions[:1],
    })
    cart = build_cart(plan, tmp_path, operator=_DeclinesArming(plan))
    cart.session.events = stream = io.StringIO()
    cart.session.run()
    cart.record.close()
    texts = [json.loads(line)["text"] for line in stream.getvalue().splitlines()]
    asked = [t for t in texts if t.startswith("ch1 motor at ")]
    assert asked[-1].startswith("ch1 motor at 0.50 V"), asked
    assert "ch1 motor test: no response up to 0.50 V" in texts
    assert "ch1 sensory test: no response up to 0.50 V" in texts
    assert any(t.startswith("ch1: no sensory response up to 0.50 V: ") for t in texts), texts


def test_a_generator_fault_stops_everything_at_once(tmp_path: Path) -> None:
    cart = build_cart(plan_without_imaging(), tmp_path, faults=[Fault(FaultKind.GENERATOR_FAULT, at_s=60.0)])
    result = cart.session.run()
    assert (result.exit_code, result.final_state) == (1, "fault")
    assert result.first_trip.startswith("generator_fault")
    assert cart.session.procedure.state is State.FAULT
    assert not any(ch.output_on for ch in cart.sim.channels)


def test_a_link_that_dies_mid_lesion_ends_in_a_recorded_fault(tmp_path: Path) -> None:
    cart = build_cart(plan_without_imaging(), tmp_path)
    steps = cart.session.steps()
    while cart.session.procedure.state is not State.LESIONING:
        next(steps)
    cart.generator.transport.close()  # the cable is pulled
    for _ in steps:
        pass
    result = cart.session.result
    assert result is not None
    assert (result.exit_code, result.final_state) == (1, "fault")
    assert result.message.startswith("generator link lost") and "check its front panel" in result.message
    assert result.first_trip.endswith("[LinkError]") and result.message.startswith(result.first_trip)
    assert all(s.tripped for s in result.summaries)
    assert not cart.session.loop.watchdog.armed, "supervision ended"
    cart.record.close()
    states = [r.payload["dest"] for r in RecordReader(result.record_path).rows("state")]
    assert states[-1] == "fault"
    # With the link dead nothing reaches the generator: its own watchdog turns output off in 250 ms.
    for _ in range(30):
        cart.clock.advance(0.01)
        cart.sim.step()
    assert not any(ch.output_on for ch in cart.sim.channels)


def test_cooled_electrodes_get_coolant_before_rf_and_none_after(tmp_path: Path) -> None:
    plan = plan_without_imaging()
    cooled = tuple(les.model_copy(update={"electrode": les.electrode.model_copy(update={"cooled": True})})
                   for les in plan.lesions)
    cart = build_cart(plan.model_copy(update={"lesions": cooled}), tmp_path)
    sent: list[Message] = []
    cart.generator.on_sent(lambda seq, msg, t: sent.append(msg))
    result = cart.session.run()
    assert result.exit_code == 0, result.message
    pumps = [i for i, m in enumerate(sent) if isinstance(m, Pump)]
    rf = [i for i, m in enumerate(sent) if isinstance(m, SetOutput)]
    assert [sent[i] for i in pumps] == [Pump(1, 150), Pump(0, 0)]
    assert pumps[0] < rf[0] and pumps[1] > rf[-1], "coolant flows before the first RF and stops after the last"
    cart.sim.step()  # the generator acts on the last command
    assert not cart.sim.pump_on


class _TwitchesAt(ScriptedOperator):
    """The scripted patient, but the leg twitches when one channel's electrode is motor-tested at 0.4 V."""

    def __init__(self, plan: LesionPlan, channel: int) -> None:
        super().__init__(plan)
        self.twitch_channel = channel

    def responded(self, kind: StimKind, channel: int, amplitude_mv: int) -> bool:
        if kind is StimKind.MOTOR:
            return channel == self.twitch_channel and amplitude_mv >= 400
        return super().responded(kind, channel, amplitude_mv)


def test_each_electrode_of_a_bipolar_pair_is_nerve_tested_and_a_twitch_at_the_partner_stops_the_procedure(
    tmp_path: Path,
) -> None:
    """The pair's second needle lies near a nerve of its own: only the lead electrode was tested, so a motor nerve
    at the partner's tip went into the lesion unseen."""
    plan = load_plan(Path(__file__).resolve().parents[2] / "docs" / "examples" / "bipolar-pulsed.toml")
    assert [lesion.channels for lesion in plan.lesions] == [(1, 2), (3,)]
    cart = build_cart(plan, tmp_path / "tested", lesion_estimator=lambda lesion, trace: (0.0, 0.0))
    sent: list[Message] = []
    cart.generator.on_sent(lambda seq, msg, t: sent.append(msg))
    result = cart.session.run()
    cart.record.close()
    assert result.exit_code == 0, result.message
    assert [row["channel"] for row in result.stimulation] == [1, 2, 3]
    rows = list(RecordReader(result.record_path).rows("stimulation"))
    assert [row.payload["channel"] for row in rows] == [1, 2, 3]
    stimulated = [msg.channel_mask for msg in sent if isinstance(msg, Stim) and msg.amplitude_mv]
    assert set(stimulated) == {0b0001, 0b0010, 0b0100}, "each electrode on its own channel"
    cart = build_cart(plan, tmp_path / "twitch", operator=_TwitchesAt(plan, 2))
    sent.clear()
    cart.generator.on_sent(lambda seq, msg, t: sent.append(msg))
    stopped = cart.session.run()
    cart.record.close()
    assert stopped.final_state == "standby" and "ch2: motor response at 0.40 V" in stopped.message, stopped
    assert stopped.exit_code == 1, "a stop before the lesions is no success"
    assert not any(isinstance(msg, SetOutput) for msg in sent), "no RF after the partner's twitch"
    asked = [row.payload["question"] for row in RecordReader(stopped.record_path).rows("operator")
             if "question" in row.payload]
    assert "ch2 motor at 0.40 V (delivered 0.40 V): motor twitch in a limb (the local multifidus twitch of a lumbar " \
           "medial branch is expected: no)?" in asked, "the twitch that stops the procedure is named, not any twitch"


class _DeclinesArmingAndKeepsTheQuestion(ScriptedOperator):
    def __init__(self, plan: LesionPlan) -> None:
        super().__init__(plan)
        self.asked: list[str] = []

    def confirm(self, text: str) -> bool:
        self.asked.append(text)
        return False


def test_the_arming_question_names_what_is_confirmed_of_each_lesion(tmp_path: Path) -> None:
    """The operator confirms the lesions as the plan has them: "ch1 80 °C 60 s, ch3 42 °C 60 s" left out that ch1
    drives a bipolar pair at up to 25 W and ch3 pulses up to 45 V, and which electrodes are expected."""
    plan = load_plan(Path(__file__).resolve().parents[2] / "docs" / "examples" / "bipolar-pulsed.toml")
    operator = _DeclinesArmingAndKeepsTheQuestion(plan)
    cart = build_cart(plan, tmp_path, operator=operator)
    result = cart.session.run()
    cart.record.close()
    assert "did not confirm arming" in result.message
    assert operator.asked == ["Arm 2 lesion(s): ch1+ch2 bipolar 80 °C, cap 25 W, 60 s, 18 G 10 mm; ch3 pulsed 2 Hz × "
                              "20 ms up to 45 V, tip ≤ 42 °C, 60 s, 20 G 5 mm?"]


def test_a_bipolar_lesions_energy_is_the_pairs(tmp_path: Path) -> None:
    """Each side of a bipolar pair reports its own share of the power (docs/contract.md) and the plan's cap is the
    pair's: the lesion's energy is both sides' together, not its lead electrode's half."""
    plan = load_plan(Path(__file__).resolve().parents[2] / "docs" / "examples" / "bipolar-pulsed.toml")
    cart = build_cart(plan, tmp_path, lesion_estimator=lambda lesion, trace: (0.0, 0.0))
    result = cart.session.run()
    cart.record.close()
    assert result.exit_code == 0, result.message
    energy = {1: 0.0, 2: 0.0}
    last: dict[int, tuple[float, float]] = {}
    for row in RecordReader(result.record_path).rows("telemetry"):
        ch = int(row.payload["ch"])
        if ch in energy:
            if ch in last:
                t0, w0 = last[ch]
                energy[ch] += 0.5 * (w0 + float(row.payload["w"])) * (row.mono - t0)
            last[ch] = (row.mono, float(row.payload["w"]))
    bipolar = next(s for s in result.summaries if s.channel == 1)
    assert min(energy.values()) > 0.4 * sum(energy.values()), energy
    assert bipolar.energy_j == pytest.approx(energy[1] + energy[2], rel=0.02), (bipolar.energy_j, energy)


def test_a_pulsed_lesion_held_below_its_ceiling_does_not_keep_the_others_in_ramping(tmp_path: Path) -> None:
    """Pulsed RF holds its tip under a ceiling (42 °C), which its voltage cap may never let it reach: the procedure
    is lesioning once the thermal lesions are at their set temperature, not ramping until every lesion has ended."""
    plan = load_plan(Path(__file__).resolve().parents[2] / "docs" / "examples" / "bipolar-pulsed.toml")
    cart = build_cart(plan, tmp_path, lesion_estimator=lambda lesion, trace: (0.0, 0.0))
    result = cart.session.run()
    cart.record.close()
    assert result.exit_code == 0, result.message
    rows = list(RecordReader(result.record_path).rows("state"))
    lesioning = next(r for r in rows if r.payload["dest"] == "lesioning")
    bipolar = next(s for s in result.summaries if s.channel == 1)
    assert "reason" not in lesioning.payload, lesioning.payload
    assert lesioning.mono < rows[-1].mono - 30.0, "well before the 60 s lesions end"
    assert bipolar.time_to_set_s is not None and bipolar.time_to_set_s < 40.0
    sizes = {s.channel: s.predicted_width_mm for s in result.summaries}
    assert sizes[1] == 0.0 and sizes[3] is None, "no thermal lesion to estimate for pulsed RF"


_BIPOLAR_PULSED = Path(__file__).resolve().parents[2] / "docs" / "examples" / "bipolar-pulsed.toml"


def test_a_bipolar_pair_is_held_on_its_hotter_tip_and_both_tips_show_live_in_the_table_and_the_record(
    tmp_path: Path,
) -> None:
    """ch2's tissue is 10 Ω higher, so its tip takes more of the pair's heat. Regulated on the lead's (ch1's) tip,
    ch2 held 82-84 °C beside ch1's 80 °C, near its 85 °C over-temperature trip, while the live line and the table
    showed ch1 alone, "complete". The pair is now held on its hotter tip: ch2 at the set temperature, ch1 below it,
    and both tips are shown live, in the table, the record's summary row and the console."""
    cart = build_cart(load_plan(_BIPOLAR_PULSED), tmp_path, lesion_estimator=lambda lesion, trace: (0.0, 0.0),
                      faults=[Fault(FaultKind.IMPEDANCE_SPIKE, at_s=0.5, channel=2, value=10.0)])
    cart.session.display = ProgressDisplay(out := io.StringIO(), log_period_s=0.0)
    result = cart.session.run()
    cart.record.close()
    assert result.exit_code == 0, result.message
    bipolar = next(s for s in result.summaries if s.channel == 1)
    partner = bipolar.partner
    assert partner is not None and partner.channel == 2
    assert partner.hold_mean_c == pytest.approx(80.0, abs=0.5) and partner.overshoot_c is not None, partner
    assert partner.overshoot_c < 2.0, "the hotter tip is the one held at the set temperature"
    assert bipolar.hold_mean_c is not None and bipolar.hold_mean_c < 79.0, "the cooler lead runs below it"
    assert bipolar.time_to_set_s is not None and bipolar.result == "complete", bipolar
    assert next(s for s in result.summaries if s.channel == 3).partner is None, "a pulsed lesion has one electrode"
    shown = [(float(lead), float(other)) for lead, other in re.findall(r"ch1\+2 +([\d.]+)/([\d.]+)°C", out.getvalue())]
    assert shown and max(other - lead for lead, other in shown) > 1.0, shown[-3:]
    peaks_v = [float(v) for v in re.findall(r"ch3 +[\d.]+°C +\d+Ω +([\d.]+)V", out.getvalue())]
    assert peaks_v and 20.0 < max(peaks_v) <= 46.0, "the pulsed lesion in its peak volts (cap 45 V), not 0.2 W"
    table = render_result(result)
    (row,) = [line for line in table.splitlines() if line.startswith(" 2 ")]
    assert f" {partner.overshoot_c:.2f} " in row and f" {partner.hold_max_c:.2f} " in row, row
    assert row.endswith("bipolar partner of ch1 (pair held on its hotter tip)")
    (summary,) = RecordReader(result.record_path).rows("summary")
    assert summary.payload["summaries"][0]["partner"] == json.loads(json.dumps(asdict(partner)))
    follow(result.record_path, console := io.StringIO())
    assert table[table.index("ch set °C"):table.index("\n\nProcedure complete")] in console.getvalue()


def test_a_bipolar_partner_on_much_hotter_tissue_no_longer_trips_the_pair(tmp_path: Path) -> None:
    """80 Ω more under ch2: held on ch1's tip, ch2 tripped over_temperature at 85 °C and the procedure ended in
    fault; held on the hotter tip, the lesion completes with neither tip past the set temperature's overshoot."""
    cart = build_cart(load_plan(_BIPOLAR_PULSED), tmp_path, lesion_estimator=lambda lesion, trace: (0.0, 0.0),
                      faults=[Fault(FaultKind.IMPEDANCE_SPIKE, at_s=0.5, channel=2, value=80.0)])
    result = cart.session.run()
    cart.record.close()
    assert result.exit_code == 0, result.message
    bipolar = next(s for s in result.summaries if s.channel == 1)
    assert bipolar.result == "complete" and bipolar.partner is not None, bipolar
    assert bipolar.partner.hold_max_c is not None and bipolar.partner.hold_max_c < 82.0, bipolar.partner
    assert bipolar.hold_max_c is not None and bipolar.hold_max_c < 80.0, bipolar
    alarms = RecordReader(result.record_path).rows("alarm")
    assert [row.payload for row in alarms if row.payload["event"] == "trip"] == []


def test_an_open_partner_thermocouples_full_scale_is_no_temperature_to_the_physician(tmp_path: Path) -> None:
    """ch2's thermocouple opens mid-lesion (the pair stops): its 327.67 °C full scale is shown as no reading on the
    live line and left out of the partner's figures, as a lead's is."""
    cart = build_cart(load_plan(_BIPOLAR_PULSED), tmp_path, lesion_estimator=lambda lesion, trace: (0.0, 0.0),
                      faults=[Fault(FaultKind.THERMOCOUPLE_OPEN, at_s=30.0, channel=2)])
    cart.session.display = ProgressDisplay(out := io.StringIO(), log_period_s=0.0)
    result = cart.session.run()
    cart.record.close()
    bipolar = next(s for s in result.summaries if s.channel == 1)
    assert bipolar.tripped.startswith("thermocouple_open ch2"), bipolar
    assert bipolar.partner is not None and bipolar.partner.overshoot_c is not None
    assert bipolar.partner.overshoot_c < 5.0, bipolar.partner
    shown = out.getvalue()
    assert "327.7" not in shown
    assert re.search(r"ch1\+2 +[\d.]+/--\.-°C", shown), shown[-500:]
