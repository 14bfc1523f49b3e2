"""Serve the simulated generator in real time over a pty or a TCP socket (``python -m sim``).

Like ArduPilot's SITL beside real hardware: the host opens the printed URL with ``serial_for_url`` and
cannot tell the simulator from a generator on a USB serial adapter. The generator keeps running while no
host is connected (its watchdog then holds output off), and a host may disconnect and connect again.

The endpoints here are the *device* side, so they are not pyserial ports: a pty master and an accepted
socket, both non-blocking. When the host is not reading, a real UART's bytes fall on the floor; these
endpoints do the same (and count it) rather than block the generator's loop.
"""

from __future__ import annotations

import contextlib
import errno
import os
import socket
import sys
import termios
import tty
from collections.abc import Callable, Sequence
from dataclasses import dataclass, fields
from typing import Final, Protocol, TextIO

from firmware_bridge.clock import Clock
from firmware_bridge.errors import LinkError
from firmware_bridge.transport import Transport
from sim.generator import TICK_S, SimGenerator

STALE_HOST_S: Final = 2.0
"""A pty has no 'disconnected'; after this long without a host heartbeat, unread output is discarded."""


@dataclass
class EndpointCounters:
    bytes_unsent_host_not_reading: int = 0

    def as_dict(self) -> dict[str, int]:
        return {f.name: getattr(self, f.name) for f in fields(self)}


class Endpoint(Protocol):
    url: str
    counters: EndpointCounters

    def accept(self) -> Transport | None:
        """A transport to a newly connected host, or ``None`` (never blocks)."""
        ...

    def host_idle(self) -> None:
        """Told when no host has sent a heartbeat for a while."""
        ...

    def close(self) -> None:
        ...


class _FdTransport:
    """The device end over a non-blocking file descriptor or socket."""

    def __init__(self, url: str, recv: Callable[[int], bytes], send: Callable[[bytes], int],
                 counters: EndpointCounters, *, eof_is_loss: bool) -> None:
        self.url = url
        self._recv = recv
        self._send = send
        self._counters = counters
        self._eof_is_loss = eof_is_loss
        self.closed = False

    def read(self, max_bytes: int = 65536) -> bytes:
        if self.closed:
            raise LinkError(f"{self.url} is closed")
        try:
            data = self._recv(max_bytes)
        except BlockingIOError:
            return b""
        except OSError as exc:
            raise LinkError(f"{self.url}: host side lost: {exc}") from exc
        if not data and self._eof_is_loss:
            raise LinkError(f"{self.url}: host disconnected")
        return data

    def write(self, data: bytes) -> None:
        if self.closed:
            raise LinkError(f"{self.url} is closed")
        try:
            sent = self._send(data)
        except BlockingIOError:
            sent = 0
        except OSError as exc:
            if exc.errno == errno.EAGAIN:
                sent = 0
            else:
                raise LinkError(f"{self.url}: host side lost: {exc}") from exc
        self._counters.bytes_unsent_host_not_reading += len(data) - sent

    def close(self) -> None:
        self.closed = True


class PtyEndpoint:
    """A pseudo-terminal: the host opens the slave path (printed as the URL); we keep the master.

    The simulator also holds the slave open, so a host closing it does not hang the pty up and the next
    host can open the same path. The line discipline is put in raw mode at once, so that nothing the
    generator writes before a host opens the port is echoed back as if the host had sent it.
    """

    def __init__(self) -> None:
        self._master, self._slave = os.openpty()
        tty.setraw(self._slave)
        os.set_blocking(self._master, False)
        self.url = os.ttyname(self._slave)
        self.counters = EndpointCounters()
        self._handed_out = False

    def accept(self) -> Transport | None:
        if self._handed_out:
            return None
        self._handed_out = True
        master = self._master
        return _FdTransport(self.url, lambda n: os.read(master, n), lambda b: os.write(master, b),
                            self.counters, eof_is_loss=False)

    def host_idle(self) -> None:
        # What nobody has read by now is stale telemetry; the next host should start from fresh data.
        with contextlib.suppress(termios.error):
            termios.tcflush(self._slave, termios.TCIFLUSH)

    def close(self) -> None:
        for fd in (self._master, self._slave):
            with contextlib.suppress(OSError):
                os.close(fd)


