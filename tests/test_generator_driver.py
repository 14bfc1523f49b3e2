"""The RfGenerator driver against the simulated generator, in lockstep on a memory pair and a SimClock.

Every test here runs in simulated time: ten simulated seconds cost a fraction of a wall second and the
same seed gives the same bytes, so the watchdog window can be asserted to the tick.
"""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from firmware_bridge.clock import SimClock
from firmware_bridge.errors import CapabilityError, LinkError
from firmware_bridge.framing import Frame, FrameEncoder, FrameParser
from firmware_bridge.generator import ACKS_KEPT, TELEMETRY_KEPT, OutputCapability, RfGenerator, Unanswered
from firmware_bridge.messages import (
    Ack,
    AckResult,
    ChannelTelemetry,
    GeneratorState,
    Heartbeat,
    Message,
    OutputMode,
    OutputOff,
    Pump,
    SelfTest,
    SetOutput,
    Stim,
    Telemetry,
)
from firmware_bridge.transport import MemoryTransport, Transport, memory_pair
from sim.generator import SELF_TEST_ALL_PASSED, TICK_S, SimGenerator
from sim.link_faults import FaultyTransport, LinkFaultConfig

IDLE_CHANNEL = ChannelTelemetry(3700, 2500, 0, 0, 0, 0)


class Lockstep:
    """One SimClock shared by the simulator and the driver; each tick steps the sim, then the host."""

    def __init__(self, *, device_wrap: type[FaultyTransport] | None = None,
                 link: LinkFaultConfig | None = None, seed: int = 0) -> None:
        self.clock = SimClock()
        self.host_end, self.device_end = memory_pair("driver-test")
        device: Transport = self.device_end
        if device_wrap is not None:
            device = device_wrap(self.device_end, self.clock, link or LinkFaultConfig(), seed=seed)
        self.device = device
        self.sim = SimGenerator(device, self.clock, seed=seed)
        self.driver = RfGenerator(self.host_end, self.clock)
        self.heartbeats = True
        self.sim.step()
        self.driver.service()

    def run(self, seconds: float) -> None:
        for _ in range(round(seconds / TICK_S)):
            self.clock.advance(TICK_S)
            self.sim.step()
            if self.heartbeats:
                self.driver.service()
            else:
                self.driver.poll()

    def ack(self, msg_id: int, seq: int) -> AckResult:
        self.run(2 * TICK_S)
        received = self.driver.ack_for(msg_id, seq)
        assert received is not None, f"no ACK for id {msg_id:#x} seq {seq}"
        return AckResult(received.msg.result)


@pytest.fixture
def link() -> Lockstep:
    ls = Lockstep()
    ls.run(0.2)
    return ls


def continuous(mask: int, watts: float) -> SetOutput:
    centi = round(watts * 100)
    return SetOutput(mask, OutputMode.RF_CONTINUOUS, (centi, centi, centi, centi))


def test_self_test_exchange(link: Lockstep) -> None:
    seq = link.driver.request_self_test()
    assert link.ack(SelfTest.MSG_ID, seq) == AckResult.OK
    link.run(0.4)
    result = link.driver.self_test_result
    assert result is not None and result.msg == SelfTest(1, SELF_TEST_ALL_PASSED)


def test_latest_messages_carry_their_arrival_time(link: Lockstep) -> None:
    link.run(1.0)
    now = link.clock.now()
    tel, status, hb, electrodes = (link.driver.telemetry, link.driver.status, link.driver.heartbeat,
                                   link.driver.electrodes)
    assert tel is not None and tel.arrived_at == pytest.approx(now)
    assert tel.msg.gen_time_us == pytest.approx((now - link.sim.origin) * 1e6, abs=1)
    assert status is not None and status.msg.state == GeneratorState.IDLE and now - status.arrived_at < 0.1
    assert hb is not None and electrodes is not None and electrodes.msg.electrodes[0].connected


