"""The procedure record: hash chain, durability of state changes, and the 100 ms telemetry bound."""

from __future__ import annotations

import io
import json
import os
import signal
import sqlite3
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from control.record import ProcedureRecord, RecordDamaged, RecordError, RecordReader
from control.record_cli import records_in
from firmware_bridge.clock import SimClock

kinds = st.sampled_from(["state", "command", "ack", "alarm", "telemetry", "note"])
payload_values = st.one_of(st.integers(-10**6, 10**6), st.text(max_size=12), st.booleans())
payloads = st.dictionaries(st.text(min_size=1, max_size=8), payload_values, max_size=4)


def write_record(path: Path, events: list[tuple[str, dict[str, object]]]) -> None:
    clock = SimClock()
    record = ProcedureRecord(path, clock)
    for kind, payload in events:
        clock.advance(0.01)
        record.append(kind, payload)
    record.close()


@given(events=st.lists(st.tuples(kinds, payloads), min_size=1, max_size=40), data=st.data())
def test_any_single_row_edit_breaks_the_chain_at_that_row(tmp_path_factory: pytest.TempPathFactory,
                                                          events: list[tuple[str, dict[str, object]]],
                                                          data: st.DataObject) -> None:
    path = tmp_path_factory.mktemp("rec") / "p.db"
    write_record(path, events)
    reader = RecordReader(path)
    assert reader.verify().ok
    assert [(r.kind, r.payload) for r in reader.rows()] == [*events, ("end", {"rows": len(events)})]
    reader.close()

    victim = data.draw(st.integers(1, len(events)), label="row to tamper with")
    db = sqlite3.connect(path)
    db.execute("UPDATE events SET payload = ? WHERE id = ?", ('{"tampered":true}', victim))
    db.commit()
    db.close()
    result = RecordReader(path).verify()
    assert not result.ok
    assert result.first_broken_id == victim


def test_a_deleted_row_is_named(tmp_path: Path) -> None:
    path = tmp_path / "p.db"
    write_record(path, [("state", {"to": s}) for s in ("self_test", "standby", "armed", "ramping")])
    db = sqlite3.connect(path)
    db.execute("DELETE FROM events WHERE id = 2")
    db.commit()
    db.close()
    result = RecordReader(path).verify()
    assert (result.ok, result.first_broken_id) == (False, 3)
    assert "row 2 is missing" in result.reason


def test_durable_append_is_on_disk_when_it_returns(tmp_path: Path) -> None:
    path = tmp_path / "p.db"
    record = ProcedureRecord(path, SimClock())
    for i in range(50):
        record.append("telemetry", {"i": i})
    record.append_durable("state", {"to": "armed"})
    reader = RecordReader(path)  # a second connection sees only what is committed
    kinds_on_disk = [r.kind for r in reader.rows()]
    assert kinds_on_disk == ["telemetry"] * 50 + ["state"]
    record.close()


def test_export_round_trips_rows(tmp_path: Path) -> None:
    path = tmp_path / "p.db"
    write_record(path, [("state", {"to": "standby"}), ("telemetry", {"ch": 1, "tip_temp_c": 37.5})])
    reader = RecordReader(path)
    out = io.StringIO()
    assert reader.export_json(out) == 3
    rows = json.loads(out.getvalue())
    assert rows[1]["payload"] == {"ch": 1, "tip_temp_c": 37.5}
    assert (rows[2]["kind"], rows[2]["payload"]) == ("end", {"rows": 2})
    out = io.StringIO()
    assert reader.export_csv(out, kind="telemetry") == 1
    header, line = out.getvalue().splitlines()
    assert header == "id,mono,wall,kind,ch,tip_temp_c"
    assert line.endswith(",telemetry,1,37.5")


def test_an_existing_record_is_never_overwritten(tmp_path: Path) -> None:
    path = tmp_path / "p.db"
    write_record(path, [("state", {"to": "standby"})])
    with pytest.raises(RecordError, match="refusing to overwrite"):
        ProcedureRecord(path, SimClock())


def test_a_file_that_is_not_a_record_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "junk.db"
    path.write_bytes(b"not sqlite at all" * 100)
    with pytest.raises(RecordDamaged, match="cannot be read as a procedure record"):
        RecordReader(path)


