"""In-memory pieces for tests and scripts under CPython: a channel, per-scope locks and a page driven by hand.

A :class:`MemoryHub` is one browser (one origin) in one event loop::

    hub = MemoryHub()
    tab1 = FlowMesh(channel="demo", transport=hub.transport())
    tab2 = FlowMesh(channel="demo", transport=hub.transport())

Delivery is asynchronous and in order, never back to the sender, exactly as
``BroadcastChannel`` does it; a closed channel receives nothing more, even what
was already on its way. With ``locks=True`` (the default) the hub also plays the
part of Web Locks: a member holds a lock named after its ID and scope, so one
that closes or crashes (or moves to another scope, or takes another ID) is
reported gone to the members of its scope that watch it. Each tab's page is a
:class:`MemoryPage` the test drives: ``hub.page(mesh).hide()``, ``.pagehide()``,
``.pagehide(persisted=True)`` then ``.pageshow()``, ``.freeze()``, ``.resume()``.
``hub.post(raw)`` puts anything on a channel, as a foreign script could, and
``hub.crash(mesh)`` makes a tab vanish without a word.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Callable
from typing import Any, Protocol

from .base import Channel, LifecycleEvents, PageLifecycle, PeerWatch, Transport

__all__ = ["MemoryChannel", "MemoryHub", "MemoryLocks", "MemoryPage"]


class _Tab(Protocol):
    """What the hub needs of a mesh member (a ``FlowMesh``) to crash it or find its page."""

    @property
    def transport(self) -> Transport: ...

    def _halt(self) -> None: ...


class MemoryHub:
    """Connects in-process channels and locks; one hub is one browser (one origin)."""

    def __init__(self, *, locks: bool = True) -> None:
        self.locks = locks
        self.posted = 0  # messages put on any channel, foreign ones included
        self._channels: dict[str, list[MemoryChannel]] = {}
        self._locks: dict[str, list[MemoryLocks]] = {}
        self._taps: list[Callable[[str, str], None]] = []

    def transport(self) -> Transport:
        """A new transport, one per simulated tab: a channel, locks (if the hub has them) and a page."""
        return Transport(MemoryChannel(self), MemoryLocks(self) if self.locks else None, MemoryPage())

    def post(self, raw: Any, channel: str | None = None) -> None:
        """Deliver ``raw`` to every member of ``channel`` (or of every channel), as a foreign script would."""
        for name, members in self._channels.items():
            if channel is None or name == channel:
                for member in list(members):
                    member._deliver(raw)
        self.posted += 1

    def on_post(self, callback: Callable[[str, str], None]) -> Callable[[], None]:
        """Call ``callback(channel, data)`` for every message a member posts (to record or count the traffic).

        Returns:
            A function that stops it.
        """
        self._taps.append(callback)

        def off() -> None:
            if callback in self._taps:
                self._taps.remove(callback)

        return off

    def crash(self, mesh: _Tab) -> None:
        """Make the tab of ``mesh`` vanish: no ``Bye``, no more timers; watchers learn it only through locks."""
        mesh._halt()
        mesh.transport.close()

    def page(self, mesh: _Tab) -> MemoryPage:
        """The simulated page of ``mesh``'s tab, whose lifecycle events a test fires."""
        page = mesh.transport.lifecycle
        if not isinstance(page, MemoryPage):
            raise TypeError(f"{mesh!r} runs on no MemoryPage: give it hub.transport()")
        return page

    def connected(self, channel: str) -> int:
        """How many members have ``channel`` open."""
        return len(self._channels.get(channel, []))

    def holds_lock(self, channel: str, scope: str, node_id: str) -> bool:
        """True while a member of scope digest ``scope`` on ``channel`` holds the lock of ``node_id``."""
        return any(m.held == (node_id, scope) for m in self._locks.get(channel, []))

    # --- used by the pieces ---------------------------------------------------------------

    def _post(self, sender: MemoryChannel, data: str) -> None:
        self.posted += 1
        for tap in list(self._taps):
            tap(sender.name, data)
        for member in list(self._channels.get(sender.name, [])):
            if member is not sender:
                member._deliver(data)

    def _released(self, holder: MemoryLocks, node_id: str, scope: str) -> None:
        """The lock of ``node_id`` in ``scope`` is free: the watchers of that lock learn the tab is gone."""
        for other in list(self._locks.get(holder.channel, [])):
            if other is not holder and (node_id, scope) in other.watching:
                other._report_gone(node_id)


