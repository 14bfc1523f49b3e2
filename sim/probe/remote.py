"""The simulated probe served by the simulator process, and the pyusb backend that reaches it.

``rfa sim --probe tcp:PORT`` runs a :class:`ProbeService` beside the simulated generator: the same
:class:`~sim.probe.SimProbe` (its image shows gas when the guided channel's tissue boils) behind the same
:class:`~sim.probe.SimProbeBackend`, answering the ``usb.backend.IBackend`` calls of a host in another process.
On the host, ``rfa run --probe tcp:HOST:PORT`` opens the probe with :class:`RemoteProbeBackend`, a pyusb backend
that forwards each call, so the driver code is the one that runs the real probe, as with the in-process
backend; only the transport between backend and device differs (the model is a USB/IP client, reduced to what
the probe uses).

The wire is one JSON object per line each way, a request and its answer: ``{"op": name, "args": [...]}`` and
``{"ok": value}`` or ``{"error": kind, ...}``. Device and handle objects stay in the simulator process and
cross as integers; descriptors cross as their fields. Data the host sends (a control transfer out, a few bytes)
crosses as base64 in its request; data the host reads (a bulk or control transfer in) follows its answer line
as raw bytes, counted by the answer: ``{"ok": count, "data_bytes": count}`` and then ``count`` bytes. A frame
is half a megabyte: as base64 in JSON it cost the host about 4 ms of decoding per frame with the interpreter
held, time the 10 ms loop's thread waited for (the GIL), where a raw read is a socket call that lets it run.
USB errors cross with their libusb code and errno and are raised again on the host exactly as the backend
raised them, so the driver's error mapping (a stall, a timeout, an unplugged probe) is exercised across
processes too. A connection that fails, or an answer whose data does not fit what the host asked for, is an
unplugged probe (``ENODEV``).
"""

from __future__ import annotations

import array
import base64
import contextlib
import dataclasses
import errno
import io
import json
import select
import socket
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from types import SimpleNamespace
from typing import Any, Final

import usb.backend
import usb.core
import usb.util

from firmware_bridge.clock import RealClock
from firmware_bridge.probe import ProbeNotFound
from sim.network import LOOPBACK, url_host
from sim.probe.backend import SimProbeBackend

_LIBUSB_ERROR_NO_DEVICE: Final = -4
_LIBUSB_ERROR_IO: Final = -1
CONNECT_TIMEOUT_S: Final = 5.0
CALL_TIMEOUT_S: Final = 5.0
"""Longer than any transfer timeout the driver asks for: a call not answered by then is a lost probe."""
HOLDER_IDLE_S: Final = 5.0
"""A served host that has asked nothing for this long gives way to a new one: a host that went without closing its end
(powered off, its cable pulled) or is stopped. One in use asks far more often (the guidance thread every 5 ms)."""
REFUSE_AFTER_S: Final = 0.1
"""A connection that comes while a host is served is refused after this long, not at once: a host that has just
closed its connection and made another (the driver's reconnect) is seen to leave first."""
POLL_S: Final = 0.2
"""How often the service looks at its stop flag while nothing happens."""


def parse_tcp(spec: str, *, default_host: str = "127.0.0.1") -> tuple[str, int]:
    """``tcp:PORT`` or ``tcp:HOST:PORT`` -> (host, port); ``ValueError`` naming the expected form. One host at a
    time: another one connecting is refused (:class:`ProbeService`), and sees its probe as not found."""
    kind, _, rest = spec.partition(":")
    host, _, port = rest.rpartition(":")
    if kind != "tcp" or not port.isdigit() or int(port) > 65535:
        raise ValueError(f"expected tcp:PORT or tcp:HOST:PORT, not {spec!r}")
    return host or default_host, int(port)


@dataclass
class _Client:
    """A host's connection to the service: its socket, who it is for the console, and its unanswered bytes."""

    conn: socket.socket
    who: str
    since: float
    last_request: float
    pending: bytearray = dataclasses.field(default_factory=bytearray)
    """What it has sent past its last whole request line."""


