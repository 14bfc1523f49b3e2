"""A lumped first-order thermal model: quick, for tests that need only a plausible thermal response.

One heat capacity behind one thermal resistance to the body, a first-order thermocouple lag, and an
impedance that falls about 1.5 %/°C as the tissue warms and climbs steeply once the tip passes ~95 °C
(desiccation: the impedance roll-off that real lesions show). Parameters give ~7 W for an 80 °C tip.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from sim.tissue.base import TissueReading


@dataclass
class LumpedTissue:
    heat_capacity_j_per_k: float = 1.5
    thermal_resistance_k_per_w: float = 7.0
    thermocouple_lag_s: float = 0.3
    base_impedance_ohm: float = 250.0
    body_temp_c: float = 37.0

    def __post_init__(self) -> None:
        self.reset(self.body_temp_c)

    def reset(self, body_temp_c: float = 37.0) -> None:
        self.body_temp_c = body_temp_c
        self._tissue_c = body_temp_c
        self._tip_c = body_temp_c
        self._desiccation = 0.0

    @property
    def impedance_ohm(self) -> float:
        warm = max(0.4, 1.0 - 0.015 * (self._tissue_c - self.body_temp_c))
        return self.base_impedance_ohm * warm * (1.0 + 20.0 * self._desiccation)

    def step(self, dt_s: float, power_w: float) -> TissueReading:
        loss_w = (self._tissue_c - self.body_temp_c) / self.thermal_resistance_k_per_w
        self._tissue_c += dt_s * (power_w - loss_w) / self.heat_capacity_j_per_k
        self._tissue_c = min(self._tissue_c, 105.0)
        if self._tissue_c > 95.0:
            self._desiccation = min(1.0, self._desiccation + dt_s * (self._tissue_c - 95.0) / 20.0)
        self._tip_c += (self._tissue_c - self._tip_c) * (1.0 - math.exp(-dt_s / self.thermocouple_lag_s))
        return TissueReading(self._tip_c, self.impedance_ohm, boiling=self._tissue_c >= 100.0)
