"""Before and after: the election as it was before staggered candidacy, measured beside today's.

``python -m bench.election_before [n ...]`` (default 10 100 1000) prints, for the
current :class:`pyflowmesh.core.election.BullyElection` and for :class:`Before`, the
posts, deliveries and time to a single leader of the elections that
:func:`bench.sim_bench.measure_elections` runs (cold start, polite close, crash with
and without Web Locks). ``Before`` is a subclass patched in for this process only.

What changed (``pyflowmesh/election.py``), after this bench showed n^2 deliveries
per hand-over:

* **No redundant Answer.** A tab waiting for a higher candidate answers a lower
  ``Election`` only if it has not posted an ``Election`` of its own in this round:
  that broadcast already reached the lower tab.
* **Staggered candidacy.** A follower that loses its leader (``Bye``, Web Lock
  released, silence) waits ``answer_timeout / 2 * (1 - rank)`` before standing, its
  rank being its ID read as a fraction, and meanwhile ignores lower Elections. The
  highest tab stands first and the others hear it before their turn.

``Before`` restores both: every follower stands the moment it loses its leader,
and a waiting tab answers a lower Election even after posting its own.
"""

from __future__ import annotations

import statistics
import sys
from typing import Any

import pyflowmesh.core.node as node_module
from pyflowmesh.core.election import BullyElection, Role
from pyflowmesh.core.wire import Answer, Election

from .sim_bench import measure_elections

SCENARIOS = ("cold_start", "polite_close", "crash_locks", "crash_no_locks")


class Before(BullyElection):
    """The election before the change: everyone stands at once, waiting tabs answer anyway."""

    def _leader_lost(self, now: float) -> None:
        self._set_leader(None, now)
        self._stand(now)

    def _on_election(self, message: Election, now: float) -> None:
        if self.role is Role.WAITING and message.src < self.node_id:
            if not self._answered:
                self._answered = True
                self._send(Answer(src=self.node_id, term=self.term))
            return
        super()._on_election(message, now)


def measure(variant: type[BullyElection], sizes: tuple[int, ...]) -> list[dict[str, Any]]:
    original = node_module.BullyElection
    node_module.BullyElection = variant  # type: ignore[misc]
    try:
        rows = []
        for n in sizes:
            runs = [measure_elections(n, seed) for seed in range(3 if n < 1000 else 1)]
            rows.append({"n": n, **{k: {m: statistics.median(r[k][m] for r in runs)
                                        for m in ("election_posts", "deliveries", "converge_ms")}
                                    for k in SCENARIOS}})
        return rows
    finally:
        node_module.BullyElection = original  # type: ignore[misc]


def main(argv: list[str]) -> None:
    sizes = tuple(int(a) for a in argv) or (10, 100, 1000)
    for name, variant in (("before", Before), ("now", BullyElection)):
        for row in measure(variant, sizes):
            cells = "; ".join(f"{k} {row[k]['election_posts']:g} posts/{row[k]['deliveries']:,.0f} deliveries/"
                              f"{row[k]['converge_ms']:.0f} ms" for k in SCENARIOS)
            print(f"{name:7s} n={row['n']:5d}: {cells}", flush=True)


if __name__ == "__main__":
    main(sys.argv[1:])
