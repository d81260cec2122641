"""The oracle: the invariants every simulated run is checked against, from what tabs and nodes show.

:class:`Oracle` watches a run as it goes (what each tab caches, what each execute resolves or
is rejected with, what a joiner is synced) and judges it at the end (:meth:`Oracle.judge`);
:class:`~.report.SimulationReport` lists the invariants. It reads only public state: a node's
``role``, ``leader``, ``term``, ``stats``, ``backoffs(now)``, ``phase(key)``, ``next_deadline()``,
its cache's ``held()`` and ``snapshot(now)``, and what the network and the server logged.
"""

from __future__ import annotations

import json
import math
import sys
import traceback
from collections import Counter, defaultdict
from typing import Any

from .. import errors
from ..core.effects import CacheUpdated
from ..core.election import Role
from ..core.node import MeshNode
from ..core.values import key_of_flow
from ..errors import SharedFlowError
from .app import Server
from .clock import RESOLUTION
from .network import VirtualNetwork, converged_leaders
from .records import Bounds, ExecRecord, Violation
from .report import SimulationReport
from .tab import Tab
from .text import safe_repr

__all__ = ["MAX_INTERVAL", "WIRE_MAX", "Oracle", "last_error", "value_matches"]

MAX_INTERVAL = 60_000.0
"""The longest heartbeat interval a follower may believe (a forged Coordinator says more): the
simulator's bound on how long a ghost leader is followed without Web Locks."""
WIRE_MAX = 2**53
"""Every number a node holds that came from the wire stays below this (JavaScript's safe integers)."""


def value_matches(value: Any, key: str) -> bool:
    """Whether ``value`` is a result of ``key`` (every value the server or a forger makes names its key)."""
    return isinstance(value, dict) and value.get("key") == key


def last_error(node: MeshNode) -> str:
    """The traceback of the last unexpected exception a node caught, for a violation's message."""
    error = node.last_internal_error
    if error is None:
        return ""
    return "; the last one:\n" + "".join(traceback.format_exception(type(error), error, error.__traceback__))


