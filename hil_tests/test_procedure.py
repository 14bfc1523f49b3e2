"""A whole procedure, in real time, as the HIL engineer runs it: ``rfa run --generator URL --yes``.

Against ``--target sim`` the generator is ``python -m sim`` in its own process (pty and TCP); against
``--target hw`` it is the real generator, which must carry a 20 G, 10 mm electrode on channel 1.
The plan is short (a 60 °C lesion of 15 s) so the real-time run takes about half a minute.
"""

from __future__ import annotations

import json
import queue
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from control.record import RecordReader
from hil_tests.sim_process import start_sim
from hil_tests.stall_witness import BrokenPeriod, run_until_unspoiled
from safety import limits as hard

pytestmark = pytest.mark.realtime  # every test here keeps real time: run alone on the machine (Makefile)

PLAN = """
name = "hil-short"
imaging_required = false

[stimulation]
max_amplitude_mv = 100

[[lesions]]
channel = 1
set_temp_c = 60.0
ramp_rate_c_per_s = 2.0
lesion_time_s = 15.0
power_cap_w = 20.0
impedance_min_ohm = 60.0
impedance_max_ohm = 800.0
[lesions.electrode]
gauge = 20
active_tip_mm = 10.0
"""


PERIOD_LIMIT_MS = 20.0
"""Two loop periods: the watchdog's limit, and what a real-time run's longest period must stay within."""
Outcome = tuple[subprocess.CompletedProcess[str], dict[str, Any]]


def rfa_run(command: list[str]) -> Outcome:
    """``rfa run ... --json``: the process and its result event."""
    run = subprocess.run([sys.executable, "-m", "control.cli", *command], capture_output=True, text=True,
                         timeout=180)
    events = [json.loads(line) for line in run.stdout.splitlines()]
    return run, events[-1] if events else {"message": run.stderr[-2000:]}


def broke_period(outcome: Outcome) -> BrokenPeriod | None:
    """How a run broke its real-time period, else None: its longest period and when that period ended (the
    loop's own clock, ``time.monotonic``: the witness's). A run that ended before its result (a crash) is judged
    without a witness: None."""
    result = outcome[1]
    loop = result.get("loop") or {}
    longest_ms = loop.get("longest_period_ms", 0.0)
    # The watchdog's overrun is kick to kick, not quite the loop's period, and a procedure that goes on after it
    # (a channel's trip, an alarm being read) ends with another message: its first trip tells.
    overrun = any("control_loop_overrun" in str(result.get(key)) for key in ("message", "first_trip"))
    if not (longest_ms > PERIOD_LIMIT_MS or overrun):
        return None
    return BrokenPeriod(max(longest_ms, PERIOD_LIMIT_MS) / 1e3, loop.get("longest_period_ended_at"))


def test_a_run_whose_first_trip_was_the_watchdogs_overrun_broke_its_period() -> None:
    """The procedure went on after the overrun (the alarm was read), so its last message names something else."""
    done = subprocess.CompletedProcess(["rfa"], 1, "", "")
    result = {"message": "uncommanded_output: channel 1 delivers 9 W", "loop": {"longest_period_ms": 19.8},
              "first_trip": "control_loop_overrun: watchdog: no loop kick for 20.4 ms (limit 20 ms)"}
    assert broke_period((done, result)) == BrokenPeriod(PERIOD_LIMIT_MS / 1e3, None)
    assert broke_period((done, {**result, "first_trip": "uncommanded_output: channel 1 delivers 9 W"})) is None


def ended_as_a_stall_must(outcome: Outcome) -> None:
    """What a run whose loop the machine stopped must show: its record intact and closed, and either the overrun
    tripped (a hard limit, idle or not) and the procedure ended in fault with exit 1, or, the watchdog's thread
    stopped with the loop (a whole-machine stall), no overrun was seen and the procedure ended as an undisturbed
    one: the loop resumed and kicked before the watchdog next looked (seen on the development VM: a 24.6 ms period
    in a 32 ms stall, exit 0). The generator's own 250 ms heartbeat watchdog is the backstop for a stall that
    long; what must never happen is an overrun that tripped without ending the procedure in fault."""
    run, result = outcome
    reader = RecordReader(Path(result["record_path"]))
    assert reader.verify().ok
    trips = [row.payload["interlock"] for row in reader.rows("alarm") if row.payload["event"] == "trip"]
    if "control_loop_overrun" in trips or run.returncode != 0:
        assert run.returncode == 1 and result.get("final_state") == "fault", (result.get("message"),
                                                                              run.stderr[-2000:])
        assert "control_loop_overrun" in trips, trips
    else:
        assert trips == [] and result.get("final_state") == "standby", (trips, result.get("message"))


