"""The simulator as its own process, as the HIL tests start it: ``python -m sim --serial pty|tcp:PORT``."""

from __future__ import annotations

import select
import signal
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

START_TIMEOUT_S = 10.0
SIM_LIFETIME_S = 300.0
"""An upper bound on a simulator process's life, so one orphaned by a killed test run still ends."""


@dataclass
class SimProcess:
    """The simulator as its own process; ``url`` is the first line it printed."""

    process: subprocess.Popen[str]
    url: str

    def stop(self) -> tuple[int, str]:
        """SIGTERM, then the exit code and everything it printed after the URL."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
        try:
            out, _ = self.process.communicate(timeout=START_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            self.process.kill()
            out, _ = self.process.communicate()
        return self.process.returncode, out


def start_sim(serial: str, faults: Path | None = None) -> SimProcess:
    """``python -m sim`` on ``serial``, with the fault script ``faults`` if given; returns once it printed its URL."""
    process = subprocess.Popen(
        [sys.executable, "-m", "sim", "--serial", serial, "--report-s", "3600",
         "--duration-s", str(SIM_LIFETIME_S), *(["--faults", str(faults)] if faults is not None else [])],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    assert process.stdout is not None
    ready, _, _ = select.select([process.stdout], [], [], START_TIMEOUT_S)
    url = process.stdout.readline().strip() if ready else ""
    if not url:
        process.kill()
        _, err = process.communicate()
        raise RuntimeError(f"python -m sim --serial {serial} printed no URL; stderr: {err}")
    return SimProcess(process, url)
