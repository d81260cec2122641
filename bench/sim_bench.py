"""Protocol scale, measured in virtual time on plain CPython (no browser).

What it measures
----------------
For n = 10, 100, 1,000 tabs it drives real :class:`pyflowmesh.core.node.MeshNode`
objects on the simulator's :class:`~pyflowmesh.simulation.VirtualNetwork` and counts
the messages of three elections, one after the other in one run:

a. **cold start**: n tabs open within 20 ms of each other (a browser restoring a
   session); nobody leads yet. Counted from the first tab's start.
b. **polite close**: the leader leaves (``leave``: it posts ``Bye``); every
   follower learns it at once and stands. Counted from the ``Bye``.
c. **crash**: the new leader vanishes without a word, at a random moment between
   two heartbeats. Followers notice it either through Web Locks (``peer_gone``
   40-90 ms later, per tab) or, without locks, when their silence limit (2.5
   heartbeats after the last heartbeat each of them received) runs out, at
   slightly different times because every delivery has its own delay. Counted
   from the crash; measured twice, with and without locks.

For each election it reports the **posts** by type (one ``postMessage`` on the
channel; ``Hello``, ``Election``, ``Answer``, ``Coordinator``, ``Bye``, ...), the
**deliveries** (a post reaches every other open tab: posts x (n-1); this is the
number that compares with the point-to-point messages of the textbook Bully
algorithm, whose best case is n-2 messages and whose worst case is O(n^2)), and
the **time to converge**: from the trigger to the moment exactly one tab leads and
every other open tab follows it (virtual ms). Messages are counted up to
convergence plus a tail of ``coordinator_timeout + answer_timeout`` (late
candidates and reassertions), which ends before the next heartbeat.

The network (the one the simulator and the node tests use): one heap of events in
virtual ms; a post reaches each other open tab after a delay drawn uniformly from
0.1-5 ms, in order per sender-receiver pair; after every input a tab's timer is armed
at ``node.next_deadline()``; Web Locks pass 40-90 ms after their holder vanishes. With
``decoded=True`` the decoded message object is handed to ``MeshNode.handle`` (the
encoding itself is exercised by the simulator and the tests; skipping n-fold JSON
decoding keeps 1,000 tabs fast). Seeded: a run is reproducible.

Separately, :func:`simulator_throughput` times the project's own simulator
(:mod:`pyflowmesh.simulation`, random scenarios with faults, every message JSON
encoded and decoded) in simulated tab-seconds per wall-clock second.
"""

from __future__ import annotations

import math
import statistics
import time
from collections import Counter
from collections.abc import Callable
from typing import Any

from pyflowmesh.core.config import MeshConfig
from pyflowmesh.simulation import VirtualNetwork, run

ELECTION_TYPES = ("election", "answer", "coordinator")


def _count(net: VirtualNetwork, posted: int, deliveries_before: int) -> dict[str, Any]:
    """The posts (by type) and deliveries since the ``posted``-th post and ``deliveries_before``."""
    assert net.posts is not None
    posts = Counter(message.TYPE for _, _, message in net.posts[posted:])
    return {
        "posts": dict(sorted(posts.items())),
        "election_posts": sum(posts[t] for t in ELECTION_TYPES),
        "all_posts": sum(posts.values()),
        "deliveries": net.deliveries - deliveries_before,
    }


def _new_id(net: VirtualNetwork) -> str:
    """A random 12-hex-digit ID, as ``FlowMesh`` makes them (compared as text)."""
    while True:
        node_id = f"{net.rng.getrandbits(48):012x}"
        if node_id not in net.by_id:
            return node_id


def measure_elections(n: int, seed: int, *, heartbeat: float = 5000.0) -> dict[str, Any]:
    """One run of n tabs: cold start, then a polite close of the leader, then crashes.

    Returns a dict per scenario (``cold_start``, ``polite_close``, ``crash_locks``,
    ``crash_no_locks``) with ``converge_ms`` (virtual ms from the trigger to a single
    leader followed by every open tab), ``detect_ms`` (trigger to the first
    ``Election`` post), the posts by type, the election posts (Election + Answer +
    Coordinator), all posts, and deliveries. Also the wall-clock seconds the run took.
    """
    wall = time.perf_counter()
    config = MeshConfig.from_options(channel="bench", heartbeat=heartbeat)
    tail = config.coordinator_timeout + config.answer_timeout
    limit = 20 * heartbeat
    out: dict[str, Any] = {"n": n, "seed": seed, "heartbeat_ms": heartbeat,
                           "answer_timeout_ms": config.answer_timeout}

    def elect(net: VirtualNetwork, trigger: Callable[[], None], name: str) -> str:
        assert net.posts is not None
        posted, deliveries_before = len(net.posts), net.deliveries
        start = net.now
        trigger()
        done = net.run_until(start + limit, lambda: net.leader() is not None)
        converge_ms = net.now - start if done else math.inf
        first_election = next((t for t, _, message in net.posts[posted:] if message.TYPE == "election"), None)
        net.run_until(net.now + tail)  # late candidates, reassertions
        leader = net.leader()
        result = {"converge_ms": converge_ms, "converged": done and leader is not None,
                  "detect_ms": None if first_election is None else first_election - start,
                  "tabs": len(net.open_tabs), **_count(net, posted, deliveries_before)}
        out[name] = result
        if leader is None:
            raise RuntimeError(f"{n} tabs, seed {seed}: no single leader after {name}")
        return leader

    net = VirtualNetwork(seed, config, decoded=True, log_posts=True)
    # a. cold start: every tab opens within 20 ms.
    def cold() -> None:
        for _ in range(n):
            net.add_tab(net.now + net.rng.uniform(0.0, 20.0), node_id=_new_id(net))
    leader = elect(net, cold, "cold_start")
    # Settle through two heartbeats, then b. the leader closes politely.
    net.run_until(net.now + 2 * heartbeat)
    leader = elect(net, lambda: net.close_now(net.by_id[leader]), "polite_close")
    # c. the leader crashes at a random moment between two heartbeats: first with
    # Web Locks, then (the same mesh, locks no longer modelled) without.
    for locks in (True, False):
        net.locks = locks
        net.run_until(net.now + 2 * heartbeat + net.rng.uniform(0.0, heartbeat))
        def crash(gone: str = leader) -> None:
            net.crash_now(net.by_id[gone])
        leader = elect(net, crash, "crash_locks" if locks else "crash_no_locks")
    out["wall_s"] = time.perf_counter() - wall
    return out


