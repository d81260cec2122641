"""The keys a tab works on, and the phases each goes through.

For each cache key a tab works on it keeps one :class:`Pending`, so concurrent
executes of one key in one tab share one call. Its phase changes only through
:meth:`PendingTable.enter`, which checks :data:`TRANSITIONS`:

* ``CALLING``: this tab runs the function (it leads, it claimed the key, or it
  fell back); the outcome goes to its own waiters and, broadcast, to every tab.
* ``AWAIT_LEADER`` → ``REQUESTED`` → ``ACCEPTED``: a follower asks the leader
  (:mod:`~pyflowmesh.core.requests`).
* ``CLAIMING`` → ``FOLLOWING_CLAIM``: without a leader that can serve the key, a tab
  claims it, or follows another tab's claim (:mod:`~pyflowmesh.core.claims`).
"""

from __future__ import annotations

from dataclasses import field
from enum import Enum
from typing import Any, Protocol

from .config import MeshConfig
from .effects import Source
from .policy import DEFAULT_POLICY, CallPolicy
from .structs import dataclass  # @dataclass without its cost at import
from .values import load_json

__all__ = ["Phase", "Pending", "PendingTable", "Router", "TRANSITIONS", "WAITING_ON_LEADER", "ANY_WAIT", "NEVER"]

NEVER = float("inf")


class Phase(str, Enum):
    CALLING = "calling"
    AWAIT_LEADER = "await-leader"
    REQUESTED = "requested"
    ACCEPTED = "accepted"
    CLAIMING = "claiming"
    FOLLOWING_CLAIM = "following-claim"

    def __str__(self) -> str:
        return self.value


WAITING_ON_LEADER = frozenset({Phase.AWAIT_LEADER, Phase.REQUESTED, Phase.ACCEPTED})
ANY_WAIT = WAITING_ON_LEADER | {Phase.FOLLOWING_CLAIM}

# The legal phase changes. A call in progress (CALLING) ends only with its outcome or
# its timeout, which remove the Pending; a claim announced (CLAIMING) is kept or yielded.
TRANSITIONS: dict[Phase, frozenset[Phase]] = {
    Phase.AWAIT_LEADER: ANY_WAIT | {Phase.CLAIMING, Phase.CALLING},
    Phase.REQUESTED: ANY_WAIT | {Phase.CLAIMING, Phase.CALLING},
    Phase.ACCEPTED: ANY_WAIT | {Phase.CLAIMING, Phase.CALLING},
    Phase.FOLLOWING_CLAIM: ANY_WAIT | {Phase.CLAIMING, Phase.CALLING},
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
    budget: float  # how long the flow's call may take, every attempt together (its CallPolicy)
    phase: Phase = Phase.AWAIT_LEADER
    deadline: float = NEVER
    target: str | None = None  # the leader asked, or the claim owner followed
    req: int = 0
    call_id: int = 0
    call_deadline: float = NEVER
    attempt: int = 0  # the attempt of the call running (or waited out before the next one)
    retry_at: float = NEVER  # when the next attempt starts; NEVER while one runs
    claimed: bool = False  # this tab announced a claim for the key
    superseded: bool = False  # invalidated while its call ran: it answers only who already waited
    invalidated: bool = False  # invalidated while it waited: executes after that wait for a new call
    # The latest invalidation of its flow (wall ms) this wait must postdate: only a result of a
    # call that started after it answers (``-inf``: none); a request carries it (``after``).
    after: float = -NEVER
    started: float | None = None  # when this tab's call began (wall ms, after every invalidation known)
    waiters: list[int] = field(default_factory=list)
    later: list[int] = field(default_factory=list)  # executes that came after the invalidation
    requesters: set[str] = field(default_factory=set)

    @property
    def args(self) -> tuple[Any, ...]:
        """A fresh copy of the arguments."""
        return tuple(load_json(self.args_json))


class PendingTable:
    """Every key this tab works on, by key, by waiter and by call; and the IDs it hands out."""

    def __init__(self, config: MeshConfig) -> None:
        self._config = config
        self.by_key: dict[str, Pending] = {}  # bounded: local executes, plus MAX_SERVED for others
        self.by_waiter: dict[int, Pending] = {}  # one entry per open execute
        self.by_call: dict[int, Pending] = {}  # one per call in progress (superseded ones too)
        self._next_id = 0
        self.policies: dict[str, CallPolicy] = {}  # the call policy of each flow registered here

    def policy(self, flow: str) -> CallPolicy:
        """The call policy of ``flow`` as registered in this tab (one attempt, ``call_timeout``, else)."""
        return self.policies.get(flow, DEFAULT_POLICY)

    def new(self, key: str, flow: str, args_json: str, now: float) -> Pending:
        """A Pending (not yet in the table) whose patience starts ``now``.

        A tab waiting on another tab's call waits as long as that call may take, retries
        included (the flow's budget): the same flow has the same policy in every tab.
        """
        config = self._config
        budget = self.policy(flow).budget(config.call_timeout)
        patience = now + config.effective_request_timeout + budget + config.heartbeat
        return Pending(key=key, flow=flow, args_json=args_json, patience=patience, budget=budget)

    def enter(self, pending: Pending, phase: Phase, deadline: float, target: str | None = None) -> None:
        """The one place a Pending changes phase; waiting on others never outlasts its patience."""
        if phase is not pending.phase and phase not in TRANSITIONS[pending.phase]:
            raise RuntimeError(f"illegal phase change {pending.phase} -> {phase} for {pending.key!r}")
        pending.phase, pending.target = phase, target
        pending.deadline = deadline if phase in (Phase.CALLING, Phase.CLAIMING) else min(deadline, pending.patience)

    def drop(self, pending: Pending) -> None:
        """Forget ``pending`` by its key (its call, if running, stays in ``by_call``)."""
        if self.by_key.get(pending.key) is pending:
            del self.by_key[pending.key]

    def deadline(self) -> float:
        """The soonest deadline of any key worked on or call running."""
        soonest = NEVER
        for pending in self.by_key.values():
            soonest = min(soonest, pending.deadline)
        for pending in self.by_call.values():  # superseded calls are timed out too
            soonest = min(soonest, pending.deadline)
        return soonest

    def new_id(self) -> int:
        """A fresh ID for a waiter, a request or a call."""
        self._next_id += 1
        return self._next_id


class Router(Protocol):
    """What the helpers of :class:`~pyflowmesh.core.executes.Executes` may ask of it."""

    def route(self, pending: Pending, now: float) -> None:
        """Decide anew who serves ``pending``: a live claim, this tab, the leader, or a claim of ours."""

    def fall_back(self, pending: Pending, now: float) -> None:
        """The leader cannot serve ``pending``: follow a live claim, or claim it."""

    def fresh(self, key: str, started: float | None) -> bool:
        """Whether a result of ``key`` from a call that started at ``started`` postdates every
        invalidation of the key's flow this tab applied (``None``: when it started is unknown)."""

    def started_bound(self, key: str) -> float | None:
        """A time before which no call behind this tab's fresh entry of ``key`` started, if known."""

    def finish(self, pending: Pending, now: float, *, data: str | None = None, error: BaseException | None = None,
               source: Source = "mesh", renew: bool = True) -> None:
        """Give every local waiter of ``pending`` its outcome and forget the key."""
