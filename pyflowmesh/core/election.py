"""Who leads: a Bully election with terms, sticky leadership and heartbeats.

The rules, in the order they matter:

* **Sticky.** A joining tab asks (``Hello``) and follows the live leader that
  answers, whatever its own ID. Elections run only when no live leader is known.
* **Bully.** A tab that finds no leader broadcasts ``Election``. A higher tab that
  hears it stands itself (its own ``Election`` tells lower tabs to wait), or, if it
  is already waiting for an even higher tab and has not stood this round, sends
  ``Answer``. A candidate that hears nothing from above within ``answer_timeout``
  announces itself (``Coordinator``). On a broadcast channel every tab sends at most
  one ``Election`` per round, so an election costs O(n) messages, not classic
  Bully's O(n^2).
* **Staggered candidacy.** When a leader is lost, every follower learns it at the
  same moment (its ``Bye``, its Web Lock). Rather than all standing at once, each
  waits ``answer_timeout / 2 × (1 − rank)``, its rank being its ID read as a
  fraction: the highest tab stands first and the others hear it before their
  turn, so a hand-over costs a few messages instead of one per tab.
* **Terms.** Every leadership has a term, one above the highest the candidate knew.
  Leaders are ordered by ``(term, id)``; a leader that hears a greater one steps
  down, and one that hears a lesser one reasserts itself, so any split brain (a
  frozen leader thawing next to its successor, two candidates that missed each
  other) ends with one leader.
* **A named successor.** The leader names, in every heartbeat, the member that
  takes over from it: the highest ID it knows, the member a Bully election would
  choose. When the leader's going is certain (its ``Bye``, or the browser handing
  over its Web Lock), that member announces itself at once, in a term above the
  leader's: a hand-over costs one post and no ``answer_timeout``. The other
  followers wait ``answer_timeout`` for it before their staggered turn, so a
  successor that is gone too costs one wait, then the election runs as before.
  Silence is not certain (the leader may only be slow), so it starts the election.
* **Failure detection.** A follower presumes its leader dead after
  :meth:`MeshConfig.silence_limit` without a heartbeat (longer for a hidden leader,
  whose timers the browser throttles), at once on its ``Bye``, or at once when the
  browser reports its tab gone (Web Locks). A leader that notices it was itself
  silent that long (frozen, or starved) steps down before doing anything else: its
  followers may already have elected another, and it must not serve them twice.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from enum import Enum

from .config import MeshConfig
from .members import Members
from .stats import MeshStats
from .wire import MAX_COUNT, Answer, Bye, Coordinator, Election, Heartbeat, Hello, Message

__all__ = ["Role", "BullyElection", "TRANSITIONS", "MAX_ADOPTED_TERM"]

_NEVER = float("inf")
# The highest term a tab adopts from the wire. Terms on the wire stop at MAX_COUNT; a tab
# that adopted a forged term just below it could never elect again, so terms that near the
# end are refused, leaving 2**32 elections of headroom after the highest term adopted.
MAX_ADOPTED_TERM = MAX_COUNT - 2**32


class Role(str, Enum):
    """A tab's part in the election."""

    JOINING = "joining"  # asked the mesh for its leader; waiting for an answer
    CANDIDATE = "candidate"  # stands in an election
    WAITING = "waiting"  # a higher tab is standing; waiting for its announcement
    FOLLOWER = "follower"  # follows a live leader
    LEADER = "leader"
    PEER = "peer"  # peer-to-peer strategy: there is no leader
    LEFT = "left"  # disposed

    def __str__(self) -> str:
        return self.value


_LIVE = frozenset({Role.JOINING, Role.CANDIDATE, Role.WAITING, Role.FOLLOWER, Role.LEADER})

# The legal role changes (staying in a role is always allowed). Every change goes through
# BullyElection._become, which checks it here. PEER is the node's role without an election.
TRANSITIONS: dict[Role, frozenset[Role]] = {
    Role.JOINING: frozenset({Role.CANDIDATE, Role.WAITING, Role.FOLLOWER, Role.LEFT}),
    Role.CANDIDATE: frozenset({Role.LEADER, Role.WAITING, Role.FOLLOWER, Role.JOINING, Role.LEFT}),
    Role.WAITING: frozenset({Role.CANDIDATE, Role.FOLLOWER, Role.JOINING, Role.LEFT}),
    # FOLLOWER -> LEADER: the named successor takes over when its leader is certainly gone.
    Role.FOLLOWER: frozenset({Role.JOINING, Role.CANDIDATE, Role.WAITING, Role.LEADER, Role.LEFT}),
    Role.LEADER: frozenset({Role.FOLLOWER, Role.JOINING, Role.LEFT}),
    Role.PEER: frozenset(),
    Role.LEFT: frozenset(),
}
assert all(role in _LIVE | {Role.LEFT} for targets in TRANSITIONS.values() for role in targets)


