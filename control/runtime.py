"""What the Python process does so that the interpreter itself never holds up the 10 ms loop in real time.

Two interpreter behaviours, harmless in a batch job, are hazards for a 100 Hz loop:

- **The garbage collector** runs when allocations pass a threshold, inside whatever code allocated; an
  old-generation pass over a large heap takes tens of milliseconds on the cart's PC (110 ms measured on the
  development VM), past the watchdog's two-period overrun limit. While the loop runs, automatic
  collection is off; everything that exists when the loop starts (modules, the plan, compiled kernels) is
  frozen out of collection (:func:`gc.freeze`); and the loop collects in its slack, after a tick's work
  and before it sleeps: the young generation every tick, the middle one every ``MIDDLE_EVERY`` ticks,
  all of it every ``FULL_EVERY`` ticks. Each pass is short because each generation is collected often.
  What survives a full pass is frozen too, so the next full pass walks only what survived since: a
  procedure's heap grows for as long as it runs (traces, frames, record rows in flight), and without
  this the full pass grew with it, towards the watchdog's limit. The price is that a reference cycle
  among frozen objects is freed only when the loop stops (objects freed by reference counting, nearly
  all of them, go at once, frozen or not).
- **The GIL switch interval** (5 ms by default) is how long a thread that wants the interpreter waits
  before the running thread is made to let go. When the record's writer holds the GIL as a tick begins,
  the loop would wait up to 5 ms; the watchdog's thread likewise. The interval is lowered while the loop
  runs.

Both are restored when the loop stops. In simulated time none of this is needed (time does not pass
during a pause), so the session uses it only for real-time runs; the benchmark uses it to measure the
tick as the cart runs it.
"""

from __future__ import annotations

import gc
import sys
from typing import Final

SWITCH_INTERVAL_S: Final = 0.0002
"""How long another thread may keep the loop waiting for the interpreter: 2 % of the period."""
MIDDLE_EVERY: Final = 10
FULL_EVERY: Final = 500
"""Ticks between collections of the middle and of every generation (0.1 s and 5 s at 100 Hz)."""
_active: LoopRuntime | None = None
"""The runtime currently entered in this process, if any."""


class LoopRuntime:
    """Interpreter settings for a real-time loop; :meth:`enter` at start, :meth:`slack` between ticks."""

    def __init__(self) -> None:
        self._entered = False
        self._gc_was_enabled = True
        self._was_frozen = False
        self._switch_interval_s = sys.getswitchinterval()
        self._ticks = 0

    def enter(self) -> None:
        """Collect once, freeze what exists, turn automatic collection off, shorten the switch interval.

        One real-time loop per process: a second runtime entered while one is active is refused, since
        their exits could not both restore what the first found.
        """
        global _active
        if self._entered:
            return
        if _active is not None:
            raise RuntimeError("another real-time loop already runs in this process")
        _active = self
        self._entered = True
        self._gc_was_enabled = gc.isenabled()
        self._was_frozen = gc.get_freeze_count() > 0
        self._switch_interval_s = sys.getswitchinterval()
        gc.collect()
        gc.freeze()
        gc.disable()
        sys.setswitchinterval(SWITCH_INTERVAL_S)

    def slack(self) -> None:
        """Between ticks: collect the generation whose turn it is (see module docstring)."""
        if not self._entered:
            return
        self._ticks += 1
        if self._ticks % FULL_EVERY == 0:
            gc.collect(2)
            gc.freeze()  # the survivors: the next full pass walks only what is newer (module docstring)
        elif self._ticks % MIDDLE_EVERY == 0:
            gc.collect(1)
        else:
            gc.collect(0)

    def exit(self) -> None:
        """Put the interpreter back as :meth:`enter` found it."""
        global _active
        if not self._entered:
            return
        self._entered = False
        _active = None
        sys.setswitchinterval(self._switch_interval_s)
        # A freeze the process made before the loop is the process's to undo (and the survivors frozen
        # since cannot be told apart from it: they stay frozen with it).
        if not self._was_frozen:
            gc.unfreeze()
        if self._gc_was_enabled:
            gc.enable()
