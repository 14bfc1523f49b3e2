"""Serve the simulated generator in real time over a pty or a TCP socket (``python -m sim``).

Like ArduPilot's SITL beside real hardware: the host opens the printed URL with ``serial_for_url`` and
cannot tell the simulator from a generator on a USB serial adapter. The generator keeps running while no
host is connected (its watchdog then holds output off), and a host may disconnect and connect again. One host
at a time: another is refused while the one attached is talking (:class:`Server`), and the console says who
connects, talks, falls silent, leaves or is refused.

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
import threading
import tty
from collections.abc import Callable, Sequence
from dataclasses import dataclass, fields
from typing import Final, Protocol, TextIO

from firmware_bridge.clock import Clock
from firmware_bridge.errors import LinkError
from firmware_bridge.transport import Transport
from sim.generator import TICK_S, SimGenerator
from sim.network import LOOPBACK, url_host

STALE_HOST_S: Final = 2.0
"""A host silent this long (no heartbeat) is taken as gone: a pty has no 'disconnected', so its unread output is
discarded; a TCP host that never closed its end gives way to a new one. The generator's own watchdog turned its output
off long before (250 ms)."""
REFUSE_AFTER_S: Final = 0.1
"""A connection that comes while a host holds the generator is refused after this long, not at once: a holder that has
just closed its end (a host reconnecting straight away, its end-of-file not yet read) is seen to leave first."""


@dataclass
class EndpointCounters:
    bytes_unsent_host_not_reading: int = 0
    hosts_refused: int = 0
    """Connections closed unserved because another host held the generator (one host at a time)."""

    def as_dict(self) -> dict[str, int]:
        return {f.name: getattr(self, f.name) for f in fields(self)}


@dataclass(frozen=True)
class HostConnection:
    """A host's end, as the endpoint hands it over: the transport, who it is for the console (``host
    127.0.0.1:54012``, ``the host on /dev/pts/3``), and whether its connecting was seen (TCP) or not (a pty is
    opened by a host without the simulator knowing: only its heartbeats tell)."""

    transport: Transport
    who: str
    connected: bool


class Endpoint(Protocol):
    url: str
    counters: EndpointCounters

    def accept(self) -> HostConnection | None:
        """A newly connected host, or ``None`` (never blocks). Closing its transport lets it go."""
        ...

    def host_idle(self) -> None:
        """Told when no host has sent a heartbeat for a while."""
        ...

    def close(self) -> None:
        ...


class _FdTransport:
    """The device end over a non-blocking file descriptor or socket."""

    def __init__(self, url: str, recv: Callable[[int], bytes], send: Callable[[bytes], int],
                 counters: EndpointCounters, *, eof_is_loss: bool, on_close: Callable[[], None] | None = None) -> None:
        self.url = url
        self._recv = recv
        self._send = send
        self._counters = counters
        self._eof_is_loss = eof_is_loss
        self._on_close = on_close
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
        if not self.closed and self._on_close is not None:
            self._on_close()
        self.closed = True


class PtyEndpoint:
    """A pseudo-terminal: the host opens the slave path (printed as the URL); we keep the master.

    The simulator also holds the slave open, so a host closing it does not hang the pty up and the next
    host can open the same path. The line discipline is put in raw mode at once, so that nothing the
    generator writes before a host opens the port is echoed back as if the host had sent it. One host at a
    time is the hosts' own lock (pyserial's exclusive open, which the cart asks for): a second one is refused
    by its own operating system, and the simulator never sees it.
    """

    def __init__(self) -> None:
        self._master, self._slave = os.openpty()
        tty.setraw(self._slave)
        os.set_blocking(self._master, False)
        self.url = os.ttyname(self._slave)
        self.counters = EndpointCounters()
        self._handed_out = False

    def accept(self) -> HostConnection | None:
        if self._handed_out:
            return None
        self._handed_out = True
        master = self._master
        transport = _FdTransport(self.url, lambda n: os.read(master, n), lambda b: os.write(master, b),
                                 self.counters, eof_is_loss=False)
        return HostConnection(transport, f"the host on {self.url}", connected=False)

    def host_idle(self) -> None:
        # What nobody has read by now is stale telemetry; the next host should start from fresh data.
        with contextlib.suppress(termios.error):
            termios.tcflush(self._slave, termios.TCIFLUSH)

    def close(self) -> None:
        for fd in (self._master, self._slave):
            with contextlib.suppress(OSError):
                os.close(fd)


class TcpEndpoint:
    """A listening socket on ``host:port`` (port 0 picks a free one; ``host`` this machine's loopback unless told,
    ``sim.network.LOOPBACK``). Every connection is handed over: the server serves one host at a time, and refuses the
    others."""

    def __init__(self, port: int, host: str = LOOPBACK) -> None:
        self._listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            self._listener.bind((host, port))
        except OSError as exc:
            self._listener.close()
            raise LinkError(f"cannot listen on {host or '0.0.0.0'}:{port}: {exc}") from exc
        self._listener.listen(8)  # a second host's connection is taken to be refused, not left to time out
        self._listener.setblocking(False)
        self.url = f"socket://{url_host(host)}:{self._listener.getsockname()[1]}"
        self.counters = EndpointCounters()
        self._open: set[socket.socket] = set()

    def accept(self) -> HostConnection | None:
        try:
            conn, (peer_host, peer_port) = self._listener.accept()
        except BlockingIOError:
            return None
        conn.setblocking(False)
        conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self._open.add(conn)

        def release() -> None:
            self._open.discard(conn)
            conn.close()

        transport = _FdTransport(self.url, conn.recv, conn.send, self.counters, eof_is_loss=True, on_close=release)
        return HostConnection(transport, f"host {peer_host}:{peer_port}", connected=True)

    def host_idle(self) -> None:
        """Nothing to do: a TCP host that left is seen as a disconnection."""

    def close(self) -> None:
        for conn in list(self._open):
            conn.close()
        self._open.clear()
        self._listener.close()


def open_endpoint(spec: str, bind: str = LOOPBACK) -> Endpoint:
    """``pty`` or ``tcp:PORT`` (as given to ``rfa sim --serial``), a TCP port listening on ``bind``; ``ValueError``
    for anything else."""
    if spec == "pty":
        return PtyEndpoint()
    kind, _, port = spec.partition(":")
    if kind == "tcp" and port.isdigit() and int(port) < 65536:
        return TcpEndpoint(int(port), bind)
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


class Console:
    """What ``rfa sim`` tells the person at the rig, on ``out`` (its stdout): the counters, and what happens on its
    ports (a host connecting, talking, falling silent, leaving, refused), each event stamped with the generator's
    time (``elapsed_s``: the time line fault scripts count on). Lines are whole from any thread (the probe service
    speaks from its own). Once ``out``'s reader has gone (``rfa sim | head -1``, the usual way to take the URL) the
    counters are dropped, said once on stderr, and the events go on there: who is connected is what a person at
    the rig still needs."""

    def __init__(self, out: TextIO | None, elapsed_s: Callable[[], float], url: str) -> None:
        self._out = out
        self._elapsed_s = elapsed_s
        self._url = url
        self._events_to_stderr = False
        self._closed = False
        self._lock = threading.Lock()

    def report(self, line: str) -> None:
        """A counters line: dropped once stdout's reader has gone."""
        with self._lock:
            self._write(line)

    def close(self) -> None:
        """Say nothing more: the final counters are the last line (a host let go as the simulator stops is not news)."""
        with self._lock:
            self._closed = True

    def say(self, event: str) -> None:
        """An event, stamped with the generator's time."""
        line = f"[{self._elapsed_s():7.2f}s] {event}"
        with self._lock:
            if self._closed:
                return
            if not self._events_to_stderr:
                self._write(line)
            if self._events_to_stderr:  # stdout's reader has gone, perhaps just now
                with contextlib.suppress(OSError, ValueError):
                    print(line, file=sys.stderr, flush=True)

    def _write(self, line: str) -> None:
        out = self._out
        if out is None:
            return
        try:
            out.write(line + "\n")
            out.flush()
        except BrokenPipeError:
            # Its reader went away (`rfa sim --serial tcp:0 | head -1`, the usual way to take the URL): the host
            # that was given the URL still needs the generator, the counters nobody reads do not.
            self._out = None
            self._events_to_stderr = True
            _point_at_devnull(out)
            print(f"rfa sim: stdout was closed by its reader; counters are no longer printed (connections are said "
                  f"here), still serving on {self._url}", file=sys.stderr, flush=True)


