"""The three pieces of a transport, and the :class:`Transport` that combines them for a mesh member.

A mesh member needs three things from the page it runs in, and each can come
from somewhere else:

* a :class:`Channel` carries text to every *other* member of one named channel,
  in order, never back to its sender, like the browser's ``BroadcastChannel``;
* a :class:`PeerWatch` tells the member at once when a tab it follows closes or
  crashes, as Web Locks do (each member holds a lock named after itself; a
  follower queues for its leader's). Optional: without one, heartbeats decide;
* a :class:`PageLifecycle` reports what happens to the page (``pagehide``,
  ``pageshow``, ``freeze``, ``resume``, ``visibilitychange``). Optional: a
  worker has none.

:class:`Transport` owns what the pieces do together (going into the back/forward
cache closes the channel and releases the lock; coming back reopens both) and
speaks to the member through :class:`TransportEvents`. A new way to reach other
tabs is one new :class:`Channel` (or :class:`PeerWatch`) in one file; the
browser's pieces and the in-memory ones for CPython are the examples.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Collection
from typing import Any, Protocol

__all__ = [
    "Channel",
    "LifecycleEvents",
    "PageLifecycle",
    "PeerWatch",
    "Transport",
    "TransportEvents",
    "has_attribute",
    "lock_name",
]


def has_attribute(obj: Any, name: str) -> bool:
    """Whether ``obj.name`` exists and is not ``None``/``undefined`` (a JS getter that throws: no)."""
    try:
        return getattr(obj, name, None) is not None
    except Exception:
        return False


def lock_name(channel: str, node_id: str, scope: str = "") -> str:
    """The lock a member of scope digest ``scope`` (``""``: shared) holds on ``channel`` while it lives.

    The scope is part of the name, so a follower in one scope never watches (and
    is never woken by) the lock of another scope's tab that happens to share an ID.
    """
    return f"pyflowmesh:{channel}:{scope}:{node_id}" if scope else f"pyflowmesh:{channel}:{node_id}"


class Channel(ABC):
    """Carries text to the other members of one named channel.

    :meth:`open` may follow :meth:`close` again: the transport closes the channel
    while the page sits in the back/forward cache and reopens it when it returns.
    """

    @abstractmethod
    def open(self, name: str, receive: Callable[[Any], None]) -> None:
        """Join ``name``; call ``receive(data)`` from the event loop for whatever arrives until :meth:`close`.

        ``data`` may be anything another script posted: the member validates it.
        """

    @abstractmethod
    def post(self, data: str) -> None:
        """Deliver ``data`` to every other member of the channel, in order (never to this one)."""

    @abstractmethod
    def close(self) -> None:
        """Leave the channel; nothing reaches ``receive`` any more, even what was already on its way. Idempotent."""

    def skip_addressed(self, head: str, me: str, pattern: str) -> None:  # noqa: B027 (optional, not abstract)
        """From now on, the member would drop unread text addressed to another tab: it may go unreceived.

        That is text that starts with ``head`` and matches ``pattern`` (a regular expression
        that reads the same in Python and JavaScript) right after it, with a first group other
        than ``me`` (``pyflowmesh.core.node.AddressRule``). Optional: a channel for which
        receiving costs little ignores it, as this default does; one that skips counts what it
        skipped (:meth:`take_skipped`). Stays across :meth:`close` and :meth:`open`.
        """

    def take_skipped(self) -> int:
        """How many messages it skipped (:meth:`skip_addressed`) since it was last asked; 0 if it never skips."""
        return 0


class PeerWatch(ABC):
    """Learns at once that a tab is gone, through a lock each member holds while it lives."""

    @abstractmethod
    def open(self, channel: str, gone: Callable[[str], None]) -> None:
        """Serve the member on ``channel``; call ``gone(node_id)`` from the event loop when a watched tab goes."""

    @abstractmethod
    def hold(self, node_id: str, scope: str) -> None:
        """Hold the lock of ``node_id`` in scope digest ``scope`` (letting go of the one held before)."""

    @abstractmethod
    def release(self) -> None:
        """Let go of this member's lock (its watchers learn it is gone). Harmless when none is held."""

    @abstractmethod
    def watch(self, node_id: str, scope: str) -> None:
        """Report ``gone(node_id)`` once the lock of ``node_id`` in ``scope`` is free (at once if nobody holds it).

        Watches add up: each lasts until reported or :meth:`unwatch` ed.
        """

    @abstractmethod
    def unwatch(self, node_id: str | None = None) -> None:
        """Stop watching ``node_id`` (``None``: every tab). Harmless when not watching it."""

    @abstractmethod
    def close(self) -> None:
        """Stop watching, release the lock, free everything. Idempotent."""


