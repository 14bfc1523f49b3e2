"""Ultrasound guidance in a procedure: imaging status, the tip on the record, frames at the planned rate."""

from __future__ import annotations

from pathlib import Path

import pytest

from control.cli import SimulatedCart, simulated_cart
from control.display import GuidanceView, format_line
from control.guidance import STATUS_PERIOD_S, STATUS_RETRY_S, ProbeGuidance
from control.operator import ScriptedOperator
from control.record import ProcedureRecord, RecordReader
from control.session import IMAGING_READY_TIMEOUT_S, ProcedureSession
from firmware_bridge.clock import SimClock
from firmware_bridge.errors import ProbeError
from firmware_bridge.generator import RfGenerator
from firmware_bridge.probe import ProbeStatus, UltrasoundProbe
from safety.plan import Electrode, Lesion, LesionPlan, StimulationSettings
from sim.lockstep import Lockstep
from sim.probe import CART_NEEDLE, SimProbeBackend


def guided_plan() -> LesionPlan:
    lesion = Lesion(channel=1, electrode=Electrode(gauge=20, active_tip_mm=10.0), set_temp_c=60.0,
                    ramp_rate_c_per_s=2.0, lesion_time_s=20.0, power_cap_w=20.0, impedance_min_ohm=60.0,
                    impedance_max_ohm=800.0)
    return LesionPlan(name="guided", imaging_required=True, stimulation=StimulationSettings(max_amplitude_mv=100),
                      lesions=(lesion,))


def guided_session(
    tmp_path: Path, seed: int, *, frame_record_period_s: float = 1.0, needle: bool = True, silent: bool = False
) -> tuple[ProcedureSession, ProbeGuidance, ProcedureRecord, SimulatedCart, SimClock]:
    """A guided plan on the in-process cart with the simulated probe; the probe's scene set up first."""
    plan = guided_plan()
    clock = SimClock()
    cart = simulated_cart(plan, clock, seed=seed, physical=False)
    assert cart.probe_sim is not None
    if not needle:
        cart.probe_sim.set_needle(None)  # imaging is live, but the electrode is out of plane
    generator = RfGenerator(cart.host_transport, clock)
    record = ProcedureRecord(tmp_path / f"guided-{seed}.rfa.db", clock)
    probe = UltrasoundProbe.open(clock, backend=SimProbeBackend(cart.probe_sim))
    guidance = ProbeGuidance(probe, clock, record, guided_channel=1, frame_record_period_s=frame_record_period_s)
    if silent:
        cart.probe_sim.set_silent(True)  # the probe stops sending frames before the procedure starts
    session = ProcedureSession(plan=plan, generator=generator, clock=clock, pacer=Lockstep(clock, cart.devices),
                               record=record, operator=ScriptedOperator(plan), guidance=guidance)
    return session, guidance, record, cart, clock


def test_a_guided_lesion_records_frames_with_the_tip(tmp_path: Path) -> None:
    session, guidance, record, _, clock = guided_session(tmp_path, 3, frame_record_period_s=2.0)
    result = session.run()
    record.close()
    assert result.exit_code == 0, result.message or result.first_trip
    reader = RecordReader(record.path)
    frames = [r.payload for r in reader.rows("frame")]
    states = [r.payload for r in reader.rows("state")]
    at_states = [f for f in frames if f["reason"].startswith("state ")]
    during_rf = [f for f in frames if f["reason"] == "rf"]
    assert [f["reason"] for f in at_states] == [f"state {s['dest']}" for s in states]
    # 20 s of RF at one frame per 2 s (the first at RF start).
    assert len(during_rf) == pytest.approx(10, abs=1)
    for frame in during_rf:
        assert frame["tip_lateral_mm"] == pytest.approx(CART_NEEDLE.tip_lateral_mm, abs=1.0)
        assert frame["tip_depth_mm"] == pytest.approx(CART_NEEDLE.tip_depth_mm, abs=1.0)
        assert frame["zlib_b64"] and frame["shape"][0] > 0
    status = guidance.poll()
    assert status.last_frame_at is not None and clock.now() - status.last_frame_at < 0.1
    assert status.probe_face_temp_c is not None and status.boiling_channels == frozenset()


