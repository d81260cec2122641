"""``FlowMesh``: one tab's member of the mesh, driving the sans-I/O core with asyncio.

This is the only place where the core meets time and I/O: it feeds the
:class:`~pyflowmesh.core.node.MeshNode` with the transport's messages and with ticks from
one ``loop.call_later`` timer (Pyodide's event loop maps it to ``setTimeout``), and it
carries out the effects the node queues: sends, calls of flow functions, futures
of waiting executes, listeners.
"""

from __future__ import annotations

import asyncio
import contextvars
import functools
import inspect
import logging
import os
import sys
import time
import weakref
from collections.abc import Callable, Generator, Iterable, Mapping
from typing import Any

from .core.cache import CacheEntry
from .core.config import MeshConfig
from .core.effects import (
    STREAM_EFFECT_TYPES,
    CacheUpdated,
    CallRetrying,
    CancelCall,
    Effect,
    FailureShared,
    FlowsInvalidated,
    LeaderChanged,
    MembersChanged,
    Reject,
    Renamed,
    Resolve,
    Send,
    Source,
    StartCall,
    WatchPeers,
)
from .core.members import Member, MeshChange
from .core.node import MeshNode
from .core.policy import CallPolicy
from .core.stats import MeshStats
from .core.values import check_flow_key, check_json
from .errors import FlowInterruptedError, MeshDisposedError, ScopeChangedError
from .transports import Transport, default_transport

__all__ = ["FlowMesh", "Waiter", "new_node_id"]

log = logging.getLogger("pyflowmesh")

FlowFunction = Callable[..., Any]


def new_node_id() -> str:
    """A random node ID: 12 hex digits, compared as text by the Bully election."""
    # os.urandom is what secrets.token_hex reads; importing secrets (and hashlib) costs Pyodide 10-20 ms
    return os.urandom(6).hex()


def _interrupted(flow: str, error: BaseException) -> FlowInterruptedError:
    interrupted = FlowInterruptedError(f"flow {flow!r} raised {type(error).__name__}: {error}".rstrip(": "))
    interrupted.__cause__ = error
    return interrupted


def _wall_clock() -> float:
    """Milliseconds on the wall clock, which every tab of a browser shares (``Date.now()`` under Pyodide)."""
    return time.time() * 1000.0


def _event_loop() -> asyncio.AbstractEventLoop:
    try:
        return asyncio.get_running_loop()
    except RuntimeError:
        if sys.platform == "emscripten":  # Pyodide's WebLoop serves top-level code too
            return asyncio.get_event_loop()
        raise RuntimeError("create FlowMesh inside a running event loop (e.g. in an async function)") from None


# All flows of one tab on one channel share one member (use_flow looks it up here):
# (channel, the transport given, or None for the default) -> the member. A member leaves it
# when it stops (dispose, or MemoryHub.crash): at most one per channel and transport. Keyed
# by the transport object itself (compared by identity), so a member on a transport of its
# own never stands in for the default member of its channel, nor the default for it.
MemberKey = tuple[str, Transport | None]
_members: dict[MemberKey, FlowMesh] = {}


def member_key(channel: str, transport: Transport | None) -> MemberKey:
    """The registry key of this tab's member on ``channel`` with ``transport`` given (``None``: the default)."""
    return (channel, transport)