class LifecycleEvents(Protocol):
    """What a :class:`PageLifecycle` reports: the page's own events, as the browser names them."""

    def visibility(self, hidden: bool) -> None:
        """``visibilitychange``: the page became hidden (its timers may be throttled) or visible."""

    def freeze(self) -> None:
        """``freeze``: the page is about to be frozen (no timers, no messages until ``resume``)."""

    def resume(self) -> None:
        """``resume``: the page was thawed."""

    def pagehide(self, persisted: bool) -> None:
        """``pagehide``: the page goes away, or into the back/forward cache (``persisted``)."""

    def pageshow(self, persisted: bool) -> None:
        """``pageshow``: the page is shown, back from the back/forward cache when ``persisted``."""


class PageLifecycle(ABC):
    """The events of the page a member runs in. A page that has none (a worker) has no lifecycle."""

    @abstractmethod
    def open(self, events: LifecycleEvents) -> None:
        """Report to ``events`` until :meth:`close`; a page hidden already is reported hidden at once."""

    @abstractmethod
    def close(self) -> None:
        """Stop reporting and free everything. Idempotent."""


class TransportEvents(Protocol):
    """What a transport tells its mesh member. Every method is called from the event loop only."""

    def message(self, data: Any) -> None:
        """Something arrived on the channel (maybe not ours: the member validates it)."""

    def peer_gone(self, node_id: str) -> None:
        """The watched tab ``node_id`` closed or crashed."""

    def visibility(self, hidden: bool) -> None:
        """The page became hidden or visible."""

    def frozen(self, frozen: bool) -> None:
        """The page is being frozen or cached (a leader hands over), or was thawed or restored (rejoin)."""

    def leaving(self) -> None:
        """The page is going away (``pagehide``): leave the mesh now, while messages can still be posted."""


