"""The procedure report (ARCHITECTURE.md sections 9 and 11): one HTML file per record, for the patient file.

Why it is built this way:

- One self-contained file: the plots are PNGs embedded as base64 data URIs and the style sheet is inline,
  so the report can be archived, mailed or opened on a machine without the cart's software and still
  show everything it showed on the cart.
- The hash chain is verified first and its result heads the report: a report of a tampered record must
  say so, and at which row, before anyone reads a number from it.
- The record is evidence, not markup: every string taken from it goes through :func:`html.escape`, and
  a value of an unexpected type is shown as text rather than trusted, so a broken or hostile record
  still renders (and cannot inject script into the page).
- Any row kind may be missing (a procedure that faulted in self-test has no telemetry, a run without a
  probe has no frames); each section then says what is absent instead of failing.
- Telemetry can be 100k rows: it is streamed, only the planned channels inside the lesion window are
  kept, in ``array('d')`` buffers turned into numpy arrays, and progress goes to the caller's stream.
- matplotlib is an optional extra (``plot``) and slow to import, so it is imported inside the plotting
  functions; it is used through ``Figure`` and the Agg canvas, never ``pyplot``, so no global backend
  is switched in a process that may also run the operator display.
"""

from __future__ import annotations

import base64
import html
import io
import math
import zlib
from array import array
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime
from pathlib import Path
from typing import Any, Final, NamedTuple, TextIO, TypeGuard

import numpy as np
import numpy.typing as npt

from control.record import RecordDamaged, RecordReader, RecordRow, VerifyResult
from control.summary import lesion_size_text, partner_result
from firmware_bridge.messages import TelemetryFlag, tip_temperature_measured

WINDOW_MARGIN_S: Final = 5.0
"""Telemetry plotted before RF starts and after it stops, so the baseline and the cool-down show."""
MAX_THUMBNAILS: Final = 8
"""Frames shown: the ones at RF start, the last trip and RF's end, the rest spread over RF (:func:`choose_frames`)."""
PROGRESS_EVERY_ROWS: Final = 20_000
RF_STATES: Final = ("ramping", "lesioning")
PLOT_DPI: Final = 100
_OUTPUT_ON: Final = int(TelemetryFlag.OUTPUT_ON)

_STYLE: Final = """
body { font-family: sans-serif; margin: 2em; color: #222; }
table { border-collapse: collapse; margin: 0.5em 0 1.5em; }
th, td { border: 1px solid #bbb; padding: 0.2em 0.6em; text-align: left; }
th { background: #eee; }
.chain { padding: 0.6em 1em; font-weight: bold; border-radius: 4px; }
.intact { background: #dff0d8; color: #2b542c; }
.broken { background: #f2dede; color: #a94442; border: 2px solid #a94442; }
.note { color: #666; font-style: italic; }
figure { display: inline-block; margin: 0.5em; }
"""


@dataclass(frozen=True)
class PlannedChannel:
    """A channel the plan drives, with the targets its plot is drawn against."""

    channel: int
    set_temp_c: float | None
    power_cap_w: float | None
    pair: tuple[int, int] | None = None
    """The bipolar pair the channel is one side of: its telemetry's power is this side's share, and the cap is the
    pair's (both sides together)."""

    @property
    def title(self) -> str:
        pair = "" if self.pair is None else f", bipolar pair {self.pair[0]}–{self.pair[1]}"
        return f"Channel {self.channel}{pair}"

    @property
    def power_labels(self) -> tuple[str, str]:
        """The power plot's legend: its line, and the cap's line (``power_cap_w`` set)."""
        if self.pair is None:
            return "power", f"cap {self.power_cap_w:g} W"
        pair = f"{self.pair[0]}–{self.pair[1]}"
        return "this side's share", f"cap {self.power_cap_w:g} W for the pair {pair} (both sides)"


@dataclass(frozen=True)
class ChannelTelemetry:
    """One channel's samples inside the plotted span; ``t_s`` is seconds since RF started.

    ``tip_temp_c`` is NaN where the telemetry's flags say the field is no reading (an open thermocouple sends
    327.67 °C, no electrode 0 °C; ``tip_temperature_measured``): the plot shows a gap there, as ``rfa run`` left
    such readings out of the lesion's figures, rather than a jump to full scale."""

    channel: int
    t_s: npt.NDArray[np.float64]
    tip_temp_c: npt.NDArray[np.float64]
    impedance_ohm: npt.NDArray[np.float64]
    power_w: npt.NDArray[np.float64]
    rf_on_s: tuple[tuple[float, float], ...]
    """When this channel's RF was on (:func:`rf_spans`), in the same seconds as ``t_s``: what its plot shades."""


