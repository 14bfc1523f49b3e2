"""``rfa probe info|stream|snapshot FILE.png``: the probe at the bench, for engineers.

This module never chooses the device: the composition root (``control/cli.py``) passes a factory that
opens the simulated or the real probe on a given clock, so this code is the same for both and ``control``
does not import ``sim``. ``--probe`` is parsed here (:func:`parse_probe_target`) for the root to use.

Exit codes follow ARCHITECTURE.md section 11: 0 success, 1 the probe failed while in use, 2 usage,
3 the probe is not reachable.
"""

from __future__ import annotations

import argparse
import json
import struct
import sys
import zlib
from collections.abc import Callable
from pathlib import Path
from typing import Final, TextIO

import numpy as np
import numpy.typing as npt

from control import arguments
from control.imaging.bmode import BModePipeline, DisplayImage
from control.imaging.geometry import ScanGeometry
from control.imaging.needle import TipDetector, TipEstimate
from firmware_bridge.clock import Clock, RealClock
from firmware_bridge.errors import ProbeError
from firmware_bridge.probe import (
    ProbeAddress,
    ProbeDisconnected,
    ProbeFrame,
    ProbeNotFound,
    ProbeStalled,
    UltrasoundProbe,
)

EXIT_OK: Final = 0
EXIT_FAULT: Final = 1
EXIT_USAGE: Final = 2
EXIT_UNREACHABLE: Final = 3
POLL_PERIOD_S: Final = 0.01
RECONNECT_PERIOD_S: Final = 1.0
"""How often ``stream`` looks for a probe that disconnected (as the cart's guidance does)."""

ProbeFactory = Callable[[Clock], UltrasoundProbe]
"""Opens the probe on the given clock; raises ``ProbeNotFound`` when it is not attached."""


def parse_probe_target(text: str) -> ProbeAddress | None:
    """``sim`` → ``None`` (the in-process simulator); ``usb:VID:PID`` (hex) → that address."""
    if text == "sim":
        return None
    parts = text.split(":")
    if len(parts) == 3 and parts[0] == "usb":
        try:
            return ProbeAddress(vendor_id=int(parts[1], 16), product_id=int(parts[2], 16))
        except ValueError:
            pass
    raise argparse.ArgumentTypeError(f"must be 'sim', 'usb:VID:PID' in hex or 'tcp:[HOST:]PORT', not {text!r}")


PROBE_HELP: Final = ("sim (default), usb:VID:PID (e.g. usb:1209:0001), or tcp:[HOST:]PORT (the probe `rfa sim "
                     "--probe` serves)")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """``--probe`` and ``--json`` go before the action or after it: ``rfa probe info --probe sim`` works too."""
    parser.add_argument("--probe", default="sim", help=PROBE_HELP)
    parser.add_argument("--json", action="store_true", help="machine-readable output")
    commands = parser.add_subparsers(dest="probe_command", required=True, metavar="ACTION")
    info = commands.add_parser("info", help="GET_INFO and GET_STATUS",
                               description="Print the probe's identity (model, serial, elements, centre frequency, "
                               "geometry) and status (state, face temperature, error bits). Exit 3 if it is not "
                               "attached.")
    stream = commands.add_parser("stream", help="stream frames and report rate, drops, corruption and tip",
                                 description="Stream B-mode frames for a while and report the frame rate, frames "
                                 "dropped and corrupt, bulk stalls and disconnects (both ridden out: a stall is "
                                 "cleared, a probe that went is looked for once a second), the face temperature and "
                                 "the needle tip found, if any. Exit 1 if the probe fails while streaming or is still "
                                 "gone at the end, 3 if it is not attached.")
    stream.add_argument("--seconds", type=arguments.seconds, default=5.0, help="how long to stream (default 5 s)")
    snapshot = commands.add_parser("snapshot", help="write one B-mode display image as PNG",
                                   description="Acquire one frame, form the B-mode display image (as the cart "
                                   "shows it) and write it as a PNG.")
    snapshot.add_argument("file", type=Path, metavar="FILE.png")
    for action in (info, stream, snapshot):  # SUPPRESS: when not given here, the value before the action stays
        action.add_argument("--probe", default=argparse.SUPPRESS, help=PROBE_HELP)
        action.add_argument("--json", action="store_true", default=argparse.SUPPRESS, help="machine-readable output")
    for sub in (stream, snapshot):
        sub.add_argument("--depth-mm", type=int, help="imaging depth, 20..120 mm")
        sub.add_argument("--gain-db", type=float, help="receive gain, 0..90 dB")
        sub.add_argument("--frequency-khz", type=int, help="transmit frequency, a multiple of 10 kHz")


