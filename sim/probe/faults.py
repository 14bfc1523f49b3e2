"""Scripted faults of the simulated probe: the ``[[probe_fault]]`` tables of a fault script (``--faults FILE``).

Plain data, like the generator's ``[[fault]]`` tables and on the same time line (seconds after the simulator
started serving), so one script can, say, overheat the probe in the middle of a lesion. The probe acts them out
itself (:meth:`sim.probe.SimProbe.script_faults`), on the thread that serves it.
"""

from __future__ import annotations

import enum
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Final

from sim.fault_script import check_fields, check_timing, optional_number, script_kind, script_tables, toml_number


class ProbeFaultKind(enum.StrEnum):
    USB_STALL = "usb_stall"
    """The bulk endpoint halts (a pipe stall) until the host clears it."""
    DISCONNECT = "disconnect"
    """The probe is unplugged; ``duration_s`` later it is plugged back in as a freshly powered probe (default
    settings, frozen), omitted: for good."""
    FRAME_DROPS = "frame_drops"
    """The next ``value`` frames (default 5, a whole number) are lost: frame-number gaps the driver counts."""
    OVERHEATING = "overheating"
    """The probe face warms at ``value`` °C/s (default 0.5) for ``duration_s`` (omitted: until the end), then
    holds its temperature; the probe sets its over-temperature bit above 43 °C."""
    REPORTS_FAULT = "reports_fault"
    """The probe reports its fault state (``GET_STATUS`` state 2, error bit 0x02) for ``duration_s`` (omitted:
    until the end), while its frames go on streaming as before: only its own word says something is wrong."""


LASTING: Final = frozenset({ProbeFaultKind.DISCONNECT, ProbeFaultKind.OVERHEATING, ProbeFaultKind.REPORTS_FAULT})
"""The kinds that last (``duration_s``); the others happen once, at ``at_s``."""
DEFAULT_VALUES: Final[dict[ProbeFaultKind, float]] = {
    ProbeFaultKind.FRAME_DROPS: 5.0,
    ProbeFaultKind.OVERHEATING: 0.5,
}
"""The kinds that take a ``value``, and what it is when left out."""


@dataclass(frozen=True, slots=True)
class ProbeFault:
    """One scripted probe fault (see :class:`ProbeFaultKind` for what ``duration_s`` and ``value`` mean)."""

    kind: ProbeFaultKind
    at_s: float
    duration_s: float | None = None
    value: float | None = None

    def __post_init__(self) -> None:
        check_timing(self.at_s, self.duration_s)
        if self.duration_s is not None and self.kind not in LASTING:
            raise ValueError(f"duration_s: a {self.kind} happens once, at at_s (only "
                             f"{' and '.join(sorted(LASTING))} last)")
        if self.value is None:
            return
        if self.kind not in DEFAULT_VALUES:
            raise ValueError(f"value: a {self.kind} takes none (only {' and '.join(sorted(DEFAULT_VALUES))} do)")
        if not (math.isfinite(self.value) and self.value > 0):
            raise ValueError(f"value: must be a finite number greater than 0, not {self.value}")
        if self.kind is ProbeFaultKind.FRAME_DROPS and not float(self.value).is_integer():
            raise ValueError(f"value: frame_drops counts frames: a whole number, not {self.value}")

    @property
    def magnitude(self) -> float:
        return DEFAULT_VALUES.get(self.kind, 0.0) if self.value is None else self.value

    @property
    def end_s(self) -> float | None:
        """When a lasting fault ends (``None``: it does not, or happens once)."""
        return None if self.duration_s is None else self.at_s + self.duration_s


def load_probe_faults(path: Path) -> list[ProbeFault]:
    """Read the ``[[probe_fault]]`` tables (kind, at_s, duration_s, value) of a fault script; ``ValueError`` naming
    the file, the entry and the reason for a bad one."""
    def probe_fault(entry: dict[str, object]) -> ProbeFault:
        check_fields(entry, {"kind", "at_s", "duration_s", "value"})
        return ProbeFault(
            kind=script_kind(entry["kind"], ProbeFaultKind, "probe fault kind"),
            at_s=toml_number(entry["at_s"], "at_s"),
            duration_s=optional_number(entry, "duration_s"),
            value=optional_number(entry, "value"),
        )

    return script_tables(path, "probe_fault", probe_fault)
