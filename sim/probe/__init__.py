"""The simulated ultrasound probe: scene rendering, firmware with faults, and a pyusb backend."""

from sim.probe.backend import SimProbeBackend
from sim.probe.device import SimProbe, SimProbeConfig
from sim.probe.render import NeedlePose, SceneLook

__all__ = ["NeedlePose", "SceneLook", "SimProbe", "SimProbeBackend", "SimProbeConfig"]
