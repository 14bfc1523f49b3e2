"""``rfa``: the command line, and the composition root that wires devices (ARCHITECTURE.md section 11).

This is the one module of ``control`` allowed to import ``sim``: it decides whether the devices are the
in-process simulator, the simulator process or real hardware, and nothing below it needs to know.
Exit codes: 0 success, 1 the procedure ended in a fault or stop, 2 usage or configuration error,
3 device not reachable.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import datetime
import importlib.metadata
import json
import os
import signal
import sys
import threading
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Final, Protocol

from pydantic import ValidationError

import sim.cli
import sim.tissue.cli
from benchmarks import runner as bench_runner
from control import arguments, campaign, console, history, probe_cli, record_cli
from control.arguments import FINAL_HASH_MIN_CHARS
from control.display import ProgressDisplay
from control.guidance import ProbeGuidance
from control.guidance_thread import GuidanceThread
from control.loop import Guidance, Pacer
from control.operator import ConsoleOperator, Operator, ScriptedOperator
from control.record import ProcedureRecord, RecordError, RecordReader
from control.record_cli import DEFAULT_RECORD_DIR, RECORD_SUFFIX
from control.session import ProcedureSession, render_result
from control.summary import ChannelTrace
from firmware_bridge.clock import Clock, RealClock, SimClock
from firmware_bridge.errors import LinkError, ProbeError
from firmware_bridge.generator import RfGenerator
from firmware_bridge.messages import MESSAGE_TYPES, ElectrodeFlag, ElectrodeSlot, GeneratorState, SelfTestCheck
from firmware_bridge.probe import ProbeAddress, UltrasoundProbe
from firmware_bridge.transport import Transport, memory_pair, open_transport
from safety import limits as hard
from safety.config import CartConfig, SafetyLimits, load_config
from safety.errors import RefusedInput
from safety.plan import Lesion, LesionPlan, check_plan, default_genicular_plan, load_plan
from sim.generator import Fault, FaultKind, SimGenerator, load_faults, lumped_tissue, physical_tissue
from sim.link_faults import FaultyTransport, LinkFaultConfig, load_link_faults
from sim.lockstep import Lockstep, Realtime
from sim.probe import (
    CART_NEEDLE,
    ProbeFault,
    ProbeFaultKind,
    SimProbe,
    SimProbeBackend,
    cart_probe,
    load_probe_faults,
)
from sim.probe.remote import RemoteProbeBackend
from sim.tissue import TissueModel, warm_up_kernels
from sim.tissue.estimate import estimate_lesion_from_tip
from sim.tissue.params import MUSCLE, ElectrodeSpec, LesionModelConfig

EXIT_OK: Final = 0
EXIT_FAULT: Final = 1
EXIT_USAGE: Final = 2
EXIT_UNREACHABLE: Final = 3
EXIT_INTERRUPTED: Final = 130  # 128 + SIGINT, as a shell reports a process Ctrl-C ended
GENERATOR_ANSWER_TIMEOUT_S: Final = 3.0
SIM_ELECTRODE_MODEL_ID: Final = 1


# -- the simulated cart ---------------------------------------------------------------------------------
def electrodes_for(plan: LesionPlan) -> list[ElectrodeSlot]:
    """The electrodes the plan expects, as the simulated generator reports them plugged in."""
    slots = [ElectrodeSlot(0, 0, 0, 0)] * 4
    for lesion in plan.lesions:
        electrode = lesion.electrode
        flags = ElectrodeFlag.THERMOCOUPLE_FITTED | (ElectrodeFlag.COOLED if electrode.cooled else 0)
        slot = ElectrodeSlot(SIM_ELECTRODE_MODEL_ID, electrode.gauge, round(electrode.active_tip_mm * 10), int(flags))
        for ch in lesion.channels:
            slots[ch - 1] = slot
    return slots


@dataclass
class SimulatedCart:
    """The in-process simulator: a generator on a memory link, optionally a probe on a pyusb backend."""

    generator_sim: SimGenerator
    host_transport: Transport
    probe_sim: SimProbe | None
    devices: list[Callable[[], None]] = field(default_factory=list)
    """What the pacer steps each tick: the generator, and the link from tissue boiling to the probe image."""


def simulated_cart(
    plan: LesionPlan,
    clock: Clock,
    *,
    seed: int = 0,
    faults: Sequence[Fault] = (),
    physical: bool = True,
    probe: bool = True,
    tissue_factory: Callable[[ElectrodeSlot], TissueModel] | None = None,
    probe_faults: Sequence[ProbeFault] = (),
) -> SimulatedCart:
    """The in-process simulator for ``plan``: the generator (with ``faults``), and the probe if ``probe`` (with
    ``probe_faults``, on the generator's time line)."""
    if probe_faults and not probe:
        raise ValueError("probe faults need the simulated probe (probe=True)")
    host, device = memory_pair("cart")
    if tissue_factory is None:
        if physical:
            warm_up_kernels()
            tissue_factory = physical_tissue
        else:
            tissue_factory = lumped_tissue
    generator_sim = SimGenerator(device, clock, seed=seed, electrodes=electrodes_for(plan), faults=faults,
                                 tissue_factory=tissue_factory)
    cart = SimulatedCart(generator_sim, host, None, [generator_sim.step])
    if probe:
        probe_sim = cart_probe(clock, seed)
        probe_sim.script_faults(probe_faults, lambda: generator_sim.elapsed_s)
        guided = generator_sim.channels[plan.lesions[0].channel - 1]
        cart.probe_sim = probe_sim
        cart.devices.append(lambda: probe_sim.set_boiling(guided.reading.boiling))
    return cart


def lesion_estimator(lesion: Lesion, trace: ChannelTrace) -> tuple[float, float]:
    """The tissue model as the summary's estimate of a lesion's size: the model's tip made to follow the tip
    temperatures the lesion delivered (RF on to RF off), in muscle, under the lesion's power cap. Each lesion's
    trace is its own, so nothing is cached (a 90 s lesion is about 0.3 s of model)."""
    electrode = lesion.electrode
    config = LesionModelConfig(
        electrode=ElectrodeSpec(gauge=electrode.gauge, active_tip_mm=electrode.active_tip_mm, cooled=electrode.cooled),
        tissue=MUSCLE,
    )
    size = estimate_lesion_from_tip(config, trace.t_s, trace.tip_temp_c, max_power_w=lesion.power_cap_w)
    return size.width_mm, size.length_mm


# -- rfa run ------------------------------------------------------------------------------------------
def _add_run_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--plan", type=Path, help="lesion plan TOML (default: three genicular lesions at 80 °C)")
    p.add_argument("--config", type=Path, help="cart configuration TOML (device settings, tighter limits)")
    p.add_argument("--generator", type=arguments.url, metavar="URL",
                   help="pyserial URL of the generator (/dev/ttyUSB0, socket://127.0.0.1:5760, a pty path); "
                   "runs in real time. Default: the in-process simulator")
    p.add_argument("--probe", help="sim (default), none, usb:VID:PID in hex, or tcp:[HOST:]PORT (the probe that "
                                   "`rfa sim --probe tcp:PORT` serves)")
    p.add_argument("--record", type=Path, metavar="DIR", help=f"record directory (default: {DEFAULT_RECORD_DIR})")
    p.add_argument("--yes", action="store_true",
                   help="answer the operator's questions from the plan (scripts, HIL); a fault ends the run. On the "
                   "in-process simulator the run is then in simulated time (unless --realtime); with --generator "
                   "it is in real time. Without it the console asks, in real time")
    p.add_argument("--realtime", action="store_true", help="run the in-process simulator in real time")
    p.add_argument("--seed", type=arguments.count, default=None,
                   help="simulator seed (in-process simulator only: a simulator process takes its own; default 0)")
    p.add_argument("--faults", type=Path, metavar="FILE",
                   help="fault script TOML for the in-process simulator: [[fault]] tables (kind, at_s, channel, "
                   "...), [[probe_fault]] tables (its probe: kind, at_s, duration_s, value) and an optional [link] "
                   "table (corrupt_byte_prob, drop_byte_prob, delay_s, unplug)")
    p.add_argument("--frame-period", type=arguments.seconds, default=1.0, metavar="S",
                   help="record an ultrasound frame every S seconds during RF (default 1; also one per state change)")
    p.add_argument("--json", action="store_true", help="JSON lines on stdout instead of the live display")


def _load_inputs(args: argparse.Namespace) -> tuple[CartConfig, LesionPlan]:
    config = load_config(args.config) if args.config else CartConfig()
    limits = config.effective_limits
    plan = load_plan(args.plan, limits) if args.plan else check_plan(default_genicular_plan(), limits)
    return config, plan


def _record_meta(plan: LesionPlan, limits: SafetyLimits, realtime: bool, **more: str) -> dict[str, str]:
    """What an investigator needs beside the rows to read them: which software ran, the limits the interlocks
    used (a configuration may have tightened the plan's), when and in which time zone, and what ``mono`` counts."""
    now = datetime.datetime.now().astimezone()
    return {
        "plan_name": plan.name,
        "started": now.replace(tzinfo=None).isoformat(timespec="seconds"),
        "utc_offset": now.strftime("%z"),
        "software": f"rfa-controller {_version()}",
        "limits": json.dumps(dataclasses.asdict(limits), sort_keys=True),
        "time_base": ("mono: the host's monotonic clock, s (since the host booted)" if realtime else
                      "mono: simulated time, s") + "; wall: the host's clock as each row was written, Unix time, s",
        **more,
    }


def _version() -> str:
    try:
        return importlib.metadata.version("rfa-controller")
    except importlib.metadata.PackageNotFoundError:  # run from a source tree that was never installed
        return "unknown version"


def _counters_text(counters: dict[str, int]) -> str:
    return ", ".join(f"{name} {value}" for name, value in counters.items())


def _record_path(directory: Path, plan: LesionPlan) -> Path:
    stamp = datetime.datetime.now().strftime("%Y%m%d-%H%M%S")
    safe_name = "".join(c if c.isalnum() or c in "-_" else "_" for c in plan.name)
    path = directory / f"{stamp}-{safe_name}{RECORD_SUFFIX}"
    n = 1
    while path.exists():
        n += 1
        path = directory / f"{stamp}-{safe_name}-{n}{RECORD_SUFFIX}"
    return path


@contextlib.contextmanager
def _stop_on_termination(session: ProcedureSession) -> Iterator[None]:
    """SIGTERM and SIGHUP (``systemctl stop``, ``timeout``, a closed SSH session) stop the procedure as the stop
    button does, at its next tick: output off, latched, recorded, the record closed, exit 1. Their default would
    kill the process with output on, left to the generator's own heartbeat watchdog, and the record unclosed. A
    second one does what Ctrl-C does at once (:class:`KeyboardInterrupt`, also an operator stop), in case the
    first is not being acted on.

    Once the procedure is ending (:attr:`ProcedureSession.ending`: output being turned off, the summary, the
    record's end and the result being written, all inside this context), the next signal of any of the three is
    only answered with a word: a physician pressing Ctrl-C twice would otherwise cut off the summary (a lesion
    size estimate takes seconds) and leave a record without its end. The one after that acts at once, for a
    finish that hangs."""
    if threading.current_thread() is not threading.main_thread():  # only the main thread may set handlers
        yield
        return
    received: list[str] = []
    told: list[str] = []

    def on_signal(signum: int, _frame: object) -> None:
        name = signal.Signals(signum).name
        if session.ending and not told:
            told.append(name)
            # os.write, not print: the handler may run in the middle of a print to the same stream. Its failure (a
            # closed stderr: `rfa run 2>&1 | tee`, the tee gone with the first Ctrl-C) must not cut the end short.
            with contextlib.suppress(OSError, ValueError):
                os.write(sys.stderr.fileno(), f"rfa run: {name} received while the procedure is ending: output is "
                         "being turned off and the record finished; send it again to quit at once\n".encode())
            return
        if signum == signal.SIGINT or received or told:
            raise KeyboardInterrupt(name)
        received.append(name)
        session.request_stop(f"operator stop ({name} received)")

    previous = {signum: signal.signal(signum, on_signal) for signum in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)
                if signal.getsignal(signum) is not signal.SIG_IGN}  # `nohup rfa run`: the operator's choice stands
    try:
        yield
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)


