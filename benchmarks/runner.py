"""``rfa bench``: run every benchmark module and print its figures against their targets.

A benchmark is any module ``benchmarks/<name>.py`` with ``run(quick: bool) -> list[BenchResult]``;
discovering them by that shape (rather than a registry) lets each engineer add one without touching
this file. Exit status 0 when every target is met, 1 when one is missed.
"""

from __future__ import annotations

import argparse
import importlib
import json
import pkgutil
import sys
from collections.abc import Callable, Sequence
from typing import TextIO

import benchmarks
from benchmarks.result import BenchResult

BenchFn = Callable[[bool], list[BenchResult]]
_NOT_BENCHMARKS = frozenset({"result", "runner"})


def names() -> list[str]:
    """The benchmark modules' names, in order, without importing them (for the help text)."""
    return sorted(info.name for info in pkgutil.iter_modules(benchmarks.__path__)
                  if info.name not in _NOT_BENCHMARKS and not info.name.startswith("_"))


def discover() -> dict[str, BenchFn]:
    """Every benchmark module by name, in name order."""
    found: dict[str, BenchFn] = {}
    for name in names():
        module = importlib.import_module(f"benchmarks.{name}")
        fn = getattr(module, "run", None)
        if callable(fn):
            found[name] = fn
    return found


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--quick", action="store_true", help="smaller inputs, for a fast check")
    parser.add_argument("--only", metavar="NAME", action="append",
                        help=f"run only this benchmark (repeatable): {', '.join(names())}")
    parser.add_argument("--json", action="store_true", help="print the results as JSON")


def format_table(results: Sequence[BenchResult]) -> str:
    rows = [("bench", "metric", "value", "unit", "target", "met")]
    for r in results:
        met = "" if r.met is None else ("yes" if r.met else "NO")
        rows.append((r.bench, r.metric, f"{r.value:,.2f}", r.unit, r.target, met))
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    lines = ["  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip() for row in rows]
    lines.insert(1, "  ".join("-" * w for w in widths))
    details = [f"  {r.bench}.{r.metric}: {r.detail}" for r in results if r.detail]
    return "\n".join(lines + (["", *details] if details else []))


def run(args: argparse.Namespace, out: TextIO | None = None) -> int:
    """Run the chosen benchmarks; 0 if every target is met, 1 if one is missed, 2 for an unknown name."""
    out = sys.stdout if out is None else out
    available = discover()
    names = list(available) if not args.only else list(args.only)
    unknown = [n for n in names if n not in available]
    if unknown:
        print(f"rfa bench: unknown benchmark(s) {unknown}; available: {sorted(available)}", file=sys.stderr)
        return 2
    results: list[BenchResult] = []
    for name in names:
        if not args.json:
            print(f"running {name}{' (quick)' if args.quick else ''} ...", file=sys.stderr, flush=True)
        try:
            results += available[name](args.quick)
        except Exception as exc:  # one broken benchmark is a missed target, not the end of the table
            results.append(BenchResult(name, "error", float("nan"), "", target="runs", met=False,
                                       detail=f"{type(exc).__name__}: {exc}"))
    if args.json:
        json.dump([r.as_dict() for r in results], out, indent=2)
        out.write("\n")
    else:
        out.write(format_table(results) + "\n")
    return 1 if any(r.met is False for r in results) else 0
