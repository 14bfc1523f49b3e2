"""The per-lesion figures a physician reads at the end, computed from a known trace."""

from __future__ import annotations

import gc
import json
from dataclasses import replace

import numpy as np
import pytest

from control.summary import ChannelTrace, PartnerSummary, summarise, summary_from_record, summary_table


def trace() -> ChannelTrace:
    t = ChannelTrace(channel=2, set_temp_c=80.0, rf_started_s=10.0)
    # 10 s ramp 40 -> 81 °C at 4 W, then 10 s hold alternating 79/81 °C at 2 W.
    for k in range(11):
        t.add(10.0 + k, 40.0 + 4.1 * k, 200.0 - k, 4.0)
    t.hold_started_s = 20.0
    for k in range(1, 11):
        t.add(20.0 + k, 79.0 if k % 2 else 81.0, 190.0, 2.0)
    return t


def test_figures_of_a_known_trace() -> None:
    s = summarise(trace())
    assert s.time_to_set_s == pytest.approx(10.0)
    assert s.overshoot_c == pytest.approx(1.0)
    assert s.hold_rms_error_c == pytest.approx(1.0)
    assert s.hold_max_c == pytest.approx(81.0)
    assert s.impedance_start_ohm == 200.0 and s.impedance_end_ohm == 190.0
    # Trapezoid: 10 s at 4 W, one 1 s step from 4 to 2 W, 9 s at 2 W.
    assert s.energy_j == pytest.approx(40.0 + 3.0 + 18.0)
    assert s.rf_time_s == pytest.approx(20.0)


def test_a_lesion_that_never_reached_temperature_says_so() -> None:
    t = ChannelTrace(channel=1, set_temp_c=80.0, rf_started_s=0.0, tripped="impedance_low ch1: short")
    t.add(0.0, 37.0, 40.0, 5.0)
    t.add(0.01, 37.1, 40.0, 5.0)
    s = summarise(t)
    assert s.time_to_set_s is None and s.hold_rms_error_c is None
    assert "impedance_low" in summary_table([s]).splitlines()[-1]


def test_a_lesion_that_ran_its_time_below_its_set_temperature_is_a_shortfall_not_complete() -> None:
    t = ChannelTrace(channel=3, set_temp_c=80.0, rf_started_s=0.0)
    for k in range(10):
        t.add(float(k), 40.0 + 3.0 * k, 200.0, 1.0)
    s = summarise(t)
    assert (s.tripped, s.as_planned) == ("", False)
    assert s.result == s.shortfall == "set temperature not reached: peak 67.0 °C of 80 °C"
    assert s.as_dict()["result"] == s.result
    assert summary_table([s]).splitlines()[-1].endswith(s.result)


def test_the_table_keeps_its_columns_when_a_lesion_has_no_hold() -> None:
    """A "-" takes its column's width, so every row's result starts under the header's "result"."""
    reached, stopped = summarise(trace()), summarise(ChannelTrace(channel=1, set_temp_c=80.0, tripped="stop"))
    header, _, first, second = summary_table([reached, stopped]).splitlines()
    assert first.rindex("complete") == second.rindex("stop") == header.index("result")


@pytest.mark.parametrize(("width_mm", "length_mm", "note", "shown"), [
    (8.06, 14.04, "", "8.1×14.0"),
    (0.0, 0.0, "", "none"),  # no tissue of the model coagulated: no lesion, said so
    (None, None, "", "-"),  # nothing to estimate (pulsed RF, no RF delivered)
    (None, None, "lesion size not estimated: IndexError: 7", "?"),  # the estimate failed: its note says why
])
def test_the_table_shows_the_estimated_lesion_under_its_header(
    width_mm: float | None, length_mm: float | None, note: str, shown: str,
) -> None:
    s = replace(summarise(trace()), predicted_width_mm=width_mm, predicted_length_mm=length_mm, size_note=note)
    header, _, row = summary_table([s]).splitlines()
    end = header.index("lesion W×L mm") + len("lesion W×L mm")
    assert row[:end].endswith(" " + shown)


def test_a_trace_gives_the_collector_nothing_to_walk() -> None:
    # Every lesion's trace is kept until the summary; a container of samples would be walked by each of
    # the real-time loop's full collections, which would then grow with the procedure (control.runtime).
    t = trace()
    for series in (t.t_s, t.tip_temp_c, t.impedance_ohm, t.power_w):
        assert len(series) == 21
        assert len(gc.get_referents(series)) <= 1  # at most its type, whatever its length


