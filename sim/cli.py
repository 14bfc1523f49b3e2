"""``rfa sim`` / ``python -m sim``: the simulated generator as its own process, in real time.

The first line on stdout is the URL to pass to ``rfa run --generator`` (flushed at once, so a parent
process can read it); with ``--probe tcp:PORT`` the second is ``probe tcp:HOST:PORT``, what to pass to
``rfa run --probe`` (:mod:`sim.probe.remote`). Counters follow every few seconds and once more on exit
(SIGINT or SIGTERM); once stdout's reader has gone (``| head -1``), they are dropped and serving goes on.
Exit codes: 0 clean stop, 2 bad arguments or fault script, 3 the endpoint could not be opened.
"""

from __future__ import annotations

import argparse
import math
import signal
import sys
from collections.abc import Callable, Sequence
from dataclasses import replace
from pathlib import Path
from types import FrameType

from firmware_bridge.clock import RealClock
from firmware_bridge.errors import LinkError
from firmware_bridge.messages import N_CHANNELS, ElectrodeSlot
from firmware_bridge.transport import Transport
from sim.generator import SimGenerator, load_faults, lumped_tissue, physical_tissue
from sim.generator.device import DEFAULT_ELECTRODE, NO_ELECTRODE
from sim.link_faults import FaultyTransport, LinkFaultConfig, LinkFaultCounters, load_link_faults
from sim.network import EVERY_INTERFACE, LOOPBACK, is_loopback, url_host
from sim.probe import SimProbe, SimProbeBackend, cart_probe, load_probe_faults
from sim.probe.remote import ProbeService, parse_tcp
from sim.server import Server, open_endpoint
from sim.tissue import TissueModel, warm_up_kernels

EXIT_OK = 0
EXIT_USAGE = 2
EXIT_UNREACHABLE = 3


def _seed(text: str) -> int:
    """A seed is a whole number, zero or more (numpy refuses a negative one, deep inside the simulator)."""
    if not (text.isascii() and text.isdigit()):
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number, zero or more")
    return int(text)


def _seconds(text: str) -> float:
    """A duration in seconds, finite and over zero (NaN would mean "never", a negative one "at once")."""
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not math.isfinite(value) or value <= 0.0:
        raise argparse.ArgumentTypeError(f"{text!r} is not a duration; give a number of seconds greater than 0")
    return value


ElectrodeSpec = tuple[int | None, ElectrodeSlot]
"""One ``--electrode``: the channel it is fitted to (``None``: every channel) and the electrode."""


def _electrode_spec(text: str) -> ElectrodeSpec:
    """``[CH=]GAUGE:TIP_MM`` (``18:10``, ``3=20:5``) or ``CH=none``: an electrode on every channel, or on channel CH
    (1..4), or none there."""
    channel_text, equals, electrode = text.rpartition("=")
    if not equals:
        return None, _electrode(text)
    if not (channel_text.isascii() and channel_text.isdigit() and 1 <= int(channel_text) <= N_CHANNELS):
        raise argparse.ArgumentTypeError(f"{text!r}: the channel before '=' must be 1..{N_CHANNELS}")
    return int(channel_text), NO_ELECTRODE if electrode == "none" else _electrode(electrode)


def electrodes(specs: Sequence[ElectrodeSpec] | None) -> list[ElectrodeSlot]:
    """The electrode on each channel after the ``--electrode`` options in order (none given: the default on all)."""
    slots = [DEFAULT_ELECTRODE] * N_CHANNELS
    for channel, slot in specs or ():
        if channel is None:
            slots = [slot] * N_CHANNELS
        else:
            slots[channel - 1] = slot
    return slots