class ProbeService:
    """Serves ``backend`` to one host at a time on a TCP port listening on ``host`` (this machine's loopback unless
    told, ``sim.network.LOOPBACK``), a thread per service.

    Another host that connects meanwhile is refused after ``REFUSE_AFTER_S`` (so that a host reconnecting at once is
    not refused for its own last connection, not yet seen closed): its first request is answered ``{"error": "busy",
    ...}`` naming the host being served, and its connection closed. A holder that has asked nothing for
    ``holder_idle_s`` (gone without closing its end, or stopped) gives way to it instead. ``say`` is told each host
    that connects, leaves, is refused or replaced (``rfa sim``'s console)."""

    def __init__(self, backend: SimProbeBackend, port: int = 0, host: str = LOOPBACK, *,
                 say: Callable[[str], None] | None = None, holder_idle_s: float = HOLDER_IDLE_S) -> None:
        self._backend = backend
        self._listener = socket.create_server((host, port))
        self._listener.setblocking(False)
        self.url = f"tcp:{url_host(host)}:{self._listener.getsockname()[1]}"
        self._say = say if say is not None else (lambda event: None)
        self._holder_idle_s = holder_idle_s
        self._clock = RealClock()
        self._objects: dict[int, Any] = {}
        self._ids: dict[Any, int] = {}
        self._bulk = array.array("B")
        """The bulk transfer buffer, reused: the driver asks for up to a frame's worth (megabytes) per read."""
        self._stopping = threading.Event()
        self._holder: _Client | None = None
        self._waiting: list[tuple[socket.socket, str, float]] = []
        """Connections that came while a host was served, each with when it is refused."""
        self._thread = threading.Thread(target=self._serve, name="probe-service", daemon=True)

    def start(self) -> ProbeService:
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop serving; a connected host sees its probe unplugged."""
        self._stopping.set()
        holder = self._holder
        if holder is not None:  # an answer being sent to a host that does not read it ends now, not in 5 s
            with contextlib.suppress(OSError):
                holder.conn.shutdown(socket.SHUT_RDWR)
        self._thread.join(2.0)
        self._listener.close()

    def _serve(self) -> None:
        try:
            while not self._stopping.is_set():
                holder = self._holder
                watch = [self._listener] if holder is None else [self._listener, holder.conn]
                now = self._clock.now()
                wait_s = min([POLL_S, *(max(0.0, refuse_at - now) for _, _, refuse_at in self._waiting)])
                try:
                    readable = select.select(watch, [], [], wait_s)[0]
                except (OSError, ValueError):  # the listener closed under us
                    return
                if holder is not None and holder.conn in readable:
                    self._serve_requests(holder)
                if self._listener in readable:
                    self._accept()
                self._admit()
        finally:
            for conn, _, _ in self._waiting:
                conn.close()
            if self._holder is not None:
                self._holder.conn.close()

    def _accept(self) -> None:
        while True:
            try:
                conn, (peer_host, peer_port, *_) = self._listener.accept()
            except (BlockingIOError, InterruptedError):
                return
            except OSError:
                return
            conn.setblocking(True)
            conn.settimeout(CALL_TIMEOUT_S)  # an answer the host does not take within it: a host gone
            conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            self._waiting.append((conn, f"host {peer_host}:{peer_port}", self._clock.now() + REFUSE_AFTER_S))

    def _admit(self) -> None:
        """Serve a new host while none is served, replace one that has asked nothing for a while, refuse the rest."""
        now = self._clock.now()
        waiting, self._waiting = self._waiting, []
        for conn, who, refuse_at in waiting:
            holder = self._holder
            if holder is not None and (idle_s := now - holder.last_request) >= self._holder_idle_s:
                self._say(f"probe: {holder.who} has asked nothing for {idle_s:.1f} s: dropped, for {who}")
                self._let_go(holder)
                holder = None
            if holder is None:
                self._holder = _Client(conn, who, now, now)
                self._say(f"probe: {who} connected")
            elif now >= refuse_at:
                self._refuse(conn, who, holder)
            else:
                self._waiting.append((conn, who, refuse_at))

    def _refuse(self, conn: socket.socket, who: str, holder: _Client) -> None:
        """Answer what ``conn`` has asked (its first request, normally there by now) with ``busy``, and close it. What
        it sent is read first, so that closing does not reset the connection under the answer."""
        self._say(f"probe: refused {who}: {holder.who} holds the probe (one host at a time; one that has asked "
                  f"nothing for {self._holder_idle_s:g} s gives way)")
        busy = {"error": "busy", "text": f"the simulated probe serves another host ({holder.who}); one host at a time"}
        with conn, contextlib.suppress(OSError):
            conn.setblocking(False)
            with contextlib.suppress(BlockingIOError):
                conn.recv(65536)
            conn.setblocking(True)
            conn.settimeout(CALL_TIMEOUT_S)
            conn.sendall(json.dumps(busy).encode() + b"\n")
            conn.shutdown(socket.SHUT_WR)

    def _let_go(self, holder: _Client, why: str = "") -> None:
        with contextlib.suppress(OSError):
            holder.conn.close()
        if self._holder is holder:
            self._holder = None
        if why:
            self._say(f"probe: {holder.who} disconnected after {self._clock.now() - holder.since:.1f} s ({why})")

    def _serve_requests(self, holder: _Client) -> None:
        """Answer every whole request line ``holder`` has sent; let it go once its connection ends or fails."""
        try:
            data = holder.conn.recv(65536)
            if not data:
                self._let_go(holder, "it closed the connection")
                return
            holder.pending += data
            holder.last_request = self._clock.now()
            while (end := holder.pending.find(b"\n")) >= 0:
                line = bytes(holder.pending[:end + 1])
                del holder.pending[:end + 1]
                answer, data_in = self._answer(line)
                holder.conn.sendall(json.dumps(answer).encode() + b"\n")
                if data_in:
                    holder.conn.sendall(data_in)
        except OSError as exc:  # the host went away, or stopped taking its answers
            self._let_go(holder, f"{type(exc).__name__}: {exc}")

    def _answer(self, line: bytes) -> tuple[dict[str, Any], bytes | memoryview]:
        """The answer line's object, and the data read in that follows it (raw; empty for any other answer)."""
        try:
            request = json.loads(line)
            result = self._call(str(request["op"]), list(request["args"]))
        except usb.core.USBTimeoutError as exc:
            return {"error": "timeout", "code": exc.backend_error_code, "errno": exc.errno, "text": exc.strerror}, b""
        except usb.core.USBError as exc:
            return {"error": "usb", "code": exc.backend_error_code, "errno": exc.errno, "text": exc.strerror}, b""
        except Exception as exc:  # a request this service cannot follow: say so, keep serving
            return {"error": "request", "text": f"{type(exc).__name__}: {exc}"}, b""
        if isinstance(result, memoryview):
            return {"ok": len(result), "data_bytes": len(result)}, result
        return {"ok": result}, b""

    def _id(self, obj: Any) -> int:
        """The integer standing for a device or handle object, which stays on this side (equal objects, the same
        probe enumerated again, get the same integer, so the table does not grow with reconnections)."""
        if obj not in self._ids:
            self._ids[obj] = len(self._objects) + 1
            self._objects[self._ids[obj]] = obj
        return self._ids[obj]

    def _call(self, op: str, args: list[Any]) -> Any:
        backend, objects = self._backend, self._objects
        if op == "enumerate_devices":
            return [self._id(dev) for dev in backend.enumerate_devices()]
        if op in ("get_device_descriptor", "get_configuration_descriptor", "get_interface_descriptor",
                  "get_endpoint_descriptor"):
            descriptor = getattr(backend, op)(objects[args[0]], *args[1:])
            return dataclasses.asdict(descriptor)
        if op == "open_device":
            return self._id(backend.open_device(objects[args[0]]))
        if op == "bulk_read":
            handle, ep, intf, size, timeout = args
            if len(self._bulk) != size:
                self._bulk = array.array("B", bytes(size))
            count = backend.bulk_read(objects[handle], ep, intf, self._bulk, timeout)
            return memoryview(self._bulk)[:count]
        if op == "ctrl_transfer":
            handle, request_type, request, value, index, data, timeout = args
            if request_type & usb.util.CTRL_IN:
                buff = array.array("B", bytes(data))
                count = backend.ctrl_transfer(objects[handle], request_type, request, value, index, buff, timeout)
                return memoryview(buff)[:count]
            out = array.array("B", base64.b64decode(data))
            return backend.ctrl_transfer(objects[handle], request_type, request, value, index, out, timeout)
        if op in _HANDLE_CALLS:
            return getattr(backend, op)(objects[args[0]], *args[1:])
        raise ValueError(f"unknown operation {op!r}")


