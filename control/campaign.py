"""``rfa campaign``: a seeded fault campaign, judged against what the simulated devices really did.

Each run is one whole procedure in simulated time with one fault drawn from a seed: a generator fault
(the simulator's fault kinds) or the link unplugged, on a planned channel, at a moment somewhere between
the first and the last output of a fault-free run of the same plan, lasting a while or for good. Run 0 is
that fault-free run. A campaign is the procedure-level counterpart of ``rfa bench``'s trip latencies: it
does not ask the host whether it did the right thing, it watches the simulated generator's outputs every
10 ms step (the composition root samples them) and reads the record, and says for every run:

* output is off on every channel once the procedure has ended (``AFTERMATH_S`` later: the generator goes
  on when the host stops, and with the link cut only its own watchdog can turn output off);
* after the first trip the record shows, the generator stopped delivering on the tripped channels within
  two periods (the tick that sends ``OUTPUT_OFF``, the generator's step that obeys it); with the link cut,
  within the generator's own host-heartbeat timeout, which is then the only way to stop it;
* a fault that must be detected (every kind but a frozen thermocouple, which a steady hold can hide) and
  that began while its channel delivered RF ended the lesion with a trip;
* the tip's true temperature (the simulated tissue's, whatever the thermocouple reports to the host) never
  passed the channel's over-temperature trip level by more than ``TRUE_TIP_ALLOWANCE_C``: this is what
  judges a fault the host cannot see, such as a frozen thermocouple;
* a trip ends the run with exit 1, and the record's hash chain verifies.

A run that breaks one of these is a failed run and the campaign exits 1. This module only draws and
judges; the composition root (:mod:`control.cli`) builds the simulated cart, injects, and samples.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any, Final

from firmware_bridge.messages import ALL_CHANNELS
from safety import limits as hard
from safety.config import HARD_LIMITS
from safety.interlocks import SafetyRules
from safety.plan import LesionMode, LesionPlan

GENERATOR_KINDS: Final = (
    "thermocouple_open", "thermocouple_frozen", "impedance_spike", "impedance_short", "generator_fault",
    "channel_fault", "electrode_removed", "power_runaway",
)
"""The simulator's fault kinds (``sim.generator.FaultKind``), by value."""
LINK_UNPLUG: Final = "link_unplug"
KINDS: Final = (*GENERATOR_KINDS, LINK_UNPLUG)
MAY_GO_UNDETECTED: Final = frozenset({"thermocouple_frozen"})
"""A reading frozen during a steady hold looks like a good hold: the frozen-thermocouple interlock needs the
power to swing. The campaign reports such a run as tolerated, never as failed."""
STOP_WITHIN_S: Final = 2 * hard.LOOP_PERIOD_S
"""The tick that sends ``OUTPUT_OFF`` and the generator step that obeys it."""
GENERATOR_HEARTBEAT_TIMEOUT_S: Final = 0.25
"""ARCHITECTURE.md section 4: the generator turns all output off after 250 ms without a host heartbeat."""
TRUE_TIP_ALLOWANCE_C: Final = 1.0
"""How far past its trip level the true tip may get: thermocouple lag and one period's heating before the trip."""
AFTERMATH_S: Final = 1.0
"""How long the simulated generator is watched after the procedure ends: "at the end" means then."""
FOR_GOOD: Final = None


@dataclass(frozen=True)
class Injection:
    kind: str
    channel: int
    at_s: float
    """Seconds after the generator started (simulated time)."""
    duration_s: float | None

    def describe(self) -> str:
        lasting = "for good" if self.duration_s is None else f"for {self.duration_s:.1f} s"
        where = "" if self.kind == "generator_fault" or self.kind == LINK_UNPLUG else f" ch{self.channel}"
        return f"{self.kind}{where} at {self.at_s:.1f} s {lasting}"


