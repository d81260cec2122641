"""What if: two small election changes, measured with the bench's simulator loop. Not part of the bench.

``python -m bench.what_if_election [n ...]`` (default 10 100 1000) prints, for the
current :class:`pyflowmesh.election.BullyElection` and for two variants, the posts,
deliveries and time to a single leader of the elections that
:func:`bench.sim_bench.measure_elections` runs (cold start, polite close, crash with
and without Web Locks). The variants are subclasses patched in for this process
only; ``pyflowmesh/election.py`` is not changed. They show what the changes proposed
in ``docs/benchmarks.md`` would save; they are not reviewed protocol code.

* **A: no redundant Answer.** A tab waiting for a higher candidate answers a lower
  ``Election`` only if it has not posted an ``Election`` of its own in this round.
  If it has, that broadcast already reached the lower tab (a BroadcastChannel
  delivers to every tab open when it is posted), which is the same reason the
  current code gives for a *candidate* not answering.
* **A+B: rank-staggered candidacy.** A follower that loses its leader (``Bye``, Web
  Lock released, silence) does not stand at once: it waits
  ``answer_timeout / 2 * (1 - rank)``, where ``rank`` in [0, 1) is its ID read as a
  number (IDs are random hex), as a joining tab (so a higher ``Election`` or a
  ``Coordinator`` heard meanwhile makes it wait or follow instead); a *lower*
  ``Election`` heard meanwhile does not make it stand early: its own turn comes
  sooner than the lower tab's, and its ``Election`` then tells that tab to wait.
  The highest tab stands first and the others hear it before their turn.
"""

from __future__ import annotations

import statistics
import sys
from typing import Any

import pyflowmesh.node as node_module
from pyflowmesh.election import BullyElection, Role
from pyflowmesh.protocol import Election

from .sim_bench import measure_elections

SCENARIOS = ("cold_start", "polite_close", "crash_locks", "crash_no_locks")


class NoRedundantAnswer(BullyElection):
    """Variant A."""

    _posted = False  # posted an Election in the current round

    def _stand(self, now: float) -> None:
        super()._stand(now)
        self._posted = True

    def _follow(self, leader: str, term: int, interval: float, hidden: bool, now: float) -> None:
        super()._follow(leader, term, interval, hidden, now)
        self._posted = False

    def _win(self, now: float) -> None:
        super()._win(now)
        self._posted = False

    def _on_election(self, message: Election, now: float) -> None:
        if self.role is Role.WAITING and message.src < self.node_id and self._posted:
            return  # our own Election, broadcast to every open tab, already told it to wait
        super()._on_election(message, now)


class Staggered(NoRedundantAnswer):
    """Variant A+B."""

    WINDOW = 0.5  # of answer_timeout
    _staggering = False

    def _stand(self, now: float) -> None:
        self._staggering = False
        super()._stand(now)

    def _follow(self, leader: str, term: int, interval: float, hidden: bool, now: float) -> None:
        self._staggering = False
        super()._follow(leader, term, interval, hidden, now)

    def _on_election(self, message: Election, now: float) -> None:
        if self._staggering and self.role is Role.JOINING and message.src < self.node_id:
            return  # our turn comes first; our Election will tell the lower tab to wait
        super()._on_election(message, now)

    def _leader_lost(self, now: float) -> None:
        self._staggering = True
        self._set_leader(None, now)
        try:
            rank = int(self.node_id[:12], 16) / 16 ** len(self.node_id[:12])
        except ValueError:
            rank = 0.5
        self.role = Role.JOINING
        self._phase_deadline = now + self.WINDOW * self.config.answer_timeout * (1 - rank)


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
    for name, variant in (("current", BullyElection), ("A: no redundant Answer", NoRedundantAnswer),
                          ("A+B: staggered candidacy", Staggered)):
        for row in measure(variant, sizes):
            cells = "; ".join(f"{k} {row[k]['election_posts']:g} posts/{row[k]['deliveries']:,.0f} deliveries/"
                              f"{row[k]['converge_ms']:.0f} ms" for k in SCENARIOS)
            print(f"{name:26s} n={row['n']:5d}: {cells}", flush=True)


if __name__ == "__main__":
    main(sys.argv[1:])