def _electrode(text: str) -> ElectrodeSlot:
    """``GAUGE:TIP_MM`` (e.g. ``18:10``): an electrode with a thermocouple, as the cart's electrodes are."""
    gauge, _, tip = text.partition(":")
    try:
        slot = replace(DEFAULT_ELECTRODE, gauge=int(gauge), tip_length_deci_mm=round(float(tip) * 10))
    except (ValueError, OverflowError):  # OverflowError: a tip of inf mm
        raise argparse.ArgumentTypeError(f"{text!r} is not GAUGE:TIP_MM, e.g. 18:10") from None
    if not (10 <= slot.gauge <= 30 and 10 <= slot.tip_length_deci_mm <= 300):
        raise argparse.ArgumentTypeError(f"{text!r}: gauge must be 10..30 and the tip 1..30 mm")
    return slot


TISSUES: dict[str, Callable[[ElectrodeSlot], TissueModel]] = {"lumped": lumped_tissue, "physical": physical_tissue}
"""``--tissue``: lumped by default, a quick thermal response that takes next to no CPU; physical for the lesions
``rfa run`` simulates. Not the default: on this noisy two-core VM, with the finite-difference model in the
simulator process, the guided HIL test broke its 10 ms period in 6 runs of 6 (during 15-24 ms stalls its witness
saw), against 1 run of 4 with lumped tissue in the same hour; until a quieter machine says otherwise, the
simulator keeps out of the loop's way."""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--serial", default="pty", metavar="pty|tcp:PORT",
                        help="serve on a new pseudo-terminal (default) or a TCP port (0 picks a free one; it listens "
                             "on --bind)")
    parser.add_argument("--seed", type=_seed, default=0, help="seed of measurement noise and link faults")
    parser.add_argument("--faults", type=Path, metavar="FILE",
                        help="TOML fault script: [[fault]] tables (the generator), [[probe_fault]] tables (the "
                             "probe --probe serves) and an optional [link] table")
    parser.add_argument("--report-s", type=_seconds, default=5.0, metavar="S",
                        help="print the counters every S seconds (default 5)")
    parser.add_argument("--duration-s", type=_seconds, metavar="S", help="stop after S seconds")
    parser.add_argument("--probe", metavar="tcp:PORT",
                        help="also serve the simulated probe on this TCP port (0 picks a free one), for "
                             "rfa run --probe tcp:HOST:PORT; its image shows gas when --probe-channel's tissue boils")
    parser.add_argument("--electrode", type=_electrode_spec, action="append", metavar="[CH=]GAUGE:TIP_MM",
                        help="the electrode on every channel, e.g. 18:10 for the default genicular plan's "
                             "(default 20:10), or with CH= on channel CH alone (3=20:5; 4=none: no electrode); "
                             "repeatable, applied in order. A plan naming another is refused with "
                             "electrode_mismatch")
    parser.add_argument("--tissue", choices=sorted(TISSUES), default="lumped",
                        help="tissue at each electrode: lumped (default: a quick thermal response, the same for "
                             "any electrode, next to no CPU) or physical (the finite-difference lesion model rfa run "
                             "uses, for the electrode plugged in; it needs a core of its own beside a real-time host)")
    parser.add_argument("--probe-channel", type=int, default=1, choices=range(1, 5), metavar="1..4",
                        help="the generator channel whose electrode the probe images (default 1)")
    parser.add_argument("--bind", metavar="ADDRESS",
                        help=f"the IPv4 address or host name the TCP ports (--serial tcp:PORT, --probe tcp:PORT) "
                             f"listen on: default {LOOPBACK}, this machine only. Give this machine's address on the "
                             "rig's network (or 0.0.0.0: every interface, the URLs then name this machine by its host "
                             "name) for a cart on another machine. Not the default because the simulated generator "
                             "takes commands, output on included, from any host that connects, without authentication, "
                             "and on a network its port looks like a real generator's serial-over-TCP bridge")


def _probe_port(spec: str) -> int:
    """``tcp:PORT`` for ``--probe``: the probe is served on this machine, so a host part is refused."""
    host, port = parse_tcp(spec, default_host="")
    if host:
        raise ValueError(f"--probe serves on this machine: tcp:PORT (--bind ADDRESS: where it listens), not {spec!r}")
    return port