def _await_generator(generator: RfGenerator, clock: Clock, pacer: Pacer, url: str) -> str | None:
    """Wait for the generator's first STATUS past boot; the reason it is unreachable, or None. A link that opened
    and then went (a generator restarting, a serial-over-TCP bridge with nothing behind it, a simulator serving
    another host) is unreachable too."""
    deadline = clock.now() + GENERATOR_ANSWER_TIMEOUT_S
    while clock.now() < deadline:
        try:
            generator.service()
        except LinkError as exc:
            reason = f"the link to the generator at {url} opened, then failed: {exc}"
            if url.startswith("socket://") and generator.stats.frames_ok == 0:
                reason += ("; it was closed before the generator sent a frame: a simulator (rfa sim) does that while "
                           "another host holds its generator (its console names that host)")
            return reason
        status = generator.status
        if status is not None and status.msg.state != GeneratorState.BOOT:
            return None
        pacer.sleep_until(clock.now() + 0.01)
    return f"no answer from the generator at {url} within {GENERATOR_ANSWER_TIMEOUT_S:.0f} s"


def _run(args: argparse.Namespace) -> int:
    err = sys.stderr
    try:
        config, plan = _load_inputs(args)
    except RefusedInput as exc:
        print(f"rfa run: {exc}", file=err)
        return EXIT_USAGE
    probe_choice = args.probe or config.probe
    if probe_choice == "none" and plan.imaging_required:
        print(f"rfa run: plan {plan.name!r} requires imaging (imaging_required = true); --probe none is "
              "refused: give the probe (--probe usb:VID:PID, or --probe tcp:HOST:PORT for the one `rfa sim --probe` "
              "serves), or a plan with imaging_required = false", file=err)
        return EXIT_USAGE
    served_probe: RemoteProbeBackend | None = None
    try:
        if probe_choice.startswith("tcp:"):  # the probe `rfa sim --probe tcp:PORT` serves
            if not (args.generator or config.generator_url):
                raise ValueError("the probe of a simulator process goes with its generator: add --generator URL")
            served_probe, probe_address = RemoteProbeBackend(probe_choice), None
        else:
            probe_address = None if probe_choice in ("sim", "none") else probe_cli.parse_probe_target(probe_choice)
    except (argparse.ArgumentTypeError, ValueError) as exc:
        print(f"rfa run: --probe: {exc}", file=err)
        return EXIT_USAGE
    url = args.generator or config.generator_url
    # `sim` is the in-process simulator's probe: with a generator URL there is none. Asked for by name, or needed by
    # the plan, that is refused before connecting (a guided plan would only be refused for lost imaging once
    # started); left to the default with a plan without imaging, the run simply has no probe, as before.
    if url is not None and probe_choice == "sim" and (args.probe == "sim" or plan.imaging_required):
        print("rfa run: --probe sim is the in-process simulator's probe, and with a generator URL there is none: give "
              "--probe tcp:HOST:PORT (the probe `rfa sim --probe tcp:PORT` serves), usb:VID:PID, or none (for a plan "
              "without imaging)", file=err)
        return EXIT_USAGE
    if url is not None and (args.faults or args.seed is not None):
        what = "--faults scripts" if args.faults else "--seed seeds"
        print(f"rfa run: {what} the in-process simulator; pass it to `rfa sim` instead", file=err)
        return EXIT_USAGE
    seed = args.seed or 0
    try:
        faults = load_faults(args.faults) if args.faults else []
        link = load_link_faults(args.faults) if args.faults else LinkFaultConfig()
        probe_faults = load_probe_faults(args.faults) if args.faults else []
        if probe_faults and probe_choice != "sim":
            raise ValueError(f"{args.faults}: [[probe_fault]] scripts the in-process simulator's probe, and --probe "
                             f"{probe_choice} is not it")
    except ValueError as exc:
        print(f"rfa run: {exc}", file=err)
        return EXIT_USAGE
    # A person at the console answers in real time: simulated time would race ahead while they think.
    realtime = args.realtime or url is not None or not args.yes
    clock: Clock = RealClock() if realtime else SimClock()

    cart: SimulatedCart | None = None
    if url is None:
        if not args.json:
            print("Starting the in-process simulator (generator, tissue model, probe)...", file=err)
        cart = simulated_cart(plan, clock, seed=seed, faults=faults, probe=probe_choice == "sim",
                              probe_faults=probe_faults)
        transport = cart.host_transport
        if link.any:  # the script's [link] table: the cable between this process and its simulator
            transport = FaultyTransport(transport, clock, link, seed=seed, origin=cart.generator_sim.origin)
    else:
        try:
            transport = open_transport(url)
        except LinkError as exc:
            print(f"rfa run: generator not reachable: {exc}", file=err)
            return EXIT_UNREACHABLE
    generator = RfGenerator(transport, clock)
    pacer: Pacer
    if cart is None:
        pacer = Realtime(clock, [])
        reason = _await_generator(generator, clock, pacer, url or "")
        if reason is not None:
            print(f"rfa run: {reason}", file=err)
            return EXIT_UNREACHABLE
    elif isinstance(clock, SimClock):
        pacer = Lockstep(clock, cart.devices)
    else:
        pacer = Realtime(clock, cart.devices)

    probe: UltrasoundProbe | None = None
    try:
        if cart is not None and cart.probe_sim is not None:
            probe = UltrasoundProbe.open(clock, backend=SimProbeBackend(cart.probe_sim))
        elif served_probe is not None:
            served_probe.connect()  # a service that cannot serve us is said as such, not as USB enumeration failing
            probe = UltrasoundProbe.open(clock, backend=served_probe)
        elif isinstance(probe_address, ProbeAddress):
            probe = UltrasoundProbe.open(clock, address=probe_address)
    except ProbeError as exc:
        print(f"rfa run: ultrasound probe not reachable: {exc}", file=err)
        return EXIT_UNREACHABLE

    record_dir = args.record or config.record_dir
    try:
        record = ProcedureRecord(_record_path(record_dir, plan), clock, meta=_record_meta(
            plan, config.effective_limits, realtime,
            generator=url or "in-process simulator",
            probe=probe_choice,
            seed="none (the generator at the URL)" if url else str(seed),
            config=str(args.config) if args.config else "none (the hard limits)",
            faults=args.faults.read_bytes().decode("utf-8", "replace") if args.faults else "none",  # as loaded
        ))
    except RecordError as exc:
        print(f"rfa run: cannot open the procedure record: {exc}", file=err)
        return EXIT_USAGE
    guidance: Guidance | None = None
    guidance_thread: GuidanceThread | None = None
    if probe is not None:
        guidance = ProbeGuidance(probe, clock, record, guided_channel=plan.lesions[0].channel,
                                 frame_record_period_s=args.frame_period)
        if realtime:  # the probe's USB reads and B-mode must never hold up the 10 ms tick
            guidance = guidance_thread = GuidanceThread(guidance, record, clock)
    # With --json the stream on stdout is events only (questions among them); the prompts go to stderr.
    operator: Operator = ScriptedOperator(plan) if args.yes else ConsoleOperator(
        out=sys.stderr if args.json else sys.stdout)
    session = ProcedureSession(
        plan=plan, generator=generator, clock=clock, pacer=pacer, record=record, operator=operator,
        guidance=guidance, limits=config.effective_limits, realtime=realtime,
        display=None if args.json else ProgressDisplay(sys.stdout),
        events=sys.stdout if args.json else None,
        lesion_estimator=lesion_estimator,
    )
    with _stop_on_termination(session):  # until the record's end row and the result are written
        record_failure = ""
        try:
            if guidance_thread is not None:
                guidance_thread.start()
            result = session.run()
        finally:
            if guidance_thread is not None:
                guidance_thread.stop()
            if isinstance(pacer, Realtime):
                pacer.close()
            try:
                record.close()
            except RecordError as exc:  # the session has gone to the safe state on it already: say so, go on
                record_failure = str(exc)
            generator.close()
            if probe is not None:
                probe.close()
            if served_probe is not None:
                served_probe.close()
        try:
            probe_link = {} if probe is None else {"probe_link": probe.counters()}
            final_hash = "" if record_failure else record.chain_head  # the end row's: the record closed whole
            if args.json:
                print(json.dumps({"event": "result", **result.as_dict(), "final_hash": final_hash or None,
                                  "link": generator.counters(), **probe_link}))
            else:
                print(render_result(result))
                if final_hash:
                    print(f"Final hash: {final_hash}  (for the patient's file: `rfa record verify "
                          f"{result.record_path} --expect {final_hash[:FINAL_HASH_MIN_CHARS]}` shows a record "
                          "edited since, even one rebuilt whole)")
                print("Generator link: " + _counters_text(generator.counters()))
                if probe is not None:
                    print("Probe link: " + _counters_text(probe.counters()))
        except BrokenPipeError:  # the reader went away: the procedure's own result still decides the exit code
            _silence_stdout()
    if record_failure:
        print(f"rfa run: the procedure record failed: {record_failure}", file=err)
        return EXIT_FAULT
    return result.exit_code


