"""The simulated generator on its own, in lockstep with a SimClock, seen from a minimal raw host.

The host here is an encoder and a parser on a memory pair, not the driver, so these tests pin the
simulator's behaviour to the contract independently of the driver (test_generator_driver.py covers
the two together).
"""

from __future__ import annotations

import argparse
import contextlib
import itertools
import math
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from firmware_bridge.clock import RealClock, SimClock
from firmware_bridge.errors import LinkError
from firmware_bridge.framing import Frame, FrameEncoder, FrameParser
from firmware_bridge.messages import (
    Ack,
    AckResult,
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
)
from firmware_bridge.transport import memory_pair
from sim import cli as sim_cli
from sim.generator import SELF_TEST_ALL_PASSED, TICK_S, Fault, FaultKind, SimGenerator, load_faults
from sim.generator.device import DEFAULT_ELECTRODE, MAX_CATCH_UP_TICKS, NO_ELECTRODE, OPEN_THERMOCOUPLE_CENTI_C
from sim.link_faults import LinkFaultConfig, load_link_faults
from sim.lockstep import Realtime
from sim.server import Server, open_endpoint
from sim.tissue import LumpedTissue, RfLesionModel
from tests.test_messages import STRATEGIES

HOST_HEARTBEAT_S = 0.1


class LockstepHost:
    """Advance the shared SimClock one tick, step the simulator, then act as the host."""

    def __init__(self, *, seed: int = 0, heartbeats: bool = True, **sim_kwargs: Any) -> None:
        self.clock = SimClock()
        self.host_end, device_end = memory_pair("sim-test")
        self.sim = SimGenerator(device_end, self.clock, seed=seed, **sim_kwargs)
        self.encoder = FrameEncoder()
        self.parser = FrameParser()
        self.heartbeats = heartbeats
        self.received: list[tuple[float, Frame]] = []
        self._next_heartbeat = 0.0
        self.sim.step()
        self._host()

    def send(self, msg: Message) -> int:
        seq, frame = self.encoder.encode(msg)
        self.host_end.write(frame)
        return seq

    def _host(self) -> None:
        now = self.clock.now()
        for frame in self.parser.feed(self.host_end.read()):
            self.received.append((now, frame))
        if self.heartbeats and now >= self._next_heartbeat - 1e-9:
            self.send(Heartbeat(1, int(now * 1000)))
            self._next_heartbeat += HOST_HEARTBEAT_S

    def run(self, seconds: float) -> None:
        for _ in range(round(seconds / TICK_S)):
            self.clock.advance(TICK_S)
            self.sim.step()
            self._host()

    def command(self, msg: Message) -> AckResult:
        """Send ``msg``, run until its ACK arrives (at most 50 ms), return the result."""
        seq = self.send(msg)
        for _ in range(5):
            self.run(TICK_S)
            for _, frame in self.received:
                if isinstance(frame.msg, Ack) and (frame.msg.acked_msg_id, frame.msg.acked_seq) == (
                        msg.MSG_ID, seq):
                    return AckResult(frame.msg.result)
        raise AssertionError(f"no ACK for {msg}")

    def of_type(self, cls: type[Message]) -> list[Message]:
        return [f.msg for _, f in self.received if isinstance(f.msg, cls)]

    def telemetry(self) -> list[Telemetry]:
        return [m for m in self.of_type(Telemetry) if isinstance(m, Telemetry)]

    def last_telemetry(self) -> Telemetry:
        return self.telemetry()[-1]


def continuous(mask: int, watts: float) -> SetOutput:
    centi = round(watts * 100)
    return SetOutput(mask, OutputMode.RF_CONTINUOUS, (centi, centi, centi, centi))


@pytest.fixture
def host() -> LockstepHost:
    h = LockstepHost()
    h.run(0.2)  # past boot
    return h


# -- rates -------------------------------------------------------------------------------------------
def test_message_rates_in_one_simulated_second(host: LockstepHost) -> None:
    host.received.clear()
    host.run(1.0)
    assert len(host.of_type(Telemetry)) == 100
    assert len(host.of_type(Status)) == 10
    assert len(host.of_type(Heartbeat)) == 10
    assert len(host.of_type(ElectrodeInfo)) == 1
    times = [t.gen_time_us for t in host.telemetry()]
    assert all(b - a == 10_000 for a, b in itertools.pairwise(times))


def test_electrode_info_at_once_on_connect() -> None:
    h = LockstepHost()
    assert isinstance(h.received[0][1].msg, Telemetry)
    assert any(isinstance(f.msg, ElectrodeInfo) for _, f in h.received)


def test_boot_then_idle_in_status() -> None:
    h = LockstepHost()
    assert h.of_type(Status)[0] == Status(GeneratorState.BOOT, 0, 0x0100)
    h.run(0.2)
    assert h.of_type(Status)[-1] == Status(GeneratorState.IDLE, 0, 0x0100)