class BullyElection:
    """The election state of one tab. The node feeds it messages and ticks; it sends through ``send``."""

    def __init__(
        self,
        node_id: str,
        config: MeshConfig,
        stats: MeshStats,
        send: Callable[[Message], object],
        on_leader_change: Callable[[str | None, float], None],
        members: Members | None = None,
    ) -> None:
        self.node_id = node_id
        self.config = config
        self.stats = stats
        self.members = members if members is not None else Members(config, stats, locks=False)
        self._send = send
        self._on_leader_change = on_leader_change
        self.role = Role.JOINING
        self.term = 0  # the highest leader term this tab knows
        self.leader: str | None = None
        self.hidden = False
        self._leader_term = 0
        self._silence_deadline = _NEVER  # follower: when the leader is presumed dead
        self._phase_deadline = _NEVER  # joining / candidate / waiting: when to move on
        self._candidate_term = 0
        self._answered = False  # sent an Answer in this round
        self._posted = False  # sent an Election in this round (it answers lower tabs itself)
        self._staggering = False  # lost the leader; waiting for our turn to stand
        self._next_beat = _NEVER  # leader: when the next heartbeat is due
        self._last_beat = 0.0  # leader: when it last showed its followers it is alive
        self._last_reassert = -_NEVER
        self.successor: str | None = None  # follower: who takes over from the leader (its heartbeats say)
        self.leader_locks = False  # follower: the leader holds a Web Lock this tab may watch
        self.awaiting: str | None = None  # joining: the named successor this tab waits for
        self.listed_version = -1  # leader: the members' version its last heartbeat listed

    # --- inputs -------------------------------------------------------------------------

    def start(self, now: float) -> None:
        """Join the mesh: ask for the leader, and stand if none answers in time."""
        self._join(now)

    def deadline(self) -> float:
        """When :meth:`tick` must next be called (``inf``: never)."""
        if self.role is Role.LEADER:
            return self._next_beat
        if self.role is Role.FOLLOWER:
            return self._silence_deadline
        if self.role in (Role.JOINING, Role.CANDIDATE, Role.WAITING):
            return self._phase_deadline
        return _NEVER

    def check_sleep(self, now: float) -> None:
        """Step down if this leader was silent longer than its followers wait (frozen, starved)."""
        if self.role is Role.LEADER and now - self._last_beat > self.config.silence_limit(
            self.config.heartbeat, self.hidden
        ):
            self.stats.stepped_down += 1
            self._set_leader(None, now)
            self._join(now)

    def tick(self, now: float) -> None:
        """Act on whatever deadline has passed."""
        if self.role is Role.LEADER and now >= self._next_beat:
            self._beat(now)
        elif self.role is Role.FOLLOWER and now >= self._silence_deadline:
            self._leader_lost(now)
        elif self.role is Role.JOINING and now >= self._phase_deadline:
            self._stand(now)
        elif self.role is Role.CANDIDATE and now >= self._phase_deadline:
            self._win(now)
        elif self.role is Role.WAITING and now >= self._phase_deadline:
            self._stand(now)  # the higher tab never announced itself

    def on_message(self, message: Message, now: float) -> None:
        """Take an election message (others are ignored)."""
        if isinstance(message, (Coordinator, Heartbeat, Election, Answer)) and message.term > MAX_ADOPTED_TERM:
            self.stats.drop("term-range")  # so far ahead that adopting it would leave no terms to elect with
            return
        if isinstance(message, (Coordinator, Heartbeat)):
            self._on_leader_message(message, now)
        elif isinstance(message, Election):
            self._on_election(message, now)
        elif isinstance(message, Answer):
            if message.src > self.node_id and self.role in (Role.JOINING, Role.CANDIDATE):
                self._wait_for_higher(now)
        elif isinstance(message, Hello):
            if self.role is Role.LEADER:
                self._announce(now)  # always: the newcomer may have missed any earlier one
        elif isinstance(message, Bye):
            if message.src == self.leader and message.successor is not None:
                self.successor = message.successor  # its latest word on who takes over
            self.on_peer_gone(message.src, now)

    def on_peer_gone(self, node_id: str, now: float) -> None:
        """The tab ``node_id`` left or crashed (Bye, or the browser released its lock)."""
        if node_id == self.leader and self.role is Role.FOLLOWER:
            self._leader_lost(now, certain=True)
        elif node_id == self.awaiting and self.role is Role.JOINING:
            # The successor we waited for is gone too: stand at our turn, without the wait.
            self.awaiting = None
            self._phase_deadline = now + self._stagger()
        elif node_id == self.successor:
            self.successor = None  # the leader names another in its next heartbeat

    def relist(self, now: float) -> None:
        """A leader whose members changed tells its followers now, not at its next heartbeat."""
        if self.role is Role.LEADER and self.members.version != self.listed_version:
            self._beat(now)

    def set_hidden(self, hidden: bool, now: float) -> None:
        """The page became hidden or visible; a leader tells its followers at once."""
        if hidden == self.hidden:
            return
        self.hidden = hidden
        if self.role is Role.LEADER:
            self._beat(now)

    def suspend(self, now: float) -> None:
        """The page is being frozen: a leader hands over now rather than fall silent.

        Browsers freeze hidden tabs (and can keep them frozen for long); followers
        would otherwise wait a whole silence limit, longer for a hidden leader.
        The caller sends the ``Bye`` that makes them elect at once.
        """
        if self.role is Role.LEADER:
            self.stats.stepped_down += 1
            self._set_leader(None, now)
        if self.role not in (Role.LEFT, Role.PEER):
            self._become(Role.JOINING)
            self._phase_deadline = _NEVER  # frozen: nothing runs until resume()

    def resume(self, now: float) -> None:
        """The page was thawed: ask the mesh who leads now, as a joining tab does."""
        if self.role not in (Role.LEFT, Role.PEER):
            self._set_leader(None, now)
            self._join(now)

    def rename(self, node_id: str, now: float) -> None:
        """This tab took a new ID (another tab had ours); a leader announces itself under it.

        In a new term: its followers compare ``(term, id)``, and the new ID may be lower
        than the old one, which they would take for a lesser claimant.
        """
        self.node_id = node_id
        if self.role is Role.LEADER:
            self.term += 1
            self._leader_term = self.term
            self._set_leader(node_id, now)
            self._announce(now)

    def leave(self) -> None:
        """Stop taking part (the node sends the ``Bye``)."""
        self._become(Role.LEFT)
        self.leader = None

    # --- transitions --------------------------------------------------------------------

    def _become(self, role: Role) -> None:
        """The one place the role changes; it refuses a change :data:`TRANSITIONS` does not list."""
        if role is not self.role and role not in TRANSITIONS[self.role]:
            raise RuntimeError(f"illegal role change {self.role} -> {role} of {self.node_id!r}")
        self.role = role

    def _join(self, now: float) -> None:
        self._become(Role.JOINING)
        self.awaiting = None
        self._phase_deadline = now + self.config.answer_timeout
        self._send(Hello(src=self.node_id, locks=self.members.locks))

    def _stand(self, now: float) -> None:
        self.stats.elections += 1
        self._become(Role.CANDIDATE)
        self._candidate_term = self.term + 1
        self._answered = False
        self._posted = True
        self._staggering = False
        self.awaiting = None
        self._phase_deadline = now + self.config.answer_timeout
        self._send(Election(src=self.node_id, term=self._candidate_term))

    def _wait_for_higher(self, now: float) -> None:
        if self.role is not Role.WAITING:
            self._become(Role.WAITING)
            self._phase_deadline = now + self.config.coordinator_timeout

    def _win(self, now: float) -> None:
        self._posted = False
        self._become(Role.LEADER)
        self.term = max(self.term, self._candidate_term)
        self._leader_term = self.term
        self._set_leader(self.node_id, now)
        self._announce(now)

    def _announce(self, now: float) -> None:
        self._last_reassert = now
        self._speak_as_leader(Coordinator, now)

    def _beat(self, now: float) -> None:
        self._speak_as_leader(Heartbeat, now)

    def _speak_as_leader(self, kind: type[Coordinator] | type[Heartbeat], now: float) -> None:
        """Send what every leader message carries: term, pace, the members and the successor."""
        members = self.members
        self._send(kind(src=self.node_id, term=self.term, interval=self.config.heartbeat, hidden=self.hidden,
                        locks=members.locks, successor=members.successor(), members=members.listing()))
        self._last_beat = now
        self._next_beat = now + self.config.heartbeat
        self.listed_version = self.members.version

    def _reassert(self, now: float) -> None:
        # One announcement answers a whole burst of candidates; they all hear it.
        if now - self._last_reassert >= self.config.answer_timeout / 4:
            self._announce(now)

    def _leader_lost(self, now: float, certain: bool = False) -> None:
        """The leader is gone (``certain``: it said ``Bye`` or its lock was released) or silent.

        The named successor takes over at once when the loss is certain; every other
        tab stands after its turn (see *Staggered candidacy*), waiting for the named
        successor first.
        """
        lost, successor = self.leader, self.successor if certain else None
        self.successor = None
        if lost is not None:
            self.members.gone(lost)
        self._set_leader(None, now)
        if successor == self.node_id:
            self.stats.handovers += 1
            self._candidate_term = self.term + 1
            self._win(now)
            return
        self._become(Role.JOINING)
        self._staggering = True
        self.awaiting = successor if successor is not None and successor != lost and successor in self.members else None
        self._phase_deadline = now + self._stagger() + (self.config.answer_timeout if self.awaiting else 0.0)

    def _stagger(self) -> float:
        return self.config.answer_timeout / 2 * (1 - _rank(self.node_id))

    def _follow(self, leader: Coordinator | Heartbeat, now: float) -> None:
        if self.role is Role.LEADER:
            self.stats.stepped_down += 1
        self._become(Role.FOLLOWER)
        self._answered = self._posted = self._staggering = False
        self.awaiting = None
        self.term = max(self.term, leader.term)
        self._leader_term = leader.term
        self._silence_deadline = now + self.config.silence_limit(leader.interval, leader.hidden)
        self.successor = leader.successor
        self.leader_locks = leader.locks
        self.members.adopt(leader.members, leader.src, leader.locks, self.node_id, now)
        self._set_leader(leader.src, now)

    def _set_leader(self, leader: str | None, now: float) -> None:
        if leader != self.leader:
            self.leader = leader
            self.stats.leader_changes += 1
            self._on_leader_change(leader, now)

    # --- message handlers ---------------------------------------------------------------

    def _on_leader_message(self, message: Coordinator | Heartbeat, now: float) -> None:
        # A leader of another page version may beat at another pace, but not at any pace: a
        # forged interval of days would keep a dead "leader" followed, one of 10 ms depose it.
        heartbeat = self.config.heartbeat
        # A hidden leader is granted hidden_timeout of silence only once it has shown it is a
        # live tab (we follow it already: this is at least its second message): one forged
        # Coordinator saying "hidden" from an ID that is no tab must not keep the mesh
        # following nobody for hidden_timeout.
        proven = self.role is Role.FOLLOWER and message.src == self.leader
        message = replace(message, interval=min(max(message.interval, heartbeat / 4), heartbeat * 4),
                          hidden=message.hidden and proven)
        claim = (message.term, message.src)
        if self.role is Role.LEFT:
            return
        if self.role is Role.LEADER:
            if claim > (self.term, self.node_id):
                self._follow(message, now)
            else:
                self._reassert(now)  # the other one steps down when it hears us
            return
        if self.role is Role.FOLLOWER and self.leader is not None:
            if message.src == self.leader or claim > (self._leader_term, self.leader):
                self._follow(message, now)
            return  # a lesser claimant: our leader reasserts itself and it steps down
        # Joining, standing or waiting: a leader of a current term is live, and sticky
        # leadership says follow it, even where our ID is higher (we may be a thawed
        # or rejoining tab whose backlog still holds the election that chose it).
        if message.term >= self.term or self.role is Role.WAITING:
            self._follow(message, now)

    def _on_election(self, message: Election, now: float) -> None:
        if self.role is Role.LEADER:
            self._reassert(now)  # sticky: a live leader keeps the mesh
            return
        if self.role is Role.FOLLOWER:
            if message.src != self.leader:
                return  # we have a live leader; it answers the candidate itself
            self._set_leader(None, now)  # our leader gave up its leadership
        if message.src < self.node_id:
            if self.role is Role.WAITING:
                if not self._answered and not self._posted:  # a posted Election already told it
                    self._answered = True
                    self._send(Answer(src=self.node_id, term=self.term))
            elif self._staggering:
                pass  # our turn comes before the lower tab's; our Election will tell it to wait
            elif self.role is not Role.CANDIDATE:
                self._stand(now)  # our Election tells the lower tab to wait
        elif self.role in (Role.JOINING, Role.CANDIDATE, Role.FOLLOWER):
            self._wait_for_higher(now)


def _rank(node_id: str) -> float:
    """The node ID as a fraction in [0, 1), in the order the election compares IDs.

    Random IDs are hex, read as a number; any other ID by its first characters.
    """
    head = node_id[:12]
    try:
        return int(head, 16) / 16.0 ** len(head)
    except ValueError:
        return sum(min(ord(c), 255) / 256.0 ** (i + 1) for i, c in enumerate(node_id[:6]))
