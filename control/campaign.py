"""``rfa campaign``: a seeded fault campaign, judged against what the simulated devices really did.

Each run is one whole procedure in simulated time with one fault drawn from a seed: a generator fault (the
simulator's fault kinds) or the link unplugged, on a planned channel, at a moment somewhere between the first
and the last output of a fault-free run of the same plan (a stimulator fault: of its stimulation, on a channel
that stimulates), lasting a while or for good; for a plan that requires imaging, also a fault of the simulated
probe (a stall, a disconnect, lost frames, an overheating face, a fault it reports itself), between the first
and the last RF output of that run, once or for a while or for good. Run 0 is that fault-free run. A campaign is
the procedure-level counterpart of ``rfa bench``'s trip latencies: it does not ask the host whether it did the
right thing, it watches the simulated generator's outputs every 10 ms step (the composition root samples them;
with imaging, the simulated probe's frames, face temperature and reported state too) and reads the record, and
says for every run:

* output is off on every channel once the procedure has ended (``AFTERMATH_S`` later: the generator goes
  on when the host stops, and with the link cut only its own watchdog can turn output off);
* after every ``OUTPUT_OFF`` the host sent (the record's command rows), the generator stopped delivering on its
  channels within two periods (with the link cut or its command handling hung: its own host-heartbeat
  timeout; with a stuck output stage: the host's uncommanded-output grace, then that timeout, since only the
  withheld heartbeat can stop it);
* after every trip the record shows, the generator stopped delivering on the tripped channels within two
  periods (the tick that sends ``OUTPUT_OFF``, the generator's step that obeys it; with the link cut or its
  command handling hung, its own host-heartbeat timeout, which is then the only way to stop it) and did not
  deliver there again;
* a fault that lasted while its channel delivered output for ``DETECT_WITHIN_S`` (a frozen thermocouple:
  ``FROZEN_DETECT_WITHIN_S``) was tripped on: a trip of its channel (or of all channels) at or after its
  onset. One that met less output and tripped nothing is *tolerated*;
* the tip's true temperature (the simulated tissue's, whatever the thermocouple reports to the host) never
  passed the channel's over-temperature trip level by more than ``TRUE_TIP_ALLOWANCE_C``: this is what
  judges a fault the host cannot see, such as a frozen thermocouple;
* with the simulated probe, a stretch without frames longer than the imaging limit (the plan's frame age and the
  2 s loss grace) with RF still on was tripped on by ``imaging_lost`` by then, and ``imaging_lost`` never tripped
  while the probe's last frame was within that limit (the grace is there so that a short drop-out does not cut a
  lesion short); a probe face past its limit while the procedure ran was tripped on by
  ``probe_face_over_temperature`` within a reading (``FACE_DETECT_WITHIN_S``), and that interlock never tripped
  on a face that was not; a fault the probe reported with RF on (its frames still streaming) was tripped on by
  ``imaging_lost`` within a status reading (``FACE_DETECT_WITHIN_S``), and that trip is no false alarm;
* a trip ends the run with exit 1, and the record's hash chain verifies.

A run that breaks one of these is a failed run and the campaign exits 1. The operator is scripted (``--yes``)
but reads each alarm for ``ALARM_READING_S`` before declining to acknowledge it, so the procedure waits in
``fault``, ticking, as it would at a cart, and what the cart does meanwhile is judged too. This module only
draws and judges; the composition root (:mod:`control.cli`) builds the simulated cart, injects, and samples.
"""

from __future__ import annotations

import bisect
import itertools
import random
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any, Final

from control.guidance import STATUS_PERIOD_S
from firmware_bridge.messages import ALL_CHANNELS
from safety import limits as hard
from safety.config import SafetyLimits
from safety.interlocks import InterlockId, SafetyRules
from safety.plan import LesionMode, LesionPlan

