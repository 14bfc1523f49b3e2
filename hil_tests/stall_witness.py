"""Tell a machine that stopped from a loop that was slow, so a real-time test fails only for the second.

A real-time run must keep its 10 ms period: a period over 20 ms trips ``control_loop_overrun`` under
power (a hard limit, as it must be), and the tests fail on it. But on a shared VM every process is now and
then frozen for tens of milliseconds by the host. Measured on the development VM (2026-11-23, 15 guided
real-time runs): the loop's watchdog saw no kick for 62.2 ms, and at the same moment an unrelated process
that did nothing but sleep 1 ms at a time saw a 52.5 ms gap; once in about ten runs. No code in the
procedure can keep its period through that, and a product that kept output on through it would be wrong.

So the witness is independent of the procedure: threads of the *test's* process (the procedure runs in a
subprocess), one pinned to each CPU the test may use, that sleep 1 ms at a time and note every gap over
``STALL_S`` with when it happened. One thread per CPU because a VM's CPUs stop one at a time as well as
together: in CI (2026-11-23) a guided run broke its period at 21.1 ms while the one unpinned witness of then
saw no gap over 10 ms; with one witness per CPU, in 12 guided runs on the development VM the same evening,
one CPU's witness saw gaps of 10-41 ms that the other CPU's did not.

A run is *spoiled*, not failed, only if the machine stopped, during the period that broke, long enough to
explain how far it broke: a loop period is 10 ms plus whatever held the loop; a loop that keeps to its own
budget is held at most another 10 ms (the watchdog's limit), so a longest period of L needs a stall of at
least L − 20 ms, and never less than ``STALL_S`` (shorter gaps are scheduling noise any sleeping thread sees).
The period that broke is known from the run's result (when its longest period ended, on the same monotonic
clock as the witness's); a stall elsewhere in the run explains nothing. What counts is the time in that period
during which the witness saw *any* CPU stopped, not the longest single gap: a CPU that stops holds the loop
whether the loop runs on it or the thread holding the interpreter lock does, so two CPUs stopping one after
the other hold it for both (2026-11-24, a noisy day: six external-simulator runs in a row broke their
period; around their longest periods one CPU's longest gap was 10-16 ms, both CPUs' together 16-21 ms).
A stall that does not explain the overrun does not excuse it: a loop that regressed fails. A run that broke its period
is run again (:func:`run_until_unspoiled`), each time reported as a warning naming the stall, or saying that nothing
explained it. If every one of ``ATTEMPTS``
runs is spoiled, the machine stopped too often to measure a 10 ms loop on it, and the last run is judged for
what a stall must produce instead (the test's ``stalled``: the overrun tripped, the procedure ended in fault,
its record intact); the test ends there, with a warning naming every stall. Measured on the development VM
(2026-11-23 evening): idle, with nothing of ours running, the host stole 6 % of its two CPUs (``steal`` in
/proc/stat: 178 ticks in 15 s) and one 1 ms sleeper saw gaps up to 15.7 ms; 18 guided real-time runs in a row
broke their period, each during a stall of 5.8-77.9 ms that the witness saw in that very period. A run that
broke its period without such a stall is never excused: if every attempt broke it, one such run is returned and
fails (a regressed loop breaks it every time; a rare unexplained break, then kept, passes with its warning: see
:func:`run_until_unspoiled`). On real hardware nothing is retried: a retry would be a second lesion, and a cart
that stalls must be fixed, not excused.

What the witness cannot tell: a stall caused by the procedure's own processes starving the machine (on
this VM a guided real-time run takes about half of one of its two cores, so it does not).
"""

from __future__ import annotations

import contextlib
import os
import threading
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from typing import Final, TypeVar

STALL_S: Final = 0.005
"""Half a period: a gap shorter than this is scheduling noise, not a machine that stopped."""
JITTER_ALLOWANCE_S: Final = 0.020
"""A period and the loop's own jitter: what part of a longest period a stall need not explain."""
NAP_S: Final = 0.001
PERIOD_MARGIN_S: Final = 0.010
"""How far either side of the broken period a stall still counts: the trip's row is written just after the tick
(or the watchdog's check) that found it, and a stall may end as the period does."""
ATTEMPTS: Final = 3

T = TypeVar("T")


@dataclass(frozen=True)
class BrokenPeriod:
    """How a real-time run broke its period: its longest period, and when that period ended if known."""

    longest_s: float
    ended_at: float | None = None
    """``time.monotonic()`` when that period ended, or None if unknown: then a stall anywhere in the run counts."""


