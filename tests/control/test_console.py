"""``rfa console``: a procedure followed from its record, finished or still being written."""

from __future__ import annotations

import io
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from control.cli import main
from control.console import Follower, follow
from control.record import ProcedureRecord, RecordRow
from firmware_bridge.clock import SimClock
from tests.control.test_cli_run import write_plan

CONNECTED, ON, THERMOCOUPLE_OPEN = 0x08, 0x09, 0x02


def test_a_finished_procedure_is_told_from_its_record_with_its_exit_code(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    plan = write_plan(tmp_path)
    assert main(["run", "--yes", "--plan", str(plan), "--probe", "none", "--record", str(tmp_path)]) == 0
    ran = capsys.readouterr().out
    assert main(["console", "--dir", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "plan 'short'" in out
    assert "state armed → ramping" in out and "state cooldown → standby" in out
    assert "asked: ch1 sensory at 0.10 V (delivered 0.10 V)" in out
    table = ran[ran.index("ch set °C"):ran.index("\n\nProcedure complete")]
    assert table in out, "the second screen ends with the lesions' table rfa run printed"
    assert out.rstrip().endswith(table + "\n\nProcedure ended in standby (exit 0)")


def test_a_faulted_procedure_shows_its_trip_and_row_and_exits_1(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    plan = write_plan(tmp_path, {"max_amplitude_mv = 100": "max_amplitude_mv = 1000"})
    faults = tmp_path / "faults.toml"
    faults.write_text('[[fault]]\nkind = "stim_weak"\nat_s = 0.0\nchannel = 1\n')
    assert main(["run", "--yes", "--plan", str(plan), "--probe", "none", "--faults", str(faults),
                 "--record", str(tmp_path)]) == 1
    capsys.readouterr()
    assert main(["console", "--dir", str(tmp_path)]) == 1
    out = capsys.readouterr().out
    assert "ALARM (medium) stimulation_mismatch ch1: stimulation measured 0.05 V" in out
    assert "(record row " in out and "Procedure ended in fault (exit 1)" in out


def test_a_record_still_being_written_is_followed_until_its_summary(tmp_path: Path) -> None:
    """Each wait of the console lets the writer add more: what it prints comes from rows it found later."""
    clock = SimClock(0.0)
    record = ProcedureRecord(tmp_path / "live.rfa.db", clock, meta={"plan_name": "live"})
    batches: list[list[tuple[str, dict[str, Any]]]] = [
        [("state", {"source": "off", "dest": "self_test"})],
        [("telemetry", {"ch": 1, "flags": ON, "tip_c": 61.5, "z_ohm": 180.0, "w": 7.5, "v": 36.7}),
         ("telemetry", {"ch": 4, "flags": 0, "tip_c": 0.0, "z_ohm": 6553.5, "w": 0.0, "v": 0.0})],
        [("alarm", {"event": "trip", "interlock": "over_temperature", "channel": 1, "priority": "high",
                    "detail": "channel 1: tip 86.00 °C above 85.00 °C"}),
         ("state", {"source": "lesioning", "dest": "fault"})],
        [("summary", {"exit_code": 1, "final_state": "fault", "first_trip": "over_temperature ch1"})],
    ]
    waits: list[float] = []

    def write_next(seconds: float) -> None:
        waits.append(seconds)
        clock.advance(seconds)
        for kind, payload in batches.pop(0):
            record.append(kind, payload)
        record.flush()

    write_next(0.0)
    out = io.StringIO()
    try:
        assert follow(record.path, out, interval_s=0.25, sleep=write_next) == 1
    finally:
        record.close()
    text = out.getvalue()
    assert waits == [0.0, 0.25, 0.25, 0.25] and not batches
    assert "state off → self_test" in text
    assert "ch1  61.5°C  180Ω  7.5W 36.70V" in text and "ch4" not in text, "only channels with an electrode"
    assert "ALARM (high) over_temperature ch1: tip 86.00 °C above 85.00 °C (record row 4)" in text
    assert text.rstrip().endswith("Procedure ended in fault (exit 1): over_temperature ch1")


def test_an_open_thermocouple_shows_no_temperature_on_the_status_line() -> None:
    """Full scale (327.67 °C) flagged open is no reading: ``--.-`` as on ``rfa run``'s live line, not 327.7 °C."""
    follower = Follower()
    for ch, flags, tip_c in ((1, CONNECTED, 57.0), (2, CONNECTED | THERMOCOUPLE_OPEN, 327.67)):
        follower.feed(RecordRow(ch, 158.4, 0.0, "telemetry",
                                {"ch": ch, "flags": flags, "tip_c": tip_c, "z_ohm": 174.0, "w": 0.0, "v": 0.0}))
    line = follower.status_line()
    assert "ch1  57.0°C  174Ω  0.0W  0.00V | ch2  --.-°C  174Ω  0.0W  0.00V" in line and "327" not in line


def test_once_reports_a_running_procedure_and_returns(tmp_path: Path) -> None:
    record = ProcedureRecord(tmp_path / "running.rfa.db", SimClock(0.0))
    record.append("state", {"source": "off", "dest": "self_test"})
    record.flush()
    out = io.StringIO()
    try:
        assert follow(record.path, out, once=True, sleep=lambda s: pytest.fail("--once must not wait")) == 0
    finally:
        record.close()
    assert "still running" in out.getvalue()


def test_a_record_that_stops_growing_without_a_summary_is_said_once(tmp_path: Path) -> None:
    record = ProcedureRecord(tmp_path / "interrupted.rfa.db", SimClock(0.0))
    record.append("state", {"source": "off", "dest": "self_test"})
    record.flush()
    polls: list[float] = []

    def wait(seconds: float) -> None:
        polls.append(seconds)
        if len(polls) == 12:  # 6 s of silence, then the writer comes back with the end
            record.append("summary", {"exit_code": 1, "final_state": "fault", "message": "ended late"})
            record.flush()

    out = io.StringIO()
    try:
        assert follow(record.path, out, interval_s=0.5, sleep=wait) == 1
    finally:
        record.close()
    assert out.getvalue().count("no new rows for 2 s") == 1


def test_a_reader_that_goes_away_ends_the_console_quietly(tmp_path: Path) -> None:
    """`rfa console | head -1`: the console's next write finds the pipe closed; exit 0, no traceback."""
    record = ProcedureRecord(tmp_path / "running.rfa.db", SimClock(0.0))
    record.append("state", {"source": "off", "dest": "self_test"})
    record.flush()
    console = subprocess.Popen([sys.executable, "-m", "control.cli", "console", str(record.path), "--interval",
                                "0.5"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert console.stdout is not None and console.stdout.readline().startswith("Following")
        console.stdout.close()  # then the silence notice, 2 s on, is written to no one
        assert console.wait(timeout=30) == 0
        assert console.stderr is not None and "Traceback" not in console.stderr.read()
    finally:
        console.kill()
        record.close()


def test_no_record_is_a_usage_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["console", "--dir", str(tmp_path)]) == 2
    assert "no records in" in capsys.readouterr().err


@pytest.mark.parametrize("lesion", [
    {"channel": 1},  # fields missing
    {"channel": 1, "set_temp_c": "eighty", "time_to_set_s": None, "overshoot_c": 0.2, "hold_mean_c": None,
     "hold_max_c": None, "hold_rms_error_c": None, "impedance_start_ohm": None, "impedance_end_ohm": None,
     "energy_j": 600.0, "tripped": ""},  # a field of the wrong type
])
def test_a_summary_row_with_a_malformed_lesion_still_tells_how_the_procedure_ended(lesion: dict[str, Any]) -> None:
    follower = Follower(summary={"exit_code": 0, "final_state": "standby", "summaries": [lesion]})
    assert follower.outcome() == (0, "Procedure ended in standby (exit 0)")