@dataclass(frozen=True)
class Thumbnail:
    """One recorded B-mode frame, decoded, with the tip the detector reported for it."""

    row_id: int
    mono: float
    reason: str
    pixels: npt.NDArray[np.uint8]
    mm_per_pixel: float
    lateral_origin_mm: float
    depth_origin_mm: float
    origin_recorded: bool
    """False when the row lacks the image origin and the report assumed a centred, top-at-0 image."""
    tip_lateral_mm: float | None
    tip_depth_mm: float | None
    tip_confidence: float | None
    role: str = ""
    """Which moment it was chosen for ("RF start", "last trip: …", "RF end"); empty for one spread over RF."""


class FrameRef(NamedTuple):
    """A recorded frame without its image (a frame row is 170 kB): what choosing the thumbnails needs."""

    row_id: int
    mono: float
    has_image: bool


@dataclass
class RecordFacts:
    """Everything the report shows, read once from the record."""

    path: Path
    meta: dict[str, str]
    chain: VerifyResult
    plan: dict[str, Any] | None = None
    states: list[RecordRow] = field(default_factory=list)
    stimulation: list[RecordRow] = field(default_factory=list)
    alarms: list[RecordRow] = field(default_factory=list)
    summary: dict[str, Any] | None = None
    rf_windows: list[tuple[float, float | None]] = field(default_factory=list)
    """(start, end) host times of RF; end ``None`` when the record stops while RF was on."""
    telemetry: dict[int, ChannelTelemetry] = field(default_factory=dict)
    thumbnails: list[Thumbnail] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)
    """Rows the report could not use, said in the report rather than hidden."""

    @property
    def channels(self) -> list[PlannedChannel]:
        return planned_channels(self.plan)


@dataclass(frozen=True)
class ReportOutcome:
    chain: VerifyResult
    lesion_plots: int


# -- reading ----------------------------------------------------------------------------------------


