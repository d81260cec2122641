"""Browser tabs with real :class:`~pyflowmesh.core.node.MeshNode` s on one BroadcastChannel, in virtual time.

One :class:`VirtualNetwork` serves the simulator (:class:`~.world.Simulation` adds a server
with faults and the oracle), the node tests and the election benchmarks. It drives the
sans-I/O core the way the asyncio runtime does, and carries out every effect the core
emits: an effect type it has no handler for is an error (:class:`NetworkError`), never
dropped, because a runtime that drops one leaves someone waiting.

There is no wall clock and no asyncio: one event heap of ``(time, seq, event)`` in virtual
milliseconds and one ``random.Random(seed)`` drive everything, so a seed reproduces a run.
What it models:

* **BroadcastChannel**: a post reaches every *other* tab open at the time it was posted
  (never its sender), after a random delay, in order per sender→receiver pair; posts of
  different senders may overtake each other. It enters a tab as text through
  :meth:`MeshNode.receive`, so the wire format is exercised end to end (``decoded=True``
  hands the decoded message to ``handle`` instead: for thousands of tabs).
* **Clocks and timers**: each tab has its own clock (``performance.now()`` starts with its
  page); after every input a tick is armed at ``node.next_deadline()`` (a stale tick is
  ignored by a generation number; one that finds its deadline moved later re-arms).
  A hidden tab's timers fire on a throttling grid (up to once a minute, as Chrome's).
* **Web Locks** (``locks``): a tab watching a peer (``WatchPeers``) gets ``peer_gone``
  ``lock_delay`` after that peer crashes, closes or leaves for the back/forward cache (at
  once if it is gone already). Locks are named by (scope digest, ID), as the browser
  transport names them; a frozen tab keeps its lock.
* **The tabs' lifecycle**: open, crash (no ``Bye``; its posts in flight still arrive), polite
  close (``leave``), freeze and thaw (a frozen tab runs nothing: its messages, ticks, call
  outcomes and lock notices queue and run in order on thaw), hide and show, the
  back/forward cache (``set_frozen``; posts meanwhile never reach it), two tabs with one
  ID (the core renames one: ``Renamed``), and scope switches (``FlowMesh.set_scope``).
* **Flow calls**: a ``StartCall`` runs as a task whose outcome a :class:`~.calls.CallServer`
  decides (:class:`~.calls.EchoServer` by default); a ``CancelCall`` cancels it, though a
  cancelled task may still report (the node must ignore that).

Script it with the methods that take ``at`` (virtual ms; default: now), by tab ID. The
methods ending in ``_now`` act at once on a :class:`~.tab.Tab`, for code that already runs
inside an event (a scenario's actions). Inspect with :meth:`node`, :meth:`leader`,
:meth:`leaders`, :meth:`converged`; executes come back as :class:`~.records.ExecRecord` s
filled in as the run goes.
"""

from __future__ import annotations

import heapq
import json
import math
import random
from collections import Counter
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

from ..core.config import MeshConfig
from ..core.effects import (
    EFFECT_TYPES,
    CacheUpdated,
    CallRetrying,
    CancelCall,
    CloseSource,
    Deliver,
    FailureShared,
    LeaderChanged,
    MembersChanged,
    OpenSource,
    Reject,
    Renamed,
    Resolve,
    Send,
    StartCall,
    StreamChanged,
    WatchPeers,
)
from ..core.election import Role
from ..core.node import MeshNode
from ..core.policy import CallPolicy
from ..core.values import cache_key
from ..core.wire import Message
from ..errors import MeshDisposedError, MeshError, ScopeChangedError
from .calls import CallOutcome, CallServer, EchoServer
from .clock import RESOLUTION, quantize
from .records import ExecRecord
from .streams import SimStreams
from .tab import Tab
from .text import describe_post, safe_repr

__all__ = ["ANY_SCOPE", "FaultLog", "NetworkError", "VirtualNetwork", "converged_leaders", "every_effect"]


class FaultLog(Counter[str]):
    """How many faults of each kind struck, and when each was counted (``times``: (time, kind))."""

    def __init__(self, clock: Callable[[], float]) -> None:
        super().__init__()
        self._clock = clock
        self.times: list[tuple[float, str]] = []

    def __setitem__(self, kind: str, count: int) -> None:
        if count > self.get(kind, 0):
            self.times.append((self._clock(), kind))
        super().__setitem__(kind, count)

ANY_SCOPE: Any = object()
""""Every scope", where a scope may be given (``None`` is the shared scope)."""

_DELIVER, _TICK, _CALL_DONE, _PEER_GONE, _ACTION = range(5)


class NetworkError(RuntimeError):
    """Something the network cannot carry out: an unknown effect, an outcome for no waiter, a node that raised."""


EffectHandler = Callable[[Tab, Any], None]


def every_effect(handlers: Mapping[type, EffectHandler]) -> dict[type, EffectHandler]:
    """``handlers`` as a dispatch table, checked to carry out every type of :data:`EFFECT_TYPES`, and no other."""
    missing = [t.__name__ for t in EFFECT_TYPES if t not in handlers]
    unknown = [t.__name__ for t in handlers if t not in EFFECT_TYPES]
    if missing or unknown:
        raise TypeError(f"an effect table must handle exactly the core's effects; missing {missing}, unknown {unknown}")
    return dict(handlers)


def converged_leaders(tabs: Iterable[Tab]) -> dict[str, str] | None:
    """Per scope digest, the one leader its tabs follow; ``None`` unless every scope's mesh among
    ``tabs`` has exactly one leader that all its other tabs follow (scopes are separate meshes)."""
    leaders: dict[str, str] = {}
    followers: list[Tab] = []
    for tab in tabs:
        role = tab.node.role
        if role is Role.LEADER:
            digest = tab.node.scope_digest
            if digest in leaders:
                return None
            leaders[digest] = tab.id
        elif role is Role.FOLLOWER:
            followers.append(tab)
        else:
            return None
    for tab in followers:
        leader = leaders.get(tab.node.scope_digest)
        if leader is None or tab.node.leader != leader:
            return None
    return leaders