# -- rfa selftest, rfa protocol ------------------------------------------------------------------------
def _selftest(args: argparse.Namespace) -> int:
    """The generator's self-test on its own: which checks passed, per channel, and the link's counters."""
    clock: Clock
    if args.generator is not None and args.seed is not None:
        print("rfa selftest: --seed seeds the in-process simulator; pass it to `rfa sim` instead", file=sys.stderr)
        return EXIT_USAGE
    if args.generator is None:
        clock = SimClock()
        cart = simulated_cart(default_genicular_plan(), clock, seed=args.seed or 0, physical=False, probe=False)
        transport = cart.host_transport
        pacer: Pacer = Lockstep(clock, cart.devices)
    else:
        clock = RealClock()
        try:
            transport = open_transport(args.generator)
        except LinkError as exc:
            print(f"rfa selftest: generator not reachable: {exc}", file=sys.stderr)
            return EXIT_UNREACHABLE
        pacer = Realtime(clock, [])
    generator = RfGenerator(transport, clock)
    try:
        reason = _await_generator(generator, clock, pacer, args.generator or "the in-process simulator")
        if reason is None:
            deadline = clock.now() + GENERATOR_ANSWER_TIMEOUT_S
            try:
                generator.request_self_test()
                while generator.self_test_result is None and clock.now() < deadline:
                    pacer.sleep_until(clock.now() + 0.01)
                    generator.service()
            except LinkError as exc:
                reason = f"the link to the generator failed during its self-test: {exc}"
            if reason is None and generator.self_test_result is None:
                reason = f"no self-test result within {GENERATOR_ANSWER_TIMEOUT_S:.0f} s"
        if reason is not None:
            print(f"rfa selftest: {reason}", file=sys.stderr)
            return EXIT_UNREACHABLE
        assert generator.self_test_result is not None
        channels = args.channels
        if channels is None:
            channels, reason = _fitted_channels(generator, clock, pacer)
            if reason is not None:
                print(f"rfa selftest: {reason}", file=sys.stderr)
                return EXIT_UNREACHABLE
        passed = SelfTestCheck(generator.self_test_result.msg.checks_passed)
        status = generator.status.msg if generator.status else None
        checks = {flag.name or str(int(flag)): bool(flag & passed) for flag in SelfTestCheck}
        required = SelfTestCheck.required(channels)
        ok = (required & passed) == required and bool(channels)
        if args.json:
            print(json.dumps({"ok": ok, "checks": checks, "required_channels": channels,
                              "firmware": status.firmware if status else None, "link": generator.counters()}))
        else:
            print(f"generator firmware {status.firmware if status else '?'}")
            for name, good in checks.items():
                unrequired = name.startswith("CHANNEL_") and int(name.removeprefix("CHANNEL_")) not in channels
                why = ("  (not required: no electrode fitted)" if args.channels is None else "  (not required)"
                       ) if unrequired and not good else ""
                print(f"  {name:12} {'pass' if good else 'FAIL'}{why}")
            print("self-test " + ("passed" if ok else "FAILED") + f" for channel(s) {channels or 'none'}")
        return EXIT_OK if ok else EXIT_FAULT
    finally:
        generator.close()


