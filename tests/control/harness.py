"""An in-process simulated cart for procedure tests: SimClock, memory link, simulated generator."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path

from control.operator import Operator, ScriptedOperator
from control.record import ProcedureRecord
from control.session import LesionEstimator, ProcedureSession
from firmware_bridge.clock import SimClock
from firmware_bridge.framing import FrameParser
from firmware_bridge.generator import RfGenerator
from firmware_bridge.messages import ElectrodeFlag, ElectrodeSlot
from firmware_bridge.transport import memory_pair
from safety.plan import LesionPlan
from sim.generator import Fault, SimGenerator
from sim.lockstep import Lockstep
from sim.tissue import TissueModel
from sim.tissue.lumped import LumpedTissue


def electrodes_for(plan: LesionPlan) -> list[ElectrodeSlot]:
    """The electrodes the plan expects, plugged into the simulated generator."""
    slots = [ElectrodeSlot(0, 0, 0, 0)] * 4
    for lesion in plan.lesions:
        flags = ElectrodeFlag.THERMOCOUPLE_FITTED | (ElectrodeFlag.COOLED if lesion.electrode.cooled else 0)
        slot = ElectrodeSlot(1, lesion.electrode.gauge, round(lesion.electrode.active_tip_mm * 10), int(flags))
        for ch in lesion.channels:
            slots[ch - 1] = slot
    return slots


@dataclass
class SimCart:
    clock: SimClock
    sim: SimGenerator
    generator: RfGenerator
    session: ProcedureSession
    record: ProcedureRecord
    wire_to_device: list[tuple[str, object]] = field(default_factory=list)


def build_cart(
    plan: LesionPlan,
    tmp_path: Path,
    *,
    faults: Iterable[Fault] = (),
    operator: Operator | None = None,
    tissue_factory: Callable[[ElectrodeSlot], TissueModel] = lambda electrode: LumpedTissue(),
    seed: int = 1,
    lesion_estimator: LesionEstimator | None = None,
) -> SimCart:
    clock = SimClock()
    host, device = memory_pair()
    sim = SimGenerator(device, clock, seed=seed, electrodes=electrodes_for(plan), faults=faults,
                       tissue_factory=tissue_factory)
    generator = RfGenerator(host, clock)
    record = ProcedureRecord(tmp_path / f"cart-{seed}.rfa.db", clock)
    session = ProcedureSession(plan=plan, generator=generator, clock=clock, pacer=Lockstep(clock, [sim.step]),
                               record=record, operator=operator or ScriptedOperator(plan),
                               lesion_estimator=lesion_estimator)
    return SimCart(clock, sim, generator, session, record)


def decode_host_frames(raw: bytes) -> list[object]:
    return [f.msg for f in FrameParser().feed(raw)]
