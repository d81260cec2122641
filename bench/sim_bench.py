"""Protocol scale, measured in virtual time on plain CPython (no browser).

What it measures
----------------
For n = 10, 100, 1,000 tabs it drives real :class:`pyflowmesh.core.node.MeshNode`
objects in a small deterministic loop (:class:`Net`) and counts the messages of
three elections, one after the other in one run:

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

The loop: one heap of ``(time, seq, event)`` in virtual ms; a post reaches each
other open tab after a delay drawn uniformly from 0.1-5 ms, in order per
sender-receiver pair; after every input a tab's timer is armed at
``node.next_deadline()``. The decoded message object is handed to
``MeshNode.handle`` (the encoding itself is exercised by the simulator and the
tests; skipping n-fold JSON decoding keeps 1,000 tabs fast). Seeded: a run is
reproducible.

Separately, :func:`simulator_throughput` times the project's own simulator
(:mod:`pyflowmesh.simulation`, random scenarios with faults, every message JSON
encoded and decoded) in simulated tab-seconds per wall-clock second.
"""

from __future__ import annotations

import heapq
import math
import random
import statistics
import time
from collections import Counter
from collections.abc import Callable
from typing import Any

from pyflowmesh.core.config import MeshConfig
from pyflowmesh.core.effects import LeaderChanged, Send, WatchPeer
from pyflowmesh.core.election import Role
from pyflowmesh.core.node import MeshNode

ELECTION_TYPES = ("election", "answer", "coordinator")

_DELIVER, _TICK, _GONE, _ACTION = range(4)


