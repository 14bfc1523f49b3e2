"""The control benchmark's helpers behave as its figures assume (behaviour only: no wall-clock timings)."""

from __future__ import annotations

from pathlib import Path

import pytest

from benchmarks.control import (
    IDLE_S,
    PERIOD_S,
    SCENARIOS,
    TripScenario,
    _CartClock,
    measure_ticks,
    measure_trip,
    paced_ticks,
    percentile,
    record_throughput,
    reference_after_idle,
    sample_ticks,
)
from control.record import RecordReader
from safety.interlocks import InterlockId


def test_percentile_is_nearest_rank_and_nan_when_empty() -> None:
    values = [5.0, 1.0, 3.0, 2.0, 4.0]
    assert percentile(values, 0.0) == 1.0
    assert percentile(values, 0.5) == 3.0
    assert percentile(values, 1.0) == 5.0
    assert percentile([], 0.5) != percentile([], 0.5)  # NaN


def test_the_tick_benchmarks_clock_moves_at_every_reading_and_steps_to_the_tick() -> None:
    """The request must come a moment after the tick's evaluation, as on the cart (a clock standing still let
    the gate answer it from the evaluation for free), and the pacer's steps still land on the tick's moment."""
    clock = _CartClock(5.0)
    first = clock.now()
    assert 5.0 < first < clock.now() < 5.001
    clock.sleep_until(7.0)
    assert 7.0 < clock.now() < 7.001


def test_every_interlock_has_one_scenario_and_any_other_way_to_trip_it_is_named() -> None:
    assert sorted({s.interlock for s in SCENARIOS}) == sorted(InterlockId)
    assert sorted(s.interlock for s in SCENARIOS if not s.variant) == sorted(InterlockId)
    assert len({s.name for s in SCENARIOS}) == len(SCENARIOS)


def _scenario(interlock: InterlockId, variant: str = "") -> TripScenario:
    return next(s for s in SCENARIOS if s.interlock is interlock and s.variant == variant)


@pytest.mark.parametrize("scenario", SCENARIOS, ids=lambda s: s.name)
def test_each_scenario_trips_its_own_interlock_after_its_onset(scenario: TripScenario) -> None:
    measured = measure_trip(scenario, late=True)
    assert measured.onset_s is not None, "the condition was never seen on the wire"
    assert measured.off_s is not None, f"no OUTPUT_OFF for the trip; trips: {measured.first_trips}"
    assert measured.latency_s is not None and measured.latency_s >= -1e-9


def test_a_frame_carried_trip_goes_out_in_the_tick_that_reads_the_frame() -> None:
    """Service before evaluate: aligned, the same instant; landing just after a read, one period later."""
    scenario = _scenario(InterlockId.OVER_TEMPERATURE)
    aligned, late = measure_trip(scenario, late=False), measure_trip(scenario, late=True)
    assert aligned.latency_s == pytest.approx(0.0, abs=1e-9)
    assert late.latency_s == pytest.approx(PERIOD_S, abs=1e-9)
    assert aligned.first_trips == ("over_temperature",)


def test_a_generator_that_hears_nothing_is_a_lost_link_within_a_period_of_the_answer_limit() -> None:
    for late in (False, True):
        measured = measure_trip(_scenario(InterlockId.LINK_LOST, "unanswered"), late=late)
        assert measured.latency_s is not None and 0.0 <= measured.latency_s <= PERIOD_S + 1e-9
        assert measured.first_trips[0] == "link_lost", measured.first_trips


def test_the_watchdog_stops_a_stalled_loop_within_half_a_period_of_its_limit() -> None:
    measured = measure_trip(_scenario(InterlockId.CONTROL_LOOP_OVERRUN), late=False)
    assert measured.latency_s is not None
    assert 0.0 <= measured.latency_s <= PERIOD_S / 2 + 1e-9


def test_tick_parts_add_up_to_no_more_than_the_tick(tmp_path: Path) -> None:
    samples = sample_ticks(50, tmp_path, warmup_ticks=5)
    assert len(samples.total) == 50
    for i, total in enumerate(samples.total):
        parts = [samples.parse[i], samples.interlocks_gate[i], samples.control_step[i], samples.record_append[i]]
        assert all(part >= 0 for part in parts)
        assert sum(parts) <= total
    # every tick reads a telemetry frame and queues its rows: a part that never ran would read 0
    assert all(samples.parse) and all(samples.record_append)


def test_the_whole_tick_is_timed_in_a_plain_run_and_its_parts_in_an_instrumented_one(tmp_path: Path) -> None:
    samples = measure_ticks(40, tmp_path)
    assert len(samples.total) == len(samples.instrumented_total) == len(samples.parse) == 40
    assert len(samples.housekeeping) == 40 and all(v >= 0 for v in samples.housekeeping)
    assert len(samples.reference) == 40 and all(v > 0 for v in samples.reference)
    records = sorted(tmp_path.glob("tick-*.rfa.db"))
    assert [p.name for p in records] == ["tick-parts.rfa.db", "tick-plain.rfa.db"]
    for path in records:  # both runs recorded the procedure as the cart does, telemetry and all
        reader = RecordReader(path)
        try:
            assert reader.verify().ok and reader.count("telemetry") >= 4 * 40
        finally:
            reader.close()


def test_record_throughput_commits_a_verifiable_record_with_durable_rows(tmp_path: Path) -> None:
    result = record_throughput(tmp_path, 0.2, durable_every=100)
    assert result.rows_committed > 0
    assert result.durable_ns and result.append_ns
    (path,) = tmp_path.glob("*.rfa.db")
    reader = RecordReader(path)
    try:
        assert reader.verify().ok
        assert reader.count("state") == len(result.durable_ns)
    finally:
        reader.close()


def test_paced_ticks_really_sleep_the_rest_of_each_period(tmp_path: Path) -> None:
    import time

    n = 5
    started = time.monotonic()
    samples = paced_ticks(n, tmp_path)
    elapsed = time.monotonic() - started
    assert len(samples.total) == n and all(v > 0 for v in samples.total)
    assert elapsed >= (50 + n) * IDLE_S  # the warm-up ticks are paced too
    assert [p.name for p in (tmp_path / "paced").glob("*.rfa.db")] == ["tick-plain.rfa.db"]
    reference = reference_after_idle(3)
    assert len(reference) == 3 and all(v > 0 for v in reference)
