"""``rfa sim`` / ``python -m sim``: the simulated generator as its own process, in real time.

The first line on stdout is the URL to pass to ``rfa run --generator`` (flushed at once, so a parent
process can read it); counters follow every few seconds and once more on exit (SIGINT or SIGTERM).
Exit codes: 0 clean stop, 2 bad arguments or fault script, 3 the endpoint could not be opened.
"""

from __future__ import annotations

import argparse
import signal
import sys
from collections.abc import Sequence
from pathlib import Path
from types import FrameType

from firmware_bridge.clock import RealClock
from firmware_bridge.errors import LinkError
from firmware_bridge.transport import Transport
from sim.generator import SimGenerator, load_faults
from sim.link_faults import FaultyTransport, LinkFaultConfig, load_link_faults
from sim.server import Server, open_endpoint

EXIT_OK = 0
EXIT_USAGE = 2
EXIT_UNREACHABLE = 3


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--serial", default="pty", metavar="pty|tcp:PORT",
                        help="serve on a new pseudo-terminal (default) or a TCP port (0 picks a free one)")
    parser.add_argument("--seed", type=int, default=0, help="seed of measurement noise and link faults")
    parser.add_argument("--faults", type=Path, metavar="FILE",
                        help="TOML fault script: [[fault]] tables and an optional [link] table")
    parser.add_argument("--report-s", type=float, default=5.0, metavar="S",
                        help="print the counters every S seconds (default 5)")
    parser.add_argument("--duration-s", type=float, metavar="S", help="stop after S seconds")


def run(args: argparse.Namespace) -> int:
    try:
        faults = load_faults(args.faults) if args.faults else []
        link = load_link_faults(args.faults) if args.faults else LinkFaultConfig()
        endpoint = open_endpoint(args.serial)
    except ValueError as exc:
        print(f"rfa sim: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except LinkError as exc:
        print(f"rfa sim: {exc}", file=sys.stderr)
        return EXIT_UNREACHABLE
    clock = RealClock()
    sim = SimGenerator(None, clock, seed=args.seed, faults=faults)

    def wrap(transport: Transport) -> Transport:
        return FaultyTransport(transport, clock, link, seed=args.seed, origin=sim.origin)

    server = Server(sim, endpoint, clock, wrap=wrap if link.any else None, report_every_s=args.report_s,
                    out=sys.stdout)

    def on_signal(signum: int, frame: FrameType | None) -> None:
        server.stop()

    previous = {sig: signal.signal(sig, on_signal) for sig in (signal.SIGINT, signal.SIGTERM)}
    print(endpoint.url, flush=True)
    try:
        server.serve(args.duration_s)
    finally:
        endpoint.close()
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    return EXIT_OK


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m sim", description="Simulated RF generator.")
    add_arguments(parser)
    return run(parser.parse_args(argv))
