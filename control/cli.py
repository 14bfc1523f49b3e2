"""``rfa``: the command line, and the composition root that wires devices (ARCHITECTURE.md section 11).

This is the one module of ``control`` allowed to import ``sim``: it decides whether the devices are the
in-process simulator, the simulator process or real hardware, and nothing below it needs to know.
Exit codes: 0 success, 1 the procedure ended in a fault or stop, 2 usage or configuration error,
3 device not reachable.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

EXIT_OK = 0
EXIT_FAULT = 1
EXIT_USAGE = 2
EXIT_UNREACHABLE = 3


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="rfa", description="Ultrasound-guided RF ablation cart.")
    parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    handler = getattr(args, "handler", None)
    if handler is None:
        parser.print_help()
        return EXIT_USAGE
    result: int = handler(args)
    return result


if __name__ == "__main__":
    sys.exit(main())
