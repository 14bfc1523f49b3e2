"""Scripted device faults for the simulated generator, and their TOML form (``rfa sim --faults FILE``).

A fault is plain data: what goes wrong, on which channel, from when and for how long (simulated seconds
from the generator's start). Scripts are data rather than callbacks so that a fault campaign can be
written down, stored with a procedure record and replayed exactly from its seed.
"""

from __future__ import annotations

import enum
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Final

from firmware_bridge.messages import N_CHANNELS
from sim.fault_script import check_fields, check_timing, optional_number, script_kind, script_tables, toml_number


class FaultKind(enum.StrEnum):
    THERMOCOUPLE_OPEN = "thermocouple_open"
    """The thermocouple reads full scale and the channel reports it open."""
    THERMOCOUPLE_FROZEN = "thermocouple_frozen"
    """The thermocouple keeps reporting the value it had when the fault began."""
    IMPEDANCE_SPIKE = "impedance_spike"
    """The load impedance rises by ``value`` ohm (default 1000): gas or a poor contact."""
    IMPEDANCE_SHORT = "impedance_short"
    """The load impedance falls to ``value`` ohm (default 5): a short."""
    GENERATOR_FAULT = "generator_fault"
    """The generator raises the fault bits ``value`` (default 0x01); all output off, output refused."""
    CHANNEL_FAULT = "channel_fault"
    """The channel's fault flag is set; its output goes off and is refused."""
    ELECTRODE_REMOVED = "electrode_removed"
    """The electrode is unplugged (and plugged back in when the fault ends)."""
    POWER_RUNAWAY = "power_runaway"
    """The power stage loses regulation and delivers ``value`` times (default 2) what was commanded (the
    power; pulsed: the peak voltage; bipolar: the pair's power, injected on either channel of the pair), up
    to the hardware caps; the generator does not notice (only the host's over-power check can)."""
    STIM_WEAK = "stim_weak"
    """The stimulator delivers ``value`` times (default 0.5) the commanded amplitude (above 1: more), up to the
    hardware cap, and reports what it delivers; the generator does not notice (only the host's stimulation
    check can)."""
    COMMANDS_IGNORED = "commands_ignored"
    """The generator's command handling hangs: what the host sends is read and dropped, heartbeats included, and
    nothing is acknowledged; telemetry, STATUS and its own heartbeat go on. Its host-heartbeat watchdog, starved,
    turns all output off 250 ms after the last heartbeat it took. All channels (``channel`` is ignored)."""
    OUTPUT_STUCK = "output_stuck"
    """The channel's output stage no longer obeys the host's OUTPUT_OFF (which is still acknowledged OK): once on,
    it keeps delivering its last setpoint. The generator's own host-heartbeat watchdog, a separate cut, still
    turns it off, as do its internal faults."""


DEFAULT_VALUES: Final[dict[FaultKind, float]] = {
    FaultKind.IMPEDANCE_SPIKE: 1000.0,
    FaultKind.IMPEDANCE_SHORT: 5.0,
    FaultKind.GENERATOR_FAULT: 0x01,
    FaultKind.POWER_RUNAWAY: 2.0,
    FaultKind.STIM_WEAK: 0.5,
}


@dataclass(frozen=True, slots=True)
class Fault:
    """One scripted fault; ``duration_s=None`` means it lasts until the simulator stops."""

    kind: FaultKind
    at_s: float
    channel: int = 1
    """1..4; ignored by ``generator_fault`` and ``commands_ignored``."""
    duration_s: float | None = None
    value: float | None = None
    """Kind-specific magnitude (see :class:`FaultKind`); ``None`` takes the kind's default."""

    def __post_init__(self) -> None:
        if not 1 <= self.channel <= N_CHANNELS:
            raise ValueError(f"fault channel must be 1..{N_CHANNELS}, not {self.channel}")
        check_timing(self.at_s, self.duration_s)
        if self.value is not None and not math.isfinite(self.value):
            raise ValueError(f"fault value must be a finite number, not {self.value}")

    @property
    def magnitude(self) -> float:
        return DEFAULT_VALUES.get(self.kind, 0.0) if self.value is None else self.value

    @property
    def edges_s(self) -> tuple[float, ...]:
        """When the fault starts and, if it ends, when it ends (seconds after the generator started)."""
        return (self.at_s,) if self.duration_s is None else (self.at_s, self.at_s + self.duration_s)

    def active_at(self, t_s: float) -> bool:
        """Whether the fault is in effect ``t_s`` seconds after the generator started."""
        if t_s < self.at_s:
            return False
        return self.duration_s is None or t_s < self.at_s + self.duration_s


def load_faults(path: Path) -> list[Fault]:
    """Read ``[[fault]]`` tables (kind, at_s, channel, duration_s, value) from a TOML file.

    A bad file raises ``ValueError`` naming the entry and the reason, so ``rfa sim`` can exit 2.
    """
    def fault(entry: dict[str, object]) -> Fault:
        check_fields(entry, {"kind", "at_s", "channel", "duration_s", "value"})
        return Fault(
            kind=script_kind(entry["kind"], FaultKind, "fault kind"),
            at_s=toml_number(entry["at_s"], "at_s"),
            channel=_channel(entry.get("channel", 1)),
            duration_s=optional_number(entry, "duration_s"),
            value=optional_number(entry, "value"),
        )

    return script_tables(path, "fault", fault)


def _channel(value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValueError(f"channel: {value!r} is not a channel number (1..{N_CHANNELS})")
    return value