def draw_injections(runs: int, seed: int, channels: Sequence[int], window_s: tuple[float, float],
                    kinds: Sequence[str] = KINDS) -> list[Injection]:
    """``runs`` faults from ``seed``: every kind once before any repeats, on a planned channel, in the window."""
    rng = random.Random(seed)
    order = list(kinds)
    rng.shuffle(order)
    start, end = window_s
    out = []
    for i in range(runs):
        duration = FOR_GOOD if rng.random() < 0.5 else round(rng.uniform(0.2, 5.0), 1)
        out.append(Injection(order[i % len(order)], rng.choice(list(channels)), round(rng.uniform(start, end), 2),
                             duration))
    return out


@dataclass
class DeviceTrace:
    """The simulated generator's outputs, sampled every device step: ``(time, mask of channels on)``,
    stored only when the mask changes."""

    changes: list[tuple[float, int]] = field(default_factory=list)
    true_tip_max_c: dict[int, float] = field(default_factory=dict)
    """The hottest each channel's tip really got (channel 1..4)."""

    def sample(self, t: float, mask: int, true_tips_c: Sequence[float] = ()) -> None:
        if not self.changes or self.changes[-1][1] != mask:
            self.changes.append((t, mask))
        for index, tip_c in enumerate(true_tips_c):
            if tip_c > self.true_tip_max_c.get(index + 1, -273.15):
                self.true_tip_max_c[index + 1] = tip_c

    @property
    def final_mask(self) -> int:
        return self.changes[-1][1] if self.changes else 0

    def on_at(self, t: float, mask: int) -> bool:
        """Whether any channel of ``mask`` was on at ``t``."""
        current = 0
        for at, on in self.changes:
            if at > t:
                break
            current = on
        return bool(current & mask)

    def stopped_at(self, after: float, mask: int) -> float | None:
        """When the channels of ``mask`` were next all off, at or after ``after``; None if never."""
        if not self.on_at(after, mask):
            return after
        for at, on in self.changes:
            if at > after and not on & mask:
                return at
        return None

    def window(self) -> tuple[float, float] | None:
        """First and last moment any output was on."""
        ons = [t for t, mask in self.changes if mask]
        offs = [t for t, mask in self.changes if not mask]
        if not ons:
            return None
        return ons[0], max([t for t in offs if t > ons[0]], default=ons[0])


@dataclass(frozen=True)
class Trip:
    at: float
    interlock: str
    channel: int | None


@dataclass
class RunOutcome:
    run: int
    injection: Injection | None
    exit_code: int
    final_state: str
    first_trip: Trip | None
    stopped_after_ms: float | None
    """How long after the first trip the generator was delivering on the tripped channels."""
    fault_met_rf: bool
    """The fault began while its channel (any channel, for a system fault) delivered output."""
    record_rows: int
    true_tip_max_c: float | None = None
    """The hottest any planned channel's tip really got."""
    problems: list[str] = field(default_factory=list)

    @property
    def passed(self) -> bool:
        return not self.problems

    @property
    def verdict(self) -> str:
        if self.problems:
            return "FAIL"
        if self.injection is not None and self.fault_met_rf and self.first_trip is None:
            return "tolerated"
        return "ok"

    def as_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["verdict"] = self.verdict
        return d


def tripped_mask(trip: Trip, plan: LesionPlan) -> int:
    """The channels a trip stops: its lesion's channels (a bipolar pair together), or all of them."""
    if trip.channel is None:
        return ALL_CHANNELS
    for lesion in plan.lesions:
        if trip.channel in lesion.channels:
            return sum(1 << (c - 1) for c in lesion.channels)
    return 1 << (trip.channel - 1)


def trip_levels_c(plan: LesionPlan) -> dict[int, float]:
    """Each planned channel's over-temperature trip level under the hard limits (configuration can only lower it)."""
    rules = SafetyRules.compile(plan, HARD_LIMITS)
    return {r.channel: r.pulsed_tip_max_c if r.mode is LesionMode.PULSED else r.over_temp_c for r in rules.channels}