def test_a_short_procedure_completes_in_real_time(request: pytest.FixtureRequest, link: str,
                                                 tmp_path: Path) -> None:
    """A run the machine's own stall spoiled (hil_tests/stall_witness.py) is run again against a fresh
    simulator process, whose tissue has not been heated by it; on hardware it is not run again."""
    plan = tmp_path / "plan.toml"
    plan.write_text(PLAN)

    def attempt(url: str) -> Outcome:
        return rfa_run(["run", "--generator", url, "--probe", "none", "--plan", str(plan), "--yes", "--json",
                        "--record", str(tmp_path)])

    def against_a_fresh_simulator() -> Outcome:
        sim = start_sim(link)
        try:
            return attempt(sim.url)
        finally:
            sim.stop()

    if request.config.getoption("--target") == "hw":
        run, result = attempt(link)
    else:
        outcome = run_until_unspoiled(against_a_fresh_simulator, broke_period, ended_as_a_stall_must)
        if outcome is None:
            return  # every run stalled: judged as a stall (hil_tests/stall_witness.py)
        run, result = outcome
    assert run.returncode == 0, (result.get("message"), result.get("first_trip"), run.stderr[-2000:])
    (summary,) = result["summaries"]
    assert summary["tripped"] == ""
    assert summary["overshoot_c"] <= 2.0
    assert summary["hold_rms_error_c"] is not None and summary["hold_rms_error_c"] <= 1.0
    assert result["link"]["crc_errors"] == 0
    assert result["realtime"] and 0 < result["loop"]["longest_period_ms"] <= PERIOD_LIMIT_MS, result["loop"]
    reader = RecordReader(Path(result["record_path"]))
    assert reader.verify().ok
    # Real time at 100 Hz: the record holds about 100 telemetry frames (x 4 channels) per second of run.
    rows = list(reader.rows("telemetry"))
    span_s = rows[-1].mono - rows[0].mono
    assert len(rows) / 4 >= 0.95 * 100 * span_s


@pytest.mark.sim_only(reason="it runs `rfa run --realtime` on the in-process simulator: no generator of the target")
def test_a_guided_procedure_in_real_time_images_on_its_own_thread(tmp_path: Path) -> None:
    """In-process simulators in real time, imaging required: the probe is polled and its frames turned into
    B-mode on the guidance thread (control.guidance_thread), and the 10 ms loop still keeps its period."""
    plan = tmp_path / "plan.toml"
    plan.write_text(PLAN.replace("imaging_required = false", "imaging_required = true"))
    outcome = run_until_unspoiled(
        lambda: rfa_run(["run", "--realtime", "--plan", str(plan), "--yes", "--json", "--record", str(tmp_path)]),
        broke_period, ended_as_a_stall_must,
    )
    if outcome is None:
        return  # every run stalled: judged as a stall (hil_tests/stall_witness.py)
    run, result = outcome
    assert run.returncode == 0, (result.get("message"), result.get("first_trip"), run.stderr[-2000:])
    reader = RecordReader(Path(result["record_path"]))
    assert reader.verify().ok
    assert reader.count("guidance_error") == 0
    # An inhibit before the thread's first frame is expected (RF is refused until imaging is live); a trip is not.
    assert [row.payload for row in reader.rows("alarm") if row.payload["event"] == "trip"] == []
    frames = [row.payload for row in reader.rows("frame")]
    rf_frames = [f for f in frames if f["reason"] == "rf"]
    assert len(rf_frames) >= 15  # one a second during the 15 s lesion (and its ramp)
    assert all(f["tip_confidence"] >= 0.5 for f in rf_frames)


