"""Byte-level faults on the generator link: corrupted, dropped and delayed bytes, and an unplugged cable.

:class:`FaultyTransport` wraps the simulator's end of any transport, so the host's parser and driver meet
the damage exactly as a noisy cable would deliver it. Randomness comes from a seeded generator so a
failing run can be replayed, and every byte it touches is counted, so tests can check that the host's
counters add up to what was injected.
"""

from __future__ import annotations

import math
import tomllib
from collections import deque
from dataclasses import dataclass, fields
from pathlib import Path

import numpy as np

from firmware_bridge.clock import Clock
from firmware_bridge.transport import Transport
from sim.fault_script import toml_number


@dataclass(frozen=True, slots=True)
class LinkFaultConfig:
    """Fault rates per byte, a fixed delay, and scripted unplug windows ``(at_s, duration_s)``."""

    corrupt_byte_prob: float = 0.0
    drop_byte_prob: float = 0.0
    delay_s: float = 0.0
    unplug: tuple[tuple[float, float], ...] = ()

    def __post_init__(self) -> None:
        for name in ("corrupt_byte_prob", "drop_byte_prob"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise ValueError(f"{name} must be within 0..1, not {getattr(self, name)}")
        if not (math.isfinite(self.delay_s) and self.delay_s >= 0) or any(
                not (math.isfinite(at) and math.isfinite(length) and at >= 0 and length > 0)
                for at, length in self.unplug):
            raise ValueError("delay_s must be finite and >= 0, and unplug windows need finite at_s >= 0 and "
                             "duration_s > 0")

    @property
    def any(self) -> bool:
        return bool(self.corrupt_byte_prob or self.drop_byte_prob or self.delay_s or self.unplug)


@dataclass
class LinkFaultCounters:
    bytes_corrupted: int = 0
    bytes_dropped: int = 0
    bytes_delayed: int = 0
    bytes_lost_unplugged: int = 0

    def as_dict(self) -> dict[str, int]:
        return {f.name: getattr(self, f.name) for f in fields(self)}


class FaultyTransport:
    """A transport wrapper that damages bytes in both directions (see the module docstring): what it writes to
    ``inner`` and what it reads from it are corrupted, dropped, delayed by ``delay_s`` and lost while unplugged
    alike, so wrapped around the simulator's end (``rfa sim``) or the host's (``rfa run --faults``) a delay
    slows commands as well as telemetry, as a slow cable would (the host's ACK deadlines see the round trip).

    ``origin`` is the moment unplug windows count from (the generator's start, by default now).
    """

    def __init__(self, inner: Transport, clock: Clock, config: LinkFaultConfig, *, seed: int = 0,
                 origin: float | None = None) -> None:
        self.inner = inner
        self.url = inner.url
        self.clock = clock
        self.config = config
        self.counters = LinkFaultCounters()
        self._rng = np.random.default_rng(seed)
        self._origin = clock.now() if origin is None else origin
        self._manually_unplugged = False
        self._delayed: deque[tuple[float, bytes]] = deque()
        """Written, on their way to ``inner``: (when they arrive, bytes)."""
        self._arriving: deque[tuple[float, bytes]] = deque()
        """Read from ``inner``, on their way to the reader: (when they arrive, bytes)."""

    # -- scripted and manual unplugging --------------------------------------------------------------
    def unplug(self) -> None:
        """Pull the cable: every byte in either direction is lost until :meth:`replug`."""
        self._manually_unplugged = True

    def replug(self) -> None:
        self._manually_unplugged = False

    @property
    def unplugged(self) -> bool:
        if self._manually_unplugged:
            return True
        t = self.clock.now() - self._origin
        return any(at <= t < at + length for at, length in self.config.unplug)

    # -- Transport -----------------------------------------------------------------------------------
    def read(self, max_bytes: int = 65536) -> bytes:
        self._release_delayed()
        if self.config.delay_s <= 0:
            return self._received(self.inner.read(max_bytes))
        # All that has come in (not only max_bytes of it), so that each byte's delay runs from when it came.
        data = self._received(self.inner.read())
        if data:
            self.counters.bytes_delayed += len(data)
            self._arriving.append((self.clock.now() + self.config.delay_s, data))
        return self._arrived(max_bytes)

    def write(self, data: bytes) -> None:
        if self.unplugged:
            self.counters.bytes_lost_unplugged += len(data)
            return
        data = self._damage(data)
        if self.config.delay_s > 0:
            self.counters.bytes_delayed += len(data)
            self._delayed.append((self.clock.now() + self.config.delay_s, data))
            self._release_delayed()
        elif data:
            self.inner.write(data)

    def close(self) -> None:
        self.inner.close()

    # -- damage --------------------------------------------------------------------------------------
    def _received(self, data: bytes) -> bytes:
        """What the cable passes on of ``data`` read from ``inner``: nothing while unplugged, else damaged."""
        if self.unplugged:
            self.counters.bytes_lost_unplugged += len(data)
            return b""
        return self._damage(data)

    def _damage(self, data: bytes) -> bytes:
        cfg = self.config
        if not data or not (cfg.corrupt_byte_prob or cfg.drop_byte_prob):
            return data
        buf = np.frombuffer(data, dtype=np.uint8).copy()
        if cfg.corrupt_byte_prob:
            hit = self._rng.random(buf.size) < cfg.corrupt_byte_prob
            # a non-zero xor mask, so every hit byte really changes
            buf[hit] ^= self._rng.integers(1, 256, int(hit.sum()), dtype=np.uint8)
            self.counters.bytes_corrupted += int(hit.sum())
        if cfg.drop_byte_prob:
            keep = self._rng.random(buf.size) >= cfg.drop_byte_prob
            self.counters.bytes_dropped += int(buf.size - keep.sum())
            buf = buf[keep]
        return buf.tobytes()

    def _arrived(self, max_bytes: int) -> bytes:
        """The bytes read from ``inner`` whose delay is over, in order, up to ``max_bytes`` (the rest wait)."""
        now = self.clock.now()
        out = bytearray()
        while self._arriving and self._arriving[0][0] <= now and len(out) < max_bytes:
            due, data = self._arriving.popleft()
            room = max_bytes - len(out)
            if len(data) > room:
                self._arriving.appendleft((due, data[room:]))
                data = data[:room]
            out += data
        return bytes(out)

    def _release_delayed(self) -> None:
        now = self.clock.now()
        while self._delayed and self._delayed[0][0] <= now:
            _, data = self._delayed.popleft()
            if data:
                self.inner.write(data)


def load_link_faults(path: Path) -> LinkFaultConfig:
    """The ``[link]`` table of a fault script (keys as :class:`LinkFaultConfig`), or no faults."""
    try:
        table = tomllib.loads(path.read_text()).get("link", {})
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise ValueError(f"cannot read fault script {path}: {exc}") from exc
    if not isinstance(table, dict):
        raise ValueError(f"{path}: 'link' must be a [link] table")
    unknown = set(table) - {"corrupt_byte_prob", "drop_byte_prob", "delay_s", "unplug"}
    if unknown:
        raise ValueError(f"{path}: [link]: unknown field(s) {sorted(unknown)}")
    try:
        return LinkFaultConfig(
            corrupt_byte_prob=toml_number(table.get("corrupt_byte_prob", 0.0), "corrupt_byte_prob"),
            drop_byte_prob=toml_number(table.get("drop_byte_prob", 0.0), "drop_byte_prob"),
            delay_s=toml_number(table.get("delay_s", 0.0), "delay_s"),
            unplug=_unplugs(table.get("unplug", [])),
        )
    except (TypeError, ValueError) as exc:
        raise ValueError(f"{path}: [link]: {exc}") from exc


def _unplugs(value: object) -> tuple[tuple[float, float], ...]:
    """``unplug = [[at_s, length_s], ...]``."""
    if not isinstance(value, list) or not all(isinstance(pair, list) and len(pair) == 2 for pair in value):
        raise ValueError(f"unplug: {value!r} is not a list of [at_s, length_s] pairs")
    return tuple((toml_number(at, "unplug at_s"), toml_number(length, "unplug length_s")) for at, length in value)
