"""The driver against the simulated probe, through pyusb's own ``usb.core.find(backend=...)``."""

from __future__ import annotations

import errno
import itertools
from typing import Any

import pytest
import usb.core

from firmware_bridge.clock import SimClock
from firmware_bridge.errors import ProbeError
from firmware_bridge.probe import (
    FrameFormat,
    ProbeDisconnected,
    ProbeNotFound,
    ProbeRefused,
    ProbeStalled,
    ProbeState,
    ProbeTimeout,
    UltrasoundProbe,
)
from firmware_bridge.probe.wire import (
    HEADER_BYTES,
    PACKET_BYTES,
    PRODUCT_ID,
    VENDOR_ID,
    encode_frame,
    frame_header,
)
from sim.probe import SimProbe, SimProbeBackend, SimProbeConfig
from tests.probe.conftest import SMALL_RF, TICK_S, run_for


def test_pyusb_finds_the_simulated_probe_with_its_descriptors(sim_probe: SimProbe) -> None:
    device = usb.core.find(idVendor=VENDOR_ID, idProduct=PRODUCT_ID, backend=SimProbeBackend(sim_probe))
    assert device is not None
    endpoint = device.get_active_configuration()[(0, 0)][0]
    assert endpoint.bEndpointAddress == 0x81
    assert endpoint.wMaxPacketSize == 512
    assert device.serial_number == SimProbeConfig().serial


def test_other_ids_are_not_found(clock: SimClock, sim_probe: SimProbe) -> None:
    assert usb.core.find(idVendor=0x1209, idProduct=0x0002, backend=SimProbeBackend(sim_probe)) is None
    with pytest.raises(ProbeNotFound):
        UltrasoundProbe.open(clock, backend=SimProbeBackend())


def test_info_and_settings_round_trip(probe: UltrasoundProbe, sim_probe: SimProbe) -> None:
    assert probe.info == sim_probe.info()
    probe.set_depth_mm(50)
    probe.set_gain_db(37.26)
    probe.set_frequency_khz(4500)
    assert (sim_probe.depth_mm, sim_probe.gain_tenth_db, sim_probe.frequency_10khz) == (50, 373, 450)
    assert (probe.depth_mm, probe.gain_db, probe.frequency_khz) == (50, 37.3, 4500)
    assert probe.read_status().state is ProbeState.IDLE
    probe.unfreeze()
    assert probe.read_status().state is ProbeState.STREAMING
    probe.freeze()
    assert probe.read_status().state is ProbeState.IDLE


@pytest.mark.parametrize(
    ("setter", "value"),
    [
        ("set_depth_mm", 19),
        ("set_depth_mm", 121),
        ("set_gain_db", -0.1),
        ("set_gain_db", 90.1),
        ("set_gain_db", float("nan")),
        ("set_frequency_khz", 5005),
        ("set_frequency_khz", 0),
    ],
)
def test_bad_values_are_refused_before_sending(
    probe: UltrasoundProbe, sim_probe: SimProbe, setter: str, value: float
) -> None:
    sim_probe.refuse_next_control_requests(1)  # a request that reached the probe would be refused instead
    with pytest.raises(ValueError):
        getattr(probe, setter)(value)
    with pytest.raises(ProbeRefused):
        probe.set_depth_mm(40)


def test_a_refused_request_is_a_clear_probe_error(probe: UltrasoundProbe, sim_probe: SimProbe) -> None:
    with pytest.raises(ProbeRefused, match="SET_DEPTH"):
        probe.set_depth_mm(120)  # the small RF frames would alias at 120 mm: the probe stalls it
    assert sim_probe.depth_mm == 40
    assert probe.depth_mm is None


def test_frames_arrive_at_the_configured_rate(clock: SimClock, probe: UltrasoundProbe) -> None:
    probe.unfreeze()
    frames = []
    while clock.now() < 4.0 - 1e-9:
        clock.advance(TICK_S)
        frames.extend(probe.poll())
    assert len(frames) == 4 * 25 + 1  # one at unfreeze, then one per 40 ms
    stamps = [f.timestamp_us for f in frames]
    assert {b - a for a, b in itertools.pairwise(stamps)} == {40_000}
    assert [f.frame_number for f in frames] == list(range(len(frames)))
    frame = frames[-1]
    assert (frame.lines, frame.samples_per_line, frame.depth_mm, frame.format) == (
        32,
        1024,
        40,
        FrameFormat.RF_I16,
    )
    assert probe.last_frame_at_s == pytest.approx(4.0)


