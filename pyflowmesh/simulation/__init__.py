"""A deterministic simulator of many tabs sharing one mesh, in virtual time, with injected faults.

Every tab is a real :class:`~pyflowmesh.core.node.MeshNode`; every message crosses the
"channel" as the encoded text of its ``Send`` effect and enters the receiving tab
through :meth:`MeshNode.receive`, so the wire format is exercised end to end. There
is no wall clock and no asyncio: one event heap of ``(time, seq, event)`` in
virtual milliseconds and one ``random.Random(seed)`` drive everything, so a seed
reproduces a run exactly.

What it models:

* **BroadcastChannel**: a message reaches every *other* tab open at the time it
  was posted (never its sender), after a random delay, in order per
  sender→receiver pair; messages of different senders may overtake each other.
* **The server**: a ``StartCall`` ends after a random duration as a success (a
  JSON value naming the key and a per-run call number) or, during an outage, a
  ``ConnectionError``. Every call is counted per key with its virtual time.
* **Timers**: after every input a tick is scheduled at ``node.next_deadline()``
  (stale ticks are ignored by a per-tab generation number; a tick that finds its
  deadline moved later is re-armed instead of calling ``tick``).
* **Web Locks** (per run): a tab watching a peer (``WatchPeer``) gets
  ``peer_gone`` 40–90 ms after that tab crashes or closes (at once if it is
  already gone); a frozen tab keeps its lock.
* **Faults**: crash (the tab vanishes: no Bye, messages to it are dropped, the
  ones it sent still arrive), polite close (``leave`` then vanish), freeze and
  thaw (a frozen tab runs nothing; its messages, ticks, call outcomes and lock
  notices queue up and run in order on thaw), hidden tabs with throttled timers
  (ticks aligned to a period of up to 60 s, as Chrome's intensive throttling),
  late joiners, server outages, and foreign or other-version messages on the channel.
* **Adversarial inputs** (issue 8): flow functions that raise a ``BaseException``
  (``CancelledError``), never return (the node must give up after ``call_timeout``
  with ``CancelCall``; the task may still report late, and must be ignored), return
  more than ``max_message_bytes``, something JSON cannot carry or an int too long
  for ``str()`` (the runtime's check makes those ``call_failed(TypeError,
  back_off=False)``), or mutate their arguments; callers that mutate what an execute
  returned, or cancel it (``MeshNode.cancel``); hostile posts of every message type
  with extreme fields, impersonating live tabs (:func:`hostile_message`); arguments
  that cannot be shared; pages leaving into the back/forward cache and returning
  (``set_frozen``; lock released, messages dropped meanwhile); two tabs with one ID
  (the core renames one: ``Renamed``); and long outages of one key (over a thousand
  consecutive failures in ~9 virtual hours, in a two-tab run of their own).
* **Scopes** (issue 14): tabs of one channel in different scopes (a few, from
  :data:`SCOPES`) are separate meshes; a tab switches scope as ``FlowMesh.set_scope``
  does (the old node leaves with ``ScopeChangedError`` for its waiters, a new node
  of the same ID joins the new scope; calls still running are cancelled and their
  outcomes dropped), alone or with every tab of its scope (a login or logout in a
  browser). Web Locks are keyed by (scope digest, ID), as the browser transport
  names them. Every value the server returns records the scope it was produced
  for; a tab that caches or resolves a value of another scope is a violation
  (``cross-scope``), and leadership, sync, duplicate calls and back-offs are
  checked per scope.

Every effect the core emits is handled; one the simulator does not know is a violation.

:func:`run` builds a random scenario for a seed (a fault phase, then a quiet
phase), runs it and checks the invariants listed in :class:`SimulationReport`.
``python -m pyflowmesh.simulation --seeds 1000 --tabs 50`` runs many seeds
(``--faults crash,hostile`` only some fault kinds: :data:`FAULT_KINDS`).
"""

from __future__ import annotations

import argparse
import copy
import heapq
import inspect
import json
import math
import random
import sys
import time
import traceback
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from .. import errors as _errors
from ..core import effects as _effects
from ..core.config import MeshConfig
from ..core.effects import CacheUpdated, FailureShared, LeaderChanged, Reject, Resolve, Send, StartCall, WatchPeer
from ..core.election import Role
from ..core.node import MeshNode
from ..core.values import cache_key, check_json
from ..errors import MeshDisposedError, MeshError, ScopeChangedError, SharedFlowError
from .app import FLOWS, OPTIONAL_FLOW, PATHOLOGIES, SCOPES, FlowCancelled, NotJSON, ServerDown, sim_config
from .app import PATHOLOGY_WEIGHTS as _PATHOLOGY_WEIGHTS
from .app import UNDECODABLE as _UNDECODABLE
from .hostile import deep as _deep
from .hostile import hostile_message
from .plan import FAULT_KINDS, RunPlan, plan
from .plan import FAULT_WEIGHTS as _FAULT_WEIGHTS
from .records import Bounds, ExecRecord, Violation
from .report import SimulationReport
from .text import describe_post as _short
from .text import safe_repr as _safe

# Effects of the hardened core (issue 8); absent from older cores, which never emit them.
CancelCall: type | None = getattr(_effects, "CancelCall", None)
Renamed: type | None = getattr(_effects, "Renamed", None)

__all__ = [
    "FLOWS",
    "FAULT_KINDS",
    "PATHOLOGIES",
    "SCOPES",
    "MAX_INTERVAL",
    "WIRE_MAX",
    "FlowCancelled",
    "NotJSON",
    "ServerDown",
    "hostile_message",
    "ExecRecord",
    "Violation",
    "Bounds",
    "Simulation",
    "SimulationReport",
    "RunPlan",
    "Summary",
    "plan",
    "run",
    "run_plan",
    "run_many",
    "sim_config",
    "main",
]

_ANY: Any = object()  # "every scope", where a scope may be given

_DELIVER, _TICK, _CALL_DONE, _PEER_GONE, _ACTION = range(5)
# A call's outcome, as the runtime reports it: (ok, value or error, key, back_off, the node that started
# the call). The node fences it: after a scope switch the call's task is cancelled, and the new node
# numbers its calls from 1 again, so an outcome of the old node must never reach it.
_Outcome = tuple[bool, Any, str, bool, MeshNode]
_RES = 64.0  # virtual times are multiples of 1/64 ms: sums stay exact, deadlines fire exactly


def _quantize(ms: float) -> float:
    return math.floor(ms * _RES + 0.5) / _RES


class _Tab:
    __slots__ = (
        "index", "id", "node", "offset", "flows", "started", "alive", "frozen", "hidden",
        "throttle_base", "throttle_period", "backlog", "gen", "tick_at", "last_local",
        "start_time", "end_time", "watching", "last_to", "waiters", "fresh", "ended_by",
        "died_hidden", "frozen_spans", "away", "cancelled_waiters", "cancelled_calls",
        "started_calls", "scope_since", "switches",
    )

    def __init__(self, index: int, node_id: str, node: MeshNode, offset: float, flows: tuple[str, ...]) -> None:
        self.index = index
        self.id = node_id
        self.node = node
        self.offset = offset  # the tab's clock: performance.now() = virtual time + offset
        self.flows = flows
        self.started = False
        self.alive = False
        self.frozen = False
        self.hidden = False
        self.throttle_base = 0.0
        self.throttle_period = 0.0
        self.backlog: list[tuple[int, Any, Any]] = []
        self.gen = 0
        self.tick_at: float | None = None
        self.last_local = -math.inf
        self.start_time: float | None = None
        self.end_time: float | None = None
        self.watching: str | None = None
        self.last_to: dict[int, float] = {}
        self.waiters: dict[int, ExecRecord] = {}
        self.fresh = True  # has not yet known any leader (leader-follower)
        self.ended_by: str | None = None  # "crash" or "close"
        self.died_hidden = False
        self.frozen_spans: list[list[float]] = []  # [freeze, thaw] times
        self.away = False  # in the back/forward cache: frozen, lock released, messages dropped
        self.cancelled_waiters: set[int] = set()  # executes its caller cancelled
        self.cancelled_calls: set[int] = set()  # calls the node gave up on (CancelCall)
        self.started_calls: dict[int, str] = {}  # call_id -> key
        self.scope_since: float | None = None  # when its node joined its current scope
        self.switches = 0  # scope switches made

    @property
    def scope(self) -> str | None:
        """Whose data the tab holds now (``None``: the shared scope)."""
        return self.node.config.scope

    @property
    def digest(self) -> str:
        """Its scope as the wire and its Web Lock name it."""
        return self.node.scope_digest

    def __repr__(self) -> str:
        return f"<tab {self.id}>"


