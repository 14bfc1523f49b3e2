"""The procedure's transition table, tested directly: legal paths, guards, recording, output-off hook."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pytest
from transitions import MachineError

from control.procedure import OUTPUT_STATES, TRANSITIONS, Procedure, State
from control.record import ProcedureRecord, RecordReader
from firmware_bridge.clock import SimClock


class FakeGuards:
    def __init__(self) -> None:
        self.arming: list[str] = []
        self.ack: list[str] = []

    def refuse_stimulation(self) -> list[str]:
        return []

    def refuse_arming(self) -> list[str]:
        return self.arming

    def refuse_rf_start(self) -> list[str]:
        return []

    def refuse_acknowledge(self) -> list[str]:
        return self.ack


@dataclass
class Rig:
    proc: Procedure
    guards: FakeGuards
    offs: list[str]
    record: ProcedureRecord

    def recorded(self, kind: str) -> list[dict[str, object]]:
        self.record.close()
        return [r.payload for r in RecordReader(self.record.path).rows(kind)]


@pytest.fixture
def rig(tmp_path: Path) -> Rig:
    record = ProcedureRecord(tmp_path / "p.db", SimClock())
    guards = FakeGuards()
    offs: list[str] = []
    return Rig(Procedure(record, guards, offs.append), guards, offs, record)


LESION_PATH = ["begin_self_test", "self_test_passed", "start_stimulation", "stimulation_done", "arm",
               "start_rf", "set_temperature_reached", "lesion_complete", "cooled"]


def test_the_whole_lesion_path_is_legal_and_recorded_in_order(rig: Rig) -> None:
    for trigger in LESION_PATH:
        assert rig.proc.trigger(trigger)
    assert rig.proc.state is State.STANDBY
    dests = [row["dest"] for row in rig.recorded("state")]
    assert dests == ["self_test", "standby", "stimulating", "standby", "armed", "ramping", "lesioning",
                     "cooldown", "standby"]
    # Output was turned off exactly when a ⚡ state was left for a non-⚡ one.
    assert rig.offs == ["left stimulating", "left lesioning"]


def test_no_shortcut_into_an_output_state(rig: Rig) -> None:
    assert not hasattr(rig.proc, "to_lesioning"), "auto transitions would bypass the guards"
    with pytest.raises(MachineError):
        rig.proc.trigger("start_rf")


def test_every_output_state_is_entered_only_through_a_guard_or_from_another_output_state() -> None:
    for t in TRANSITIONS:
        if t["dest"] in OUTPUT_STATES:
            sources = t["source"] if isinstance(t["source"], list) else [t["source"]]
            assert "conditions" in t or all(s in OUTPUT_STATES for s in sources), t


def test_a_refused_arming_stays_in_standby_and_says_why(rig: Rig) -> None:
    rig.proc.trigger("begin_self_test")
    rig.proc.trigger("self_test_passed")
    rig.guards.arming = ["channel 2: impedance 1500 ohm above 1000 ohm"]
    assert not rig.proc.trigger("arm")
    assert rig.proc.state is State.STANDBY
    assert rig.proc.refusals == rig.guards.arming
    assert rig.recorded("refused")[0]["reasons"] == rig.guards.arming


@pytest.mark.parametrize("state_path", [LESION_PATH[:k] for k in range(len(LESION_PATH))])
def test_a_fault_anywhere_ends_in_fault_and_only_acknowledge_leaves(rig: Rig, state_path: list[str]) -> None:
    proc, guards = rig.proc, rig.guards
    for trigger in state_path:
        proc.trigger(trigger)
    before = proc.state
    offs_before = len(rig.offs)
    proc.raise_fault("over_temperature ch1")
    assert proc.state is State.FAULT
    expected_offs = [f"left {before.value}"] if before in OUTPUT_STATES else []
    assert rig.offs[offs_before:] == expected_offs
    for trigger in {t["trigger"] for t in TRANSITIONS} - {"acknowledge", "fault"}:
        with pytest.raises(MachineError):
            proc.trigger(trigger)
    guards.ack = ["over_temperature ch1 still present"]
    assert not proc.trigger("acknowledge")
    assert proc.state is State.FAULT
    guards.ack = []
    assert proc.trigger("acknowledge")
    assert proc.state is State.STANDBY


def test_a_second_fault_is_recorded_without_leaving_fault(rig: Rig) -> None:
    rig.proc.raise_fault("link lost")
    rig.proc.raise_fault("generator fault")
    assert rig.proc.state is State.FAULT
    assert rig.recorded("alarm") == [{"while_in_fault": "generator fault"}]