def _fitted_channels(generator: RfGenerator, clock: Clock, pacer: Pacer) -> tuple[list[int], str | None]:
    """The channels with an electrode connected, by the generator's ELECTRODE_INFO (sent every second); or why
    that is not known. These are the channels a self-test without ``--channels`` requires: a fitted electrode
    whose channel fails (a broken thermocouple, a channel fault) fails the self-test, where requiring only the
    channels that passed would call any self-test with one good channel a pass."""
    deadline = clock.now() + GENERATOR_ANSWER_TIMEOUT_S
    while generator.electrodes is None and clock.now() < deadline:
        pacer.sleep_until(clock.now() + 0.01)
        try:
            generator.service()
        except LinkError as exc:
            return [], f"the link to the generator failed after its self-test: {exc}"
    if generator.electrodes is None:
        return [], (f"no ELECTRODE_INFO within {GENERATOR_ANSWER_TIMEOUT_S:.0f} s, so which channels have an electrode "
                    "is not known: give --channels")
    slots = generator.electrodes.msg.electrodes
    return [index + 1 for index, slot in enumerate(slots) if slot.connected], None


def _lesion(args: argparse.Namespace) -> int:
    """``rfa lesion``, saying after its estimate when no plan may have its settings: the model answers for any
    electrode and temperature it can compute (100 °C, 80 W), the cart refuses them, and an estimate read without
    that note reads as something the cart can deliver. (Settings the model itself refuses get its error only.)"""
    status = sim.tissue.cli.run(args)
    refusal = _plan_refusal(args)
    if status == EXIT_OK and refusal is not None:
        print(f"rfa lesion: note: the cart refuses a lesion with these settings ({refusal}); the estimate is the "
              "tissue model's alone", file=sys.stderr)
    return status


