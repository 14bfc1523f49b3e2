"""Ultrasound guidance on its own thread, for real-time runs: the 10 ms tick never waits for the probe.

:class:`~control.guidance.ProbeGuidance` does its work inside ``poll()``: USB reads, B-mode for each new
frame (about 2 ms at 20 frames/s), the tip search twice a second, the probe's status once a second, and
after a disconnect ``usb.core.find``, which can take hundreds of milliseconds. In simulated time that is
free (time does not pass) and keeps runs reproducible, so the loop calls it directly. In real time it
would hold the tick up, so :class:`GuidanceThread` runs it on a thread of its own and the tick only reads
the latest published :class:`~safety.inputs.ImagingStatus` and guidance view.

Safety does not depend on this thread being healthy: the status carries the time of the last good
frame, so a thread that stops, hangs or dies leaves that time ageing, and the gate's imaging-lost
interlock turns RF off. A thread that dies of an unexpected error records it first.

The numba kernels the pipeline runs release the GIL (``nogil=True``), so B-mode runs on the other core
while the loop ticks; the rest of the thread's Python holds the GIL for at most the switch interval the
real-time runtime sets (``control.runtime``).
"""

from __future__ import annotations

import threading
from typing import Final, Protocol

from control.display import GuidanceView
from control.record import ProcedureRecord
from safety.inputs import ImagingStatus

POLL_PERIOD_S: Final = 0.005
"""How often the thread looks for new frames: twice per tick, four times per frame at 20 frames/s."""
STOP_TIMEOUT_S: Final = 2.0


class _Guidance(Protocol):
    """What the thread drives: :class:`~control.guidance.ProbeGuidance`, or a stand-in in tests."""

    def poll(self) -> ImagingStatus: ...
    def view(self) -> GuidanceView: ...
    def rf_start_refusals(self) -> list[str]: ...
    def rf_started(self, channels: list[int]) -> None: ...
    def rf_stopped(self) -> None: ...
    def record_frame(self, reason: str) -> None: ...


class GuidanceThread:
    """The :class:`~control.loop.Guidance` of a real-time run: ``inner`` polled on a thread of its own."""

    def __init__(self, inner: _Guidance, record: ProcedureRecord, *, poll_period_s: float = POLL_PERIOD_S) -> None:
        self.inner = inner
        self.record = record
        self.poll_period_s = poll_period_s
        self._lock = threading.Lock()
        """Held while ``inner`` works: the thread's poll, and the session's rare calls at state changes."""
        self._status = ImagingStatus(None, None)
        self._view = GuidanceView(live=False)
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

    # -- the tick's side: never waits --------------------------------------------------------------------
    def poll(self) -> ImagingStatus:
        """The status the thread last published (one reference read: no lock, no wait)."""
        return self._status

    def view(self) -> GuidanceView:
        return self._view

    # -- the session's side, at state changes: waits for at most one poll of ``inner`` ----------------
    def rf_start_refusals(self) -> list[str]:
        with self._lock:
            return self.inner.rf_start_refusals()

    def rf_started(self, channels: list[int]) -> None:
        with self._lock:
            self.inner.rf_started(channels)

    def rf_stopped(self) -> None:
        with self._lock:
            self.inner.rf_stopped()

    def record_frame(self, reason: str) -> None:
        with self._lock:
            self.inner.record_frame(reason)

    # -- the thread ----------------------------------------------------------------------------------------
    def _run(self) -> None:
        try:
            while not self._stop.is_set():
                with self._lock:
                    status = self.inner.poll()
                    view = self.inner.view()
                self._status, self._view = status, view
                self._stop.wait(self.poll_period_s)
        except Exception as exc:  # a bug, not a probe fault (those the inner handles): stop, say so, go stale
            self.failure = exc
            self._view = GuidanceView(live=False)
            self.record.append("guidance_error", {"error": type(exc).__name__, "detail": str(exc),
                                                  "effect": "imaging status no longer updated"})
