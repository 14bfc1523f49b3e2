"""The simulated probe as a pyusb backend, so ``usb.core.find(backend=SimProbeBackend(...))`` finds it.

pyusb's ``usb.core`` builds its ``Device``, ``Configuration``, ``Interface`` and ``Endpoint`` objects
from whatever a backend returns, so by answering the ``usb.backend.IBackend`` calls this module puts the
simulator under the *same* driver code that runs the real probe (the model is PyFtdi's virtual USB
backend). Errors are raised exactly as pyusb's libusb1 backend raises them: ``USBError`` with the
libusb error code and errno (``EPIPE`` for a stall, ``ENODEV`` for an unplugged device) and
``USBTimeoutError`` for a timeout, so the driver's error mapping is exercised for real.
"""

from __future__ import annotations

import array
import errno
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Final

import usb.backend
import usb.core

from firmware_bridge.probe.wire import (
    BULK_IN_ENDPOINT,
    INTERFACE,
    PACKET_BYTES,
    REQUEST_TYPE_IN,
    REQUEST_TYPE_OUT,
    Request,
)
from sim.probe.device import Refused, SimProbe

_LIBUSB_ERROR_NO_DEVICE: Final = -4
_LIBUSB_ERROR_TIMEOUT: Final = -7
_LIBUSB_ERROR_PIPE: Final = -9
_LIBUSB_ERROR_INVALID_PARAM: Final = -2
_CONFIGURATION_VALUE: Final = 1
_GET_DESCRIPTOR: Final = 0x06
_DESCRIPTOR_STRING: Final = 0x03
_LANGID_EN_US: Final = 0x0409
_SPEED_HIGH: Final = 3


@dataclass(frozen=True, slots=True)
class DeviceDescriptor:
    idVendor: int
    idProduct: int
    bus: int
    address: int
    port_number: int
    bLength: int = 18
    bDescriptorType: int = 0x01
    bcdUSB: int = 0x0200
    bDeviceClass: int = 0x00
    bDeviceSubClass: int = 0x00
    bDeviceProtocol: int = 0x00
    bMaxPacketSize0: int = 64
    bcdDevice: int = 0x0100
    iManufacturer: int = 1
    iProduct: int = 2
    iSerialNumber: int = 3
    bNumConfigurations: int = 1
    port_numbers: tuple[int, ...] = ()
    speed: int = _SPEED_HIGH


@dataclass(frozen=True, slots=True)
class ConfigurationDescriptor:
    bLength: int = 9
    bDescriptorType: int = 0x02
    wTotalLength: int = 9 + 9 + 7
    bNumInterfaces: int = 1
    bConfigurationValue: int = _CONFIGURATION_VALUE
    iConfiguration: int = 0
    bmAttributes: int = 0x80
    bMaxPower: int = 250
    extra_descriptors: list[int] = field(default_factory=list)


@dataclass(frozen=True, slots=True)
class InterfaceDescriptor:
    bLength: int = 9
    bDescriptorType: int = 0x04
    bInterfaceNumber: int = INTERFACE
    bAlternateSetting: int = 0
    bNumEndpoints: int = 1
    bInterfaceClass: int = 0xFF
    bInterfaceSubClass: int = 0x00
    bInterfaceProtocol: int = 0x00
    iInterface: int = 0
    extra_descriptors: list[int] = field(default_factory=list)


@dataclass(frozen=True, slots=True)
class EndpointDescriptor:
    bLength: int = 7
    bDescriptorType: int = 0x05
    bEndpointAddress: int = BULK_IN_ENDPOINT
    bmAttributes: int = 0x02
    wMaxPacketSize: int = PACKET_BYTES
    bInterval: int = 0
    bRefresh: int = 0
    bSynchAddress: int = 0
    extra_descriptors: list[int] = field(default_factory=list)


@dataclass(frozen=True, slots=True)
class _DeviceId:
    """What ``enumerate_devices`` yields: one probe as it is plugged in now."""

    probe: SimProbe
    generation: int
    address: int


