"""A whole procedure, in real time, as the HIL engineer runs it: ``rfa run --generator URL --yes``.

Against ``--target sim`` the generator is ``python -m sim`` in its own process (pty and TCP); against
``--target hw`` it is the real generator, which must carry a 20 G, 10 mm electrode on channel 1.
The plan is short (a 60 °C lesion of 15 s) so the real-time run takes about half a minute.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from control.record import RecordReader
from hil_tests.sim_process import start_sim
from hil_tests.stall_witness import run_until_unspoiled

PLAN = """
name = "hil-short"
imaging_required = false

[stimulation]
max_amplitude_mv = 100

[[lesions]]
channel = 1
set_temp_c = 60.0
ramp_rate_c_per_s = 2.0
lesion_time_s = 15.0
power_cap_w = 20.0
impedance_min_ohm = 60.0
impedance_max_ohm = 800.0
[lesions.electrode]
gauge = 20
active_tip_mm = 10.0
"""


PERIOD_LIMIT_MS = 20.0
"""Two loop periods: the watchdog's limit, and what a real-time run's longest period must stay within."""
Outcome = tuple[subprocess.CompletedProcess[str], dict[str, Any]]


def rfa_run(command: list[str]) -> Outcome:
    """``rfa run ... --json``: the process and its result event."""
    run = subprocess.run([sys.executable, "-m", "control.cli", *command], capture_output=True, text=True,
                         timeout=180)
    events = [json.loads(line) for line in run.stdout.splitlines()]
    return run, events[-1] if events else {"message": run.stderr[-2000:]}


def broke_period(outcome: Outcome) -> float | None:
    """The longest period (s) of a run that broke its real-time period, else None."""
    longest_ms = (outcome[1].get("loop") or {}).get("longest_period_ms", 0.0)
    overrun = "control_loop_overrun" in str(outcome[1].get("message"))
    return max(longest_ms, PERIOD_LIMIT_MS) / 1e3 if longest_ms > PERIOD_LIMIT_MS or overrun else None


def test_a_short_procedure_completes_in_real_time(request: pytest.FixtureRequest, link: str,
                                                 tmp_path: Path) -> None:
    """A run the machine's own stall spoiled (hil_tests/stall_witness.py) is run again against a fresh
    simulator process, whose tissue has not been heated by it; on hardware it is not run again."""
    plan = tmp_path / "plan.toml"
    plan.write_text(PLAN)

    def attempt(url: str) -> Outcome:
        return rfa_run(["run", "--generator", url, "--probe", "none", "--plan", str(plan), "--yes", "--json",
                        "--record", str(tmp_path)])

    def against_a_fresh_simulator() -> Outcome:
        sim = start_sim(link)
        try:
            return attempt(sim.url)
        finally:
            sim.stop()

    if request.config.getoption("--target") == "hw":
        run, result = attempt(link)
    else:
        run, result = run_until_unspoiled(against_a_fresh_simulator, broke_period)
    assert run.returncode == 0, (result.get("message"), result.get("first_trip"), run.stderr[-2000:])
    (summary,) = result["summaries"]
    assert summary["tripped"] == ""
    assert summary["overshoot_c"] <= 2.0
    assert summary["hold_rms_error_c"] is not None and summary["hold_rms_error_c"] <= 1.0
    assert result["link"]["crc_errors"] == 0
    assert result["realtime"] and 0 < result["loop"]["longest_period_ms"] <= PERIOD_LIMIT_MS, result["loop"]
    reader = RecordReader(Path(result["record_path"]))
    assert reader.verify().ok
    # Real time at 100 Hz: the record holds about 100 telemetry frames (x 4 channels) per second of run.
    rows = list(reader.rows("telemetry"))
    span_s = rows[-1].mono - rows[0].mono
    assert len(rows) / 4 >= 0.95 * 100 * span_s


def test_a_guided_procedure_in_real_time_images_on_its_own_thread(tmp_path: Path) -> None:
    """In-process simulators in real time, imaging required: the probe is polled and its frames turned into
    B-mode on the guidance thread (control.guidance_thread), and the 10 ms loop still keeps its period."""
    plan = tmp_path / "plan.toml"
    plan.write_text(PLAN.replace("imaging_required = false", "imaging_required = true"))
    run, result = run_until_unspoiled(
        lambda: rfa_run(["run", "--realtime", "--plan", str(plan), "--yes", "--json", "--record", str(tmp_path)]),
        broke_period,
    )
    assert run.returncode == 0, (result.get("message"), result.get("first_trip"), run.stderr[-2000:])
    reader = RecordReader(Path(result["record_path"]))
    assert reader.verify().ok
    assert reader.count("guidance_error") == 0
    # An inhibit before the thread's first frame is expected (RF is refused until imaging is live); a trip is not.
    assert [row.payload for row in reader.rows("alarm") if row.payload["event"] == "trip"] == []
    frames = [row.payload for row in reader.rows("frame")]
    rf_frames = [f for f in frames if f["reason"] == "rf"]
    assert len(rf_frames) >= 15  # one a second during the 15 s lesion (and its ramp)
    assert all(f["tip_confidence"] >= 0.5 for f in rf_frames)
