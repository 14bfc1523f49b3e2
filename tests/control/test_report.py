"""The HTML procedure report: what a physician and an auditor rely on it to show, from a hand-built record."""

from __future__ import annotations

import argparse
import base64
import importlib.util
import json
import re
import sqlite3
import zlib
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
import pytest

from control import record_cli
from control.record import ProcedureRecord, RecordReader
from control.report import MAX_THUMBNAILS, planned_channels, read_facts, write_report
from firmware_bridge.clock import SimClock
from safety.plan import load_plan, parse_plan

PLANNED_CHANNELS = (1, 2)
STIMULATION_S = (6, 8)
"""A nerve test on channel 1 (its output flag on, as the simulator's is), inside the plot's margin before RF."""
RAMP_AT_S = 10
LESION_END_S = 14
HOSTILE = "<script>alert('x')</script>"
CONNECTED, ON, THERMOCOUPLE_OPEN = 0x08, 0x09, 0x02
"""Telemetry flags: an electrode connected; and output on; the thermocouple open (firmware_bridge.messages)."""


class ChannelChange(NamedTuple):
    """A channel's telemetry from ``at_s`` on: what the generator sends once something happened to it."""

    at_s: float
    flags: int
    tip_c: float


TC_OPEN = ChannelChange(12.5, CONNECTED | THERMOCOUPLE_OPEN, 327.67)
"""The thermocouple opens mid-lesion: the generator sends full scale and the channel stops."""
ELECTRODE_REMOVED = ChannelChange(12.5, 0, 0.0)


def plan_payload() -> dict[str, object]:
    """A real plan, dumped the way the session records it, so a change of the plan's shape shows here."""
    lesion = {
        "electrode": {"gauge": 18, "active_tip_mm": 10.0},
        "set_temp_c": 80.0,
        "ramp_rate_c_per_s": 5.0,
        "lesion_time_s": 30.0,
        "power_cap_w": 25.0,
        "impedance_min_ohm": 60.0,
        "impedance_max_ohm": 800.0,
    }
    plan = parse_plan({"name": "two-channel <test>", "imaging_required": False,
                       "lesions": [{"channel": ch, **lesion} for ch in PLANNED_CHANNELS]})
    return plan.model_dump(mode="json")


def state(record: ProcedureRecord, source: str, dest: str, trigger: str) -> int:
    return record.append("state", {"source": source, "dest": dest, "trigger": trigger})


def frame_payload() -> dict[str, object]:
    pixels = np.tile(np.arange(60, dtype=np.uint8) * 4, (40, 1))
    return {
        "reason": "state ramping", "frame": 7, "guided_channel": 1,
        "tip_lateral_mm": 1.5, "tip_depth_mm": 12.0, "tip_confidence": 0.9,
        "shape": [40, 60], "mm_per_pixel": 0.5,
        "zlib_b64": base64.b64encode(zlib.compress(pixels.tobytes())).decode("ascii"),
    }


