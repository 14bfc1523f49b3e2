"""The independent watchdog: explicit ticks under SimClock, its own thread under RealClock."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

from hypothesis import given
from hypothesis import strategies as st

from firmware_bridge.clock import RealClock, SimClock
from firmware_bridge.errors import CartError
from firmware_bridge.framing import FrameParser
from firmware_bridge.generator import RfGenerator
from firmware_bridge.messages import OutputOff
from firmware_bridge.transport import memory_pair
from safety.config import HARD_LIMITS
from safety.gate import EventKind, OutputGate, SafetyEvent
from safety.interlocks import InterlockId
from safety.plan import default_genicular_plan
from safety.watchdog import Watchdog
from tests.safety.support import Rig


def test_nothing_happens_before_the_first_kick() -> None:
    rig = Rig()
    dog = Watchdog(rig.gate, rig.clock)
    rig.clock.advance(10.0)
    assert not dog.armed and not dog.tick()
    assert rig.wire() == []


def test_two_missed_periods_are_allowed_and_a_moment_more_trips() -> None:
    rig = Rig()
    dog = Watchdog(rig.gate, rig.clock)
    dog.kick()
    rig.clock.advance(0.0199)
    assert not dog.tick()
    rig.clock.advance(0.0001)
    assert not dog.tick(), "exactly two periods late is still allowed"
    rig.clock.advance(0.0001)
    assert dog.tick()
    assert rig.wire() == [OutputOff(0x0F)]
    assert [t.interlock for t in rig.gate.latched] == [InterlockId.CONTROL_LOOP_OVERRUN]
    assert not dog.tick() and rig.wire() == [], "one trip per stall"
    dog.kick()
    rig.clock.advance(0.03)
    assert dog.tick(), "a new stall after the loop came back trips again"


# Exactly 20 ms is left to the example above: accumulated float time lands on either side of it.
@given(gaps_ms=st.lists(st.integers(0, 40).filter(lambda ms: ms != 20), min_size=1, max_size=30))
def test_trips_iff_a_gap_exceeds_two_periods(gaps_ms: list[int]) -> None:
    rig = Rig()
    dog = Watchdog(rig.gate, rig.clock)
    dog.kick()
    for gap in gaps_ms:
        rig.clock.advance(gap / 1000)
        assert dog.tick() == (gap > 20)
        dog.kick()


def test_disarm_turns_output_off_first() -> None:
    rig = Rig()
    dog = Watchdog(rig.gate, rig.clock)
    dog.kick()
    dog.disarm()
    assert rig.wire() == [OutputOff(0x0F)] and not dog.armed


def test_the_thread_trips_a_stalled_loop_on_the_real_clock() -> None:
    clock = RealClock()
    host, _device = memory_pair("watchdog")
    tripped = threading.Event()

    def record(event: SafetyEvent) -> None:
        if event.kind is EventKind.TRIP and event.interlock is InterlockId.CONTROL_LOOP_OVERRUN:
            tripped.set()

    gate = OutputGate(RfGenerator(host, clock), default_genicular_plan(), HARD_LIMITS, clock, record)
    dog = Watchdog(gate, clock)
    dog.start()
    try:
        dog.kick()  # and then the "loop" never kicks again
        assert tripped.wait(timeout=10.0), "the watchdog thread never tripped"
    finally:
        dog.stop()
        dog.stop()
    assert dog.trips >= 1 and not dog.armed


class _RecordBroken(CartError):
    """What the procedure record raises when it cannot write (control's RecordError is one)."""


def _until(condition: Callable[[], bool], timeout_s: float = 10.0) -> bool:
    deadline = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.001)
    return True


def test_the_thread_survives_a_failing_record_and_keeps_supervising() -> None:
    clock = SimClock(0.0)  # the stall is made by advancing it; the thread itself runs in real time
    host, device = memory_pair("watchdog")
    broken = threading.Event()
    broken.set()

    def record(event: SafetyEvent) -> None:
        if broken.is_set() and event.kind is EventKind.TRIP:
            raise _RecordBroken("disk full")

    gate = OutputGate(RfGenerator(host, clock), default_genicular_plan(), HARD_LIMITS, clock, record)
    parser = FrameParser()
    parser.feed(device.read())
    dog = Watchdog(gate, clock)
    dog.start()
    try:
        dog.kick()
        clock.advance(0.05)
        assert _until(lambda: dog.errors >= 2), "the thread died at the first failing record"
        assert isinstance(dog.last_error, _RecordBroken)
        offs = [f.msg for f in parser.feed(device.read())]
        assert offs and all(m == OutputOff(0x0F) for m in offs), "output off before and after each failure"
        assert [t.interlock for t in gate.latched] == [InterlockId.CONTROL_LOOP_OVERRUN]
        broken.clear()
        assert _until(lambda: dog.trips >= 1), "once the record works the stall is tripped normally"
        dog.kick()
        clock.advance(0.05)
        assert _until(lambda: dog.trips >= 2), "and a new stall is still supervised"
    finally:
        dog.stop()


def test_a_kick_that_comes_while_the_watchdog_trips_starts_a_new_supervision_period() -> None:
    """The loop came back while the trip was being recorded: the stall after that kick is a new one, tripped too."""
    rig = Rig()
    dog = Watchdog(rig.gate, rig.clock)

    def record(event: SafetyEvent) -> None:
        rig.events.append(event)
        if event.kind is EventKind.TRIP:
            dog.kick()

    rig.gate._record = record
    dog.kick()
    rig.clock.advance(0.03)
    assert dog.tick()
    rig.clock.advance(0.03)
    assert dog.tick(), "a stall after the kick that came during the trip"
    assert dog.trips == 2


def test_a_trip_the_gate_could_not_latch_is_tried_again_at_the_next_check() -> None:
    """A caller stuck inside the gate: the watchdog could only write OUTPUT_OFF, so the stall is not handled and the
    next check latches it."""
    rig = Rig()
    dog = Watchdog(rig.gate, rig.clock)
    dog.kick()
    rig.clock.advance(0.03)
    rig.wire()
    rig.gate._lock.acquire()
    try:
        check = threading.Thread(target=dog.tick)
        check.start()
        check.join()
    finally:
        rig.gate._lock.release()
    assert rig.wire() == [OutputOff(0x0F)] and not rig.gate.latched
    assert dog.tick()
    assert [t.interlock for t in rig.gate.latched] == [InterlockId.CONTROL_LOOP_OVERRUN]


class _FailingClock(SimClock):
    """A clock whose next reading raises: an error of the watchdog's own, before any trip could send OUTPUT_OFF."""

    fail = False

    def now(self) -> float:
        if self.fail:
            self.fail = False
            raise RuntimeError("clock read failed")
        return super().now()


def test_the_thread_turns_output_off_after_an_error_of_its_own() -> None:
    rig = Rig()
    clock = _FailingClock(0.0)
    dog = Watchdog(rig.gate, clock)
    rig.wire()
    dog.kick()
    clock.fail = True
    dog.start()
    try:
        assert _until(lambda: dog.errors >= 1), "the clock's error never reached the thread"
        assert isinstance(dog.last_error, RuntimeError)
        assert _until(lambda: OutputOff(0x0F) in rig.wire()), "output not turned off after the error"
    finally:
        dog.stop()
