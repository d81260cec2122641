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

import json
import os
import re
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from typing import Any, NamedTuple

from ..errors import MeshDisposedError
from .backoff import SharedBackoff
from .cache import SharedCache
from .claims import ClaimBook
from .config import MeshConfig
from .effects import Effect, LeaderChanged, MembersChanged, Renamed, Send, WatchPeers
from .election import BullyElection, Role
from .executes import MIN_RECORDS, RECORDS_PER_ENTRY, Executes
from .members import Member, Members
from .pending import Phase
from .policy import DEFAULT_POLICY, CallPolicy
from .port import Port
from .stats import MeshStats
from .streams import Streams
from .values import check_flow_key, is_text
from .wire import (
    MAX_MEMBERS,
    Alive,
    Bye,
    Coordinator,
    Heartbeat,
    Hello,
    Message,
    ProtocolError,
    SyncFailure,
    decode,
    encode,
    envelope_head,
    scope_digest,
)

__all__ = ["MeshNode", "MAX_NODE_ID", "AddressRule", "addressed_elsewhere"]

MAX_NODE_ID = 128


def _random_suffix(node_id: str) -> str:
    """A new ID for a tab whose ID another tab uses: the old one plus a random suffix.

    The suffix makes it greater than the old one, so a renamed leader's followers take it.
    """
    # os.urandom is what secrets.token_hex reads; importing secrets (and hashlib) costs Pyodide 10-20 ms
    return f"{node_id[: MAX_NODE_ID - 7]}~{os.urandom(3).hex()}"


# What follows the envelope's head in a message addressed to one tab, its ID (as JSON text) the
# group. Written to read the same in Python's re and in JavaScript (a channel may apply it
# before the member sees the message: AddressRule); linear time in both.
ADDRESSED_PATTERN = r'(?:request|accept|decline|withdraw|sync)","src":"(?:[^"\\]|\\.)*","dst":"((?:[^"\\]|\\.)*)"'
_ADDRESSED = re.compile(ADDRESSED_PATTERN)


class AddressRule(NamedTuple):
    """How to tell, unread, a message :meth:`MeshNode.receive` would drop as addressed to another tab.

    Text that starts with ``head`` and matches ``pattern`` right after it is addressed to
    the tab whose ID (as JSON text) is the match's first group; unless that is ``me``, the
    member drops it unread (:func:`addressed_elsewhere`). A channel may apply the rule
    before the member sees the message (``Channel.skip_addressed``): a request to the leader
    and its answer reach every tab, and in the browser each costs the tabs it is not for a
    call into Python.
    """

    head: str
    me: str
    pattern: str = ADDRESSED_PATTERN


def addressed_elsewhere(raw: Any, head: str, me: str) -> bool:
    """Whether ``raw`` is, in :func:`~.wire.encode`'s own layout, a message addressed to a tab other than
    ``me``: one that :meth:`MeshNode.handle` would drop unread.

    ``head`` is :func:`~.wire.envelope_head` of the member's scope; ``me`` its ID as JSON text writes it
    (:func:`_as_json_text`). Only text laid out exactly as this version encodes is recognised (a
    linear-time match of its head); anything else goes through the full decode, so a message can
    only be dropped here that the full path would drop too.
    """
    if not isinstance(raw, str) or not raw.startswith(head):
        return False
    match = _ADDRESSED.match(raw, len(head))
    return match is not None and match.group(1) != me


