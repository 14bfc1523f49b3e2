"""What a physician reads after a lesion: per-channel figures computed from the channel's trace.

Kept apart from the loop so the same numbers come out of a live run and of a record read back later.
"""

from __future__ import annotations

from array import array
from dataclasses import asdict, dataclass, field, fields
from typing import Any

import numpy as np
import numpy.typing as npt


def _samples() -> array[float]:
    return array("d")


@dataclass
class ChannelTrace:
    """Samples of one channel during one lesion, appended by the loop every tick.

    Arrays of doubles rather than lists: as cheap to append to, a quarter of the memory, and nothing for
    the garbage collector to walk. A list of floats is a container whose every element a full collection
    visits, and a procedure keeps every lesion's traces until its summary, so list traces made the
    real-time loop's full collection (:mod:`control.runtime`) grow with the length of the procedure."""

    channel: int
    set_temp_c: float
    t_s: array[float] = field(default_factory=_samples)
    tip_temp_c: array[float] = field(default_factory=_samples)
    impedance_ohm: array[float] = field(default_factory=_samples)
    power_w: array[float] = field(default_factory=_samples)
    hold_started_s: float | None = None
    """When the lesion timer started (the channel reached its set temperature)."""
    rf_started_s: float | None = None
    tripped: str = ""
    thermal: bool = True
    """A thermal lesion, whose size depends on holding the set temperature. For pulsed RF the set temperature
    is a ceiling (42 °C), not a target: a pulsed lesion held below it by its voltage cap has not fallen short."""
    partner: ChannelTrace | None = None
    """A bipolar lesion's second electrode, sampled beside this one (its own tip reading, impedance and share of
    the pair's power; its ``hold_started_s`` is when its own tip reached the set temperature). The controller
    holds the pair on its hotter tip (``control.session._regulated_tip_c``), and this trace's ``hold_started_s`` is
    when that one reached the set temperature; the partner's tip, heated by the same current through tissue of its
    own, may run hotter or colder than the lead's, and ``over_temperature`` judges each tip on its own."""

    @property
    def fell_short(self) -> bool:
        """A thermal lesion that ended without a trip and without its tip ever reaching the set temperature."""
        return self.thermal and not self.tripped and self.hold_started_s is None

    def add(self, t_s: float, tip_temp_c: float, impedance_ohm: float, power_w: float) -> None:
        self.t_s.append(t_s)
        self.tip_temp_c.append(tip_temp_c)
        self.impedance_ohm.append(impedance_ohm)
        self.power_w.append(power_w)


@dataclass(frozen=True)
class PartnerSummary:
    """The partner electrode's tip in a bipolar lesion: figures of its own trace, over the lesion's hold (from when
    the pair's hotter tip, the one regulated, reached the set temperature), so that a partner running hotter or
    colder than the lead shows. ``None`` where there is nothing to give: no reading at all (a thermocouple open from the
    start), no hold, or its tip never reached the set temperature (``time_to_set_s``)."""

    channel: int
    time_to_set_s: float | None = None
    overshoot_c: float | None = None
    hold_mean_c: float | None = None
    hold_max_c: float | None = None
    hold_rms_error_c: float | None = None
    impedance_start_ohm: float | None = None
    impedance_end_ohm: float | None = None


@dataclass(frozen=True)
class LesionSummary:
    channel: int
    set_temp_c: float
    time_to_set_s: float | None
    overshoot_c: float
    hold_mean_c: float | None
    hold_max_c: float | None
    hold_rms_error_c: float | None
    impedance_start_ohm: float | None
    impedance_end_ohm: float | None
    energy_j: float
    tripped: str
    rf_time_s: float = 0.0
    predicted_width_mm: float | None = None
    predicted_length_mm: float | None = None
    """Lesion size from the tissue model for this electrode, its tip made to follow this lesion's measured tip
    temperatures (``sim.tissue.estimate.estimate_lesion_from_tip``); ``None`` where there is none to give. (Named
    "predicted" in the record since before the estimate came from the trace.)"""
    size_note: str = ""
    """Why a lesion that should have a size has none: its estimate failed (an estimate is advisory, so the
    failure is said here and shown as ``?``, and never takes the summary or the procedure's result with it)."""
    shortfall: str = ""
    """Why a lesion that ran its time without a trip is still not the planned lesion: its tip never reached
    the set temperature (a cold, smaller lesion), or it delivered no RF at all."""
    partner: PartnerSummary | None = None
    """A bipolar lesion's second tip (:class:`PartnerSummary`); the figures above are the lead tip's (its time to
    set temperature is the pair's: when its hotter tip, the one regulated, reached it), and the pair's energy."""

    @property
    def result(self) -> str:
        """One phrase for the physician: a trip, a shortfall, or ``complete``."""
        return self.tripped or self.shortfall or "complete"

    @property
    def as_planned(self) -> bool:
        return not self.tripped and not self.shortfall

    def as_dict(self) -> dict[str, object]:
        return {**asdict(self), "result": self.result}


