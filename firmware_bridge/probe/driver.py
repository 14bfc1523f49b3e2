"""The ultrasound probe driver over pyusb: settings by vendor control request, frames from bulk IN 0x81.

The same code talks to the real probe and to the simulated one: the caller hands in the pyusb backend
(``None`` for the system's libusb, the simulator's ``SimProbeBackend`` in tests and ``rfa sim``) and the
driver finds the device with ``usb.core.find``.

No threads and no sleeps. The owner calls :meth:`UltrasoundProbe.poll` from its loop; each bulk read is
bounded by the USB timeout (milliseconds), and "no frame for too long" is judged on the injected clock,
so a stalled, silent or unplugged probe always ends in a :class:`~firmware_bridge.errors.ProbeError`
subclass and never in a hang. What to *do* about a lost probe is policy and lives in ``safety/``.
"""

from __future__ import annotations

import array
import contextlib
import errno
import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Final

import numpy as np
import numpy.typing as npt
import usb.core
import usb.util

from firmware_bridge.clock import Clock
from firmware_bridge.errors import ProbeError
from firmware_bridge.probe.reassembler import DEFAULT_MAX_FRAME_BYTES, FrameReassembler, RawFrame, ReaderStats
from firmware_bridge.probe.wire import (
    BULK_IN_ENDPOINT,
    DEPTH_MAX_MM,
    DEPTH_MIN_MM,
    FREQUENCY_STEP_KHZ,
    GAIN_MAX_DB,
    INFO_BYTES,
    INFO_STRUCT,
    INTERFACE,
    PACKET_BYTES,
    PRODUCT_ID,
    REQUEST_TYPE_IN,
    REQUEST_TYPE_OUT,
    STATUS_STRUCT,
    VENDOR_ID,
    FrameFormat,
    ProbeInfo,
    ProbeStatus,
    Request,
)

_LOST_ERRNOS: Final = frozenset({errno.ENODEV, errno.ENOENT, errno.EIO, errno.ESHUTDOWN})
"""What libusb reports for a device that has gone (unplugged, reset, powered down)."""
_MAX_FREQUENCY_KHZ: Final = 0xFFFF * FREQUENCY_STEP_KHZ


class ProbeNotFound(ProbeError):
    """No device with the probe's vendor and product id is attached."""


class ProbeRefused(ProbeError):
    """The probe answered a control request with a stall: it refused the request or its value."""


class ProbeStalled(ProbeError):
    """The bulk endpoint stalled; the next :meth:`UltrasoundProbe.poll` clears the halt and resumes."""


class ProbeDisconnected(ProbeError):
    """The device is gone; :meth:`UltrasoundProbe.reconnect` finds it again once it is back."""


class ProbeTimeout(ProbeError):
    """A control request went unanswered, or no valid frame arrived within the frame timeout."""


@dataclass(frozen=True, slots=True)
class ProbeAddress:
    """Which device is the probe (configuration data; opens nothing)."""

    vendor_id: int = VENDOR_ID
    product_id: int = PRODUCT_ID


@dataclass(frozen=True, slots=True)
class ProbeOptions:
    frame_timeout_s: float = 0.5
    """While streaming, no valid frame for this long is a :class:`ProbeTimeout` (a link concern; the
    imaging-lost interlock in ``safety/`` applies its own, plan-given limit)."""
    bulk_timeout_ms: int = 2
    """One bulk read waits at most this long for data; a timeout there just means "nothing yet"."""
    control_timeout_ms: int = 200
    max_frame_bytes: int = DEFAULT_MAX_FRAME_BYTES
    max_reads_per_poll: int = 256
    """Bounds the time one :meth:`UltrasoundProbe.poll` can take when the probe floods the host."""


@dataclass(frozen=True, slots=True)
class ProbeFrame:
    """One verified frame: samples as ``lines × samples_per_line`` (one line contiguous)."""

    frame_number: int
    timestamp_us: int
    """The probe's own timestamp of the acquisition."""
    received_at_s: float
    """The host clock when the driver handed the frame out."""
    depth_mm: int
    format: FrameFormat
    samples: npt.NDArray[np.uint8] | npt.NDArray[np.int16]

    @property
    def lines(self) -> int:
        return int(self.samples.shape[0])

    @property
    def samples_per_line(self) -> int:
        return int(self.samples.shape[1])


