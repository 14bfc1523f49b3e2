"""Scripted probe faults (``[[probe_fault]]``): read strictly, acted out at their times, met by the driver."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import pytest

from control.cli import main
from control.guidance import STATUS_PERIOD_S
from control.record import RecordReader
from firmware_bridge.clock import RealClock, SimClock
from firmware_bridge.errors import ProbeError
from firmware_bridge.probe import (
    ProbeDisconnected,
    ProbeNotFound,
    ProbeOptions,
    ProbeStalled,
    ProbeState,
    UltrasoundProbe,
)
from sim import cli as sim_cli
from sim.generator import load_faults
from sim.probe import ProbeFault, ProbeFaultKind, SimProbe, SimProbeBackend, load_probe_faults
from sim.probe.device import SELF_TEST_FAILED_BIT
from sim.probe.remote import RemoteProbeBackend
from tests.probe.conftest import SMALL_RF, TICK_S, run_for

EVERY_KIND = """
[[probe_fault]]
kind = "usb_stall"
at_s = 1.0

[[probe_fault]]
kind = "disconnect"
at_s = 2.0
duration_s = 0.5

[[probe_fault]]
kind = "frame_drops"
at_s = 3.0
value = 3

[[probe_fault]]
kind = "overheating"
at_s = 4.0

[[probe_fault]]
kind = "reports_fault"
at_s = 6.0
duration_s = 1.5

[[fault]]
kind = "thermocouple_open"
at_s = 5.0
"""


def script(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "faults.toml"
    path.write_text(text)
    return path


def test_a_script_with_probe_faults_is_read_beside_the_generators(tmp_path: Path) -> None:
    path = script(tmp_path, EVERY_KIND)
    assert load_probe_faults(path) == [
        ProbeFault(ProbeFaultKind.USB_STALL, 1.0),
        ProbeFault(ProbeFaultKind.DISCONNECT, 2.0, duration_s=0.5),
        ProbeFault(ProbeFaultKind.FRAME_DROPS, 3.0, value=3.0),
        ProbeFault(ProbeFaultKind.OVERHEATING, 4.0),
        ProbeFault(ProbeFaultKind.REPORTS_FAULT, 6.0, duration_s=1.5),
    ]
    assert [f.kind.value for f in load_faults(path)] == ["thermocouple_open"]
    assert ProbeFault(ProbeFaultKind.OVERHEATING, 4.0).magnitude == 0.5  # °C/s when left out


@pytest.mark.parametrize(("text", "reason"), [
    ('kind = "meltdown"\nat_s = 1', "kind: 'meltdown' is not a probe fault kind; the kinds are usb_stall, "
                                    "disconnect, frame_drops, overheating, reports_fault"),
    ('kind = "usb_stall"', "missing field 'at_s'"),
    ('kind = "usb_stall"\nat_s = 1\nduration_s = 2', "duration_s: a usb_stall happens once, at at_s"),
    ('kind = "disconnect"\nat_s = 1\nvalue = 2', "value: a disconnect takes none"),
    ('kind = "frame_drops"\nat_s = 1\nvalue = 2.5', "value: frame_drops counts frames: a whole number, not 2.5"),
    ('kind = "overheating"\nat_s = 1\nvalue = -1', "value: must be a finite number greater than 0, not -1.0"),
    ('kind = "overheating"\nat_s = nan', "fault timing must be finite"),
    ('kind = "overheating"\nat_s = "1"', "at_s: '1' is not a number"),
    ('kind = "disconnect"\nat_s = 1\nchannel = 1', "unknown field(s) ['channel']"),
])
def test_a_bad_probe_fault_is_refused_naming_the_entry_and_the_reason(tmp_path: Path, text: str,
                                                                     reason: str) -> None:
    path = script(tmp_path, "[[probe_fault]]\nkind = \"usb_stall\"\nat_s = 0\n\n[[probe_fault]]\n" + text + "\n")
    with pytest.raises(ValueError) as refused:
        load_probe_faults(path)
    assert str(refused.value).startswith(f"{path}: probe_fault[1]: ") and reason in str(refused.value)


def scripted(clock: SimClock, *faults: ProbeFault) -> tuple[SimProbe, UltrasoundProbe]:
    """A probe acting out ``faults`` on the clock's time line, and the driver streaming from it."""
    sim_probe = SimProbe(clock, SMALL_RF)
    sim_probe.script_faults(faults, clock.now)
    driver = UltrasoundProbe.open(clock, backend=SimProbeBackend(sim_probe), options=ProbeOptions(frame_timeout_s=0.5))
    driver.unfreeze()
    return sim_probe, driver


