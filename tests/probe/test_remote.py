"""The simulated probe served over TCP (``rfa sim --probe``) and reached through a pyusb backend, by the same driver."""

from __future__ import annotations

import array
import errno
import json
import re
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import usb.core

from control.cli import main
from firmware_bridge.clock import RealClock, SimClock
from firmware_bridge.generator import RfGenerator
from firmware_bridge.probe import ProbeDisconnected, ProbeNotFound, ProbeOptions, ProbeStalled, UltrasoundProbe
from firmware_bridge.transport import open_transport
from sim.probe import SimProbe, SimProbeBackend
from sim.probe.remote import ProbeService, RemoteProbeBackend, parse_tcp
from tests.probe.conftest import SMALL_RF, run_for
from tests.test_link_integration import Running, wait_for


@pytest.fixture
def said() -> list[str]:
    """What the service says of its hosts (``rfa sim``'s console)."""
    return []


@pytest.fixture
def service(sim_probe: SimProbe, said: list[str]) -> Iterator[ProbeService]:
    served = ProbeService(SimProbeBackend(sim_probe), say=said.append).start()
    yield served
    served.stop()


def eventually(said: list[str], pattern: str) -> None:
    """Wait until the service has said a line matching ``pattern`` (it speaks from its own thread)."""
    deadline = time.monotonic() + 5.0
    while not any(re.fullmatch(pattern, event) for event in said):
        if time.monotonic() > deadline:
            raise AssertionError(f"the service never said {pattern!r}; it said {said}")
        time.sleep(0.005)


@pytest.fixture
def remote(clock: SimClock, service: ProbeService) -> Iterator[UltrasoundProbe]:
    driver = UltrasoundProbe.open(clock, backend=RemoteProbeBackend(service.url),
                                  options=ProbeOptions(frame_timeout_s=0.5))
    yield driver
    driver.close()


def test_the_served_probe_reads_as_the_same_probe_in_process(clock: SimClock, remote: UltrasoundProbe,
                                                             sim_probe: SimProbe) -> None:
    """A twin probe (same configuration, same clock) read in-process gives the same info, settings and frames."""
    twin = SimProbe(clock, SMALL_RF)
    twin.set_needle(sim_probe.needle)
    local = UltrasoundProbe.open(clock, backend=SimProbeBackend(twin), options=ProbeOptions(frame_timeout_s=0.5))
    assert remote.info == local.info == sim_probe.info()
    for driver in (remote, local):
        driver.set_depth_mm(35)
        driver.unfreeze()
    got: dict[str, list[np.ndarray]] = {"remote": [], "local": []}
    for _ in range(30):
        clock.advance(0.01)
        got["remote"] += [f.samples for f in remote.poll()]
        got["local"] += [f.samples for f in local.poll()]
    assert len(got["remote"]) >= 5 and len(got["remote"]) == len(got["local"])
    assert all(np.array_equal(a, b) for a, b in zip(got["remote"], got["local"], strict=True))
    assert sim_probe.depth_mm == 35


def test_usb_errors_cross_the_service_as_the_driver_knows_them(clock: SimClock, remote: UltrasoundProbe,
                                                               sim_probe: SimProbe) -> None:
    remote.unfreeze()
    assert run_for(clock, remote, 0.2)
    sim_probe.stall_bulk()
    with pytest.raises(ProbeStalled):
        run_for(clock, remote, 0.05)
    assert run_for(clock, remote, 0.2), "the halt is cleared and frames flow again"
    sim_probe.unplug()
    with pytest.raises(ProbeDisconnected):
        run_for(clock, remote, 0.05)


def test_a_service_that_goes_away_is_a_probe_unplugged(clock: SimClock, remote: UltrasoundProbe,
                                                       service: ProbeService) -> None:
    remote.unfreeze()
    assert run_for(clock, remote, 0.1)
    service.stop()
    with pytest.raises(ProbeDisconnected) as raised:
        run_for(clock, remote, 0.1)
    assert "probe service" in str(raised.value) and "generator's port" not in str(raised.value), \
        "a service that answered before is no wrong port"


def test_closing_a_handle_whose_service_went_away_never_raises(service: ProbeService) -> None:
    """libusb's close cannot fail, and pyusb counts on it: a handle whose close raised stayed open, and its
    finalizer tried again at interpreter exit (a traceback after `rfa run --probe tcp:...` ended)."""
    backend = RemoteProbeBackend(service.url)
    handle = backend.open_device(next(iter(backend.enumerate_devices())))
    service.stop()
    backend.close_device(handle)  # its connection still up, to a service that no longer answers
    backend.close_device(handle)  # the connection gone: nothing left to close, and nobody to connect to


