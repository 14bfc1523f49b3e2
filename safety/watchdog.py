"""The independent watchdog: output off if the control loop misses two periods (ARCHITECTURE.md section 7).

The control loop calls :meth:`Watchdog.kick` once per tick. On the cart the watchdog runs its own thread
(:meth:`Watchdog.start`) that checks every half period, so a loop stuck in a control step, a disk write or
a garbage collection still has its output turned off within about two and a half periods. Under
``SimClock`` there is no thread: the lockstep runner or the test calls :meth:`Watchdog.tick` explicitly.

The kick carries no timestamp: the watchdog reads its own clock, so a confused caller cannot kick "into
the future". Stopping supervision (:meth:`Watchdog.disarm`) first turns all output off, so RF never runs
unsupervised.
"""

from __future__ import annotations

import threading

from firmware_bridge.clock import Clock
from firmware_bridge.errors import LinkError
from safety import limits as hard
from safety.gate import OutputGate


class Watchdog:
    """Supervises the control loop's tick through kicks; trips the gate when they stop."""

    def __init__(
        self,
        gate: OutputGate,
        clock: Clock,
        period_s: float = hard.LOOP_PERIOD_S,
        missed_periods: int = hard.LOOP_MISSED_PERIODS,
    ) -> None:
        self._gate = gate
        self._clock = clock
        self.period_s = period_s
        self.timeout_s = period_s * missed_periods
        self._lock = threading.Lock()
        self._last_kick: float | None = None
        self._stall_handled = False
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.trips = 0
        self.link_errors = 0
        self.errors = 0
        """Unexpected exceptions the thread survived (each followed by an OUTPUT_OFF attempt)."""
        self.last_error: Exception | None = None
        """The latest of them, for the control loop to report."""

    @property
    def armed(self) -> bool:
        """Supervising: the first kick arms the watchdog, :meth:`disarm` ends it."""
        with self._lock:
            return self._last_kick is not None

    def kick(self) -> None:
        """The control loop is alive: call once per tick."""
        with self._lock:
            self._last_kick = self._clock.now()
            self._stall_handled = False

    def tick(self) -> bool:
        """Check the loop once; returns True if this check turned output off."""
        with self._lock:
            last = self._last_kick
            if last is None or self._stall_handled:
                return False
            late_s = self._clock.now() - last
            if late_s <= self.timeout_s:
                return False
        detail = f"watchdog: no loop kick for {late_s * 1000:.1f} ms (limit {self.timeout_s * 1000:.0f} ms)"
        latched = self._gate.trip_from_watchdog(detail)
        with self._lock:
            # A kick while we were tripping starts a new supervision period; do not mark it handled.
            if self._last_kick == last:
                self._stall_handled = latched
        self.trips += 1
        return True

    def disarm(self) -> None:
        """Stop supervising (end of procedure): output off first, so RF never runs unsupervised.

        Supervision ends even when the OUTPUT_OFF cannot be sent (a dead link raises after this returns):
        with no link there is nothing left to supervise, and the generator's own heartbeat watchdog turns
        its output off 250 ms after the host's last heartbeat.
        """
        try:
            self._gate.all_off("watchdog disarmed")
        finally:
            with self._lock:
                self._last_kick = None

    # -- the thread (RealClock) ----------------------------------------------------------------------------
    def start(self) -> None:
        """Run :meth:`tick` every half period on a daemon thread until :meth:`stop`."""
        if self._thread is not None:
            return
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, name="rfa-watchdog", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """End the thread and, if armed, disarm (output off first); safe to call twice."""
        thread, self._thread = self._thread, None
        if thread is not None:
            self._stop.set()
            thread.join()
        if self.armed:
            self.disarm()

    def _run(self) -> None:
        """Tick until stopped; no exception may end the thread, since a dead watchdog is a silent one.

        A trip sends OUTPUT_OFF before it records, so an error raised later (the record callback failing)
        finds output already off; any other error may have come before that, so output is turned off again
        straight on the wire. Then the thread keeps supervising: a stall still unhandled is tripped again at
        the next check.
        """
        while not self._stop.wait(self.period_s / 2):
            try:
                self.tick()
            except LinkError:
                # The link is gone: the generator's own heartbeat watchdog drops output; keep supervising.
                self.link_errors += 1
            except Exception as exc:
                self._count(exc)
                try:
                    self._gate.emergency_off()
                except LinkError:
                    self.link_errors += 1
                except Exception as again:  # on the wire already; a listener told of it failed
                    self._count(again)

    def _count(self, exc: Exception) -> None:
        self.errors += 1
        self.last_error = exc