def test_reading_a_closed_record_leaves_its_folder_as_it_was(tmp_path: Path) -> None:
    """A read-only reader of a WAL database makes SQLite create the log and its index beside the file, so a
    record on read-only storage (an archive, a write-protected stick) could not be read, and was called
    damaged. A closed record has no log: it is read as unchangeable, writing nothing."""
    path = tmp_path / "closed.rfa.db"
    write_record(path, [("state", {"to": "standby"}), ("telemetry", {"ch": 1})])
    before = sorted(p.name for p in tmp_path.iterdir())
    reader = RecordReader(path)
    assert reader.verify().ok
    assert [r.kind for r in reader.rows()][-3:] == ["state", "telemetry", "end"]
    reader.close()
    assert sorted(p.name for p in tmp_path.iterdir()) == before == ["closed.rfa.db"]


def test_a_live_record_is_followed_through_its_log(tmp_path: Path) -> None:
    """While the writer runs, its log is beside the record: the reader reads through it and sees new rows."""
    clock = SimClock()
    path = tmp_path / "live.rfa.db"
    record = ProcedureRecord(path, clock)
    record.append_durable("state", {"to": "standby"})
    reader = RecordReader(path)
    last = max(r.id for r in reader.rows())
    record.append_durable("state", {"to": "armed"})
    assert [r.payload for r in reader.rows_after(last)] == [{"to": "armed"}]
    reader.close()
    record.close()


