"""The 100 Hz tick of ARCHITECTURE.md section 8, and the two things it waits on: the pacer and imaging.

Each tick, in this order:

1. in the slack left by the previous tick: in real time, collect garbage (:mod:`control.runtime`); send
   the host heartbeat when it is due (10 Hz: it tells the generator the host is alive, and has no part
   in the control decision, so it does not delay one; the gate withholds it while it cannot see output off
   where it commanded it off); then wait for the tick: the :class:`Pacer` sleeps on the cart, or
   steps the simulator in lockstep;
2. read what the generator sent; every frame goes on the procedure record as it is parsed (a listener
   the session installs on the driver), so it is recorded before anything acts on it;
3. poll imaging (never blocking) and evaluate every interlock in the gate; a trip has put ``OUTPUT_OFF``
   on the wire before :meth:`ControlLoop.tick` returns it (the watchdog's too, though it trips from its
   own thread);
4. kick the independent watchdog.

The control step and the output request (through the gate, the only holder of the output capability)
follow in the session, which knows the lesions. Nothing here compiles code; the disk is touched only
when an interlock trips (its alarm is committed before the loop goes on, section 9).
"""

from __future__ import annotations

from typing import Final, Protocol

from control.display import GuidanceView
from control.runtime import LoopRuntime
from firmware_bridge.clock import Clock
from firmware_bridge.errors import CartError
from firmware_bridge.generator import RfGenerator
from safety import limits as hard
from safety.gate import OutputGate
from safety.inputs import ImagingStatus
from safety.interlocks import Trip
from safety.watchdog import Watchdog

PERIOD_S: Final = hard.LOOP_PERIOD_S


class Pacer(Protocol):
    """Waits for the next tick: ``sleep_until`` on the cart, a lockstep simulator step in tests."""

    def sleep_until(self, t: float) -> None: ...


class Guidance(Protocol):
    """The ultrasound side as the procedure needs it."""

    def poll(self) -> ImagingStatus:
        """Read new frames (never blocking) and report imaging health, probe face and boiling."""
        ...

    def view(self) -> GuidanceView: ...

    def rf_start_refusals(self) -> list[str]:
        """Why RF may not start under guidance (the boiling monitor must be able to watch the tip)."""
        ...

    def rf_started(self, channels: list[int]) -> None:
        """RF is on: begin watching for boiling and recording frames."""
        ...

    def rf_stopped(self) -> None: ...

    def record_frame(self, reason: str) -> None:
        """Put the current frame, with its detected tip, on the record."""
        ...


class ControlLoop:
    """Runs ticks at ``PERIOD_S``; supervised by the watchdog (a thread in real time, a check per tick
    in simulated time, where there are no threads)."""

    def __init__(
        self,
        *,
        clock: Clock,
        pacer: Pacer,
        generator: RfGenerator,
        gate: OutputGate,
        guidance: Guidance | None,
        realtime: bool,
    ) -> None:
        self.clock = clock
        self.pacer = pacer
        self.generator = generator
        self.gate = gate
        self.guidance = guidance
        self.realtime = realtime
        self.watchdog = Watchdog(gate, clock)
        self.runtime: LoopRuntime | None = LoopRuntime() if realtime else None
        """Keeps the interpreter from pausing the loop; None in simulated time, where pauses cost nothing."""
        self.imaging: ImagingStatus | None = None
        self.ticks = 0
        self.longest_period_s = 0.0
        """The longest time between two ticks' interlock evaluations: what the watchdog limits to two periods."""
        self.longest_period_ended_at: float | None = None
        """When that period ended (the clock's time), so a test can tell what else happened during it."""
        self._evaluated_at: float | None = None
        self._t_next = clock.now()

    def start(self) -> None:
        if self.runtime is not None:
            self.runtime.enter()  # first: its one full collection must not count against the watchdog
        if self.realtime:
            self.watchdog.start()

    def stop(self) -> None:
        """End supervision; the watchdog turns all output off first (a dead link cannot stop the thread's end)."""
        try:
            self.watchdog.disarm()
        except CartError:
            pass  # output off could not be sent: the generator's own heartbeat watchdog turns it off
        finally:
            try:
                if self.realtime:
                    self.watchdog.stop()
            finally:  # even if stopping the thread is interrupted: never leave the interpreter changed
                if self.runtime is not None:
                    self.runtime.exit()

    def until_next_tick_s(self) -> float:
        """How long until the next tick is due (negative when it is late)."""
        return self._t_next + PERIOD_S - self.clock.now()

    def tick(self) -> list[Trip]:
        """One period: wait, read, poll imaging, evaluate interlocks, kick. Returns the new trips."""
        # The slack, between the last tick's output request and this tick's wait: housekeeping that must
        # happen every period but has no part in the control decision.
        if self.runtime is not None:
            self.runtime.slack()
        self.gate.keep_alive()
        now = self.clock.now()
        due = self._t_next + PERIOD_S
        if due < now - PERIOD_S:  # fell behind (real time): resynchronise, never burst
            due = now
        self.pacer.sleep_until(due)
        # Only once the wait is over: a wait cut short (Ctrl-C) leaves this tick due, so the stop's own commit
        # ticks at once instead of waiting a whole period more for the tick after it (20 ms without a kick).
        self._t_next = due
        if not self.realtime:
            self.watchdog.tick()
        self.generator.poll()
        self.imaging = self.guidance.poll() if self.guidance is not None else None
        now = self.clock.now()
        if self._evaluated_at is not None and now - self._evaluated_at > self.longest_period_s:
            self.longest_period_s = now - self._evaluated_at
            self.longest_period_ended_at = now
        self._evaluated_at = now
        trips = self.gate.evaluate(self.imaging)
        self.watchdog.kick()
        self.ticks += 1
        # Trips found outside any evaluation (the watchdog's, from its thread on the cart; a request's, between
        # ticks): without them here the procedure would learn of them only as refused output, unable to say which
        # interlock tripped and where in the record. The gate hands each over once, never one already returned.
        return self.gate.take_trips_between_ticks() + trips
