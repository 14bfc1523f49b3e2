"""An in-process simulated cart for procedure tests: SimClock, memory link, simulated generator.

The cart itself is the composition root's (``control.cli.simulated_cart``), so tests run the same wiring as
``rfa run``; this adds the host side (driver, record, session) in lockstep.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

from control.cli import simulated_cart
from control.operator import Operator, ScriptedOperator
from control.record import ProcedureRecord
from control.session import LesionEstimator, ProcedureSession
from firmware_bridge.clock import SimClock
from firmware_bridge.generator import RfGenerator
from firmware_bridge.messages import ElectrodeSlot
from safety.plan import LesionPlan
from sim.generator import Fault, SimGenerator
from sim.link_faults import FaultyTransport, LinkFaultConfig
from sim.lockstep import Lockstep
from sim.tissue import TissueModel
from sim.tissue.lumped import LumpedTissue


@dataclass
class SimCart:
    clock: SimClock
    sim: SimGenerator
    generator: RfGenerator
    session: ProcedureSession
    record: ProcedureRecord
    link: FaultyTransport | None = None
    """The host's end of the cable, when the cart was built with ``link`` (``link.unplug()`` pulls it)."""


def build_cart(
    plan: LesionPlan,
    tmp_path: Path,
    *,
    faults: Iterable[Fault] = (),
    operator: Operator | None = None,
    tissue_factory: Callable[[ElectrodeSlot], TissueModel] = lambda electrode: LumpedTissue(),
    seed: int = 1,
    lesion_estimator: LesionEstimator | None = None,
    link: LinkFaultConfig | None = None,
) -> SimCart:
    clock = SimClock()
    cart = simulated_cart(plan, clock, seed=seed, faults=tuple(faults), probe=False, tissue_factory=tissue_factory)
    faulty = None if link is None else FaultyTransport(cart.host_transport, clock, link, seed=seed)
    generator = RfGenerator(faulty or cart.host_transport, clock)
    record = ProcedureRecord(tmp_path / f"cart-{seed}.rfa.db", clock)
    session = ProcedureSession(plan=plan, generator=generator, clock=clock, pacer=Lockstep(clock, cart.devices),
                               record=record, operator=operator or ScriptedOperator(plan),
                               lesion_estimator=lesion_estimator)
    return SimCart(clock, cart.generator_sim, generator, session, record, faulty)
