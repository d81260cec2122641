"""What a tab tells the others: its outcomes, its cache to a joiner, and answers from its cache.

A result this tab produced is stored under a new version and broadcast (with
``share_cache``; else sent to the tabs that asked); a failure starts the shared
back-off and is broadcast (with ``share_errors``). A joiner's ``Hello`` is answered
with a ``Sync`` of the cache and the back-offs (by the leader, or, peer-to-peer, by
each tab for what it produced). Every answer that carries cached data costs bytes on
every tab's channel, whoever asked, so they share one budget: a token bucket refilled
at ``max_message_bytes`` per heartbeat, which a flood of small asks cannot overdraw.
"""

from __future__ import annotations

from ..errors import MessageTooLarge
from .backoff import MAX_ERROR_TEXT, MAX_ERROR_TYPE, Backoff, SharedBackoff
from .cache import CacheEntry, SharedCache
from .config import MeshConfig
from .effects import CacheUpdated, FailureShared
from .election import Role
from .pending import PendingTable, Phase, Router
from .port import Port
from .values import dump_json, is_text, load_json
from .wire import MAX_COUNT, Claim, Failure, Hello, Result, Sync, SyncEntry, SyncFailure

__all__ = ["ResultSharing", "MAX_ADOPTED_VERSION", "describe"]

# The highest version a tab stores from the wire: its own next version of the key must
# still be a number every tab decodes (as for terms: election.MAX_ADOPTED_TERM).
MAX_ADOPTED_VERSION = MAX_COUNT - 2**32


def describe(error: BaseException) -> str:
    """``str(error)``, or a stand-in when the exception cannot even say what it is."""
    try:
        return str(error)
    except Exception:
        return f"<{type(error).__name__} whose message cannot be read>"