_HANDLE_CALLS: Final = frozenset({
    "close_device", "set_configuration", "get_configuration", "set_interface_altsetting", "claim_interface",
    "release_interface", "clear_halt", "reset_device", "is_kernel_driver_active", "detach_kernel_driver",
    "attach_kernel_driver",
})


class ProbeServiceUnreachable(ProbeNotFound):
    """The probe service at ``tcp:[HOST:]PORT`` cannot serve this host, said in the network's terms: nothing listens
    there, nothing answers, it serves another host, or what answers is not a probe service."""


class RemoteProbeBackend(usb.backend.IBackend):
    """A pyusb backend for the probe a :class:`ProbeService` serves at ``spec`` (``tcp:[HOST:]PORT``)."""

    def __init__(self, spec: str) -> None:
        """``ValueError`` for a malformed ``spec``; the connection is made on the first call (``usb.core.find``), so
        a service that is not there is a probe not found, as on a real bus (:meth:`connect` says why first)."""
        self._address = parse_tcp(spec)
        self.spec = spec
        self._socket: socket.socket | None = None
        self._stream: io.BufferedRWPair | None = None
        self._lock = threading.Lock()
        self._lost_because = ""
        """Why the last call found no service, in the network's terms."""
        self._answered = False
        """Whether the service has answered a call on this connection (a failure before it may be the wrong port)."""

    def connect(self) -> None:
        """Reach the service and ask it for its probe now: :class:`ProbeServiceUnreachable` saying why it cannot serve
        this host. Call it before the driver's first ``usb.core.find``, whose error speaks of USB devices (pyusb's
        calls can only see a service that is not there as an unplugged probe)."""
        try:
            self._rpc("enumerate_devices")
        except usb.core.USBError as exc:
            raise ProbeServiceUnreachable(f"probe service {self.spec}: {self._lost_because or exc}") from exc

    def close(self) -> None:
        """Drop the connection (the next call makes a new one, as pyusb's reconnection needs)."""
        with contextlib.suppress(OSError):
            if self._stream is not None:
                self._stream.close()
            if self._socket is not None:
                self._socket.close()
        self._stream = self._socket = None

    def _connected(self) -> io.BufferedRWPair:
        if self._stream is None:
            self._answered = False
            self._socket = socket.create_connection(self._address, timeout=CONNECT_TIMEOUT_S)
            self._socket.settimeout(CALL_TIMEOUT_S)
            self._socket.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            self._stream = self._socket.makefile("rwb")
        return self._stream

    def _rpc(self, op: str, *args: Any, into: memoryview | None = None) -> Any:
        """One call answered; data read in (see the module docstring) lands in ``into``, its first bytes."""
        with self._lock:
            try:
                stream = self._connected()
                stream.write(json.dumps({"op": op, "args": list(args)}).encode() + b"\n")
                stream.flush()
                line = stream.readline()
                if not line:
                    raise _ClosedUnanswered(f"{self._address[0]}:{self._address[1]} closed the connection without "
                                            "answering")
                answer = json.loads(line)
                self._answered = True
                error = None if "ok" in answer else str(answer["error"])
                if error is None and into is not None:  # a read: its data follows, as many bytes as it says
                    if answer.get("data_bytes") != answer["ok"]:
                        raise ValueError(f"a read answered {answer['ok']!r} with {answer.get('data_bytes')!r} "
                                         "data bytes")
                    _read_exactly(stream, into, answer["data_bytes"])
                elif "data_bytes" in answer:
                    raise ValueError(f"data with an answer that carries none: {answer}")
            except (OSError, ValueError, KeyError, TypeError) as exc:
                # A lost or confused connection is an unplugged probe; the next call connects afresh.
                self.close()
                self._lost_because = _why_lost(exc, *self._address, first_call=not self._answered)
                raise usb.core.USBError(f"No such device (probe service {self.spec}: {self._lost_because})",
                                        _LIBUSB_ERROR_NO_DEVICE, errno.ENODEV) from exc
            except BaseException:  # interrupted mid-answer: the stream is no longer at a line's start
                self.close()
                raise
        if error is None:
            return answer["ok"]
        if error == "busy":  # it serves another host: no probe here for now (the driver's reconnect asks again)
            self.close()
            self._lost_because = str(answer.get("text"))
            raise usb.core.USBError(f"No such device (probe service {self.spec}: {self._lost_because})",
                                    _LIBUSB_ERROR_NO_DEVICE, errno.ENODEV)
        if error == "timeout":
            raise usb.core.USBTimeoutError(answer["text"], answer["code"], answer["errno"])
        if error == "usb":
            raise usb.core.USBError(answer["text"], answer["code"], answer["errno"])
        raise usb.core.USBError(f"probe service refused {op}: {answer.get('text')}", _LIBUSB_ERROR_IO, errno.EIO)

    # -- usb.backend.IBackend ------------------------------------------------------------------------
    def enumerate_devices(self) -> Iterator[int]:
        yield from self._rpc("enumerate_devices")

    def get_parent(self, dev: int) -> None:
        return None

    def get_device_descriptor(self, dev: int) -> SimpleNamespace:
        return SimpleNamespace(**self._rpc("get_device_descriptor", dev))

    def get_configuration_descriptor(self, dev: int, config: int) -> SimpleNamespace:
        return SimpleNamespace(**self._rpc("get_configuration_descriptor", dev, config))

    def get_interface_descriptor(self, dev: int, intf: int, alt: int, config: int) -> SimpleNamespace:
        return SimpleNamespace(**self._rpc("get_interface_descriptor", dev, intf, alt, config))

    def get_endpoint_descriptor(self, dev: int, ep: int, intf: int, alt: int, config: int) -> SimpleNamespace:
        return SimpleNamespace(**self._rpc("get_endpoint_descriptor", dev, ep, intf, alt, config))

    def open_device(self, dev: int) -> int:
        handle: int = self._rpc("open_device", dev)
        return handle

    def close_device(self, dev_handle: int) -> None:
        """Never fails, as libusb's close cannot: pyusb keeps a handle whose close raised and tries again at exit.
        Without a connection the handle went with the one it was opened on (the service, or the simulator, is
        gone): there is nothing to close, and no new connection is made for it."""
        if self._stream is None:
            return
        with contextlib.suppress(usb.core.USBError):
            self._rpc("close_device", dev_handle)

    def set_configuration(self, dev_handle: int, config_value: int) -> None:
        self._rpc("set_configuration", dev_handle, config_value)

    def get_configuration(self, dev_handle: int) -> int:
        value: int = self._rpc("get_configuration", dev_handle)
        return value

    def set_interface_altsetting(self, dev_handle: int, intf: int, altsetting: int) -> None:
        self._rpc("set_interface_altsetting", dev_handle, intf, altsetting)

    def claim_interface(self, dev_handle: int, intf: int) -> None:
        self._rpc("claim_interface", dev_handle, intf)

    def release_interface(self, dev_handle: int, intf: int) -> None:
        self._rpc("release_interface", dev_handle, intf)

    def clear_halt(self, dev_handle: int, ep: int) -> None:
        self._rpc("clear_halt", dev_handle, ep)

    def reset_device(self, dev_handle: int) -> None:
        self._rpc("reset_device", dev_handle)

    def is_kernel_driver_active(self, dev_handle: int, intf: int) -> bool:
        active: bool = self._rpc("is_kernel_driver_active", dev_handle, intf)
        return active

    def detach_kernel_driver(self, dev_handle: int, intf: int) -> None:
        self._rpc("detach_kernel_driver", dev_handle, intf)

    def attach_kernel_driver(self, dev_handle: int, intf: int) -> None:
        self._rpc("attach_kernel_driver", dev_handle, intf)

    def bulk_read(self, dev_handle: int, ep: int, intf: int, buff: array.array[int], timeout: int) -> int:
        into = memoryview(buff).cast("B")
        count: int = self._rpc("bulk_read", dev_handle, ep, intf, len(into), timeout, into=into)
        return count

    def ctrl_transfer(self, dev_handle: int, bmRequestType: int, bRequest: int, wValue: int, wIndex: int,
                      data: array.array[int], timeout: int) -> int:
        if bmRequestType & usb.util.CTRL_IN:
            into = memoryview(data).cast("B")
            received: int = self._rpc("ctrl_transfer", dev_handle, bmRequestType, bRequest, wValue, wIndex, len(into),
                                      timeout, into=into)
            return received
        sent = base64.b64encode(bytes(data)).decode()
        count: int = self._rpc("ctrl_transfer", dev_handle, bmRequestType, bRequest, wValue, wIndex, sent, timeout)
        return count


