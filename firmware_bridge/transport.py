"""Byte transports for the generator link: one factory, one small class per transport.

:func:`open_transport` opens any pyserial URL (a device path, ``socket://host:port``, a pty path, or
``loop://``) through ``serial.serial_for_url``, so real hardware, the simulator process and a test all
use the same code path. :func:`memory_pair` gives two connected in-memory ends for lockstep tests.

Reads never block: ``read`` returns what has arrived (possibly nothing). Writes that fail or time out
raise :class:`~firmware_bridge.errors.LinkError`, chained to the cause, so a vanished port is one clear
error and not a traceback from deep inside pyserial.
"""

from __future__ import annotations

import contextlib
from collections import deque
from typing import Final, Protocol

import serial

from firmware_bridge.errors import LinkError

BAUDRATE: Final = 921_600
WRITE_TIMEOUT_S: Final = 0.05


class Transport(Protocol):
    """A full-duplex byte pipe."""

    url: str

    def read(self, max_bytes: int = 65536) -> bytes:
        """The bytes that have arrived, up to ``max_bytes``; ``b""`` if none. Never blocks."""
        ...

    def write(self, data: bytes) -> None:
        """Send all of ``data`` or raise ``LinkError``."""
        ...

    def close(self) -> None:
        """Release the port; safe to call twice."""
        ...


class SerialTransport:
    """A pyserial port opened from a URL: 921600 baud, 8N1, exclusive (the contract's "exclusive open").

    ``exclusive=True`` goes to every URL, not only to plain device paths: ``spy://``, ``alt://`` and
    ``hwgrep://`` open a real local port with the platform's class, and without the flag a second program
    could share the generator link. pyserial 3.5 accepts the flag for every handler (checked for plain
    paths and ptys, ``spy://``, ``alt://``, ``hwgrep://``, ``socket://``, ``rfc2217://``, ``loop://``); on
    ``socket://``, ``rfc2217://`` and ``loop://`` it has no effect, since there is no local device to lock
    (``loop://`` is in-process; a network port belongs to the server, which decides who may connect). On
    POSIX the lock is pyserial's advisory ``flock``: it keeps out every program that asks for exclusive
    access (pyserial's default in its own tools), not one that opens the device without asking.
    """

    def __init__(self, url: str) -> None:
        self.url = url
        kwargs: dict[str, object] = {
            "baudrate": BAUDRATE,
            "bytesize": serial.EIGHTBITS,
            "parity": serial.PARITY_NONE,
            "stopbits": serial.STOPBITS_ONE,
            "timeout": 0,
            "write_timeout": WRITE_TIMEOUT_S,
            "exclusive": True,
        }
        try:
            self._port = serial.serial_for_url(url, **kwargs)
        except (serial.SerialException, OSError, ValueError) as exc:
            raise LinkError(f"cannot open generator link {url!r}: {exc}") from exc

    def read(self, max_bytes: int = 65536) -> bytes:
        try:
            # With timeout 0 pyserial returns what has arrived, up to max_bytes. Do not size the read by
            # ``in_waiting``: for ``socket://`` it is only 0 or 1 (a select), one byte per call.
            return bytes(self._port.read(max_bytes))
        except (serial.SerialException, OSError, TypeError, AttributeError) as exc:
            raise LinkError(f"generator link {self.url!r} lost while reading: {exc}") from exc

    def write(self, data: bytes) -> None:
        try:
            self._port.write(data)
        except (serial.SerialException, serial.SerialTimeoutException, OSError, AttributeError) as exc:
            raise LinkError(f"generator link {self.url!r} lost while writing: {exc}") from exc

    def close(self) -> None:
        port, self._port = getattr(self, "_port", None), None
        if port is not None:
            with contextlib.suppress(serial.SerialException, OSError):
                port.close()


class MemoryTransport:
    """One end of an in-memory pipe; bytes written appear at the peer's ``read`` at once."""

    def __init__(self, url: str, rx: deque[bytes], tx: deque[bytes]) -> None:
        self.url = url
        self._rx = rx
        self._tx = tx
        self.closed = False

    def read(self, max_bytes: int = 65536) -> bytes:
        if self.closed:
            raise LinkError(f"{self.url} is closed")
        out = bytearray()
        while self._rx and len(out) < max_bytes:
            chunk = self._rx.popleft()
            room = max_bytes - len(out)
            if len(chunk) > room:
                self._rx.appendleft(chunk[room:])
                chunk = chunk[:room]
            out += chunk
        return bytes(out)

    def write(self, data: bytes) -> None:
        if self.closed:
            raise LinkError(f"{self.url} is closed")
        if data:
            self._tx.append(bytes(data))

    def close(self) -> None:
        self.closed = True


def memory_pair(name: str = "mem") -> tuple[MemoryTransport, MemoryTransport]:
    """Two connected ends ``(host, device)`` for lockstep tests and the in-process simulator."""
    a_to_b: deque[bytes] = deque()
    b_to_a: deque[bytes] = deque()
    return (MemoryTransport(f"memory://{name}/host", b_to_a, a_to_b),
            MemoryTransport(f"memory://{name}/device", a_to_b, b_to_a))


def open_transport(url: str) -> Transport:
    """Open the generator link named by a pyserial URL or device path."""
    return SerialTransport(url)