def _number(value: object) -> float | None:
    """A record value as a float, or None when it is not a number (JSON true/false is not a reading)."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value)


def _is_int(value: object) -> TypeGuard[int]:
    """A record value is an integer (flags, a channel): JSON true/false is not one."""
    return isinstance(value, int) and not isinstance(value, bool)


def planned_channels(plan: dict[str, Any] | None) -> list[PlannedChannel]:
    """The channels the plan drives, in plan order; a bipolar lesion drives its partner channel too."""
    if plan is None or not isinstance(plan.get("lesions"), list):
        return []
    found: dict[int, PlannedChannel] = {}
    for lesion in plan["lesions"]:
        if not isinstance(lesion, dict) or not isinstance(lesion.get("channel"), int):
            continue
        channel = lesion["channel"]
        pair = (channel, channel + 1) if lesion.get("mode") == "bipolar" else None
        for ch in pair or (channel,):
            found.setdefault(
                ch, PlannedChannel(ch, _number(lesion.get("set_temp_c")), _number(lesion.get("power_cap_w")), pair)
            )
    return list(found.values())


def rf_windows(states: Iterable[RecordRow]) -> list[tuple[float, float | None]]:
    """When RF was on: from entering ``ramping`` to leaving ramping or lesioning other than for lesioning."""
    windows: list[tuple[float, float | None]] = []
    start: float | None = None
    for row in states:
        source, dest = row.payload.get("source"), row.payload.get("dest")
        if start is None and dest == "ramping":
            start = row.mono
        elif start is not None and source in RF_STATES and dest != "lesioning":
            windows.append((start, row.mono))
            start = None
    if start is not None:
        windows.append((start, None))
    return windows


def stimulation_windows(states: Iterable[RecordRow]) -> list[tuple[float, float]]:
    """When a nerve test ran: from entering ``stimulating`` to the next state change (a record that stops while
    stimulating: to the end of time)."""
    windows: list[tuple[float, float]] = []
    start: float | None = None
    for row in states:
        if start is not None:
            windows.append((start, row.mono))
            start = None
        if row.payload.get("dest") == "stimulating":
            start = row.mono
    if start is not None:
        windows.append((start, math.inf))
    return windows


def rf_spans(
    t_s: npt.NDArray[np.float64], output_on: npt.NDArray[np.bool_], stimulating: Sequence[tuple[float, float]]
) -> tuple[tuple[float, float], ...]:
    """When one channel's RF was on, from the generator's own word: the runs of samples whose telemetry flags say
    that channel's output is on (``OUTPUT_ON``), each from its first sample to the first one seen off (the last
    sample if the trace ends on). A run that began during a nerve test is the stimulus, not RF.

    The procedure's states say when RF was allowed on any channel; a channel stopped by its own trip, or one
    that went on where it should not, differs from them, and a reviewer needs to see each channel as it was."""
    edges = np.flatnonzero(np.diff(output_on.astype(np.int8), prepend=0, append=0))
    spans = []
    for start, stop in zip(edges[::2], edges[1::2], strict=True):
        begun = float(t_s[start])
        if any(lo <= begun < hi for lo, hi in stimulating):
            continue
        spans.append((begun, float(t_s[min(stop, t_s.size - 1)])))
    return tuple(spans)


def _collect(reader: RecordReader, kind: str, problems: list[str]) -> Iterator[RecordRow]:
    """The rows of one kind, noting in ``problems`` what had to be left out.

    A payload that is JSON but not an object is skipped. ``RecordReader.rows`` parses as it goes, so a
    payload that is not JSON at all (a tampered row) ends the kind there; the rows before it still show.
    """
    last_id = 0
    try:
        for row in reader.rows(kind):
            if not isinstance(row.payload, dict):
                problems.append(f"{kind} row {row.id}: payload is not an object; skipped")
                continue
            last_id = row.id
            yield row
    except RecordDamaged as exc:
        problems.append(f"{kind} rows after row {last_id} could not be read ({exc.__cause__}); not shown")


def _read_telemetry(
    reader: RecordReader, facts: RecordFacts, progress: TextIO | None
) -> dict[int, ChannelTelemetry]:
    """Stream telemetry, keeping only planned channels inside the RF windows (plus margins), and when each
    channel's own RF was on."""
    channels = {c.channel for c in facts.channels}
    if not channels or not facts.rf_windows:
        return {}
    t0 = facts.rf_windows[0][0]
    lo = t0 - WINDOW_MARGIN_S
    last_end = facts.rf_windows[-1][1]
    hi = float("inf") if last_end is None else last_end + WINDOW_MARGIN_S
    total = reader.count("telemetry")
    _say(progress, f"reading telemetry: {total} rows, channels {sorted(channels)}")
    buffers = {ch: (array("d"), array("d"), array("d"), array("d")) for ch in channels}
    output_on = {ch: array("b") for ch in channels}
    skipped = 0
    for n, row in enumerate(_collect(reader, "telemetry", facts.problems), start=1):
        if n % PROGRESS_EVERY_ROWS == 0:
            _say(progress, f"  telemetry {n}/{total} rows ({100 * n // max(total, 1)} %)")
        ch = row.payload.get("ch")
        if not isinstance(ch, int) or ch not in buffers or not lo <= row.mono <= hi:
            continue
        tip_c, z_ohm, w = (_number(row.payload.get(k)) for k in ("tip_c", "z_ohm", "w"))
        flags = row.payload.get("flags")
        if tip_c is None or z_ohm is None or w is None or not _is_int(flags):
            skipped += 1
            continue
        t_buf, tip_buf, z_buf, w_buf = buffers[ch]
        t_buf.append(row.mono - t0)
        tip_buf.append(tip_c if tip_temperature_measured(flags) else math.nan)
        z_buf.append(z_ohm)
        w_buf.append(w)
        output_on[ch].append(bool(flags & _OUTPUT_ON))
    if skipped:
        facts.problems.append(f"{skipped} telemetry rows with missing or non-numeric values were not plotted")
    stimulating = [(start - t0, end - t0) for start, end in stimulation_windows(facts.states)]
    traces = {}
    for ch, bufs in sorted(buffers.items()):
        if not len(bufs[0]):
            continue
        t_s, tips, impedances, powers = (np.frombuffer(b, dtype=np.float64) for b in bufs)
        on = np.frombuffer(output_on[ch], dtype=np.int8).astype(bool)
        traces[ch] = ChannelTelemetry(ch, t_s, tips, impedances, powers, rf_spans(t_s, on, stimulating))
    return traces


def _decode_frame(row: RecordRow) -> Thumbnail | str:
    """The thumbnail of a 'frame' row, or why it cannot be shown."""
    p = row.payload
    shape, scale, data = p.get("shape"), _number(p.get("mm_per_pixel")), p.get("zlib_b64")
    if not (isinstance(shape, list) and len(shape) == 2 and all(isinstance(n, int) and n > 0 for n in shape)):
        return f"frame row {row.id}: no image recorded"
    if scale is None or scale <= 0 or not isinstance(data, str):
        return f"frame row {row.id}: image scale or data missing"
    try:
        raw = zlib.decompress(base64.b64decode(data, validate=True))
    except (ValueError, zlib.error) as exc:
        return f"frame row {row.id}: image data unreadable ({exc})"
    rows, cols = shape
    if len(raw) != rows * cols:
        return f"frame row {row.id}: image is {len(raw)} bytes, not {rows}×{cols}"
    x0, z0 = _number(p.get("lateral_origin_mm")), _number(p.get("depth_origin_mm"))
    return Thumbnail(
        row_id=row.id,
        mono=row.mono,
        reason=str(p.get("reason", "")),
        pixels=np.frombuffer(raw, dtype=np.uint8).reshape(rows, cols),
        mm_per_pixel=scale,
        lateral_origin_mm=(-(cols - 1) * scale / 2.0) if x0 is None else x0,
        depth_origin_mm=0.0 if z0 is None else z0,
        origin_recorded=x0 is not None and z0 is not None,
        tip_lateral_mm=_number(p.get("tip_lateral_mm")),
        tip_depth_mm=_number(p.get("tip_depth_mm")),
        tip_confidence=_number(p.get("tip_confidence")),
    )


