"""Who is in the mesh: the live members, cheaply, and who takes over from the leader.

Knowing the members costs nothing at idle where the browser has Web Locks: every
member holds a lock named after its ID, the leader watches its followers' locks and
the followers watch the leader's, so the browser tells when any tab goes. The
leader lists the members (and names its successor) in the heartbeats it sends
anyway, and sends one at once when the list changes. So at idle a mesh of ``n``
tabs with Web Locks posts only the leader's heartbeats: 60 a minute at a heartbeat
of 1 s, whatever ``n``.

A member no lock covers (no Web Locks in its page or in the leader's) says it is
alive once a heartbeat (``Alive``, skipped when it posted anything else), and is
presumed gone after the same silence a leader is allowed (:meth:`MeshConfig.silence_limit`,
longer when its tab is hidden): ``n - 1`` more posts a heartbeat, and a follower
that crashes leaves the list as fast as a leader would be replaced.

Without a leader (peer-to-peer) every tab keeps its own list: joins are answered
with an ``Alive``, and each tab watches the others' locks.

The list is bounded (:data:`~pyflowmesh.core.wire.MAX_MEMBERS`): beyond it a new ID
is not listed (counted in ``stats.members_unlisted``), so forged IDs
cannot grow it; with Web Locks a forged ID holds no lock and leaves at once.
"""

from __future__ import annotations

from collections.abc import Iterable

from .config import MeshConfig
from .stats import MeshStats
from .structs import dataclass  # @dataclass without its cost at import
from .wire import MAX_MEMBERS, MemberEntry

__all__ = ["Member", "MeshChange", "Members"]

_NEVER = float("inf")


@dataclass(frozen=True, slots=True)
class Member:
    """One live member of the mesh as this tab sees it.

    ``role`` is ``"leader"``, ``"follower"`` or ``"peer"`` for the others; for this tab,
    its own role (``"joining"`` or ``"candidate"`` while no leader is known).
    """

    node_id: str
    role: str
    is_self: bool = False

    @property
    def id(self) -> str:
        """The member's ID: ``node_id`` under the shorter name."""
        return self.node_id


@dataclass(frozen=True, slots=True)
class MeshChange:
    """What changed in the mesh as one tab sees it (what ``FlowMesh.on_change`` listeners get).

    Attributes:
        members: every live member now, this tab included, highest ID first.
        leader: the leader's ID (``None``: none known now, or peer-to-peer).
        is_leader: this tab leads now.
        joined: IDs that are members now and were not before.
        left: IDs that were members and are not any more (closed, crashed, silent).
        leadership: ``"gained"`` or ``"lost"`` when this tab's own leadership changed, else ``None``.
    """

    members: tuple[Member, ...]
    leader: str | None
    is_leader: bool
    joined: tuple[str, ...]
    left: tuple[str, ...]
    leadership: str | None

    @property
    def peers(self) -> int:
        """How many other live tabs there are."""
        return sum(not member.is_self for member in self.members)

    def moves(self, before: tuple[Member, ...]) -> bool:
        """Whether this is news for ``on_change`` after ``before``: a member joined or left, or the leader changed."""
        return bool(self.joined or self.left or self.leadership or self.leader != _leader(before))

    @classmethod
    def between(cls, before: tuple[Member, ...], after: tuple[Member, ...]) -> MeshChange:
        """The change from the member list ``before`` to ``after``."""
        old = {member.node_id for member in before if not member.is_self}
        new = {member.node_id for member in after if not member.is_self}
        was = any(member.is_self and member.role == "leader" for member in before)
        now = any(member.is_self and member.role == "leader" for member in after)
        return cls(after, _leader(after), now, tuple(sorted(new - old, reverse=True)),
                   tuple(sorted(old - new, reverse=True)), None if was == now else "gained" if now else "lost")


def _leader(members: tuple[Member, ...]) -> str | None:
    """The ID of the member listed as the leader, if any."""
    return next((member.node_id for member in members if member.role == "leader"), None)


@dataclass(slots=True)
class _Known:
    locks: bool  # holds a Web Lock that can be watched
    hidden: bool  # its tab is hidden: its timers are throttled, so it may be silent longer
    heard: float  # when this tab last heard from it (ms, local clock)


