"""One tab's mesh member as a sans-I/O state machine (the model is h11).

``MeshNode`` takes inputs, each with the current time in milliseconds on the
tab's own monotonic clock: raw channel data (:meth:`receive`), the passing of a
deadline (:meth:`tick`), executes and call outcomes, page lifecycle. It returns
nothing and performs no I/O: it queues :mod:`~pyflowmesh.core.effects` that the caller
drains with :meth:`take_effects` and carries out, and it says when it next needs
a tick (:meth:`next_deadline`). It never imports ``js`` or ``asyncio``, so the same
code runs in a browser tab, under the asyncio runtime in CPython, and in the
deterministic simulator with hundreds of tabs in virtual time.
"""

from __future__ import annotations

import secrets
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from ..errors import MeshDisposedError
from .backoff import SharedBackoff
from .cache import SharedCache
from .claims import ClaimBook
from .config import MeshConfig
from .effects import Effect, LeaderChanged, Renamed, Send, WatchPeer
from .election import BullyElection, Role
from .executes import MIN_RECORDS, RECORDS_PER_ENTRY, Executes
from .pending import Phase
from .port import Port
from .stats import MeshStats
from .streams import Streams
from .values import check_flow_key, is_text
from .wire import Bye, Hello, Message, ProtocolError, SyncFailure, decode, encode, scope_digest

__all__ = ["MeshNode", "MAX_NODE_ID"]

MAX_NODE_ID = 128


def _random_suffix(node_id: str) -> str:
    """A new ID for a tab whose ID another tab uses: the old one plus a random suffix.

    The suffix makes it greater than the old one, so a renamed leader's followers take it.
    """
    return f"{node_id[: MAX_NODE_ID - 7]}~{secrets.token_hex(3)}"


def _check_node_id(node_id: Any) -> str:
    if not isinstance(node_id, str) or not node_id or len(node_id) > MAX_NODE_ID or not is_text(node_id):
        raise ValueError(f"node_id must be a non-empty str of at most {MAX_NODE_ID} characters, got {node_id!r}")
    return node_id


