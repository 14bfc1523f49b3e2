"""``rfa record list|show|export|report|verify``: read procedure records without being able to change them."""

from __future__ import annotations

import argparse
import datetime
import importlib.util
import json
import sys
from pathlib import Path

from control import arguments
from control.record import END_KIND, RecordDamaged, RecordError, RecordReader

DEFAULT_RECORD_DIR = Path("records")
RECORD_SUFFIX = ".rfa.db"
EXIT_OK, EXIT_BROKEN, EXIT_USAGE = 0, 1, 2


_FILE_HELP = f"a procedure record ({RECORD_SUFFIX}; `rfa record list` shows them)"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="record_command", required=True, metavar="ACTION")
    p = sub.add_parser("list", help="list the records in a directory",
                       description="One line per record, oldest first: start time, plan, final state, rows, file. "
                       "Exit 2 if the directory is not there.")
    p.add_argument("--dir", type=Path, default=DEFAULT_RECORD_DIR, help="record directory (default: records)")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.set_defaults(record_handler=_list)

    p = sub.add_parser("show", help="print a record's rows",
                       description="Print rows in order: id, monotonic time, kind and payload fields. It does not "
                       "check the hash chain (`rfa record verify` does).")
    p.add_argument("file", type=Path, help=_FILE_HELP)
    p.add_argument("--kind", help="only rows of this kind (state, command, ack, alarm, telemetry, ...)")
    p.add_argument("--limit", type=arguments.count, default=200, help="at most this many rows (0: all)")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.set_defaults(record_handler=_show)

    p = sub.add_parser("export", help="export a record as CSV or JSON",
                       description="Every row: id, mono (monotonic s), wall (Unix time, s), kind and payload; in "
                       "CSV one column per payload field, in JSON a payload object. "
                       "The hash chain is checked too: the rows are exported even if it is broken, then exit 1 "
                       "names the first broken row.")
    p.add_argument("file", type=Path, help=_FILE_HELP)
    p.add_argument("--format", choices=("csv", "json"), default="csv")
    p.add_argument("--kind", help="only rows of this kind")
    p.add_argument("-o", "--output", type=Path, help="output file (default: standard output)")
    p.set_defaults(record_handler=_export)

    p = sub.add_parser("report", help="write an HTML report with plots; exit 1 if the hash chain is broken",
                       description="Write one HTML file: the procedure's outcome, its states and alarms, and per "
                       "lesion plots of tip temperature, impedance and power. Written even from a broken record (it "
                       "says so at the top); exit 1 then. Needs matplotlib (the plot extra).")
    p.add_argument("file", type=Path, help=_FILE_HELP)
    p.add_argument("-o", "--output", type=Path, help="output file (default: FILE with .html)")
    p.set_defaults(record_handler=_report)

    p = sub.add_parser("verify", help="walk the hash chain; exit 1 and name the first broken row if any",
                       description="Recompute every row's hash from its content and its predecessor's, and check "
                       "that the record was closed by its procedure. The chain is not keyed: a record edited and "
                       "rebuilt whole passes, unless its final hash is checked against the one `rfa run` printed "
                       "(--expect). Exit 0 intact, 1 broken, not a whole record (naming the first row that fails) or "
                       "not ending on the expected hash, 2 no such file or a usage error.")
    p.add_argument("file", type=Path, help=_FILE_HELP)
    p.add_argument("--expect", type=arguments.final_hash, metavar="HASH",
                   help="the final hash written down when the procedure ended (its first 16 characters or more)")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.set_defaults(record_handler=_verify)


def run(args: argparse.Namespace) -> int:
    """Exit 1 for a record that is there but damaged (as for a broken chain), 2 for a wrong path or argument."""
    try:
        result: int = args.record_handler(args)
        return result
    except RecordDamaged as exc:
        print(f"rfa record: {exc}", file=sys.stderr)
        return EXIT_BROKEN
    except RecordError as exc:
        print(f"rfa record: {exc}", file=sys.stderr)
        return EXIT_USAGE