def build_record(path: Path, *, telemetry: bool = True, ch2_from: ChannelChange | None = None,
                 partner: dict[str, Any] | None = None) -> None:
    """Self-test, a nerve test from 6 s to 8 s, one RF window from 10 s to 14 s on channels 1 and 2, an alarm, a
    frame and a summary.

    Telemetry is recorded for all four channels from 0 s to 20 s, as the session does, so the report has
    to pick the planned channels and the lesion window itself. Its flags are the simulator's: an electrode
    connected, output on while RF is; ``ch2_from`` changes channel 2 from its time on (its output off); ``partner``
    is a bipolar partner's figures in channel 1's summary.
    """
    clock = SimClock()
    record = ProcedureRecord(path, clock, meta={"plan_name": "two-channel <test>"})
    record.append("plan", plan_payload())
    state(record, "off", "self_test", "begin_self_test")
    clock.advance(1.0)
    state(record, "self_test", "standby", "self_test_passed")
    record.append("stimulation", {"channel": 1, "sensory_threshold_mv": 400, "motor_threshold_mv": None})
    if not telemetry:
        record.append("alarm", {"event": "trip", "detail": HOSTILE, "interlock": "self_test", "channel": None,
                                "priority": "high"})
        state(record, "standby", "fault", "fault")
        record.append("summary", {"exit_code": 1, "final_state": "fault", "summaries": [],
                                  "stimulation": [], "first_trip": "self_test", "first_trip_row": 5,
                                  "message": "self-test failed"})
        record.close()
        return
    for step in range(200):  # 10 Hz for 20 s; integer steps so the state changes land exactly
        t = step / 10
        clock.sleep_until(t)
        if step == STIMULATION_S[0] * 10:
            state(record, "standby", "stimulating", "start_stimulation")
        elif step == STIMULATION_S[1] * 10:
            state(record, "stimulating", "standby", "stimulation_done")
        elif step == RAMP_AT_S * 10:
            state(record, "armed", "ramping", "start_rf")
            record.append("frame", frame_payload())
        elif step == 120:
            state(record, "ramping", "lesioning", "set_temperature_reached")
            record.append("alarm", {"event": "inhibit", "detail": HOSTILE, "interlock": "impedance_high",
                                    "channel": 2, "priority": "medium"})
        elif step == LESION_END_S * 10:
            state(record, "lesioning", "cooldown", "lesion_complete")
        rf_on = RAMP_AT_S <= t < LESION_END_S
        stimulating = STIMULATION_S[0] <= t < STIMULATION_S[1]
        for ch in range(1, 5):
            output_on = rf_on or (stimulating and ch == 1)
            sample = {"ch": ch, "gen_us": step * 100_000, "tip_c": 77.0 if rf_on else 37.0, "z_ohm": 250.0,
                      "v": 30.0, "ma": 120.0, "w": 10.0 if rf_on else 0.0, "flags": ON if output_on else CONNECTED}
            if ch == 2 and ch2_from is not None and t >= ch2_from.at_s:
                sample.update(tip_c=ch2_from.tip_c, w=0.0, flags=ch2_from.flags)
            record.append("telemetry", sample)
    summaries = [{"channel": ch, "set_temp_c": 80.0, "time_to_set_s": 2.0, "overshoot_c": 0.3,
                  "hold_mean_c": 79.9, "hold_max_c": 80.3, "hold_rms_error_c": 0.1,
                  "impedance_start_ohm": 250.0, "impedance_end_ohm": 110.0, "energy_j": 40.0, "tripped": "",
                  "predicted_width_mm": 8.06 - ch, "predicted_length_mm": 14.04}
                 for ch in PLANNED_CHANNELS]
    if partner is not None:
        summaries[0]["partner"] = partner
    record.append("summary", {"exit_code": 0, "final_state": "standby", "summaries": summaries,
                              "stimulation": [], "first_trip": "", "first_trip_row": None, "message": ""})
    record.close()


def run_cli(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="rfa record")
    record_cli.add_arguments(parser)
    return record_cli.run(parser.parse_args(argv))


@pytest.fixture
def record_path(tmp_path: Path) -> Path:
    path = tmp_path / "proc.rfa.db"
    build_record(path)
    return path


def report_of(record: Path, tmp_path: Path) -> str:
    out = tmp_path / "report.html"
    write_report(record, out)
    return out.read_text(encoding="utf-8")


def test_one_plot_per_planned_channel_and_a_marked_frame(record_path: Path, tmp_path: Path) -> None:
    page = report_of(record_path, tmp_path)
    assert len(re.findall(r'<img class="lesion-plot"[^>]*src="data:image/png;base64,', page)) == 2
    assert len(re.findall(r'<img class="frame"[^>]*src="data:image/png;base64,', page)) == 1
    assert "tip at 1.5 mm lateral, 12.0 mm deep" in page
    assert "Hash chain intact" in page and "BROKEN" not in page
    assert "standby" in page and "start_rf" in page and "79.90" in page
    assert "<th>lesion W×L mm</th>" in page
    assert [f"<td>{8.06 - ch:.1f}×14.0</td>" in page for ch in PLANNED_CHANNELS] == [True] * len(PLANNED_CHANNELS)


def test_telemetry_is_limited_to_planned_channels_and_the_lesion_window(record_path: Path) -> None:
    reader = RecordReader(record_path)
    try:
        facts = read_facts(reader)
    finally:
        reader.close()
    assert facts.rf_windows == [(RAMP_AT_S, LESION_END_S)]
    assert sorted(facts.telemetry) == list(PLANNED_CHANNELS)
    for trace in facts.telemetry.values():
        assert trace.t_s.min() == pytest.approx(-5.0)
        assert trace.t_s.max() == pytest.approx(LESION_END_S - RAMP_AT_S + 5.0)
        assert trace.tip_temp_c.max() == pytest.approx(77.0)