def test_output_on_power_and_temperature_respond(link: Lockstep) -> None:
    cap = link.driver.claim_output_capability()
    seq = link.driver.set_output(cap, continuous(0x01, 10.0))
    assert link.ack(SetOutput.MSG_ID, seq) == AckResult.OK
    tel = link.driver.telemetry
    assert tel is not None
    start_c = tel.msg.channels[0].tip_temp_c
    link.run(10.0)
    tel = link.driver.telemetry
    assert tel is not None
    ch = tel.msg.channels[0]
    assert ch.output_on and ch.power_w == pytest.approx(10.0, rel=0.02)
    assert ch.tip_temp_c > start_c + 20.0
    assert link.sim.counters.watchdog_trips == 0


def test_the_host_heartbeat_keeps_its_period_and_resumes_after_a_gap_without_a_burst() -> None:
    clock = SimClock()
    host, device = memory_pair("heartbeat")
    driver = RfGenerator(host, clock)
    sent_at = []
    for tick in range(100):  # 1 s at 100 Hz, with the heartbeat not asked for between 0.3 s and 0.65 s
        clock.sleep_until(tick / 100)
        if not 30 <= tick < 65 and driver.keep_alive() is not None:
            sent_at.append(clock.now())
    assert sent_at == [0.0, 0.1, 0.2, 0.65, 0.75, 0.85, 0.95]
    assert device.read(), "they went on the wire"


def test_generator_turns_output_off_when_host_heartbeats_stop(link: Lockstep) -> None:
    cap = link.driver.claim_output_capability()
    link.driver.set_output(cap, continuous(0x0F, 5.0))
    link.run(0.5)
    link.heartbeats = False
    off_at = None
    for _ in range(50):
        link.run(TICK_S)
        tel = link.driver.telemetry
        assert tel is not None
        if not any(ch.output_on for ch in tel.msg.channels):
            off_at = link.sim.origin + tel.msg.gen_time_us / 1e6
            break
    assert off_at is not None
    now = link.clock.now()
    last_heartbeat = now - link.sim.host_silent_s(now)  # as the generator received it
    assert 0.25 - 1e-6 <= off_at - last_heartbeat <= 0.26 + 1e-6
    assert link.sim.counters.watchdog_trips == 1


def test_enabling_output_needs_the_one_capability(link: Lockstep) -> None:
    cap = link.driver.claim_output_capability()
    with pytest.raises(CapabilityError):
        link.driver.claim_output_capability()
    other = RfGenerator(memory_pair()[0], link.clock).claim_output_capability()
    with pytest.raises(CapabilityError):
        link.driver.set_output(other, continuous(0x01, 5.0))
    with pytest.raises(CapabilityError):
        link.driver.stim(None, Stim(0x01, 500, 1000, 1000))
    seq = link.driver.stim(None, Stim(0x01, 500, 1000, 0))  # stopping needs nothing
    assert link.ack(Stim.MSG_ID, seq) == AckResult.OK
    seq = link.driver.stim(cap, Stim(0x01, 500, 1000, 1000))
    assert link.ack(Stim.MSG_ID, seq) == AckResult.OK
    seq = link.driver.output_off()  # anyone may make the cart safer
    assert link.ack(OutputOff.MSG_ID, seq) == AckResult.OK


def test_pump_command_is_acked(link: Lockstep) -> None:
    seq = link.driver.pump(True, 250)
    assert link.ack(0x13, seq) == AckResult.OK
    assert link.sim.pump_on and link.sim.pump_flow_deci_ml_min == 250


def test_output_off_reaches_the_wire_before_the_listeners() -> None:
    events: list[str] = []

    class Recording(MemoryTransport):
        def write(self, data: bytes) -> None:
            events.append("wire")
            super().write(data)

    host_end, _ = memory_pair()
    recording = Recording(host_end.url, host_end._rx, host_end._tx)
    driver = RfGenerator(recording, SimClock())
    cap = driver.claim_output_capability()

    def listener(seq: int, msg: Message, t: float) -> None:
        events.append(type(msg).__name__)

    driver.on_sent(listener)
    driver.output_off()
    driver.set_output(cap, continuous(0x01, 1.0))
    assert events == ["wire", "OutputOff", "SetOutput", "wire"]