EXIT_AFTER_THE_SERVICE_WENT = """
from firmware_bridge.clock import RealClock, SimClock
from firmware_bridge.generator import RfGenerator
from firmware_bridge.probe import ProbeDisconnected, UltrasoundProbe
from sim.probe import SimProbeBackend, cart_probe
from sim.probe.remote import ProbeService, RemoteProbeBackend

clock = SimClock()
service = ProbeService(SimProbeBackend(cart_probe(clock))).start()
probe = UltrasoundProbe.open(clock, backend=RemoteProbeBackend(service.url))
probe.unfreeze()
service.stop()
try:
    while True:
        clock.advance(0.01)
        probe.poll()
except ProbeDisconnected:
    probe.close()
"""


def test_a_program_whose_probe_service_went_away_ends_without_a_traceback() -> None:
    run = subprocess.run([sys.executable, "-c", EXIT_AFTER_THE_SERVICE_WENT], capture_output=True, text=True,
                         timeout=60, cwd=Path(__file__).resolve().parents[2])
    assert (run.returncode, run.stderr) == (0, "")


def unused_port() -> int:
    with socket.socket() as unused:
        unused.bind(("127.0.0.1", 0))
        port: int = unused.getsockname()[1]
    return port


def test_no_service_is_no_probe(clock: SimClock) -> None:
    with pytest.raises(ProbeNotFound):
        UltrasoundProbe.open(clock, backend=RemoteProbeBackend(f"tcp:{unused_port()}"))


def nothing_listens(port: int) -> str:
    return (f"probe service tcp:{port}: nothing listens on 127.0.0.1:{port} (connection refused): is `rfa sim --probe "
            f"tcp:{port}` running on 127.0.0.1?")


def test_rfa_probe_says_in_the_networks_terms_that_nothing_listens_at_the_address(
    capsys: pytest.CaptureFixture[str],
) -> None:
    """It said "cannot enumerate USB devices: [Errno 19] No such device (... ConnectionRefusedError ...)"."""
    port = unused_port()
    assert main(["probe", "--probe", f"tcp:{port}", "info"]) == 3
    assert capsys.readouterr().err == f"rfa probe: probe not reachable: {nothing_listens(port)}\n"


@pytest.fixture
def generator() -> Iterator[Running]:
    """A simulated generator served on a TCP port of this machine, in a thread."""
    running = Running("tcp:0")
    yield running
    running.stop()


def test_rfa_run_says_in_the_networks_terms_that_nothing_listens_at_the_probes_address(
    generator: Running, capsys: pytest.CaptureFixture[str]
) -> None:
    port = unused_port()
    assert main(["run", "--yes", "--generator", generator.endpoint.url, "--probe", f"tcp:{port}"]) == 3
    assert capsys.readouterr().err == f"rfa run: ultrasound probe not reachable: {nothing_listens(port)}\n"


@pytest.mark.parametrize("holder", [False, True], ids=["its-telemetry-answers", "it-refuses-a-second-host"])
def test_the_generators_port_given_for_the_probes_is_said_to_be_no_probe_service(
    generator: Running, capsys: pytest.CaptureFixture[str], holder: bool
) -> None:
    """The likeliest slip at a rig: `--probe tcp:5760` for the port of `--serial tcp:5760`. Its telemetry is no
    answer; with the cart holding the generator, the port closes the probe's connection instead."""
    port = int(generator.endpoint.url.rsplit(":", 1)[1])
    cart = RfGenerator(open_transport(generator.endpoint.url), RealClock()) if holder else None
    try:
        if cart is not None:
            wait_for(cart, lambda: cart.telemetry is not None, "the cart's telemetry")
        assert main(["probe", "--probe", f"tcp:{port}", "info"]) == 3
    finally:
        if cart is not None:
            cart.close()
    err = capsys.readouterr().err
    said = "closed the connection without answering (" if holder else "does not answer as a probe service ("
    assert err.startswith(f"rfa probe: probe not reachable: probe service tcp:{port}: 127.0.0.1:{port} {said}")
    assert err.endswith("; if that is the generator's port, the probe's is on the line `probe tcp:HOST:PORT` rfa sim "
                        "prints second\n")