def _plan_refusal(args: argparse.Namespace) -> str | None:
    """Why a plan's lesion with ``rfa lesion``'s settings would be refused under the hard limits, or None (the
    plan's own rules, :class:`~safety.plan.Lesion`; the impedance window, which the model does not use, at its
    widest)."""
    lesion = {
        "channel": 1,
        "electrode": {"gauge": args.gauge, "active_tip_mm": args.tip, "cooled": args.cooled},
        "set_temp_c": args.temp,
        "ramp_rate_c_per_s": args.ramp,
        "lesion_time_s": args.time,
        "power_cap_w": args.max_power,
        "impedance_min_ohm": hard.IMPEDANCE_MIN_OHM,
        "impedance_max_ohm": hard.IMPEDANCE_MAX_OHM,
    }
    try:
        Lesion.model_validate(lesion)
    except ValidationError as exc:
        refused = RefusedInput.from_validation_error("rfa lesion", exc)
        return "; ".join(f"{path}: {reason}" for path, reason in refused.problems)
    return None


def _channel_list(text: str) -> list[int]:
    try:
        channels = sorted({int(part) for part in text.split(",")})
    except ValueError:
        channels = []
    if not channels or not all(1 <= ch <= 4 for ch in channels):
        raise argparse.ArgumentTypeError(f"channels are 1..4 separated by commas, not {text!r}")
    return channels