GENERATOR_KINDS: Final = (
    "thermocouple_open", "thermocouple_frozen", "impedance_spike", "impedance_short", "generator_fault",
    "channel_fault", "electrode_removed", "power_runaway", "stim_weak", "output_stuck", "commands_ignored",
)
"""The simulator's fault kinds (``sim.generator.FaultKind``), by value."""
LINK_UNPLUG: Final = "link_unplug"
PROBE_KINDS: Final = ("usb_stall", "disconnect", "frame_drops", "overheating", "reports_fault")
"""The simulated probe's fault kinds (``sim.probe.ProbeFaultKind``), by value: only for a plan that requires imaging
(there is no probe otherwise), and drawn inside the fault-free run's RF output, where the imaging-loss grace
applies (before it, lost imaging only refuses stimulation and the start of RF)."""
KINDS: Final = (*GENERATOR_KINDS, LINK_UNPLUG, *PROBE_KINDS)
SYSTEM_KINDS: Final = frozenset({"generator_fault", LINK_UNPLUG, "commands_ignored", *PROBE_KINDS})
ONCE_KINDS: Final = frozenset({"usb_stall", "frame_drops"})
"""Probe faults that happen once, at their moment, and take no duration: a halt of the bulk endpoint (the host
clears it at its next read) and frames lost (how many: ``value``)."""
EXPECTED_TRIP: Final = {
    "usb_stall": InterlockId.IMAGING_LOST, "disconnect": InterlockId.IMAGING_LOST,
    "frame_drops": InterlockId.IMAGING_LOST, "overheating": InterlockId.PROBE_FACE_OVER_TEMPERATURE,
    "reports_fault": InterlockId.IMAGING_LOST,
}
"""What a probe fault may trip, if anything: whether it must is judged by what the probe really did (frames
missing past the imaging limit with RF on, a face past its limit), not by the fault's own word."""
FRAMES_DROPPED: Final = (1, 150)
"""How many frames a drawn ``frame_drops`` loses: up to 6 s of the cart probe's 25 frames a second, either side
of the imaging limit during RF (the default plan's: 0.5 s frame age and the 2 s grace)."""
OVERHEATING_C_PER_S: Final = (1.0, 10.0)
"""How fast a drawn overheating warms the probe face: from its 33 °C it passes 43 °C in 1 to 10 s, so one that
lasts 0.2–5 s may or may not."""
UNHEARD_KINDS: Final = frozenset({LINK_UNPLUG, "commands_ignored"})
"""Faults during which the host's OUTPUT_OFF does not reach the generator: only its own watchdog can stop output."""
RF_ONLY_KINDS: Final = frozenset({"power_runaway", "thermocouple_frozen"})
"""Faults that only RF output can show: a runaway of the RF power stage, a reading that does not follow RF
heating. Their exposure counts RF time, not stimulation."""
LATENT_KINDS: Final = frozenset({"output_stuck"})
"""Faults that show only when the host turns the channel off (a stuck output stage delivers what it is asked to
until then): judged by the OUTPUT_OFF property, not by a trip during the fault's output time."""
STIM_ONLY_KINDS: Final = frozenset({"stim_weak"})
"""Faults of the stimulator: drawn inside the fault-free run's stimulation, and their exposure counts
stimulation time only."""
DETECT_WITHIN_S: Final = 1.0
"""Output time on the faulted channel after which the fault must have tripped. Every interlock but the frozen
thermocouple's sees its condition within a period or a STATUS (0.1 s); the rest is margin for a power stage
still coming up (a runaway of a few hundred mW is within over-power's tolerance)."""
FROZEN_DETECT_WITHIN_S: Final = hard.THERMOCOUPLE_STILL_S + DETECT_WITHIN_S
"""A frozen reading during a steady hold is certain to be seen only by the stillness limit."""
STOP_WITHIN_S: Final = 2 * hard.LOOP_PERIOD_S
"""The tick that sends ``OUTPUT_OFF`` and the generator step that obeys it."""
TRUE_TIP_ALLOWANCE_C: Final = 1.0
"""How far past its trip level the true tip may get: thermocouple lag and one period's heating before the trip."""
IMAGING_MARGIN_S: Final = 3 * hard.LOOP_PERIOD_S
"""How far the host's view of the probe may trail the trace's: the trace sees a frame the step after the tick that
read it, the interlock judges at its tick, and its trip may come a tick later."""
FACE_DETECT_WITHIN_S: Final = STATUS_PERIOD_S + IMAGING_MARGIN_S
"""The host reads the probe face's temperature once a second: a face past its limit must have tripped within a
reading and the margin."""
AFTERMATH_S: Final = 1.0
"""How long the simulated generator is watched after the procedure ends: "at the end" means then."""
ALARM_READING_S: Final = 5.0
"""How long the campaign's operator reads an alarm before declining to acknowledge it."""
FOR_GOOD: Final = None