def test_received_listener_sees_every_frame(link: Lockstep) -> None:
    seen: list[Frame] = []
    link.driver.on_received(lambda frame, t: seen.append(frame))
    link.run(0.1)
    assert len(seen) == 10 + 2  # ten telemetry, one status, one heartbeat


def test_every_frame_is_taken_even_when_a_listener_fails_and_then_its_error_goes_on(link: Lockstep) -> None:
    """A failed record raises in its listener: the frames of that poll are still taken (the ACK of a final
    OUTPUT_OFF among them), so the end the failure calls for can see output go off; then the error is raised."""
    seq = link.driver.output_off()
    link.clock.advance(TICK_S)
    link.sim.step()
    link.clock.advance(TICK_S)
    link.sim.step()  # two ticks: the ACK and two telemetry frames wait on the wire, one poll's worth

    def broken_record(frame: Frame, t: float) -> None:
        raise RuntimeError("record writer failed")

    link.driver.on_received(broken_record)
    before = link.driver.stats.frames_ok
    with pytest.raises(RuntimeError, match="record writer failed"):
        link.driver.poll()
    assert link.driver.stats.frames_ok - before >= 3
    assert link.driver.ack_for(OutputOff.MSG_ID, seq) is not None and link.driver.unanswered is None


def test_counters_show_frames_lost_while_unplugged() -> None:
    ls = Lockstep(device_wrap=FaultyTransport, link=LinkFaultConfig(unplug=((0.5, 0.1),)))
    ls.run(1.0)
    stats = ls.driver.stats
    lost = ls.sim.counters.frames_sent - stats.frames_ok
    assert lost > 0 and stats.seq_gaps == lost
    assert stats.crc_errors == stats.bytes_discarded == 0
    assert isinstance(ls.device, FaultyTransport) and ls.device.counters.bytes_lost_unplugged > 0


def test_corrupted_bytes_are_counted_never_raised() -> None:
    ls = Lockstep(device_wrap=FaultyTransport, link=LinkFaultConfig(corrupt_byte_prob=0.002), seed=3)
    ls.run(2.0)
    stats = ls.driver.stats
    assert stats.crc_errors + stats.length_errors + stats.unknown_msg > 0
    assert stats.frames_ok > 150
    assert ls.driver.telemetry is not None


def test_a_closed_transport_is_a_link_error(link: Lockstep) -> None:
    link.host_end.close()
    with pytest.raises(LinkError):
        link.driver.poll()
    with pytest.raises(LinkError):
        link.driver.output_off()


def test_simulator_survives_its_host_vanishing(link: Lockstep) -> None:
    cap = link.driver.claim_output_capability()
    link.driver.set_output(cap, continuous(0x01, 5.0))
    link.run(0.1)
    link.device_end.close()
    for _ in range(40):
        link.clock.advance(TICK_S)
        link.sim.step()
    assert link.sim.transport is None and link.sim.counters.link_losses == 1
    assert not any(ch.output_on for ch in link.sim.channels)  # its watchdog acted


def test_delayed_bytes_arrive_late_and_intact() -> None:
    ls = Lockstep(device_wrap=FaultyTransport, link=LinkFaultConfig(delay_s=0.05))
    ls.run(0.04)
    assert ls.driver.telemetry is None  # nothing yet: 50 ms on the wire
    ls.run(0.06)
    tel = ls.driver.telemetry
    assert tel is not None and tel.arrived_at - (ls.sim.origin + tel.msg.gen_time_us / 1e6) == pytest.approx(
        0.05, abs=TICK_S + 1e-9)
    assert ls.driver.stats.seq_gaps == ls.driver.stats.crc_errors == 0