@pytest.mark.parametrize("change", [TC_OPEN, ELECTRODE_REMOVED], ids=["thermocouple-open", "electrode-removed"])
def test_a_tip_reading_flagged_as_no_reading_is_a_gap_in_the_plot(tmp_path: Path, change: ChannelChange) -> None:
    """As ``rfa run`` treats it: an open thermocouple's full scale (327.67 °C) or a disconnected electrode's 0 °C is
    no temperature, so the plot has a gap there, not a jump that reads as a tip at 327 °C or at 0 °C."""
    path = tmp_path / "open.rfa.db"
    build_record(path, ch2_from=change)
    reader = RecordReader(path)
    try:
        facts = read_facts(reader)
    finally:
        reader.close()
    trace = facts.telemetry[2]
    gap = trace.t_s >= change.at_s - RAMP_AT_S
    assert gap.any() and np.isnan(trace.tip_temp_c[gap]).all()
    assert np.isfinite(trace.tip_temp_c[~gap]).all() and np.nanmax(trace.tip_temp_c) == pytest.approx(77.0)
    assert np.isfinite(facts.telemetry[1].tip_temp_c).all(), "the other channel's readings are all kept"
    assert report_of(path, tmp_path).count('class="lesion-plot"') == 2


def test_each_channel_is_shaded_from_its_own_rf_output(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Channel 2's thermocouple opens 2.5 s into RF and its output goes off; channel 1 runs to the end. Each
    channel's shading is its own, from its telemetry's output flag, not the procedure's RF states; channel 1's
    nerve test before RF (output flag on too) is no RF."""
    from matplotlib.axes import Axes

    shaded: list[tuple[Axes, float, float]] = []
    axvspan = Axes.axvspan

    def recording_axvspan(ax: Axes, xmin: float, xmax: float, *args: Any, **kwargs: Any) -> Any:
        shaded.append((ax, float(xmin), float(xmax)))
        return axvspan(ax, xmin, xmax, *args, **kwargs)

    monkeypatch.setattr(Axes, "axvspan", recording_axvspan)
    path = tmp_path / "stopped.rfa.db"
    build_record(path, ch2_from=TC_OPEN)
    page = report_of(path, tmp_path)
    spans = {(ax.figure.get_suptitle(), round(x0, 3), round(x1, 3)) for ax, x0, x1 in shaded}  # on its 3 plots
    ran_s, stopped_after_s = LESION_END_S - RAMP_AT_S, TC_OPEN.at_s - RAMP_AT_S
    assert spans == {("Channel 1", 0.0, ran_s), ("Channel 2", 0.0, stopped_after_s)}
    assert f"Channel 1: RF on 0.00–{ran_s:.2f} s after RF start" in page
    assert f"Channel 2: RF on 0.00–{stopped_after_s:.2f} s after RF start" in page


def build_guided_record(path: Path) -> None:
    """The frames of a guided procedure: one at each state change (five nerve tests make ten before RF), one a
    second during RF (20 s to 50 s), a trip at 33.5 s (channel 2 stops, the others go on)."""
    clock = SimClock()
    record = ProcedureRecord(path, clock, meta={"plan_name": "guided"})
    record.append("plan", plan_payload())

    def change(at_s: float, source: str, dest: str) -> None:
        clock.sleep_until(at_s)
        state(record, source, dest, "t")
        record.append("frame", {**frame_payload(), "reason": f"state {dest}"})

    change(0.0, "off", "self_test")
    record.append("frame", {"reason": "state self_test", "frame": 0})  # the probe has no image yet
    change(1.0, "self_test", "standby")
    for n in range(5):
        change(2.0 + 3 * n, "standby", "stimulating")
        change(4.0 + 3 * n, "stimulating", "standby")
    change(RF_FROM_S, "standby", "armed")
    change(RF_FROM_S, "armed", "ramping")
    for second in range(int(RF_FROM_S) + 1, int(RF_TO_S)):
        clock.sleep_until(second)
        record.append("frame", {**frame_payload(), "reason": "rf"})
        if second == 25:
            change(25.0, "ramping", "lesioning")
        if second == 33:
            clock.sleep_until(TRIP_AT_S)
            record.append("alarm", {"event": "trip", "interlock": "thermocouple_open", "channel": 2,
                                    "priority": "high", "detail": "channel 2: thermocouple open"})
    change(RF_TO_S, "lesioning", "cooldown")
    change(RF_TO_S + 10.0, "cooldown", "standby")
    record.close()


RF_FROM_S, TRIP_AT_S, RF_TO_S = 20.0, 33.5, 50.0


def test_the_frames_shown_are_rf_start_the_last_trip_rf_end_and_others_spread_over_rf(tmp_path: Path) -> None:
    """Not the first frames, which are the nerve tests' state changes: the frames a reviewer needs are at RF start,
    at the last trip and at RF's end, and the rest through the lesion, the count bounded."""
    path = tmp_path / "guided.rfa.db"
    build_guided_record(path)
    reader = RecordReader(path)
    try:
        facts = read_facts(reader)
    finally:
        reader.close()
    shown = [(t.mono, t.reason) for t in facts.thumbnails]
    assert len(shown) == MAX_THUMBNAILS
    assert all(RF_FROM_S <= mono <= RF_TO_S for mono, _ in shown), shown
    assert {(t.role, t.mono, t.reason) for t in facts.thumbnails if t.role} == {
        ("RF start", RF_FROM_S, "state ramping"),
        ("last trip: thermocouple_open ch2", TRIP_AT_S + 0.5, "rf"),  # the first frame after it
        ("RF end", RF_TO_S, "state cooldown"),
    }
    times = [mono for mono, _ in shown]
    assert times == sorted(times) and max(np.diff(times)) <= 6.0, "the others spread over RF"
    page = report_of(path, tmp_path)
    assert "<b>last trip: thermocouple_open ch2</b>: row " in page
    assert page.count('<img class="frame"') == MAX_THUMBNAILS


def test_without_rf_the_frames_spread_over_the_record_and_end_on_its_last(tmp_path: Path) -> None:
    path = tmp_path / "no-rf.rfa.db"
    clock = SimClock()
    record = ProcedureRecord(path, clock)
    for second in range(30):
        clock.sleep_until(second)
        record.append("frame", {**frame_payload(), "reason": f"state {second}"})
    record.close()
    reader = RecordReader(path)
    try:
        facts = read_facts(reader)
    finally:
        reader.close()
    assert [t.mono for t in facts.thumbnails] == [4.0, 7.0, 11.0, 14.0, 18.0, 22.0, 25.0, 29.0]  # every 29/8 s
    assert facts.thumbnails[-1].role == "last frame"


def test_a_bipolar_partners_tip_has_a_row_of_its_own_in_the_summary(tmp_path: Path) -> None:
    """As in ``rfa run``'s table: the partner's own tip under its lesion."""
    path = tmp_path / "bipolar.rfa.db"
    build_record(path, partner={"channel": 2, "time_to_set_s": 1.5, "overshoot_c": 4.36, "hold_mean_c": 83.77,
                                "hold_max_c": 84.36, "hold_rms_error_c": 3.81, "impedance_start_ohm": 260.0,
                                "impedance_end_ohm": 110.0})
    page = report_of(path, tmp_path)
    summary = page[page.index("<h2>Summary</h2>"):]
    cells = ["2", "80.0", "1.5", "4.36", "83.77", "84.36", "3.81", "260", "110", "–", "–",
             "bipolar partner of ch1 (pair held on its hotter tip)"]
    assert "<tr>" + "".join(f"<td>{cell}</td>" for cell in cells) + "</tr>" in summary


def test_a_bipolar_sides_power_is_plotted_as_its_share_of_the_pairs_cap() -> None:
    """Each side of a bipolar pair reports its own share of the pair's power, and the plan's cap is the pair's: the
    plot of either side showed about 6 W under a line labelled "cap 25 W", as if the pair had run at a quarter of
    its cap."""
    plan = load_plan(Path(__file__).resolve().parents[2] / "docs" / "examples" / "bipolar-pulsed.toml")
    channels = planned_channels(plan.model_dump(mode="json"))
    assert [(c.channel, c.pair) for c in channels] == [(1, (1, 2)), (2, (1, 2)), (3, None)]
    assert channels[1].power_labels == ("this side's share", "cap 25 W for the pair 1–2 (both sides)")
    assert channels[2].power_labels == ("power", "cap 25 W")
    assert [c.title for c in channels] == ["Channel 1, bipolar pair 1–2", "Channel 2, bipolar pair 1–2", "Channel 3"]


def test_record_text_is_escaped_not_markup(record_path: Path, tmp_path: Path) -> None:
    page = report_of(record_path, tmp_path)
    assert "<script" not in page
    assert "&lt;script&gt;alert(&#x27;x&#x27;)&lt;/script&gt;" in page
    assert "two-channel &lt;test&gt;" in page


def test_a_tampered_row_is_reported_as_broken_at_that_row(record_path: Path, tmp_path: Path) -> None:
    db = sqlite3.connect(record_path)
    (row_id,) = db.execute("SELECT id FROM events WHERE kind = 'alarm'").fetchone()
    payload = {"event": "inhibit", "detail": "nothing happened", "interlock": "impedance_high", "channel": 2,
               "priority": "medium"}
    db.execute("UPDATE events SET payload = ? WHERE id = ?", (json.dumps(payload), row_id))
    db.commit()
    db.close()
    page = report_of(record_path, tmp_path)
    assert f"Hash chain BROKEN at row {row_id}" in page
    assert "Hash chain intact" not in page


def test_an_unparseable_payload_is_named_and_the_rest_still_reports(record_path: Path, tmp_path: Path) -> None:
    db = sqlite3.connect(record_path)
    (row_id,) = db.execute("SELECT id FROM events WHERE kind = 'state' AND payload LIKE '%lesioning%'").fetchone()
    (last_good,) = db.execute("SELECT max(id) FROM events WHERE kind = 'state' AND id < ?", (row_id,)).fetchone()
    db.execute("UPDATE events SET payload = 'not json' WHERE id = ?", (row_id,))
    db.commit()
    db.close()
    page = report_of(record_path, tmp_path)
    assert f"Hash chain BROKEN at row {row_id}" in page
    assert f"state rows after row {last_good} could not be read" in page
    assert "start_rf" in page and "lesion_complete" not in page


def test_a_record_without_telemetry_still_reports(tmp_path: Path) -> None:
    path = tmp_path / "faulted.rfa.db"
    build_record(path, telemetry=False)
    page = report_of(path, tmp_path)
    assert "lesion-plot" not in page
    assert "RF was never started" in page
    assert "<th>Final state</th><td>fault</td>" in page
    assert "First interlock trip: self_test (record row 5)" in page


def test_an_empty_record_still_reports(tmp_path: Path) -> None:
    path = tmp_path / "empty.rfa.db"
    ProcedureRecord(path, SimClock()).close()
    page = report_of(path, tmp_path)
    assert "Hash chain intact: 1 rows verified" in page  # its end row alone
    assert "No plan recorded" in page and "No summary recorded" in page


def test_cli_writes_the_report_and_exits_0(record_path: Path, tmp_path: Path,
                                           capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "out.html"
    assert run_cli(["report", str(record_path), "-o", str(out)]) == record_cli.EXIT_OK
    assert out.read_text(encoding="utf-8").count('class="lesion-plot"') == 2
    err = capsys.readouterr().err
    assert "verifying the hash chain" in err and "2 lesion plots, hash chain intact" in err


def test_cli_without_matplotlib_exits_2_before_reading_the_record(
    record_path: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    find_spec = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *rest: None if name == "matplotlib" else find_spec(name, *rest))
    out = tmp_path / "report.html"
    assert run_cli(["report", str(record_path), "-o", str(out)]) == 2
    assert "pip install -e '.[plot]'" in capsys.readouterr().err and not out.exists()


def test_cli_writes_beside_the_record_by_default_and_exits_1_when_broken(record_path: Path) -> None:
    db = sqlite3.connect(record_path)
    db.execute("DELETE FROM events WHERE id = 3")
    db.commit()
    db.close()
    assert run_cli(["report", str(record_path)]) == record_cli.EXIT_BROKEN
    assert "Hash chain BROKEN at row 4" in (record_path.parent / "proc.html").read_text(encoding="utf-8")
