"""Who calls a flow, and how every waiting tab gets its outcome.

For each cache key a tab is working on it keeps one :class:`Pending`, so
concurrent executes of one key in one tab share one call, and it moves through
these phases (every change goes through :meth:`FlowCoordinator._enter`, which
checks it against :data:`TRANSITIONS`):

* ``CALLING``: this tab runs the function (it leads, it claimed the key, or it
  fell back). The outcome goes to its own waiters and, as a ``Result`` or
  ``Failure`` broadcast, to every tab. A call that runs past ``call_timeout`` is
  given up (``CancelCall``): its waiters, here and in every tab, get a
  :class:`~pyflowmesh.errors.CallTimeoutError`.
* ``AWAIT_LEADER`` → ``REQUESTED`` → ``ACCEPTED``: a follower asks the leader, which
  serves each key once for all tabs that ask while it runs (and from its cache
  after). Should the leader change, the request follows the new one.
* ``CLAIMING`` → ``FOLLOWING_CLAIM``: without a leader that can serve the key
  (peer-to-peer strategy, no leader answering in time, or the leader's page lacks
  the flow) a tab announces a ``Claim``, waits ``claim_window`` for competing claims,
  and calls unless a running claim or a higher tab's claim beats it. Tabs that find
  a live claim wait for its owner's result, and take over if the owner goes silent.
  The owner answers every newcomer's claim, and serves requests for the key it runs.

Every execute ends: a tab that waits on other tabs gives up at its *patience*
(``request_timeout + call_timeout + heartbeat`` after the execute began) and calls
itself, and its own call ends by ``call_timeout``. A failure starts a back-off shared
by every tab (with ``share_errors``): until it ends, an execute of that key raises the
shared error at once instead of calling; no tab honours one longer than
``max_error_backoff``.

Values are held as canonical JSON text: what a caller or a flow function does to
the data it was given changes nothing the mesh shares.
"""

from __future__ import annotations

import functools
import hashlib
from collections.abc import Callable
from dataclasses import dataclass, field
from enum import Enum
from typing import TYPE_CHECKING, Any

from ..errors import CallTimeoutError, MessageTooLarge, SharedFlowError, shared_error
from .cache import CacheEntry, SharedCache
from .effects import CacheUpdated, CancelCall, FailureShared, Reject, Resolve, Source, StartCall, WatchPeer
from .election import Role
from .values import cache_key, check_json, dump_json, is_text, load_json
from .wire import (
    MAX_COUNT,
    MAX_MILLIS,
    Accept,
    Bye,
    Claim,
    Decline,
    Failure,
    Hello,
    Invalidate,
    Message,
    Request,
    Result,
    Sync,
    SyncEntry,
    SyncFailure,
    encode,
)

if TYPE_CHECKING:
    from .node import MeshNode

__all__ = ["Phase", "Pending", "FlowCoordinator", "MessageTooLarge", "TRANSITIONS"]

_NEVER = float("inf")

# Bounds of what other tabs can make this tab hold (each structure's bound is here).
MAX_SERVED = 1024  # keys this tab works on for other tabs at once; more requests are declined "busy"
MAX_REQUESTERS = 256  # tabs one key is served to by name; more are declined "busy"
# Claim records (kept by a 16-byte digest of the key), back-off records and failure counts
# are each bounded by max(MIN_RECORDS, RECORDS_PER_ENTRY x max_entries), as the cache's
# version marks: past it, the claim expiring first, or the oldest record, is forgotten.
MIN_RECORDS = 64
RECORDS_PER_ENTRY = 4
MAX_BACKOFF_BYTES = 1 << 20  # the text back-off records hold (keys and messages, for Sync); oldest go first
MAX_ATTEMPT = 1_000_000  # consecutive failures counted per key (the back-off is long at its maximum)
MAX_ERROR_TEXT = 2000  # characters of an error's message that cross the channel
# The highest version a tab stores from the wire: its own next version of the key must
# still be a number every tab decodes (as for terms: election.MAX_ADOPTED_TERM).
MAX_ADOPTED_VERSION = MAX_COUNT - 2**32
MAX_ERROR_TYPE = 200


class Phase(str, Enum):
    CALLING = "calling"
    AWAIT_LEADER = "await-leader"
    REQUESTED = "requested"
    ACCEPTED = "accepted"
    CLAIMING = "claiming"
    FOLLOWING_CLAIM = "following-claim"

    def __str__(self) -> str:
        return self.value


_WAITING_ON_LEADER = frozenset({Phase.AWAIT_LEADER, Phase.REQUESTED, Phase.ACCEPTED})
_ANY_WAIT = _WAITING_ON_LEADER | {Phase.FOLLOWING_CLAIM}

# The legal phase changes. A call in progress (CALLING) ends only with its outcome or
# its timeout, which remove the Pending; a claim announced (CLAIMING) is kept or yielded.
TRANSITIONS: dict[Phase, frozenset[Phase]] = {
    Phase.AWAIT_LEADER: _ANY_WAIT | {Phase.CLAIMING, Phase.CALLING},
    Phase.REQUESTED: _ANY_WAIT | {Phase.CLAIMING, Phase.CALLING},
    Phase.ACCEPTED: _ANY_WAIT | {Phase.CLAIMING, Phase.CALLING},
    Phase.FOLLOWING_CLAIM: _ANY_WAIT | {Phase.CLAIMING, Phase.CALLING},
    Phase.CLAIMING: frozenset({Phase.CALLING, Phase.FOLLOWING_CLAIM}),
    Phase.CALLING: frozenset(),
}


