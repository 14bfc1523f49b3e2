"""``python -m sim.tissue``: ``rfa lesion`` without the cart's CLI, for trying the model on its own."""

from __future__ import annotations

import argparse
import sys

from sim.tissue.cli import add_arguments, run


def main() -> int:
    parser = argparse.ArgumentParser(prog="python -m sim.tissue")
    add_arguments(parser)
    return run(parser.parse_args())


if __name__ == "__main__":
    sys.exit(main())