def test_delayed_bytes_slow_commands_too_an_ack_comes_a_round_trip_later() -> None:
    """The delay is the cable's, both ways: a command reaches the generator ``delay_s`` late and its ACK comes back
    as late again, what a rig engineer delays to exercise the host's ACK deadlines (docs/contract.md)."""
    ls = Lockstep(device_wrap=FaultyTransport, link=LinkFaultConfig(delay_s=0.05))
    ls.run(0.5)
    sent_at = ls.clock.now()
    seq = ls.driver.request_self_test()
    ls.run(0.2)
    ack = ls.driver.ack_for(SelfTest.MSG_ID, seq)
    assert ack is not None and ack.msg.result == AckResult.OK
    assert ack.arrived_at - sent_at == pytest.approx(0.1, abs=TICK_S + 1e-9)


@given(writes=st.lists(st.tuples(st.binary(min_size=1, max_size=40), st.integers(0, 4)), min_size=1, max_size=15),
       max_bytes=st.integers(1, 64))
def test_delayed_bytes_to_the_generator_arrive_intact_in_order_and_not_before_their_delay(
    writes: list[tuple[bytes, int]], max_bytes: int
) -> None:
    """``writes``: what the host sends, each followed by that many 10 ms ticks of the generator reading."""
    delay_s = 0.05
    clock = SimClock()
    host_end, device_end = memory_pair("delay-test")
    device = FaultyTransport(device_end, clock, LinkFaultConfig(delay_s=delay_s))
    sent_at: list[float] = []
    got = bytearray()

    def read() -> None:
        data = device.read(max_bytes)
        assert len(data) <= max_bytes
        assert all(clock.now() >= sent_at[i] + delay_s - 1e-9 for i in range(len(got), len(got) + len(data)))
        got.extend(data)

    for data, ticks in writes:
        host_end.write(data)
        sent_at += [clock.now()] * len(data)
        for _ in range(ticks):
            clock.advance(TICK_S)
            read()
    read()  # the last bytes sent leave the memory pair now, and are on their way
    clock.advance(delay_s)
    while len(got) < len(sent_at):
        before = len(got)
        read()
        assert len(got) > before, "every byte has arrived once its delay is over"
    assert bytes(got) == b"".join(data for data, _ in writes)
    assert device.counters.bytes_delayed == len(got)


def test_dropped_bytes_are_counted_on_both_sides() -> None:
    ls = Lockstep(device_wrap=FaultyTransport, link=LinkFaultConfig(drop_byte_prob=0.001), seed=2)
    ls.run(3.0)
    assert isinstance(ls.device, FaultyTransport)
    dropped = ls.device.counters.bytes_dropped
    stats = ls.driver.stats
    assert dropped > 0
    assert stats.frames_ok < ls.sim.counters.frames_sent
    assert stats.crc_errors + stats.length_errors + stats.unknown_msg + stats.bytes_discarded > 0


def test_manual_unplug_and_replug() -> None:
    ls = Lockstep(device_wrap=FaultyTransport)
    assert isinstance(ls.device, FaultyTransport)
    ls.run(0.1)
    ls.device.unplug()
    ls.run(0.1)
    frames_while_unplugged = ls.driver.stats.frames_ok
    ls.run(0.1)
    assert ls.driver.stats.frames_ok == frames_while_unplugged
    ls.device.replug()
    ls.run(0.1)
    assert ls.driver.stats.frames_ok > frames_while_unplugged
    assert ls.driver.stats.seq_gaps > 0


def test_energy_reducing_commands_reach_the_wire_even_when_a_listener_fails() -> None:

    host, device = memory_pair()
    driver = RfGenerator(host, SimClock())

    def broken_record(seq: int, msg: object, t: float) -> None:
        raise RuntimeError("record writer failed")

    driver.on_sent(broken_record)
    for send in (lambda: driver.output_off(), lambda: driver.stim(None, Stim(0x0F, 500, 200, 0)),
                 lambda: driver.pump(False, 0)):
        with pytest.raises(RuntimeError):
            send()
    sent = [f.msg for f in FrameParser().feed(device.read())]
    assert sent == [OutputOff(0x0F), Stim(0x0F, 500, 200, 0), Pump(0, 0)]
    with pytest.raises(RuntimeError):
        driver.pump(True, 150)  # anything else is recorded first, so it is not sent when the record fails
    assert FrameParser().feed(device.read()) == []


