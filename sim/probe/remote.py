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
import socket
import threading
from collections.abc import Iterator
from types import SimpleNamespace
from typing import Any, Final

import usb.backend
import usb.core
import usb.util

from sim.probe.backend import SimProbeBackend

_LIBUSB_ERROR_NO_DEVICE: Final = -4
_LIBUSB_ERROR_IO: Final = -1
CONNECT_TIMEOUT_S: Final = 5.0
CALL_TIMEOUT_S: Final = 5.0
"""Longer than any transfer timeout the driver asks for: a call not answered by then is a lost probe."""


def parse_tcp(spec: str, *, default_host: str = "127.0.0.1") -> tuple[str, int]:
    """``tcp:PORT`` or ``tcp:HOST:PORT`` -> (host, port); ``ValueError`` naming the expected form. One host at a
    time: a second one connecting waits until the first has gone, and sees its probe as not found meanwhile."""
    kind, _, rest = spec.partition(":")
    host, _, port = rest.rpartition(":")
    if kind != "tcp" or not port.isdigit() or int(port) > 65535:
        raise ValueError(f"expected tcp:PORT or tcp:HOST:PORT, not {spec!r}")
    return host or default_host, int(port)


class ProbeService:
    """Serves ``backend`` to one host at a time on a TCP port of this machine (a thread per service)."""

    def __init__(self, backend: SimProbeBackend, port: int = 0, host: str = "127.0.0.1") -> None:
        self._backend = backend
        self._listener = socket.create_server((host, port))
        self._listener.settimeout(0.2)
        self.url = f"tcp:{host}:{self._listener.getsockname()[1]}"
        self._objects: dict[int, Any] = {}
        self._ids: dict[Any, int] = {}
        self._bulk = array.array("B")
        """The bulk transfer buffer, reused: the driver asks for up to a frame's worth (megabytes) per read."""
        self._stopping = threading.Event()
        self._conn: socket.socket | None = None
        self._thread = threading.Thread(target=self._serve, name="probe-service", daemon=True)

    def start(self) -> ProbeService:
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop serving; a connected host sees its probe unplugged."""
        self._stopping.set()
        conn = self._conn
        if conn is not None:
            with contextlib.suppress(OSError):
                conn.shutdown(socket.SHUT_RDWR)
        self._thread.join(2.0)
        self._listener.close()

    def _serve(self) -> None:
        while not self._stopping.is_set():
            try:
                conn, _ = self._listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            self._conn = conn
            with conn, conn.makefile("rwb") as stream:
                conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                with contextlib.suppress(OSError):  # the host went away, or stop() shut the connection
                    for line in stream:
                        answer, data = self._answer(line)
                        stream.write(json.dumps(answer).encode() + b"\n")
                        stream.write(data)
                        stream.flush()
            self._conn = None

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


class RemoteProbeBackend(usb.backend.IBackend):
    """A pyusb backend for the probe a :class:`ProbeService` serves at ``spec`` (``tcp:[HOST:]PORT``)."""

    def __init__(self, spec: str) -> None:
        """``ValueError`` for a malformed ``spec``; the connection is made on the first call (``usb.core.find``), so
        a service that is not there is a probe not found, as on a real bus."""
        self._address = parse_tcp(spec)
        self.spec = spec
        self._socket: socket.socket | None = None
        self._stream: io.BufferedRWPair | None = None
        self._lock = threading.Lock()

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
                answer = json.loads(stream.readline())  # b"" (closed) fails to decode, as a damaged line does
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
                raise usb.core.USBError(f"No such device (probe service {self.spec}: {type(exc).__name__}: {exc})",
                                        _LIBUSB_ERROR_NO_DEVICE, errno.ENODEV) from exc
            except BaseException:  # interrupted mid-answer: the stream is no longer at a line's start
                self.close()
                raise
        if error is None:
            return answer["ok"]
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
