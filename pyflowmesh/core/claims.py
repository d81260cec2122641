"""Peer-to-peer claims: who calls a key when no leader serves it.

Without a leader that can serve the key (peer-to-peer strategy, no leader answering
in time, or the leader's page lacks the flow) a tab announces a ``Claim``, waits
``claim_window`` for competing claims, and calls unless a running claim or a higher
tab's claim beats it. Tabs that find a live claim wait for its owner's result, and
take over if the owner goes silent. The owner answers every newcomer's claim (it
says it runs), and a tab that produced a fresh entry answers a claim of its key
with it. What a tab knows of claims is kept by a 16-byte digest of the key, bounded.
"""

from __future__ import annotations

from .backoff import digest
from .config import MeshConfig
from .pending import Pending, PendingTable, Phase, Router
from .port import Port
from .sharing import ResultSharing
from .structs import dataclass  # @dataclass without its cost at import
from .values import load_json
from .wire import Claim, Failure, Request, Result

__all__ = ["ClaimRecord", "ClaimBook", "PeerClaims"]


@dataclass(frozen=True, slots=True)
class ClaimRecord:
    """Another tab's claim of a key, trusted until ``expires``."""

    owner: str
    running: bool
    expires: float

    def rank(self) -> tuple[bool, str]:
        """Claims are ordered: a running one beats an announced one, then the higher tab wins."""
        return (self.running, self.owner)


class ClaimBook:
    """The claims this tab knows of, by key digest; at most ``max_records`` (the soonest to expire go first)."""

    def __init__(self, max_records: int) -> None:
        self._max_records = max_records
        self._claims: dict[bytes, ClaimRecord] = {}

    def __len__(self) -> int:
        return len(self._claims)

    def get(self, key: str) -> ClaimRecord | None:
        return self._claims.get(digest(key))

    def live(self, key: str, now: float, me: str) -> ClaimRecord | None:
        """Another tab's claim of ``key`` still trusted at ``now``."""
        claim = self._claims.get(digest(key))
        if claim is None or claim.expires <= now or claim.owner == me:
            return None
        return claim

    def set(self, key: str, record: ClaimRecord, now: float) -> None:
        key_digest = digest(key)
        if key_digest not in self._claims and len(self._claims) >= self._max_records:
            self._claims = {k: c for k, c in self._claims.items() if c.expires > now}
            if len(self._claims) >= self._max_records:
                del self._claims[min(self._claims, key=lambda k: self._claims[k].expires)]
        self._claims[key_digest] = record

    def forget(self, key: str) -> None:
        self._claims.pop(digest(key), None)

    def forget_owner(self, node_id: str) -> None:
        """Every claim of tab ``node_id`` (it left): they are taken over at once."""
        for key in [k for k, c in self._claims.items() if c.owner == node_id]:
            del self._claims[key]


class PeerClaims:
    """Claims this tab makes, follows and answers."""

    def __init__(self, port: Port, config: MeshConfig, table: PendingTable, book: ClaimBook,
                 sharing: ResultSharing, router: Router) -> None:
        self._port = port
        self._config = config
        self._table = table
        self._book = book
        self._sharing = sharing
        self._router = router

    def claim(self, pending: Pending, now: float) -> None:
        """Announce that this tab will call ``pending``'s key unless a better claim is heard in time."""
        pending.claimed = True
        self._table.enter(pending, Phase.CLAIMING, now + self._config.claim_window, self._port.me())
        self._port.send(Claim(src=self._port.me(), key=pending.key, running=False))

    def follow(self, pending: Pending, claim: ClaimRecord, now: float) -> None:
        """Wait for the owner of ``claim`` to share its outcome."""
        # Peer-to-peer, the owner is a member this tab watches (its Web Lock tells if it dies).
        self._table.enter(pending, Phase.FOLLOWING_CLAIM, claim.expires, claim.owner)
        if not (self._config.share_cache and self._config.share_errors):
            # Nothing is broadcast: the owner answers by name the tabs that asked it.
            pending.req = self._table.new_id()
            self._port.send(Request(src=self._port.me(), dst=claim.owner, req=pending.req, key=pending.key,
                                    flow=pending.flow, args=load_json(pending.args_json), sent=self._port.wall()))

    def on_claim(self, message: Claim, now: float) -> None:
        # A running claim is trusted as long as a leader would be (its owner renews it every
        # heartbeat); an announced one only until its owner should have said it runs: an owner
        # that was answered by another tab's result meanwhile never calls, and never says so.
        config, me = self._config, self._port.me()
        if message.running:
            patience = config.silence_limit(config.heartbeat, False)
        else:
            patience = config.claim_window + 2 * config.answer_timeout
        record = ClaimRecord(message.src, message.running, now + patience)
        current = self._book.get(message.key)
        if current is None or current.expires <= now or current.owner == record.owner or record.rank() > current.rank():
            self._book.set(message.key, record, now)
        pending = self._table.by_key.get(message.key)
        if pending is None:
            if not message.running:
                self._sharing.answer_claim(message, now)
            return
        if pending.phase is Phase.CALLING:
            if not message.running:  # a newcomer about to call: every one hears that we run it
                self._port.send(Claim(src=me, key=message.key, running=True))
        elif pending.phase is Phase.CLAIMING:
            if record.rank() > (False, me):
                self.follow(pending, record, now)
            elif not message.running:  # a lower claimant may have missed our claim (it joined after)
                self._port.send(Claim(src=me, key=message.key, running=False))
        elif pending.phase is Phase.FOLLOWING_CLAIM:
            best = self._book.get(message.key)
            if best is not None and best.owner != pending.target:
                self.follow(pending, best, now)
            elif best is not None:
                pending.deadline = min(best.expires, pending.patience)

    def owner_done(self, key: str, message: Result | Failure, now: float) -> None:
        """An outcome of ``key`` addressed to other tabs: a claim of the sender or of an addressee is over.

        The claimant was answered, so it will not call. A tab of ours that follows such a
        claim asked its owner by name, if nothing is broadcast, and waits for that answer
        (the owner serves it from its cache, or declines and it moves on); where outcomes
        are broadcast it asked nobody, so it moves on now.
        """
        ended = {message.src, *(message.to or ())}
        claim = self._book.get(key)
        if claim is not None and claim.owner in ended:
            self._book.forget(key)
        pending = self._table.by_key.get(key)
        broadcast = self._config.share_cache and self._config.share_errors
        if broadcast and pending is not None and pending.phase is Phase.FOLLOWING_CLAIM and pending.target in ended:
            self._router.route(pending, now)