def test_keeps_the_newest_acks_and_forgets_the_oldest_one_at_a_time() -> None:
    """ACKs are kept by (message id, SEQ) for ``ack_for``; past ``ACKS_KEPT`` the oldest goes, one per
    arrival, and a SEQ that comes round again is the newest, not the oldest."""
    host, device = memory_pair("acks")
    driver = RfGenerator(host, SimClock())
    encoder = FrameEncoder()
    acked = [(msg_id, seq) for msg_id in (Stim.MSG_ID, SetOutput.MSG_ID, OutputOff.MSG_ID) for seq in range(256)]
    acked.append((Stim.MSG_ID, 0))  # comes round again: now the newest
    for msg_id, seq in acked:
        device.write(encoder.encode(Ack(msg_id, seq, AckResult.OK))[1])
        driver.poll()
    newest = acked[-ACKS_KEPT:]
    assert all(driver.ack_for(*key) is not None for key in newest)
    forgotten = [key for key in acked if key not in newest]
    assert forgotten and all(driver.ack_for(*key) is None for key in forgotten)


@given(per_poll=st.lists(st.integers(0, 3), min_size=1, max_size=12))
def test_keeps_the_newest_telemetry_frames_in_the_order_read(per_poll: list[int]) -> None:
    """However many frames each poll reads, ``recent_telemetry`` is the newest ``TELEMETRY_KEPT`` of them, oldest
    first, ending with ``telemetry``: a reader looking once a poll can find every frame read since it last looked."""
    host, device = memory_pair("telemetry")
    driver = RfGenerator(host, SimClock())
    encoder = FrameEncoder()
    sent: list[int] = []
    for count in per_poll:
        for _ in range(count):
            sent.append(10_000 * (len(sent) + 1))
            device.write(encoder.encode(Telemetry(sent[-1], (IDLE_CHANNEL,) * 4))[1])
        driver.poll()
    assert [r.msg.gen_time_us for r in driver.recent_telemetry] == sent[-TELEMETRY_KEPT:]
    assert driver.telemetry is (driver.recent_telemetry[-1] if sent else None)


def test_an_ack_from_the_last_wrap_of_seq_does_not_answer_a_new_command() -> None:
    host, device = memory_pair("ack-wrap")
    driver = RfGenerator(host, SimClock())
    device_encoder = FrameEncoder()
    first = driver.output_off()
    device.write(device_encoder.encode(Ack(OutputOff.MSG_ID, first, AckResult.OK))[1])
    driver.poll()
    assert driver.ack_for(OutputOff.MSG_ID, first) is not None
    for _ in range(255):
        driver.pump(False, 0)
    again = driver.output_off()
    assert again == first  # SEQ came round
    assert driver.ack_for(OutputOff.MSG_ID, again) is None, "the old ACK must not answer the new command"
    device.write(device_encoder.encode(Ack(OutputOff.MSG_ID, again, AckResult.OK))[1])
    driver.poll()
    assert driver.ack_for(OutputOff.MSG_ID, again) is not None


class _AnsweringGenerator:
    """The device end of a memory pair that works through the host's commands in order, answering or losing each."""

    def __init__(self, device: MemoryTransport) -> None:
        self.device = device
        self.parser = FrameParser()
        self.encoder = FrameEncoder()
        self.pending: list[Frame] = []

    def work(self, answer: bool) -> Frame | None:
        """Take the oldest command received; acknowledge it if ``answer``. Returns it, if there was one."""
        self.pending += [f for f in self.parser.feed(self.device.read()) if not isinstance(f.msg, Heartbeat)]
        if not self.pending:
            return None
        frame = self.pending.pop(0)
        if answer:
            self.device.write(self.encoder.encode(Ack(frame.msg.MSG_ID, frame.seq, AckResult.OK))[1])
        return frame


