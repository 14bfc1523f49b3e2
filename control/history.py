"""``rfa history``: the procedures this cart has run, as a physician asks about them.

``rfa record list`` is about files (rows, paths); this is about patients' lesions: when, which plan, how
it ended and why, and per lesion the channel, set temperature, RF time, energy and the predicted size,
read from each record's summary row. A record without a summary (the process died mid-procedure) is
listed as interrupted with its last state, since that is exactly the one someone will ask about;
``--verify`` also walks each hash chain and, like ``rfa record verify``, exits 1 if one is broken.
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, TextIO

from control import arguments
from control.record import RecordError, RecordReader
from control.record_cli import DEFAULT_RECORD_DIR, EXIT_BROKEN, EXIT_OK, EXIT_USAGE, records_in
from control.summary import lesion_size_text


@dataclass(frozen=True)
class LesionLine:
    channel: int
    set_temp_c: float
    rf_time_s: float
    energy_j: float
    tripped: str
    predicted_width_mm: float | None
    predicted_length_mm: float | None
    shortfall: str = ""
    size_note: str = ""
    partner_channel: int | None = None
    """A bipolar lesion's second electrode (its summary's ``partner``): the lesion is the pair's, ``ch1+2``."""

    def describe(self) -> str:
        text = lesion_size_text(self.predicted_width_mm, self.predicted_length_mm, self.size_note)
        size = {"-": "", "none": ", no lesion", "?": ", lesion size not estimated"}.get(text, f", lesion ≈ {text} mm")
        stop = f", stopped: {self.tripped}" if self.tripped else (f", {self.shortfall}" if self.shortfall else "")
        where = f"ch{self.channel}" + ("" if self.partner_channel is None else f"+{self.partner_channel} bipolar")
        return f"{where} {self.set_temp_c:.0f} °C, {self.rf_time_s:.0f} s RF, {self.energy_j:,.0f} J{size}{stop}"


def _partner_channel(partner: object) -> int | None:
    """The partner electrode's channel from a summary's ``partner`` (absent in monopolar lesions and older records)."""
    if partner is None:
        return None
    if not isinstance(partner, dict):
        raise TypeError(f"partner is {partner!r}, not a table")
    return int(partner["channel"])


@dataclass
class Procedure:
    record: str
    started: str
    plan: str
    outcome: str
    """``complete``, ``fault``, ``stopped``, ``fell short`` (a lesion never reached its set temperature) or
    ``interrupted`` (no summary: the run never finished)."""
    final_state: str
    reason: str
    lesions: list[LesionLine] = field(default_factory=list)
    alarms: int = 0
    intact: bool | None = None
    """The hash chain's verdict with ``--verify`` (no row changed, missing or reordered); None when not checked."""
    closed: bool | None = None
    """With ``--verify``: the record ends with its ``end`` row (a crashed run's record does not)."""

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def _outcome(summary: dict[str, Any] | None) -> str:
    if summary is None:
        return "interrupted"
    if summary.get("exit_code") == 0:
        return "complete"
    if summary.get("final_state") == "fault":
        return "fault"
    lesions = [lesion for lesion in summary.get("summaries") or [] if isinstance(lesion, dict)]
    short = any(lesion.get("shortfall") for lesion in lesions)
    return "fell short" if short and not any(lesion.get("tripped") for lesion in lesions) else "stopped"


def read_procedure(path: Path, *, verify: bool = False) -> Procedure:
    """One record as a procedure; ``RecordError`` if it is not a record at all."""
    reader = RecordReader(path)
    try:
        meta = reader.meta()
        summary = None
        for row in reader.rows("summary"):
            summary = row.payload
        states = [str(row.payload.get("dest", "")) for row in reader.rows("state")]
        procedure = Procedure(
            record=str(path), started=meta.get("started", ""), plan=meta.get("plan_name", ""),
            outcome=_outcome(summary), final_state=states[-1] if states else "",
            reason="" if summary is None else str(summary.get("first_trip") or summary.get("message") or ""),
            alarms=sum(1 for row in reader.rows("alarm") if row.payload.get("event") == "trip"),
        )
        for lesion in [] if summary is None else summary.get("summaries", []):
            try:
                procedure.lesions.append(LesionLine(
                    lesion["channel"], lesion["set_temp_c"], lesion.get("rf_time_s", 0.0),
                    lesion.get("energy_j", 0.0), lesion.get("tripped", ""), lesion.get("predicted_width_mm"),
                    lesion.get("predicted_length_mm"), lesion.get("shortfall", ""), str(lesion.get("size_note") or ""),
                    _partner_channel(lesion.get("partner")),
                ))
            except (KeyError, TypeError) as exc:
                raise RecordError(f"{path}: its summary row has a malformed lesion ({exc!r})") from exc
        if verify:
            verdict = reader.verify()
            procedure.intact, procedure.closed = verdict.intact, verdict.closed
        return procedure
    finally:
        reader.close()


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--dir", type=Path, default=DEFAULT_RECORD_DIR,
                        help=f"record directory (default: {DEFAULT_RECORD_DIR})")
    parser.add_argument("--last", type=arguments.positive_count, metavar="N", help="only the N most recent procedures")
    parser.add_argument("--verify", action="store_true", help="also walk each record's hash chain")
    parser.add_argument("--json", action="store_true", help="machine-readable output")


def render(procedures: list[Procedure], out: TextIO) -> None:
    for p in procedures:
        reason = f": {p.reason}" if p.reason and p.outcome != "complete" else ""
        state = f" (last state {p.final_state})" if p.outcome == "interrupted" else ""
        if p.intact is None:
            chain = ""
        elif not p.intact:
            chain = ", RECORD BROKEN"
        else:
            chain = ", record intact" if p.closed else ", record intact but not closed (the run never ended)"
        alarms = f", {p.alarms} trip(s)" if p.alarms else ""
        print(f"{p.started or '?':19}  {p.plan}  {p.outcome}{state}{reason}{alarms}{chain}", file=out)
        for lesion in p.lesions:
            print(f"    {lesion.describe()}", file=out)
        print(f"    {p.record}", file=out)


def run(args: argparse.Namespace) -> int:
    try:
        paths = records_in(args.dir)
    except RecordError as exc:
        print(f"rfa history: {exc}", file=sys.stderr)
        return EXIT_USAGE
    procedures: list[Procedure] = []
    for path in paths:
        try:
            procedures.append(read_procedure(path, verify=args.verify))
        except RecordError as exc:
            print(f"rfa history: skipped {path}: {exc}", file=sys.stderr)
    procedures.sort(key=lambda p: (p.started, p.record))
    if args.last is not None:
        procedures = procedures[-args.last:] if args.last > 0 else []
    if args.json:
        print(json.dumps([p.as_dict() for p in procedures], indent=2))
    elif not procedures:
        print(f"no procedures recorded in {args.dir}")
    else:
        render(procedures, sys.stdout)
    return EXIT_BROKEN if any(p.intact is False or p.closed is False for p in procedures) else EXIT_OK