class Net:
    """n ``MeshNode``s on one simulated BroadcastChannel, in virtual time.

    Args:
        seed: seeds every random choice (node IDs, delays, lock hand-off times).
        config: the mesh options of every tab.
        locks: model Web Locks: a tab watching a peer (``WatchPeer``) gets
            ``peer_gone`` 40-90 ms after that peer vanishes, as measured in Chromium.
        delay: the channel's delivery delay range (ms).
    """

    def __init__(self, seed: int, config: MeshConfig, *, locks: bool = True,
                 delay: tuple[float, float] = (0.1, 5.0), lock_delay: tuple[float, float] = (40.0, 90.0)) -> None:
        self.rng = random.Random(seed)
        self.config = config
        self.locks = locks
        self.delay = delay
        self.lock_delay = lock_delay
        self.now = 0.0
        self.nodes: dict[str, MeshNode] = {}
        self.live: dict[str, MeshNode] = {}  # insertion-ordered: deterministic iteration
        self.watching: dict[str, str | None] = {}
        self.posts: Counter[str] = Counter()
        self.deliveries = 0
        self.inputs = 0
        self._heap: list[tuple[float, int, int, str, Any]] = []
        self._seq = 0
        self._gen: dict[str, int] = {}
        self._tick_at: dict[str, float] = {}
        self._last_to: dict[tuple[str, str], float] = {}
        self._dirty = False
        self.first_post: dict[str, float] = {}  # type -> first post time since mark_posts()

    # --- scripting -----------------------------------------------------------------

    def new_id(self) -> str:
        """A random 12-hex-digit ID, as ``FlowMesh`` makes them (compared as text)."""
        while True:
            node_id = f"{self.rng.getrandbits(48):012x}"
            if node_id not in self.nodes:
                return node_id

    def open_tab(self, at: float) -> str:
        node_id = self.new_id()
        node = MeshNode(node_id, self.config)
        self.nodes[node_id] = node
        self._push(at, _ACTION, node_id, lambda: self._start(node_id))
        return node_id

    def at(self, when: float, action: Callable[[], None]) -> None:
        self._push(when, _ACTION, "", action)

    def close(self, node_id: str) -> None:
        """Polite close: ``leave`` (posts ``Bye``), then the tab is gone."""
        node = self.live[node_id]
        node.leave(self.now)
        self._apply(node_id, node.take_effects())
        self._vanish(node_id)

    def crash(self, node_id: str) -> None:
        """The tab vanishes without a word; watchers of its lock hear of it 40-90 ms later."""
        self._vanish(node_id)

    # --- running -------------------------------------------------------------------

    def mark_posts(self) -> None:
        """Forget ``first_post``: record anew when each message type is first posted."""
        self.first_post = {}

    def run_until(self, until: float, stop: Callable[[], bool] | None = None) -> bool:
        """Process events up to virtual time ``until``; return True early when ``stop()`` holds."""
        heap = self._heap
        while heap and heap[0][0] <= until:
            when, _, kind, target, payload = heapq.heappop(heap)
            self.now = when
            if kind == _ACTION:
                payload()
            else:
                if kind == _DELIVER:
                    message, batch, index = payload
                    target = batch[index][1]
                    if index + 1 < len(batch):
                        self._push(batch[index + 1][0], _DELIVER, "", (message, batch, index + 1))
                    payload = message
                node = self.live.get(target)
                if node is None:
                    continue
                self.inputs += 1
                if kind == _DELIVER:
                    self.deliveries += 1
                    node.handle(payload, when)
                elif kind == _TICK:
                    if payload != self._gen[target]:
                        continue
                    self._tick_at.pop(target, None)
                    node.tick(when)
                else:
                    node.peer_gone(payload, when)
                self._after(target, node)
            if stop is not None and self._dirty:
                self._dirty = False
                if stop():
                    return True
        self.now = max(self.now, until)
        return False

    def leader(self) -> str | None:
        """The one leader every open tab follows, or ``None`` (not converged)."""
        leader = None
        for node_id, node in self.live.items():
            if node.role is Role.LEADER:
                if leader is not None:
                    return None
                leader = node_id
            elif node.role is not Role.FOLLOWER:
                return None
        if leader is None:
            return None
        for node in self.live.values():
            if node.role is Role.FOLLOWER and node.leader != leader:
                return None
        return leader

    # --- internals -----------------------------------------------------------------

    def _push(self, when: float, kind: int, target: str, payload: Any) -> None:
        self._seq += 1
        heapq.heappush(self._heap, (when, self._seq, kind, target, payload))

    def _start(self, node_id: str) -> None:
        node = self.nodes[node_id]
        self.live[node_id] = node
        self._gen[node_id] = 0
        node.start(self.now)
        self._after(node_id, node)

    def _after(self, node_id: str, node: MeshNode) -> None:
        effects = node.take_effects()
        if effects:
            self._apply(node_id, effects)
        if node_id in self.live:
            deadline = node.next_deadline()
            if deadline is not None:
                when = max(deadline, self.now)
                armed = self._tick_at.get(node_id)
                if armed is None or when < armed or armed < self.now:
                    self._gen[node_id] += 1
                    self._tick_at[node_id] = when
                    self._push(when, _TICK, node_id, self._gen[node_id])
                elif when > armed:
                    pass  # the armed tick comes first; tick() early is harmless and re-arms

    def _apply(self, node_id: str, effects: list[Any]) -> None:
        for effect in effects:
            if type(effect) is Send:
                self._post(node_id, effect)
            elif type(effect) is LeaderChanged:
                self._dirty = True
            elif type(effect) is WatchPeer:
                self.watching[node_id] = effect.node_id
                if self.locks and effect.node_id is not None and effect.node_id not in self.live:
                    self._push(self.now + self._delay(), _GONE, node_id, effect.node_id)

    def _delay(self) -> float:
        low, high = self.delay
        return low + self.rng.random() * (high - low)

    def _post(self, sender: str, effect: Send) -> None:
        """One post: a delivery to every other open tab, each after its own delay.

        The deliveries of one post wait in one sorted list with a single heap entry
        for the next of them (a post to 999 tabs costs one heap slot, not 999)."""
        message = effect.message
        self.posts[message.TYPE] += 1
        self.first_post.setdefault(message.TYPE, self.now)
        low, span = self.delay[0], self.delay[1] - self.delay[0]
        rand = self.rng.random
        last_to = self._last_to
        now = self.now
        batch = []
        for other in self.live:
            if other == sender:
                continue
            when = now + low + rand() * span
            pair = (sender, other)
            previous = last_to.get(pair)
            if previous is not None and when < previous:
                when = previous  # FIFO per sender -> receiver pair
            last_to[pair] = when
            batch.append((when, other))
        if batch:
            batch.sort()
            self._push(batch[0][0], _DELIVER, "", (message, batch, 0))

    def _vanish(self, node_id: str) -> None:
        self.live.pop(node_id, None)
        self._dirty = True
        if self.locks:
            low, high = self.lock_delay
            for other, watched in self.watching.items():
                if watched == node_id and other in self.live:
                    self._push(self.now + self.rng.uniform(low, high), _GONE, other, node_id)


