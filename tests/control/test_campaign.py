"""``rfa campaign``: faults drawn from a seed, and each run judged by what the simulated generator did."""

from __future__ import annotations

import argparse
import dataclasses
import itertools
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from control import campaign, cli
from control.campaign import DeviceTrace, Injection, TripRow, draw_injections, judge
from control.cli import main
from control.record import RecordReader
from firmware_bridge.generator import RfGenerator
from safety import interlocks
from safety import limits as hard
from safety.config import HARD_LIMITS
from safety.gate import OutputGate
from safety.plan import LesionPlan, default_genicular_plan, load_plan
from sim.probe import ProbeFaultKind
from tests.control.test_cli_run import write_plan

PLAN = default_genicular_plan()  # channels 1, 2, 3


@given(st.integers(0, 2**32), st.integers(1, 30), st.floats(0.0, 100.0), st.floats(0.1, 100.0))
def test_draws_cover_every_kind_first_and_stay_on_planned_channels_in_the_window(
    seed: int, runs: int, start: float, length: float
) -> None:
    drawn = draw_injections(runs, seed, [1, 2, 3], (start, start + length))
    assert drawn == draw_injections(runs, seed, [1, 2, 3], (start, start + length))  # the seed decides all
    assert len(drawn) == runs
    first = [i.kind for i in drawn[: len(campaign.KINDS)]]
    assert len(set(first)) == len(first)  # no kind repeats before every kind has had its turn
    for injection in drawn:
        assert injection.channel in (1, 2, 3)
        assert start - 0.01 <= injection.at_s <= start + length + 0.01
        assert injection.duration_s is None or 0.2 <= injection.duration_s <= 5.0


@given(st.integers(0, 2**32), st.integers(1, 30))
def test_a_stimulator_fault_is_drawn_inside_the_stimulation_of_a_channel_that_stimulated(seed: int, runs: int) -> None:
    stimulated = {1: (5.0, 10.0), 3: (15.0, 20.0)}
    drawn = draw_injections(runs, seed, [1, 2, 3, 4], (50.0, 200.0), stim_windows_s=stimulated)
    for injection in drawn:
        start, end = stimulated[injection.channel] if injection.kind in campaign.STIM_ONLY_KINDS else (50.0, 200.0)
        assert start <= injection.at_s <= end


@given(st.integers(0, 2**32), st.integers(1, 30))
def test_a_probe_fault_is_drawn_inside_rf_as_a_fault_script_would_take_it(seed: int, runs: int) -> None:
    drawn = draw_injections(runs, seed, [1, 2, 3], (5.0, 200.0), campaign.PROBE_KINDS, rf_window_s=(50.0, 140.0))
    assert len({i.kind for i in drawn[:4]}) == min(runs, 4)
    for injection in drawn:
        assert 50.0 <= injection.at_s <= 140.0
        if injection.kind in campaign.ONCE_KINDS:
            assert injection.duration_s is None and injection.describe().endswith(
                "once" if injection.kind == "usb_stall" else f"once ({injection.value:.0f} frames)")
        if injection.kind == "frame_drops":
            assert injection.value is not None and injection.value.is_integer()
            assert campaign.FRAMES_DROPPED[0] <= injection.value <= campaign.FRAMES_DROPPED[1]
        elif injection.kind == "overheating":
            low, high = campaign.OVERHEATING_C_PER_S
            assert injection.value is not None and low <= injection.value <= high
        else:
            assert injection.value is None
        assert f"{injection.kind} at " in injection.describe(), "a probe fault is the whole cart's, on no channel"


def test_the_probe_kinds_are_the_simulated_probes_and_only_a_plan_with_imaging_draws_them() -> None:
    assert tuple(kind.value for kind in ProbeFaultKind) == campaign.PROBE_KINDS
    assert campaign.kinds_for(PLAN) == campaign.KINDS
    without = PLAN.model_copy(update={"imaging_required": False})
    assert campaign.kinds_for(without) == (*campaign.GENERATOR_KINDS, campaign.LINK_UNPLUG)


def test_a_weak_stimulus_is_judged_by_the_stimulation_it_met_not_by_rf() -> None:
    """ch1 stimulates 5..20 s, then delivers RF 30..100 s: a weak stimulus from 19.5 s met 0.5 s of
    stimulation, not enough to require a trip; one from 10 s met 10 s, and must have tripped."""
    device = DeviceTrace()
    for t, mask, rf in ((5.0, 0b1, 0), (20.0, 0, 0), (30.0, 0b1, 0b1), (100.0, 0, 0)):
        device.sample(t, mask, rf_mask=rf)
    late = _judge(Injection("stim_weak", 1, 19.5, None), [], device, exit_code=0)
    assert late.exposure_s == pytest.approx(0.5) and late.verdict == "tolerated"
    missed = _judge(Injection("stim_weak", 1, 10.0, None), [], device, exit_code=0)
    assert missed.exposure_s == pytest.approx(10.0)
    assert "stim_weak lasted 10.0 s of output and nothing tripped on it" in missed.problems
    caught = _judge(Injection("stim_weak", 1, 10.0, None), [TripRow(10.12, "stimulation_mismatch", 1)],
                    _device_stim_then_off(10.13))
    assert caught.passed and caught.detected_by == TripRow(10.12, "stimulation_mismatch", 1)
    assert device.window(stim_only=True) == (5.0, 20.0)
    assert device.window(stim_only=True, mask=0b10) is None
    two = DeviceTrace()
    for t, mask in ((5.0, 0b01), (9.0, 0), (12.0, 0b10), (20.0, 0), (30.0, 0b01), (31.0, 0b01)):
        two.sample(t, mask, rf_mask=0)
    assert two.window(stim_only=True, mask=0b10) == (12.0, 20.0), "a channel's own stimulation, not the others'"
    assert two.window(stim_only=True, mask=0b01) == (5.0, 31.0), "still on at the end: the last sample"
    assert two.window() == (5.0, 31.0)


