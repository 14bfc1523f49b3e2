"""The person at the cart, as the procedure sees them: confirmations, patient responses, acknowledgements.

:class:`ScriptedOperator` answers for unattended runs (``--yes``, HIL, tests) from the plan's scripted
responses; :class:`ConsoleOperator` asks at the terminal. Both are recorded by the session, so a record
shows who (or what script) confirmed each step.
"""

from __future__ import annotations

import sys
from typing import Protocol, TextIO

from safety.gate import StimKind
from safety.plan import LesionPlan


class Operator(Protocol):
    name: str

    def confirm(self, question: str) -> bool:
        """A yes/no confirmation (arming, starting RF)."""
        ...

    def responded(self, kind: StimKind, channel: int, amplitude_mv: int) -> bool:
        """Does the patient report a sensory response / show a motor twitch at this amplitude?"""
        ...

    def acknowledge(self, alarms: list[str]) -> bool:
        """Acknowledge the listed alarms (False: leave the cart in fault for now)."""
        ...


class ScriptedOperator:
    """Unattended: confirms everything, responds at the plan's scripted thresholds, never acknowledges
    (with no one present a fault ends the run with exit 1, ARCHITECTURE.md section 11)."""

    name = "scripted (--yes)"

    def __init__(self, plan: LesionPlan) -> None:
        scripted = plan.stimulation.scripted
        self._sensory_mv = scripted.sensory_threshold_mv if scripted else None
        self._motor_mv = scripted.motor_threshold_mv if scripted else None

    def confirm(self, question: str) -> bool:
        return True

    def responded(self, kind: StimKind, channel: int, amplitude_mv: int) -> bool:
        threshold = self._sensory_mv if kind is StimKind.SENSORY else self._motor_mv
        return threshold is not None and amplitude_mv >= threshold

    def acknowledge(self, alarms: list[str]) -> bool:
        return False


class ConsoleOperator:
    """Asks at the terminal. End of input counts as "no", which is always the safe answer."""

    name = "console"

    def __init__(self, inp: TextIO = sys.stdin, out: TextIO = sys.stdout) -> None:
        self._in = inp
        self._out = out

    def _ask(self, question: str) -> bool:
        self._out.write(f"{question} [y/N] ")
        self._out.flush()
        answer = self._in.readline()
        return answer.strip().lower() in ("y", "yes")

    def confirm(self, question: str) -> bool:
        return self._ask(question)

    def responded(self, kind: StimKind, channel: int, amplitude_mv: int) -> bool:
        what = "sensory response (tingling, concordant)" if kind is StimKind.SENSORY else "motor twitch"
        return self._ask(f"ch{channel} {kind.value} at {amplitude_mv / 1000:.2f} V: {what}?")

    def acknowledge(self, alarms: list[str]) -> bool:
        self._out.write("Alarms:\n" + "".join(f"  - {a}\n" for a in alarms))
        return self._ask("Acknowledge (the causes must have cleared)?")