def run(
    args: argparse.Namespace,
    probe_factory: ProbeFactory,
    clock: Clock | None = None,
    out: TextIO | None = None,
) -> int:
    """Run one ``rfa probe`` action; ``out`` defaults to the standard output of the moment of the call."""
    clock = RealClock() if clock is None else clock
    out = sys.stdout if out is None else out
    try:
        probe = probe_factory(clock)
    except ProbeNotFound as exc:
        print(f"rfa probe: probe not reachable: {exc}", file=sys.stderr)
        return EXIT_UNREACHABLE
    except ProbeError as exc:
        print(f"rfa probe: probe failed to open: {exc}", file=sys.stderr)
        return EXIT_UNREACHABLE
    try:
        if args.probe_command == "info":
            return _info(probe, args.json, out)
        try:
            _apply_settings(probe, args)
        except ValueError as exc:
            print(f"rfa probe: bad setting: {exc}", file=sys.stderr)
            return EXIT_USAGE
        if args.probe_command == "stream":
            return _stream(probe, clock, args.seconds, args.json, out)
        return _snapshot(probe, clock, args.file, args.json, out)
    except ProbeError as exc:
        print(f"rfa probe: probe error: {exc}", file=sys.stderr)
        return EXIT_FAULT
    finally:
        probe.close()


def _apply_settings(probe: UltrasoundProbe, args: argparse.Namespace) -> None:
    if args.depth_mm is not None:
        probe.set_depth_mm(args.depth_mm)
    if args.gain_db is not None:
        probe.set_gain_db(args.gain_db)
    if args.frequency_khz is not None:
        probe.set_frequency_khz(args.frequency_khz)


def _info(probe: UltrasoundProbe, as_json: bool, out: TextIO) -> int:
    info, status = probe.info, probe.read_status()
    report = {
        "model": info.model,
        "serial": info.serial,
        "element_count": info.element_count,
        "centre_frequency_khz": info.centre_frequency_khz,
        "geometry": info.geometry.name.lower(),
        "pitch_or_radius_mm": info.pitch_or_radius_mm,
        "state": status.state.name.lower(),
        "face_temp_c": status.face_temp_c,
        "error_bits": status.error_bits,
    }
    if as_json:
        print(json.dumps(report), file=out)
    else:
        for key, value in report.items():
            print(f"{key:>22}: {value}", file=out)
    return EXIT_OK


class _Imaging:
    """B-mode and tip detection for the frames the bench commands show."""

    def __init__(self, probe: UltrasoundProbe) -> None:
        self.probe = probe
        self.pipeline = BModePipeline()
        self.pipeline.warm_up()
        self.detector = TipDetector()
        self.detector.warm_up()

    def process(self, frame: ProbeFrame) -> tuple[DisplayImage, TipEstimate]:
        geometry = ScanGeometry.from_info(
            self.probe.info, frame.lines, frame.samples_per_line, frame.depth_mm
        )
        transmit_khz = self.probe.frequency_khz or self.probe.info.centre_frequency_khz
        beam = self.pipeline.beam_image(frame.samples, frame.format, geometry, transmit_khz)
        return self.pipeline.display(beam), self.detector.detect(beam)


