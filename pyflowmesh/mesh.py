"""``FlowMesh``: one tab's member of the mesh, driving the sans-I/O core with asyncio.

This is the only place where the core meets time and I/O: it feeds the
:class:`~pyflowmesh.node.MeshNode` with the transport's messages and with ticks from
one ``loop.call_later`` timer (Pyodide's event loop maps it to ``setTimeout``), and it
carries out the effects the node queues: sends, calls of flow functions, futures
of waiting executes, listeners.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
import secrets
import sys
from collections.abc import Callable
from typing import Any

from .cache import CacheEntry
from .config import MeshConfig
from .effects import CacheUpdated, FailureShared, LeaderChanged, Reject, Resolve, Send, Source, StartCall, WatchPeer
from .errors import MeshDisposedError
from .node import MeshNode
from .stats import MeshStats
from .transport import Transport
from .values import check_json

__all__ = ["FlowMesh", "new_node_id"]

log = logging.getLogger("pyflowmesh")

FlowFunction = Callable[..., Any]


def new_node_id() -> str:
    """A random node ID: 12 hex digits, compared as text by the Bully election."""
    return secrets.token_hex(6)


def _default_transport(config: MeshConfig) -> Transport:
    if sys.platform == "emscripten":
        from .browser import BroadcastChannelTransport

        return BroadcastChannelTransport(use_locks=config.use_locks)
    raise RuntimeError(
        "FlowMesh needs a transport outside the browser: pass transport=MemoryHub().transport() "
        "(from pyflowmesh.testing) or another Transport"
    )


def _event_loop() -> asyncio.AbstractEventLoop:
    try:
        return asyncio.get_running_loop()
    except RuntimeError:
        if sys.platform == "emscripten":  # Pyodide's WebLoop serves top-level code too
            return asyncio.get_event_loop()
        raise RuntimeError("create FlowMesh inside a running event loop (e.g. in an async function)") from None


class FlowMesh:
    """This tab's member of the mesh on one channel.

    Args:
        channel: the BroadcastChannel name; tabs on the same name form one mesh.
        options: any :class:`~pyflowmesh.config.MeshConfig` option (``strategy``,
            ``share_cache``, ``share_errors``, ``heartbeat``, ``stale_time`` ...), by
            its Python or TypeScript name.
        transport: how to reach the other tabs; by default the browser's
            ``BroadcastChannel`` (with Web Locks and page lifecycle events).
        node_id: this tab's ID in the election (random by default; the highest ID
            wins an election).

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
        if channel is not None:
            options["channel"] = channel
        self.config = MeshConfig.from_options(options)
        self.node_id = node_id or new_node_id()
        self._loop = _event_loop()
        self._node = MeshNode(self.node_id, self.config)
        self._transport = transport if transport is not None else _default_transport(self.config)
        self._flows: dict[str, FlowFunction] = {}
        self._waiters: dict[int, asyncio.Future[tuple[Any, Source]]] = {}
        # Per key, its listeners; a key's entry goes with its last listener, so both hold
        # at most one entry per key someone listens to now (a Flow follows one key at a time).
        self._cache_listeners: dict[str, list[Callable[[Any], None]]] = {}
        self._error_listeners: dict[str, list[Callable[[BaseException], None]]] = {}
        self._leader_listeners: list[Callable[[str | None], None]] = []
        self._calls: set[asyncio.Task[None]] = set()
        self._timer: asyncio.TimerHandle | None = None
        self._timer_at: float | None = None
        self._disposed = False
        self._transport.open(self.config.channel, self.node_id, _Events(self))
        self._node.start(self._now())
        self._flush()

    # --- state ------------------------------------------------------------------------

    @property
    def leader(self) -> bool:
        """True while this tab is the leader (always False peer-to-peer)."""
        return self._node.is_leader

    @property
    def leader_id(self) -> str | None:
        """The leader's node ID as this tab knows it, or ``None``."""
        return self._node.leader

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
        return self._node.stats

    @property
    def strategy(self) -> str:
        return self.config.strategy

    @property
    def channel(self) -> str:
        return self.config.channel

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

    # --- flows ---------------------------------------------------------------------------

    def register(self, key: str, function: FlowFunction) -> None:
        """Make ``function`` runnable as the flow ``key`` in this tab (``use_flow`` does this).

        Raises:
            ValueError: another function is already registered under ``key``.
        """
        existing = self._flows.get(key)
        if existing is not None and existing is not function:
            raise ValueError(
                f"flow key {key!r} is already used by {existing!r} on channel {self.channel!r}; "
                "pass a distinct key= to use_flow"
            )
        self._flows[key] = function
        self._node.register_flow(key)

    async def run(self, key: str, *args: Any) -> Any:
        """Execute the registered flow ``key`` with ``args`` through the mesh; return its data."""
        value, _ = await self.execute_with_source(key, *args)
        return value

    async def execute_with_source(self, key: str, *args: Any) -> tuple[Any, Source]:
        """Like :meth:`run`, also saying where the data came from: ``"call"``, ``"mesh"`` or ``"cache"``."""
        self._check_open()
        if key not in self._flows:
            raise LookupError(f"no flow {key!r} is registered on channel {self.channel!r}")
        future: asyncio.Future[tuple[Any, Source]] = self._loop.create_future()
        waiter = self._node.execute(key, args, self._now())  # TypeError for non-JSON arguments
        self._waiters[waiter] = future
        self._flush()
        return await future

    # --- lifecycle -----------------------------------------------------------------------

    def dispose(self) -> None:
        """Leave the mesh: hand leadership over (a ``Bye``), fail waiting executes, free every proxy."""
        if self._disposed:
            return
        self._node.leave(self._now())
        self._flush()
        self._halt()
        self._transport.close()
        from .flow import _forget_mesh

        _forget_mesh(self)

    def _halt(self) -> None:
        """Stop without a word (used by ``dispose`` and by ``MemoryHub.crash``)."""
        self._disposed = True
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
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

    def _check_open(self) -> None:
        if self._disposed:
            raise MeshDisposedError(f"this FlowMesh on {self.channel!r} was disposed")

    def _flush(self) -> None:
        """Carry out every queued effect, then set the timer for the next deadline."""
        for effect in self._node.take_effects():
            if isinstance(effect, Send):
                self._transport.send(effect.data)
            elif isinstance(effect, StartCall):
                task = self._loop.create_task(self._call(effect))
                self._calls.add(task)
                task.add_done_callback(self._calls.discard)
            elif isinstance(effect, Resolve):
                future = self._waiters.pop(effect.waiter, None)
                if future is not None and not future.done():
                    future.set_result((effect.value, effect.source))
            elif isinstance(effect, Reject):
                future = self._waiters.pop(effect.waiter, None)
                if future is not None and not future.done():
                    future.set_exception(effect.error)
            elif isinstance(effect, CacheUpdated):
                for callback in list(self._cache_listeners.get(effect.key, ())):
                    self._notify(callback, effect.value)
            elif isinstance(effect, FailureShared):
                for callback in list(self._error_listeners.get(effect.key, ())):
                    self._notify(callback, effect.error)
            elif isinstance(effect, LeaderChanged):
                for callback in list(self._leader_listeners):
                    self._notify(callback, effect.leader)
            elif isinstance(effect, WatchPeer) and not self._disposed:
                self._transport.watch(effect.node_id)
        self._arm_timer()

    def _notify(self, callback: Callable[[Any], None], value: Any) -> None:
        try:
            callback(value)
        except Exception:  # a listener's bug must not break the mesh
            log.exception("pyflowmesh: a listener on channel %r raised", self.channel)

    def _arm_timer(self) -> None:
        deadline = None if self._disposed else self._node.next_deadline()
        if deadline == self._timer_at and self._timer is not None:
            return
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        self._timer_at = deadline
        if deadline is not None:
            # call_later, not call_at: Pyodide's loop refuses a time in the past ("Can't schedule
            # in the past"), and a deadline may have passed while the tab was busy.
            delay = max(0.0, deadline / 1000.0 - self._loop.time())
            self._timer = self._loop.call_later(delay, self._on_timer)

    def _on_timer(self) -> None:
        self._timer = None
        self._timer_at = None
        if not self._disposed:
            self._node.tick(self._now())
            self._flush()

    async def _call(self, call: StartCall) -> None:
        function = self._flows[call.flow]
        result: Any = None
        failure: Exception | None = None
        try:
            result = function(*call.args)
            if inspect.isawaitable(result):
                result = await result
            check_json(result, f"the result of flow {call.flow!r}")
        except asyncio.CancelledError:
            raise
        except Exception as error:
            failure = error
        if self._disposed:
            return
        if failure is None:
            self._node.call_succeeded(call.call_id, result, self._now())
        else:
            # A TypeError (a result that is not JSON, a bad call) is a bug a retry cannot fix: no back-off.
            back_off = not isinstance(failure, TypeError)
            self._node.call_failed(call.call_id, failure, self._now(), back_off=back_off)
        self._flush()

    # --- transport events ---------------------------------------------------------------

    def _on_message(self, data: Any) -> None:
        if not self._disposed:
            self._node.receive(data, self._now())
            self._flush()

    def _on_peer_gone(self, node_id: str) -> None:
        if not self._disposed:
            self._node.peer_gone(node_id, self._now())
            self._flush()

    def _on_visibility(self, hidden: bool) -> None:
        if not self._disposed:
            self._node.set_hidden(hidden, self._now())
            self._flush()

    def _on_frozen(self, frozen: bool) -> None:
        if not self._disposed:
            self._node.set_frozen(frozen, self._now())
            self._flush()


def _subscribe(listeners: list[Callable[..., None]], callback: Callable[..., None]) -> Callable[[], None]:
    """Add ``callback`` to ``listeners``; return the function that removes it again."""
    listeners.append(callback)

    def off() -> None:
        if callback in listeners:
            listeners.remove(callback)

    return off


def _subscribe_key(
    registry: dict[str, list[Callable[..., None]]], key: str, callback: Callable[..., None]
) -> Callable[[], None]:
    """Add ``callback`` to ``registry[key]``; the returned function removes it, and the key's
    entry with its last listener (a page following ever-new keys must not keep one per key)."""
    listeners = registry.setdefault(key, [])
    listeners.append(callback)

    def off() -> None:
        if callback in listeners:
            listeners.remove(callback)
        if not listeners and registry.get(key) is listeners:
            del registry[key]

    return off


class _Events:
    """The member's side of :class:`~pyflowmesh.transport.TransportEvents`."""

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
