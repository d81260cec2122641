"""One tab's mesh member as a sans-I/O state machine (the model is h11).

``MeshNode`` takes inputs, each with the current time in milliseconds on the
tab's own monotonic clock: raw channel data (:meth:`receive`), the passing of a
deadline (:meth:`tick`), executes and call outcomes, page lifecycle. It returns
nothing and performs no I/O: it queues :mod:`~pyflowmesh.effects` that the caller
drains with :meth:`take_effects` and carries out, and it says when it next needs
a tick (:meth:`next_deadline`). It never imports ``js`` or ``asyncio``, so the same
code runs in a browser tab, under the asyncio runtime in CPython, and in the
deterministic simulator with hundreds of tabs in virtual time.
"""

from __future__ import annotations

from typing import Any

from .cache import SharedCache
from .config import MeshConfig
from .effects import Effect, LeaderChanged, Send, WatchPeer
from .election import BullyElection, Role
from .errors import MeshDisposedError
from .flows import FlowCoordinator, MessageTooLarge
from .protocol import Bye, Hello, Message, ProtocolError, decode, encode, scope_digest
from .stats import MeshStats

__all__ = ["MeshNode"]


class MeshNode:
    """The protocol state of one tab. Every input takes ``now`` (ms); outputs are queued effects."""

    def __init__(self, node_id: str, config: MeshConfig) -> None:
        if not isinstance(node_id, str) or not node_id or len(node_id) > 128:
            raise ValueError(f"node_id must be a non-empty str of at most 128 characters, got {node_id!r}")
        self.node_id = node_id
        self.config = config
        # What every message of this member carries, and every message it accepts must carry.
        self.scope_digest = scope_digest(config.channel, config.scope)
        self.stats = MeshStats()
        self.cache = SharedCache(config.stale_time, config.max_entries)
        self._effects: list[Effect] = []
        self._left = False
        self._election: BullyElection | None = None
        if config.strategy == "leader-follower":
            self._election = BullyElection(node_id, config, self.stats, self.send, self._leader_changed)
        self.flows = FlowCoordinator(self)

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

    def next_deadline(self) -> float | None:
        """When :meth:`tick` must next be called, or ``None`` if nothing is scheduled."""
        if self._left:
            return None
        soonest = self.flows.deadline()
        if self._election is not None:
            soonest = min(soonest, self._election.deadline())
        return None if soonest == float("inf") else soonest

    def take_effects(self) -> list[Effect]:
        """The effects queued since the last call, in order; the queue is emptied."""
        effects, self._effects = self._effects, []
        return effects

    # --- inputs ------------------------------------------------------------------------

    def start(self, now: float) -> None:
        """Join the mesh."""
        if self._election is not None:
            self._election.start(now)
        else:
            self.send(Hello(self.node_id))

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
        self.handle(message, now)

    def handle(self, message: Message, now: float) -> None:
        """Take one decoded message."""
        if self._left:
            return
        if message.src == self.node_id:
            self.stats.drop("own-id")  # another member claims our ID: never let it steer us
            return
        self.stats.received += 1
        if getattr(message, "dst", self.node_id) != self.node_id:
            return
        self._wake(now)
        if self._election is not None:
            self._election.on_message(message, now)
        self.flows.on_message(message, now)

    def tick(self, now: float) -> None:
        """A deadline passed (calling it early or late is harmless)."""
        if self._left:
            return
        self._wake(now)
        if self._election is not None:
            self._election.tick(now)
        self.flows.tick(now)

    def peer_gone(self, node_id: str, now: float) -> None:
        """The browser reports that tab ``node_id`` is gone (its Web Lock was released)."""
        if self._left:
            return
        self._wake(now)
        if self._election is not None:
            self._election.on_peer_gone(node_id, now)
        self.flows.on_peer_gone(node_id, now)

    def set_hidden(self, hidden: bool, now: float) -> None:
        """The page became hidden or visible (a hidden page's timers may be throttled)."""
        if self._left:
            return
        self._wake(now)
        if self._election is not None:
            self._election.set_hidden(hidden, now)

    def set_frozen(self, frozen: bool, now: float) -> None:
        """The page is being frozen (``freeze``) or was thawed (``resume``).

        Freezing, a member says ``Bye`` (a leader's followers elect a successor at
        once, claims it held are taken over); thawed, it rejoins with ``Hello``.
        """
        if self._left:
            return
        if frozen:
            was_leader = self.is_leader
            if self._election is not None:
                self._election.suspend(now)
            if was_leader or self._election is None:
                self.send(Bye(self.node_id, self.term))
        elif self._election is not None:
            self._election.resume(now)
        else:
            self.send(Hello(self.node_id))

    def register_flow(self, flow: str) -> None:
        """This tab can run ``flow``: a leader serves requests only for flows it has."""
        self.flows.flows.add(flow)

    def execute(self, flow: str, args: tuple[Any, ...], now: float) -> int:
        """Start an execute of a registered flow; the outcome comes as ``Resolve``/``Reject`` for the waiter."""
        self._ensure_open()
        if flow not in self.flows.flows:
            raise LookupError(f"flow {flow!r} is not registered in this tab")
        self._wake(now)
        return self.flows.execute(flow, tuple(args), now)

    def call_succeeded(self, call_id: int, value: Any, now: float) -> None:
        """A ``StartCall`` returned ``value`` (already checked to be JSON data)."""
        if not self._left:
            self._wake(now)
            self.flows.call_succeeded(call_id, value, now)

    def call_failed(self, call_id: int, error: BaseException, now: float, back_off: bool = True) -> None:
        """A ``StartCall`` raised ``error``; ``back_off=False`` for errors a retry cannot fix."""
        if not self._left:
            self._wake(now)
            self.flows.call_failed(call_id, error, now, back_off)

    def share_result(self, key: str, value: Any, now: float) -> None:
        """Put ``value`` in every tab's cache under ``key`` (``TypeError`` if it is not JSON)."""
        self._ensure_open()
        self._wake(now)
        self.flows.share(key, value, now)

    def get_cached(self, key: str, now: float) -> Any:
        """The fresh cached value for ``key``, or ``None``."""
        entry = self.cache.get(key, now)
        return None if entry is None else entry.value

    def invalidate(self, key: str | None, now: float) -> None:
        """Drop ``key`` (or everything) from every tab's cache."""
        self._ensure_open()
        self.flows.invalidate(key, now)

    def leave(self, now: float, error: BaseException | None = None) -> None:
        """Leave the mesh: say ``Bye`` so a successor is elected at once, fail local waiters.

        ``error`` is what the waiters get (default: ``MeshDisposedError``; a scope
        switch passes ``ScopeChangedError``).
        """
        if self._left:
            return
        self.send(Bye(self.node_id, self.term))
        if self._election is not None:
            was_leader = self._election.role is Role.LEADER
            self._election.leave()
            if was_leader or self._election.leader is not None:
                self.emit(LeaderChanged(None, False))
        self.flows.abandon_all(error or MeshDisposedError("the mesh member was disposed while this execute waited"))
        self.emit(WatchPeer(None))
        self._left = True

    # --- used by the components ---------------------------------------------------------

    def send(self, message: Message) -> None:
        """Encode and queue ``message``; ``MessageTooLarge`` if it exceeds ``max_message_bytes``."""
        data = encode(message, self.scope_digest)
        if len(data) > self.config.max_message_bytes or len(data.encode()) > self.config.max_message_bytes:
            raise MessageTooLarge(
                f"a {message.TYPE} message of {len(data.encode())} bytes exceeds max_message_bytes "
                f"({self.config.max_message_bytes})"
            )
        self.stats.sent += 1
        self._effects.append(Send(data, message))

    def emit(self, effect: Effect) -> None:
        self._effects.append(effect)

    def _leader_changed(self, leader: str | None, now: float) -> None:
        self.emit(LeaderChanged(leader, leader == self.node_id))
        self.emit(WatchPeer(leader if leader not in (None, self.node_id) else None))
        self.flows.on_leader_change(leader, now)

    def _wake(self, now: float) -> None:
        if self._election is not None:
            self._election.check_sleep(now)

    def _ensure_open(self) -> None:
        if self._left:
            raise MeshDisposedError("this mesh member was disposed")