class ResultSharing:
    """Publishing this tab's outcomes, storing the others', and answering from the cache."""

    def __init__(self, port: Port, config: MeshConfig, cache: SharedCache, backoff: SharedBackoff,
                 table: PendingTable, router: Router) -> None:
        self._port = port
        self._config = config
        self._cache = cache
        self._backoff = backoff
        self._table = table
        self._router = router
        self._serve_tokens = float(2 * config.max_message_bytes)
        self._serve_refilled = 0.0

    # --- this tab's outcomes ---------------------------------------------------------------

    def publish(self, key: str, data: str, now: float, requesters: set[str], started: float | None) -> None:
        """Store a result this tab produced under a new version, and tell the tabs that need it.

        ``started``: when its call began (wall ms), for the tabs that invalidated the key's flow.
        """
        port = self._port
        version = self._cache.next_version(key, port.wall())
        shared = self._config.share_cache
        self._backoff.succeeded(key)
        self.store(key, data, version, port.me(), 0.0, now, started)
        if shared or requesters:
            sent = port.send(Result(src=port.me(), key=key, value=load_json(data), version=version,
                                    origin=port.me(), age=0.0, shared=shared,
                                    to=None if shared else sorted(requesters), sent=port.wall(), started=started))
            if not sent:  # too large for the channel: the other tabs must not wait for it
                error = MessageTooLarge(f"the result of {key!r} exceeds max_message_bytes "
                                        f"({self._config.max_message_bytes})")
                self.publish_failure(key, error, now, requesters, back_off=False)

    def publish_failure(self, key: str, error: BaseException, now: float, requesters: set[str],
                        back_off: bool, started: float | None = None, ongoing: Backoff | None = None) -> None:
        """A call of ``key`` failed here: start the shared back-off (if ``back_off``) and tell the tabs.

        ``ongoing``: the back-off of ``key`` that stopped the call before its next attempt. The
        tabs are told it as it stands, for the server failed meanwhile and they may not have
        heard it as shared: a call superseded by an invalidation tells its failure only to its
        own waiters (simulator seed 27271: another tab then called the failing key at once).
        """
        port = self._port
        error_type, message = _error_fields(error)
        shared = self._config.share_errors
        if ongoing is not None and shared and ongoing.until > now:
            attempt, retry_in, back_off = ongoing.attempt, ongoing.until - now, True
        else:
            attempt = self._backoff.next_attempt(key)
            retry_in = self._back_off(key, attempt, error_type, message, now) if back_off and shared else 0.0
        if shared or requesters:
            port.send(Failure(src=port.me(), key=key, error_type=error_type, message=message, retry_in=retry_in,
                              attempt=attempt, shared=shared and back_off, to=None if shared else sorted(requesters),
                              started=started))
        port.emit(FailureShared(key, error))

    def publish_outdated_failure(self, key: str, error: BaseException, now: float, requesters: set[str],
                                 claimed: bool, back_off: bool, started: float | None) -> None:
        """A call superseded by an invalidation of ``key`` failed here.

        Only the executes that waited on it before the invalidation get the failure (the tabs
        that asked; every tab, unshared, if this tab claimed the key: a claim's followers are
        anonymous); the executes after it wait for the newer call. But the failure is the
        server's state now, so this tab, which calls the key, backs off all the same: the newer
        call's next attempt must not hammer a failing server (simulator seed 3588).
        """
        error_type, message = _error_fields(error)
        if back_off and self._config.share_errors:
            self._back_off(key, self._backoff.next_attempt(key), error_type, message, now)
        if requesters or claimed:
            port = self._port
            port.send(Failure(src=port.me(), key=key, error_type=error_type, message=message, retry_in=0.0,
                              attempt=1, shared=False, to=None if claimed else sorted(requesters), started=started))

    def _back_off(self, key: str, attempt: int, error_type: str, message: str, now: float) -> float:
        """Start this tab's back-off of ``key`` after its ``attempt``-th failure here; how long it lasts."""
        retry_in = self._backoff.delay(attempt)
        self._backoff.set(key, Backoff(now + retry_in, error_type, message, attempt, self._port.me()))
        return retry_in

    def store(self, key: str, data: str, version: int, origin: str, age: float, now: float,
              started: float | None) -> None:
        """Offer a result to the cache (the newest version wins); say so if it entered.

        A result of a call that did not start after this tab's latest invalidation of the
        key's flow is refused: it may predate the mutation (see ``Router.fresh``).
        """
        if version > MAX_ADOPTED_VERSION:
            self._port.stats.drop("version-range")  # our next version of the key could not be sent
            return
        if not self._router.fresh(key, started):
            self._port.stats.drop("invalidated")  # a call older than the flow's invalidation made it
            return
        if self._cache.offer(key, data, version, origin, age, now, started):
            self._port.emit(CacheUpdated(key, data, origin))

    # --- answers from the cache ------------------------------------------------------------

    def may_serve(self, now: float) -> bool:
        """Whether this tab's budget of bytes for answers with cached data allows one more now."""
        capacity = 2.0 * self._config.max_message_bytes
        refill = (now - self._serve_refilled) * self._config.max_message_bytes / self._config.heartbeat
        self._serve_tokens = min(capacity, self._serve_tokens + max(0.0, refill))
        self._serve_refilled = now
        if self._serve_tokens > 0:
            return True
        self._port.stats.answers_skipped += 1
        return False

    def serve_entry(self, entry: CacheEntry, asker: str, now: float) -> None:
        """Answer ``asker`` with a cached entry (broadcast, with ``share_cache``), or say it cannot travel."""
        port, shared = self._port, self._config.share_cache
        size = port.send(Result(src=port.me(), key=entry.key, value=entry.value, version=entry.version,
                                origin=entry.origin, age=entry.age(now), shared=shared,
                                to=None if shared else [asker], sent=port.wall(),
                                started=entry.started if entry.started is not None
                                else self._router.started_bound(entry.key)))
        if size:
            self._serve_tokens -= size
        else:  # as when it was produced: the asker gets the error instead of calling again
            port.send(Failure(src=port.me(), key=entry.key, error_type="MessageTooLarge",
                              message=f"the result of {entry.key[:200]!r} exceeds max_message_bytes "
                                      f"({self._config.max_message_bytes})",
                              retry_in=0.0, attempt=1, shared=False, to=[asker]))

    def answer_claim(self, message: Claim, now: float) -> None:
        """The tab that produced a fresh entry answers a claim of its key with it.

        The claimant may not hold the entry (without ``share_cache`` nobody else does, or it
        joined after the result): it takes this answer instead of calling.
        """
        entry = self._cache.get(message.key, now)
        mine = entry is not None and self._port.is_me(entry.origin)
        if mine and self.may_serve(now):
            assert entry is not None
            self.serve_entry(entry, message.src, now)

    # --- joiners ---------------------------------------------------------------------------

    def on_hello(self, message: Hello, now: float) -> None:
        # The leader knows every shared entry; without a leader each tab sends what it produced
        # (under any ID it had: a tab renamed after a twin keeps serving its own results).
        port = self._port
        role = port.role()
        if role not in (Role.LEADER, Role.PEER):
            return
        if not self.may_serve(now):
            port.stats.syncs_skipped += 1  # the joiner asks for what it needs instead
            return
        mine = role is Role.PEER
        entries = [e for e in self._cache.snapshot(now) if not mine or port.is_me(e.origin)]
        failures = [f for f in self._backoff.snapshot(now) if not mine or port.is_me(f.origin)]
        self._send_sync(message.src, entries if self._config.share_cache else [],
                        failures if self._config.share_errors else [])

    def _send_sync(self, dst: str, entries: list[SyncEntry], failures: list[SyncFailure]) -> None:
        """Send what a joiner should know, in as few messages as fit; what fits in none is left out."""
        items: list[SyncEntry | SyncFailure] = [*entries, *failures]
        if not items:
            return
        message = Sync(src=self._port.me(), dst=dst, entries=[i for i in items if isinstance(i, SyncEntry)],
                       failures=[i for i in items if isinstance(i, SyncFailure)], sent=self._port.wall())
        size = self._port.send(message)
        if size:
            self._serve_tokens -= size
        elif len(items) > 1:  # halves of the items: each call has fewer, so this ends (2n sends at most)
            half = len(items) // 2
            for part in (items[:half], items[half:]):
                self._send_sync(dst, [i for i in part if isinstance(i, SyncEntry)],
                                [i for i in part if isinstance(i, SyncFailure)])
        # else: one item too large to send on its own: the joiner will ask for it

    def on_sync(self, message: Sync, now: float) -> None:
        """Take what a member told this tab on joining: entries, and back-offs it honours."""
        transit = self._port.transit(message.sent)
        if self._config.share_cache:
            for entry in message.entries:
                data = dump_json(entry.value)
                self.store(entry.key, data, entry.version, entry.origin, entry.age + transit, now, None)
                pending = self._table.by_key.get(entry.key)
                if pending is not None and pending.phase is not Phase.CALLING and self._cache.get(entry.key, now):
                    self._router.finish(pending, now, data=data, source="mesh")
        if self._config.share_errors:
            for failure in message.failures:
                retry_in = min(failure.retry_in, self._config.max_error_backoff) - transit
                if retry_in > 0 and not self._backoff.holds(failure.key):
                    self._backoff.set(failure.key, Backoff.heard(
                        until=now + retry_in, error_type=failure.error_type, message=failure.message,
                        attempt=failure.attempt, origin=failure.origin))


def _error_fields(error: BaseException) -> tuple[str, str]:
    """The type name and the text of ``error`` as a ``Failure`` carries them (bounded, UTF-8)."""
    message = describe(error)[:MAX_ERROR_TEXT]
    if not is_text(message):  # e.g. a file name decoded with surrogateescape: UTF-8 cannot carry it
        message = message.encode("utf-8", "backslashreplace").decode()
    return type(error).__name__[:MAX_ERROR_TYPE], message
