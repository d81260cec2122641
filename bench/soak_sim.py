"""The soak in the simulator: tabs for many simulated hours, ever-new keys, tabs replaced, memory sampled.

Real :class:`~pyflowmesh.core.node.MeshNode` objects in :class:`~pyflowmesh.simulation.Simulation`'s
virtual time (default heartbeat 5 s, ``stale_time`` 30 s, ``max_entries`` 64):

* ``tabs`` tabs stay open; every ``key_every_ms`` a new key (``user("q<i>")``) is
  executed in 3 random tabs at once (a search box: nothing repeats);
* every ``churn_every_ms`` a random tab crashes or closes (alternately) and a new
  tab joins in its place;
* once an hour a burst: one tab executes ``burst`` new keys within 20 s, a minute
  into the hour (more keys
  than the version marks' bound within ``2 * stale_time``, so marks are evicted for
  count and the cache's floor is used), and a 1-minute server outage (every key
  executed meanwhile fails: back-off records; ``outage_ms=0``: none).

Every ``sample_ms`` (simulated) it samples, after ``gc.collect()``, the memory that
``tracemalloc`` traces in this process, per live tab, leaving out what the simulator's
and the soak's own code allocated (:func:`tab_memory`). The simulator also logs every
execute, call and message outcome for its checks, holding values the tabs decoded;
the soak trims those logs as it goes (:func:`_trim`), so what remains and grows is
the tabs' own state.
Every simulated 10 s it also notes the sizes of each tab's structures that could
grow (:func:`sizes`): each sample reports the largest over tabs since the last one.
"""

from __future__ import annotations

import gc
import random
import tracemalloc
from collections.abc import Callable
from typing import Any

from pyflowmesh.core.config import MeshConfig
from pyflowmesh.simulation import Simulation

Log = Callable[[str], None]
HOUR = 3_600_000.0


def sizes(node: Any) -> dict[str, int]:
    """The sizes of one node's structures that could grow with keys, peers or time."""
    table = node.executes.table
    out = {
        "cache_entries": len(node.cache),
        "marks": node.cache.marks,
        "drop_reasons": len(node.stats.drop_reasons),
        "pending": len(table.by_key),
        "calls": len(table.by_call),
        "claims": len(node.claims),
        "backoffs": len(node.backoff),
        "attempts": node.backoff.attempts_held,
        "effects": node.queued_effects,
    }
    return out


def _trim(sim: Simulation, now: float, stale_time: float) -> None:
    """Forget the simulator's own logs (not the tabs' state) that the soak does not need."""
    sim.execs[:] = [record for record in sim.execs if record.end is None]
    sim.server.calls.clear()
    sim.server.ends.clear()
    sim.oracle.stale_serves.clear()
    sim.violations[:] = sim.violations[:20]
    horizon = now - 4 * stale_time  # nothing produced earlier can still be served fresh
    produced = sim.server.produced
    for call in [c for c, t in produced.items() if t < horizon]:
        del produced[call]
    gone = set()
    for i, tab in enumerate(sim.tabs):
        if tab is _GONE or not tab.started or tab.alive:
            continue
        gone.add(tab.index)
        # Every event for a dead tab checks tab.alive first; nothing of the soak names a tab
        # that has been gone for minutes (a burst runs within 80 s of choosing its tab).
        if tab.end_time is not None and tab.end_time < now - 300_000.0:
            sim.tabs[i] = _GONE  # in place: a new tab's index is len(sim.tabs)
            sim.by_id.pop(tab.id, None)
    for tab in sim.tabs:
        for index in gone & tab.last_to.keys():
            del tab.last_to[index]


class _Gone:
    """What stands in ``sim.tabs`` for a tab long gone (its state is the simulator's, not a tab's)."""

    started, alive, frozen, index = True, False, False, -1
    last_to: dict[int, float] = {}


_GONE: Any = _Gone()


def tab_memory(snapshot: tracemalloc.Snapshot) -> int:
    """Traced bytes allocated outside the simulator's and this soak's own code: the tabs' state."""
    own = snapshot.filter_traces([tracemalloc.Filter(False, "*/simulation/*"), tracemalloc.Filter(False, __file__)])
    return sum(stat.size for stat in own.statistics("filename"))