def test_a_scripted_usb_stall_comes_at_its_time_and_clears() -> None:
    clock = SimClock()
    _, driver = scripted(clock, ProbeFault(ProbeFaultKind.USB_STALL, 0.3))
    assert run_for(clock, driver, 0.29)
    with pytest.raises(ProbeStalled):
        run_for(clock, driver, 0.02)
    assert clock.now() >= 0.3
    assert run_for(clock, driver, 0.2), "the host cleared the halt: frames again"


def test_a_scripted_disconnect_lasts_its_duration_then_the_probe_is_found_again() -> None:
    clock = SimClock()
    _, driver = scripted(clock, ProbeFault(ProbeFaultKind.DISCONNECT, 0.3, duration_s=0.2))
    assert run_for(clock, driver, 0.29)
    with pytest.raises(ProbeDisconnected):
        run_for(clock, driver, 0.02)
    with pytest.raises(ProbeNotFound):
        driver.reconnect()
    clock.advance(0.2)
    driver.reconnect()
    driver.unfreeze()
    assert run_for(clock, driver, 0.2)


def test_a_disconnect_the_host_did_not_look_in_on_still_happened() -> None:
    """The probe was away and back while nobody polled: the host's handle is to a probe that has gone."""
    clock = SimClock()
    _, driver = scripted(clock, ProbeFault(ProbeFaultKind.DISCONNECT, 0.3, duration_s=0.2))
    clock.advance(1.0)
    with pytest.raises(ProbeDisconnected):
        driver.poll()


def test_scripted_frame_drops_are_the_drops_the_driver_counts() -> None:
    clock = SimClock()
    _, driver = scripted(clock, ProbeFault(ProbeFaultKind.FRAME_DROPS, 0.3, value=3))
    run_for(clock, driver, 0.29)
    assert driver.stats.dropped_frames == 0
    run_for(clock, driver, 0.5)
    assert driver.stats.dropped_frames == 3


def test_scripted_overheating_warms_the_face_at_its_rate_for_its_duration_then_holds() -> None:
    clock = SimClock()
    _, driver = scripted(clock, ProbeFault(ProbeFaultKind.OVERHEATING, 0.5, duration_s=1.0, value=4.0))
    face = SMALL_RF.face_temp_c
    clock.advance(0.4)
    assert driver.read_status().face_temp_c == pytest.approx(face, abs=0.05)
    clock.advance(0.6)  # nobody asked at 0.5: it warmed from then all the same
    assert driver.read_status().face_temp_c == pytest.approx(face + 2.0, abs=0.05)
    clock.advance(2.0)
    assert driver.read_status().face_temp_c == pytest.approx(face + 4.0, abs=0.05)


def test_a_scripted_reported_fault_is_the_probes_state_for_its_duration_while_its_frames_stream() -> None:
    clock = SimClock()
    _, driver = scripted(clock, ProbeFault(ProbeFaultKind.REPORTS_FAULT, 0.5, duration_s=1.0))
    assert run_for(clock, driver, 0.4)
    assert driver.read_status().state is ProbeState.STREAMING
    frames = run_for(clock, driver, 0.2)
    reported = driver.read_status()
    assert frames and reported.state is ProbeState.FAULT and reported.error_bits == SELF_TEST_FAILED_BIT
    clock.advance(1.0)
    assert driver.read_status().state is ProbeState.STREAMING