# -- commands and their ACKs -------------------------------------------------------------------------
host_commands = st.one_of(
    *(STRATEGIES[c] for c in (OutputOff, SetOutput, Stim, Pump, SelfTest, Telemetry, Ack)))


@given(st.lists(host_commands, min_size=1, max_size=12))
def test_every_command_gets_exactly_one_ack_in_order(commands: list[Message]) -> None:
    h = LockstepHost()
    h.run(0.2)
    h.received.clear()
    seqs = [(c.MSG_ID, h.send(c)) for c in commands]
    h.run(0.05)
    acks = [m for m in h.of_type(Ack) if isinstance(m, Ack)]
    assert [(a.acked_msg_id, a.acked_seq) for a in acks] == seqs
    assert all(a.result in set(AckResult) for a in acks)


@given(st.lists(STRATEGIES[SetOutput] | STRATEGIES[Stim], min_size=1, max_size=6))
def test_no_command_makes_the_generator_exceed_its_caps(commands: list[Message]) -> None:
    h = LockstepHost(noise=False)
    h.run(0.2)
    for c in commands:
        h.send(c)
        h.run(0.3)
    for t in h.telemetry():
        for ch in t.channels:
            assert ch.power_w <= 50.0 + 1e-9
            assert ch.voltage_v <= 100.0 + 1e-9
            assert ch.current_ma <= 1000.0 + 1e-9


@pytest.mark.parametrize(("msg", "result"), [
    (continuous(0x01, 50.01), AckResult.REFUSED_LIMIT),
    (SetOutput(0x01, OutputMode.RF_PULSED, (10_001, 0, 0, 0), 20_000, 20), AckResult.REFUSED_LIMIT),
    (SetOutput(0x01, 0, (100, 0, 0, 0)), AckResult.BAD_PARAMETER),
    (SetOutput(0x01, 4, (100, 0, 0, 0)), AckResult.BAD_PARAMETER),
    (continuous(0x00, 5), AckResult.BAD_PARAMETER),
    (continuous(0x10, 5), AckResult.BAD_PARAMETER),
    (SetOutput(0x01, OutputMode.RF_BIPOLAR, (500, 0, 0, 0)), AckResult.BAD_PARAMETER),
    (SetOutput(0x01, OutputMode.RF_PULSED, (4000, 0, 0, 0), 0, 20), AckResult.BAD_PARAMETER),
    (SetOutput(0x01, OutputMode.RF_PULSED, (4000, 0, 0, 0), 60_000, 100), AckResult.BAD_PARAMETER),
    (Stim(0x01, 500, 1000, 10_001), AckResult.REFUSED_LIMIT),
    (Stim(0x01, 0, 1000, 1000), AckResult.BAD_PARAMETER),
    (Pump(2, 100), AckResult.BAD_PARAMETER),
    (Pump(1, 1001), AckResult.REFUSED_LIMIT),
    (SelfTest(1, 0), AckResult.BAD_PARAMETER),
    (continuous(0x0F, 50.0), AckResult.OK),
    (OutputOff(0xFF), AckResult.OK),
])
def test_hardware_caps_and_parameter_checks(host: LockstepHost, msg: Message, result: AckResult) -> None:
    assert host.command(msg) == result


def test_output_refused_during_boot() -> None:
    h = LockstepHost()
    assert h.command(continuous(0x01, 5)) == AckResult.REFUSED_STATE


def test_output_refused_without_a_live_host_heartbeat() -> None:
    h = LockstepHost(heartbeats=False)
    h.run(0.2)
    assert h.command(continuous(0x01, 5)) == AckResult.REFUSED_STATE


def test_output_refused_in_fault_and_all_output_off() -> None:
    h = LockstepHost()
    h.run(0.2)
    assert h.command(continuous(0x0F, 5)) == AckResult.OK
    h.sim.inject(Fault(FaultKind.GENERATOR_FAULT, at_s=h.sim.elapsed_s, value=0x04))
    h.run(0.2)
    assert h.of_type(Status)[-1] == Status(GeneratorState.FAULT, 0x04, 0x0100)
    assert not any(ch.output_on for ch in h.last_telemetry().channels)
    assert h.command(continuous(0x01, 5)) == AckResult.REFUSED_STATE


def test_stim_and_rf_exclude_each_other_on_a_channel(host: LockstepHost) -> None:
    assert host.command(Stim(0x01, 20, 1000, 1000)) == AckResult.OK
    assert host.command(continuous(0x01, 5)) == AckResult.REFUSED_STATE
    assert host.command(Stim(0x01, 20, 1000, 0)) == AckResult.OK
    assert host.command(continuous(0x01, 5)) == AckResult.OK
    assert host.command(Stim(0x01, 20, 1000, 1000)) == AckResult.REFUSED_STATE