def _device_stim_then_off(off_at: float) -> DeviceTrace:
    device = DeviceTrace()
    for t, mask in ((5.0, 0b1), (off_at, 0)):
        device.sample(t, mask, rf_mask=0)
    return device


@st.composite
def traces(draw: st.DrawFn) -> list[tuple[float, int]]:
    """Device samples every 10 ms: (time, mask on)."""
    masks = draw(st.lists(st.integers(0, 15), min_size=1, max_size=60))
    return [(k * 0.01, m) for k, m in enumerate(masks)]


@given(traces(), st.integers(0, 70), st.integers(1, 15))
def test_device_trace_answers_as_the_samples_say(samples: list[tuple[float, int]], at: int, mask: int) -> None:
    trace = DeviceTrace()
    for t, m in samples:
        trace.sample(t, m)
    t = at * 0.01
    seen = [m for s, m in samples if s <= t + 1e-12]
    on_now = bool(seen and seen[-1] & mask)
    assert trace.on_at(t, mask) == on_now
    later_off = [s for s, m in samples if s > t + 1e-12 and not m & mask]
    expected = t if not on_now else (later_off[0] if later_off else None)
    stopped = trace.stopped_at(t, mask)
    assert (stopped is None) == (expected is None)
    if expected is not None and stopped is not None:
        assert stopped == pytest.approx(expected)
    assert trace.final_mask == samples[-1][1]
    if not on_now:
        came_on = [s for s, m in samples if s > t + 1e-12 and m & mask]
        assert trace.on_again(t, mask) == (came_on[0] if came_on else None)
    for start, end in ((t, t + 0.15), (0.0, 1.0)):
        expected_s = sum(max(0.0, min(b, end) - max(a, start))
                         for (a, m), (b, _) in itertools.pairwise(samples) if m & mask)
        assert trace.on_time(mask, start, end) == pytest.approx(expected_s, abs=1e-9)


def _device(*changes: tuple[float, int]) -> DeviceTrace:
    trace = DeviceTrace()
    for t, mask in changes:
        trace.sample(t, mask)
    return trace


def _judge(injection: Injection | None, trips: list[TripRow], device: DeviceTrace, exit_code: int = 1,
           record_ok: bool = True, off_commands: tuple[tuple[float, int], ...] = ()) -> campaign.RunOutcome:
    return judge(1, injection, PLAN, HARD_LIMITS, exit_code=exit_code,
                 final_state="fault" if exit_code else "standby", trips=trips, device=device, record_ok=record_ok,
                 record_rows=10, off_commands=off_commands)


SHORT = Injection("impedance_short", 1, 50.0, None)


def test_a_trip_that_stops_its_channel_within_two_periods_passes() -> None:
    outcome = _judge(SHORT, [TripRow(50.01, "impedance_low", 1)], _device((10.0, 0b111), (50.02, 0b110), (60.0, 0)))
    assert outcome.passed and outcome.verdict == "ok"
    assert outcome.fault_met_rf and outcome.stopped_after_ms == pytest.approx(10.0)


def test_output_that_runs_on_after_a_trip_fails() -> None:
    outcome = _judge(SHORT, [TripRow(50.01, "impedance_low", 1)], _device((10.0, 0b111), (50.06, 0b110), (60.0, 0)))
    assert not outcome.passed and "50 ms after the impedance_low trip" in outcome.problems[0]


def test_a_cut_link_is_allowed_the_generators_own_heartbeat_timeout() -> None:
    unplug = Injection(campaign.LINK_UNPLUG, 1, 50.0, None)
    stops_on_its_own = _device((10.0, 0b111), (50.3, 0))
    assert _judge(unplug, [TripRow(50.05, "telemetry_stale", None)], stops_on_its_own).passed
    too_late = _device((10.0, 0b111), (50.5, 0))
    assert not _judge(unplug, [TripRow(50.05, "telemetry_stale", None)], too_late).passed


