"""A record that was cut short, tampered with or damaged: ``verify`` says so at the right row, the readers
name the damage instead of failing with a traceback, and the writer never loses rows in silence."""

from __future__ import annotations

import contextlib
import datetime
import io
import json
import math
import signal
import sqlite3
import threading
import time
from pathlib import Path
from types import SimpleNamespace
from typing import cast

import numpy as np
import pytest

from control.cli import _stop_on_termination, main
from control.record import (
    NOT_RECORDED,
    ProcedureRecord,
    RecordDamaged,
    RecordError,
    RecordReader,
    genesis_hash,
    row_hash,
)
from control.session import ProcedureSession
from firmware_bridge.clock import RealClock, SimClock


def _record(path: Path, n: int = 4, meta: dict[str, str] | None = None) -> Path:
    clock = SimClock()
    record = ProcedureRecord(path, clock, meta=meta)
    for i in range(n):
        clock.advance(0.01)
        record.append("state" if i % 2 else "telemetry", {"i": i})
    record.close()
    return path


def _sql(path: Path, *statements: tuple[str, tuple[object, ...]]) -> None:
    db = sqlite3.connect(path)
    for sql, args in statements:
        db.execute(sql, args)
    db.commit()
    db.close()


def test_rows_cut_from_the_end_leave_a_record_intact_but_not_closed(tmp_path: Path) -> None:
    path = _record(tmp_path / "p.rfa.db")
    _sql(path, ("DELETE FROM events WHERE id >= 4", ()))  # the last state row and the end row
    verdict = RecordReader(path).verify()
    assert verdict.intact and not verdict.closed and not verdict.ok
    assert "not closed" in verdict.reason and verdict.rows == 3


def test_an_emptied_record_is_not_a_verified_one(tmp_path: Path) -> None:
    path = _record(tmp_path / "p.rfa.db")
    _sql(path, ("DELETE FROM events", ()))
    assert not RecordReader(path).verify().ok


def test_the_meta_is_covered_by_the_chain(tmp_path: Path) -> None:
    path = _record(tmp_path / "p.rfa.db", meta={"plan_name": "genicular-3", "started": "2026-11-23T09:00:00"})
    assert RecordReader(path).verify().ok
    _sql(path, ("UPDATE meta SET value = ? WHERE key = 'started'", ("2026-11-22T09:00:00",)))
    verdict = RecordReader(path).verify()
    assert (verdict.intact, verdict.first_broken_id) == (False, 1) and "meta was changed" in verdict.reason


def test_a_row_forged_after_the_end_row_is_named_even_with_a_correct_link(tmp_path: Path) -> None:
    path = _record(tmp_path / "p.rfa.db")
    db = sqlite3.connect(path)
    last_id, last_hash = db.execute("SELECT id, hash FROM events ORDER BY id DESC LIMIT 1").fetchone()
    payload = '{"exit_code":0}'
    link = row_hash(last_hash, last_id + 1, 9.0, 9.0, "summary", payload)
    db.execute("INSERT INTO events VALUES (?, ?, ?, ?, ?, ?)", (last_id + 1, 9.0, 9.0, "summary", payload, link))
    db.commit()
    db.close()
    verdict = RecordReader(path).verify()
    assert not verdict.ok and verdict.first_broken_id == last_id + 1
    assert "after the record's end row" in verdict.reason


def test_a_payload_tampered_into_bytes_that_are_not_text_is_named_not_a_crash(tmp_path: Path) -> None:
    path = _record(tmp_path / "p.rfa.db")
    _sql(path, ("UPDATE events SET payload = CAST(x'7b22ff22' AS TEXT) WHERE id = 2", ()))
    reader = RecordReader(path)
    verdict = reader.verify()
    assert (verdict.intact, verdict.first_broken_id) == (False, 2)
    with pytest.raises(RecordDamaged, match="after row 1"):
        list(reader.rows())