class Simulation:
    """Tabs, a channel, a server and Web Locks in virtual time. Script it, then :meth:`run_until`.

    Every scripted action takes ``at`` (virtual ms; default: now). Inspect tabs with
    :meth:`node`, :meth:`leaders` and :meth:`converged`; executes come back as
    :class:`ExecRecord` objects filled in as the run proceeds.
    """

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
    ) -> None:
        self.seed = seed
        self.rng = random.Random(seed)
        self.config = config
        self.locks = locks
        self.delay = delay
        self.call_duration = call_duration
        self.lock_delay = lock_delay
        self.now = 0.0
        self._heap: list[tuple[float, int, int, Any, Any, Any]] = []
        self._seq = 0
        self.tabs: list[_Tab] = []
        self.by_id: dict[str, _Tab] = {}
        self._live: list[_Tab] = []  # started, not crashed or closed (frozen ones included)
        self.violations: list[Violation] = []
        self.execs: list[ExecRecord] = []
        # The server's log: (start, tab ID, ok, call number, since when the calling tab waited for the key,
        # the scope digest it was called for, the tab's index, since when the tab was in that scope)
        self.calls: dict[str, list[tuple[float, str, bool, int, float, str, int, float]]] = defaultdict(list)
        # Call ends reported to tabs: (time, True unless it failed with a back-off, scope digest)
        self.outcomes: dict[str, list[tuple[float, bool, str]]] = defaultdict(list)
        self.produced: dict[int, float] = {}  # call number -> when the server's response was produced
        self.stale_serves: list[tuple[float, str, str, float]] = []  # (time, tab, key, true age)
        self.max_served_age = -math.inf  # the truly oldest value served from a cache or the mesh, minus stale_time
        # Joiners (of a settled mesh) that missed a fresh entry which no tab was bound to sync:
        # peer-to-peer, its producer left; leader-follower, the leader never had it.
        self.unsynced = 0
        self.call_count = 0
        self.server_down = False
        self.outages: list[list[float]] = []
        self.messages = 0
        self.deliveries = 0
        self.faults: Counter[str] = Counter()
        self.trace: list[str] | None = [] if verbose else None
        # Convergence tracking (leader-follower): P = "exactly one live tab leads and
        # every live tab that has known a leader follows it". ``converged_since`` is
        # when P last became true (None while false).
        self._leadership_dirty = False
        self.converged_since: float | None = None
        self.leadership_changes: list[float] = []  # times P went false
        self.failovers: list[float] = []  # how long each such period lasted
        # Calls started and not yet ended or given up (CancelCall): (tab index, call_id) -> hangs
        self._running: dict[tuple[int, int], bool] = {}
        # Pathological flow functions: the chance that a call started before ``pathology_until``
        # misbehaves, and how (PATHOLOGIES, weighted).
        self.pathology_rate = 0.0
        self.pathology_until = math.inf
        self.pathologies: tuple[str, ...] = PATHOLOGIES
        self.pathology_weights: tuple[int, ...] = _PATHOLOGY_WEIGHTS
        self.produced_values: dict[int, str] = {}  # call number -> the value the server returned, as JSON
        # Error type names an execute may legitimately be rejected with (besides ServerDown):
        # what the faults made flows raise, the core's own errors, and forged ones.
        self.allowed_errors: set[str] = {"ServerDown"}
        self.allowed_errors.update(name for name in _errors.__all__)
        self.allowed_errors.add("MessageTooLarge")
        # When each key failed, per scope digest (a call's failure or a forged Failure/Sync): the start of
        # a back-off.
        self.failure_times: dict[tuple[str, str], list[float]] = defaultdict(list)
        self.hostile_leaders = False  # a forged Coordinator/Heartbeat was posted
        self._hung: dict[tuple[int, int], _Outcome] = {}  # calls that never return
        self.keys_down: set[str] = set()  # keys whose server endpoint is down (a long outage of one key)
        self.events: Counter[str] = Counter()  # what the hardened core did: calls given up, renames...
        self.scope_checks = 0  # values checked against the scope of the tab that cached or resolved them
        self.caller_mutation_rate = 0.0  # with pathologies: how often a caller mutates what it got
        # Every cache key a tab may work on: the page's, and those of every execute and call made.
        # (A hostile Request makes a tab work on a key only if the key matches its flow and arguments.)
        self.work_keys: set[str] = {cache_key(flow, args) for flow, choices in FLOWS.items() for args in choices}
        self._accepts_new_id = "new_id" in inspect.signature(MeshNode).parameters
        # From this time on (the settled quiet phase) a result a tab receives from the mesh
        # must also be in its cache: otherwise its other executes and on_cache_update miss it.
        self.settled_at = math.inf
        self.sync_window = 2 * delay[1] + 1 / _RES
        # A relayed result's age leaves out its time in transit: a few message delays.
        self.freshness_slack = 3 * delay[1]

    # --- scripting -----------------------------------------------------------------

    def at(self, when: float | None, action: Callable[[], Any]) -> None:
        """Run ``action()`` at virtual time ``when``."""
        self._push(self.now if when is None else _quantize(when), _ACTION, None, action, None)

    def add_tab(
        self,
        at: float | None = None,
        *,
        node_id: str | None = None,
        flows: Iterable[str] = tuple(FLOWS),
        config: MeshConfig | None = None,
        scope: str | None = _ANY,
    ) -> str:
        """Open a tab at ``at``; returns its node ID (random 8 hex digits unless given).

        An ID some tab already has makes two tabs with one ID (the hardened core renames one).
        ``scope``: the tab's scope (default: the config's).
        """
        if scope is not _ANY and scope != (config or self.config).scope:
            config = (config or self.config).with_options(scope=scope)
        tab = self._new_tab(node_id, tuple(flows), config)
        self.at(at, lambda: self._start(tab))
        return tab.id

    def _new_tab(self, node_id: str | None, flows: tuple[str, ...], config: MeshConfig | None = None) -> _Tab:
        if node_id is None:
            node_id = self._fresh_id()
        node = self._make_node(node_id, config or self.config, flows)
        offset = _quantize(self.rng.uniform(0.0, 50_000.0))
        tab = _Tab(len(self.tabs), node_id, node, offset, flows)
        self.tabs.append(tab)
        self.by_id.setdefault(node_id, tab)  # a second tab with one ID: by_id keeps the first
        return tab

    def _make_node(self, node_id: str, config: MeshConfig, flows: tuple[str, ...]) -> MeshNode:
        """A tab's node with its flows registered (at its opening, and at each scope switch)."""
        if self._accepts_new_id:
            # Every tab of one browser shares the wall clock: the simulator's global time.
            node = MeshNode(node_id, config, new_id=lambda old: self._fresh_id(),  # type: ignore[call-arg]
                            wall_clock=lambda: self.now)
        else:
            node = MeshNode(node_id, config)
        for flow in flows:
            node.register_flow(flow)
        return node

    def _fresh_id(self) -> str:
        while True:
            node_id = f"{self.rng.getrandbits(32):08x}"
            if node_id not in self.by_id:
                return node_id

    def add_twin(self, at: float | None = None, of: str | None = None) -> None:
        """At ``at``, open a tab with the ID of a live tab (``of``, else a random one): two tabs, one ID."""
        def act() -> None:
            live = [t for t in self._live if not t.away]
            target = self.by_id.get(of) if of is not None else (self.rng.choice(live) if live else None)
            if target is None or not target.alive:
                return
            self.faults["twin-id"] += 1
            twin = self._new_tab(target.id, target.flows, target.node.config)  # the same page: the same session
            self._log(twin, f"TWIN of tab {target.index}")
            self._start(twin)
        self.at(at, act)

    def leave_for_bfcache(self, tab_id: str, at: float | None = None) -> None:
        """The page leaves into the back/forward cache (``pagehide`` with ``persisted``)."""
        self.at(at, lambda: self._go_away(self.by_id[tab_id]))

    def come_back(self, tab_id: str, at: float | None = None) -> None:
        """The page is restored from the back/forward cache (``pageshow`` with ``persisted``)."""
        self.at(at, lambda: self._come_back(self.by_id[tab_id]))

    def cancel(self, record: ExecRecord, at: float | None = None) -> None:
        """At ``at`` the caller of ``record`` stops waiting (``MeshNode.cancel``), if it still waits."""
        self.at(at, lambda: self._cancel(record))

    def switch_scope(self, tab_id: str, scope: str | None, at: float | None = None) -> None:
        """The page switches scope (``FlowMesh.set_scope``: a login, logout or account switch).

        To its own scope again, it is ``set_scope(scope, forget=True)``: a full reset and rejoin.
        A frozen page runs no code: it switches nothing.
        """
        self.at(at, lambda: self._switch_scope(self.by_id[tab_id], scope))

    def crash(self, tab_id: str, at: float | None = None) -> None:
        """The tab vanishes without a word (renderer crash, OOM, killed)."""
        self.at(at, lambda: self._crash(self.by_id[tab_id]))

    def close(self, tab_id: str, at: float | None = None) -> None:
        """The tab closes politely: ``leave`` (Bye, waiters rejected) and vanishes."""
        self.at(at, lambda: self._close(self.by_id[tab_id]))

    def freeze(self, tab_id: str, at: float | None = None) -> None:
        self.at(at, lambda: self._freeze(self.by_id[tab_id]))

    def thaw(self, tab_id: str, at: float | None = None) -> None:
        self.at(at, lambda: self._thaw(self.by_id[tab_id]))

    def hide(self, tab_id: str, at: float | None = None, period: float = 60_000.0) -> None:
        """The tab becomes hidden; its timers fire on a ``period`` grid (up to ``period`` late)."""
        self.at(at, lambda: self._hide(self.by_id[tab_id], period))

    def show(self, tab_id: str, at: float | None = None) -> None:
        self.at(at, lambda: self._show(self.by_id[tab_id]))

    def outage(self, start: float, end: float) -> None:
        """Calls started in ``[start, end)`` fail with :class:`ServerDown`."""
        self.at(start, lambda: self._set_server(True))
        self.at(end, lambda: self._set_server(False))

    def execute(self, tab_id: str, flow: str, args: Sequence[Any] = (), at: float | None = None) -> ExecRecord:
        """Execute ``flow(*args)`` in the tab at ``at``; the record fills in as the run goes."""
        record = ExecRecord(tab_id, flow, tuple(args), cache_key(flow, tuple(args)), -1.0)
        self.at(at, lambda: self._execute(self.by_id[tab_id], record))
        return record

    def inject(self, raw: Any, at: float | None = None, kind: str = "noise") -> None:
        """A foreign script (or another version of the page) posts ``raw`` on the channel.

        ``raw`` may be a callable: it makes the text at the time of posting (from the live tabs).
        """
        def post() -> None:
            data = raw() if callable(raw) else raw
            self.faults[kind] += 1
            self._log(None, f"{kind} {str(data)[:60]!r}")
            self._note_forged(data)
            for tab in list(self._live):
                self._push(self.now + self._delay(), _DELIVER, tab, data, -1)
        self.at(at, post)

    def _note_forged(self, data: Any) -> None:
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
        failures = [body] if kind == "failure" else body.get("failures") if kind == "sync" else None
        scope = body.get("scope", "")  # the scope whose tabs accept it (a digest; "" the shared one)
        for failure in failures if isinstance(failures, list) else ():
            if isinstance(failure, dict):
                if isinstance(failure.get("error_type"), str):
                    self.allowed_errors.add(failure["error_type"])
                if isinstance(failure.get("key"), str) and isinstance(scope, str):
                    self.failure_times[(scope, failure["key"])].append(self.now)

    # --- running -------------------------------------------------------------------

    def run_until(self, until: float) -> None:
        """Process every event up to and including virtual time ``until``."""
        heap = self._heap
        pop = heapq.heappop
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
                    self._log(tab, f"recv {_short(a)}")
                self.deliveries += 1
                local = when + tab.offset
                if local < tab.last_local:
                    local = tab.last_local
                tab.last_local = local
                node = tab.node
                try:
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
                if b[4] is not tab.node:
                    continue  # a call of the node the tab had before a scope switch: cancelled
                self._running.pop((tab.index, a), None)
                if not tab.alive:
                    continue
                if tab.frozen:
                    tab.backlog.append((_CALL_DONE, a, b))
                    continue
                self._call_done(tab, a, b)
            elif kind == _PEER_GONE:
                if not tab.alive or b is not tab.node:
                    continue  # (a watch of the node before a scope switch: the transport stopped it)
                if tab.frozen:
                    tab.backlog.append((_PEER_GONE, a, b))
                    continue
                self._peer_gone(tab, a)
            else:
                a()
            if self._leadership_dirty:
                self._update_convergence()
        self.now = max(self.now, until)

    def run_for(self, duration: float) -> None:
        self.run_until(self.now + duration)

    # --- inspection ----------------------------------------------------------------

    def node(self, tab_id: str) -> MeshNode:
        return self.by_id[tab_id].node

    def live(self) -> list[str]:
        """IDs of the open tabs (frozen ones included)."""
        return [tab.id for tab in self._live]

    def leaders(self, scope: str | None = _ANY) -> list[str]:
        """IDs of the open tabs whose role is LEADER (of ``scope``'s mesh if given; else of any scope)."""
        return [tab.id for tab in self._in_scope(scope) if tab.node.role is Role.LEADER]

    def leader(self, scope: str | None = _ANY) -> str | None:
        """The one leader every open tab of ``scope`` follows (without ``scope``: every open tab, all
        in one scope), or ``None`` if that mesh is not converged."""
        leaders = self._converged_leaders(self._in_scope(scope))
        return None if leaders is None or len(leaders) != 1 else next(iter(leaders.values()))

    def converged(self) -> bool:
        """Whether the mesh of every scope with open tabs has exactly one leader that all of them follow."""
        return bool(self._converged_leaders(self._live))

    def scope_of(self, tab_id: str) -> str | None:
        """The tab's scope now (``None``: the shared one)."""
        return self.by_id[tab_id].scope

    def _in_scope(self, scope: str | None) -> list[_Tab]:
        if scope is _ANY:
            return self._live
        return [tab for tab in self._live if tab.scope == scope]

    def cached(self, tab_id: str, key: str) -> Any:
        """The fresh value the tab's cache holds for ``key`` now (``None`` if none)."""
        tab = self.by_id[tab_id]
        return tab.node.get_cached(key, self.now + tab.offset)

    def calls_of(self, key: str, since: float = -math.inf) -> list[float]:
        """Start times of the server calls of ``key`` since ``since``."""
        return [call[0] for call in self.calls.get(key, ()) if call[0] >= since]

    def busy(self, tab: _Tab) -> bool:
        """Whether the tab's node works on some key (an execute, a call, a request it serves)."""
        node = tab.node
        return any(node.phase(key) is not None for key in self.work_keys)

    def pending_keys(self, tab: _Tab) -> list[str]:
        """The keys the tab's node works on, sorted."""
        node = tab.node
        return sorted(key for key in self.work_keys if node.phase(key) is not None)

    def tab_ms(self) -> float:
        """Simulated tab-time: the sum over tabs of how long each was open (ms)."""
        total = 0.0
        for tab in self.tabs:
            if tab.start_time is not None:
                total += (tab.end_time if tab.end_time is not None else self.now) - tab.start_time
        return total

    # --- internals: scheduling -------------------------------------------------------

    def _push(self, when: float, kind: int, tab: Any, a: Any, b: Any) -> None:
        self._seq += 1
        heapq.heappush(self._heap, (when, self._seq, kind, tab, a, b))

    def _delay(self) -> float:
        low, high = self.delay
        return _quantize(low + self.rng.random() * (high - low))

    def _local(self, tab: _Tab) -> float:
        local = self.now + tab.offset
        if local < tab.last_local:
            local = tab.last_local
        tab.last_local = local
        return local

    def _log(self, tab: _Tab | None, text: str) -> None:
        if self.trace is not None:
            who = tab.id if tab is not None else "--------"
            self.trace.append(f"{self.now:11.3f} {who} {text}")

    def _reschedule(self, tab: _Tab, force: bool = False) -> None:
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

    def _throttled(self, tab: _Tab, when: float) -> float:
        period = tab.throttle_period
        steps = math.ceil((when - tab.throttle_base) / period)
        return tab.throttle_base + max(0, steps) * period

    # --- internals: inputs -------------------------------------------------------------

    @property
    def _calls_in_flight(self) -> int:
        return len(self._running)

    def _exception(self, tab: _Tab, what: str) -> None:
        if isinstance(sys.exc_info()[1], KeyboardInterrupt):
            raise
        self.violations.append(
            Violation("exception", self.now, f"tab {tab.id}: {what} raised\n{traceback.format_exc()}")
        )

    def _start(self, tab: _Tab) -> None:
        tab.started = tab.alive = True
        tab.start_time = tab.scope_since = self.now
        if self.now >= self.settled_at and self.config.share_cache:
            node = tab.node
            self._push(self.now + self.sync_window, _ACTION, None, lambda: self._check_synced(tab, node), None)
        self._live.append(tab)
        self._log(tab, "start")
        try:
            tab.node.start(self._local(tab))
        except BaseException:
            self._exception(tab, "start")
        self._leadership_dirty = True
        self._after_input(tab)

    def _deliver(self, tab: _Tab, data: Any, sender: int) -> None:
        self.deliveries += 1
        if self.trace is not None:
            self._log(tab, f"recv {_short(data)}")
        try:
            tab.node.receive(data, self._local(tab))
        except BaseException:
            self._exception(tab, "receive")
        self._after_input(tab)

    def _tick(self, tab: _Tab) -> None:
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
            self._log(tab, f"tick ({tab.node.role})")
        try:
            tab.node.tick(local)
        except BaseException:
            self._exception(tab, "tick")
        self._after_input(tab)

    def _call_done(self, tab: _Tab, call_id: int, outcome: _Outcome) -> None:
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
        else:
            self.outcomes[key].append((self.now, ok or not back_off, tab.digest))  # a failure without back-off
            if not ok and back_off:
                self.failure_times[(tab.digest, key)].append(self.now)
        self._log(tab, f"call {call_id} {'ok' if ok else 'failed'}{' (late, after CancelCall)' if late else ''}")
        try:
            if ok:
                tab.node.call_succeeded(call_id, value, self._local(tab))
            elif back_off:
                tab.node.call_failed(call_id, value, self._local(tab))
            else:
                tab.node.call_failed(call_id, value, self._local(tab), back_off=False)
        except BaseException:
            self._exception(tab, "call_succeeded" if ok else "call_failed")
        if late:
            effects = tab.node.take_effects()
            if effects:
                self.violations.append(Violation(
                    "cancel", self.now, f"tab {tab.id}: the outcome of call {call_id}, given up by CancelCall, "
                    f"was not ignored: {_safe(effects, 300)}"))
                self._apply(tab, effects)
        self._after_input(tab)

    def _peer_gone(self, tab: _Tab, gone: str) -> None:
        self._log(tab, f"peer_gone {gone}")
        try:
            tab.node.peer_gone(gone, self._local(tab))
        except BaseException:
            self._exception(tab, "peer_gone")
        self._after_input(tab)

    def _execute(self, tab: _Tab, record: ExecRecord) -> None:
        self.work_keys.add(record.key)
        record.start = self.now
        record.settled = self.now >= self.settled_at
        record.tab_index = tab.index
        self.execs.append(record)
        if not tab.alive or tab.frozen:
            record.tab_gone = not tab.alive
            record.outcome = "skipped"
            record.end = self.now
            return
        self._log(tab, f"execute {record.key[:80]}")
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

    def _cancel(self, record: ExecRecord) -> None:
        if record.end is not None or record.tab_index < 0:
            return  # it ended already (or never started): nothing to cancel
        tab = self.tabs[record.tab_index]
        if not tab.alive or tab.frozen or tab.waiters.get(record.waiter) is not record:
            return  # a frozen page runs no code: its caller cannot cancel now
        self.faults["cancel"] += 1
        self._log(tab, f"cancel execute {record.key} (waiter {record.waiter})")
        del tab.waiters[record.waiter]
        tab.cancelled_waiters.add(record.waiter)
        record.cancelled, record.outcome, record.end = True, "cancelled", self.now
        try:
            tab.node.cancel(record.waiter, self._local(tab))  # type: ignore[attr-defined]
        except BaseException:
            self._exception(tab, f"cancel(waiter {record.waiter} of {record.key!r})")
        self._after_input(tab)

    def _after_input(self, tab: _Tab) -> None:
        effects = tab.node.take_effects()
        if effects:
            self._apply(tab, effects)
        if tab.alive:
            self._reschedule(tab)

    def _apply(self, tab: _Tab, effects: list[Any]) -> None:
        for effect in effects:
            cls = type(effect)
            if cls is Send:
                self._broadcast(tab, effect.data)
            elif cls is StartCall:
                self._start_call(tab, effect)
            elif cls is Resolve or cls is Reject:
                self._settle(tab, effect)
            elif cls is LeaderChanged:
                self._leadership_dirty = True
                if effect.leader is not None:
                    tab.fresh = False
                self._log(tab, f"leader -> {effect.leader} (role {tab.node.role}, term {_safe(tab.node.term)})")
            elif cls is WatchPeer:
                self._watch(tab, effect.node_id)
            elif cls is CacheUpdated:
                value = effect.value
                forged = isinstance(value, dict) and "forged" in value  # a hostile post's: trusted, as any post
                if not forged and not _value_matches(value, effect.key):
                    self.violations.append(Violation(
                        "value", self.now, f"tab {tab.id} cached {_safe(effect.value)} under {effect.key!r}"))
                elif not forged:
                    self._check_scope(tab, value, f"cached under {effect.key!r} (from {effect.origin})")
            elif cls is FailureShared:
                pass  # the runtime tells on_error listeners; the simulator has none
            elif cls is CancelCall and CancelCall is not None:
                self._cancel_call(tab, effect.call_id)
            elif cls is Renamed and Renamed is not None:
                self._renamed(tab, effect.node_id)
            else:  # a runtime that drops an effect it does not know leaves someone waiting
                self.violations.append(Violation(
                    "effect", self.now, f"tab {tab.id} emitted an effect the simulator does not know: {effect!r}"))

    def _broadcast(self, tab: _Tab, data: str) -> None:
        self.messages += 1
        if self.trace is not None:
            self._log(tab, f"send {_short(data)}")
        now = self.now
        low, span = self.delay[0], self.delay[1] - self.delay[0]
        rand = self.rng.random
        last_to = tab.last_to
        push = heapq.heappush
        heap = self._heap
        for other in self._live:
            if other is tab:
                continue
            when = math.floor((now + low + rand() * span) * _RES + 0.5) / _RES
            previous = last_to.get(other.index)
            if previous is not None and when < previous:
                when = previous  # FIFO per sender→receiver pair
            last_to[other.index] = when
            self._seq += 1
            push(heap, (when, self._seq, _DELIVER, other, data, tab.index))

    def _start_call(self, tab: _Tab, effect: StartCall) -> None:
        """The flow function runs: it ends after a random duration, as the server and its pathology say."""
        self.call_count += 1
        number = self.call_count
        key = effect.key
        self.work_keys.add(key)
        ok = not self.server_down and key not in self.keys_down
        waiting = [r.start for r in tab.waiters.values() if r.key == key]
        self.calls[key].append((self.now, tab.id, ok, number, min(waiting, default=math.inf), tab.digest, tab.index,
                                tab.scope_since if tab.scope_since is not None else self.now))
        low, high = self.call_duration
        duration = _quantize(self.rng.uniform(low, high))
        self.produced[number] = self.now + duration
        pathology = None
        if self.pathology_rate and self.now < self.pathology_until and self.rng.random() < self.pathology_rate:
            pathology = self.rng.choices(self.pathologies, self.pathology_weights)[0]
            self.faults[f"flow-{pathology}"] += 1
            if pathology == "mutate":  # the function mutates the arguments it got, in place
                for arg in effect.args:
                    if isinstance(arg, list):
                        arg.append("mutated")
                    elif isinstance(arg, dict):
                        arg["mutated"] = number
        outcome: _Outcome
        if pathology == "cancelled":
            outcome = (False, FlowCancelled(f"the flow awaited a cancelled task (call {number})"), key, True, tab.node)
        elif ok:
            # The server answers as whoever is logged in: the value is the scope's own data.
            value: dict[str, Any] = {"key": key, "call": number, "at": self.now, "scope": tab.scope}
            if pathology == "huge":  # larger than any message may be, once encoded
                value["pad"] = "x" * (self.config.max_message_bytes + 1)
            elif pathology == "not-json":
                value["when"] = NotJSON()
            elif pathology == "big-int":
                value["big"] = 10 ** 5000
            try:  # what the runtime does with a result: a value that is not JSON data fails the call
                check_json(value, f"the result of flow {effect.flow!r}")
            except TypeError as error:
                outcome = (False, error, key, False, tab.node)
            else:
                outcome = (True, value, key, True, tab.node)
                if pathology is None:
                    self.produced_values[number] = json.dumps(value, sort_keys=True)
        else:
            down = ServerDown(f"server down (call {number})")
            if number % 3 == 0:  # an undecodable file name (surrogateescape): UTF-8 cannot carry it
                down = ServerDown(f"server down (call {number}, {_UNDECODABLE})")
            outcome = (False, down, key, True, tab.node)
        hangs = pathology == "hang"
        self._log(tab, f"call {effect.call_id} {key} ({'hangs' if hangs else 'ok' if outcome[0] else 'will fail'}"
                       f" in {duration}ms{', ' + pathology if pathology else ''})")
        self._running[(tab.index, effect.call_id)] = hangs
        tab.started_calls[effect.call_id] = key
        if hangs:  # it never returns; should the node give up on it, it may still return late
            self._hung[(tab.index, effect.call_id)] = outcome
        else:
            self._push(self.now + duration, _CALL_DONE, tab, effect.call_id, outcome)

    def _cancel_call(self, tab: _Tab, call_id: int) -> None:
        """``CancelCall``: the node gave up on a call; the runtime cancels its task."""
        self.events["calls given up"] += 1
        self._log(tab, f"cancel call {call_id}")
        self._running.pop((tab.index, call_id), None)
        if call_id not in tab.started_calls:
            self.violations.append(Violation(
                "effect", self.now, f"tab {tab.id}: CancelCall({call_id}) for a call it never started"))
            return
        tab.cancelled_calls.add(call_id)
        # Giving up is a failure: a back-off may start.
        self.failure_times[(tab.digest, tab.started_calls[call_id])].append(self.now)
        outcome = self._hung.pop((tab.index, call_id), None)
        if outcome is not None:  # a cancelled task may still report: the node must ignore it
            low, high = self.call_duration
            self._push(self.now + _quantize(self.rng.uniform(low, high)), _CALL_DONE, tab, call_id, outcome)

    def _settle(self, tab: _Tab, effect: Resolve | Reject) -> None:
        record = tab.waiters.pop(effect.waiter, None)
        if record is None:
            if effect.waiter in tab.cancelled_waiters:
                self.violations.append(Violation(
                    "cancel", self.now, f"tab {tab.id}: {type(effect).__name__} for waiter {effect.waiter}, "
                    "whose caller cancelled it"))
            else:
                self.violations.append(Violation(
                    "execute", self.now,
                    f"tab {tab.id}: {type(effect).__name__} for unknown or finished waiter {effect.waiter}"))
            return
        record.end = self.now
        if isinstance(effect, Resolve):
            value = effect.value
            record.outcome, record.source, record.value = "resolved", effect.source, value
            if not _value_matches(value, record.key):
                self.violations.append(Violation(
                    "value", self.now, f"tab {tab.id}: execute of {record.key!r} resolved with {_safe(value)}"))
            elif "forged" not in value:
                self._check_scope(tab, value, f"execute of {record.key!r} resolved from the {effect.source} with")
                self._check_served(tab, record, value, effect.source)
            self._log(tab, f"resolve {record.key} from {effect.source}")
        else:
            error = effect.error
            record.error = error
            if isinstance(error, ScopeChangedError):  # the page switched scope while it waited
                record.outcome = "scope-changed"
            else:
                record.outcome = "disposed" if isinstance(error, MeshDisposedError) else "rejected"
            if record.outcome == "rejected":
                name = error.error_type if isinstance(error, SharedFlowError) else type(error).__name__
                if name not in self.allowed_errors:
                    self.violations.append(Violation(
                        "execute", self.now, f"tab {tab.id}: execute of {record.key!r} rejected with {_safe(error)}"))
                if isinstance(error, SharedFlowError) and error.retry_in > 0:
                    self._check_blocked(tab, record.key, error.retry_in)
            self._log(tab, f"reject {record.key}: {type(error).__name__}")
        if record.on_end is not None:
            record.on_end(record)

    def _check_scope(self, tab: _Tab, value: dict[str, Any], what: str) -> None:
        """A value the tab caches or resolves with was produced for the tab's own scope (the server's
        values say which); a hostile post's forged values are trusted, as any post of the scope."""
        self.scope_checks += 1
        if "scope" in value and value["scope"] == tab.scope:
            return
        produced = f"for scope {value['scope']!r}" if "scope" in value else "without a scope"
        self.violations.append(Violation(
            "cross-scope", self.now, f"tab {tab.id} (scope {tab.scope!r} since {tab.scope_since}): {what} "
            f"{_safe(value)}, produced {produced}"))

    def _check_served(self, tab: _Tab, record: ExecRecord, value: dict[str, Any], source: str) -> None:
        """A resolved value is the server's, unchanged, and fresh; from the mesh, it is cached too."""
        age = self._true_age(value)
        if source != "call":
            self.max_served_age = max(self.max_served_age, age - self.config.stale_time)
            if age > self.config.stale_time + self.freshness_slack:
                self.stale_serves.append((self.now, tab.id, record.key, age))
        call = value.get("call")
        produced = self.produced_values.get(call) if isinstance(call, int) else None
        if produced is not None:
            try:
                same = json.dumps(value, sort_keys=True) == produced
            except (TypeError, ValueError):
                same = False
            if not same:
                self.violations.append(Violation(
                    "value", self.now, f"tab {tab.id}: execute of {record.key!r} got {_safe(value)} from the "
                    f"{source}, not what the server returned ({produced[:120]}): a caller or a flow "
                    "mutated an object the mesh shares"))
        if (source == "mesh" and self.now >= self.settled_at and self.config.share_cache
                and age + self.freshness_slack < self.config.stale_time):
            entry = next((e for e in tab.node.cache.held() if e.key == record.key), None)
            if entry is None or entry.value != value:
                self.violations.append(Violation(
                    "cache", self.now, f"tab {tab.id} got {_safe(value)} from the mesh but caches "
                    f"{None if entry is None else _safe(entry.value)}"))
        if self.pathology_rate and self.now < self.pathology_until and self.rng.random() < self.caller_mutation_rate:
            value["mutated by the caller"] = True  # a page mutating the data an execute returned
            self.faults["caller-mutate"] += 1

    def _check_blocked(self, tab: _Tab, key: str, retry_in: float) -> None:
        """A back-off ends within ``max_error_backoff`` of the failure that started it (in this tab's view)."""
        cap = self.config.max_error_backoff
        started = max((t for t in self.failure_times.get((tab.digest, key), ()) if t <= self.now), default=None)
        slack = 2 * self.delay[1]
        blocked = self.now + retry_in - started if started is not None else math.inf
        if retry_in <= cap + 1e-6 and blocked <= cap + slack:
            return
        if started is not None and any(a <= self.now and b >= started for a, b in tab.frozen_spans):
            return  # the Failure waited in a frozen tab's queue: its retry_in did not age meanwhile
        since = "no failure of that key" if started is None else f"the failure at {started:.1f}"
        self.violations.append(Violation(
            "blocked", self.now, f"tab {tab.id}: {key!r} is blocked for {retry_in:,.1f}ms more "
            f"(until {self.now + retry_in:,.1f}) after {since}; max_error_backoff is {cap:,.0f}ms"))

    def _watch(self, tab: _Tab, node_id: str | None) -> None:
        """``WatchPeer``: queue for the Web Lock of ``node_id`` in the tab's scope (the lock's name has both)."""
        if not self.locks:
            return
        tab.watching = node_id
        if node_id is None:
            return
        if not self._lock_held(tab.digest, node_id):
            # Nobody holds that lock (the tab is gone, or in another scope now): granted at once.
            self._push(self.now + self._delay(), _PEER_GONE, tab, node_id, tab.node)

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
            if other.watching == node_id and other.node.scope_digest == digest:
                self._push(self.now + _quantize(self.rng.uniform(low, high)), _PEER_GONE, other, node_id, other.node)

    def _renamed(self, tab: _Tab, new: str) -> None:
        """``Renamed``: the node took a new ID (another tab had its own); the runtime re-keys its lock."""
        old = tab.id
        self.events["renames"] += 1
        self._log(tab, f"renamed {old} -> {new}")
        if not isinstance(new, str) or new == old or tab.node.node_id != new:
            self.violations.append(Violation(
                "effect", self.now, f"tab {old}: Renamed({new!r}) but its node_id is {tab.node.node_id!r}"))
            return
        if new in self.by_id and self.by_id[new] is not tab and self.by_id[new].alive:
            self.violations.append(Violation("effect", self.now, f"tab {old} renamed itself to the live ID {new}"))
        tab.id = new
        self.by_id[new] = tab
        if self.by_id.get(old) is tab:
            others = [t for t in self._live if t.id == old]
            if others:
                self.by_id[old] = others[0]
        self._leadership_dirty = True
        if tab.alive and not tab.away:
            self._release_lock(tab.digest, old)

    def _set_server(self, down: bool) -> None:
        self.server_down = down
        if down:
            self.faults["outage"] += 1
            self.outages.append([self.now, math.inf])
        elif self.outages and self.outages[-1][1] == math.inf:
            self.outages[-1][1] = self.now
        self._log(None, f"server {'down' if down else 'up'}")

    def _true_age(self, value: Any) -> float:
        """How long ago the server produced ``value`` (a value of this simulation's calls)."""
        call = value.get("call") if isinstance(value, dict) else None
        produced = self.produced.get(call) if isinstance(call, int) else None
        return math.inf if produced is None else self.now - produced

    def _check_synced(self, joiner: _Tab, node: MeshNode) -> None:
        """A tab that joined a settled mesh (opened, or switched scope: ``node``) holds every entry of
        its scope it was owed when it asked.

        Owed: fresh entries produced before it joined (later ones come by broadcast) that
        the protocol promises to sync: leader-follower, what the leader holds; peer-to-peer,
        what each tab produced itself. Fresh entries some tab holds but nobody was bound to
        sync (their producer left, peer-to-peer; the leader, elected after joining late,
        never had them) are only counted in ``unsynced``: a known limitation.
        """
        if not joiner.alive or joiner.scope_since is None or joiner.node is not node:
            return  # gone, or switched scope again since
        joined, digest = joiner.scope_since, joiner.digest
        scope = [t for t in self._live if t.node.scope_digest == digest]  # the joiner's mesh
        margin = self.sync_window + self.freshness_slack
        leader: str | None = None
        if self.config.strategy == "leader-follower":
            # The leader syncs joiners (another joiner may still be joining: the mesh need not
            # have converged). Without exactly one leader nobody was bound to.
            leaders = [t.id for t in scope if t.node.role is Role.LEADER]
            if len(leaders) != 1:
                return
            leader = leaders[0]
        owed: dict[str, tuple[float, _Tab]] = {}
        held: set[str] = set()
        joiner_holds = {entry.key: entry for entry in joiner.node.cache.held()}
        for tab in scope:
            if tab is joiner:
                continue
            for entry in tab.node.cache.held():
                key = entry.key
                age = self._true_age(entry.value)
                if age + margin >= self.config.stale_time or self.now - age > joined:
                    continue  # may have gone stale before the Sync, or produced after the join
                if isinstance(entry.value, dict) and "pad" in entry.value:
                    continue  # larger than any message: no Sync can carry it
                have = joiner_holds.get(key)
                if have is not None and self._true_age(have.value) <= age:
                    continue
                origin = self.by_id.get(entry.origin)
                if tab.id == leader or (leader is None and origin is tab):
                    owed[key] = (age, tab)
                else:
                    held.add(key)
        for key, (_, tab) in owed.items():
            self.violations.append(Violation(
                "sync", self.now, f"tab {joiner.id} joined at {joined:.1f} but lacks {key!r}, "
                f"fresh in tab {tab.id}, which was to sync it"))
        self.unsynced += len(held - set(owed))

    # --- internals: faults ---------------------------------------------------------------

    def _vanish(self, tab: _Tab, how: str) -> None:
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

    def _crash(self, tab: _Tab) -> None:
        if not tab.alive:
            return
        self.faults["crash"] += 1
        self._log(tab, f"CRASH ({tab.node.role})")
        self._vanish(tab, "crash")

    def _close(self, tab: _Tab) -> None:
        if not tab.alive:
            return
        if tab.away:
            self._come_back(tab)  # a page in the bfcache is evicted without a word, not closed
        if tab.frozen:
            self._thaw(tab)  # a frozen page runs nothing; it would be discarded, not closed
        self.faults["close"] += 1
        self._log(tab, f"CLOSE ({tab.node.role})")
        try:
            tab.node.leave(self._local(tab))
        except BaseException:
            self._exception(tab, "leave")
        effects = tab.node.take_effects()
        self._apply(tab, effects)
        for record in tab.waiters.values():
            self.violations.append(Violation(
                "leftover", self.now, f"tab {tab.id} closed with the execute of {record.key!r} still waiting"))
        self._vanish(tab, "close")

    def _switch_scope(self, tab: _Tab, scope: str | None) -> None:
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
        self._log(tab, f"SCOPE {tab.scope!r} -> {scope!r} ({tab.node.role})")
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
        tab.watching = None
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
        if self.now >= self.settled_at and self.config.share_cache:
            node = tab.node
            self._push(self.now + self.sync_window, _ACTION, None, lambda: self._check_synced(tab, node), None)
        self._after_input(tab)
        self._reschedule(tab, force=True)  # the old node's ticks are stale

    def _freeze(self, tab: _Tab) -> None:
        if not tab.alive or tab.frozen:
            return
        self.faults["freeze"] += 1
        self._log(tab, f"FREEZE ({tab.node.role})")
        tab.frozen = True
        tab.frozen_spans.append([self.now, math.inf])

    def _thaw(self, tab: _Tab) -> None:
        if not tab.alive or not tab.frozen or tab.away:
            return
        self._log(tab, f"THAW ({len(tab.backlog)} queued)")
        tab.frozen = False
        tab.frozen_spans[-1][1] = self.now
        self._run_backlog(tab)

    def _go_away(self, tab: _Tab) -> None:
        """``pagehide`` with ``persisted``: the node leaves (``set_frozen(True)``), the page is frozen,
        its Web Lock is released, and whatever is posted meanwhile never reaches it."""
        if not tab.alive or tab.frozen:
            return
        self.faults["bfcache"] += 1
        self._log(tab, f"BFCACHE leave ({tab.node.role})")
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

    def _come_back(self, tab: _Tab) -> None:
        """``pageshow`` with ``persisted``: the page runs again, re-takes its lock and rejoins."""
        if not tab.alive or not tab.away:
            return
        self._log(tab, f"BFCACHE return ({len(tab.backlog)} queued)")
        tab.away = tab.frozen = False
        tab.frozen_spans[-1][1] = self.now
        self._leadership_dirty = True
        try:
            tab.node.set_frozen(False, self._local(tab))
            tab.node.set_hidden(tab.hidden, self._local(tab))  # it may have been shown meanwhile
        except BaseException:
            self._exception(tab, "set_frozen(False)")
        self._after_input(tab)
        self._run_backlog(tab)

    def _run_backlog(self, tab: _Tab) -> None:
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

    def _hide(self, tab: _Tab, period: float) -> None:
        if not tab.alive or tab.hidden:
            return
        self.faults["throttle"] += 1
        self._log(tab, f"HIDE (timers every {period:.0f}ms)")
        tab.hidden = True
        tab.throttle_period = period
        tab.throttle_base = _quantize(self.now - self.rng.uniform(0.0, period))
        if not tab.frozen:
            try:
                tab.node.set_hidden(True, self._local(tab))
            except BaseException:
                self._exception(tab, "set_hidden(True)")
            self._after_input(tab)
        self._reschedule(tab, force=True)

    def _show(self, tab: _Tab) -> None:
        if not tab.alive or not tab.hidden:
            return
        self._log(tab, "SHOW")
        tab.hidden = False
        if tab.away:
            return  # it tells its node when it comes back
        if tab.frozen:
            self._thaw(tab)
        try:
            tab.node.set_hidden(False, self._local(tab))
        except BaseException:
            self._exception(tab, "set_hidden(False)")
        self._after_input(tab)
        self._reschedule(tab, force=True)

    # --- internals: convergence ----------------------------------------------------------

    def _converged_leaders(self, tabs: Iterable[_Tab]) -> dict[str, str] | None:
        """Per scope digest, the one leader its tabs follow; ``None`` unless every scope's mesh among
        ``tabs`` has exactly one leader that all its other tabs follow (scopes are separate meshes)."""
        leaders: dict[str, str] = {}
        followers: list[_Tab] = []
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

    def _update_convergence(self) -> None:
        self._leadership_dirty = False
        if self.config.strategy != "leader-follower":
            return
        converged = bool(self._converged_leaders(t for t in self._live if not t.fresh and not t.away))
        if converged and self.converged_since is None:
            self.converged_since = self.now
            if self.leadership_changes:
                self.failovers.append(self.now - self.leadership_changes[-1])
        elif not converged and self.converged_since is not None:
            self.converged_since = None
            self.leadership_changes.append(self.now)


