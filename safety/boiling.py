"""The boiling detector: gas at the electrode tip seen as echo brightening, independent of the thermocouple.

When tissue next to the tip reaches ~100 °C it boils; the gas is strongly echogenic, so a bright cloud
grows around the tip within a fraction of a second. The thermocouple sits inside the electrode and lags
(and can fail), so this detector watches the image instead and reports boiling per channel; the
boiling interlock stops RF on that channel. It lives in ``safety/`` so that ``control/`` can neither
suppress nor retune it.

Per channel, from the start of its lesion:

- the region of interest is a disk of ``roi_radius_mm`` around the tip position given at the start
  (fixed for the lesion: the needle does not move while RF flows, and gas would disturb a re-detection);
- its brightness is measured *relative to the rest of the field* (mean dB in the disk minus mean dB
  outside a wider exclusion disk), so a gain change or a global brightness drift moves both alike;
- the first ``baseline_s`` of frames give the baseline (at least ``baseline_min_frames``);
- boiling is declared when the relative brightness exceeds the baseline by ``rise_db`` in
  ``sustain_frames`` consecutive frames, and stays declared (latched) until the lesion ends.

A tip whose disk falls outside the imaged field (the depth was changed under it, say) cannot be watched:
:attr:`BoilingDetector.unwatchable_channels` names such channels, and the guidance reports the monitor blind
(``ImagingStatus.boiling_blind_since``), which the imaging-lost interlock treats as frames that stopped.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import Enum, auto
from typing import Final, Protocol

import numpy as np
import numpy.typing as npt

MIN_ROI_PIXELS: Final = 50
"""Fewer valid pixels in the disk than this and the mean is too noisy to watch."""


class EchoImage(Protocol):
    """A display image in millimetres; ``control.imaging.bmode.DisplayImage`` is one."""

    @property
    def pixels(self) -> npt.NDArray[np.uint8]: ...

    @property
    def valid(self) -> npt.NDArray[np.bool_]: ...

    @property
    def mm_per_pixel(self) -> float: ...

    @property
    def lateral_origin_mm(self) -> float: ...

    @property
    def depth_origin_mm(self) -> float: ...

    @property
    def dynamic_range_db(self) -> float: ...


@dataclass(frozen=True, slots=True)
class BoilingSettings:
    roi_radius_mm: float = 4.0
    exclusion_radius_mm: float = 8.0
    """The reference region is the field outside this disk (gas and its shadow stay out of it)."""
    baseline_s: float = 2.0
    baseline_min_frames: int = 10
    rise_db: float = 3.0
    sustain_frames: int = 3


class WatchState(Enum):
    BASELINE = auto()
    WATCHING = auto()
    BOILING = auto()
    UNWATCHABLE = auto()
    """The tip's disk is outside the imaged field (or the image changed geometry under it)."""


@dataclass
class _Channel:
    tip_lateral_mm: float
    tip_depth_mm: float
    started_at_s: float
    state: WatchState = WatchState.BASELINE
    baseline_samples: list[float] = field(default_factory=list)
    baseline_db: float | None = None
    above_count: int = 0
    last_relative_db: float | None = None


@dataclass(frozen=True, slots=True)
class _Masks:
    roi: npt.NDArray[np.bool_]
    reference: npt.NDArray[np.bool_]


class BoilingDetector:
    """Feed every display frame to :meth:`update`; it returns the channels that boil."""

    def __init__(self, settings: BoilingSettings = BoilingSettings()) -> None:
        self.settings = settings
        self._channels: dict[int, _Channel] = {}
        self._masks: dict[tuple[float, ...], _Masks] = {}

    def start(self, channel: int, tip_lateral_mm: float, tip_depth_mm: float, now_s: float) -> None:
        """RF starts on ``channel`` with its tip here: begin the baseline (a restart forgets the last)."""
        self._channels[channel] = _Channel(tip_lateral_mm, tip_depth_mm, now_s)
        self._masks.clear()

    def stop(self, channel: int) -> None:
        """The lesion on ``channel`` ended: forget it (and its latched boiling)."""
        self._channels.pop(channel, None)

    def state(self, channel: int) -> WatchState | None:
        watched = self._channels.get(channel)
        return None if watched is None else watched.state

    def relative_brightness_db(self, channel: int) -> float | None:
        """The last measured disk-over-reference brightness, for the record and the display."""
        watched = self._channels.get(channel)
        return None if watched is None else watched.last_relative_db

    @property
    def boiling_channels(self) -> frozenset[int]:
        return frozenset(ch for ch, watched in self._channels.items() if watched.state is WatchState.BOILING)

    @property
    def unwatchable_channels(self) -> frozenset[int]:
        """Watched channels whose disk the last image did not cover: boiling there would go unseen."""
        return frozenset(ch for ch, watched in self._channels.items() if watched.state is WatchState.UNWATCHABLE)

    def update(self, image: EchoImage, now_s: float) -> frozenset[int]:
        pixels_db = image.pixels.astype(np.float32) * np.float32(image.dynamic_range_db / 255.0)
        valid = image.valid
        for watched in self._channels.values():
            if watched.state is WatchState.BOILING:
                continue
            masks = self._masks_for(image, watched.tip_lateral_mm, watched.tip_depth_mm)
            roi, reference = masks.roi & valid, masks.reference & valid
            if np.count_nonzero(roi) < MIN_ROI_PIXELS or np.count_nonzero(reference) < MIN_ROI_PIXELS:
                watched.state = WatchState.UNWATCHABLE
                continue
            relative = float(np.mean(pixels_db[roi]) - np.mean(pixels_db[reference]))
            watched.last_relative_db = relative
            self._judge(watched, relative, now_s)
        return self.boiling_channels

    def _judge(self, watched: _Channel, relative_db: float, now_s: float) -> None:
        s = self.settings
        if watched.baseline_db is None:
            watched.state = WatchState.BASELINE
            watched.baseline_samples.append(relative_db)
            done = now_s - watched.started_at_s >= s.baseline_s
            if done and len(watched.baseline_samples) >= s.baseline_min_frames:
                watched.baseline_db = float(np.mean(watched.baseline_samples))
                watched.state = WatchState.WATCHING
            return
        watched.state = WatchState.WATCHING
        if relative_db - watched.baseline_db > s.rise_db:
            watched.above_count += 1
            if watched.above_count >= s.sustain_frames:
                watched.state = WatchState.BOILING
        else:
            watched.above_count = 0

    def _masks_for(self, image: EchoImage, tip_lateral_mm: float, tip_depth_mm: float) -> _Masks:
        rows, cols = image.pixels.shape
        key = (
            rows,
            cols,
            image.mm_per_pixel,
            image.lateral_origin_mm,
            image.depth_origin_mm,
            tip_lateral_mm,
            tip_depth_mm,
        )
        cached = self._masks.get(key)
        if cached is not None:
            return cached
        x = image.lateral_origin_mm + np.arange(cols) * image.mm_per_pixel
        z = image.depth_origin_mm + np.arange(rows) * image.mm_per_pixel
        distance2 = (x[None, :] - tip_lateral_mm) ** 2 + (z[:, None] - tip_depth_mm) ** 2
        masks = _Masks(
            roi=distance2 <= self.settings.roi_radius_mm**2,
            reference=distance2 > self.settings.exclusion_radius_mm**2,
        )
        self._masks[key] = masks
        return masks
