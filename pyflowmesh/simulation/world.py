"""The simulated world: the virtual network of tabs, the page's server behind their flows, and the oracle.

:class:`Simulation` is a :class:`~.network.VirtualNetwork` whose flow calls the simulated
:class:`~.app.Server` answers (outages, misbehaving flow functions), and whose every step
the :class:`~.invariants.Oracle` watches: where the bare network raises on something that
must not happen, the simulation records a :class:`~.records.Violation` and runs on, so that
a run reports everything that went wrong.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

from ..core.config import MeshConfig
from ..core.effects import CacheUpdated
from ..core.policy import CallPolicy
from .app import FLOWS, MutationLog, Server, ServerDown, page_policies
from .calls import CallOutcome
from .invariants import Oracle
from .network import VirtualNetwork
from .records import ExecRecord
from .tab import Tab

__all__ = ["Simulation"]


POLL_FAMILY = "pyflowmesh.poll:6:status"
POLL_STREAMS = (POLL_FAMILY + "[1]", POLL_FAMILY + '["a"]')


class Simulation(VirtualNetwork):
    """Tabs of the simulated page, a channel, a server and Web Locks in virtual time, checked as they run.

    Script it (:class:`~.network.VirtualNetwork`'s methods, and :meth:`outage`), then
    :meth:`run_until`. What went wrong is in ``violations``; the oracle's other findings
    and the server's log are in ``oracle`` and ``server``.
    """

    default_flows = tuple(FLOWS)
    default_streams = ("ticker",)  # every page has one stream (simulation/streams.py serves it)
    stream_grace = 3000.0
    # Flow "status" polled (pyflowmesh.polling.family_prefix("status"), written out: the simulator
    # uses only the core): each (flow, arguments) polled is a stream of this family, adopted by
    # whichever tab runs it. The "stream-sources" check makes it one poller per flow and arguments.
    default_stream_families = (POLL_FAMILY,)

    def __init__(
        self,
        seed: int,
        config: MeshConfig,
        *,
        locks: bool = True,
        delay: tuple[float, float] = (0.1, 5.0),
        call_duration: tuple[float, float] = (5.0, 200.0),
        lock_delay: tuple[float, float] = (40.0, 90.0),
        verbose: bool = False,
        policies: Mapping[str, CallPolicy] | None = None,
    ) -> None:
        if policies is None:  # the page's own, drawn from the seed
            policies = page_policies(seed, config.heartbeat)
        super().__init__(seed, config, locks=locks, delay=delay, call_duration=call_duration, lock_delay=lock_delay,
                         verbose=verbose, policies=policies)
        self.server: Server = Server(self.rng, config, call_duration, self.faults)
        self.oracle = Oracle(self, self.server)
        self.violations = self.oracle.violations

    # --- scripting ----------------------------------------------------------------------------

    def outage(self, start: float, end: float) -> None:
        """Calls started in ``[start, end)`` fail with :class:`~.app.ServerDown`."""
        self.at(start, lambda: self.set_server_down(True))
        self.at(end, lambda: self.set_server_down(False))

    def set_server_down(self, down: bool) -> None:
        """The server goes down or comes back, now."""
        self.server.set_down(down, self.now)
        self.streams.server.down = down
        self.log(None, f"server {'down' if down else 'up'}")

    def save(self) -> bool:
        """A mutation's save reaches the server: it succeeds unless the server is down."""
        if self.server.down:
            self.events["mutations failed"] += 1
            return False
        self.server.saves += 1
        return True

    def mutate_now(self, tab: Tab, flows: tuple[str, ...]) -> None:
        """A mutation's save succeeded: the tab invalidates ``flows`` in every tab of its scope
        (``Flow._mutate`` calls ``FlowMesh.invalidate_flows``), noting the server's call count first."""
        count, digest = self.server.call_count, tab.digest
        if self.invalidate_flows_now(tab, flows):
            self.server.mutations.append(MutationLog(self.now, tab.id, tab.index, flows, count, digest))

    def share_error_now(self, tab: Tab, key: str) -> bool:
        """The tab's page saw ``key`` fail by other means and shares it (``FlowMesh.share_error``):
        every tab's waiters of ``key`` fail, a running call's included, and its back-off starts.
        Only if its page runs; returns whether it did."""
        if not tab.alive or tab.frozen or tab.away:
            return False
        self.faults["share-error"] += 1
        self.log(tab, f"share error of {key}")
        try:
            self.oracle.note_shared_error(tab, key)  # the back-off starts here (ServerDown is allowed)
            tab.node.share_error(key, ServerDown(f"the page saw {key} fail"), self._local(tab))
        except BaseException:
            self._exception(tab, f"share_error({key!r})")
        self._after_input(tab)
        return True

    def calls_of(self, key: str, since: float = -math.inf) -> list[float]:
        """Start times of the server calls of ``key`` since ``since``."""
        return self.server.calls_of(key, since)

    def execute_now(self, tab: Tab, record: ExecRecord) -> None:
        record.settled = self.now >= self.oracle.settled_at
        super().execute_now(tab, record)

    # --- what the network leaves to its refinements -------------------------------------------

    def _problem(self, kind: str, message: str) -> None:
        self.oracle.violate(kind, message)

    def _exception(self, tab: Tab, what: str) -> None:
        self.oracle.exception(tab, what)

    def _joined(self, tab: Tab) -> None:
        """A tab that joins a settled mesh is synced: checked once a Hello and a Sync had time to pass."""
        if self.now >= self.oracle.settled_at and self.config.share_cache:
            node = tab.node
            self._call_at(self.now + self.oracle.sync_window, lambda: self.oracle.check_synced(tab, node))

    def _injected(self, data: Any) -> None:
        self.oracle.note_forged(data)

    def _leadership_changed(self) -> None:
        self.oracle.leadership_changed()

    def _call_ended(self, tab: Tab, outcome: CallOutcome, retried: bool) -> None:
        ok, _, key, back_off, _ = outcome
        if not retried:  # a failed attempt that is retried is no failure the mesh hears of
            self.server.ends[key].append((self.now, ok or not back_off, tab.digest))  # a failure without back-off
        if not ok and back_off:
            self.oracle.note_failure(tab, key)

    def _call_given_up(self, tab: Tab, key: str) -> None:
        self.server.give_up(tab, key)
        self.oracle.note_failure(tab, key)  # giving up is a failure: a back-off may start

    def _resolved(self, tab: Tab, record: ExecRecord, value: Any, source: str) -> None:
        if self.oracle.check_resolved(tab, record, value, source):
            self._caller_mutates(value)

    def _rejected(self, tab: Tab, record: ExecRecord, error: BaseException) -> None:
        self.oracle.check_rejected(tab, record, error)

    def _on_cache_updated(self, tab: Tab, effect: CacheUpdated) -> None:
        self.oracle.check_cached(tab, effect)
        latest = tab.latest.get(effect.key)
        if latest is not None and latest.end is not None:  # a Flow takes a newer result while not loading
            tab.shown[effect.key] = effect.value

    def _caller_mutates(self, value: dict[str, Any]) -> None:
        """With pathologies, now and then a page mutates the data an execute returned (in place)."""
        server = self.server
        if (server.pathology_rate and self.now < server.pathology_until
                and self.rng.random() < server.caller_mutation_rate):
            value["mutated by the caller"] = True
            self.faults["caller-mutate"] += 1
