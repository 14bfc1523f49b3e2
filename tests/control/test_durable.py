"""Durable rows in real time: the procedure waits for the disk, the loop does not (control.durable)."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any, cast

import pytest

from control import durable
from control import record as record_module
from control.cli import simulated_cart
from control.durable import CommitWaiter
from control.loop import ControlLoop
from control.operator import ScriptedOperator
from control.procedure import State
from control.record import ProcedureRecord, RecordError, RecordReader
from control.recorder import Recorder
from control.session import ProcedureSession
from firmware_bridge.clock import RealClock, SimClock
from firmware_bridge.generator import RfGenerator
from firmware_bridge.messages import ALL_CHANNELS
from firmware_bridge.transport import memory_pair
from safety.config import HARD_LIMITS
from safety.gate import OutputGate
from safety.interlocks import InterlockId, Trip
from safety.plan import default_genicular_plan
from safety.watchdog import Watchdog
from sim.lockstep import Realtime

_TRIP = Trip(InterlockId.LINK_LOST, None, "no generator HEARTBEAT", ALL_CHANNELS, False)


class _Loop:
    """A stand-in loop: counts ticks, finds one trip on the first, lets the stuck writer go on the third."""

    def __init__(self, writer_released: threading.Event, *, realtime: bool = True) -> None:
        self.realtime = realtime
        self.ticks = 0
        self._release = writer_released

    def until_next_tick_s(self) -> float:
        # Once the writer may go on, the next tick is far off: the wait then ends by the commit, however slowly a
        # loaded machine schedules the writer (1 ms was not always enough for it to build, hash and fsync: CI).
        return 5.0 if self._release.is_set() else 0.002

    def tick(self) -> list[Trip]:
        self.ticks += 1
        if self.ticks == 3:
            self._release.set()
        return [_TRIP] if self.ticks == 1 else []


@pytest.fixture
def record(tmp_path: Path) -> Iterator[ProcedureRecord]:
    rec = ProcedureRecord(tmp_path / "durable.rfa.db", SimClock())
    yield rec
    rec.close()


def _stuck_writer(record: ProcedureRecord) -> threading.Event:
    """Queue a row whose building blocks the writer until the returned event is set."""
    release = threading.Event()

    def slow_row() -> dict[str, Any]:
        release.wait(10.0)
        return {"slow": True}

    record.append("frame", slow_row)
    return release


def _waiter(record: ProcedureRecord, loop: _Loop, trips: list[Trip]) -> CommitWaiter:
    return CommitWaiter(record, cast(ControlLoop, loop), trips.extend)


def test_on_the_real_time_loop_a_durable_row_keeps_the_loop_ticking_until_it_is_on_disk(
    record: ProcedureRecord,
) -> None:
    loop = _Loop(_stuck_writer(record))
    trips: list[Trip] = []
    waiter = _waiter(record, loop, trips)
    waiter.begin()
    seq = waiter.durable("state", {"dest": "standby"})
    assert loop.ticks == 3 and waiter.hold_ticks == 3, "ticked until the writer could go on, not after"
    assert trips == [_TRIP], "a hold tick's trip is handed on, not lost"
    assert record.committed_within(seq, 0.0)


@pytest.mark.parametrize("where", ["other thread", "simulated time", "loop stopped"])
def test_anywhere_else_a_durable_row_is_a_plain_wait(record: ProcedureRecord, where: str) -> None:
    release = _stuck_writer(record)
    loop = _Loop(threading.Event(), realtime=where != "simulated time")
    waiter = _waiter(record, loop, [])
    if where != "loop stopped":
        waiter.begin()
    threading.Timer(0.05, release.set).start()
    if where == "other thread":
        done: list[int] = []
        worker = threading.Thread(target=lambda: done.append(waiter.durable("alarm", {"x": 1})))
        worker.start()
        worker.join(5.0)
        assert done, "the other thread's wait returned"
    else:
        waiter.durable("alarm", {"x": 1})
    assert loop.ticks == 0 and waiter.hold_ticks == 0


def test_a_row_the_writer_never_commits_is_a_record_error(
    record: ProcedureRecord, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(durable, "DURABLE_TIMEOUT_S", 0.05)
    release = _stuck_writer(record)
    loop = _Loop(threading.Event())
    waiter = _waiter(record, loop, [])
    waiter.begin()
    try:
        with pytest.raises(RecordError, match="did not commit row"):
            waiter.durable("state", {"dest": "standby"})
        assert loop.ticks >= 2, "the loop ticked while it waited"
    finally:
        release.set()


@pytest.mark.realtime
def test_a_real_time_procedure_whose_disk_is_slow_keeps_its_period(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Every state change and alarm takes the writer 60 ms (six periods): the watchdog must not see a stalled
    loop. The operator's stop is an alarm the gate emits, inside its lock, on the loop's thread."""
    plain_hash = record_module.row_hash
    slow = threading.Event()

    def slow_state_rows(prev_hash: str, row_id: int, mono: float, wall: float, kind: str, payload: str) -> str:
        if kind in ("state", "alarm"):
            slow.set()
            threading.Event().wait(0.06)
        return plain_hash(prev_hash, row_id, mono, wall, kind, payload)

    monkeypatch.setattr(record_module, "row_hash", slow_state_rows)
    plan = default_genicular_plan().model_copy(update={"imaging_required": False})
    clock = RealClock()
    cart = simulated_cart(plan, clock, seed=2, physical=False, probe=False)
    generator = RfGenerator(cart.host_transport, clock)
    record = ProcedureRecord(tmp_path / "slow-disk.rfa.db", clock)
    pacer = Realtime(clock, cart.devices)
    session = ProcedureSession(plan=plan, generator=generator, clock=clock, pacer=pacer,
                               record=record, operator=ScriptedOperator(plan), realtime=True)
    try:
        for _ in session.steps():
            if session.procedure.state is State.STIMULATING:
                session.request_stop("test: enough")
    finally:
        pacer.close()
        record.close()
    assert slow.is_set()
    reader = RecordReader(record.path)
    alarms = [row.payload for row in reader.rows("alarm") if row.payload["event"] == "trip"]
    assert [a["interlock"] for a in alarms] == ["operator_stop"], alarms
    assert [row.payload["dest"] for row in reader.rows("state")] == ["self_test", "standby", "stimulating", "stopped"]
    assert session.result is not None and session.result.realtime
    assert 0 < session.result.loop["longest_period_ms"] < 20, session.result.loop
    assert session.result.loop["hold_ticks"] == session.commits.hold_ticks
    assert session.commits.hold_ticks >= 5 * 4, "each 60 ms commit was waited for with the loop ticking"


