"""The simulated RF generator: device model, scripted faults and hardware caps."""

from sim.generator.device import (
    SELF_TEST_ALL_PASSED,
    TICK_S,
    HardwareCaps,
    SimCounters,
    SimGenerator,
    lumped_tissue,
    physical_tissue,
)
from sim.generator.faults import Fault, FaultKind, load_faults

__all__ = [
    "SELF_TEST_ALL_PASSED",
    "TICK_S",
    "Fault",
    "FaultKind",
    "HardwareCaps",
    "SimCounters",
    "SimGenerator",
    "load_faults",
    "lumped_tissue",
    "physical_tissue",
]