class FlowMesh:
    """This tab's member of the mesh on one channel.

    Args:
        channel: the BroadcastChannel name; tabs on the same name form one mesh.
        options: any :class:`~pyflowmesh.core.config.MeshConfig` option (``strategy``,
            ``share_cache``, ``share_errors``, ``heartbeat``, ``stale_time`` ...), by
            its Python or TypeScript name.
        transport: how to reach the other tabs: a :class:`~pyflowmesh.transports.Transport`
            (one per member). By default the browser's, see
            :func:`~pyflowmesh.transports.default_transport`: ``BroadcastChannel``, Web
            Locks where the page has them, the page lifecycle where there is a page.
        node_id: this tab's ID in the election (random by default; the highest ID
            wins an election).
        scope: (an option) whose data this tab holds, e.g. the logged-in user's ID;
            tabs of different scopes on one channel never share anything. Switch it
            with :meth:`set_scope`.

    Raises:
        ValueError, TypeError: an invalid option (the message names it).
    """

    def __init__(
        self,
        channel: str | None = None,
        *,
        transport: Transport | None = None,
        node_id: str | None = None,
        **options: Any,
    ) -> None:
        if transport is not None and not isinstance(transport, Transport):
            raise TypeError(
                f"transport= takes a pyflowmesh.transports.Transport (a channel, a peer watch and a page "
                f"lifecycle), got {transport!r}"
            )
        if channel is not None:
            options["channel"] = channel
        self.config = MeshConfig.from_options(options)
        self.node_id = node_id or new_node_id()
        self._loop = _event_loop()
        self._errors_logged: dict[int, int] = {}  # internal errors logged, for the current node
        self._transport_given = transport is not None
        self._transport = transport if transport is not None else default_transport(use_locks=self.config.use_locks)
        self._node = self._new_node(self.node_id, self.config)
        self._members: tuple[Member, ...] = ()  # as the last MembersChanged said
        self._change_listeners: list[Callable[[MeshChange], None]] = []
        self._flows: dict[str, FlowFunction] = {}
        # Per flow, how its calls are made: the core's CallPolicy and the page's should_retry.
        self._policies: dict[str, CallPolicy] = {}
        self._should_retry: dict[str, Callable[[BaseException, int], Any]] = {}
        self._retry_listeners: dict[str, list[Callable[[CallRetrying], None]]] = {}
        self._waiters: dict[int, Waiter] = {}
        # Per key, its listeners; a key's entry goes with its last listener, so both hold
        # at most one entry per key someone listens to now (a Flow follows one key at a time).
        self._cache_listeners: dict[str, list[Callable[[Any], None]]] = {}
        self._error_listeners: dict[str, list[Callable[[BaseException], None]]] = {}
        self._invalidation_listeners: dict[str, list[Callable[[str], None]]] = {}  # per flow key
        self._leader_listeners: list[Callable[[str | None], None]] = []
        self._calls: dict[int, asyncio.Task[None]] = {}  # call_id -> the task running the flow
        self._scope_listeners: list[Callable[[str | None], None]] = []
        # One per live Flow bound to this mesh, held weakly: a page that makes flows as it
        # goes (one per render) must not keep every one it ever made.
        self._flow_resets: list[weakref.WeakMethod[Callable[[], None]]] = []
        self._hidden = False  # as the transport last said; a new node of another scope starts so
        self._switching = False
        self._timer: asyncio.TimerHandle | None = None
        self._timer_at: float | None = None
        # While the member takes an input from the browser (see _take_input): the executes it
        # resolved, woken at its end.
        self._wakes: list[tuple[Callable[..., None], Waiter, contextvars.Context | None]] | None = None
        self._disposed = False
        self._streams: Any = None  # stream.py's driver of this member's streams, once it has one
        self._transport.set_scope(self._node.scope_digest)
        self._transport.skip_addressed(*self._node.address_rule)
        self._transport.open(self.config.channel, self.node_id, _Events(self))
        self._node.start(self._now())
        self._flush()

    # --- state ------------------------------------------------------------------------

    @property
    def is_leader(self) -> bool:
        """True while this tab is the leader (always False peer-to-peer)."""
        return self._node.is_leader

    @property
    def leader(self) -> bool:
        """The same as :attr:`is_leader`: the name 0.1 used, kept for its pages.

        Not an ID (that is :attr:`leader_id`); new code reads :attr:`is_leader`.
        """
        return self._node.is_leader

    @property
    def leader_id(self) -> str | None:
        """The leader's node ID as this tab knows it, or ``None``."""
        return self._node.leader

    @property
    def peers(self) -> int:
        """How many other live tabs are in the mesh (AsyncFlowState's ``FlowMesh.peers``)."""
        return self._node.peers

    @property
    def members(self) -> tuple[Member, ...]:
        """Every live member with its ID and role, this tab included (``is_self``), highest ID first.

        Joins show within one message, polite leaves at once; a crashed tab leaves when
        the browser releases its Web Lock (milliseconds), or without Web Locks after
        the silence a leader is allowed (2.5 heartbeats; longer for a hidden tab).
        """
        return self._node.member_list()

    @property
    def successor(self) -> str | None:
        """The member that takes over at once when the leader goes (``None``: an election decides)."""
        return self._node.successor

    @property
    def role(self) -> str:
        """``"leader"``, ``"follower"``, ``"joining"``, ``"candidate"``, ``"waiting"``, ``"peer"`` or ``"left"``."""
        return self._node.role.value

    @property
    def term(self) -> int:
        """The current leadership term (grows with every election)."""
        return self._node.term

    @property
    def stats(self) -> MeshStats:
        """Counters: messages sent, received and dropped, elections, calls, served from the mesh..."""
        self._count_skipped(self._node)
        return self._node.stats

    @property
    def strategy(self) -> str:
        return self.config.strategy

    @property
    def channel(self) -> str:
        return self.config.channel

    @property
    def scope(self) -> str | None:
        """Whose data this tab holds (``None``: the shared scope). Change it with :meth:`set_scope`."""
        return self.config.scope

    @property
    def transport(self) -> Transport:
        return self._transport

    @property
    def disposed(self) -> bool:
        return self._disposed

    def __repr__(self) -> str:
        return f"<FlowMesh {self.channel!r} {self.node_id} {self.role} term={self.term}>"

    # --- the cache ----------------------------------------------------------------------

    def share_result(self, key: str, data: Any) -> None:
        """Put ``data`` in every tab's cache under ``key``; waiting executes of ``key`` get it.

        Raises:
            TypeError: ``data`` is not JSON data (the message says which part).
        """
        self._check_open()
        self._node.share_result(key, data, self._now())
        self._flush()

    def get_cached(self, key: str) -> Any:
        """The fresh cached value for ``key`` (from any tab), or ``None``."""
        return self._node.get_cached(key, self._now())

    def cached_entry(self, key: str) -> CacheEntry | None:
        """The fresh cache entry for ``key`` with its version, origin tab and age, or ``None``."""
        return self._node.cache.get(key, self._now())

    def invalidate(self, key: str | None = None) -> None:
        """Drop ``key`` (or every entry) from every tab's cache."""
        self._check_open()
        self._node.invalidate(key, self._now())
        self._flush()

    def invalidate_flows(self, flows: Iterable[str]) -> None:
        """Drop every key of ``flows`` (every argument variant) in every tab: a mutation succeeded.

        Each tab's flows that follow a key of one of them execute it again, and the mesh
        serves all those refetches with one call (see the README's "Mutations").

        Raises:
            TypeError, ValueError: not a list of 1 to 64 flow keys.
        """
        self._check_open()
        self._node.invalidate_flows(flows, self._now())
        self._flush()

    def on_invalidate(self, flow: str, callback: Callable[[str], None]) -> Callable[[], None]:
        """Call ``callback(flow)`` whenever every key of the flow ``flow`` was invalidated (a mutation,
        in this tab or another).

        Returns:
            A function that unsubscribes.
        """
        return _subscribe_key(self._invalidation_listeners, flow, callback)

    def on_cache_update(self, key: str, callback: Callable[[Any], None]) -> Callable[[], None]:
        """Call ``callback(data)`` whenever a new result for ``key`` arrives from any tab.

        Returns:
            A function that unsubscribes (calling it twice is harmless).
        """
        return _subscribe_key(self._cache_listeners, key, callback)

    def on_error(self, key: str, callback: Callable[[BaseException], None]) -> Callable[[], None]:
        """Call ``callback(error)`` whenever a call of ``key`` fails, in this tab or another.

        ``error`` is the original exception where the call failed here, else a
        :class:`SharedFlowError`.

        Returns:
            A function that unsubscribes.
        """
        return _subscribe_key(self._error_listeners, key, callback)

    def on_leader_change(self, callback: Callable[[str | None], None]) -> Callable[[], None]:
        """Call ``callback(leader_id)`` whenever this tab's view of the leader changes."""
        return _subscribe(self._leader_listeners, callback)

    def on_change(self, callback: Callable[[MeshChange], None]) -> Callable[[], None]:
        """Call ``callback(change)`` whenever members join or leave, or leadership moves.

        ``change`` is a :class:`~pyflowmesh.core.members.MeshChange`: the members now,
        who joined and left, the leader, and ``leadership`` (``"gained"``/``"lost"``) when
        this tab's own leadership changed: the "lost leadership" event a tab that did
        leader-only work (a socket, a poll) needs.

        Returns:
            A function that unsubscribes.
        """
        return _subscribe(self._change_listeners, callback)

    def share_error(self, key: str, error: BaseException) -> None:
        """Fail every tab's waiting executes of ``key`` with ``error``, and start its shared back-off.

        AsyncFlowState's ``shareError``: each tab's ``on_error`` listeners of ``key`` get
        it (this tab's get ``error`` itself, the others a :class:`SharedFlowError`), and
        executes of ``key`` in any tab wait out the back-off instead of calling.

        Raises:
            TypeError: ``error`` is not an exception.
        """
        self._check_open()
        self._node.share_error(key, error, self._now())
        self._flush()

    # The seed's (TypeScript) method names, for pages ported from AsyncFlowState.
    def shareResult(self, key: str, data: Any) -> None:  # noqa: N802
        """:meth:`share_result` under its TypeScript name."""
        self.share_result(key, data)

    def shareError(self, key: str, error: BaseException) -> None:  # noqa: N802
        """:meth:`share_error` under its TypeScript name."""
        self.share_error(key, error)

    def getCached(self, key: str) -> Any:  # noqa: N802
        """:meth:`get_cached` under its TypeScript name."""
        return self.get_cached(key)

    def onCacheUpdate(self, key: str, callback: Callable[[Any], None]) -> Callable[[], None]:  # noqa: N802
        """:meth:`on_cache_update` under its TypeScript name."""
        return self.on_cache_update(key, callback)

    def on_scope_change(self, callback: Callable[[str | None], None]) -> Callable[[], None]:
        """Call ``callback(scope)`` inside :meth:`set_scope`, once every flow of the old scope is reset.

        The place to clear page state of the old scope that the mesh does not know about.
        """
        return _subscribe(self._scope_listeners, callback)

    # --- flows ---------------------------------------------------------------------------

    def register(self, key: str, function: FlowFunction, policy: CallPolicy | None = None,
                 should_retry: Callable[[BaseException, int], Any] | None = None) -> None:
        """Make ``function`` runnable as the flow ``key`` in this tab (``use_flow`` does this).

        ``policy`` says how many attempts a call gets and how long it may take (the flow's
        ``retry`` and ``timeout``); ``should_retry(error, attempt)`` (may be async) says
        whether a failed attempt may be retried at all.

        Raises:
            ValueError: another function is already registered under ``key``, or ``key`` is
                empty, too long or holds a lone surrogate (``TypeError`` if not a str).
        """
        check_flow_key(key)
        existing = self._flows.get(key)
        if existing is not None and existing is not function:
            raise ValueError(
                f"flow key {key!r} is already used by {existing!r} on channel {self.channel!r}; "
                "pass a distinct key= to use_flow"
            )
        self._node.register_flow(key, policy)
        self._flows[key] = function
        if policy is None:
            self._policies.pop(key, None)
        else:
            self._policies[key] = policy
        if should_retry is None:
            self._should_retry.pop(key, None)
        else:
            self._should_retry[key] = should_retry

    def on_retry(self, key: str, callback: Callable[[CallRetrying], None]) -> Callable[[], None]:
        """Call ``callback(retrying)`` when this tab retries a call of cache key ``key``.

        ``retrying`` is a :class:`~pyflowmesh.core.effects.CallRetrying` (``error``,
        ``attempt``, ``max_attempts``, ``delay``). Only the calling tab retries: the tabs
        waiting on its call hear of its last outcome only.

        Returns:
            A function that unsubscribes.
        """
        return _subscribe_key(self._retry_listeners, key, callback)

    async def run(self, key: str, *args: Any) -> Any:
        """Execute the registered flow ``key`` with ``args`` through the mesh; return its data."""
        value, _ = await self.execute_with_source(key, *args)
        return value

    async def execute_with_source(self, key: str, *args: Any) -> tuple[Any, Source]:
        """Like :meth:`run`, also saying where the data came from: ``"call"``, ``"mesh"`` or ``"cache"``."""
        self._check_open()
        if key not in self._flows:
            raise LookupError(f"no flow {key!r} is registered on channel {self.channel!r}")
        future = Waiter(self._loop, self._wake_soon if WAKE_IN_MICROTASK else None)
        node = self._node
        waiter = node.submit(key, args, self._now())  # TypeError for non-JSON arguments
        self._waiters[waiter] = future
        self._flush()
        try:
            result: tuple[Any, Source] = await future
        except asyncio.CancelledError:
            # The caller gave up (task cancelled, wait_for timed out): the node forgets this
            # waiter; a shared call goes on for whoever else waits on it.
            if self._waiters.pop(waiter, None) is not None and node is self._node and not self._disposed:
                node.cancel(waiter, self._now())
                self._flush()
            raise
        if node is not self._node:  # resolved, but the scope changed before this execute resumed
            raise ScopeChangedError(f"the scope of channel {self.channel!r} changed while this execute waited")
        return result
    # --- scope ---------------------------------------------------------------------------

    def set_scope(self, scope: str | None, *, forget: bool = False) -> None:
        """Make this tab a member of ``scope``'s mesh: on login, logout and account switches.

        In this order, before it returns: the tab leaves the old scope's mesh as
        :meth:`dispose` would (a ``Bye``: a leader hands over at once) and drops
        everything of it (its cache and back-offs); executes still waiting fail with
        :class:`~pyflowmesh.errors.ScopeChangedError`; calls still running are
        cancelled and whatever they return is discarded. The tab joins the new
        scope's mesh with the same node ID and transport and its flows registered
        again. Every flow bound to this mesh is reset (``data``, ``error`` and
        ``source`` ``None``, ``status`` ``"idle"``) and its subscribers told; then
        the :meth:`on_scope_change` listeners. Flows keep working: the next execute
        runs in the new scope. No value of the old scope reaches a subscriber, a
        listener or an execute after this returns. :attr:`stats` count afresh
        from the switch (they describe this tab's member of the new scope's mesh).

        Args:
            scope: the new scope (a user or session ID), or ``None`` for the shared one.
            forget: also delete what this device stores for the old scope: every
                entry a flow's ``persist_key`` kept for it, in ``localStorage`` and
                ``sessionStorage`` (:func:`pyflowmesh.persist.forget_scope`). Setting
                the *current* scope again is nothing without ``forget``, a full reset
                with it. Pass ``forget=True`` on logout.

        Raises:
            TypeError, ValueError: an invalid scope (the message never quotes it) or
                ``forget`` not a bool.
            MeshDisposedError: the mesh was disposed.
            RuntimeError: called by a subscriber or listener that this very switch
                is notifying (switch again after it returned).
        """
        if not isinstance(forget, bool):
            raise TypeError(f"set_scope's forget must be True or False, got {forget!r}")
        self._check_open()
        if self._switching:
            raise RuntimeError("set_scope was called from a listener of the scope switch it is making")
        config = self.config.with_options(scope=scope)
        if config.scope == self.config.scope and not forget:
            return
        if forget:
            from .persist import forget_scope

            forget_scope(self._node.scope_digest)  # persist.py: every entry of the old scope on this device
        self._switching = True
        try:
            self._switch(config)
        finally:
            self._switching = False

    def _switch(self, config: MeshConfig) -> None:
        changed = ScopeChangedError(f"the scope of channel {self.channel!r} changed while this execute waited")
        old = self._node
        self._count_skipped(old)  # the old scope's: the new one counts afresh
        old.leave(self._now(), changed)  # a Bye (a leader hands over); its waiters get `changed`
        for task in list(self._calls.values()):
            task.cancel()  # a call of the old scope; _call would discard its outcome anyway
        self._calls.clear()
        self._carry_out(old.take_effects(), self._waiters, old)
        waiters, self._waiters = self._waiters, {}  # the new node numbers its waiters from 1 again
        for future in waiters.values():  # resolved by effects a flush in progress will now drop
            if not future.done():
                future.set_exception(changed)
        if self._disposed:  # a listener disposed the mesh
            return
        self.config = config
        # The same ID: the digest in every envelope and lock keeps the two scopes apart.
        self._node = self._new_node(old.node_id, config)
        for key in self._flows:
            self._node.register_flow(key, self._policies.get(key))
        if self._streams is not None:
            self._streams.rejoin(self._node)
        self._transport.set_scope(self._node.scope_digest)
        self._transport.skip_addressed(*self._node.address_rule)
        now = self._now()
        if self._hidden:
            self._node.set_hidden(True, now)
        self._node.start(now)
        self._flush()
        for ref in list(self._flow_resets):
            reset = ref()
            if reset is not None:
                reset()
        for callback in list(self._scope_listeners):
            self._notify(callback, config.scope)

    def _bind_flow(self, reset: Callable[[], None]) -> None:
        """A Flow on this mesh: ``reset`` (a bound method) clears its state when the scope changes."""
        self._flow_resets = [ref for ref in self._flow_resets if ref() is not None]
        self._flow_resets.append(weakref.WeakMethod(reset))  # type: ignore[arg-type]

    # --- lifecycle -----------------------------------------------------------------------

    def dispose(self) -> None:
        """Leave the mesh: hand leadership over (a ``Bye``), fail waiting executes, free every proxy."""
        if self._disposed:
            return
        self._node.leave(self._now())
        self._flush()
        self._halt()
        self._transport.close()

    @property
    def member_key(self) -> MemberKey:
        """This member's key in the tab's registry: its channel and the transport it was given (or None)."""
        return member_key(self.channel, self._transport if self._transport_given else None)

    def _halt(self) -> None:
        """Stop without a word (used by ``dispose`` and by ``MemoryHub.crash``); leave the tab's registry."""
        if _members.get(self.member_key) is self:
            del _members[self.member_key]
        self._disposed = True
        if self._timer is not None:
            self._timer.cancel()
            self._timer = self._timer_at = None
        for task in list(self._calls.values()):
            task.cancel()
        self._calls.clear()
        if self._streams is not None:
            self._streams.halt()  # sources stop, every Stream closes, its iterations end
        for future in self._waiters.values():
            if not future.done():
                future.set_exception(MeshDisposedError("the mesh member was disposed while this execute waited"))
        self._waiters.clear()

    async def __aenter__(self) -> FlowMesh:
        return self

    async def __aexit__(self, *exc: object) -> None:
        self.dispose()

    # --- driving the core ----------------------------------------------------------------

    def _now(self) -> float:
        return self._loop.time() * 1000.0

    def _new_node(self, node_id: str, config: MeshConfig) -> MeshNode:
        # With a peer watch (Web Locks), the members learn of this tab's end from its lock.
        return MeshNode(node_id, config, wall_clock=_wall_clock, locks=self._transport.peers is not None)

    def _count_skipped(self, node: MeshNode) -> None:
        """What the channel skipped for ``node`` (``Channel.skip_addressed``) it received all the same."""
        node.stats.received += self._transport.take_skipped()

    def _check_open(self) -> None:
        if self._disposed:
            raise MeshDisposedError(f"this FlowMesh on {self.channel!r} was disposed")

    def _flush(self) -> None:
        """Carry out every queued effect, then set the timer for the next deadline."""
        self._carry_out(self._node.take_effects(), self._waiters, self._node)
        self._report_internal_errors()
        self._arm_timer()

    def _report_internal_errors(self) -> None:
        """Log, once each, the unexpected exceptions the protocol caught (a bug worth reporting)."""
        node = self._node
        if node.stats.internal_errors > self._errors_logged.get(id(node), 0):
            self._errors_logged = {id(node): node.stats.internal_errors}
            error = node.last_internal_error
            log.error("pyflowmesh: an internal error was caught on channel %r (only the executes it concerned "
                      "failed); please report it", self.channel,
                      exc_info=(type(error), error, error.__traceback__) if error is not None else None)

    def _carry_out(
        self, effects: list[Effect], waiters: dict[int, Waiter], node: MeshNode
    ) -> None:
        """Carry out ``effects`` of ``node``, whose waiting executes are ``waiters``, one by one.

        A failure to carry out one (the channel closed under us) loses that one, never the
        rest. The page's listeners are told last: what the node posts (a new leader's
        ``Coordinator``) leaves before any listener's code runs, however long that takes.
        A listener may switch the scope in the middle: the rest belongs to the old
        scope and is dropped (its waiters were failed, its peers had a ``Bye``).
        """
        if len(effects) > 1:
            effects = sorted(effects, key=_told_last)  # stable: each group keeps its order
        for effect in effects:
            if node is not self._node:
                break
            try:
                self._apply(effect, waiters, node)
            except Exception:
                log.exception("pyflowmesh: carrying out %s on channel %r failed", type(effect).__name__, self.channel)

    def _tell(self, listeners: Iterable[Callable[[Any], None]], value: Callable[[], Any], node: MeshNode) -> None:
        """Call each listener with ``value()`` of ``node``, unless one of them switched the scope."""
        for callback in list(listeners):
            if node is not self._node:
                break
            self._notify(callback, value())

    def _apply(self, effect: object, waiters: dict[int, Waiter], node: MeshNode) -> None:
        if isinstance(effect, Send):
            self._transport.post(effect.data)
        elif isinstance(effect, StartCall):
            task = self._loop.create_task(self._call(effect, node))
            self._calls[effect.call_id] = task
            task.add_done_callback(functools.partial(self._call_done, effect.call_id))
        elif isinstance(effect, CallRetrying):
            self._tell(self._retry_listeners.get(effect.key, ()), lambda: effect, node)
        elif isinstance(effect, CancelCall):
            running = self._calls.pop(effect.call_id, None)
            if running is not None:
                running.cancel()
        elif isinstance(effect, Resolve):
            future = waiters.pop(effect.waiter, None)
            if future is not None and not future.done():
                future.set_result((effect.value, effect.source))
        elif isinstance(effect, Reject):
            future = waiters.pop(effect.waiter, None)
            if future is not None and not future.done():
                future.set_exception(effect.error)
        elif isinstance(effect, CacheUpdated):  # a fresh copy of the data for each listener
            self._tell(self._cache_listeners.get(effect.key, ()), lambda: effect.value, node)
        elif isinstance(effect, FailureShared):
            self._tell(self._error_listeners.get(effect.key, ()), lambda: effect.error, node)
        elif isinstance(effect, FlowsInvalidated):
            for flow in effect.flows:
                self._tell(self._invalidation_listeners.get(flow, ()), functools.partial(str, flow), node)
        elif isinstance(effect, LeaderChanged):
            self._tell(self._leader_listeners, lambda: effect.leader, node)
        elif isinstance(effect, WatchPeers):
            if not self._disposed:
                self._transport.watch(effect.node_ids)
        elif isinstance(effect, MembersChanged):
            before, self._members = self._members, effect.members
            change = MeshChange.between(before, effect.members)
            if change.moves(before):  # not this tab's own role alone (joining -> candidate)
                self._tell(self._change_listeners, lambda: change, node)
        elif isinstance(effect, Renamed):
            log.warning("pyflowmesh: another tab used this tab's ID on %r; now %s", self.channel, effect.node_id)
            self.node_id = effect.node_id
            if not self._disposed:
                self._transport.skip_addressed(*node.address_rule)  # first: a failed rename must not keep the old rule
                self._transport.rename(effect.node_id)
        elif isinstance(effect, STREAM_EFFECT_TYPES) and self._streams is not None:
            self._streams.apply(effect, node)  # stream.py: sources as tasks, events to the Streams
        else:
            raise TypeError(f"FlowMesh does not know the effect {effect!r}")

    def _call_done(self, call_id: int, task: asyncio.Task[None]) -> None:
        if self._calls.get(call_id) is task:
            del self._calls[call_id]

    def _notify(self, callback: Callable[[Any], None], value: Any) -> None:
        try:
            callback(value)
        except Exception:  # a listener's bug must not break the mesh
            log.exception("pyflowmesh: a listener on channel %r raised", self.channel)

    def _arm_timer(self) -> None:
        """Make sure the loop calls :meth:`_on_timer` by the node's next deadline.

        A timer already armed for that deadline or an earlier one stays: the node's ``tick``
        is harmless when early, and re-arms for what is then due. So a deadline that moves
        later (each ``Result`` ends a request's, each heartbeat moves the silence limit) costs
        nothing; only an earlier one replaces the timer (``call_later`` makes a JS timer and a
        proxy under Pyodide, about as much as the node's whole handling of a message).

        Not while the page is hidden: then the timer follows the deadline from the message
        that moved it, as before. Chrome runs a chain of timers, each set from the one
        before, once a minute in a page hidden for five minutes; a timer set from a message
        starts no chain, so a follower that hears heartbeats keeps its own pace.
        """
        deadline = None if self._disposed else self._node.next_deadline()
        if deadline is None:
            return  # a timer still armed fires, ticks and finds nothing due
        armed = self._timer_at if self._timer is not None else None
        if armed is not None and (armed == deadline or (armed < deadline and not self._hidden)):
            return
        if self._timer is not None:
            self._timer.cancel()
        self._timer_at = deadline
        # call_later, not call_at: Pyodide's loop refuses a time in the past ("Can't schedule
        # in the past"), and a deadline may have passed while the tab was busy.
        delay = max(0.0, deadline / 1000.0 - self._loop.time())
        self._timer = self._loop.call_later(delay, self._on_timer)

    def _on_timer(self) -> None:
        self._timer = None
        self._timer_at = None
        self._take_input(self._node.tick)

    async def _call(self, call: StartCall, node: MeshNode) -> None:
        """Run one flow call for ``node`` and report its outcome to it, whatever happens.

        The function may raise anything, including ``CancelledError`` of its own (it
        awaited a task something else cancelled): that is a failure of the call like any
        other. Only when this task itself is cancelled (the node gave up on the call, the
        member was disposed, or the tab switched scope) is nothing reported.
        """
        result: Any = None
        failure: BaseException | None = None
        try:
            result = self._flows[call.flow](*call.args)
            if inspect.isawaitable(result):
                result = await result
            check_json(result, f"the result of flow {call.flow!r}")
        except asyncio.CancelledError as error:
            task = asyncio.current_task()
            if task is not None and task.cancelling():
                raise  # cancelled by us: the node already settled this call
            failure = _interrupted(call.flow, error)
        except Exception as error:
            failure = error
        except BaseException as error:  # noqa: B036 - every outcome must reach the node
            failure = _interrupted(call.flow, error)
        retry = True
        if failure is not None and not isinstance(failure, TypeError):
            retry = await self._may_retry(call, failure)
        if not self._disposed and node is self._node:  # else: disposed, or a call of a scope this tab left
            if failure is None:
                node.call_succeeded(call.call_id, result, self._now())
            else:
                # A TypeError (a result that is not JSON, a bad call) is a bug a retry cannot fix: no back-off.
                fixable = not isinstance(failure, TypeError)
                node.call_failed(call.call_id, failure, self._now(), back_off=fixable, retry=fixable and retry)
            self._flush()
        if isinstance(failure, FlowInterruptedError) and isinstance(failure.__cause__, (KeyboardInterrupt, SystemExit)):
            raise failure.__cause__

    async def _may_retry(self, call: StartCall, failure: BaseException) -> bool:
        """The flow's ``should_retry(error, attempt)``, where it has one and attempts remain; a raising
        one is a no (logged), for an error a page cannot judge is no reason to call again."""
        should_retry = self._should_retry.get(call.flow)
        policy = self._policies.get(call.flow)
        if should_retry is None or policy is None or call.attempt >= policy.max_attempts:
            return True
        return await ask_should_retry(should_retry, failure, call.attempt, call.flow)

    # --- transport events ---------------------------------------------------------------

    def _take_input(self, step: Callable[[float], None]) -> None:
        """Take one input from the browser (``step(now)``: a message, a lock's grant, a timer...).

        The executes it resolves are woken at its end, in this same call (see
        :meth:`_wake_soon`): nothing of the page's is on the stack of a transport's
        event or of the loop's timer, as in the microtask that follows it, without the
        microtask's proxy.
        """
        if self._disposed:
            return
        outermost = self._begin_input()
        try:
            step(self._now())
            self._flush()
        finally:
            self._end_input(outermost)

    def _begin_input(self) -> bool:
        """Collect the wakes of the input starting now; ``True`` unless an input is taken already."""
        if self._wakes is not None:
            return False
        self._wakes = []
        return True

    def _end_input(self, outermost: bool) -> None:
        """At the end of the outermost input, wake the executes it resolved, in order."""
        if not outermost or self._wakes is None:
            return
        wakes, self._wakes = self._wakes, None
        for index, (callback, future, context) in enumerate(wakes):
            try:
                _resume(self._loop, callback, future, context)
            except BaseException:  # SystemExit out of a task: the others still wake, later
                for rest in wakes[index + 1:]:
                    _wake_soon(self._loop, *rest)
                raise

    def _wake_soon(self, loop: asyncio.AbstractEventLoop, callback: Callable[..., None], future: Waiter,
                   context: contextvars.Context | None) -> None:
        """How a resolved execute wakes (:data:`WAKE_IN_MICROTASK`): at the end of the input that
        resolved it, or, resolved by a call of the page's, in the microtask after it."""
        if self._wakes is not None:
            self._wakes.append((callback, future, context))
        else:
            _wake_soon(loop, callback, future, context)

    def _on_message(self, data: Any) -> None:
        self._take_input(functools.partial(self._node.receive, data))

    def _on_peer_gone(self, node_id: str) -> None:
        self._take_input(functools.partial(self._node.peer_gone, node_id))

    def _on_visibility(self, hidden: bool) -> None:
        self._hidden = hidden
        self._take_input(functools.partial(self._node.set_hidden, hidden))

    def _on_frozen(self, frozen: bool) -> None:
        self._take_input(functools.partial(self._node.set_frozen, frozen))


