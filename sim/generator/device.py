"""The simulated RF generator: the device end of the wire protocol of ARCHITECTURE.md section 4.

It is written as firmware would be: a fixed 10 ms tick (power stage, tissue, watchdog, telemetry) and a
command handler that answers every command with an ACK. It does not trust the host: it applies its own
hardware caps, refuses output while in fault or without a live host heartbeat, and turns all output off
by itself 250 ms after the last host heartbeat.

Time comes only from the injected :class:`~firmware_bridge.clock.Clock`. :meth:`SimGenerator.step` runs
every tick that is due at ``clock.now()``, so the same object runs in lockstep with a ``SimClock`` (the
test advances the clock 10 ms and calls ``step``) and in real time (the server loop calls ``step`` about
every 10 ms and, if the machine stalled, catches up on the missed ticks so the telemetry rate holds).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field, fields
from typing import Final

import numpy as np

from firmware_bridge.clock import Clock, SimClock
from firmware_bridge.errors import LinkError
from firmware_bridge.framing import FrameEncoder, FrameParser, ParserStats
from firmware_bridge.messages import (
    ALL_CHANNELS,
    N_CHANNELS,
    Ack,
    AckResult,
    ChannelTelemetry,
    ElectrodeFlag,
    ElectrodeInfo,
    ElectrodeSlot,
    GeneratorState,
    Heartbeat,
    Message,
    OutputMode,
    OutputOff,
    Pump,
    SelfTest,
    SelfTestCheck,
    SetOutput,
    Status,
    Stim,
    Telemetry,
    TelemetryFlag,
)
from firmware_bridge.transport import Transport
from sim.generator.faults import Fault, FaultKind
from sim.tissue import CooledTissue, LumpedTissue, RfLesionModel, TissueModel, TissueReading

TICK_S: Final = 0.01
"""Power stage, tissue and telemetry period (100 Hz)."""
STATUS_EVERY_TICKS: Final = 10
"""STATUS and HEARTBEAT at 10 Hz."""
ELECTRODE_INFO_EVERY_TICKS: Final = 100
"""ELECTRODE_INFO at 1 Hz (and at once on a change or a new connection)."""
HOST_HEARTBEAT_TIMEOUT_S: Final = 0.25
MAX_CATCH_UP_TICKS: Final = 50
"""After a stall longer than this (0.5 s) the simulator skips ticks rather than flood the link (no tissue, power
stage or telemetry for them; the fault schedule still passes through them)."""
FIRMWARE_VERSION: Final = 0x0100  # 1.0
OPEN_THERMOCOUPLE_CENTI_C: Final = 32767
"""An open thermocouple drives its amplifier to full scale."""
OPEN_CIRCUIT_DECI_OHM: Final = 0xFFFF
_EPS_S: Final = 1e-9

SELF_TEST_ALL_PASSED: Final = int(SelfTestCheck.required((1, 2, 3, 4)))


@dataclass(frozen=True, slots=True)
class HardwareCaps:
    """The generator's own limits, applied whatever the host asks (defence in depth)."""

    max_power_w: float = 50.0
    max_voltage_v: float = 100.0
    max_current_a: float = 1.0
    max_pulse_duty: float = 0.5
    max_stim_amplitude_mv: int = 10_000
    max_stim_frequency_deci_hz: int = 2_000
    max_stim_width_us: int = 3_000
    max_pump_flow_deci_ml_min: int = 1_000


DEFAULT_ELECTRODE: Final = ElectrodeSlot(
    model_id=1, gauge=20, tip_length_deci_mm=100, flags=int(ElectrodeFlag.THERMOCOUPLE_FITTED)
)
NO_ELECTRODE: Final = ElectrodeSlot(0, 0, 0, 0)


def lumped_tissue(electrode: ElectrodeSlot) -> TissueModel:
    """A quick thermal response, the same whatever the electrode: for tests, and for a simulator process that
    must take next to no CPU from the host it shares a machine with."""
    return LumpedTissue()