@pytest.mark.needs_probe
def test_a_guided_procedure_images_through_the_targets_probe(request: pytest.FixtureRequest,
                                                            tmp_path: Path) -> None:
    """Imaging required, in real time, the probe reached as on the cart. Against the simulator: generator and probe
    both in its own process (`rfa sim --probe tcp:0`), the probe through the pyusb backend that forwards to it
    (sim.probe.remote), a spoiled run tried again on a fresh process. Against hardware: ``--generator`` and
    ``--probe`` (a 20 G, 10 mm electrode on channel 1 in the probe's view, as the short procedure's), once."""
    plan = tmp_path / "plan.toml"
    plan.write_text(PLAN.replace("imaging_required = false", "imaging_required = true"))

    def attempt(generator_url: str, probe: str) -> Outcome:
        return rfa_run(["run", "--generator", generator_url, "--probe", probe, "--plan", str(plan), "--yes",
                        "--json", "--record", str(tmp_path)])

    def against_a_fresh_simulator() -> Outcome:
        sim = start_sim("tcp:0", probe=True)
        try:
            assert sim.probe_url is not None and sim.probe_url.startswith("tcp:127.0.0.1:")
            return attempt(sim.url, sim.probe_url)
        finally:
            sim.stop()

    config = request.config
    if config.getoption("--target") == "hw":
        run, result = attempt(config.getoption("--generator"), config.getoption("--probe"))
    else:
        outcome = run_until_unspoiled(against_a_fresh_simulator, broke_period, ended_as_a_stall_must)
        if outcome is None:
            return  # every run stalled: judged as a stall (hil_tests/stall_witness.py)
        run, result = outcome
    assert run.returncode == 0, (result.get("message"), result.get("first_trip"), run.stderr[-2000:])
    reader = RecordReader(Path(result["record_path"]))
    assert reader.verify().ok and reader.count("guidance_error") == 0
    assert [row.payload for row in reader.rows("alarm") if row.payload["event"] == "trip"] == []
    rf_frames = [row.payload for row in reader.rows("frame") if row.payload["reason"] == "rf"]
    assert len(rf_frames) >= 15 and all(f["tip_confidence"] >= 0.5 for f in rf_frames)


STUCK = """
[[fault]]
kind = "output_stuck"   # channel 1's output stage ignores OUTPUT_OFF from the start
at_s = 0.0
channel = 1
"""
ANSWERS = {"response": "n", "confirm": "y"}


def answered_run(url: str, plan: Path, record_dir: Path) -> tuple[Outcome, list[dict[str, Any]]]:
    """``rfa run --generator URL --json`` without ``--yes``, answered on stdin like a HIL script: no response to
    any stimulus, arming confirmed, and an alarm declined only once the generator's output is off again (or after
    10 s): the procedure waits in fault meanwhile, its loop and the heartbeat decisions going on."""
    command = [sys.executable, "-m", "control.cli", "run", "--generator", url, "--probe", "none", "--plan",
               str(plan), "--json", "--record", str(record_dir)]
    proc = subprocess.Popen(command, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True)
    assert proc.stdin is not None and proc.stdout is not None
    lines: queue.SimpleQueue[str] = queue.SimpleQueue()
    def read_lines() -> None:
        for line in proc.stdout or ():
            lines.put(line)

    reader = threading.Thread(target=read_lines, daemon=True)
    reader.start()
    events: list[dict[str, Any]] = []
    acknowledge_asked_at: float | None = None
    deadline = time.monotonic() + 120.0
    while time.monotonic() < deadline and (reader.is_alive() or not lines.empty()):
        if acknowledge_asked_at is not None and (time.monotonic() > acknowledge_asked_at + 10.0 or any(
                e["event"] == "warning" and "heartbeat resumed" in e["text"] for e in events)):
            proc.stdin.write("n\n")
            proc.stdin.flush()
            acknowledge_asked_at = None
        try:
            line = lines.get(timeout=0.1)
        except queue.Empty:
            continue
        events.append(json.loads(line))  # with --json, stdout is events only (the prompts go to stderr)
        event = events[-1]
        if event["event"] == "question" and event["kind"] in ANSWERS:
            proc.stdin.write(ANSWERS[event["kind"]] + "\n")
            proc.stdin.flush()
        elif event["event"] == "question":
            acknowledge_asked_at = time.monotonic()
    proc.stdin.close()
    stderr = proc.stderr.read() if proc.stderr is not None else ""
    proc.wait(timeout=30)
    run = subprocess.CompletedProcess(command, proc.returncode, "", stderr)
    result = next((e for e in reversed(events) if e["event"] == "result"), {"message": stderr[-2000:]})
    return (run, result), events