def choose_frames(
    frames: Sequence[FrameRef],
    windows: Sequence[tuple[float, float | None]],
    trips: Sequence[tuple[float, str]],
    limit: int = MAX_THUMBNAILS,
) -> dict[int, str]:
    """The frames to show, at most ``limit``, as row id → the moment each was chosen for ("" for the spread).

    What a reviewer looks for first: the tip where RF went on (the frame at RF start, the same moment as
    arming's), the image at the last trip ((time, what tripped) in ``trips``), and the lesion as RF left it
    (the frame at RF's end, or the last one if the record stops with RF on). The rest are spread evenly over RF
    (over the whole record if RF never started). Frames come 1/s during RF but also at every state change, and
    the nerve tests alone make a dozen of those: taking the first frames, or those at state changes, showed
    only stimulation. A frame without an image (the probe had none yet) is never chosen."""
    with_image = sorted((f for f in frames if f.has_image), key=lambda f: f.mono)
    if not with_image:
        return {}
    chosen: dict[int, str] = {}
    for moment_s, role in _key_moments(windows, trips):
        if len(chosen) < limit:
            chosen.setdefault(_frame_at(with_image, moment_s).row_id, role)
    start, end = _spread_span(windows, with_image)
    for frame in _spread(with_image, start, end, limit - len(chosen), set(chosen)):
        chosen[frame.row_id] = ""
    return chosen


def _key_moments(
    windows: Sequence[tuple[float, float | None]], trips: Sequence[tuple[float, str]]
) -> list[tuple[float, str]]:
    """The moments whose frames are always shown, most needed first; the frame for each is the first at or after
    it (an RF end of ``None``, infinity: the last frame)."""
    moments: list[tuple[float, str]] = []
    if windows:
        moments.append((windows[0][0], "RF start"))
    if trips:
        at_s, what = max(trips, key=lambda trip: trip[0])
        moments.append((at_s, f"last trip: {what}"))
    if windows:
        end = windows[-1][1]
        moments.append((math.inf if end is None else end, "RF end"))
    else:
        moments.append((math.inf, "last frame"))
    return moments


def _frame_at(frames: Sequence[FrameRef], moment_s: float) -> FrameRef:
    """The first frame at or after ``moment_s`` (the last frame if none is), and of the frames recorded at that
    same instant the last: arming and RF start are one tick, and its second frame is the one of RF start."""
    after = [f for f in frames if f.mono >= moment_s]
    if not after:
        return frames[-1]
    return [f for f in after if f.mono == after[0].mono][-1]


def _spread_span(windows: Sequence[tuple[float, float | None]], frames: Sequence[FrameRef]) -> tuple[float, float]:
    """From RF start to RF end (the last frame if the record stops with RF on); the whole record without RF."""
    if not windows:
        return frames[0].mono, frames[-1].mono
    end = windows[-1][1]
    return windows[0][0], frames[-1].mono if end is None else end


def _spread(frames: Sequence[FrameRef], start: float, end: float, count: int, taken: set[int]) -> list[FrameRef]:
    """``count`` frames between ``start`` and ``end``, each the nearest to one of ``count`` evenly spaced moments
    inside the span (its ends are the key frames' places), none of ``taken``."""
    pool = [f for f in frames if start <= f.mono <= end and f.row_id not in taken]
    spread: list[FrameRef] = []
    for k in range(1, count + 1):
        if not pool:
            break
        target = start + k * (end - start) / (count + 1)
        nearest = min(pool, key=lambda f: abs(f.mono - target))
        pool.remove(nearest)
        spread.append(nearest)
    return spread


def _has_image(payload: dict[str, Any]) -> bool:
    return isinstance(payload.get("zlib_b64"), str) and isinstance(payload.get("shape"), list)


def _trips(alarms: Iterable[RecordRow]) -> list[tuple[float, str]]:
    """Each trip's time and what tripped ("thermocouple_open ch2")."""
    trips = []
    for row in alarms:
        if row.payload.get("event") == "trip":
            channel = row.payload.get("channel")
            where = "" if channel is None else f" ch{channel}"
            trips.append((row.mono, f"{row.payload.get('interlock', '?')}{where}"))
    return trips


