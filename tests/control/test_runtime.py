"""The real-time runtime: no automatic collection while the loop runs, garbage collected in the slack,
a short GIL switch interval, and the interpreter put back exactly as it was found."""

from __future__ import annotations

import gc
import sys
import weakref
from collections.abc import Iterator

import pytest

from control.loop import ControlLoop
from control.runtime import FULL_EVERY, MIDDLE_EVERY, SWITCH_INTERVAL_S, LoopRuntime
from firmware_bridge.clock import RealClock, SimClock
from firmware_bridge.generator import RfGenerator
from firmware_bridge.transport import memory_pair
from safety.config import HARD_LIMITS
from safety.gate import OutputGate
from safety.plan import default_genicular_plan


class _Node:
    def __init__(self) -> None:
        self.other: _Node | None = None


def _cycle() -> weakref.ref[_Node]:
    """A reference cycle only a collection can free; returns a weak reference to watch it go."""
    a, b = _Node(), _Node()
    a.other, b.other = b, a
    return weakref.ref(a)


@pytest.fixture
def runtime() -> Iterator[LoopRuntime]:
    rt = LoopRuntime()
    rt.enter()
    try:
        yield rt
    finally:
        rt.exit()


def test_enter_turns_automatic_collection_off_freezes_and_shortens_the_switch_interval(runtime: LoopRuntime) -> None:
    assert not gc.isenabled()
    assert gc.get_freeze_count() > 0
    assert sys.getswitchinterval() == pytest.approx(SWITCH_INTERVAL_S)


def test_exit_restores_the_interpreter() -> None:
    before = (gc.isenabled(), sys.getswitchinterval())
    rt = LoopRuntime()
    rt.enter()
    rt.exit()
    assert (gc.isenabled(), sys.getswitchinterval()) == before
    assert gc.get_freeze_count() == 0
    rt.exit()  # a second exit changes nothing
    assert (gc.isenabled(), sys.getswitchinterval()) == before


def test_exit_leaves_collection_off_if_it_was_off_before() -> None:
    gc.disable()
    try:
        rt = LoopRuntime()
        rt.enter()
        rt.exit()
        assert not gc.isenabled()
    finally:
        gc.enable()


def test_a_second_real_time_loop_in_the_process_is_refused(runtime: LoopRuntime) -> None:
    with pytest.raises(RuntimeError, match="already runs"):
        LoopRuntime().enter()
    assert not gc.isenabled() and sys.getswitchinterval() == pytest.approx(SWITCH_INTERVAL_S)


def test_a_freeze_made_before_the_loop_is_left_in_place(monkeypatch: pytest.MonkeyPatch) -> None:
    # The count itself may drop a little meanwhile (a frozen object whose last reference goes is still
    # freed), so the test watches for the unfreeze call, then checks the frozen set was not emptied.
    unfreeze = gc.unfreeze
    unfrozen: list[bool] = []
    gc.freeze()
    try:
        with monkeypatch.context() as patch:
            patch.setattr(gc, "unfreeze", lambda: unfrozen.append(True))
            rt = LoopRuntime()
            rt.enter()
            rt.exit()
        assert unfrozen == []
        assert gc.get_freeze_count() > 0
    finally:
        unfreeze()


def test_nothing_collects_a_cycle_until_the_slack_does(runtime: LoopRuntime) -> None:
    watched = _cycle()
    for _ in range(2_000):  # plenty of allocations: an enabled collector would have run
        _Node()
    assert watched() is not None
    runtime.slack()
    assert watched() is None


def test_the_slack_collects_each_generation_on_its_turn(runtime: LoopRuntime, monkeypatch: pytest.MonkeyPatch) -> None:
    generations: list[int] = []

    def collect(generation: int = 2) -> int:
        generations.append(generation)
        return 0

    monkeypatch.setattr(gc, "collect", collect)
    for _ in range(FULL_EVERY):
        runtime.slack()
    assert generations.count(2) == 1 and generations[-1] == 2
    assert generations.count(1) == FULL_EVERY // MIDDLE_EVERY - 1
    assert generations[MIDDLE_EVERY - 1] == 1
    assert set(generations[: MIDDLE_EVERY - 1]) == {0}


def _tracked_ids() -> set[int]:
    """The objects a collection walks (the frozen ones are not among them)."""
    return {id(o) for o in gc.get_objects()}


def test_what_survives_a_full_pass_is_frozen_so_later_passes_do_not_walk_it(runtime: LoopRuntime) -> None:
    survivor: list[list[int]] = [[] for _ in range(3)]  # made while the loop runs, kept for the procedure
    assert id(survivor) in _tracked_ids()
    for _ in range(FULL_EVERY - 1):
        runtime.slack()
    assert id(survivor) in _tracked_ids()  # young and middle passes leave it to the full one
    runtime.slack()
    assert id(survivor) not in _tracked_ids()
    runtime.exit()
    assert id(survivor) in _tracked_ids()  # the loop gives it back to the collector when it stops


def test_a_cycle_frozen_by_a_full_pass_is_freed_once_the_loop_stops(runtime: LoopRuntime) -> None:
    a, b = _Node(), _Node()
    a.other, b.other = b, a
    watched = weakref.ref(a)
    for _ in range(FULL_EVERY):
        runtime.slack()  # the cycle is still referenced: it survives and is frozen
    del a, b
    for _ in range(FULL_EVERY):
        runtime.slack()
    assert watched() is not None  # the price of freezing survivors: the loop never walks them again
    runtime.exit()
    gc.collect()
    assert watched() is None


def test_outside_enter_the_slack_does_nothing(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[int] = []

    def collect(generation: int = 2) -> int:
        calls.append(generation)
        return 0

    monkeypatch.setattr(gc, "collect", collect)
    LoopRuntime().slack()
    assert calls == []


def _loop(clock: RealClock | SimClock, *, realtime: bool) -> ControlLoop:
    generator = RfGenerator(memory_pair("runtime")[0], clock)
    gate = OutputGate(generator, default_genicular_plan(), HARD_LIMITS, clock, record=lambda event: None)
    return ControlLoop(clock=clock, pacer=clock, generator=generator, gate=gate, guidance=None, realtime=realtime)


def test_a_real_time_loop_runs_under_the_runtime_and_gives_the_interpreter_back() -> None:
    loop = _loop(RealClock(), realtime=True)
    before = (gc.isenabled(), sys.getswitchinterval())
    loop.start()
    try:
        assert not gc.isenabled()
        assert sys.getswitchinterval() == pytest.approx(SWITCH_INTERVAL_S)
    finally:
        loop.stop()
    assert (gc.isenabled(), sys.getswitchinterval()) == before


def test_the_interpreter_is_restored_even_if_stopping_the_watchdog_is_interrupted(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    loop = _loop(RealClock(), realtime=True)
    before = (gc.isenabled(), sys.getswitchinterval())
    loop.start()

    def interrupted() -> None:
        raise KeyboardInterrupt

    real_stop = loop.watchdog.stop
    monkeypatch.setattr(loop.watchdog, "stop", interrupted)
    with pytest.raises(KeyboardInterrupt):
        loop.stop()
    real_stop()
    assert (gc.isenabled(), sys.getswitchinterval()) == before


def test_a_simulated_time_loop_leaves_the_interpreter_alone() -> None:
    loop = _loop(SimClock(), realtime=False)
    loop.start()
    try:
        assert loop.runtime is None
        assert gc.isenabled()
    finally:
        loop.stop()
