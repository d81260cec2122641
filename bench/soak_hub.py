"""Memory of tabs over ``MemoryHub`` executing a flow with ever-new arguments (CPython, tracemalloc).

The case of issue 13: a page whose flow takes arguments that never repeat (a search
box). ``tabs`` tabs of one channel, each with the flow (``use_flow``); key ``i`` is
executed at once in ``per_key`` of them (a different group each time), ``keys``
distinct keys in all, ``max_entries`` as given. With ``replace_every``, one tab is
disposed and a fresh one opened every that many keys (tab churn).

It prints and returns the traced memory (``tracemalloc``, the whole process: the tabs
are the only thing that grows in it) after a warm-up and then at intervals, and the
source lines that gained the most between the warm-up and the end.

``python -m bench.soak_hub [--keys 6000] [--tabs 6] [--per-key 3] [--max-entries 64]``
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import sys
import tracemalloc
from collections.abc import Callable
from typing import Any

from pyflowmesh import FlowMesh, use_flow
from pyflowmesh.transports.memory import MemoryHub

Log = Callable[[str], None]


async def _fetch(*args: Any) -> Any:
    await asyncio.sleep(0)
    return {"args": list(args)}


def _traced() -> int:
    gc.collect()
    return tracemalloc.get_traced_memory()[0]


async def _settle(tabs: list[FlowMesh], limit_s: float = 10.0) -> None:
    loop = asyncio.get_running_loop()
    give_up = loop.time() + limit_s
    while loop.time() < give_up:
        leaders = [t for t in tabs if t.is_leader]
        if len(leaders) == 1 and all(t.leader_id == leaders[0].node_id for t in tabs):
            return
        await asyncio.sleep(0.01)
    raise RuntimeError("the tabs did not settle on one leader")


async def _run(keys: int, tabs_n: int, per_key: int, max_entries: int, warmup: int, every: int,
               replace_every: int, log: Log) -> dict[str, Any]:
    hub = MemoryHub()
    options = {"heartbeat": 200, "max_entries": max_entries}

    def open_tab() -> tuple[FlowMesh, Any]:
        mesh = FlowMesh("soak-hub", transport=hub.transport(), **options)
        return mesh, use_flow(_fetch, mesh, key="search")

    tabs = [open_tab() for _ in range(tabs_n)]
    await _settle([m for m, _ in tabs])
    samples: list[tuple[int, int]] = []
    base = 0
    snapshot = None
    for i in range(keys):
        group = [tabs[(i + j) % tabs_n][1] for j in range(per_key)]
        await asyncio.gather(*(flow.execute(f"query {i}") for flow in group))
        if replace_every and i and i % replace_every == 0:
            mesh, _ = tabs.pop(0)
            mesh.dispose()
            tabs.append(open_tab())
            await asyncio.sleep(0.05)
        done = i + 1
        if done == warmup:
            base = _traced()
            snapshot = tracemalloc.take_snapshot()
            samples.append((done, base))
            log(f"hub: {done} keys (warm-up): {base / 1024:.0f} KiB traced")
        elif done > warmup and (done % every == 0 or done == keys):
            now = _traced()
            samples.append((done, now))
            log(f"hub: {done} keys: {now / 1024:.0f} KiB traced ({(now - base) / 1024:+.0f} KiB since warm-up)")
    top: list[str] = []
    if snapshot is not None:
        gc.collect()
        diff = tracemalloc.take_snapshot().compare_to(snapshot, "lineno")
        top = [str(stat) for stat in diff[:8]]
    for mesh, _ in tabs:
        mesh.dispose()
    growth = samples[-1][1] - base if samples else 0
    return {"keys": keys, "tabs": tabs_n, "per_key": per_key, "max_entries": max_entries, "warmup": warmup,
            "replace_every": replace_every, "samples": samples, "growth_bytes": growth,
            "growth_per_key_bytes": growth / max(1, keys - warmup), "top": top}


def run(keys: int = 6000, tabs: int = 6, per_key: int = 3, max_entries: int = 64, warmup: int = 1000,
        every: int = 1000, replace_every: int = 0, log: Log = print) -> dict[str, Any]:
    """Measure; see the module's docstring. Starts and stops tracemalloc itself."""
    tracemalloc.start(1)
    try:
        return asyncio.run(_run(keys, tabs, per_key, max_entries, warmup, every, replace_every, log))
    finally:
        tracemalloc.stop()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.soak_hub", description=__doc__.split("\n\n")[0])
    parser.add_argument("--keys", type=int, default=6000)
    parser.add_argument("--tabs", type=int, default=6)
    parser.add_argument("--per-key", type=int, default=3)
    parser.add_argument("--max-entries", type=int, default=64)
    parser.add_argument("--warmup", type=int, default=1000)
    parser.add_argument("--replace-every", type=int, default=0, help="replace a tab every N keys (0: never)")
    args = parser.parse_args(argv)
    result = run(args.keys, args.tabs, args.per_key, args.max_entries, args.warmup,
                 replace_every=args.replace_every)
    print(f"growth after warm-up: {result['growth_bytes'] / 1024:+.1f} KiB over {args.keys - args.warmup} keys "
          f"({result['growth_per_key_bytes']:.1f} B per key)")
    print("top lines that grew:")
    for line in result["top"]:
        print("  " + line)
    return 0


if __name__ == "__main__":
    sys.exit(main())
