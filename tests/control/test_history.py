"""``rfa history``: each procedure's outcome and lesions, read back from its record."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import pytest

from control.cli import main
from control.history import LesionLine
from control.record import ProcedureRecord
from firmware_bridge.clock import SimClock
from tests.control.test_cli_run import write_plan


def _history(capsys: pytest.CaptureFixture[str], *args: str) -> list[dict[str, object]]:
    assert main(["history", *args, "--json"]) == 0
    entries: list[dict[str, object]] = json.loads(capsys.readouterr().out)
    return entries


def test_a_completed_and_a_faulted_procedure_read_back_with_their_lesions(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    plan = write_plan(tmp_path)
    records = tmp_path / "records"
    assert main(["run", "--yes", "--probe", "none", "--plan", str(plan), "--record", str(records)]) == 0
    faults = tmp_path / "faults.toml"
    faults.write_text('[[fault]]\nkind = "impedance_short"\nat_s = 8.0\nchannel = 1\n')
    assert main(["run", "--yes", "--probe", "none", "--plan", str(plan), "--faults", str(faults),
                 "--record", str(records)]) == 1
    capsys.readouterr()
    by_outcome = {entry["outcome"]: entry for entry in _history(capsys, "--dir", str(records), "--verify")}
    complete, faulted = by_outcome["complete"], by_outcome["fault"]
    assert complete["outcome"] == "complete" and complete["plan"] == "short" and complete["intact"] is True
    lesions = complete["lesions"]
    assert isinstance(lesions, list) and len(lesions) == 1
    lesion = lesions[0]
    assert lesion["channel"] == 1 and lesion["set_temp_c"] == 60.0
    assert lesion["rf_time_s"] == pytest.approx(20.0, abs=0.1) and lesion["energy_j"] > 0
    assert faulted["outcome"] == "fault" and "impedance_low" in str(faulted["reason"])
    assert faulted["alarms"] == 1
    assert main(["history", "--dir", str(records), "--last", "1"]) == 0
    text = capsys.readouterr().out
    assert text.count(".rfa.db") == 1 and "°C" in text


def _unfinished(path: Path, source: str, dest: str) -> None:
    """A record whose procedure got as far as one state change and never wrote its summary."""
    record = ProcedureRecord(path, SimClock(), meta={"plan_name": "p", "started": "2026-01-01"})
    record.append_durable("state", {"source": source, "dest": dest})
    record.close()


def test_a_record_without_a_summary_is_an_interrupted_procedure(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    _unfinished(tmp_path / "died.rfa.db", "standby", "ramping")
    [entry] = _history(capsys, "--dir", str(tmp_path))
    assert entry["outcome"] == "interrupted" and entry["final_state"] == "ramping" and entry["lesions"] == []
    assert main(["history", "--dir", str(tmp_path)]) == 0
    assert "interrupted (last state ramping)" in capsys.readouterr().out


def test_a_tampered_record_is_flagged_and_a_stray_file_skipped(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    _unfinished(tmp_path / "a.rfa.db", "off", "self_test")
    db = sqlite3.connect(tmp_path / "a.rfa.db")
    db.execute("UPDATE events SET payload = ? WHERE id = 1", ('{"dest":"standby"}',))
    db.commit()
    db.close()
    (tmp_path / "b.rfa.db").write_text("not a database")
    malformed = ProcedureRecord(tmp_path / "c.rfa.db", SimClock(), meta={"plan_name": "p", "started": "2026-01-02"})
    malformed.append_durable("summary", {"exit_code": 0, "final_state": "standby", "summaries": [{"energy_j": 1}]})
    malformed.close()
    assert main(["history", "--dir", str(tmp_path), "--verify"]) == 1  # as `rfa record verify` does
    captured = capsys.readouterr()
    assert "RECORD BROKEN" in captured.out
    assert "skipped" in captured.err and "b.rfa.db" in captured.err
    assert "c.rfa.db" in captured.err and "malformed lesion" in captured.err
    assert main(["history", "--dir", str(tmp_path)]) == 0  # without --verify nothing is judged


def test_a_record_cut_short_is_not_called_broken_and_a_short_lesion_not_stopped(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A record whose end row is missing (a crash) is intact but not closed, which is not tampering; and a
    procedure whose lesion ran its time below its set temperature "fell short": nobody stopped it."""
    record = ProcedureRecord(tmp_path / "a.rfa.db", SimClock(), meta={"plan_name": "p", "started": "2026-01-01"})
    record.append_durable("summary", {"exit_code": 1, "final_state": "standby", "summaries": [
        {"channel": 1, "set_temp_c": 80.0, "rf_time_s": 90.0, "energy_j": 900.0, "tripped": "",
         "shortfall": "set temperature not reached: peak 71.0 °C of 80 °C"}]})
    record.close()
    db = sqlite3.connect(tmp_path / "a.rfa.db")
    db.execute("DELETE FROM events WHERE kind = 'end'")
    db.commit()
    db.close()
    assert main(["history", "--dir", str(tmp_path), "--verify"]) == 1  # as `rfa record verify` does
    out = capsys.readouterr().out
    assert "fell short" in out and "set temperature not reached: peak 71.0 °C" in out
    assert "record intact but not closed" in out and "BROKEN" not in out