class _ClosedUnanswered(ConnectionError):
    """The service's end closed before it answered a call."""


def _why_lost(exc: BaseException, host: str, port: int, *, first_call: bool) -> str:
    """Why a call found no probe service at ``host:port``, for a person at a rig; ``first_call``: nothing had answered
    on that connection yet (a port that is not the probe service's, likeliest the generator's)."""
    not_the_generators = ("; if that is the generator's port, the probe's is on the line `probe tcp:HOST:PORT` rfa sim "
                          "prints second") if first_call else ""
    if isinstance(exc, ConnectionRefusedError):
        return (f"nothing listens on {host}:{port} (connection refused): is `rfa sim --probe tcp:{port}` running on "
                f"{host}?")
    if isinstance(exc, socket.gaierror):
        return f"cannot find the host {host!r}: {exc.strerror}"
    if isinstance(exc, TimeoutError):
        return (f"no answer from {host}:{port} within {CALL_TIMEOUT_S:.0f} s (a machine that is down or busy, or a "
                "firewall dropping the connection)")
    if isinstance(exc, _ClosedUnanswered):
        return f"{exc}{not_the_generators}"
    if isinstance(exc, ConnectionError) and first_call:  # reset: the generator's port refusing a second host, say
        return f"{host}:{port} closed the connection without answering ({exc}){not_the_generators}"
    if isinstance(exc, ConnectionError):
        return f"the connection to {host}:{port} was lost: {exc}"
    if isinstance(exc, OSError):
        return f"cannot reach {host}:{port}: {exc.strerror or exc}"
    return f"{host}:{port} does not answer as a probe service ({type(exc).__name__}: {exc}){not_the_generators}"


def _read_exactly(stream: io.BufferedRWPair, into: memoryview | None, count: object) -> None:
    """Read an answer's ``count`` data bytes into ``into``: ``ValueError`` if they cannot fit (an answer to another
    call, a confused service), ``ConnectionError`` if the connection ends first; either is an unplugged probe."""
    if into is None or not isinstance(count, int) or not 0 <= count <= len(into):
        raise ValueError(f"an answer with {count!r} data bytes, for a call that reads at most "
                         f"{0 if into is None else len(into)}")
    got = 0
    while got < count:
        n = stream.readinto(into[got:count])
        if not n:
            raise ConnectionError(f"the connection ended {count - got} bytes into an answer's data")
        got += n
