"""The HIL tests' stall witness: a run that broke its period is run again only if the machine stopped."""

from __future__ import annotations

import random
import time

import pytest

from hil_tests.stall_witness import (
    ATTEMPTS,
    STALL_S,
    BrokenPeriod,
    StallWitness,
    run_until_unspoiled,
    stall_needed_s,
)

pytestmark = pytest.mark.realtime  # a machine stall where none may be would change the verdict: run alone (Makefile)


def hold_the_interpreter() -> None:
    """Stop every other thread of this process for well over ``STALL_S``: one C call that keeps the GIL."""
    values = [random.random() for _ in range(400_000)]
    sorted(values)


UNEXPLAINABLE_S = 1.0
"""A broken period only a second's stop of the machine could explain: where a test needs a break the witness sees
nothing to explain, for a 25 ms one a 5 ms hiccup of this VM during the attempt did (CI, 2026-11-24)."""


def not_judged_as_stalled(run: object) -> None:
    raise AssertionError(f"{run!r} judged as a stall: every attempt was spoiled")


def test_the_witness_notes_no_gap_that_did_not_happen() -> None:
    """Its naps themselves are not stalls (a threshold no VM hiccup reaches, so this cannot flake)."""
    with StallWitness(stall_s=0.5) as witness:
        time.sleep(0.2)
    assert witness.stalls_s == []


def test_the_witness_sees_its_process_stop() -> None:
    with StallWitness() as witness:
        time.sleep(0.01)
        hold_the_interpreter()
    assert witness.longest_s >= STALL_S


def test_a_run_that_kept_its_period_is_judged_as_it_is_even_through_a_stall() -> None:
    runs = []

    def attempt() -> int:
        runs.append(1)
        hold_the_interpreter()
        return len(runs)

    assert run_until_unspoiled(attempt, lambda n: None, not_judged_as_stalled) == 1


def test_a_run_that_broke_its_period_during_a_stall_is_run_again_and_the_retry_is_reported() -> None:
    runs: list[int] = []

    def attempt() -> int:
        runs.append(1)
        if len(runs) == 1:
            hold_the_interpreter()
        return len(runs)

    with pytest.warns(UserWarning, match="spoiled by a machine stall"):
        assert run_until_unspoiled(attempt, lambda n: BrokenPeriod(0.025) if n == 1 else None,
                                   not_judged_as_stalled) == 2


def test_a_loop_that_breaks_its_period_every_time_with_no_stall_is_returned_to_fail() -> None:
    runs: list[int] = []

    def attempt() -> int:
        runs.append(1)
        return len(runs)

    with pytest.warns(UserWarning, match="no machine stall to explain it") as said:
        slow = run_until_unspoiled(attempt, lambda run: BrokenPeriod(UNEXPLAINABLE_S), not_judged_as_stalled)
    assert slow == ATTEMPTS, "every attempt made, the last returned to fail"
    assert len(said) == ATTEMPTS


def test_a_run_that_broke_its_period_once_with_no_stall_is_run_again_and_reported() -> None:
    """About one real-time run in ten on the development VM broke its period by a few ms with nothing the witness
    saw; the same test then passed 10 runs of 10. It is run again, and said."""
    runs: list[int] = []

    def attempt() -> int:
        runs.append(1)
        return len(runs)

    with pytest.warns(UserWarning, match="no machine stall to explain it"):
        kept = run_until_unspoiled(attempt, lambda n: BrokenPeriod(UNEXPLAINABLE_S) if n == 1 else None,
                                   not_judged_as_stalled)
    assert kept == 2


def test_unexplained_and_spoiled_runs_together_fail_on_the_unexplained_one() -> None:
    """Every run broke its period, one with nothing to explain it: that one is returned to fail, not judged as a
    stall."""
    runs: list[int] = []

    def attempt() -> int:
        runs.append(1)
        if len(runs) > 1:
            hold_the_interpreter()
        return len(runs)

    with pytest.warns(UserWarning):
        assert run_until_unspoiled(attempt, lambda run: BrokenPeriod(UNEXPLAINABLE_S if run == 1 else 0.025),
                                   not_judged_as_stalled) == 1