def _read_thumbnails(reader: RecordReader, facts: RecordFacts) -> list[Thumbnail]:
    """The frames :func:`choose_frames` picks, decoded, in record order.

    Two passes over the frame rows: the first keeps only where each frame is, the second decodes the chosen
    ones, so a long procedure's frames (1/s of RF, 170 kB each) are never all held at once."""
    refs = [FrameRef(row.id, row.mono, _has_image(row.payload)) for row in _collect(reader, "frame", facts.problems)]
    if refs and not any(ref.has_image for ref in refs):
        facts.problems.append(f"{len(refs)} frame rows, none with an image: no frame to show")
    chosen = choose_frames(refs, facts.rf_windows, _trips(facts.alarms))
    thumbnails: list[Thumbnail] = []
    for row in _collect(reader, "frame", []):  # what cannot be read was noted in the first pass
        if row.id not in chosen:
            continue
        decoded = _decode_frame(row)
        if isinstance(decoded, str):
            facts.problems.append(decoded)
        else:
            thumbnails.append(replace(decoded, role=chosen[row.id]))
    return thumbnails


def read_facts(reader: RecordReader, progress: TextIO | None = None) -> RecordFacts:
    """Verify the chain, then read every section's rows; nothing here assumes a row kind is present."""
    _say(progress, f"verifying the hash chain of {reader.path} ({reader.count()} rows)")
    facts = RecordFacts(path=reader.path, meta=reader.meta(), chain=reader.verify())
    for row in _collect(reader, "plan", facts.problems):
        facts.plan = row.payload
        break
    facts.states = list(_collect(reader, "state", facts.problems))
    facts.stimulation = list(_collect(reader, "stimulation", facts.problems))
    facts.alarms = list(_collect(reader, "alarm", facts.problems))
    for row in _collect(reader, "summary", facts.problems):
        facts.summary = row.payload
    facts.rf_windows = rf_windows(facts.states)
    facts.telemetry = _read_telemetry(reader, facts, progress)
    facts.thumbnails = _read_thumbnails(reader, facts)
    return facts


def _say(progress: TextIO | None, text: str) -> None:
    if progress is not None:
        print(text, file=progress, flush=True)


# -- plotting ---------------------------------------------------------------------------------------


def _png_data_uri(fig: Any) -> str:
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    FigureCanvasAgg(fig)
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=PLOT_DPI)
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode("ascii")


def plot_channel(trace: ChannelTelemetry, planned: PlannedChannel, alarm_times_s: Sequence[float]) -> str:
    """Tip temperature (with the set temperature), impedance and power against time, shaded where this channel's
    RF was on, as a PNG data URI."""
    from matplotlib.figure import Figure

    fig = Figure(figsize=(9, 6.5), layout="constrained")
    temp_ax, z_ax, p_ax = fig.subplots(3, 1, sharex=True)
    for start, end in trace.rf_on_s:
        for ax in (temp_ax, z_ax, p_ax):
            ax.axvspan(start, end, color="#f6e3c6", lw=0)
    for t in (a for a in alarm_times_s if trace.t_s[0] <= a <= trace.t_s[-1]):
        for ax in (temp_ax, z_ax, p_ax):
            ax.axvline(t, color="#c0392b", lw=1)
    temp_ax.plot(trace.t_s, trace.tip_temp_c, color="#c0392b", lw=1.2, label="tip")
    if planned.set_temp_c is not None:
        temp_ax.axhline(planned.set_temp_c, color="#555", ls="--", lw=1,
                        label=f"set {planned.set_temp_c:.1f} °C")
    temp_ax.set_ylabel("tip temperature (°C)")
    temp_ax.legend(loc="lower right", fontsize="small")
    z_ax.plot(trace.t_s, trace.impedance_ohm, color="#2c7fb8", lw=1.2)
    z_ax.set_ylabel("impedance (Ω)")
    power_label, cap_label = planned.power_labels
    p_ax.plot(trace.t_s, trace.power_w, color="#31a354", lw=1.2, label=power_label)
    if planned.power_cap_w is not None:
        p_ax.axhline(planned.power_cap_w, color="#555", ls="--", lw=1, label=cap_label)
        p_ax.legend(loc="upper right", fontsize="small")
    p_ax.set_ylabel("power (W)")
    p_ax.set_xlabel("time since RF start (s); shaded: this channel's RF on; red lines: alarms")
    fig.suptitle(planned.title)
    for ax in (temp_ax, z_ax, p_ax):
        ax.grid(True, alpha=0.3)
    return _png_data_uri(fig)