def test_pump_state_follows_commands(host: LockstepHost) -> None:
    assert host.command(Pump(1, 300)) == AckResult.OK
    assert (host.sim.pump_on, host.sim.pump_flow_deci_ml_min) == (True, 300)
    assert host.command(Pump(0, 0)) == AckResult.OK
    assert not host.sim.pump_on


def test_self_test_answers_with_the_bitmap(host: LockstepHost) -> None:
    assert host.command(SelfTest(0)) == AckResult.OK
    host.run(0.4)
    assert host.of_type(SelfTest) == [SelfTest(1, SELF_TEST_ALL_PASSED)]


def test_self_test_reports_a_faulty_channel() -> None:
    h = LockstepHost(faults=[Fault(FaultKind.THERMOCOUPLE_OPEN, at_s=0.0, channel=3)])
    h.run(0.2)
    h.command(SelfTest(0))
    h.run(0.4)
    assert h.of_type(SelfTest) == [SelfTest(1, SELF_TEST_ALL_PASSED & ~SelfTestCheck.CHANNEL_3)]


# -- power stage -------------------------------------------------------------------------------------
def test_continuous_power_into_the_load() -> None:
    h = LockstepHost(noise=False)
    h.run(0.2)
    h.command(continuous(0x01, 10.0))
    h.run(0.05)
    ch = h.last_telemetry().channels[0]
    z = ch.impedance_ohm
    assert ch.power_w == pytest.approx(10.0, abs=0.02)
    assert ch.voltage_v == pytest.approx(math.sqrt(10.0 * z), rel=0.01)
    assert ch.current_ma == pytest.approx(1000 * math.sqrt(10.0 / z), rel=0.01)
    assert ch.output_on and ch.electrode_connected


def test_voltage_compliance_limits_power_into_a_high_impedance() -> None:
    h = LockstepHost(noise=False)
    h.run(0.2)
    h.command(continuous(0x01, 50.0))  # 50 W into ~250 ohm needs 112 V; the stage stops at 100 V
    h.run(0.02)
    ch = h.last_telemetry().channels[0]
    assert ch.voltage_v == pytest.approx(100.0, abs=0.01)
    assert ch.power_w == pytest.approx(100.0**2 / ch.impedance_ohm, rel=0.01)


def test_pulsed_power_is_peak_power_times_duty() -> None:
    h = LockstepHost(noise=False)
    h.run(0.2)
    h.command(SetOutput(0x01, OutputMode.RF_PULSED, (4500, 0, 0, 0), 20_000, 20))  # 45 V, 20 ms at 2 Hz
    h.run(0.02)
    ch = h.last_telemetry().channels[0]
    assert ch.voltage_v == pytest.approx(45.0)
    assert ch.power_w == pytest.approx(45.0**2 / ch.impedance_ohm * 0.04, abs=0.01)


def test_bipolar_pair_drives_both_electrodes_in_series() -> None:
    h = LockstepHost(noise=False)
    h.run(0.2)
    assert h.command(SetOutput(0x03, OutputMode.RF_BIPOLAR, (2000, 0, 0, 0))) == AckResult.OK
    h.run(0.02)
    a, b, c, _ = h.last_telemetry().channels
    assert a.output_on and b.output_on and not c.output_on
    assert a.current_ma == b.current_ma
    assert a.power_w + b.power_w == pytest.approx(20.0, abs=0.05)
    assert host_command_turns_pair_off(h)


def host_command_turns_pair_off(h: LockstepHost) -> bool:
    h.command(OutputOff(0x02))
    h.run(0.02)
    a, b, *_ = h.last_telemetry().channels
    return not a.output_on and not b.output_on


def test_tip_temperature_rises_with_power_and_falls_after() -> None:
    h = LockstepHost()
    h.run(0.2)
    start = h.last_telemetry().channels[0].tip_temp_c
    h.command(continuous(0x01, 10.0))
    h.run(10.0)
    hot = h.last_telemetry().channels[0].tip_temp_c
    h.command(OutputOff())
    h.run(10.0)
    assert start < 38.0 < 60.0 < hot
    assert h.last_telemetry().channels[0].tip_temp_c < hot - 10


def test_tissue_comes_from_the_factory() -> None:
    made: list[tuple[ElectrodeSlot, LumpedTissue]] = []

    def factory(electrode: ElectrodeSlot) -> LumpedTissue:
        made.append((electrode, LumpedTissue(base_impedance_ohm=100.0)))
        return made[-1][1]

    h = LockstepHost(tissue_factory=factory, noise=False)
    assert len(made) == 4
    assert [electrode for electrode, _ in made] == [ch.electrode for ch in h.sim.channels]
    assert h.last_telemetry().channels[0].impedance_ohm == pytest.approx(100.0)