def records_in(directory: Path) -> list[Path]:
    """The procedure records in ``directory``, by name (names start with the start time: oldest first), the suffix
    left out of the comparison: a second record started in the same second is ``…-2.rfa.db``, which sorts before
    the first's ``….rfa.db`` with it.

    A directory that is not there is a wrong path (a typo, an unmounted stick), not an empty history: it is
    refused rather than answered with "no records"."""
    if not directory.is_dir():
        why = "not a directory" if directory.exists() else "not found"
        if directory == DEFAULT_RECORD_DIR:
            why += ": `rfa run` makes it with its first record"
        raise RecordError(f"no record directory {directory} ({why})")
    return sorted(directory.glob(f"*{RECORD_SUFFIX}"), key=lambda path: path.name.removesuffix(RECORD_SUFFIX))


def _list(args: argparse.Namespace) -> int:
    paths = records_in(args.dir)
    entries = []
    for path in paths:
        try:
            reader = RecordReader(path)
            try:
                meta = reader.meta()
                states = [r.payload.get("dest", "") for r in reader.rows("state")]
                entries.append({
                    "file": str(path), "plan": meta.get("plan_name", ""), "started": meta.get("started", ""),
                    "rows": reader.count(), "final_state": states[-1] if states else "",
                    "closed": reader.count(END_KIND) > 0, "writing": reader.logged,
                })
            finally:
                reader.close()
        except RecordError as exc:  # one bad file must not hide the others (`rfa record verify` it)
            print(f"rfa record list: skipped {exc}", file=sys.stderr)
    if args.json:
        print(json.dumps(entries, indent=2))
    elif not entries:
        print(f"no records in {args.dir}")
    else:
        print(f"{'started':20} {'plan':24} {'final state':12} {'rows':>8}  file")
        for e in entries:
            print(f"{e['started']:20} {e['plan']:24} {e['final_state']:12} {e['rows']:>8}  {e['file']}{_unclosed(e)}")
    return EXIT_OK


def _unclosed(entry: dict[str, object]) -> str:
    """How a record without its end row reads: being written (its log is beside it: a procedure running, or a
    writer killed with rows in its log), or cut short (`rfa record verify` tells which rows are there)."""
    if entry["closed"]:
        return ""
    return "  (not closed: being written, or its writer died)" if entry["writing"] else "  (not closed: cut short)"


def _note_absent_kind(reader: RecordReader, kind: str | None, command: str) -> None:
    """A kind with no rows prints nothing; say so on stderr with the kinds there are, since it may be a typo."""
    if kind is not None and reader.count(kind) == 0:
        print(f"rfa record {command}: no rows of kind {kind!r} in {reader.path} "
              f"(its kinds: {', '.join(reader.kinds()) or 'none'})", file=sys.stderr)


def _show(args: argparse.Namespace) -> int:
    reader = RecordReader(args.file)
    try:
        _note_absent_kind(reader, args.kind, "show")
        for n, row in enumerate(reader.rows(args.kind)):
            if args.limit and n >= args.limit:
                print(f"... (more rows; --limit 0 shows all {reader.count(args.kind)})")
                break
            if args.json:
                print(json.dumps({"id": row.id, "mono": row.mono, "wall": row.wall, "kind": row.kind,
                                  "payload": row.payload}))
            else:
                fields = " ".join(f"{k}={v}" for k, v in row.payload.items())
                print(f"{row.id:>7} {_clock_time(row.wall)} {row.mono:10.3f}s {row.kind:10} {fields}")
    finally:
        reader.close()
    return EXIT_OK


def _clock_time(wall: float) -> str:
    """A row's wall time as the clock on the wall read it (local time, to the millisecond): what an investigator
    matches with the console's lines and the hospital's own records."""
    return datetime.datetime.fromtimestamp(wall).strftime("%H:%M:%S.%f")[:-3]