class VirtualNetwork:
    """Tabs, a channel, flow calls and Web Locks in virtual time. Script it, then :meth:`run_until`.

    Args:
        seed: seeds every random choice (IDs, clocks, delays, call durations, lock hand-offs).
        config: every tab's mesh options (a tab may be given its own).
        locks: model Web Locks.
        delay: the channel's delivery delay range (ms).
        call_duration: how long a flow call takes (ms), for the default server.
        lock_delay: how long a released Web Lock takes to reach the tabs waiting on it (ms).
        verbose: keep an event trace in ``trace``.
        server: decides how flow calls end (default: :class:`EchoServer`).
        decoded: deliver the decoded message (``MeshNode.handle``) rather than its text.
        log_posts: keep every post in ``posts`` as ``(time, sender ID, message)``.
        policies: each flow's call policy (retries, timeout), registered with it in every tab.
    """

    default_flows: tuple[str, ...] = ()
    """The flows a tab registers unless told otherwise."""
    default_streams: tuple[str, ...] = ()
    """The streams every tab's page has (registered with ``stream_grace``)."""
    stream_grace: float = 5000.0

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
        server: CallServer | None = None,
        decoded: bool = False,
        log_posts: bool = False,
        policies: Mapping[str, CallPolicy] | None = None,
    ) -> None:
        self.seed = seed
        self.rng = random.Random(seed)
        self.policies: dict[str, CallPolicy] = dict(policies or {})  # the page's flows' retry/timeout policies
        self.config = config
        self.locks = locks
        self.delay = delay
        self.call_duration = call_duration
        self.lock_delay = lock_delay
        self.server: CallServer = server if server is not None else EchoServer(self.rng, call_duration)
        self.decoded = decoded
        self.posts: list[tuple[float, str, Message]] | None = [] if log_posts else None
        self.now = 0.0
        self._heap: list[tuple[float, int, int, Any, Any, Any]] = []
        self._seq = 0
        self.tabs: list[Tab] = []  # every tab ever opened, by index
        self.by_id: dict[str, Tab] = {}
        self._live: list[Tab] = []  # started, not crashed or closed (frozen ones included)
        self.execs: list[ExecRecord] = []
        self.messages = 0  # posts
        self.deliveries = 0  # posts taken in by a tab
        self.faults = FaultLog(lambda: self.now)  # what happened to the tabs (crashes, freezes...), and when
        self.events: Counter[str] = Counter()  # what the core did: calls given up, renames...
        self.trace: list[str] | None = [] if verbose else None
        self._leadership_dirty = False  # set when a tab's view of its leader may have changed
        # Calls started and not yet ended or given up (CancelCall): (tab index, call_id) -> hangs
        self._running: dict[tuple[int, int], bool] = {}
        self._hung: dict[tuple[int, int], CallOutcome] = {}  # calls that never return
        self._handlers = every_effect({
            Send: self._on_send, StartCall: self._on_start_call, CancelCall: self._on_cancel_call,
            CallRetrying: self._on_call_retrying,
            Resolve: self._settle, Reject: self._settle, LeaderChanged: self._on_leader_changed,
            CacheUpdated: self._on_cache_updated, FailureShared: self._on_failure_shared,
            WatchPeers: self._on_watch_peers, MembersChanged: self._on_members_changed, Renamed: self._on_renamed,
            OpenSource: lambda tab, e: self.streams.on_open(tab, e),
            CloseSource: lambda tab, e: self.streams.on_close(tab, e),
            Deliver: lambda tab, e: self.streams.on_deliver(tab, e),
            StreamChanged: lambda tab, e: self.streams.on_changed(tab, e),
        })
        self.streams = SimStreams(self)  # the stream server, its connections, the stream checks

    # --- scripting, by tab ID, at a virtual time ------------------------------------------

    def at(self, when: float | None, action: Callable[[], Any]) -> None:
        """Run ``action()`` at virtual time ``when`` (``None``: now, after what is due now)."""
        self._push(self.now if when is None else quantize(when), _ACTION, None, action, None)

    def add_tab(
        self,
        at: float | None = None,
        *,
        node_id: str | None = None,
        flows: Iterable[str] | None = None,
        config: MeshConfig | None = None,
        scope: str | None = ANY_SCOPE,
    ) -> str:
        """Open a tab at ``at``; returns its node ID (random 8 hex digits unless given).

        An ID some tab already has makes two tabs with one ID (the core renames one).
        ``flows``: the flows its page has (default :attr:`default_flows`);
        ``scope``: the tab's scope (default: the config's).
        """
        if scope is not ANY_SCOPE and scope != (config or self.config).scope:
            config = (config or self.config).with_options(scope=scope)
        tab = self.new_tab(node_id, tuple(self.default_flows if flows is None else flows), config)
        self.at(at, lambda: self.open_now(tab))
        return tab.id

    def add_twin(self, at: float | None = None, of: str | None = None) -> None:
        """At ``at``, open a tab with the ID of a live tab (``of``, else a random one): two tabs, one ID."""
        def act() -> None:
            live = [t for t in self._live if not t.away]
            target = self.by_id.get(of) if of is not None else (self.rng.choice(live) if live else None)
            if target is None or not target.alive:
                return
            self.faults["twin-id"] += 1
            twin = self.new_tab(target.id, target.flows, target.node.config)  # the same page: the same session
            self.log(twin, f"TWIN of tab {target.index}")
            self.open_now(twin)
        self.at(at, act)

    def crash(self, tab_id: str, at: float | None = None) -> None:
        """The tab vanishes without a word (renderer crash, OOM, killed)."""
        self.at(at, lambda: self.crash_now(self.by_id[tab_id]))

    def close(self, tab_id: str, at: float | None = None) -> None:
        """The tab closes politely: ``leave`` (Bye, waiters rejected) and vanishes."""
        self.at(at, lambda: self.close_now(self.by_id[tab_id]))

    def freeze(self, tab_id: str, at: float | None = None) -> None:
        """The page is frozen without warning (as DevTools or a discarding browser do)."""
        self.at(at, lambda: self.freeze_now(self.by_id[tab_id]))

    def thaw(self, tab_id: str, at: float | None = None) -> None:
        """The frozen page runs again: what queued meanwhile runs in order."""
        self.at(at, lambda: self.thaw_now(self.by_id[tab_id]))

    def hide(self, tab_id: str, at: float | None = None, period: float = 60_000.0) -> None:
        """The tab becomes hidden; its timers fire on a ``period`` grid (up to ``period`` late)."""
        self.at(at, lambda: self.hide_now(self.by_id[tab_id], period))

    def show(self, tab_id: str, at: float | None = None) -> None:
        """The tab becomes visible again: its timers run on time."""
        self.at(at, lambda: self.show_now(self.by_id[tab_id]))

    def leave_for_bfcache(self, tab_id: str, at: float | None = None) -> None:
        """The page leaves into the back/forward cache (``pagehide`` with ``persisted``)."""
        self.at(at, lambda: self.leave_for_bfcache_now(self.by_id[tab_id]))

    def come_back(self, tab_id: str, at: float | None = None) -> None:
        """The page is restored from the back/forward cache (``pageshow`` with ``persisted``)."""
        self.at(at, lambda: self.come_back_now(self.by_id[tab_id]))

    def switch_scope(self, tab_id: str, scope: str | None, at: float | None = None) -> None:
        """The page switches scope (``FlowMesh.set_scope``: a login, logout or account switch).

        To its own scope again, it is ``set_scope(scope, forget=True)``: a full reset and rejoin.
        A frozen page runs no code: it switches nothing.
        """
        self.at(at, lambda: self.switch_scope_now(self.by_id[tab_id], scope))

    def execute(self, tab_id: str, flow: str, args: Sequence[Any] = (), at: float | None = None) -> ExecRecord:
        """Execute ``flow(*args)`` in the tab at ``at``; the record fills in as the run goes."""
        record = ExecRecord(tab_id, flow, tuple(args), cache_key(flow, tuple(args)), -1.0)
        self.at(at, lambda: self.execute_now(self.by_id[tab_id], record))
        return record

    def listen(self, tab_id: str, stream: str, at: float | None = None) -> None:
        """At ``at`` the tab starts listening to ``stream`` (one of ``default_streams``)."""
        self.at(at, lambda: self.streams.listen_now(self.by_id[tab_id], stream))

    def unlisten(self, tab_id: str, stream: str, at: float | None = None) -> None:
        """At ``at`` the tab stops listening to ``stream``."""
        self.at(at, lambda: self.streams.unlisten_now(self.by_id[tab_id], stream))

    def cancel(self, record: ExecRecord, at: float | None = None) -> None:
        """At ``at`` the caller of ``record`` stops waiting (``MeshNode.cancel``), if it still waits."""
        self.at(at, lambda: self.cancel_now(record))

    def inject(self, raw: Any, at: float | None = None, kind: str = "noise") -> None:
        """A foreign script (or another version of the page) posts ``raw`` on the channel.

        ``raw`` may be a callable: it makes the text at the time of posting (from the live tabs).
        """
        def post() -> None:
            data = raw() if callable(raw) else raw
            self.faults[kind] += 1
            self.log(None, f"{kind} {str(data)[:60]!r}")
            self._injected(data)
            for tab in list(self._live):
                self._push(self.now + self._delay(), _DELIVER, tab, data, -1)
        self.at(at, post)

    # --- running ----------------------------------------------------------------------------

    def run_until(self, until: float, stop: Callable[[], bool] | None = None) -> bool:
        """Process every event up to and including virtual time ``until``.

        With ``stop``, return ``True`` as soon as it holds, checked whenever some tab's view
        of its leader may have changed (the time is then that event's); else ``False``.
        """
        heap = self._heap
        pop = heapq.heappop
        decoded = self.decoded
        while heap and heap[0][0] <= until:
            when, _, kind, tab, a, b = pop(heap)
            self.now = when
            if kind == _DELIVER:
                if not tab.alive:
                    continue
                if tab.frozen:
                    if not tab.away:  # a page in the back/forward cache gets nothing
                        tab.backlog.append((_DELIVER, a, b))
                    continue
                # _deliver and _after_input, inlined: most events are deliveries.
                if self.trace is not None:
                    self.log(tab, f"recv {describe_post(a)}")
                self.deliveries += 1
                local = when + tab.offset
                if local < tab.last_local:
                    local = tab.last_local
                tab.last_local = local
                node = tab.node
                try:
                    if decoded and b >= 0:
                        node.handle(a, local)
                    else:
                        node.receive(a, local)
                except BaseException:
                    self._exception(tab, "receive")
                effects = node.take_effects()
                if effects:
                    self._apply(tab, effects)
                if tab.alive:
                    deadline = node.next_deadline()
                    if deadline is not None:
                        due = deadline - tab.offset
                        if tab.hidden or tab.tick_at is None or due < tab.tick_at:
                            self._reschedule(tab)
            elif kind == _TICK:
                if a != tab.gen or not tab.alive:
                    continue
                tab.tick_at = None
                if tab.frozen:
                    if not tab.away:
                        tab.backlog.append((_TICK, None, None))
                    continue
                self._tick(tab)
            elif kind == _CALL_DONE:
                if b.node is not tab.node:
                    continue  # a call of the node the tab had before a scope switch: cancelled
                self._running.pop((tab.index, a), None)
                if not tab.alive:
                    continue
                if tab.frozen:
                    tab.backlog.append((_CALL_DONE, a, b))
                    continue
                self._call_done(tab, a, b)
            elif kind == _PEER_GONE:
                if not tab.alive or b is not tab.node or a not in tab.watching:
                    continue  # a watch stopped before it was granted (or one of the node before a scope switch)
                tab.watching.discard(a)  # a lock request is granted once
                if tab.frozen:
                    tab.backlog.append((_PEER_GONE, a, b))
                    continue
                self._peer_gone(tab, a)
            else:
                a()
            if self._leadership_dirty:
                self._leadership_dirty = False
                self._leadership_changed()
                if stop is not None and stop():
                    return True
        self.now = max(self.now, until)
        return False

    # --- inspection -------------------------------------------------------------------------

    @property
    def open_tabs(self) -> Sequence[Tab]:
        """The open tabs (started, not crashed or closed; frozen ones included), in the order they opened."""
        return self._live

    @property
    def calls_in_flight(self) -> int:
        """Calls started and not yet ended, nor given up by their node."""
        return len(self._running)

    def node(self, tab_id: str) -> MeshNode:
        return self.by_id[tab_id].node

    def live(self) -> list[str]:
        """IDs of the open tabs (frozen ones included)."""
        return [tab.id for tab in self._live]

    def leaders(self, scope: str | None = ANY_SCOPE) -> list[str]:
        """IDs of the open tabs whose role is LEADER (of ``scope``'s mesh if given; else of any scope)."""
        return [tab.id for tab in self._in_scope(scope) if tab.node.role is Role.LEADER]

    def leader(self, scope: str | None = ANY_SCOPE) -> str | None:
        """The one leader every open tab of ``scope`` follows (without ``scope``: every open tab, all
        in one scope), or ``None`` if that mesh is not converged."""
        leaders = converged_leaders(self._in_scope(scope))
        return None if leaders is None or len(leaders) != 1 else next(iter(leaders.values()))

    def converged(self) -> bool:
        """Whether the mesh of every scope with open tabs has exactly one leader that all of them follow."""
        return bool(converged_leaders(self._live))

    def scope_of(self, tab_id: str) -> str | None:
        """The tab's scope now (``None``: the shared one)."""
        return self.by_id[tab_id].scope

    def cached(self, tab_id: str, key: str) -> Any:
        """The fresh value the tab's cache holds for ``key`` now (``None`` if none)."""
        tab = self.by_id[tab_id]
        return tab.node.get_cached(key, self.now + tab.offset)

    def busy(self, tab: Tab) -> bool:
        """Whether the tab's node works on some key (an execute, a call, a request)."""
        return bool(tab.node.pending_keys())

    def pending_keys(self, tab: Tab) -> list[str]:
        """The keys the tab's node works on, sorted."""
        return sorted(tab.node.pending_keys())

    def tab_ms(self) -> float:
        """Simulated tab-time: the sum over tabs of how long each was open (ms)."""
        total = 0.0
        for tab in self.tabs:
            if tab.start_time is not None:
                total += (tab.end_time if tab.end_time is not None else self.now) - tab.start_time
        return total

    def log(self, tab: Tab | None, text: str) -> None:
        """Add a line to the trace (if kept): the virtual time, the tab's ID (or dashes), ``text``."""
        if self.trace is not None:
            who = tab.id if tab is not None else "--------"
            self.trace.append(f"{self.now:11.3f} {who} {text}")

    # --- acting now, on a tab ---------------------------------------------------------------

    def new_tab(self, node_id: str | None, flows: tuple[str, ...], config: MeshConfig | None = None) -> Tab:
        """A tab not opened yet (:meth:`open_now` opens it), with its node and a clock of its own."""
        if node_id is None:
            node_id = self._fresh_id()
        node = self._make_node(node_id, config or self.config, flows)
        offset = quantize(self.rng.uniform(0.0, 50_000.0))
        tab = Tab(len(self.tabs), node_id, node, offset, flows)
        self.tabs.append(tab)
        self.by_id.setdefault(node_id, tab)  # a second tab with one ID: by_id keeps the first
        return tab

    def open_now(self, tab: Tab) -> None:
        """The page loads: its node joins the mesh."""
        tab.started = tab.alive = True
        tab.start_time = tab.scope_since = self.now
        self._joined(tab)
        self._live.append(tab)
        self.log(tab, "start")
        try:
            tab.node.start(self._local(tab))
        except BaseException:
            self._exception(tab, "start")
        self._leadership_dirty = True
        self._after_input(tab)

    def execute_now(self, tab: Tab, record: ExecRecord) -> None:
        """The page executes ``record``'s flow (skipped, and so recorded, in a closed or frozen tab)."""
        record.start = self.now
        record.tab_index = tab.index
        record.digest = tab.digest
        self.execs.append(record)
        if not tab.alive or tab.frozen:
            record.tab_gone = not tab.alive
            record.outcome = "skipped"
            record.end = self.now
            return
        self.log(tab, f"execute {record.key[:80]}")
        if not record.bad_args:
            record.sent_args = json.dumps(list(record.args), sort_keys=True)
        try:
            record.waiter = tab.node.submit(record.flow, record.args, self._local(tab))
        except (TypeError, MeshError) as error:
            if not record.bad_args:
                self._exception(tab, f"execute({record.key!r})")
            record.outcome, record.end, record.error = "refused", self.now, error  # the documented error
        except BaseException:
            self._exception(tab, f"execute({record.key[:80]!r})")
            record.outcome, record.end = "raised", self.now
        else:
            tab.waiters[record.waiter] = record
        self._after_input(tab)

    def cancel_now(self, record: ExecRecord) -> None:
        """The caller of ``record`` stops waiting, if it still waits in a page that runs."""
        if record.end is not None or record.tab_index < 0:
            return  # it ended already (or never started): nothing to cancel
        tab = self.tabs[record.tab_index]
        if not tab.alive or tab.frozen or tab.waiters.get(record.waiter) is not record:
            return  # a frozen page runs no code: its caller cannot cancel now
        self.faults["cancel"] += 1
        self.log(tab, f"cancel execute {record.key} (waiter {record.waiter})")
        del tab.waiters[record.waiter]
        tab.cancelled_waiters.add(record.waiter)
        record.cancelled, record.outcome, record.end = True, "cancelled", self.now
        try:
            tab.node.cancel(record.waiter, self._local(tab))
        except BaseException:
            self._exception(tab, f"cancel(waiter {record.waiter} of {record.key!r})")
        self._after_input(tab)

    def crash_now(self, tab: Tab) -> None:
        """The tab vanishes without a word."""
        if not tab.alive:
            return
        self.faults["crash"] += 1
        self.log(tab, f"CRASH ({tab.node.role})")
        self._vanish(tab, "crash")

    def close_now(self, tab: Tab) -> None:
        """The tab closes politely: its node leaves (``Bye``, waiters rejected), then it vanishes."""
        if not tab.alive:
            return
        if tab.away:
            self.come_back_now(tab)  # a page in the bfcache is evicted without a word, not closed
        if tab.frozen:
            self.thaw_now(tab)  # a frozen page runs nothing; it would be discarded, not closed
        self.faults["close"] += 1
        self.log(tab, f"CLOSE ({tab.node.role})")
        try:
            tab.node.leave(self._local(tab))
        except BaseException:
            self._exception(tab, "leave")
        effects = tab.node.take_effects()
        self._apply(tab, effects)
        for record in tab.waiters.values():
            self._problem("leftover", f"tab {tab.id} closed with the execute of {record.key!r} still waiting")
        self._vanish(tab, "close")

    def switch_scope_now(self, tab: Tab, scope: str | None) -> None:
        """``FlowMesh.set_scope`` (see its ``_switch``): the node leaves (a ``Bye``, a leader hands over;
        its waiters get ``ScopeChangedError``), the calls it runs are cancelled, and a new node with the
        same ID and flows joins ``scope``. The Web Lock is re-taken under the new scope's name: the old
        scope's tabs watching this ID hear ``peer_gone``."""
        if not tab.alive or tab.frozen:
            return  # a frozen page (or one in the bfcache) runs no code
        config = tab.node.config.with_options(scope=scope)
        self.faults["scope-switch"] += 1
        if scope == tab.scope:
            self.events["scope rejoins (forget=True)"] += 1
        self.log(tab, f"SCOPE {tab.scope!r} -> {scope!r} ({tab.node.role})")
        old, old_digest = tab.node, tab.digest
        try:
            old.leave(self._local(tab), ScopeChangedError(f"tab {tab.id} switched scope while this execute waited"))
        except BaseException:
            self._exception(tab, "leave(ScopeChangedError)")
        self._apply(tab, old.take_effects())  # the Bye; the waiters' Rejects
        for record in tab.waiters.values():  # the runtime fails whatever the node did not reject
            record.outcome, record.end, record.error = "scope-changed", self.now, ScopeChangedError("switched")
            self.events["waiters failed by the runtime at a switch"] += 1
        tab.waiters.clear()  # the new node numbers its waiters and calls from 1 again
        tab.cancelled_waiters.clear()
        tab.cancelled_calls.clear()
        tab.started_calls.clear()
        for call in [c for c in self._running if c[0] == tab.index]:  # their tasks are cancelled
            del self._running[call]
            self._hung.pop(call, None)
        tab.node = self._make_node(old.node_id, config, tab.flows)
        tab.switches += 1
        tab.scope_since = self.now
        tab.fresh = True  # it has known no leader of its new scope yet
        tab.watching = set()
        self._leadership_dirty = True
        if tab.digest != old_digest:  # the transport re-takes its lock only for another scope
            self._release_lock(old_digest, tab.id)
        local = self._local(tab)
        try:
            if tab.hidden:
                tab.node.set_hidden(True, local)
            tab.node.start(local)
        except BaseException:
            self._exception(tab, "start (after a scope switch)")
        self._joined(tab)
        self._after_input(tab)
        self._reschedule(tab, force=True)  # the old node's ticks are stale

    def freeze_now(self, tab: Tab) -> None:
        """The page is frozen without warning: it runs nothing; what reaches it queues."""
        if not tab.alive or tab.frozen:
            return
        self.faults["freeze"] += 1
        self.log(tab, f"FREEZE ({tab.node.role})")
        tab.frozen = True
        tab.frozen_spans.append([self.now, math.inf])

    def thaw_now(self, tab: Tab) -> None:
        """The frozen page runs again, first what queued."""
        if not tab.alive or not tab.frozen or tab.away:
            return
        self.log(tab, f"THAW ({len(tab.backlog)} queued)")
        tab.frozen = False
        tab.frozen_spans[-1][1] = self.now
        self._run_backlog(tab)

    def leave_for_bfcache_now(self, tab: Tab) -> None:
        """``pagehide`` with ``persisted``: the node leaves (``set_frozen(True)``), the page is frozen,
        its Web Lock is released, and whatever is posted meanwhile never reaches it."""
        if not tab.alive or tab.frozen:
            return
        self.faults["bfcache"] += 1
        self.log(tab, f"BFCACHE leave ({tab.node.role})")
        try:
            tab.node.set_frozen(True, self._local(tab))
        except BaseException:
            self._exception(tab, "set_frozen(True)")
        effects = tab.node.take_effects()
        if effects:
            self._apply(tab, effects)
        tab.frozen = tab.away = True
        tab.frozen_spans.append([self.now, math.inf])
        tab.gen += 1  # its timers do not run
        tab.tick_at = None
        self._leadership_dirty = True
        self._release_lock(tab.digest, tab.id)

    def come_back_now(self, tab: Tab) -> None:
        """``pageshow`` with ``persisted``: the page runs again, re-takes its lock and rejoins."""
        if not tab.alive or not tab.away:
            return
        self.log(tab, f"BFCACHE return ({len(tab.backlog)} queued)")
        tab.away = tab.frozen = False
        tab.frozen_spans[-1][1] = self.now
        self._leadership_dirty = True
        self.streams.checks.resumed(tab)  # what the stream sent meanwhile is lost: a new start
        try:
            tab.node.set_frozen(False, self._local(tab))
            tab.node.set_hidden(tab.hidden, self._local(tab))  # it may have been shown meanwhile
        except BaseException:
            self._exception(tab, "set_frozen(False)")
        self._after_input(tab)
        self._run_backlog(tab)

    def hide_now(self, tab: Tab, period: float) -> None:
        """The tab becomes hidden: its timers fire on a ``period`` grid."""
        if not tab.alive or tab.hidden:
            return
        self.faults["throttle"] += 1
        self.log(tab, f"HIDE (timers every {period:.0f}ms)")
        tab.hidden = True
        tab.throttle_period = period
        tab.throttle_base = quantize(self.now - self.rng.uniform(0.0, period))
        if not tab.frozen:
            try:
                tab.node.set_hidden(True, self._local(tab))
            except BaseException:
                self._exception(tab, "set_hidden(True)")
            self._after_input(tab)
        self._reschedule(tab, force=True)

    def show_now(self, tab: Tab) -> None:
        """The tab becomes visible (a frozen one thaws)."""
        if not tab.alive or not tab.hidden:
            return
        self.log(tab, "SHOW")
        tab.hidden = False
        if tab.away:
            return  # it tells its node when it comes back
        if tab.frozen:
            self.thaw_now(tab)
        try:
            tab.node.set_hidden(False, self._local(tab))
        except BaseException:
            self._exception(tab, "set_hidden(False)")
        self._after_input(tab)
        self._reschedule(tab, force=True)

    # --- what a subclass may refine ---------------------------------------------------------

    def _problem(self, kind: str, message: str) -> None:
        """Something that must not happen happened (``kind`` names the rule): here, an error."""
        raise NetworkError(f"[{kind}] t={self.now:.1f}ms: {message}")

    def _exception(self, tab: Tab, what: str) -> None:
        """Called in an ``except`` block when a node input raised: here the exception propagates."""
        raise

    def _joined(self, tab: Tab) -> None:
        """The tab's node just joined its scope's mesh (opened, or switched scope)."""

    def _injected(self, data: Any) -> None:
        """A foreign post is about to reach every open tab."""

    def _leadership_changed(self) -> None:
        """Some tab's view of its leader may have changed (a tab opened, left, or heard of a leader)."""

    def _call_ended(self, tab: Tab, outcome: CallOutcome, retried: bool) -> None:
        """A call's outcome reached the node that started it (its effects not yet carried out);
        ``retried``: it was a failed attempt the node starts again (the flow's retry policy)."""

    def _call_given_up(self, tab: Tab, key: str) -> None:
        """The tab's node gave up on a call of ``key`` it started (``CancelCall``)."""

    def _resolved(self, tab: Tab, record: ExecRecord, value: Any, source: str) -> None:
        """The execute ``record`` resolved with ``value`` (its ``record`` is filled in)."""

    def _rejected(self, tab: Tab, record: ExecRecord, error: BaseException) -> None:
        """The execute ``record`` was rejected with ``error`` (not for a disposal or a scope switch)."""

    # --- the effects ------------------------------------------------------------------------

    def _apply(self, tab: Tab, effects: list[Any]) -> None:
        handlers = self._handlers
        for effect in effects:
            handler = handlers.get(type(effect))
            if handler is None:  # a runtime that drops an effect it does not know leaves someone waiting
                self._problem("effect", f"tab {tab.id} emitted an effect the simulator does not know: {effect!r}")
            else:
                handler(tab, effect)

    def _on_send(self, tab: Tab, effect: Send) -> None:
        self._broadcast(tab, effect)

    def _on_start_call(self, tab: Tab, effect: StartCall) -> None:
        """The flow function runs as a task; the server says how and when it ends."""
        plan = self.server.start(tab, effect, self.now)
        state = "hangs" if plan.hangs else "ok" if plan.outcome.ok else "will fail"
        self.log(tab, f"call {effect.call_id} {effect.key} ({state} in {plan.duration}ms"
                      f"{', ' + plan.note if plan.note else ''})")
        self._running[(tab.index, effect.call_id)] = plan.hangs
        tab.started_calls[effect.call_id] = effect.key
        if plan.hangs:  # it never returns; should the node give up on it, it may still return late
            self._hung[(tab.index, effect.call_id)] = plan.outcome
        else:
            self._push(self.now + plan.duration, _CALL_DONE, tab, effect.call_id, plan.outcome)

    def _on_call_retrying(self, tab: Tab, effect: CallRetrying) -> None:
        """A failed attempt is retried (the flow's policy): the next StartCall comes after the delay."""
        self.events["retries"] += 1
        policy = self.policies.get(effect.flow)
        if policy is None or effect.attempt >= policy.max_attempts:
            self._problem("retry", f"tab {tab.id}: attempt {effect.attempt} of {effect.key!r} retried, but its flow "
                                   f"allows {policy.max_attempts if policy else 1} attempt(s)")
        self.log(tab, f"attempt {effect.attempt}/{effect.max_attempts} of {effect.key} failed; "
                      f"retry in {effect.delay:g}ms")

    def _on_cancel_call(self, tab: Tab, effect: CancelCall) -> None:
        """The node gave up on a call; the runtime cancels its task."""
        call_id = effect.call_id
        self.events["calls given up"] += 1
        self.log(tab, f"cancel call {call_id}")
        self._running.pop((tab.index, call_id), None)
        if call_id not in tab.started_calls:
            self._problem("effect", f"tab {tab.id}: CancelCall({call_id}) for a call it never started")
            return
        tab.cancelled_calls.add(call_id)
        self._call_given_up(tab, tab.started_calls[call_id])
        outcome = self._hung.pop((tab.index, call_id), None)
        if outcome is not None:  # a cancelled task may still report: the node must ignore it
            low, high = self.call_duration
            self._push(self.now + quantize(self.rng.uniform(low, high)), _CALL_DONE, tab, call_id, outcome)

    def _settle(self, tab: Tab, effect: Resolve | Reject) -> None:
        """An execute ended: its record says how."""
        record = tab.waiters.pop(effect.waiter, None)
        if record is None:
            if effect.waiter in tab.cancelled_waiters:
                self._problem("cancel", f"tab {tab.id}: {type(effect).__name__} for waiter {effect.waiter}, "
                                        "whose caller cancelled it")
            else:
                self._problem("execute", f"tab {tab.id}: {type(effect).__name__} for unknown or finished waiter "
                                         f"{effect.waiter}")
            return
        record.end = self.now
        if isinstance(effect, Resolve):
            value = effect.value
            record.outcome, record.source, record.value = "resolved", effect.source, value
            self._resolved(tab, record, value, effect.source)
            self.log(tab, f"resolve {record.key} from {effect.source}")
        else:
            error = effect.error
            record.error = error
            if isinstance(error, ScopeChangedError):  # the page switched scope while it waited
                record.outcome = "scope-changed"
            else:
                record.outcome = "disposed" if isinstance(error, MeshDisposedError) else "rejected"
            if record.outcome == "rejected":
                self._rejected(tab, record, error)
            self.log(tab, f"reject {record.key}: {type(error).__name__}")
        if record.on_end is not None:
            record.on_end(record)

    def _on_leader_changed(self, tab: Tab, effect: LeaderChanged) -> None:
        self._leadership_dirty = True
        if effect.leader is not None:
            tab.fresh = False
        self.log(tab, f"leader -> {effect.leader} (role {tab.node.role}, term {safe_repr(tab.node.term)})")

    def _on_cache_updated(self, tab: Tab, effect: CacheUpdated) -> None:
        """The runtime tells ``on_cache_update`` listeners; a virtual tab has none."""

    def _on_failure_shared(self, tab: Tab, effect: FailureShared) -> None:
        """The runtime tells ``on_error`` listeners; a virtual tab has none."""

    def _on_watch_peers(self, tab: Tab, effect: WatchPeers) -> None:
        """Queue for the Web Locks of the peers, in the tab's scope (a lock's name has both)."""
        if not self.locks:
            return
        before, tab.watching = tab.watching, set(effect.node_ids)
        for node_id in sorted(tab.watching - before):
            if not self._lock_held(tab.digest, node_id):
                # Nobody holds that lock (the tab is gone, or in another scope now): granted at once.
                self._push(self.now + self._delay(), _PEER_GONE, tab, node_id, tab.node)

    def _on_members_changed(self, tab: Tab, effect: MembersChanged) -> None:
        """The runtime tells ``on_change`` listeners; a virtual tab has none."""

    def _on_renamed(self, tab: Tab, effect: Renamed) -> None:
        """The node took a new ID (another tab had its own); the runtime re-keys its lock."""
        old, new = tab.id, effect.node_id
        self.events["renames"] += 1
        self.log(tab, f"renamed {old} -> {new}")
        if not isinstance(new, str) or new == old or tab.node.node_id != new:
            self._problem("effect", f"tab {old}: Renamed({new!r}) but its node_id is {tab.node.node_id!r}")
            return
        if new in self.by_id and self.by_id[new] is not tab and self.by_id[new].alive:
            self._problem("effect", f"tab {old} renamed itself to the live ID {new}")
        tab.id = new
        self.by_id[new] = tab
        if self.by_id.get(old) is tab:
            others = [t for t in self._live if t.id == old]
            if others:
                self.by_id[old] = others[0]
        self._leadership_dirty = True
        if tab.alive and not tab.away:
            self._release_lock(tab.digest, old)

    # --- inputs -----------------------------------------------------------------------------

    def _deliver(self, tab: Tab, data: Any, sender: int) -> None:
        self.deliveries += 1
        if self.trace is not None:
            self.log(tab, f"recv {describe_post(data)}")
        try:
            if self.decoded and sender >= 0:
                tab.node.handle(data, self._local(tab))
            else:
                tab.node.receive(data, self._local(tab))
        except BaseException:
            self._exception(tab, "receive")
        self._after_input(tab)

    def _tick(self, tab: Tab) -> None:
        deadline = tab.node.next_deadline()
        if deadline is None:
            return
        local = self._local(tab)
        if local < deadline:
            if deadline - local > 1e-6:
                self._reschedule(tab)  # the deadline moved later since this tick was armed
                return
            local = tab.last_local = deadline
        if self.trace is not None:
            self.log(tab, f"tick ({tab.node.role})")
        try:
            tab.node.tick(local)
        except BaseException:
            self._exception(tab, "tick")
        self._after_input(tab)

    def _call_done(self, tab: Tab, call_id: int, outcome: CallOutcome) -> None:
        ok, value, key, back_off, node = outcome
        if node is not tab.node:
            return  # its task was cancelled by a scope switch: the runtime discards what it returns
        late = call_id in tab.cancelled_calls
        if late:
            # The node gave up on this call (CancelCall): sometimes the task still reports. The
            # node must ignore that outcome: no effect at all.
            if self.rng.random() < 0.5:
                return
            self.events["late outcomes"] += 1
        self.log(tab, f"call {call_id} {'ok' if ok else 'failed'}{' (late, after CancelCall)' if late else ''}")
        # The page's should_retry says no to one failure in five (the runtime asks it before reporting).
        retry = ok or not back_off or self.rng.random() >= 0.2
        retries = tab.node.stats.retries
        try:
            if ok:
                tab.node.call_succeeded(call_id, value, self._local(tab))
            elif back_off:
                tab.node.call_failed(call_id, value, self._local(tab), retry=retry)
            else:
                tab.node.call_failed(call_id, value, self._local(tab), back_off=False)
        except BaseException:
            self._exception(tab, "call_succeeded" if ok else "call_failed")
        if not late:
            self._call_ended(tab, outcome, tab.node.stats.retries > retries)
        if late:
            effects = tab.node.take_effects()
            if effects:
                self._problem("cancel", f"tab {tab.id}: the outcome of call {call_id}, given up by CancelCall, "
                                        f"was not ignored: {safe_repr(effects, 300)}")
                self._apply(tab, effects)
        self._after_input(tab)

    def _peer_gone(self, tab: Tab, gone: str) -> None:
        self.log(tab, f"peer_gone {gone}")
        try:
            tab.node.peer_gone(gone, self._local(tab))
        except BaseException:
            self._exception(tab, "peer_gone")
        self._after_input(tab)

    def _after_input(self, tab: Tab) -> None:
        effects = tab.node.take_effects()
        if effects:
            self._apply(tab, effects)
        if tab.alive:
            self._reschedule(tab)

    # --- the channel, timers and locks ------------------------------------------------------

    def _broadcast(self, tab: Tab, effect: Send) -> None:
        data = effect.data
        self.messages += 1
        if self.posts is not None:
            self.posts.append((self.now, tab.id, effect.message))
        if self.trace is not None:
            self.log(tab, f"send {describe_post(data)}")
        payload: Any = effect.message if self.decoded else data
        now = self.now
        low, span = self.delay[0], self.delay[1] - self.delay[0]
        rand = self.rng.random
        last_to = tab.last_to
        push = heapq.heappush
        heap = self._heap
        for other in self._live:
            if other is tab:
                continue
            when = math.floor((now + low + rand() * span) * RESOLUTION + 0.5) / RESOLUTION
            previous = last_to.get(other.index)
            if previous is not None and when < previous:
                when = previous  # FIFO per sender→receiver pair
            last_to[other.index] = when
            self._seq += 1
            push(heap, (when, self._seq, _DELIVER, other, payload, tab.index))

    def _lock_held(self, digest: str, node_id: str) -> bool:
        """Whether some open tab of scope ``digest`` holds the Web Lock of ``node_id`` (one in the bfcache
        released it)."""
        return any(t.id == node_id and not t.away and t.node.scope_digest == digest for t in self._live)

    def _release_lock(self, digest: str, node_id: str) -> None:
        """A tab released the lock of ``node_id`` in scope ``digest``: the tabs of that scope watching it
        hear ``peer_gone`` unless another holds it."""
        if not self.locks or self._lock_held(digest, node_id):
            return
        low, high = self.lock_delay
        for other in self._live:
            if node_id in other.watching and other.node.scope_digest == digest:
                self._push(self.now + quantize(self.rng.uniform(low, high)), _PEER_GONE, other, node_id, other.node)

    def _reschedule(self, tab: Tab, force: bool = False) -> None:
        """Arm the tab's timer for ``next_deadline()``; an earlier armed tick re-arms itself later."""
        if force:
            tab.gen += 1
            tab.tick_at = None
        deadline = tab.node.next_deadline()
        if deadline is None:
            return
        when = deadline - tab.offset
        if when < self.now:
            when = self.now
        if tab.hidden:
            when = self._throttled(tab, when)
        if tab.tick_at is None or when < tab.tick_at:
            tab.gen += 1
            tab.tick_at = when
            self._push(when, _TICK, tab, tab.gen, None)

    def _throttled(self, tab: Tab, when: float) -> float:
        period = tab.throttle_period
        steps = math.ceil((when - tab.throttle_base) / period)
        return tab.throttle_base + max(0, steps) * period

    def _run_backlog(self, tab: Tab) -> None:
        backlog, tab.backlog = tab.backlog, []
        for kind, a, b in backlog:
            if not tab.alive:
                break
            if kind == _DELIVER:
                self._deliver(tab, a, b)
            elif kind == _TICK:
                self._tick(tab)
            elif kind == _CALL_DONE:
                self._call_done(tab, a, b)
            elif b is tab.node:  # (a watch of its node before a scope switch: stopped)
                self._peer_gone(tab, a)
        if tab.alive:
            self._reschedule(tab, force=True)

    def _vanish(self, tab: Tab, how: str) -> None:
        tab.alive = False
        tab.ended_by = how
        tab.end_time = self.now
        tab.died_hidden = tab.hidden
        tab.backlog.clear()
        self._live.remove(tab)
        for record in tab.waiters.values():
            record.tab_gone = True
        for call in [c for c in self._running if c[0] == tab.index]:  # its tasks die with the page
            del self._running[call]
            self._hung.pop(call, None)
        self._leadership_dirty = True
        if not tab.away:  # its lock passes to the tabs waiting on it
            self._release_lock(tab.digest, tab.id)

    # --- internals --------------------------------------------------------------------------

    def _push(self, when: float, kind: int, tab: Any, a: Any, b: Any) -> None:
        self._seq += 1
        heapq.heappush(self._heap, (when, self._seq, kind, tab, a, b))

    def _call_at(self, when: float, action: Callable[[], Any]) -> None:
        """Run ``action()`` at exactly ``when`` (not rounded to the resolution, unlike :meth:`at`)."""
        self._push(when, _ACTION, None, action, None)

    def _delay(self) -> float:
        low, high = self.delay
        return quantize(low + self.rng.random() * (high - low))

    def _local(self, tab: Tab) -> float:
        local = self.now + tab.offset
        if local < tab.last_local:
            local = tab.last_local
        tab.last_local = local
        return local

    def _in_scope(self, scope: str | None) -> list[Tab]:
        if scope is ANY_SCOPE:
            return self._live
        return [tab for tab in self._live if tab.scope == scope]

    def _make_node(self, node_id: str, config: MeshConfig, flows: tuple[str, ...]) -> MeshNode:
        """A tab's node with its flows registered (at its opening, and at each scope switch)."""
        # Every tab of one browser shares the wall clock: the network's virtual time.
        node = MeshNode(node_id, config, new_id=lambda old: self._fresh_id(), wall_clock=lambda: self.now,
                        locks=self.locks)
        for flow in flows:
            node.register_flow(flow, self.policies.get(flow))
        for stream in self.default_streams:
            node.register_stream(stream, self.stream_grace)
        return node

    def _fresh_id(self) -> str:
        while True:
            node_id = f"{self.rng.getrandbits(32):08x}"
            if node_id not in self.by_id:
                return node_id