@pytest.mark.parametrize("command", [["history"], ["record", "list"], ["console", "--once"]])
def test_a_record_directory_that_is_not_there_is_refused_not_reported_empty(
    command: list[str], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A mistyped --dir (or an unmounted stick) must not read as "no procedures were ever recorded"."""
    for wrong, why in ((tmp_path / "typo", "not found"), (write_plan(tmp_path), "not a directory")):
        assert main([*command, "--dir", str(wrong)]) == 2
        assert f"no record directory {wrong} ({why})" in capsys.readouterr().err
    if command[0] != "console":  # an empty directory is an empty history; the console has nothing to follow
        assert main([*command, "--dir", str(tmp_path)]) == 0
        assert "no " in capsys.readouterr().out


@pytest.mark.parametrize(("width_mm", "note", "said"), [
    (8.06, "", "lesion ≈ 8.1×14.0 mm"),
    (0.0, "", "no lesion"),
    (None, "lesion size not estimated: IndexError: 7", "lesion size not estimated"),
])
def test_a_lesions_size_reads_as_the_summary_table_shows_it(width_mm: float | None, note: str, said: str) -> None:
    """History and the end-of-procedure table say the same: a size, no lesion ("none"), or no estimate ("?")."""
    length_mm = None if width_mm is None else 14.04 if width_mm else 0.0
    line = LesionLine(2, 80.0, 90.0, 616.0, "", width_mm, length_mm, size_note=note).describe()
    assert line == f"ch2 80 °C, 90 s RF, 616 J, {said}"


def test_a_bipolar_lesion_reads_as_its_pair(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Its summary carries the partner electrode: history said "ch1 80 °C", as if one electrode had made it."""
    record = ProcedureRecord(tmp_path / "pair.rfa.db", SimClock(), meta={"plan_name": "p", "started": "2026-01-01"})
    lesion = {"channel": 1, "set_temp_c": 80.0, "rf_time_s": 60.0, "energy_j": 1826.0, "tripped": "",
              "predicted_width_mm": 7.0, "predicted_length_mm": 13.6, "partner": {"channel": 2}}
    record.append_durable("summary", {"exit_code": 0, "summaries": [lesion, {**lesion, "channel": 3, "partner": None}]})
    record.close()
    assert main(["history", "--dir", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "ch1+2 bipolar 80 °C, 60 s RF, 1,826 J, lesion ≈ 7.0×13.6 mm" in out and "ch3 80 °C" in out, out
    [entry] = _history(capsys, "--dir", str(tmp_path))
    lines = entry["lesions"]
    assert isinstance(lines, list) and [line["partner_channel"] for line in lines] == [2, None]