def _protocol(args: argparse.Namespace) -> int:
    """The generator wire protocol as this build encodes it: ids, layouts and CRC_EXTRA bytes."""
    rows = [{"id": f"0x{m.MSG_ID:02X}", "name": m.__name__, "struct": m.STRUCT.format,
             "payload_bytes": m.STRUCT.size, "crc_extra": f"0x{m.CRC_EXTRA:02X}"} for m in MESSAGE_TYPES]
    if args.json:
        print(json.dumps(rows, indent=2))
        return EXIT_OK
    print("Frame: STX 0xFD | LEN | SEQ | MSG | payload | CRC-16/MCRF4XX over LEN..payload + CRC_EXTRA (LE)")
    print(f"{'id':5} {'message':14} {'struct':26} {'bytes':>5}  crc_extra")
    for r in rows:
        print(f"{r['id']:5} {r['name']:14} {r['struct']:26} {r['payload_bytes']:>5}  {r['crc_extra']}")
    return EXIT_OK


# -- rfa campaign ---------------------------------------------------------------------------------------
def _campaign_run(plan: LesionPlan, limits: SafetyLimits, injection: campaign.Injection | None, run: int,
                  args: argparse.Namespace, record_dir: Path) -> tuple[campaign.RunOutcome, campaign.DeviceTrace]:
    """One procedure in simulated time with ``injection``, its generator's outputs (and its probe, with imaging)
    sampled every step."""
    clock = SimClock()
    faults: list[Fault] = []
    probe_faults: list[ProbeFault] = []
    if injection is not None and injection.kind in campaign.PROBE_KINDS:  # as a [[probe_fault]] table scripts it
        probe_faults.append(ProbeFault(ProbeFaultKind(injection.kind), injection.at_s, injection.duration_s,
                                       injection.value))
    elif injection is not None and injection.kind != campaign.LINK_UNPLUG:
        faults.append(Fault(FaultKind(injection.kind), injection.at_s, injection.channel, injection.duration_s))
    cart = simulated_cart(plan, clock, seed=args.seed * 1000 + run, faults=faults, physical=args.physical,
                          probe=plan.imaging_required, probe_faults=probe_faults)
    transport = cart.host_transport
    if injection is not None and injection.kind == campaign.LINK_UNPLUG:
        unplugged_s = 3600.0 if injection.duration_s is None else injection.duration_s
        transport = FaultyTransport(transport, clock, LinkFaultConfig(unplug=((injection.at_s, unplugged_s),)))
    device = campaign.DeviceTrace()
    channels = cart.generator_sim.channels
    probe_sim = cart.probe_sim

    def sample() -> None:
        now = clock.now()
        device.sample(now, sum(1 << i for i, ch in enumerate(channels) if ch.output_on),
                      [ch.reading.tip_temp_c for ch in channels],
                      rf_mask=sum(1 << i for i, ch in enumerate(channels) if ch.mode is not None))
        if probe_sim is not None:
            device.sample_probe(now, probe_sim.frames_sent, probe_sim.face_temp_c, probe_sim.reports_fault)

    generator = RfGenerator(transport, clock)
    record = ProcedureRecord(record_dir / f"run-{run:03d}{RECORD_SUFFIX}", clock, meta=_record_meta(
        plan, limits, False, campaign_run=str(run), fault="none" if injection is None else injection.describe(),
    ))
    probe: UltrasoundProbe | None = None
    guidance: ProbeGuidance | None = None
    if cart.probe_sim is not None:
        probe = UltrasoundProbe.open(clock, backend=SimProbeBackend(cart.probe_sim))
        guidance = ProbeGuidance(probe, clock, record, guided_channel=plan.lesions[0].channel)
    pacer = Lockstep(clock, [*cart.devices, sample])
    session = ProcedureSession(plan=plan, generator=generator, clock=clock, pacer=pacer, record=record,
                               operator=ScriptedOperator(plan, clock=clock, reading_s=campaign.ALARM_READING_S),
                               guidance=guidance, limits=limits)
    try:
        result = session.run()
        ended_at = clock.now()
        # The generator goes on after the host's procedure ends: a cut link leaves output to its own watchdog.
        pacer.sleep_until(ended_at + campaign.AFTERMATH_S)
    finally:
        record.close()
        generator.close()
        if probe is not None:
            probe.close()
    reader = RecordReader(result.record_path)
    try:
        verified = reader.verify()
        trips = [campaign.TripRow(row.mono, row.payload["interlock"], row.payload.get("channel"))
                 for row in reader.rows("alarm") if row.payload.get("event") == "trip"]
        off_commands = [(row.mono, int(row.payload["channel_mask"]))
                        for row in reader.rows("command") if row.payload.get("msg") == "OutputOff"]
    finally:
        reader.close()
    outcome = campaign.judge(run, injection, plan, limits, exit_code=result.exit_code,
                             final_state=result.final_state, trips=trips, device=device, record_ok=verified.ok,
                             record_rows=verified.rows, off_commands=off_commands, ended_at=ended_at)
    return outcome, device