@pytest.mark.parametrize("kind", sorted(campaign.UNHEARD_KINDS))
def test_the_generators_own_timeout_is_allowed_only_while_it_cannot_hear_the_host(kind: str) -> None:
    """Once the link is back (or the generator takes commands again), an OUTPUT_OFF must work within two periods."""
    for_a_second = Injection(kind, 1, 50.0, 1.0)
    device = _device((10.0, 0b111), (50.3, 0), (52.0, 0b111), (52.3, 0))
    assert _judge(for_a_second, [], device, off_commands=((50.05, 0b111),)).passed
    outcome = _judge(for_a_second, [], device, off_commands=((50.05, 0b111), (52.05, 0b111)))
    assert not outcome.passed and "the OUTPUT_OFF at 52.05 s (limit 20 ms)" in outcome.problems[0], outcome.problems


def test_output_that_runs_on_after_an_output_off_fails_even_without_a_trip() -> None:
    """ch1's lesion ends at 100 s: the OUTPUT_OFF the host sent for it must stop it within two periods."""
    obeyed = _device((10.0, 0b111), (100.01, 0b110), (130.0, 0))
    assert _judge(None, [], obeyed, exit_code=0, off_commands=((100.0, 0b1), (130.0, 0x0F))).passed
    ignored = _device((10.0, 0b111), (100.5, 0b110), (130.0, 0))
    outcome = _judge(None, [], ignored, exit_code=0, off_commands=((100.0, 0b1), (130.0, 0x0F)))
    assert outcome.problems == ["output on mask 0x01 stopped 500 ms after the OUTPUT_OFF at 100.00 s (limit 20 ms)"]


def test_a_stuck_output_stage_is_allowed_the_grace_and_the_generators_heartbeat_timeout_not_more() -> None:
    """A stuck stage shows only at the OUTPUT_OFF that ends its lesion (no trip needed while it delivered as asked);
    then the host's grace, its trip and the withheld heartbeat stop it: 0.1 + 0.01 + 0.02 + 0.25 s at most."""
    stuck = Injection("output_stuck", 1, 60.0, None)
    off = ((100.0, 0b111),)
    trip = [TripRow(100.11, "uncommanded_output", None)]
    cut_in_time = _device((10.0, 0b111), (100.01, 0b001), (100.37, 0))
    outcome = _judge(stuck, trip, cut_in_time, off_commands=off)
    assert outcome.passed and outcome.verdict == "ok", outcome.problems
    assert outcome.stopped_after_ms == pytest.approx(260.0)
    cut_late = _device((10.0, 0b111), (100.01, 0b001), (100.5, 0))
    assert _judge(stuck, trip, cut_late, off_commands=off).problems == [
        "output stopped 390 ms after the uncommanded_output trip at 100.11 s (limit 380 ms)",
        "output on mask 0x07 stopped 500 ms after the OUTPUT_OFF at 100.00 s (limit 380 ms)",
    ]
    latent = _judge(stuck, [], _device((10.0, 0b111), (130.01, 0)), exit_code=0, off_commands=((130.0, 0x0F),))
    assert latent.passed and latent.exposure_s > 1.0, "delivering what it was asked to is not yet a fault"
    not_stuck = _judge(SHORT, trip, cut_in_time, off_commands=off)
    assert "output on mask 0x07 stopped 370 ms after the OUTPUT_OFF at 100.00 s (limit 20 ms)" in not_stuck.problems


def test_output_on_at_the_end_fails_whatever_else_happened() -> None:
    outcome = _judge(None, [], _device((10.0, 0b1)), exit_code=0)
    assert outcome.problems == ["output still on at the end (mask 0x01)"]


def test_a_fault_that_met_enough_output_must_have_tripped_on_its_channel() -> None:
    device = _device((10.0, 0b111), (100.0, 0))
    assert "nothing tripped on it" in _judge(SHORT, [], device, exit_code=0).problems[0]
    unrelated = _judge(SHORT, [TripRow(30.0, "impedance_low", 1), TripRow(60.0, "over_power", 2)], device)
    assert any("nothing tripped on it" in p for p in unrelated.problems)  # before the fault, or another channel
    system = _judge(SHORT, [TripRow(50.5, "generator_fault", None)], _device((10.0, 0b111), (50.51, 0)))
    assert system.passed and system.detected_by == TripRow(50.5, "generator_fault", None)


def test_a_fault_that_met_too_little_output_to_be_seen_is_tolerated() -> None:
    device = _device((10.0, 0b111), (50.5, 0))  # the lesion ended half a second into the fault
    brief = _judge(SHORT, [], device, exit_code=0)
    assert brief.passed and brief.verdict == "tolerated" and brief.exposure_s == pytest.approx(0.5)
    # A frozen reading is certain to be seen only by the 10 s stillness limit.
    frozen = _judge(Injection("thermocouple_frozen", 1, 50.0, None), [], _device((10.0, 0b111), (58.0, 0)))
    assert frozen.verdict == "tolerated"
    too_long = _judge(Injection("thermocouple_frozen", 1, 50.0, None), [], _device((10.0, 0b111), (70.0, 0)))
    assert not too_long.passed
    before_output = _judge(Injection("impedance_short", 1, 5.0, 1.0), [], _device((10.0, 0b111), (100.0, 0)),
                           exit_code=0)
    assert before_output.passed and not before_output.fault_met_rf and before_output.verdict == "ok"


