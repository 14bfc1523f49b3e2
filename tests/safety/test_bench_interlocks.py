"""The interlocks benchmark runs to the end and measures something (behaviour only: no wall-clock targets).

It measures the gate on a healthy link, so its fake generator must answer commands as a real one does: a bench
whose generator stayed silent tripped link_lost after ``COMMAND_ANSWER_S`` and ``rfa bench`` printed an error row
in place of its figures, with nothing else to notice it."""

from __future__ import annotations

import argparse
import io
import json
import math

from benchmarks import interlocks
from benchmarks.runner import run as run_benches
from safety import limits as hard

METRICS = [
    "tick_p50_ms",
    "tick_p99_ms",
    "tick_p99_fraction_of_period",
    "telemetry_decode_p50_ms",
    "tick_p50_vs_telemetry_decode",
]


def test_the_quick_interlocks_bench_prints_real_figures_and_no_error_row() -> None:
    out = io.StringIO()
    run_benches(argparse.Namespace(only=["interlocks"], quick=True, json=True), out)
    results = json.loads(out.getvalue())
    errors = [r for r in results if r["metric"] == "error"]
    assert not errors, errors[0]["detail"]
    assert [r["metric"] for r in results] == METRICS
    for r in results:
        assert r["bench"] == "interlocks"
        assert math.isfinite(r["value"]) and r["value"] > 0, r
    by_metric = {r["metric"]: r["value"] for r in results}
    assert by_metric["tick_p50_ms"] <= by_metric["tick_p99_ms"]
    # the ratio is against the reference measured in the same run
    assert math.isclose(
        by_metric["tick_p50_vs_telemetry_decode"],
        by_metric["tick_p50_ms"] / by_metric["telemetry_decode_p50_ms"],
    )


def test_the_bench_link_stays_healthy_well_past_the_command_answer_limit() -> None:
    """Ten times the answer limit: every tick evaluated and granted (the bench raises otherwise), each sample timed."""
    n_ticks = round(10 * hard.COMMAND_ANSWER_S / interlocks.PERIOD_S)
    samples = interlocks._gate_ticks(n_ticks)
    assert len(samples) == n_ticks and all(ns > 0 for ns in samples)
