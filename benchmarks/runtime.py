"""The real-time loop's full garbage collection, on a heap that grew during a long procedure.

``control.runtime`` collects every generation in the loop's slack every 5 s. A procedure's heap grows
while it runs, and a full pass walks every container that is not frozen, so without care its cost grows
with the length of the procedure, towards the watchdog's two-period limit. The runtime freezes what
survives each full pass. This benchmark builds a heap like an hour of loop-made survivors (one small
container per channel per tick), then times, in the same run:

* the reference: one full pass over that heap as it stands, which every pass would cost without the
  freeze;
* the runtime's next full pass, after its previous one has frozen those survivors.
"""

from __future__ import annotations

import gc
import time
from typing import Final

from benchmarks.result import BenchResult
from control.runtime import FULL_EVERY, LoopRuntime

BENCH: Final = "runtime"
PERIOD_MS: Final = 10.0
HOUR_OF_SURVIVORS: Final = 4 * 100 * 3600
"""One small container per channel per tick for an hour at 100 Hz."""


def _full_pass_ms() -> float:
    started = time.perf_counter_ns()
    gc.collect(2)
    return (time.perf_counter_ns() - started) / 1e6


def measure(survivors: int) -> tuple[float, float]:
    """Milliseconds of a full pass over ``survivors`` unfrozen containers, and of the runtime's next one."""
    runtime = LoopRuntime()
    runtime.enter()
    try:
        heap = [[i] for i in range(survivors)]  # small lists: tracked for good (tuples of atoms get untracked)
        reference_ms = min(_full_pass_ms() for _ in range(3))
        for _ in range(FULL_EVERY):  # one turn of the runtime's cycle ends with its full pass and freeze
            runtime.slack()
        frozen_ms = min(_full_pass_ms() for _ in range(3))
        del heap
    finally:
        runtime.exit()
    return reference_ms, frozen_ms


def run(quick: bool = False) -> list[BenchResult]:
    survivors = HOUR_OF_SURVIVORS // (10 if quick else 1)
    reference_ms, frozen_ms = measure(survivors)
    detail = (f"{survivors:,} small containers made while the loop ran (an hour of one per channel per tick); "
              f"a full pass over them as they stand: {reference_ms:.2f} ms, what every pass would cost without "
              f"the freeze")
    return [
        BenchResult(BENCH, "full_pass_after_long_procedure_ms", frozen_ms, "ms", f"< {PERIOD_MS:g}",
                    frozen_ms < PERIOD_MS, detail),
        BenchResult(BENCH, "full_pass_unfrozen_over_frozen", reference_ms / frozen_ms, "x",
                    detail="the same heap, same run: how much the freeze after each full pass saves"),
    ]