def plot_thumbnail(thumb: Thumbnail) -> str:
    """The frame in millimetres with the detected tip marked, as a PNG data URI."""
    from matplotlib.figure import Figure

    rows, cols = thumb.pixels.shape
    half = thumb.mm_per_pixel / 2.0
    x0, z0 = thumb.lateral_origin_mm - half, thumb.depth_origin_mm - half
    extent = (x0, x0 + cols * thumb.mm_per_pixel, z0 + rows * thumb.mm_per_pixel, z0)
    fig = Figure(figsize=(3.2, 3.2), layout="constrained")
    ax = fig.subplots()
    ax.imshow(thumb.pixels, cmap="gray", vmin=0, vmax=255, extent=extent, interpolation="nearest")
    if thumb.tip_lateral_mm is not None and thumb.tip_depth_mm is not None:
        ax.plot([thumb.tip_lateral_mm], [thumb.tip_depth_mm], marker="+", color="#ff3b30", ms=14, mew=2)
        ax.plot([thumb.tip_lateral_mm], [thumb.tip_depth_mm], marker="o", color="#ff3b30", ms=14,
                mfc="none", mew=1)
    ax.set_xlabel("lateral (mm)", fontsize="small")
    ax.set_ylabel("depth (mm)", fontsize="small")
    ax.tick_params(labelsize="small")
    return _png_data_uri(fig)


# -- HTML -------------------------------------------------------------------------------------------


def _text(value: object) -> str:
    """Record data as escaped text; an absent value is a dash, never the string 'None'."""
    return "–" if value is None or value == "" else html.escape(str(value))


def _fixed(value: object, spec: str) -> str:
    number = _number(value)
    return _text(value) if number is None else format(number, spec)


def _as_dict(value: object) -> dict[str, Any]:
    """A nested record value that should be an object; anything else reads as empty."""
    return value if isinstance(value, dict) else {}


def _as_list(value: object) -> list[Any]:
    return value if isinstance(value, list) else []


def _table(headers: Sequence[str], rows: Iterable[Sequence[str]]) -> str:
    """A table of cells that are already escaped (headers are ours, not the record's)."""
    head = "".join(f"<th>{h}</th>" for h in headers)
    body = "".join("<tr>" + "".join(f"<td>{c}</td>" for c in row) + "</tr>" for row in rows)
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def _wall_time(value: float) -> str:
    return datetime.fromtimestamp(value).astimezone().isoformat(timespec="seconds")


def _started(facts: RecordFacts) -> str:
    """The start as the session wrote it, else the record's creation (written just before the plan row)."""
    if facts.meta.get("started"):
        return _text(facts.meta["started"])
    try:
        return _wall_time(float(facts.meta.get("created_wall", "")))
    except ValueError:
        return "–"


def _header(facts: RecordFacts) -> str:
    plan_name = facts.meta.get("plan_name") or (facts.plan or {}).get("name")
    summary = facts.summary or {}
    last_state = facts.states[-1].payload.get("dest") if facts.states else None
    final_state = summary.get("final_state") or last_state
    rows = [
        ("Plan", _text(plan_name)),
        ("Record file", _text(facts.path)),
        ("Started", _started(facts)),
        ("Final state", _text(final_state) if final_state else "unknown: no state change recorded"),
    ]
    if facts.summary is not None:
        rows.append(("Exit code", _text(summary.get("exit_code"))))
        if summary.get("message"):
            rows.append(("Message", _text(summary.get("message"))))
    else:
        rows.append(("Summary", "none recorded: the procedure did not reach its end"))
    chain = facts.chain
    if chain.ok:
        banner = (f'<p class="chain intact">Hash chain intact: {chain.rows} rows verified, final hash '
                  f"<code>{_text(chain.final_hash)}</code>: the same as the one noted when the procedure ended, if "
                  "this is its record as written.</p>")
    elif chain.intact:
        banner = (f'<p class="chain broken">Hash chain intact as far as it goes ({chain.rows} rows), but '
                  f"{_text(chain.reason)}.</p>")
    else:
        banner = (
            f'<p class="chain broken">Hash chain BROKEN at row {chain.first_broken_id}: '
            f"{_text(chain.reason)}. This record has been altered or damaged; rows from row "
            f"{chain.first_broken_id} on cannot be trusted.</p>"
        )
    body = "".join(f"<tr><th>{k}</th><td>{v}</td></tr>" for k, v in rows)
    return f"<h1>Procedure report</h1>{banner}<table>{body}</table>"