def _campaign(args: argparse.Namespace) -> int:
    err = sys.stderr
    try:
        config, plan = _load_inputs(args)
    except RefusedInput as exc:
        print(f"rfa campaign: {exc}", file=err)
        return EXIT_USAGE
    unknown = sorted(set(args.kinds or ()) - set(campaign.KINDS))
    if unknown:
        print(f"rfa campaign: unknown fault kind(s) {unknown}; known: {', '.join(campaign.KINDS)}", file=err)
        return EXIT_USAGE
    probeless = sorted(set(args.kinds or ()) & set(campaign.PROBE_KINDS)) if not plan.imaging_required else []
    if probeless:
        print(f"rfa campaign: probe fault kind(s) {probeless} need a plan that requires imaging (a simulated probe); "
              f"plan {plan.name!r} does not", file=err)
        return EXIT_USAGE
    kinds = args.kinds or campaign.kinds_for(plan)
    runs = len(kinds) if args.runs is None else args.runs
    if runs < 1:
        print(f"rfa campaign: --runs must be at least 1, not {runs}", file=err)
        return EXIT_USAGE
    stamp = datetime.datetime.now().strftime("%Y%m%d-%H%M%S")
    record_dir = (args.record or config.record_dir) / f"campaign-{stamp}-seed{args.seed}"
    record_dir.mkdir(parents=True, exist_ok=True)
    say = (lambda text: None) if args.json else (lambda text: print(text, file=err, flush=True))
    say(f"Campaign: plan {plan.name!r}, {runs} fault run(s) from seed {args.seed}, records in {record_dir}")
    if not plan.imaging_required:
        say("No probe faults: the plan does not require imaging, so its procedures run without a probe")
    limits = config.effective_limits
    baseline, device = _campaign_run(plan, limits, None, 0, args, record_dir)
    outcomes = [baseline]
    say(f"run 0: no fault: {baseline.final_state}, {baseline.verdict}")
    window = device.window()
    if window is None:
        print("rfa campaign: the fault-free run never turned output on; nothing to inject into", file=err)
        print(json.dumps({"records": str(record_dir), "runs": [baseline.as_dict()]}, indent=2) if args.json
              else campaign.render_table(outcomes))
        return EXIT_FAULT
    planned = sorted(channel for lesion in plan.lesions for channel in lesion.channels)  # bipolar partners too
    # Every electrode stimulates, a bipolar pair's partner too (ProcedureSession._stimulation): a weak stimulator is
    # drawn on any of them, as docs/simulator.md says ("on a channel that stimulated").
    stimulated = {channel: device.window(stim_only=True, mask=1 << (channel - 1)) for channel in planned}
    injections = campaign.draw_injections(runs, args.seed, planned, window, kinds,
                                          {ch: w for ch, w in stimulated.items() if w is not None},
                                          rf_window_s=device.window(rf_only=True))
    for run, injection in enumerate(injections, start=1):
        try:
            outcome, _ = _campaign_run(plan, limits, injection, run, args, record_dir)
        except Exception as exc:  # one run's crash is that run's failure, not the end of the campaign
            outcome = campaign.crashed(run, injection, exc)
        outcomes.append(outcome)
        say(f"run {run}: {injection.describe()}: {outcome.final_state}, {outcome.verdict}")
    if args.json:
        print(json.dumps({"records": str(record_dir), "runs": [o.as_dict() for o in outcomes]}, indent=2))
    else:
        print(campaign.render_table(outcomes))
    return EXIT_OK if all(o.passed for o in outcomes) else EXIT_FAULT


# -- rfa probe ------------------------------------------------------------------------------------------
def _probe_factory(args: argparse.Namespace) -> probe_cli.ProbeFactory:
    if args.probe.startswith("tcp:"):  # the probe `rfa sim --probe tcp:PORT` serves
        served = RemoteProbeBackend(args.probe)

        def open_served(clock: Clock) -> UltrasoundProbe:
            served.connect()  # a service that cannot serve us is said as such, not as USB enumeration failing
            return UltrasoundProbe.open(clock, backend=served)
        return open_served
    address = probe_cli.parse_probe_target(args.probe)
    if address is None:
        def open_simulated(clock: Clock) -> UltrasoundProbe:
            probe_sim = SimProbe(clock)
            probe_sim.set_needle(CART_NEEDLE)
            return UltrasoundProbe.open(clock, backend=SimProbeBackend(probe_sim))

        return open_simulated
    return lambda clock: UltrasoundProbe.open(clock, address=address)


def _probe(args: argparse.Namespace) -> int:
    try:
        factory = _probe_factory(args)
    except (argparse.ArgumentTypeError, ValueError) as exc:
        print(f"rfa probe: --probe: {exc}", file=sys.stderr)
        return EXIT_USAGE
    return probe_cli.run(args, factory)