class StallWitness:
    """Notes every gap over ``stall_s`` in its 1 ms sleeps, on each CPU, while it runs (a context manager)."""

    def __init__(self, stall_s: float = STALL_S) -> None:
        self.stall_s = stall_s
        self.stalls: list[tuple[float, float]] = []
        """(start, end) of each gap, ``time.monotonic()``: the clock the procedure's record uses."""
        self._stop = threading.Event()
        self._threads = [threading.Thread(target=self._watch, args=(cpu,), name=f"stall-witness-{cpu}", daemon=True)
                         for cpu in sorted(os.sched_getaffinity(0))]

    def __enter__(self) -> StallWitness:
        for thread in self._threads:
            thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join()

    @property
    def stalls_s(self) -> list[float]:
        return [end - start for start, end in self.stalls]

    @property
    def longest_s(self) -> float:
        return max(self.stalls_s, default=0.0)

    def stalled_during_s(self, start: float, end: float) -> float:
        """How much of ``[start, end]`` some CPU was stopped: the union of the gaps, clipped to it."""
        total, covered_to = 0.0, start
        for a, b in sorted((max(a, start), min(b, end)) for a, b in self.stalls if a < end and b > start):
            if b > covered_to:  # the part of this gap no earlier one covered
                total += b - max(a, covered_to)
                covered_to = b
        return total

    def _watch(self, cpu: int) -> None:
        with contextlib.suppress(OSError):  # not allowed to pin: watch from wherever the scheduler puts it
            os.sched_setaffinity(0, {cpu})  # 0: the calling thread
        last = time.monotonic()
        while not self._stop.wait(NAP_S):
            now = time.monotonic()
            if now - last > self.stall_s:
                self.stalls.append((last, now))  # list.append is atomic: the threads share the list
            last = now


def stall_needed_s(longest_period_s: float) -> float:
    """How long the machine must have stopped for a run's longest period to be its doing, not the loop's."""
    return max(STALL_S, longest_period_s - JITTER_ALLOWANCE_S)


def explaining_stall_s(witness: StallWitness, broken: BrokenPeriod) -> float:
    """How long the witness saw the machine stopped (some CPU) during the period that broke; if its end is unknown,
    the longest gap anywhere in the run."""
    if broken.ended_at is None:
        return witness.longest_s
    return witness.stalled_during_s(broken.ended_at - broken.longest_s - PERIOD_MARGIN_S,
                                    broken.ended_at + PERIOD_MARGIN_S)


def run_until_unspoiled(attempt: Callable[[], T], broke_period: Callable[[T], BrokenPeriod | None],
                        stalled: Callable[[T], None], attempts: int = ATTEMPTS) -> T | None:
    """Run ``attempt`` under a witness until a run keeps its real-time period; return that run.

    ``broke_period`` says how a run broke its real-time period, or None if it kept it. A run that broke it is run
    again, at most ``attempts`` times in all, each time with a warning that says whether the witness saw the
    machine stop for :func:`stall_needed_s` of that period (spoiled) or saw nothing to explain it. A loop that
    regressed breaks its period every time: if every run broke it and any of them with nothing to explain it,
    the last such run is returned for the test to judge, and it fails. If every run was spoiled, the last is
    judged by ``stalled`` (what a stall must produce) and None is returned: the test has nothing else to judge.

    Why an unexplained break is run again rather than failed at once: on the development VM about one real-time
    run in ten to fifteen broke its period (20.5-34.3 ms, the limit 20 ms) with the witness seeing too little to
    explain it, every time in a different test, and the one tried again passed 10 runs of 10;
    one cause the witness cannot see is the guest descheduling only the thread that holds the interpreter lock in
    the procedure's process. Each such break is still reported, and three in a row fail."""
    spoiled: list[str] = []
    unexplained: list[T] = []
    for _ in range(attempts):
        with StallWitness() as witness:
            result = attempt()
        broken = broke_period(result)
        if broken is None:
            return result
        stall_s = explaining_stall_s(witness, broken)
        seen = f"longest period {broken.longest_s * 1e3:.1f} ms while the machine stalled {stall_s * 1e3:.1f} ms"
        if stall_s < stall_needed_s(broken.longest_s):
            unexplained.append(result)
            warnings.warn(f"real-time run broke its period with no machine stall to explain it: {seen}; run again "
                          f"(the test fails if every one of {attempts} runs breaks it)", stacklevel=2)
            continue
        spoiled.append(seen)
        warnings.warn(f"real-time run spoiled by a machine stall, run again: {seen} (seen by independent threads of "
                      "the test process, not the procedure's)", stacklevel=2)
    if unexplained:
        return unexplained[-1]
    warnings.warn(f"every one of {attempts} real-time runs was spoiled by a machine stall in the period it broke "
                  f"({spoiled}): the last is judged for a stall's ending instead", stacklevel=2)
    stalled(result)
    return None