DeviceLocator = Callable[[], Any]
"""Returns the pyusb device of the probe, or ``None`` when it is not attached."""


def usb_locator(address: ProbeAddress = ProbeAddress(), backend: Any = None) -> DeviceLocator:
    """A locator that asks pyusb for the device: ``backend=None`` is the system's libusb."""

    def locate() -> Any:
        try:
            return usb.core.find(idVendor=address.vendor_id, idProduct=address.product_id, backend=backend)
        except usb.core.NoBackendError as exc:  # no libusb on this machine: no USB probe can ever be found
            raise ProbeError(f"no USB backend on this machine ({exc}): install libusb-1.0 "
                             "(Debian: apt-get install libusb-1.0-0)") from exc

    return locate


def _let_go(device: Any) -> None:
    """Release the device's interface and close its handle, once and for good: pyusb's finalizer, which does what
    ``usb.util.dispose_resources`` does and is then spent. A device that has gone cannot be released, and its
    handle is gone with it; but where the backend's close failed, ``dispose_resources`` left pyusb holding the
    handle, and its finalizer tried to close it again at interpreter exit: a traceback after a clean end."""
    with contextlib.suppress(usb.core.USBError):
        device.finalize()


class UltrasoundProbe:
    """A connected probe. Build it with :meth:`open`; call :meth:`poll` each tick while streaming."""

    def __init__(self, locate: DeviceLocator, clock: Clock, options: ProbeOptions = ProbeOptions()) -> None:
        self._locate = locate
        self._clock = clock
        self.options = options
        self._reassembler = FrameReassembler(options.max_frame_bytes)
        read_bytes = math.ceil(options.max_frame_bytes / PACKET_BYTES) * PACKET_BYTES
        self._read_buffer = array.array("B", bytes(read_bytes))
        self._device: Any = None
        self._halted = False
        self._depth_mm: int | None = None
        self._gain_db: float | None = None
        self._frequency_khz: int | None = None
        self._streaming = False
        self._stream_since_s = 0.0
        self._last_frame_at_s: float | None = None
        self.stall_count = 0
        self.disconnect_count = 0
        self.info = self._attach()

    @classmethod
    def open(
        cls,
        clock: Clock,
        *,
        address: ProbeAddress = ProbeAddress(),
        backend: Any = None,
        options: ProbeOptions = ProbeOptions(),
    ) -> UltrasoundProbe:
        """Find the probe through pyusb (``backend=None``: libusb) and read its ``GET_INFO``."""
        return cls(usb_locator(address, backend), clock, options)

    # -- state ---------------------------------------------------------------------------------------

    @property
    def connected(self) -> bool:
        return self._device is not None

    @property
    def streaming(self) -> bool:
        """Whether the host has asked the probe to stream (it is kept across a reconnect)."""
        return self._streaming

    @property
    def last_frame_at_s(self) -> float | None:
        """Host clock time of the last valid frame, ``None`` before the first."""
        return self._last_frame_at_s

    @property
    def stats(self) -> ReaderStats:
        return self._reassembler.stats

    def counters(self) -> dict[str, int]:
        """The link's counters for a person: the reassembler's and the USB faults the driver has met."""
        return {**self.stats.as_dict(), "usb_stalls": self.stall_count, "disconnects": self.disconnect_count}

    @property
    def depth_mm(self) -> int | None:
        return self._depth_mm

    @property
    def gain_db(self) -> float | None:
        return self._gain_db

    @property
    def frequency_khz(self) -> int | None:
        return self._frequency_khz

    # -- settings ------------------------------------------------------------------------------------

    def set_depth_mm(self, depth_mm: int) -> None:
        if not isinstance(depth_mm, int) or not DEPTH_MIN_MM <= depth_mm <= DEPTH_MAX_MM:
            raise ValueError(f"depth must be an integer {DEPTH_MIN_MM}..{DEPTH_MAX_MM} mm, not {depth_mm!r}")
        self._out(Request.SET_DEPTH, depth_mm)
        self._depth_mm = depth_mm

    def set_gain_db(self, gain_db: float) -> None:
        """Receive gain in dB, sent in 0.1 dB steps (rounded to the nearest step)."""
        if not math.isfinite(gain_db) or not 0.0 <= gain_db <= GAIN_MAX_DB:
            raise ValueError(f"gain must be 0..{GAIN_MAX_DB} dB, not {gain_db!r}")
        tenths = round(gain_db * 10)
        self._out(Request.SET_GAIN, tenths)
        self._gain_db = tenths / 10.0

    def set_frequency_khz(self, frequency_khz: int) -> None:
        """Transmit frequency; the wire carries 10 kHz units, so it must be a multiple of 10 kHz."""
        if (
            not isinstance(frequency_khz, int)
            or not 0 < frequency_khz <= _MAX_FREQUENCY_KHZ
            or frequency_khz % FREQUENCY_STEP_KHZ
        ):
            raise ValueError(
                f"frequency must be a positive multiple of {FREQUENCY_STEP_KHZ} kHz up to "
                f"{_MAX_FREQUENCY_KHZ} kHz, not {frequency_khz!r}"
            )
        self._out(Request.SET_FREQUENCY, frequency_khz // FREQUENCY_STEP_KHZ)
        self._frequency_khz = frequency_khz

    def freeze(self) -> None:
        self._out(Request.FREEZE, 0)
        self._streaming = False

    def unfreeze(self) -> None:
        self._out(Request.UNFREEZE, 0)
        if not self._streaming:
            self._stream_since_s = self._clock.now()
        self._streaming = True

    def read_status(self) -> ProbeStatus:
        data = self._in(Request.GET_STATUS, STATUS_STRUCT.size)
        try:
            return ProbeStatus.decode(data)
        except ValueError as exc:  # struct.error is a ValueError; so is an unknown state
            raise ProbeError(f"probe sent an unreadable GET_STATUS answer ({len(data)} bytes)") from exc

    # -- frames --------------------------------------------------------------------------------------

    def poll(self) -> list[ProbeFrame]:
        """The frames that have arrived since the last call (possibly none), in order.

        Raises :class:`ProbeStalled` when the bulk endpoint stalls (the next call clears the halt),
        :class:`ProbeDisconnected` when the device is gone, and :class:`ProbeTimeout` while streaming
        when no valid frame has arrived for ``frame_timeout_s`` of the injected clock.
        """
        device = self._require_device()
        if self._halted:
            self._clear_halt(device)
        frames: list[ProbeFrame] = []
        view = memoryview(self._read_buffer)
        for _ in range(self.options.max_reads_per_poll):
            try:
                count = device.read(BULK_IN_ENDPOINT, self._read_buffer, self.options.bulk_timeout_ms)
            except usb.core.USBTimeoutError:
                break
            except usb.core.USBError as exc:
                if exc.errno == errno.EPIPE:
                    self._halted = True
                    self.stall_count += 1
                    raise ProbeStalled("the probe's bulk endpoint 0x81 stalled") from exc
                raise self._lost("reading frames", exc) from exc
            if count <= 0:
                break
            frames.extend(self._decode(raw) for raw in self._reassembler.feed(view[:count]))
        now = self._clock.now()
        if frames:
            self._last_frame_at_s = now
            return frames
        if self._streaming:
            since = max(self._stream_since_s, self._last_frame_at_s or self._stream_since_s)
            if now - since > self.options.frame_timeout_s:
                raise ProbeTimeout(
                    f"no valid frame from the probe for {now - since:.3f} s "
                    f"(limit {self.options.frame_timeout_s} s)"
                )
        return frames

    def _decode(self, raw: RawFrame) -> ProbeFrame:
        header = raw.header
        fmt = FrameFormat(header.format)
        shape = (header.lines, header.samples_per_line)
        samples: npt.NDArray[np.uint8] | npt.NDArray[np.int16]
        if fmt is FrameFormat.ENVELOPE_U8:
            samples = np.frombuffer(raw.data, dtype=np.uint8).reshape(shape)
        else:
            samples = np.frombuffer(raw.data, dtype=np.dtype("<i2")).reshape(shape).view(np.int16)
        return ProbeFrame(
            frame_number=header.frame_number,
            timestamp_us=header.timestamp_us,
            received_at_s=self._clock.now(),
            depth_mm=header.depth_mm,
            format=fmt,
            samples=samples,
        )

    # -- connection ----------------------------------------------------------------------------------

    def reconnect(self) -> None:
        """Find the probe again, restore the host's settings and streaming state.

        Raises :class:`ProbeNotFound` while it is still absent; call again later.
        """
        self._release()
        self.info = self._attach()
        self._reassembler.restart()
        if self._depth_mm is not None:
            self.set_depth_mm(self._depth_mm)
        if self._gain_db is not None:
            self.set_gain_db(self._gain_db)
        if self._frequency_khz is not None:
            self.set_frequency_khz(self._frequency_khz)
        if self._streaming:
            self._streaming = False
            self.unfreeze()

    def close(self) -> None:
        """Release the device; safe to call twice. Leaves the probe as it is (imaging keeps running)."""
        self._release()

    def _attach(self) -> ProbeInfo:
        try:
            device = self._locate()
        except usb.core.USBError as exc:
            raise ProbeNotFound(f"cannot enumerate USB devices: {exc}") from exc
        if device is None:
            raise ProbeNotFound("no ultrasound probe attached (vendor/product id not found)")
        try:
            device.set_configuration()
            usb.util.claim_interface(device, INTERFACE)
        except usb.core.USBError as exc:
            _let_go(device)
            raise ProbeError(f"cannot open the ultrasound probe: {exc}") from exc
        self._device = device
        self._halted = False
        data = self._in(Request.GET_INFO, INFO_BYTES)
        try:
            return ProbeInfo.decode(data)
        except ValueError as exc:
            raise ProbeError(
                f"probe sent an unreadable GET_INFO answer ({len(data)} bytes, need {INFO_STRUCT.size})"
            ) from exc

    def _release(self) -> None:
        device, self._device = self._device, None
        if device is not None:
            _let_go(device)

    def _require_device(self) -> Any:
        if self._device is None:
            raise ProbeDisconnected("the ultrasound probe is disconnected; reconnect() when it is back")
        return self._device

    def _clear_halt(self, device: Any) -> None:
        try:
            device.clear_halt(BULK_IN_ENDPOINT)
        except usb.core.USBError as exc:
            raise self._lost("clearing the bulk endpoint halt", exc) from exc
        self._halted = False

    def _out(self, request: Request, value: int) -> None:
        device = self._require_device()
        try:
            device.ctrl_transfer(
                REQUEST_TYPE_OUT, request, value, INTERFACE, None, self.options.control_timeout_ms
            )
        except usb.core.USBError as exc:
            raise self._control_error(request, value, exc) from exc

    def _in(self, request: Request, length: int) -> bytes:
        device = self._require_device()
        try:
            answer = device.ctrl_transfer(
                REQUEST_TYPE_IN, request, 0, INTERFACE, length, self.options.control_timeout_ms
            )
        except usb.core.USBError as exc:
            raise self._control_error(request, 0, exc) from exc
        return bytes(answer)

    def _control_error(self, request: Request, value: int, exc: usb.core.USBError) -> ProbeError:
        if isinstance(exc, usb.core.USBTimeoutError):
            return ProbeTimeout(
                f"the probe did not answer {request.name} within {self.options.control_timeout_ms} ms"
            )
        if exc.errno == errno.EPIPE:
            return ProbeRefused(f"the probe refused {request.name} (wValue={value})")
        return self._lost(request.name, exc)

    def _lost(self, doing: str, exc: usb.core.USBError) -> ProbeError:
        if exc.errno in _LOST_ERRNOS:
            self._release()
            self.disconnect_count += 1
            return ProbeDisconnected(f"the ultrasound probe disappeared while {doing}: {exc}")
        return ProbeError(f"USB error while {doing}: {exc}")