@settings(max_examples=200, deadline=None)
@given(st.lists(st.sampled_from(("output_off", "pump", "heartbeat", "answer", "lose", "poll")), max_size=60))
def test_unanswered_is_the_oldest_command_after_the_newest_answered_one(steps: list[str]) -> None:
    """Whatever the generator answers or loses, in order: ``unanswered`` is the first command sent after the
    newest one acknowledged (heartbeats are not acknowledged, so never awaited), and every command before that
    one without an ACK of its own is counted missed, once."""
    clock = SimClock()
    host, device = memory_pair("unanswered")
    driver, generator = RfGenerator(host, clock), _AnsweringGenerator(device)
    sent: list[tuple[int, int, float]] = []  # (message id, SEQ, sent at) of every command, in order
    fate: dict[int, bool] = {}  # index into ``sent`` → answered (True) or lost (False), as the generator worked
    for step in steps:
        clock.advance(0.001)
        if step in ("output_off", "pump"):
            seq = driver.output_off() if step == "output_off" else driver.pump(False, 0)
            sent.append(((OutputOff if step == "output_off" else Pump).MSG_ID, seq, clock.now()))
        elif step == "heartbeat":
            driver.send_heartbeat()
        elif step == "poll":
            driver.poll()
        else:
            frame = generator.work(answer=step == "answer")
            if frame is not None:
                fate[len(fate)] = step == "answer"
        driver.poll()
        acked = [i for i, answered in fate.items() if answered]
        newest = acked[-1] if acked else -1
        expected = sent[newest + 1] if newest + 1 < len(sent) else None
        assert driver.unanswered == (None if expected is None else Unanswered(*expected))
        assert driver.acks_missed == sum(1 for i in range(newest) if not fate[i])


def test_an_ack_lost_on_the_wire_is_passed_by_the_next_one_and_counted(link: Lockstep) -> None:
    """Against the simulator: every command answered within two ticks; a lost ACK is a missed one once a later
    command is answered."""
    seq = link.driver.pump(False, 0)
    assert link.driver.unanswered is not None and link.driver.unanswered.seq == seq
    link.run(2 * TICK_S)
    assert link.driver.unanswered is None and link.driver.acks_missed == 0
    link.driver.pump(False, 0)
    link.clock.advance(TICK_S)
    link.sim.step()  # answered, but the ACK (with that tick's telemetry) is lost before the host reads it
    link.host_end.read()
    link.run(TICK_S)
    assert link.driver.unanswered is not None
    later = link.driver.output_off()
    link.run(2 * TICK_S)
    assert link.driver.unanswered is None and link.driver.acks_missed == 1
    assert link.driver.ack_for(OutputOff.MSG_ID, later) is not None


def test_a_seq_sent_again_while_its_first_send_still_waits_is_awaited_again() -> None:
    """256 commands later the same (message id, SEQ) goes out again: passing the first by a later ACK must not
    forget that the second still waits."""
    host, device = memory_pair("unanswered-wrap")
    driver, generator = RfGenerator(host, SimClock()), _AnsweringGenerator(device)
    first = driver.output_off()
    for _ in range(255):
        driver.pump(False, 0)
    again = driver.output_off()
    assert again == first
    generator.work(answer=False)  # the first OUTPUT_OFF lost
    generator.work(answer=True)  # the first PUMP answered: passes the first OUTPUT_OFF
    driver.poll()
    assert driver.acks_missed == 1
    for _ in range(254):
        generator.work(answer=True)
    driver.poll()
    assert driver.unanswered is not None and (driver.unanswered.msg_id, driver.unanswered.seq) == (
        OutputOff.MSG_ID, again)
    generator.work(answer=True)
    driver.poll()
    assert driver.unanswered is None and driver.acks_missed == 1


