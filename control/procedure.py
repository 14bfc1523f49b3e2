"""The procedure state machine (ARCHITECTURE.md section 6), a ``transitions`` table.

::

    off ─► self_test ─► standby ─► stimulating⚡ ─► standby
                          │
                          └─► armed ─► ramping⚡ ─► lesioning⚡ ─► cooldown ─► standby
    any state ─► fault (latched; leave only by acknowledge, and only once the cause has cleared)
    any state ─► stopped (operator stop) ─► standby

Why it is built this way:

- The table below *is* the design; tests walk it directly. ``auto_transitions`` is off, so there is no
  ``to_lesioning()`` shortcut around the guards, and an illegal trigger raises ``MachineError``.
- Every transition is committed to the procedure record in ``before_state_change``: if the record cannot
  take it, the transition does not happen (and the caller is left to go to the safe state).
- Leaving a ⚡ state turns output off in ``after_state_change``, after the state change is recorded, so the
  record always shows why output went off. (A trip does not wait for this: the gate has already put
  ``OUTPUT_OFF`` on the wire before it reports the fault.)
- The machine is kept out of the 10 ms path: the loop raises events into it only on edges.
- Guards ask :class:`Guards`, implemented over ``safety/``; they return the reasons for a refusal so the
  operator sees *why* arming is refused, and the refusal is recorded too.
"""

from __future__ import annotations

import enum
from collections.abc import Callable
from typing import Any, Final, Protocol

from transitions import EventData, Machine

from control.record import ProcedureRecord


class State(enum.Enum):
    OFF = "off"
    SELF_TEST = "self_test"
    STANDBY = "standby"
    STIMULATING = "stimulating"
    ARMED = "armed"
    RAMPING = "ramping"
    LESIONING = "lesioning"
    COOLDOWN = "cooldown"
    FAULT = "fault"
    STOPPED = "stopped"


OUTPUT_STATES: Final = frozenset({State.STIMULATING, State.RAMPING, State.LESIONING})
"""The ⚡ states: the only ones in which output may be on."""

_ALL_BUT_FAULT: Final = [s for s in State if s is not State.FAULT]
_STOPPABLE: Final = [s for s in State if s not in (State.OFF, State.FAULT, State.STOPPED)]

TRANSITIONS: Final[list[dict[str, Any]]] = [
    {"trigger": "begin_self_test", "source": State.OFF, "dest": State.SELF_TEST},
    {"trigger": "self_test_passed", "source": State.SELF_TEST, "dest": State.STANDBY},
    {
        "trigger": "start_stimulation",
        "source": State.STANDBY,
        "dest": State.STIMULATING,
        "conditions": "_guard_stimulate",
    },
    {"trigger": "stimulation_done", "source": State.STIMULATING, "dest": State.STANDBY},
    {"trigger": "arm", "source": State.STANDBY, "dest": State.ARMED, "conditions": "_guard_arm"},
    {"trigger": "disarm", "source": State.ARMED, "dest": State.STANDBY},
    {"trigger": "start_rf", "source": State.ARMED, "dest": State.RAMPING, "conditions": "_guard_start_rf"},
    {"trigger": "set_temperature_reached", "source": State.RAMPING, "dest": State.LESIONING},
    {"trigger": "lesion_complete", "source": State.LESIONING, "dest": State.COOLDOWN},
    {"trigger": "cooled", "source": State.COOLDOWN, "dest": State.STANDBY},
    {"trigger": "fault", "source": _ALL_BUT_FAULT, "dest": State.FAULT},
    {
        "trigger": "acknowledge",
        "source": State.FAULT,
        "dest": State.STANDBY,
        "conditions": "_guard_acknowledge",
    },
    {"trigger": "operator_stop", "source": _STOPPABLE, "dest": State.STOPPED},
    {"trigger": "resume", "source": State.STOPPED, "dest": State.STANDBY},
]


class Guards(Protocol):
    """What the machine must ask before a guarded transition; each returns the reasons to refuse."""

    def refuse_stimulation(self) -> list[str]: ...

    def refuse_arming(self) -> list[str]: ...

    def refuse_rf_start(self) -> list[str]: ...

    def refuse_acknowledge(self) -> list[str]:
        """Acknowledge clears latched faults whose cause is gone; any cause still present is a reason."""
        ...


class Procedure:
    """One procedure's state: the machine, its guards, its record and the output-off hook."""

    state: State
    trigger: Callable[..., bool]
    """Fire a trigger by name; added by ``transitions.Machine``."""

    def __init__(
        self,
        record: ProcedureRecord,
        guards: Guards,
        outputs_off: Callable[[str], None],
        on_transition: Callable[[State, State], None] | None = None,
        durable: Callable[[str, dict[str, Any]], int] | None = None,
    ) -> None:
        self._durable = record.append_durable if durable is None else durable
        """Queue a row and return once it is on disk (the session's keeps the loop ticking meanwhile)."""
        self._guards = guards
        self._outputs_off = outputs_off
        self._on_transition = on_transition
        self.refusals: list[str] = []
        self.machine = Machine(
            model=self,
            states=list(State),
            transitions=TRANSITIONS,
            initial=State.OFF,
            auto_transitions=False,
            send_event=True,
            before_state_change="_record_transition",
            after_state_change="_after_transition",
        )

    def raise_fault(self, reason: str) -> None:
        """Enter ``fault`` from any state; a fault while in ``fault`` is recorded, not a transition."""
        if self.state is State.FAULT:
            self._durable("alarm", {"while_in_fault": reason})
            return
        self.trigger("fault", reason=reason)

    # -- guards (transitions' conditions) ------------------------------------------------------------
    def _check(self, event: EventData, refusal: list[str]) -> bool:
        self.refusals = refusal
        if refusal:
            self._durable(
                "refused", {"trigger": event.event.name, "state": self.state.value, "reasons": refusal}
            )
        return not refusal

    def _guard_stimulate(self, event: EventData) -> bool:
        return self._check(event, self._guards.refuse_stimulation())

    def _guard_arm(self, event: EventData) -> bool:
        return self._check(event, self._guards.refuse_arming())

    def _guard_start_rf(self, event: EventData) -> bool:
        return self._check(event, self._guards.refuse_rf_start())

    def _guard_acknowledge(self, event: EventData) -> bool:
        return self._check(event, self._guards.refuse_acknowledge())

    # -- callbacks -----------------------------------------------------------------------------------
    @staticmethod
    def _endpoints(event: EventData) -> tuple[State, State]:
        transition = event.transition
        assert transition is not None and transition.dest is not None, "callbacks run only on transitions"
        return State[transition.source], State[transition.dest]

    def _record_transition(self, event: EventData) -> None:
        source, dest = self._endpoints(event)
        payload: dict[str, Any] = {"trigger": event.event.name, "source": source.value, "dest": dest.value}
        payload.update({k: v for k, v in event.kwargs.items() if isinstance(v, str | int | float | bool)})
        self._durable("state", payload)

    def _after_transition(self, event: EventData) -> None:
        source, _ = self._endpoints(event)
        if source in OUTPUT_STATES and self.state not in OUTPUT_STATES:
            self._outputs_off(f"left {source.value}")
        if self._on_transition is not None:
            self._on_transition(source, self.state)