@dataclass(frozen=True)
class Injection:
    kind: str
    channel: int
    at_s: float
    """Seconds after the generator started (simulated time)."""
    duration_s: float | None
    value: float | None = None
    """Kind-specific, as a fault script's ``value``: the frames a ``frame_drops`` loses, the °C/s an overheating
    probe face warms at; None for the others."""

    def describe(self) -> str:
        if self.kind in ONCE_KINDS:
            lasting = "once"
        else:
            lasting = "for good" if self.duration_s is None else f"for {self.duration_s:.1f} s"
        where = "" if self.kind in SYSTEM_KINDS else f" ch{self.channel}"
        value = "" if self.value is None else (
            f" ({self.value:.0f} frames)" if self.kind == "frame_drops" else f" ({self.value:.1f} °C/s)")
        return f"{self.kind}{where} at {self.at_s:.1f} s {lasting}{value}"


def kinds_for(plan: LesionPlan) -> tuple[str, ...]:
    """The kinds a campaign of ``plan`` draws from by default: the probe's only if the plan requires imaging."""
    return KINDS if plan.imaging_required else tuple(k for k in KINDS if k not in PROBE_KINDS)


def draw_injections(runs: int, seed: int, channels: Sequence[int], window_s: tuple[float, float],
                    kinds: Sequence[str] = KINDS,
                    stim_windows_s: Mapping[int, tuple[float, float]] | None = None,
                    rf_window_s: tuple[float, float] | None = None) -> list[Injection]:
    """``runs`` faults from ``seed``: every kind once before any repeats, on a planned channel, in the window.

    A stimulator fault (``STIM_ONLY_KINDS``) is drawn, where it can show, on a channel of ``stim_windows_s``
    (each channel that stimulated in the fault-free run, with the first and last moment it did) inside its
    window, if there is one; a probe fault (``PROBE_KINDS``) inside ``rf_window_s`` (the fault-free run's first
    and last RF output), if there is one, with no duration if it happens once (``ONCE_KINDS``) and its value."""
    rng = random.Random(seed)
    order = list(kinds)
    rng.shuffle(order)
    out = []
    for i in range(runs):
        kind = order[i % len(order)]
        duration = FOR_GOOD if rng.random() < 0.5 else round(rng.uniform(0.2, 5.0), 1)
        if kind in STIM_ONLY_KINDS and stim_windows_s:
            channel = rng.choice(sorted(stim_windows_s))
            start, end = stim_windows_s[channel]
        else:
            channel = rng.choice(list(channels))
            start, end = rf_window_s if kind in PROBE_KINDS and rf_window_s else window_s
        at_s = round(rng.uniform(start, end), 2)
        value = None
        if kind == "frame_drops":
            value = float(rng.randint(*FRAMES_DROPPED))
        elif kind == "overheating":
            value = round(rng.uniform(*OVERHEATING_C_PER_S), 1)
        out.append(Injection(kind, channel, at_s, None if kind in ONCE_KINDS else duration, value))
    return out


