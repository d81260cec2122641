"""The browser transport: ``BroadcastChannel``, Web Locks and page lifecycle, through Pyodide's ``js``.

This module is the only one that touches the browser, and it stays thin: it
moves text between the channel and the mesh member and reports what the page
knows that the protocol cannot see for itself.

* **BroadcastChannel** carries the messages (as JSON text) to the other tabs of
  the same origin.
* **Web Locks** (where ``navigator.locks`` exists: a secure context such as
  https or http://127.0.0.1). Each member holds the lock
  ``pyflowmesh:<channel>:<node id>`` (``pyflowmesh:<channel>:<scope digest>:<node id>``
  in a scope) while it is a member; a follower queues for its
  leader's lock, and the browser grants it the moment the leader's tab closes or
  crashes. So a dead leader is replaced in milliseconds rather than after its
  heartbeats run out, and the long patience the mesh grants a hidden leader
  (whose timers the browser throttles) costs nothing when that tab dies.
* **Page lifecycle.** ``pagehide`` makes the member leave (a ``Bye``: a successor
  is elected at once), unless the page goes into the back/forward cache
  (``persisted``): then it hands over as a frozen page does, releases its lock,
  closes its channel (a message reaching an open channel evicts a cached page) and
  rejoins on ``resume`` or ``pageshow``; ``freeze`` makes a leader hand over the same way, and
  ``resume`` makes the member rejoin; ``visibilitychange`` tells the member its
  timers may be throttled, which a leader announces in its heartbeats.

Every JS proxy it creates is listed in ``proxies`` and destroyed by :meth:`close`.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import js  # type: ignore[import-not-found]
from pyodide.ffi import JsProxy, create_proxy, to_js  # type: ignore[import-not-found]

from .transport import Transport, TransportEvents

__all__ = ["BroadcastChannelTransport", "lock_name"]


def lock_name(channel: str, node_id: str, scope: str = "") -> str:
    """The Web Lock a member of scope digest ``scope`` (``""``: shared) holds while it lives.

    The scope is part of the name, so a follower in one scope never watches (and
    is never woken by) a lock of another scope's tab that happens to share an ID.
    """
    return f"pyflowmesh:{channel}:{scope}:{node_id}" if scope else f"pyflowmesh:{channel}:{node_id}"


def _has(obj: Any, name: str) -> bool:
    try:
        return getattr(obj, name, None) is not None
    except Exception:
        return False


class BroadcastChannelTransport(Transport):
    """A mesh member's connection to the other tabs of this origin.

    Args:
        use_locks: use Web Locks where available (``FlowMesh`` passes its
            ``use_locks`` option through :meth:`open`'s caller; default True).
    """

    def __init__(self, use_locks: bool = True) -> None:
        self.use_locks = use_locks
        self.proxies: list[Any] = []  # every PyProxy this transport created, for close() and tests
        self.sent = 0
        self._events: TransportEvents | None = None
        self._channel: Any = None
        self._listeners: list[tuple[Any, str, Any]] = []
        self._release_own_lock: Any = None
        self._own_lock_abort: Any = None
        self._own_lock_holder: Any = None  # the PyProxy the browser calls when our lock is granted
        self._node_id = ""
        self._scope = ""
        self._watching: str | None = None
        self._watch_abort: Any = None
        self._watch_granted: Any = None  # the PyProxy the pending lock request will call
        self._message_proxy: Any = None  # the channel's listener, kept across a back/forward cache visit
        self._ignore: Any = None  # one no-op PyProxy for promise rejections we expect
        self._watch_task: asyncio.Task[None] | None = None
        self._name = ""
        self._node_id = ""
        self._bfcached = False
        self._open = False

    @property
    def locks_available(self) -> bool:
        """True when this page can use Web Locks (and they were not turned off)."""
        return self.use_locks and _has(js, "navigator") and _has(js.navigator, "locks")

    # --- Transport ------------------------------------------------------------------------

    def open(self, channel: str, node_id: str, events: TransportEvents) -> None:
        if self._open:
            raise RuntimeError("a BroadcastChannelTransport serves one mesh member")
        self._events, self._name, self._node_id, self._open = events, channel, node_id, True
        self._ignore = self._proxy(lambda *args: None)
        self._message_proxy = self._proxy(self._on_message)
        self._open_channel()
        if _has(js, "window") and _has(js, "document"):
            self._listen(js.window, "pagehide", self._on_pagehide)
            self._listen(js.window, "pageshow", self._on_pageshow)
            self._listen(js.document, "visibilitychange", self._on_visibility)
            self._listen(js.document, "freeze", self._on_freeze)
            self._listen(js.document, "resume", self._on_resume)
            if js.document.visibilityState == "hidden":
                events.visibility(True)
        if self.locks_available:
            self._hold_own_lock(lock_name(channel, node_id, self._scope))

    def send(self, data: str) -> None:
        if self._open and self._channel is not None:  # no channel while in the back/forward cache
            self.sent += 1
            self._channel.postMessage(data)

    def set_scope(self, scope: str) -> None:
        if scope == self._scope:
            return
        self._scope = scope
        if not self._open:
            return  # open() takes the lock under this scope
        self._stop_watching()
        self._drop_own_lock()
        if self.locks_available:
            self._hold_own_lock(lock_name(self._name, self._node_id, scope))

    def watch(self, node_id: str | None) -> None:
        if node_id == self._watching or not self._open:
            return
        self._stop_watching()
        self._watching = node_id
        if node_id is not None and self.locks_available:
            self._watch_task = asyncio.ensure_future(self._watch(node_id))

    def rename(self, node_id: str) -> None:
        self._node_id = node_id
        if not self._open or not self.locks_available or self._bfcached:
            return
        self._drop_own_lock()
        self._hold_own_lock(lock_name(self._name, node_id, self._scope))

    def close(self) -> None:
        if not self._open:
            return
        self._open = False
        self._stop_watching()
        for target, kind, proxy in self._listeners:
            target.removeEventListener(kind, proxy)
        self._listeners.clear()
        self._close_channel()
        self._drop_own_lock()
        for proxy in self.proxies:
            proxy.destroy()
        self.proxies.clear()

    # --- internals ------------------------------------------------------------------------

    @property
    def live_proxies(self) -> int:
        """How many PyProxies this transport holds now (0 after :meth:`close`)."""
        return len(self.proxies) + (self._watch_granted is not None)

    def _proxy(self, function: Callable[..., Any]) -> Any:
        proxy = create_proxy(function)
        self.proxies.append(proxy)
        return proxy

    def _listen(self, target: Any, kind: str, handler: Callable[[Any], None]) -> None:
        proxy = self._proxy(handler)
        target.addEventListener(kind, proxy)
        self._listeners.append((target, kind, proxy))

    def _on_message(self, event: Any) -> None:
        data = event.data
        if isinstance(data, JsProxy):  # not text: certainly not ours; don't convert it
            data = None
        if self._open and self._events is not None:
            self._events.message(data)

    def _open_channel(self) -> None:
        self._channel = js.BroadcastChannel.new(self._name)
        self._channel.addEventListener("message", self._message_proxy)

    def _close_channel(self) -> None:
        if self._channel is not None:
            self._channel.removeEventListener("message", self._message_proxy)
            self._channel.close()
            self._channel = None

    def _on_pagehide(self, event: Any) -> None:
        if not self._open or self._events is None:
            return
        if getattr(event, "persisted", False):
            # Into the back/forward cache: the page may come back. Hand over like a frozen
            # page (its Bye goes out now), let go of the lock so that watchers learn it at
            # once, and close the channel: any message reaching an open BroadcastChannel
            # evicts a cached page (Chromium: "broadcastchannel-message").
            self._events.frozen(True)
            self._bfcached = True
            self._stop_watching()
            self._drop_own_lock()
            self._close_channel()
        else:
            self._events.leaving()

    def _on_pageshow(self, event: Any) -> None:
        if getattr(event, "persisted", False):
            self._come_back()

    def _come_back(self) -> None:
        """Back from the back/forward cache (``resume`` or ``pageshow``, whichever comes first)."""
        if not self._open or self._events is None or not self._bfcached:
            return
        self._bfcached = False
        self._open_channel()
        if self.locks_available:
            self._hold_own_lock(lock_name(self._name, self._node_id, self._scope))
        self._events.frozen(False)  # rejoins: asks the mesh who leads now

    def _on_visibility(self, event: Any) -> None:
        if self._open and self._events is not None:
            self._events.visibility(js.document.visibilityState == "hidden")

    def _on_freeze(self, event: Any) -> None:
        if self._open and self._events is not None and not self._bfcached:  # cached: already handed over
            self._events.frozen(True)

    def _on_resume(self, event: Any) -> None:
        if self._bfcached:  # Chromium resumes a cached page just before its pageshow
            self._come_back()
        elif self._open and self._events is not None:
            self._events.frozen(False)

    def _drop_own_lock(self) -> None:
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

    def _hold_own_lock(self, name: str) -> None:
        # The lock is held until the promise the callback returns settles: keep its resolve.
        def executor(resolve: Any, reject: Any) -> None:
            self._release_own_lock = resolve

        executor_proxy = create_proxy(executor)
        held = js.Promise.new(executor_proxy)  # calls the executor at once
        executor_proxy.destroy()
        holder = self._own_lock_holder = self._proxy(lambda lock: held)
        # Aborted by close() if not granted by then, so the browser never calls a destroyed proxy.
        self._own_lock_abort = js.AbortController.new()
        options = to_js({"signal": self._own_lock_abort.signal}, dict_converter=js.Object.fromEntries)
        js.navigator.locks.request(name, options, holder).then(self._ignore, self._ignore)

    async def _watch(self, node_id: str) -> None:
        """Queue for the peer's lock; being granted it means the peer's tab is gone."""
        name = lock_name(self._name, node_id, self._scope)
        snapshot = await js.navigator.locks.query()
        held = [lock.name for lock in snapshot.held]
        if name not in held or self._watching != node_id or not self._open:
            return  # that tab holds no lock (no Web Locks there, or gone already): heartbeats decide
        self._watch_abort = js.AbortController.new()
        options = to_js({"signal": self._watch_abort.signal}, dict_converter=js.Object.fromEntries)
        self._watch_granted = create_proxy(lambda lock: self._peer_released(node_id))
        # An abort rejects the request; that is expected, hence the handler.
        js.navigator.locks.request(name, options, self._watch_granted).then(self._ignore, self._ignore)

    def _peer_released(self, node_id: str) -> None:
        if self._open and self._watching == node_id and self._events is not None:
            asyncio.get_event_loop().call_soon(self._report_gone, node_id)

    def _report_gone(self, node_id: str) -> None:
        if self._open and self._watching == node_id and self._events is not None:
            self._events.peer_gone(node_id)

    def _stop_watching(self) -> None:
        if self._watch_abort is not None:
            self._watch_abort.abort()
            self._watch_abort = None
        if self._watch_granted is not None:
            self._watch_granted.destroy()  # aborted: the browser will not call it any more
            self._watch_granted = None
        if self._watch_task is not None and not self._watch_task.done():
            self._watch_task.cancel()
        self._watch_task = None
        self._watching = None
