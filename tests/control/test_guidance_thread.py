"""Guidance on its own thread: nothing the loop calls waits for the probe, a stuck thread goes stale and a
dead one dark (so the imaging-lost interlock acts), and the session's calls reach the guidance in order."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from control.display import GuidanceView
from control.guidance_thread import ANSWER_TIMEOUT_S, LIVE_MAX_AGE_S, GuidanceThread
from control.record import ProcedureRecord, RecordReader
from firmware_bridge.clock import RealClock, SimClock
from safety.inputs import ImagingStatus

WAIT_S = 5.0


class _Probe:
    """A stand-in for ProbeGuidance: each poll is a new frame at the clock's time, unless held or broken."""

    def __init__(self, clock: SimClock) -> None:
        self.clock = clock
        self.frames = 0
        self.release = threading.Event()
        self.release.set()
        self.busy = threading.Event()
        self.broken: Exception | None = None
        self.calls: list[str] = []

    def poll(self) -> ImagingStatus:
        self.busy.set()
        self.release.wait()
        if self.broken is not None:
            raise self.broken
        self.frames += 1
        return ImagingStatus(self.clock.now(), 30.0, probe_face_read_at=self.clock.now())

    def view(self) -> GuidanceView:
        return GuidanceView(live=True, tip_lateral_mm=float(self.frames))

    def rf_start_refusals(self) -> list[str]:
        return ["no tip"]

    def rf_started(self, channels: list[int]) -> None:
        self.calls.append(f"started {channels}")

    def rf_stopped(self) -> None:
        self.calls.append("stopped")

    def record_frame(self, reason: str) -> None:
        self.calls.append(f"frame {reason}")


def _until(condition: Callable[[], bool]) -> None:
    deadline = time.monotonic() + WAIT_S
    while not condition():
        assert time.monotonic() < deadline, "the guidance thread did not get there"
        time.sleep(0.001)


@pytest.fixture
def record(tmp_path: Path) -> Iterator[ProcedureRecord]:
    rec = ProcedureRecord(tmp_path / "g.rfa.db", RealClock())
    yield rec
    rec.close()


def _started(probe: _Probe, record: ProcedureRecord) -> GuidanceThread:
    return GuidanceThread(probe, record, probe.clock, poll_period_s=0.001)


def test_before_its_first_poll_the_status_is_not_live(record: ProcedureRecord) -> None:
    thread = GuidanceThread(_Probe(SimClock()), record, SimClock())
    assert thread.poll().last_frame_at is None
    assert not thread.view().live


def test_the_thread_publishes_each_new_status_and_view(record: ProcedureRecord) -> None:
    probe = _Probe(SimClock())
    with _started(probe, record) as thread:
        _until(lambda: probe.frames >= 3 and thread.view().live)
        assert thread.poll().last_frame_at == probe.clock.now()


def test_nothing_the_loop_calls_waits_for_a_guidance_that_is_stuck(record: ProcedureRecord) -> None:
    probe = _Probe(SimClock())
    with _started(probe, record) as thread:
        _until(lambda: thread.poll().last_frame_at is not None)
        probe.busy.clear()
        probe.release.clear()  # the next poll hangs, as a USB read or a reconnect might
        _until(probe.busy.is_set)
        stuck_at = thread.poll().last_frame_at
        t0 = time.perf_counter()
        for _ in range(1000):
            assert thread.poll().last_frame_at == stuck_at  # ageing: the imaging-lost interlock will act
        thread.rf_started([1])
        thread.record_frame("state ramping")
        assert thread.rf_start_refusals() == ["no tip"]  # the answer of its last poll, still fresh
        probe.clock.advance(1.5 * ANSWER_TIMEOUT_S)
        refusals = thread.rf_start_refusals()  # the hung poll's answer never came: RF is refused
        assert time.perf_counter() - t0 < 0.5  # none of it waited for the hung probe, the tip check included
        assert refusals and "did not answer within 100 ms (its last answer is 150 ms old)" in refusals[0]
        probe.clock.advance(LIVE_MAX_AGE_S)
        assert not thread.view().live  # the physician sees that the image is frozen
        probe.release.set()
        _until(lambda: probe.calls[:2] == ["started [1]", "frame state ramping"])
        _until(lambda: thread.view().live)


def test_an_unexpected_error_ends_the_thread_on_the_record_and_imaging_goes_dark(
    record: ProcedureRecord, tmp_path: Path
) -> None:
    probe = _Probe(SimClock())
    with _started(probe, record) as thread:
        _until(lambda: thread.poll().last_frame_at is not None)
        probe.broken = RuntimeError("kernel bug")
        _until(lambda: thread.failure is not None)
        assert thread.poll().last_frame_at is None  # imaging-lost trips on the next tick, no grace
        assert not thread.view().live
        (refusal,) = thread.rf_start_refusals()
        assert "guidance stopped" in refusal and "kernel bug" in refusal
    record.flush()
    reader = RecordReader(tmp_path / "g.rfa.db")
    try:
        (row,) = list(reader.rows("guidance_error"))
        assert row.payload["error"] == "RuntimeError" and row.payload["detail"] == "kernel bug"
    finally:
        reader.close()


def test_the_sessions_calls_reach_the_guidance_in_order(record: ProcedureRecord) -> None:
    probe = _Probe(SimClock())
    assert _started(probe, record).rf_start_refusals() == ["the ultrasound guidance has not answered yet"]
    with _started(probe, record) as thread:
        _until(lambda: thread.rf_start_refusals() == ["no tip"])  # the guidance's own answer, once it polled
        thread.rf_started([1, 2])
        thread.record_frame("state ramping")
        thread.rf_stopped()
        _until(lambda: len(probe.calls) == 3)
    assert probe.calls == ["started [1, 2]", "frame state ramping", "stopped"]
