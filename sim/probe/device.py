"""The simulated probe's firmware: settings, the frame schedule on the injected clock, and its faults.

It answers the vendor requests of the contract (refusing bad values with a stall, as the real probe
does), acquires frames at ``frame_rate_hz`` of simulated time while unfrozen, and queues them for the
bulk endpoint. Frames are rendered only when the host reads, so a lockstep test pays for exactly the
frames it consumes; a host that falls behind loses the oldest acquisitions like a probe whose buffer
overflows (frame-number gaps the driver counts as drops).

Nothing here blocks or sleeps: with nothing queued a bulk read times out at once, as a real read would
after its timeout, so lockstep time is never advanced behind the test's back.
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field, replace
from enum import Enum, auto
from typing import Final

import numpy as np

from firmware_bridge.clock import Clock
from firmware_bridge.probe.wire import (
    DEPTH_MAX_MM,
    DEPTH_MIN_MM,
    FREQUENCY_STEP_KHZ,
    PACKET_BYTES,
    PRODUCT_ID,
    VENDOR_ID,
    FrameFormat,
    Geometry,
    ProbeInfo,
    ProbeState,
    ProbeStatus,
    encode_frame,
    frame_header,
)
from sim.probe.faults import ProbeFault, ProbeFaultKind
from sim.probe.render import (
    NeedlePose,
    ScanLayout,
    SceneLook,
    SceneRenderer,
    carrier_cycles_per_sample,
)

FACE_OVER_TEMP_BIT: Final = 0x01
"""Error bit the probe sets itself when its face is above 43 °C (the host decides what that means)."""
SELF_TEST_FAILED_BIT: Final = 0x02
"""Error bit of a probe in its fault state (the ``reports_fault`` fault): its own check of its front end failed."""
_FACE_OVER_TEMP_C: Final = 43.0
_CHECKED_HEADER_BYTES: Final = (0, 1, 2, 3, 16, 17, 18, 19, 22, 24, 25, 26, 27, 28, 29, 30, 31)
"""Header bytes the host can check (magic, geometry, format, length, CRC). The contract's CRC covers
only the data, so a damaged frame number or timestamp cannot be detected; see docs/imaging.md."""
_MAX_CARRIER_CYCLES_PER_SAMPLE: Final = 0.45
"""RF must stay below Nyquist with a margin; the probe refuses settings that would alias."""


class Refused(Exception):
    """The firmware refuses a request: the backend turns it into a pipe stall."""


class Corruption(Enum):
    DATA_BYTE = auto()
    HEADER_BYTE = auto()
    TRUNCATED = auto()


@dataclass(frozen=True, slots=True)
class SimProbeConfig:
    model: str = "SIM-L38"
    serial: str = "SIM-0001"
    vendor_id: int = VENDOR_ID
    product_id: int = PRODUCT_ID
    geometry: Geometry = Geometry.LINEAR
    element_count: int = 128
    pitch_mm: float = 0.3
    """Linear arrays: element pitch."""
    radius_mm: float = 50.0
    """Convex arrays: radius of curvature."""
    sector_deg: float = 60.0
    """Convex arrays: angle the lines span (not in GET_INFO; see docs/imaging.md)."""
    centre_frequency_khz: int = 5000
    lines: int = 128
    samples_per_line: int = 2048
    frame_format: FrameFormat = FrameFormat.RF_I16
    frame_rate_hz: float = 25.0
    buffer_frames: int = 4
    """Acquisitions the probe can hold for a slow host before it loses the oldest."""
    depth_mm: int = 60
    gain_db: float = 40.0
    face_temp_c: float = 33.0
    look: SceneLook = field(default_factory=SceneLook)
    seed: int = 0

    def layout(self) -> ScanLayout:
        return ScanLayout(
            geometry=self.geometry,
            aperture_mm=self.element_count * self.pitch_mm,
            radius_mm=self.radius_mm,
            sector_rad=math.radians(self.sector_deg),
        )

    def info(self) -> ProbeInfo:
        linear = self.geometry is Geometry.LINEAR
        return ProbeInfo(
            model=self.model,
            serial=self.serial,
            element_count=self.element_count,
            centre_frequency_khz=self.centre_frequency_khz,
            pitch_or_radius_mm=self.pitch_mm if linear else self.radius_mm,
            geometry=self.geometry,
        )


class SimProbe:
    """One simulated probe; plug it into a :class:`~sim.probe.backend.SimProbeBackend`."""

    def __init__(self, clock: Clock, config: SimProbeConfig = SimProbeConfig()) -> None:
        self.clock = clock
        self.config = config
        self._renderer = SceneRenderer(np.random.default_rng([config.seed, 1]), config.look)
        self._fault_rng = np.random.default_rng([config.seed, 2])
        self.needle: NeedlePose | None = None
        self.boiling = False
        self.plugged = True
        self.generation = 0
        """Bumped on every replug, so handles opened before an unplug stay dead."""
        self.frames_acquired = 0
        self.frames_sent = 0
        self.drop_probability = 0.0
        self.corrupt_probability = 0.0
        self._drop_next = 0
        self._corrupt_next = 0
        self.bulk_halted = False
        self.silent = False
        self.reports_fault = False
        self._refuse_next_control = 0
        self._heating_c_per_s = 0.0
        self._heating_since_s = 0.0
        self._script: list[tuple[float, Callable[[float], None]]] = []
        """Scripted faults still to come: (when, in the simulator's seconds; the act, given that moment's clock)."""
        self._script_elapsed_s: Callable[[], float] | None = None
        self._power_on()

    def _power_on(self) -> None:
        self.streaming = False
        self.depth_mm = self.config.depth_mm
        self.gain_tenth_db = round(self.config.gain_db * 10)
        self.frequency_10khz = self.config.centre_frequency_khz // FREQUENCY_STEP_KHZ
        self._next_frame_index = 0
        self._stream_start_s = 0.0
        self._frame_number = 0
        self._queue: deque[memoryview] = deque()
        self.bulk_halted = False
        self._prime()

    def _prime(self) -> None:
        """Build the scene for the current settings while the probe is being set up, never mid-stream."""
        config = self.config
        self._renderer.prime(config.layout(), config.lines, config.samples_per_line, self.depth_mm)

    # -- scenario hooks ------------------------------------------------------------------------------

    def set_needle(self, pose: NeedlePose | None) -> None:
        self.needle = pose

    def set_boiling(self, boiling: bool) -> None:
        """Tissue at the tip boils (gas echoes appear around the tip) or stops boiling."""
        self.boiling = boiling

    # -- faults --------------------------------------------------------------------------------------

    def drop_next_frames(self, count: int) -> None:
        self._drop_next += count

    def corrupt_next_frames(self, count: int) -> None:
        self._corrupt_next += count

    def stall_bulk(self) -> None:
        """The bulk endpoint halts until the host clears it."""
        self.bulk_halted = True

    def refuse_next_control_requests(self, count: int) -> None:
        self._refuse_next_control += count

    def set_silent(self, silent: bool) -> None:
        """The probe stays enumerated but sends nothing (every bulk read times out)."""
        self.silent = silent

    def unplug(self) -> None:
        self.plugged = False
        self._queue.clear()

    def plug_in(self) -> None:
        """Attach again as a freshly powered probe: default settings, frozen."""
        if not self.plugged:
            self.plugged = True
            self.generation += 1
            self._power_on()

    def report_fault(self, faulted: bool) -> None:
        """The probe says it is in its fault state (``GET_STATUS``), or no longer; its frames stream as before."""
        self.reports_fault = faulted

    def heat_face(self, rate_c_per_s: float, *, since_s: float | None = None) -> None:
        """The face warms at ``rate_c_per_s`` from now on, or from ``since_s`` on the clock (0 holds the
        temperature it has then)."""
        since = self.clock.now() if since_s is None else since_s
        self.config = replace(self.config, face_temp_c=self._face_temp_at(since))
        self._heating_c_per_s = rate_c_per_s
        self._heating_since_s = since

    @property
    def face_temp_c(self) -> float:
        return self._face_temp_at(self.clock.now())

    def _face_temp_at(self, t: float) -> float:
        return self.config.face_temp_c + self._heating_c_per_s * (t - self._heating_since_s)

    # -- scripted faults -----------------------------------------------------------------------------

    def script_faults(self, faults: Iterable[ProbeFault], elapsed_s: Callable[[], float]) -> None:
        """Act out ``faults`` (``[[probe_fault]]`` tables) at their times, ``elapsed_s()`` being the simulator's
        time (seconds since it started serving: the generator's, so that both scripts share one time line)."""
        script: list[tuple[float, Callable[[float], None]]] = []
        for fault in faults:
            script += self._acts(fault)
        self._script = sorted(script, key=lambda act: act[0])  # stable: simultaneous acts in the script's order
        self._script_elapsed_s = elapsed_s

    def follow_script(self) -> None:
        """Do what the fault script holds up to now, in order. The backend calls this whenever the bus touches the
        probe, so a fault acts on the thread that serves it (never under a transfer in flight), and one the host
        did not look in on while it lasted still happened (a disconnect seen as a replugged probe)."""
        if not self._script or self._script_elapsed_s is None:
            return
        now = self.clock.now()
        elapsed = self._script_elapsed_s()
        while self._script and self._script[0][0] <= elapsed:
            at_s, act = self._script.pop(0)
            act(now - (elapsed - at_s))

    def _acts(self, fault: ProbeFault) -> list[tuple[float, Callable[[float], None]]]:
        kind, end_s = fault.kind, fault.end_s
        if kind is ProbeFaultKind.USB_STALL:
            return [(fault.at_s, lambda at: self.stall_bulk())]
        if kind is ProbeFaultKind.FRAME_DROPS:
            return [(fault.at_s, lambda at: self.drop_next_frames(round(fault.magnitude)))]
        if kind is ProbeFaultKind.DISCONNECT:
            unplug: list[tuple[float, Callable[[float], None]]] = [(fault.at_s, lambda at: self.unplug())]
            return unplug if end_s is None else [*unplug, (end_s, lambda at: self.plug_in())]
        if kind is ProbeFaultKind.REPORTS_FAULT:
            report: list[tuple[float, Callable[[float], None]]] = [(fault.at_s, lambda at: self.report_fault(True))]
            return report if end_s is None else [*report, (end_s, lambda at: self.report_fault(False))]
        heat: list[tuple[float, Callable[[float], None]]] = [
            (fault.at_s, lambda at: self.heat_face(fault.magnitude, since_s=at))]
        return heat if end_s is None else [*heat, (end_s, lambda at: self.heat_face(0.0, since_s=at))]

    # -- requests ------------------------------------------------------------------------------------

    def info(self) -> ProbeInfo:
        return self.config.info()

    def status(self) -> ProbeStatus:
        temp = self.face_temp_c
        error_bits = FACE_OVER_TEMP_BIT if temp > _FACE_OVER_TEMP_C else 0
        if self.reports_fault:
            return ProbeStatus(ProbeState.FAULT, temp, error_bits | SELF_TEST_FAILED_BIT)
        return ProbeStatus(ProbeState.STREAMING if self.streaming else ProbeState.IDLE, temp, error_bits)

    def check_control_allowed(self) -> None:
        if self._refuse_next_control > 0:
            self._refuse_next_control -= 1
            raise Refused("injected control stall")

    def set_depth_mm(self, depth_mm: int) -> None:
        if not DEPTH_MIN_MM <= depth_mm <= DEPTH_MAX_MM:
            raise Refused(f"depth {depth_mm} mm out of range")
        self._check_sampling(depth_mm, self.frequency_10khz)
        self.depth_mm = depth_mm
        self._prime()

    def set_gain(self, tenth_db: int) -> None:
        if not 0 <= tenth_db <= 900:
            raise Refused(f"gain {tenth_db / 10} dB out of range")
        self.gain_tenth_db = tenth_db

    def set_frequency(self, ten_khz: int) -> None:
        if not 100 <= ten_khz <= 1500:  # the simulated array transmits 1..15 MHz
            raise Refused(f"frequency {ten_khz * 10} kHz out of range")
        self._check_sampling(self.depth_mm, ten_khz)
        self.frequency_10khz = ten_khz

    def _check_sampling(self, depth_mm: int, ten_khz: int) -> None:
        if self.config.frame_format is FrameFormat.RF_I16:
            cycles = carrier_cycles_per_sample(ten_khz * 10, depth_mm, self.config.samples_per_line)
            if cycles > _MAX_CARRIER_CYCLES_PER_SAMPLE:
                raise Refused("RF would alias at this depth and frequency")

    def freeze(self) -> None:
        self.streaming = False
        self._queue.clear()

    def unfreeze(self) -> None:
        if not self.streaming:
            self.streaming = True
            self._stream_start_s = self.clock.now()
            self._next_frame_index = 0

    # -- bulk endpoint -------------------------------------------------------------------------------

    def read_bulk(self, max_bytes: int) -> bytes | None:
        """Up to ``max_bytes`` of the frame being sent (whole packets; a transfer ends with its frame).

        ``None`` when nothing is queued (the backend turns that into a timeout).
        """
        if self.silent:
            return None
        self._acquire_due_frames()
        if not self._queue:
            return None
        head = self._queue[0]
        take = (
            len(head)
            if len(head) <= max_bytes
            else max(PACKET_BYTES, max_bytes // PACKET_BYTES * PACKET_BYTES)
        )
        chunk = bytes(head[:take])
        if take >= len(head):
            self._queue.popleft()
        else:
            self._queue[0] = head[take:]
        return chunk

    def _acquire_due_frames(self) -> None:
        if not self.streaming:
            return
        period_s = 1.0 / self.config.frame_rate_hz
        due = math.floor((self.clock.now() - self._stream_start_s) / period_s + 1e-9) + 1
        if due <= self._next_frame_index:
            return
        room = self.config.buffer_frames - len(self._queue)
        first = max(self._next_frame_index, due - max(room, 0))
        self._frame_number += first - self._next_frame_index  # acquisitions lost to a full buffer
        for index in range(first, due):
            self._acquire(self._stream_start_s + index * period_s)
        self._next_frame_index = due

    def _acquire(self, acquired_at_s: float) -> None:
        number = self._frame_number
        self._frame_number += 1
        self.frames_acquired += 1
        if self._take(self._drop_next_counter(), self.drop_probability):
            return
        config = self.config
        cycles = carrier_cycles_per_sample(self.frequency_10khz * 10, self.depth_mm, config.samples_per_line)
        data = self._renderer.render_wire(
            config.layout(), config.lines, config.samples_per_line, self.depth_mm, self.needle, self.boiling,
            config.frame_format, self.gain_tenth_db / 10.0, cycles,
        )
        header = frame_header(
            number,
            round(acquired_at_s * 1e6),
            config.lines,
            config.samples_per_line,
            self.depth_mm,
            config.frame_format,
            data,
        )
        wire = encode_frame(header, data)
        if self._take(self._corrupt_next_counter(), self.corrupt_probability):
            wire = self._corrupt(wire)
        self._queue.append(memoryview(wire))
        self.frames_sent += 1

    def _drop_next_counter(self) -> bool:
        if self._drop_next > 0:
            self._drop_next -= 1
            return True
        return False

    def _corrupt_next_counter(self) -> bool:
        if self._corrupt_next > 0:
            self._corrupt_next -= 1
            return True
        return False

    def _take(self, forced: bool, probability: float) -> bool:
        return forced or (probability > 0.0 and bool(self._fault_rng.random() < probability))

    def _corrupt(self, wire: bytes) -> bytes:
        damaged = bytearray(wire)
        kind = list(Corruption)[int(self._fault_rng.integers(len(Corruption)))]
        if kind is Corruption.HEADER_BYTE:
            damaged[int(self._fault_rng.choice(_CHECKED_HEADER_BYTES))] ^= 0xFF
        elif kind is Corruption.DATA_BYTE:
            damaged[int(self._fault_rng.integers(32, len(damaged)))] ^= 0x5A
        else:  # a packet lost in the middle of the frame
            start = int(self._fault_rng.integers(1, max(2, len(damaged) // PACKET_BYTES))) * PACKET_BYTES
            del damaged[start : start + PACKET_BYTES]
        return bytes(damaged)


CART_NEEDLE: Final = NeedlePose(tip_lateral_mm=0.0, tip_depth_mm=30.0, angle_deg=35.0)
"""The simulated cart's needle: in plane, its tip 30 mm deep, at 35 degrees."""


def cart_probe(clock: Clock, seed: int = 0) -> SimProbe:
    """The simulated cart's probe, in-process (``rfa run``) or served (``rfa sim --probe``): beamformed envelope
    frames (format 0) at 128 x 512, what a probe module with on-board beamforming sends and a quarter of the RF
    format's work per frame, with the needle in plane."""
    probe = SimProbe(clock, SimProbeConfig(seed=seed, frame_format=FrameFormat.ENVELOPE_U8, samples_per_line=512))
    probe.set_needle(CART_NEEDLE)
    return probe
