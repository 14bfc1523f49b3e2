"""The loop's tick hands over every trip once, including the watchdog's, whichever of the two saw a stall first."""

from __future__ import annotations

import pytest

from control.loop import ControlLoop
from safety.inputs import ImagingStatus
from safety.interlocks import InterlockId, Trip
from tests.safety.support import Rig, telemetry


class StallingPacer:
    """Steps a gate test rig's generator side every period; ``stall_s`` more before the next tick."""

    def __init__(self, rig: Rig) -> None:
        self.rig = rig
        self.stall_s = 0.0

    def sleep_until(self, t: float) -> None:
        self.rig.clock.sleep_until(t + self.stall_s)
        self.stall_s = 0.0
        self.rig.feed(telemetry())


def lesion_running(*, watchdog_wakes_second: bool) -> tuple[Rig, ControlLoop, StallingPacer]:
    """A loop ticking with output on ch1; if ``watchdog_wakes_second``, the watchdog's thread checks right
    after each evaluation (as when both wake from one stall and the loop's thread runs first)."""
    rig = Rig()
    pacer = StallingPacer(rig)
    loop = ControlLoop(clock=rig.clock, pacer=pacer, generator=rig.driver, gate=rig.gate, guidance=None,
                       realtime=False)
    for _ in range(3):
        assert loop.tick() == []
    assert rig.gate.request_output({1: 5.0}, rig.imaging())
    if watchdog_wakes_second:
        loop.realtime = True  # its check no longer runs inside the tick: the "thread" below does it
        evaluate = rig.gate.evaluate

        def evaluate_then_watchdog(imaging: ImagingStatus | None = None) -> list[Trip]:
            trips = evaluate(imaging)
            loop.watchdog.tick()
            return trips

        rig.gate.evaluate = evaluate_then_watchdog  # type: ignore[method-assign]
    return rig, loop, pacer


def overruns(trips: list[Trip]) -> list[str]:
    return [t.reason for t in trips if t.interlock is InterlockId.CONTROL_LOOP_OVERRUN]


def test_a_stall_the_watchdog_trips_first_comes_out_of_the_next_tick_once() -> None:
    _, loop, pacer = lesion_running(watchdog_wakes_second=False)
    pacer.stall_s = 0.03
    assert [r.split(" for ")[0] for r in overruns(loop.tick())] == ["watchdog: no loop kick"]
    assert overruns(loop.tick()) == []


def test_a_stall_both_see_comes_out_once_whichever_records_it_second() -> None:
    rig, loop, pacer = lesion_running(watchdog_wakes_second=True)
    pacer.stall_s = 0.03
    (reason,) = overruns(loop.tick())
    assert reason.endswith("since the last tick (limit 20 ms)"), "the evaluation's own, found first"
    assert rig.gate.take_trips_between_ticks() == []
    assert overruns(loop.tick()) == []


class _InterruptedPacer(StallingPacer):
    """Ctrl-C arrives while the loop waits for its next tick, once."""

    interrupt = False

    def sleep_until(self, t: float) -> None:
        if self.interrupt:
            self.interrupt = False
            self.rig.clock.sleep_until(t - 0.004)
            raise KeyboardInterrupt
        super().sleep_until(t)


def test_a_wait_cut_short_leaves_its_tick_due_so_the_next_tick_takes_its_place() -> None:
    """An operator's Ctrl-C lands in the loop's wait. The stop that follows ticks through its commit when the next
    tick is due; had the cut-short wait moved the schedule on, that would be a whole period late, and the watchdog
    would see two periods without a kick in the middle of an orderly stop."""
    rig = Rig()
    pacer = _InterruptedPacer(rig)
    loop = ControlLoop(clock=rig.clock, pacer=pacer, generator=rig.driver, gate=rig.gate, guidance=None,
                       realtime=False)
    for _ in range(3):
        loop.tick()
    kicked_at = rig.clock.now()
    pacer.interrupt = True
    with pytest.raises(KeyboardInterrupt):
        loop.tick()
    assert loop.until_next_tick_s() <= 0.0041, "the interrupted tick is still the one due, 4 ms on"
    assert overruns(loop.tick()) == []
    assert rig.clock.now() - kicked_at <= 0.0101, "the next tick took the interrupted one's place"