def _export(args: argparse.Namespace) -> int:
    reader = RecordReader(args.file)
    try:
        try:
            out = sys.stdout if args.output is None else args.output.open("w", newline="")
        except OSError as exc:
            print(f"rfa record export: cannot write {args.output}: {exc}", file=sys.stderr)
            return EXIT_USAGE
        try:
            _note_absent_kind(reader, args.kind, "export")
            export = reader.export_csv if args.format == "csv" else reader.export_json
            n = export(out, args.kind)
        finally:
            if args.output is not None:
                out.close()
        verdict = reader.verify()  # an export leaves the cart: say whether it is the record as written
    finally:
        reader.close()
    if args.output is not None:
        print(f"exported {n} rows to {args.output}", file=sys.stderr)
    if not verdict.ok:  # exported all the same, as `report` writes its report: what is there may be evidence
        print(f"rfa record export: {args.file}: {verdict.reason} (rfa record verify): the rows exported are not "
              "known to be the record as written", file=sys.stderr)
        return EXIT_BROKEN
    return EXIT_OK


def _report(args: argparse.Namespace) -> int:
    """The report is written even from a broken record (it says so at the top), but scripts get exit 1."""
    if importlib.util.find_spec("matplotlib") is None:  # said before reading the record, not after
        print("rfa record report: the report's plots need matplotlib, the 'plot' extra: "
              ".venv/bin/pip install -e '.[plot]'", file=sys.stderr)
        return EXIT_USAGE
    from control.report import write_report  # numpy and the report code only when asked for

    output = args.output or _default_report_path(args.file)
    try:
        outcome = write_report(args.file, output, progress=sys.stderr)
    except OSError as exc:
        print(f"rfa record report: cannot write {output}: {exc}", file=sys.stderr)
        return EXIT_USAGE
    verdict = outcome.chain
    chain = ("hash chain intact" if verdict.ok else "hash chain intact but the record not closed" if verdict.intact
             else f"hash chain BROKEN at row {verdict.first_broken_id}")
    print(f"wrote {output} ({outcome.lesion_plots} lesion plots, {chain})", file=sys.stderr)
    return EXIT_OK if outcome.chain.ok else EXIT_BROKEN


def _default_report_path(record: Path) -> Path:
    """``records/x.rfa.db`` reports to ``records/x.html``, beside its record."""
    name = record.name.removesuffix(RECORD_SUFFIX)
    return record.with_name(f"{name if name != record.name else record.stem}.html")


def _verify(args: argparse.Namespace) -> int:
    reader = RecordReader(args.file)
    try:
        result = reader.verify()
    finally:
        reader.close()
    expected: str | None = args.expect
    as_expected = expected is None or result.final_hash.startswith(expected)
    if args.json:
        print(json.dumps({"ok": result.ok and as_expected, "intact": result.intact, "closed": result.closed,
                          "rows": result.rows, "first_broken_id": result.first_broken_id, "reason": result.reason,
                          "final_hash": result.final_hash, "expected": expected,
                          "as_expected": None if expected is None else as_expected}))
    elif result.ok and not as_expected:
        print(f"{args.file}: NOT the record written down: its chain is intact and closed ({result.rows} rows), but "
              f"it ends on {result.final_hash}, not on {expected}: it was rebuilt after that hash was noted, or it "
              "is another procedure's record")
    elif result.ok:
        matched = f", the expected {expected}" if expected is not None else ""
        print(f"{args.file}: intact and closed, {result.rows} rows, hash chain verified (final hash "
              f"{result.final_hash}{matched})")
    elif result.intact:
        print(f"{args.file}: intact as far as it goes ({result.rows} rows) but {result.reason}")
    else:
        print(f"{args.file}: BROKEN at row {result.first_broken_id}: {result.reason}")
    return EXIT_OK if result.ok and as_expected else EXIT_BROKEN
