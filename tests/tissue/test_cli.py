"""``rfa lesion`` through its ``add_arguments``/``run`` pair (wired into ``rfa`` by control/cli.py)."""

from __future__ import annotations

import argparse
import importlib.util
import json
from pathlib import Path

import pytest

from sim.tissue.cli import add_arguments, run
from sim.tissue.estimate import estimate_lesion
from sim.tissue.params import ElectrodeSpec, LesionModelConfig


def lesion_command(*argv: str) -> int:
    parser = argparse.ArgumentParser(prog="rfa lesion")
    add_arguments(parser)
    return run(parser.parse_args(list(argv)))


def test_json_reports_the_lesion_and_the_run(capsys: pytest.CaptureFixture[str]) -> None:
    code = lesion_command(
        "--gauge", "20", "--tip", "10", "--temp", "80", "--time", "30", "--spacing", "0.5", "--json"
    )
    assert code == 0
    out = json.loads(capsys.readouterr().out)
    assert out["setup"]["gauge"] == 20
    result = out["result"]
    assert result["lesion_width_mm"] > 2.0 and result["lesion_length_mm"] > 10.0
    assert 0.0 < result["time_to_set_temp_s"] < 30.0
    assert 150.0 < result["final_impedance_ohm"] < 400.0
    assert result["peak_power_w"] >= result["final_power_w"] > 0.0


def test_human_report_and_plot(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    plot = tmp_path / "lesion.png"
    code = lesion_command(
        "--gauge",
        "22",
        "--tip",
        "5",
        "--time",
        "20",
        "--spacing",
        "0.5",
        "--ex-vivo",
        "--start-temp",
        "20",
        "--tissue",
        "liver",
        "--plot",
        str(plot),
    )
    assert code == 0
    assert "mm wide" in capsys.readouterr().out
    assert plot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


@pytest.mark.parametrize(
    ("argv", "named"),
    [
        (("--gauge", "14"), "gauge (--gauge)"),
        (("--tip", "30"), "active_tip_mm (--tip)"),
        (("--temp", "30"), "set_temp_c"),
        (("--time", "0"), "duration_s"),
    ],
)
def test_bad_input_exits_2_naming_the_field(
    argv: tuple[str, ...], named: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert lesion_command(*argv, "--spacing", "0.5") == 2
    assert named in capsys.readouterr().err


def test_a_plot_without_matplotlib_is_refused_before_the_work(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Without the 'plot' extra, --plot exits 2 at once and says how to install it, not with a traceback after
    the lesion has been computed."""
    find_spec = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *rest: None if name == "matplotlib" else find_spec(name, *rest))
    assert lesion_command("--temp", "80", "--time", "30", "--plot", str(tmp_path / "l.png")) == 2
    err = capsys.readouterr().err
    assert "pip install -e '.[plot]'" in err and not (tmp_path / "l.png").exists()


def test_a_plans_ramp_and_power_cap_give_the_size_rfa_run_predicts_for_a_lesion_that_followed_it(
    capsys: pytest.CaptureFixture[str],
) -> None:
    """`rfa lesion --ramp --max-power` plans a lesion ramped as its plan ramps it (it used to ramp at 5 °C/s only:
    8.3 × 14.1 mm against the cart's 8.1 × 14.0 for the default plan); `rfa run` sizes each lesion from the tip
    temperatures it delivered. A lesion whose tip followed the plan gets the planned size. A slower ramp is RF
    time below the set temperature: a smaller lesion."""
    from control.cli import lesion_estimator
    from control.summary import ChannelTrace
    from safety.plan import default_genicular_plan

    lesion = default_genicular_plan().lesions[0]
    runs = []
    for ramp in (lesion.ramp_rate_c_per_s, 5.0):
        assert lesion_command("--gauge", str(lesion.electrode.gauge), "--tip", str(lesion.electrode.active_tip_mm),
                              "--temp", str(lesion.set_temp_c), "--time", "20", "--max-power",
                              str(lesion.power_cap_w), "--ramp", str(ramp), "--json") == 0
        runs.append(json.loads(capsys.readouterr().out))
    planned = (runs[0]["result"]["lesion_width_mm"], runs[0]["result"]["lesion_length_mm"])
    config = LesionModelConfig(electrode=ElectrodeSpec(gauge=lesion.electrode.gauge,
                                                       active_tip_mm=lesion.electrode.active_tip_mm))
    followed = estimate_lesion(config, lesion.set_temp_c, 20.0, max_power_w=lesion.power_cap_w,
                               ramp_c_per_s=lesion.ramp_rate_c_per_s)  # what `rfa lesion` ran: its tip's curve
    trace = ChannelTrace(lesion.channel, lesion.set_temp_c, rf_started_s=0.0)
    trace.add(0.0, 37.0, 0.0, 0.0)
    for t_s, tip_c in zip(followed.times_s, followed.tip_temp_c, strict=True):
        trace.add(float(t_s), float(tip_c), 0.0, 0.0)
    assert lesion_estimator(lesion, trace) == pytest.approx(planned, abs=0.05)
    assert planned[0] < runs[1]["result"]["lesion_width_mm"]


@pytest.mark.parametrize("ramp", ["0", "-1", "nan", "inf"])
def test_a_ramp_that_would_never_heat_is_refused(ramp: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert lesion_command("--time", "5", "--ramp", ramp) == 2
    assert "ramp_c_per_s must be a positive number" in capsys.readouterr().err


def test_every_option_with_a_default_says_it_in_its_help() -> None:
    """`rfa lesion --help` gave no default for the tip, temperature, time, tissue, start temperature or power cap,
    though the command runs with them: a planner could not tell what a bare `rfa lesion` predicts."""
    parser = argparse.ArgumentParser()
    add_arguments(parser)
    silent = [action.dest for action in parser._actions
              if action.default not in (None, False, argparse.SUPPRESS) and "default" not in (action.help or "")]
    assert silent == []
