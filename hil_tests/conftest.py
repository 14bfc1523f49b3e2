"""Hardware-in-the-loop fixtures: the same tests against the simulator process or the real generator.

``--target sim`` (default) starts ``python -m sim`` in its own process, once on a pty and once on TCP,
and hands the tests its URL, so the driver meets real time, a real kernel transport and a peer it
cannot reach into. ``--target hw --generator URL`` points the same tests at a real generator, and ``--probe
usb:VID:PID`` adds the real probe for the guided procedure (marked ``needs_probe``); tests
marked ``sim_only`` (they kill or inspect the peer, or run a simulator of their own), and ``needs_probe`` ones
without ``--probe``, are left out there
(deselected: they do not apply to a generator, so they are not counted as skipped), and the run ends by listing
each with its reason, so that a hardware report never counts a simulator's pass
and says what it did not cover. One of ``--target hw`` and ``--generator`` without the other, or ``--probe``
without ``--target hw``, is a usage error (pytest's exit code 4), before anything is collected.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Final

import pytest

from hil_tests.sim_process import SimProcess, start_sim

SIM_ONLY_REASON: Final = "needs the simulator process (it is killed or inspected)"
"""Why a ``sim_only`` test is not run against hardware, unless its marker gives its own ``reason``."""
NO_PROBE_REASON: Final = "it images through the probe: give --probe usb:VID:PID"
_NOT_RUN_ON_HARDWARE: Final = pytest.StashKey[list[tuple[str, str]]]()


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("hil", "hardware-in-the-loop")
    group.addoption("--target", choices=["sim", "hw"], default="sim",
                    help="run hil_tests against the simulator process (default) or real hardware")
    group.addoption("--generator", metavar="URL", help="pyserial URL of the real generator (--target hw)")
    group.addoption("--probe", metavar="TARGET",
                    help="the real ultrasound probe, usb:VID:PID (or tcp:HOST:PORT, a probe `rfa sim --probe` "
                         "serves), as `rfa run --probe` takes it (--target hw; without it the guided procedure is "
                         "not run against the hardware)")


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", f"sim_only(reason=...): runs only against --target sim (default reason: "
                                       f"{SIM_ONLY_REASON})")
    config.addinivalue_line("markers", f"needs_probe: against --target hw, runs only with --probe ({NO_PROBE_REASON})")
    target, url = config.getoption("--target"), config.getoption("--generator")
    # Refused before collection: a usage error is one line, where a refusal while parametrizing was a traceback,
    # and a URL given without --target hw was ignored (every test ran against the simulator instead).
    if target == "hw" and not url:
        raise pytest.UsageError("--target hw needs --generator URL (the real generator's pyserial URL)")
    if url and target != "hw":
        raise pytest.UsageError(f"--generator {url} needs --target hw (without it the tests run against the "
                                "simulator process, not that generator)")
    probe = config.getoption("--probe")
    if probe and target != "hw":
        raise pytest.UsageError(f"--probe {probe} needs --target hw (the simulator process serves its own probe)")


@pytest.hookimpl(trylast=True)  # after -k and -m have deselected: list only what this run would have run
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if config.getoption("--target") != "hw":
        return
    not_run: list[tuple[str, str]] = []
    kept: list[pytest.Item] = []
    left_out: list[pytest.Item] = []
    probe_given = bool(config.getoption("--probe"))
    for item in items:
        marker = item.get_closest_marker("sim_only")
        if marker is not None:
            left_out.append(item)
            not_run.append((item.nodeid, str(marker.kwargs.get("reason", SIM_ONLY_REASON))))
        elif item.get_closest_marker("needs_probe") is not None and not probe_given:
            left_out.append(item)
            not_run.append((item.nodeid, NO_PROBE_REASON))
        else:
            kept.append(item)
    if left_out:
        config.hook.pytest_deselected(items=left_out)
        items[:] = kept
    config.stash[_NOT_RUN_ON_HARDWARE] = not_run


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter, config: pytest.Config) -> None:
    """Against hardware, every test left out and why (pytest's own summary only counts the deselected)."""
    not_run = config.stash.get(_NOT_RUN_ON_HARDWARE, [])
    if not_run:
        terminalreporter.section(f"{len(not_run)} test(s) not run against the hardware")
        for nodeid, reason in not_run:
            terminalreporter.line(f"{nodeid}: {reason}")


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    """Simulator: every link test on a pty and on TCP. Hardware: once, on ``--generator``."""
    if "link" in metafunc.fixturenames:
        config = metafunc.config
        if config.getoption("--target") == "hw":
            metafunc.parametrize("link", [config.getoption("--generator")])
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