def test_injected_corruption_and_drops_are_counted_and_skipped(
    clock: SimClock, probe: UltrasoundProbe, sim_probe: SimProbe
) -> None:
    probe.unfreeze()
    numbers = run_for(clock, probe, 0.2)
    sim_probe.corrupt_next_frames(6)
    numbers += run_for(clock, probe, 0.5)
    sim_probe.drop_next_frames(4)
    numbers += run_for(clock, probe, 0.5)
    numbers += run_for(clock, probe, 0.3)
    # A frame whose magic was hit cannot be told from a dropped one; every other damage is "corrupt".
    assert probe.stats.corrupt_frames + probe.stats.dropped_frames == 6 + 4
    assert probe.stats.corrupt_frames >= 3
    assert numbers == sorted(numbers)
    assert len(numbers) == sim_probe.frames_acquired - 6 - 4


def test_random_faults_are_all_accounted_for(clock: SimClock, sim_probe: SimProbe) -> None:
    sim_probe.drop_probability = 0.1
    sim_probe.corrupt_probability = 0.1
    probe = UltrasoundProbe.open(clock, backend=SimProbeBackend(sim_probe))
    probe.unfreeze()
    run_for(clock, probe, 8.0)
    stats = probe.stats
    assert stats.frames_ok + stats.corrupt_frames + stats.dropped_frames == sim_probe.frames_acquired
    assert stats.corrupt_frames > 5 and stats.dropped_frames > 5


def test_a_stall_is_a_probe_error_and_clears(
    clock: SimClock, probe: UltrasoundProbe, sim_probe: SimProbe
) -> None:
    probe.unfreeze()
    run_for(clock, probe, 0.1)
    sim_probe.stall_bulk()
    clock.advance(TICK_S)
    with pytest.raises(ProbeStalled):
        probe.poll()
    assert run_for(clock, probe, 0.2)  # the next poll cleared the halt


def test_a_silent_probe_times_out_on_the_clock(
    clock: SimClock, probe: UltrasoundProbe, sim_probe: SimProbe
) -> None:
    probe.unfreeze()
    run_for(clock, probe, 0.1)
    sim_probe.set_silent(True)
    run_for(clock, probe, 0.45)  # within the 0.5 s frame timeout: no error yet
    clock.advance(0.1)
    with pytest.raises(ProbeTimeout):
        probe.poll()


def test_unplugging_is_a_probe_error_and_reconnecting_resumes(
    clock: SimClock, probe: UltrasoundProbe, sim_probe: SimProbe
) -> None:
    probe.set_depth_mm(30)
    probe.unfreeze()
    run_for(clock, probe, 0.2)
    sim_probe.unplug()
    clock.advance(TICK_S)
    with pytest.raises(ProbeDisconnected):
        probe.poll()
    with pytest.raises(ProbeDisconnected):
        probe.read_status()
    with pytest.raises(ProbeNotFound):
        probe.reconnect()
    sim_probe.plug_in()
    assert sim_probe.depth_mm == 40 and not sim_probe.streaming  # a fresh probe
    probe.reconnect()
    assert sim_probe.depth_mm == 30 and sim_probe.streaming
    frames = []
    while clock.now() < 1.0:
        clock.advance(TICK_S)
        frames.extend(probe.poll())
    assert len(frames) > 10
    assert all(f.depth_mm == 30 for f in frames)
    assert probe.stats.dropped_frames == 0  # the numbering restart is not a drop


@pytest.mark.parametrize("fault", ["unplug", "stall", "silent", "refuse"])
def test_every_fault_ends_in_a_probe_error_not_a_hang(
    clock: SimClock, probe: UltrasoundProbe, sim_probe: SimProbe, fault: str
) -> None:
    probe.unfreeze()
    {
        "unplug": sim_probe.unplug,
        "stall": sim_probe.stall_bulk,
        "silent": lambda: sim_probe.set_silent(True),
        "refuse": lambda: sim_probe.refuse_next_control_requests(100),
    }[fault]()
    with pytest.raises(ProbeError):
        for _ in range(100):  # 1 s of ticks, twice the frame timeout
            clock.advance(TICK_S)
            probe.poll()
            probe.read_status()


def test_face_heating_shows_in_status(clock: SimClock, probe: UltrasoundProbe, sim_probe: SimProbe) -> None:
    start = probe.read_status().face_temp_c
    sim_probe.heat_face(0.5)
    clock.advance(30.0)
    status = probe.read_status()
    assert status.face_temp_c == pytest.approx(start + 15.0, abs=0.05)
    assert status.error_bits & 0x01


