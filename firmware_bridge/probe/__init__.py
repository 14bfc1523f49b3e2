"""The ultrasound probe: its USB wire contract, the frame reassembler and the pyusb driver."""

from firmware_bridge.probe.driver import (
    ProbeAddress,
    ProbeDisconnected,
    ProbeFrame,
    ProbeNotFound,
    ProbeOptions,
    ProbeRefused,
    ProbeStalled,
    ProbeTimeout,
    UltrasoundProbe,
    usb_locator,
)
from firmware_bridge.probe.reassembler import FrameReassembler, ReaderStats
from firmware_bridge.probe.wire import FrameFormat, Geometry, ProbeInfo, ProbeState, ProbeStatus

__all__ = [
    "FrameFormat",
    "FrameReassembler",
    "Geometry",
    "ProbeAddress",
    "ProbeDisconnected",
    "ProbeFrame",
    "ProbeInfo",
    "ProbeNotFound",
    "ProbeOptions",
    "ProbeRefused",
    "ProbeStalled",
    "ProbeState",
    "ProbeStatus",
    "ProbeTimeout",
    "ReaderStats",
    "UltrasoundProbe",
    "usb_locator",
]