def test_a_pulsed_lesion_held_below_its_ceiling_has_not_fallen_short() -> None:
    """Pulsed RF's 42 °C is a ceiling, not a target: its voltage cap may hold the tip below it, as planned."""
    t = ChannelTrace(channel=3, set_temp_c=42.0, rf_started_s=0.0, thermal=False)
    for k in range(10):
        t.add(float(k), 37.0 + 0.25 * k, 250.0, 0.2)
    s = summarise(t)
    assert (s.shortfall, s.result, s.as_planned) == ("", "complete", True)


def bipolar_trace() -> ChannelTrace:
    """A bipolar pair 1–2: the lead tip (the one regulated) as :func:`trace`, the partner's 3 °C hotter throughout on
    10 Ω more, reaching 79 °C a second before the lead's."""
    lead = trace()
    lead.channel = 1
    partner = ChannelTrace(channel=2, set_temp_c=80.0, rf_started_s=10.0)
    for t_s, tip_c, z_ohm in zip(lead.t_s, lead.tip_temp_c, lead.impedance_ohm, strict=True):
        partner.add(t_s, tip_c + 3.0, z_ohm + 10.0, 2.0)
    partner.hold_started_s = 19.0
    lead.partner = partner
    return lead


def test_a_bipolar_partners_tip_has_a_row_of_its_own_under_its_lesion() -> None:
    """Over-temperature judges each tip on its own, and the two tips of a pair may differ: a partner 3 °C hotter
    showed nowhere (the table had the lead's 1 °C overshoot alone, and "complete")."""
    s = summarise(bipolar_trace())
    assert (s.channel, s.overshoot_c, s.hold_max_c) == (1, pytest.approx(1.0), pytest.approx(81.0)), "the lead's"
    p = s.partner
    assert p is not None and p.channel == 2
    assert p.time_to_set_s == pytest.approx(9.0), "its own tip's time to set temperature"
    assert p.overshoot_c == pytest.approx(4.0) and p.hold_max_c == pytest.approx(84.0)
    held = np.asarray(bipolar_trace().tip_temp_c)[10:] + 3.0  # from the lead's hold (20 s) on
    assert p.hold_mean_c == pytest.approx(float(held.mean()))
    assert p.hold_rms_error_c == pytest.approx(float(np.sqrt(np.mean((held - 80.0) ** 2))))
    assert (p.impedance_start_ohm, p.impedance_end_ohm) == (210.0, 200.0)
    header, _, lead_row, partner_row = summary_table([s]).splitlines()
    assert partner_row.split()[:8] == ["2", "80.0", "9.0", "4.00", f"{p.hold_mean_c:.2f}", "84.00",
                                       f"{p.hold_rms_error_c:.2f}", "210"]
    assert partner_row[header.index("result"):] == "bipolar partner of ch1 (pair held on its hotter tip)"
    assert lead_row[header.index("result"):] == "complete"
    end = header.index("lesion W×L mm") + len("lesion W×L mm")
    assert partner_row[:end].split()[-2:] == ["-", "-"], "the pair's energy and size are on the lead's row"


def test_a_bipolar_partner_comes_back_from_the_record_and_json() -> None:
    """``rfa console`` rebuilds the table from the record's summary row, ``rfa run --json`` prints the same dict."""
    s = summarise(bipolar_trace())
    assert summary_from_record(json.loads(json.dumps(s.as_dict()))) == s
    assert summary_from_record({**s.as_dict(), "partner": None}).partner is None
    with pytest.raises(TypeError):
        summary_from_record({**s.as_dict(), "partner": [1, 2]})


def test_a_partner_without_a_reading_shows_dashes_not_numbers() -> None:
    """A partner whose thermocouple was open from the start has no reading to give (its full scale is none)."""
    lead = trace()
    lead.channel = 1
    lead.partner = ChannelTrace(channel=2, set_temp_c=80.0, rf_started_s=10.0)
    s = summarise(lead)
    assert s.partner == PartnerSummary(2)
    header, _, _, partner_row = summary_table([s]).splitlines()
    assert partner_row.split()[:2] == ["2", "80.0"]
    assert set(partner_row[:header.index("result")].split()[2:]) == {"-"}