_LISTENER_EFFECTS = (LeaderChanged, MembersChanged, CacheUpdated, FailureShared)


def _told_last(effect: Effect) -> bool:
    """The sort key that puts the effects calling the page's listeners after the rest."""
    return isinstance(effect, _LISTENER_EFFECTS)


async def ask_should_retry(should_retry: Callable[[BaseException, int], Any], failure: BaseException, attempt: int,
                           flow: str) -> bool:
    """The page's ``should_retry(error, attempt)`` (sync or async), for the mesh's calls and a local
    flow's alike: one that raises says no (logged), for an error a page cannot judge is no reason to
    call again; only the cancellation of the task asking is passed on."""
    try:
        verdict = should_retry(failure, attempt)
        if inspect.isawaitable(verdict):
            verdict = await verdict
        return bool(verdict)
    except asyncio.CancelledError:
        task = asyncio.current_task()
        if task is not None and task.cancelling():
            raise
        return False
    except Exception:
        log.exception("pyflowmesh: should_retry of flow %r raised; not retrying", flow)
        return False


def _check_callback(callback: Any) -> None:
    """A listener that is not callable is the caller's mistake: say so now, not at every later event."""
    if not callable(callback):
        raise TypeError(f"a listener must be callable, got {type(callback).__name__}")


