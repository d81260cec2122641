"""Web Locks (``navigator.locks``) as a :class:`~pyflowmesh.transports.base.PeerWatch`, through Pyodide's ``js``.

Each member holds the lock :func:`~pyflowmesh.transports.base.lock_name` names
(``pyflowmesh:<channel>:<node id>``, ``pyflowmesh:<channel>:<scope digest>:<node id>``
in a scope) while it is a member; a follower queues for its leader's lock (the
leader for each of its followers'), and the browser grants it the moment that
tab closes or crashes. So a dead leader is replaced in milliseconds rather than
after its heartbeats run out, a dead follower leaves the members as fast, and the
long patience the mesh grants a hidden leader (whose timers the browser throttles)
costs nothing when that tab dies. A watched lock that nobody holds or waits for
(the tab is gone already) is reported at once, as a lock request would be granted.

Web Locks exist in a secure context (https, or http on ``localhost``/``127.0.0.1``),
in pages and in workers: :func:`available` says whether this one has them.
Every PyProxy it creates is destroyed by :meth:`WebLocks.close`.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import js  # type: ignore[import-not-found]
from pyodide.ffi import create_proxy, to_js  # type: ignore[import-not-found]

from .base import PeerWatch, has_attribute, lock_name

__all__ = ["WebLocks", "available"]


def available() -> bool:
    """True when this page or worker has Web Locks (``navigator.locks``)."""
    return has_attribute(js, "navigator") and has_attribute(js.navigator, "locks")


class _Watch:
    """One pending request for another member's lock."""

    __slots__ = ("abort", "granted", "task")

    def __init__(self) -> None:
        self.abort: Any = None  # the AbortController of the request, once made
        self.granted: Any = None  # the PyProxy the pending lock request will call
        self.task: asyncio.Task[None] | None = None


class WebLocks(PeerWatch):
    """One member's own Web Lock, and its watches on other members'."""

    def __init__(self) -> None:
        self.proxies: list[Any] = []  # every PyProxy held now but the watch's, for close() and tests
        self._channel = ""
        self._gone: Callable[[str], None] | None = None
        self._ignore: Any = None  # one no-op PyProxy for promise rejections we expect
        self._release_own_lock: Any = None
        self._own_lock_abort: Any = None
        self._own_lock_holder: Any = None  # the PyProxy the browser calls when our lock is granted
        self._watches: dict[str, _Watch] = {}
        self._open = False

    @property
    def live_proxies(self) -> int:
        """How many PyProxies this watch holds now (0 after :meth:`close`)."""
        return len(self.proxies) + sum(watch.granted is not None for watch in self._watches.values())

    def open(self, channel: str, gone: Callable[[str], None]) -> None:
        self._channel, self._gone, self._open = channel, gone, True
        if self._ignore is None:
            self._ignore = self._proxy(lambda *args: None)

    def hold(self, node_id: str, scope: str) -> None:
        self.release()
        if not self._open:
            return
        # The lock is held until the promise the callback returns settles: keep its resolve.
        def executor(resolve: Any, reject: Any) -> None:
            self._release_own_lock = resolve

        executor_proxy = create_proxy(executor)
        held = js.Promise.new(executor_proxy)  # calls the executor at once
        executor_proxy.destroy()
        holder = self._own_lock_holder = self._proxy(lambda lock: held)
        # Aborted by release() if not granted by then, so the browser never calls a destroyed proxy.
        self._own_lock_abort = js.AbortController.new()
        options = to_js({"signal": self._own_lock_abort.signal}, dict_converter=js.Object.fromEntries)
        js.navigator.locks.request(lock_name(self._channel, node_id, scope), options, holder).then(
            self._ignore, self._ignore
        )

    def release(self) -> None:
        """Release our lock (or withdraw the request for it, if not granted yet)."""
        if self._own_lock_abort is not None:
            self._own_lock_abort.abort()  # no effect once granted
            self._own_lock_abort = None
        if self._release_own_lock is not None:
            self._release_own_lock()  # the lock callback's promise resolves: the lock is released
            self._release_own_lock = None
        if self._own_lock_holder is not None:
            # Granted and released, or aborted: the browser will not call it any more.
            self.proxies.remove(self._own_lock_holder)
            self._own_lock_holder.destroy()
            self._own_lock_holder = None

    def watch(self, node_id: str, scope: str) -> None:
        self.unwatch(node_id)
        if self._open:
            watch = self._watches[node_id] = _Watch()
            watch.task = asyncio.ensure_future(self._watch(node_id, scope, watch))

    def unwatch(self, node_id: str | None = None) -> None:
        for watched in list(self._watches) if node_id is None else [node_id]:
            watch = self._watches.pop(watched, None)
            if watch is None:
                continue
            if watch.abort is not None:
                watch.abort.abort()
            if watch.granted is not None:
                watch.granted.destroy()  # aborted: the browser will not call it any more
            if watch.task is not None and not watch.task.done():
                watch.task.cancel()

    def close(self) -> None:
        if not self._open:
            return
        self._open = False
        self.unwatch()
        self.release()
        for proxy in self.proxies:
            proxy.destroy()
        self.proxies.clear()
        self._ignore = None

    def _proxy(self, function: Callable[..., Any]) -> Any:
        proxy = create_proxy(function)
        self.proxies.append(proxy)
        return proxy

    async def _watch(self, node_id: str, scope: str, watch: _Watch) -> None:
        """Queue for the peer's lock; being granted it means the peer's tab is gone."""
        name = lock_name(self._channel, node_id, scope)
        # The core watches only members that said they hold a lock. One that neither holds
        # it nor waits for it is gone already: granted at once, as a request would be.
        snapshot = await js.navigator.locks.query()
        if self._watches.get(node_id) is not watch or not self._open:
            return
        known = {lock.name for lock in snapshot.held} | {lock.name for lock in snapshot.pending}
        if name not in known:
            self._peer_released(node_id, watch)
            return
        watch.abort = js.AbortController.new()
        options = to_js({"signal": watch.abort.signal}, dict_converter=js.Object.fromEntries)
        watch.granted = create_proxy(lambda lock: self._peer_released(node_id, watch))
        # An abort rejects the request; that is expected, hence the handler.
        js.navigator.locks.request(name, options, watch.granted).then(self._ignore, self._ignore)

    def _peer_released(self, node_id: str, watch: _Watch) -> None:
        if self._open and self._watches.get(node_id) is watch:
            asyncio.get_event_loop().call_soon(self._report_gone, node_id, watch)

    def _report_gone(self, node_id: str, watch: _Watch) -> None:
        if self._open and self._watches.get(node_id) is watch and self._gone is not None:
            self.unwatch(node_id)  # granted once: the lock is ours until the callback returns
            self._gone(node_id)