class Oracle:
    """The checks of one run: made as it goes, and at the end (:meth:`judge`).

    What it knows besides the tabs: the server's log of calls and what it produced, and
    what forged posts may legitimately cause (their error types, failures and leaders).
    """

    def __init__(self, world: VirtualNetwork, server: Server) -> None:
        self.world = world
        self.server = server
        self.violations: list[Violation] = []
        self.scope_checks = 0  # values checked against the scope of the tab that cached or resolved them
        self.stale_serves: list[tuple[float, str, str, float]] = []  # (time, tab, key, true age)
        self.max_served_age = -math.inf  # the truly oldest value served from a cache or the mesh, minus stale_time
        # Joiners (of a settled mesh) that missed a fresh entry which no tab was bound to sync:
        # peer-to-peer, its producer left; leader-follower, the leader never had it.
        self.unsynced = 0
        # When each tab's cache last took each key (CacheUpdated), by (tab index, key): an entry
        # that reached the syncing tab after the joiner joined may have come after its Hello.
        self.cached_at: dict[tuple[int, str], float] = {}
        # Error type names an execute may legitimately be rejected with (besides ServerDown):
        # what the faults made flows raise, the core's own errors, and forged ones.
        self.allowed_errors: set[str] = {"ServerDown"}
        self.allowed_errors.update(name for name in errors.__all__)
        self.allowed_errors.add("MessageTooLarge")
        # When each key failed, per scope digest (a call's failure or a forged Failure/Sync): the start of
        # a back-off.
        self.failure_times: dict[tuple[str, str], list[float]] = defaultdict(list)
        self.hostile_leaders = False  # a forged Coordinator/Heartbeat was posted
        self.hostile_lockless_leaders = False  # one that said its tab holds no Web Lock
        self.shared_errors: list[tuple[float, str, str, int]] = []  # share_error: (when, digest, key, tab index)
        # From this time on (the settled quiet phase) a result a tab receives from the mesh
        # must also be in its cache: otherwise its other executes and on_cache_update miss it.
        self.settled_at = math.inf
        delay_max = world.delay[1]
        self.sync_window = 2 * delay_max + 1 / RESOLUTION  # a joiner's Hello and the leader's Sync
        # A relayed result's age leaves out its time in transit: a few message delays.
        self.freshness_slack = 3 * delay_max
        # Convergence tracking (leader-follower): P = "exactly one live tab leads and
        # every live tab that has known a leader follows it". ``converged_since`` is
        # when P last became true (None while false).
        self.converged_since: float | None = None
        self.leadership_changes: list[float] = []  # times P went false
        self.converged_spans: list[list[float]] = []  # [since, until] of each period P held (until inf: holds)
        self.failovers: list[float] = []  # how long each such period lasted

    # --- as the run goes ----------------------------------------------------------------------

    def violate(self, kind: str, message: str) -> None:
        """Invariant ``kind`` did not hold now."""
        self.violations.append(Violation(kind, self.world.now, message))

    def exception(self, tab: Tab, what: str) -> None:
        """Called in an ``except`` block: an input of the tab's node (``what``) raised."""
        if isinstance(sys.exc_info()[1], KeyboardInterrupt):
            raise
        self.violate("exception", f"tab {tab.id}: {what} raised\n{traceback.format_exc()}")

    def note_forged(self, data: Any) -> None:
        """Remember what a forged post may legitimately cause: its error types, its failures, its leader."""
        if not isinstance(data, str) or '"pyflowmesh"' not in data:
            return
        try:
            body = json.loads(data)
        except (ValueError, RecursionError):
            return
        if not isinstance(body, dict):
            return
        kind = body.get("type")
        if kind in ("coordinator", "heartbeat"):
            self.hostile_leaders = True
            self.hostile_lockless_leaders |= body.get("locks") is False
        failures = [body] if kind == "failure" else body.get("failures") if kind == "sync" else None
        scope = body.get("scope", "")  # the scope whose tabs accept it (a digest; "" the shared one)
        for failure in failures if isinstance(failures, list) else ():
            if isinstance(failure, dict):
                if isinstance(failure.get("error_type"), str):
                    self.allowed_errors.add(failure["error_type"])
                if isinstance(failure.get("key"), str) and isinstance(scope, str):
                    self.failure_times[(scope, failure["key"])].append(self.world.now)

    def note_failure(self, tab: Tab, key: str) -> None:
        """A call of ``key`` failed in the tab (or its node gave up on it): a back-off may start now."""
        self.failure_times[(tab.digest, key)].append(self.world.now)

    def leadership_changed(self) -> None:
        """Some tab's view of its leader may have changed: track when the mesh (re)converges."""
        world = self.world
        if world.config.strategy != "leader-follower":
            return
        converged = bool(converged_leaders(t for t in world.open_tabs if not t.fresh and not t.away))
        if converged and self.converged_since is None:
            self.converged_since = world.now
            self.converged_spans.append([world.now, math.inf])
            if self.leadership_changes:
                self.failovers.append(world.now - self.leadership_changes[-1])
        elif not converged and self.converged_since is not None:
            self.converged_since = None
            self.converged_spans[-1][1] = world.now
            self.leadership_changes.append(world.now)

    def check_cached(self, tab: Tab, effect: CacheUpdated) -> None:
        """A result that entered the tab's cache is one of its key, produced for the tab's scope."""
        self.cached_at[(tab.index, effect.key)] = self.world.now
        value = effect.value
        forged = isinstance(value, dict) and "forged" in value  # a hostile post's: trusted, as any post
        if not forged and not value_matches(value, effect.key):
            self.violate("value", f"tab {tab.id} cached {safe_repr(effect.value)} under {effect.key!r}")
        elif not forged:
            self.check_scope(tab, value, f"cached under {effect.key!r} (from {effect.origin})")

    def note_shared_error(self, tab: Tab, key: str) -> None:
        """The tab shared a failure of ``key`` (``share_error``): a back-off starts, and every waiter fails."""
        self.note_failure(tab, key)
        self.shared_errors.append((self.world.now, tab.digest, key, tab.index))

    def shared_error_outcomes(self, delay_max: float) -> list[Violation]:
        """An execute of a shared error's key, waiting in a tab of that scope when the failure
        reached it (within two message delays), ends with an error. Left out: a tab frozen or in
        the back/forward cache meanwhile (its inputs queue or drop), one that switched scope, and
        executes after the sharer went (its post may not leave)."""
        sim, found = self.world, []
        for at, digest, key, origin in self.shared_errors:
            sharer = sim.tabs[origin]
            if sharer.end_time is not None and sharer.end_time <= at + 2 * delay_max:
                continue
            for record in sim.execs:
                if (record.key != key or record.digest != digest or record.start >= at or record.outcome != "resolved"
                        or record.end is None or record.end <= at + 2 * delay_max):
                    continue
                tab = sim.tabs[record.tab_index]
                if any(a <= record.end and b >= record.start for a, b in tab.frozen_spans):
                    continue
                if tab.scope_since is not None and tab.scope_since > record.start:
                    continue
                found.append(Violation("share-error", record.end, (
                    f"tab {record.tab}: execute of {key!r} waiting since {record.start:.1f} resolved at "
                    f"{record.end:.1f} ({record.source}), after tab {sharer.id} shared its failure at {at:.1f}")))
        return found

    def check_resolved(self, tab: Tab, record: ExecRecord, value: Any, source: str) -> bool:
        """An execute resolved with a value of its key; the server's (not a forger's) are checked
        further (:meth:`check_scope`, :meth:`check_served`). Returns whether it was the server's."""
        if not value_matches(value, record.key):
            self.violate("value", f"tab {tab.id}: execute of {record.key!r} resolved with {safe_repr(value)}")
            return False
        if "forged" in value:
            return False
        self.check_scope(tab, value, f"execute of {record.key!r} resolved from the {source} with")
        self.check_served(tab, record, value, source)
        return True

    def check_rejected(self, tab: Tab, record: ExecRecord, error: BaseException) -> None:
        """An execute is rejected only with an error a fault, the core or a forger explains, and a
        back-off it reports ends in time (:meth:`check_blocked`)."""
        name = error.error_type if isinstance(error, SharedFlowError) else type(error).__name__
        if name not in self.allowed_errors:
            self.violate("execute", f"tab {tab.id}: execute of {record.key!r} rejected with {safe_repr(error)}")
        if isinstance(error, SharedFlowError) and error.retry_in > 0:
            self.check_blocked(tab, record.key, error.retry_in)

    def check_scope(self, tab: Tab, value: dict[str, Any], what: str) -> None:
        """A value the tab caches or resolves with was produced for the tab's own scope (the server's
        values say which); a hostile post's forged values are trusted, as any post of the scope."""
        self.scope_checks += 1
        if "scope" in value and value["scope"] == tab.scope:
            return
        produced = f"for scope {value['scope']!r}" if "scope" in value else "without a scope"
        self.violate("cross-scope", f"tab {tab.id} (scope {tab.scope!r} since {tab.scope_since}): {what} "
                                    f"{safe_repr(value)}, produced {produced}")

    def check_served(self, tab: Tab, record: ExecRecord, value: dict[str, Any], source: str) -> None:
        """A resolved value is the server's, unchanged, and fresh; from the mesh, it is cached too."""
        world, config = self.world, self.world.config
        age = self.true_age(value)
        if source != "call":
            self.max_served_age = max(self.max_served_age, age - config.stale_time)
            if age > config.stale_time + self.freshness_slack:
                self.stale_serves.append((world.now, tab.id, record.key, age))
        call = value.get("call")
        produced = self.server.produced_values.get(call) if isinstance(call, int) else None
        if produced is not None:
            try:
                same = json.dumps(value, sort_keys=True) == produced
            except (TypeError, ValueError):
                same = False
            if not same:
                self.violate("value", f"tab {tab.id}: execute of {record.key!r} got {safe_repr(value)} from the "
                                      f"{source}, not what the server returned ({produced[:120]}): a caller or a flow "
                                      "mutated an object the mesh shares")
        if (source == "mesh" and world.now >= self.settled_at and config.share_cache
                and age + self.freshness_slack < config.stale_time
                and not self.predates_mutation(record.key, tab.digest, call)):
            entry = next((e for e in tab.node.cache.held() if e.key == record.key), None)
            if entry is None or entry.value != value:
                self.violate("cache", f"tab {tab.id} got {safe_repr(value)} from the mesh but caches "
                                      f"{None if entry is None else safe_repr(entry.value)}")

    def check_blocked(self, tab: Tab, key: str, retry_in: float) -> None:
        """A back-off ends within ``max_error_backoff`` of the failure that started it (in this tab's view)."""
        now = self.world.now
        cap = self.world.config.max_error_backoff
        started = max((t for t in self.failure_times.get((tab.digest, key), ()) if t <= now), default=None)
        slack = 2 * self.world.delay[1]
        blocked = now + retry_in - started if started is not None else math.inf
        if retry_in <= cap + 1e-6 and blocked <= cap + slack:
            return
        if started is not None and any(a <= now and b >= started for a, b in tab.frozen_spans):
            return  # the Failure waited in a frozen tab's queue: its retry_in did not age meanwhile
        since = "no failure of that key" if started is None else f"the failure at {started:.1f}"
        self.violate("blocked", f"tab {tab.id}: {key!r} is blocked for {retry_in:,.1f}ms more "
                                f"(until {now + retry_in:,.1f}) after {since}; max_error_backoff is {cap:,.0f}ms")

    def check_synced(self, joiner: Tab, node: MeshNode) -> None:
        """A tab that joined a settled mesh (opened, or switched scope: ``node``) holds every entry of
        its scope it was owed when it asked.

        Owed: fresh entries produced before it joined (later ones come by broadcast) that
        the protocol promises to sync: leader-follower, what the leader holds; peer-to-peer,
        what each tab produced itself. Fresh entries some tab holds but nobody was bound to
        sync (their producer left, peer-to-peer; the leader, elected after joining late,
        never had them) are only counted in ``unsynced``: a known limitation.
        """
        world, config = self.world, self.world.config
        if not joiner.alive or joiner.scope_since is None or joiner.node is not node:
            return  # gone, or switched scope again since
        joined, digest = joiner.scope_since, joiner.digest
        scope = [t for t in world.open_tabs if t.node.scope_digest == digest]  # the joiner's mesh
        margin = self.sync_window + self.freshness_slack
        leader: str | None = None
        if config.strategy == "leader-follower":
            # The leader syncs joiners (another joiner may still be joining: the mesh need not
            # have converged). Without exactly one leader nobody was bound to.
            leaders = [t.id for t in scope if t.node.role is Role.LEADER]
            if len(leaders) != 1:
                return
            leader = leaders[0]
        owed: dict[str, tuple[float, Tab]] = {}
        held: set[str] = set()
        joiner_holds = {entry.key: entry for entry in joiner.node.cache.held()}
        for tab in scope:
            if tab is joiner:
                continue
            for entry in tab.node.cache.held():
                key = entry.key
                age = self.true_age(entry.value)
                if age + margin >= config.stale_time or world.now - age > joined:
                    continue  # may have gone stale before the Sync, or produced after the join
                if isinstance(entry.value, dict) and "pad" in entry.value:
                    continue  # larger than any message: no Sync can carry it
                have = joiner_holds.get(key)
                if have is not None and self.true_age(have.value) <= age:
                    continue
                origin = world.by_id.get(entry.origin)
                if self.cached_at.get((tab.index, key), -math.inf) > joined:
                    # Produced before the join, but still on its way to this tab when the joiner's
                    # Hello may have reached it (seed 888): nobody could sync it. Known limitation.
                    held.add(key)
                elif tab.id == leader or (leader is None and origin is tab):
                    owed[key] = (age, tab)
                else:
                    held.add(key)
        for key, (_, tab) in owed.items():
            self.violate("sync", f"tab {joiner.id} joined at {joined:.1f} but lacks {key!r}, "
                                 f"fresh in tab {tab.id}, which was to sync it")
        self.unsynced += len(held - set(owed))

    def true_age(self, value: Any) -> float:
        """How long ago the server produced ``value`` (a value of this run's calls; else infinite)."""
        call = value.get("call") if isinstance(value, dict) else None
        produced = self.server.produced.get(call) if isinstance(call, int) else None
        return math.inf if produced is None else self.world.now - produced

    # --- at the end of a phase, and of the run ---------------------------------------------------

    def check_members(self, quiet_at: float) -> None:
        """j. Who lists whom, some heartbeats after the end (see :class:`~.report.SimulationReport`)."""
        sim = self.world
        config, beat, delay = sim.config, sim.config.heartbeat, sim.delay[1]
        now = sim.now
        live = [t for t in sim.open_tabs if not t.frozen and not t.away]
        by_id = {t.id: t for t in live}

        def must_be_gone_by(node_id: str, digest: str) -> float:
            """When a member that is no live tab of scope ``digest`` must be off every list."""
            tab = sim.by_id.get(node_id)
            if tab is not None and tab.id != node_id:
                tab = None  # an ID a tab had before it renamed itself: gone, as if forged
            if tab is not None and tab.alive:  # a live tab of another scope now: it said Bye on switching
                return (tab.scope_since or quiet_at) + beat + 4 * delay
            # Gone, renamed, or never a tab (forged): heard last by the end of the faults at the latest.
            ended = max(tab.end_time or quiet_at, quiet_at) if tab is not None else quiet_at
            hidden = tab is None or tab.died_hidden or tab.end_time is None
            if sim.locks and tab is not None:
                return ended + sim.lock_delay[1] + beat + 4 * delay
            return ended + config.silence_limit(beat, hidden) + 2 * beat + 4 * delay

        def listed(viewer: Tab) -> set[str]:
            try:
                return set(viewer.node.members.ids())
            except Exception as error:  # a member ID that is no str got in: the decoder let it through
                self.violate("exception", f"tab {viewer.id}: its member list cannot be read: {error!r}")
                return set()

        def check(viewer: Tab, listed: set[str], should: set[str]) -> None:
            for missing in sorted(should - listed - {viewer.id}):
                self.violate("members", f"tab {viewer.id} ({viewer.node.role}) does not list the live member {missing}")
            for ghost in sorted(listed - should):
                if now >= must_be_gone_by(ghost, viewer.digest):
                    self.violate("members", f"tab {viewer.id} ({viewer.node.role}) still lists {ghost}, "
                                            f"which is no live member of its scope")

        for viewer in live:
            scope_mates = {t.id for t in live if t.digest == viewer.digest}
            node = viewer.node
            if config.strategy == "peer-to-peer":
                check(viewer, listed(viewer), scope_mates)
                continue
            if not node.is_leader:
                leader = by_id.get(node.leader or "")
                if leader is not None and leader.node.is_leader and node.successor != leader.node.successor:
                    self.violate("members", f"tab {viewer.id} names {node.successor} its successor, its leader "
                                            f"{leader.id} {leader.node.successor}")
                continue
            check(viewer, listed(viewer), scope_mates)

    def check_invalidations(self) -> None:
        """l. No lost invalidation: after a mutation, every live tab of its scope (there since before
        it, and neither frozen nor in the bfcache since) shows, of each invalidated flow it follows,
        data of a call that started after the invalidation (numbered above the server's count then).
        Excused: a followed key whose latest execute still runs (a refetch loading), was cancelled, or
        shows an error, and forged values."""
        world = self.world
        for mutation in self.server.mutations:
            for tab in world.open_tabs:
                if tab.digest != mutation.digest or tab.scope_since is None or tab.scope_since > mutation.time:
                    continue  # another scope's mesh, or it joined this one later
                if any(end >= mutation.time for _, end in tab.frozen_spans):
                    continue  # frozen or in the bfcache since: its page ran nothing meanwhile
                for flow in mutation.flows:
                    followed = tab.follows.get(flow)
                    if followed is None:
                        continue
                    key = followed[0]
                    latest = tab.latest.get(key)
                    if latest is None or latest.end is None or latest.cancelled:
                        continue
                    shown = tab.shown.get(key)
                    if not isinstance(shown, dict) or "forged" in shown:
                        continue
                    call = shown.get("call")
                    if isinstance(call, int) and call <= mutation.last_call:
                        self.violate("lost-invalidation", f"tab {tab.id} shows {key!r} of call {call} "
                                     f"(latest execute {latest.start:.1f}..{latest.end:.1f}, {latest.outcome}), "
                                     f"but tab {mutation.tab} invalidated {flow!r} at {mutation.time:.1f} after "
                                     f"call {mutation.last_call}")

    def predates_mutation(self, key: str, digest: str, call: Any) -> bool:
        """Whether call number ``call`` of ``key`` started before a mutation of its flow in scope ``digest``:
        its result reaches only the executes that waited for it, no cache takes it."""
        return isinstance(call, int) and any(
            m.digest == digest and call <= m.last_call and any(key_of_flow(key, f) for f in m.flows)
            for m in self.server.mutations)

    def met_mutation(self, record: ExecRecord) -> bool:
        """Whether a mutation of the execute's flow in its scope came while it waited: the call it
        waited on may have been superseded, and it waits for the next one."""
        end = record.end if record.end is not None else math.inf
        return any(m.digest == record.digest and record.flow in m.flows
                   and record.start - self.world.delay[1] <= m.time <= end for m in self.server.mutations)

    def mutated_between(self, key: str, digest: str, first: int, second: int) -> bool:
        """Whether a mutation of ``key``'s flow in scope ``digest`` came between calls number ``first`` and
        ``second``: the later call is the refetch it asks for, no duplicate."""
        return any(m.digest == digest and first <= m.last_call < second and any(key_of_flow(key, f) for f in m.flows)
                   for m in self.server.mutations)

    def check_held(self, when: str) -> None:
        """No live tab holds in its cache a value the server produced for another scope (the effects
        checked what entered; this checks what stayed, including what a scope switch left behind)."""
        for tab in self.world.open_tabs:
            for entry in tab.node.cache.held():
                value = entry.value
                if isinstance(value, dict) and "forged" not in value:
                    self.check_scope(tab, value, f"holds {when} under {entry.key!r}")

    def check_bounded(self, when: str) -> None:
        """Every number a live node holds that may have come from the wire is bounded.

        Its term and cache versions stay below :data:`WIRE_MAX`; a back-off ends within
        ``max_error_backoff``; its next deadline is no further than the longest timeout a
        follower may wait (a hidden leader's, or :data:`MAX_INTERVAL`'s silence limit).
        """
        config = self.world.config
        horizon = max(config.hidden_timeout, config.call_timeout, config.stale_time,
                      config.silence_limit(MAX_INTERVAL, True))
        for tab in self.world.open_tabs:
            if tab.away:
                continue
            node, now = tab.node, tab.last_local
            problems = []
            try:
                if not 0 <= node.term < WIRE_MAX:
                    problems.append(f"term {safe_repr(node.term)}")
                for failure in node.backoffs(now):
                    if failure.retry_in > config.max_error_backoff + 1e-6:
                        problems.append(f"a back-off of {failure.key!r} for {safe_repr(failure.retry_in)}ms more")
                    if not 0 <= failure.attempt < WIRE_MAX:
                        problems.append(f"attempt {safe_repr(failure.attempt)} of {failure.key!r}")
                for entry in node.cache.snapshot(now):
                    if not 0 <= entry.version < WIRE_MAX:
                        problems.append(f"version {safe_repr(entry.version)} of {entry.key!r}")
                deadline = node.next_deadline()
                if deadline is not None and deadline - now > horizon:
                    problems.append(f"its next deadline {safe_repr(deadline - now)}ms away")
            except BaseException:
                self.exception(tab, "inspecting its state")
                continue
            if problems:
                self.violate("bounded", f"tab {tab.id} {when}: {'; '.join(problems)} (bounds: {WIRE_MAX} for counts, "
                                        f"max_error_backoff {config.max_error_backoff:.0f}ms, deadlines within "
                                        f"{horizon:.0f}ms)")

    def bounds(self, call_max: float, delay_max: float, forged_leaders: bool = True) -> Bounds:
        """The bounds of the quiet phase, from the config and what the faults did (see :class:`Bounds`)."""
        config, world = self.world.config, self.world
        heartbeat = config.heartbeat
        # A dead leader is noticed at most a silence limit after its last heartbeat (sent
        # before the quiet phase; in flight for at most one delay). The limit is the hidden
        # one if a tab died while hidden: its last heartbeat told its followers to wait that long.
        hidden_death = any(tab.died_hidden for tab in world.tabs)
        silence = config.silence_limit(heartbeat, hidden_death)
        if forged_leaders and self.hostile_leaders and (not world.locks or self.hostile_lockless_leaders):
            # A forged leader (no Web Lock says it is gone: none in the world, or it said it
            # holds none, as a page without Web Locks would; seed 27184) is followed this long at most.
            silence = max(silence, config.silence_limit(MAX_INTERVAL, True))
        # Then: the highest candidate announces itself answer_timeout after standing; a tab
        # that waits for a higher candidate gives up after coordinator_timeout and stands
        # again (answer_timeout); a split brain heals when the lesser leader hears the greater
        # one's next heartbeat. Plus a few message delays along the chain.
        convergence = (silence + delay_max + config.answer_timeout + config.coordinator_timeout
                       + config.answer_timeout + heartbeat + 8 * delay_max)
        if config.strategy != "leader-follower":
            convergence = 0.0
        # An execute left over from the fault phase may, after convergence, wait out a request
        # to a tab that no longer leads (request_timeout), an accepted call that never reports
        # (call_timeout), a claim whose owner vanished (the silence limit of a claim), then
        # claim (claim_window) and call it (call_max), plus message delays.
        claim_silence = config.silence_limit(heartbeat, False)
        fault_tail = (config.effective_request_timeout + config.call_timeout + claim_silence
                      + config.claim_window + call_max + 8 * delay_max)
        if self.server.pathology_rate:  # a call that never returns is given up after call_timeout; a fallback may hang
            fault_tail += config.call_timeout + call_max
        # Once settled: Request → Accept → call → Result, or claim → call → Result.
        quiet = config.claim_window + call_max + 4 * delay_max
        return Bounds(convergence=convergence, fault_execute=convergence + fault_tail, quiet_execute=quiet)

    # Faults after which a key may rightly be called anew within one execute: a tab left, froze, slept
    # or came back, a twin or a scope switch moved the mesh, a caller's cancel ended a call.
    _DISRUPTIONS = frozenset({"crash", "close", "freeze", "throttle", "bfcache", "twin-id", "hand-over",
                              "scope-switch", "cancel", "long-outage"})
    # Faults that strike all through the fault phase (forged posts, misbehaving flows, cancelling callers).
    _PHASE_WIDE = frozenset({"hostile", "pathological", "cancel-callers"})

    def excess_attempts(self, quiet_at: float) -> list[Violation]:
        """k. A failing execute (the server's error), whose mesh (leader-follower) kept one leader and met
        no disruption from its start to its end, saw at most its flow's ``max_attempts`` calls of its key
        in its scope: the calling tab retries, every other tab waits, only the last failure is shared."""
        sim, server = self.world, self.server
        if sim.config.strategy != "leader-follower":
            return []
        disrupted = [t for t, kind in sim.faults.times if kind in self._DISRUPTIONS]
        phase_wide = any(sim.faults.get(kind) for kind in self._PHASE_WIDE)
        found = []
        for record in sim.execs:
            if record.outcome != "rejected" or record.end is None or record.tab_gone or record.digest is None:
                continue
            error = record.error
            if getattr(error, "error_type", type(error).__name__) != "ServerDown":
                continue
            start, end = record.start, record.end
            if phase_wide and start < quiet_at:
                continue
            if any(start - self.world.delay[1] <= t <= end for t in disrupted):
                continue
            if not any(a <= start and b >= end for a, b in self.converged_spans):
                continue
            if self.met_mutation(record):
                continue  # a mutation superseded its call: the refetch is a call of its own
            policy = sim.policies.get(record.flow)
            most = policy.max_attempts if policy is not None else 1
            calls = [c for c in server.calls.get(record.key, ()) if start <= c[0] <= end and c[5] == record.digest]
            if len(calls) > most:
                found.append(Violation(
                    "retries", end, f"execute of {record.key!r} in tab {record.tab} ({start:.1f}..{end:.1f}) saw "
                    f"{len(calls)} calls (tabs {', '.join(c[1] for c in calls)}); its flow allows {most} attempt(s)"))
        return found

    def judge(self, bounds: Bounds, quiet_at: float, end_at: float) -> SimulationReport:
        """The end-of-run checks (a. to g. of :class:`SimulationReport`, and leftovers), and the report."""
        sim, server = self.world, self.server
        config = sim.config
        violations = self.violations
        live = sim.open_tabs

        # a. convergence
        convergence: float | None = None
        if config.strategy == "leader-follower":
            leaders = converged_leaders(live)
            if not leaders:
                states = ", ".join(f"{t.id}:{t.node.role}->{t.node.leader}" + (f" (scope {t.scope})" if t.scope else "")
                                   for t in live)
                violations.append(Violation("convergence", end_at, f"not converged at the end: {states}"))
            elif self.converged_since is not None:
                convergence = max(0.0, self.converged_since - quiet_at)
                if convergence > bounds.convergence:
                    violations.append(Violation(
                        "convergence", self.converged_since,
                        f"converged {convergence:.1f}ms into the quiet phase; bound {bounds.convergence:.1f}ms"))
        else:
            for tab in sim.tabs:
                if tab.started and tab.node.role not in (Role.PEER, Role.LEFT):
                    violations.append(Violation(
                        "convergence", end_at, f"peer-to-peer tab {tab.id} has role {tab.node.role}"))

        # b. every execute ends in time
        max_fault = max_quiet = 0.0
        join_allowance = 2 * config.answer_timeout + 2 * sim.delay[1]
        joined_at = {tab.id: tab.scope_since if tab.scope_since is not None else tab.start_time
                     for tab in sim.tabs if tab.start_time is not None}
        outcomes: Counter[str] = Counter()
        for record in sim.execs:
            outcomes[record.outcome or ("lost" if record.tab_gone else "open")] += 1
            if record.outcome == "skipped":
                continue
            if record.end is None:
                if not record.tab_gone:
                    violations.append(Violation(
                        "execute", record.start, f"execute of {record.key!r} in tab {record.tab} never ended"))
                continue
            if not record.settled:
                limit = quiet_at + bounds.fault_execute
                if record.quiet:
                    limit = max(limit, record.start + bounds.quiet_execute)
                if record.start < quiet_at:
                    max_fault = max(max_fault, record.end - quiet_at)
            else:
                limit = record.start + bounds.quiet_execute
                # A tab that has just opened, or just switched, into a scope where no tab answers its
                # Hello must first elect itself (two answer_timeouts) before it can call.
                since = joined_at.get(record.tab)
                if since is not None and record.start - since < join_allowance:
                    limit += join_allowance
                if self.met_mutation(record):
                    limit += bounds.quiet_execute  # its call was superseded: the next one answers it
                max_quiet = max(max_quiet, record.end - record.start)
            if record.end > limit:
                violations.append(Violation(
                    "execute", record.start,
                    f"execute of {record.key!r} in tab {record.tab} took {record.end - record.start:.1f}ms "
                    f"(ended at {record.end:.1f}, bound {limit:.1f})"))

        delay_max = sim.delay[1]
        # c. one call per key per freshness window once stable: from when the mesh settled
        # (converged, no work left from the faults). Until then a tab may still work off the
        # faults: a leader frozen for less than the silence limit thaws and serves a request
        # whose sender, after request_timeout, already claimed the key and called it.
        # Without share_cache a result reaches only the tabs that waited for it: a tab that starts
        # waiting after the call ended (and the leader, which lacks the flow or did not make the
        # call, cannot serve it from its cache) calls again, as it must. So there, only a call by
        # a tab that already waited while the earlier call ran is a duplicate.
        # Scopes are separate meshes: each calls a key for its own data (per scope digest).
        stable = self.settled_at
        concurrent_only = not config.share_cache
        for key, calls in server.calls.items():
            by_scope: dict[str, list[tuple[float, str, bool, int, float, str, int, float]]] = defaultdict(list)
            for call in calls:
                if call[0] >= stable:
                    by_scope[call[5]].append(call)
            for first, second in (pair for group in by_scope.values() for pair in zip(group, group[1:], strict=False)):
                if second[0] - first[0] >= config.stale_time or first[3] in server.given_up:
                    continue  # (a call given up produced nothing: nobody waited on it any more, or it timed out)
                if self.mutated_between(key, second[5], first[3], second[3]):
                    continue  # a mutation came between: the second call is its refetch
                first_end = server.produced.get(first[3], math.inf) + 2 * delay_max
                if concurrent_only and second[4] > first_end:
                    continue
                violations.append(Violation(
                    "duplicate-call", second[0],
                    f"{key!r} called at {first[0]:.1f} and {second[0]:.1f} (tabs {first[1]}, {second[1]}), "
                    f"less than stale_time {config.stale_time:.0f}ms apart with a stable mesh"
                    + (f" (tab {second[1]} waited for it since {second[4]:.1f})" if concurrent_only else "")))

        # e. no retry storm: once a call failed (and its Failure reached every tab of its scope), no
        # tab that heard it calls that key again before the shared back-off ends (error_backoff at least).
        for key, ends in server.ends.items():
            for failed_at, ok, digest in ends:
                if ok:
                    continue
                low, high = failed_at + 2 * delay_max, failed_at + config.error_backoff
                success = min((t for t, good, d in ends if good and t > failed_at and d == digest), default=math.inf)
                for start, tab_id, _, _, _, called_for, index, since in server.calls[key]:
                    if not low <= start < min(high, success) or called_for != digest:
                        continue
                    tab = sim.tabs[index]
                    if since > failed_at:
                        continue  # it joined (or switched to) the scope later (a Sync may or may not tell it)
                    if any(a <= start and b >= failed_at for a, b in tab.frozen_spans):
                        continue  # frozen meanwhile: a tick queued before the Failure may run first
                    violations.append(Violation(
                        "backoff", start, f"tab {tab_id} called {key!r} at {start:.1f}, within the back-off "
                        f"of the failure at {failed_at:.1f} (error_backoff {config.error_backoff:.0f}ms)"))

        # k. retries: with a stable mesh, a failing execute's key is called at most its flow's max_attempts times
        violations.extend(self.excess_attempts(quiet_at))

        # m. share_error: every execute of the key waiting in a tab of the scope when the failure
        # reached it ends with an error, not a value (one waiting on its own tab's running call too)
        violations.extend(self.shared_error_outcomes(delay_max))

        # f. what a caller passed to execute is unchanged (a flow may mutate only its own copy)
        for record in sim.execs:
            if record.sent_args and json.dumps(list(record.args), sort_keys=True) != record.sent_args:
                violations.append(Violation(
                    "value", record.start, f"the arguments tab {record.tab} passed to execute {record.key!r} were "
                    f"changed to {safe_repr(list(record.args))}: a flow mutated the caller's objects"))

        # g. no unexpected exception was caught inside any node
        for tab in sim.tabs:
            errors = tab.node.stats.internal_errors
            if tab.started and errors:
                violations.append(Violation(
                    "internal-error", end_at, f"tab {tab.id}: stats.internal_errors is {errors}{last_error(tab.node)}"))

        # leftovers
        for tab in live:
            pending = sim.pending_keys(tab)
            if pending or tab.waiters:
                violations.append(Violation(
                    "leftover", end_at, f"tab {tab.id} still has pending {pending} "
                    f"and {len(tab.waiters)} open waiter(s) at the end"))
        if sim.calls_in_flight:
            violations.append(Violation(
                "leftover", end_at, f"{sim.calls_in_flight} call(s) still in flight at the end"))

        report = SimulationReport(
            seed=sim.seed, plan=None, config=config, violations=violations, bounds=bounds,
            quiet_at=quiet_at, end_at=end_at, tabs_opened=sum(1 for t in sim.tabs if t.started),
            faults=Counter(sim.faults), executes=len(sim.execs), outcomes=outcomes, calls=server.call_count,
            messages=sim.messages, deliveries=sim.deliveries,
            elections=sum(t.node.stats.elections for t in sim.tabs),
            convergence=convergence, max_fault_latency=max_fault, max_quiet_latency=max_quiet,
            tab_ms=0.0, dropped=sum(t.node.stats.dropped for t in sim.tabs), trace=sim.trace,
        )
        report.tab_ms = sim.tab_ms()
        report.settled_at = self.settled_at
        report.stale_serves = len(self.stale_serves)
        report.max_served_age = self.max_served_age
        report.unsynced = self.unsynced
        report.failovers = self.failovers
        report.events = sim.events
        report.scope_checks = self.scope_checks
        return report
