"""The RF generator driver: commands out with sequence numbers, messages in with their arrival time.

The driver holds no policy. It does hold one lock: commands that *enable* energy (``SET_OUTPUT``, and
``STIM`` with a non-zero amplitude) take an :class:`OutputCapability`, and each driver mints exactly one,
handed to the first caller of :meth:`RfGenerator.claim_output_capability`. The composition root gives it
to ``safety``'s output gate before anything else sees the driver, so no other code can enable output
(ARCHITECTURE.md section 7). Turning output off needs no capability: anyone may make the cart safer.

No threads and no sleeps: the owner calls :meth:`RfGenerator.service` from its loop, which reads and
parses what has arrived and sends the host heartbeat when it is due. Sending is serialised by a lock, so
the safety watchdog's thread may put ``OUTPUT_OFF`` on the wire while the loop sends a heartbeat: frames
never interleave and sequence numbers never repeat.
"""

from __future__ import annotations

import threading
from collections import OrderedDict, deque
from collections.abc import Callable
from typing import Final, Generic, NamedTuple, TypeVar

from firmware_bridge.clock import Clock
from firmware_bridge.errors import CapabilityError
from firmware_bridge.framing import Frame, FrameEncoder, FrameParser, ParserStats
from firmware_bridge.messages import (
    ALL_CHANNELS,
    GENERATOR_TO_HOST,
    Ack,
    AckResult,
    ElectrodeInfo,
    Heartbeat,
    Message,
    OutputOff,
    Pump,
    SelfTest,
    SetOutput,
    Status,
    Stim,
    Telemetry,
)
from firmware_bridge.transport import Transport

HEARTBEAT_PERIOD_S: Final = 0.1
HOST_STATE_ACTIVE: Final = 1
ACKS_KEPT: Final = 512
"""The newest ACKs kept for :meth:`RfGenerator.ack_for`, keyed by (message id, SEQ). The host's SEQ wraps at
256: sending a command forgets the ACK its SEQ had in the last wrap, so an ACK found answers this command."""
AWAITED_KEPT: Final = 4096
"""Commands kept waiting for their ACK: 40 s of a command every tick with nothing answered (a dead line). Past it
the oldest are forgotten, by then long reported (:attr:`RfGenerator.unanswered`)."""

TELEMETRY_KEPT: Final = 8
"""The newest telemetry frames kept (:attr:`RfGenerator.recent_telemetry`): 80 ms at 100 Hz, four times the
longest gap between two reads that does not trip the loop's overrun interlock."""

M = TypeVar("M", bound=Message)


class Received(NamedTuple, Generic[M]):
    """A message with its sequence number and the host's clock reading when it arrived.

    A named tuple: immutable, and built for every frame on the control tick for a third of a frozen
    dataclass's cost. Each arrival is a new object, so "is this the frame I saw?" is an identity test."""

    msg: M
    seq: int
    arrived_at: float


class Unanswered(NamedTuple):
    """A command sent and not yet acknowledged: its message id, SEQ, and the host's clock when it was sent."""

    msg_id: int
    seq: int
    sent_at: float


class Sent(NamedTuple):
    """The newest command sent (HEARTBEAT aside): its place in the order sent, when, and the message."""

    place: int
    sent_at: float
    msg: Message


def _reduces_energy(msg: Message) -> bool:
    return (isinstance(msg, OutputOff) or (isinstance(msg, Stim) and msg.amplitude_mv == 0)
            or (isinstance(msg, Pump) and not msg.on))


class OutputCapability:
    """Proof of the authority to enable output, minted once per driver (see module docstring)."""

    __slots__ = ("_owner",)

    def __init__(self, owner: object) -> None:
        self._owner = owner


SentListener = Callable[[int, Message, float], None]
ReceivedListener = Callable[[Frame, float], None]


