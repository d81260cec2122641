"""Executes: who calls a flow, and how every waiting tab gets its outcome.

An execute of a key this tab has fresh in its cache, or under a shared back-off,
ends at once. Otherwise it joins the key's :class:`~pyflowmesh.core.pending.Pending`
and :meth:`Executes.route` decides who calls: this tab (it leads, or has waited
long enough), the leader (:mod:`~pyflowmesh.core.requests`), or a claim
(:mod:`~pyflowmesh.core.claims`). Outcomes are published by
:mod:`~pyflowmesh.core.sharing` and the back-off is :mod:`~pyflowmesh.core.backoff`.

Every execute ends: a tab that waits on other tabs gives up at its *patience*
(``request_timeout + call_timeout + heartbeat`` after the execute began) and calls
itself, and its own call ends by ``call_timeout`` (``CancelCall``; its waiters here
and in every tab get a :class:`~pyflowmesh.errors.CallTimeoutError`). Values are held
as canonical JSON text: what a caller or a flow function does to the data it was
given changes nothing the mesh shares.
"""

from __future__ import annotations

import functools
import math
from collections import OrderedDict
from collections.abc import Callable, Iterable
from typing import Any

from ..errors import CallTimeoutError, FlowTimeoutError, MessageTooLarge, shared_error
from .backoff import MAX_ATTEMPT, MAX_ERROR_TEXT, MAX_ERROR_TYPE, Backoff, SharedBackoff
from .cache import SharedCache
from .claims import ClaimBook, PeerClaims
from .config import MeshConfig
from .effects import CallRetrying, CancelCall, FailureShared, FlowsInvalidated, Reject, Resolve, Source, StartCall
from .election import Role
from .pending import ANY_WAIT, NEVER, WAITING_ON_LEADER, Pending, PendingTable, Phase
from .port import Port
from .requests import LeaderRequests
from .sharing import ResultSharing, describe
from .values import MAX_FLOW_KEY, cache_key, check_flow_key, check_json, dump_json, is_text, key_of_flow, load_json
from .wire import (
    MAX_COUNT,
    MAX_INVALIDATED_FLOWS,
    MAX_MILLIS,
    MAX_WALL,
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
    Withdraw,
    encode,
)

__all__ = ["Executes", "MIN_RECORDS", "RECORDS_PER_ENTRY"]

# Claim records, back-off records and failure counts are each bounded by
# max(MIN_RECORDS, RECORDS_PER_ENTRY x max_entries), as the cache's version marks: past
# it, the claim expiring first, or the oldest record, is forgotten.
MIN_RECORDS = 64
RECORDS_PER_ENTRY = 4
# A call this tab starts after applying an invalidation at ``at`` is stamped at least this much
# later (ms): ``started > at`` must hold even when the wall clock has not moved on since.
AFTER_INVALIDATION = 0.001


