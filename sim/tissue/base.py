"""The interface between the simulated generator's power stage and the tissue around one electrode."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol, runtime_checkable


@dataclass(frozen=True, slots=True)
class TissueReading:
    """What the generator can measure after a step."""

    tip_temp_c: float
    """Tip temperature as the thermocouple reads it (with its lag)."""
    impedance_ohm: float
    """Load impedance seen by the generator, series resistance included."""
    boiling: bool = False
    """Tissue next to the tip has reached boiling (gas forms; the probe shows bright echoes)."""


class TissueModel(Protocol):
    """One electrode's tissue: advance by ``dt_s`` while ``power_w`` (time-averaged) is delivered."""

    def reset(self, body_temp_c: float = 37.0) -> None:
        """Start again from tissue at rest at ``body_temp_c``."""
        ...

    @property
    def impedance_ohm(self) -> float:
        """The present load impedance, so the power stage can compute voltage and current."""
        ...

    def step(self, dt_s: float, power_w: float) -> TissueReading:
        ...


@runtime_checkable
class CooledTissue(Protocol):
    """A tissue model around an internally cooled electrode: the generator's pump sets the coolant flow."""

    def set_cooling(self, flow_ml_min: float) -> None: ...
