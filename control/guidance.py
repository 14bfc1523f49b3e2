"""Ultrasound guidance for the procedure: probe frames → B-mode → needle tip → boiling → ImagingStatus.

Called once per control tick (:meth:`ProbeGuidance.poll`); it never blocks: the driver returns only the
frames that have arrived, and only the newest one is processed (the probe streams at ~20 fps, the loop
ticks at 100 Hz, so most ticks see no frame).

The probe images one electrode at a time. The boiling monitor (``safety.boiling``) watches the *guided*
channel, the one whose tip is in the image (by default the plan's first lesion); the other channels rely on
their thermocouple and impedance roll-off interlocks. A probe that disconnects is reconnected on later
ticks; meanwhile ``last_frame_at`` ages and the gate's imaging-lost interlock acts. A probe that reports its
fault state (``GET_STATUS``, read every second) counts as no imaging at once, frames or not.

Frames go to the procedure record once per second while RF is on and at every state change, with the
detected tip, as a zlib-compressed 8-bit image, so a reviewer can see what the physician saw.
"""

from __future__ import annotations

import base64
import math
import zlib
from typing import Any, Final

from control.display import GuidanceView
from control.imaging.bmode import BModePipeline, DisplayImage
from control.imaging.geometry import ScanGeometry
from control.imaging.needle import NO_NEEDLE, TipDetector, TipEstimate
from control.record import ProcedureRecord
from firmware_bridge.clock import Clock
from firmware_bridge.errors import ProbeError
from firmware_bridge.probe import ProbeFrame, ProbeState, ProbeStatus, UltrasoundProbe
from safety.boiling import BoilingDetector
from safety.inputs import ImagingStatus

STATUS_PERIOD_S: Final = 1.0
STATUS_RETRY_S: Final = 0.1
TIP_DETECT_PERIOD_S: Final = 0.5
"""The tip moves slowly (the physician holds the needle still during a lesion); B-mode and the boiling
monitor see every frame, the costlier tip search runs twice a second."""
RECONNECT_PERIOD_S: Final = 1.0
FRAME_RECORD_PERIOD_S: Final = 1.0
TIP_CONFIDENCE_MIN: Final = 0.5