@dataclass
class DeviceTrace:
    """The simulated generator's outputs, sampled every device step: ``(time, mask of channels on)``,
    stored only when the mask changes; and, with imaging, what the simulated probe sent and its face temperature."""

    changes: list[tuple[float, int]] = field(default_factory=list)
    rf_changes: list[tuple[float, int]] = field(default_factory=list)
    """The same for RF output alone (``changes`` counts stimulation too)."""
    stim_changes: list[tuple[float, int]] = field(default_factory=list)
    """The same for stimulation alone (a channel stimulates or delivers RF, never both)."""
    true_tip_max_c: dict[int, float] = field(default_factory=dict)
    """The hottest each channel's tip really got (channel 1..4)."""
    last_t: float = 0.0
    """The last sample's time: where the trace ends."""
    frame_times: list[float] = field(default_factory=list)
    """When the simulated probe sent a frame (the step that saw its count go up); empty without a probe."""
    frames_sent: int = 0
    """The probe's count of frames sent at the last sample."""
    probe_face_changes: list[tuple[float, float]] = field(default_factory=list)
    """The simulated probe's face temperature, ``(time, °C)``, stored when it changes."""
    probe_fault_changes: list[tuple[float, bool]] = field(default_factory=list)
    """Whether the simulated probe reported its fault state, ``(time, reporting)``, stored when it changes."""

    def sample(self, t: float, mask: int, true_tips_c: Sequence[float] = (), rf_mask: int | None = None) -> None:
        """``mask``: channels with any output on; ``rf_mask``: with RF on (default: ``mask``)."""
        self.last_t = t
        if not self.changes or self.changes[-1][1] != mask:
            self.changes.append((t, mask))
        rf = mask if rf_mask is None else rf_mask
        if not self.rf_changes or self.rf_changes[-1][1] != rf:
            self.rf_changes.append((t, rf))
        stim = mask & ~rf
        if not self.stim_changes or self.stim_changes[-1][1] != stim:
            self.stim_changes.append((t, stim))
        for index, tip_c in enumerate(true_tips_c):
            if tip_c > self.true_tip_max_c.get(index + 1, -273.15):
                self.true_tip_max_c[index + 1] = tip_c

    def sample_probe(self, t: float, frames_sent: int, face_c: float, reports_fault: bool = False) -> None:
        """The simulated probe at ``t``: how many frames it has sent, its face temperature, and whether it reports
        its fault state."""
        if frames_sent != self.frames_sent:
            self.frames_sent = frames_sent
            self.frame_times.append(t)
        if not self.probe_face_changes or self.probe_face_changes[-1][1] != face_c:
            self.probe_face_changes.append((t, face_c))
        if (self.probe_fault_changes[-1][1] if self.probe_fault_changes else False) != reports_fault:
            self.probe_fault_changes.append((t, reports_fault))

    def probe_fault_spans(self) -> list[tuple[float, float]]:
        """Each stretch in which the probe reported its fault state, ``(start, end)``; one still going ends with
        the trace."""
        starts = [t for t, reporting in self.probe_fault_changes if reporting]
        ends = [t for t, reporting in self.probe_fault_changes if not reporting] + [self.last_t]
        return list(zip(starts, ends[:len(starts)], strict=True))

    def frame_age_at(self, t: float) -> float | None:
        """How old the probe's newest frame was at ``t``; None if it had sent none."""
        index = bisect.bisect_right(self.frame_times, t)
        return None if index == 0 else t - self.frame_times[index - 1]

    def frame_after(self, t: float) -> float | None:
        """When the probe next sent a frame after ``t``; None if it never did."""
        index = bisect.bisect_right(self.frame_times, t)
        return self.frame_times[index] if index < len(self.frame_times) else None

    def frame_gaps(self) -> list[tuple[float, float]]:
        """Each stretch without a frame: between two frames, and from the last one to the end of the trace."""
        return list(itertools.pairwise([*self.frame_times, self.last_t])) if self.frame_times else []

    def probe_face_over_at(self, limit_c: float) -> float | None:
        """When the probe's face first got hotter than ``limit_c``; None if it never did."""
        return next((t for t, face_c in self.probe_face_changes if face_c > limit_c), None)

    @property
    def probe_face_max_c(self) -> float | None:
        return max((face_c for _, face_c in self.probe_face_changes), default=None)

    @property
    def final_mask(self) -> int:
        return self.changes[-1][1] if self.changes else 0

    def on_at(self, t: float, mask: int, *, rf_only: bool = False) -> bool:
        """Whether any channel of ``mask`` was on at ``t`` (delivering RF, if ``rf_only``)."""
        current = 0
        for at, on in self._series(rf_only=rf_only):
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

    def on_again(self, after: float, mask: int) -> float | None:
        """The first moment after ``after`` (when the channels of ``mask`` were all off) that one was on."""
        return next((at for at, on in self.changes if at > after and on & mask), None)

    def on_time(self, mask: int, start: float, end: float, *, rf_only: bool = False,
                stim_only: bool = False) -> float:
        """Seconds between ``start`` and ``end`` during which some channel of ``mask`` was on (RF alone if
        ``rf_only``, stimulation alone if ``stim_only``)."""
        total = 0.0
        changes = self._series(rf_only=rf_only, stim_only=stim_only)
        for (at, on), (next_at, _) in itertools.pairwise([*changes, (self.last_t, 0)]):
            if on & mask:
                total += max(0.0, min(next_at, end) - max(at, start))
        return total

    def window(self, *, stim_only: bool = False, rf_only: bool = False,
               mask: int = ALL_CHANNELS) -> tuple[float, float] | None:
        """When output (stimulation, if ``stim_only``; RF, if ``rf_only``) first came on on a channel of ``mask``,
        and when it last went off there (the last sample if it never did)."""
        changes = self._series(rf_only=rf_only, stim_only=stim_only)
        ons = [t for t, on in changes if on & mask]
        if not ons:
            return None
        return ons[0], next((t for t, on in changes if t > ons[-1] and not on & mask), self.last_t)

    def _series(self, *, rf_only: bool = False, stim_only: bool = False) -> list[tuple[float, int]]:
        return self.rf_changes if rf_only else self.stim_changes if stim_only else self.changes