def test_a_slow_host_loses_frames_as_drops(clock: SimClock, probe: UltrasoundProbe) -> None:
    probe.unfreeze()
    run_for(clock, probe, 0.1)
    clock.advance(0.4)  # the host misses 10 frames; the probe buffers 4
    frames = probe.poll()
    assert len(frames) == 4
    assert probe.stats.dropped_frames == 6


def test_envelope_frames_decode_as_bytes(clock: SimClock) -> None:
    sim = SimProbe(
        clock, SimProbeConfig(lines=16, samples_per_line=128, frame_format=FrameFormat.ENVELOPE_U8)
    )
    probe = UltrasoundProbe.open(clock, backend=SimProbeBackend(sim))
    probe.unfreeze()
    clock.advance(TICK_S)
    (frame,) = probe.poll()
    assert frame.format is FrameFormat.ENVELOPE_U8
    assert frame.samples.dtype.itemsize == 1 and frame.samples.shape == (16, 128)


class _UnclosableBackend(SimProbeBackend):
    """A backend whose close fails, as the remote one's did once its service had gone."""

    def __init__(self, probe: SimProbe) -> None:
        super().__init__(probe)
        self.closes = 0

    def close_device(self, dev_handle: Any) -> None:
        self.closes += 1
        raise usb.core.USBError("No such device", -4, errno.ENODEV)


def test_the_driver_lets_go_of_a_device_once_even_where_its_close_fails(clock: SimClock, sim_probe: SimProbe) -> None:
    """The device is disposed of for good: pyusb's finalizer does not try the failed close again (at exit)."""
    backend = _UnclosableBackend(sim_probe)
    found: list[Any] = []

    def locate() -> Any:
        found.append(usb.core.find(idVendor=VENDOR_ID, idProduct=PRODUCT_ID, backend=backend))
        return found[-1]

    probe = UltrasoundProbe(locate, clock)
    probe.close()
    probe.close()
    found[-1].finalize()  # what the interpreter does at exit
    assert backend.closes == 1


def test_the_simulated_probe_packs_header_and_data_back_to_back(clock: SimClock, sim_probe: SimProbe) -> None:
    """As docs/contract.md says: one frame is one transfer, header first and data straight after it, so the first
    512-byte packet carries the header and the first 480 data bytes and only the frame's last packet is short."""
    sim_probe.unfreeze()
    clock.advance(0.05)
    frame_bytes = HEADER_BYTES + SMALL_RF.lines * SMALL_RF.samples_per_line * 2
    transfer = sim_probe.read_bulk(4 * frame_bytes)
    assert transfer is not None and len(transfer) == frame_bytes and transfer[:4] == b"USF1"
    packets = [len(chunk) for chunk in iter(lambda: sim_probe.read_bulk(PACKET_BYTES), None)]
    assert packets == [PACKET_BYTES] * (frame_bytes // PACKET_BYTES) + [frame_bytes % PACKET_BYTES]


@pytest.mark.parametrize("packing", ["header_alone", "back_to_back"])
def test_the_driver_reads_frames_however_the_probe_packs_them(
    clock: SimClock, sim_probe: SimProbe, packing: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The contract says "a 32-byte header ... then the data, in 512-byte packets", not where the transfers break: a
    header alone in a short packet, or header and data back to back in one transfer (here exactly one 512-byte
    packet, as a transfer a zero-length packet ends would be), read the same."""
    frames = [encode_frame(frame_header(n, 1000 * n, 2, 240, 40, FrameFormat.ENVELOPE_U8, bytes([n]) * 480),
                           bytes([n]) * 480) for n in range(3)]
    transfers: list[bytes] = []
    for wire in frames:
        if packing == "header_alone":
            transfers += [wire[:HEADER_BYTES], wire[HEADER_BYTES:]]
        else:
            transfers.append(wire)
    monkeypatch.setattr(sim_probe, "read_bulk", lambda max_bytes: transfers.pop(0) if transfers else None)
    probe = UltrasoundProbe.open(clock, backend=SimProbeBackend(sim_probe))
    received = [(frame.frame_number, frame.samples.shape, int(frame.samples[0, 0])) for frame in probe.poll()]
    assert received == [(n, (2, 240), n) for n in range(3)]
    assert probe.counters()["corrupt_frames"] == probe.counters()["dropped_frames"] == 0
