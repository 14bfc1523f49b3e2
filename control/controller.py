"""The temperature/impedance control step: one PID per channel, compiled with numba (ARCHITECTURE.md §8).

Per channel and per tick:

- a **ramp-rate limit**: the reference climbs from the starting tip temperature towards the set
  temperature at the plan's ramp rate (°C/s), so the tissue heats at a controlled pace and the loop
  follows a moving target instead of a step (which is what causes overshoot on a lagging thermocouple);
- a **PID on tip temperature** with the derivative taken on the low-passed measurement (no kick when
  the reference moves, no amplified thermocouple noise) and a feed-forward of the reference's slope;
- **anti-windup** by conditional integration: the integral stops growing while the output is pinned at
  a limit in the direction the error pushes;
- a **power cap** (the plan's, never above the hard limit the gate enforces again);
- an **impedance roll-off back-off**: when impedance climbs more than ``ROLLOFF_RISE`` above the lowest
  (low-passed) value seen in this lesion, tissue at the tip is desiccating; the limit is cut at once to half of
  the drive being delivered, halved again for every further ``ROLLOFF_STEP`` of rise (down to ``BACKOFF_FLOOR``
  of the cap), and recovers slowly once impedance is back down, so the lesion keeps growing instead of being cut
  short by an open circuit;
- a measurement that is not a number (NaN, inf) gives no drive and leaves the state as it was.

The drive is power (W) for conventional RF and peak voltage (V) for pulsed RF; the kernel is the same, the
gains and cap differ. The kernel allocates nothing and touches no Python objects, so one tick for four
channels costs microseconds; :func:`warm_up` compiles it before self-test ends.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Final

import numpy as np
import numpy.typing as npt
from numba import njit

from firmware_bridge.electrode import OUTER_DIAMETER_MM

# State columns, one row per channel.
S_INTEGRAL: Final = 0
S_REFERENCE: Final = 1
S_PREV_TIP: Final = 2
S_MIN_IMPEDANCE: Final = 3
S_BACKOFF: Final = 4
S_TIP_RATE: Final = 5
S_IMPEDANCE_FILT: Final = 6
S_CUT_IMPEDANCE: Final = 7
STATE_COLUMNS: Final = 8

DERIVATIVE_FILTER_S: Final = 0.2
"""The tip-temperature rate is low-passed: a raw 10 ms difference turns thermocouple noise (a few
hundredths of a degree) into several °C/s, and the derivative gain would turn that into watts of jitter."""

ROLLOFF_RISE: Final = 0.30
"""Impedance 30 % above its lesion minimum means desiccation has begun (the roll-off)."""
IMPEDANCE_FILTER_S: Final = 0.3
"""The lesion minimum is taken of the impedance low-passed over this time, so that one low sample (a glitch, a
touch of the cable) does not become the baseline every later, normal reading counts as a roll-off."""
BACKOFF_CUT: Final = 0.5
"""On roll-off the limit is cut to half of the drive being delivered (not of the cap, which may be far above it)..."""
ROLLOFF_STEP: Final = 0.10
"""...and halved again each time impedance climbs another 10 % above where it was last cut, down to the floor..."""
BACKOFF_RECOVERY_PER_S: Final = 0.05
"""...and recovers by 5 % of full cap per second once impedance falls back."""
BACKOFF_FLOOR: Final = 0.1

FloatArray = npt.NDArray[np.float64]
BoolArray = npt.NDArray[np.bool_]


@dataclass(frozen=True)
class Gains:
    """PID gains for one drive kind; units are drive units per °C (and per °C·s, °C/s)."""

    kp: float
    ki: float
    kd: float
    kff: float
    """Feed-forward: drive per (°C/s) of reference slope."""


CONTINUOUS_GAINS: Final = Gains(kp=3.0, ki=0.6, kd=0.3, kff=1.5)
"""Watts per °C; tuned on the physical tissue model through the whole simulated cart
(tests/control/test_tracking.py: 60–90 °C, 18–22 G, overshoot ≤ 0.6 °C, hold RMS ≤ 0.3 °C)."""
PULSED_GAINS: Final = Gains(kp=2.0, ki=0.4, kd=0.5, kff=3.0)
"""Volts per °C for pulsed RF's peak voltage."""