class _LoopReadsDuringTheWrite:
    """A transport whose write is interrupted by the loop's thread: the generator answers at once and the loop
    polls before the sending thread has returned from ``write``."""

    def __init__(self, inner: MemoryTransport, generator: _AnsweringGenerator) -> None:
        self.inner, self.generator = inner, generator
        self.url = inner.url
        self.driver: RfGenerator | None = None

    def read(self, max_bytes: int = 65536) -> bytes:
        return self.inner.read(max_bytes)

    def write(self, data: bytes) -> None:
        self.inner.write(data)
        self.generator.work(answer=True)
        assert self.driver is not None
        self.driver.poll()

    def close(self) -> None:
        self.inner.close()


def test_an_ack_read_before_the_write_returns_still_answers_the_command() -> None:
    host, device = memory_pair("ack-during-write")
    wire = _LoopReadsDuringTheWrite(host, _AnsweringGenerator(device))
    driver = wire.driver = RfGenerator(wire, SimClock())
    seq = driver.output_off()  # as the watchdog's thread sends it
    assert driver.ack_for(OutputOff.MSG_ID, seq) is not None
    assert driver.unanswered is None and driver.acks_missed == 0


def test_a_command_whose_write_fails_is_not_awaited_and_only_a_failed_stop_stays_the_newest() -> None:
    """A stop that did not go out is still what the host last meant (a repeat retries it); an enabling command
    that did not go out is not, so the command before it stays the newest."""
    host, _device = memory_pair("write-fails")
    driver = RfGenerator(host, SimClock())
    capability = driver.claim_output_capability()
    driver.pump(False, 0)
    host.close()
    with pytest.raises(LinkError):
        driver.stim(capability, Stim(0x01, 20, 200, 2000))
    assert driver.newest_command is not None and driver.newest_command.msg == Pump(0, 0)
    with pytest.raises(LinkError):
        driver.output_off()
    assert driver.newest_command is not None and driver.newest_command.msg == OutputOff(0x0F)
    assert driver.unanswered is not None and driver.unanswered.msg_id == Pump.MSG_ID, "only the pump went out"


def test_repeat_sends_the_newest_command_again_only_while_it_is_the_newest() -> None:
    host, device = memory_pair("repeat")
    driver = RfGenerator(host, SimClock())
    capability = driver.claim_output_capability()
    stim = Stim(0x01, 20, 200, 2000)
    driver.stim(capability, stim)
    newest = driver.newest_command
    assert newest is not None and newest.msg == stim
    driver.send_heartbeat()  # not a command that is awaited or repeated
    assert driver.repeat(capability, newest.place) is not None
    driver.output_off()  # the watchdog's, say: the stimulus must not be stated again after it
    assert driver.repeat(capability, newest.place) is None
    driver.request_self_test()
    assert driver.newest_command is not None
    assert driver.repeat(capability, driver.newest_command.place) is None, "a repeated request restarts the test"
    with pytest.raises(CapabilityError):
        driver.repeat(OutputCapability(object()), driver.newest_command.place)
    sent = [f.msg for f in FrameParser().feed(device.read()) if not isinstance(f.msg, Heartbeat)]
    assert sent == [stim, stim, OutputOff(0x0F), SelfTest(0, 0)]


@pytest.mark.parametrize("echoed", [SetOutput(0x01, 1, (1000, 0, 0, 0), 0, 0), OutputOff(), Stim(0x01, 20, 1000, 500),
                                    Pump(1, 150)])
def test_each_end_drops_the_other_directions_messages(link: Lockstep, echoed: Message) -> None:
    """A command coming back from the generator (a looped-back cable, a generator defect) is the other direction's
    message: counted as an unknown id and dropped, never handed to the record as something the generator said. The
    link goes on."""
    heard: list[Frame] = []
    link.driver.on_received(lambda frame, _t: heard.append(frame))
    before = link.driver.stats.unknown_msg
    link.device_end.write(FrameEncoder().encode(echoed)[1])
    link.run(0.1)
    assert link.driver.stats.unknown_msg == before + 1
    assert not [f for f in heard if type(f.msg) is type(echoed)]
    assert [f for f in heard if isinstance(f.msg, Telemetry)], "telemetry still flows"
    assert link.ack(OutputOff.MSG_ID, link.driver.output_off()) == AckResult.OK, "the generator still takes commands"
