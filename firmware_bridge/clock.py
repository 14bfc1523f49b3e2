"""Injected time (ARCHITECTURE.md section 3).

Everything that needs time takes a :class:`Clock`, so tests run a 90 s lesion in simulated time in well
under a second and every run is reproducible, while the cart runs on :class:`RealClock`.
"""

from __future__ import annotations

import threading
import time
from typing import Protocol, runtime_checkable


@runtime_checkable
class Clock(Protocol):
    """Monotonic seconds and a way to wait for a moment."""

    def now(self) -> float:
        """Monotonic time in seconds; never goes backwards."""
        ...

    def sleep_until(self, t: float) -> None:
        """Return once ``now() >= t`` (at once if that moment has passed)."""
        ...


class RealClock:
    """Wall-clock monotonic time for the cart: ``time.monotonic`` and a real sleep."""

    def now(self) -> float:
        return time.monotonic()

    def sleep_until(self, t: float) -> None:
        delay = t - time.monotonic()
        if delay > 0:
            time.sleep(delay)


class SimClock:
    """Simulated time, advanced explicitly by the test or the lockstep runner.

    ``sleep_until`` does not block: it jumps time forward, because in lockstep there is only one actor
    that advances time at a time. Thread-safe, so a watchdog thread may read it: moving time takes a lock,
    reading it needs none (one attribute read is atomic in CPython, and ``now`` is called many times a tick).
    """

    def __init__(self, start: float = 0.0) -> None:
        self._t = float(start)
        self._lock = threading.Lock()

    def now(self) -> float:
        return self._t

    def sleep_until(self, t: float) -> None:
        with self._lock:
            if t > self._t:
                self._t = float(t)

    def advance(self, dt: float) -> float:
        """Move time forward by ``dt`` seconds (``dt >= 0``) and return the new time."""
        if dt < 0:
            raise ValueError(f"simulated time cannot go backwards (dt={dt})")
        with self._lock:
            self._t += dt
            return self._t