def _subscribe(listeners: list[Callable[..., None]], callback: Callable[..., None]) -> Callable[[], None]:
    """Add ``callback`` to ``listeners``; return the function that removes it again.

    Raises:
        TypeError: ``callback`` is not callable.
    """
    _check_callback(callback)
    listeners.append(callback)

    def off() -> None:
        if callback in listeners:
            listeners.remove(callback)

    return off


def _subscribe_key(
    registry: dict[str, list[Callable[..., None]]], key: str, callback: Callable[..., None]
) -> Callable[[], None]:
    """Add ``callback`` to ``registry[key]``; the returned function removes it, and the key's
    entry with its last listener (a page following ever-new keys must not keep one per key).

    Raises:
        TypeError: ``callback`` is not callable.
    """
    _check_callback(callback)
    listeners = registry.setdefault(key, [])
    listeners.append(callback)

    def off() -> None:
        if callback in listeners:
            listeners.remove(callback)
        if not listeners and registry.get(key) is listeners:
            del registry[key]

    return off


# --- what a waiting execute awaits ----------------------------------------------------------

# A resolved execute wakes up at the end of the input that resolved it (FlowMesh._take_input: the
# BroadcastChannel message that brought the result, in the same browser task), or, resolved by a
# call of the page's, in a JS microtask after it; not in a task of its own. Pyodide's WebLoop runs
# every call_soon as a separate browser task (a MessageChannel post: no setTimeout clamp, but the
# tab's other tasks, and under CPU contention the OS, come first): measured in 10 tabs on two busy
# cores, that hop was the largest part of a follower's lag (bench/lag_bench.py); the microtask's
# proxy then cost as much again as the decoding of the message. False: the asyncio way
# (loop.call_soon), as in CPython before; the lab's ?wake=task sets it, to compare.
WAKE_IN_MICROTASK = True