def _last_error(node: MeshNode) -> str:
    """The traceback of the last unexpected exception a node caught (if the core keeps it)."""
    error = getattr(node, "last_internal_error", None)
    if not isinstance(error, BaseException):
        return ""
    return "; the last one:\n" + "".join(traceback.format_exception(type(error), error, error.__traceback__))


def _value_matches(value: Any, key: str) -> bool:
    return isinstance(value, dict) and value.get("key") == key


# The longest heartbeat interval a follower may believe (a forged Coordinator says more): the
# simulator's bound on how long a ghost leader is followed without Web Locks.
MAX_INTERVAL = 60_000.0
# Every number a node holds that came from the wire stays below this (JavaScript's safe integers).
WIRE_MAX = 2**53


def _derive_bounds(config: MeshConfig, sim: Simulation, call_max: float, delay_max: float,
                   lock_max: float, forged_leaders: bool = True) -> Bounds:
    heartbeat = config.heartbeat
    # A dead leader is noticed at most a silence limit after its last heartbeat (sent
    # before the quiet phase; in flight for at most one delay). The limit is the hidden
    # one if a tab died while hidden: its last heartbeat told its followers to wait that long.
    hidden_death = any(tab.died_hidden for tab in sim.tabs)
    silence = config.silence_limit(heartbeat, hidden_death)
    if forged_leaders and sim.hostile_leaders and not sim.locks:
        # A forged leader (no Web Lock says it is gone) is followed this long at most.
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
    if sim.pathology_rate:  # a call that never returns is given up after call_timeout; a fallback may hang too
        fault_tail += config.call_timeout + call_max
    # Once settled: Request → Accept → call → Result, or claim → call → Result.
    quiet = config.claim_window + call_max + 4 * delay_max
    return Bounds(convergence=convergence, fault_execute=convergence + fault_tail, quiet_execute=quiet)