def physical_tissue(electrode: ElectrodeSlot) -> TissueModel:
    """The finite-difference tissue model around a plugged-in electrode (its gauge, tip and cooling); a lumped
    one on an empty channel. Its kernels compile on first use: ``sim.tissue.warm_up_kernels()`` first."""
    if not electrode.connected:
        return LumpedTissue()
    return RfLesionModel.for_electrode(electrode.gauge, electrode.tip_length_mm, electrode.cooled)


@dataclass
class SimCounters:
    """What the simulator did besides parsing; printed by ``rfa sim`` next to the parser counters."""

    frames_sent: int = 0
    frames_unsent_no_host: int = 0
    commands: int = 0
    acks_refused: int = 0
    watchdog_trips: int = 0
    ticks: int = 0
    ticks_skipped: int = 0
    connections: int = 0
    link_losses: int = 0
    frames_ignored: int = 0
    """Frames from the host dropped unread by the ``commands_ignored`` fault."""

    def as_dict(self) -> dict[str, int]:
        return {f.name: getattr(self, f.name) for f in fields(self)}


@dataclass
class _Channel:
    """One electrode channel: what it is told to do, and what it measured on the last tick."""

    tissue: TissueModel
    electrode: ElectrodeSlot
    mode: OutputMode | None = None
    """RF mode while RF is on, ``None`` while off."""
    setpoint: int = 0
    pulse_width_us: int = 0
    pulse_rate_deci_hz: int = 0
    stim: Stim | None = None
    reading: TissueReading = field(default_factory=lambda: TissueReading(37.0, 0.0))
    voltage_v: float = 0.0
    current_a: float = 0.0
    power_w: float = 0.0
    frozen_tip_c: float | None = None

    @property
    def output_on(self) -> bool:
        return self.mode is not None or self.stim is not None

    def off(self) -> None:
        self.mode = None
        self.stim = None


