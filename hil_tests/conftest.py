"""Hardware-in-the-loop fixtures: the same tests against the simulator process or the real generator.

``--target sim`` (default) starts ``python -m sim`` in its own process, once on a pty and once on TCP,
and hands the tests its URL, so the driver meets real time, a real kernel transport and a peer it
cannot reach into. ``--target hw --generator URL`` points the same tests at a real generator; tests
marked ``sim_only`` (they kill the peer) are deselected there.
"""

from __future__ import annotations

import select
import signal
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass

import pytest

START_TIMEOUT_S = 10.0
SIM_LIFETIME_S = 300.0
"""An upper bound on a simulator process's life, so one orphaned by a killed test run still ends."""


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("hil", "hardware-in-the-loop")
    group.addoption("--target", choices=["sim", "hw"], default="sim",
                    help="run hil_tests against the simulator process (default) or real hardware")
    group.addoption("--generator", metavar="URL", help="pyserial URL of the real generator (--target hw)")


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "sim_only: needs the simulator process (it is killed or inspected)")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if config.getoption("--target") != "hw":
        return
    keep = [item for item in items if item.get_closest_marker("sim_only") is None]
    dropped = [item for item in items if item.get_closest_marker("sim_only") is not None]
    if dropped:
        config.hook.pytest_deselected(items=dropped)
        items[:] = keep


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


def start_sim(serial: str) -> SimProcess:
    process = subprocess.Popen(
        [sys.executable, "-m", "sim", "--serial", serial, "--report-s", "3600",
         "--duration-s", str(SIM_LIFETIME_S)],
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


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    """Simulator: every link test on a pty and on TCP. Hardware: once, on ``--generator``."""
    if "link" in metafunc.fixturenames:
        config = metafunc.config
        if config.getoption("--target") == "hw":
            url = config.getoption("--generator")
            if not url:
                raise pytest.UsageError("--target hw needs --generator URL")
            metafunc.parametrize("link", [url])
        else:
            metafunc.parametrize("link", ["pty", "tcp:0"])


@pytest.fixture
def sim_process(link: str) -> Iterator[SimProcess]:
    """A fresh simulator process serving on ``link`` (``pty`` or ``tcp:PORT``)."""
    sim = start_sim(link)
    yield sim
    sim.stop()


@pytest.fixture
def generator_url(request: pytest.FixtureRequest, link: str) -> str:
    """The URL of the generator under test: a fresh simulator process's, or ``--generator``."""
    if request.config.getoption("--target") == "hw":
        return link
    sim: SimProcess = request.getfixturevalue("sim_process")
    return sim.url