_REFERENCE_AREA_MM2: Final = OUTER_DIAMETER_MM[18] * 10.0
"""The electrode :data:`CONTINUOUS_GAINS` were tuned on: 18 G, 10 mm active tip."""


def continuous_gains_for(gauge: int, active_tip_mm: float) -> Gains:
    """:data:`CONTINUOUS_GAINS` scaled to the electrode: watts per °C in proportion to its active surface
    (diameter × length).

    The power a tip needs, to hold and to climb, grows with the tissue it heats: holding 80 °C takes about 1.6 W
    on a 22 G 5 mm tip, 4.1 W on 20 G 10 mm, 5.2 W on 18 G 10 mm (docs/tissue.md), close to this ratio. With the
    18 G gains on every electrode, a 22 G 5 mm tip (0.28 of the surface) runs at 3.5 times the loop gain: a limit
    cycle (power 0↔5 W, tip ±1 °C around the set temperature) and 2.6–2.8 °C overshoot at 60 °C, 5 °C/s; a
    16 G 15 mm tip (1.95 of it) tracks a fast ramp too far behind, winds the integral up and overshoots 2.3–2.4 °C."""
    k = OUTER_DIAMETER_MM[gauge] * active_tip_mm / _REFERENCE_AREA_MM2
    g = CONTINUOUS_GAINS
    return Gains(kp=g.kp * k, ki=g.ki * k, kd=g.kd * k, kff=g.kff * k)


@njit(cache=True)
def _control_step(
    dt_s: float,
    tip_c: FloatArray,
    impedance_ohm: FloatArray,
    set_c: FloatArray,
    ramp_c_per_s: FloatArray,
    cap: FloatArray,
    gains: FloatArray,
    active: BoolArray,
    state: FloatArray,
    drive: FloatArray,
) -> None:
    for ch in range(tip_c.shape[0]):
        if not active[ch]:
            drive[ch] = 0.0
            state[ch, S_INTEGRAL] = 0.0
            state[ch, S_REFERENCE] = tip_c[ch]
            state[ch, S_PREV_TIP] = tip_c[ch]
            state[ch, S_MIN_IMPEDANCE] = impedance_ohm[ch]
            state[ch, S_BACKOFF] = 1.0
            state[ch, S_TIP_RATE] = 0.0
            state[ch, S_IMPEDANCE_FILT] = impedance_ohm[ch]
            state[ch, S_CUT_IMPEDANCE] = 0.0
            continue
        if not (math.isfinite(tip_c[ch]) and math.isfinite(impedance_ohm[ch])):
            drive[ch] = 0.0  # no measurement, no drive; the state waits for the next valid sample
            continue
        kp = gains[ch, 0]
        ki = gains[ch, 1]
        kd = gains[ch, 2]
        kff = gains[ch, 3]

        # Ramp-rate limit: the reference moves towards the set temperature at the planned rate.
        ref = state[ch, S_REFERENCE]
        slope = 0.0
        step = ramp_c_per_s[ch] * dt_s
        if ref < set_c[ch]:
            new_ref = min(set_c[ch], ref + step)
            slope = (new_ref - ref) / dt_s
            ref = new_ref
        else:
            ref = set_c[ch]
        state[ch, S_REFERENCE] = ref

        # Impedance roll-off back-off. The baseline is the minimum of the low-passed impedance; the cut is relative
        # to the drive actually delivered (last tick's), and deepens while the impedance keeps climbing.
        z = impedance_ohm[ch]
        z_filt = state[ch, S_IMPEDANCE_FILT] + (z - state[ch, S_IMPEDANCE_FILT]) * dt_s / (IMPEDANCE_FILTER_S + dt_s)
        state[ch, S_IMPEDANCE_FILT] = z_filt
        if z_filt < state[ch, S_MIN_IMPEDANCE]:
            state[ch, S_MIN_IMPEDANCE] = z_filt
        backoff = state[ch, S_BACKOFF]
        if z > state[ch, S_MIN_IMPEDANCE] * (1.0 + ROLLOFF_RISE):
            cut_z = state[ch, S_CUT_IMPEDANCE]
            if cut_z <= 0.0 or z > cut_z * (1.0 + ROLLOFF_STEP):
                delivered = min(drive[ch], cap[ch] * backoff)
                relative = delivered / cap[ch] if cap[ch] > 0.0 else 0.0
                backoff = max(BACKOFF_FLOOR, min(backoff, BACKOFF_CUT * relative))
                state[ch, S_CUT_IMPEDANCE] = z
        else:
            backoff = min(1.0, backoff + BACKOFF_RECOVERY_PER_S * dt_s)
            state[ch, S_CUT_IMPEDANCE] = 0.0
        state[ch, S_BACKOFF] = backoff
        limit = cap[ch] * backoff

        error = ref - tip_c[ch]
        raw_rate = (tip_c[ch] - state[ch, S_PREV_TIP]) / dt_s
        state[ch, S_PREV_TIP] = tip_c[ch]
        d_tip = state[ch, S_TIP_RATE] + (raw_rate - state[ch, S_TIP_RATE]) * dt_s / (DERIVATIVE_FILTER_S + dt_s)
        state[ch, S_TIP_RATE] = d_tip
        integral = state[ch, S_INTEGRAL]
        u = kp * error + ki * integral - kd * d_tip + kff * slope
        # Conditional integration: do not wind up against a limit the error pushes into.
        if not ((u >= limit and error > 0.0) or (u <= 0.0 and error < 0.0)):
            integral += error * dt_s
            u = kp * error + ki * integral - kd * d_tip + kff * slope
        state[ch, S_INTEGRAL] = integral
        drive[ch] = min(max(u, 0.0), limit)