class SimGenerator:
    """A simulated 4-channel RF generator speaking the wire protocol on ``transport``.

    ``transport`` is the device end (``memory_pair()[1]`` in lockstep tests, a pty or socket in the
    server); it may be ``None`` while no host is connected and swapped with :meth:`attach`. Tissue per
    channel comes from ``tissue_factory(electrode)``, so each channel's physics matches the electrode
    plugged into it and a physical model can replace the lumped one.
    """

    def __init__(
        self,
        transport: Transport | None,
        clock: Clock,
        *,
        seed: int = 0,
        tissue_factory: Callable[[ElectrodeSlot], TissueModel] = lumped_tissue,
        caps: HardwareCaps | None = None,
        electrodes: Iterable[ElectrodeSlot] | None = None,
        faults: Iterable[Fault] = (),
        boot_s: float = 0.1,
        self_test_s: float = 0.3,
        noise: bool = True,
    ) -> None:
        self.clock = clock
        self.caps = caps or HardwareCaps()
        self._rng = np.random.default_rng(seed)
        self._noise = noise
        self._boot_s = boot_s
        self._self_test_s = self_test_s
        slots = list(electrodes) if electrodes is not None else [DEFAULT_ELECTRODE] * N_CHANNELS
        if len(slots) != N_CHANNELS:
            raise ValueError(f"need {N_CHANNELS} electrode slots, got {len(slots)}")
        self._plugged = slots
        self.channels = [_Channel(tissue_factory(slot), slot) for slot in slots]
        self.faults: list[Fault] = list(faults)
        self._active_faults: set[Fault] = set()
        self._faults_followed_to_s = -math.inf
        self.counters = SimCounters()
        self.parser_stats = ParserStats()
        self._encoder = FrameEncoder()
        self._parser = FrameParser()
        self._next_tick = 0
        self._last_host_heartbeat: float | None = None
        self._self_test_due: float | None = None
        self._electrodes_changed = False
        self.fault_bits = 0
        self.pump_on = False
        self.pump_flow_deci_ml_min = 0
        self.transport: Transport | None = None
        self.link_loss: LinkError | None = None
        """Why the last host's transport was dropped (its read or write failed), for the simulator's console."""
        self.origin = clock.now()
        """The generator's time zero: of fault-script times, TELEMETRY's generator time, the ticks. Taken once
        it is built (the frame parser's compilation and the tissue models can take seconds on a cold numba
        cache), and taken again by :meth:`start` when it starts serving."""
        if transport is not None:
            self.attach(transport)

    def start(self) -> None:
        """Count the generator's time from now: the server calls this as it starts serving, once everything around
        the generator is built, so that a fault scripted at 5 s comes 5 s after the URL is published whatever the
        set-up took (a cold numba cache took seconds, and the fault was past when the first host connected).
        Only before the first tick: ``RuntimeError`` after (its time has begun)."""
        if self._next_tick:
            raise RuntimeError("the simulated generator has already run: its time cannot start again")
        self.origin = self.clock.now()

    # -- connection ----------------------------------------------------------------------------------
    def attach(self, transport: Transport) -> None:
        """Start talking to a (new) host: a fresh parser, cumulative counters, ELECTRODE_INFO at once."""
        self.transport = transport
        self._parser = FrameParser()
        self._parser.stats = self.parser_stats
        self.counters.connections += 1
        self._electrodes_changed = True

    def detach(self) -> None:
        """Forget the host (its cable was pulled); the generator keeps running and its watchdog acts."""
        self.transport = None

    # -- fault injection -----------------------------------------------------------------------------
    def inject(self, fault: Fault) -> None:
        """Schedule ``fault`` (its ``at_s`` counts from the generator's start)."""
        self.faults.append(fault)

    # -- observation ---------------------------------------------------------------------------------
    @property
    def elapsed_s(self) -> float:
        return self.clock.now() - self.origin

    @property
    def state(self) -> GeneratorState:
        if self.fault_bits:
            return GeneratorState.FAULT
        if self._next_tick * TICK_S < self._boot_s:
            return GeneratorState.BOOT
        if any(ch.output_on for ch in self.channels):
            return GeneratorState.OUTPUT
        return GeneratorState.IDLE

    @property
    def last_host_heartbeat(self) -> float | None:
        """When the last host HEARTBEAT arrived (clock time), or ``None`` if none has."""
        return self._last_host_heartbeat

    def host_silent_s(self, now: float) -> float:
        """Seconds since the last host heartbeat (since the generator started if none has come)."""
        last = self.origin if self._last_host_heartbeat is None else self._last_host_heartbeat
        return now - last

    def counters_dict(self) -> dict[str, int]:
        """Parser counters (host → generator) and simulator counters, for printing."""
        return {**self.parser_stats.as_dict(), **self.counters.as_dict()}

    # -- the loop ------------------------------------------------------------------------------------
    def step(self) -> None:
        """Handle what the host sent, then run every tick due by ``clock.now()``."""
        now = self.clock.now()
        self._receive(now)
        due = math.floor((now - self.origin) / TICK_S + 1e-6)
        if due - self._next_tick >= MAX_CATCH_UP_TICKS:  # the fault schedule still passes through the skip
            skipped = due - self._next_tick - MAX_CATCH_UP_TICKS + 1
            self.counters.ticks_skipped += skipped
            self._next_tick += skipped
        while self._next_tick <= due:
            self._tick(self._next_tick)
            self._next_tick += 1

    def advance(self, dt_s: float) -> None:
        """Advance the generator's own ``SimClock`` by ``dt_s`` tick by tick (simulator-only tests)."""
        if not isinstance(self.clock, SimClock):
            raise TypeError("advance() needs a SimClock; in real time call step() from the loop")
        end = self.clock.now() + dt_s
        while self.clock.now() + TICK_S <= end + _EPS_S:
            self.clock.advance(TICK_S)
            self.step()
        self.clock.sleep_until(end)
        self.step()

    # -- receiving -----------------------------------------------------------------------------------
    def _receive(self, now: float) -> None:
        if self.transport is None:
            return
        try:
            data = self.transport.read()
        except LinkError as exc:
            self._lose_link(exc)
            return
        if data:
            frames = self._parser.feed(data)
            if any(f.kind is FaultKind.COMMANDS_IGNORED for f in self._active_faults):
                self.counters.frames_ignored += len(frames)
                return
            for frame in frames:
                self._handle(frame.seq, frame.msg, now)

    def _handle(self, seq: int, msg: Message, now: float) -> None:
        if isinstance(msg, Heartbeat):
            self._last_host_heartbeat = now
            return
        self.counters.commands += 1
        if isinstance(msg, OutputOff):
            result = self._output_off(msg.channel_mask, commanded=True)
        elif isinstance(msg, SetOutput):
            result = self._set_output(msg, now)
        elif isinstance(msg, Stim):
            result = self._stim(msg, now)
        elif isinstance(msg, Pump):
            result = self._pump(msg)
        elif isinstance(msg, SelfTest) and msg.phase == 0:
            result = self._start_self_test(now)
        else:  # a generator → host message sent the wrong way
            result = AckResult.BAD_PARAMETER
        if result != AckResult.OK:
            self.counters.acks_refused += 1
        self._send(Ack(msg.MSG_ID, seq, int(result)))

    def _host_alive(self, now: float) -> bool:
        last = self._last_host_heartbeat
        return last is not None and now - last < HOST_HEARTBEAT_TIMEOUT_S - _EPS_S

    def _channel_refuses(self, index: int) -> bool:
        ch = self.channels[index]
        kinds = self._active_kinds(index)
        return not ch.electrode.connected or FaultKind.CHANNEL_FAULT in kinds

    def _output_off(self, mask: int, *, commanded: bool = False) -> AckResult:
        """Output off on the channels of ``mask``; ``commanded``: by the host's OUTPUT_OFF, which a stuck
        output stage ignores (its own watchdog and faults go through another path)."""
        def stuck(index: int) -> bool:
            return commanded and FaultKind.OUTPUT_STUCK in self._active_kinds(index)

        for i, ch in enumerate(self.channels):
            if not mask & (1 << i) or stuck(i):
                continue
            if ch.mode is OutputMode.RF_BIPOLAR and not stuck(i ^ 1):  # a pair goes off together
                self.channels[i ^ 1].mode = None
            ch.off()
        return AckResult.OK

    def _set_output(self, msg: SetOutput, now: float) -> AckResult:
        mask = msg.channel_mask
        if mask == 0 or mask & ~ALL_CHANNELS:
            return AckResult.BAD_PARAMETER
        try:
            mode = OutputMode(msg.mode)
        except ValueError:
            return AckResult.BAD_PARAMETER
        selected = [i for i in range(N_CHANNELS) if mask & (1 << i)]
        caps = self.caps
        if mode is OutputMode.RF_PULSED:
            duty = msg.pulse_width_us * 1e-6 * msg.pulse_rate_deci_hz / 10.0
            if msg.pulse_width_us == 0 or msg.pulse_rate_deci_hz == 0 or duty > caps.max_pulse_duty:
                return AckResult.BAD_PARAMETER
            if any(msg.setpoints[i] / 100.0 > caps.max_voltage_v for i in selected):
                return AckResult.REFUSED_LIMIT
        else:
            if mode is OutputMode.RF_BIPOLAR and any(not mask & (1 << (i ^ 1)) for i in selected):
                return AckResult.BAD_PARAMETER  # both electrodes of a pair, or neither
            if any(msg.setpoints[i] / 100.0 > caps.max_power_w for i in selected):
                return AckResult.REFUSED_LIMIT
        if (self.state in (GeneratorState.BOOT, GeneratorState.FAULT) or not self._host_alive(now)
                or self._self_test_due is not None):
            return AckResult.REFUSED_STATE
        if any(self._channel_refuses(i) or self.channels[i].stim is not None for i in selected):
            return AckResult.REFUSED_STATE
        for i in selected:
            ch = self.channels[i]
            ch.mode = mode
            ch.setpoint = msg.setpoints[i]
            ch.pulse_width_us = msg.pulse_width_us
            ch.pulse_rate_deci_hz = msg.pulse_rate_deci_hz
        return AckResult.OK

    def _stim(self, msg: Stim, now: float) -> AckResult:
        mask = msg.channel_mask
        if mask == 0 or mask & ~ALL_CHANNELS:
            return AckResult.BAD_PARAMETER
        selected = [i for i in range(N_CHANNELS) if mask & (1 << i)]
        if msg.amplitude_mv == 0:
            for i in selected:
                self.channels[i].stim = None
            return AckResult.OK
        caps = self.caps
        if (msg.frequency_deci_hz == 0 or msg.pulse_width_us == 0
                or msg.frequency_deci_hz > caps.max_stim_frequency_deci_hz
                or msg.pulse_width_us > caps.max_stim_width_us):
            return AckResult.BAD_PARAMETER
        if msg.amplitude_mv > caps.max_stim_amplitude_mv:
            return AckResult.REFUSED_LIMIT
        if (self.state in (GeneratorState.BOOT, GeneratorState.FAULT) or not self._host_alive(now)
                or any(self._channel_refuses(i) or self.channels[i].mode is not None for i in selected)):
            return AckResult.REFUSED_STATE
        for i in selected:
            self.channels[i].stim = msg
        return AckResult.OK

    def _pump(self, msg: Pump) -> AckResult:
        if msg.on not in (0, 1):
            return AckResult.BAD_PARAMETER
        if msg.flow_deci_ml_min > self.caps.max_pump_flow_deci_ml_min:
            return AckResult.REFUSED_LIMIT
        self.pump_on = bool(msg.on)
        self.pump_flow_deci_ml_min = msg.flow_deci_ml_min
        flow_ml_min = msg.flow_deci_ml_min / 10.0 if msg.on else 0.0
        for ch in self.channels:
            if ch.electrode.cooled and isinstance(ch.tissue, CooledTissue):
                ch.tissue.set_cooling(flow_ml_min)
        return AckResult.OK

    def _start_self_test(self, now: float) -> AckResult:
        if any(ch.output_on for ch in self.channels) or self._self_test_due is not None:
            return AckResult.REFUSED_STATE
        self._self_test_due = now + self._self_test_s
        return AckResult.OK

    def _self_test_bitmap(self) -> int:
        """A channel passes with an electrode, a working thermocouple and no channel fault."""
        bits = SelfTestCheck.MEASUREMENT | SelfTestCheck.WATCHDOG
        if not self.fault_bits:
            bits |= SelfTestCheck.POWER_STAGE
        for i, ch in enumerate(self.channels):
            kinds = self._active_kinds(i)
            tc_ok = not kinds & {FaultKind.THERMOCOUPLE_OPEN, FaultKind.THERMOCOUPLE_FROZEN}
            if ch.electrode.connected and tc_ok and FaultKind.CHANNEL_FAULT not in kinds:
                bits |= SelfTestCheck(SelfTestCheck.CHANNEL_1 << i)
        return int(bits)

    # -- sending -------------------------------------------------------------------------------------
    def _send(self, msg: Message) -> None:
        if self.transport is None:
            self.counters.frames_unsent_no_host += 1
            return
        _, frame = self._encoder.encode(msg)
        try:
            self.transport.write(frame)
        except LinkError as exc:
            self._lose_link(exc)
            return
        self.counters.frames_sent += 1

    def _lose_link(self, exc: LinkError) -> None:
        self.counters.link_losses += 1
        self.link_loss = exc
        self.detach()

    # -- the tick ------------------------------------------------------------------------------------
    def _runaway(self, index: int) -> float:
        """The power stage's gain: 1 when regulating, the fault's factor while a runaway is injected."""
        return max((f.magnitude for f in self._active_faults
                    if f.channel == index + 1 and f.kind is FaultKind.POWER_RUNAWAY), default=1.0)

    def _stim_gain(self, index: int) -> float:
        """The stimulator's gain: 1 when it delivers what was commanded, the fault's factor while injected."""
        return next((f.magnitude for f in self._active_faults
                     if f.channel == index + 1 and f.kind is FaultKind.STIM_WEAK), 1.0)

    def _active_kinds(self, index: int) -> set[FaultKind]:
        return {f.kind for f in self._active_faults if f.channel == index + 1}

    def _follow_fault_schedule(self, t_s: float) -> None:
        """Bring the faults in effect up to ``t_s`` (seconds from the origin) through every start and end of a fault
        since the last tick, not only at this tick: a fault that began and ended between two ticks, or within the
        ticks skipped after a stall (which run no tissue, power stage or telemetry), is still applied once, and
        what its onset did stands (output off for ``generator_fault``, ``channel_fault`` and
        ``electrode_removed``; an ELECTRODE_INFO for the electrode that went and came back)."""
        since, self._faults_followed_to_s = self._faults_followed_to_s, t_s
        edges_s = {edge for f in self.faults for edge in f.edges_s if since < edge < t_s}
        for edge_s in sorted(edges_s):
            self._update_faults(edge_s)
        self._update_faults(t_s)

    def _update_faults(self, t_s: float) -> None:
        active = {f for f in self.faults if f.active_at(t_s)}
        if active == self._active_faults:
            return
        for f in active - self._active_faults:
            if f.kind is FaultKind.THERMOCOUPLE_FROZEN:
                self.channels[f.channel - 1].frozen_tip_c = self.channels[f.channel - 1].reading.tip_temp_c
        self._active_faults = active
        self.fault_bits = 0
        for f in active:
            if f.kind is FaultKind.GENERATOR_FAULT:
                self.fault_bits |= int(f.magnitude)
        for i, ch in enumerate(self.channels):
            kinds = self._active_kinds(i)
            electrode = NO_ELECTRODE if FaultKind.ELECTRODE_REMOVED in kinds else self._plugged[i]
            if electrode != ch.electrode:
                ch.electrode = electrode
                self._electrodes_changed = True
            if FaultKind.THERMOCOUPLE_FROZEN not in kinds:
                ch.frozen_tip_c = None
            if self._channel_refuses(i):
                self._output_off(1 << i)
        if self.fault_bits:
            self._output_off(ALL_CHANNELS)

    def _tick(self, n: int) -> None:
        t = self.origin + n * TICK_S
        self.counters.ticks += 1
        self._follow_fault_schedule(t - self.origin)
        if any(ch.output_on for ch in self.channels) and not self._host_alive(t):
            self.counters.watchdog_trips += 1
            self._output_off(ALL_CHANNELS)
        self._power_stage()
        for ch in self.channels:
            ch.reading = ch.tissue.step(TICK_S, ch.power_w)
        gen_time_us = round((t - self.origin) * 1e6)
        self._send(Telemetry(gen_time_us, self._measure()))
        if self._self_test_due is not None and t >= self._self_test_due - _EPS_S:
            self._self_test_due = None
            self._send(SelfTest(1, self._self_test_bitmap()))
        if n % STATUS_EVERY_TICKS == 0:
            state = int(self.state)
            self._send(Status(state, self.fault_bits, FIRMWARE_VERSION))
            self._send(Heartbeat(state, (gen_time_us // 1000) & 0xFFFFFFFF))
        if self._electrodes_changed or n % ELECTRODE_INFO_EVERY_TICKS == 0:
            self._electrodes_changed = False
            slots = tuple(ch.electrode for ch in self.channels)
            self._send(ElectrodeInfo((slots[0], slots[1], slots[2], slots[3])))

    def _load_ohm(self, index: int) -> float:
        """The impedance the power stage drives: the tissue's, as changed by impedance faults."""
        z = self.channels[index].tissue.impedance_ohm
        for f in self._active_faults:
            if f.channel == index + 1:
                if f.kind is FaultKind.IMPEDANCE_SPIKE:
                    z += f.magnitude
                elif f.kind is FaultKind.IMPEDANCE_SHORT:
                    z = f.magnitude
        return max(z, 0.1)

    def _constant_power(self, power_w: float, load_ohm: float) -> tuple[float, float]:
        """Voltage and current for ``power_w`` into ``load_ohm``, within voltage and current compliance."""
        caps = self.caps
        voltage = min(math.sqrt(max(power_w, 0.0) * load_ohm), caps.max_voltage_v)
        current = min(voltage / load_ohm, caps.max_current_a)
        return current * load_ohm, current

    def _power_stage(self) -> None:
        for ch in self.channels:
            ch.voltage_v = ch.current_a = ch.power_w = 0.0
        for i, ch in enumerate(self.channels):
            if not ch.electrode.connected:
                continue
            load = self._load_ohm(i)
            if ch.mode is OutputMode.RF_CONTINUOUS:
                ch.voltage_v, ch.current_a = self._constant_power(ch.setpoint / 100.0 * self._runaway(i), load)
                ch.power_w = ch.voltage_v * ch.current_a
            elif ch.mode is OutputMode.RF_PULSED:
                # Telemetry reports the pulse's peak voltage and current and the time-averaged power,
                # which is what heats the tissue.
                duty = ch.pulse_width_us * 1e-6 * ch.pulse_rate_deci_hz / 10.0
                peak_v = min(ch.setpoint / 100.0 * self._runaway(i), self.caps.max_voltage_v)
                current = min(peak_v / load, self.caps.max_current_a)
                ch.voltage_v, ch.current_a = current * load, current
                ch.power_w = ch.voltage_v * current * duty
            elif ch.mode is OutputMode.RF_BIPOLAR and i % 2 == 0:
                # The pair's current flows in series through both electrodes' tissue; the first
                # channel's setpoint is the pair's power and each side heats by I^2 Z_side.
                mate = self.channels[i + 1]
                load_mate = self._load_ohm(i + 1)
                gain = max(self._runaway(i), self._runaway(i + 1))  # one power stage drives the pair
                voltage, current = self._constant_power(ch.setpoint / 100.0 * gain, load + load_mate)
                for side, z in ((ch, load), (mate, load_mate)):
                    side.voltage_v, side.current_a, side.power_w = voltage, current, current * current * z
            elif ch.stim is not None:
                stim = ch.stim
                voltage = min(stim.amplitude_mv / 1000.0 * self._stim_gain(i), self.caps.max_voltage_v)
                duty = stim.pulse_width_us * 1e-6 * stim.frequency_deci_hz / 10.0
                ch.voltage_v, ch.current_a = voltage, voltage / load
                ch.power_w = voltage * voltage / load * duty

    def _measure(self) -> tuple[ChannelTelemetry, ChannelTelemetry, ChannelTelemetry, ChannelTelemetry]:
        noise = self._rng.standard_normal((N_CHANNELS, 4)) if self._noise else np.zeros((N_CHANNELS, 4))
        out: list[ChannelTelemetry] = []
        for i, ch in enumerate(self.channels):
            kinds = self._active_kinds(i)
            flags = 0
            if ch.output_on:
                flags |= TelemetryFlag.OUTPUT_ON
            if FaultKind.CHANNEL_FAULT in kinds:
                flags |= TelemetryFlag.CHANNEL_FAULT
            if not ch.electrode.connected:
                out.append(ChannelTelemetry(0, OPEN_CIRCUIT_DECI_OHM, 0, 0, 0, int(flags)))
                continue
            flags |= TelemetryFlag.ELECTRODE_CONNECTED
            if FaultKind.THERMOCOUPLE_OPEN in kinds:
                flags |= TelemetryFlag.THERMOCOUPLE_OPEN
                tip_centi = OPEN_THERMOCOUPLE_CENTI_C
            elif ch.frozen_tip_c is not None:
                tip_centi = round(ch.frozen_tip_c * 100)
            else:
                tip_centi = round((ch.reading.tip_temp_c + 0.05 * noise[i, 0]) * 100)
            impedance = self._load_ohm(i) * (1.0 + 0.002 * noise[i, 1])
            voltage = ch.voltage_v * (1.0 + 0.002 * noise[i, 2]) if ch.voltage_v else 0.0
            current = ch.current_a * (1.0 + 0.002 * noise[i, 3]) if ch.current_a else 0.0
            # Continuous power is measured as V x I; pulsed and bipolar report the delivered average.
            power = voltage * current if ch.mode is OutputMode.RF_CONTINUOUS else ch.power_w
            out.append(ChannelTelemetry(
                tip_temp_centi_c=_clamp(tip_centi, -32768, 32767),
                impedance_deci_ohm=_clamp(round(impedance * 10), 0, 0xFFFF),
                voltage_centi_v=_clamp(round(voltage * 100), 0, 0xFFFF),
                current_deci_ma=_clamp(round(current * 10_000), 0, 0xFFFF),
                power_centi_w=_clamp(round(power * 100), 0, 0xFFFF),
                flags=int(flags),
            ))
        return out[0], out[1], out[2], out[3]


def _clamp(value: int, low: int, high: int) -> int:
    return low if value < low else high if value > high else value
