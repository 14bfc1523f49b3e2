"""``rfa run`` as a user meets it: exit codes 0/1/2/3 and what each one says (ARCHITECTURE.md section 11)."""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import pytest

import control.cli as cli
from control.cli import _stop_on_termination, main
from control.record import ProcedureRecord, RecordError, RecordReader
from control.session import ProcedureSession
from sim.generator import Fault, FaultKind

SHORT_PLAN = """
name = "short"
imaging_required = {imaging}

[stimulation]
max_amplitude_mv = 100

[[lesions]]
channel = 1
set_temp_c = 60.0
ramp_rate_c_per_s = 2.0
lesion_time_s = 20.0
power_cap_w = 20.0
impedance_min_ohm = 60.0
impedance_max_ohm = 800.0
[lesions.electrode]
gauge = 20
active_tip_mm = 10.0
"""


def write_plan(tmp_path: Path, replace: dict[str, str] | None = None, *, imaging: bool = False) -> Path:
    text = SHORT_PLAN.format(imaging=str(imaging).lower())
    for old, new in (replace or {}).items():
        text = text.replace(old, new)
    path = tmp_path / "plan.toml"
    path.write_text(text)
    return path


def test_a_plan_beyond_a_hard_limit_exits_2_naming_the_field(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    plan = write_plan(tmp_path, {"set_temp_c = 60.0": "set_temp_c = 120.0"})
    assert main(["run", "--yes", "--plan", str(plan), "--record", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert "lesions.0.set_temp_c" in err and "95" in err


def test_an_unreadable_plan_exits_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    plan = tmp_path / "broken.toml"
    plan.write_text("name = [unclosed")
    assert main(["run", "--yes", "--plan", str(plan)]) == 2
    assert "cannot read TOML" in capsys.readouterr().err


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.mark.parametrize("link", ["socket", "tty"])
def test_an_unreachable_generator_exits_3_with_the_url(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                                      link: str) -> None:
    # The port is chosen as the test runs, not at collection: parallel workers must collect the same tests.
    url = f"socket://127.0.0.1:{free_port()}" if link == "socket" else "/dev/ttyRFA_NOT_THERE"
    plan = write_plan(tmp_path)
    assert main(["run", "--yes", "--plan", str(plan), "--probe", "none", "--generator", url]) == 3
    assert url in capsys.readouterr().err


@pytest.mark.parametrize("command", ["run", "selftest"])
def test_a_generator_link_that_opens_then_fails_exits_3_with_the_url(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], command: str
) -> None:
    """A port that accepts and then closes (a generator restarting, a serial-over-TCP bridge with nothing behind
    it) is as unreachable as one that refuses: exit 3 naming the URL, not a traceback."""
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen()
        url = f"socket://127.0.0.1:{server.getsockname()[1]}"

        def accept_and_close() -> None:
            peer, _ = server.accept()
            peer.close()

        closer = threading.Thread(target=accept_and_close, daemon=True)
        closer.start()
        extra = ["--plan", str(write_plan(tmp_path)), "--probe", "none", "--yes"] if command == "run" else []
        assert main([command, "--generator", url, *extra]) == 3
        closer.join(timeout=5.0)
    err = capsys.readouterr().err
    assert url in err and "opened, then failed" in err


@pytest.mark.parametrize("command", ["run", "selftest"])
def test_an_empty_generator_url_is_refused_not_taken_for_the_simulator(
    capsys: pytest.CaptureFixture[str], command: str
) -> None:
    """``--generator "$GEN_URL"`` with the variable unset must not run the in-process simulator and pass."""
    with pytest.raises(SystemExit) as exited:
        main([command, "--generator", ""])
    assert exited.value.code == 2
    assert "--generator: an empty URL" in capsys.readouterr().err


@pytest.mark.parametrize(("url", "said"), [
    ("socket://localhost", "'socket://localhost' names no port (1 to 65535); give socket://HOST:PORT"),
    ("socket://127.0.0.1:", "names no port"),
    ("socket://127.0.0.1:0", "names no port"),
    ("socket://127.0.0.1:http", "names no port"),
    ("rfc2217://127.0.0.1:70000", "names no port (1 to 65535); give rfc2217://HOST:PORT"),
    ("tcp:5760", "'tcp:5760' is how `rfa sim` names a port to serve; to connect to it, give socket://HOST:PORT"),
])
def test_a_network_url_without_a_port_is_a_usage_error_naming_the_form(
    capsys: pytest.CaptureFixture[str], url: str, said: str
) -> None:
    """pyserial's socket handler fails on a missing port with a TypeError ("'<=' not supported ..."), which came out
    as an unreachable generator (exit 3); `tcp:PORT` is `rfa sim`'s spelling for serving, not for connecting."""
    with pytest.raises(SystemExit) as exited:
        main(["run", "--generator", url])
    assert exited.value.code == 2
    assert said in capsys.readouterr().err


@pytest.mark.parametrize("command", ["run", "selftest"])
def test_a_seed_with_a_generator_url_is_refused_not_ignored(capsys: pytest.CaptureFixture[str], command: str) -> None:
    """A seed seeds the in-process simulator: with a generator URL it was accepted, ignored, and stored in the
    record as if it had been used."""
    extra = ["--probe", "none", "--plan", str(Path(__file__).resolve().parents[2] / "docs" / "examples" /
                                             "bipolar-pulsed.toml")] if command == "run" else []
    assert main([command, "--generator", "socket://127.0.0.1:9", "--seed", "4", *extra]) == 2
    assert "--seed seeds the in-process simulator; pass it to `rfa sim` instead" in capsys.readouterr().err


def test_the_in_process_probe_is_refused_with_a_generator_url(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """``--probe sim`` (the default) is the in-process simulator's probe: with ``--generator`` there is none, and a
    guided plan would only be refused for lost imaging once it had started. Refused before connecting, for the
    default guided plan or when asked for by name."""
    url = "socket://127.0.0.1:9"
    assert main(["run", "--yes", "--generator", url]) == 2
    assert main(["run", "--yes", "--generator", url, "--probe", "sim", "--plan", str(write_plan(tmp_path))]) == 2
    err = capsys.readouterr().err
    assert err.count("--probe sim is the in-process") == 2 and "tcp:HOST:PORT" in err and "127.0.0.1:9" not in err


def test_a_cart_configuration_naming_only_its_generator_runs_a_plan_without_imaging(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The configuration's probe defaults to ``sim``; a plan that needs no imaging then runs without a probe, as it
    did before the refusal above (here it gets as far as the generator, which is not there: exit 3)."""
    config = tmp_path / "cart.toml"
    config.write_text(f'generator_url = "socket://127.0.0.1:{free_port()}"\n')
    assert main(["run", "--yes", "--config", str(config), "--plan", str(write_plan(tmp_path))]) == 3
    assert "generator not reachable" in capsys.readouterr().err


def test_an_ignored_hangup_stays_ignored(monkeypatch: pytest.MonkeyPatch) -> None:
    """``nohup rfa run``: the operator chose that a closed terminal must not end the procedure."""
    previous = signal.signal(signal.SIGHUP, signal.SIG_IGN)
    stops: list[str] = []
    session = ProcedureSession.__new__(ProcedureSession)
    monkeypatch.setattr(session, "request_stop", stops.append, raising=False)
    try:
        with _stop_on_termination(session):
            assert signal.getsignal(signal.SIGHUP) is signal.SIG_IGN
            assert signal.getsignal(signal.SIGTERM) is not signal.SIG_DFL
        assert stops == []
    finally:
        signal.signal(signal.SIGHUP, previous)


def test_probe_none_is_refused_when_the_plan_requires_imaging(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["run", "--yes", "--probe", "none"]) == 2
    said = capsys.readouterr().err
    assert "requires imaging" in said and "give the probe (--probe usb:VID:PID, or --probe tcp:HOST:PORT" in said


def test_probe_none_runs_a_plan_without_imaging(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    plan = write_plan(tmp_path)
    assert main(["run", "--yes", "--plan", str(plan), "--probe", "none", "--record", str(tmp_path),
                 "--json"]) == 0
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    result = lines[-1]
    assert result["event"] == "result" and result["exit_code"] == 0
    assert result["link"]["frames_ok"] > 0 and result["link"]["acks_missed"] == 0  # every command answered
    assert [e["dest"] for e in lines if e["event"] == "state"][-1] == "standby"
    reader = RecordReader(Path(result["record_path"]))
    verdict = reader.verify()
    assert verdict.ok and result["final_hash"] == verdict.final_hash, "the hash to note is the closed record's"
    assert reader.count("frame") == 0, "no probe, no frames"


def test_a_record_that_fails_as_it_closes_gives_no_final_hash_to_note(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The final hash is the end row's: a record whose close fails has none (its last committed link is no record's
    end), so none is printed to be written down, and the run says the record failed (exit 1)."""
    close = ProcedureRecord.close

    def close_then_fail(record: ProcedureRecord) -> None:
        close(record)
        raise RecordError("the disk went away as the record closed")

    monkeypatch.setattr(ProcedureRecord, "close", close_then_fail)
    plan = write_plan(tmp_path)
    assert main(["run", "--yes", "--plan", str(plan), "--probe", "none", "--record", str(tmp_path),
                 "--json"]) == 1
    captured = capsys.readouterr()
    result = json.loads(captured.out.splitlines()[-1])
    assert result["event"] == "result" and result["final_hash"] is None
    assert "the procedure record failed: the disk went away" in captured.err


def test_a_procedure_that_faults_exits_1_naming_the_interlock_and_its_record_row(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    plan = write_plan(tmp_path, imaging=True)
    faults = tmp_path / "faults.toml"
    # Stimulation takes ~2 s; the impedance short arrives during the lesion.
    faults.write_text('[[fault]]\nkind = "impedance_short"\nat_s = 8.0\nchannel = 1\n')
    code = main(["run", "--yes", "--plan", str(plan), "--faults", str(faults), "--record", str(tmp_path)])
    out = capsys.readouterr().out
    assert code == 1
    assert "First interlock trip: impedance_low ch1" in out
    row = int(out.split("(record row ")[1].split(")")[0])
    record_path = Path(out.split("Record: ")[1].split()[0])
    reader = RecordReader(record_path)
    alarm = next(r for r in reader.rows("alarm") if r.id == row)
    assert alarm.payload["interlock"] == "impedance_low"
    noted = out.split("Final hash: ")[1].split()[0]
    assert noted == reader.verify().final_hash, "a faulted procedure's record ends on a hash to note too"
    assert f"rfa record verify {record_path} --expect {noted[:16]}`" in out
    assert reader.count("frame") > 0, "frames were recorded while RF was on and at state changes"


def test_the_probe_links_counters_end_the_run_with_the_generators(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """An engineer at the rig reads, after the result, what each link went through: a probe that stalled once and
    lost three frames mid-lesion (too short to trip imaging_lost) shows both, next to the generator's counters."""
    plan = write_plan(tmp_path, imaging=True)
    faults = tmp_path / "faults.toml"
    faults.write_text('[[probe_fault]]\nkind = "usb_stall"\nat_s = 8.0\n\n'
                      '[[probe_fault]]\nkind = "frame_drops"\nat_s = 10.0\nvalue = 3\n')
    code = main(["run", "--yes", "--plan", str(plan), "--faults", str(faults), "--record", str(tmp_path)])
    out = capsys.readouterr().out
    assert code == 0, out[-1500:]
    generator_line, probe_line = out.splitlines()[-2:]
    assert generator_line.startswith("Generator link: frames_ok ")
    counters = dict(item.rsplit(" ", 1) for item in probe_line.removeprefix("Probe link: ").split(", "))
    assert int(counters["usb_stalls"]) == 1 and int(counters["disconnects"]) == 0
    assert int(counters["dropped_frames"]) == 3 and int(counters["frames_ok"]) > 0, probe_line


def _run_faulted(tmp_path: Path, plan: Path, script: str) -> int:
    """``rfa run --yes --probe none`` of ``plan`` with ``script`` as its fault script; the exit code."""
    faults = tmp_path / "faults.toml"
    faults.write_text(script)
    return main(["run", "--yes", "--plan", str(plan), "--probe", "none", "--faults", str(faults),
                 "--record", str(tmp_path)])


def test_the_link_table_of_a_fault_script_damages_the_in_process_cable(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """``rfa run --faults`` honours the script's [link] table as ``rfa sim`` does: here the cable is pulled for
    2 s during the lesion, and the procedure ends on the silent link, not complete."""
    code = _run_faulted(tmp_path, write_plan(tmp_path), "[link]\nunplug = [[8.0, 2.0]]\n")
    out = capsys.readouterr().out
    assert code == 1
    assert "First interlock trip: telemetry_stale" in out, out[-1500:]  # 50 ms without telemetry: first


def test_a_weak_stimulus_stops_the_test_before_any_lesion(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A stimulator delivering half the amplitude would report "no response at 1 V" for 0.5 V: the test
    stops on the mismatch, and the procedure never reaches RF."""
    plan = write_plan(tmp_path, {"max_amplitude_mv = 100": "max_amplitude_mv = 1000"})
    code = _run_faulted(tmp_path, plan, '[[fault]]\nkind = "stim_weak"\nat_s = 0.0\nchannel = 1\n')
    out = capsys.readouterr().out
    assert code == 1
    assert "First interlock trip: stimulation_mismatch ch1" in out
    reader = RecordReader(Path(out.split("Record: ")[1].split()[0]))
    (trip,) = [r.payload for r in reader.rows("alarm") if r.payload["event"] == "trip"]
    assert "measured 0.05 V, commanded 0.10 V" in trip["detail"]
    assert not [r for r in reader.rows("safety") if "output on" in r.payload["detail"]], "no RF after the trip"


def test_faults_for_an_external_generator_are_refused(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    faults = tmp_path / "faults.toml"
    faults.write_text("")
    assert main(["run", "--generator", "socket://127.0.0.1:1", "--probe", "none", "--plan", str(write_plan(tmp_path)),
                 "--faults", str(faults)]) == 2
    assert "pass it to `rfa sim` instead" in capsys.readouterr().err


def test_selftest_reports_each_check(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["selftest", "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["ok"] and report["checks"]["CHANNEL_1"] and not report["checks"]["CHANNEL_4"]
    # The simulated cart has no electrode on channel 4: requiring it fails the self-test.
    assert main(["selftest", "--channels", "1,4"]) == 1
    assert "CHANNEL_4    FAIL" in capsys.readouterr().out


def test_selftest_requires_every_fitted_channel(monkeypatch: pytest.MonkeyPatch,
                                                capsys: pytest.CaptureFixture[str]) -> None:
    """Without --channels, a fitted electrode's channel that fails (here an open thermocouple on channel 2) fails
    the self-test; a channel with no electrode is not required and says so."""
    simulated_cart = cli.simulated_cart

    def with_open_thermocouple(*args: Any, **kwargs: Any) -> cli.SimulatedCart:
        return simulated_cart(*args, **kwargs, faults=[Fault(FaultKind.THERMOCOUPLE_OPEN, 0.0, channel=2)])

    monkeypatch.setattr(cli, "simulated_cart", with_open_thermocouple)
    assert main(["selftest"]) == 1
    out = capsys.readouterr().out
    assert "CHANNEL_2    FAIL\n" in out and "CHANNEL_4    FAIL  (not required: no electrode fitted)" in out
    assert "self-test FAILED for channel(s) [1, 2, 3]" in out
    assert main(["selftest", "--json"]) == 1
    assert json.loads(capsys.readouterr().out)["required_channels"] == [1, 2, 3]


@pytest.mark.parametrize(("argv", "note"), [
    (["--temp", "100"], "set_temp_c: 100.0 °C exceeds tip_temp_max_c = 95.0 °C"),
    (["--temp", "94"], "set_temp_c: 94.0 °C is within 2 °C of tip_temp_max_c"),
    (["--max-power", "80"], "power_cap_w: 80.0 W exceeds power_max_w = 50.0 W"),
    (["--temp", "60"], None),
])
def test_lesion_says_when_the_cart_would_refuse_its_settings(argv: list[str], note: str | None,
                                                             capsys: pytest.CaptureFixture[str]) -> None:
    """The tissue model estimates a 100 °C lesion; no plan may have one, and the estimate says so."""
    assert main(["lesion", "--time", "20", "--spacing", "0.5", *argv]) == 0
    captured = capsys.readouterr()
    assert "mm wide" in captured.out
    if note is None:
        assert "refuses" not in captured.err
    else:
        assert f"rfa lesion: note: the cart refuses a lesion with these settings ({note}" in captured.err


def test_lesion_gives_the_models_own_refusal_alone(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["lesion", "--gauge", "14"]) == 2
    refusal = "rfa lesion: invalid gauge (--gauge): Input should be greater than or equal to 16\n"
    assert capsys.readouterr().err == refusal


def test_selftest_refuses_a_bad_channel_list() -> None:
    with pytest.raises(SystemExit) as exc:
        main(["selftest", "--channels", "1,7"])
    assert exc.value.code == 2


def test_protocol_prints_the_contract_table(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["protocol", "--json"]) == 0
    rows = {r["id"]: (r["struct"], r["crc_extra"]) for r in json.loads(capsys.readouterr().out)}
    # ARCHITECTURE.md section 4, copied by hand: id -> (struct, CRC_EXTRA).
    assert rows["0x11"] == ("<BB4HHH", "0x8C")
    assert rows["0x20"] == ("<Q" + "hHHHHB" * 4, "0xB1")
    assert rows["0x40"] == ("<BI", "0xE4")
    assert len(rows) == 10


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGHUP])
def test_a_termination_signal_mid_lesion_stops_the_procedure_and_closes_its_record(
    tmp_path: Path, signum: signal.Signals
) -> None:
    """``systemctl stop`` or a closed SSH session during RF: the stop button's orderly stop (output off, recorded,
    the record closed, exit 1), not a process killed with output left to the generator's own watchdog."""
    plan = write_plan(tmp_path, {"lesion_time_s = 20.0": "lesion_time_s = 300.0"})
    proc = subprocess.Popen([sys.executable, "-m", "control.cli", "run", "--yes", "--json", "--probe", "none",
                             "--plan", str(plan), "--record", str(tmp_path)],
                            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    assert proc.stdout is not None
    for line in proc.stdout:
        event = json.loads(line)
        if event["event"] == "state" and event["dest"] == "lesioning":
            proc.send_signal(signum)
            break
    rest = [json.loads(line) for line in proc.stdout]
    assert proc.wait(timeout=60) == 1
    result = rest[-1]
    assert result["event"] == "result" and result["final_state"] == "stopped"
    assert f"operator stop ({signum.name} received)" in result["message"]
    assert all(s["tripped"] for s in result["summaries"]), "the lesion is stopped, not complete"
    assert RecordReader(Path(result["record_path"])).verify().ok, "intact and closed"


@pytest.mark.parametrize(("command", "handler"), [(["run", "--yes"], "_run"), (["selftest"], "_selftest")])
def test_an_interrupt_no_command_handles_exits_130_with_a_line_not_a_traceback(
    command: list[str], handler: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """Ctrl-C at start-up, or pressed a third time to quit `rfa run` at once while it ends."""
    def interrupted(_args: object) -> int:
        raise KeyboardInterrupt

    monkeypatch.setattr(cli, handler, interrupted)
    assert main(command) == 130
    err = capsys.readouterr().err
    assert err.startswith(f"rfa {command[0]}: interrupted")
    assert ("record may lack its end" in err) == (command[0] == "run")


def test_the_record_says_which_software_and_limits_ran_and_how_to_read_its_times(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """An investigator needs beside the rows: the software, the limits the interlocks used (a configuration that
    tightened them is not in the plan), the configuration and fault script, the time zone, and what `mono` counts."""
    config = tmp_path / "cart.toml"
    config.write_text("[limits]\npower_max_w = 33.3\n")
    faults = tmp_path / "faults.toml"
    faults.write_text('[[fault]]\nkind = "impedance_short"\nat_s = 200.0\nchannel = 1\n')  # after the procedure
    assert main(["run", "--yes", "--plan", str(write_plan(tmp_path)), "--probe", "none", "--record", str(tmp_path),
                 "--config", str(config), "--faults", str(faults), "--json"]) == 0
    result = json.loads(capsys.readouterr().out.splitlines()[-1])
    meta = RecordReader(Path(result["record_path"])).meta()
    assert json.loads(meta["limits"])["power_max_w"] == 33.3 and meta["config"] == str(config)
    assert meta["faults"] == faults.read_text() and meta["software"].startswith("rfa-controller ")
    assert re.fullmatch(r"[+-]\d{4}", meta["utc_offset"]) and meta["time_base"].startswith("mono: simulated time")


def _session_stub(monkeypatch: pytest.MonkeyPatch, stops: list[str]) -> ProcedureSession:
    session = ProcedureSession.__new__(ProcedureSession)
    session.ending = False
    monkeypatch.setattr(session, "request_stop", stops.append, raising=False)
    return session


def test_a_termination_signal_stops_then_is_answered_while_the_procedure_ends_then_quits(
    monkeypatch: pytest.MonkeyPatch, capfd: pytest.CaptureFixture[str]
) -> None:
    stops: list[str] = []
    session = _session_stub(monkeypatch, stops)
    with _stop_on_termination(session):
        os.kill(os.getpid(), signal.SIGTERM)
        time.sleep(0.01)  # the handler runs in this thread, between two bytecodes
        assert stops == ["operator stop (SIGTERM received)"]
        session.ending = True  # the stop is being acted on: the next one is answered, as its message says
        os.kill(os.getpid(), signal.SIGTERM)
        time.sleep(0.01)
        with pytest.raises(KeyboardInterrupt):  # and the one after that quits at once
            os.kill(os.getpid(), signal.SIGTERM)
            time.sleep(1.0)
    assert "SIGTERM received while the procedure is ending" in capfd.readouterr().err
    ending = _session_stub(monkeypatch, stops)  # the first arrives as the procedure already ends (its last lesion)
    ending.ending = True
    with _stop_on_termination(ending):
        os.kill(os.getpid(), signal.SIGHUP)
        time.sleep(0.01)
        with pytest.raises(KeyboardInterrupt):  # "send it again to quit at once": the second does
            os.kill(os.getpid(), signal.SIGHUP)
            time.sleep(1.0)
    assert len(stops) == 1


def test_the_answer_to_a_signal_while_ending_never_raises_even_to_a_closed_stderr(
    monkeypatch: pytest.MonkeyPatch
) -> None:
    """`rfa run 2>&1 | tee log`: Ctrl-C ends the tee too; the next Ctrl-C's answer would raise BrokenPipeError
    wherever the main thread was, past the end's suppressors (its OUTPUT_OFF and settling among them)."""
    closed = open(os.devnull, "w")  # noqa: SIM115 (closed at once: that is the point)
    closed.close()
    monkeypatch.setattr(sys, "stderr", closed)
    session = _session_stub(monkeypatch, [])
    session.ending = True
    with _stop_on_termination(session):
        os.kill(os.getpid(), signal.SIGINT)
        time.sleep(0.01)  # answered, silently: no exception


def test_ctrl_c_while_the_record_is_closed_is_answered_and_the_record_gets_its_end(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """The end row is written as the record closes, after the procedure: the handlers stay until then."""
    close = ProcedureRecord.close

    def interrupted(record: ProcedureRecord) -> None:
        os.kill(os.getpid(), signal.SIGINT)
        time.sleep(0.01)
        close(record)

    monkeypatch.setattr(ProcedureRecord, "close", interrupted)
    assert main(["run", "--yes", "--plan", str(write_plan(tmp_path)), "--probe", "none", "--record", str(tmp_path),
                 "--json"]) == 0
    result = json.loads(capsys.readouterr().out.splitlines()[-1])
    assert RecordReader(Path(result["record_path"])).verify().ok
