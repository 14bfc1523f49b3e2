"""The command lines refuse a bad number with argparse's exit 2 naming the option, for every number option
that a negative, zero, NaN or infinite value would carry into a traceback or a nonsense run."""

from __future__ import annotations

import argparse
import contextlib
import math
from collections.abc import Callable

import pytest
from hypothesis import given
from hypothesis import strategies as st

from control import arguments
from control.cli import build_parser


@pytest.mark.parametrize(("parse", "least"), [(arguments.count, 0), (arguments.positive_count, 1)])
@given(value=st.integers())
def test_a_count_is_a_whole_number_from_its_least_and_a_refusal_names_it(
    parse: Callable[[str], int], least: int, value: int
) -> None:
    if value >= least:
        assert parse(str(value)) == value
    else:  # never sent from one refusal to the next (-1: "give 0 or more", then 0: "give 1 or more")
        with pytest.raises(argparse.ArgumentTypeError, match=f"give {least} or more"):
            parse(str(value))


@pytest.mark.parametrize("text", ["+5", " 5", "1_000", "5.0", "0x10", "²", ""])
def test_a_count_is_plain_decimal_digits(text: str) -> None:
    with pytest.raises(argparse.ArgumentTypeError, match="not a whole number"):
        arguments.count(text)


@given(st.floats(allow_nan=True, allow_infinity=True))
def test_seconds_are_finite_and_over_zero(value: float) -> None:
    if math.isfinite(value) and value > 0.0:
        assert arguments.seconds(repr(value)) == value
    else:
        with pytest.raises(argparse.ArgumentTypeError, match="not a duration"):
            arguments.seconds(repr(value))


@given(st.text())
def test_text_that_is_no_number_is_refused_not_raised(text: str) -> None:
    for parse in (arguments.count, arguments.positive_count, arguments.seconds):
        with contextlib.suppress(argparse.ArgumentTypeError):  # anything else (ValueError, ...) fails the test
            parse(text)


@pytest.mark.parametrize("argv", [
    ["run", "--seed", "-1"],
    ["run", "--frame-period", "nan"],
    ["selftest", "--seed", "-5"],
    ["campaign", "--runs", "-2"],
    ["campaign", "--seed", "1.5"],
    ["sim", "--seed", "-1"],
    ["sim", "--duration-s", "-3"],
    ["sim", "--seed", "²"],
    ["sim", "--electrode", "18:inf"],
    ["sim", "--report-s", "inf"],
    ["probe", "stream", "--seconds", "0"],
    ["history", "--last", "0"],
    ["console", "--interval", "-1"],
    ["record", "show", "x.rfa.db", "--limit", "-1"],
])
def test_every_number_option_refuses_a_bad_value_naming_itself(argv: list[str],
                                                                capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_:
        build_parser().parse_args(argv)
    assert exit_.value.code == 2
    option = next(a for a in argv if a.startswith("--"))
    assert f"argument {option}:" in capsys.readouterr().err


def _commands(parser: argparse.ArgumentParser, path: tuple[str, ...] = ()
              ) -> list[tuple[tuple[str, ...], argparse.ArgumentParser]]:
    found = []
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                found += [((*path, name), sub), *_commands(sub, (*path, name))]
    return found


def test_every_command_says_what_it_does_and_the_top_level_help_gives_the_exit_codes() -> None:
    """`rfa X --help` is where a newcomer at the cart or the rig looks first: no command answers with options only."""
    parser = build_parser()
    commands = _commands(parser)
    assert len(commands) > 15  # the walk found the commands and their actions
    assert [" ".join(path) for path, sub in commands if not sub.description] == []
    epilog = " ".join((parser.epilog or "").split())
    for code in ("0 success", "1 the procedure ended in a fault or stop", "2 usage", "3 device not reachable"):
        assert code in epilog


def test_rfa_run_help_says_yes_runs_in_real_time_against_a_generator() -> None:
    """It said "in simulated time" whatever the run; with --generator the run is in real time (ARCHITECTURE §11)."""
    run = dict(_commands(build_parser()))[("run",)]
    yes = next(action.help or "" for action in run._actions if "--yes" in action.option_strings)
    assert "with --generator it is in real time" in yes and "in-process simulator" in yes
