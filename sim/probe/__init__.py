"""The simulated ultrasound probe: scene rendering, firmware with faults, and a pyusb backend."""

from sim.probe.backend import SimProbeBackend
from sim.probe.device import CART_NEEDLE, SimProbe, SimProbeConfig, cart_probe
from sim.probe.faults import ProbeFault, ProbeFaultKind, load_probe_faults
from sim.probe.render import NeedlePose, SceneLook

__all__ = [
    "CART_NEEDLE",
    "NeedlePose",
    "ProbeFault",
    "ProbeFaultKind",
    "SceneLook",
    "SimProbe",
    "SimProbeBackend",
    "SimProbeConfig",
    "cart_probe",
    "load_probe_faults",
]
