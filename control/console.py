"""``rfa console``: follow a procedure from its record, live, as a second screen at the cart does.

The record is written as the procedure runs (every state change and alarm committed before the procedure
goes on, telemetry at least every 100 ms, ARCHITECTURE.md section 9), and SQLite's WAL lets a reader follow
it while the writer appends. So the console needs no link to the running process and cannot disturb its
10 ms loop: it reads what the record already holds, read-only. It prints each state change, trip, operator
question and answer as it appears, a status line per channel from the latest telemetry, and at the end the
lesions' table and how the procedure ended (exit 0 complete, 1 fault or stop), as ``rfa run`` does.

It does not answer questions: only the process that owns the loop may act on an operator's answer, so
answers stay with ``rfa run`` at the cart (interactive without ``--yes``).
"""

from __future__ import annotations

import argparse
import math
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final, TextIO

from control import arguments
from control.display import alarm_text, format_tip
from control.record import RecordError, RecordReader, RecordRow
from control.record_cli import DEFAULT_RECORD_DIR, records_in
from control.summary import summary_from_record, summary_table
from firmware_bridge.messages import TelemetryFlag, tip_temperature_measured

EXIT_OK, EXIT_FAULT, EXIT_USAGE = 0, 1, 2
INTERVAL_S: Final = 0.5
"""How often a live record is read again: five telemetry commits."""
SILENT_S: Final = 2.0
"""A running procedure commits telemetry at least every 100 ms: this long without a new row, its writer has
stopped (the process ended without a summary, or is stuck)."""
_CONNECTED: Final = int(TelemetryFlag.ELECTRODE_CONNECTED)


@dataclass
class Follower:
    """What the console knows of the procedure: built row by row, in record order."""

    state: str = "off"
    channels: dict[int, dict[str, Any]] = field(default_factory=dict)
    """The latest telemetry row of each channel (the status line shows those with an electrode)."""
    start_mono: float | None = None
    now_mono: float = 0.0
    last_id: int = 0
    summary: dict[str, Any] | None = None

    def feed(self, row: RecordRow) -> str | None:
        """Take one row; the line worth printing for it, if any."""
        self.last_id = row.id
        if self.start_mono is None:
            self.start_mono = row.mono
        self.now_mono = row.mono
        p = row.payload
        if row.kind == "telemetry":
            self.channels[int(p["ch"])] = p
            return None
        if row.kind == "state":
            self.state = str(p.get("dest", ""))
            where = f" ch{p['channel']} {p.get('test', '')}".rstrip() if "channel" in p else ""
            why = f": {p['reason']}" if p.get("reason") else ""  # a fault's cause, an operator stop's
            return self._at(f"state {p.get('source', '')} → {self.state}{where}{why}")
        if row.kind == "alarm" and p.get("event") != "inhibit":
            what = "ALARM" if p.get("event") == "trip" else str(p.get("event", "")).upper()
            text = alarm_text(str(p.get("interlock", "")), p.get("channel"), str(p.get("detail", "")))
            return self._at(f"{what} ({p.get('priority', '')}) {text} (record row {row.id})")
        if row.kind == "operator" and "question" in p:
            answer = p.get("answer")
            answer = "yes" if answer is True else "no" if answer is False else str(answer)
            return self._at(f"asked: {p['question']} → {answer} ({p.get('by', '')})")
        if row.kind == "summary":
            self.summary = p
        return None

    def status_line(self) -> str:
        """The channels as the latest telemetry shows them: those carrying output, else those with an electrode."""
        plugged = {ch: p for ch, p in self.channels.items() if int(p.get("flags", 0)) & _CONNECTED}
        live = {ch: p for ch, p in plugged.items() if float(p.get("w", 0.0)) > 0.0} or plugged
        parts = [f"t={self._elapsed_s():6.1f}s {self.state:11}"]
        parts += [f"ch{ch} {format_tip(_tip_c(p))}°C {float(p['z_ohm']):4.0f}Ω {float(p['w']):4.1f}W "
                  f"{float(p['v']):5.2f}V" for ch, p in sorted(live.items())]
        return " | ".join(parts)

    def outcome(self) -> tuple[int, str]:
        """Exit code and closing lines, once the summary row is in: as ``rfa run`` ends, the procedure's message
        (which says if output may still be on), then its first interlock trip and where it is in the record."""
        assert self.summary is not None
        s = self.summary
        code = int(s.get("exit_code", EXIT_FAULT))
        first_trip, message = s.get("first_trip") or "", s.get("message") or ""
        why = message or first_trip
        line = f"Procedure ended in {s.get('final_state', '?')} (exit {code})" + (f": {why}" if why else "")
        if first_trip and message:
            row = s.get("first_trip_row")
            line += f"\nFirst interlock trip: {first_trip}" + (f" (record row {row})" if row else "")
        try:
            lesions = [summary_from_record(item) for item in s.get("summaries") or []]
            table = summary_table(lesions) if lesions else ""
        except (TypeError, ValueError, AttributeError):  # a malformed row: the outcome is still told, without the table
            table = ""
        return code, f"{table}\n\n{line}" if table else line

    def _elapsed_s(self) -> float:
        return 0.0 if self.start_mono is None else self.now_mono - self.start_mono

    def _at(self, text: str) -> str:
        return f"[{self._elapsed_s():8.2f}s] {text}"