def test_a_log_that_cannot_be_read_for_a_read_only_folder_says_so(tmp_path: Path,
                                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    """A writer that died leaves rows in its log; on read-only storage SQLite cannot read them. The reader says
    what to do, instead of calling the record damaged. (The folder is made read-only in the reader's eyes:
    the tests run as root, whom permissions do not stop.)"""
    path = tmp_path / "died.rfa.db"
    write_record(path, [("state", {"to": "standby"})])
    path.with_name(path.name + "-wal").write_bytes(b"")

    def refuse(*args: object, **kwargs: object) -> sqlite3.Connection:
        raise sqlite3.OperationalError("attempt to write a readonly database")
    monkeypatch.setattr("control.record.sqlite3.connect", refuse)
    monkeypatch.setattr("control.record.os.access", lambda *args, **kwargs: False)
    with pytest.raises(RecordError, match="copy the record with its -wal file to a writable folder") as raised:
        RecordReader(path)
    assert not isinstance(raised.value, RecordDamaged)


CHILD = textwrap.dedent("""
    import sys
    from pathlib import Path
    from control.record import ProcedureRecord
    from firmware_bridge.clock import RealClock
    clock = RealClock()
    record = ProcedureRecord(Path(sys.argv[1]), clock)
    t_next = clock.now()
    n = 0
    while True:
        t_next += 0.01
        clock.sleep_until(t_next)
        for ch in range(4):
            record.append("telemetry", {"ch": ch, "n": n})
        print("T", n, flush=True)
        if n % 25 == 0:
            record.append_durable("state", {"n": n})
            print("S", n, flush=True)
        n += 1
""")


@pytest.mark.realtime
def test_a_crash_mid_lesion_loses_no_state_change_and_at_most_100ms_of_telemetry(tmp_path: Path) -> None:
    path = tmp_path / "crash.db"
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    child = subprocess.Popen([sys.executable, "-c", CHILD, str(path)], stdout=subprocess.PIPE, text=True,
                             env=env, cwd=Path(__file__).resolve().parents[2])
    assert child.stdout is not None
    last_t, states = -1, []
    deadline = time.monotonic() + 30
    while last_t < 150 and time.monotonic() < deadline:  # ~1.5 s of telemetry, then pull the plug
        kind, n = child.stdout.readline().split()
        if kind == "T":
            last_t = int(n)
        else:
            states.append(int(n))
    child.send_signal(signal.SIGKILL)
    child.wait()
    assert last_t >= 150, "the child did not produce telemetry"

    reader = RecordReader(path)
    verdict = reader.verify()
    assert verdict.intact and not verdict.closed and "not closed" in verdict.reason  # nothing shows it is whole
    on_disk_states = [r.payload["n"] for r in reader.rows("state")]
    assert set(states) <= set(on_disk_states), "a state change that completed is missing"
    last_on_disk = max(r.payload["n"] for r in reader.rows("telemetry"))
    # Every sample up to the last printed one was appended; at most 100 ms (10 ticks) of them may be lost.
    assert last_t - last_on_disk <= 10, f"lost {last_t - last_on_disk} ticks of telemetry"


def test_deferred_payloads_are_built_by_the_writer_in_order(tmp_path: Path) -> None:
    import threading

    record = ProcedureRecord(tmp_path / "p.db", SimClock())
    built_on: list[str] = []

    def frame() -> dict[str, object]:
        built_on.append(threading.current_thread().name)
        return {"pixels": "…compressed…"}

    def broken() -> dict[str, object]:
        raise ValueError("no image")

    record.append("state", {"to": "armed"})
    record.append("frame", frame)
    record.append("frame", broken)
    record.append_durable("state", {"to": "ramping"})
    record.close()
    reader = RecordReader(tmp_path / "p.db")
    assert [(r.kind, r.payload) for r in reader.rows()] == [
        ("state", {"to": "armed"}),
        ("frame", {"pixels": "…compressed…"}),
        ("frame", {"payload_error": "ValueError: no image"}),
        ("state", {"to": "ramping"}),
        ("end", {"rows": 4}),
    ]
    assert built_on == ["record-writer"]
    assert reader.verify().ok


def test_append_only_queues_and_a_payload_json_cannot_hold_still_leaves_its_row(tmp_path: Path) -> None:
    """Encoding happens on the writer thread: a bad payload costs the tick nothing and loses no row."""
    record = ProcedureRecord(tmp_path / "p.db", SimClock())
    record.append("state", {"to": "armed"})
    record.append("operator", {"answers": {1, 2}})  # a set: not JSON
    record.append_durable("state", {"to": "ramping"})
    record.close()
    reader = RecordReader(tmp_path / "p.db")
    rows = [(r.kind, r.payload) for r in reader.rows()]
    assert rows[0] == ("state", {"to": "armed"})
    assert rows[1][0] == "operator" and rows[1][1]["payload_error"].startswith("TypeError")
    assert rows[2] == ("state", {"to": "ramping"})
    assert reader.verify().ok


@given(msg_id=st.integers(0, 255), result=st.integers(0, 255))
def test_an_ack_row_names_the_command_it_answers_and_its_result(msg_id: int, result: int) -> None:
    """An investigator reads "SetOutput REFUSED_STATE", not "17, 2"; a value this build does not know stays a number."""
    from control.recorder import received_row
    from firmware_bridge.messages import MESSAGES_BY_ID, Ack, AckResult

    row = received_row(7, Ack(msg_id, 3, result))
    known = MESSAGES_BY_ID.get(msg_id)
    assert row["acked_msg"] == (f"0x{msg_id:02X}" if known is None else known.__name__)
    assert row["result_name"] == (AckResult(result).name if result in list(AckResult) else f"result {result}")
    assert (row["seq"], row["acked_msg_id"], row["acked_seq"], row["result"]) == (7, msg_id, 3, result)


@given(mode=st.integers(0, 255), setpoint=st.integers(0, 0xFFFF))
def test_an_output_command_row_names_the_unit_of_its_setpoints(mode: int, setpoint: int) -> None:
    """SET_OUTPUT's setpoints are 0.01 W, or 0.01 V peak for pulsed RF: the row says which, so an exported CSV
    cannot be read as watts when it holds volts."""
    from control.recorder import command_row
    from firmware_bridge.messages import OutputMode, SetOutput

    row = command_row(5, SetOutput(0x01, mode, (setpoint, 0, 0, 0), 20_000, 20))
    assert row["setpoints_unit"] == ("centi_v" if mode == OutputMode.RF_PULSED else "centi_w")
    assert row["mode_name"] == (OutputMode(mode).name if mode in list(OutputMode) else f"mode {mode}")
    assert (row["seq"], row["msg"], row["mode"], row["setpoints"]) == (5, "SetOutput", mode, (setpoint, 0, 0, 0))


def test_records_started_in_the_same_second_are_listed_in_the_order_they_were_made(tmp_path: Path) -> None:
    """`rfa run` names a second record of the same second `…-2.rfa.db`; by the whole name it sorted before the first
    (`-` before `.`), so `rfa record list` and `rfa history` showed the later procedure first."""
    names = ["20261124-223752-genicular-3.rfa.db", "20261124-223752-genicular-3-2.rfa.db",
             "20261124-223753-genicular-3.rfa.db", "20261124-223752-sacroiliac.rfa.db"]
    for name in names:
        (tmp_path / name).touch()
    assert [p.name for p in records_in(tmp_path)] == [names[0], names[1], names[3], names[2]]
