"""Waiting for the disk without stopping the loop: how a durable row is committed in real time.

State changes and alarms are committed to the procedure record before the procedure goes on (ARCHITECTURE.md
section 9), and the commit is the writer thread's: its batch may hold telemetry, frames to compress and an
fsync, which on a loaded machine take more than a period (20 ms measured on the development VM). Had the
loop thread simply waited, the interlocks would not be evaluated meanwhile and the watchdog, rightly, would
latch ``control_loop_overrun`` (two missed periods): a state change could fault the procedure.

So in real time, on the loop's own thread, :meth:`CommitWaiter.commit` waits for the row only until the
next tick is due, then runs that tick (read telemetry, evaluate every interlock, ``OUTPUT_OFF`` on a trip,
kick the watchdog) and waits again: the procedure does not go on until the row is on disk, but the loop
never stops supervising. The control step is not run during such a *hold*: the setpoint stands, as in any
tick whose request is still to come. Trips found by a hold tick have already turned output off; they are
handed to the session (``on_trips``), which acts on them at its next tick, after the transition it was
recording. In simulated time (time stands still while the writer works) and on any other thread (the
watchdog's), the wait is a plain one.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Final

from control.loop import ControlLoop
from control.record import DURABLE_TIMEOUT_S, Payload, ProcedureRecord, RecordError
from safety.interlocks import Trip

WAKE_MARGIN_S: Final = 0.001
"""Stop waiting for the disk this long before the next tick is due, so the hold tick starts on time."""


class CommitWaiter:
    """Commits durable rows for the session; see the module docstring."""

    def __init__(self, record: ProcedureRecord, loop: ControlLoop, on_trips: Callable[[list[Trip]], None],
                 after_hold_tick: Callable[[], None] = lambda: None) -> None:
        self._record = record
        self._loop = loop
        self._on_trips = on_trips
        self._after_hold_tick = after_hold_tick
        """What must not wait for the disk either (the session's stop: output off at once)."""
        self._loop_thread: int | None = None
        self._holding = False
        self.hold_ticks = 0
        """Ticks run while waiting for the disk (each one a period the old blocking wait would have missed)."""

    def begin(self) -> None:
        """The loop is running on this thread: from now on its durable waits keep it ticking (real time)."""
        self._loop_thread = threading.get_ident()

    def end(self) -> None:
        """The loop has stopped (or is about to): waits are plain again."""
        self._loop_thread = None

    def on_loop_thread(self) -> bool:
        """Whether the caller is the running real-time loop, whose alarm commits may wait for :meth:`commit`."""
        return self._loop.realtime and self._loop_thread == threading.get_ident()

    def defers_alarms(self) -> bool:
        """Whether an alarm emitted now is left for the loop to commit: on the running real-time loop's thread
        (it commits them in its tick, ticking meanwhile), and on any other thread while that loop runs: the
        watchdog's trip, emitted inside the gate's lock, must not wait there for the disk (the loop, back from
        its stall, would wait on the gate for as long, no heartbeat, no interlock evaluated)."""
        return self._loop.realtime and self._loop_thread is not None

    def durable(self, kind: str, payload: Payload, mono: float | None = None) -> int:
        """Queue a row and return once it (and everything before it) is committed."""
        seq = self._record.append(kind, payload, mono)
        self.commit(seq)
        return seq

    def commit(self, seq: int) -> None:
        """Return once row ``seq`` is committed, ticking the loop meanwhile when it is ours to tick."""
        if self._holding or not self.on_loop_thread():
            self._record.wait_committed(seq)
            return
        deadline = time.monotonic() + DURABLE_TIMEOUT_S
        self._holding = True
        try:
            while not self._record.committed_within(seq, max(0.0, self._loop.until_next_tick_s() - WAKE_MARGIN_S)):
                if time.monotonic() > deadline:
                    raise RecordError(
                        f"record {self._record.path} did not commit row {seq} within {DURABLE_TIMEOUT_S} s"
                    )
                trips = self._loop.tick()
                self.hold_ticks += 1
                if trips:
                    self._on_trips(trips)
                self._after_hold_tick()
        finally:
            self._holding = False