def summary_from_record(item: dict[str, Any]) -> LesionSummary:
    """A lesion's summary as its record row holds it (:meth:`LesionSummary.as_dict`), for a reader of the record;
    a field a newer cart writes is ignored, one an older cart did not write takes its default. Raises
    ``TypeError`` for a row that lacks a field every cart writes."""
    known = {f.name for f in fields(LesionSummary)}
    values = {key: value for key, value in item.items() if key in known}
    partner = values.get("partner")
    if partner is not None:  # a bipolar lesion's second tip
        if not isinstance(partner, dict):
            raise TypeError(f"a bipolar partner's figures are an object, not {partner!r}")
        partner_known = {f.name for f in fields(PartnerSummary)}
        values["partner"] = PartnerSummary(**{key: value for key, value in partner.items() if key in partner_known})
    return LesionSummary(**values)


def summarise(trace: ChannelTrace) -> LesionSummary:
    """Figures of merit of one channel's lesion; ``None`` where the lesion never got that far."""
    t = np.asarray(trace.t_s)
    temp = np.asarray(trace.tip_temp_c)
    z = np.asarray(trace.impedance_ohm)
    p = np.asarray(trace.power_w)
    start = trace.rf_started_s if trace.rf_started_s is not None else float(t[0]) if t.size else 0.0
    partner = None if trace.partner is None else summarise_partner(trace.partner, trace.hold_started_s, start)
    if t.size == 0:
        return LesionSummary(
            trace.channel, trace.set_temp_c, None, 0.0, None, None, None, None, None, 0.0, trace.tripped,
            shortfall="" if trace.tripped else "no RF delivered", partner=partner,
        )
    peak_c = float(temp.max())
    shortfall = (f"set temperature not reached: peak {peak_c:.1f} °C of {trace.set_temp_c:.0f} °C"
                 if trace.fell_short else "")
    energy_j = float(np.sum(0.5 * (p[1:] + p[:-1]) * np.diff(t))) if t.size > 1 else 0.0
    mean_c, max_c, rms_c = _hold_figures(t, temp, trace.hold_started_s, trace.set_temp_c)
    return LesionSummary(
        channel=trace.channel,
        set_temp_c=trace.set_temp_c,
        time_to_set_s=None if trace.hold_started_s is None else trace.hold_started_s - start,
        overshoot_c=max(0.0, peak_c - trace.set_temp_c),
        hold_mean_c=mean_c,
        hold_max_c=max_c,
        hold_rms_error_c=rms_c,
        impedance_start_ohm=float(z[0]),
        impedance_end_ohm=float(z[-1]),
        energy_j=energy_j,
        tripped=trace.tripped,
        rf_time_s=float(t[-1]) - start,
        shortfall=shortfall,
        partner=partner,
    )


def summarise_partner(partner: ChannelTrace, hold_started_s: float | None, rf_started_s: float) -> PartnerSummary:
    """A bipolar partner's tip figures (:class:`PartnerSummary`): its own time to set temperature and peak, and its
    readings over the lesion's hold, which began at ``hold_started_s`` (the lead's; ``None``: never)."""
    t = np.asarray(partner.t_s)
    temp = np.asarray(partner.tip_temp_c)
    z = np.asarray(partner.impedance_ohm)
    if t.size == 0:
        return PartnerSummary(partner.channel)
    mean_c, max_c, rms_c = _hold_figures(t, temp, hold_started_s, partner.set_temp_c)
    return PartnerSummary(
        channel=partner.channel,
        time_to_set_s=None if partner.hold_started_s is None else partner.hold_started_s - rf_started_s,
        overshoot_c=max(0.0, float(temp.max()) - partner.set_temp_c),
        hold_mean_c=mean_c,
        hold_max_c=max_c,
        hold_rms_error_c=rms_c,
        impedance_start_ohm=float(z[0]),
        impedance_end_ohm=float(z[-1]),
    )