def _count(net: Net, before: Counter[str], deliveries_before: int) -> dict[str, Any]:
    posts = net.posts - before
    return {
        "posts": dict(sorted(posts.items())),
        "election_posts": sum(posts[t] for t in ELECTION_TYPES),
        "all_posts": sum(posts.values()),
        "deliveries": net.deliveries - deliveries_before,
    }


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

    def elect(net: Net, trigger: Callable[[], None], name: str) -> str:
        before, deliveries_before = Counter(net.posts), net.deliveries
        start = net.now
        net.mark_posts()
        trigger()
        done = net.run_until(start + limit, lambda: net.leader() is not None)
        converge_ms = net.now - start if done else math.inf
        first_election = net.first_post.get("election")
        net.run_until(net.now + tail)  # late candidates, reassertions
        leader = net.leader()
        result = {"converge_ms": converge_ms, "converged": done and leader is not None,
                  "detect_ms": None if first_election is None else first_election - start,
                  "tabs": len(net.live), **_count(net, before, deliveries_before)}
        out[name] = result
        if leader is None:
            raise RuntimeError(f"{n} tabs, seed {seed}: no single leader after {name}")
        return leader

    net = Net(seed, config)
    # a. cold start: every tab opens within 20 ms.
    def cold() -> None:
        for _ in range(n):
            net.open_tab(net.now + net.rng.uniform(0.0, 20.0))
    leader = elect(net, cold, "cold_start")
    # Settle through two heartbeats, then b. the leader closes politely.
    net.run_until(net.now + 2 * heartbeat)
    leader = elect(net, lambda: net.close(leader), "polite_close")
    # c. the leader crashes at a random moment between two heartbeats: first with
    # Web Locks, then (the same mesh, locks no longer modelled) without.
    for locks in (True, False):
        net.locks = locks
        net.run_until(net.now + 2 * heartbeat + net.rng.uniform(0.0, heartbeat))
        leader = elect(net, lambda gone=leader: net.crash(gone), "crash_locks" if locks else "crash_no_locks")
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
    from pyflowmesh import simulation

    wall0 = time.perf_counter()
    runs = tab_ms = messages = deliveries = violations = 0
    seed = 0
    while time.perf_counter() - wall0 < seconds:
        report = simulation.run(seed, tabs)
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
    # The election before staggered candidacy (bench/election_before.py), for before/after
    # figures; python -m bench.election_before 1000 for the largest size.
    from . import election_before

    before = election_before.measure(election_before.Before, tuple(sizes))
    log("sim: timing the project's simulator (pyflowmesh.simulation.run, 50 tabs, faults)")
    try:
        throughput = simulator_throughput(throughput_s)
    except Exception as error:  # the simulator is being worked on: report, don't fail the bench
        throughput = {"error": f"{type(error).__name__}: {error}"}
    return {"elections": elections, "summary": summary, "throughput": throughput, "before": before,
            "wall_s": time.perf_counter() - t0}


if __name__ == "__main__":
    import json
    import sys

    sizes = tuple(int(a) for a in sys.argv[1:]) or (10, 100, 1000)
    print(json.dumps(run_all(sizes, throughput_s=5.0), indent=1, default=str)[:6000])
