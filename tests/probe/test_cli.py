"""``rfa probe info|stream|snapshot`` with the simulated probe injected, as the composition root does."""

from __future__ import annotations

import argparse
import io
import json
from pathlib import Path

import pytest

from control import probe_cli
from firmware_bridge.clock import Clock, SimClock
from firmware_bridge.probe import ProbeAddress, UltrasoundProbe
from sim.probe import NeedlePose, ProbeFault, ProbeFaultKind, SimProbe, SimProbeBackend, SimProbeConfig


def _parse(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="rfa probe")
    probe_cli.add_arguments(parser)
    return parser.parse_args(argv)


def _sim_factory(clock: Clock) -> UltrasoundProbe:
    sim = SimProbe(clock, SimProbeConfig(lines=64, samples_per_line=1024, depth_mm=40))
    sim.set_needle(NeedlePose(2.0, 25.0))
    return UltrasoundProbe.open(clock, backend=SimProbeBackend(sim))


def test_info_reports_the_probe() -> None:
    out = io.StringIO()
    assert probe_cli.run(_parse(["--json", "info"]), _sim_factory, SimClock(), out) == probe_cli.EXIT_OK
    report = json.loads(out.getvalue())
    assert report["model"] == "SIM-L38" and report["state"] == "idle" and report["face_temp_c"] == 33.0


def test_stream_reports_rate_and_tip() -> None:
    out = io.StringIO()
    args = _parse(["--json", "stream", "--seconds", "2", "--gain-db", "45"])
    assert probe_cli.run(args, _sim_factory, SimClock(), out) == probe_cli.EXIT_OK
    summary = json.loads(out.getvalue())
    assert summary["frames_per_s"] == pytest.approx(25.0, abs=1.0)
    assert summary["corrupt_frames"] == summary["dropped_frames"] == 0
    assert abs(summary["tip"]["depth_mm"] - 25.0) < 1.0


def test_snapshot_writes_a_png(tmp_path: Path) -> None:
    target = tmp_path / "frame.png"
    assert (
        probe_cli.run(
            _parse(["snapshot", str(target), "--depth-mm", "50"]), _sim_factory, SimClock(), io.StringIO()
        )
        == probe_cli.EXIT_OK
    )
    assert target.read_bytes().startswith(b"\x89PNG\r\n\x1a\n")


def test_an_absent_probe_is_unreachable() -> None:
    def absent(clock: Clock) -> UltrasoundProbe:
        return UltrasoundProbe.open(clock, backend=SimProbeBackend())

    assert probe_cli.run(_parse(["info"]), absent, SimClock(), io.StringIO()) == probe_cli.EXIT_UNREACHABLE


def test_a_bad_setting_is_a_usage_error() -> None:
    args = _parse(["stream", "--depth-mm", "200"])
    assert probe_cli.run(args, _sim_factory, SimClock(), io.StringIO()) == probe_cli.EXIT_USAGE


def test_probe_targets_parse() -> None:
    assert probe_cli.parse_probe_target("sim") is None
    assert probe_cli.parse_probe_target("usb:1209:0001") == ProbeAddress(0x1209, 0x0001)
    with pytest.raises(argparse.ArgumentTypeError):
        probe_cli.parse_probe_target("usb:zz")


def test_the_probe_and_json_options_go_before_the_action_or_after_it() -> None:
    for argv in (["--probe", "usb:1209:0001", "--json", "info"], ["info", "--probe", "usb:1209:0001", "--json"]):
        args = _parse(argv)
        assert (args.probe, args.json, args.probe_command) == ("usb:1209:0001", True, "info"), argv
    assert (_parse(["info"]).probe, _parse(["info"]).json) == ("sim", False)


def test_a_snapshot_that_cannot_be_written_is_a_usage_error_not_a_traceback(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    target = tmp_path / "missing" / "frame.png"
    assert probe_cli.run(_parse(["snapshot", str(target)]), _sim_factory, SimClock(), io.StringIO()) == 2
    assert f"cannot write {target}" in capsys.readouterr().err


def test_a_machine_without_libusb_is_a_probe_error_naming_the_fix(monkeypatch: pytest.MonkeyPatch) -> None:
    """pyusb's NoBackendError would otherwise escape as a traceback from ``rfa run`` and ``rfa probe``."""
    import usb.core

    from firmware_bridge.errors import ProbeError
    from firmware_bridge.probe.driver import usb_locator

    def no_backend(**_: object) -> None:
        raise usb.core.NoBackendError("No backend available")

    monkeypatch.setattr(usb.core, "find", no_backend)
    with pytest.raises(ProbeError, match="install libusb"):
        usb_locator()()


def test_stream_rides_out_a_stall_and_a_replug_and_counts_them() -> None:
    """The bench stream prints ``stalls=`` and ``disconnects=``, but the first stall ended it (exit 1, "probe
    error: the probe's bulk endpoint 0x81 stalled"), so neither counter could ever be seen above 0. A stall is
    cleared by the next poll (the driver's contract) and a replugged probe is found again, as on the cart."""
    clock = SimClock()

    def faulty(clk: Clock) -> UltrasoundProbe:
        sim = SimProbe(clk, SimProbeConfig(lines=64, samples_per_line=1024, depth_mm=40))
        sim.set_needle(NeedlePose(2.0, 25.0))
        sim.script_faults([ProbeFault(ProbeFaultKind.USB_STALL, at_s=0.5),
                           ProbeFault(ProbeFaultKind.DISCONNECT, at_s=1.0, duration_s=0.5)], clk.now)
        return UltrasoundProbe.open(clk, backend=SimProbeBackend(sim))

    out = io.StringIO()
    assert probe_cli.run(_parse(["--json", "stream", "--seconds", "4"]), faulty, clock, out) == probe_cli.EXIT_OK
    summary = json.loads(out.getvalue())
    assert summary["usb_stalls"] == 1 and summary["disconnects"] == 1, summary
    assert summary["frames"] >= 50, summary  # about 2.5 s of the 4 at 25 frames/s, after the probe came back


def test_stream_of_a_probe_that_never_comes_back_fails_naming_it() -> None:
    def unplugged(clk: Clock) -> UltrasoundProbe:
        sim = SimProbe(clk, SimProbeConfig(lines=64, samples_per_line=1024, depth_mm=40))
        sim.script_faults([ProbeFault(ProbeFaultKind.DISCONNECT, at_s=0.5)], clk.now)
        return UltrasoundProbe.open(clk, backend=SimProbeBackend(sim))

    assert probe_cli.run(_parse(["stream", "--seconds", "3"]), unplugged, SimClock(), io.StringIO()) == \
        probe_cli.EXIT_FAULT