def run(hours: float = 24.0, tabs: int = 6, key_every_ms: float = 2000.0, churn_every_ms: float = 600_000.0,
        burst: int = 400, max_entries: int = 64, seed: int = 13, sample_ms: float = HOUR / 2,
        outage_ms: float = 60_000.0, log: Log = print) -> dict[str, Any]:
    """Run the soak; returns the hourly samples (see the module's docstring)."""
    config = MeshConfig.from_options(channel="soak", max_entries=max_entries)
    sim = Simulation(seed, config)
    rng = random.Random(seed)
    for _ in range(tabs):
        sim.add_tab(at=0.0, flows=("user",))
    keys = 0
    samples: list[dict[str, Any]] = []
    replaced = 0
    largest: dict[str, int] = {}  # since the last sample
    largest_ever: dict[str, int] = {}

    def note_sizes() -> None:
        for tab_id in sim.live():
            for name, size in sizes(sim.node(tab_id)).items():
                largest[name] = max(largest.get(name, 0), size)
                largest_ever[name] = max(largest_ever.get(name, 0), size)

    tracemalloc.start(1)
    try:
        t = 0.0
        next_key, next_churn, next_sample, next_hour = 10_000.0, churn_every_ms, 0.0, 0.0
        end = hours * HOUR
        while t <= end:
            if t >= next_sample:
                sim.run_until(t)
                _trim(sim, t, config.stale_time)
                gc.collect()
                traced = tab_memory(tracemalloc.take_snapshot())
                live = sim.live()
                note_sizes()
                per_structure, largest = dict(largest), {}
                samples.append({"hours": t / HOUR, "keys": keys, "tabs": len(live), "replaced": replaced,
                                "traced_bytes": traced, "per_tab_bytes": traced / max(1, len(live)),
                                "max_sizes": per_structure, "violations": len(sim.violations)})
                log(f"soak sim {t / HOUR:5.1f} h: {keys:6d} keys, {replaced:3d} tabs replaced, "
                    f"{traced / max(1, len(live)) / 1024:7.1f} KiB traced per tab ({len(live)} tabs); "
                    f"largest: " + ", ".join(f"{k} {v}" for k, v in per_structure.items() if v))
                next_sample += sample_ms
            if t >= next_hour:  # the hour's burst of keys from one tab and its outage, in the hour to come
                next_hour += HOUR
                # At once (not later in the hour): what is scheduled waits in the simulator's
                # event heap, which the samples would count.
                burst_at = t + 60_000.0
                tab_id = rng.choice(sim.live())
                for i in range(burst):
                    sim.execute(tab_id, "user", (f"burst{keys}-{i}",), at=burst_at + i * 20_000.0 / burst)
                keys += burst
                outage_at = t + rng.uniform(0.1, 0.8) * HOUR
                if outage_ms > 0:
                    sim.outage(outage_at, outage_at + outage_ms)
            if t >= next_key:
                live = sim.live()
                for tab_id in rng.sample(live, min(3, len(live))):
                    sim.execute(tab_id, "user", (f"q{keys}",), at=t)
                keys += 1
                next_key += key_every_ms
                if keys % 5 == 0:
                    note_sizes()
            if t >= next_churn:
                live = sim.live()
                victim = rng.choice(live)
                (sim.crash if replaced % 2 else sim.close)(victim, at=t)
                sim.add_tab(at=t + 1000.0, flows=("user",))
                replaced += 1
                next_churn += churn_every_ms
            t = min(next_key, next_churn, next_sample, next_hour)
            sim.run_until(t - 1e-3 if t > 0 else t)
    finally:
        tracemalloc.stop()
    warm = next((s for s in samples if s["hours"] >= 2), samples[-1])
    return {"hours": hours, "tabs": tabs, "key_every_ms": key_every_ms, "churn_every_ms": churn_every_ms,
            "burst": burst, "outage_ms": outage_ms, "max_entries": max_entries, "stale_time": config.stale_time,
            "seed": seed,
            "samples": samples, "keys": keys, "replaced": replaced, "largest_sizes": largest_ever,
            "violations": [str(v) for v in sim.violations[:5]],
            "warmup_hours": warm["hours"],
            "growth_per_tab_bytes": samples[-1]["per_tab_bytes"] - warm["per_tab_bytes"],
            "max_per_tab_bytes": max(s["per_tab_bytes"] for s in samples if s["hours"] >= warm["hours"]),
            "min_per_tab_bytes": min(s["per_tab_bytes"] for s in samples if s["hours"] >= warm["hours"])}


def main(argv: list[str] | None = None) -> int:
    import argparse

    parser = argparse.ArgumentParser(prog="python -m bench.soak_sim", description=__doc__.split("\n\n")[0])
    parser.add_argument("--hours", type=float, default=24.0)
    parser.add_argument("--tabs", type=int, default=6)
    args = parser.parse_args(argv)
    result = run(args.hours, args.tabs)
    print(f"per tab after {result['warmup_hours']:g} h: {result['growth_per_tab_bytes'] / 1024:+.1f} KiB by the end "
          f"(range {result['min_per_tab_bytes'] / 1024:.1f}..{result['max_per_tab_bytes'] / 1024:.1f} KiB); "
          f"violations: {result['violations'] or 'none'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
