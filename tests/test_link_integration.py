"""The simulator's server endpoints with the real driver, through the kernel (pty and TCP), in-process.

The server runs in a thread on the real clock; the checks are about connections, not timing (the
timed contract checks are in hil_tests/, against the simulator in its own process): a host can
connect, talk, leave and come back, the counters are printed, and a vanished endpoint is a LinkError.
"""

from __future__ import annotations

import io
import json
import re
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
from sim.probe.remote import RemoteProbeBackend
from sim.server import STALE_HOST_S, Endpoint, Server, open_endpoint

WAIT_S = 3.0


class Running:
    def __init__(self, spec: str, wrap: Callable[[Transport], Transport] | None = None, *,
                 stale_host_s: float = STALE_HOST_S) -> None:
        self.clock = RealClock()
        self.endpoint: Endpoint = open_endpoint(spec)
        self.sim = SimGenerator(None, self.clock, seed=1)
        self.out = io.StringIO()
        self.server = Server(self.sim, self.endpoint, self.clock, wrap=wrap, report_every_s=0.2, out=self.out,
                             stale_host_s=stale_host_s)
        self.thread = threading.Thread(target=self.server.serve, daemon=True)
        self.thread.start()

    def stop(self) -> None:
        self.server.stop()
        self.thread.join(WAIT_S)
        self.endpoint.close()


def wait_for(driver: RfGenerator | None, predicate: Callable[[], bool], what: str) -> None:
    """Poll until ``predicate()``, servicing ``driver`` meanwhile as a host does (``None``: a host that has gone
    quiet)."""
    deadline = time.monotonic() + WAIT_S
    while not predicate():
        if time.monotonic() > deadline:
            counters = driver.stats.as_dict() if driver is not None else "(no host servicing)"
            raise AssertionError(f"timed out waiting for {what}; driver counters {counters}")
        if driver is not None:
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


# -- what the simulator's console says about its hosts ---------------------------------------------------
def said(running: Running, pattern: str) -> Callable[[], bool]:
    """Whether the console has said a line matching ``pattern`` (after its time stamp)."""
    return lambda: re.search(rf"^\[ *\d+\.\d\ds\] {pattern}$", running.out.getvalue(), re.MULTILINE) is not None


def test_the_console_says_when_a_tcp_host_connects_talks_and_leaves() -> None:
    """A rig engineer sees the cart reach the simulator, speak the protocol, and go."""
    r = Running("tcp:0")
    try:
        driver = connect(r)
        wait_for(driver, said(r, r"host 127\.0\.0\.1:\d+ connected"), "the connection said")
        wait_for(driver, said(r, r"host 127\.0\.0\.1:\d+ is talking \(heartbeats arriving\)"), "heartbeats said")
        driver.close()
        wait_for(None, said(r, r"host 127\.0\.0\.1:\d+ disconnected after \d+\.\d s \(socket://127\.0\.0\.1:\d+: "
                               r"host disconnected\)"), "the disconnection said")
    finally:
        r.stop()


def test_the_console_says_when_a_host_on_the_pty_starts_and_stops_talking() -> None:
    """A pty has no connecting: the host's heartbeats are what show it is there."""
    r = Running("pty", stale_host_s=0.3)
    try:
        driver = connect(r)
        who = re.escape(f"the host on {r.endpoint.url}")
        wait_for(driver, said(r, who + r" is talking \(heartbeats arriving\)"), "heartbeats said")
        driver.close()
        wait_for(None, said(r, who + r" has sent no heartbeat for 0\.3 s \(the generator's watchdog holds output "
                                     r"off\)"), "the silence said")
    finally:
        r.stop()


def test_a_second_host_is_refused_while_the_first_holds_the_generator_and_both_ends_say_so(
    capsys: pytest.CaptureFixture[str],
) -> None:
    """It waited unserved and unsaid: `rfa selftest` said only "no answer within 3 s", the simulator nothing."""
    r = Running("tcp:0", stale_host_s=60.0)  # the holder stays the holder, however the machine is loaded
    try:
        first = connect(r)
        wait_for(first, said(r, r"host 127\.0\.0\.1:\d+ is talking \(heartbeats arriving\)"), "heartbeats said")
        assert cli.main(["selftest", "--generator", r.endpoint.url]) == cli.EXIT_UNREACHABLE
        err = capsys.readouterr().err
        assert err.startswith(f"rfa selftest: the link to the generator at {r.endpoint.url} opened, then failed: ")
        assert err.rstrip().endswith("it was closed before the generator sent a frame: a simulator (rfa sim) does "
                                     "that while another host holds its generator (its console names that host)")
        wait_for(first, said(r, r"refused host 127\.0\.0\.1:\d+: host 127\.0\.0\.1:\d+ holds the generator \(one "
                               r"host at a time; one silent for 60 s gives way\)"), "the refusal said")
        assert r.endpoint.counters.hosts_refused == 1
        seq = first.request_self_test()
        wait_for(first, lambda: first.ack_for(SelfTest.MSG_ID, seq) is not None, "the holder still served")
        first.close()
    finally:
        r.stop()