def judge(run: int, injection: Injection | None, plan: LesionPlan, *, exit_code: int, final_state: str,
          trips: Sequence[Trip], device: DeviceTrace, record_ok: bool, record_rows: int) -> RunOutcome:
    """The run's outcome against the campaign's properties (module docstring)."""
    first = min(trips, key=lambda t: t.at) if trips else None
    met_rf = False
    if injection is not None:
        system = injection.kind in ("generator_fault", LINK_UNPLUG)
        met_rf = device.on_at(injection.at_s, ALL_CHANNELS if system else 1 << (injection.channel - 1))
    outcome = RunOutcome(run, injection, exit_code, final_state, first, None, met_rf, record_rows)
    problems = outcome.problems
    for channel, limit_c in trip_levels_c(plan).items():
        true_c = device.true_tip_max_c.get(channel)
        if true_c is None:
            continue
        outcome.true_tip_max_c = max(true_c, outcome.true_tip_max_c or true_c)
        if true_c > limit_c + TRUE_TIP_ALLOWANCE_C:
            problems.append(f"ch{channel} tip really reached {true_c:.1f} °C, trip level {limit_c:.1f} °C")
    if device.final_mask:
        problems.append(f"output still on at the end (mask 0x{device.final_mask:02X})")
    if not record_ok:
        problems.append("the record does not verify")
    if first is not None:
        mask = tripped_mask(first, plan)
        stopped = device.stopped_at(first.at, mask)
        limit_s = STOP_WITHIN_S
        if injection is not None and injection.kind == LINK_UNPLUG:
            limit_s += GENERATOR_HEARTBEAT_TIMEOUT_S  # OUTPUT_OFF cannot cross a cut link
        if stopped is None:
            problems.append(f"output never stopped after the {first.interlock} trip")
        else:
            outcome.stopped_after_ms = (stopped - first.at) * 1e3
            if stopped - first.at > limit_s + 1e-9:
                problems.append(f"output stopped {outcome.stopped_after_ms:.0f} ms after the {first.interlock} trip "
                                f"(limit {limit_s * 1e3:.0f} ms)")
        if exit_code != 1:
            problems.append(f"a trip ({first.interlock}) but exit {exit_code}")
    elif injection is not None and met_rf and injection.kind not in MAY_GO_UNDETECTED:
        problems.append(f"{injection.kind} began during output and nothing tripped")
    if injection is None and (first is not None or exit_code != 0):
        problems.append(f"the fault-free run ended in {final_state} (exit {exit_code})")
    return outcome


def render_table(outcomes: Sequence[RunOutcome]) -> str:
    rows = [("run", "fault", "first trip", "output off after", "true tip max", "ended", "verdict")]
    for o in outcomes:
        trip = "-" if o.first_trip is None else (
            f"{o.first_trip.interlock}" + ("" if o.first_trip.channel is None else f" ch{o.first_trip.channel}"))
        stopped = "-" if o.stopped_after_ms is None else f"{o.stopped_after_ms:.0f} ms"
        fault = "none (baseline)" if o.injection is None else o.injection.describe() + (
            "" if o.fault_met_rf else " (output off then)")
        true_tip = "-" if o.true_tip_max_c is None else f"{o.true_tip_max_c:.1f} °C"
        rows.append((str(o.run), fault, trip, stopped, true_tip, f"{o.final_state} (exit {o.exit_code})", o.verdict))
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    lines = ["  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip() for r in rows]
    lines.insert(1, "  ".join("-" * w for w in widths))
    for o in outcomes:
        lines += [f"run {o.run}: {p}" for p in o.problems]
    failed = sum(not o.passed for o in outcomes)
    lines.append(f"{len(outcomes)} runs, {failed} failed" + ("" if failed else ": every property held"))
    return "\n".join(lines)