@pytest.mark.parametrize("spec", ["tcp:", "tcp:x", "udp:5000", "tcp:70000", "5000"])
def test_a_malformed_address_is_refused_naming_the_form(spec: str) -> None:
    with pytest.raises(ValueError, match=r"tcp:PORT or tcp:HOST:PORT"):
        parse_tcp(spec)


def test_an_address_names_its_host_or_this_machine() -> None:
    assert parse_tcp("tcp:5760") == ("127.0.0.1", 5760)
    assert parse_tcp("tcp:10.0.0.2:5760") == ("10.0.0.2", 5760)


def test_the_probe_service_listens_where_it_is_bound_and_its_url_names_it(sim_probe: SimProbe) -> None:
    """127.0.0.2 is this machine, but not the loopback address the service listens on by default."""
    default = ProbeService(SimProbeBackend(sim_probe)).start()
    try:
        port = parse_tcp(default.url)[1]
        assert default.url == f"tcp:127.0.0.1:{port}"
        with pytest.raises(ProbeNotFound, match="connection refused"):
            RemoteProbeBackend(f"tcp:127.0.0.2:{port}").connect()
    finally:
        default.stop()
    everywhere = ProbeService(SimProbeBackend(sim_probe), host="0.0.0.0").start()
    try:
        port = parse_tcp(everywhere.url)[1]
        assert everywhere.url == f"tcp:{socket.gethostname()}:{port}"
        assert list(RemoteProbeBackend(f"tcp:127.0.0.2:{port}").enumerate_devices())
    finally:
        everywhere.stop()


def test_rfa_probe_info_reads_the_served_probe(service: ProbeService, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["probe", "--probe", service.url, "--json", "info"]) == 0
    assert json.loads(capsys.readouterr().out)["model"] == SMALL_RF.model


def test_rfa_probe_refuses_a_malformed_address(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["probe", "--probe", "tcp:x", "info"]) == 2
    assert "tcp:PORT or tcp:HOST:PORT" in capsys.readouterr().err


def test_a_probe_service_started_again_is_found_again_by_the_drivers_reconnect(
    clock: SimClock, remote: UltrasoundProbe, service: ProbeService, sim_probe: SimProbe
) -> None:
    """The simulator process restarted: the connection is gone, and the driver's reconnect makes a new one."""
    remote.unfreeze()
    assert run_for(clock, remote, 0.1)
    port = parse_tcp(service.url)[1]
    service.stop()
    with pytest.raises(ProbeDisconnected):
        run_for(clock, remote, 0.1)
    again = ProbeService(SimProbeBackend(sim_probe), port).start()
    try:
        remote.reconnect()
        remote.unfreeze()
        assert run_for(clock, remote, 0.2)
    finally:
        again.stop()


def test_the_service_answers_what_it_cannot_follow_and_goes_on_serving(service: ProbeService,
                                                                       sim_probe: SimProbe) -> None:
    host, port = parse_tcp(service.url)
    with socket.create_connection((host, port), timeout=5) as conn, conn.makefile("rwb") as stream:
        for line in (b"not json", b'{"op": "open_device", "args": []}', b'{"op": "teleport", "args": [1]}',
                     b'{"op": "get_interface_descriptor", "args": [1, 7, 0, 0]}'):
            if line.endswith(b"[1, 7, 0, 0]}"):  # a device to ask about
                stream.write(b'{"op": "enumerate_devices", "args": []}\n')
                stream.flush()
                assert json.loads(stream.readline()) == {"ok": [1]}
            stream.write(line + b"\n")
            stream.flush()
            assert json.loads(stream.readline())["error"] == "request"
    device = usb.core.find(backend=RemoteProbeBackend(service.url))
    assert device is not None and str(device), "pyusb walks the configuration (an IndexError ends it) and goes on"


def test_the_service_says_when_a_host_connects_and_leaves(service: ProbeService, said: list[str]) -> None:
    backend = RemoteProbeBackend(service.url)
    assert list(backend.enumerate_devices())
    eventually(said, r"probe: host 127\.0\.0\.1:\d+ connected")
    backend.close()
    eventually(said, r"probe: host 127\.0\.0\.1:\d+ disconnected after \d+\.\d s \(it closed the connection\)")