class MeshNode:
    """The protocol state of one tab. Every input takes ``now`` (ms); outputs are queued effects.

    Args:
        node_id: this tab's ID in the election.
        config: the mesh options.
        wall_clock: the wall clock in ms (``Date.now()``, ``time.time() * 1000``), shared by
            the tabs of one browser. With it, ages of shared results include the time a
            message spent in transit (or in a frozen tab's queue), and requests whose
            sender stopped waiting are not served. Without it, transit counts as 0.
        new_id: gives a new ID when another tab is found using this one (default: the
            old ID with a random suffix).

    No input raises except the documented errors of a call given bad data
    (``execute``, ``share_result``): anything unexpected inside is counted in
    ``stats.internal_errors`` and fails only the waiters it concerns.
    """

    def __init__(
        self,
        node_id: str,
        config: MeshConfig,
        *,
        wall_clock: Callable[[], float] | None = None,
        new_id: Callable[[str], str] | None = None,
    ) -> None:
        self.node_id = _check_node_id(node_id)
        self.config = config
        # What every message of this member carries, and every message it accepts must carry.
        self.scope_digest = scope_digest(config.channel, config.scope)
        self.stats = MeshStats()
        self.cache = SharedCache(config.stale_time, config.max_entries)
        self._wall_clock = wall_clock
        self._former_ids: tuple[str, ...] = ()  # IDs this tab had before renames (at most 4)
        self.last_internal_error: BaseException | None = None  # the latest caught (see internal_error)
        self._new_id = new_id or _random_suffix
        self._effects: list[Effect] = []
        self._left = False
        self._election: BullyElection | None = None
        if config.strategy == "leader-follower":
            self._election = BullyElection(node_id, config, self.stats, self.send, self._leader_changed)
        records = max(MIN_RECORDS, RECORDS_PER_ENTRY * config.max_entries)
        self.backoff = SharedBackoff(config, records)
        self.claims = ClaimBook(records)
        port = Port(stats=self.stats, send=self.send, emit=self.emit, wall=self.wall, me=lambda: self.node_id,
                    is_me=self.is_me, role=lambda: self.role, leader=lambda: self.leader,
                    internal_error=self.internal_error)
        self.executes = Executes(port, config, self.cache, self.backoff, self.claims)
        self.streams = Streams(port, config)

    # --- state -------------------------------------------------------------------------

    @property
    def role(self) -> Role:
        if self._left:
            return Role.LEFT
        return self._election.role if self._election else Role.PEER

    @property
    def leader(self) -> str | None:
        """The leader's node ID as this tab knows it (``None`` peer-to-peer or between leaders)."""
        return self._election.leader if self._election and not self._left else None

    @property
    def is_leader(self) -> bool:
        return self.role is Role.LEADER

    @property
    def term(self) -> int:
        return self._election.term if self._election else 0

    @property
    def left(self) -> bool:
        return self._left

    def backoffs(self, now: float) -> list[SyncFailure]:
        """The shared back-offs this tab honours at ``now`` (what a joiner would be told)."""
        return self.backoff.snapshot(now)

    def pending_keys(self) -> list[str]:
        """The cache keys this tab works on (for its own executes or for other tabs), in no order."""
        return list(self.executes.table.by_key)

    def phase(self, key: str) -> Phase | None:
        """The phase of this tab's work on cache key ``key`` (``None``: it works on no such key)."""
        pending = self.executes.table.by_key.get(key)
        return None if pending is None else pending.phase

    def next_deadline(self) -> float | None:
        """When :meth:`tick` must next be called, or ``None`` if nothing is scheduled."""
        if self._left:
            return None
        soonest = min(self.executes.deadline(), self.streams.deadline())
        if self._election is not None:
            soonest = min(soonest, self._election.deadline())
        return None if soonest == float("inf") else soonest

    @property
    def queued_effects(self) -> int:
        """How many effects wait for :meth:`take_effects`."""
        return len(self._effects)

    def take_effects(self) -> list[Effect]:
        """The effects queued since the last call, in order; the queue is emptied."""
        effects, self._effects = self._effects, []
        return effects

    # --- inputs ------------------------------------------------------------------------

    def start(self, now: float) -> None:
        """Join the mesh."""
        with self._guard():
            if self._election is not None:
                self._election.start(now)
            else:
                self.send(Hello(src=self.node_id))

    def receive(self, raw: Any, now: float) -> None:
        """Take whatever arrived on the channel. Invalid data is counted and dropped, never raised."""
        if self._left:
            return
        try:
            message = decode(raw, self.config.max_message_bytes, self.scope_digest)
        except ProtocolError as error:
            if error.reason == "scope":
                self.stats.other_scope += 1  # another scope's mesh on this channel: not ours, not bad
            else:
                self.stats.drop(error.reason)
            return
        except Exception as error:  # the decoder's own bug: the message is dropped all the same
            self.internal_error(error)
            self.stats.drop("undecodable")
            return
        self.handle(message, now)

    def handle(self, message: Message, now: float) -> None:
        """Take one decoded message."""
        if self._left:
            return
        with self._guard(getattr(message, "key", None)):
            if message.src == self.node_id:
                self._id_taken(now)  # a BroadcastChannel never echoes: another tab has our ID
                return
            self.stats.received += 1
            if getattr(message, "dst", self.node_id) != self.node_id:
                return
            self._wake(now)
            if self._election is not None:
                self._election.on_message(message, now)
            self.executes.on_message(message, now)
            self.streams.on_message(message, now)

    def tick(self, now: float) -> None:
        """A deadline passed (calling it early or late is harmless)."""
        if self._left:
            return
        with self._guard():
            self._wake(now)
            if self._election is not None:
                self._election.tick(now)
            self.executes.tick(now)
            self.streams.tick(now)

    def peer_gone(self, node_id: str, now: float) -> None:
        """The browser reports that tab ``node_id`` is gone (its Web Lock was released)."""
        if self._left:
            return
        with self._guard():
            self._wake(now)
            if self._election is not None:
                self._election.on_peer_gone(node_id, now)
            self.executes.on_peer_gone(node_id, now)
            self.streams.on_peer_gone(node_id, now)

    def set_hidden(self, hidden: bool, now: float) -> None:
        """The page became hidden or visible (a hidden page's timers may be throttled)."""
        if self._left:
            return
        with self._guard():
            self._wake(now)
            if self._election is not None:
                self._election.set_hidden(hidden, now)
            self.streams.set_hidden(hidden, now)

    def set_frozen(self, frozen: bool, now: float) -> None:
        """The page is being frozen or put in the back/forward cache, or it came back.

        Going away, a member says ``Bye`` (a leader's followers elect a successor at
        once, claims it held are taken over); back, it rejoins with ``Hello``.
        """
        if self._left:
            return
        with self._guard():
            if frozen:
                self.streams.suspend(now)
                was_leader = self.is_leader
                if self._election is not None:
                    self._election.suspend(now)
                if was_leader or self._election is None:
                    self.send(Bye(src=self.node_id, term=self.term))
            elif self._election is not None:
                self._election.resume(now)
                self.streams.resume(now)
            else:
                self.send(Hello(src=self.node_id))
                self.streams.resume(now)

    def register_flow(self, flow: str) -> None:
        """This tab can run ``flow``: a leader serves requests only for flows it has.

        Raises:
            TypeError, ValueError: ``flow`` is not a non-empty str that UTF-8 can carry.
        """
        self.executes.registered.add(check_flow_key(flow))

    def submit(self, flow: str, args: tuple[Any, ...], now: float) -> int:
        """Start an execute of a registered flow; its waiter ID, whose outcome comes as ``Resolve``/``Reject``.

        Raises (before any state changes):
            MeshDisposedError: the member left.
            LookupError: ``flow`` is not registered.
            TypeError: the arguments are not JSON data (``MessageTooLarge``, a ``TypeError``
                too, when a request carrying them would exceed ``max_message_bytes``).
        """
        self._ensure_open()
        if flow not in self.executes.registered:
            raise LookupError(f"flow {flow!r} is not registered in this tab")
        with self._guard():
            self._wake(now)
        return self.executes.submit(flow, tuple(args), now)

    # --- streams (core/streams.py) ---------------------------------------------------------

    def register_stream(self, key: str, grace: float = 5000.0) -> None:
        """This tab can run ``key``'s source, kept open ``grace`` ms after the last listener.

        Raises:
            TypeError, ValueError: a bad key or grace, or too many streams registered.
        """
        self.streams.register(key, grace)

    def listen(self, key: str, now: float) -> None:
        """This tab listens to stream ``key``: ``Deliver`` effects bring its events, ``StreamChanged`` its status.

        Raises (before any state changes):
            MeshDisposedError: the member left.
            LookupError: ``key`` is not registered.
        """
        self._ensure_open()
        if key not in self.streams.registered:
            raise LookupError(f"stream {key!r} is not registered in this tab")
        with self._guard():
            self._wake(now)
            self.streams.listen(key, now)

    def unlisten(self, key: str, now: float) -> None:
        """This tab stops listening to stream ``key``."""
        if not self._left:
            with self._guard():
                self.streams.unlisten(key, now)

    def source_event(self, run: int, event_id: Any, data: Any, now: float) -> None:
        """The source run ``run`` (an ``OpenSource``) yielded ``(event_id, data)``; bad ones fail the run."""
        if not self._left:
            with self._guard():
                self._wake(now)
                self.streams.source_event(run, event_id, data, now)

    def source_failed(self, run: int, error: BaseException, now: float, back_off: bool = True) -> None:
        """The source run ``run`` raised ``error``; ``back_off=False`` for errors a retry cannot fix."""
        if not self._left:
            with self._guard():
                self._wake(now)
                self.streams.source_failed(run, error, now, back_off)

    def source_ended(self, run: int, now: float) -> None:
        """The source run ``run`` ended by itself (the server closed the stream)."""
        if not self._left:
            with self._guard():
                self._wake(now)
                self.streams.source_ended(run, now)

    def cancel(self, waiter: int, now: float) -> None:
        """The caller of execute ``waiter`` stopped waiting: it gets no outcome, and holds nothing."""
        if not self._left:
            with self._guard():
                self.executes.cancel(waiter, now)

    def call_succeeded(self, call_id: int, value: Any, now: float) -> None:
        """A ``StartCall`` returned ``value`` (a result that is not JSON data fails the call, without back-off)."""
        if not self._left:
            with self._guard():
                self._wake(now)
                self.executes.call_succeeded(call_id, value, now)

    def call_failed(self, call_id: int, error: BaseException, now: float, back_off: bool = True) -> None:
        """A ``StartCall`` raised ``error``; ``back_off=False`` for errors a retry cannot fix."""
        if not self._left:
            with self._guard():
                self._wake(now)
                self.executes.call_failed(call_id, error, now, back_off)

    def share_result(self, key: str, value: Any, now: float) -> None:
        """Put ``value`` in every tab's cache under ``key``.

        Raises (before any state changes):
            TypeError: ``value`` is not JSON data, or does not fit in one message (``MessageTooLarge``).
        """
        self._ensure_open()
        with self._guard():
            self._wake(now)
        self.executes.share(key, value, now)

    def get_cached(self, key: str, now: float) -> Any:
        """A fresh copy of the cached value for ``key``, or ``None``."""
        entry = self.cache.get(key, now)
        return None if entry is None else entry.value

    def invalidate(self, key: str | None, now: float) -> None:
        """Drop ``key`` (or everything) from every tab's cache."""
        self._ensure_open()
        self.executes.check_invalidate(key)  # TypeError before anything changes
        with self._guard():
            self.executes.invalidate(key, now)

    def leave(self, now: float, error: BaseException | None = None) -> None:
        """Leave the mesh: say ``Bye`` so a successor is elected at once, fail local waiters.

        ``error`` is what the waiters get (default: ``MeshDisposedError``; a scope
        switch passes ``ScopeChangedError``).
        """
        if self._left:
            return
        with self._guard():
            self.streams.leave(now)
            self.send(Bye(src=self.node_id, term=self.term))
            if self._election is not None:
                was_leader = self._election.role is Role.LEADER
                self._election.leave()
                if was_leader or self._election.leader is not None:
                    self.emit(LeaderChanged(None, False))
        self.executes.abandon_all(error or MeshDisposedError("the mesh member was disposed while this execute waited"))
        self.emit(WatchPeer(None))
        self._left = True

    # --- used by the components ---------------------------------------------------------

    def send(self, message: Message) -> int:
        """Encode and queue ``message``; its size in bytes, or 0 if it exceeds ``max_message_bytes`` (not sent)."""
        data = encode(message, self.scope_digest)
        size = len(data) if data.isascii() else len(data.encode())
        if size > self.config.max_message_bytes:
            self.stats.too_large += 1
            return 0
        self.stats.sent += 1
        self._effects.append(Send(data, message))
        return size

    def emit(self, effect: Effect) -> None:
        self._effects.append(effect)

    def is_me(self, node_id: str) -> bool:
        """Whether ``node_id`` is this tab's ID, or one it had before it renamed itself."""
        return node_id == self.node_id or node_id in self._former_ids

    def wall(self) -> float | None:
        """The wall clock in ms, if the runtime gave one."""
        return None if self._wall_clock is None else float(self._wall_clock())

    def internal_error(self, error: BaseException) -> None:
        """Count an unexpected exception caught inside an input; the runtime logs ``last_internal_error``."""
        self.stats.internal_errors += 1
        self.last_internal_error = error

    @contextmanager
    def _guard(self, key: Any = None) -> Iterator[None]:
        """Catch anything unexpected inside an input: count it, fail the waiters of ``key`` (if any)."""
        try:
            yield
        except Exception as error:
            self.internal_error(error)
            if isinstance(key, str):
                self.executes.fail_key(key, error)

    def _id_taken(self, now: float) -> None:
        """Another tab uses our ID: take a new one, so that the two can never be confused.

        Both tabs hear each other, so both rename; a renamed leader announces itself
        under its new ID, which is greater than the old, so its followers keep it.
        """
        self.stats.drop("own-id")
        self.stats.renamed += 1
        old = self.node_id
        new = _check_node_id(self._new_id(old))
        self.node_id = new
        self._former_ids = (*self._former_ids[-3:], old)  # what it produced under them is still its own
        self.emit(Renamed(new))
        if self._election is not None:
            self._election.rename(new, now)
        self.executes.on_renamed(now)

    def _leader_changed(self, leader: str | None, now: float) -> None:
        self.emit(LeaderChanged(leader, leader == self.node_id))
        self.emit(WatchPeer(leader if leader not in (None, self.node_id) else None))
        self.executes.on_leader_change(leader, now)
        self.streams.on_leader_change(leader, now)

    def _wake(self, now: float) -> None:
        if self._election is not None:
            self._election.check_sleep(now)

    def _ensure_open(self) -> None:
        if self._left:
            raise MeshDisposedError("this mesh member was disposed")