def _tip_c(telemetry: dict[str, Any]) -> float:
    """A telemetry row's tip temperature, NaN when its flags say it is no reading (an open thermocouple's 327.67 °C,
    a disconnected electrode's 0 °C): the console shows what ``rfa run``'s live line shows."""
    measured = tip_temperature_measured(int(telemetry.get("flags", 0)))
    return float(telemetry["tip_c"]) if measured else math.nan


def follow(path: Path, out: TextIO, *, once: bool = False, interval_s: float = INTERVAL_S,
           sleep: Callable[[float], None] = time.sleep) -> int:
    """Print the procedure in ``path`` as it goes; return its exit code (``EXIT_OK`` with ``once`` while it
    is still running)."""
    reader = RecordReader(path)
    follower = Follower()
    try:
        meta = reader.meta()
        print(f"Following {path}: plan {meta.get('plan_name', '?')!r}, started {meta.get('started', '?')}",
              file=out, flush=True)
        silent_s = 0.0
        while True:
            seen = follower.last_id
            for row in reader.rows_after(follower.last_id):
                line = follower.feed(row)
                if line is not None:
                    print(line, file=out, flush=True)
            silent_s = 0.0 if follower.last_id != seen else silent_s + interval_s
            if follower.channels and not silent_s:
                print(follower.status_line(), file=out, flush=True)
            if follower.summary is not None:
                code, line = follower.outcome()
                print(line, file=out, flush=True)
                return code
            if once:
                print("(still running: no summary row yet)", file=out, flush=True)
                return EXIT_OK
            if silent_s >= SILENT_S > silent_s - interval_s:  # once per silence
                print(f"(no new rows for {silent_s:.0f} s: the procedure has stopped writing without a summary, "
                      "or is stuck; still following, Ctrl-C to leave)", file=out, flush=True)
            sleep(interval_s)
    finally:
        reader.close()


def newest_record(directory: Path) -> Path | None:
    records = records_in(directory)
    return max(records, key=lambda p: p.stat().st_mtime) if records else None


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("record", nargs="?", type=Path, help="the procedure's record (default: the newest in --dir)")
    parser.add_argument("--dir", type=Path, default=DEFAULT_RECORD_DIR,
                        help=f"record directory (default: {DEFAULT_RECORD_DIR})")
    parser.add_argument("--once", action="store_true", help="print what the record holds now and exit")
    parser.add_argument("--interval", type=arguments.seconds, default=INTERVAL_S, metavar="S",
                        help=f"seconds between reads of a live record (default {INTERVAL_S})")


def run(args: argparse.Namespace) -> int:
    try:
        path = args.record or newest_record(args.dir)
        if path is None:
            print(f"rfa console: no records in {args.dir}", file=sys.stderr)
            return EXIT_USAGE
        return follow(path, sys.stdout, once=args.once, interval_s=args.interval)
    except RecordError as exc:
        print(f"rfa console: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        return EXIT_OK