# -- the parser -----------------------------------------------------------------------------------------
def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="rfa", description="Ultrasound-guided RF ablation cart. `rfa COMMAND --help` for each command.",
        epilog="exit codes: 0 success; 1 the procedure ended in a fault or stop, a check failed, or a record is "
        "damaged; 2 usage, plan or configuration error (the message names the field); 3 device not reachable "
        "(the message names the URL); 130 interrupted")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    run_cmd = commands.add_parser("run", help="run a procedure (default: a full simulated procedure)",
                                  description="Run a lesion plan: self-test, stimulation, lesions. With no "
                                  "options, the default plan on the in-process simulator in simulated time.")
    _add_run_arguments(run_cmd)
    run_cmd.set_defaults(handler=_run)

    _module_command(commands, "sim", sim.cli, help="run the simulated generator as its own process",
                    description="Serve the simulated RF generator in real time; the first line printed is the URL "
                    "to pass to --generator.")
    _module_command(commands, "record", record_cli, help="list, show, export, verify or report procedure records",
                    description="Read procedure records (read-only: nothing here can change one). "
                    "`rfa record ACTION --help` for each action.")

    selftest_cmd = commands.add_parser(
        "selftest", help="run the generator's self-test and show each check",
        description="Ask the generator for its self-test and print each check (power stage, measurement, "
        "watchdog, each channel). Exit 0 if every required check passed, 1 if one failed, 3 if the generator does "
        "not answer.")
    selftest_cmd.add_argument("--generator", type=arguments.url, metavar="URL",
                              help="pyserial URL (default: the in-process simulator)")
    selftest_cmd.add_argument("--channels", type=_channel_list,
                              help="channels that must pass, e.g. 1,2,3 (default: every channel with an electrode "
                                   "connected, by the generator's ELECTRODE_INFO)")
    selftest_cmd.add_argument("--seed", type=arguments.count, default=None,
                              help="simulator seed (in-process simulator only; default 0)")
    selftest_cmd.add_argument("--json", action="store_true", help="machine-readable output")
    selftest_cmd.set_defaults(handler=_selftest)

    protocol_cmd = commands.add_parser(
        "protocol", help="print the generator wire protocol of this build",
        description="The frame layout and every generator message of this build (ARCHITECTURE.md section 4): id, "
        "name, payload struct, size and CRC_EXTRA, as the encoder and decoder use them; compare with the "
        "firmware's table.")
    protocol_cmd.add_argument("--json", action="store_true", help="machine-readable output")
    protocol_cmd.set_defaults(handler=_protocol)

    _module_command(commands, "lesion", sim.tissue.cli, help="estimate a lesion's size with the tissue model")
    commands.choices["lesion"].set_defaults(handler=_lesion)

    probe_cmd = commands.add_parser("probe", help="the ultrasound probe at the bench: info, stream, snapshot",
                                    description="Talk to the ultrasound probe without a procedure, for bring-up and "
                                    "service. `rfa probe ACTION --help` for each action.")
    probe_cli.add_arguments(probe_cmd)
    probe_cmd.set_defaults(handler=_probe)

    _module_command(commands, "history", history, help="the procedures run on this cart: outcome and lesions",
                    description="Every procedure in the record directory, oldest first: when, which plan, how it "
                    "ended and why, and each lesion's channel, set temperature, RF time, energy and predicted size.")
    _module_command(commands, "console", console, help="follow a procedure live from its record (read-only "
                    "second screen)", description="Print a procedure's state changes, alarms, operator questions "
                    "and a status line per channel as its record fills, then how it ended (exit 0 complete, 1 fault "
                    "or stop). Reads the record only: it cannot disturb the running procedure, and answers stay "
                    "with `rfa run` at the cart.")

    campaign_cmd = commands.add_parser(
        "campaign", help="a seeded fault campaign: one fault per procedure, judged by what the simulator did",
        description="Run the plan on the in-process simulator in simulated time, once without a fault and then "
        "once per drawn fault (generator faults and link unplugs, on planned channels, during output; with a plan "
        "that requires imaging, probe faults too, during RF), and check each run against what the simulated "
        "devices really did: output off at the end, stopped within two periods of every trip and OUTPUT_OFF, faults "
        "during output detected, lost imaging, a hot probe face or a fault the probe reports tripped on (and a "
        "drop-out within the imaging grace not), record intact. Exit 1 if a run fails.")
    campaign_cmd.add_argument("--runs", type=arguments.count, default=None,
                              help=f"fault runs after the fault-free one (default: each kind once, "
                              f"{len(campaign.KINDS)} with imaging, {len(campaign.KINDS) - len(campaign.PROBE_KINDS)} "
                              "without)")
    campaign_cmd.add_argument("--seed", type=arguments.count, default=0,
                              help="draws the faults (kind order, channel, time)")
    campaign_cmd.add_argument("--kinds", type=lambda text: text.split(","), metavar="K1,K2",
                              help=f"fault kinds to draw from (default all: {', '.join(campaign.KINDS)}; the probe's, "
                              f"{', '.join(campaign.PROBE_KINDS)}, only for a plan that requires imaging)")
    campaign_cmd.add_argument("--plan", type=Path, help="lesion plan TOML (default: three genicular lesions)")
    campaign_cmd.add_argument("--config", type=Path, help="cart configuration TOML (tighter limits)")
    campaign_cmd.add_argument("--record", type=Path, metavar="DIR",
                              help=f"where the campaign's directory of records goes (default: {DEFAULT_RECORD_DIR})")
    campaign_cmd.add_argument("--physical", action="store_true",
                              help="the finite-difference tissue model (slower) instead of the lumped one")
    campaign_cmd.add_argument("--json", action="store_true", help="machine-readable output")
    campaign_cmd.set_defaults(handler=_campaign)

    _module_command(commands, "bench", bench_runner, help="run the benchmarks against their targets",
                    description="Time the control tick, the interlocks, the parsers, the record's writer, the "
                    "tissue model and B-mode imaging, each against its target and, where the machine's speed "
                    "would decide, as a ratio to a reference measured in the same run. Exit 1 if a target is "
                    "missed.")
    return parser


class _CommandModule(Protocol):
    """A module that brings a subcommand's arguments and its handler."""

    def add_arguments(self, parser: argparse.ArgumentParser) -> None: ...

    def run(self, args: argparse.Namespace) -> int: ...


def _module_command(commands: argparse._SubParsersAction[argparse.ArgumentParser], name: str,
                    module: _CommandModule, *, help: str, description: str | None = None) -> None:
    command = commands.add_parser(name, help=help, description=description)
    module.add_arguments(command)
    command.set_defaults(handler=module.run)


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        result: int = args.handler(args)
    except BrokenPipeError:
        # The reader went away (`rfa console | head`, `rfa record show … | less` quit early): not an error of
        # ours. (`rfa run` answers with its procedure's own exit code: a run its reader cut short is a fault; one
        # that reaches here was cut short before it could say so, and is no success either.)
        _silence_stdout()
        return EXIT_FAULT if args.command == "run" else EXIT_OK
    except KeyboardInterrupt:  # Ctrl-C where no command handles it, or pressed again to quit `rfa run` at once
        ended = (" (the generator turns its output off 250 ms after the host's last heartbeat; the record may lack "
                 "its end: rfa record verify)") if args.command == "run" else ""
        print(f"rfa {args.command}: interrupted{ended}", file=sys.stderr)
        return EXIT_INTERRUPTED
    return result


def _silence_stdout() -> None:
    """Point stdout at /dev/null, so that the interpreter's own flush at exit does not raise again."""
    os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())


if __name__ == "__main__":
    sys.exit(main())
