"""Guidance on its own thread: the tick's poll never waits, a stuck or dead thread goes stale (so the
imaging-lost interlock acts), and the session's calls reach the guidance."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from control.display import GuidanceView
from control.guidance_thread import GuidanceThread
from control.record import ProcedureRecord, RecordReader
from firmware_bridge.clock import RealClock
from safety.inputs import ImagingStatus

WAIT_S = 5.0


class _Probe:
    """A stand-in for ProbeGuidance: each poll is a new frame, unless held or broken."""

    def __init__(self) -> None:
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
        return ImagingStatus(float(self.frames), 30.0)

    def view(self) -> GuidanceView:
        return GuidanceView(live=True, tip_lateral_mm=float(self.frames))

    def rf_start_refusals(self) -> list[str]:
        self.calls.append("refusals")
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


def test_before_its_first_poll_the_status_is_not_live(record: ProcedureRecord) -> None:
    thread = GuidanceThread(_Probe(), record)
    assert thread.poll().last_frame_at is None
    assert not thread.view().live


def test_the_thread_publishes_each_new_status_and_view(record: ProcedureRecord) -> None:
    probe = _Probe()
    with GuidanceThread(probe, record, poll_period_s=0.001) as thread:
        _until(lambda: (thread.poll().last_frame_at or 0.0) >= 3.0)
        assert thread.view().live and thread.view().tip_lateral_mm is not None


def test_the_ticks_poll_does_not_wait_for_a_guidance_that_is_stuck(record: ProcedureRecord) -> None:
    probe = _Probe()
    with GuidanceThread(probe, record, poll_period_s=0.001) as thread:
        _until(lambda: thread.poll().last_frame_at is not None)
        probe.busy.clear()
        probe.release.clear()  # the next poll hangs, as a USB read or reconnect might
        _until(probe.busy.is_set)
        stuck_at = thread.poll().last_frame_at
        t0 = time.perf_counter()
        for _ in range(1000):
            assert thread.poll().last_frame_at == stuck_at  # stale: the imaging-lost interlock will age it
        assert time.perf_counter() - t0 < 0.5  # a thousand polls of a hung probe, at once
        probe.release.set()
        _until(lambda: (thread.poll().last_frame_at or 0.0) > (stuck_at or 0.0))


def test_an_unexpected_error_ends_the_thread_on_the_record_and_the_status_goes_stale(
    record: ProcedureRecord, tmp_path: Path
) -> None:
    probe = _Probe()
    thread = GuidanceThread(probe, record, poll_period_s=0.001)
    with thread:
        _until(lambda: thread.poll().last_frame_at is not None)
        probe.broken = RuntimeError("kernel bug")
        _until(lambda: thread.failure is not None)
        last = thread.poll().last_frame_at
        time.sleep(0.02)
        assert thread.poll().last_frame_at == last
        assert not thread.view().live
    record.flush()
    reader = RecordReader(tmp_path / "g.rfa.db")
    try:
        (row,) = list(reader.rows("guidance_error"))
        assert row.payload["error"] == "RuntimeError" and row.payload["detail"] == "kernel bug"
    finally:
        reader.close()


def test_the_sessions_calls_reach_the_guidance(record: ProcedureRecord) -> None:
    probe = _Probe()
    with GuidanceThread(probe, record, poll_period_s=0.001) as thread:
        assert thread.rf_start_refusals() == ["no tip"]
        thread.rf_started([1, 2])
        thread.record_frame("state ramping")
        thread.rf_stopped()
    assert probe.calls == ["refusals", "started [1, 2]", "frame state ramping", "stopped"]
