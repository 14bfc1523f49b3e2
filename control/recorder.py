"""What the cart puts on the procedure record, row by row (ARCHITECTURE.md section 9).

The :class:`Recorder` listens to the generator driver (every command before it is sent, every frame as
it is parsed) and to the output gate (every safety event), and queues one row per fact. It runs inside
the 10 ms tick, so it only queues: each row is handed to the record as a function of frozen messages
(``functools.partial``), and the record's writer thread builds and encodes it. Alarms are the exception
the architecture asks for: they are committed to disk before the procedure goes on. Where the gate emits
them, that is a wait for the disk inside the gate's lock; so on the real-time loop's thread
(``defer_commit``) the alarm is only queued there, in the same tick, and the session commits it as soon
as the gate has returned, with the loop still ticking (:mod:`control.durable`).

Heartbeats are not recorded (docs/contract.md): they say only that the link is alive, which the
telemetry rows already show ten times more often. STATUS and ELECTRODE_INFO are recorded when they
change, not every time they repeat.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import asdict
from functools import partial
from typing import Any

from control.record import NOT_RECORDED, ProcedureRecord
from firmware_bridge.framing import Frame
from firmware_bridge.messages import (
    MESSAGES_BY_ID,
    N_CHANNELS,
    Ack,
    AckResult,
    ElectrodeInfo,
    Heartbeat,
    Message,
    OutputMode,
    SelfTest,
    SetOutput,
    Status,
    Telemetry,
)
from safety.gate import EventKind, SafetyEvent

_CHANNELS = tuple(range(1, N_CHANNELS + 1))
_DURABLE_EVENTS = frozenset({EventKind.TRIP, EventKind.ACKNOWLEDGED, EventKind.ACK_REFUSED, EventKind.INHIBIT,
                             EventKind.HEARTBEAT_WITHHELD, EventKind.OUTPUT_UNSTOPPABLE})
"""Safety events that are alarms: committed before the gate (and then the procedure) goes on."""


def telemetry_row(msg: Telemetry, channel: int) -> dict[str, Any]:
    """One channel of one TELEMETRY frame, in engineering units."""
    s = msg.channels[channel - 1]
    return {
        "ch": channel,
        "gen_us": msg.gen_time_us,
        "tip_c": s.tip_temp_c,
        "z_ohm": s.impedance_ohm,
        "v": s.voltage_v,
        "ma": s.current_ma,
        "w": s.power_w,
        "flags": s.flags,
    }


def command_row(seq: int, msg: Message) -> dict[str, Any]:
    """A command as sent, in wire units (each field's name says its unit); SET_OUTPUT's ``setpoints`` are power or
    peak voltage by mode, so its row names the unit and the mode (a CSV export has no protocol table beside it)."""
    row = {"seq": seq, "msg": type(msg).__name__, **asdict(msg)}
    if isinstance(msg, SetOutput):
        pulsed = msg.mode == OutputMode.RF_PULSED
        row["setpoints_unit"] = "centi_v" if pulsed else "centi_w"
        row["mode_name"] = OutputMode(msg.mode).name if msg.mode in list(OutputMode) else f"mode {msg.mode}"
    return row


def received_row(seq: int, msg: Message) -> dict[str, Any]:
    """A frame from the generator: ``seq`` is the generator's own frame SEQ (a command row's is the host's); an ACK
    also names the command it answers and its result, so the record reads without the protocol table."""
    row = {"seq": seq, **asdict(msg)}
    if isinstance(msg, Ack):
        command = MESSAGES_BY_ID.get(msg.acked_msg_id)
        row["acked_msg"] = f"0x{msg.acked_msg_id:02X}" if command is None else command.__name__
        row["result_name"] = AckResult.name_of(msg.result)
    return row


def safety_row(event: SafetyEvent) -> dict[str, Any]:
    payload: dict[str, Any] = {"event": event.kind.value, "detail": event.detail}
    if event.interlock is not None:
        payload.update(
            interlock=event.interlock.value,
            channel=event.channel,
            priority=event.priority.name.lower() if event.priority else None,
        )
    if event.seq is not None:
        payload["seq"] = event.seq
    return payload


class Recorder:
    """The driver's and the gate's listener that writes the record (see module docstring)."""

    def __init__(self, record: ProcedureRecord) -> None:
        self.record = record
        self._last_status: Status | None = None
        self._last_electrodes: ElectrodeInfo | None = None
        self.trip_rows: dict[tuple[str, int | None], int] = {}
        """The record row of each trip, by ``(interlock, channel)``: what an alarm message points to."""
        self.defer_commit: Callable[[], bool] = lambda: False
        """Whether an alarm emitted now is left for the caller to commit (:meth:`take_uncommitted_alarm`)."""
        self._uncommitted_alarm: int | None = None
        self._alarm_lock = threading.Lock()

    def command(self, seq: int, msg: Message, t: float) -> None:
        if not isinstance(msg, Heartbeat):
            self.record.append("command", partial(command_row, seq, msg), mono=t)

    def frame(self, frame: Frame, t: float) -> None:
        msg = frame.msg
        append = self.record.append
        if isinstance(msg, Telemetry):
            self.record.append_rows("telemetry", [partial(telemetry_row, msg, channel) for channel in _CHANNELS], t)
        elif isinstance(msg, Status):
            if msg != self._last_status:
                self._last_status = msg
                append("status", partial(asdict, msg), mono=t)
        elif isinstance(msg, ElectrodeInfo):
            if msg != self._last_electrodes:
                self._last_electrodes = msg
                append("electrodes", partial(asdict, msg), mono=t)
        elif not isinstance(msg, Heartbeat):
            append("self_test" if isinstance(msg, SelfTest) else "ack", partial(received_row, frame.seq, msg), mono=t)

    def safety_event(self, event: SafetyEvent) -> None:
        if event.kind in _DURABLE_EVENTS:
            row = self.record.append("alarm", partial(safety_row, event), mono=event.at)
            if row == NOT_RECORDED:  # an abandoned record: the procedure is ending on its failure
                return
            if self.defer_commit():
                with self._alarm_lock:  # the watchdog's thread too: the newest row, never one taken back
                    self._uncommitted_alarm = max(row, self._uncommitted_alarm or NOT_RECORDED)
            else:
                self.record.wait_committed(row)
            if event.kind is EventKind.TRIP and event.interlock is not None:
                self.trip_rows[(event.interlock.value, event.channel)] = row
        else:
            self.record.append("safety", partial(safety_row, event), mono=event.at)

    def take_uncommitted_alarm(self) -> int | None:
        """The newest alarm row left to commit (committing it commits every row before it), once."""
        with self._alarm_lock:
            row, self._uncommitted_alarm = self._uncommitted_alarm, None
        return row