def run(args: argparse.Namespace) -> int:
    try:
        faults = load_faults(args.faults) if args.faults else []
        link = load_link_faults(args.faults) if args.faults else LinkFaultConfig()
        probe_faults = load_probe_faults(args.faults) if args.faults else []
        probe_port = _probe_port(args.probe) if args.probe else None
        if probe_faults and probe_port is None:
            raise ValueError(f"{args.faults}: [[probe_fault]] scripts the probe this process serves: add --probe "
                             "tcp:PORT")
        if args.bind is not None and args.serial == "pty" and probe_port is None:
            raise ValueError("--bind names where TCP ports listen, and there is none: add --serial tcp:PORT or --probe "
                             "tcp:PORT")
        bind = LOOPBACK if args.bind is None else args.bind
        endpoint = open_endpoint(args.serial, bind)
    except ValueError as exc:
        print(f"rfa sim: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except LinkError as exc:
        print(f"rfa sim: {exc}", file=sys.stderr)
        return EXIT_UNREACHABLE
    if args.tissue == "physical":
        warm_up_kernels()  # before serving: compiling would stall the first ticks
    clock = RealClock()
    sim = SimGenerator(None, clock, seed=args.seed, faults=faults, electrodes=electrodes(args.electrode),
                       tissue_factory=TISSUES[args.tissue])

    wrapped: list[FaultyTransport] = []

    def wrap(transport: Transport) -> Transport:
        wrapped.append(FaultyTransport(transport, clock, link, seed=args.seed, origin=sim.origin))
        return wrapped[-1]

    def link_fault_counters() -> dict[str, int]:
        """What the [link] table did to the bytes, over every host connection so far."""
        total = LinkFaultCounters().as_dict()
        for transport in wrapped:
            for name, count in transport.counters.as_dict().items():
                total[name] += count
        return total

    each_tick: list[Callable[[], None]] = []
    probe: SimProbe | None = None
    if probe_port is not None:
        probe = served = cart_probe(clock, args.seed)
        served.script_faults(probe_faults, lambda: sim.elapsed_s)  # on the generator's time line
        guided = sim.channels[args.probe_channel - 1]
        each_tick.append(lambda: served.set_boiling(guided.reading.boiling))
    server = Server(sim, endpoint, clock, wrap=wrap if link.any else None, report_every_s=args.report_s,
                    out=sys.stdout, each_tick=each_tick, more_counters=link_fault_counters if link.any else None)
    service: ProbeService | None = None
    if probe is not None and probe_port is not None:
        try:
            service = ProbeService(SimProbeBackend(probe), probe_port, bind, say=server.console.say).start()
        except OSError as exc:
            endpoint.close()
            print(f"rfa sim: cannot serve the probe on {args.probe}: {exc}", file=sys.stderr)
            return EXIT_UNREACHABLE

    def on_signal(signum: int, frame: FrameType | None) -> None:
        server.stop()

    previous = {sig: signal.signal(sig, on_signal) for sig in (signal.SIGINT, signal.SIGTERM)}
    print(endpoint.url, flush=True)
    if service is not None:
        print(f"probe {service.url}", flush=True)
    if not is_loopback(bind):
        where = f"every interface, named by this machine's host name {url_host(bind)!r}" if bind in EVERY_INTERFACE \
            else bind
        print(f"rfa sim: listening on {where}: any host that reaches this machine there can connect and command the "
              "simulated generator, without authentication", file=sys.stderr, flush=True)
    try:
        server.serve(args.duration_s)
    finally:
        endpoint.close()
        if service is not None:
            service.stop()
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    return EXIT_OK


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m sim", description="Simulated RF generator.")
    add_arguments(parser)
    return run(parser.parse_args(argv))
