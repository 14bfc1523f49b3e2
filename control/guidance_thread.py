"""Ultrasound guidance on its own thread, for real-time runs: the 10 ms tick never waits for the probe.

:class:`~control.guidance.ProbeGuidance` does its work inside ``poll()``: USB reads, B-mode for each new
frame (about 2 ms at 20 frames/s), the tip search twice a second, the probe's status once a second, and
after a disconnect ``usb.core.find``, which can take hundreds of milliseconds. In simulated time that is
free (time does not pass) and keeps runs reproducible, so the loop calls it directly. In real time it
would hold the tick up, so :class:`GuidanceThread` runs it on a thread of its own and the tick only reads
the latest published :class:`~safety.inputs.ImagingStatus` and guidance view.

Safety does not depend on this thread being healthy. The status carries the time of the last good
frame, so a thread that hangs (a USB call that never returns) leaves that time ageing, and the gate's
imaging-lost interlock turns RF off as for a probe that stops sending frames. A thread that dies of an
unexpected error records it, and from then on the tick sees no imaging at all, so imaging-lost acts on
the next tick and RF cannot start.

The numba kernels the pipeline runs release the GIL (``nogil=True``), so B-mode runs on the other core
while the loop ticks; the rest of the thread's Python holds the GIL for at most the switch interval the
real-time runtime sets (``control.runtime``).
"""

from __future__ import annotations

import contextlib
import threading
from collections import deque
from collections.abc import Callable
from dataclasses import replace
from functools import partial
from typing import Final

from control.display import GuidanceView
from control.loop import Guidance
from control.record import ProcedureRecord, RecordError
from firmware_bridge.clock import Clock
from safety.inputs import ImagingStatus

POLL_PERIOD_S: Final = 0.005
"""How often the thread looks for new frames: twice per tick, four times per frame at 20 frames/s."""
LIVE_MAX_AGE_S: Final = 0.5
"""The view shows imaging as live only while its last frame is younger than this."""
ANSWER_TIMEOUT_S: Final = 0.1
"""How old the thread's last tip check may be when RF starts; an older one (a busy or hung probe) refuses RF."""
STOP_TIMEOUT_S: Final = 2.0
NOT_LIVE: Final = ImagingStatus(None, None)
"""What the tick sees once the thread has died: no frame, so the imaging-lost interlock acts at once."""


class GuidanceThread:
    """The :class:`~control.loop.Guidance` of a real-time run: another one (``inner``, the
    :class:`~control.guidance.ProbeGuidance`) polled on a thread of its own.

    Nothing the loop's thread calls waits on the probe: :meth:`poll` and :meth:`view` read what the thread
    published; RF started or stopped and frames for the record are queued and applied by the thread, in
    order, before its next poll; the tip check before RF starts reads the answer the thread published with
    its last poll, and an answer older than ``ANSWER_TIMEOUT_S`` refuses RF. (It once waited for the
    thread instead, up to 100 ms on the loop's thread: a frame being processed as RF started could break
    the loop's period and trip ``control_loop_overrun``.)
    """

    def __init__(
        self, inner: Guidance, record: ProcedureRecord, clock: Clock, *, poll_period_s: float = POLL_PERIOD_S
    ) -> None:
        self.inner = inner
        self.record = record
        self.clock = clock
        self.poll_period_s = poll_period_s
        self._status = ImagingStatus(None, None)
        self._view = GuidanceView(live=False)
        self._refusals: tuple[list[str], float] | None = None
        """The tip check's answer as of the thread's last poll, and when: the loop reads it, never waits."""
        self._pending: deque[Callable[[], None]] = deque()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="guidance", daemon=True)
        self.failure: BaseException | None = None
        """The unexpected error that ended the thread, if one did (it is also on the record)."""

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(STOP_TIMEOUT_S)

    def __enter__(self) -> GuidanceThread:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- the loop's side: never waits ----------------------------------------------------------------
    def poll(self) -> ImagingStatus:
        """The status the thread last published (one reference read), or no imaging once it has died."""
        return NOT_LIVE if self.failure is not None else self._status

    def view(self) -> GuidanceView:
        """The last published view; not live once its frame is older than ``LIVE_MAX_AGE_S`` (a stuck probe)."""
        view, last = self._view, self.poll().last_frame_at
        if view.live and (last is None or not self.clock.now() - last < LIVE_MAX_AGE_S):
            return replace(view, live=False)
        return view

    def rf_started(self, channels: list[int]) -> None:
        self._pending.append(partial(self.inner.rf_started, list(channels)))

    def rf_stopped(self) -> None:
        self._pending.append(self.inner.rf_stopped)

    def record_frame(self, reason: str) -> None:
        self._pending.append(partial(self.inner.record_frame, reason))

    def rf_start_refusals(self) -> list[str]:
        if self.failure is not None:
            return [f"guidance stopped: {type(self.failure).__name__}: {self.failure}"]
        answer = self._refusals
        if answer is None:
            return ["the ultrasound guidance has not answered yet"]
        refusals, at = answer
        age_s = self.clock.now() - at
        if not age_s <= ANSWER_TIMEOUT_S:
            return [f"the ultrasound probe did not answer within {ANSWER_TIMEOUT_S * 1000:.0f} ms "
                    f"(its last answer is {age_s * 1000:.0f} ms old)"]
        return list(refusals)

    # -- the thread ----------------------------------------------------------------------------------------
    def _run(self) -> None:
        try:
            while not self._stop.is_set():
                while self._pending:
                    self._pending.popleft()()
                status = self.inner.poll()
                view = self.inner.view()
                refusals = self.inner.rf_start_refusals()
                self._status, self._view = status, view
                self._refusals = (refusals, self.clock.now())
                self._stop.wait(self.poll_period_s)
        except Exception as exc:  # a bug, not a probe fault (those the inner handles): stop, say so, go dark
            self.failure = exc
            with contextlib.suppress(RecordError):  # a closed record: the procedure is over, it cannot matter
                self.record.append("guidance_error", {"error": type(exc).__name__, "detail": str(exc),
                                                      "effect": "imaging reported lost from now on"})
