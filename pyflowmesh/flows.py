"""Who calls a flow, and how every waiting tab gets its outcome.

For each cache key a tab is working on it keeps one :class:`Pending`, so
concurrent executes of one key in one tab share one call, and it moves through
these phases:

* ``CALLING``: this tab runs the function (it leads, it claimed the key, or it
  fell back). The outcome goes to its own waiters and, as a ``Result`` or
  ``Failure`` broadcast, to every tab.
* ``AWAIT_LEADER`` → ``REQUESTED`` → ``ACCEPTED``: a follower asks the leader, which
  serves each key once for all tabs that ask while it runs (and from its cache
  after). Should the leader change, the request follows the new one.
* ``CLAIMING`` → ``FOLLOWING_CLAIM``: without a leader that can serve the key
  (peer-to-peer strategy, no leader answering in time, or the leader's page lacks
  the flow) a tab announces a ``Claim``, waits ``claim_window`` for competing claims,
  and calls unless a running claim or a higher tab's claim beats it. Tabs that find
  a live claim wait for its owner's result, and take over if the owner goes silent.

A failure starts a back-off shared by every tab (with ``share_errors``): until it
ends, an execute of that key raises the shared error at once instead of calling.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import Enum
from typing import TYPE_CHECKING, Any

from .cache import SharedCache
from .effects import CacheUpdated, FailureShared, Reject, Resolve, Source, StartCall
from .election import Role
from .errors import SharedFlowError
from .protocol import (
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
    SyncFailure,
)
from .values import cache_key, check_json, is_text

if TYPE_CHECKING:
    from .node import MeshNode

__all__ = ["Phase", "Pending", "FlowCoordinator", "MessageTooLarge"]

_NEVER = float("inf")


class MessageTooLarge(ValueError):
    """A message would exceed ``max_message_bytes``."""


class Phase(str, Enum):
    CALLING = "calling"
    AWAIT_LEADER = "await-leader"
    REQUESTED = "requested"
    ACCEPTED = "accepted"
    CLAIMING = "claiming"
    FOLLOWING_CLAIM = "following-claim"


@dataclass
class Pending:
    """One key this tab works on: its phase, its local waiters, the tabs it serves."""

    key: str
    flow: str
    args: tuple[Any, ...]
    phase: Phase = Phase.AWAIT_LEADER
    deadline: float = _NEVER
    target: str | None = None  # the leader asked, or the claim owner followed
    req: int = 0
    call_id: int = 0
    claimed: bool = False  # this tab announced a claim for the key
    last_claim_sent: float = -_NEVER
    waiters: list[int] = field(default_factory=list)
    requesters: set[str] = field(default_factory=set)


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
        self._me = node.node_id
        self._cache: SharedCache = node.cache
        self.flows: set[str] = set()  # flows this tab can run (the leader declines others)
        self.pending: dict[str, Pending] = {}
        self._calls: dict[int, tuple[str, Pending]] = {}
        self._claims: dict[str, _ClaimRecord] = {}
        self._backoffs: dict[str, _Backoff] = {}
        self._attempts: dict[str, int] = {}
        self._next_id = 0

    # --- public side ------------------------------------------------------------------

    def execute(self, flow: str, args: tuple[Any, ...], now: float) -> int:
        """Start an execute; its outcome comes as a Resolve/Reject effect for the returned waiter."""
        key = cache_key(flow, args)  # TypeError for arguments that are not JSON
        waiter = self._new_id()
        entry = self._cache.get(key, now)
        if entry is not None:
            self._node.stats.served_from_cache += 1
            self._node.emit(Resolve(waiter, entry.value, "cache"))
            return waiter
        backoff = self._active_backoff(key, now)
        if backoff is not None:
            self._node.emit(Reject(waiter, self._shared_error(key, backoff, now)))
            return waiter
        pending = self.pending.get(key)
        if pending is None:
            pending = self.pending[key] = Pending(key, flow, tuple(args))
            pending.waiters.append(waiter)
            self._route(pending, now)
        else:
            pending.waiters.append(waiter)
        return waiter

    def share(self, key: str, value: Any, now: float) -> None:
        """Offer a result produced outside any flow (``FlowMesh.share_result``)."""
        check_json(value, f"the value shared for {key!r}")
        self._publish(key, value, now, requesters=set())
        pending = self.pending.get(key)
        if pending is not None and pending.phase is not Phase.CALLING:
            del self.pending[key]
            self._resolve(pending, value, "call")

    def invalidate(self, key: str | None, now: float) -> None:
        self._cache.invalidate(key)
        self._node.send(Invalidate(self._me, key))

    def call_succeeded(self, call_id: int, value: Any, now: float) -> None:
        key, pending = self._calls.pop(call_id)
        if self.pending.get(key) is pending:
            del self.pending[key]
        try:
            self._publish(key, value, now, pending.requesters)
        except MessageTooLarge as error:
            self._send_failure(key, error, now, pending.requesters, back_off=False)
        self._resolve(pending, value, "call")

    def call_failed(self, call_id: int, error: BaseException, now: float, back_off: bool = True) -> None:
        key, pending = self._calls.pop(call_id)
        if self.pending.get(key) is pending:
            del self.pending[key]
        self._node.stats.failed_calls += 1
        self._send_failure(key, error, now, pending.requesters, back_off)
        for waiter in pending.waiters:
            self._node.emit(Reject(waiter, error))

    def abandon_all(self, error: BaseException) -> None:
        """Fail every local waiter (the member is leaving)."""
        for pending in self.pending.values():
            for waiter in pending.waiters:
                self._node.emit(Reject(waiter, error))
            pending.waiters.clear()
        self.pending.clear()

    def snapshot_failures(self, now: float, origin: str | None = None) -> list[SyncFailure]:
        return [
            SyncFailure(key, b.error_type, b.message, b.until - now, b.attempt, b.origin)
            for key, b in self._backoffs.items()
            if b.until > now and (origin is None or b.origin == origin)
        ]

    # --- time ----------------------------------------------------------------------------

    def deadline(self) -> float:
        soonest = _NEVER
        for pending in self.pending.values():
            soonest = min(soonest, pending.deadline)
        return soonest

    def tick(self, now: float) -> None:
        for pending in [p for p in self.pending.values() if p.deadline <= now]:
            if self.pending.get(pending.key) is not pending:
                continue
            if pending.phase is Phase.CALLING:  # a claimed call in progress: keep the claim alive
                self._node.send(Claim(self._me, pending.key, True))
                pending.last_claim_sent = now
                pending.deadline = now + self._config.heartbeat
            elif pending.phase is Phase.CLAIMING:
                self._start_call(pending, now)
            elif pending.phase is Phase.FOLLOWING_CLAIM:
                self._claims.pop(pending.key, None)  # its owner went silent: take over
                self._route(pending, now)
            else:  # no leader in time, no accept in time, or the accepted call took too long
                self._fall_back(pending, now)
        if len(self._backoffs) > 4 * self._config.max_entries:
            self._backoffs = {k: b for k, b in self._backoffs.items() if b.until > now}

    # --- election events ---------------------------------------------------------------

    def on_leader_change(self, leader: str | None, now: float) -> None:
        """Send every request waiting on a leader to the new one (or serve it, if that is us)."""
        for pending in list(self.pending.values()):
            if pending.phase not in (Phase.AWAIT_LEADER, Phase.REQUESTED, Phase.ACCEPTED):
                continue
            if pending.target == leader and leader is not None:
                continue
            if leader == self._me:
                self._start_call(pending, now)
            elif leader is not None:
                self._request(pending, leader, now)
            else:
                pending.phase, pending.target = Phase.AWAIT_LEADER, None
                pending.deadline = now + self._config.effective_request_timeout

    def on_peer_gone(self, node_id: str, now: float) -> None:
        """A tab left: claims it held are taken over at once."""
        for key in [k for k, c in self._claims.items() if c.owner == node_id]:
            del self._claims[key]
        for pending in list(self.pending.values()):
            if pending.phase is Phase.FOLLOWING_CLAIM and pending.target == node_id:
                self._route(pending, now)

    # --- messages ------------------------------------------------------------------------

    def on_message(self, message: Message, now: float) -> None:
        if isinstance(message, Request):
            self._on_request(message, now)
        elif isinstance(message, Accept):
            pending = self.pending.get(message.key)
            if pending and pending.phase is Phase.REQUESTED and pending.req == message.req:
                pending.phase = Phase.ACCEPTED
                pending.deadline = now + self._config.call_timeout
        elif isinstance(message, Decline):
            self._on_decline(message, now)
        elif isinstance(message, Result):
            self._on_result(message, now)
        elif isinstance(message, Failure):
            self._on_failure(message, now)
        elif isinstance(message, Claim):
            self._on_claim(message, now)
        elif isinstance(message, Invalidate):
            self._cache.invalidate(message.key)
        elif isinstance(message, Sync):
            self._on_sync(message, now)
        elif isinstance(message, Hello):
            self._on_hello(message, now)
        elif isinstance(message, Bye):
            self.on_peer_gone(message.src, now)

    def _on_request(self, message: Request, now: float) -> None:
        node = self._node
        if node.role is not Role.LEADER:
            node.send(Decline(self._me, message.src, message.req, message.key, "not-leader"))
            return
        if message.flow not in self.flows:
            node.send(Decline(self._me, message.src, message.req, message.key, "unknown-flow"))
            return
        if cache_key(message.flow, message.args) != message.key:
            node.stats.drop("bad-key")
            return
        entry = self._cache.get(message.key, now)
        if entry is not None:
            node.stats.requests_served += 1
            shared = self._config.share_cache
            node.send(Result(self._me, entry.key, entry.value, entry.version, entry.origin, entry.age(now),
                             shared, None if shared else [message.src]))
            return
        backoff = self._active_backoff(message.key, now)
        if backoff is not None:
            node.send(Failure(self._me, message.key, backoff.error_type, backoff.message, backoff.until - now,
                              backoff.attempt, True, [message.src]))
            return
        node.stats.requests_served += 1
        pending = self.pending.get(message.key)
        if pending is None:
            pending = self.pending[message.key] = Pending(message.key, message.flow, tuple(message.args))
            pending.requesters.add(message.src)
            self._route(pending, now)
        else:
            pending.requesters.add(message.src)
        node.send(Accept(self._me, message.src, message.req, message.key))

    def _on_decline(self, message: Decline, now: float) -> None:
        pending = self.pending.get(message.key)
        if not pending or pending.req != message.req or pending.phase not in (Phase.REQUESTED, Phase.ACCEPTED):
            return
        leader = self._node.leader
        if message.reason == "not-leader" and leader not in (None, message.src, self._me):
            self._request(pending, leader, now)  # type: ignore[arg-type]
        else:
            self._fall_back(pending, now)

    def _on_result(self, message: Result, now: float) -> None:
        if message.to is not None and self._me not in message.to:
            return
        self._claims.pop(message.key, None)
        self._backoffs.pop(message.key, None)
        self._attempts.pop(message.key, None)
        if message.shared and self._config.share_cache:
            self._store(message.key, message.value, message.version, message.origin, message.age, now)
        pending = self.pending.get(message.key)
        if pending is None or pending.phase is Phase.CALLING:
            return  # our own call, if any, still publishes its result when it ends
        del self.pending[message.key]
        self._resolve(pending, message.value, "mesh")
        unserved = pending.requesters - set(message.to) if message.to is not None else set()
        if unserved:
            self._node.send(Result(self._me, message.key, message.value, message.version, message.origin,
                                   message.age, message.shared, sorted(unserved)))

    def _on_failure(self, message: Failure, now: float) -> None:
        if message.to is not None and self._me not in message.to:
            return
        self._claims.pop(message.key, None)
        if message.shared and self._config.share_errors and message.retry_in > 0:
            self._backoffs[message.key] = _Backoff(now + message.retry_in, message.error_type, message.message,
                                                    message.attempt, message.src)
            self._attempts[message.key] = max(self._attempts.get(message.key, 0), message.attempt)
        error = SharedFlowError(message.key, message.error_type, message.message, message.src, message.retry_in)
        self._node.emit(FailureShared(message.key, error))
        pending = self.pending.get(message.key)
        if pending is None or pending.phase is Phase.CALLING:
            return
        del self.pending[message.key]
        for waiter in pending.waiters:
            self._node.emit(Reject(waiter, error))
        unserved = pending.requesters - set(message.to) if message.to is not None else set()
        if unserved:
            self._node.send(Failure(self._me, message.key, message.error_type, message.message, message.retry_in,
                                    message.attempt, message.shared, sorted(unserved)))

    def _on_claim(self, message: Claim, now: float) -> None:
        patience = self._config.silence_limit(self._config.heartbeat, False)
        record = _ClaimRecord(message.src, message.running, now + patience)
        current = self._claims.get(message.key)
        if current is None or current.expires <= now or current.owner == record.owner or record.rank() > current.rank():
            self._claims[message.key] = record
        pending = self.pending.get(message.key)
        if pending is None:
            return
        if pending.phase is Phase.CALLING:
            if now - pending.last_claim_sent >= self._config.claim_window:
                pending.last_claim_sent = now
                self._node.send(Claim(self._me, message.key, True))  # we are running it: they yield
        elif pending.phase is Phase.CLAIMING:
            if record.rank() > (False, self._me):
                self._follow_claim(pending, self._claims[message.key])
        elif pending.phase is Phase.FOLLOWING_CLAIM:
            best = self._claims[message.key]
            pending.target, pending.deadline = best.owner, best.expires

    def _on_sync(self, message: Sync, now: float) -> None:
        if self._config.share_cache:
            for entry in message.entries:
                self._store(entry.key, entry.value, entry.version, entry.origin, entry.age, now)
                pending = self.pending.get(entry.key)
                if pending is not None and pending.phase is not Phase.CALLING and self._cache.get(entry.key, now):
                    del self.pending[entry.key]
                    self._resolve(pending, entry.value, "mesh")
        if self._config.share_errors:
            for failure in message.failures:
                if failure.retry_in > 0 and failure.key not in self._backoffs:
                    self._backoffs[failure.key] = _Backoff(now + failure.retry_in, failure.error_type,
                                                           failure.message, failure.attempt, failure.origin)
                    self._attempts[failure.key] = max(self._attempts.get(failure.key, 0), failure.attempt)

    def _on_hello(self, message: Hello, now: float) -> None:
        # The leader knows every shared entry; without a leader each tab sends what it produced.
        if self._node.role is Role.LEADER:
            origin = None
        elif self._node.role is Role.PEER:
            origin = self._me
        else:
            return
        entries = self._cache.snapshot(now, origin) if self._config.share_cache else []
        failures = self.snapshot_failures(now, origin) if self._config.share_errors else []
        self._send_sync(message.src, entries, failures)

    def _send_sync(self, dst: str, entries: list[Any], failures: list[SyncFailure]) -> None:
        if not entries and not failures:
            return
        try:
            self._node.send(Sync(self._me, dst, entries, failures))
        except MessageTooLarge:
            if len(entries) + len(failures) == 1:
                return  # one entry too large to send on its own: the joiner will ask for it
            half_e, half_f = len(entries) // 2, len(failures) // 2
            self._send_sync(dst, entries[:half_e], failures[:half_f])
            self._send_sync(dst, entries[half_e:], failures[half_f:])

    # --- transitions -----------------------------------------------------------------------

    def _route(self, pending: Pending, now: float) -> None:
        claim = self._live_claim(pending.key, now)
        if claim is not None:
            self._follow_claim(pending, claim)
        elif self._node.role is Role.PEER:
            self._claim(pending, now)
        elif self._node.role is Role.LEADER:
            self._start_call(pending, now)
        elif self._node.leader is not None:
            self._request(pending, self._node.leader, now)
        else:
            pending.phase, pending.target = Phase.AWAIT_LEADER, None
            pending.deadline = now + self._config.effective_request_timeout

    def _request(self, pending: Pending, leader: str, now: float) -> None:
        pending.phase, pending.target = Phase.REQUESTED, leader
        pending.req = self._new_id()
        pending.deadline = now + self._config.effective_request_timeout
        self._node.send(Request(self._me, leader, pending.req, pending.key, pending.flow, list(pending.args)))

    def _fall_back(self, pending: Pending, now: float) -> None:
        self._node.stats.fallbacks += 1
        claim = self._live_claim(pending.key, now)
        if claim is not None:
            self._follow_claim(pending, claim)
        else:
            self._claim(pending, now)

    def _claim(self, pending: Pending, now: float) -> None:
        pending.phase, pending.target, pending.claimed = Phase.CLAIMING, self._me, True
        pending.deadline = now + self._config.claim_window
        pending.last_claim_sent = now
        self._node.send(Claim(self._me, pending.key, False))

    def _follow_claim(self, pending: Pending, claim: _ClaimRecord) -> None:
        pending.phase, pending.target, pending.deadline = Phase.FOLLOWING_CLAIM, claim.owner, claim.expires

    def _start_call(self, pending: Pending, now: float) -> None:
        if pending.flow not in self.flows:
            # Only a leader serving a request reaches here without the flow; it declined those.
            self._fail_locally(pending, LookupError(f"this tab has no flow {pending.flow!r}"))
            return
        pending.phase, pending.target = Phase.CALLING, self._me
        pending.call_id = self._new_id()
        pending.deadline = now + self._config.heartbeat if pending.claimed else _NEVER
        self._calls[pending.call_id] = (pending.key, pending)
        self._node.stats.calls += 1
        self._node.emit(StartCall(pending.call_id, pending.flow, pending.args, pending.key))

    def _fail_locally(self, pending: Pending, error: BaseException) -> None:
        self.pending.pop(pending.key, None)
        for waiter in pending.waiters:
            self._node.emit(Reject(waiter, error))

    # --- outcomes --------------------------------------------------------------------------

    def _publish(self, key: str, value: Any, now: float, requesters: set[str]) -> None:
        version = self._cache.next_version(key)
        shared = self._config.share_cache
        if shared or requesters:
            self._node.send(Result(self._me, key, value, version, self._me, 0.0, shared,
                                   None if shared else sorted(requesters)))
        self._claims.pop(key, None)
        self._backoffs.pop(key, None)
        self._attempts.pop(key, None)
        self._store(key, value, version, self._me, 0.0, now)

    def _send_failure(self, key: str, error: BaseException, now: float, requesters: set[str], back_off: bool) -> None:
        self._claims.pop(key, None)
        message = str(error)
        if not is_text(message):  # e.g. a file name decoded with surrogateescape: UTF-8 cannot carry it
            message = message.encode("utf-8", "backslashreplace").decode()
        shared = self._config.share_errors
        attempt = self._attempts.get(key, 0) + 1
        retry_in = 0.0
        if back_off and shared:
            retry_in = min(self._config.error_backoff * 2 ** (attempt - 1), self._config.max_error_backoff)
            self._attempts[key] = attempt
            self._backoffs[key] = _Backoff(now + retry_in, type(error).__name__, message, attempt, self._me)
        if shared or requesters:
            self._node.send(Failure(self._me, key, type(error).__name__, message, retry_in, attempt,
                                    shared and back_off, None if shared else sorted(requesters)))
        self._node.emit(FailureShared(key, error))

    def _store(self, key: str, value: Any, version: int, origin: str, age: float, now: float) -> None:
        if self._cache.offer(key, value, version, origin, age, now):
            self._node.emit(CacheUpdated(key, value, origin))

    def _resolve(self, pending: Pending, value: Any, source: Source) -> None:
        if source == "mesh":
            self._node.stats.served_by_mesh += len(pending.waiters)
        for waiter in pending.waiters:
            self._node.emit(Resolve(waiter, value, source))

    # --- lookups ---------------------------------------------------------------------------

    def _live_claim(self, key: str, now: float) -> _ClaimRecord | None:
        claim = self._claims.get(key)
        if claim is None or claim.expires <= now or claim.owner == self._me:
            return None
        return claim

    def _active_backoff(self, key: str, now: float) -> _Backoff | None:
        backoff = self._backoffs.get(key)
        return backoff if backoff is not None and backoff.until > now else None

    def _shared_error(self, key: str, backoff: _Backoff, now: float) -> SharedFlowError:
        return SharedFlowError(key, backoff.error_type, backoff.message, backoff.origin, backoff.until - now)

    def _new_id(self) -> int:
        self._next_id += 1
        return self._next_id