@dataclass(frozen=True)
class TripRow:
    """A trip as the record's alarm row has it (not ``safety.interlocks.Trip``: this is read back)."""

    at: float
    interlock: str
    channel: int | None


@dataclass
class RunOutcome:
    run: int
    injection: Injection | None
    exit_code: int
    final_state: str
    first_trip: TripRow | None
    stopped_after_ms: float | None
    """How long after the first trip the generator was delivering on the tripped channels."""
    fault_met_rf: bool
    """The fault began while its channel (any channel, for a system fault) delivered output."""
    record_rows: int
    exposure_s: float = 0.0
    """How long the faulted channel (any channel, for a system fault) delivered output while the fault lasted
    (RF output, for the ``RF_ONLY_KINDS``; stimulation, for the ``STIM_ONLY_KINDS``)."""
    detected_by: TripRow | None = None
    """The first trip of the faulted channel (or of all channels) at or after the fault's onset."""
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
        if self.injection is not None and self.exposure_s > 0 and self.detected_by is None:
            return "tolerated"
        return "ok"

    def as_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["verdict"] = self.verdict
        return d


def tripped_mask(trip: TripRow, plan: LesionPlan) -> int:
    """The channels a trip stops: its lesion's channels (a bipolar pair together), or all of them."""
    if trip.channel is None:
        return ALL_CHANNELS
    for lesion in plan.lesions:
        if trip.channel in lesion.channels:
            return sum(1 << (c - 1) for c in lesion.channels)
    return 1 << (trip.channel - 1)


def trip_levels_c(plan: LesionPlan, limits: SafetyLimits) -> dict[int, float]:
    """Each planned channel's over-temperature trip level under ``limits``."""
    rules = SafetyRules.compile(plan, limits)
    return {r.channel: r.pulsed_tip_max_c if r.mode is LesionMode.PULSED else r.over_temp_c for r in rules.channels}


def imaging_limit_s(plan: LesionPlan, limits: SafetyLimits) -> float:
    """How long RF may go on without a frame from the probe: the plan's frame age (as ``limits`` cap it) and the
    imaging-loss grace."""
    return SafetyRules.compile(plan, limits).imaging_max_age_s + hard.IMAGING_LOSS_GRACE_S


