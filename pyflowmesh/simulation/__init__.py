"""A deterministic simulator of many tabs sharing one mesh, in virtual time, with injected faults.

Every tab is a real :class:`~pyflowmesh.core.node.MeshNode`; every message crosses the
"channel" as the encoded text of its ``Send`` effect and enters the receiving tab through
:meth:`MeshNode.receive`, so the wire format is exercised end to end. One event heap in
virtual milliseconds and one ``random.Random(seed)`` drive everything: a seed reproduces
its run exactly. ``python -m pyflowmesh.simulation --seeds 1000 --tabs 50`` runs many
seeds (``--faults crash,hostile`` only some fault kinds: :data:`FAULT_KINDS`).

The modules, one concept each:

* :mod:`.network`: :class:`VirtualNetwork`, browser tabs on one BroadcastChannel in virtual
  time (delays, per-pair order, clocks and throttled timers, Web Locks, the tabs' lifecycle:
  crash, close, freeze, hide, back/forward cache, twins, scope switches). It carries out
  every effect the core emits and raises on one it does not know. The node tests and the
  election benchmarks use it as it is. :mod:`.tab` is one of its tabs, :mod:`.clock` its
  virtual time, :mod:`.calls` how a flow call ends (a :class:`CallServer` decides).
* :mod:`.app`: the simulated page (:data:`FLOWS`, :data:`SCOPES`, :func:`sim_config`) and
  the :class:`~.app.Server` behind its flows: outages, and flow functions that misbehave
  (:data:`PATHOLOGIES`: raise a ``BaseException``, hang, return too much, return what JSON
  cannot carry, mutate their arguments).
* :mod:`.world`: :class:`Simulation`, the network with that server, watched by the oracle:
  whatever must not happen is recorded as a :class:`Violation`, and the run goes on.
* :mod:`.invariants`: the oracle (:class:`~.invariants.Oracle`), which reads only what tabs
  and nodes show; :class:`SimulationReport` (:mod:`.report`) lists the invariants.
* :mod:`.scenario`: a seed's random scenario (:class:`~.scenario.RandomScenario`: a fault
  phase, then a quiet phase in which the mesh must settle), :func:`run` and :func:`run_plan`;
  :mod:`.plan` what a seed decides up front (:func:`plan`, :data:`FAULT_KINDS`);
  :mod:`.hostile` the posts of a hostile script (:func:`hostile_message`);
  :mod:`.long_outage` one key down for hours, in a run of its own.
* :mod:`.batch`: :func:`run_many` and its :class:`Summary`; :mod:`.cli` the command line.
* :mod:`.records` (:class:`ExecRecord`, :class:`Violation`, :class:`Bounds`) and :mod:`.text`
  (how values and posts are shown) serve them all.
"""

from .app import FLOWS, OPTIONAL_FLOW, PATHOLOGIES, SCOPES, FlowCancelled, NotJSON, Server, ServerDown, sim_config
from .batch import Summary, run_many
from .calls import CallOutcome, CallPlan, CallServer, EchoServer
from .cli import main
from .hostile import hostile_message
from .invariants import MAX_INTERVAL, WIRE_MAX, Oracle
from .long_outage import long_outage
from .network import NetworkError, VirtualNetwork
from .plan import FAULT_KINDS, RunPlan, plan
from .records import Bounds, ExecRecord, Violation
from .report import SimulationReport
from .scenario import RandomScenario, run, run_plan
from .tab import Tab
from .world import Simulation

__all__ = [
    "FLOWS",
    "FAULT_KINDS",
    "OPTIONAL_FLOW",
    "PATHOLOGIES",
    "SCOPES",
    "MAX_INTERVAL",
    "WIRE_MAX",
    "FlowCancelled",
    "NotJSON",
    "ServerDown",
    "Server",
    "hostile_message",
    "long_outage",
    "ExecRecord",
    "Violation",
    "Bounds",
    "CallOutcome",
    "CallPlan",
    "CallServer",
    "EchoServer",
    "NetworkError",
    "VirtualNetwork",
    "Tab",
    "Simulation",
    "Oracle",
    "SimulationReport",
    "RandomScenario",
    "RunPlan",
    "Summary",
    "plan",
    "run",
    "run_plan",
    "run_many",
    "sim_config",
    "main",
]
