"""An in-memory stand-in for ``BroadcastChannel``, for tests and scripts under CPython.

``MemoryHub`` connects any number of simulated tabs in one event loop::

    hub = MemoryHub()
    tab1 = FlowMesh(channel="demo", transport=hub.transport())
    tab2 = FlowMesh(channel="demo", transport=hub.transport())

Delivery is asynchronous and in order, never back to the sender, exactly as the
browser does it. With ``locks=True`` (the default) the hub also plays the part of
Web Locks: a member that closes or crashes (or moves to another scope, whose lock
has another name) is reported gone to the members of its scope that watch it.
``hub.post(raw)`` puts anything on a channel, as a foreign script could, and
``hub.crash(mesh)`` makes a tab vanish without a word.
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, Any

from .transport import Transport, TransportEvents

if TYPE_CHECKING:
    from .mesh import FlowMesh

__all__ = ["MemoryHub", "MemoryTransport"]


class MemoryHub:
    """Connects in-process transports; one hub is one browser (one origin)."""

    def __init__(self, *, locks: bool = True) -> None:
        self.locks = locks
        self._members: dict[str, list[MemoryTransport]] = {}
        self.posted = 0  # messages put on any channel, foreign ones included

    def transport(self) -> MemoryTransport:
        """A new transport: one per simulated tab."""
        return MemoryTransport(self)

    def post(self, raw: Any, channel: str | None = None) -> None:
        """Deliver ``raw`` to every member of ``channel`` (or of every channel), as a foreign script would."""
        for name, members in self._members.items():
            if channel is None or name == channel:
                for member in list(members):
                    member._deliver(raw)
        self.posted += 1

    def crash(self, mesh: FlowMesh) -> None:
        """Make the tab of ``mesh`` vanish: no ``Bye``, no more timers; watchers learn it only through locks."""
        mesh._halt()
        transport = mesh.transport
        if isinstance(transport, MemoryTransport):
            transport._drop()

    def members(self, channel: str) -> list[str]:
        """The node IDs connected to ``channel``."""
        return [m.node_id for m in self._members.get(channel, []) if m.node_id]

    def holds_lock(self, channel: str, scope: str, node_id: str) -> bool:
        """True while a member of scope digest ``scope`` with ID ``node_id`` is on ``channel``."""
        return any(m.node_id == node_id and m.scope == scope for m in self._members.get(channel, []))

    # --- used by the transports -----------------------------------------------------------

    def _join(self, member: MemoryTransport) -> None:
        self._members.setdefault(member.channel, []).append(member)

    def _leave(self, member: MemoryTransport) -> None:
        members = self._members.get(member.channel, [])
        if member in members:
            members.remove(member)
        self._released(member, member.scope)

    def _released(self, member: MemoryTransport, scope: str) -> None:
        """``member``'s lock of ``scope`` is free: its watchers in that scope learn it is gone."""
        if self.locks:
            for other in list(self._members.get(member.channel, [])):
                if other is not member and other.scope == scope and other.watching == member.node_id:
                    other._report_gone(member.node_id)

    def _broadcast(self, sender: MemoryTransport, data: str) -> None:
        self.posted += 1
        for member in list(self._members.get(sender.channel, [])):
            if member is not sender:
                member._deliver(data)


class MemoryTransport(Transport):
    """One simulated tab's end of a :class:`MemoryHub` channel."""

    def __init__(self, hub: MemoryHub) -> None:
        self.hub = hub
        self.channel = ""
        self.node_id = ""
        self.scope = ""  # the scope digest: with the node ID, the name of the lock it holds
        self.watching: str | None = None
        self.sent = 0
        self._events: TransportEvents | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._open = False
        self._bfcached = False

    def open(self, channel: str, node_id: str, events: TransportEvents) -> None:
        if self._open or self._events is not None:
            raise RuntimeError("a MemoryTransport serves one mesh member; use hub.transport() for each")
        self.channel, self.node_id, self._events = channel, node_id, events
        self._loop = asyncio.get_running_loop()
        self._open = True
        self.hub._join(self)

    def send(self, data: str) -> None:
        if self._open and not self._bfcached:
            self.sent += 1
            self.hub._broadcast(self, data)

    def set_scope(self, scope: str) -> None:
        old, self.scope = self.scope, scope
        self.watching = None
        if self._open and old != scope:
            self.hub._released(self, old)

    def watch(self, node_id: str | None) -> None:
        self.watching = node_id
        if node_id is not None and self.hub.locks and not self.hub.holds_lock(self.channel, self.scope, node_id):
            self._report_gone(node_id)  # like a lock request granted at once: nobody holds it

    def rename(self, node_id: str) -> None:
        old, self.node_id = self.node_id, node_id
        if self._open and self.hub.locks:  # the old ID's lock is released: its watchers learn it
            for other in list(self.hub._members.get(self.channel, [])):
                if other is not self and other.scope == self.scope and other.watching == old:
                    other._report_gone(old)

    def close(self) -> None:
        if self._open:
            self._open = False
            if not self._bfcached:
                self.hub._leave(self)

    def hide(self, hidden: bool = True) -> None:
        """Simulate the page becoming hidden (or visible again)."""
        if self._open and self._events is not None:
            self._events.visibility(hidden)

    def pagehide(self, persisted: bool = False) -> None:
        """Simulate the browser's ``pagehide``: the member leaves the mesh.

        ``persisted``: the page goes into the back/forward cache instead; it hands over,
        its lock is released, and nothing reaches it until :meth:`pageshow`.
        """
        if not self._open or self._events is None:
            return
        if not persisted:
            self._events.leaving()
            return
        self._events.frozen(True)  # a leader says Bye while it still can post, as in the browser
        self._bfcached = True
        self.hub._leave(self)  # its lock goes: watchers learn it; messages stop reaching it

    def pageshow(self) -> None:
        """Simulate ``pageshow`` of a page restored from the back/forward cache: it rejoins."""
        if self._open and self._bfcached and self._events is not None:
            self._bfcached = False
            self.hub._join(self)
            self._events.frozen(False)

    def _deliver(self, data: Any) -> None:
        if self._open and self._loop is not None:
            self._loop.call_soon(self._receive, data)

    def _receive(self, data: Any) -> None:
        if self._open and self._events is not None:
            self._events.message(data)

    def _report_gone(self, node_id: str) -> None:
        if self._loop is not None:
            self._loop.call_soon(self._gone, node_id)

    def _gone(self, node_id: str) -> None:
        if self._open and self._events is not None and self.watching == node_id:
            self._events.peer_gone(node_id)

    def _drop(self) -> None:
        if self._open:
            self._open = False
            if not self._bfcached:
                self.hub._leave(self)