class Members:
    """The other live members this tab knows, by ID. ``locks``: this tab itself can watch Web Locks."""

    def __init__(self, config: MeshConfig, stats: MeshStats, locks: bool) -> None:
        self.config = config
        self.stats = stats
        self.locks = locks
        self.version = 0  # bumped on every change of the list (its IDs, or whose lock they hold)
        self._known: dict[str, _Known] = {}
        # The earliest expiry and whose it is, kept between changes: every message refreshes its
        # sender, and scanning every member at each one would cost O(n) per message.
        self._next: tuple[float, str | None] | None = None
        self._all_locked: tuple[int, bool] = (-1, True)  # (version, value)

    def __contains__(self, node_id: object) -> bool:
        return node_id in self._known

    def __len__(self) -> int:
        return len(self._known)

    def ids(self) -> list[str]:
        """The IDs, highest first (the order the election ranks them)."""
        return sorted(self._known, reverse=True)

    def covered(self, node_id: str) -> bool:
        """Whether this tab learns of ``node_id``'s end from its Web Lock (else from its silence)."""
        known = self._known.get(node_id)
        return known is not None and known.locks and self.locks

    def watched(self) -> set[str]:
        """The members whose Web Locks this tab watches."""
        return {node_id for node_id in self._known if self.covered(node_id)}

    def all_locked(self) -> bool:
        """Whether every member this tab knows holds a Web Lock."""
        version, value = self._all_locked
        if version != self.version:
            value = all(known.locks for known in self._known.values())
            self._all_locked = (self.version, value)
        return value

    # --- changes ------------------------------------------------------------------------

    def heard(self, node_id: str, now: float, *, locks: bool | None = None, hidden: bool | None = None) -> bool:
        """``node_id`` is live (it spoke); True if it was not listed before."""
        known = self._known.get(node_id)
        if known is not None:
            known.heard = now
            if locks is not None and locks != known.locks:
                known.locks = locks
                self.version += 1
                self._next = None
            if hidden is not None:
                known.hidden = hidden
            if self._next is not None and self._next[1] == node_id:
                self._next = None  # the earliest expiry moved later: find the new one when asked
            return False
        if len(self._known) >= MAX_MEMBERS:
            self.stats.members_unlisted += 1
            return False
        # A member whose locks are not known yet is taken to be like this tab (a site's tabs
        # all have Web Locks or none): it says otherwise in its Hello or Alive.
        known = self._known[node_id] = _Known(self.locks if locks is None else locks, bool(hidden), now)
        self.version += 1
        if self._next is not None and not self.covered(node_id):
            self._next = min(self._next, (self._limit(known), node_id))
        return True

    def gone(self, node_id: str) -> bool:
        """``node_id`` left (``Bye``), its lock was released or it fell silent; True if it was listed."""
        if self._known.pop(node_id, None) is None:
            return False
        self.version += 1
        if self._next is not None and self._next[1] == node_id:
            self._next = None
        return True

    def adopt(self, entries: Iterable[MemberEntry], leader: str, leader_locks: bool, me: str, now: float) -> None:
        """Take the list of the leader ``leader`` (which does not list itself), without this tab."""
        listed = {entry.id: entry.locks for entry in entries if entry.id != me}
        listed.pop(leader, None)
        for node_id in [n for n in self._known if n not in listed and n != leader]:
            self.gone(node_id)
        for node_id, locks in [(leader, leader_locks), *listed.items()]:
            self.heard(node_id, now, locks=locks)

    def clear(self) -> None:
        if self._known:
            self._known.clear()
            self.version += 1
            self._next = None

    def expire(self, now: float) -> list[str]:
        """Drop the members no lock covers that were silent past their limit; their IDs."""
        if now < self.deadline():
            return []
        gone = [node_id for node_id, known in self._known.items()
                if not self.covered(node_id) and now >= self._limit(known)]
        for node_id in gone:
            self.gone(node_id)
        return gone

    def deadline(self) -> float:
        """When :meth:`expire` may next drop a member (``inf``: no member can expire)."""
        if self._next is None:
            self._next = min(((self._limit(k), n) for n, k in self._known.items() if not self.covered(n)),
                             default=(_NEVER, None))
        return self._next[0]

    def _limit(self, known: _Known) -> float:
        return known.heard + self.config.silence_limit(self.config.heartbeat, known.hidden)

    # --- what the leader sends ------------------------------------------------------------

    def listing(self, leader: str | None = None) -> list[MemberEntry]:
        """The members as a heartbeat lists them (highest IDs first, at most MAX_MEMBERS), without ``leader``."""
        return [MemberEntry(id=node_id, locks=self._known[node_id].locks)
                for node_id in self.ids() if node_id != leader][:MAX_MEMBERS]

    def successor(self, leader: str | None = None) -> str | None:
        """The member that takes over from ``leader``: the highest ID, as a Bully election would choose."""
        return max((node_id for node_id in self._known if node_id != leader), default=None)