class Executes:
    """The flow side of one tab's mesh member: its executes, calls and the keys it serves."""

    def __init__(self, port: Port, config: MeshConfig, cache: SharedCache, backoff: SharedBackoff,
                 claims: ClaimBook) -> None:
        self._port = port
        self._config = config
        self._cache = cache
        self._backoff = backoff
        self._claims = claims
        self.registered: set[str] = set()  # flows this tab can run (the leader declines others)
        self.table = PendingTable(config)
        self.policies = self.table.policies  # flow -> CallPolicy (retries, timeout), set by register
        self._sharing = ResultSharing(port, config, cache, backoff, self.table, self)
        self._peer = PeerClaims(port, config, self.table, claims, self._sharing, self)
        self._requests = LeaderRequests(port, config, self.table, self.registered, cache, backoff, claims,
                                        self._sharing, self)
        # Per flow, the latest invalidation of it this tab applied (wall ms): see invalidate_flows.
        self._invalidated: OrderedDict[str, float] = OrderedDict()
        self._max_invalidated = max(MIN_RECORDS, RECORDS_PER_ENTRY * config.max_entries)

    # --- executes ----------------------------------------------------------------------

    def submit(self, flow: str, args: tuple[Any, ...], now: float) -> int:
        """Start an execute; its outcome comes as a Resolve/Reject effect for the returned waiter.

        Raises (before any state changes):
            TypeError: the arguments are not JSON data.
            MessageTooLarge: a request carrying them would exceed ``max_message_bytes``.
        """
        key = cache_key(flow, args)
        args_json = key[len(flow):] if args else "[]"
        self._check_fits(key, flow, args_json)
        table = self.table
        waiter = table.new_id()
        entry = self._cache.get(key, now)
        if entry is not None:
            self._port.stats.served_from_cache += 1
            self._port.emit(Resolve(waiter, entry.data, "cache"))
            return waiter
        backoff = self._backoff.active(key, now)
        if backoff is not None:
            self._port.emit(Reject(waiter, self._backoff.error(key, backoff, now)))
            return waiter
        pending = table.by_key.get(key)
        created = pending is None
        if pending is None:
            pending = table.by_key[key] = table.new(key, flow, args_json, now)
        (pending.later if pending.invalidated else pending.waiters).append(waiter)
        table.by_waiter[waiter] = pending
        if created:
            self.route(pending, now)
        return waiter

    def cancel(self, waiter: int, now: float) -> None:
        """The caller stopped waiting: forget ``waiter``; a key nobody needs any more is dropped.

        A request to another tab is withdrawn (``Withdraw``), so that tab stops serving it
        to us. This tab's own call is cancelled once no tab is known to wait on it: no
        local waiter and no tab that asked for it. A claimed call (peer-to-peer) goes on,
        since the tabs following a claim do not say so; its result still fills the cache.
        """
        pending = self.table.by_waiter.pop(waiter, None)
        if pending is None:
            return
        for waiters in (pending.waiters, pending.later):
            if waiter in waiters:
                waiters.remove(waiter)
        if pending.waiters or pending.later or pending.requesters:
            return
        if pending.phase in ANY_WAIT:
            self.table.drop(pending)
            if pending.phase in (Phase.REQUESTED, Phase.ACCEPTED) and pending.target is not None:
                self._port.send(Withdraw(src=self._port.me(), dst=pending.target, req=pending.req, key=pending.key))
        elif pending.phase is Phase.CALLING and not pending.claimed:
            self._cancel_call(pending)

    def _cancel_call(self, pending: Pending) -> None:
        """Stop this tab's call for ``pending``: nobody waits on it any more."""
        self.table.drop(pending)
        self._end_call(pending)
        self._port.stats.calls_cancelled += 1

    def _end_call(self, pending: Pending) -> None:
        """Forget ``pending``'s call; if an attempt of it runs (not a wait for the next one), cancel it."""
        if self.table.by_call.pop(pending.call_id, None) is not None and pending.retry_at == NEVER:
            self._port.emit(CancelCall(pending.call_id))

    def on_withdraw(self, message: Withdraw, now: float) -> None:
        """A tab that asked us for ``key`` no longer waits: serve it no more, and cancel a call
        nobody waits on."""
        pending = self.table.by_key.get(message.key)
        if pending is None or message.src not in pending.requesters:
            return
        pending.requesters.discard(message.src)
        if not pending.waiters and not pending.later and not pending.requesters:
            if pending.phase is Phase.CALLING and not pending.claimed:
                self._cancel_call(pending)
            elif pending.phase in ANY_WAIT:
                self.table.drop(pending)

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
        self._publish(key, data, now, set(), self._wall(now))  # produced now
        pending = self.table.by_key.get(key)
        if pending is not None and pending.phase is not Phase.CALLING:
            self.finish(pending, now, data=data, source="call")

    def share_error(self, key: str, error: BaseException, now: float) -> None:
        """Offer a failure produced outside any flow (``FlowMesh.share_error``), as a failed call would be.

        Every tab's waiters of ``key`` and its ``on_error`` listeners get it, and the
        key's shared back-off starts (with ``share_errors``; else only this tab's
        waiters and the tabs that asked it for ``key`` hear of it). A tab's waiters fail
        at once even while its own call of ``key`` runs, this tab's or another's (that
        call runs on and shares its result when it ends), as for any shared failure.

        Raises (before any state changes):
            TypeError: ``error`` is not an exception, or ``key`` is not text.
            MessageTooLarge: a failure of ``key`` would not fit in one message.
        """
        self._check_key(key)
        if not isinstance(error, BaseException):
            raise TypeError(f"share_error takes an exception for {key!r}, got {type(error).__name__}")

        def probe() -> Message:  # error fields at their longest (see Sharing.publish_failure)
            return Failure(src="x" * 128, key=key, error_type="x" * MAX_ERROR_TYPE, message="x" * MAX_ERROR_TEXT,
                           retry_in=MAX_MILLIS, attempt=MAX_ATTEMPT, shared=True, started=float(MAX_COUNT))

        if self._config.share_errors and self._exceeds_limit(len(key) + MAX_ERROR_TEXT, probe):
            raise MessageTooLarge(f"the key {key[:40]!r}... does not fit in one message")
        pending = self.table.by_key.get(key)
        self._claims.forget(key)
        self._sharing.publish_failure(key, error, now, pending.requesters if pending is not None else set(), True)
        if pending is None:
            return
        if pending.phase is not Phase.CALLING:
            self.finish(pending, now, error=error)
            return
        self._reject_waiters_of_call(pending, error)

    def _reject_waiters_of_call(self, pending: Pending, error: BaseException) -> None:
        """A shared failure reaches the waiters of this tab's running call of its key.

        The call runs on, for the tabs that asked for it and for the cache; only the
        executes that wait here end now, as every other tab's do: those on this call and
        those after an invalidation of the key, waiting for the next one.
        """
        for waiter in (*pending.waiters, *pending.later):
            self.table.by_waiter.pop(waiter, None)
            self._port.emit(Reject(waiter, error))
        pending.waiters, pending.later = [], []

    def invalidate(self, key: str | None, now: float) -> None:
        """Drop ``key`` (or everything) here and in every tab.

        Raises (before any state changes):
            TypeError: ``key`` is neither ``None`` nor a str of text, or too long for a message.
        """
        self.check_invalidate(key)
        self._drop_cached(key)
        self._port.send(Invalidate(src=self._port.me(), key=key))

    def check_invalidate(self, key: Any) -> None:
        """Raise ``TypeError`` unless ``key`` is ``None`` or a key an Invalidate can carry."""
        if key is not None:
            self._check_key(key)
            if self._exceeds_limit(len(key), functools.partial(Invalidate, src="x" * 128, key=key)):
                raise MessageTooLarge(f"the key {key[:40]!r}... does not fit in one message")

    # --- invalidating whole flows (mutations) ------------------------------------------------

    def invalidate_flows(self, flows: Iterable[str], now: float) -> tuple[str, ...]:
        """Drop every key of ``flows`` (every argument variant) here and in every tab, as of now.

        A mutation succeeded: from now on, for those flows, each tab stores, serves and waits
        only for results of calls that started after this moment (its wall clock: the tabs
        of a browser share it), and a call in progress is superseded. Each tab emits
        ``FlowsInvalidated``, so that what it shows of them is fetched again; the leader
        serves all those requests with one call, even one that arrives before this
        ``Invalidate``: the request says which invalidation it follows (``after``) and the
        leader applies it first.

        Returns:
            The flows, checked, without repeats.

        Raises (before any state changes):
            TypeError, ValueError: ``flows`` is not an iterable of flow keys (1 to
                ``MAX_INVALIDATED_FLOWS`` of them).
            MessageTooLarge: they do not fit in one message.
        """
        checked = self.check_flows(flows)
        at = self._wall(now)
        self._apply_flows(checked, at)
        self._port.send(Invalidate(src=self._port.me(), key=None, flows=list(checked), at=at))
        return checked

    def check_flows(self, flows: Any) -> tuple[str, ...]:
        """``flows`` as a tuple of distinct flow keys an Invalidate can carry, or a TypeError/ValueError."""
        if isinstance(flows, (str, bytes)) or not isinstance(flows, Iterable):
            raise TypeError(f"invalidates takes a list of flow keys, got {flows!r}")
        checked = tuple(dict.fromkeys(check_flow_key(flow) for flow in flows))
        if not 1 <= len(checked) <= MAX_INVALIDATED_FLOWS:
            raise ValueError(f"invalidates takes 1 to {MAX_INVALIDATED_FLOWS} flow keys, got {len(checked)}")
        probe = functools.partial(Invalidate, src="x" * 128, key=None, flows=list(checked), at=MAX_WALL)
        if self._exceeds_limit(sum(map(len, checked)) + 4 * len(checked), probe):
            raise MessageTooLarge("the flow keys to invalidate do not fit in one message")
        return checked

    def invalidated_at(self, flow: str) -> float:
        """When this tab last applied an invalidation of ``flow`` (wall ms), or ``-inf``."""
        return self._invalidated.get(flow, -math.inf)

    def fresh(self, key: str, started: float | None) -> bool:
        """Whether a result of ``key`` whose call started at ``started`` postdates this tab's
        latest invalidation of the key's flow (``None``: unknown, fresh only if there was none)."""
        if not self._invalidated:
            return True
        bound = self._invalidated_at_key(key)
        return bound == -math.inf or (started is not None and started > bound)

    def started_bound(self, key: str) -> float | None:
        """No call behind a fresh entry of ``key`` here started before this: the entries of a flow
        are dropped at its invalidation and only results of later calls enter (see ``fresh``)."""
        bound = self._invalidated_at_key(key) if self._invalidated else -math.inf
        return None if bound == -math.inf else min(MAX_WALL, bound + AFTER_INVALIDATION)

    def _invalidated_at_key(self, key: str) -> float:
        at = -math.inf
        for flow, when in self._invalidated.items():
            if when > at and key_of_flow(key, flow):
                at = when
        return at

    def _wall(self, now: float) -> float:
        """This tab's wall clock (ms) for invalidations; its monotonic clock when it has none."""
        wall = self._port.wall()
        return min(max(0.0, now if wall is None else wall), MAX_WALL)

    def _catch_up(self, flow: str, after: float, now: float) -> None:
        """A request follows an invalidation of ``flow`` at ``after`` this tab may not have heard of
        yet (it comes from another tab, on another path): apply it first, so that neither the cache
        nor a call that started before it answers. Applying it again later changes nothing."""
        if 0 < len(flow) <= MAX_FLOW_KEY and is_text(flow):
            self._apply_flows((flow,), min(after, self._wall(now)))

    def _apply_flows(self, flows: Iterable[str], at: float) -> None:
        """Apply an invalidation of ``flows`` at ``at``: drop their keys, supersede their calls that
        began before ``at`` (one that began later, before this tab heard of it, already fetches the
        new data: refetches join it; an entry whose call began later is that new data, simulator
        seed 5166), and say so (``FlowsInvalidated``). A flow already invalidated at ``at`` or
        later is left alone."""
        applied = tuple(flow for flow in flows if at > self.invalidated_at(flow))
        if not applied:
            return
        for flow in applied:
            self._invalidated[flow] = at
            self._invalidated.move_to_end(flow)
        while len(self._invalidated) > self._max_invalidated:
            self._invalidated.popitem(last=False)  # the least recent: a page invalidating this many flows at once
        for entry in self._cache.held():
            if entry.started is not None and entry.started > at:
                continue  # its call began after the mutation (a tab that hears of it late): the new data
            if any(key_of_flow(entry.key, flow) for flow in applied):
                self._cache.invalidate(entry.key)
                self._claims.forget(entry.key)
        for pending in [p for p in self.table.by_key.values() if p.flow in applied]:
            if pending.phase is Phase.CALLING and pending.started is not None and pending.started > at:
                continue  # its call began after the mutation (before this tab heard of it): it is the refetch
            self._claims.forget(pending.key)
            self._supersede(pending)
        self._port.emit(FlowsInvalidated(applied))

    # --- call outcomes -----------------------------------------------------------------

    def call_succeeded(self, call_id: int, value: Any, now: float) -> None:
        pending = self.table.by_call.pop(call_id, None)
        if pending is None:
            return  # a call given up at its timeout: its waiters already have their outcome
        try:
            self.table.drop(pending)
            try:
                check_json(value, f"the result of flow {pending.flow!r}")
                data = dump_json(value)
            except (TypeError, ValueError) as error:
                self._fail(pending, TypeError(describe(error)), now, back_off=False)
                return
            if pending.superseded:
                # Who waited before the invalidation gets this, no cache does: the tabs that asked, and
                # (a claim's followers are anonymous) every tab, unshared, when this tab claimed the key.
                if pending.requesters or pending.claimed:
                    self._port.send(Result(src=self._port.me(), key=pending.key, value=load_json(data), version=0,
                                           origin=self._port.me(), age=0.0, shared=False,
                                           to=None if pending.claimed else sorted(pending.requesters),
                                           sent=self._port.wall(), started=pending.started))
            else:
                self._publish(pending.key, data, now, pending.requesters, pending.started)
            self.finish(pending, now, data=data, source="call")
        except Exception as error:  # a bug must fail only the waiters of this call
            self._port.internal_error(error)
            self.finish(pending, now, error=error, renew=False)

    def call_failed(self, call_id: int, error: BaseException, now: float, back_off: bool = True,
                    retry: bool = True) -> None:
        pending = self.table.by_call.pop(call_id, None)
        if pending is None:
            return
        try:
            if retry and self._retry(pending, error, now):
                return
            self.table.drop(pending)
            self._fail(pending, error, now, back_off)
        except Exception as bug:
            self._port.internal_error(bug)
            self.finish(pending, now, error=error, renew=False)

    def _retry(self, pending: Pending, error: BaseException, now: float) -> bool:
        """Schedule the next attempt of ``pending``'s call, if its flow's policy allows one in time.

        The tabs waiting on the call keep waiting (nothing is sent), a claim stays alive;
        the next attempt gets its call ID now, so the Pending stays reachable (``by_call``)
        even if an invalidation supersedes it meanwhile.
        """
        policy = self.table.policy(pending.flow)
        delay = policy.retry_delay(pending.attempt)
        if pending.attempt >= policy.max_attempts or now + delay >= pending.call_deadline:
            return False
        self._port.emit(CallRetrying(pending.key, pending.flow, pending.attempt, policy.max_attempts, error, delay))
        self._port.stats.retries += 1
        pending.retry_at = now + delay
        pending.call_id = self.table.new_id()
        self.table.by_call[pending.call_id] = pending
        pending.deadline = self._calling_deadline(pending, now)
        return True

    def _calling_deadline(self, pending: Pending, now: float) -> float:
        """When a call in progress needs attention: its claim's refresh, its next attempt, its end."""
        refresh = now + self._config.heartbeat if pending.claimed else NEVER
        return min(refresh, pending.retry_at, pending.call_deadline)

    def abandon_all(self, error: BaseException) -> None:
        """Fail every local waiter (the member is leaving)."""
        for pending in [*self.table.by_key.values(), *self.table.by_call.values()]:
            self.finish(pending, 0.0, error=error, renew=False)
        self.table.by_call.clear()

    def fail_key(self, key: str, error: BaseException) -> None:
        """Fail the local waiters of ``key`` with ``error`` and forget the key (an internal error struck it)."""
        pending = self.table.by_key.get(key)
        if pending is not None:
            self._abort(pending, error)

    # --- time ----------------------------------------------------------------------------

    def deadline(self) -> float:
        return self.table.deadline()

    def tick(self, now: float) -> None:
        table = self.table
        due = {id(p): p for p in [*table.by_key.values(), *table.by_call.values()] if p.deadline <= now}
        for pending in due.values():
            if table.by_key.get(pending.key) is not pending and table.by_call.get(pending.call_id) is not pending:
                continue  # settled by an earlier one in this loop
            try:
                self._on_deadline(pending, now)
            except Exception as error:  # a bug must fail only the waiters of its key
                self._port.internal_error(error)
                self._abort(pending, error)
        self._backoff.expire(now)

    def _on_deadline(self, pending: Pending, now: float) -> None:
        if pending.phase is Phase.CALLING:
            if now >= pending.call_deadline:
                self._time_out(pending, now)
                return
            if now >= pending.retry_at:  # the next attempt
                backoff = self._backoff.active(pending.key, now)
                if backoff is not None:  # another call of the key failed meanwhile: the mesh backs off, so do we
                    self._end_call(pending)  # (its next attempt had not started: nothing to cancel)
                    self.table.drop(pending)
                    self._fail(pending, self._backoff.error(pending.key, backoff, now), now, back_off=False,
                               ongoing=backoff)
                    return
                pending.retry_at = NEVER
                pending.attempt += 1
                self._launch(pending)
            if pending.claimed:  # a claimed call in progress: keep the claim alive
                self._port.send(Claim(src=self._port.me(), key=pending.key, running=True))
            pending.deadline = self._calling_deadline(pending, now)
        elif pending.phase is Phase.CLAIMING:
            self._start_call(pending, now)
        elif now >= pending.patience:  # waited on other tabs long enough: call ourselves
            self._port.stats.fallbacks += 1
            self._start_call(pending, now)
        elif pending.phase is Phase.FOLLOWING_CLAIM:
            self._claims.forget(pending.key)  # its owner went silent: take over
            self.route(pending, now)
        else:  # no leader in time, no accept in time, or the accepted call took too long
            self.fall_back(pending, now)

    # --- the election and the other tabs -------------------------------------------------

    def on_leader_change(self, leader: str | None, now: float) -> None:
        """Send every request waiting on a leader to the new one (or serve it, if that is us)."""
        for pending in list(self.table.by_key.values()):
            if pending.phase not in WAITING_ON_LEADER:
                continue
            if pending.target == leader and leader is not None:
                continue
            if leader == self._port.me():
                self._start_call(pending, now)
            elif leader is not None:
                self._requests.ask(pending, leader, now)
            else:
                self.table.enter(pending, Phase.AWAIT_LEADER, now + self._config.effective_request_timeout)

    def on_renamed(self, now: float) -> None:
        """This tab took a new ID: answers to its requests would go to the old one, so ask again."""
        for pending in list(self.table.by_key.values()):
            if pending.phase in (Phase.REQUESTED, Phase.ACCEPTED) and pending.target is not None:
                self._requests.ask(pending, pending.target, now)

    def on_peer_gone(self, node_id: str, now: float) -> None:
        """A tab left: claims it held are taken over at once; nothing more is sent to it."""
        self._claims.forget_owner(node_id)
        for pending in list(self.table.by_key.values()):
            pending.requesters.discard(node_id)
            if pending.phase is Phase.FOLLOWING_CLAIM and pending.target == node_id:
                self.route(pending, now)
            elif not pending.waiters and not pending.requesters and pending.phase in ANY_WAIT:
                self.table.drop(pending)  # we only waited for the tab that left

    def on_message(self, message: Message, now: float) -> None:
        if isinstance(message, Request):
            if message.after is not None and message.dst == self._port.me():
                self._catch_up(message.flow, message.after, now)
            self._requests.on_request(message, now)
        elif isinstance(message, Accept):
            self._requests.on_accept(message, now)
        elif isinstance(message, Decline):
            self._requests.on_decline(message, now)
        elif isinstance(message, Withdraw):
            if message.dst == self._port.me():
                self.on_withdraw(message, now)
        elif isinstance(message, Result):
            self._on_result(message, now)
        elif isinstance(message, Failure):
            self._on_failure(message, now)
        elif isinstance(message, Claim):
            self._peer.on_claim(message, now)
        elif isinstance(message, Invalidate):
            if message.flows is not None:
                at = self._wall(now)  # it happened before it arrived: a later stamp is not believed
                self._apply_flows(message.flows, at if message.at is None else min(message.at, at))
            else:
                self._drop_cached(message.key)
        elif isinstance(message, Sync):
            self._sharing.on_sync(message, now)
        elif isinstance(message, Hello):
            self._sharing.on_hello(message, now)
        elif isinstance(message, Bye):
            self.on_peer_gone(message.src, now)

    def _on_result(self, message: Result, now: float) -> None:
        if message.to is not None and self._port.me() not in message.to:
            self._peer.owner_done(message.key, message, now)
            return
        started = message.started
        fresh = self.fresh(message.key, started)
        claim = self._claims.get(message.key)
        if fresh or (claim is not None and claim.owner == message.src):
            self._claims.forget(message.key)  # served (or its owner's call ended, if before the invalidation)
        if fresh:
            self._backoff.succeeded(message.key)
        data = dump_json(message.value)
        if message.shared and self._config.share_cache:
            self._sharing.store(message.key, data, message.version, message.origin,
                                message.age + self._port.transit(message.sent), now, started)
        pending = self.table.by_key.get(message.key)
        if pending is None or pending.phase is Phase.CALLING:
            return  # our own call, if any, still publishes its result when it ends
        if pending.after != -math.inf and (started is None or started <= pending.after):
            self._older_outcome(pending, message, now)
            return
        unserved = pending.requesters - set(message.to) if message.to is not None else set()
        self.finish(pending, now, data=data, source="mesh")
        if unserved:
            self._port.send(Result(src=self._port.me(), key=message.key, value=message.value,
                                   version=message.version, origin=message.origin, age=message.age,
                                   shared=message.shared, to=sorted(unserved), sent=message.sent, started=started))

    def _older_outcome(self, pending: Pending, message: Result | Failure, now: float) -> None:
        """The outcome of a call older than the invalidation ``pending`` follows: it waits for a newer one.

        If that was the answer of the tab it asked (a producer that has not heard of the
        invalidation), or the end of the claim it followed, nobody will: it is served anew at
        once, not at its patience.
        """
        if message.to is not None and message.src == pending.target and pending.phase in WAITING_ON_LEADER:
            self.fall_back(pending, now)
        elif pending.phase is Phase.FOLLOWING_CLAIM and pending.target == message.src:
            self.route(pending, now)  # the claim it followed ended with that older call

    def _on_failure(self, message: Failure, now: float) -> None:
        if message.to is not None and self._port.me() not in message.to:
            self._peer.owner_done(message.key, message, now)
            return
        self._claims.forget(message.key)
        retry_in = min(message.retry_in, self._config.max_error_backoff)  # nobody blocks a key longer
        heard = Backoff.heard(until=now + retry_in, error_type=message.error_type, message=message.message,
                              attempt=message.attempt, origin=message.src)
        if message.shared and self._config.share_errors and retry_in > 0:
            self._backoff.set(message.key, heard)
        error = shared_error(message.key, heard.error_type, heard.message, message.src, retry_in)
        self._port.emit(FailureShared(message.key, error))
        pending = self.table.by_key.get(message.key)
        if pending is None:
            return
        if message.started is not None and message.started <= pending.after:
            if pending.phase is not Phase.CALLING:
                self._older_outcome(pending, message, now)  # a call older than the invalidation this wait follows
            return
        if pending.phase is Phase.CALLING:
            if message.shared and self._config.share_errors:
                self._reject_waiters_of_call(pending, error)  # every tab learns it together, callers too
            return
        unserved = pending.requesters - set(message.to) if message.to is not None else set()
        self.finish(pending, now, error=error)
        if unserved:
            self._port.send(Failure(src=self._port.me(), key=message.key, error_type=message.error_type,
                                    message=message.message, retry_in=retry_in, attempt=heard.attempt,
                                    shared=message.shared, to=sorted(unserved)))

    # --- who calls ---------------------------------------------------------------------------

    def route(self, pending: Pending, now: float) -> None:
        """Decide who serves ``pending``: a live claim, this tab, the leader, or a claim of ours."""
        port = self._port
        pending.after = max(pending.after, self.invalidated_at(pending.flow))
        claim = self._claims.live(pending.key, now, port.me())
        role = port.role()
        if now >= pending.patience:
            self._start_call(pending, now)
        elif claim is not None:
            self._peer.follow(pending, claim, now)
        elif role is Role.PEER:
            self._peer.claim(pending, now)
        elif role is Role.LEADER:
            self._start_call(pending, now)
        elif port.leader() is not None:
            self._requests.ask(pending, port.leader(), now)  # type: ignore[arg-type]
        else:
            self.table.enter(pending, Phase.AWAIT_LEADER, now + self._config.effective_request_timeout)

    def fall_back(self, pending: Pending, now: float) -> None:
        """The leader cannot serve ``pending``: follow a live claim, or claim it."""
        self._port.stats.fallbacks += 1
        claim = self._claims.live(pending.key, now, self._port.me())
        if claim is not None:
            self._peer.follow(pending, claim, now)
        else:
            self._peer.claim(pending, now)

    def _start_call(self, pending: Pending, now: float) -> None:
        if pending.flow not in self.registered:
            # Only a leader serving a request reaches here without the flow; it declined those.
            self._fail(pending, LookupError(f"this tab has no flow {pending.flow!r}"), now, back_off=False)
            return
        if pending.invalidated:  # a call that begins after the invalidation is the new call they wait for
            pending.waiters += pending.later
            pending.later, pending.invalidated = [], False
        pending.call_id = self.table.new_id()
        pending.started = max(self._wall(now), self.invalidated_at(pending.flow) + AFTER_INVALIDATION)
        pending.attempt, pending.retry_at = 1, NEVER
        pending.call_deadline = now + pending.budget  # every attempt together (the flow's timeout)
        self.table.enter(pending, Phase.CALLING, self._calling_deadline(pending, now), self._port.me())
        if pending.claimed:  # the claim won: say so, or the tabs following it give it up (see PeerClaims)
            self._port.send(Claim(src=self._port.me(), key=pending.key, running=True))
        self._launch(pending)

    def _launch(self, pending: Pending) -> None:
        """Start attempt ``pending.attempt`` of the call, as ``pending.call_id``."""
        self.table.by_call[pending.call_id] = pending
        self._port.stats.calls += 1
        self._port.emit(StartCall(pending.call_id, pending.flow, pending.args, pending.key, pending.attempt))

    def _time_out(self, pending: Pending, now: float) -> None:
        self._end_call(pending)
        self.table.drop(pending)
        policy = self.table.policy(pending.flow)
        tries = f" in {pending.attempt} attempts" if pending.attempt > 1 else ""
        error: CallTimeoutError
        if policy.timeout is not None:
            limit = policy.timeout
            error = FlowTimeoutError(f"flow {pending.flow!r} took longer than its timeout ({limit:g} ms){tries}")
        else:
            timeout = self._config.call_timeout
            error = CallTimeoutError(f"flow {pending.flow!r} ran longer than call_timeout ({timeout:g} ms){tries}")
        self._fail(pending, error, now, back_off=True)

    def _abort(self, pending: Pending, error: BaseException) -> None:
        self._end_call(pending)
        self.finish(pending, 0.0, error=error, renew=False)

    # --- outcomes --------------------------------------------------------------------------

    def finish(self, pending: Pending, now: float, *, data: str | None = None, error: BaseException | None = None,
               source: Source = "mesh", renew: bool = True) -> None:
        """Give every local waiter of ``pending`` its outcome and forget the key.

        Executes that came after an invalidation of the key wait on, for a new call
        (unless ``renew`` is false: the member is leaving, and they get ``error`` too).
        """
        table, port = self.table, self._port
        table.drop(pending)
        if error is None and source == "mesh":
            port.stats.served_by_mesh += len(pending.waiters)
        for waiter in pending.waiters:
            table.by_waiter.pop(waiter, None)
            if error is not None:
                port.emit(Reject(waiter, error))
            else:
                assert data is not None
                port.emit(Resolve(waiter, data, source))
        pending.waiters = []
        later, pending.later = pending.later, []
        if not later:
            return
        current = table.by_key.get(pending.key)
        if not renew:
            for waiter in later:
                table.by_waiter.pop(waiter, None)
                port.emit(Reject(waiter, error or RuntimeError("execute abandoned")))
        elif current is not None:  # a newer wait on the key exists already: they join it
            (current.later if current.invalidated else current.waiters).extend(later)
            for waiter in later:
                table.by_waiter[waiter] = current
        else:
            self._renew(pending, later, now)

    def _renew(self, old: Pending, waiters: list[int], now: float) -> None:
        """A new Pending for executes that must not take the outcome of an invalidated wait."""
        table = self.table
        backoff = self._backoff.active(old.key, now)
        if backoff is not None:
            for waiter in waiters:
                table.by_waiter.pop(waiter, None)
                self._port.emit(Reject(waiter, self._backoff.error(old.key, backoff, now)))
            return
        pending = table.by_key[old.key] = table.new(old.key, old.flow, old.args_json, now)
        pending.waiters = waiters
        for waiter in waiters:
            table.by_waiter[waiter] = pending
        self.route(pending, now)

    def _fail(self, pending: Pending, error: BaseException, now: float, back_off: bool,
              ongoing: Backoff | None = None) -> None:
        self._port.stats.failed_calls += 1
        if not pending.superseded:
            self._claims.forget(pending.key)
            self._sharing.publish_failure(pending.key, error, now, pending.requesters, back_off, pending.started,
                                          ongoing)
        else:  # (its claim, if any, is the newer call's now)
            self._sharing.publish_outdated_failure(pending.key, error, now, pending.requesters, pending.claimed,
                                                   back_off, pending.started)
        self.finish(pending, now, error=error)

    def _publish(self, key: str, data: str, now: float, requesters: set[str], started: float | None) -> None:
        self._claims.forget(key)
        self._sharing.publish(key, data, now, requesters, started)

    def _drop_cached(self, key: str | None) -> None:
        """Drop ``key`` (or every key) from the cache, and supersede calls of it already running.

        A call that began before the invalidation answers only the executes that were
        already waiting on it; an execute after it starts a new call (``refresh``), and
        the superseded call's result never enters a cache.
        """
        self._cache.invalidate(key)
        for pending in [p for p in self.table.by_key.values() if key in (None, p.key)]:
            self._supersede(pending)

    def _supersede(self, pending: Pending) -> None:
        """``pending``'s key was invalidated: executes from now on wait for a call that begins later."""
        if pending.phase is Phase.CALLING:
            self.table.drop(pending)
            pending.superseded = True
        else:  # waiting on another tab's call, which may be superseded too: later executes ask anew
            pending.invalidated = True

    # --- checks of what a caller gives -------------------------------------------------------

    @staticmethod
    def _check_key(key: Any) -> None:
        if not isinstance(key, str) or not is_text(key):
            raise TypeError(f"a cache key must be a str that UTF-8 can carry, got {key!r}")

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