def _probe_problems(plan: LesionPlan, limits: SafetyLimits, trips: Sequence[TripRow], device: DeviceTrace,
                    ended_at: float) -> list[str]:
    """What the simulated probe did, against the two interlocks that watch it: a stretch without frames longer
    than the imaging limit with RF still on was tripped on by ``imaging_lost`` by then, and ``imaging_lost`` never
    tripped on a probe whose last frame was within it (the grace lets a lesion ride out a short drop-out); a face
    that passed its limit while the procedure ran was tripped on by ``probe_face_over_temperature`` within a
    reading, and that interlock never tripped on a face that had not; a fault the probe reported with RF on was
    tripped on by ``imaging_lost`` within a reading, which is then no false alarm, however fresh its frames."""
    problems: list[str] = []
    if plan.imaging_required and device.probe_face_changes:
        limit_s = imaging_limit_s(plan, limits)
        lost = [t for t in trips if t.interlock == InterlockId.IMAGING_LOST]
        for last, next_frame in device.frame_gaps():
            due = last + limit_s + IMAGING_MARGIN_S
            if (next_frame > due and due <= ended_at and device.on_at(due, ALL_CHANNELS, rf_only=True)
                    and not any(last <= t.at <= due for t in lost)):
                problems.append(f"no frame from the probe for {next_frame - last:.1f} s from {last:.2f} s with RF on, "
                                f"and imaging_lost had not tripped by {due:.2f} s (limit {limit_s:.1f} s)")
        reported = device.probe_fault_spans()
        for start, end in reported:
            due = start + FACE_DETECT_WITHIN_S
            if (due <= min(end, ended_at) and device.on_at(due, ALL_CHANNELS, rf_only=True)
                    and not any(start <= t.at <= due for t in lost)):
                problems.append(f"the probe reported a fault from {start:.2f} s with RF on, and imaging_lost had not "
                                f"tripped by {due:.2f} s")
        for trip in lost:
            age = device.frame_age_at(trip.at)
            if any(start - IMAGING_MARGIN_S <= trip.at <= end + IMAGING_MARGIN_S for start, end in reported):
                continue  # the probe said it had failed: a trip whatever its frames
            if age is not None and age < limit_s - IMAGING_MARGIN_S:
                problems.append(f"imaging_lost tripped at {trip.at:.2f} s on a probe whose last frame was {age:.2f} s "
                                f"old, within the {limit_s:.1f} s RF may go on without one")
    face_limit_c = limits.probe_face_temp_max_c
    over_at = device.probe_face_over_at(face_limit_c)
    face_trips = [t for t in trips if t.interlock == InterlockId.PROBE_FACE_OVER_TEMPERATURE]
    for trip in face_trips:
        if over_at is None or trip.at < over_at - IMAGING_MARGIN_S:
            when = "never" if over_at is None else f"only at {over_at:.2f} s"
            problems.append(f"probe_face_over_temperature tripped at {trip.at:.2f} s, but the probe face {when} "
                            f"passed its {face_limit_c:.1f} °C limit")
    if (over_at is not None and over_at + FACE_DETECT_WITHIN_S <= ended_at
            and not any(over_at - IMAGING_MARGIN_S <= t.at <= over_at + FACE_DETECT_WITHIN_S for t in face_trips)):
        problems.append(f"the probe face passed {face_limit_c:.1f} °C at {over_at:.2f} s and "
                        f"probe_face_over_temperature had not tripped {FACE_DETECT_WITHIN_S:.2f} s later")
    return problems


def _fault_mask(injection: Injection) -> int:
    return ALL_CHANNELS if injection.kind in SYSTEM_KINDS else 1 << (injection.channel - 1)


def _fault_end(injection: Injection, device: DeviceTrace) -> float:
    """When the fault ended (for good: the end of the trace); for a probe fault that costs frames, when the probe
    sent one again (a replugged probe is found again at the host's next attempt, then streams; the trace may see
    a frame read just before the fault a step after it)."""
    if injection.duration_s is None and injection.kind not in ONCE_KINDS:
        return device.last_t
    end = injection.at_s + (injection.duration_s or 0.0)
    if EXPECTED_TRIP.get(injection.kind) is InterlockId.IMAGING_LOST:
        back = device.frame_after(end + IMAGING_MARGIN_S)
        return device.last_t if back is None else back
    return end


def _stop_limit_s(at: float, mask: int, injection: Injection | None) -> float:
    """How long after a trip or an OUTPUT_OFF at ``at`` the channels of ``mask`` may still deliver."""
    if injection is None or at < injection.at_s:
        return STOP_WITHIN_S
    if injection.kind in UNHEARD_KINDS and (injection.duration_s is None or at < injection.at_s + injection.duration_s):
        return STOP_WITHIN_S + hard.GENERATOR_HEARTBEAT_TIMEOUT_S  # OUTPUT_OFF is not heard: only the watchdog acts
    if injection.kind in LATENT_KINDS and mask & _fault_mask(injection):
        # A stuck stage ignores OUTPUT_OFF: the host trips on the output it did not command after its grace (and
        # a frame), withholds its heartbeat, and the generator's own watchdog cuts output within its timeout.
        return hard.UNCOMMANDED_GRACE_S + hard.LOOP_PERIOD_S + STOP_WITHIN_S + hard.GENERATOR_HEARTBEAT_TIMEOUT_S
    return STOP_WITHIN_S