def test_a_second_host_is_refused_while_one_is_served_and_both_ends_say_so(
    clock: SimClock, remote: UltrasoundProbe, service: ProbeService, said: list[str]
) -> None:
    """It waited unserved until its call timed out (5 s), and then saw no probe, for no reason it was told."""
    remote.unfreeze()
    assert run_for(clock, remote, 0.1)
    with pytest.raises(ProbeNotFound, match=r"the simulated probe serves another host \(host 127\.0\.0\.1:\d+\); one "
                                            r"host at a time"):
        UltrasoundProbe.open(clock, backend=RemoteProbeBackend(service.url))
    eventually(said, r"probe: refused host 127\.0\.0\.1:\d+: host 127\.0\.0\.1:\d+ holds the probe \(one host at a "
                     r"time; one that has asked nothing for 5 s gives way\)")
    assert run_for(clock, remote, 0.1), "the first host is served still"


def test_a_host_that_has_asked_nothing_for_a_while_gives_way_to_a_new_one(clock: SimClock, sim_probe: SimProbe,
                                                                          said: list[str]) -> None:
    """A host gone without closing its end (powered off on a rig's network) must not lock every later one out."""
    service = ProbeService(SimProbeBackend(sim_probe), say=said.append, holder_idle_s=0.3).start()
    first = RemoteProbeBackend(service.url)
    try:
        assert list(first.enumerate_devices())  # then it asks nothing more, its connection open
        eventually(said, r"probe: host 127\.0\.0\.1:\d+ connected")
        time.sleep(0.4)  # a precondition, not a check: the first host idle past holder_idle_s
        second = UltrasoundProbe.open(clock, backend=RemoteProbeBackend(service.url))
        assert second.info == sim_probe.info()
        second.close()
        eventually(said, r"probe: host 127\.0\.0\.1:\d+ has asked nothing for \d+\.\d s: dropped, for host "
                         r"127\.0\.0\.1:\d+")
    finally:
        first.close()
        service.stop()


def test_rfa_run_takes_a_served_probe_only_with_its_simulators_generator(capsys: pytest.CaptureFixture[str]) -> None:
    """In-process the generator runs in simulated time and the served probe in real time, beside another
    generator: a mix that cannot be a procedure."""
    assert main(["run", "--yes", "--probe", "tcp:5761"]) == 2
    assert "add --generator URL" in capsys.readouterr().err


class _OneAnswerService:
    """A service that answers every call with the same bytes: a confused or cut-off peer, for the host's checks."""

    def __init__(self, answer: bytes) -> None:
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.url = f"tcp:127.0.0.1:{self._listener.getsockname()[1]}"
        self._answer = answer
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        conn, _ = self._listener.accept()
        with conn, conn.makefile("rwb") as stream:
            stream.readline()
            stream.write(self._answer)
            stream.flush()

    def close(self) -> None:
        self._thread.join(5)
        self._listener.close()


@pytest.mark.parametrize("answer", [
    b'{"ok": 8, "data_bytes": 8}\n' + bytes(8),  # more data than the 4 bytes asked for
    b'{"ok": 4, "data_bytes": -1}\n',
    b'{"ok": 4, "data_bytes": "4"}\n',
    b'{"ok": 4, "data_bytes": 4}\n\x01\x02',  # the connection ends two bytes into the data
    b'{"ok": 3, "data_bytes": 4}\n' + bytes(4),  # the count and the data disagree
    b'{"ok": "AAAA"}\n',  # a read answered without data (base64 in the line, say)
    b'{"error": "usb", "code": -1, "errno": 5, "text": "x", "data_bytes": 2}\n\x00\x00',  # data with an error
], ids=["too-long", "negative", "not-a-count", "cut-off", "disagreeing", "no-data", "error-with-data"])
def test_an_answer_whose_data_does_not_fit_the_read_is_an_unplugged_probe(answer: bytes) -> None:
    service = _OneAnswerService(answer)
    try:
        with pytest.raises(usb.core.USBError) as raised:
            RemoteProbeBackend(service.url).bulk_read(1, 0x81, 0, array.array("B", bytes(4)), 100)
        assert raised.value.errno == errno.ENODEV
    finally:
        service.close()


def test_a_bulk_read_lands_its_raw_bytes_in_the_callers_buffer() -> None:
    service = _OneAnswerService(b'{"ok": 3, "data_bytes": 3}\n\x07\x08\x09')
    try:
        buffer = array.array("B", bytes(6))
        assert RemoteProbeBackend(service.url).bulk_read(1, 0x81, 0, buffer, 100) == 3
        assert buffer.tolist() == [7, 8, 9, 0, 0, 0]
    finally:
        service.close()