class RfGenerator:
    """Host side of the generator link (ARCHITECTURE.md section 4)."""

    def __init__(self, transport: Transport, clock: Clock, *, uptime_origin: float | None = None) -> None:
        self.transport = transport
        self.clock = clock
        self._encoder = FrameEncoder()
        self._send_lock = threading.Lock()
        self._parser = FrameParser(GENERATOR_TO_HOST)
        self._capability: OutputCapability | None = None
        self._origin = clock.now() if uptime_origin is None else uptime_origin
        self._next_heartbeat = self._origin
        self._acks: OrderedDict[tuple[int, int], Received[Ack]] = OrderedDict()
        self._sent_listeners: list[SentListener] = []
        self._received_listeners: list[ReceivedListener] = []
        self.telemetry: Received[Telemetry] | None = None
        self.recent_telemetry: deque[Received[Telemetry]] = deque(maxlen=TELEMETRY_KEPT)
        """The newest telemetry frames, oldest first; ``telemetry`` is among them (the last, but for the moment a new
        one is being dispatched). The host's period and the generator's drift past each other, so now and then one
        poll reads two frames: a reader that looks once per poll finds here every frame since it last looked, to
        judge each and not only the newest."""
        self.status: Received[Status] | None = None
        self.heartbeat: Received[Heartbeat] | None = None
        self.electrodes: Received[ElectrodeInfo] | None = None
        self.self_test_result: Received[SelfTest] | None = None
        self.last_refusal: Received[Ack] | None = None
        """The newest ACK whose result is not OK: the generator refused a command."""
        self.acks_received = 0
        """ACKs read so far: whoever waits for some can tell whether any came since it last looked."""
        self.frames_sent = 0
        self._places = 0
        """Every frame's place in the order sent (a failed write takes one too)."""
        self._awaited: deque[tuple[int, Unanswered]] = deque(maxlen=AWAITED_KEPT)
        """Commands waiting for their ACK, in the order sent, each with its place in that order."""
        self._awaited_at: dict[tuple[int, int], int] = {}
        """The place in that order of the last command sent with each (message id, SEQ)."""
        self._awaited_lock = threading.Lock()
        """Guards the two above between the loop (ACKs) and the watchdog's thread (sends); never held across I/O."""
        self.acks_missed = 0
        """Commands never acknowledged that a later command's ACK went past: the command or its ACK was lost."""
        self.newest_command: Sent | None = None
        """The newest command sent but HEARTBEAT (what :meth:`repeat` may send again)."""

    # -- observation ---------------------------------------------------------------------------------
    def on_sent(self, listener: SentListener) -> None:
        """Call ``listener(seq, msg, t)`` per command: before it goes on the wire, except for commands that
        reduce energy (OUTPUT_OFF, a stimulation stop, pump off), which go on the wire first, so that a
        listener that fails (a broken record) can never hold back the safe state."""
        self._sent_listeners.append(listener)

    def on_received(self, listener: ReceivedListener) -> None:
        """Call ``listener(frame, t)`` for every frame, as soon as it is parsed."""
        self._received_listeners.append(listener)

    @property
    def stats(self) -> ParserStats:
        """The parser's counters for the generator → host direction."""
        return self._parser.stats

    def counters(self) -> dict[str, int]:
        """The link's counters for a person: the parser's (generator → host) and the commands never answered."""
        return {**self._parser.stats.as_dict(), "acks_missed": self.acks_missed}

    @property
    def unanswered(self) -> Unanswered | None:
        """The oldest command sent after the newest one the generator acknowledged, if any.

        The generator answers commands in the order it receives them (every one but HEARTBEAT), so a command
        older than an answered one that has no ACK of its own never will: it, or its ACK, was lost, and it is
        counted in :attr:`acks_missed` instead. What is left here is what the generator may still be working
        through, or, if it stays, what it is not taking: judging how long is policy, not the driver's."""
        with self._awaited_lock:
            return self._awaited[0][1] if self._awaited else None

    # -- the capability ------------------------------------------------------------------------------
    def claim_output_capability(self) -> OutputCapability:
        """Hand out the one capability this driver will ever mint; a second claim is refused."""
        if self._capability is not None:
            raise CapabilityError("the output capability of this generator has already been claimed")
        self._capability = OutputCapability(self)
        return self._capability

    def _require(self, capability: object) -> None:
        if self._capability is None or capability is not self._capability:
            raise CapabilityError("enabling output needs the capability held by the safety gate")

    # -- commands ------------------------------------------------------------------------------------
    def _send(self, msg: Message) -> int:
        with self._send_lock:
            return self._send_locked(msg)

    def _send_locked(self, msg: Message) -> int:
        notify_first = not _reduces_energy(msg)
        seq, frame = self._encoder.encode(msg)
        self._acks.pop((msg.MSG_ID, seq), None)  # an ACK of this SEQ from the last wrap answers nothing now
        now = self.clock.now()
        if notify_first:
            for listener in self._sent_listeners:
                listener(seq, msg, now)
        self._places += 1
        place = self._places
        awaited = not isinstance(msg, Heartbeat)  # the one command the generator does not acknowledge
        if awaited:  # before the write: the loop's thread may read its ACK before this thread goes on
            self._await(place, Unanswered(msg.MSG_ID, seq, now))
        try:
            self.transport.write(frame)
        except BaseException:
            if awaited:
                self._unawait(place)
                if not notify_first:  # a stop that did not go out is still the last word: repeat that, if anything
                    self.newest_command = Sent(place, now, msg)
            raise
        self.frames_sent += 1
        if awaited:
            sent_at = self.clock.now()  # a write that blocked is the host's delay, not the generator's
            self._restamp(place, Unanswered(msg.MSG_ID, seq, sent_at))
            self.newest_command = Sent(place, sent_at, msg)
        if not notify_first:
            for listener in self._sent_listeners:
                listener(seq, msg, now)
        return seq

    def _await(self, place: int, command: Unanswered) -> None:
        """Wait for ``command``'s ACK."""
        with self._awaited_lock:
            self._awaited.append((place, command))
            self._awaited_at[(command.msg_id, command.seq)] = place

    def _restamp(self, place: int, command: Unanswered) -> None:
        """Date the command at ``place`` by the end of its write, if it still waits (its ACK may already be in)."""
        with self._awaited_lock:
            if self._awaited and self._awaited[-1][0] == place:
                self._awaited[-1] = (place, command)

    def _unawait(self, place: int) -> None:
        """The write failed: the command never went out, and is not waited for."""
        with self._awaited_lock:
            if self._awaited and self._awaited[-1][0] == place:
                _, command = self._awaited.pop()
                key = (command.msg_id, command.seq)
                if self._awaited_at.get(key) == place:
                    del self._awaited_at[key]

    def repeat(self, capability: OutputCapability, place: int) -> int | None:
        """Send the newest command again, if it is still the one at ``place`` and may be repeated; its new SEQ.

        For the safety gate, which holds the capability: a command held for a while (a stimulus during a nerve
        test) whose ACK is overdue is stated again, so a lost ACK is passed by the answer to its twin instead of
        reading as a generator not taking commands. The check and the send are one step under the send lock,
        so nothing sent meanwhile (an OUTPUT_OFF from the watchdog's thread) can be undone by the repeat. A
        self-test request is never repeated: it would start the test again."""
        self._require(capability)
        with self._send_lock:
            newest = self.newest_command
            if newest is None or newest.place != place or isinstance(newest.msg, SelfTest):
                return None
            return self._send_locked(newest.msg)

    def output_off(self, channel_mask: int = ALL_CHANNELS) -> int:
        """Turn output off: on the wire first, then told to the listeners (the record)."""
        return self._send(OutputOff(channel_mask))

    def set_output(self, capability: OutputCapability, msg: SetOutput) -> int:
        self._require(capability)
        return self._send(msg)

    def stim(self, capability: OutputCapability | None, msg: Stim) -> int:
        """Start (needs the capability) or stop (amplitude 0, needs nothing) stimulation."""
        if msg.amplitude_mv != 0:
            self._require(capability)
        return self._send(msg)

    def pump(self, on: bool, flow_deci_ml_min: int) -> int:
        return self._send(Pump(int(on), flow_deci_ml_min))

    def request_self_test(self) -> int:
        self.self_test_result = None
        return self._send(SelfTest(0, 0))

    def send_heartbeat(self, state: int = HOST_STATE_ACTIVE) -> int:
        uptime_ms = int((self.clock.now() - self._origin) * 1000) & 0xFFFFFFFF
        return self._send(Heartbeat(state, uptime_ms))

    # -- the loop ------------------------------------------------------------------------------------
    def service(self, host_state: int = HOST_STATE_ACTIVE) -> list[Frame]:
        """Read what has arrived and send the heartbeat if it is due; returns the new frames."""
        frames = self.poll()
        self.keep_alive(host_state)
        return frames

    def keep_alive(self, host_state: int = HOST_STATE_ACTIVE) -> int | None:
        """Send the host heartbeat if it is due (every ``HEARTBEAT_PERIOD_S``); returns its SEQ if sent.

        A loop with a hard deadline calls this in its slack, after the tick's output decision, rather than
        through :meth:`service`: the heartbeat only says the host is alive, and need not delay control.
        """
        now = self.clock.now()
        if now < self._next_heartbeat:
            return None
        seq = self.send_heartbeat(host_state)
        # On time, the next is one period after this one was due (no drift); after a gap longer than a period
        # (a heartbeat withheld, a stalled loop), one period from now: never two in a row to catch up.
        due = self._next_heartbeat + HEARTBEAT_PERIOD_S
        self._next_heartbeat = due if due > now else now + HEARTBEAT_PERIOD_S
        return seq

    def poll(self) -> list[Frame]:
        """Parse every byte that has arrived and update the latest messages."""
        data = self.transport.read()
        if not data:
            return []
        now = self.clock.now()
        frames = self._parser.feed(data)
        failure: Exception | None = None
        for frame in frames:
            try:
                self._dispatch(frame, now)
            except Exception as exc:  # every frame is taken first (see _dispatch); then the first error goes on
                failure = failure or exc
        if failure is not None:
            raise failure
        return frames

    def _dispatch(self, frame: Frame, now: float) -> None:
        """Hand the frame to the listeners (the record: before anything acts on it), then take it. A listener that
        raises (a failed record) still leaves the frame taken, then its error goes on: what this driver holds must
        never fall behind what the generator said, or the end that error calls for could not see output go off."""
        try:
            for listener in self._received_listeners:
                listener(frame, now)
        finally:
            self._take(frame, now)

    def _take(self, frame: Frame, now: float) -> None:
        msg = frame.msg
        if isinstance(msg, Telemetry):
            telemetry = Received(msg, frame.seq, now)
            self.recent_telemetry.append(telemetry)  # first: whoever finds it as ``telemetry`` finds it here too
            self.telemetry = telemetry
        elif isinstance(msg, Status):
            self.status = Received(msg, frame.seq, now)
        elif isinstance(msg, Heartbeat):
            self.heartbeat = Received(msg, frame.seq, now)
        elif isinstance(msg, ElectrodeInfo):
            self.electrodes = Received(msg, frame.seq, now)
        elif isinstance(msg, Ack):
            key = (msg.acked_msg_id, msg.acked_seq)
            received = Received(msg, frame.seq, now)
            self.acks_received += 1
            # Re-inserted, so a SEQ come round again is the newest; pop-then-set, not move_to_end, so that
            # the watchdog's thread forgetting this key as it sends (see _send) cannot raise here.
            self._acks.pop(key, None)
            self._acks[key] = received
            if msg.result != AckResult.OK:
                self.last_refusal = received
            if len(self._acks) > ACKS_KEPT:  # one out per one in: no pause to prune a batch in a tick
                self._acks.popitem(last=False)
            self._answered(key)
        elif isinstance(msg, SelfTest) and msg.phase == 1:
            self.self_test_result = Received(msg, frame.seq, now)

    def _answered(self, key: tuple[int, int]) -> None:
        """An ACK for ``key``: it and every command sent before it stop waiting (see :attr:`unanswered`)."""
        with self._awaited_lock:
            place = self._awaited_at.pop(key, None)
            if place is None:
                return  # not awaited: already passed by a later ACK, from before a wrap, or never sent
            awaited, awaited_at = self._awaited, self._awaited_at
            while awaited and awaited[0][0] <= place:
                earlier_place, earlier = awaited.popleft()
                if earlier_place == place:
                    continue
                self.acks_missed += 1
                earlier_key = (earlier.msg_id, earlier.seq)
                if awaited_at.get(earlier_key) == earlier_place:  # not if that SEQ has been sent again since
                    del awaited_at[earlier_key]

    def ack_for(self, msg_id: int, seq: int) -> Received[Ack] | None:
        """The generator's answer to the command ``(msg_id, seq)``, if it has arrived."""
        return self._acks.get((msg_id, seq))

    def close(self) -> None:
        self.transport.close()