def test_a_runaway_during_stimulation_alone_need_not_trip() -> None:
    # Stimulation on channel 1 from 10 to 40 s, RF from 50 s: a runaway of the RF stage during stimulation
    # has nothing to show; an impedance short does (the interlocks guard stimulation too).
    device = DeviceTrace()
    for k in range(10_000):
        t = k * 0.01
        stim, rf = 10.0 <= t < 40.0, 50.0 <= t < 90.0
        device.sample(t, 0b1 if stim or rf else 0, rf_mask=0b1 if rf else 0)
    runaway = _judge(Injection("power_runaway", 1, 20.0, 5.0), [], device, exit_code=0)
    assert runaway.passed and runaway.exposure_s == 0.0 and runaway.verdict == "ok"
    short = _judge(Injection("impedance_short", 1, 20.0, 5.0), [], device, exit_code=0)
    assert not short.passed and short.exposure_s == pytest.approx(5.0)


def test_output_back_on_after_a_trip_fails() -> None:
    device = _device((10.0, 0b111), (50.02, 0b110), (60.0, 0b111), (90.0, 0))
    outcome = _judge(SHORT, [TripRow(50.01, "impedance_low", 1)], device)
    assert outcome.problems == ["output back on at 60.00 s on the channels of the impedance_low trip"]


def test_a_trip_with_exit_0_or_a_broken_record_fails() -> None:
    device = _device((10.0, 0b111), (50.01, 0b110), (60.0, 0))
    assert "but exit 0" in _judge(SHORT, [TripRow(50.01, "impedance_low", 1)], device, exit_code=0).problems[0]
    assert _judge(SHORT, [TripRow(50.01, "impedance_low", 1)], device, record_ok=False).problems == [
        "the record does not verify"
    ]


def test_a_tip_that_really_got_hotter_than_its_trip_level_fails_even_unseen() -> None:
    # Channel 1 of the default plan trips above 85 °C (80 + 5); its thermocouple froze at 80 °C.
    frozen = Injection("thermocouple_frozen", 1, 50.0, None)
    device = _device((10.0, 0b111), (55.0, 0))
    device.sample(55.0, 0, [80.5, 79.0, 81.0, 37.0])
    assert _judge(frozen, [], device, exit_code=0).verdict == "tolerated"
    device.sample(55.01, 0, [86.5, 79.0, 81.0, 37.0])
    outcome = _judge(frozen, [], device, exit_code=0)
    assert outcome.true_tip_max_c == pytest.approx(86.5)
    assert outcome.problems == ["ch1 tip really reached 86.5 °C, trip level 85.0 °C"]


def test_a_fault_free_run_that_trips_fails() -> None:
    device = _device((10.0, 0b111), (50.01, 0))
    assert not _judge(None, [TripRow(50.0, "over_temperature", 1)], device).passed