class ChannelControllers:
    """The per-channel controllers of one lesion run; owns the state arrays the kernel updates."""

    def __init__(self, n_channels: int) -> None:
        self.n_channels = n_channels
        self.state = np.zeros((n_channels, STATE_COLUMNS))
        self.state[:, S_BACKOFF] = 1.0
        self.gains = np.zeros((n_channels, 4))
        self.set_c = np.zeros(n_channels)
        self.ramp_c_per_s = np.zeros(n_channels)
        self.cap = np.zeros(n_channels)
        self.active = np.zeros(n_channels, dtype=np.bool_)
        self.drive = np.zeros(n_channels)

    def configure(self, ch: int, *, set_c: float, ramp_c_per_s: float, cap: float, gains: Gains) -> None:
        self.set_c[ch] = set_c
        self.ramp_c_per_s[ch] = ramp_c_per_s
        self.cap[ch] = cap
        self.gains[ch] = (gains.kp, gains.ki, gains.kd, gains.kff)

    def start(self, ch: int, *, tip_c: float, impedance_ohm: float) -> None:
        """Begin a lesion on ``ch``: the ramp starts from the present tip temperature."""
        self.state[ch] = (0.0, tip_c, tip_c, impedance_ohm, 1.0, 0.0, impedance_ohm, 0.0)
        self.drive[ch] = 0.0
        self.active[ch] = True

    def stop(self, ch: int) -> None:
        self.active[ch] = False
        self.drive[ch] = 0.0

    def reference_c(self, ch: int) -> float:
        return float(self.state[ch, S_REFERENCE])

    def step(self, dt_s: float, tip_c: FloatArray, impedance_ohm: FloatArray) -> FloatArray:
        """One tick: returns the drive per channel (W or V), 0 for inactive channels."""
        _control_step(dt_s, tip_c, impedance_ohm, self.set_c, self.ramp_c_per_s, self.cap, self.gains,
                      self.active, self.state, self.drive)
        return self.drive


def warm_up() -> None:
    """Compile (or load from cache) the kernel now, not on the first tick of a lesion."""
    c = ChannelControllers(1)
    c.configure(0, set_c=80.0, ramp_c_per_s=2.0, cap=10.0, gains=CONTINUOUS_GAINS)
    c.start(0, tip_c=37.0, impedance_ohm=200.0)
    c.step(0.01, np.array([37.0]), np.array([200.0]))
