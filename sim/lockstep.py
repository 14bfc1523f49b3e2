"""Pacing a whole simulated cart: the ``Pacer`` of an in-process run (``control.session``).

Where the cart would sleep until its next tick, :class:`Lockstep` moves simulated time there tick by tick
and lets every simulated device do what is due, so a 90 s lesion takes a fraction of a second and every
run is reproducible from its seed. :class:`Realtime` does the same on a real clock, for an in-process
demonstration at the speed of the cart (``rfa run --realtime``).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Final

from firmware_bridge.clock import Clock, SimClock

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
    def __init__(self, clock: Clock, devices: Iterable[Callable[[], None]]) -> None:
        self.clock = clock
        self.devices = list(devices)

    def sleep_until(self, t: float) -> None:
        """Let every device run the ticks that are due, then sleep until ``t``.

        The devices run first, in the loop's slack, not after the sleep: stepping them (the probe renders a
        frame in milliseconds) after waking would delay every tick by that much, and the loop's period is
        supervised (two missed periods trip the watchdog). What the loop reads at ``t`` is then what the
        devices sent up to one period earlier, as from a real generator, whose telemetry is always some
        milliseconds old when the host reads it.
        """
        for step in self.devices:
            step()
        self.clock.sleep_until(t)