@dataclass(frozen=True, slots=True)
class _Handle:
    device: _DeviceId


def _error(code: int, err: int, text: str) -> usb.core.USBError:
    return usb.core.USBError(text, code, err)


def _stall(text: str) -> usb.core.USBError:
    return _error(_LIBUSB_ERROR_PIPE, errno.EPIPE, f"Pipe error ({text})")


class SimProbeBackend(usb.backend.IBackend):
    """A pyusb backend whose bus holds the given simulated probes."""

    def __init__(self, *probes: SimProbe) -> None:
        super().__init__()
        self.probes = probes

    # -- enumeration and descriptors -----------------------------------------------------------------

    def enumerate_devices(self) -> Iterator[_DeviceId]:
        for index, probe in enumerate(self.probes):
            probe.follow_script()
            if probe.plugged:
                yield _DeviceId(probe, probe.generation, address=2 + index + 16 * probe.generation)

    def get_parent(self, dev: _DeviceId) -> None:
        return None

    def get_device_descriptor(self, dev: _DeviceId) -> DeviceDescriptor:
        config = dev.probe.config
        return DeviceDescriptor(
            idVendor=config.vendor_id,
            idProduct=config.product_id,
            bus=1,
            address=dev.address,
            port_number=1 + self.probes.index(dev.probe),
        )

    def get_configuration_descriptor(self, dev: _DeviceId, config: int) -> ConfigurationDescriptor:
        self._check_index(config)
        return ConfigurationDescriptor()

    def get_interface_descriptor(
        self, dev: _DeviceId, intf: int, alt: int, config: int
    ) -> InterfaceDescriptor:
        self._check_index(config, intf, alt)
        return InterfaceDescriptor()

    def get_endpoint_descriptor(
        self, dev: _DeviceId, ep: int, intf: int, alt: int, config: int
    ) -> EndpointDescriptor:
        self._check_index(config, intf, alt, ep)
        return EndpointDescriptor()

    @staticmethod
    def _check_index(*indices: int) -> None:
        if any(index != 0 for index in indices):
            raise IndexError("the simulated probe has one configuration, interface and endpoint")

    # -- handles -------------------------------------------------------------------------------------

    def open_device(self, dev: _DeviceId) -> _Handle:
        handle = _Handle(dev)
        self._alive(handle)
        return handle

    def close_device(self, dev_handle: _Handle) -> None:
        """Closing always succeeds, even for an unplugged device (as libusb's close does)."""

    def set_configuration(self, dev_handle: _Handle, config_value: int) -> None:
        self._alive(dev_handle)
        if config_value not in (0, _CONFIGURATION_VALUE):
            raise _error(_LIBUSB_ERROR_INVALID_PARAM, errno.EINVAL, "Invalid parameter")

    def get_configuration(self, dev_handle: _Handle) -> int:
        self._alive(dev_handle)
        return _CONFIGURATION_VALUE

    def set_interface_altsetting(self, dev_handle: _Handle, intf: int, altsetting: int) -> None:
        self._alive(dev_handle)

    def claim_interface(self, dev_handle: _Handle, intf: int) -> None:
        self._alive(dev_handle)

    def release_interface(self, dev_handle: _Handle, intf: int) -> None:
        self._alive(dev_handle)

    def clear_halt(self, dev_handle: _Handle, ep: int) -> None:
        probe = self._alive(dev_handle)
        if ep == BULK_IN_ENDPOINT:
            probe.bulk_halted = False

    def reset_device(self, dev_handle: _Handle) -> None:
        probe = self._alive(dev_handle)
        probe.unplug()
        probe.plug_in()

    def is_kernel_driver_active(self, dev_handle: _Handle, intf: int) -> bool:
        return False

    def detach_kernel_driver(self, dev_handle: _Handle, intf: int) -> None:
        """No kernel driver ever binds the simulated probe."""

    def attach_kernel_driver(self, dev_handle: _Handle, intf: int) -> None:
        """No kernel driver ever binds the simulated probe."""

    @staticmethod
    def _alive(dev_handle: _Handle) -> SimProbe:
        """The probe behind ``dev_handle``, once it has done what its fault script holds up to now; ``ENODEV`` if it
        has been unplugged since the handle was opened."""
        probe = dev_handle.device.probe
        probe.follow_script()
        if not probe.plugged or probe.generation != dev_handle.device.generation:
            raise _error(
                _LIBUSB_ERROR_NO_DEVICE, errno.ENODEV, "No such device (it may have been disconnected)"
            )
        return probe

    # -- transfers -----------------------------------------------------------------------------------

    def bulk_read(self, dev_handle: _Handle, ep: int, intf: int, buff: array.array[int], timeout: int) -> int:
        probe = self._alive(dev_handle)
        if ep != BULK_IN_ENDPOINT:
            raise _error(_LIBUSB_ERROR_INVALID_PARAM, errno.EINVAL, "Invalid parameter")
        if probe.bulk_halted:
            raise _stall("bulk endpoint halted")
        chunk = probe.read_bulk(len(buff) * buff.itemsize)
        if chunk is None:
            raise usb.core.USBTimeoutError("Operation timed out", _LIBUSB_ERROR_TIMEOUT, errno.ETIMEDOUT)
        memoryview(buff).cast("B")[: len(chunk)] = chunk
        return len(chunk)

    def ctrl_transfer(
        self,
        dev_handle: _Handle,
        bmRequestType: int,
        bRequest: int,
        wValue: int,
        wIndex: int,
        data: array.array[int],
        timeout: int,
    ) -> int:
        probe = self._alive(dev_handle)
        if bmRequestType == 0x80 and bRequest == _GET_DESCRIPTOR and wValue >> 8 == _DESCRIPTOR_STRING:
            return self._copy_in(data, self._string_descriptor(probe, wValue & 0xFF))
        if bmRequestType not in (REQUEST_TYPE_IN, REQUEST_TYPE_OUT) or wIndex != INTERFACE:
            raise _stall(f"request type {bmRequestType:#04x} to index {wIndex} not supported")
        try:
            probe.check_control_allowed()
            if bmRequestType == REQUEST_TYPE_IN:
                return self._copy_in(data, self._vendor_in(probe, bRequest))
            self._vendor_out(probe, bRequest, wValue)
        except Refused as exc:
            raise _stall(str(exc)) from exc
        return len(data) * data.itemsize

    @staticmethod
    def _vendor_in(probe: SimProbe, request: int) -> bytes:
        if request == Request.GET_INFO:
            return probe.info().encode()
        if request == Request.GET_STATUS:
            return probe.status().encode()
        raise Refused(f"unknown IN request {request:#04x}")

    @staticmethod
    def _vendor_out(probe: SimProbe, request: int, value: int) -> None:
        if request == Request.SET_DEPTH:
            probe.set_depth_mm(value)
        elif request == Request.SET_GAIN:
            probe.set_gain(value)
        elif request == Request.SET_FREQUENCY:
            probe.set_frequency(value)
        elif request == Request.FREEZE:
            probe.freeze()
        elif request == Request.UNFREEZE:
            probe.unfreeze()
        else:
            raise Refused(f"unknown OUT request {request:#04x}")

    @staticmethod
    def _string_descriptor(probe: SimProbe, index: int) -> bytes:
        if index == 0:
            body = _LANGID_EN_US.to_bytes(2, "little")
        else:
            strings = {1: "rfa-controller simulator", 2: probe.config.model, 3: probe.config.serial}
            if index not in strings:
                raise _stall(f"no string descriptor {index}")
            body = strings[index].encode("utf-16-le")
        return bytes([2 + len(body), _DESCRIPTOR_STRING]) + body

    @staticmethod
    def _copy_in(data: array.array[int], answer: bytes) -> int:
        count = min(len(data) * data.itemsize, len(answer))
        memoryview(data).cast("B")[:count] = answer[:count]
        return count
