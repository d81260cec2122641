"""What one simulated run did, and which of its invariants failed."""

from __future__ import annotations

import math
from collections import Counter
from dataclasses import dataclass, field

from ..core.config import MeshConfig
from .plan import RunPlan
from .records import Bounds, Violation

__all__ = ["SimulationReport"]


@dataclass
class SimulationReport:
    """What a run did and which invariants failed (``violations``; empty means all held).

    The invariants, checked on every run:

    a. Convergence (leader-follower): from the start of the quiet phase (``quiet_at``),
       within ``bounds.convergence``, exactly one live tab is LEADER and every live tab
       follows it, and that stays so to the end. Peer-to-peer: no tab ever leads.
    b. Every execute ends (Resolve or Reject) unless its tab crashed or closed (a close
       rejects with ``MeshDisposedError``, which counts as ended): those of the fault
       phase by ``quiet_at + bounds.fault_execute``; those started once the mesh settled
       (``settled_at``: converged, no work left from the faults) within
       ``bounds.quiet_execute`` of their start (and other quiet ones by the later of
       ``quiet_at + bounds.fault_execute`` and start + quiet_execute).
       An execute resolves only with a value of its own key, and rejects only with the
       server's error (directly or shared by another tab).
       A cancelled execute ends when its caller cancels it and gets no outcome after;
       an execute refused for arguments that cannot be shared raises ``TypeError`` (or a
       documented ``MeshError``) at once.
    c. Once the mesh settled in the quiet phase (``settled_at``: converged, no faults, no
       outage, no work left from them), calls of one key (across all tabs) start at least
       ``stale_time`` apart, in both strategies (bursts of executes a few ms apart included).
       Without ``share_cache``, only a call by a tab that already waited for the key while
       the earlier call ran counts. A call its tab gave up (``CancelCall``: no tab waited on
       it any more, or it timed out) produced nothing, so the next one is no duplicate.
    d. No exception escapes a node input, and ``stats.internal_errors`` stays 0.
    e. No tab calls a key within ``error_backoff`` of a failure it heard (no retry storm),
       and no key is blocked (an execute rejected with a back-off's ``SharedFlowError``)
       past ``max_error_backoff`` after the failure that started it, forged ones included.
    f. Values: an execute resolves with what the server returned for its key, unchanged
       (a caller or a flow mutating a shared object shows here); the arguments a caller
       passed are unchanged after the execute.
    g. Every number a node holds that came from the wire is bounded (:meth:`~.invariants.Oracle.check_bounded`,
       at the end of the fault phase and at the end).
    h. Effects: every one is known; a ``CancelCall`` names a call the tab started; an
       outcome reported for a call after its ``CancelCall`` produces no effect at all.
    i. Scopes: no tab caches (``CacheUpdated``), holds (its cache at the end of the fault
       phase and at the end) or resolves an execute with a value the server produced for
       another scope (``cross-scope``); an execute waiting across a scope switch is rejected
       with ``ScopeChangedError`` (``scope-changed``), and no outcome of a call started before
       the switch reaches the new node. Convergence (a), duplicate calls (c), back-offs (e)
       and sync are checked per scope: each scope is a mesh of its own.
    k. Retries (leader-follower): a failing execute (the server's error) whose mesh kept one
       leader and met no disruption (a tab leaving, freezing, sleeping or coming back, a twin, a
       scope switch, a cancel; nor forged posts or misbehaving flows) from its start to its end
       saw at most its flow's ``max_attempts`` calls of its key in its scope: the calling tab
       retries, every other tab waits, only the last failure is shared (``retries``). And no tab
       retries past its flow's ``max_attempts`` (``retry``, checked as it happens).
    l. No lost invalidation: after a mutation (a save, then its tab's ``invalidate_flows``), by the
       end of the quiet phase every live tab of its scope that was there before it, and was neither
       frozen nor in the bfcache since, shows of each invalidated flow it follows (the key of its
       latest execute) data of a call that started after the invalidation: numbered above the
       server's call count when it was made (``lost-invalidation``). Excused: a key whose latest
       execute still runs (a refetch loading) or was cancelled, an error shown, forged values. Two
       calls of a key with a mutation of its flow between them are no duplicate (c), a failing
       execute a mutation of its flow met is not held to ``max_attempts`` (k), and the result of a
       call that began before a mutation reaches the executes that waited for it but no cache; an
       execute a mutation of its flow met may wait for one more call (b: ``quiet_execute`` more).
    j. Members (checked a few heartbeats after the end, nothing failing meanwhile): every
       live tab is a member as its leader sees it (peer-to-peer: as every live tab of its
       scope sees it); no tab lists a member that ended longer ago than the end of a tab
       can take to be noticed (its lock, or its silence: 2.5 heartbeats, ``hidden_timeout``
       if it died hidden), forged IDs included; every follower names its leader's successor.
    m. Shared errors: after a page's ``share_error`` of a key, every execute of that key that
       waited in a tab of its scope when the failure reached it (two message delays; not
       frozen, in the bfcache or switched meanwhile) ends with an error, even one waiting on
       its own tab's running call (``share-error``); the back-off it starts is held to (e).
    Also: at the end no live tab has pending flows, calls or waiters.
    """

    seed: int
    plan: RunPlan | None
    config: MeshConfig
    violations: list[Violation]
    bounds: Bounds
    quiet_at: float
    end_at: float
    tabs_opened: int
    faults: Counter[str]
    executes: int
    outcomes: Counter[str]
    calls: int
    messages: int
    deliveries: int
    elections: int
    convergence: float | None  # observed: when the mesh last converged, after quiet_at (ms)
    max_fault_latency: float  # observed, for executes of the fault phase: end - quiet_at
    max_quiet_latency: float  # observed, for executes started in the quiet phase after settling
    tab_ms: float
    dropped: int
    settled_at: float = math.inf  # observed: when the mesh settled after the faults
    stale_serves: int = 0  # executes served a value truly older than stale_time (+ slack)
    max_served_age: float = -math.inf  # the truly oldest value served, minus stale_time
    failovers: list[float] = field(default_factory=list)  # leader-follower: periods without one leader
    unsynced: int = 0  # fresh entries a joiner missed that no tab was bound to sync
    events: Counter[str] = field(default_factory=Counter)  # calls given up, late outcomes, renames
    scope_checks: int = 0  # values checked against the scope of the tab that cached, held or resolved them
    trace: list[str] | None = None

    @property
    def ok(self) -> bool:
        return not self.violations

    def summary(self) -> str:
        plan = self.plan
        head = f"seed {self.seed}"
        if plan is not None:
            locks = "on" if plan.locks else "off"
            head += f" ({plan.tabs} tabs, {plan.strategy}, locks {locks}, heartbeat {plan.heartbeat:.0f}ms)"
        return f"{head}: {len(self.violations)} violation(s)" if self.violations else f"{head}: ok"
