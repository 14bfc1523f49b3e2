"""The electrodes the generator reports (ELECTRODE_INFO gives a gauge): the size a gauge means.

Shared by the control loop (its gains scale with the tip's surface) and the tissue model (the tip's radius),
which may not import each other: both sit on ``firmware_bridge``.
"""

from __future__ import annotations

from typing import Final

OUTER_DIAMETER_MM: Final[dict[int, float]] = {
    16: 1.65,
    17: 1.47,
    18: 1.27,
    19: 1.07,
    20: 0.91,
    21: 0.82,
    22: 0.72,
}
"""Nominal outer diameter of regular-wall cannulae by gauge (ISO 9626:2016, table 1)."""