def _as_json_text(node_id: str) -> str:
    """``node_id`` as :func:`~.wire.encode` writes it between the quotes of a JSON string."""
    return json.dumps(node_id, ensure_ascii=False)[1:-1]


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
        locks: the driver carries out ``WatchPeers`` (Web Locks, or a model of them): the
            members then learn of this tab's end from its lock, and it never needs to
            say it is alive. Without, it posts ``Alive`` once a heartbeat when silent.

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
        locks: bool = False,
    ) -> None:
        self.node_id = _check_node_id(node_id)
        self.config = config
        # What every message of this member carries, and every message it accepts must carry.
        self.scope_digest = scope_digest(config.channel, config.scope)
        # What receive() recognises a message addressed to another tab by, computed once, not per message.
        self._head = envelope_head(self.scope_digest)
        self._me = _as_json_text(self.node_id)
        self.stats = MeshStats()
        self.cache = SharedCache(config.stale_time, config.max_entries)
        self._wall_clock = wall_clock
        self._former_ids: tuple[str, ...] = ()  # IDs this tab had before renames (at most 4)
        self.last_internal_error: BaseException | None = None  # the latest caught (see internal_error)
        self._new_id = new_id or _random_suffix
        self._effects: list[Effect] = []
        self._left = False
        self._clock = 0.0  # the time of the input being handled
        self._last_post = -float("inf")  # when this tab last posted
        self._hidden = False
        self.members = Members(config, self.stats, locks)
        self._view: tuple[Member, ...] = ()  # the members as last reported (MembersChanged)
        self._watched: frozenset[str] = frozenset()  # the tabs watched, as last asked (WatchPeers)
        self._settled: tuple[Any, ...] = ()  # what the members view and the watches were computed from
        self._election: BullyElection | None = None
        if config.strategy == "leader-follower":
            self._election = BullyElection(node_id, config, self.stats, self.send, self._leader_changed, self.members)
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

    @property
    def peers(self) -> int:
        """How many other live tabs this tab knows in the mesh."""
        return 0 if self._left else len(self.members)

    @property
    def successor(self) -> str | None:
        """Who takes over when the leader goes: named by the leader (a follower's view), or chosen (the leader's)."""
        if self._election is None or self._left:
            return None
        if self._election.role is Role.LEADER:
            return self.members.successor()
        return self._election.successor

    def member_list(self) -> tuple[Member, ...]:
        """Every live member this tab knows, itself included, highest ID first."""
        if self._left:
            return ()
        leader = self.leader
        others = "follower" if self._election is not None else "peer"
        me = Member(self.node_id, "leader" if self.is_leader else str(self.role), is_self=True)
        listed = [Member(node_id, "leader" if node_id == leader else others) for node_id in self.members.ids()]
        return tuple(sorted([me, *listed], key=lambda member: member.node_id, reverse=True))

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

    @property
    def address_rule(self) -> AddressRule:
        """The rule a channel may drop messages for other tabs by (it changes with a rename)."""
        return AddressRule(self._head, self._me)

    def next_deadline(self) -> float | None:
        """When :meth:`tick` must next be called, or ``None`` if nothing is scheduled."""
        if self._left:
            return None
        soonest = min(self.executes.deadline(), self._ping_due(), self.streams.deadline())
        if self._election is not None:
            soonest = min(soonest, self._election.deadline())
        if self._authority():
            soonest = min(soonest, self.members.deadline())
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
        with self._guard(now):
            if self._election is not None:
                self._election.start(now)
            else:
                self._say_hello()

    def receive(self, raw: Any, now: float) -> None:
        """Take whatever arrived on the channel. Invalid data is counted and dropped, never raised."""
        if self._left:
            return
        if addressed_elsewhere(raw, self._head, self._me):
            # Requests to the leader and its answers reach every tab: 2(n - 1) messages an execute
            # that n - 2 tabs would decode only to drop. A count, no decode.
            self.stats.received += 1
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
        with self._guard(now, getattr(message, "key", None)):
            if message.src == self.node_id:
                self._id_taken(now)  # a BroadcastChannel never echoes: another tab has our ID
                return
            self.stats.received += 1
            self._note_member(message, now)
            if getattr(message, "dst", self.node_id) != self.node_id:
                return
            self._wake(now)
            if self._election is not None:
                self._election.on_message(message, now)
                self._check_listed(message)
            self.executes.on_message(message, now)
            self.streams.on_message(message, now)

    def tick(self, now: float) -> None:
        """A deadline passed (calling it early or late is harmless)."""
        if self._left:
            return
        with self._guard(now):
            self._wake(now)
            if self._election is not None:
                self._election.tick(now)
            if self._authority():
                for gone in self.members.expire(now):
                    self.executes.on_peer_gone(gone, now)
                    self.streams.on_peer_gone(gone, now)
            if now >= self._ping_due():
                self._say_alive()
            self.executes.tick(now)
            self.streams.tick(now)

    def peer_gone(self, node_id: str, now: float) -> None:
        """The browser reports that tab ``node_id`` is gone (its Web Lock was released)."""
        if self._left:
            return
        with self._guard(now):
            self._wake(now)
            self._member_gone(node_id)
            if self._election is not None:
                self._election.on_peer_gone(node_id, now)
            self.executes.on_peer_gone(node_id, now)
            self.streams.on_peer_gone(node_id, now)

    def set_hidden(self, hidden: bool, now: float) -> None:
        """The page became hidden or visible (a hidden page's timers may be throttled)."""
        if self._left:
            return
        with self._guard(now):
            self._wake(now)
            changed, self._hidden = hidden != self._hidden, hidden
            if self._election is not None:
                self._election.set_hidden(hidden, now)
            if changed and self._ping_due() < float("inf"):
                # Whoever tracks this tab's silence allows a hidden tab longer: tell it now.
                self._say_alive()
            self.streams.set_hidden(hidden, now)

    def set_frozen(self, frozen: bool, now: float) -> None:
        """The page is being frozen or put in the back/forward cache, or it came back.

        Going away, a member says ``Bye`` (a leader's successor takes over at once,
        claims it held are taken over, every tab drops it from its members); back, it
        rejoins with ``Hello``.
        """
        if self._left:
            return
        with self._guard(now):
            if frozen:
                self.streams.suspend(now)
                successor = self.successor if self.is_leader else None
                if self._election is not None:
                    self._election.suspend(now)
                self.send(Bye(src=self.node_id, term=self.term, successor=successor))
                self.members.clear()  # what it knows goes stale while it sleeps; it asks again on thaw
            elif self._election is not None:
                self._election.resume(now)
                self.streams.resume(now)
            else:
                self._say_hello()
                self.streams.resume(now)

    def register_flow(self, flow: str, policy: CallPolicy | None = None) -> None:
        """This tab can run ``flow``, with ``policy`` (retries, timeout; one attempt by default).

        A leader serves requests only for flows it has. A tab waiting on another tab's
        call of ``flow`` waits as long as ``policy`` lets that call take.

        Raises:
            TypeError, ValueError: ``flow`` is not a non-empty str that UTF-8 can carry,
                or ``policy`` is not a :class:`~pyflowmesh.core.policy.CallPolicy`.
        """
        check_flow_key(flow)
        if policy is not None and not isinstance(policy, CallPolicy):
            raise TypeError(f"a flow's policy is a CallPolicy, got {type(policy).__name__}")
        self.executes.registered.add(flow)
        if policy is None or policy == DEFAULT_POLICY:
            self.executes.policies.pop(flow, None)
        else:
            self.executes.policies[flow] = policy

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
        with self._guard(now):
            self._wake(now)
        return self.executes.submit(flow, tuple(args), now)

    # --- streams (core/streams.py) ---------------------------------------------------------

    def register_stream(self, key: str, grace: float = 5000.0) -> None:
        """This tab can run ``key``'s source, kept open ``grace`` ms after the last listener.

        Raises:
            TypeError, ValueError: a bad key or grace, or too many streams registered.
        """
        self.streams.register(key, grace)

    def register_stream_family(self, prefix: str, grace: float = 5000.0) -> None:
        """This tab can run every stream whose key starts with ``prefix`` (polling: one per arguments).

        Raises:
            TypeError, ValueError: a bad prefix or grace, or too many families registered.
        """
        self.streams.register_family(prefix, grace)

    def listen(self, key: str, now: float) -> None:
        """This tab listens to stream ``key``: ``Deliver`` effects bring its events, ``StreamChanged`` its status.

        Raises (before any state changes):
            MeshDisposedError: the member left.
            LookupError: ``key`` is not registered.
        """
        self._ensure_open()
        if not self.streams.adopt(key):
            raise LookupError(f"stream {key!r} is not registered in this tab")
        with self._guard(now):
            self._wake(now)
            self.streams.listen(key, now)

    def unlisten(self, key: str, now: float) -> None:
        """This tab stops listening to stream ``key``."""
        if not self._left:
            with self._guard(now):
                self.streams.unlisten(key, now)

    def source_event(self, run: int, event_id: Any, data: Any, now: float) -> None:
        """The source run ``run`` (an ``OpenSource``) yielded ``(event_id, data)``; bad ones fail the run."""
        if not self._left:
            with self._guard(now):
                self._wake(now)
                self.streams.source_event(run, event_id, data, now)

    def source_failed(self, run: int, error: BaseException, now: float, back_off: bool = True) -> None:
        """The source run ``run`` raised ``error``; ``back_off=False`` for errors a retry cannot fix."""
        if not self._left:
            with self._guard(now):
                self._wake(now)
                self.streams.source_failed(run, error, now, back_off)

    def source_ended(self, run: int, now: float) -> None:
        """The source run ``run`` ended by itself (the server closed the stream)."""
        if not self._left:
            with self._guard(now):
                self._wake(now)
                self.streams.source_ended(run, now)

    def cancel(self, waiter: int, now: float) -> None:
        """The caller of execute ``waiter`` stopped waiting: it gets no outcome, and holds nothing."""
        if not self._left:
            with self._guard(now):
                self.executes.cancel(waiter, now)

    def call_succeeded(self, call_id: int, value: Any, now: float) -> None:
        """A ``StartCall`` returned ``value`` (a result that is not JSON data fails the call, without back-off)."""
        if not self._left:
            with self._guard(now):
                self._wake(now)
                self.executes.call_succeeded(call_id, value, now)

    def call_failed(self, call_id: int, error: BaseException, now: float, back_off: bool = True,
                    retry: bool = True) -> None:
        """A ``StartCall`` raised ``error``.

        ``back_off=False`` for errors no later call can fix (no shared back-off);
        ``retry=False`` for errors the flow's policy must not retry (its ``should_retry``
        said no): the call fails at once. Otherwise a flow with ``max_attempts`` left
        starts its next attempt after the policy's delay (``CallRetrying``, then a new
        ``StartCall``), and only the last failure reaches the waiting tabs.
        """
        if not self._left:
            with self._guard(now):
                self._wake(now)
                self.executes.call_failed(call_id, error, now, back_off, retry)

    def share_result(self, key: str, value: Any, now: float) -> None:
        """Put ``value`` in every tab's cache under ``key``.

        Raises (before any state changes):
            TypeError: ``value`` is not JSON data, or does not fit in one message (``MessageTooLarge``).
        """
        self._ensure_open()
        with self._guard(now):
            self._wake(now)
        self.executes.share(key, value, now)

    def share_error(self, key: str, error: BaseException, now: float) -> None:
        """Fail every tab's waiters of ``key`` with ``error`` and start its shared back-off.

        Raises (before any state changes):
            TypeError: ``error`` is not an exception, or ``key`` is not text.
        """
        self._ensure_open()
        with self._guard(now):
            self._wake(now)
        self.executes.share_error(key, error, now)

    def get_cached(self, key: str, now: float) -> Any:
        """A fresh copy of the cached value for ``key``, or ``None``."""
        entry = self.cache.get(key, now)
        return None if entry is None else entry.value

    def invalidate(self, key: str | None, now: float) -> None:
        """Drop ``key`` (or everything) from every tab's cache."""
        self._ensure_open()
        self.executes.check_invalidate(key)  # TypeError before anything changes
        with self._guard(now):
            self.executes.invalidate(key, now)

    def invalidate_flows(self, flows: Iterable[str], now: float) -> tuple[str, ...]:
        """A mutation succeeded: drop every key of ``flows`` (every argument variant) in every tab.

        Every tab (this one included) emits ``FlowsInvalidated`` so that what it shows of
        those flows is fetched again, and the mesh serves those refetches with one call:
        see :meth:`Executes.invalidate_flows`.

        Returns:
            The flows invalidated (checked, without repeats).

        Raises (before any state changes):
            TypeError, ValueError: not 1 to ``MAX_INVALIDATED_FLOWS`` flow keys; ``MessageTooLarge``.
        """
        self._ensure_open()
        checked = self.executes.check_flows(flows)
        with self._guard(now):
            self.executes.invalidate_flows(checked, now)
        return checked

    def leave(self, now: float, error: BaseException | None = None) -> None:
        """Leave the mesh: say ``Bye`` so a successor is elected at once, fail local waiters.

        ``error`` is what the waiters get (default: ``MeshDisposedError``; a scope
        switch passes ``ScopeChangedError``).
        """
        if self._left:
            return
        with self._guard(now):
            self.streams.leave(now)
            self.send(Bye(src=self.node_id, term=self.term, successor=self.successor if self.is_leader else None))
            if self._election is not None:
                was_leader = self._election.role is Role.LEADER
                self._election.leave()
                if was_leader or self._election.leader is not None:
                    self.emit(LeaderChanged(None, False))
        self.executes.abandon_all(error or MeshDisposedError("the mesh member was disposed while this execute waited"))
        self._left = True
        if self._watched:
            self.emit(WatchPeers(frozenset()))
        if self._view:
            self.emit(MembersChanged(()))

    # --- used by the components ---------------------------------------------------------

    def send(self, message: Message) -> int:
        """Encode and queue ``message``; its size in bytes, or 0 if it exceeds ``max_message_bytes`` (not sent)."""
        data = encode(message, self.scope_digest)
        size = len(data) if data.isascii() else len(data.encode())
        if size > self.config.max_message_bytes:
            self.stats.too_large += 1
            return 0
        self.stats.sent += 1
        if getattr(message, "dst", None) is None:  # a message to one tab: the others skip it unread
            self._last_post = self._clock
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
    def _guard(self, now: float, key: Any = None) -> Iterator[None]:
        """Around every input at ``now``: catch anything unexpected (count it, fail the waiters of
        ``key``, if any), then report what the input changed in the members and the watches."""
        self._clock = now
        try:
            yield
        except Exception as error:
            self.internal_error(error)
            if isinstance(key, str):
                self.executes.fail_key(key, error)
        try:
            self._settle(now)
        except Exception as error:
            self.internal_error(error)

    # --- members ------------------------------------------------------------------------

    def _authority(self) -> bool:
        """Whether this tab decides who is a member (the leader; every tab, peer-to-peer)."""
        return not self._left and self.role in (Role.LEADER, Role.PEER)

    def _note_member(self, message: Message, now: float) -> None:
        """What ``message`` says about its sender's membership."""
        members, src = self.members, message.src
        if isinstance(message, Bye):
            self._member_gone(src)
        elif isinstance(message, Hello):
            members.heard(src, now, locks=message.locks)
            if self.role is Role.PEER:  # no leader lists the members: each tells the joiner itself
                self._say_alive()
        elif isinstance(message, Alive):
            members.heard(src, now, locks=message.locks, hidden=message.hidden)
        else:  # it spoke, so it lives (a follower's list is its leader's at the next heartbeat)
            members.heard(src, now)

    def _member_gone(self, node_id: str) -> None:
        """``node_id`` left or its lock was released. A lost leader is the election's to drop: it may
        wait for the successor that leader named first."""
        if node_id != self.leader:
            self.members.gone(node_id)

    def _check_listed(self, message: Message) -> None:
        """A follower its leader does not list (the leader is new, or missed its Hello) says it is there."""
        if (isinstance(message, (Coordinator, Heartbeat)) and message.src == self.leader
                and self.role is Role.FOLLOWER and len(message.members) < MAX_MEMBERS
                and not any(entry.id == self.node_id for entry in message.members)):
            self._say_alive()

    def _say_alive(self) -> None:
        """Tell the members this tab is there, whether a Web Lock covers it, and whether it is hidden."""
        self.send(Alive(src=self.node_id, locks=self.members.locks, hidden=self._hidden))

    def _say_hello(self) -> None:
        """Ask the mesh, as a joiner does, and say whether a Web Lock covers this tab."""
        self.send(Hello(src=self.node_id, locks=self.members.locks))

    def _ping_due(self) -> float:
        """When this tab must say ``Alive`` (``inf``: a Web Lock, or its heartbeats, cover it)."""
        role = self.role
        if role is Role.FOLLOWER:
            assert self._election is not None
            covered = self.members.locks and self._election.leader_locks
        elif role is Role.PEER:
            covered = self.members.locks and self.members.all_locked()
        else:
            return float("inf")
        return float("inf") if covered else self._last_post + self.config.heartbeat

    def _watch_set(self) -> frozenset[str]:
        """The tabs whose end this tab must hear of from their Web Locks."""
        role, election, members = self.role, self._election, self.members
        if role in (Role.LEADER, Role.PEER):
            return frozenset(members.watched())
        if election is None:
            return frozenset()
        if role is Role.FOLLOWER and election.leader is not None and members.covered(election.leader):
            return frozenset({election.leader})
        if role is Role.JOINING and election.awaiting is not None and members.covered(election.awaiting):
            return frozenset({election.awaiting})  # its end cuts the wait for it short
        return frozenset()

    def _settle(self, now: float) -> None:
        """Tell the followers, the driver and the listeners what the input changed."""
        if self._left:
            return
        election = self._election
        if election is not None:
            election.relist(now)
        # Both depend on these only: most inputs change none of them.
        basis = (self.members.version, self.role, self.node_id, self.leader,
                 election.awaiting if election is not None else None)
        if basis == self._settled:
            return
        self._settled = basis
        view = self.member_list()
        if view != self._view:
            self._view = view
            self.emit(MembersChanged(view))
        watched = self._watch_set()
        if watched != self._watched:
            self._watched = watched
            self.emit(WatchPeers(watched))

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
        self._me = _as_json_text(new)
        self._former_ids = (*self._former_ids[-3:], old)  # what it produced under them is still its own
        self.emit(Renamed(new))
        if self._election is not None:
            self._election.rename(new, now)
        if not self.is_leader:  # (a leader announces itself) the members learn the new ID now, and
            # answer it as a joiner: its twin's messages, which named it, were taken for its own.
            self._say_hello()
        self.executes.on_renamed(now)

    def _leader_changed(self, leader: str | None, now: float) -> None:
        self.emit(LeaderChanged(leader, leader == self.node_id))
        self.executes.on_leader_change(leader, now)
        self.streams.on_leader_change(leader, now)

    def _wake(self, now: float) -> None:
        if self._election is not None:
            self._election.check_sleep(now)

    def _ensure_open(self) -> None:
        if self._left:
            raise MeshDisposedError("this mesh member was disposed")