@dataclass(eq=False)
class Pending:
    """One key this tab works on: its phase, its local waiters, the tabs it serves."""

    key: str
    flow: str
    args_json: str  # the arguments as canonical JSON: a Request always carries what the key says
    patience: float  # when this tab stops waiting on other tabs and calls itself
    phase: Phase = Phase.AWAIT_LEADER
    deadline: float = _NEVER
    target: str | None = None  # the leader asked, or the claim owner followed
    req: int = 0
    call_id: int = 0
    call_deadline: float = _NEVER
    claimed: bool = False  # this tab announced a claim for the key
    superseded: bool = False  # invalidated while its call ran: it answers only who already waited
    invalidated: bool = False  # invalidated while it waited: executes after that wait for a new call
    waiters: list[int] = field(default_factory=list)
    later: list[int] = field(default_factory=list)  # executes that came after the invalidation
    requesters: set[str] = field(default_factory=set)

    @property
    def args(self) -> tuple[Any, ...]:
        """A fresh copy of the arguments."""
        return tuple(load_json(self.args_json))


def _digest(key: str) -> bytes:
    """A short stand-in for a key in tables that never need the key back (claims, failure counts):
    a key may be as long as a message, and a hostile script can send a thousand of them."""
    return hashlib.blake2b(key.encode("utf-8", "surrogatepass"), digest_size=16).digest()


def _backoff_size(key: str, backoff: _Backoff) -> int:
    return len(key) + len(backoff.message) + len(backoff.error_type)


def _describe(error: BaseException) -> str:
    """``str(error)``, or a stand-in when the exception cannot even say what it is."""
    try:
        return str(error)
    except Exception:
        return f"<{type(error).__name__} whose message cannot be read>"


@dataclass(frozen=True, slots=True)
class _ClaimRecord:
    owner: str
    running: bool
    expires: float

    def rank(self) -> tuple[bool, str]:
        return (self.running, self.owner)


@dataclass(frozen=True, slots=True)
class _Backoff:
    until: float
    error_type: str
    message: str
    attempt: int
    origin: str


