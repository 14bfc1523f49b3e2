"""Operators answer without blocking the loop; the session keeps ticking while a person thinks."""

from __future__ import annotations

import io
import os
import time
from collections.abc import Iterator
from pathlib import Path
from typing import TextIO, cast

import pytest

from control.operator import READ_AHEAD_LINES, ConsoleOperator, Question, ScriptedOperator
from firmware_bridge.clock import SimClock
from safety.gate import StimKind
from safety.plan import default_genicular_plan
from tests.control.harness import build_cart
from tests.control.test_session import plan_without_imaging


def wait_answer(op: ConsoleOperator, timeout_s: float = 5.0) -> bool | None:
    deadline = time.monotonic() + timeout_s
    while (answer := op.answer()) is None and time.monotonic() < deadline:
        time.sleep(0.005)
    return answer


def test_the_console_never_blocks_and_reads_yes_no_and_end_of_input() -> None:
    read_fd, write_fd = os.pipe()
    out = io.StringIO()
    with os.fdopen(read_fd) as inp, os.fdopen(write_fd, "w") as typed:
        op = ConsoleOperator(inp, out)
        op.ask(Question("Arm 3 lesions?", "confirm"))
        assert op.answer() is None, "no line typed yet: no answer, and no blocking"
        typed.write("y\n")
        typed.flush()
        assert wait_answer(op) is True
        op.ask(Question("Acknowledge?", "acknowledge", alarms=("over_temperature ch1: 96 °C",)))
        typed.write("no\n")
        typed.flush()
        assert wait_answer(op) is False
    op.ask(Question("Arm again?", "confirm"))
    assert wait_answer(op) is False, "end of input answers no"
    assert "over_temperature ch1" in out.getvalue() and "[y/N]" in out.getvalue()


@pytest.mark.parametrize("typed_ahead", [1, READ_AHEAD_LINES + 8], ids=["a stray key", "a paste"])
def test_at_a_terminal_lines_typed_before_a_question_are_not_its_answer(typed_ahead: int) -> None:
    """A stray key, or a paste or a held key longer than the piped read-ahead, typed between two questions: every
    line is discarded, none is left waiting to answer the arming question."""
    master, slave = os.openpty()
    terminal = os.fdopen(slave)
    op = ConsoleOperator(terminal, io.StringIO())
    op.ask(Question("first?", "confirm"))
    os.write(master, b"y\n")
    assert wait_answer(op) is True
    os.write(master, b"y\n" * typed_ahead)
    time.sleep(0.3)  # the reader takes every typed line
    op.ask(Question("Arm 3 lesions?", "confirm"))
    time.sleep(0.1)
    assert op.answer() is None, "a line typed before the arming question answered it"
    os.write(master, b"n\n")
    assert wait_answer(op) is False
    os.close(master)  # hang up first: the reader sees the terminal go away and ends
    op.ask(Question("again?", "confirm"))
    assert wait_answer(op) is False, "a terminal that went away answers no"
    terminal.close()


def test_piped_answers_are_taken_in_order() -> None:
    op = ConsoleOperator(io.StringIO("y\nn\n"), io.StringIO())
    op.ask(Question("first?", "confirm"))
    assert wait_answer(op) is True
    op.ask(Question("second?", "confirm"))
    assert wait_answer(op) is False


class Yes:
    """``yes``: "y" lines for ever, counting how many were taken (what the console reads of its input)."""

    def __init__(self) -> None:
        self.taken = 0

    def isatty(self) -> bool:
        return False

    def __iter__(self) -> Iterator[str]:
        while True:
            self.taken += 1
            yield "y\n"


def test_endless_piped_input_is_read_only_a_little_ahead_of_the_questions() -> None:
    """`yes | rfa run`: read as fast as it came, it grew the process by gigabytes in a short procedure (and on a
    loaded machine starved the guidance thread). The reader now waits in the pipe a few lines ahead."""
    endless = Yes()
    op = ConsoleOperator(cast(TextIO, endless), io.StringIO())
    for question in ("sensory?", "motor?", "arm?"):
        op.ask(Question(question, "confirm"))
        assert wait_answer(op) is True
    time.sleep(0.2)  # time enough to read millions of lines
    assert endless.taken <= 3 + READ_AHEAD_LINES + 1


def test_scripted_answers_come_from_the_plan() -> None:
    op = ScriptedOperator(default_genicular_plan())
    op.ask(Question("sensory?", "response", stim=StimKind.SENSORY, channel=1, amplitude_mv=300))
    assert op.answer() is False
    op.ask(Question("sensory?", "response", stim=StimKind.SENSORY, channel=1, amplitude_mv=400))
    assert op.answer() is True
    op.ask(Question("acknowledge?", "acknowledge"))
    assert op.answer() is False


def test_a_scripted_operator_with_a_reading_time_declines_an_acknowledgement_only_after_it() -> None:
    clock = SimClock()
    op = ScriptedOperator(default_genicular_plan(), clock=clock, reading_s=2.0)
    op.ask(Question("acknowledge?", "acknowledge"))
    clock.advance(1.99)
    assert op.answer() is None, "still reading the alarm"
    clock.advance(0.01)
    assert op.answer() is False
    op.ask(Question("arm?", "confirm"))
    assert op.answer() is True, "other questions are answered at once"
    with pytest.raises(ValueError, match="clock"):
        ScriptedOperator(default_genicular_plan(), reading_s=2.0)


class SlowOperator(ScriptedOperator):
    """Takes 300 polls (3 s of ticks) to confirm arming."""

    def __init__(self) -> None:
        super().__init__(plan_without_imaging())
        self.polls = 0

    def answer(self) -> bool | None:
        self.polls += 1
        return super().answer() if self.polls > 300 else None


def test_the_loop_keeps_ticking_while_the_operator_thinks(tmp_path: Path) -> None:
    operator = SlowOperator()
    cart = build_cart(plan_without_imaging(), tmp_path, operator=operator)
    ticks_before = 0

    def count_at_confirm() -> None:
        nonlocal ticks_before
        ticks_before = cart.session.loop.ticks

    original_ask = operator.ask

    def ask(question: Question) -> None:
        if question.kind == "confirm":
            count_at_confirm()
            operator.polls = 0
        original_ask(question)

    operator.ask = ask  # type: ignore[method-assign]
    result = cart.session.run()
    assert result.exit_code == 0, result.message
    assert not cart.session.loop.watchdog.armed
    assert cart.session.gate.latched == (), "no loop overrun while waiting"
    assert ticks_before > 0