def _microtask_scheduler() -> Callable[[Callable[[], None]], None] | None:
    """``queueMicrotask`` of the page or worker, under Pyodide; ``None`` elsewhere."""
    if sys.platform != "emscripten":
        return None
    try:
        import js  # type: ignore[import-not-found]
        from pyodide.ffi import create_once_callable  # type: ignore[import-not-found]
    except ImportError:
        return None
    queue = getattr(js, "queueMicrotask", None)
    if queue is None:
        return None

    def schedule(callback: Callable[[], None]) -> None:
        queue(create_once_callable(callback))

    return schedule


_microtask = _microtask_scheduler()


def _wake_soon(loop: asyncio.AbstractEventLoop, callback: Callable[..., None], future: Waiter,
               context: contextvars.Context | None) -> None:
    """Run ``callback(future)`` in a microtask where there is one, else with ``loop.call_soon``."""
    if _microtask is None:
        loop.call_soon(callback, future, context=context)
    else:
        _microtask(functools.partial(_resume, loop, callback, future, context))


def _resume(loop: asyncio.AbstractEventLoop, callback: Callable[..., None], future: Waiter,
            context: contextvars.Context | None) -> None:
    """Run ``callback(future)`` (a task's wake-up) now, unless a task is mid-step (then ``call_soon``)."""
    if asyncio.current_task(loop) is not None:  # a task is mid-step (a suspended stack): wait our turn
        loop.call_soon(callback, future, context=context)
        return
    if asyncio.events._get_running_loop() is not loop:
        asyncio.events._set_running_loop(loop)
    try:
        if context is None:
            callback(future)
        else:
            context.run(callback, future)
    except Exception as error:
        loop.call_exception_handler({"message": "pyflowmesh: waking an execute failed", "exception": error})