class FlowCoordinator:
    """The flow side of one tab's mesh member."""

    def __init__(self, node: MeshNode) -> None:
        self._node = node
        self._config = node.config
        self._cache: SharedCache = node.cache
        self.flows: set[str] = set()  # flows this tab can run (the leader declines others)
        self.pending: dict[str, Pending] = {}  # bounded: local executes, plus MAX_SERVED for others
        self._waiting: dict[int, Pending] = {}  # waiter -> its Pending (one entry per open execute)
        self._calls: dict[int, Pending] = {}  # call_id -> its Pending (one per CALLING Pending)
        self._max_records = max(MIN_RECORDS, RECORDS_PER_ENTRY * self._config.max_entries)
        self._claims: dict[bytes, _ClaimRecord] = {}  # by key digest; at most _max_records
        self._backoffs: dict[str, _Backoff] = {}  # at most _max_records, and MAX_BACKOFF_BYTES of text
        self._backoff_bytes = 0
        self._attempts: dict[bytes, int] = {}  # consecutive failures by key digest; at most _max_records
        self._next_id = 0
        # Answers that carry cached data (Sync to a joiner, a result to a request or a claim)
        # cost bytes on every tab's channel, whoever asked: a token bucket of bytes refilled at
        # max_message_bytes per heartbeat, so a flood of small asks cannot make this tab flood.
        self._serve_tokens = float(2 * self._config.max_message_bytes)
        self._serve_refilled = 0.0

    @property
    def _me(self) -> str:
        return self._node.node_id

    # --- public side ------------------------------------------------------------------

    def execute(self, flow: str, args: tuple[Any, ...], now: float) -> int:
        """Start an execute; its outcome comes as a Resolve/Reject effect for the returned waiter.

        Raises (before any state changes):
            TypeError: the arguments are not JSON data.
            MessageTooLarge: a request carrying them would exceed ``max_message_bytes``.
        """
        key = cache_key(flow, args)
        args_json = key[len(flow):] if args else "[]"
        self._check_fits(key, flow, args_json)
        waiter = self._new_id()
        entry = self._cache.get(key, now)
        if entry is not None:
            self._node.stats.served_from_cache += 1
            self._node.emit(Resolve(waiter, entry.data, "cache"))
            return waiter
        backoff = self._active_backoff(key, now)
        if backoff is not None:
            self._node.emit(Reject(waiter, self._shared_error(key, backoff, now)))
            return waiter
        pending = self.pending.get(key)
        created = pending is None
        if pending is None:
            pending = self.pending[key] = self._new_pending(key, flow, args_json, now)
        (pending.later if pending.invalidated else pending.waiters).append(waiter)
        self._waiting[waiter] = pending
        if created:
            self._route(pending, now)
        return waiter

    def cancel(self, waiter: int, now: float) -> None:
        """The caller stopped waiting: forget ``waiter``; a key nobody needs any more is dropped.

        A call in progress, or a claim announced to other tabs, goes on: other tabs may
        wait on it, and its result still fills the cache.
        """
        pending = self._waiting.pop(waiter, None)
        if pending is None:
            return
        for waiters in (pending.waiters, pending.later):
            if waiter in waiters:
                waiters.remove(waiter)
        if not pending.waiters and not pending.later and not pending.requesters and pending.phase in _ANY_WAIT:
            self._drop(pending)

    def share(self, key: str, value: Any, now: float) -> None:
        """Offer a result produced outside any flow (``FlowMesh.share_result``).

        Raises (before any state changes):
            TypeError: ``value`` is not JSON data, or ``key`` is not text.
            MessageTooLarge: the result would not fit in one message.
        """
        self._check_key(key)
        check_json(value, f"the value shared for {key!r}")
        data = dump_json(value)
        def probe() -> Message:  # built only past the bound (see _exceeds_limit): no parse per share
            return Result(src="x" * 128, key=key, value=load_json(data), version=MAX_COUNT, origin="x" * 128,
                          age=MAX_MILLIS, shared=True, sent=float(MAX_COUNT))

        if self._config.share_cache and self._exceeds_limit(len(key) + len(data), probe):
            raise MessageTooLarge(
                f"the value shared for {key!r} does not fit in one message of max_message_bytes "
                f"({self._config.max_message_bytes})"
            )
        self._publish(key, data, now, requesters=set())
        pending = self.pending.get(key)
        if pending is not None and pending.phase is not Phase.CALLING:
            self._finish(pending, now, data=data, source="call")

    def invalidate(self, key: str | None, now: float) -> None:
        """Drop ``key`` (or everything) here and in every tab.

        Raises (before any state changes):
            TypeError: ``key`` is neither ``None`` nor a str of text, or too long for a message.
        """
        self.check_invalidate(key)
        self._drop_cached(key)
        self._node.send(Invalidate(src=self._me, key=key))

    def check_invalidate(self, key: Any) -> None:
        """Raise ``TypeError`` unless ``key`` is ``None`` or a key an Invalidate can carry."""
        if key is not None:
            self._check_key(key)
            if self._exceeds_limit(len(key), functools.partial(Invalidate, src="x" * 128, key=key)):
                raise MessageTooLarge(f"the key {key[:40]!r}... does not fit in one message")

    @staticmethod
    def _check_key(key: Any) -> None:
        if not isinstance(key, str) or not is_text(key):
            raise TypeError(f"a cache key must be a str that UTF-8 can carry, got {key!r}")

    def _drop_cached(self, key: str | None) -> None:
        """Drop ``key`` (or every key) from the cache, and supersede calls of it already running.

        A call that began before the invalidation answers only the executes that were
        already waiting on it; an execute after it starts a new call (``refresh``), and
        the superseded call's result never enters a cache.
        """
        self._cache.invalidate(key)
        for pending in [p for p in self.pending.values() if key in (None, p.key)]:
            if pending.phase is Phase.CALLING:
                self._drop(pending)
                pending.superseded = True
            else:  # waiting on another tab's call, which may be superseded too: later executes ask anew
                pending.invalidated = True

    def call_succeeded(self, call_id: int, value: Any, now: float) -> None:
        pending = self._calls.pop(call_id, None)
        if pending is None:
            return  # a call given up at its timeout: its waiters already have their outcome
        try:
            self._drop(pending)
            try:
                check_json(value, f"the result of flow {pending.flow!r}")
                data = dump_json(value)
            except (TypeError, ValueError) as error:
                self._fail(pending, TypeError(_describe(error)), now, back_off=False)
                return
            if pending.superseded:
                if pending.requesters:  # they asked before the invalidation: they get this, no cache does
                    self._node.send(Result(src=self._me, key=pending.key, value=load_json(data), version=0,
                                           origin=self._me, age=0.0, shared=False, to=sorted(pending.requesters),
                                           sent=self._node.wall()))
            else:
                self._publish(pending.key, data, now, pending.requesters)
            self._finish(pending, now, data=data, source="call")
        except Exception as error:  # a bug must fail only the waiters of this call
            self._node.internal_error(error)
            self._finish(pending, now, error=error, renew=False)

    def call_failed(self, call_id: int, error: BaseException, now: float, back_off: bool = True) -> None:
        pending = self._calls.pop(call_id, None)
        if pending is None:
            return
        try:
            self._drop(pending)
            self._fail(pending, error, now, back_off)
        except Exception as bug:
            self._node.internal_error(bug)
            self._finish(pending, now, error=error, renew=False)

    def abandon_all(self, error: BaseException) -> None:
        """Fail every local waiter (the member is leaving)."""
        for pending in [*self.pending.values(), *self._calls.values()]:
            self._finish(pending, 0.0, error=error, renew=False)
        self._calls.clear()

    def fail_key(self, key: str, error: BaseException) -> None:
        """Fail the local waiters of ``key`` with ``error`` and forget the key (an internal error struck it)."""
        pending = self.pending.get(key)
        if pending is not None:
            self._abort(pending, error)

    def _abort(self, pending: Pending, error: BaseException) -> None:
        if self._calls.pop(pending.call_id, None) is not None:
            self._node.emit(CancelCall(pending.call_id))
        self._finish(pending, 0.0, error=error, renew=False)

    def snapshot_failures(self, now: float, origin: str | None = None) -> list[SyncFailure]:
        return [
            SyncFailure(key=key, error_type=b.error_type, message=b.message, retry_in=b.until - now,
                        attempt=b.attempt, origin=b.origin)
            for key, b in self._backoffs.items()
            if b.until > now and (origin is None or b.origin == origin)
        ]

    # --- time ----------------------------------------------------------------------------

    def deadline(self) -> float:
        soonest = _NEVER
        for pending in self.pending.values():
            soonest = min(soonest, pending.deadline)
        for pending in self._calls.values():  # superseded calls are timed out too
            soonest = min(soonest, pending.deadline)
        return soonest

    def tick(self, now: float) -> None:
        due = {id(p): p for p in [*self.pending.values(), *self._calls.values()] if p.deadline <= now}
        for pending in due.values():
            if self.pending.get(pending.key) is not pending and self._calls.get(pending.call_id) is not pending:
                continue  # settled by an earlier one in this loop
            try:
                self._on_deadline(pending, now)
            except Exception as error:  # a bug must fail only the waiters of its key
                self._node.internal_error(error)
                self._abort(pending, error)
        if len(self._backoffs) > self._max_records // 2:
            for key in [k for k, b in self._backoffs.items() if b.until <= now]:
                self._drop_backoff(key)

    def _on_deadline(self, pending: Pending, now: float) -> None:
        if pending.phase is Phase.CALLING:
            if now >= pending.call_deadline:
                self._time_out(pending, now)
            else:  # a claimed call in progress: keep the claim alive
                self._node.send(Claim(src=self._me, key=pending.key, running=True))
                pending.deadline = min(now + self._config.heartbeat, pending.call_deadline)
        elif pending.phase is Phase.CLAIMING:
            self._start_call(pending, now)
        elif now >= pending.patience:  # waited on other tabs long enough: call ourselves
            self._node.stats.fallbacks += 1
            self._start_call(pending, now)
        elif pending.phase is Phase.FOLLOWING_CLAIM:
            self._claims.pop(_digest(pending.key), None)  # its owner went silent: take over
            self._route(pending, now)
        else:  # no leader in time, no accept in time, or the accepted call took too long
            self._fall_back(pending, now)

    # --- election events ---------------------------------------------------------------

    def on_leader_change(self, leader: str | None, now: float) -> None:
        """Send every request waiting on a leader to the new one (or serve it, if that is us)."""
        for pending in list(self.pending.values()):
            if pending.phase not in _WAITING_ON_LEADER:
                continue
            if pending.target == leader and leader is not None:
                continue
            if leader == self._me:
                self._start_call(pending, now)
            elif leader is not None:
                self._request(pending, leader, now)
            else:
                self._enter(pending, Phase.AWAIT_LEADER, now + self._config.effective_request_timeout)

    def on_renamed(self, now: float) -> None:
        """This tab took a new ID: answers to its requests would go to the old one, so ask again."""
        for pending in list(self.pending.values()):
            if pending.phase in (Phase.REQUESTED, Phase.ACCEPTED) and pending.target is not None:
                self._request(pending, pending.target, now)

    def on_peer_gone(self, node_id: str, now: float) -> None:
        """A tab left: claims it held are taken over at once; nothing more is sent to it."""
        for key in [k for k, c in self._claims.items() if c.owner == node_id]:
            del self._claims[key]
        for pending in list(self.pending.values()):
            pending.requesters.discard(node_id)
            if pending.phase is Phase.FOLLOWING_CLAIM and pending.target == node_id:
                self._route(pending, now)
            elif not pending.waiters and not pending.requesters and pending.phase in _ANY_WAIT:
                self._drop(pending)  # we only waited for the tab that left

    # --- messages ------------------------------------------------------------------------

    def on_message(self, message: Message, now: float) -> None:
        if isinstance(message, Request):
            self._on_request(message, now)
        elif isinstance(message, Accept):
            pending = self.pending.get(message.key)
            if pending and pending.phase is Phase.REQUESTED and pending.req == message.req:
                self._enter(pending, Phase.ACCEPTED, now + self._config.call_timeout)
        elif isinstance(message, Decline):
            self._on_decline(message, now)
        elif isinstance(message, Result):
            self._on_result(message, now)
        elif isinstance(message, Failure):
            self._on_failure(message, now)
        elif isinstance(message, Claim):
            self._on_claim(message, now)
        elif isinstance(message, Invalidate):
            self._drop_cached(message.key)
        elif isinstance(message, Sync):
            self._on_sync(message, now)
        elif isinstance(message, Hello):
            self._on_hello(message, now)
        elif isinstance(message, Bye):
            self.on_peer_gone(message.src, now)

    def _decline(self, message: Request, reason: str) -> None:
        self._node.send(Decline(src=self._me, dst=message.src, req=message.req, key=message.key, reason=reason))

    def _on_request(self, message: Request, now: float) -> None:
        node = self._node
        pending = self.pending.get(message.key)
        # Who serves: the leader; a tab that runs (or claimed) the key; also a tab that
        # produced the fresh entry (without share_cache nobody else holds it).
        owner = pending is not None and pending.phase in (Phase.CALLING, Phase.CLAIMING)
        produced = self._cache.get(message.key, now)
        producer = produced is not None and node.is_me(produced.origin)
        if node.role is not Role.LEADER and not owner and not producer:
            self._decline(message, "not-leader")
            return
        if message.flow not in self.flows:
            self._decline(message, "unknown-flow")
            return
        if cache_key(message.flow, message.args) != message.key:
            node.stats.drop("bad-key")
            self._decline(message, "bad-key")  # the sender serves itself at once
            return
        if self._transit(message.sent) > self._config.effective_request_timeout:
            self._decline(message, "late")  # its sender stopped waiting for us: it calls itself
            return
        entry = self._cache.get(message.key, now)
        if entry is not None:
            if not self._may_serve(now):
                self._decline(message, "busy")  # flooded with asks: the asker calls itself
                return
            node.stats.requests_served += 1
            self._serve_entry(entry, message.src, now)
            return
        backoff = self._active_backoff(message.key, now)
        if backoff is not None:
            node.send(Failure(src=self._me, key=message.key, error_type=backoff.error_type, message=backoff.message,
                              retry_in=backoff.until - now, attempt=backoff.attempt, shared=True, to=[message.src]))
            return
        if pending is None:
            served = sum(1 for p in self.pending.values() if not p.waiters)
            served += sum(1 for p in self._calls.values() if p.superseded)  # still running for others
            if served >= MAX_SERVED:
                self._decline(message, "busy")
                return
            pending = self.pending[message.key] = self._new_pending(
                message.key, message.flow, dump_json(message.args), now)
            pending.requesters.add(message.src)
            self._route(pending, now)
        elif message.src not in pending.requesters:
            if len(pending.requesters) >= MAX_REQUESTERS:
                self._decline(message, "busy")
                return
            pending.requesters.add(message.src)
        node.stats.requests_served += 1
        node.send(Accept(src=self._me, dst=message.src, req=message.req, key=message.key))

    def _on_decline(self, message: Decline, now: float) -> None:
        pending = self.pending.get(message.key)
        if not pending or pending.req != message.req or pending.phase not in _ANY_WAIT - {Phase.AWAIT_LEADER}:
            return
        leader = self._node.leader
        if pending.phase is Phase.FOLLOWING_CLAIM:
            self._claims.pop(_digest(message.key), None)  # the owner no longer runs it
            self._route(pending, now)
        elif message.reason == "not-leader" and leader not in (None, message.src, self._me):
            self._request(pending, leader, now)  # type: ignore[arg-type]
        else:
            self._fall_back(pending, now)

    def _on_result(self, message: Result, now: float) -> None:
        if message.to is not None and self._me not in message.to:
            self._owner_done(message.key, message, now)
            return
        self._claims.pop(_digest(message.key), None)
        self._drop_backoff(message.key)
        self._attempts.pop(_digest(message.key), None)
        data = dump_json(message.value)
        if message.shared and self._config.share_cache:
            self._store(message.key, data, message.version, message.origin,
                        message.age + self._transit(message.sent), now)
        pending = self.pending.get(message.key)
        if pending is None or pending.phase is Phase.CALLING:
            return  # our own call, if any, still publishes its result when it ends
        unserved = pending.requesters - set(message.to) if message.to is not None else set()
        self._finish(pending, now, data=data, source="mesh")
        if unserved:
            self._node.send(Result(src=self._me, key=message.key, value=message.value, version=message.version,
                                   origin=message.origin, age=message.age, shared=message.shared,
                                   to=sorted(unserved), sent=message.sent))

    def _on_failure(self, message: Failure, now: float) -> None:
        if message.to is not None and self._me not in message.to:
            self._owner_done(message.key, message, now)
            return
        self._claims.pop(_digest(message.key), None)
        retry_in = min(message.retry_in, self._config.max_error_backoff)  # nobody blocks a key longer
        attempt = min(message.attempt, MAX_ATTEMPT)
        error_type, text = message.error_type[:MAX_ERROR_TYPE], message.message[:MAX_ERROR_TEXT]
        if message.shared and self._config.share_errors and retry_in > 0:
            self._set_backoff(message.key, _Backoff(now + retry_in, error_type, text, attempt, message.src))
        error = shared_error(message.key, error_type, text, message.src, retry_in)
        self._node.emit(FailureShared(message.key, error))
        pending = self.pending.get(message.key)
        if pending is None or pending.phase is Phase.CALLING:
            return
        unserved = pending.requesters - set(message.to) if message.to is not None else set()
        self._finish(pending, now, error=error)
        if unserved:
            self._node.send(Failure(src=self._me, key=message.key, error_type=message.error_type,
                                    message=message.message, retry_in=retry_in, attempt=attempt,
                                    shared=message.shared, to=sorted(unserved)))

    def _owner_done(self, key: str, message: Result | Failure, now: float) -> None:
        """An outcome of ``key`` addressed to other tabs: a claim of the sender or of an addressee is over.

        The claimant was answered, so it will not call. A tab of ours that follows such a
        claim asked its owner by name, if nothing is broadcast, and waits for that answer
        (the owner serves it from its cache, or declines and it moves on); where outcomes
        are broadcast it asked nobody, so it moves on now.
        """
        ended = {message.src, *(message.to or ())}
        claim = self._claims.get(_digest(key))
        if claim is not None and claim.owner in ended:
            del self._claims[_digest(key)]
        pending = self.pending.get(key)
        broadcast = self._config.share_cache and self._config.share_errors
        if broadcast and pending is not None and pending.phase is Phase.FOLLOWING_CLAIM and pending.target in ended:
            self._route(pending, now)

    def _on_claim(self, message: Claim, now: float) -> None:
        # A running claim is trusted as long as a leader would be (its owner renews it every
        # heartbeat); an announced one only until its owner should have said it runs: an owner
        # that was answered by another tab's result meanwhile never calls, and never says so.
        config = self._config
        if message.running:
            patience = config.silence_limit(config.heartbeat, False)
        else:
            patience = config.claim_window + 2 * config.answer_timeout
        record = _ClaimRecord(message.src, message.running, now + patience)
        current = self._claims.get(_digest(message.key))
        if current is None or current.expires <= now or current.owner == record.owner or record.rank() > current.rank():
            self._set_claim(message.key, record, now)
        pending = self.pending.get(message.key)
        if pending is None:
            if not message.running:
                self._answer_claim_from_cache(message, now)
            return
        if pending.phase is Phase.CALLING:
            if not message.running:  # a newcomer about to call: every one hears that we run it
                self._node.send(Claim(src=self._me, key=message.key, running=True))
        elif pending.phase is Phase.CLAIMING:
            if record.rank() > (False, self._me):
                self._follow_claim(pending, record, now)
            elif not message.running:  # a lower claimant may have missed our claim (it joined after)
                self._node.send(Claim(src=self._me, key=message.key, running=False))
        elif pending.phase is Phase.FOLLOWING_CLAIM:
            best = self._claims.get(_digest(message.key))
            if best is not None and best.owner != pending.target:
                self._follow_claim(pending, best, now)
            elif best is not None:
                pending.deadline = min(best.expires, pending.patience)

    def _answer_claim_from_cache(self, message: Claim, now: float) -> None:
        """The tab that produced a fresh entry answers a claim of its key with it.

        The claimant may not hold the entry (without ``share_cache`` nobody else does, or it
        joined after the result): it takes this answer instead of calling.
        """
        entry = self._cache.get(message.key, now)
        mine = entry is not None and self._node.is_me(entry.origin)
        if mine and self._may_serve(now):
            assert entry is not None
            self._serve_entry(entry, message.src, now)

    def _may_serve(self, now: float) -> bool:
        """Whether this tab's budget of bytes for answers with cached data allows one more now."""
        capacity = 2.0 * self._config.max_message_bytes
        refill = (now - self._serve_refilled) * self._config.max_message_bytes / self._config.heartbeat
        self._serve_tokens = min(capacity, self._serve_tokens + max(0.0, refill))
        self._serve_refilled = now
        if self._serve_tokens > 0:
            return True
        self._node.stats.answers_skipped += 1
        return False

    def _serve_entry(self, entry: CacheEntry, asker: str, now: float) -> None:
        """Answer ``asker`` with a cached entry (broadcast, with ``share_cache``), or say it cannot travel."""
        shared = self._config.share_cache
        size = self._node.send(Result(src=self._me, key=entry.key, value=entry.value, version=entry.version,
                                      origin=entry.origin, age=entry.age(now), shared=shared,
                                      to=None if shared else [asker], sent=self._node.wall()))
        if size:
            self._serve_tokens -= size
        else:  # as when it was produced: the asker gets the error instead of calling again
            self._node.send(Failure(src=self._me, key=entry.key, error_type="MessageTooLarge",
                                    message=f"the result of {entry.key[:200]!r} exceeds max_message_bytes "
                                            f"({self._config.max_message_bytes})",
                                    retry_in=0.0, attempt=1, shared=False, to=[asker]))

    def _on_sync(self, message: Sync, now: float) -> None:
        transit = self._transit(message.sent)
        if self._config.share_cache:
            for entry in message.entries:
                data = dump_json(entry.value)
                self._store(entry.key, data, entry.version, entry.origin, entry.age + transit, now)
                pending = self.pending.get(entry.key)
                if pending is not None and pending.phase is not Phase.CALLING and self._cache.get(entry.key, now):
                    self._finish(pending, now, data=data, source="mesh")
        if self._config.share_errors:
            for failure in message.failures:
                retry_in = min(failure.retry_in, self._config.max_error_backoff) - transit
                if retry_in > 0 and failure.key not in self._backoffs:
                    self._set_backoff(failure.key, _Backoff(now + retry_in, failure.error_type[:MAX_ERROR_TYPE],
                                                            failure.message[:MAX_ERROR_TEXT],
                                                            min(failure.attempt, MAX_ATTEMPT), failure.origin))

    def _on_hello(self, message: Hello, now: float) -> None:
        # The leader knows every shared entry; without a leader each tab sends what it produced
        # (under any ID it had: a tab renamed after a twin keeps serving its own results).
        role = self._node.role
        if role not in (Role.LEADER, Role.PEER):
            return
        if not self._may_serve(now):
            self._node.stats.syncs_skipped += 1  # the joiner asks for what it needs instead
            return
        mine = role is Role.PEER
        entries = [e for e in self._cache.snapshot(now) if not mine or self._node.is_me(e.origin)]
        failures = [f for f in self.snapshot_failures(now) if not mine or self._node.is_me(f.origin)]
        self._send_sync(message.src, entries if self._config.share_cache else [],
                        failures if self._config.share_errors else [])

    def _send_sync(self, dst: str, entries: list[SyncEntry], failures: list[SyncFailure]) -> None:
        """Send what a joiner should know, in as few messages as fit; what fits in none is left out."""
        items: list[SyncEntry | SyncFailure] = [*entries, *failures]
        if not items:
            return
        message = Sync(src=self._me, dst=dst, entries=[i for i in items if isinstance(i, SyncEntry)],
                       failures=[i for i in items if isinstance(i, SyncFailure)], sent=self._node.wall())
        size = self._node.send(message)
        if size:
            self._serve_tokens -= size
        elif len(items) > 1:  # halves of the items: each call has fewer, so this ends (2n sends at most)
            half = len(items) // 2
            for part in (items[:half], items[half:]):
                self._send_sync(dst, [i for i in part if isinstance(i, SyncEntry)],
                                [i for i in part if isinstance(i, SyncFailure)])
        # else: one item too large to send on its own: the joiner will ask for it

    # --- transitions -----------------------------------------------------------------------

    def _new_pending(self, key: str, flow: str, args_json: str, now: float) -> Pending:
        config = self._config
        patience = now + config.effective_request_timeout + config.call_timeout + config.heartbeat
        return Pending(key=key, flow=flow, args_json=args_json, patience=patience)

    def _enter(self, pending: Pending, phase: Phase, deadline: float, target: str | None = None) -> None:
        """The one place a Pending changes phase; waiting on others never outlasts its patience."""
        if phase is not pending.phase and phase not in TRANSITIONS[pending.phase]:
            raise RuntimeError(f"illegal phase change {pending.phase} -> {phase} for {pending.key!r}")
        pending.phase, pending.target = phase, target
        pending.deadline = deadline if phase in (Phase.CALLING, Phase.CLAIMING) else min(deadline, pending.patience)

    def _route(self, pending: Pending, now: float) -> None:
        claim = self._live_claim(pending.key, now)
        if now >= pending.patience:
            self._start_call(pending, now)
        elif claim is not None:
            self._follow_claim(pending, claim, now)
        elif self._node.role is Role.PEER:
            self._claim(pending, now)
        elif self._node.role is Role.LEADER:
            self._start_call(pending, now)
        elif self._node.leader is not None:
            self._request(pending, self._node.leader, now)
        else:
            self._enter(pending, Phase.AWAIT_LEADER, now + self._config.effective_request_timeout)

    def _request(self, pending: Pending, leader: str, now: float) -> None:
        pending.req = self._new_id()
        self._enter(pending, Phase.REQUESTED, now + self._config.effective_request_timeout, leader)
        self._node.send(Request(src=self._me, dst=leader, req=pending.req, key=pending.key, flow=pending.flow,
                                args=load_json(pending.args_json), sent=self._node.wall()))

    def _fall_back(self, pending: Pending, now: float) -> None:
        self._node.stats.fallbacks += 1
        claim = self._live_claim(pending.key, now)
        if claim is not None:
            self._follow_claim(pending, claim, now)
        else:
            self._claim(pending, now)

    def _claim(self, pending: Pending, now: float) -> None:
        pending.claimed = True
        self._enter(pending, Phase.CLAIMING, now + self._config.claim_window, self._me)
        self._node.send(Claim(src=self._me, key=pending.key, running=False))

    def _follow_claim(self, pending: Pending, claim: _ClaimRecord, now: float) -> None:
        self._enter(pending, Phase.FOLLOWING_CLAIM, claim.expires, claim.owner)
        if self._node.role is Role.PEER:  # no leader to watch: watch the owner (its Web Lock tells if it dies)
            self._node.emit(WatchPeer(claim.owner))
        if not (self._config.share_cache and self._config.share_errors):
            # Nothing is broadcast: the owner answers by name the tabs that asked it.
            pending.req = self._new_id()
            self._node.send(Request(src=self._me, dst=claim.owner, req=pending.req, key=pending.key,
                                    flow=pending.flow, args=load_json(pending.args_json), sent=self._node.wall()))

    def _start_call(self, pending: Pending, now: float) -> None:
        if pending.flow not in self.flows:
            # Only a leader serving a request reaches here without the flow; it declined those.
            self._fail(pending, LookupError(f"this tab has no flow {pending.flow!r}"), now, back_off=False)
            return
        if pending.invalidated:  # a call that begins after the invalidation is the new call they wait for
            pending.waiters += pending.later
            pending.later, pending.invalidated = [], False
        pending.call_id = self._new_id()
        pending.call_deadline = now + self._config.call_timeout
        refresh = now + self._config.heartbeat if pending.claimed else _NEVER
        self._enter(pending, Phase.CALLING, min(refresh, pending.call_deadline), self._me)
        if pending.claimed:  # the claim won: say so, or the tabs following it give it up (see _on_claim)
            self._node.send(Claim(src=self._me, key=pending.key, running=True))
        self._calls[pending.call_id] = pending
        self._node.stats.calls += 1
        self._node.emit(StartCall(pending.call_id, pending.flow, pending.args, pending.key))

    def _time_out(self, pending: Pending, now: float) -> None:
        self._calls.pop(pending.call_id, None)
        self._node.emit(CancelCall(pending.call_id))
        self._drop(pending)
        timeout = self._config.call_timeout
        error = CallTimeoutError(f"flow {pending.flow!r} ran longer than call_timeout ({timeout:g} ms)")
        self._fail(pending, error, now, back_off=True)

    def _drop(self, pending: Pending) -> None:
        if self.pending.get(pending.key) is pending:
            del self.pending[pending.key]

    # --- outcomes --------------------------------------------------------------------------

    def _finish(self, pending: Pending, now: float, *, data: str | None = None, error: BaseException | None = None,
                source: Source = "mesh", renew: bool = True) -> None:
        """Give every local waiter of ``pending`` its outcome and forget the key.

        Executes that came after an invalidation of the key wait on, for a new call
        (unless ``renew`` is false: the member is leaving, and they get ``error`` too).
        """
        self._drop(pending)
        if error is None and source == "mesh":
            self._node.stats.served_by_mesh += len(pending.waiters)
        for waiter in pending.waiters:
            self._waiting.pop(waiter, None)
            if error is not None:
                self._node.emit(Reject(waiter, error))
            else:
                assert data is not None
                self._node.emit(Resolve(waiter, data, source))
        pending.waiters = []
        later, pending.later = pending.later, []
        if not later:
            return
        current = self.pending.get(pending.key)
        if not renew:
            for waiter in later:
                self._waiting.pop(waiter, None)
                self._node.emit(Reject(waiter, error or RuntimeError("execute abandoned")))
        elif current is not None:  # a newer wait on the key exists already: they join it
            (current.later if current.invalidated else current.waiters).extend(later)
            for waiter in later:
                self._waiting[waiter] = current
        else:
            self._renew(pending, later, now)

    def _renew(self, old: Pending, waiters: list[int], now: float) -> None:
        """A new Pending for executes that must not take the outcome of an invalidated wait."""
        backoff = self._active_backoff(old.key, now)
        if backoff is not None:
            for waiter in waiters:
                self._waiting.pop(waiter, None)
                self._node.emit(Reject(waiter, self._shared_error(old.key, backoff, now)))
            return
        pending = self.pending[old.key] = self._new_pending(old.key, old.flow, old.args_json, now)
        pending.waiters = waiters
        for waiter in waiters:
            self._waiting[waiter] = pending
        self._route(pending, now)

    def _fail(self, pending: Pending, error: BaseException, now: float, back_off: bool) -> None:
        self._node.stats.failed_calls += 1
        if not pending.superseded:
            self._send_failure(pending.key, error, now, pending.requesters, back_off)
        elif pending.requesters:  # a call nobody waits on but who asked before the invalidation
            self._node.send(Failure(src=self._me, key=pending.key, error_type=type(error).__name__[:MAX_ERROR_TYPE],
                                    message=_describe(error)[:MAX_ERROR_TEXT], retry_in=0.0, attempt=1, shared=False,
                                    to=sorted(pending.requesters)))
        self._finish(pending, now, error=error)

    def _publish(self, key: str, data: str, now: float, requesters: set[str]) -> None:
        version = self._cache.next_version(key, self._node.wall())
        shared = self._config.share_cache
        self._claims.pop(_digest(key), None)
        self._drop_backoff(key)
        self._attempts.pop(_digest(key), None)
        self._store(key, data, version, self._me, 0.0, now)
        if shared or requesters:
            sent = self._node.send(Result(src=self._me, key=key, value=load_json(data), version=version,
                                          origin=self._me, age=0.0, shared=shared,
                                          to=None if shared else sorted(requesters), sent=self._node.wall()))
            if not sent:  # too large for the channel: the other tabs must not wait for it
                error = MessageTooLarge(f"the result of {key!r} exceeds max_message_bytes "
                                        f"({self._config.max_message_bytes})")
                self._send_failure(key, error, now, requesters, back_off=False)

    def _send_failure(self, key: str, error: BaseException, now: float, requesters: set[str], back_off: bool) -> None:
        self._claims.pop(_digest(key), None)
        message = _describe(error)[:MAX_ERROR_TEXT]
        if not is_text(message):  # e.g. a file name decoded with surrogateescape: UTF-8 cannot carry it
            message = message.encode("utf-8", "backslashreplace").decode()
        error_type = type(error).__name__[:MAX_ERROR_TYPE]
        shared = self._config.share_errors
        attempt = min(self._attempts.get(_digest(key), 0) + 1, MAX_ATTEMPT)
        retry_in = 0.0
        if back_off and shared:
            retry_in = self._backoff_after(attempt)
            self._set_backoff(key, _Backoff(now + retry_in, error_type, message, attempt, self._me))
        if shared or requesters:
            self._node.send(Failure(src=self._me, key=key, error_type=error_type, message=message, retry_in=retry_in,
                                    attempt=attempt, shared=shared and back_off,
                                    to=None if shared else sorted(requesters)))
        self._node.emit(FailureShared(key, error))

    def _backoff_after(self, attempt: int) -> float:
        """``error_backoff`` doubled per consecutive failure, at most ``max_error_backoff``."""
        doublings = min(attempt - 1, 64)  # 2**64 times any back-off is past the maximum: no overflow
        return min(self._config.error_backoff * 2.0**doublings, self._config.max_error_backoff)

    def _set_backoff(self, key: str, backoff: _Backoff) -> None:
        self._drop_backoff(key)
        # Forget what ended a while ago: back-offs expired for max_error_backoff, with their
        # keys' failure counts (a key failing after such a quiet spell starts afresh).
        quiet_since = backoff.until - 2 * self._config.max_error_backoff
        for old in [k for k, b in self._backoffs.items() if b.until <= quiet_since]:
            self._attempts.pop(_digest(old), None)
            self._drop_backoff(old)
        self._backoffs[key] = backoff
        self._backoff_bytes += _backoff_size(key, backoff)
        digest = _digest(key)
        self._attempts.pop(digest, None)
        self._attempts[digest] = max(backoff.attempt, 0)
        while len(self._backoffs) > self._max_records or self._backoff_bytes > MAX_BACKOFF_BYTES:
            self._drop_backoff(next(iter(self._backoffs)))  # dicts keep insertion order: the oldest
        while len(self._attempts) > self._max_records:
            del self._attempts[next(iter(self._attempts))]

    def _drop_backoff(self, key: str) -> None:
        backoff = self._backoffs.pop(key, None)
        if backoff is not None:
            self._backoff_bytes -= _backoff_size(key, backoff)

    def _set_claim(self, key: str, record: _ClaimRecord, now: float) -> None:
        digest = _digest(key)
        if digest not in self._claims and len(self._claims) >= self._max_records:
            self._claims = {k: c for k, c in self._claims.items() if c.expires > now}
            if len(self._claims) >= self._max_records:
                del self._claims[min(self._claims, key=lambda k: self._claims[k].expires)]
        self._claims[digest] = record

    def _store(self, key: str, data: str, version: int, origin: str, age: float, now: float) -> None:
        if version > MAX_ADOPTED_VERSION:
            self._node.stats.drop("version-range")  # our next version of the key could not be sent
            return
        if self._cache.offer(key, data, version, origin, age, now):
            self._node.emit(CacheUpdated(key, data, origin))

    # --- lookups ---------------------------------------------------------------------------

    def _transit(self, sent: float | None) -> float:
        """How long a message stamped ``sent`` (wall clock) took to arrive: 0 if unknown.

        Tabs of one browser share the wall clock, so this includes the time a message
        waited in a frozen tab's queue. A clock stepped back gives 0, never a negative age.
        """
        wall = self._node.wall()
        if sent is None or wall is None:
            return 0.0
        return min(max(0.0, wall - sent), MAX_MILLIS)

    def _exceeds_limit(self, chars: int, probe: Callable[[], Message]) -> bool:
        """Whether the largest message ``probe`` builds (IDs and numbers at their longest) for data
        of ``chars`` characters exceeds ``max_message_bytes``. Below a bound that needs no encoding
        (escaping multiplies a character by at most 12: a control character, escaped twice), no."""
        limit = self._config.max_message_bytes
        return chars * 12 + 4096 > limit and len(encode(probe()).encode()) > limit

    def _check_fits(self, key: str, flow: str, args_json: str) -> None:
        def probe() -> Message:  # built only past the bound: no parse on an execute's usual path
            return Request(src="x" * 128, dst="x" * 128, req=MAX_COUNT, key=key, flow=flow,
                           args=load_json(args_json), sent=float(MAX_COUNT))

        if self._exceeds_limit(len(key), probe):
            raise MessageTooLarge(
                f"the arguments of {flow!r} are too large for one message of max_message_bytes "
                f"({self._config.max_message_bytes})"
            )

    def _live_claim(self, key: str, now: float) -> _ClaimRecord | None:
        claim = self._claims.get(_digest(key))
        if claim is None or claim.expires <= now or claim.owner == self._me:
            return None
        return claim

    def _active_backoff(self, key: str, now: float) -> _Backoff | None:
        backoff = self._backoffs.get(key)
        return backoff if backoff is not None and backoff.until > now else None

    def _shared_error(self, key: str, backoff: _Backoff, now: float) -> SharedFlowError:
        return shared_error(key, backoff.error_type, backoff.message, backoff.origin, backoff.until - now)

    def _new_id(self) -> int:
        self._next_id += 1
        return self._next_id