def test_a_probe_that_sends_no_frame_fails_self_test_and_says_why(tmp_path: Path) -> None:
    session, _, record, cart, clock = guided_session(tmp_path, 4, silent=True)
    result = session.run()
    record.close()
    assert result.exit_code == 1
    assert f"imaging not live, no ultrasound frame within {IMAGING_READY_TIMEOUT_S:.0f} s" in result.message
    assert clock.now() >= IMAGING_READY_TIMEOUT_S
    assert not any(ch.output_on for ch in cart.generator_sim.channels)
    states = [row.payload["dest"] for row in RecordReader(record.path).rows("state")]
    assert states == ["self_test", "fault"], "nothing was energised"


def test_self_test_waits_for_a_first_frame_that_comes_late(tmp_path: Path) -> None:
    """In real time the first frame can follow the generator's self-test by a second: wait, do not refuse."""
    session, _, record, cart, clock = guided_session(tmp_path, 6, silent=True)
    assert cart.probe_sim is not None
    for _ in session.steps():
        if clock.now() >= 2.0:
            cart.probe_sim.set_silent(False)
    record.close()
    assert session.result is not None and session.result.exit_code == 0, session.result
    reader = RecordReader(record.path)
    (passed,) = [row for row in reader.rows("state") if row.payload["dest"] == "standby"][:1]
    assert passed.mono >= 2.0
    assert [row.payload for row in reader.rows("alarm") if row.payload["event"] == "trip"] == []
    assert reader.count("stimulation") == 1 and reader.count("refused") == 0


def test_rf_is_refused_under_guidance_when_the_needle_tip_is_not_in_the_image(tmp_path: Path) -> None:
    session, _, _, _, _ = guided_session(tmp_path, 5, needle=False)
    result = session.run()
    assert result.exit_code == 1
    assert "needle tip of ch1 not found" in result.message
    assert result.summaries == [], "no lesion was started"