def test_a_holder_that_has_fallen_silent_gives_way_to_a_new_host() -> None:
    """A cart powered off on a rig's network never closes its connection: the next one must not be locked out."""
    r = Running("tcp:0", stale_host_s=0.3)
    try:
        first = connect(r)  # then silent: it sends nothing more and never closes
        wait_for(None, said(r, r"host 127\.0\.0\.1:\d+ has sent no heartbeat for 0\.3 s .*"), "the silence said")
        second = connect(r)
        wait_for(second, said(r, r"host 127\.0\.0\.1:\d+ has sent no heartbeat for \d+\.\d s: dropped, for host "
                                 r"127\.0\.0\.1:\d+"), "the hand-over said")
        assert r.endpoint.counters.hosts_refused == 0 and r.sim.counters.connections == 2
        second.close()
        first.close()
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
    cannot print are dropped (said once on stderr, where the hosts' comings and goings are said from then on); the
    generator stays up for the host given the URL."""
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
    notice, *events = err.splitlines()
    assert notice == (f"rfa sim: stdout was closed by its reader; counters are no longer printed (connections are said "
                      f"here), still serving on {url}")
    assert events and re.fullmatch(r"\[ *\d+\.\d\ds\] host 127\.0\.0\.1:\d+ connected", events[0]), err


def test_the_ports_listen_on_this_machines_loopback_only_by_default() -> None:
    """127.0.0.2 is this machine too, but not the address the ports are bound to: what another machine would see."""
    endpoint = open_endpoint("tcp:0")
    try:
        port = int(endpoint.url.rsplit(":", 1)[1])
        assert endpoint.url == f"socket://127.0.0.1:{port}"
        with pytest.raises(ConnectionRefusedError):
            socket.create_connection(("127.0.0.2", port), timeout=WAIT_S).close()
    finally:
        endpoint.close()


@pytest.mark.parametrize(("bind", "named"), [("0.0.0.0", socket.gethostname()), ("127.0.0.2", "127.0.0.2")])
def test_bound_elsewhere_the_generators_port_listens_there_and_its_url_names_it(bind: str, named: str) -> None:
    endpoint = open_endpoint("tcp:0", bind)
    try:
        port = int(endpoint.url.rsplit(":", 1)[1])
        assert endpoint.url == f"socket://{named}:{port}"
        socket.create_connection(("127.0.0.2", port), timeout=WAIT_S).close()
        assert endpoint.accept() is not None
    finally:
        endpoint.close()


def test_rfa_sim_bound_to_every_interface_names_this_machine_and_says_who_can_connect(
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert cli.main(["sim", "--serial", "tcp:0", "--probe", "tcp:0", "--bind", "0.0.0.0", "--duration-s", "0.3",
                     "--report-s", "1"]) == cli.EXIT_OK
    out, err = capsys.readouterr()
    host = re.escape(socket.gethostname())
    assert re.fullmatch(rf"socket://{host}:\d+", out.splitlines()[0])
    assert re.fullmatch(rf"probe tcp:{host}:\d+", out.splitlines()[1])
    assert err == (f"rfa sim: listening on every interface, named by this machine's host name "
                   f"{socket.gethostname()!r}: any host that reaches this machine there can connect and command the "
                   "simulated generator, without authentication\n")


def test_rfa_sim_bind_without_a_tcp_port_is_a_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["sim", "--bind", "0.0.0.0", "--duration-s", "0.1"]) == cli.EXIT_USAGE
    assert capsys.readouterr().err == ("rfa sim: --bind names where TCP ports listen, and there is none: add --serial "
                                       "tcp:PORT or --probe tcp:PORT\n")


def test_rfa_sim_help_says_where_the_ports_listen_and_why_only_on_this_machine(
    capsys: pytest.CaptureFixture[str],
) -> None:
    with pytest.raises(SystemExit):
        cli.main(["sim", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert "listen on: default 127.0.0.1, this machine only." in text
    assert ("Not the default because the simulated generator takes commands, output on included, from any host that "
            "connects, without authentication") in text


def test_the_final_counters_are_the_last_line_even_with_a_probe_host_connected_as_the_simulator_stops() -> None:
    """The probe service lets its host go as the simulator stops; that is no news to print after the counters."""
    sim = subprocess.Popen([sys.executable, "-m", "sim", "--serial", "tcp:0", "--probe", "tcp:0", "--report-s", "60",
                            "--duration-s", "60"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert sim.stdout is not None
        sim.stdout.readline()
        backend = RemoteProbeBackend(sim.stdout.readline().strip().removeprefix("probe "))
        assert list(backend.enumerate_devices())
        assert re.fullmatch(r"\[ *\d+\.\d\ds\] probe: host 127\.0\.0\.1:\d+ connected\n", sim.stdout.readline())
        sim.send_signal(signal.SIGTERM)
        out, err = sim.communicate(timeout=10)
        backend.close()
    finally:
        sim.kill()
    assert sim.returncode == 0, err
    assert out.splitlines()[-1].startswith("final counters: "), out


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