class Waiter:
    """What a waiting execute awaits: a future in the protocol ``asyncio.Task`` speaks to any
    future (``_asyncio_future_blocking``, ``get_loop``, ``add_done_callback``, ``result``,
    ``cancel``), whose awaiting task is woken by ``wake`` once it is resolved (see
    :data:`WAKE_IN_MICROTASK`). With ``wake=None``, or when cancelled, it wakes the task
    with ``loop.call_soon``, as an ``asyncio.Future`` does.
    """

    _asyncio_future_blocking = False

    def __init__(self, loop: asyncio.AbstractEventLoop, wake: Callable[..., None] | None = None) -> None:
        self._loop = loop
        self._wake = wake
        self._done = False
        self._cancelled: str | None | bool = False
        self._result: Any = None
        self._exception: BaseException | None = None
        self._callbacks: list[tuple[Callable[[Waiter], None], contextvars.Context | None]] = []

    def get_loop(self) -> asyncio.AbstractEventLoop:
        return self._loop

    def done(self) -> bool:
        return self._done

    def cancelled(self) -> bool:
        return self._cancelled is not False

    def result(self) -> Any:
        if self._cancelled is not False:
            raise asyncio.CancelledError(*(() if self._cancelled is True else (self._cancelled,)))
        if not self._done:
            raise asyncio.InvalidStateError("the execute is still waiting")
        if self._exception is not None:
            raise self._exception
        return self._result

    def exception(self) -> BaseException | None:
        if self._cancelled is not False or not self._done:
            self.result()  # raises CancelledError or InvalidStateError
        return self._exception

    def add_done_callback(self, callback: Callable[[Waiter], None], *,
                          context: contextvars.Context | None = None) -> None:
        if self._done:
            self._loop.call_soon(callback, self, context=context)
        else:
            self._callbacks.append((callback, context))

    def remove_done_callback(self, callback: Callable[[Waiter], None]) -> int:
        kept = [(c, x) for c, x in self._callbacks if c != callback]
        removed, self._callbacks = len(self._callbacks) - len(kept), kept
        return removed

    def set_result(self, value: Any) -> None:
        self._settle()
        self._result = value
        self._call_back(self._wake)

    def set_exception(self, error: BaseException) -> None:
        self._settle()
        self._exception = error
        self._call_back(self._wake)

    def cancel(self, msg: Any = None) -> bool:
        if self._done:
            return False
        self._done = True
        self._cancelled = True if msg is None else msg
        self._call_back(None)
        return True

    def _settle(self) -> None:
        if self._done:
            raise asyncio.InvalidStateError("the execute was already resolved")
        self._done = True

    def _call_back(self, wake: Callable[..., None] | None) -> None:
        callbacks, self._callbacks = self._callbacks, []
        for callback, context in callbacks:
            if wake is None:
                self._loop.call_soon(callback, self, context=context)
            else:
                wake(self._loop, callback, self, context)

    def __await__(self) -> Generator[Any, None, Any]:
        if not self._done:
            self._asyncio_future_blocking = True
            yield self
        if not self._done:
            raise RuntimeError("await wasn't used with future")
        return self.result()

    __iter__ = __await__


