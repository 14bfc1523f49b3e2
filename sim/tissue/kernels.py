"""A typed handle on one implementation of the kernels, so the model can run either without knowing which."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

from sim.tissue import kernels_numba, kernels_numpy


@dataclass(frozen=True)
class KernelSet:
    """The five kernels of one implementation (signatures as in ``kernels_numba``)."""

    name: str
    conductivity: Callable[..., None]
    face_conductances: Callable[..., None]
    sor_sweeps: Callable[..., tuple[int, int]]
    joule_weights: Callable[..., float]
    thermal_step: Callable[..., tuple[float, float]]


NUMBA = KernelSet(
    "numba",
    kernels_numba.conductivity,
    kernels_numba.face_conductances,
    kernels_numba.sor_sweeps,
    kernels_numba.joule_weights,
    kernels_numba.thermal_step,
)
NUMPY = KernelSet(
    "numpy",
    kernels_numpy.conductivity,
    kernels_numpy.face_conductances,
    kernels_numpy.sor_sweeps,
    kernels_numpy.joule_weights,
    kernels_numpy.thermal_step,
)


def kernel_set(backend: Literal["numba", "numpy"]) -> KernelSet:
    return NUMBA if backend == "numba" else NUMPY


def warm_up_kernels() -> None:
    """Compile (or load from numba's on-disk cache) the compiled kernels once, before any timed work."""
    kernels_numba.warm_up()
