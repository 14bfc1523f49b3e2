"""The hard limits: numbers no plan, configuration or control code can move past (ARCHITECTURE.md section 7).

Each constant carries the reason for its value on the line above it, so a better number can be argued
rather than guessed. A cart configuration may only *tighten* the limits marked "configurable" (see
:mod:`safety.config`); the interlock thresholds below them are fixed design values.

Convention: a limit is the last *allowed* value. A maximum trips strictly above it, a minimum strictly
below it (the boundary tests in ``tests/safety`` pin this down).
"""

from __future__ import annotations

from typing import Final

# -- configurable hard limits (a configuration may only tighten them) -------------------------------------

# Above ~100 °C tissue water boils, chars and the lesion becomes unpredictable; 95 °C keeps a 5 °C margin
# for the thermocouple's lag behind the hottest tissue.
TIP_TEMP_MAX_C: Final = 95.0
# Pulsed RF is meant to modulate, not to coagulate: the contract caps it at 45 °C (clinical practice
# usually sets ≤ 42 °C) so a pulsed plan can never become a thermal lesion.
PULSED_TIP_TEMP_MAX_C: Final = 45.0
# The generator's power stage is rated 50 W per channel; no percutaneous medial-branch or genicular
# electrode (16–22 G, ≤ 15 mm) needs more, and above it the shaft and skin heat.
POWER_MAX_W: Final = 50.0
# Below 50 Ω the load is a short (electrodes touching, a conductive path to the pad) and current, not
# tissue heating at the tip, rises; RF generators refuse to deliver into such a load.
IMPEDANCE_MIN_OHM: Final = 50.0
# Above 1000 Ω the tip is not in tissue (air, bone) or the tissue is desiccated; delivering then only
# raises voltage and arcing risk without making a lesion.
IMPEDANCE_MAX_OHM: Final = 1000.0
# Six minutes of RF per lesion (ramp included) is well beyond any conventional (90–180 s) or pulsed
# (120–240 s) protocol; anything longer is a runaway timer, not a plan.
LESION_RF_TIME_MAX_S: Final = 360.0
# Telemetry comes at 100 Hz; 50 ms is five lost frames, past which the host is steering blind.
TELEMETRY_STALE_S: Final = 0.050
# The generator drops output itself after 250 ms without a host heartbeat; the host gives up on the
# generator after the same silence so both ends agree on when the link is lost.
LINK_LOSS_S: Final = 0.250
# 3 V is above every sensory (< 1 V) and motor (≤ 2–3 V) test threshold used before a lesion; more only
# recruits nerves the test must not reach.
STIM_AMPLITUDE_MAX_MV: Final = 3000
# Sensory and motor tests climb from 100 mV in 100 mV steps: a maximum below the first step would deliver no
# stimulus at all and report "no response" (a maximum written in volts, `max_amplitude_mv = 2`, did exactly that).
STIM_AMPLITUDE_STEP_MV: Final = 100
# Sensory testing runs at 50 Hz and motor at 2 Hz; 200 Hz leaves room for protocols without allowing a
# stimulator to be used as a low-frequency heater.
STIM_FREQUENCY_MAX_HZ: Final = 200.0
# 1 ms is the longest pulse width used for sensory and motor testing.
STIM_PULSE_WIDTH_MAX_US: Final = 1000
# A faster ramp overshoots with the thermocouple's lag and chars tissue at the tip; 5 °C/s is twice the
# fastest ramp in common use.
RAMP_RATE_MAX_C_PER_S: Final = 5.0
# Pulsed-RF generators use 40–60 V peak; above 60 V the peak field heats tissue despite the duty cycle.
PULSED_VOLTAGE_MAX_V: Final = 60.0
# The contract's tolerance above the set temperature before over-temperature trips: the loop holds
# ±1–2 °C, so 5 °C is a fault, not overshoot.
OVER_TEMP_MARGIN_C: Final = 5.0
# A set temperature must leave the loop its allowed overshoot (2 °C, issue 6's tracking requirement) below the
# temperature at which over-temperature (or pulsed over-temperature) trips: a plan at the maximum itself stopped
# every lesion on the loop's first overshoot, a fault by plan.
SET_TEMP_HEADROOM_C: Final = 2.0
# IEC 60601-2-37: the applied surface of an ultrasound transducer must stay ≤ 43 °C on skin.
PROBE_FACE_TEMP_MAX_C: Final = 43.0
# At ~20 frames/s, one second without a frame means the needle tip shown may no longer be where it is.
IMAGING_FRAME_AGE_MAX_S: Final = 1.0

# -- fixed plan bounds -----------------------------------------------------------------------------------