# -- watchdog ----------------------------------------------------------------------------------------
def test_watchdog_turns_output_off_250_ms_after_the_last_heartbeat(host: LockstepHost) -> None:
    host.command(continuous(0x0F, 5.0))
    host.run(0.5)
    host.heartbeats = False
    host.received.clear()
    host.run(0.5)
    now = host.sim.clock.now()
    last_heartbeat_seen = now - host.sim.host_silent_s(now)
    off = next(t for t in host.telemetry() if not t.channels[0].output_on)
    off_at = off.gen_time_us / 1e6 + host.sim.origin
    assert 0.25 - 1e-6 <= off_at - last_heartbeat_seen <= 0.26 + 1e-6
    assert host.sim.counters.watchdog_trips == 1
    assert not any(ch.output_on for ch in host.last_telemetry().channels)


def test_heartbeats_keep_output_on(host: LockstepHost) -> None:
    host.command(continuous(0x01, 5.0))
    host.run(5.0)
    assert host.last_telemetry().channels[0].output_on
    assert host.sim.counters.watchdog_trips == 0


# -- faults ------------------------------------------------------------------------------------------
def run_with_fault(fault: Fault, watts: float = 5.0) -> LockstepHost:
    h = LockstepHost(noise=False, faults=[fault])
    h.run(0.2)
    h.command(continuous(0x0F, watts))
    h.run(0.5)
    return h


def test_thermocouple_open() -> None:
    h = run_with_fault(Fault(FaultKind.THERMOCOUPLE_OPEN, at_s=0.5, channel=2))
    ch = h.last_telemetry().channels[1]
    assert ch.thermocouple_open and ch.tip_temp_centi_c == OPEN_THERMOCOUPLE_CENTI_C
    assert not h.last_telemetry().channels[0].thermocouple_open


def test_thermocouple_frozen_repeats_its_reading() -> None:
    h = run_with_fault(Fault(FaultKind.THERMOCOUPLE_FROZEN, at_s=0.4, channel=1), watts=20.0)
    h.run(1.0)
    readings = {t.channels[0].tip_temp_centi_c for t in h.telemetry()[-100:]}
    assert len(readings) == 1
    assert h.last_telemetry().channels[1].tip_temp_c > h.last_telemetry().channels[0].tip_temp_c


def test_impedance_spike_and_short_change_the_load() -> None:
    spike = run_with_fault(Fault(FaultKind.IMPEDANCE_SPIKE, at_s=0.5, channel=1, value=700.0))
    short = run_with_fault(Fault(FaultKind.IMPEDANCE_SHORT, at_s=0.5, channel=1))
    assert spike.last_telemetry().channels[0].impedance_ohm == pytest.approx(
        spike.last_telemetry().channels[1].impedance_ohm + 700.0, abs=1.0)
    assert short.last_telemetry().channels[0].impedance_ohm == pytest.approx(5.0)


def test_power_runaway_over_delivers_without_the_generator_noticing() -> None:
    h = run_with_fault(Fault(FaultKind.POWER_RUNAWAY, at_s=0.5, channel=3, value=1.8), watts=5.0)
    channels = h.last_telemetry().channels
    assert channels[2].power_w == pytest.approx(9.0, rel=0.01)
    assert channels[0].power_w == pytest.approx(5.0, rel=0.01)
    assert h.sim.fault_bits == 0, "a runaway is not a fault the generator reports"


def test_power_runaway_raises_a_pulsed_peak_voltage_and_a_bipolar_pairs_power() -> None:
    pulsed = LockstepHost(noise=False, faults=[Fault(FaultKind.POWER_RUNAWAY, at_s=0.5, channel=1, value=1.5)])
    pulsed.run(0.2)
    pulsed.command(SetOutput(0x01, OutputMode.RF_PULSED, (3000, 0, 0, 0), 20_000, 20))  # 30 V peak
    pulsed.run(0.2)
    assert pulsed.last_telemetry().channels[0].voltage_v == pytest.approx(30.0, rel=0.01)
    pulsed.run(0.3)
    assert pulsed.last_telemetry().channels[0].voltage_v == pytest.approx(45.0, rel=0.01)
    bipolar = run_with_fault(Fault(FaultKind.POWER_RUNAWAY, at_s=0.5, channel=2), watts=0.0)  # either side
    bipolar.command(SetOutput(0x03, OutputMode.RF_BIPOLAR, (500, 0, 0, 0)))  # 5 W for the pair
    bipolar.run(0.1)
    pair = bipolar.last_telemetry().channels
    assert pair[0].power_w + pair[1].power_w == pytest.approx(10.0, rel=0.01)


def test_stim_weak_under_delivers_the_stimulus_and_reports_what_it_delivers() -> None:
    h = LockstepHost(noise=False, faults=[Fault(FaultKind.STIM_WEAK, at_s=0.5, channel=2)])
    h.run(0.2)
    h.command(Stim(0x02, 20, 1000, 2000))  # motor test at 2 V on channel 2
    h.run(0.2)
    assert h.last_telemetry().channels[1].voltage_v == pytest.approx(2.0)
    h.run(0.2)
    assert h.last_telemetry().channels[1].voltage_v == pytest.approx(1.0)
    assert h.command(Stim(0x02, 20, 1000, 0)) == AckResult.OK
    assert h.command(Stim(0x01, 20, 1000, 2000)) == AckResult.OK  # only the faulted channel is weak
    h.run(0.1)
    assert h.last_telemetry().channels[0].voltage_v == pytest.approx(2.0)
    assert h.sim.fault_bits == 0, "a weak stimulus is not a fault the generator reports"


