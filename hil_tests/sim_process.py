"""The simulator as its own process, as the HIL tests start it: ``python -m sim --serial pty|tcp:PORT``."""

from __future__ import annotations

import signal
import subprocess
import sys
import threading
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
    probe_url: str | None = None
    """``tcp:HOST:PORT`` of the simulated probe, when the process serves one (``--probe``)."""

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


def _first_lines(process: subprocess.Popen[str], count: int) -> list[str]:
    """The first ``count`` lines the process prints, or fewer if it has not printed them within the start timeout
    (a reader thread: select() on the pipe would miss a line already in the file's buffer)."""
    lines: list[str] = []

    def read() -> None:
        assert process.stdout is not None
        for _ in range(count):
            lines.append(process.stdout.readline().strip())

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    reader.join(START_TIMEOUT_S)
    return lines[:count]


def start_sim(serial: str, faults: Path | None = None, *, probe: bool = False) -> SimProcess:
    """``python -m sim`` on ``serial``, with the fault script ``faults`` if given and serving the simulated probe
    if ``probe``; returns once it printed its URL (and the probe's)."""
    process = subprocess.Popen(
        [sys.executable, "-m", "sim", "--serial", serial, "--report-s", "3600", "--duration-s", str(SIM_LIFETIME_S),
         *(["--faults", str(faults)] if faults is not None else []), *(["--probe", "tcp:0"] if probe else [])],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    lines = _first_lines(process, 2 if probe else 1)
    if len(lines) < (2 if probe else 1) or not all(lines):
        process.kill()
        _, err = process.communicate()
        raise RuntimeError(f"python -m sim --serial {serial} printed {lines}, not its URLs; stderr: {err}")
    return SimProcess(process, lines[0], lines[1].removeprefix("probe ") if probe else None)
