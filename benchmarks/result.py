"""One benchmark figure, with its target, so ``rfa bench`` can print a table and a verdict."""

from __future__ import annotations

from dataclasses import asdict, dataclass


@dataclass(frozen=True)
class BenchResult:
    bench: str
    """Which benchmark, e.g. ``parser``."""
    metric: str
    """What was measured, e.g. ``frames_per_s_ratio_vs_pymavlink``."""
    value: float
    unit: str
    target: str = ""
    """The target as text (``>= 10``), empty when the figure is context for another one."""
    met: bool | None = None
    """Whether the target was met; ``None`` for context figures."""
    detail: str = ""

    def as_dict(self) -> dict[str, object]:
        return asdict(self)
