"""Transports: the in-memory pair, and pyserial URLs (loop://, socket://, a pty) through one factory.

What matters to the link: reads never block and return everything that has arrived, and a port that
disappears is one clear LinkError naming it.
"""

from __future__ import annotations

import contextlib
import os
import socket
import time
import tty
from collections.abc import Callable, Iterator

import pytest

from firmware_bridge.errors import LinkError
from firmware_bridge.transport import Transport, memory_pair, open_transport


def read_until(transport: Transport, n_bytes: int, timeout_s: float = 2.0) -> bytes:
    """Collect ``n_bytes`` from a real port; the kernel may deliver them a moment later."""
    out = b""
    deadline = time.monotonic() + timeout_s
    while len(out) < n_bytes and time.monotonic() < deadline:
        out += transport.read()
        if len(out) < n_bytes:
            time.sleep(0.001)
    return out


def test_memory_pair_carries_bytes_both_ways() -> None:
    host, device = memory_pair()
    host.write(b"abc")
    host.write(b"def")
    device.write(b"xyz")
    assert device.read(4) == b"abcd"
    assert device.read() == b"ef"
    assert device.read() == b""
    assert host.read() == b"xyz"


def test_memory_end_closed_is_a_link_error() -> None:
    host, _ = memory_pair("m")
    host.close()
    host.close()  # safe twice
    with pytest.raises(LinkError, match="memory://m/host"):
        host.read()
    with pytest.raises(LinkError):
        host.write(b"x")


def test_loop_url_returns_everything_that_arrived() -> None:
    port = open_transport("loop://")
    try:
        port.write(bytes(range(200)))
        assert read_until(port, 200) == bytes(range(200))
        assert port.read() == b""
    finally:
        port.close()
        port.close()


@pytest.fixture
def tcp_peer() -> Iterator[tuple[str, Callable[[], socket.socket]]]:
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(1)
    accepted: list[socket.socket] = []

    def accept() -> socket.socket:
        conn, _ = listener.accept()
        accepted.append(conn)
        return conn

    yield f"socket://127.0.0.1:{listener.getsockname()[1]}", accept
    for conn in accepted:
        conn.close()
    listener.close()


def test_socket_read_is_not_one_byte_at_a_time(tcp_peer: tuple[str, Callable[[], socket.socket]]) -> None:
    # pyserial's socket in_waiting is only 0 or 1; sizing reads by it starved the driver at 100 Hz.
    url, accept = tcp_peer
    port = open_transport(url)
    try:
        peer = accept()
        peer.sendall(bytes(1000))
        first = b""
        deadline = time.monotonic() + 2.0
        while not first and time.monotonic() < deadline:
            time.sleep(0.01)
            first = port.read()
        assert len(first) > 1
    finally:
        port.close()


def test_socket_peer_gone_is_a_link_error(tcp_peer: tuple[str, Callable[[], socket.socket]]) -> None:
    url, accept = tcp_peer
    port = open_transport(url)
    try:
        accept().close()
        with pytest.raises(LinkError, match="lost while reading"):
            read_until(port, 1)
    finally:
        port.close()


@pytest.fixture
def pty_pair() -> Iterator[tuple[int, str]]:
    master, slave = os.openpty()
    tty.setraw(slave)
    path = os.ttyname(slave)
    os.close(slave)
    yield master, path
    with contextlib.suppress(OSError):
        os.close(master)


def test_pty_round_trip_and_exclusive_open(pty_pair: tuple[int, str]) -> None:
    master, path = pty_pair
    port = open_transport(path)
    try:
        os.write(master, b"hello")
        assert read_until(port, 5) == b"hello"
        port.write(b"world")
        assert os.read(master, 5) == b"world"
        with pytest.raises(LinkError, match=path):
            open_transport(path)  # exclusive: a second program cannot share the generator link
    finally:
        port.close()


@pytest.mark.parametrize("scheme", ["spy://{}?file=" + os.devnull, "alt://{}?class=PosixPollSerial"])
def test_a_real_port_opened_through_a_url_handler_is_exclusive_too(
    pty_pair: tuple[int, str], scheme: str
) -> None:
    # Once, only a plain path was opened exclusive: a second spy:// open of the same port succeeded.
    url = scheme.format(pty_pair[1])
    port = open_transport(url)
    try:
        with pytest.raises(LinkError, match="cannot open"):
            open_transport(url)
        with pytest.raises(LinkError, match="cannot open"):
            open_transport(pty_pair[1])
    finally:
        port.close()
    open_transport(url).close()  # the lock goes with the port


def test_pty_device_gone_is_a_link_error(pty_pair: tuple[int, str]) -> None:
    master, path = pty_pair
    port = open_transport(path)
    try:
        os.close(master)
        with pytest.raises(LinkError, match="lost while reading"):
            read_until(port, 1)
    finally:
        port.close()


def test_unopenable_url_is_a_link_error() -> None:
    with pytest.raises(LinkError, match="/dev/does-not-exist"):
        open_transport("/dev/does-not-exist")
    with pytest.raises(LinkError, match="cannot open"):
        open_transport("socket://127.0.0.1:1")
