"""One browser tab of a :class:`~.network.VirtualNetwork`: its node, its clock, its page's state.

A tab outlives its node: a scope switch gives it a new :class:`~pyflowmesh.core.node.MeshNode`
(as ``FlowMesh.set_scope`` does), a rename a new ID. What the tab has seen happen to it
(frozen spans, how it ended) stays with the tab, for the checks.
"""

from __future__ import annotations

import math
from typing import Any

from ..core.node import MeshNode
from .records import ExecRecord

__all__ = ["Tab"]


class Tab:
    """A page with a mesh member. The network changes it; scenarios and checks only read it."""

    __slots__ = (
        "index", "id", "node", "offset", "flows", "started", "alive", "frozen", "hidden",
        "throttle_base", "throttle_period", "backlog", "gen", "tick_at", "last_local",
        "start_time", "end_time", "watching", "last_to", "waiters", "fresh", "ended_by",
        "died_hidden", "frozen_spans", "away", "cancelled_waiters", "cancelled_calls",
        "started_calls", "scope_since", "switches",
    )

    def __init__(self, index: int, node_id: str, node: MeshNode, offset: float, flows: tuple[str, ...]) -> None:
        self.index = index  # its place in the network's list of tabs, for good
        self.id = node_id
        self.node = node
        self.offset = offset  # the tab's clock: performance.now() = virtual time + offset
        self.flows = flows
        self.started = False
        self.alive = False  # started, not crashed or closed
        self.frozen = False  # runs nothing: its inputs queue in ``backlog``
        self.hidden = False  # its timers fire on a ``throttle_period`` grid
        self.throttle_base = 0.0
        self.throttle_period = 0.0
        self.backlog: list[tuple[int, Any, Any]] = []  # (event kind, a, b) queued while frozen
        self.gen = 0  # the generation of its armed tick: an older tick is stale
        self.tick_at: float | None = None
        self.last_local = -math.inf  # its clock never goes back
        self.start_time: float | None = None
        self.end_time: float | None = None
        self.watching: set[str] = set()  # the peers whose Web Locks it waits for
        self.last_to: dict[int, float] = {}  # receiver index -> arrival of its last post there (FIFO)
        self.waiters: dict[int, ExecRecord] = {}  # its open executes, by waiter ID
        self.fresh = True  # has not yet known any leader (leader-follower)
        self.ended_by: str | None = None  # "crash" or "close"
        self.died_hidden = False
        self.frozen_spans: list[list[float]] = []  # [freeze, thaw] times
        self.away = False  # in the back/forward cache: frozen, lock released, messages dropped
        self.cancelled_waiters: set[int] = set()  # executes its caller cancelled
        self.cancelled_calls: set[int] = set()  # calls the node gave up on (CancelCall)
        self.started_calls: dict[int, str] = {}  # call_id -> key
        self.scope_since: float | None = None  # when its node joined its current scope
        self.switches = 0  # scope switches made

    @property
    def scope(self) -> str | None:
        """Whose data the tab holds now (``None``: the shared scope)."""
        return self.node.config.scope

    @property
    def digest(self) -> str:
        """Its scope as the wire and its Web Lock name it."""
        return self.node.scope_digest

    def __repr__(self) -> str:
        return f"<tab {self.id}>"
