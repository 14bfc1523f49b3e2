"""The HIL suite's command line: what ``--target hw --generator URL`` runs, and what it refuses.

Each check runs pytest on ``hil_tests/`` in a child process with ``--setup-plan``: the plan of what would run
and what is left out, without running a test or opening the URL (which nothing listens on).
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
NOBODY = "socket://127.0.0.1:9"
"""A generator URL nothing answers: a plan never opens it."""
IN_PROCESS_RUN = "test_a_guided_procedure_in_real_time_images_on_its_own_thread"
ON_ANY_GENERATOR = "test_a_short_procedure_completes_in_real_time"
GUIDED = "test_a_guided_procedure_images_through_the_targets_probe"
PROBE = "usb:1234:5678"
"""A probe nothing answers as either: a plan never opens it."""


def hil_pytest(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "--setup-plan", *args],
                          cwd=ROOT, capture_output=True, text=True, timeout=120, stdin=subprocess.DEVNULL)


def test_against_hardware_a_test_of_the_in_process_simulator_is_left_out_and_the_run_says_why() -> None:
    """`rfa run --realtime` reaches no generator of the target: a hardware report must not count its pass."""
    run = hil_pytest("hil_tests/test_procedure.py", "--target", "hw", "--generator", NOBODY,
                     "-k", f"{IN_PROCESS_RUN} or {ON_ANY_GENERATOR}")
    assert run.returncode == 0, run.stdout + run.stderr
    assert f"::{ON_ANY_GENERATOR}[{NOBODY}] (fixtures used" in run.stdout, run.stdout
    assert f"::{IN_PROCESS_RUN} (fixtures used" not in run.stdout, "planned to run against the hardware"
    assert "deselected" in run.stdout and "skipped" not in run.stdout, run.stdout
    assert "test(s) not run against the hardware" in run.stdout, run.stdout
    listed = [line for line in run.stdout.splitlines()
              if line.startswith(f"hil_tests/test_procedure.py::{IN_PROCESS_RUN}:")]
    assert listed and "in-process simulator" in listed[0], run.stdout


def test_against_the_simulator_every_test_is_planned_and_none_is_listed_as_left_out() -> None:
    run = hil_pytest("hil_tests/test_procedure.py", "-k", IN_PROCESS_RUN)
    assert run.returncode == 0 and "skipped" not in run.stdout, run.stdout
    assert "not run against the hardware" not in run.stdout


def test_a_generator_url_without_the_hardware_target_is_a_usage_error() -> None:
    """Ignored, it would have run every test against the simulator and reported that as the generator's run."""
    run = hil_pytest("hil_tests", "--generator", NOBODY)
    assert run.returncode == 4, run.stdout + run.stderr  # pytest's exit code for a usage error
    assert run.stderr.strip() == f"ERROR: --generator {NOBODY} needs --target hw (without it the tests run against " \
                                 "the simulator process, not that generator)"


def test_the_hardware_target_without_a_generator_url_is_a_usage_error_not_a_traceback() -> None:
    run = hil_pytest("hil_tests", "--target", "hw")
    assert run.returncode == 4, run.stdout + run.stderr
    assert run.stderr.strip() == "ERROR: --target hw needs --generator URL (the real generator's pyserial URL)"
    assert "Traceback" not in run.stdout + run.stderr


def test_against_hardware_the_guided_procedure_needs_the_probe_and_without_it_the_run_says_why() -> None:
    without = hil_pytest("hil_tests/test_procedure.py", "--target", "hw", "--generator", NOBODY,
                         "-k", f"{GUIDED} or {ON_ANY_GENERATOR}")
    assert without.returncode == 0, without.stdout + without.stderr
    assert f"::{GUIDED} (fixtures used" not in without.stdout, "planned without a probe"
    assert f"hil_tests/test_procedure.py::{GUIDED}: it images through the probe: give --probe usb:VID:PID" in \
        without.stdout, without.stdout
    with_probe = hil_pytest("hil_tests/test_procedure.py", "--target", "hw", "--generator", NOBODY, "--probe", PROBE,
                            "-k", GUIDED)
    assert with_probe.returncode == 0, with_probe.stdout + with_probe.stderr
    assert f"::{GUIDED} (fixtures used" in with_probe.stdout, with_probe.stdout
    assert "not run against the hardware" not in with_probe.stdout


def test_against_the_simulator_the_guided_procedure_is_planned_and_a_probe_is_a_usage_error() -> None:
    run = hil_pytest("hil_tests/test_procedure.py", "-k", GUIDED)
    assert run.returncode == 0 and f"::{GUIDED} (fixtures used" in run.stdout, run.stdout
    refused = hil_pytest("hil_tests", "--probe", PROBE)
    assert refused.returncode == 4, refused.stdout + refused.stderr
    assert refused.stderr.strip() == f"ERROR: --probe {PROBE} needs --target hw (the simulator process serves its " \
                                     "own probe)"