def test_a_failed_probe_status_read_is_tried_again_soon_so_the_face_reading_never_ages_out(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Guidance is live only while the probe face's temperature is read within 2 s (safety.interlocks); with the
    next read a whole period after a failed one, a single failure took it past that and refused arming or a
    stimulus step (a fault in a --yes run). Now a failed read is tried again within STATUS_RETRY_S."""
    _, guidance, record, cart, clock = guided_session(tmp_path, 5)
    probe = guidance.probe
    read = probe.read_status
    failures = [2.5, 3.6]  # one failed read each (the first is 2.5 s into the run)

    def flaky() -> ProbeStatus:
        if failures and clock.now() >= failures[0]:
            failures.pop(0)
            raise ProbeError("GET_STATUS stalled")
        return read()

    monkeypatch.setattr(probe, "read_status", flaky)
    pacer = Lockstep(clock, cart.devices)
    oldest = 0.0
    for _ in range(600):  # 6 s at the loop's period
        pacer.sleep_until(clock.now() + 0.01)
        status = guidance.poll()
        assert status.probe_face_read_at is not None and status.probe_face_temp_c is not None
        oldest = max(oldest, clock.now() - status.probe_face_read_at)
    record.close()
    assert failures == [] and guidance.errors == 2
    assert STATUS_PERIOD_S < oldest <= STATUS_PERIOD_S + STATUS_RETRY_S + 0.011


def test_a_probe_reporting_its_fault_state_is_shown_not_live_as_the_gate_judges_it(tmp_path: Path) -> None:
    """The gate takes a probe in its fault state as no imaging at its next status reading; the display said "live"
    all the while, frames still streaming. Both follow the same reading, and its end."""
    _, guidance, record, cart, clock = guided_session(tmp_path, 5)
    assert cart.probe_sim is not None
    pacer = Lockstep(clock, cart.devices)

    def run_for(seconds: float) -> None:
        for _ in range(round(seconds / 0.01)):
            pacer.sleep_until(clock.now() + 0.01)
            guidance.poll()

    run_for(1.5)
    assert guidance.view().live and guidance.poll().probe_fault_bits is None
    cart.probe_sim.report_fault(True)
    run_for(STATUS_PERIOD_S + 0.05)
    assert guidance.poll().probe_fault_bits is not None and not guidance.view().live
    cart.probe_sim.report_fault(False)
    run_for(STATUS_PERIOD_S + 0.05)
    assert guidance.poll().probe_fault_bits is None and guidance.view().live
    record.close()


def test_a_tip_the_image_no_longer_covers_stops_rf_as_imaging_lost(tmp_path: Path) -> None:
    """The depth set shallower than the tip mid-lesion: frames still stream, but the boiling monitor cannot see
    the tip's disk, so boiling would go unseen. Those frames age as if they had not come (the plan's frame age
    plus the grace under power), then imaging_lost stops RF; the blind frame and the trip are on the record."""
    session, guidance, record, cart, clock = guided_session(tmp_path, 6)
    assert cart.probe_sim is not None
    steps = session.steps()
    while session.procedure.state.value != "lesioning":
        next(steps)
    assert guidance.view().boiling_watch == "watching"
    cart.probe_sim.set_depth_mm(20)  # the tip is 30 mm deep
    shallow_at = clock.now()
    for _ in steps:
        pass
    record.close()
    result = session.result
    assert result is not None and (result.exit_code, result.final_state) == (1, "fault"), result
    assert result.first_trip.startswith("imaging_lost"), result.first_trip
    assert "boiling monitor blind to the tip (not in the image) for 2.5" in result.first_trip, result.first_trip
    reader = RecordReader(record.path)
    [blind] = [row for row in reader.rows("boiling_monitor")]
    assert blind.payload["channel"] == 1 and blind.payload["detail"].startswith("blind")
    limit = guided_plan().imaging_frame_max_age_s + 2.0  # + IMAGING_LOSS_GRACE_S under power
    [trip] = [row for row in reader.rows("alarm") if row.payload.get("interlock") == "imaging_lost"]
    assert shallow_at + limit < trip.mono <= shallow_at + limit + 0.2  # a frame period, then a tick
    frames = [row.payload for row in reader.rows("frame") if row.payload["reason"] == "boiling monitor blind"]
    assert len(frames) == 1 and frames[0]["boiling_watch"] == "unwatchable"


def test_a_boiling_monitor_blind_for_less_than_the_limit_lets_the_lesion_finish(tmp_path: Path) -> None:
    session, guidance, record, cart, clock = guided_session(tmp_path, 7)
    assert cart.probe_sim is not None
    steps = session.steps()
    while session.procedure.state.value != "lesioning":
        next(steps)
    depth_mm = cart.probe_sim.depth_mm
    cart.probe_sim.set_depth_mm(20)
    back_at = clock.now() + 1.0  # under the plan's frame age + the grace
    while clock.now() < back_at:
        next(steps)
    assert guidance.boiling_blind_since is not None and guidance.view().boiling_watch == "unwatchable"
    cart.probe_sim.set_depth_mm(depth_mm)
    for _ in steps:
        pass
    record.close()
    assert session.result is not None and session.result.exit_code == 0, session.result
    details = [row.payload["detail"] for row in RecordReader(record.path).rows("boiling_monitor")]
    assert details == ["blind: the tip's disk is not in the image", "watching again"]


@pytest.mark.parametrize(
    ("view", "shown"),
    [
        (GuidanceView(True, 0.2, 30.0, 0.9), "US: tip +0.2/30.0 mm"),
        (GuidanceView(True, 0.2, 30.0, 0.9, "watching"), "US: tip +0.2/30.0 mm, boiling watch: watching"),
        (GuidanceView(True, None, None, 0.1, "unwatchable"), "US: live, tip not found, boiling watch: unwatchable"),
        (GuidanceView(False), "US: no image"),
    ],
)
def test_the_progress_line_says_what_the_boiling_monitor_is_doing(view: GuidanceView, shown: str) -> None:
    assert format_line(1.0, "lesioning", [], view).endswith(f"| {shown}")