@pytest.mark.realtime
def test_the_watchdogs_alarm_is_left_for_the_loop_to_commit_not_waited_for_inside_the_gate(tmp_path: Path) -> None:
    """The loop stalls 50 ms while the writer needs 2 s for its batch: the watchdog trips (OUTPUT_OFF first), and
    its alarm waited for the disk inside the gate's lock, so the loop, back from its stall, waited in the gate for
    the whole batch (1972 ms in a review's run): no heartbeat, no interlock evaluated. Now the alarm is queued for
    the loop's next tick to commit, as the loop's own are."""
    clock = RealClock()
    host, _device = memory_pair("watchdog-alarm")
    generator = RfGenerator(host, clock)
    record = ProcedureRecord(tmp_path / "p.rfa.db", clock)
    recorder = Recorder(record)
    generator.on_sent(recorder.command)
    commits = CommitWaiter(record, cast(ControlLoop, _Loop(threading.Event())), lambda trips: None)
    commits.begin()  # this thread is the running real-time loop's
    recorder.defer_commit = commits.defers_alarms
    gate = OutputGate(generator, default_genicular_plan(), HARD_LIMITS, clock, recorder.safety_event)
    watchdog = Watchdog(gate, clock)
    watchdog.start()
    try:
        watchdog.kick()
        release = threading.Event()
        record.append("frame", lambda: (release.wait(2.0), {})[1])  # the writer busy with a slow batch
        time.sleep(0.05)  # the loop stalls: the watchdog trips
        started = time.monotonic()
        gate.keep_alive()  # the loop's next tick begins here
        blocked_s = time.monotonic() - started
        release.set()
        assert watchdog.trips == 1 and blocked_s < 0.5
        alarm = recorder.take_uncommitted_alarm()
        assert alarm is not None
        commits.commit(alarm)  # the loop commits it, ticking meanwhile
    finally:
        watchdog.stop()
        commits.end()
        record.close()
    alarms = [row.payload for row in RecordReader(record.path).rows("alarm")]
    assert [a["interlock"] for a in alarms if a["event"] == "trip"] == ["control_loop_overrun"]