class TcpEndpoint:
    """A listening socket on ``host:port`` (port 0 picks a free one); one host at a time."""

    def __init__(self, port: int, host: str = "127.0.0.1") -> None:
        self._listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            self._listener.bind((host, port))
        except OSError as exc:
            self._listener.close()
            raise LinkError(f"cannot listen on {host}:{port}: {exc}") from exc
        self._listener.listen(1)
        self._listener.setblocking(False)
        bound_host, bound_port = self._listener.getsockname()[:2]
        self.url = f"socket://{bound_host}:{bound_port}"
        self.counters = EndpointCounters()
        self._conn: socket.socket | None = None

    def accept(self) -> Transport | None:
        try:
            conn, _ = self._listener.accept()
        except BlockingIOError:
            return None
        if self._conn is not None:
            self._conn.close()
        conn.setblocking(False)
        conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self._conn = conn
        return _FdTransport(self.url, conn.recv, conn.send, self.counters, eof_is_loss=True)

    def host_idle(self) -> None:
        """Nothing to do: a TCP host that left is seen as a disconnection."""

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()
        self._listener.close()


def open_endpoint(spec: str) -> Endpoint:
    """``pty`` or ``tcp:PORT`` (as given to ``rfa sim --serial``); ``ValueError`` for anything else."""
    if spec == "pty":
        return PtyEndpoint()
    kind, _, port = spec.partition(":")
    if kind == "tcp" and port.isdigit() and int(port) < 65536:
        return TcpEndpoint(int(port))
    raise ValueError(f"--serial must be 'pty' or 'tcp:PORT', not {spec!r}")


def _point_at_devnull(stream: TextIO) -> None:
    """Send what is left in ``stream``'s buffer, and anything written later, to /dev/null, so that the interpreter's
    flush at exit does not meet the closed pipe again (a traceback and exit 120); a stream without a file
    descriptor has nothing to redirect."""
    try:
        fd = stream.fileno()
    except (OSError, ValueError):
        return
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(devnull, fd)
    finally:
        os.close(devnull)


def format_counters(counters: dict[str, int]) -> str:
    return " ".join(f"{k}={v}" for k, v in counters.items())


class Server:
    """Runs one :class:`SimGenerator` on an :class:`Endpoint` at 100 Hz on a real clock.

    ``wrap`` lets a caller put a :class:`~sim.link_faults.FaultyTransport` around each host connection;
    ``each_tick`` runs after every generator step (the probe's image follows the guided tip's boiling);
    ``more_counters`` adds to the printed counters (``rfa sim``: what its link faults did to the bytes).
    ``stop()`` (from a signal handler) ends :meth:`serve` after the current tick.
    """

    def __init__(self, sim: SimGenerator, endpoint: Endpoint, clock: Clock, *,
                 wrap: Callable[[Transport], Transport] | None = None, report_every_s: float = 5.0,
                 out: TextIO | None = None, each_tick: Sequence[Callable[[], None]] = (),
                 more_counters: Callable[[], dict[str, int]] | None = None) -> None:
        self.sim = sim
        self._more_counters = more_counters
        self._each_tick = tuple(each_tick)
        self.endpoint = endpoint
        self.clock = clock
        self._wrap = wrap
        self._report_every_s = report_every_s
        self._out = out
        self._stopping = False

    def stop(self) -> None:
        self._stopping = True

    def counters(self) -> dict[str, int]:
        more = self._more_counters() if self._more_counters is not None else {}
        return {**self.sim.counters_dict(), **self.endpoint.counters.as_dict(), **more}

    def _report(self, prefix: str) -> None:
        out = self._out
        if out is None:
            return
        try:
            out.write(f"{prefix}: {format_counters(self.counters())}\n")
            out.flush()
        except BrokenPipeError:
            # Its reader went away (`rfa sim --serial tcp:0 | head -1`, the usual way to take the URL): the host
            # that was given the URL still needs the generator, the counters nobody reads do not.
            self._out = None
            _point_at_devnull(out)
            print(f"rfa sim: stdout was closed by its reader; counters are no longer printed, still serving on "
                  f"{self.endpoint.url}", file=sys.stderr, flush=True)

    def serve(self, duration_s: float | None = None) -> None:
        """Start the generator's time (fault scripts count from here), run until :meth:`stop` (or for
        ``duration_s``), then report the counters."""
        self.sim.start()
        start = next_tick = self.clock.now()
        next_report = start + self._report_every_s
        next_idle_check = start + STALE_HOST_S
        while not self._stopping:
            now = self.clock.now()
            if duration_s is not None and now - start >= duration_s:
                break
            if self.sim.transport is None:
                conn = self.endpoint.accept()
                if conn is not None:
                    self.sim.attach(self._wrap(conn) if self._wrap else conn)
            self.sim.step()
            for step in self._each_tick:
                step()
            if now >= next_idle_check:
                next_idle_check = now + STALE_HOST_S
                if self.sim.host_silent_s(now) >= STALE_HOST_S:
                    self.endpoint.host_idle()
            if now >= next_report:
                next_report = now + self._report_every_s
                self._report("counters")
            next_tick += TICK_S
            if next_tick < now:  # fell behind; SimGenerator.step has caught up on the missed ticks
                next_tick = now
            self.clock.sleep_until(next_tick)
        self._report("final counters")