def test_the_command_runs_a_campaign_and_judges_each_run(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    plan = write_plan(tmp_path)
    code = main(["campaign", "--plan", str(plan), "--runs", "2", "--kinds", "impedance_short,link_unplug",
                 "--seed", "4", "--record", str(tmp_path / "records"), "--json"])
    report = json.loads(capsys.readouterr().out)
    runs = report["runs"]
    assert code == 0, runs
    assert runs[0]["injection"] is None and runs[0]["final_state"] == "standby"
    assert all(r["true_tip_max_c"] is not None and r["true_tip_max_c"] > 40.0 for r in runs)
    kinds = {r["injection"]["kind"]: r for r in runs[1:]}
    assert set(kinds) == {"impedance_short", "link_unplug"}
    for run in runs[1:]:
        assert run["verdict"] == "ok"
        if run["fault_met_rf"]:
            assert run["first_trip"] is not None and run["exit_code"] == 1
    records = sorted((Path(report["records"])).glob("run-*.rfa.db"))
    assert len(records) == 3


def _one_fault_run(tmp_path: Path, capsys: pytest.CaptureFixture[str], kind: str, seed: int) -> tuple[int, Any]:
    """``rfa campaign`` with one run of ``kind`` on the short plan: its exit code and the faulted run's outcome."""
    code = main(["campaign", "--plan", str(write_plan(tmp_path)), "--runs", "1", "--kinds", kind, "--seed", str(seed),
                 "--record", str(tmp_path / f"records-{len(list(tmp_path.iterdir()))}"), "--json"])
    return code, json.loads(capsys.readouterr().out)["runs"][1]


def test_a_stuck_output_stage_holds_in_a_campaign_because_the_heartbeat_is_withheld(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """End to end: channel 1's stage sticks (seed 1: from 6 s, for good); the OUTPUT_OFF that ends its lesion is
    ignored. With the gate's withholding the generator's watchdog stops it within the limit; with the loop sending
    the heartbeat regardless (as before the withholding), the campaign fails the run."""
    code, run = _one_fault_run(tmp_path, capsys, "output_stuck", seed=1)
    assert code == 0
    assert run["injection"]["kind"] == "output_stuck" and run["first_trip"]["interlock"] == "uncommanded_output"
    assert run["stopped_after_ms"] <= hard.GENERATOR_HEARTBEAT_TIMEOUT_S * 1e3 + 20
    monkeypatch.setattr(OutputGate, "keep_alive", lambda gate: gate._generator.keep_alive())
    code, run = _one_fault_run(tmp_path, capsys, "output_stuck", seed=1)
    assert code == 1
    assert any("after the uncommanded_output trip" in p for p in run["problems"]), run["problems"]


def test_a_generator_that_stops_taking_commands_is_a_lost_link_in_a_campaign(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """End to end: the generator's command handling hangs under power (seed 2: at 2.6 s for 4.7 s). The host trips
    on the unanswered commands a period after the answer was due, and the generator's own watchdog, which no longer
    hears the heartbeat either, stops output. Without the driver's account of unanswered commands the cart goes on
    as if it were still in command, and nothing names the fault when it happens."""
    code, run = _one_fault_run(tmp_path, capsys, "commands_ignored", seed=2)
    assert code == 0
    assert run["injection"]["kind"] == "commands_ignored" and run["first_trip"]["interlock"] == "link_lost"
    waited = run["first_trip"]["at"] - run["injection"]["at_s"]
    assert hard.COMMAND_ANSWER_S < waited <= hard.COMMAND_ANSWER_S + 2 * hard.LOOP_PERIOD_S + 1e-6
    monkeypatch.setattr(RfGenerator, "unanswered", property(lambda driver: None))
    _, blind = _one_fault_run(tmp_path, capsys, "commands_ignored", seed=2)
    assert blind["first_trip"] is None or blind["first_trip"]["at"] - blind["injection"]["at_s"] > waited + 0.1, blind


def test_an_unknown_fault_kind_exits_2_naming_the_known_ones(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["campaign", "--kinds", "meteor"]) == 2
    err = capsys.readouterr().err
    assert "meteor" in err and "impedance_short" in err


def test_the_example_plans_load(tmp_path: Path) -> None:
    # The docs point `rfa campaign --plan` and `rfa run --plan` at them: a refused example is a broken doc.
    from safety.config import HARD_LIMITS as limits
    from safety.plan import load_plan

    examples = sorted(p for p in Path(__file__).parents[2].joinpath("docs", "examples").glob("*.toml")
                      if p.name != "cart.toml")  # the example cart configuration (tests/test_docs_tables.py)
    assert len(examples) >= 2
    for path in examples:
        assert load_plan(path, limits).lesions


def test_a_runaway_is_tripped_on_in_bipolar_and_in_pulsed_output(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # End to end, the two findings: a bipolar pair judged by its summed power, a pulsed runaway simulated.
    example = Path(__file__).parents[2] / "docs" / "examples" / "bipolar-pulsed.toml"
    code = main(["campaign", "--plan", str(example), "--kinds", "power_runaway", "--runs", "2", "--seed", "5",
                 "--record", str(tmp_path), "--json"])
    runs = json.loads(capsys.readouterr().out)["runs"]
    assert code == 0, runs
    assert {r["injection"]["channel"]: r["detected_by"]["interlock"] for r in runs[1:]} == {
        1: "over_power",  # the bipolar pair 1-2
        3: "over_power",  # pulsed
    }


def test_a_run_that_crashes_is_a_failed_run_and_the_campaign_goes_on(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    from control.session import ProcedureSession

    real_run = ProcedureSession.run
    calls: list[int] = []

    def second_run_raises(self: ProcedureSession) -> object:
        calls.append(1)
        if len(calls) == 2:
            raise RuntimeError("simulated bug")
        return real_run(self)

    monkeypatch.setattr(ProcedureSession, "run", second_run_raises)
    code = main(["campaign", "--plan", str(write_plan(tmp_path)), "--runs", "2", "--kinds", "impedance_short",
                 "--record", str(tmp_path / "records")])
    out = capsys.readouterr().out
    assert code == 1 and len(calls) == 3  # the third run still ran
    assert "run 1: the run raised RuntimeError: simulated bug" in out
    assert "3 runs, 1 failed" in out


def _imaging_device(gap: tuple[float, float] | None = None, face: tuple[float, float] | None = None,
                    rf: tuple[float, float] = (10.0, 100.0), off_at: float | None = None) -> DeviceTrace:
    """The default plan's RF on channels 1-3 over ``rf`` (all off at ``off_at``, if sooner), the probe sending 25
    frames a second but none within ``gap``, its face at 33 °C warming at 5 °C/s over ``face``."""
    device = DeviceTrace()
    end = rf[1] if off_at is None else min(rf[1], off_at)
    frames = 0
    for k in range(round(110.0 / 0.01)):
        t = round(k * 0.01, 2)
        on = 0b111 if rf[0] <= t < end else 0
        device.sample(t, on, rf_mask=on)
        if k % 4 == 0 and not (gap and gap[0] < t < gap[1]):
            frames += 1
        face_c = 33.0 if face is None else 33.0 + 5.0 * min(max(t - face[0], 0.0), face[1] - face[0])
        device.sample_probe(t, frames, face_c)
    return device


def test_imaging_lost_past_the_limit_with_rf_on_must_have_tripped_on_it() -> None:
    """The default plan: frames may be 0.5 s old, and 2 s more while RF is on; a 4 s drop-out from 50 s."""
    assert campaign.imaging_limit_s(PLAN, HARD_LIMITS) == pytest.approx(2.5)
    unseen = _judge(None, [], _imaging_device(gap=(50.0, 54.0)), exit_code=0)
    assert unseen.problems == [
        "no frame from the probe for 4.0 s from 50.00 s with RF on, and imaging_lost had not tripped by 52.53 s "
        "(limit 2.5 s)"], unseen.problems
    trip = [TripRow(50.51, "imaging_lost", None)]
    tripped = _judge(None, trip, _imaging_device(gap=(50.0, 54.0), off_at=50.52), exit_code=1)
    assert "imaging_lost tripped at 50.51 s on a probe whose last frame was 0.51 s old, within the 2.5 s RF may go " \
           "on without one" in tripped.problems, "tripped past the frame age, but inside the grace"
    trip = [TripRow(52.51, "imaging_lost", None)]
    in_time = _judge(None, trip, _imaging_device(gap=(50.0, 54.0), off_at=52.52), exit_code=1)
    assert not [p for p in in_time.problems if "imaging_lost" in p or "frame" in p], in_time.problems
    after_rf = _judge(None, [], _imaging_device(gap=(99.0, 104.0)), exit_code=0)
    assert after_rf.passed, "RF ended within the limit: nothing had to trip"


def test_a_probe_face_past_its_limit_must_have_tripped_within_a_reading_and_only_then() -> None:
    """33 °C warming at 5 °C/s from 60 s: past 43 °C at 62 s; the face is read once a second."""
    hot = _imaging_device(face=(60.0, 70.0), off_at=62.8)
    assert hot.probe_face_over_at(43.0) == pytest.approx(62.01) and hot.probe_face_max_c == pytest.approx(83.0)
    tripped = _judge(None, [TripRow(62.8, "probe_face_over_temperature", None)], hot)
    assert not [p for p in tripped.problems if "probe" in p], tripped.problems
    late = _judge(None, [TripRow(63.2, "probe_face_over_temperature", None)], _imaging_device(face=(60.0, 70.0),
                                                                                              off_at=63.21))
    assert "the probe face passed 43.0 °C at 62.01 s and probe_face_over_temperature had not tripped 1.03 s later" \
        in late.problems, late.problems
    warm = _imaging_device(face=(60.0, 61.0), off_at=61.5)  # 38 °C, and it holds there
    cool = _judge(None, [TripRow(61.5, "probe_face_over_temperature", None)], warm)
    assert "probe_face_over_temperature tripped at 61.50 s, but the probe face never passed its 43.0 °C limit" \
        in cool.problems, cool.problems
    assert _judge(None, [], _imaging_device(face=(60.0, 61.0)), exit_code=0).passed


# -- probe faults, end to end: the short plan with imaging (one 20 s lesion on ch1, frames may be 0.5 s old) -------
@pytest.fixture(scope="module")
def imaging_plan(tmp_path_factory: pytest.TempPathFactory) -> LesionPlan:
    return load_plan(write_plan(tmp_path_factory.mktemp("plan"), imaging=True), HARD_LIMITS)


@pytest.fixture(scope="module")
def record_dirs(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    root = tmp_path_factory.mktemp("campaign")
    return (root / str(n) for n in itertools.count())


def _probe_run(plan: LesionPlan, records: Iterator[Path], kind: str, at_s: float, duration_s: float | None = None,
               value: float | None = None) -> tuple[campaign.RunOutcome, DeviceTrace, Path]:
    """One campaign run of ``plan`` with a probe fault, as ``rfa campaign`` runs it: its outcome, trace and record."""
    record_dir = next(records)
    outcome, device = cli._campaign_run(plan, HARD_LIMITS, Injection(kind, 1, at_s, duration_s, value), 1,
                                        argparse.Namespace(seed=0, physical=False), record_dir)
    return outcome, device, record_dir / "run-001.rfa.db"


@pytest.mark.parametrize(("kind", "duration_s", "value", "first_trip"), [
    ("usb_stall", None, None, None),  # the host clears the halt at its next read
    ("frame_drops", None, 10.0, None),  # 0.4 s: younger than the plan's 0.5 s frame age
    ("frame_drops", None, 40.0, None),  # 1.6 s: past the frame age, within the 2 s grace: the lesion goes on
    ("frame_drops", None, 100.0, "imaging_lost"),  # 4 s: past the grace
    ("disconnect", 0.5, None, None),  # found again at the host's next attempt, a second after its first
    ("disconnect", 3.0, None, "imaging_lost"),
    ("disconnect", None, None, "imaging_lost"),
    ("overheating", None, 5.0, "probe_face_over_temperature"),  # 33 °C + 5 °C/s: past 43 °C 2 s in
    ("overheating", 2.0, 2.0, None),  # warms to 37 °C and holds there
    ("reports_fault", None, None, "imaging_lost"),  # frames stream on: the next status reading trips
    ("reports_fault", 1.5, None, "imaging_lost"),  # a status reading (one a second) falls within it
])
def test_each_probe_fault_during_rf_ends_as_it_must(imaging_plan: LesionPlan, record_dirs: Iterator[Path], kind: str,
                                                  duration_s: float | None, value: float | None,
                                                  first_trip: str | None) -> None:
    """At 10 s, mid-lesion. Imaging lost past the limit (2.5 s) and a hot face end the procedure with output off
    within two periods of the trip; a drop-out within the grace, a stall or a warm face do not stop the lesion."""
    outcome, device, record = _probe_run(imaging_plan, record_dirs, kind, 10.0, duration_s, value)
    assert outcome.passed, outcome.problems
    assert outcome.fault_met_rf
    if first_trip is None:
        assert outcome.first_trip is None and outcome.exit_code == 0 and outcome.final_state == "standby"
        assert outcome.verdict == "tolerated"
    else:
        assert outcome.first_trip is not None and outcome.first_trip.interlock == first_trip
        assert outcome.exit_code == 1 and outcome.verdict == "ok"
        assert outcome.stopped_after_ms is not None and outcome.stopped_after_ms <= campaign.STOP_WITHIN_S * 1e3
        assert device.final_mask == 0
    gaps = [b - a for a, b in device.frame_gaps() if a >= 9.9 and b <= 30.0]
    if kind == "frame_drops" and first_trip is None:  # the fault really cost the frames it says
        assert value is not None and max(gaps) == pytest.approx(value * 0.04, abs=0.06)
    if kind == "usb_stall":
        reader = RecordReader(record)
        try:
            assert [row.payload["error"] for row in reader.rows("probe_error")] == ["ProbeStalled"]
        finally:
            reader.close()
    if kind == "reports_fault":  # at the next status reading, frames still fresh: the grace is for a drop-out
        assert outcome.first_trip is not None
        assert 0.0 <= outcome.first_trip.at - 10.0 <= campaign.FACE_DETECT_WITHIN_S
        age = device.frame_age_at(outcome.first_trip.at)
        assert age is not None and age < 0.1
    elif first_trip == "imaging_lost":  # as the frames ran out of their 0.5 s age and the 2 s grace
        assert outcome.first_trip is not None and campaign.imaging_limit_s(imaging_plan, HARD_LIMITS) == 2.5
        assert device.frame_age_at(outcome.first_trip.at) == pytest.approx(2.5, abs=campaign.IMAGING_MARGIN_S)
        assert outcome.exposure_s == pytest.approx(2.5, abs=campaign.IMAGING_MARGIN_S), "RF without imaging"
    if first_trip == "probe_face_over_temperature":
        over_at = device.probe_face_over_at(hard.PROBE_FACE_TEMP_MAX_C)
        assert over_at is not None and outcome.first_trip is not None
        assert 0.0 <= outcome.first_trip.at - over_at <= campaign.FACE_DETECT_WITHIN_S


def test_a_host_that_trips_inside_the_imaging_grace_or_never_fails_the_campaign(
    imaging_plan: LesionPlan, record_dirs: Iterator[Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The campaign judges by the probe's frames, not by the host's word: without the grace, 1.6 s of dropped frames
    cuts the lesion short, and the run fails; with imaging_lost never tripping, a probe gone for good fails it."""
    real = interlocks.imaging_not_live
    monkeypatch.setattr(interlocks, "imaging_not_live",
                        lambda imaging, now, max_age_s, grace_s: real(imaging, now, max_age_s, 0.0))
    impatient, _, _ = _probe_run(imaging_plan, record_dirs, "frame_drops", 10.0, value=40.0)
    assert impatient.first_trip is not None and impatient.first_trip.interlock == "imaging_lost"
    assert any("imaging_lost tripped at" in p and "within the 2.5 s RF may go on without one" in p
               for p in impatient.problems), impatient.problems
    monkeypatch.setattr(interlocks, "imaging_not_live", lambda imaging, now, max_age_s, grace_s: None)
    blind, _, _ = _probe_run(imaging_plan, record_dirs, "disconnect", 10.0)
    assert blind.first_trip is None
    assert any(p.startswith("no frame from the probe for") and "imaging_lost had not tripped by 12.5" in p
               for p in blind.problems), blind.problems


def test_a_host_that_ignores_the_fault_the_probe_reports_fails_the_campaign(
    imaging_plan: LesionPlan, record_dirs: Iterator[Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The campaign judges by what the simulated probe said, not by the host's word: a host deaf to GET_STATUS's
    fault state lets the lesion run on under a probe that has said its images are not good, and the run fails."""
    real = interlocks.imaging_not_live
    monkeypatch.setattr(interlocks, "imaging_not_live", lambda imaging, now, max_age_s, grace_s: real(
        None if imaging is None else dataclasses.replace(imaging, probe_fault_bits=None), now, max_age_s, grace_s))
    deaf, _, _ = _probe_run(imaging_plan, record_dirs, "reports_fault", 10.0)
    assert deaf.first_trip is None
    assert any(p.startswith("the probe reported a fault from 10.0") and "imaging_lost had not tripped by 11.0" in p
               for p in deaf.problems), deaf.problems


@settings(max_examples=5, deadline=None)
@given(seed=st.integers(0, 2**32))
def test_any_probe_fault_drawn_during_rf_passes_with_output_off_within_the_limits(
    imaging_plan: LesionPlan, record_dirs: Iterator[Path], seed: int
) -> None:
    """Whatever probe fault the campaign draws inside the lesion (the short plan's RF: about 2.2 to 22.2 s), the run
    holds every property: output off at the end, within two periods of every trip, the interlock the fault calls
    for, and nothing tripped (the procedure complete) when imaging came back within its grace."""
    injection, = draw_injections(1, seed, [1], (0.6, 22.2), campaign.PROBE_KINDS, rf_window_s=(2.3, 22.2))
    outcome, device = cli._campaign_run(imaging_plan, HARD_LIMITS, injection, 1,
                                        argparse.Namespace(seed=seed % 1000, physical=False), next(record_dirs))
    assert outcome.passed, (injection, outcome.problems)
    assert device.final_mask == 0
    if outcome.first_trip is not None:
        assert outcome.first_trip.interlock == campaign.EXPECTED_TRIP[injection.kind]
        assert outcome.stopped_after_ms is not None and outcome.stopped_after_ms <= campaign.STOP_WITHIN_S * 1e3
    else:
        assert outcome.exit_code == 0


def test_a_campaign_of_a_plan_with_imaging_draws_probe_faults_and_one_without_does_not(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    with_imaging = write_plan(tmp_path, imaging=True)
    code = main(["campaign", "--plan", str(with_imaging), "--runs", "2", "--kinds", "usb_stall,frame_drops",
                 "--seed", "3", "--record", str(tmp_path / "records"), "--json"])
    runs = json.loads(capsys.readouterr().out)["runs"]
    assert code == 0, runs
    assert {r["injection"]["kind"] for r in runs[1:]} == {"usb_stall", "frame_drops"}
    without = write_plan(tmp_path)
    assert main(["campaign", "--plan", str(without), "--kinds", "impedance_short,disconnect"]) == 2
    assert "rfa campaign: probe fault kind(s) ['disconnect'] need a plan that requires imaging (a simulated " \
           "probe); plan 'short' does not" in capsys.readouterr().err
    code = main(["campaign", "--plan", str(without), "--runs", "1", "--seed", "1", "--record", str(tmp_path)])
    captured = capsys.readouterr()
    assert "No probe faults: the plan does not require imaging" in captured.err
    with pytest.raises(SystemExit):
        main(["campaign", "--help"])
    assert "usb_stall, disconnect, frame_drops, overheating, reports_fault, only for a plan that requires imaging" in \
        " ".join(capsys.readouterr().out.split())


def test_a_weak_stimulator_may_be_drawn_on_a_bipolar_partner_that_stimulated(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Every electrode is nerve-tested, a bipolar pair's partner too (on its own channel): the campaign draws a weak
    stimulator on any channel that stimulated in the fault-free run, so the partner's stimulation_mismatch is
    exercised as the lead's is. It once offered the lead channels alone."""
    plan = load_plan(Path(__file__).resolve().parents[2] / "docs" / "examples" / "bipolar-pulsed.toml")
    device = DeviceTrace()
    for t, mask, rf in ((1.0, 0b0001, 0), (2.0, 0, 0), (3.0, 0b0010, 0), (4.0, 0, 0), (5.0, 0b0100, 0),
                        (6.0, 0, 0), (10.0, 0b0111, 0b0111), (70.0, 0, 0)):
        device.sample(t, mask, rf_mask=rf)
    baseline = campaign.RunOutcome(0, None, 0, "standby", None, None, False, 1)
    monkeypatch.setattr(cli, "_campaign_run", lambda *args, **kwargs: (baseline, device))
    seen: dict[int, tuple[float, float]] = {}

    def draw(runs: int, seed: int, channels: Any, window_s: Any, kinds: Any, stim_windows_s: Any = None,
             rf_window_s: Any = None) -> list[Injection]:
        seen.update(stim_windows_s or {})
        return []

    monkeypatch.setattr(campaign, "draw_injections", draw)
    main(["campaign", "--plan", str(Path(__file__).resolve().parents[2] / "docs" / "examples" /
                                     "bipolar-pulsed.toml"), "--runs", "1", "--record", str(tmp_path), "--json"])
    assert plan.lesions[0].channels == (1, 2)
    assert seen == {1: (1.0, 2.0), 2: (3.0, 4.0), 3: (5.0, 6.0)}