class ProbeGuidance:
    def __init__(
        self,
        probe: UltrasoundProbe,
        clock: Clock,
        record: ProcedureRecord,
        *,
        guided_channel: int,
        frame_record_period_s: float = FRAME_RECORD_PERIOD_S,
    ) -> None:
        self.probe = probe
        self.clock = clock
        self.record = record
        self.guided_channel = guided_channel
        self.frame_record_period_s = frame_record_period_s
        self.pipeline = BModePipeline()
        self.tips = TipDetector()
        self.boiling = BoilingDetector()
        self.pipeline.warm_up()
        self.tips.warm_up()
        self.tip: TipEstimate = NO_NEEDLE
        self.image: DisplayImage | None = None
        self.frame_number = -1
        self.face_temp_c: float | None = None
        self.face_read_at: float | None = None
        self.boiling_blind_since: float | None = None
        self.probe_fault_bits: int | None = None
        self.errors = 0
        self._next_status = clock.now()
        self._next_tip_detect = clock.now()
        self._next_reconnect = clock.now()
        self._next_frame_record: float | None = None
        probe.unfreeze()

    # -- the tick ------------------------------------------------------------------------------------
    def poll(self) -> ImagingStatus:
        now = self.clock.now()
        try:
            if not self.probe.connected:
                if now >= self._next_reconnect:
                    self._next_reconnect = now + RECONNECT_PERIOD_S
                    self.probe.reconnect()
            else:
                frames = self.probe.poll()
                if frames:
                    self._process(frames[-1], now)
                if now >= self._next_status:
                    # A failed read is tried again soon, not a period later: the face reading ages out at
                    # PROBE_FACE_READING_MAX_AGE_S (2 s), and one failure then a 1 s wait would pass it.
                    self._next_status = now + STATUS_RETRY_S
                    status = self.probe.read_status()
                    self.face_temp_c = status.face_temp_c
                    self.face_read_at = now
                    self._next_status = now + STATUS_PERIOD_S
                    self._note_probe_state(status, now)
        except ProbeError as exc:  # a disconnect too: reconnect on a later tick
            self._note_error(exc, now)
        return ImagingStatus(self.probe.last_frame_at_s, self.face_temp_c, self.boiling.boiling_channels,
                             self.face_read_at, self.boiling_blind_since, self.probe_fault_bits)

    def _process(self, frame: ProbeFrame, now: float) -> None:
        geometry = ScanGeometry.from_info(
            self.probe.info, frame.lines, frame.samples_per_line, frame.depth_mm
        )
        transmit_khz = self.probe.frequency_khz or self.probe.info.centre_frequency_khz
        beam = self.pipeline.beam_image(frame.samples, frame.format, geometry, transmit_khz)
        if now >= self._next_tip_detect:
            self._next_tip_detect = now + TIP_DETECT_PERIOD_S
            self.tip = self.tips.detect(beam)
        self.image = self.pipeline.display(beam)
        self.frame_number = frame.frame_number
        self.boiling.update(self.image, now)
        self._note_boiling_watch(now)
        if self._next_frame_record is not None and now >= self._next_frame_record:
            self._next_frame_record = now + self.frame_record_period_s
            self.record_frame("rf")

    def _note_boiling_watch(self, now: float) -> None:
        """Date the first frame in which the boiling monitor lost sight of its tip (and record it, and its end):
        the imaging-lost interlock ages such frames as if they had not come."""
        blind = self.guided_channel in self.boiling.unwatchable_channels
        if blind == (self.boiling_blind_since is not None):
            return
        self.boiling_blind_since = now if blind else None
        detail = "blind: the tip's disk is not in the image" if blind else "watching again"
        self.record.append("boiling_monitor", {"channel": self.guided_channel, "detail": detail,
                                               "frame": self.frame_number}, mono=now)
        if blind:
            self.record_frame("boiling monitor blind")

    def _note_probe_state(self, status: ProbeStatus, now: float) -> None:
        """Keep whether the probe says it is in its fault state (the imaging-lost interlock takes it as no imaging),
        and record when it starts and stops saying so."""
        fault_bits = status.error_bits if status.state is ProbeState.FAULT else None
        if (fault_bits is None) == (self.probe_fault_bits is None):
            self.probe_fault_bits = fault_bits
            return
        self.probe_fault_bits = fault_bits
        self.record.append("probe_status", {"state": status.state.name.lower(), "error_bits": status.error_bits,
                                            "face_temp_c": status.face_temp_c}, mono=now)

    def _note_error(self, exc: ProbeError, now: float) -> None:
        self.errors += 1
        self.record.append("probe_error", {"error": type(exc).__name__, "detail": str(exc)}, mono=now)

    # -- lesion hooks --------------------------------------------------------------------------------
    def rf_start_refusals(self) -> list[str]:
        if not self.tip_found:
            return [f"needle tip of ch{self.guided_channel} not found in the image (confidence "
                    f"{self.tip.confidence:.2f}): the boiling monitor could not watch it"]
        return []

    def rf_started(self, channels: list[int]) -> None:
        """RF is on: watch the guided channel for boiling and record a frame each second."""
        if self.guided_channel in channels:  # the session refuses RF under guidance without a tip
            self.boiling.start(self.guided_channel, self.tip.lateral_mm, self.tip.depth_mm, self.clock.now())
        self._next_frame_record = self.clock.now()

    def rf_stopped(self) -> None:
        self.boiling.stop(self.guided_channel)
        self.boiling_blind_since = None
        self._next_frame_record = None

    @property
    def tip_found(self) -> bool:
        return self.tip.confidence >= TIP_CONFIDENCE_MIN and not math.isnan(self.tip.depth_mm)

    def view(self) -> GuidanceView:
        live = (self.probe_fault_bits is None  # the probe has said its images are not good
                and self.probe.last_frame_at_s is not None and self.clock.now() - self.probe.last_frame_at_s < 0.5)
        watch = self.boiling.state(self.guided_channel)
        boiling_watch = None if watch is None else watch.name.lower()
        if not self.tip_found:
            return GuidanceView(live, None, None, self.tip.confidence, boiling_watch)
        return GuidanceView(live, self.tip.lateral_mm, self.tip.depth_mm, self.tip.confidence, boiling_watch)

    def record_frame(self, reason: str) -> None:
        """Put the latest display frame, with the detected tip, on the procedure record.

        The tick only captures the frame; compressing it (several ms for a speckled 512 px image) happens on
        the record's writer thread.
        """
        image = self.image
        tip_found = self.tip_found
        tip = self.tip
        header: dict[str, Any] = {
            "reason": reason, "frame": self.frame_number, "guided_channel": self.guided_channel,
            "tip_lateral_mm": round(tip.lateral_mm, 2) if tip_found else None,
            "tip_depth_mm": round(tip.depth_mm, 2) if tip_found else None,
            "tip_confidence": round(tip.confidence, 3),
        }
        watch = self.boiling.state(self.guided_channel)
        if watch is not None:  # RF is on: what the boiling monitor made of this frame
            relative_db = self.boiling.relative_brightness_db(self.guided_channel)
            header["boiling_watch"] = watch.name.lower()
            header["boiling_relative_db"] = None if relative_db is None else round(relative_db, 2)

        def payload() -> dict[str, Any]:
            if image is None:
                return header
            pixels = image.pixels
            return {**header, "shape": list(pixels.shape), "mm_per_pixel": image.mm_per_pixel,
                    "lateral_origin_mm": image.lateral_origin_mm, "depth_origin_mm": image.depth_origin_mm,
                    "zlib_b64": base64.b64encode(zlib.compress(pixels.tobytes(), 6)).decode("ascii")}

        self.record.append("frame", payload)

    def close(self) -> None:
        self.probe.close()