@dataclass
class _Host:
    """The host the generator is attached to, as the console follows it."""

    connection: HostConnection
    since: float
    """When it was attached (clock time)."""
    talking: bool = False
    """Heartbeats arriving (the last one younger than ``STALE_HOST_S``)."""
    mute_said: bool = False
    """The console said it has sent no heartbeat since it connected."""


class Server:
    """Runs one :class:`SimGenerator` on an :class:`Endpoint` at 100 Hz on a real clock.

    ``wrap`` lets a caller put a :class:`~sim.link_faults.FaultyTransport` around each host connection;
    ``each_tick`` runs after every generator step (the probe's image follows the guided tip's boiling);
    ``more_counters`` adds to the printed counters (``rfa sim``: what its link faults did to the bytes).
    ``stop()`` (from a signal handler) ends :meth:`serve` after the current tick.

    One host at a time. Another that connects meanwhile is refused (its connection closed before the generator
    sent it a byte, after ``REFUSE_AFTER_S``), unless the holder has sent no heartbeat for ``stale_host_s``: a host
    that has gone without closing its end (a cart powered off, a cable pulled on a rig's network) or is stopped
    gives way. Its output is off already (the generator's 250 ms watchdog). :attr:`console` says each of these, and
    a host connecting, talking (heartbeats arriving), falling silent and leaving.
    """

    def __init__(self, sim: SimGenerator, endpoint: Endpoint, clock: Clock, *,
                 wrap: Callable[[Transport], Transport] | None = None, report_every_s: float = 5.0,
                 out: TextIO | None = None, each_tick: Sequence[Callable[[], None]] = (),
                 more_counters: Callable[[], dict[str, int]] | None = None, stale_host_s: float = STALE_HOST_S) -> None:
        self.sim = sim
        self._stale_host_s = stale_host_s
        self._more_counters = more_counters
        self._each_tick = tuple(each_tick)
        self.endpoint = endpoint
        self.clock = clock
        self._wrap = wrap
        self._report_every_s = report_every_s
        self.console = Console(out, lambda: sim.elapsed_s, endpoint.url)
        self._stopping = False
        self._host: _Host | None = None
        self._waiting: list[tuple[HostConnection, float]] = []
        """Connections that came while a host held the generator, each with when it is refused."""

    def stop(self) -> None:
        self._stopping = True

    def counters(self) -> dict[str, int]:
        more = self._more_counters() if self._more_counters is not None else {}
        return {**self.sim.counters_dict(), **self.endpoint.counters.as_dict(), **more}

    def _report(self, prefix: str) -> None:
        self.console.report(f"{prefix}: {format_counters(self.counters())}")

    def serve(self, duration_s: float | None = None) -> None:
        """Start the generator's time (fault scripts count from here), run until :meth:`stop` (or for
        ``duration_s``), then report the counters."""
        self.sim.start()
        start = next_tick = self.clock.now()
        next_report = start + self._report_every_s
        next_idle_check = start + self._stale_host_s
        while not self._stopping:
            now = self.clock.now()
            if duration_s is not None and now - start >= duration_s:
                break
            self._admit(now)
            self.sim.step()
            for step in self._each_tick:
                step()
            self._follow_host(now)
            if now >= next_idle_check:
                next_idle_check = now + self._stale_host_s
                if self.sim.host_silent_s(now) >= self._stale_host_s:
                    self.endpoint.host_idle()
            if now >= next_report:
                next_report = now + self._report_every_s
                self._report("counters")
            next_tick += TICK_S
            if next_tick < now:  # fell behind; SimGenerator.step has caught up on the missed ticks
                next_tick = now
            self.clock.sleep_until(next_tick)
        self._report("final counters")
        self.console.close()

    # -- hosts ---------------------------------------------------------------------------------------
    def _admit(self, now: float) -> None:
        """Take new connections: attach one while no host is attached, replace a silent holder, refuse the rest."""
        while (connection := self.endpoint.accept()) is not None:
            self._waiting.append((connection, now + REFUSE_AFTER_S))
        waiting, self._waiting = self._waiting, []
        for connection, refuse_at in waiting:
            host = self._host
            if host is not None and (silent_s := self._silent_s(host, now)) >= self._stale_host_s:
                self.console.say(f"{host.connection.who} has sent no heartbeat for {silent_s:.1f} s: dropped, "
                                 f"for {connection.who}")
                self.sim.detach()
                self._let_go(host)
                host = None
            if host is None:
                self._attach(connection, now)
            elif now >= refuse_at:
                self.endpoint.counters.hosts_refused += 1
                self.console.say(f"refused {connection.who}: {host.connection.who} holds the generator (one host at "
                                 f"a time; one silent for {self._stale_host_s:g} s gives way)")
                connection.transport.close()
            else:
                self._waiting.append((connection, refuse_at))

    def _attach(self, connection: HostConnection, now: float) -> None:
        transport = connection.transport
        self.sim.attach(self._wrap(transport) if self._wrap else transport)
        self._host = _Host(connection, now)
        if connection.connected:
            self.console.say(f"{connection.who} connected")

    def _let_go(self, host: _Host) -> None:
        host.connection.transport.close()
        if self._host is host:
            self._host = None

    def _silent_s(self, host: _Host, now: float) -> float:
        """How long ``host`` has sent no heartbeat (since it was attached, if it has sent none)."""
        last = self.sim.last_host_heartbeat
        return now - (host.since if last is None or last < host.since else last)

    def _follow_host(self, now: float) -> None:
        """Say what the attached host did this tick: left (the generator lost its link), began or stopped talking."""
        host = self._host
        if host is None:
            return
        who = host.connection.who
        if self.sim.transport is None:  # the generator dropped it: a read or a write failed
            self.console.say(f"{who} disconnected after {now - host.since:.1f} s ({self.sim.link_loss})")
            self._let_go(host)
            return
        last = self.sim.last_host_heartbeat
        stale_s = self._stale_host_s
        talking = last is not None and last >= host.since and now - last < stale_s
        if talking and not host.talking:
            self.console.say(f"{who} is talking (heartbeats arriving)")
        elif host.talking and not talking:
            self.console.say(f"{who} has sent no heartbeat for {stale_s:g} s (the generator's watchdog holds output "
                             "off)")
        elif not talking and not host.mute_said and host.connection.connected and now - host.since >= stale_s:
            host.mute_said = True
            self.console.say(f"{who} has sent no heartbeat in the {stale_s:g} s since it connected")
        host.talking = talking
