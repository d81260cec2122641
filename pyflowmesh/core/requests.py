"""Requests to the leader: a follower asks, the leader serves each key once for every tab.

A follower's execute sends a ``Request`` to the leader (``REQUESTED``); the leader
``Accept``s it (``ACCEPTED``) and runs the flow once for every tab that asks while it
runs, answering from its cache after. A tab that runs or claimed the key, or produced
its fresh entry, serves it too. Whoever cannot serve says why (``Decline``): the
asker then asks the new leader, follows a claim, or claims the key itself. Should
the leader change, a waiting request follows the new one (``Executes``).
"""

from __future__ import annotations

from .backoff import SharedBackoff
from .cache import SharedCache
from .claims import ClaimBook
from .config import MeshConfig
from .election import Role
from .pending import ANY_WAIT, Pending, PendingTable, Phase, Router
from .port import Port
from .sharing import ResultSharing
from .values import cache_key, dump_json, load_json
from .wire import Accept, Decline, Failure, Request

__all__ = ["LeaderRequests", "MAX_SERVED", "MAX_REQUESTERS"]

# Bounds of what other tabs can make this tab hold.
MAX_SERVED = 1024  # keys this tab works on for other tabs at once; more requests are declined "busy"
MAX_REQUESTERS = 256  # tabs one key is served to by name; more are declined "busy"


class LeaderRequests:
    """Asking the leader, and serving what others ask."""

    def __init__(self, port: Port, config: MeshConfig, table: PendingTable, registered: set[str],
                 cache: SharedCache, backoff: SharedBackoff, claims: ClaimBook, sharing: ResultSharing,
                 router: Router) -> None:
        self._port = port
        self._config = config
        self._table = table
        self._registered = registered
        self._cache = cache
        self._backoff = backoff
        self._claims = claims
        self._sharing = sharing
        self._router = router

    def ask(self, pending: Pending, leader: str, now: float) -> None:
        """Ask ``leader`` to serve ``pending``'s key."""
        pending.req = self._table.new_id()
        self._table.enter(pending, Phase.REQUESTED, now + self._config.effective_request_timeout, leader)
        self._port.send(Request(src=self._port.me(), dst=leader, req=pending.req, key=pending.key, flow=pending.flow,
                                args=load_json(pending.args_json), sent=self._port.wall()))

    def on_accept(self, message: Accept, now: float) -> None:
        pending = self._table.by_key.get(message.key)
        if pending and pending.phase is Phase.REQUESTED and pending.req == message.req:
            self._table.enter(pending, Phase.ACCEPTED, now + pending.budget, pending.target)

    def on_decline(self, message: Decline, now: float) -> None:
        pending = self._table.by_key.get(message.key)
        if not pending or pending.req != message.req or pending.phase not in ANY_WAIT - {Phase.AWAIT_LEADER}:
            return
        leader = self._port.leader()
        if pending.phase is Phase.FOLLOWING_CLAIM:
            self._claims.forget(message.key)  # the owner no longer runs it
            self._router.route(pending, now)
        elif message.reason == "not-leader" and leader not in (None, message.src, self._port.me()):
            self.ask(pending, leader, now)  # type: ignore[arg-type]
        else:
            self._router.fall_back(pending, now)

    def on_request(self, message: Request, now: float) -> None:
        port, table = self._port, self._table
        pending = table.by_key.get(message.key)
        # Who serves: the leader; a tab that runs (or claimed) the key; also a tab that
        # produced the fresh entry (without share_cache nobody else holds it).
        owner = pending is not None and pending.phase in (Phase.CALLING, Phase.CLAIMING)
        produced = self._cache.get(message.key, now)
        producer = produced is not None and port.is_me(produced.origin)
        if port.role() is not Role.LEADER and not owner and not producer:
            self._decline(message, "not-leader")
            return
        if message.flow not in self._registered:
            self._decline(message, "unknown-flow")
            return
        if cache_key(message.flow, message.args) != message.key:
            port.stats.drop("bad-key")
            self._decline(message, "bad-key")  # the sender serves itself at once
            return
        if port.transit(message.sent) > self._config.effective_request_timeout:
            self._decline(message, "late")  # its sender stopped waiting for us: it calls itself
            return
        entry = produced  # (fresh: nothing since the lookup above changed the cache)
        if entry is not None:
            if not self._sharing.may_serve(now):
                self._decline(message, "busy")  # flooded with asks: the asker calls itself
                return
            port.stats.requests_served += 1
            self._sharing.serve_entry(entry, message.src, now)
            return
        backoff = self._backoff.active(message.key, now)
        if backoff is not None:
            port.send(Failure(src=port.me(), key=message.key, error_type=backoff.error_type, message=backoff.message,
                              retry_in=backoff.until - now, attempt=backoff.attempt, shared=True, to=[message.src]))
            return
        if pending is None:
            served = sum(1 for p in table.by_key.values() if not p.waiters)
            served += sum(1 for p in table.by_call.values() if p.superseded)  # still running for others
            if served >= MAX_SERVED:
                self._decline(message, "busy")
                return
            pending = table.by_key[message.key] = table.new(message.key, message.flow, dump_json(message.args), now)
            pending.requesters.add(message.src)
            self._router.route(pending, now)
        elif message.src not in pending.requesters:
            if len(pending.requesters) >= MAX_REQUESTERS:
                self._decline(message, "busy")
                return
            pending.requesters.add(message.src)
        port.stats.requests_served += 1
        port.send(Accept(src=port.me(), dst=message.src, req=message.req, key=message.key))

    def _decline(self, message: Request, reason: str) -> None:
        self._port.send(Decline(src=self._port.me(), dst=message.src, req=message.req, key=message.key,
                                reason=reason))
