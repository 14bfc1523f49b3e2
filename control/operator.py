"""The person at the cart, as the procedure sees them: confirmations, patient responses, acknowledgements.

A question is asked (:meth:`Operator.ask`) and then polled (:meth:`Operator.answer`) once per tick, so the
10 ms loop keeps running while a person thinks: interlocks are evaluated, the watchdog is kicked and the
stimulation being asked about goes on. :class:`ScriptedOperator` answers at once from the plan (``--yes``,
HIL, tests); :class:`ConsoleOperator` reads the terminal on its own thread. The session records each
answer and who gave it.
"""

from __future__ import annotations

import abc
import queue
import sys
import threading
from dataclasses import dataclass, field
from typing import Final, Protocol, TextIO

from firmware_bridge.clock import Clock
from safety.gate import StimKind
from safety.plan import LesionPlan


@dataclass(frozen=True)
class Question:
    text: str
    kind: str
    """``confirm`` (arming), ``response`` (stimulation), ``acknowledge`` (alarms)."""
    stim: StimKind | None = None
    channel: int | None = None
    amplitude_mv: int | None = None
    alarms: tuple[str, ...] = field(default=())


class Operator(Protocol):
    name: str

    def ask(self, question: Question) -> None:
        """Put the question to the operator; never blocks."""
        ...

    def answer(self) -> bool | None:
        """The answer to the last question, or None while there is none yet; never blocks."""
        ...


class AnsweringOperator(abc.ABC):
    """An operator who answers at once: subclasses decide each kind of question."""

    name = "answering"

    def __init__(self) -> None:
        self._answer: bool | None = None

    def ask(self, question: Question) -> None:
        if question.kind == "confirm":
            self._answer = self.confirm(question.text)
        elif question.kind == "response":
            assert question.stim is not None and question.channel is not None and question.amplitude_mv is not None
            self._answer = self.responded(question.stim, question.channel, question.amplitude_mv)
        else:
            self._answer = self.acknowledge(list(question.alarms))

    def answer(self) -> bool | None:
        return self._answer

    @abc.abstractmethod
    def confirm(self, text: str) -> bool: ...

    @abc.abstractmethod
    def responded(self, kind: StimKind, channel: int, amplitude_mv: int) -> bool: ...

    @abc.abstractmethod
    def acknowledge(self, alarms: list[str]) -> bool: ...


class ScriptedOperator(AnsweringOperator):
    """Unattended: confirms, responds at the plan's scripted thresholds, never acknowledges (with no one
    present a fault ends the run with exit 1, ARCHITECTURE.md section 11).

    With ``reading_s`` (and the procedure's ``clock``) it declines an acknowledgement only after reading the
    alarm that long, as a person at the cart would: the procedure waits in ``fault`` meanwhile, its loop
    ticking, so what the cart does while someone reads an alarm can be judged (``rfa campaign``)."""

    name = "scripted (--yes)"

    def __init__(self, plan: LesionPlan, *, clock: Clock | None = None, reading_s: float = 0.0) -> None:
        super().__init__()
        scripted = plan.stimulation.scripted
        self._sensory_mv = scripted.sensory_threshold_mv if scripted else None
        self._motor_mv = scripted.motor_threshold_mv if scripted else None
        if reading_s and clock is None:
            raise ValueError("reading an alarm for a while needs the procedure's clock")
        self._clock = clock if reading_s else None
        self._reading_s = reading_s
        self._reading_until = 0.0

    def ask(self, question: Question) -> None:
        super().ask(question)
        if self._clock is not None and question.kind == "acknowledge":
            self._reading_until = self._clock.now() + self._reading_s

    def answer(self) -> bool | None:
        if self._clock is not None and self._clock.now() < self._reading_until:
            return None
        return super().answer()

    def confirm(self, text: str) -> bool:
        return True

    def responded(self, kind: StimKind, channel: int, amplitude_mv: int) -> bool:
        threshold = self._sensory_mv if kind is StimKind.SENSORY else self._motor_mv
        return threshold is not None and amplitude_mv >= threshold

    def acknowledge(self, alarms: list[str]) -> bool:
        return False


READ_AHEAD_LINES: Final = 16
"""Lines the console's reader thread takes ahead of the questions from piped input. Bounded, so that endless
input (``yes | rfa run``) waits in its pipe: read as fast as it came (300,000 lines in 0.2 s), it grew the
process to 2.8 GB in a 22 s procedure (0.19 GB bounded), on its way to being killed for memory mid-procedure, and
on a loaded machine it held the interpreter from the guidance thread, which read no image for 2.3 s.
A terminal is not bounded: a person cannot flood it, and every line typed there before a question must reach
the queue to be discarded (bounded, the 17th line of a paste would wait in the terminal and answer the next
question, arming included)."""


class ConsoleOperator:
    """Asks at the terminal; a reader thread turns typed lines into answers. End of input is "no", always
    the safe answer. At a terminal, lines typed before a question is asked are discarded, never taken as its
    answer (a stray key must not confirm arming); piped input (a HIL script) is taken in order, read at most
    :data:`READ_AHEAD_LINES` ahead."""

    name = "console"

    def __init__(self, inp: TextIO = sys.stdin, out: TextIO = sys.stdout) -> None:
        self._in = inp
        self._out = out
        self._discard_early = inp.isatty()
        self._lines: queue.Queue[str | None] = queue.Queue(maxsize=0 if self._discard_early else READ_AHEAD_LINES)
        self._reader: threading.Thread | None = None
        self._closed = False

    def _read(self) -> None:
        try:
            for line in self._in:
                self._lines.put(line)
        except (OSError, ValueError):  # the terminal went away: the same as end of input
            pass
        self._lines.put(None)

    def ask(self, question: Question) -> None:
        if self._reader is None:
            self._reader = threading.Thread(target=self._read, name="operator-console", daemon=True)
            self._reader.start()
        while self._discard_early and not self._closed:
            try:
                if self._lines.get_nowait() is None:
                    self._closed = True
            except queue.Empty:
                break
        if question.alarms:
            self._out.write("\nAlarms:\n" + "".join(f"  - {a}\n" for a in question.alarms))
        self._out.write(f"\n{question.text} [y/N] ")
        self._out.flush()

    def answer(self) -> bool | None:
        if self._closed:
            return False
        try:
            line = self._lines.get_nowait()
        except queue.Empty:
            return None
        if line is None:
            self._closed = True
            return False
        return line.strip().lower() in ("y", "yes")