def _stream(probe: UltrasoundProbe, clock: Clock, seconds: float, as_json: bool, out: TextIO) -> int:
    """Stream for ``seconds``, riding out what the cart rides out: a bulk stall (counted; the next poll clears the
    halt) and a disconnect (counted; the probe looked for once a second, and streaming again once it is back).
    A probe still gone at the end is a failure (exit 1)."""
    imaging = _Imaging(probe)
    probe.unfreeze()
    start = clock.now()
    next_report = start + 1.0
    next_reconnect = start
    frames = 0
    tip: TipEstimate | None = None
    while clock.now() - start < seconds:
        try:
            if probe.connected:
                for frame in probe.poll():
                    frames += 1
                    _, tip = imaging.process(frame)
            elif clock.now() >= next_reconnect:
                next_reconnect = clock.now() + RECONNECT_PERIOD_S
                probe.reconnect()
        except ProbeStalled:
            pass  # counted by the driver, whose next poll clears the halt
        except (ProbeDisconnected, ProbeNotFound):
            pass  # counted by the driver (a disconnect) or still absent: looked for again in a second
        now = clock.now()
        if now >= next_report and not as_json:
            where = _tip_text(tip) if probe.connected else "probe disconnected: looking for it once a second"
            print(f"t={now - start:6.2f} s  frames={frames}  {_counters(probe)}  {where}", file=out)
            next_report += 1.0
        clock.sleep_until(now + POLL_PERIOD_S)
    elapsed = clock.now() - start
    if not probe.connected:
        print(f"rfa probe: the probe disconnected and was not found again within the {seconds:g} s stream "
              f"({frames} frames, {_counters(probe)})", file=sys.stderr)
        return EXIT_FAULT
    status = probe.read_status()
    probe.freeze()
    summary: dict[str, object] = {
        "frames": frames,
        "seconds": round(elapsed, 3),
        "frames_per_s": round(frames / elapsed, 2) if elapsed > 0 else 0.0,
        **probe.counters(),
        "face_temp_c": status.face_temp_c,
        "tip": None
        if tip is None
        else {"lateral_mm": tip.lateral_mm, "depth_mm": tip.depth_mm, "confidence": tip.confidence},
    }
    if as_json:
        print(json.dumps(summary), file=out)
    else:
        print(
            f"{frames} frames in {elapsed:.2f} s ({summary['frames_per_s']} fps), {_counters(probe)}, "
            f"face {status.face_temp_c:.1f} °C",
            file=out,
        )
    return EXIT_OK


def _snapshot(probe: UltrasoundProbe, clock: Clock, path: Path, as_json: bool, out: TextIO) -> int:
    imaging = _Imaging(probe)
    probe.unfreeze()
    frames: list[ProbeFrame] = []
    while not frames:  # ends: poll raises ProbeTimeout once no frame came for the frame timeout
        frames = probe.poll()
        clock.sleep_until(clock.now() + POLL_PERIOD_S)
    probe.freeze()
    display, tip = imaging.process(frames[-1])
    try:
        path.write_bytes(png_gray(display.pixels))
    except OSError as exc:
        print(f"rfa probe snapshot: cannot write {path}: {exc}", file=sys.stderr)
        return EXIT_USAGE
    report = {
        "file": str(path),
        "frame_number": frames[-1].frame_number,
        "rows": int(display.pixels.shape[0]),
        "cols": int(display.pixels.shape[1]),
        "mm_per_pixel": display.mm_per_pixel,
        "tip": _tip_text(tip),
    }
    print(
        json.dumps(report)
        if as_json
        else f"wrote {path} ({report['cols']}×{report['rows']} px, "
        f"{display.mm_per_pixel:.3f} mm/px), {_tip_text(tip)}",
        file=out,
    )
    return EXIT_OK


def _counters(probe: UltrasoundProbe) -> str:
    stats = probe.stats
    return (f"dropped={stats.dropped_frames} corrupt={stats.corrupt_frames} stalls={probe.stall_count} "
            f"disconnects={probe.disconnect_count}")


def _tip_text(tip: TipEstimate | None) -> str:
    if tip is None or tip.confidence == 0.0:
        return "tip: not seen"
    return f"tip: x={tip.lateral_mm:+.1f} mm z={tip.depth_mm:.1f} mm (confidence {tip.confidence:.2f})"


def png_gray(pixels: npt.NDArray[np.uint8]) -> bytes:
    """An 8-bit greyscale PNG, written with the standard library so the bench needs no plotting package."""
    rows, cols = pixels.shape

    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))

    raw = np.zeros((rows, cols + 1), dtype=np.uint8)  # each row starts with filter type 0 (none)
    raw[:, 1:] = pixels
    header = struct.pack(">IIBBBBB", cols, rows, 8, 0, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(raw.tobytes()))
        + chunk(b"IEND", b"")
    )