def test_the_record_commands_answer_damage_with_exit_1_and_a_wrong_path_with_exit_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    damaged = _record(tmp_path / "damaged.rfa.db")
    _sql(damaged, ("UPDATE events SET payload = 'not json' WHERE id = 2", ()))
    for action in ("show", "export", "verify"):
        assert main(["record", action, str(damaged)]) == 1, action
    assert "row 2" in capsys.readouterr().out  # verify names the row
    assert main(["record", "show", str(tmp_path / "missing.rfa.db")]) == 2
    junk = tmp_path / "junk.rfa.db"
    junk.write_bytes(b"not sqlite" * 100)
    assert main(["record", "verify", str(junk)]) == 1
    capsys.readouterr()
    good = _record(tmp_path / "good.rfa.db")
    assert main(["record", "list", "--dir", str(tmp_path), "--json"]) == 0
    captured = capsys.readouterr()
    listed = {Path(e["file"]).name for e in json.loads(captured.out)}
    assert good.name in listed and junk.name not in listed and "skipped" in captured.err
    assert main(["record", "export", str(good), "-o", str(tmp_path / "no" / "such" / "dir.csv")]) == 2
    assert "cannot write" in capsys.readouterr().err


def test_an_export_of_a_tampered_record_is_written_but_says_so_and_exits_1(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A copy that leaves the cart must not pass for the record as written: the chain is checked as it is exported."""
    path = _record(tmp_path / "p.rfa.db")
    _sql(path, ("UPDATE events SET payload = '{\"i\": 7}' WHERE id = 2", ()))  # valid JSON, wrong content
    out = tmp_path / "p.csv"
    assert main(["record", "export", str(path), "--format", "csv", "-o", str(out)]) == 1
    assert "row 2" in capsys.readouterr().err and out.read_text().count("\n") > 4
    good = _record(tmp_path / "good.rfa.db")
    assert main(["record", "export", str(good), "-o", str(tmp_path / "good.json"), "--format", "json"]) == 0


def test_verify_prints_the_final_hash_of_a_closed_record(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = _record(tmp_path / "p.rfa.db")
    assert main(["record", "verify", str(path), "--json"]) == 0
    verdict = json.loads(capsys.readouterr().out)
    assert verdict["ok"] and verdict["closed"] and len(verdict["final_hash"]) == 64
    _sql(path, ("DELETE FROM events WHERE kind = 'end'", ()))
    assert main(["record", "verify", str(path)]) == 1
    assert "intact as far as it goes (4 rows) but not closed" in capsys.readouterr().out


def _rebuild_whole(path: Path) -> None:
    """A forger with the code: every row's hash recomputed after an edit, so the chain is intact again."""
    reader = RecordReader(path)
    meta = reader.meta()
    reader.close()
    db = sqlite3.connect(path)
    prev = genesis_hash(meta)
    for row_id, mono, wall, kind, payload in db.execute(
            "SELECT id, mono, wall, kind, payload FROM events ORDER BY id").fetchall():
        prev = row_hash(prev, row_id, mono, wall, kind, payload)
        db.execute("UPDATE events SET hash = ? WHERE id = ?", (prev, row_id))
    db.commit()
    db.close()


def test_a_record_rebuilt_whole_passes_the_chain_but_not_the_final_hash_written_down(
    tmp_path: Path, capsys: pytest.CaptureFixture[str],
) -> None:
    """The chain is not keyed: an edit rebuilt with the code passes it. The final hash the procedure ended on, noted
    outside the cart (rfa run prints it), does not: `verify --expect` fails the rebuilt record, naming both."""
    path = tmp_path / "p.rfa.db"
    clock = SimClock()
    record = ProcedureRecord(path, clock)
    for i in range(4):
        clock.advance(0.01)
        record.append("alarm" if i == 2 else "telemetry", {"i": i})
    record.close()
    noted = record.chain_head
    assert noted == RecordReader(path).verify().final_hash, "the head the writer ended on is the one verify computes"
    assert main(["record", "verify", str(path), "--expect", noted[:16]]) == 0
    assert f"the expected {noted[:16]}" in capsys.readouterr().out
    _sql(path, ("UPDATE events SET payload = ? WHERE kind = 'alarm'", ('{"i":"nothing happened"}',)))
    assert main(["record", "verify", str(path)]) == 1, "an edit alone breaks the chain"
    _rebuild_whole(path)
    assert main(["record", "verify", str(path)]) == 0, "rebuilt whole, the chain alone cannot tell"
    capsys.readouterr()
    rebuilt = RecordReader(path).verify().final_hash
    assert main(["record", "verify", str(path), "--expect", noted, "--json"]) == 1
    verdict = json.loads(capsys.readouterr().out)
    assert (verdict["ok"], verdict["as_expected"], verdict["final_hash"]) == (False, False, rebuilt)
    assert main(["record", "verify", str(path), "--expect", noted.upper()]) == 1
    out = capsys.readouterr().out
    assert "NOT the record written down" in out and rebuilt in out and noted in out


@pytest.mark.parametrize("expect", ["f5a74811d049da5", "f5a74811d049da59x", "not a hash at all", "0" * 65])
def test_an_expected_hash_that_is_no_hash_is_refused_naming_the_option(
    tmp_path: Path, expect: str, capsys: pytest.CaptureFixture[str],
) -> None:
    path = _record(tmp_path / "p.rfa.db")
    with pytest.raises(SystemExit) as exit_:
        main(["record", "verify", str(path), "--expect", expect])
    assert exit_.value.code == 2
    assert "--expect" in capsys.readouterr().err


@pytest.mark.parametrize("name", ["hash#dir/p.rfa.db", "q/x?y.rfa.db", "pct%41/p.rfa.db"])
def test_a_path_with_uri_characters_is_read_read_only_and_creates_nothing(tmp_path: Path, name: str) -> None:
    path = tmp_path / name
    path.parent.mkdir(parents=True, exist_ok=True)
    _record(path)
    before = set(tmp_path.rglob("*"))
    assert RecordReader(path).verify().ok
    created = set(tmp_path.rglob("*")) - before
    assert created <= {path.with_name(path.name + "-wal"), path.with_name(path.name + "-shm")}, created  # WAL's own


def test_csv_keeps_the_row_kind_when_a_payload_has_a_field_called_kind(tmp_path: Path) -> None:
    record = ProcedureRecord(tmp_path / "p.rfa.db", SimClock())
    record.append("operator", {"kind": "response", "answer": True})
    record.close()
    out = io.StringIO()
    RecordReader(tmp_path / "p.rfa.db").export_csv(out, kind="operator")
    header, line = out.getvalue().splitlines()
    assert header == "id,mono,wall,kind,answer,payload.kind"
    assert line.split(",")[3] == "operator" and line.endswith(",True,response")


def test_json_export_is_strict_json_even_with_a_non_finite_reading(tmp_path: Path) -> None:
    record = ProcedureRecord(tmp_path / "p.rfa.db", SimClock())
    record.append("telemetry", {"tip_c": math.nan, "z_ohm": math.inf, "nested": [1.5, -math.inf]})
    record.close()
    out = io.StringIO()
    RecordReader(tmp_path / "p.rfa.db").export_json(out, kind="telemetry")
    (row,) = json.loads(out.getvalue(), parse_constant=lambda name: pytest.fail(f"non-standard JSON {name}"))
    assert row["payload"] == {"tip_c": None, "z_ohm": None, "nested": [1.5, None]}


def test_a_time_given_as_an_int_or_a_numpy_float_verifies(tmp_path: Path) -> None:
    record = ProcedureRecord(tmp_path / "p.rfa.db", SimClock())
    record.append("state", {"to": "armed"}, mono=5)
    record.append("state", {"to": "ramping"}, mono=np.float64(5.25))
    record.close()
    assert RecordReader(tmp_path / "p.rfa.db").verify().ok


def test_a_row_the_writer_cannot_store_fails_the_record_loudly_not_after_a_timeout(tmp_path: Path) -> None:
    record = ProcedureRecord(tmp_path / "p.rfa.db", SimClock())
    record.append("state", {"to": "armed"}, mono=2.0**70)  # fine as a float...
    record.append("state", {"to": "ramping"}, mono=2**70 * 10**300)  # ...this overflows one
    with pytest.raises(RecordError, match="failed"):
        record.wait_committed(2, timeout_s=2.0)
    with pytest.raises(RecordError, match="failed"):
        record.append("state", {"to": "lesioning"})
    with pytest.raises(RecordError):
        record.close()


def test_a_record_directory_that_is_a_file_is_refused_with_a_reason(tmp_path: Path) -> None:
    blocker = tmp_path / "records"
    blocker.write_text("a file, not a directory")
    with pytest.raises(RecordError, match="cannot create the record directory"):
        ProcedureRecord(blocker / "p.rfa.db", SimClock())


@pytest.mark.parametrize("command", ["show", "export"])
def test_a_kind_the_record_does_not_hold_is_said_with_the_kinds_it_does(
        tmp_path: Path, command: str, capsys: pytest.CaptureFixture[str]) -> None:
    """A misspelt kind would otherwise print nothing at all; a kind that is there is shown without a note."""
    path = _record(tmp_path / "p.rfa.db")
    assert main(["record", command, str(path), "--kind", "stat"]) == 0
    captured = capsys.readouterr()
    assert "no rows of kind 'stat'" in captured.err and "(its kinds: end, state, telemetry)" in captured.err
    assert main(["record", command, str(path), "--kind", "state"]) == 0
    captured = capsys.readouterr()
    assert captured.err == "" and "state" in captured.out


def test_a_row_after_close_is_refused_and_the_closed_record_stays_whole(tmp_path: Path) -> None:
    """A thread that outlives the procedure (a guidance thread stuck in a USB call) must not land a row after
    the end row, where it would read as tampering, nor lose it silently: it is refused, and the record the
    procedure closed verifies as whole."""
    clock = SimClock()
    record = ProcedureRecord(tmp_path / "p.rfa.db", clock)
    record.append("state", {"dest": "standby"})
    record.close()
    with pytest.raises(RecordError, match="is closed: a 'frame' row came after its end"):
        record.append("frame", {"reason": "late"})
    with pytest.raises(RecordError, match="is closed"):
        record.append_rows("telemetry", [{"ch": 1}], 0.0)
    assert RecordReader(tmp_path / "p.rfa.db").verify().ok


def test_meta_and_times_of_other_types_are_hashed_as_stored(tmp_path: Path) -> None:
    """SQLite stores a meta value as TEXT and a time as REAL: the chain hashes them so, or a fresh record
    whose caller passed an int would fail its own first link."""
    clock = SimClock()
    record = ProcedureRecord(tmp_path / "p.rfa.db", clock, meta={"seed": 5},  # type: ignore[dict-item]
                             wall_clock=lambda: 1_700_000_000)
    record.append("state", {"dest": "standby"})
    record.close()
    assert RecordReader(tmp_path / "p.rfa.db").verify().ok


def test_a_kind_stored_as_bytes_hides_its_rows_from_the_readers_and_so_breaks_the_record(tmp_path: Path) -> None:
    """The chain hashes a row's bytes whatever SQLite stores them as, but ``WHERE kind = 'state'`` never matches a
    BLOB: the state rows would vanish from `show --kind`, the report and the history with the chain intact."""
    path = _record(tmp_path / "p.rfa.db")
    _sql(path, ("UPDATE events SET kind = CAST(kind AS BLOB) WHERE kind = 'state'", ()))
    verdict = RecordReader(path).verify()
    assert (verdict.intact, verdict.first_broken_id) == (False, 2) and "not both as text" in verdict.reason
    with pytest.raises(RecordDamaged, match="not stored as text"):
        list(RecordReader(path).rows())


@pytest.mark.parametrize("alteration", [
    # an index that leaves out some kinds, its definition in the schema table put back as written
    ("DROP INDEX events_kind", "CREATE INDEX events_kind ON events(kind) WHERE kind <> 'state'",
     "PRAGMA writable_schema = ON",
     "UPDATE sqlite_master SET sql = 'CREATE INDEX events_kind ON events(kind)' WHERE name = 'events_kind'"),
    ("CREATE TRIGGER quiet AFTER INSERT ON events BEGIN SELECT 1; END",),
    ("CREATE VIEW alarms AS SELECT * FROM events",),
])
def test_a_record_whose_structure_was_altered_is_broken_from_its_first_row(tmp_path: Path,
                                                                         alteration: tuple[str, ...]) -> None:
    path = _record(tmp_path / "p.rfa.db")
    db = sqlite3.connect(path)
    for sql in alteration:
        db.execute(sql)
    db.commit()
    db.close()
    verdict = RecordReader(path).verify()
    assert (verdict.intact, verdict.first_broken_id) == (False, 1)
    assert "integrity check fails" in verdict.reason or "structure is not the one the cart writes" in verdict.reason


def test_a_failed_record_raises_until_the_procedure_abandons_it_then_drops_rows(tmp_path: Path) -> None:
    """The first to hear of the failure must go to the safe state; once the procedure has, rows are dropped so the
    safe state is not stopped by the failure it is for. Closing still says the record failed."""
    clock = SimClock()
    record = ProcedureRecord(tmp_path / "p.rfa.db", clock)
    record.append_durable("state", {"dest": "lesioning"})
    record.abandon()  # nothing has failed: no effect
    assert record.append("telemetry", {"ch": 1}) > 0 and not record.abandoned
    record._fail(OSError(28, "No space left on device"))
    for _ in range(2):  # it goes on raising until abandoned
        with pytest.raises(RecordError, match="No space left"):
            record.append("telemetry", {"ch": 1})
    record.abandon()
    assert record.abandoned
    assert record.append("alarm", {"interlock": "over_temperature"}) == NOT_RECORDED
    assert record.append_rows("telemetry", [{"ch": 1}, {"ch": 2}], clock.now()) == NOT_RECORDED
    assert record.committed_within(NOT_RECORDED, 0.0)
    record.append_durable("state", {"dest": "fault"})  # returns: the fault is not held up by the record
    with pytest.raises(RecordError, match="No space left"):
        record.close()
    assert RecordReader(tmp_path / "p.rfa.db").verify().reason.startswith("not closed")


def test_a_record_that_cannot_be_created_leaves_nothing_behind(tmp_path: Path,
                                                               monkeypatch: pytest.MonkeyPatch) -> None:
    """A full disk at the start: the database file is created, its schema is not. Left there, the empty file was
    listed as a damaged record by every `rfa record list` and `rfa history` after."""
    monkeypatch.setattr("control.record._SCHEMA", "CREATE TABLE events (")  # fails after the file exists
    with pytest.raises(RecordError):
        ProcedureRecord(tmp_path / "p.rfa.db", SimClock())
    assert list(tmp_path.iterdir()) == []


def test_show_gives_each_rows_wall_clock_time_and_list_marks_a_record_without_its_end(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """An investigator matches rows with the console's lines and the hospital's clock: `show` gives the wall time
    (local, to the millisecond; JSON: Unix time). `list` tells a closed record from one cut short."""
    closed = _record(tmp_path / "a-closed.rfa.db")
    cut = _record(tmp_path / "b-cut.rfa.db")
    _sql(cut, ("DELETE FROM events WHERE kind = 'end'", ()))
    assert main(["record", "show", str(closed), "--limit", "1"]) == 0
    first = capsys.readouterr().out.splitlines()[0]
    wall = RecordReader(closed).rows().__next__().wall
    assert first.split()[1] == datetime.datetime.fromtimestamp(wall).strftime("%H:%M:%S.%f")[:-3]
    assert main(["record", "show", str(closed), "--limit", "1", "--json"]) == 0
    assert json.loads(capsys.readouterr().out.splitlines()[0])["wall"] == wall
    assert main(["record", "list", "--dir", str(tmp_path)]) == 0
    lines = capsys.readouterr().out.splitlines()[1:]
    assert not lines[0].endswith(")") and lines[1].endswith("(not closed: cut short)")


def test_a_record_locked_by_another_program_is_not_called_damaged(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = _record(tmp_path / "p.rfa.db")
    (tmp_path / "p.rfa.db-wal").write_bytes(b"")  # read through the log, as a live record is
    holder = sqlite3.connect(path, timeout=0)
    holder.execute("PRAGMA locking_mode = EXCLUSIVE")
    holder.execute("BEGIN EXCLUSIVE")
    try:
        with pytest.raises(RecordError, match="locked by another program") as refused:
            RecordReader(path)
        assert not isinstance(refused.value, RecordDamaged)  # exit 2 at the command line, not 1
    finally:
        holder.close()


def test_a_writer_hung_in_the_disk_is_a_failed_record_not_rows_piling_up_in_memory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A writer stuck in an fsync (a dead share, a pulled stick) never raises: the rows piled up in memory for a
    whole lesion (68.8 s in a review's run) and nothing was committed. Past WRITER_STALL_S without taking a row, the
    next append raises: the procedure goes to the safe state on it."""
    monkeypatch.setattr("control.record.WRITER_STALL_S", 0.2)
    release = threading.Event()
    record = ProcedureRecord(tmp_path / "p.rfa.db", SimClock())
    try:
        record.append("frame", lambda: (release.wait(), {"hung": True})[1])
        time.sleep(0.1)  # the writer has taken the batch and hangs in it
        record.append("telemetry", {"ch": 1})
        time.sleep(0.3)
        with pytest.raises(RecordError, match="committed nothing for"):
            record.append("telemetry", {"ch": 1})
    finally:
        release.set()


def test_closing_a_record_whose_writer_does_not_finish_says_it_is_not_closed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Its writer is a daemon thread, killed at exit mid-batch: `rfa run` must not print "Procedure complete" and
    exit 0 over a record without its end row."""
    monkeypatch.setattr("control.record.DURABLE_TIMEOUT_S", 0.2)
    release = threading.Event()
    record = ProcedureRecord(tmp_path / "p.rfa.db", SimClock())
    try:
        record.append("frame", lambda: (release.wait(), {"hung": True})[1])
        with pytest.raises(RecordError, match="did not finish"):
            record.close()
    finally:
        release.set()


def test_ctrl_c_while_the_loop_waits_for_the_record_never_leaves_its_lock_held(tmp_path: Path) -> None:
    """The interrupt arrives while the main thread waits to take the record's lock (the writer holds it): raised
    inside ``Condition.__enter__`` (Python code) after the lock was taken, it left the lock held for ever, and every
    later append, the OUTPUT_OFF listener's among them, waited on it. A C-level ``with`` on the lock cannot."""
    record = ProcedureRecord(tmp_path / "p.rfa.db", RealClock())
    record.flush()
    seq = record.append("x", {"a": 1})

    def writer_like() -> None:
        with record._lock:
            time.sleep(0.2)  # the main thread is now waiting to take the lock
            signal.pthread_kill(threading.get_ident(), signal.SIGINT)  # Ctrl-C, handled on the main thread
            time.sleep(0.05)

    holder = threading.Thread(target=writer_like)
    holder.start()
    time.sleep(0.05)
    stub = cast(ProcedureSession, SimpleNamespace(ending=False))
    with _stop_on_termination(stub), contextlib.suppress(KeyboardInterrupt):  # `rfa run`'s handlers
        record.committed_within(seq, 1.0)  # what the commit hold calls on the loop's thread
    holder.join()
    appended = threading.Event()

    def append() -> None:
        record.append("y", {"b": 2})
        appended.set()

    threading.Thread(target=append, daemon=True).start()
    assert appended.wait(2.0), "the record's lock was left held"
    record.close()
