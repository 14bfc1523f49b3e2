"""The simulator's server endpoints with the real driver, through the kernel (pty and TCP), in-process.

The server runs in a thread on the real clock; the checks are about connections, not timing (the
timed contract checks are in hil_tests/, against the simulator in its own process): a host can
connect, talk, leave and come back, the counters are printed, and a vanished endpoint is a LinkError.
"""

from __future__ import annotations

import io
import json
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator

import pytest

from control import cli
from firmware_bridge.clock import RealClock
from firmware_bridge.errors import LinkError
from firmware_bridge.generator import RfGenerator
from firmware_bridge.messages import AckResult, SelfTest
from firmware_bridge.transport import Transport, open_transport
from sim.generator import SELF_TEST_ALL_PASSED, SimGenerator
from sim.link_faults import FaultyTransport, LinkFaultConfig
from sim.server import Endpoint, Server, open_endpoint

WAIT_S = 3.0


class Running:
    def __init__(self, spec: str, wrap: Callable[[Transport], Transport] | None = None) -> None:
        self.clock = RealClock()
        self.endpoint: Endpoint = open_endpoint(spec)
        self.sim = SimGenerator(None, self.clock, seed=1)
        self.out = io.StringIO()
        self.server = Server(self.sim, self.endpoint, self.clock, wrap=wrap, report_every_s=0.2, out=self.out)
        self.thread = threading.Thread(target=self.server.serve, daemon=True)
        self.thread.start()

    def stop(self) -> None:
        self.server.stop()
        self.thread.join(WAIT_S)
        self.endpoint.close()


def wait_for(driver: RfGenerator, predicate: Callable[[], bool], what: str) -> None:
    deadline = time.monotonic() + WAIT_S
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}; driver counters {driver.stats.as_dict()}")
        driver.service()
        time.sleep(0.002)


@pytest.fixture(params=["pty", "tcp:0"])
def running(request: pytest.FixtureRequest) -> Iterator[Running]:
    r = Running(request.param)
    yield r
    r.stop()


def connect(running: Running) -> RfGenerator:
    driver = RfGenerator(open_transport(running.endpoint.url), RealClock())
    wait_for(driver, lambda: driver.telemetry is not None, "telemetry")
    return driver


def test_self_test_over_the_kernel_transport(running: Running) -> None:
    driver = connect(running)
    try:
        seq = driver.request_self_test()
        wait_for(driver, lambda: driver.self_test_result is not None, "the self-test result")
        ack = driver.ack_for(SelfTest.MSG_ID, seq)
        assert ack is not None and ack.msg.result == AckResult.OK
        assert driver.self_test_result is not None
        assert driver.self_test_result.msg.checks_passed == SELF_TEST_ALL_PASSED
        assert driver.stats.crc_errors == 0
    finally:
        driver.close()


def test_a_host_can_leave_and_come_back(running: Running) -> None:
    first = connect(running)
    first.close()
    second = connect(running)
    try:
        seq = second.request_self_test()
        wait_for(second, lambda: second.ack_for(SelfTest.MSG_ID, seq) is not None, "an ACK")
        if running.endpoint.url.startswith("socket://"):
            wait_for(second, lambda: running.sim.counters.connections == 2, "the second connection")
            assert running.sim.counters.link_losses == 1
    finally:
        second.close()


def test_counters_are_printed_periodically_and_on_exit(running: Running) -> None:
    driver = connect(running)
    wait_for(driver, lambda: "counters: " in running.out.getvalue(), "a periodic report")
    driver.close()
    running.stop()
    lines = running.out.getvalue().splitlines()
    assert lines[-1].startswith("final counters: frames_ok=")
    assert any(line.startswith("counters: ") for line in lines[:-1])
    assert "watchdog_trips=" in lines[-1] and "bytes_discarded=" in lines[-1]


def test_endpoint_gone_is_a_link_error(running: Running) -> None:
    driver = connect(running)
    try:
        running.stop()
        with pytest.raises(LinkError):
            wait_for(driver, lambda: False, "the link error")
    finally:
        driver.close()


def test_link_faults_on_the_server_side_show_in_the_driver_counters() -> None:
    clock = RealClock()

    def wrap(t: Transport) -> Transport:
        return FaultyTransport(t, clock, LinkFaultConfig(corrupt_byte_prob=0.01), seed=5)

    r = Running("tcp:0", wrap=wrap)
    try:
        driver = connect(r)
        wait_for(driver, lambda: driver.stats.crc_errors + driver.stats.length_errors > 0, "corrupt frames")
        assert driver.stats.frames_ok > 0
        driver.close()
    finally:
        r.stop()


# -- the command line ----------------------------------------------------------------------------------
def test_rfa_sim_serves_for_a_duration_and_prints_url_then_counters(
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert cli.main(["sim", "--serial", "tcp:0", "--duration-s", "0.3", "--report-s", "0.1"]) == cli.EXIT_OK
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].startswith("socket://127.0.0.1:")
    assert lines[-1].startswith("final counters: ") and "ticks=" in lines[-1]


@pytest.mark.parametrize("command", [["-m", "sim"], ["-m", "control.cli", "sim"]], ids=["python -m sim", "rfa sim"])
def test_the_simulator_keeps_serving_once_its_stdout_reader_has_gone(command: list[str]) -> None:
    """``rfa sim --serial tcp:0 | head -1``: the script took the URL and its reader went away. The counters it then
    cannot print are dropped (said once on stderr); the generator stays up for the host given the URL."""
    sim = subprocess.Popen([sys.executable, *command, "--serial", "tcp:0", "--report-s", "0.1", "--duration-s", "60"],
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert sim.stdout is not None
        url = sim.stdout.readline().strip()
        sim.stdout.close()  # as `head -1` exits
        time.sleep(0.5)  # several reports fall on the closed pipe
        host, port = url.removeprefix("socket://").split(":")
        with socket.create_connection((host, int(port)), timeout=WAIT_S) as conn:
            conn.settimeout(WAIT_S)
            assert conn.recv(64), "telemetry from a generator still serving"
        sim.send_signal(signal.SIGTERM)
        _, err = sim.communicate(timeout=10)
    finally:
        sim.kill()
    assert sim.returncode == 0, err
    assert err == f"rfa sim: stdout was closed by its reader; counters are no longer printed, still serving on {url}\n"


def test_rfa_sim_serves_on_physical_tissue(capsys: pytest.CaptureFixture[str]) -> None:
    """The finite-difference model is compiled before the URL is printed, and the simulator ticks on it."""
    assert cli.main(["sim", "--serial", "tcp:0", "--tissue", "physical", "--duration-s", "0.3",
                     "--report-s", "0.1"]) == cli.EXIT_OK
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].startswith("socket://127.0.0.1:")
    assert lines[-1].startswith("final counters: ") and "ticks=" in lines[-1]


def test_rfa_bench_names_an_unknown_benchmark(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["bench", "--only", "no-such-bench"]) == cli.EXIT_USAGE
    assert "no-such-bench" in capsys.readouterr().err


def test_rfa_bench_parser_quick_json(capsys: pytest.CaptureFixture[str]) -> None:
    code = cli.main(["bench", "--only", "parser", "--quick", "--json"])
    results = json.loads(capsys.readouterr().out)
    ratio = next(r for r in results if r["metric"] == "frames_per_s_ratio_vs_pymavlink")
    assert ratio["target"] == ">= 10" and code == (0 if ratio["met"] else 1)
    first = next(r for r in results if r["metric"] == "frames_per_s")
    assert "frames_ok" in first["detail"]