def test_a_stuck_output_stage_acknowledges_output_off_ignores_it_and_obeys_only_the_heartbeat_watchdog() -> None:
    h = run_with_fault(Fault(FaultKind.OUTPUT_STUCK, at_s=0.5, channel=2))
    assert h.command(OutputOff(0x0F)) is AckResult.OK
    h.run(1.0)
    on = [ch.output_on for ch in h.last_telemetry().channels]
    assert on == [False, True, False, False], "the other channels obey; channel 2 goes on delivering"
    assert h.last_telemetry().channels[1].power_w == pytest.approx(5.0, abs=0.5)
    h.heartbeats = False
    h.run(0.4)
    assert not any(ch.output_on for ch in h.last_telemetry().channels)
    assert h.sim.counters.watchdog_trips == 1


def test_a_generator_ignoring_commands_answers_nothing_and_its_starved_watchdog_cuts_output() -> None:
    h = run_with_fault(Fault(FaultKind.COMMANDS_IGNORED, at_s=0.7, duration_s=0.5))  # host heartbeats go on
    with pytest.raises(AssertionError, match="no ACK"):
        h.command(continuous(0x0F, 8.0))
    assert all(ch.power_w == pytest.approx(5.0, abs=0.5) for ch in h.last_telemetry().channels), "not applied"
    h.received.clear()
    h.run(0.25)  # 250 ms after the last heartbeat it took (at or before 0.7 s): its watchdog has acted
    assert not any(ch.output_on for ch in h.last_telemetry().channels)
    assert h.sim.counters.watchdog_trips == 1 and h.sim.counters.frames_ignored > 0
    assert h.of_type(Telemetry) and h.of_type(Status) and not h.of_type(Ack), "telemetry flows, nothing answered"
    h.run(0.5)  # the fault is over: commands are taken again
    assert h.command(continuous(0x0F, 5.0)) is AckResult.OK


def test_channel_fault_turns_that_channel_off_only() -> None:
    h = run_with_fault(Fault(FaultKind.CHANNEL_FAULT, at_s=0.5, channel=4, duration_s=0.1))
    t = next(t for t in h.telemetry() if t.gen_time_us == 550_000)  # during the fault
    assert t.channels[3].channel_fault and not t.channels[3].output_on and t.channels[0].output_on
    assert not h.last_telemetry().channels[3].channel_fault  # cleared; output stays off until asked


def test_electrode_removed_and_reconnected() -> None:
    removed = Fault(FaultKind.ELECTRODE_REMOVED, at_s=0.5, channel=2, duration_s=0.2)
    h = LockstepHost(noise=False, faults=[removed])
    h.run(0.45)
    h.received.clear()
    h.run(0.1)
    infos = [m for m in h.of_type(ElectrodeInfo) if isinstance(m, ElectrodeInfo)]
    assert len(infos) == 1 and not infos[0].electrodes[1].connected
    assert not h.last_telemetry().channels[1].electrode_connected
    assert h.command(continuous(0x02, 5.0)) == AckResult.REFUSED_STATE
    h.received.clear()
    h.run(0.2)
    infos = [m for m in h.of_type(ElectrodeInfo) if isinstance(m, ElectrodeInfo)]
    assert infos and infos[-1].electrodes[1].connected


def test_faults_come_from_the_script_file(tmp_path: Path) -> None:
    script = tmp_path / "faults.toml"
    script.write_text('[[fault]]\nkind = "impedance_short"\nat_s = 2.5\nchannel = 3\nduration_s = 1.0\n'
                      '[link]\ncorrupt_byte_prob = 0.001\nunplug = [[3.0, 0.5]]\n')
    assert load_faults(script) == [Fault(FaultKind.IMPEDANCE_SHORT, 2.5, 3, 1.0)]
    assert load_link_faults(script) == LinkFaultConfig(corrupt_byte_prob=0.001, unplug=((3.0, 0.5),))
    script.write_text('[[fault]]\nkind = "gremlins"\nat_s = 1\n')
    with pytest.raises(ValueError, match=r"fault\[0\]: kind: 'gremlins' is not a fault kind; the kinds are .*open"):
        load_faults(script)


