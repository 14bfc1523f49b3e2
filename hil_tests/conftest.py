"""Hardware-in-the-loop fixtures: the same tests against the simulator process or the real generator.

``--target sim`` (default) starts ``python -m sim`` in its own process, once on a pty and once on TCP,
and hands the tests its URL, so the driver meets real time, a real kernel transport and a peer it
cannot reach into. ``--target hw --generator URL`` points the same tests at a real generator; tests
marked ``sim_only`` (they kill the peer) are deselected there.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from hil_tests.sim_process import SimProcess, start_sim


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