@pytest.mark.sim_only(reason="it scripts a stuck output stage into a simulator process of its own")
def test_a_generator_that_ignores_output_off_is_stopped_by_its_own_watchdog_while_the_alarm_is_read(
    tmp_path: Path,
) -> None:
    """The simulator process's channel 1 acknowledges every OUTPUT_OFF and ignores it. At the end of the lesion
    the cart trips on the output it did not command and withholds its heartbeat; the generator's own watchdog
    turns output off while the operator is still reading the alarm (docs/safety.md)."""
    plan, faults = tmp_path / "plan.toml", tmp_path / "stuck.toml"
    plan.write_text(PLAN)
    faults.write_text(STUCK)

    def attempt() -> tuple[Outcome, list[dict[str, Any]]]:
        sim = start_sim("tcp:0", faults)
        try:
            return answered_run(sim.url, plan, tmp_path)
        finally:
            sim.stop()

    answered = run_until_unspoiled(attempt, lambda outcome: broke_period(outcome[0]),
                                   lambda outcome: ended_as_a_stall_must(outcome[0]))
    if answered is None:
        return  # every run stalled: judged as a stall (hil_tests/stall_witness.py)
    (run, result), events = answered
    assert run.returncode == 1 and result.get("event") == "result", (result.get("message"), run.stderr[-2000:])
    assert result["first_trip"].startswith("uncommanded_output: channel 1 delivers"), result["first_trip"]
    said = [(e["event"], e.get("detail") or e["text"]) for e in events if e["event"] in ("alarm", "warning")]
    whats = [what for _, what in said]
    assert "heartbeat_withheld" in whats and any("heartbeat resumed" in what for what in whats), said
    withheld = whats.index("heartbeat_withheld")
    resumed = next(i for i, what in enumerate(whats) if "heartbeat resumed" in what)
    assert said[withheld - 1][1].startswith("uncommanded_output"), "the trip's alarm first, then what is done"
    assert withheld < resumed and not any(what == "output_unstoppable" for _, what in said)
    asked = next(i for i, e in enumerate(events) if e["event"] == "question" and e["kind"] == "acknowledge")
    after = [e["text"] for e in events[asked:] if e["event"] == "warning"]
    assert any("heartbeat resumed" in text for text in after), "output went off while the alarm was being read"
    reader = RecordReader(Path(result["record_path"]))
    assert reader.verify().ok
    trip_at = next(r.mono for r in reader.rows("alarm") if r.payload["event"] == "trip")
    ch1_on = [r.mono for r in reader.rows("telemetry") if r.payload["ch"] == 1 and r.payload["flags"] & 1]
    assert max(ch1_on) - trip_at <= hard.WITHHELD_HEARTBEAT_LIMIT_S
    assert [r.payload["event"] for r in reader.rows("safety")].count("heartbeat_resumed") == 1


DEAF_AT_S = 12.0
DEAF = f"""
[[fault]]
kind = "commands_ignored"   # the generator's command handling hangs mid-lesion: nothing the host sends is taken
at_s = {DEAF_AT_S}
"""


@pytest.mark.sim_only(reason="it scripts a hung command handler into a simulator process of its own")
def test_a_generator_that_stops_taking_commands_mid_lesion_is_a_lost_link_in_real_time(tmp_path: Path) -> None:
    """The simulator process stops taking commands 12 s after it started, during the lesion; telemetry goes on.
    Across the process boundary, in real time, the cart trips ``link_lost`` once its commands have gone
    unanswered for 150 ms, and the generator's own watchdog, starved of heartbeats, has output off soon after."""
    plan, faults = tmp_path / "plan.toml", tmp_path / "deaf.toml"
    plan.write_text(PLAN)
    faults.write_text(DEAF)

    def attempt() -> Outcome:
        sim = start_sim("tcp:0", faults)
        try:
            return rfa_run(["run", "--generator", sim.url, "--probe", "none", "--plan", str(plan), "--yes", "--json",
                            "--record", str(tmp_path)])
        finally:
            sim.stop()

    outcome = run_until_unspoiled(attempt, broke_period, ended_as_a_stall_must)
    if outcome is None:
        return  # every run stalled: judged as a stall (hil_tests/stall_witness.py)
    run, result = outcome
    assert run.returncode == 1 and result.get("event") == "result", (result.get("message"), run.stderr[-2000:])
    assert result["first_trip"].startswith("link_lost: no ACK for"), result["first_trip"]
    assert "not taking commands" in result["first_trip"]
    reader = RecordReader(Path(result["record_path"]))
    assert reader.verify().ok
    trip = next(r for r in reader.rows("alarm") if r.payload["event"] == "trip")
    ch1 = [r for r in reader.rows("telemetry") if r.payload["ch"] == 1]
    before = [r for r in ch1 if r.mono <= trip.mono]
    # Tripped on the fault, not before it: the last frame read before the trip is from after the answers were due.
    assert DEAF_AT_S + hard.COMMAND_ANSWER_S - 0.03 <= before[-1].payload["gen_us"] / 1e6 <= DEAF_AT_S + 0.5
    assert before[-1].payload["flags"] & 1, "the fault met output: the lesion was running"
    still_on = [r.mono for r in ch1 if r.mono > trip.mono and r.payload["flags"] & 1]
    assert not still_on or max(still_on) - trip.mono <= hard.GENERATOR_HEARTBEAT_TIMEOUT_S