# Body temperature: the starting point of every ramp.
BODY_TEMP_C: Final = 37.0
# Electrodes the cart's connectors and thermocouple inputs are qualified for.
ELECTRODE_GAUGE_MIN: Final = 16
ELECTRODE_GAUGE_MAX: Final = 22
ACTIVE_TIP_MIN_MM: Final = 5.0
ACTIVE_TIP_MAX_MM: Final = 15.0
# Pulsed RF: the generator's range of pulse widths (20 ms is the usual one) and rates (2 Hz usual).
PULSE_WIDTH_MIN_US: Final = 1000
PULSE_WIDTH_MAX_US: Final = 50_000
PULSE_RATE_MAX_HZ: Final = 10.0
# The duty cycle is what keeps pulsed RF cool: 20 ms × 2 Hz is 4 %; above 10 % it is continuous RF.
PULSED_DUTY_MAX: Final = 0.10

# -- interlock thresholds (fixed design values) -----------------------------------------------------------

# The control loop period (ARCHITECTURE.md section 8) and how many periods may pass before the loop is
# declared stalled (the watchdog contract: "misses two periods").
LOOP_PERIOD_S: Final = 0.010
LOOP_MISSED_PERIODS: Final = 2
# Readings below 10 °C or above 110 °C cannot come from a tip in living tissue (room air is ~20 °C, water
# boils at 100 °C): the thermocouple or its wiring is faulty.
THERMOCOUPLE_PLAUSIBLE_MIN_C: Final = 10.0
THERMOCOUPLE_PLAUSIBLE_MAX_C: Final = 110.0
# Tissue around a tip cannot change temperature faster than ~20 °C/s even at full power; a faster step
# between two samples is a wiring fault or interference.
THERMOCOUPLE_MAX_SLEW_C_PER_S: Final = 100.0
# A frozen thermocouple: the reading has not changed by one count for longer than this, counting only time
# with output on, while the power swung by more than the given amount (a real tip reacts within a second).
THERMOCOUPLE_FROZEN_S: Final = 3.0
THERMOCOUPLE_FROZEN_POWER_SWING_W: Final = 2.0
# ... or for longer than this with output on, swing or not: a live tip under RF, read to 0.01 °C through an
# amplifier's noise, does not give a thousand identical readings in a row, while a reading that froze at
# the set temperature during a steady hold leaves the controller no reason to move the power.
THERMOCOUPLE_STILL_S: Final = 10.0
# The trends that time a frozen reading and count energy run on the generator's clock. One that advances but
# too slowly (a wrong divider, a clock that crawls) would blind them without ever standing still, so its rate
# against the host's is measured over each window of host time and must lie within these bounds. Wide: the
# host dates a frame by the loop's read, and a frame read late only moves the window's end by a period or two.
GENERATOR_CLOCK_RATE_WINDOW_S: Final = 1.0
GENERATOR_CLOCK_RATE_MIN: Final = 0.5
GENERATOR_CLOCK_RATE_MAX: Final = 2.0
# Temperature not tracking power: once more than this energy has gone in since output came on, the tip
# must have risen this far (or be within it of the set temperature); else the thermocouple is not where
# the heat is.
NOT_TRACKING_ENERGY_J: Final = 150.0
NOT_TRACKING_RISE_C: Final = 2.0
# Impedance roll-off: a rise faster than 100 Ω/s over the last 0.5 s is desiccation or charring at the
# tip, well above measurement noise (a few Ω).
ROLLOFF_WINDOW_S: Final = 0.5
ROLLOFF_MAX_RISE_OHM_PER_S: Final = 100.0
# Over-power: measured power may exceed the commanded power by the generator's regulation tolerance
# (10 % + 1 W); each lowered setpoint's predecessor stays allowed for a short settling time after the
# generator acknowledged the command that lowered it (at most COMMAND_ANSWER_S after it was sent: safety.gate).
OVER_POWER_TOLERANCE: Final = 0.10
OVER_POWER_TOLERANCE_W: Final = 1.0
OVER_VOLTAGE_TOLERANCE_V: Final = 1.0
SETPOINT_SETTLE_S: Final = 0.1
# The power cap (the plan's, never above POWER_MAX_W) is compared with a *measurement*: the generator's
# power measurement is accurate to about 2 % + 0.1 W, so a channel regulated exactly at its cap must not
# read as over it. This allowance belongs to the limit's definition; no configuration can change it. It
# never lifts the threshold above POWER_MAX_W itself: that maximum is absolute (over-power trips strictly
# above min(cap × (1 + tolerance) + tolerance_w, POWER_MAX_W)).
POWER_MEASUREMENT_TOLERANCE: Final = 0.02
POWER_MEASUREMENT_TOLERANCE_W: Final = 0.1
# The highest power the control loop should regulate to (use min(plan cap, this)): a channel delivering it
# can read at most POWER_MAX_W, even at the measurement's worst error, so noise at full power never trips
# the absolute maximum. Both parts of the tolerance count: (50 − 0.1) / 1.02 ≈ 48.92 W; 50 / 1.02 alone
# could still read 50.1 W.
POWER_REGULATION_MAX_W: Final = (POWER_MAX_W - POWER_MEASUREMENT_TOLERANCE_W) / (1.0 + POWER_MEASUREMENT_TOLERANCE)
# Output the gate has not commanded: more than 1 W, or the output-on flag, on a channel that has been
# commanded off for longer than the generator needs to obey (two telemetry frames plus transit).
UNCOMMANDED_POWER_W: Final = 1.0
UNCOMMANDED_GRACE_S: Final = 0.1
# A generator that keeps output on against OUTPUT_OFF is stopped through the one path left that does not go
# through its command handling: the host withholds its heartbeat, and the generator's own watchdog turns all
# output off 250 ms after the last one it received (ARCHITECTURE.md section 4). The last one went out at or
# before the withholding began, so this long after it (the watchdog's 250 ms, its own 10 ms step, two
# telemetry frames to see the result, and the link's latency both ways: a USB-serial adapter holds bytes up
# to 16 ms) the watchdog has acted: the heartbeat stays withheld at least this long, and output still on
# then is beyond anything the host can send: the operator is told to switch the generator off at its mains
# switch.
GENERATOR_HEARTBEAT_TIMEOUT_S: Final = 0.25
LINK_LATENCY_S: Final = 0.025
WITHHELD_HEARTBEAT_LIMIT_S: Final = GENERATOR_HEARTBEAT_TIMEOUT_S + 3 * LOOP_PERIOD_S + 2 * LINK_LATENCY_S
# Every command but HEARTBEAT is acknowledged (ACK). The answer comes back within the generator's step, the
# link's latency both ways and the loop's next read: 70 ms. A command held for a while (a stimulus through a
# nerve test, an OUTPUT_OFF while idle) whose ACK is that late, with nothing sent since, is sent again (on the
# next tick at the latest): an ACK lost on the wire is then passed by its twin's, where the next command might
# come only seconds later. A command answered neither itself nor by anything sent since, not even that twin,
# within the twin's own round trip after it, means the generator is not taking commands (the host's transmit
# line, or its command handling): what the host commands no longer governs output, so that is a lost link
# (docs/safety.md). 150 ms: the generator's own watchdog acts at 250 ms.
COMMAND_ROUND_TRIP_S: Final = 2 * LOOP_PERIOD_S + 2 * LINK_LATENCY_S
COMMAND_RESTATE_S: Final = COMMAND_ROUND_TRIP_S
COMMAND_ANSWER_S: Final = COMMAND_RESTATE_S + LOOP_PERIOD_S + COMMAND_ROUND_TRIP_S
# Stimulation as delivered: the amplitude the generator measures (the voltage field of TELEMETRY while it
# stimulates) within 10 % + 20 mV of the commanded one (two counts of the wire's 0.01 V), once the generator
# has had as long to apply a new amplitude as it has to obey OUTPUT_OFF. A stimulator that under-delivers
# makes a motor nerve near the tip look safely distant ("no twitch at 2 V" when 1 V was given), and one that
# over-delivers stimulates beyond what the physician chose; either way the test's answer is wrong, so it
# stops (docs/safety.md). Integer millivolts, so the boundary is exact.
STIM_AMPLITUDE_TOLERANCE_PERCENT: Final = 10
STIM_AMPLITUDE_TOLERANCE_MV: Final = 20
STIM_SETTLE_S: Final = 0.1
# The RF time beyond the planned lesion time that the loop's tick granularity may use before the gate
# stops the lesion itself.
LESION_TIME_TOLERANCE_S: Final = 2.0
# Imaging lost during a lesion: how long a dropout may last before RF stops (see docs/safety.md, the
# imaging-lost policy). Short USB stalls must not abort a lesion and force a second heating.
IMAGING_LOSS_GRACE_S: Final = 2.0
# A frame may be stamped after the tick read the clock (the tick polls imaging after reading it; the guidance
# thread stamps frames alongside the loop), never later than the loop may lag before it is in overrun. A frame
# dated further ahead comes from another clock or a defect: not known to be live, so it counts as lost (a
# future date would otherwise read as fresh for ever).
IMAGING_FRAME_AHEAD_MAX_S: Final = LOOP_PERIOD_S * LOOP_MISSED_PERIODS
# The probe face's temperature is read at 1 Hz (docs/imaging.md); a reading older than this is not known, and
# guidance without it is not live: the probe-face interlock would be blind.
PROBE_FACE_READING_MAX_AGE_S: Final = 2.0
# ELECTRODE_INFO comes at 1 Hz (and at once on a change, ARCHITECTURE.md section 4). Older than three periods,
# which electrode is in which channel is not known: one changed since would not be seen.
ELECTRODE_INFO_MAX_AGE_S: Final = 3.0