def _plan_section(facts: RecordFacts) -> str:
    plan = facts.plan
    if plan is None:
        return "<h2>Lesion plan</h2><p class='note'>No plan recorded.</p>"
    rows = []
    for n, item in enumerate(_as_list(plan.get("lesions")), start=1):
        lesion = _as_dict(item)
        electrode = _as_dict(lesion.get("electrode"))
        tip = f"{_text(electrode.get('gauge'))} G, {_fixed(electrode.get('active_tip_mm'), 'g')} mm"
        if electrode.get("cooled"):
            tip += ", cooled"
        rows.append([
            str(n), _text(lesion.get("channel")), tip, _text(lesion.get("mode")),
            _fixed(lesion.get("set_temp_c"), ".1f"), _fixed(lesion.get("ramp_rate_c_per_s"), "g"),
            _fixed(lesion.get("lesion_time_s"), "g"), _fixed(lesion.get("power_cap_w"), "g"),
            f"{_fixed(lesion.get('impedance_min_ohm'), 'g')}–{_fixed(lesion.get('impedance_max_ohm'), 'g')}",
        ])
    headers = ["#", "channel", "electrode", "mode", "set °C", "ramp °C/s", "lesion time s", "power cap W",
               "impedance window Ω"]
    imaging = "required" if plan.get("imaging_required") else "not required"
    return f"<h2>Lesion plan</h2><p>Imaging {imaging}.</p>{_table(headers, rows)}"


def _stimulation_section(facts: RecordFacts) -> str:
    if not facts.stimulation:
        return "<h2>Stimulation</h2><p class='note'>No stimulation results recorded.</p>"
    rows = [
        [_text(r.payload.get("channel")), _fixed(r.payload.get("sensory_threshold_mv"), "g"),
         _fixed(r.payload.get("motor_threshold_mv"), "g")]
        for r in facts.stimulation
    ]
    table = _table(["channel", "sensory threshold mV", "motor threshold mV"], rows)
    return f"<h2>Stimulation</h2>{table}<p class='note'>A dash: no response up to the maximum amplitude.</p>"


def _states_section(facts: RecordFacts) -> str:
    if not facts.states:
        return "<h2>State changes</h2><p class='note'>No state changes recorded.</p>"
    rows = []
    for r in facts.states:
        extra = {k: v for k, v in r.payload.items() if k not in ("source", "dest", "trigger")}
        rows.append([str(r.id), f"{r.mono:.3f}", _text(r.payload.get("source")), _text(r.payload.get("dest")),
                     _text(r.payload.get("trigger")), _text(", ".join(f"{k}={v}" for k, v in extra.items()))])
    return f"<h2>State changes</h2>{_table(['row', 'time s', 'from', 'to', 'trigger', 'detail'], rows)}"


def _alarms_section(facts: RecordFacts) -> str:
    if not facts.alarms:
        return "<h2>Alarms</h2><p>No alarms recorded.</p>"
    rows = [
        [str(r.id), f"{r.mono:.3f}", _text(r.payload.get("event")), _text(r.payload.get("interlock")),
         _text(r.payload.get("channel")), _text(r.payload.get("priority")), _text(r.payload.get("detail"))]
        for r in facts.alarms
    ]
    headers = ["row", "time s", "event", "interlock", "channel", "priority", "detail"]
    return f"<h2>Alarms</h2>{_table(headers, rows)}"


def _alarm_times(facts: RecordFacts, channel: int) -> list[float]:
    """Alarm times (s since RF start) that concern ``channel``: its own and the cart-wide ones."""
    t0 = facts.rf_windows[0][0]
    return [r.mono - t0 for r in facts.alarms if r.payload.get("channel") in (None, channel)]


def _rf_on_text(trace: ChannelTelemetry) -> str:
    """The shaded spans in figures, since a plot is read to a few seconds and a trip's moment matters."""
    if not trace.rf_on_s:
        return f"Channel {trace.channel}: its RF output was not on in this span."
    spans = ", ".join(f"{start:.2f}–{end:.2f} s" for start, end in trace.rf_on_s)
    return f"Channel {trace.channel}: RF on {spans} after RF start (its telemetry's output flag)."


def _lesion_section(facts: RecordFacts, progress: TextIO | None) -> tuple[str, int]:
    if not facts.rf_windows:
        return "<h2>Lesions</h2><p class='note'>RF was never started: no lesion to plot.</p>", 0
    parts = ["<h2>Lesions</h2>"]
    plotted = 0
    for planned in facts.channels:
        trace = facts.telemetry.get(planned.channel)
        if trace is None:
            parts.append(f"<p class='note'>Channel {planned.channel}: no telemetry in the lesion window.</p>")
            continue
        _say(progress, f"plotting channel {planned.channel} ({trace.t_s.size} samples)")
        uri = plot_channel(trace, planned, _alarm_times(facts, planned.channel))
        parts.append(f'<figure><img class="lesion-plot" alt="channel {planned.channel}: tip temperature, '
                     f'impedance and power" src="{uri}"><figcaption>{_rf_on_text(trace)}</figcaption></figure>')
        plotted += 1
    return "".join(parts), plotted


