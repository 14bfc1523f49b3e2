"""Pacing a whole simulated cart: the ``Pacer`` of an in-process run (``control.session``).

Where the cart would sleep until its next tick, :class:`Lockstep` moves simulated time there tick by tick
and lets every simulated device do what is due, so a 90 s lesion takes a fraction of a second and every
run is reproducible from its seed. :class:`Realtime` runs the devices on their own thread on a real clock,
for an in-process demonstration at the speed of the cart (``rfa run --realtime``).
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable
from typing import Final

from firmware_bridge.clock import Clock, SimClock
from firmware_bridge.errors import LinkError

TICK_S: Final = 0.01
_EPS_S: Final = 1e-9


class Lockstep:
    def __init__(self, clock: SimClock, devices: Iterable[Callable[[], None]], tick_s: float = TICK_S) -> None:
        self.clock = clock
        self.devices = list(devices)
        self.tick_s = tick_s

    def sleep_until(self, t: float) -> None:
        """Advance to ``t`` in steps of at most one tick, stepping every device after each."""
        while self.clock.now() < t - _EPS_S:
            self.clock.advance(min(self.tick_s, t - self.clock.now()))
            for step in self.devices:
                step()


class Realtime:
    """Real time in-process: the devices run on their own thread, as the simulator process runs beside the cart.

    Stepping them in the loop's thread, before or after its sleep, put the simulated generator's tissue model
    (milliseconds a step, more when the guidance thread competes for the processor) on the loop's critical
    path, and the loop's period is supervised: two missed periods trip the watchdog. On their own thread
    they tick every ``tick_s`` of the clock, as the generator would; the loop reads what has arrived. A
    device that raises stops the thread, and the loop's next wait raises a ``LinkError`` (the link is dead:
    the safe state), as a crashed simulator process would show up as a lost link.
    """

    def __init__(self, clock: Clock, devices: Iterable[Callable[[], None]], tick_s: float = TICK_S) -> None:
        self.clock = clock
        self.devices = list(devices)
        self.tick_s = tick_s
        self._thread: threading.Thread | None = None
        self._stop = threading.Event()
        self.failure: BaseException | None = None

    def sleep_until(self, t: float) -> None:
        """Sleep until ``t`` (the devices' thread starts on the first call)."""
        if self.devices and self._thread is None:
            self._thread = threading.Thread(target=self._run, name="sim-devices", daemon=True)
            self._thread.start()
        if self.failure is not None:
            raise LinkError(f"the in-process simulator stopped: {type(self.failure).__name__}: {self.failure}")
        self.clock.sleep_until(t)

    def close(self) -> None:
        """Stop the devices' thread; safe to call twice."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join()

    def _run(self) -> None:
        due = self.clock.now()
        while not self._stop.is_set():
            try:
                for step in self.devices:
                    step()
            except Exception as exc:  # reported to the loop (a dead link), not lost with the thread
                self.failure = exc
                return
            due += self.tick_s
            now = self.clock.now()
            if due < now - self.tick_s:  # fell behind: the devices catch up on their own clock, never burst here
                due = now
            self._stop.wait(max(0.0, due - now))