class MemoryChannel(Channel):
    """One simulated tab's end of a :class:`MemoryHub` channel."""

    def __init__(self, hub: MemoryHub) -> None:
        self.hub = hub
        self.name = ""
        self._receive: Callable[[Any], None] | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._opened = 0  # how many times it was opened: a message on its way to an earlier opening is dropped
        # The member's rule for what it would drop unread (skip_addressed), applied here as the
        # browser's channel applies it in JS, so tests see the member count what was skipped.
        self._skip: tuple[str, str, re.Pattern[str]] | None = None
        self._skipped = 0

    def open(self, name: str, receive: Callable[[Any], None]) -> None:
        self.close()
        if self._loop is None:
            self._loop = asyncio.get_running_loop()
        self.name, self._receive = name, receive
        self._opened += 1
        self.hub._channels.setdefault(name, []).append(self)

    def post(self, data: str) -> None:
        if self._receive is not None:
            self.hub._post(self, data)

    def close(self) -> None:
        if self._receive is not None:
            self._receive = None
            members = self.hub._channels.get(self.name, [])
            if self in members:
                members.remove(self)

    def skip_addressed(self, head: str, me: str, pattern: str) -> None:
        self._skip = (head, me, re.compile(pattern))

    def take_skipped(self) -> int:
        skipped, self._skipped = self._skipped, 0
        return skipped

    def _deliver(self, data: Any) -> None:
        if self._receive is not None and self._loop is not None:
            self._loop.call_soon(self._arrive, self._opened, data)

    def _arrive(self, opened: int, data: Any) -> None:
        if self._receive is None or opened != self._opened:
            return
        if self._skip is not None and isinstance(data, str) and data.startswith(self._skip[0]):
            match = self._skip[2].match(data, len(self._skip[0]))
            if match is not None and match.group(1) != self._skip[1]:
                self._skipped += 1
                return
        self._receive(data)


class MemoryLocks(PeerWatch):
    """One simulated tab's locks on a :class:`MemoryHub`: its own, held by ID and scope, and the ones it watches.

    Like a Web Lock request, watching a lock nobody holds reports its tab gone at once.
    """

    def __init__(self, hub: MemoryHub) -> None:
        self.hub = hub
        self.channel = ""
        self.held: tuple[str, str] | None = None  # (node ID, scope digest) of the lock it holds
        self.watching: set[tuple[str, str]] = set()  # (node ID, scope digest) of each lock it waits for
        self._gone: Callable[[str], None] | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._open = False

    def open(self, channel: str, gone: Callable[[str], None]) -> None:
        self.channel, self._gone, self._open = channel, gone, True
        self._loop = asyncio.get_running_loop()
        self.hub._locks.setdefault(channel, []).append(self)

    def hold(self, node_id: str, scope: str) -> None:
        self.release()
        if self._open:
            self.held = (node_id, scope)

    def release(self) -> None:
        if self.held is not None:
            node_id, scope = self.held
            self.held = None
            self.hub._released(self, node_id, scope)

    def watch(self, node_id: str, scope: str) -> None:
        self.watching.add((node_id, scope))
        if not self.hub.holds_lock(self.channel, scope, node_id):
            self._report_gone(node_id)  # like a lock request granted at once: nobody holds it

    def unwatch(self, node_id: str | None = None) -> None:
        if node_id is None:
            self.watching.clear()
        else:
            self.watching = {watched for watched in self.watching if watched[0] != node_id}

    def close(self) -> None:
        if self._open:
            self.unwatch()
            self.release()
            self._open = False
            members = self.hub._locks.get(self.channel, [])
            if self in members:
                members.remove(self)

    def _report_gone(self, node_id: str) -> None:
        if self._loop is not None:
            self._loop.call_soon(self._gone_now, node_id)

    def _gone_now(self, node_id: str) -> None:
        if self._open and self._gone is not None and any(watched[0] == node_id for watched in self.watching):
            self.unwatch(node_id)  # a lock request is granted once
            self._gone(node_id)


class MemoryPage(PageLifecycle):
    """A simulated page whose lifecycle events the test fires, as the browser would."""

    def __init__(self) -> None:
        self.hidden = False
        self._events: LifecycleEvents | None = None

    def open(self, events: LifecycleEvents) -> None:
        self._events = events
        if self.hidden:
            events.visibility(True)

    def close(self) -> None:
        self._events = None

    def hide(self, hidden: bool = True) -> None:
        """The page becomes hidden (or visible again): ``visibilitychange``."""
        self.hidden = hidden
        if self._events is not None:
            self._events.visibility(hidden)

    def pagehide(self, persisted: bool = False) -> None:
        """``pagehide``: the member leaves the mesh.

        ``persisted``: the page goes into the back/forward cache instead; it hands over,
        its lock is released, and nothing reaches it until :meth:`pageshow`.
        """
        if self._events is not None:
            self._events.pagehide(persisted)

    def pageshow(self) -> None:
        """``pageshow`` of a page restored from the back/forward cache: it rejoins."""
        if self._events is not None:
            self._events.pageshow(True)

    def freeze(self) -> None:
        """``freeze``: a leader hands over; the page is still there."""
        if self._events is not None:
            self._events.freeze()

    def resume(self) -> None:
        """``resume``: a frozen page thaws and rejoins."""
        if self._events is not None:
            self._events.resume()