def judge(run: int, injection: Injection | None, plan: LesionPlan, limits: SafetyLimits, *, exit_code: int,
          final_state: str, trips: Sequence[TripRow], device: DeviceTrace, record_ok: bool,
          record_rows: int, off_commands: Sequence[tuple[float, int]] = (),
          ended_at: float | None = None) -> RunOutcome:
    """The run's outcome against the campaign's properties (module docstring); ``off_commands``: the time and
    channel mask of every OUTPUT_OFF the record shows the host sent; ``ended_at``: when the host's procedure ended
    (default: the end of the trace)."""
    trips = sorted(trips, key=lambda t: t.at)
    first = trips[0] if trips else None
    outcome = RunOutcome(run, injection, exit_code, final_state, first, None, False, record_rows)
    problems = outcome.problems
    for channel, limit_c in trip_levels_c(plan, limits).items():
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
    for trip in trips:
        mask = tripped_mask(trip, plan)
        stopped = device.stopped_at(trip.at, mask)
        if stopped is None:
            problems.append(f"output never stopped after the {trip.interlock} trip at {trip.at:.2f} s")
            continue
        if trip is first:
            outcome.stopped_after_ms = (stopped - trip.at) * 1e3
        limit_s = _stop_limit_s(trip.at, mask, injection)
        if stopped - trip.at > limit_s + 1e-9:
            problems.append(f"output stopped {(stopped - trip.at) * 1e3:.0f} ms after the {trip.interlock} trip "
                            f"at {trip.at:.2f} s (limit {limit_s * 1e3:.0f} ms)")
        back_on = device.on_again(stopped, mask)
        if back_on is not None:
            problems.append(f"output back on at {back_on:.2f} s on the channels of the {trip.interlock} trip")
    for at, mask in off_commands:
        stopped = device.stopped_at(at, mask)
        limit_s = _stop_limit_s(at, mask, injection)
        if stopped is None or stopped - at > limit_s + 1e-9:
            late = "never" if stopped is None else f"{(stopped - at) * 1e3:.0f} ms after"
            problems.append(f"output on mask 0x{mask:02X} stopped {late} the OUTPUT_OFF at {at:.2f} s "
                            f"(limit {limit_s * 1e3:.0f} ms)")
            break  # the first is the finding; every OUTPUT_OFF re-sent after it would repeat it
    problems += _probe_problems(plan, limits, trips, device, device.last_t if ended_at is None else ended_at)
    if first is not None and exit_code != 1:
        problems.append(f"a trip ({first.interlock}) but exit {exit_code}")
    if injection is None:
        if first is not None or exit_code != 0:
            problems.append(f"the fault-free run ended in {final_state} (exit {exit_code})")
        return outcome
    fault_mask = _fault_mask(injection)
    expected = EXPECTED_TRIP.get(injection.kind)
    outcome.fault_met_rf = device.on_at(injection.at_s, fault_mask)
    outcome.exposure_s = device.on_time(fault_mask, injection.at_s, _fault_end(injection, device),
                                        rf_only=injection.kind in RF_ONLY_KINDS or expected is not None,
                                        stim_only=injection.kind in STIM_ONLY_KINDS)
    outcome.detected_by = next((t for t in trips if t.at >= injection.at_s - 1e-9
                                and (injection.kind in SYSTEM_KINDS or tripped_mask(t, plan) & fault_mask)), None)
    if expected is not None:  # a probe fault: whether it had to trip is judged by what the probe did (above)
        if outcome.detected_by is not None and outcome.detected_by.interlock != expected:
            problems.append(f"{injection.kind} was tripped on by {outcome.detected_by.interlock}, not {expected}")
        elif outcome.detected_by is None and exit_code != 0:
            problems.append(f"{injection.kind} tripped nothing, but the procedure ended in {final_state} "
                            f"(exit {exit_code})")
        return outcome
    must_detect_s = FROZEN_DETECT_WITHIN_S if injection.kind == "thermocouple_frozen" else DETECT_WITHIN_S
    if outcome.detected_by is None and outcome.exposure_s >= must_detect_s and injection.kind not in LATENT_KINDS:
        problems.append(f"{injection.kind} lasted {outcome.exposure_s:.1f} s of output and nothing tripped on it")
    return outcome


def crashed(run: int, injection: Injection | None, exc: BaseException) -> RunOutcome:
    """A run whose procedure raised instead of ending: a failed run, and the campaign goes on."""
    outcome = RunOutcome(run, injection, -1, "crashed", None, None, False, 0)
    outcome.problems.append(f"the run raised {type(exc).__name__}: {exc}")
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