def test_rfa_run_stops_on_a_fault_the_in_process_probe_reports_and_records_it(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """At 50 s, RF on (the default plan's lesions ramp from about 38 s), frames still streaming: imaging_lost at the
    next status reading (one a second), not after the 2 s loss grace."""
    path = script(tmp_path, '[[probe_fault]]\nkind = "reports_fault"\nat_s = 50.0\n')
    assert main(["run", "--yes", "--json", "--faults", str(path), "--record", str(tmp_path)]) == 1
    result = json.loads(capsys.readouterr().out.splitlines()[-1])
    assert result["first_trip"] == ("imaging_lost: the probe reports a fault (GET_STATUS state 2, error bits "
                                    "0x00000002)")
    reader = RecordReader(Path(result["record_path"]))
    try:
        reported = list(reader.rows("probe_status"))
        trip = next(row for row in reader.rows("alarm")
                    if row.payload.get("event") == "trip" and row.payload["interlock"] == "imaging_lost")
    finally:
        reader.close()
    assert [row.payload["state"] for row in reported] == ["fault"]
    assert reported[0].payload["error_bits"] == SELF_TEST_FAILED_BIT
    assert reported[0].id < trip.id, "the probe's word is in the record before the alarm it raised"
    assert 50.0 <= reported[0].mono <= trip.mono <= 50.0 + STATUS_PERIOD_S + 0.02
    assert result["summaries"][0]["result"] != "complete", "the lesions were cut short"


def test_rfa_run_overheats_the_in_process_probe_and_the_procedure_trips_on_it(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = script(tmp_path, '[[probe_fault]]\nkind = "overheating"\nat_s = 20.0\nvalue = 5.0\n')
    assert main(["run", "--yes", "--json", "--faults", str(path), "--record", str(tmp_path)]) == 1
    result = capsys.readouterr().out.splitlines()[-1]
    assert '"first_trip": "probe_face_over_temperature: probe face' in result


def test_probe_faults_without_a_simulated_probe_are_refused(tmp_path: Path,
                                                            capsys: pytest.CaptureFixture[str]) -> None:
    """Ignored, they would have left a rig engineer believing the probe had been faulted."""
    path = script(tmp_path, '[[probe_fault]]\nkind = "usb_stall"\nat_s = 1.0\n')
    assert sim_cli.main(["--faults", str(path), "--duration-s", "0.01"]) == sim_cli.EXIT_USAGE
    assert "[[probe_fault]] scripts the probe this process serves: add --probe tcp:PORT" in capsys.readouterr().err
    plan = Path(__file__).resolve().parents[2] / "docs" / "examples" / "bipolar-pulsed.toml"  # no imaging
    assert main(["run", "--yes", "--probe", "none", "--faults", str(path), "--plan", str(plan)]) == 2
    assert "[[probe_fault]] scripts the in-process simulator's probe, and --probe none is not it" in \
        capsys.readouterr().err


def test_the_simulator_process_acts_out_probe_faults_on_the_probe_it_serves(tmp_path: Path) -> None:
    """`rfa sim --probe tcp:0 --faults`: the served probe stalls 1 s after the simulator started serving."""
    path = script(tmp_path, '[[probe_fault]]\nkind = "usb_stall"\nat_s = 1.0\n')
    sim = subprocess.Popen([sys.executable, "-m", "sim", "--serial", "tcp:0", "--probe", "tcp:0", "--faults",
                            str(path), "--report-s", "60", "--duration-s", "60"],
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert sim.stdout is not None
        sim.stdout.readline()
        probe_url = sim.stdout.readline().strip().removeprefix("probe ")
        driver = UltrasoundProbe.open(RealClock(), backend=RemoteProbeBackend(probe_url))
        try:
            driver.unfreeze()
            deadline = time.monotonic() + 10.0
            with pytest.raises(ProbeError) as raised:
                while time.monotonic() < deadline:
                    driver.poll()
                    time.sleep(TICK_S)
            assert isinstance(raised.value, ProbeStalled)
        finally:
            driver.close()
    finally:
        sim.kill()
        sim.communicate()