def _hold_figures(
    t: npt.NDArray[np.float64], temp: npt.NDArray[np.float64], hold_started_s: float | None, set_temp_c: float,
) -> tuple[float | None, float | None, float | None]:
    """Mean, maximum and RMS error from ``set_temp_c`` of the readings from ``hold_started_s`` on (``None`` each
    where there is no hold)."""
    hold = temp[t >= hold_started_s] if hold_started_s is not None else temp[:0]
    if not hold.size:
        return None, None, None
    return float(hold.mean()), float(hold.max()), float(np.sqrt(np.mean((hold - set_temp_c) ** 2)))


def _fmt(value: float | None, spec: str) -> str:
    """``value`` as ``spec`` says, or "-" in the same width, so the table's columns stay aligned."""
    if value is None:
        return "-".rjust(int(spec.partition(".")[0] or 0))
    return format(value, spec)


def lesion_size_text(width_mm: float | None, length_mm: float | None, note: str = "") -> str:
    """A lesion's estimated size as the summary shows it: ``8.1×14.0`` (mm), ``none`` where no tissue of the model
    coagulated (a tip that stayed cool, or RF for a moment), ``?`` where the estimate failed (``note`` says why),
    ``-`` where there is nothing to estimate (pulsed RF, no RF delivered)."""
    if note:
        return "?"
    if width_mm is None or length_mm is None:
        return "-"
    if width_mm <= 0.0 and length_mm <= 0.0:
        return "none"
    return f"{width_mm:.1f}×{length_mm:.1f}"


def summary_table(summaries: list[LesionSummary]) -> str:
    """The end-of-procedure table, one row per lesion channel; a bipolar lesion's partner tip on a row of its own
    under it (its channel, and "bipolar partner of chN" for a result: the lesion's energy, size and result are on
    the lead's row), so that a partner running hotter or colder than the lead tip shows."""
    header = (
        f"{'ch':>2} {'set °C':>6} {'t→set s':>7} {'over °C':>7} {'mean °C':>7} {'max °C':>6} "
        f"{'rms °C':>6} {'Z0 Ω':>6} {'Zend Ω':>6} {'energy J':>8} {'lesion W×L mm':>13}  result"
    )
    lines = [header, "-" * len(header)]
    for s in summaries:
        size = lesion_size_text(s.predicted_width_mm, s.predicted_length_mm, s.size_note)
        lines.append(f"{_tip_columns(s, s.set_temp_c)} {s.energy_j:>8.0f} {size:>13}  {s.result}")
        if s.partner is not None:
            lines.append(f"{_tip_columns(s.partner, s.set_temp_c)} {_fmt(None, '8')} {_fmt(None, '13')}  "
                         f"{partner_result(s.channel)}")
    return "\n".join(lines)


def _tip_columns(tip: LesionSummary | PartnerSummary, set_temp_c: float) -> str:
    """The table's columns from the channel to the end impedance, for a lesion's (lead) tip or a partner's."""
    return (
        f"{tip.channel:>2} {set_temp_c:>6.1f} {_fmt(tip.time_to_set_s, '7.1f')} {_fmt(tip.overshoot_c, '7.2f')} "
        f"{_fmt(tip.hold_mean_c, '7.2f')} {_fmt(tip.hold_max_c, '6.2f')} {_fmt(tip.hold_rms_error_c, '6.2f')} "
        f"{_fmt(tip.impedance_start_ohm, '6.0f')} {_fmt(tip.impedance_end_ohm, '6.0f')}"
    )


def partner_result(lead_channel: object) -> str:
    """What a bipolar partner's row says in the result column (the table's, the report's): whose partner it is, and
    how the pair is regulated."""
    return f"bipolar partner of ch{lead_channel} (pair held on its hotter tip)"
