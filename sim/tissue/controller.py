"""A small PI loop on tip temperature, for the lesion estimate only.

The product's loop (with roll-off back-off) lives in ``control/``; ``sim`` may not import it, and the
estimate needs only a loop that reaches and holds the set temperature the way a clinical generator
does: the set point ramps from the first reading at ``ramp_c_per_s`` (a step would overshoot: the slow
tissue keeps heating after the fast tip has arrived), power is proportional to the error plus its
integral, clamped to ``[0, max_power_w]``, and the integral is frozen while the output is clamped
(anti-windup).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field


@dataclass
class TipTemperaturePI:
    set_temp_c: float
    max_power_w: float = 30.0
    kp_w_per_k: float = 2.0
    ki_w_per_k_s: float = 0.5
    ramp_c_per_s: float = 5.0
    _integral_w: float = field(default=0.0, init=False)
    _target_c: float | None = field(default=None, init=False)

    def __post_init__(self) -> None:
        for name in ("set_temp_c", "max_power_w", "kp_w_per_k", "ki_w_per_k_s", "ramp_c_per_s"):
            value = getattr(self, name)
            if not math.isfinite(value) or value < 0.0:
                raise ValueError(f"{name} must be finite and non-negative, not {value}")

    def reset(self) -> None:
        self._integral_w = 0.0
        self._target_c = None

    @property
    def target_c(self) -> float | None:
        """The ramped set point of the last update (``None`` before the first)."""
        return self._target_c

    def update(self, tip_temp_c: float, dt_s: float) -> float:
        """The power (W) to command for the next ``dt_s`` given the thermocouple reading."""
        if self._target_c is None:
            self._target_c = min(tip_temp_c, self.set_temp_c)
        self._target_c = min(self._target_c + self.ramp_c_per_s * dt_s, self.set_temp_c)
        return self._power(self._target_c - tip_temp_c, dt_s)

    def follow(self, target_c: float, tip_temp_c: float, dt_s: float) -> float:
        """The power (W) for the next ``dt_s`` towards ``target_c`` as it is: no ramp and no set temperature, for a
        target that is a recorded tip temperature (ramped already, as the cart ramped it)."""
        self._target_c = target_c
        return self._power(target_c - tip_temp_c, dt_s)

    def _power(self, error_k: float, dt_s: float) -> float:
        unclamped = self.kp_w_per_k * error_k + self._integral_w
        saturated_high = unclamped >= self.max_power_w and error_k > 0.0
        saturated_low = unclamped <= 0.0 and error_k < 0.0
        if not (saturated_high or saturated_low):
            self._integral_w += self.ki_w_per_k_s * error_k * dt_s
        return min(max(self.kp_w_per_k * error_k + self._integral_w, 0.0), self.max_power_w)