def run(
    seed: int,
    tabs: int | None = None,
    *,
    strategy: str = "leader-follower",
    faults: bool | Iterable[str] = True,
    locks: bool = True,
    heartbeat: float = 1000.0,
    share_cache: bool = True,
    pathologies: Iterable[str] | None = None,
    scopes: Sequence[str | None] = (None,),
    verbose: bool = False,
    run_plan: RunPlan | None = None,
) -> SimulationReport:
    """Run one random scenario of seed ``seed`` and check its invariants (never raises for a violation).

    Args:
        tabs: the tabs open at the start (default: from the seed, 2..50); late
            joiners come on top.
        strategy: ``"leader-follower"`` or ``"peer-to-peer"``.
        faults: ``True`` for every kind in :data:`FAULT_KINDS`, ``False`` for none,
            or the kinds to inject.
        locks: model Web Locks (``peer_gone`` 40–90 ms after a watched tab vanishes).
        heartbeat: the mesh heartbeat; other timeouts follow (:func:`sim_config`).
        share_cache: the mesh option (results reach only the tabs that wait for them if ``False``).
        pathologies: how flow functions misbehave with the "pathological" fault (default: every
            kind of :data:`PATHOLOGIES`).
        scopes: the scopes tabs open in, each drawn from these (a "scope-switch" fault may
            take a tab to any of :data:`SCOPES`).
        verbose: keep an event trace in ``report.trace``.
    """
    config = sim_config(strategy, heartbeat=heartbeat, locks=locks, share_cache=share_cache)
    sim = Simulation(seed, config, locks=locks, verbose=verbose)
    if pathologies is not None:
        chosen = tuple(pathologies)
        sim.pathology_weights = tuple(w for k, w in zip(PATHOLOGIES, _PATHOLOGY_WEIGHTS, strict=True) if k in chosen)
        sim.pathologies = tuple(k for k in PATHOLOGIES if k in chosen)
    rng = sim.rng
    if tabs is None:
        tabs = rng.randint(2, 50)
    kinds = FAULT_KINDS if faults is True else () if faults is False else tuple(faults)
    weights = [w for k, w in zip(FAULT_KINDS, _FAULT_WEIGHTS, strict=True) if k in kinds]
    kinds = tuple(k for k in FAULT_KINDS if k in kinds)
    beat = config.heartbeat
    call_max, delay_max, lock_max = sim.call_duration[1], sim.delay[1], sim.lock_delay[1]

    # Timeline: tabs open over the first two beats; faults strike during the fault
    # phase [beat, quiet_at); then nothing fails any more and the mesh must settle.
    fault_start = beat
    quiet_at = _quantize(fault_start + rng.uniform(6, 12) * beat)

    def page_flows() -> tuple[str, ...]:
        if rng.random() < 0.15:  # an older page without the optional flow
            return tuple(f for f in FLOWS if f != OPTIONAL_FLOW)
        return tuple(FLOWS)

    scopes = tuple(scopes)

    def start_scope() -> str | None:
        """The scope a tab opens in (no draw in a run of one scope)."""
        return scopes[0] if len(scopes) == 1 else rng.choice(scopes)

    def one_scope(tabs: Sequence[_Tab]) -> str | None:
        """The digest of the one scope of ``tabs`` (``""`` for none), or ``None`` if they are of several
        (a run in one scope draws nothing more than before scopes existed)."""
        digests = {t.digest for t in tabs}
        return digests.pop() if len(digests) == 1 else "" if not digests else None

    sim.add_tab(0.0, flows=tuple(FLOWS), scope=start_scope())
    for _ in range(tabs - 1):
        sim.add_tab(rng.uniform(0, 2 * beat), flows=page_flows(), scope=start_scope())

    def pick(prefer_leader: bool, unfrozen: bool = False, spare: bool = False) -> _Tab | None:
        live = [t for t in sim._live if not (unfrozen and t.frozen)]
        if spare and len(sim._live) <= 1:
            return None  # keep one tab open
        if not live:
            return None
        if prefer_leader:
            leaders = [t for t in live if t.node.role is Role.LEADER]
            if leaders:
                return rng.choice(leaders)
        return rng.choice(live)

    def fault(kind: str, when: float) -> None:
        prefer_leader = rng.random() < 0.5
        if kind == "crash":
            def act() -> None:
                tab = pick(prefer_leader, spare=True)
                if tab:
                    sim._crash(tab)
        elif kind == "close":
            def act() -> None:
                tab = pick(prefer_leader, unfrozen=True, spare=True)
                if tab:
                    sim._close(tab)
        elif kind == "freeze":
            length = rng.uniform(0.2, 6.0) * beat

            def act() -> None:
                tab = pick(prefer_leader, unfrozen=True)
                if tab:
                    sim._freeze(tab)
                    sim.at(min(sim.now + length, quiet_at), lambda: sim._thaw(tab))
        elif kind == "throttle":
            length = rng.uniform(1.0, 10.0) * beat
            period = rng.choice((1000.0, 10_000.0, 60_000.0))

            def act() -> None:
                tab = pick(prefer_leader)
                if tab:
                    sim._hide(tab, period)
                    sim.at(min(sim.now + length, quiet_at), lambda: sim._show(tab))
        elif kind == "join":
            sim.at(when, lambda: sim.faults.update(["join"]))
            sim.add_tab(when, flows=page_flows(), scope=start_scope())
            return
        elif kind == "outage":
            sim.outage(when, min(when + rng.uniform(0.5, 4.0) * beat, quiet_at))
            return
        elif kind == "pathological":  # flow functions that misbehave, now and then, in the fault phase
            sim.faults["pathological"] += 1
            sim.pathology_rate = max(sim.pathology_rate, 0.1)
            sim.caller_mutation_rate = 0.2
            sim.pathology_until = quiet_at
            sim.allowed_errors.update(("FlowCancelled", "TypeError"))
            return
        elif kind == "hostile":  # a hostile or buggy script posts extreme messages of every type
            sim.faults["hostile"] += 1

            def post() -> str:  # in the envelope of a live tab's scope, impersonating its tabs
                digest = one_scope(sim._live)
                if digest is None:
                    digest = rng.choice(sim._live).digest
                return hostile_message(rng, [t.id for t in sim._live if t.digest == digest], keys, digest)
            for _ in range(rng.randint(1, 4)):
                sim.inject(post, rng.uniform(fault_start, quiet_at), kind="hostile-post")
            return
        elif kind == "cancel":  # callers that stop waiting (asyncio cancel, wait_for)
            sim.faults["cancel-callers"] += 1
            cancels["rate"] = max(cancels["rate"], 0.3)
            return
        elif kind == "bfcache":
            length = rng.uniform(0.2, 8.0) * beat

            def act() -> None:
                tab = pick(prefer_leader, unfrozen=True, spare=True)
                if tab:
                    sim._go_away(tab)
                    sim.at(min(sim.now + length, quiet_at), lambda: sim._come_back(tab))
        elif kind == "twin-id":
            def act() -> None:
                tab = pick(prefer_leader, unfrozen=True)
                if tab:
                    sim.add_twin(None, of=tab.id)
        elif kind == "bad-args":
            sim.at(when, lambda: sim.faults.update(["bad-args"]))
            bad_execute_at(when)
            return
        elif kind == "long-outage":
            long_outage["seed"] = rng.getrandbits(32)
            return
        elif kind == "scope-switch":  # a login, logout or account switch
            together = rng.random() < 0.3  # every tab of the scope (a cookie login is the browser's)
            rejoin = rng.random() < 0.15  # set_scope(same, forget=True): a full reset and rejoin
            spread = rng.uniform(0.0, 2.0) * beat  # the other tabs notice within this
            busy = rng.random() < 0.5  # the page was loading data: an execute (and maybe its call) runs
            flow, args = rng.choice(keys)
            delay = _quantize(rng.uniform(0.0, call_max))

            def switch(tab: _Tab) -> None:
                current = tab.scope
                target = current if rejoin else rng.choice([s for s in SCOPES if s != current])
                sim._switch_scope(tab, target)
                for other in [t for t in sim._live if t.scope == current and t is not tab] if together else ():
                    at = sim.now + _quantize(rng.uniform(0.0, spread))
                    if at < quiet_at:
                        sim.at(at, lambda other=other: sim._switch_scope(other, target)  # type: ignore[misc]
                               if other.scope == current else None)

            def act() -> None:
                tab = pick(prefer_leader, unfrozen=True)
                if tab is None:
                    return
                if not busy or flow not in tab.flows:
                    switch(tab)
                    return
                execute_in(tab, flow, args, False)
                if sim.now + delay < quiet_at:
                    sim.at(sim.now + delay, lambda: switch(tab) if tab.alive and not tab.frozen else None)
                else:
                    switch(tab)
        else:  # noise: a foreign script, or another version of the page, on the channel
            raw = rng.choice((
                '{"proto":"pyflowmesh","v":2,"type":"heartbeat","src":"future","term":99,"interval":1000,"hidden":false}',
                '{"proto":"pyflowmesh","v":1,"type":"coordinator","src":"x","term":"99"}',
                '{"hello": "world"}', "not json at all", '[1,2,3]',
            ))
            sim.inject(raw, when)
            return
        sim.at(when, act)

    # Executes from random tabs on a small set of keys, through both phases.
    keys = [(flow, args) for flow, choices in FLOWS.items() for args in choices]
    cancels = {"rate": 0.0}
    long_outage: dict[str, int] = {}

    def execute_in(tab: _Tab, flow: str, args: tuple[Any, ...], quiet: bool) -> None:
        args = copy.deepcopy(args)  # the caller's own objects: a flow may mutate them
        record = ExecRecord(tab.id, flow, args, cache_key(flow, args), sim.now, quiet=quiet)
        sim._execute(tab, record)
        if cancels["rate"] and rng.random() < cancels["rate"] / (3 if quiet else 1):
            sim.cancel(record, sim.now + _quantize(rng.uniform(0, 2 * call_max)))

    def execute_at(when: float, quiet: bool) -> None:
        flow, args = rng.choice(keys)

        def act() -> None:
            candidates = [t for t in sim._live if not t.frozen and flow in t.flows]
            if candidates:
                execute_in(rng.choice(candidates), flow, args, quiet)
        sim.at(when, act)

    def burst_at(when: float) -> None:
        """Several tabs execute one key within a few claim windows of each other; sometimes a tab
        joins meanwhile and executes it too, a few ms after it hears the mesh."""
        flow, args = rng.choice(keys)
        spread = 4 * config.claim_window
        joiner = "join" in kinds and rng.random() < 0.5

        def act() -> None:
            # One scope's tabs (and joiners), so that they all wait for the same call.
            if one_scope(sim._live) is None:
                scope = rng.choice(sim._live).scope
            else:
                scope = sim._live[0].scope if sim._live else config.scope
            candidates = [t for t in sim._live if flow in t.flows and t.scope == scope]
            joiner_config = config if scope == config.scope else config.with_options(scope=scope)
            for tab in rng.sample(candidates, min(len(candidates), rng.randint(2, 6))):
                def one(tab: _Tab = tab) -> None:
                    if tab.alive and not tab.frozen:
                        execute_in(tab, flow, args, True)
                sim.at(sim.now + _quantize(rng.uniform(0, spread)), one)
            # Joiners open a few ms apart once the key's owner calls, and execute at once: a
            # joiner missed the claims made before it opened (and the owner's replies to them).
            start = sim.now + config.claim_window + 2 * delay_max + _quantize(rng.uniform(0, spread))
            for _ in range(rng.randint(2, 3) if joiner else 0):
                sim.faults["join"] += 1
                tab = sim._new_tab(None, tuple(FLOWS), joiner_config)
                start += _quantize(rng.uniform(1.0, 2 * config.claim_window / 3))
                sim.at(start, lambda tab=tab: sim._start(tab))  # type: ignore[misc]
                settle = config.answer_timeout if config.strategy == "leader-follower" else 0.0
                sim.at(start + settle + _quantize(rng.uniform(0.5, 3.0)),
                       lambda tab=tab: execute_in(tab, flow, args, True)  # type: ignore[misc]
                       if tab.alive and not tab.frozen else None)
        sim.at(when, act)

    def bad_execute_at(when: float) -> None:
        """An execute whose arguments cannot be shared: a TypeError in its tab, or it ends as any other."""
        choice = rng.randrange(4)

        def act() -> None:
            candidates = [t for t in sim._live if not t.frozen]
            if not candidates:
                return
            tab = rng.choice(candidates)
            bad: Any = (10 ** 5000, "x" * (config.max_message_bytes + 16), _deep(100), NotJSON())[choice]
            try:
                key = cache_key("search", (bad,))
            except (TypeError, ValueError):
                key = f"search[<{type(bad).__name__}>]"
            record = ExecRecord(tab.id, "search", (bad,), key, sim.now, bad_args=True)
            sim._execute(tab, record)
        sim.at(when, act)

    if kinds:
        for _ in range(rng.randint(1, 3 + tabs // 6)):
            fault(rng.choices(kinds, weights)[0], rng.uniform(fault_start, quiet_at))

    for _ in range(rng.randint(3, 8 + tabs // 3)):
        execute_at(rng.uniform(0, quiet_at), False)

    # The quiet phase: everything thaws and shows, the server is up; a few late joiners.
    def quiet() -> None:
        sim._set_server(False)
        for tab in list(sim._live):
            if tab.away:
                sim._come_back(tab)
            if tab.frozen:
                sim._thaw(tab)
            if tab.hidden:
                sim._show(tab)
    sim.at(quiet_at, quiet)
    sim.run_until(quiet_at)
    _check_bounded(sim, "at the end of the fault phase")
    _check_held(sim, "at the end of the fault phase")
    bounds = _derive_bounds(config, sim, call_max, delay_max, lock_max)

    # Settled: converged (leader-follower), no execute of the fault phase open, no tab
    # with work in progress. From then on the tight bounds apply: an execute ends within
    # bounds.quiet_execute, a result from the mesh is cached, a joiner is synced at once.
    # A claim whose owner vanished lingers in the other tabs until its patience (the
    # visible silence limit) runs out: at most that long after the faults.
    claims_expired = quiet_at + config.silence_limit(config.heartbeat, False)

    def settled() -> bool:
        if sim.now < claims_expired:
            return False
        if config.strategy == "leader-follower" and sim.converged_since is None:
            return False
        if any(tab.waiters or sim.busy(tab) for tab in sim._live):
            return False
        return sim._calls_in_flight == 0

    def watch_settling() -> None:
        if sim.settled_at == math.inf:
            if settled():
                sim.settled_at = sim.now
                sim._log(None, "settled")
            else:
                sim.at(sim.now + beat / 10, watch_settling)
    sim.at(quiet_at, watch_settling)

    # The schedule of the quiet phase does not stretch for a forged leader: a mesh that gets
    # over it sooner ends sooner (below, the run goes on to the bound only while not converged).
    usual_convergence = _derive_bounds(config, sim, call_max, delay_max, lock_max, forged_leaders=False).convergence
    quiet_span = usual_convergence + 2 * config.stale_time
    if "join" in kinds:
        for _ in range(rng.randint(0, 2)):
            sim.add_tab(quiet_at + rng.uniform(0, quiet_span), flows=page_flows(), scope=start_scope())
    for _ in range(rng.randint(3, 6 + tabs // 4)):
        execute_at(quiet_at + rng.uniform(0, quiet_span), True)
    for _ in range(rng.randint(0, 2)):
        burst_at(quiet_at + rng.uniform(0, quiet_span))
    # Run past every scripted action and the convergence bound; then on while an
    # execute is open, up to the bound of the fault phase's executes.
    end_at = quiet_at + max(quiet_span + bounds.quiet_execute, usual_convergence) + beat
    sim.run_until(end_at)
    converge_by = quiet_at + bounds.convergence + beat
    while sim.now < converge_by and config.strategy == "leader-follower" and sim.converged_since is None:
        sim.run_until(min(sim.now + beat, converge_by))
    limit = quiet_at + bounds.fault_execute + beat
    while sim.now < limit and any(tab.waiters for tab in sim._live):
        sim.run_until(min(sim.now + beat, limit))
    end_at = sim.now
    _check_bounded(sim, "at the end")
    _check_held(sim, "at the end")
    if "seed" in long_outage:
        sim.violations.extend(_long_outage(long_outage["seed"], strategy, locks, sim))

    report = _check(sim, config, bounds, quiet_at, end_at)
    report.plan = run_plan
    report.tab_ms = sim.tab_ms()
    report.settled_at = sim.settled_at
    report.stale_serves = len(sim.stale_serves)
    report.max_served_age = sim.max_served_age
    report.unsynced = sim.unsynced
    report.failovers = sim.failovers
    report.events = sim.events
    report.scope_checks = sim.scope_checks
    return report


def _check_held(sim: Simulation, when: str) -> None:
    """No live tab holds in its cache a value the server produced for another scope (the effects
    checked what entered; this checks what stayed, including what a scope switch left behind)."""
    for tab in sim._live:
        for entry in tab.node.cache.held():
            value = entry.value
            if isinstance(value, dict) and "forged" not in value:
                sim._check_scope(tab, value, f"holds {when} under {entry.key!r}")


def _check_bounded(sim: Simulation, when: str) -> None:
    """Every number a live node holds that may have come from the wire is bounded.

    Its term and cache versions stay below :data:`WIRE_MAX`; a back-off ends within
    ``max_error_backoff``; its next deadline is no further than the longest timeout a
    follower may wait (a hidden leader's, or :data:`MAX_INTERVAL`'s silence limit).
    """
    config = sim.config
    horizon = max(config.hidden_timeout, config.call_timeout, config.stale_time,
                  config.silence_limit(MAX_INTERVAL, True))
    for tab in sim._live:
        if tab.away:
            continue
        node, now = tab.node, tab.last_local
        problems = []
        try:
            if not 0 <= node.term < WIRE_MAX:
                problems.append(f"term {_safe(node.term)}")
            for failure in node.backoffs(now):
                if failure.retry_in > config.max_error_backoff + 1e-6:
                    problems.append(f"a back-off of {failure.key!r} for {_safe(failure.retry_in)}ms more")
                if not 0 <= failure.attempt < WIRE_MAX:
                    problems.append(f"attempt {_safe(failure.attempt)} of {failure.key!r}")
            for entry in node.cache.snapshot(now):
                if not 0 <= entry.version < WIRE_MAX:
                    problems.append(f"version {_safe(entry.version)} of {entry.key!r}")
            deadline = node.next_deadline()
            if deadline is not None and deadline - now > horizon:
                problems.append(f"its next deadline {_safe(deadline - now)}ms away")
        except BaseException:
            sim._exception(tab, "inspecting its state")
            continue
        if problems:
            sim.violations.append(Violation(
                "bounded", sim.now, f"tab {tab.id} {when}: {'; '.join(problems)} (bounds: {WIRE_MAX} for counts, "
                f"max_error_backoff {config.max_error_backoff:.0f}ms, deadlines within {horizon:.0f}ms)"))


def _long_outage(seed: int, strategy: str, locks: bool, parent: Simulation, failures: int = 1100) -> list[Violation]:
    """Thousands of consecutive failures of one key: two tabs of the default config, the key's
    server down for ~9 virtual hours, an execute repeated as soon as each back-off ends.

    A run of its own (two tabs keep it cheap). Every execute ends, none is blocked past
    ``max_error_backoff``, no exception escapes; then the server comes back and the key works.
    """
    config = sim_config(strategy, heartbeat=5000.0, locks=locks)
    sim = Simulation(seed, config, locks=locks)
    first, second = sim.add_tab(0.0), sim.add_tab(0.0)
    key_args: tuple[Any, ...] = (1,)
    key = cache_key("user", key_args)
    sim.keys_down.add(key)
    limit = (config.effective_request_timeout + 2 * config.call_timeout + config.silence_limit(config.heartbeat, False)
             + config.claim_window + sim.call_duration[1] + 8 * sim.delay[1])
    executes: list[ExecRecord] = []
    open_: list[ExecRecord | None] = [None]  # the execute the driver waits for

    def next_execute(when: float) -> None:
        record = sim.execute(first if len(executes) % 2 else second, "user", key_args, at=when)
        record.on_end = on_end
        executes.append(record)
        open_[0] = record

    def on_end(record: ExecRecord) -> None:
        error = record.error
        retry = error.retry_in if isinstance(error, SharedFlowError) else 0.0
        if record.outcome == "rejected" and len(sim.calls[key]) < failures:
            next_execute(sim.now + min(retry, 10 * config.max_error_backoff) + 1.0)
        else:
            open_[0] = None

    next_execute(2000.0)
    while (waiting := open_[0]) is not None:
        sim.run_until(sim.now + config.max_error_backoff + limit)
        if waiting is open_[0]:
            break  # it hangs (reported below), or it ended without an outcome (raised)
    ended = sim.now
    sim.keys_down.discard(key)
    parent.faults["long-outage"] += 1
    last = sim.execute(first, "user", key_args, at=sim.now + config.max_error_backoff + 1.0)
    sim.run_until(sim.now + config.max_error_backoff + 1.0 + limit)
    violations = list(sim.violations)
    for record in sim.execs:
        if record.end is None or record.end - record.start > limit:
            violations.append(Violation(
                "execute", record.start, f"execute of {record.key!r} in tab {record.tab} "
                + ("never ended" if record.end is None else f"took {record.end - record.start:.1f}ms")
                + f" (bound {limit:.0f}ms), after {len(sim.calls[key])} consecutive failures of the key"))
    if last.outcome not in ("resolved", None):
        violations.append(Violation(
            "execute", last.start, f"{key!r} still fails ({_safe(last.error)}) once its server is back"))
    for tab in sim.tabs:
        errors = getattr(tab.node.stats, "internal_errors", 0)
        if errors:
            violations.append(Violation(
                "internal-error", ended, f"tab {tab.id}: stats.internal_errors is {errors}{_last_error(tab.node)}"))
    parent.faults["long-outage-failures"] += len(sim.calls[key])
    parent.events.update(sim.events)
    return [Violation(v.kind, v.time, f"long outage (its own 2-tab run, seed {seed}, "
                      f"{len(sim.calls[key])} failures over {ended / 3_600_000:.1f} h): {v.message}")
            for v in violations]


def _check(sim: Simulation, config: MeshConfig, bounds: Bounds, quiet_at: float, end_at: float) -> SimulationReport:
    violations = sim.violations
    live = sim._live

    # a. convergence
    convergence: float | None = None
    if config.strategy == "leader-follower":
        leaders = sim._converged_leaders(live)
        if not leaders:
            states = ", ".join(f"{t.id}:{t.node.role}->{t.node.leader}" + (f" (scope {t.scope})" if t.scope else "")
                               for t in live)
            violations.append(Violation("convergence", end_at, f"not converged at the end: {states}"))
        elif sim.converged_since is not None:
            convergence = max(0.0, sim.converged_since - quiet_at)
            if convergence > bounds.convergence:
                violations.append(Violation(
                    "convergence", sim.converged_since,
                    f"converged {convergence:.1f}ms into the quiet phase; bound {bounds.convergence:.1f}ms"))
    else:
        for tab in sim.tabs:
            if tab.started and tab.node.role not in (Role.PEER, Role.LEFT):
                violations.append(Violation(
                    "convergence", end_at, f"peer-to-peer tab {tab.id} has role {tab.node.role}"))

    # b. every execute ends in time
    max_fault = max_quiet = 0.0
    join_allowance = 2 * config.answer_timeout + 2 * sim.delay[1]
    joined_at = {tab.id: max(tab.start_time, getattr(tab, "scope_since", tab.start_time))
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
    stable = sim.settled_at
    concurrent_only = not config.share_cache
    for key, calls in sim.calls.items():
        by_scope: dict[str, list[tuple[float, str, bool, int, float, str, int, float]]] = defaultdict(list)
        for call in calls:
            if call[0] >= stable:
                by_scope[call[5]].append(call)
        for first, second in (pair for group in by_scope.values() for pair in zip(group, group[1:], strict=False)):
            if second[0] - first[0] >= config.stale_time:
                continue
            first_end = sim.produced.get(first[3], math.inf) + 2 * delay_max
            if concurrent_only and second[4] > first_end:
                continue
            violations.append(Violation(
                "duplicate-call", second[0],
                f"{key!r} called at {first[0]:.1f} and {second[0]:.1f} (tabs {first[1]}, {second[1]}), "
                f"less than stale_time {config.stale_time:.0f}ms apart with a stable mesh"
                + (f" (tab {second[1]} waited for it since {second[4]:.1f})" if concurrent_only else "")))

    # e. no retry storm: once a call failed (and its Failure reached every tab of its scope), no
    # tab that heard it calls that key again before the shared back-off ends (error_backoff at least).
    for key, ends in sim.outcomes.items():
        for failed_at, ok, digest in ends:
            if ok:
                continue
            low, high = failed_at + 2 * delay_max, failed_at + config.error_backoff
            success = min((t for t, good, d in ends if good and t > failed_at and d == digest), default=math.inf)
            for start, tab_id, _, _, _, called_for, index, since in sim.calls[key]:
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

    # f. what a caller passed to execute is unchanged (a flow may mutate only its own copy)
    for record in sim.execs:
        if record.sent_args and json.dumps(list(record.args), sort_keys=True) != record.sent_args:
            violations.append(Violation(
                "value", record.start, f"the arguments tab {record.tab} passed to execute {record.key!r} were "
                f"changed to {_safe(list(record.args))}: a flow mutated the caller's objects"))

    # g. no unexpected exception was caught inside any node
    for tab in sim.tabs:
        errors = getattr(tab.node.stats, "internal_errors", 0)
        if tab.started and errors:
            violations.append(Violation(
                "internal-error", end_at, f"tab {tab.id}: stats.internal_errors is {errors}{_last_error(tab.node)}"))

    # leftovers
    for tab in live:
        pending = sim.pending_keys(tab)
        if pending or tab.waiters:
            violations.append(Violation(
                "leftover", end_at, f"tab {tab.id} still has pending {pending} "
                f"and {len(tab.waiters)} open waiter(s) at the end"))
    if sim._calls_in_flight:
        violations.append(Violation("leftover", end_at, f"{sim._calls_in_flight} call(s) still in flight at the end"))

    return SimulationReport(
        seed=sim.seed, plan=None, config=config, violations=violations, bounds=bounds,
        quiet_at=quiet_at, end_at=end_at, tabs_opened=sum(1 for t in sim.tabs if t.started),
        faults=sim.faults, executes=len(sim.execs), outcomes=outcomes, calls=sim.call_count,
        messages=sim.messages, deliveries=sim.deliveries,
        elections=sum(t.node.stats.elections for t in sim.tabs),
        convergence=convergence, max_fault_latency=max_fault, max_quiet_latency=max_quiet,
        tab_ms=0.0, dropped=sum(t.node.stats.dropped for t in sim.tabs), trace=sim.trace,
    )


# --- many seeds, and the command line ----------------------------------------------------------


@dataclass
class Summary:
    """What :func:`run_many` checked, over every seed."""

    runs: int = 0
    strategies: Counter[str] = field(default_factory=Counter)
    locks: Counter[str] = field(default_factory=Counter)
    heartbeats: Counter[str] = field(default_factory=Counter)
    scopes: Counter[str] = field(default_factory=Counter)
    scope_checks: int = 0
    tabs_initial: int = 0
    tabs_opened: int = 0
    faults: Counter[str] = field(default_factory=Counter)
    events: Counter[str] = field(default_factory=Counter)
    executes: int = 0
    outcomes: Counter[str] = field(default_factory=Counter)
    calls: int = 0
    messages: int = 0
    deliveries: int = 0
    elections: int = 0
    dropped: int = 0
    stale_serves: int = 0
    max_served_age: float = -math.inf
    unsynced: int = 0
    failovers: dict[str, list[float]] = field(default_factory=lambda: {"on": [], "off": []})
    # (observed, bound, seed) of the worst run, and the worst observed/bound ratio
    convergence: tuple[float, float, int] = (0.0, 0.0, -1)
    convergence_ratio: float = 0.0
    fault_latency: tuple[float, float, int] = (0.0, 0.0, -1)
    settled_latency: tuple[float, float, int] = (0.0, 0.0, -1)
    settled_ratio: float = 0.0
    tab_ms: float = 0.0
    wall: float = 0.0
    failures: list[SimulationReport] = field(default_factory=list)

    def add(self, report: SimulationReport) -> None:
        plan = report.plan
        self.runs += 1
        if plan is not None:
            self.strategies[plan.strategy] += 1
            self.locks["on" if plan.locks else "off"] += 1
            self.heartbeats[f"{plan.heartbeat:.0f}ms"] += 1
            self.scopes["several" if len(plan.scopes) > 1 else "shared" if plan.scopes == (None,) else "one named"] += 1
            self.tabs_initial += plan.tabs
        self.scope_checks += report.scope_checks
        self.tabs_opened += report.tabs_opened
        self.faults.update(report.faults)
        self.events.update(report.events)
        self.executes += report.executes
        self.outcomes.update(report.outcomes)
        self.calls += report.calls
        self.messages += report.messages
        self.deliveries += report.deliveries
        self.elections += report.elections
        self.dropped += report.dropped
        self.stale_serves += report.stale_serves
        self.max_served_age = max(self.max_served_age, report.max_served_age)
        self.unsynced += report.unsynced
        self.failovers["on" if report.config.use_locks else "off"].extend(report.failovers)
        self.tab_ms += report.tab_ms
        bounds = report.bounds
        if report.convergence is not None and report.config.strategy == "leader-follower":
            if report.convergence >= self.convergence[0]:
                self.convergence = (report.convergence, bounds.convergence, report.seed)
            self.convergence_ratio = max(self.convergence_ratio, report.convergence / bounds.convergence)
        if report.max_fault_latency >= self.fault_latency[0]:
            self.fault_latency = (report.max_fault_latency, bounds.fault_execute, report.seed)
        if report.max_quiet_latency >= self.settled_latency[0]:
            self.settled_latency = (report.max_quiet_latency, bounds.quiet_execute, report.seed)
        self.settled_ratio = max(self.settled_ratio, report.max_quiet_latency / bounds.quiet_execute)
        if report.violations:
            self.failures.append(report)

    def lines(self) -> list[str]:
        def counts(counter: Counter[str]) -> str:
            return ", ".join(f"{name} {n}" for name, n in counter.most_common()) or "none"

        opened = self.tabs_opened
        conv, conv_bound, conv_seed = self.convergence
        fault, fault_bound, fault_seed = self.fault_latency
        quiet, quiet_bound, quiet_seed = self.settled_latency
        rate = self.tab_ms / 1000 / self.wall if self.wall else 0.0

        def spread(values: list[float]) -> str:
            if not values:
                return "none"
            ordered = sorted(values)
            return (f"{len(ordered)}, median {ordered[len(ordered) // 2]:,.0f} ms, "
                    f"99th percentile {ordered[int(len(ordered) * 0.99)]:,.0f} ms, max {ordered[-1]:,.0f} ms")
        return [
            f"runs: {self.runs} ({counts(self.strategies)}; Web Locks {counts(self.locks)}; "
            f"heartbeat {counts(self.heartbeats)}; tabs open in scopes: {counts(self.scopes)})",
            f"tabs: {opened} opened ({self.tabs_initial} at the start, {opened - self.tabs_initial} late joiners), "
            f"{self.tab_ms / 1000:,.0f} simulated tab-seconds",
            f"faults injected: {counts(self.faults)}",
            f"hardening seen: {counts(self.events)}",
            f"scopes: {self.faults['scope-switch']} switches; {self.scope_checks:,} values checked against the "
            "scope of the tab that cached, held or resolved them",
            f"executes: {self.executes} ({counts(self.outcomes)})",
            f"server calls: {self.calls}; messages sent: {self.messages:,}; deliveries: {self.deliveries:,}; "
            f"invalid messages dropped: {self.dropped:,}; elections started: {self.elections:,}",
            f"convergence after the faults (leader-follower): max {conv:,.0f} ms observed vs its bound "
            f"{conv_bound:,.0f} ms (seed {conv_seed}); worst observed/bound {self.convergence_ratio:.2f}",
            f"periods without one agreed leader (leader-follower): with Web Locks {spread(self.failovers['on'])}; "
            f"without {spread(self.failovers['off'])}",
            f"execute latency: fault phase ended by quiet start + {fault:,.0f} ms vs bound + {fault_bound:,.0f} ms "
            f"(seed {fault_seed}); once settled max {quiet:,.1f} ms vs bound {quiet_bound:,.1f} ms "
            f"(seed {quiet_seed}); worst observed/bound {self.settled_ratio:.2f}",
            f"known limitations seen: {self.stale_serves} executes served a value older than stale_time "
            f"(by up to {max(0.0, self.max_served_age):,.0f} ms; results queued for a frozen tab look new), "
            f"{self.unsynced} fresh entries no tab was bound to sync to a joiner",
            f"wall time: {self.wall:.1f} s; {rate:,.0f} simulated tab-seconds per second",
            f"violations: {len(self.failures)} failing seed(s)",
        ]


def run_many(
    seeds: Iterable[int],
    max_tabs: int = 50,
    strategy: str = "both",
    locks: bool | None = None,
    verbose: bool = False,
    progress: Callable[[SimulationReport], None] | None = None,
    faults: Iterable[str] = FAULT_KINDS,
    pathologies: Iterable[str] | None = None,
) -> Summary:
    """Run every seed's plan (:func:`plan`) and sum up the reports."""
    summary = Summary()
    started = time.perf_counter()
    faults = tuple(faults)
    for seed in seeds:
        report = run_plan(plan(seed, max_tabs, strategy, locks, faults, pathologies), verbose=verbose)
        summary.add(report)
        if progress is not None:
            progress(report)
    summary.wall = time.perf_counter() - started
    return summary


def run_plan(run_plan: RunPlan, verbose: bool = False) -> SimulationReport:
    """Run one planned seed."""
    return run(run_plan.seed, run_plan.tabs, strategy=run_plan.strategy, locks=run_plan.locks,
               heartbeat=run_plan.heartbeat, share_cache=run_plan.share_cache, faults=run_plan.faults,
               pathologies=run_plan.pathologies, scopes=run_plan.scopes, verbose=verbose, run_plan=run_plan)


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m pyflowmesh.simulation``: run many seeds; exit 1 if any invariant failed."""
    parser = argparse.ArgumentParser(
        prog="python -m pyflowmesh.simulation",
        description="Run pyflowmesh's deterministic multi-tab simulator over many seeds and check its invariants.",
    )
    parser.add_argument("--seeds", type=int, default=1000, help="how many seeds to run (default 1000)")
    parser.add_argument("--seed-start", type=int, default=0, help="the first seed (default 0)")
    parser.add_argument("--tabs", type=int, default=50, help="the most tabs open at the start (2..N per seed)")
    parser.add_argument("--strategy", choices=("leader-follower", "peer-to-peer", "both"), default="both",
                        help="both (the default) alternates strategies by seed")
    group = parser.add_mutually_exclusive_group()
    group.add_argument("--no-locks", action="store_true", help="no Web Locks in any run (default: every other pair)")
    group.add_argument("--locks", action="store_true", help="Web Locks in every run")
    parser.add_argument("--faults", default="all",
                        help=f"the fault kinds to inject, comma-separated (default all: {','.join(FAULT_KINDS)})")
    parser.add_argument("--pathologies", default="all",
                        help=f"how flows misbehave with the pathological fault (default all: {','.join(PATHOLOGIES)})")
    parser.add_argument("--verbose", action="store_true", help="print every run's event trace")
    args = parser.parse_args(argv)
    if args.tabs < 2:
        parser.error("--tabs must be at least 2")
    faults = FAULT_KINDS if args.faults == "all" else tuple(k for k in args.faults.split(",") if k)
    unknown = sorted(set(faults) - set(FAULT_KINDS))
    if unknown:
        parser.error(f"unknown fault kind(s) {', '.join(unknown)}; known: {', '.join(FAULT_KINDS)}")
    pathologies = None if args.pathologies == "all" else tuple(k for k in args.pathologies.split(",") if k)
    if pathologies is not None and (not pathologies or set(pathologies) - set(PATHOLOGIES)):
        parser.error(f"--pathologies takes some of {', '.join(PATHOLOGIES)}")
    locks = False if args.no_locks else True if args.locks else None
    flags = f"--tabs {args.tabs} --strategy {args.strategy}" + (" --no-locks" if args.no_locks else "") + (
        " --locks" if args.locks else "") + ("" if args.faults == "all" else f" --faults {','.join(faults)}") + (
        "" if pathologies is None else f" --pathologies {','.join(pathologies)}")
    last = args.seed_start + args.seeds - 1
    print(f"pyflowmesh simulation: seeds {args.seed_start}..{last}, 2..{args.tabs} tabs per seed, "
          f"strategy {args.strategy}, Web Locks {'off' if args.no_locks else 'on' if args.locks else 'mixed'}")

    def progress(report: SimulationReport) -> None:
        if args.verbose and report.trace is not None:
            print(f"--- trace of {report.summary()}")
            print("\n".join(report.trace))
            print(f"--- quiet phase from {report.quiet_at:.1f} ms, settled at {report.settled_at:.1f} ms, "
                  f"end {report.end_at:.1f} ms; bounds {report.bounds}")
        if report.violations:
            print(f"FAIL {report.summary()}")
            for violation in report.violations:
                print(f"    {violation}")
            print(f"    reproduce: python -m pyflowmesh.simulation --seeds 1 --seed-start {report.seed} {flags} "
                  "--verbose")
        sys.stdout.flush()

    summary = run_many(range(args.seed_start, last + 1), args.tabs, args.strategy, locks, args.verbose, progress,
                       faults, pathologies)
    print("\n".join(summary.lines()))
    return 1 if summary.failures else 0


if __name__ == "__main__":
    sys.exit(main())