def test_a_stall_too_short_to_explain_the_overrun_does_not_excuse_it() -> None:
    """A 1 s period needs the machine to have stopped ~1 s: a hiccup of some tens of ms is not that."""
    runs: list[int] = []

    def attempt() -> int:
        runs.append(1)
        hold_the_interpreter()
        return len(runs)

    with pytest.warns(UserWarning, match="no machine stall to explain it"):
        assert run_until_unspoiled(attempt, lambda n: BrokenPeriod(1.0), not_judged_as_stalled) == ATTEMPTS


def test_the_stall_needed_is_the_overrun_less_a_period_and_the_loops_own_jitter() -> None:
    assert stall_needed_s(0.021) == STALL_S
    assert stall_needed_s(0.06296) == pytest.approx(0.04296)  # the 62.96 ms run: the witness saw 52.5 ms


def test_every_attempt_spoiled_judges_the_last_as_a_stall_and_says_so() -> None:
    judged: list[int] = []
    runs: list[int] = []

    def attempt() -> int:
        runs.append(1)
        hold_the_interpreter()
        return len(runs)

    with pytest.warns(UserWarning) as said:
        assert run_until_unspoiled(attempt, lambda run: BrokenPeriod(0.025), judged.append, attempts=2) is None
    assert judged == [2], "the last run, and only it"
    assert "every one of 2 real-time runs was spoiled" in str(said[-1].message)


def test_a_stall_ending_that_is_wrong_fails_the_test() -> None:
    def wrong(run: None) -> None:
        raise AssertionError("no overrun tripped")

    with pytest.warns(UserWarning), pytest.raises(AssertionError, match="no overrun tripped"):
        run_until_unspoiled(hold_the_interpreter, lambda run: BrokenPeriod(0.025), wrong, attempts=1)


def test_a_stall_outside_the_period_that_broke_does_not_excuse_it() -> None:
    """The stall is long enough but over before the broken period began: it explains nothing. A 45 ms period needs a
    25 ms stall, which the interpreter held for ~0.1 s is and the machine's own hiccups, in the 65 ms that count, are
    not (with a 25 ms period any 5 ms hiccup there excused it: one run in the suite's parallel part did)."""
    runs: list[int] = []

    def attempt() -> float:
        runs.append(1)
        hold_the_interpreter()
        time.sleep(0.2)
        return time.monotonic()  # the overrun's trip, 200 ms after the stall ended

    with pytest.warns(UserWarning, match="no machine stall to explain it"):
        ended = run_until_unspoiled(attempt, lambda at: BrokenPeriod(0.045, ended_at=at), not_judged_as_stalled)
    assert len(runs) == ATTEMPTS, "never excused: every attempt made, the last returned to fail"
    assert ended is not None and ended > 0


def test_a_stall_within_the_period_that_broke_excuses_it() -> None:
    runs: list[int] = []

    def attempt() -> float:
        runs.append(1)
        if len(runs) == 1:
            hold_the_interpreter()
        return time.monotonic()  # the overrun's trip, as the stall ends

    with pytest.warns(UserWarning, match="spoiled by a machine stall"):
        run_until_unspoiled(attempt, lambda at: BrokenPeriod(0.025, ended_at=at) if len(runs) == 1 else None,
                            not_judged_as_stalled)
    assert len(runs) == 2


def test_the_longest_stall_is_the_longest_gap_anywhere() -> None:
    witness = StallWitness()
    witness.stalls = [(1.0, 1.02), (2.0, 2.05), (3.0, 3.006)]
    assert witness.longest_s == pytest.approx(0.05)


def test_the_time_stopped_during_a_span_is_the_union_of_every_cpus_gaps_within_it() -> None:
    """Two CPUs stopping one after the other hold the loop for both; overlapping gaps count once."""
    witness = StallWitness()
    witness.stalls = [(1.000, 1.012), (1.010, 1.024), (1.030, 1.036), (0.990, 0.995), (2.0, 2.1)]
    assert witness.stalled_during_s(1.0, 1.04) == pytest.approx(0.024 + 0.006)
    assert witness.stalled_during_s(1.005, 1.02) == pytest.approx(0.015)  # clipped to the span
    assert witness.stalled_during_s(0.98, 1.001) == pytest.approx(0.005 + 0.001)
    assert witness.stalled_during_s(1.5, 1.9) == 0.0
    assert max(b - a for a, b in witness.stalls[:3]) == pytest.approx(0.014), "no single gap is that long"
