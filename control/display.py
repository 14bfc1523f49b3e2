"""The live progress display of ``rfa run``: one line per refresh, what a physician glances at.

On a terminal the line is redrawn in place; into a pipe or a log, a line is printed every few seconds so
the output stays readable. With ``--json`` the caller emits machine events instead and this stays silent.
"""

from __future__ import annotations

import math
import sys
from dataclasses import dataclass
from typing import TextIO


def alarm_text(interlock: str, channel: object, reason: str) -> str:
    """An alarm as the operator reads it: ``over_temperature ch2: tip 86.00 °C above 85.00 °C``. A channel trip's
    reason starts with its channel (``channel 2: ...``, as the record has it), which the ``ch2`` before it already
    says: shown once (the screens read "ch2: channel 2: tip ...")."""
    if channel is None or channel == "":
        return f"{interlock}: {reason}"
    return f"{interlock} ch{channel}: {reason.removeprefix(f'channel {channel}: ')}"


@dataclass(frozen=True)
class PartnerView:
    """A bipolar pair's second electrode: its own tip and impedance (the pair's power and time are the lesion's)."""

    channel: int
    tip_temp_c: float
    impedance_ohm: float


@dataclass(frozen=True)
class ChannelView:
    """One lesion on the live line: its (lead) channel's tip and impedance, its power, its time left."""

    channel: int
    tip_temp_c: float
    impedance_ohm: float
    power_w: float
    time_left_s: float | None
    status: str = ""
    partner: PartnerView | None = None
    """A bipolar lesion's partner electrode, shown beside the lead's (``ch1+2  80.2/83.9°C  168/175Ω``): the pair
    is held on its hotter tip, and the two may differ (tissue of its own under each) or one read nothing (its
    thermocouple open), which a physician must see."""
    peak_voltage_v: float | None = None
    """Pulsed RF: the pulses' peak voltage, shown in place of the power (``45.0V``): it is what the lesion is
    regulated and capped in (the arming question's "up to 45 V"), where its average power (0.2 W at 2 Hz × 20 ms)
    tells a physician nothing."""


@dataclass(frozen=True)
class GuidanceView:
    """Imaging as the physician needs it: is it live, and where is the needle tip."""

    live: bool
    tip_lateral_mm: float | None = None
    tip_depth_mm: float | None = None
    confidence: float = 0.0
    boiling_watch: str | None = None
    """What the boiling monitor is doing while RF is on (baseline, watching, boiling, unwatchable), else None."""


def format_tip(tip_temp_c: float) -> str:
    """A tip temperature as every live line shows it (``rfa run``'s and ``rfa console``'s): NaN, no reading (an
    open thermocouple or no electrode, ``firmware_bridge.messages.tip_temperature_measured``), is ``--.-``,
    never a number that could be read as a temperature."""
    return f"{tip_temp_c:5.1f}" if math.isfinite(tip_temp_c) else " --.-"


def format_line(t_s: float, state: str, channels: list[ChannelView], guidance: GuidanceView | None) -> str:
    parts = [f"t={t_s:6.1f}s {state:11}"]
    for ch in channels:
        left = "" if ch.time_left_s is None else f" {ch.time_left_s:4.0f}s left"
        flag = f" {ch.status}" if ch.status else ""
        where, tip, impedance = f"ch{ch.channel}", format_tip(ch.tip_temp_c), f"{ch.impedance_ohm:4.0f}"
        if ch.partner is not None:
            partner = ch.partner
            where += f"+{partner.channel}"
            tip += "/" + format_tip(partner.tip_temp_c).lstrip()
            impedance += f"/{partner.impedance_ohm:.0f}"
        output = f"{ch.power_w:4.1f}W" if ch.peak_voltage_v is None else f"{ch.peak_voltage_v:4.1f}V"
        parts.append(f"{where} {tip}°C {impedance}Ω {output}{left}{flag}")
    if guidance is not None:
        if not guidance.live:
            parts.append("US: no image")
        elif guidance.tip_depth_mm is None or guidance.confidence < 0.5:
            parts.append("US: live, tip not found")
        else:
            parts.append(f"US: tip {guidance.tip_lateral_mm:+.1f}/{guidance.tip_depth_mm:.1f} mm")
        if guidance.boiling_watch is not None:
            parts[-1] += f", boiling watch: {guidance.boiling_watch}"
    return " | ".join(parts)


class ProgressDisplay:
    """Throttled progress output: redraw in place on a TTY, a line per ``log_period_s`` otherwise."""

    def __init__(
        self, out: TextIO = sys.stdout, *, refresh_s: float = 0.2, log_period_s: float = 5.0
    ) -> None:
        self._out = out
        self._tty = out.isatty()
        self._period = refresh_s if self._tty else log_period_s
        self._last_wall: float | None = None
        self._last_len = 0

    def update(self, wall_s: float, line: str, *, force: bool = False) -> None:
        """Show ``line`` if a refresh is due (``wall_s`` is wall time, so simulated runs stay readable)."""
        if not force and self._last_wall is not None and wall_s - self._last_wall < self._period:
            return
        self._last_wall = wall_s
        if self._tty:
            pad = max(0, self._last_len - len(line))
            self._out.write("\r" + line + " " * pad)
            self._last_len = len(line)
        else:
            self._out.write(line + "\n")
        self._out.flush()

    def message(self, text: str) -> None:
        """A line that stays (a state change, an alarm), printed above the live line."""
        if self._tty and self._last_len:
            self._out.write("\r" + " " * self._last_len + "\r")
            self._last_len = 0
        self._out.write(text + "\n")
        self._out.flush()