def bully_bounds(n: int) -> dict[str, int]:
    """The textbook Bully algorithm's message counts (point-to-point messages).

    Best case: the second-highest process notices the leader's failure and sends
    n-2 Coordinator messages. Worst case: the lowest process notices it; every
    process i sends Elections to the n-i processes above it, each answers, and the
    winner sends n-1 Coordinators: about n^2 messages, O(n^2).
    """
    elections = sum(range(1, n))  # process i (1..n-1, by rank) messages all higher ones
    return {"best": n - 2, "worst": 2 * elections + (n - 1)}


def simulator_throughput(seconds: float = 20.0, tabs: int = 50) -> dict[str, Any]:
    """The project's simulator's speed: simulated tab-seconds per wall-clock second.

    Runs :func:`pyflowmesh.simulation.run` on consecutive seeds (random scenarios
    of ``tabs`` tabs with every kind of fault, every message JSON encoded and
    decoded) for about ``seconds`` of wall time, and divides the simulated
    tab-time (the sum over tabs of how long each was open) by the wall time.
    """
    wall0 = time.perf_counter()
    runs = tab_ms = messages = deliveries = violations = 0
    seed = 0
    while time.perf_counter() - wall0 < seconds:
        report = run(seed, tabs)
        runs += 1
        tab_ms += report.tab_ms
        messages += report.messages
        deliveries += report.deliveries
        violations += len(report.violations)
        seed += 1
    wall = time.perf_counter() - wall0
    return {"tabs": tabs, "runs": runs, "wall_s": wall, "tab_seconds": tab_ms / 1000,
            "tab_seconds_per_s": tab_ms / 1000 / wall, "deliveries_per_s": deliveries / wall,
            "messages": messages, "deliveries": deliveries, "violations": violations}


def run_all(sizes: tuple[int, ...] = (10, 100, 1000), seeds: int = 3,
            throughput_s: float = 20.0, log: Callable[[str], None] = print) -> dict[str, Any]:
    """Every figure of this module, as JSON-ready data."""
    t0 = time.perf_counter()
    elections: list[dict[str, Any]] = []
    for n in sizes:
        for seed in range(seeds if n < 1000 else 1):
            result = measure_elections(n, seed)
            elections.append(result)
            log(f"sim: {n:5d} tabs seed {seed}: " + ", ".join(
                f"{k} {result[k]['election_posts']} posts/{result[k]['converge_ms']:.0f} ms"
                for k in ("cold_start", "polite_close", "crash_locks", "crash_no_locks"))
                + f" ({result['wall_s']:.1f} s)")
    summary = []
    for n in sizes:
        runs = [r for r in elections if r["n"] == n]
        row: dict[str, Any] = {"n": n, "runs": len(runs), "bully": bully_bounds(n)}
        for k in ("cold_start", "polite_close", "crash_locks", "crash_no_locks"):
            row[k] = {
                "election_posts": statistics.median(r[k]["election_posts"] for r in runs),
                "all_posts": statistics.median(r[k]["all_posts"] for r in runs),
                "deliveries": statistics.median(r[k]["deliveries"] for r in runs),
                "converge_ms": statistics.median(r[k]["converge_ms"] for r in runs),
                "detect_ms": statistics.median((r[k]["detect_ms"] or 0.0) for r in runs),
                "posts": {t: statistics.median(r[k]["posts"].get(t, 0) for r in runs)
                          for t in sorted({t for r in runs for t in r[k]["posts"]})},
            }
        summary.append(row)
    log("sim: timing the project's simulator (pyflowmesh.simulation.run, 50 tabs, faults)")
    try:
        throughput = simulator_throughput(throughput_s)
    except Exception as error:  # the simulator is being worked on: report, don't fail the bench
        throughput = {"error": f"{type(error).__name__}: {error}"}
    return {"elections": elections, "summary": summary, "throughput": throughput,
            "wall_s": time.perf_counter() - t0}


if __name__ == "__main__":
    import json
    import sys

    sizes = tuple(int(a) for a in sys.argv[1:]) or (10, 100, 1000)
    print(json.dumps(run_all(sizes, throughput_s=5.0), indent=1, default=str)[:6000])
