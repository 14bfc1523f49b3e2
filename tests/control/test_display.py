"""The live line of ``rfa run``: what a physician glances at while RF is on."""

from __future__ import annotations

import math

import pytest

from control.display import ChannelView, PartnerView, alarm_text, format_line


def test_a_bipolar_lesion_shows_both_tips_and_both_impedances_beside_the_pairs_power() -> None:
    """The pair is held on its hotter tip; the other, on tissue of its own, runs cooler (a smaller lesion there), and
    over-temperature judges each on its own. The line showed ``ch1  80.0°C  168Ω 12.7W``: nothing of the partner."""
    line = format_line(50.0, "lesioning", [
        ChannelView(1, 80.0, 168.0, 12.7, 28.0, partner=PartnerView(2, 84.2, 175.0)),
        ChannelView(3, 42.0, 247.0, 0.2, 28.0),
    ], None)
    assert line == ("t=  50.0s lesioning   | ch1+2  80.0/84.2°C  168/175Ω 12.7W   28s left"
                    " | ch3  42.0°C  247Ω  0.2W   28s left")


def test_an_open_partner_thermocouple_shows_no_number() -> None:
    """Its full scale (327.67 °C) is no temperature (firmware_bridge.messages.tip_temperature_measured)."""
    line = format_line(50.0, "lesioning", [
        ChannelView(1, 80.0, 168.0, 0.0, None, "stopped", PartnerView(2, math.nan, 175.0)),
    ], None)
    assert line.endswith("| ch1+2  80.0/--.-°C  168/175Ω  0.0W stopped")


def test_a_pulsed_lesion_shows_its_peak_voltage_not_its_average_power() -> None:
    """Pulsed RF is regulated and capped in peak volts (the arming question says "up to 45 V"); its average power,
    0.2 W at 2 Hz × 20 ms, read as if almost nothing were delivered."""
    line = format_line(50.0, "lesioning", [ChannelView(3, 42.0, 247.0, 0.2, 28.0, peak_voltage_v=38.4)], None)
    assert line.endswith("| ch3  42.0°C  247Ω 38.4V   28s left")


@pytest.mark.parametrize(("channel", "reason", "shown"), [
    (2, "channel 2: tip 86.00 °C above 85.00 °C", "over_temperature ch2: tip 86.00 °C above 85.00 °C"),
    (None, "no telemetry received", "over_temperature: no telemetry received"),
    (2, "channel 1: pair 1–2 31.00 W", "over_temperature ch2: channel 1: pair 1–2 31.00 W"),
])
def test_an_alarm_names_its_channel_once(channel: int | None, reason: str, shown: str) -> None:
    """A channel trip's reason starts with its channel, as the record has it: the screens read "ch2: channel 2: tip"."""
    assert alarm_text("over_temperature", channel, reason) == shown
