"""What a seed decides before its run: how many tabs, which strategy, Web Locks or not, which faults.

A :class:`RunPlan` is all it takes to reproduce a seed's run (:func:`~.scenario.run_plan`).
"""

from __future__ import annotations

import random
from collections.abc import Iterable
from dataclasses import dataclass

from .app import SCOPES

__all__ = ["FAULT_KINDS", "FAULT_WEIGHTS", "STRATEGY_BY_PARITY", "RunPlan", "plan"]

FAULT_KINDS = (
    "crash", "close", "freeze", "throttle", "join", "outage", "noise",
    # issue 8: inputs an adversarial user (or a buggy page) makes
    "pathological", "hostile", "cancel", "bfcache", "twin-id", "bad-args", "long-outage",
    # issue 14: a login, logout or account switch (one tab, or every tab of a scope)
    "scope-switch",
    # issue 10: the leader closes or crashes, its named successor sometimes with it
    "hand-over",
    # issue 12: an endpoint fails its next few calls (the flows' retries, the last failure shared)
    "flaky",
    # issue 10: a page shares a failure it saw itself (FlowMesh.share_error), calls of the key running
    "share-error",
)
"""The fault kinds a random scenario injects (:class:`~.scenario.RandomScenario` says what each does)."""
FAULT_WEIGHTS = (4, 2, 3, 2, 3, 1, 1, 2, 2, 2, 2, 1, 1, 0.04, 1.5, 2.5, 2.5, 2.5)
"""How often each of :data:`FAULT_KINDS` strikes, relative to the others."""
STRATEGY_BY_PARITY = ("leader-follower", "peer-to-peer")
"""``strategy="both"``: even seeds lead and follow, odd ones are peers."""


@dataclass(frozen=True)
class RunPlan:
    """Everything a seed decides before the run: reproduce a failing seed with the same plan."""

    seed: int
    tabs: int
    strategy: str
    locks: bool
    heartbeat: float
    share_cache: bool = True
    faults: tuple[str, ...] = FAULT_KINDS
    pathologies: tuple[str, ...] | None = None  # None: every kind of PATHOLOGIES
    scopes: tuple[str | None, ...] = (None,)  # the scopes tabs open in (a switch may go to any of SCOPES)


def plan(seed: int, max_tabs: int = 50, strategy: str = "both", locks: bool | None = None,
         faults: Iterable[str] = FAULT_KINDS, pathologies: Iterable[str] | None = None) -> RunPlan:
    """The parameters of seed ``seed``: tabs in ``2..max_tabs``, strategy and locks varied with the seed.

    ``strategy="both"`` alternates strategies by seed; ``locks=None`` alternates
    Web Locks every other pair of seeds. One seed in ten uses the default 5 s heartbeat;
    one in ten (of either strategy) does not share its cache (``share_cache=False``).
    Half the seeds open every tab in the shared scope, one in ten every tab in scope
    ``"s0"``, and the others each tab in one of :data:`SCOPES` (several meshes on one channel).
    """
    rng = random.Random(f"pyflowmesh-plan-{seed}")
    tabs = rng.randint(2, max(2, max_tabs))
    if strategy == "both":
        strategy = STRATEGY_BY_PARITY[seed % 2]
    if locks is None:
        locks = (seed // 2) % 2 == 0
    heartbeat = 5000.0 if seed % 10 == 7 else 1000.0
    draw = rng.random()
    scopes = (None,) if draw < 0.5 else ("s0",) if draw < 0.6 else SCOPES
    return RunPlan(seed, tabs, strategy, locks, heartbeat, share_cache=seed % 20 not in (9, 14),
                   faults=tuple(faults), pathologies=None if pathologies is None else tuple(pathologies),
                   scopes=scopes)
