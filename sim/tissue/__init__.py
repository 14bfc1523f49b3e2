"""Tissue models behind one small interface, so the generator simulator does not care which it runs.

``RfLesionModel`` is the physical model (the default); ``LumpedTissue`` stays for tests that need only a
quick thermal response.
"""

from sim.tissue.base import CooledTissue, TissueModel, TissueReading
from sim.tissue.kernels import warm_up_kernels
from sim.tissue.lumped import LumpedTissue
from sim.tissue.model import LesionSize, RfLesionModel, UnstableStepError
from sim.tissue.params import (
    LIVER,
    MUSCLE,
    TISSUES,
    ElectrodeSpec,
    GridSettings,
    LesionModelConfig,
    TissueProperties,
)

__all__ = [
    "LIVER",
    "MUSCLE",
    "TISSUES",
    "CooledTissue",
    "ElectrodeSpec",
    "GridSettings",
    "LesionModelConfig",
    "LesionSize",
    "LumpedTissue",
    "RfLesionModel",
    "TissueModel",
    "TissueProperties",
    "TissueReading",
    "UnstableStepError",
    "warm_up_kernels",
]