def _summary_section(facts: RecordFacts) -> str:
    summary = facts.summary
    if summary is None:
        return "<h2>Summary</h2><p class='note'>No summary recorded.</p>"
    rows = []
    for item in _as_list(summary.get("summaries")):
        s = _as_dict(item)
        size = lesion_size_text(_number(s.get("predicted_width_mm")), _number(s.get("predicted_length_mm")),
                                str(s.get("size_note") or ""))
        rows.append([*_tip_cells(s, s.get("set_temp_c")), _fixed(s.get("energy_j"), ".0f"), _text(size),
                     _text(s.get("tripped") or s.get("shortfall") or "complete")])
        partner = s.get("partner")
        if isinstance(partner, dict):  # a bipolar lesion's second tip, on a row of its own (summary_table's)
            rows.append([*_tip_cells(partner, s.get("set_temp_c")), _text(None), _text(None),
                         _text(partner_result(s.get("channel")))])
    headers = ["channel", "set °C", "time to set s", "overshoot °C", "hold mean °C", "hold max °C",
               "hold RMS error °C", "Z start Ω", "Z end Ω", "energy J", "lesion W×L mm", "result"]
    trip = ""
    if summary.get("first_trip"):
        trip = (f"<p>First interlock trip: {_text(summary['first_trip'])} "
                f"(record row {_text(summary.get('first_trip_row'))}).</p>")
    return f"<h2>Summary</h2>{_table(headers, rows)}{trip}"


def _tip_cells(tip: dict[str, Any], set_temp_c: object) -> list[str]:
    """A summary row's cells from the channel to the end impedance, for a lesion's (lead) tip or a bipolar partner's."""
    return [
        _text(tip.get("channel")), _fixed(set_temp_c, ".1f"), _fixed(tip.get("time_to_set_s"), ".1f"),
        _fixed(tip.get("overshoot_c"), ".2f"), _fixed(tip.get("hold_mean_c"), ".2f"),
        _fixed(tip.get("hold_max_c"), ".2f"), _fixed(tip.get("hold_rms_error_c"), ".2f"),
        _fixed(tip.get("impedance_start_ohm"), ".0f"), _fixed(tip.get("impedance_end_ohm"), ".0f"),
    ]


def _frames_section(facts: RecordFacts, progress: TextIO | None) -> str:
    if not facts.thumbnails:
        return ""
    _say(progress, f"drawing {len(facts.thumbnails)} ultrasound frames")
    parts = ["<h2>Ultrasound frames</h2>"]
    for thumb in facts.thumbnails:
        conf = "" if thumb.tip_confidence is None else f", confidence {thumb.tip_confidence:.2f}"
        tip = ("tip not found" if thumb.tip_lateral_mm is None or thumb.tip_depth_mm is None
               else f"tip at {thumb.tip_lateral_mm:.1f} mm lateral, {thumb.tip_depth_mm:.1f} mm deep")
        approx = "" if thumb.origin_recorded else " (position approximate: the frame has no image origin)"
        role = f"<b>{_text(thumb.role)}</b>: " if thumb.role else ""
        caption = f"{role}row {thumb.row_id}, {thumb.mono:.2f} s, {_text(thumb.reason)}: {tip}{conf}{approx}"
        parts.append(f'<figure><img class="frame" alt="ultrasound frame row {thumb.row_id}" '
                     f'src="{plot_thumbnail(thumb)}"><figcaption>{caption}</figcaption></figure>')
    return "".join(parts)


def _problems_section(facts: RecordFacts) -> str:
    if not facts.problems:
        return ""
    items = "".join(f"<li>{_text(p)}</li>" for p in facts.problems)
    return f"<h2>Rows not shown</h2><ul>{items}</ul>"


def render_report(facts: RecordFacts, progress: TextIO | None = None) -> tuple[str, int]:
    """The report as HTML text, and how many lesion plots it holds."""
    lesions, plotted = _lesion_section(facts, progress)
    body = "".join([
        _header(facts), _plan_section(facts), _stimulation_section(facts), _states_section(facts),
        _alarms_section(facts), lesions, _summary_section(facts), _frames_section(facts, progress),
        _problems_section(facts),
    ])
    title = _text(f"Procedure report: {facts.path.name}")
    page = (f'<!DOCTYPE html><html lang="en"><head><meta charset="utf-8"><title>{title}</title>'
            f"<style>{_STYLE}</style></head><body>{body}</body></html>\n")
    return page, plotted


def write_report(record_path: Path, out_path: Path, progress: TextIO | None = None) -> ReportOutcome:
    """Read ``record_path`` and write its report to ``out_path`` (written even when the chain is broken)."""
    reader = RecordReader(record_path)
    try:
        facts = read_facts(reader, progress)
    finally:
        reader.close()
    page, plotted = render_report(facts, progress)
    out_path.write_text(page, encoding="utf-8")
    return ReportOutcome(facts.chain, plotted)