@pytest.mark.parametrize("script", [
    '[[fault]]\nkind = "thermocouple_open"\nat_s = 1\nchannel = 5\n',
    '[link]\ndrop_byte_prob = 2.0\n',
    '[link]\nflakiness = 1\n',
    'not toml [',
    '[[faults]]\nkind = "thermocouple_open"\nat_s = 1\n',  # a misspelt table is refused, not ignored
    '[[fault]]\nkind = "thermocouple_open"\nat_s = nan\n',
    '[[fault]]\nkind = "thermocouple_open"\nat_s = 1\nduration_s = inf\n',
    '[[fault]]\nkind = "impedance_short"\nat_s = 1\nvalue = nan\n',
    '[link]\ndelay_s = nan\n',
    '[link]\nunplug = [[nan, 1.0]]\n',
    '[link]\nunplug = [[30.0]]\n',
    '[link]\ndelay_s = "0.1"\n',
    '[[fault]]\nkind = "thermocouple_open"\nat_s = "soon"\n',
    '[[fault]]\nkind = "thermocouple_open"\nat_s = true\n',  # float() would take it for 1 s
    '[[fault]]\nkind = "thermocouple_open"\nat_s = 1\nchannel = true\n',  # int() would take it for channel 1
    '[[fault]]\nkind = "thermocouple_open"\nat_s = 1\nchannel = 2.5\n',
    'fault = 3\n',
    'link = 5\n',
])
def test_rfa_sim_refuses_a_bad_fault_script(
    tmp_path: Path, script: str, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "faults.toml"
    path.write_text(script)
    assert sim_cli.main(["--faults", str(path), "--duration-s", "0.01"]) == sim_cli.EXIT_USAGE
    assert str(path) in capsys.readouterr().err


def test_rfa_sim_refuses_a_bad_serial_spec(capsys: pytest.CaptureFixture[str]) -> None:
    assert sim_cli.main(["--serial", "usb", "--duration-s", "0.01"]) == sim_cli.EXIT_USAGE
    assert "pty" in capsys.readouterr().err


def test_rfa_sim_prints_what_its_link_faults_did_to_the_bytes(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """`rfa sim --faults` with a [link] table damages the bytes a host gets, and counts each byte it touches, but
    the counters it printed were only its parser's and its own: what it corrupted, dropped, delayed or lost to an
    unplug was never shown, so the host's crc_errors had nothing to be set beside."""
    path = tmp_path / "link.toml"
    path.write_text("[link]\ncorrupt_byte_prob = 0.2\n")
    with socket.socket() as free:
        free.bind(("127.0.0.1", 0))
        port = free.getsockname()[1]
    received = bytearray()

    def host() -> None:
        deadline = time.monotonic() + 10.0
        while True:
            try:
                conn = socket.create_connection(("127.0.0.1", port), timeout=0.2)
                break
            except OSError:
                if time.monotonic() > deadline:
                    return
                time.sleep(0.02)
        with conn:
            while len(received) < 2000 and time.monotonic() < deadline:
                with contextlib.suppress(TimeoutError):
                    received.extend(conn.recv(4096))

    reader = threading.Thread(target=host, daemon=True)
    reader.start()
    assert sim_cli.main(["--serial", f"tcp:{port}", "--faults", str(path), "--duration-s", "1.5",
                         "--report-s", "100"]) == sim_cli.EXIT_OK
    reader.join(10.0)
    assert len(received) >= 2000
    final = capsys.readouterr().out.strip().splitlines()[-1]
    assert final.startswith("final counters: "), final
    counters = dict(item.split("=") for item in final.removeprefix("final counters: ").split())
    assert int(counters["bytes_corrupted"]) > 0, final
    assert {"bytes_dropped", "bytes_delayed", "bytes_lost_unplugged"} <= set(counters), final


# -- determinism, counters and time ------------------------------------------------------------------
def test_same_seed_same_bytes() -> None:
    def stream(seed: int) -> bytes:
        clock = SimClock()
        host_end, dev_end = memory_pair()
        sim = SimGenerator(dev_end, clock, seed=seed)
        sim.advance(0.5)
        return host_end.read()

    assert stream(7) == stream(7)
    assert stream(7) != stream(8)


def test_parser_counters_of_the_simulator_are_visible(host: LockstepHost) -> None:
    host.host_end.write(b"\x00\x01" + bytes([0xFD, 3, 0, 0x7F]) + b"\x00" * 5)
    host.run(0.02)
    stats = host.sim.counters_dict()
    assert stats["unknown_msg"] == 1 and stats["bytes_discarded"] == 11
    assert stats["frames_ok"] >= 1 and stats["ticks"] > 0


def test_a_stall_is_caught_up_and_a_long_one_skipped() -> None:
    clock = SimClock()
    host_end, dev_end = memory_pair()
    sim = SimGenerator(dev_end, clock)
    sim.step()
    clock.advance(0.2)  # the real-time loop was late by 200 ms: all 20 ticks still run
    sim.step()
    assert sim.counters.ticks == 21 and sim.counters.ticks_skipped == 0
    clock.advance(5.0)
    sim.step()
    # 500 ticks were due (21..520): the newest MAX_CATCH_UP_TICKS run, the rest are skipped
    assert sim.counters.ticks_skipped == 500 - MAX_CATCH_UP_TICKS
    assert sim.counters.ticks == 21 + MAX_CATCH_UP_TICKS
    parser = FrameParser()
    times = [f.msg.gen_time_us for f in parser.feed(host_end.read()) if isinstance(f.msg, Telemetry)]
    assert times == sorted(times) and times[-1] == 5_200_000


STALL_S = 3.0
"""A stall of the simulator's process: its first 2.5 s of ticks are skipped (MAX_CATCH_UP_TICKS)."""
OUTPUT_CUTTING = st.sampled_from([FaultKind.GENERATOR_FAULT, FaultKind.CHANNEL_FAULT, FaultKind.ELECTRODE_REMOVED])


def stalled_with_output_on(fault: Fault) -> LockstepHost:
    """Output on channel 1, then the simulator stalls for ``STALL_S`` while the host goes on (its heartbeat
    arrives during the stall); the generator catches up and the host reads what followed."""
    h = LockstepHost(noise=False, faults=[fault])
    h.run(0.2)
    assert h.command(continuous(0x01, 5.0)) is AckResult.OK
    h.send(Heartbeat(1, 0))
    h.clock.advance(STALL_S)
    h.received.clear()
    h.run(TICK_S)
    assert h.sim.counters.ticks_skipped > 200
    return h


@given(kind=OUTPUT_CUTTING, at_s=st.floats(0.5, 2.4), duration_s=st.floats(0.001, 0.3))
def test_a_fault_that_came_and_went_within_skipped_ticks_still_acted(kind: FaultKind, at_s: float,
                                                                      duration_s: float) -> None:
    """It turned output off, as on a generator that did not stall; output stays off until asked again."""
    h = stalled_with_output_on(Fault(kind, at_s=at_s, channel=1, duration_s=duration_s))
    telemetry = h.telemetry()
    assert telemetry and not any(t.channels[0].output_on for t in telemetry)
    assert h.sim.counters.watchdog_trips == 0, "the host's heartbeat arrived: output went off on the fault"


def test_output_goes_on_through_a_stall_that_no_fault_came_within() -> None:
    h = stalled_with_output_on(Fault(FaultKind.GENERATOR_FAULT, at_s=STALL_S + 1.0, duration_s=0.1))
    assert h.telemetry() and all(t.channels[0].output_on for t in h.telemetry())


def test_a_fault_shorter_than_a_tick_and_between_two_is_applied_once() -> None:
    h = run_with_fault(Fault(FaultKind.CHANNEL_FAULT, at_s=0.5021, channel=2, duration_s=0.005))
    assert not h.last_telemetry().channels[1].output_on and h.last_telemetry().channels[0].output_on


def slow_to_build(clock: SimClock, build_s: float) -> Callable[[ElectrodeSlot], LumpedTissue]:
    """A tissue factory that takes ``build_s`` of the clock in all, as compiling on a cold numba cache does."""
    def build(electrode: ElectrodeSlot) -> LumpedTissue:
        clock.advance(build_s / 4)
        return LumpedTissue()
    return build


def test_a_scripted_faults_time_counts_from_the_built_generator_not_from_the_start_of_its_building() -> None:
    clock = SimClock()
    sim = SimGenerator(None, clock, tissue_factory=slow_to_build(clock, 3.0),
                       faults=[Fault(FaultKind.GENERATOR_FAULT, at_s=2.0)])
    sim.advance(1.0)
    assert sim.elapsed_s == pytest.approx(1.0) and sim.state is GeneratorState.IDLE
    sim.advance(1.5)
    assert sim.state is GeneratorState.FAULT


def test_a_scripted_faults_time_counts_from_when_the_server_starts_serving() -> None:
    """Whatever the set-up took between building the generator and publishing its URL (the probe service, its
    models), a fault at 2 s comes 2 s into serving: the same script gives the same run on a cold cache."""
    clock = SimClock()
    sim = SimGenerator(None, clock, faults=[Fault(FaultKind.GENERATOR_FAULT, at_s=2.0)])
    clock.advance(3.0)
    endpoint = open_endpoint("tcp:0")
    try:
        Server(sim, endpoint, clock).serve(duration_s=1.0)
        assert sim.elapsed_s == pytest.approx(1.0, abs=0.02) and sim.state is GeneratorState.IDLE
        with pytest.raises(RuntimeError, match="already run"):
            sim.start()
    finally:
        endpoint.close()


def test_advance_needs_a_sim_clock() -> None:
    sim = SimGenerator(None, RealClock())
    with pytest.raises(TypeError):
        sim.advance(0.1)
    sim.step()
    assert sim.counters.frames_unsent_no_host > 0


@pytest.mark.realtime  # ten 1 ms steps within 50 ms of real time
def test_in_real_time_the_devices_step_on_their_own_thread_and_a_failure_is_a_lost_link() -> None:
    """Stepping the simulated devices in the loop's thread put the tissue model on its critical path."""
    stepped_on: list[str] = []
    failing = threading.Event()

    def generator() -> None:
        stepped_on.append(threading.current_thread().name)
        if failing.is_set():
            raise RuntimeError("tissue model diverged")

    clock = RealClock()
    pacer = Realtime(clock, [generator], tick_s=0.001)
    try:
        pacer.sleep_until(clock.now() + 0.05)
        assert len(stepped_on) >= 10 and set(stepped_on) == {"sim-devices"}
        failing.set()
        deadline = clock.now() + 2.0
        while pacer.failure is None and clock.now() < deadline:
            clock.sleep_until(clock.now() + 0.005)
        with pytest.raises(LinkError, match="in-process simulator stopped: RuntimeError: tissue model diverged"):
            pacer.sleep_until(clock.now())
    finally:
        pacer.close()


def test_rfa_sim_fits_the_electrode_it_is_told(capsys: pytest.CaptureFixture[str]) -> None:
    """``--electrode 18:10`` for the default genicular plan: every channel reports an 18 G, 10 mm electrode."""
    parser = argparse.ArgumentParser()
    sim_cli.add_arguments(parser)
    slots = sim_cli.electrodes(parser.parse_args(["--electrode", "18:10"]).electrode)
    assert {(slot.gauge, slot.tip_length_deci_mm, slot.connected) for slot in slots} == {(18, 100, True)}
    assert {slot.gauge for slot in sim_cli.electrodes(parser.parse_args([]).electrode)} == {20}
    for bad in ("18", "x:10", "18:0", "40:10"):
        with pytest.raises(SystemExit):
            parser.parse_args(["--electrode", bad])
        assert "--electrode" in capsys.readouterr().err


def test_rfa_sim_puts_the_tissue_it_is_told_at_each_electrode(capsys: pytest.CaptureFixture[str]) -> None:
    """``--tissue physical``: the finite-difference lesion model for the electrode plugged in, as ``rfa run``
    simulates it (lumped on a channel with no electrode); lumped by default."""
    parser = argparse.ArgumentParser()
    sim_cli.add_arguments(parser)
    lumped = sim_cli.TISSUES[parser.parse_args([]).tissue]
    physical = sim_cli.TISSUES[parser.parse_args(["--tissue", "physical"]).tissue]
    assert isinstance(lumped(DEFAULT_ELECTRODE), LumpedTissue)
    model = physical(DEFAULT_ELECTRODE)
    assert isinstance(model, RfLesionModel)
    assert isinstance(physical(NO_ELECTRODE), LumpedTissue)
    with pytest.raises(SystemExit):
        parser.parse_args(["--tissue", "liver"])
    assert "--tissue" in capsys.readouterr().err


def test_a_generator_on_physical_tissue_heats_its_tip_as_rfa_run_simulates_it() -> None:
    """The physical tissue behind the simulated generator: RF on, the tip warms from body temperature."""
    clock = SimClock()
    sim = SimGenerator(None, clock, seed=1, tissue_factory=sim_cli.TISSUES["physical"], noise=False)
    tissue = sim.channels[0].tissue
    assert isinstance(tissue, RfLesionModel)
    start_c = tissue.step(0.01, 0.0).tip_temp_c
    for _ in range(200):
        reading = tissue.step(0.01, 5.0)
    assert reading.tip_temp_c > start_c + 1.0


def test_rfa_sim_fits_an_electrode_per_channel_so_a_plan_with_two_kinds_runs_against_it() -> None:
    """docs/examples/bipolar-pulsed.toml plans 18 G 10 mm electrodes on channels 1-2 and a 20 G 5 mm one on 3, and
    `rfa sim --electrode` fitted one kind to every channel: that example could not run against the simulator process
    at all (electrode_mismatch on channel 1 or 3, whichever kind was chosen)."""
    parser = argparse.ArgumentParser()
    sim_cli.add_arguments(parser)
    args = parser.parse_args(["--electrode", "18:10", "--electrode", "3=20:5", "--electrode", "4=none"])
    slots = sim_cli.electrodes(args.electrode)
    assert [(s.gauge, s.tip_length_deci_mm) for s in slots] == [(18, 100), (18, 100), (20, 50), (0, 0)]
    assert slots[3] == NO_ELECTRODE
    assert sim_cli.electrodes(parser.parse_args([]).electrode) == [DEFAULT_ELECTRODE] * 4
    assert sim_cli.electrodes(parser.parse_args(["--electrode", "2=18:10"]).electrode)[:2] == [
        DEFAULT_ELECTRODE, replace(DEFAULT_ELECTRODE, gauge=18)]
    for bad in ("5=18:10", "0=18:10", "x=18:10", "3=18"):
        with pytest.raises(SystemExit):
            parser.parse_args(["--electrode", bad])