class _Events:
    """The member's side of :class:`~pyflowmesh.transports.TransportEvents`."""

    def __init__(self, mesh: FlowMesh) -> None:
        self._mesh = mesh

    def message(self, data: Any) -> None:
        self._mesh._on_message(data)

    def peer_gone(self, node_id: str) -> None:
        self._mesh._on_peer_gone(node_id)

    def visibility(self, hidden: bool) -> None:
        self._mesh._on_visibility(hidden)

    def frozen(self, frozen: bool) -> None:
        self._mesh._on_frozen(frozen)

    def leaving(self) -> None:
        self._mesh.dispose()


def _mesh_for(options: Mapping[str, Any]) -> FlowMesh:
    """The tab's member for these options: the existing one on that channel, or a new one."""
    if not isinstance(options, Mapping):
        raise TypeError(f"mesh= takes a dict of options or a FlowMesh, got {type(options).__name__}")
    options = dict(options)
    transport = options.pop("transport", None)
    node_id = options.pop("node_id", None)
    channel = options.get("channel")
    if not isinstance(channel, str) or not channel:
        raise ValueError("the mesh option 'channel' is required: the BroadcastChannel name, e.g. 'my-mesh'")
    key = member_key(channel, transport)
    existing = _members.get(key)
    if existing is not None and not existing.disposed:
        # The scope belongs to the tab's session, not to a flow: a flow that names none joins
        # the member in whatever scope it is now (set_scope may have moved it since).
        options.setdefault("scope", existing.scope)
        wanted = existing.config.from_options(options)
        if wanted.scope != existing.scope:
            raise ValueError(
                f"this tab's mesh member on channel {channel!r} is in another scope than this flow asks for; "
                "a tab holds one scope's data per channel: switch every flow at once with "
                "mesh.set_scope(...), or leave 'scope' out of this flow's options"
            )
        if wanted != existing.config:
            raise ValueError(
                f"this tab already has a mesh member on channel {channel!r} with other options "
                f"({existing.config}); every flow on one channel shares one member, so give them the same options"
            )
        return existing
    mesh = FlowMesh(transport=transport, node_id=node_id, **options)
    _members[key] = mesh
    return mesh