class Transport:
    """A mesh member's connection to the other tabs: a channel, and optionally a peer watch and a page lifecycle.

    One transport serves one member (``FlowMesh`` opens it). What the pieces do
    together lives here, so every combination behaves alike:

    * ``pagehide`` makes the member leave (a ``Bye``: a successor is elected at once),
      unless the page goes into the back/forward cache (``persisted``): then it hands
      over as a frozen page does, stops watching, releases its lock and closes its
      channel (in Chromium a message reaching an open ``BroadcastChannel`` evicts a
      cached page), and rejoins on ``resume`` or ``pageshow``, whichever comes first;
    * ``freeze`` makes a leader hand over and ``resume`` makes the member rejoin;
    * ``visibilitychange`` tells the member its timers may be throttled;
    * the lock is held under the member's ID and scope, and moves when either changes.

    Args:
        channel: carries the messages.
        peers: reveals closed or crashed tabs at once; ``None``: heartbeats alone decide.
        lifecycle: the page's events; ``None`` where there is no page (a worker): a
            closing tab is then noticed by its lock or its silence, not by its ``Bye``.
    """

    def __init__(
        self, channel: Channel, peers: PeerWatch | None = None, lifecycle: PageLifecycle | None = None
    ) -> None:
        self.channel = channel
        self.peers = peers
        self.lifecycle = lifecycle
        self.sent = 0  # messages posted on the channel
        self._events: TransportEvents | None = None
        self._name = ""
        self._node_id = ""
        self._scope = ""
        self._watching: frozenset[str] = frozenset()
        self._open = False
        self._cached = False  # in the back/forward cache: no channel, no lock

    def __repr__(self) -> str:
        pieces = ", ".join(type(piece).__name__ for piece in (self.channel, self.peers, self.lifecycle) if piece)
        return f"<Transport {pieces}>"

    @property
    def live_proxies(self) -> int:
        """How many JS proxies the pieces hold now (0 after :meth:`close`; pieces without any count 0)."""
        return sum(getattr(piece, "live_proxies", 0) for piece in (self.channel, self.peers, self.lifecycle))

    # --- what the member calls ------------------------------------------------------------

    def open(self, channel: str, node_id: str, events: TransportEvents) -> None:
        """Join ``channel`` as ``node_id``; report to ``events`` until :meth:`close`.

        Raises:
            RuntimeError: this transport served a member already (make one per member).
        """
        if self._events is not None:
            raise RuntimeError("a Transport serves one mesh member; make one for each")
        self._events, self._name, self._node_id, self._open = events, channel, node_id, True
        self.channel.open(channel, self._on_message)
        if self.lifecycle is not None:
            self.lifecycle.open(_PageEvents(self))
        if self.peers is not None:
            self.peers.open(channel, self._on_gone)
            self.peers.hold(node_id, self._scope)

    def post(self, data: str) -> None:
        """Deliver ``data`` to every other member of the channel (dropped while the page is cached or closed)."""
        if self._open and not self._cached:
            self.sent += 1
            self.channel.post(data)

    def watch(self, node_ids: Collection[str]) -> None:
        """Report ``peer_gone(node_id)`` when one of these tabs disappears; stop watching any other."""
        wanted = frozenset(node_ids)
        if wanted == self._watching or not self._open or self._cached:  # cached: no lock, no watch
            return
        before, self._watching = self._watching, wanted
        if self.peers is None:
            return
        for node_id in before - wanted:
            self.peers.unwatch(node_id)
        for node_id in sorted(wanted - before):
            self.peers.watch(node_id, self._scope)

    def rename(self, node_id: str) -> None:
        """The member took a new ID (another tab had its own): its lock moves to ``node_id``."""
        self._node_id = node_id
        if self._open and not self._cached and self.peers is not None:
            self.peers.release()
            self.peers.hold(node_id, self._scope)

    def set_scope(self, scope: str) -> None:
        """The member belongs to the scope of digest ``scope`` (``""``: shared) from now on.

        Its lock, and the locks it watches, are named in that scope only, so a tab of
        one scope never takes a tab of another for its leader. ``FlowMesh`` calls it
        before :meth:`open` and on every scope switch; it also stops watching.
        """
        if scope == self._scope:
            return
        self._scope = scope
        if not self._open:
            return  # open() takes the lock under this scope
        self._unwatch()
        if self.peers is not None and not self._cached:
            self.peers.release()
            self.peers.hold(self._node_id, scope)

    def skip_addressed(self, head: str, me: str, pattern: str) -> None:
        """The member's rule for what it drops unread as addressed elsewhere (:meth:`Channel.skip_addressed`)."""
        self.channel.skip_addressed(head, me, pattern)

    def take_skipped(self) -> int:
        """Messages the channel skipped by that rule since the last call (the member counts them received)."""
        return self.channel.take_skipped()

    def close(self) -> None:
        """Leave the channel and release everything (listeners, proxies, the lock). Idempotent."""
        if not self._open:
            return
        self._open = False
        self._unwatch()
        if self.lifecycle is not None:
            self.lifecycle.close()
        self.channel.close()
        if self.peers is not None:
            self.peers.close()

    # --- what the pieces report -----------------------------------------------------------

    def _unwatch(self) -> None:
        self._watching = frozenset()
        if self.peers is not None:
            self.peers.unwatch()

    def _on_message(self, data: Any) -> None:
        if self._open and self._events is not None:
            self._events.message(data)

    def _on_gone(self, node_id: str) -> None:
        if self._open and node_id in self._watching and self._events is not None:
            self._events.peer_gone(node_id)

    def _on_visibility(self, hidden: bool) -> None:
        if self._open and self._events is not None:
            self._events.visibility(hidden)

    def _on_freeze(self) -> None:
        if self._open and not self._cached and self._events is not None:  # cached: it handed over already
            self._events.frozen(True)

    def _on_resume(self) -> None:
        if self._cached:  # Chromium resumes a cached page just before its pageshow
            self._come_back()
        elif self._open and self._events is not None:
            self._events.frozen(False)

    def _on_pagehide(self, persisted: bool) -> None:
        if not self._open or self._events is None:
            return
        if not persisted:
            self._events.leaving()
            return
        # Into the back/forward cache: the page may come back. Hand over like a frozen page
        # (a leader's Bye goes out now, while the channel is open), let go of the lock so that
        # watchers learn it at once, and close the channel: any message reaching an open
        # BroadcastChannel evicts a cached page (Chromium: "broadcastchannel-message").
        self._events.frozen(True)
        self._cached = True
        self._unwatch()
        if self.peers is not None:
            self.peers.release()
        self.channel.close()

    def _on_pageshow(self, persisted: bool) -> None:
        if persisted:
            self._come_back()

    def _come_back(self) -> None:
        """Back from the back/forward cache (``resume`` or ``pageshow``, whichever comes first)."""
        if not self._open or not self._cached or self._events is None:
            return
        self._cached = False
        self.channel.open(self._name, self._on_message)
        if self.peers is not None:
            self.peers.hold(self._node_id, self._scope)
        self._events.frozen(False)  # rejoins: asks the mesh who leads now


class _PageEvents:
    """The transport's side of :class:`LifecycleEvents` (kept apart, so they are no public methods of it)."""

    def __init__(self, transport: Transport) -> None:
        self.visibility = transport._on_visibility
        self.freeze = transport._on_freeze
        self.resume = transport._on_resume
        self.pagehide = transport._on_pagehide
        self.pageshow = transport._on_pageshow
