"""Every structure that grows with keys, peers, messages or time stays within its bound.

One simulated run (real ``MeshNode`` objects in virtual time) drives 10,000 distinct keys
through a mesh whose tabs join and leave 1,000 times (crashes and polite closes), with
server outages (failures, back-offs), a peer flooding 10,000 results of distinct keys and
10,000 malformed messages with distinct field names. The size of every structure of every
live tab is sampled all along; one test per structure checks the largest size seen. Sizes,
never times. The runtime's structures (listeners, the tab's members) are checked over
``MemoryHub`` with the same counts.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from typing import Any

import pytest
from support import async_test

from pyflowmesh import FlowMesh, use_flow
from pyflowmesh.core.cache import MARKS_PER_ENTRY
from pyflowmesh.core.config import MeshConfig
from pyflowmesh.core.stats import MAX_DROP_REASONS, MeshStats
from pyflowmesh.core.wire import Result, encode
from pyflowmesh.simulation import Simulation
from pyflowmesh.transports.memory import MemoryHub

KEYS = 10_000
CHURN = 1_000  # tab joins, and as many leaves
MAX_ENTRIES = 16
FLOWS_BOUND = 4 * MAX_ENTRIES
"""What these tests take as the bound of the per-key records (claims, back-offs, failure
counts) and of in-flight work (keys worked on, calls running) while the page itself runs
few executes at once: 4 x ``max_entries``, as the cache's marks."""

STRUCTURES: dict[str, tuple[Callable[[Any], int], int]] = {
    "cache entries": (lambda node: len(node.cache), MAX_ENTRIES),
    "cache version marks": (lambda node: node.cache.marks, MARKS_PER_ENTRY * MAX_ENTRIES),
    "stats drop_reasons": (lambda node: len(node.stats.drop_reasons), MAX_DROP_REASONS),
    "flows pending": (lambda node: len(node.executes.table.by_key), FLOWS_BOUND),
    "flows calls": (lambda node: len(node.executes.table.by_call), FLOWS_BOUND),
    "flows claims": (lambda node: len(node.claims), FLOWS_BOUND),
    "flows backoffs": (lambda node: len(node.backoff), FLOWS_BOUND),
    "flows attempts": (lambda node: node.backoff.attempts_held, FLOWS_BOUND),
}


def _noise(i: int) -> str:
    """A hello with a made-up field: dropped as ``extra-field:<name>``, a new name each time."""
    body = json.loads(encode(_hello()))
    body[f"junk{i}"] = i
    return json.dumps(body)


def _hello() -> Any:
    from pyflowmesh.core.wire import Hello

    return Hello(src="f00d")


@pytest.fixture(scope="module")
def churned() -> dict[str, Any]:
    """The run; returns the largest size of each structure over every live tab, and the end state."""
    config = MeshConfig.from_options(
        channel="bounds", heartbeat=1000.0, stale_time=5000.0, call_timeout=5000.0, error_backoff=1000.0,
        max_error_backoff=10_000.0, max_entries=MAX_ENTRIES,
    )
    sim = Simulation(13, config)
    for _ in range(4):
        sim.add_tab(at=0.0, flows=("user",))
    step = 20.0  # ms between keys: 10,000 keys in 200 s
    start = 5000.0
    largest = {name: 0 for name in STRUCTURES}
    churns = [0]

    def sample() -> None:
        for tab_id in sim.live():
            node = sim.node(tab_id)
            for name, (size, _) in STRUCTURES.items():
                largest[name] = max(largest[name], size(node))

    def execute(i: int) -> None:
        live = sim.live()
        sim.execute(live[i % len(live)], "user", (f"q{i}",))

    def churn(i: int) -> None:
        live = sim.live()
        victim = live[(i * 7) % len(live)]
        (sim.crash if i % 2 else sim.close)(victim)
        sim.add_tab(flows=("user",))
        churns[0] += 1

    for i in range(KEYS):
        t = start + i * step
        sim.at(t, lambda i=i: execute(i))
        sim.inject(
            encode(
                Result(
                    src="f00d",
                    key=f"flood{i}",
                    value={"key": f"flood{i}"},
                    version=1,
                    origin="f00d",
                    age=0.0,
                    shared=True,
                    to=None,
                )
            ),
            at=t + step / 2,
        )
        sim.inject(_noise(i), at=t + step / 4)
        if i % (KEYS // CHURN) == 5:
            sim.at(t + step / 3, lambda i=i: churn(i))
        if i % 50 == 0:
            sim.at(t + step * 0.9, sample)
        if i % 1000 == 500:
            sim.outage(t, t + 2000.0)  # 100 keys fail: back-offs, attempts
    end = start + KEYS * step
    sim.run_until(end)
    sample()
    sim.run_until(end + 60_000.0)  # quiet: every execute ends, every back-off and claim expires
    sample()
    exceptions = [str(v) for v in sim.violations if v.kind == "exception"]
    at_rest = {
        tab_id: {name: size(sim.node(tab_id)) for name, (size, _) in STRUCTURES.items()} for tab_id in sim.live()
    }
    return {
        "largest": largest,
        "churns": churns[0],
        "exceptions": exceptions,
        "at_rest": at_rest,
        "executes": len(sim.execs),
    }


def test_the_run_did_what_it_says(churned: dict[str, Any]) -> None:
    assert churned["churns"] == CHURN
    assert churned["executes"] == KEYS
    assert churned["exceptions"] == []


@pytest.mark.parametrize("name", list(STRUCTURES))
def test_structure_stays_within_its_bound(churned: dict[str, Any], name: str) -> None:
    bound = STRUCTURES[name][1]
    assert churned["largest"][name] <= bound, (
        f"{name}: {churned['largest'][name]} after {KEYS} keys and {CHURN} tab joins and leaves (bound {bound})"
    )


@pytest.mark.parametrize("name", ["flows pending", "flows calls"])
def test_no_work_is_left_once_the_mesh_is_quiet(churned: dict[str, Any], name: str) -> None:
    assert all(sizes[name] == 0 for sizes in churned["at_rest"].values()), churned["at_rest"]


def test_drop_reasons_stay_bounded_when_a_sender_invents_field_names() -> None:
    stats = MeshStats()
    for i in range(KEYS):
        stats.drop(f"extra-field:{'x' * (i % 300)}{i}")
        stats.drop(f"bad-field:f{i % 40}")
        stats.drop("version")
    assert len(stats.drop_reasons) <= MAX_DROP_REASONS
    assert stats.dropped == sum(stats.drop_reasons.values()) == 3 * KEYS
    assert stats.drop_reasons["version"] == KEYS  # the fixed reasons keep their own counts
    assert all(len(reason) <= 100 for reason in stats.drop_reasons)
    assert stats.drop_reasons["extra-field:other"] > 0


def test_a_drop_reason_from_an_unknown_kind_cannot_grow_the_counter() -> None:
    stats = MeshStats()
    for i in range(KEYS):
        stats.drop(f"reason-{i}")
    assert len(stats.drop_reasons) <= MAX_DROP_REASONS
    assert stats.drop_reasons["other"] == KEYS - (MAX_DROP_REASONS - 1)


# --- the runtime: listeners and the tab's members -------------------------------------------


async def _answer(*args: Any) -> Any:
    return {"args": list(args)}


@async_test
async def test_listener_registries_hold_only_keys_someone_listens_to() -> None:
    hub = MemoryHub()
    mesh = FlowMesh("bounds", transport=hub.transport(), heartbeat=100, max_entries=MAX_ENTRIES)
    offs = [mesh.on_cache_update(f"k{i}", lambda value: None) for i in range(KEYS)]
    offs += [mesh.on_error(f"k{i}", lambda error: None) for i in range(KEYS)]
    assert len(mesh._cache_listeners) == len(mesh._error_listeners) == KEYS
    for off in offs:
        off()
        off()  # twice is harmless
    assert mesh._cache_listeners == {} and mesh._error_listeners == {}
    mesh.dispose()


@async_test
async def test_a_flow_executing_10000_keys_follows_one_key_at_a_time() -> None:
    hub = MemoryHub()
    tabs = [FlowMesh("bounds", transport=hub.transport(), heartbeat=100, max_entries=MAX_ENTRIES) for _ in range(2)]
    flows = [use_flow(_answer, tab, key="search") for tab in tabs]
    for batch in range(0, KEYS, 500):
        await asyncio.gather(*(flows[i % 2].execute(f"q{i}") for i in range(batch, batch + 500)))
    for tab in tabs:
        assert len(tab._cache_listeners) <= 1 and len(tab._error_listeners) <= 1
        assert len(tab._node.cache._high) <= MARKS_PER_ENTRY * MAX_ENTRIES
    for flow in flows:
        flow.close()
    assert all(tab._cache_listeners == {} == tab._error_listeners for tab in tabs)
    for tab in tabs:
        tab.dispose()


@async_test
async def test_tabs_joining_and_leaving_1000_times_leave_nothing_behind() -> None:
    from pyflowmesh import flow as flow_module

    hub = MemoryHub()
    before = len(flow_module._members)
    stay = FlowMesh("bounds", transport=hub.transport(), heartbeat=100)
    for i in range(CHURN):
        tab = FlowMesh("bounds", transport=hub.transport(), heartbeat=100)
        use_flow(_answer, tab, key="search")
        if i % 10 == 0:
            await asyncio.sleep(0)  # let the members hear each other now and then
        tab.dispose()
    await asyncio.sleep(0.05)
    assert len(flow_module._members) <= before + 1
    assert hub.connected("bounds") == 1 and hub.holds_lock("bounds", "", stay.node_id)
    assert len(stay.stats.drop_reasons) <= MAX_DROP_REASONS
    stay.dispose()


def test_flows_made_and_dropped_as_a_page_renders_are_not_kept_by_their_mesh() -> None:
    import gc

    async def main() -> None:
        hub = MemoryHub()
        mesh = FlowMesh("bounds", transport=hub.transport(), heartbeat=100)

        def fetch() -> int:
            return 1

        kept = use_flow(fetch, mesh, key="render")
        for _ in range(1000):  # a page calling use_flow on every render
            use_flow(fetch, mesh, key="render")
        gc.collect()
        use_flow(fetch, mesh, key="render")
        assert len(mesh._flow_resets) <= 3, len(mesh._flow_resets)
        mesh.set_scope("someone")
        assert kept.status == "idle"  # the live one is still reset on a scope switch
        mesh.dispose()

    asyncio.run(main())


def test_flows_made_per_query_and_executed_are_not_kept_by_their_mesh() -> None:
    """A page calling ``use_flow`` per search and executing it once must not keep every flow.

    Found by a soak (6 tabs, 3 executing each new key with a fresh flow each, never closed):
    +38 MB over 5,000 keys, tracemalloc pointing at ``_subscribe_key`` (mesh.py): each flow's
    ``on_cache_update``/``on_error`` listeners for the key it followed hold the flow (and its
    data) strongly, and keep one registry entry per abandoned flow's key."""
    import gc
    import weakref

    async def main() -> None:
        hub = MemoryHub()
        mesh = FlowMesh("bounds", transport=hub.transport(), heartbeat=100, max_entries=MAX_ENTRIES)
        alive: weakref.WeakSet[Any] = weakref.WeakSet()
        for i in range(1000):
            flow = use_flow(_answer, mesh, key="search")  # a new flow per query, as a page may render
            await flow.execute(f"q{i}")
            alive.add(flow)
            del flow
        gc.collect()
        assert len(alive) <= 3, f"{len(alive)} dropped flows still alive"
        assert len(mesh._cache_listeners) <= 3 and len(mesh._error_listeners) <= 3, len(mesh._cache_listeners)
        mesh.dispose()

    asyncio.run(main())


@async_test
async def test_tabs_crashing_1000_times_leave_nothing_behind() -> None:
    """A soak replacing tabs by ``hub.crash`` must stay flat as one replacing them by ``dispose``.

    Found by a soak (6 tabs, one crashed and replaced every 100 keys, 3 executing each new key):
    +3.4 MB over 5,000 keys with ``max_entries=64`` (+67 KB when the crashed meshes are removed
    from ``pyflowmesh.flow._members`` by hand): ``use_flow(f, mesh)`` registers the mesh there and
    ``MemoryHub.crash`` never removes it, so every crashed tab's cache stays alive."""
    import gc
    import weakref

    from pyflowmesh import flow as flow_module

    hub = MemoryHub()
    before = len(flow_module._members)
    stay = FlowMesh("bounds", transport=hub.transport(), heartbeat=100)
    crashed: weakref.WeakSet[FlowMesh] = weakref.WeakSet()
    for i in range(CHURN):
        tab = FlowMesh("bounds", transport=hub.transport(), heartbeat=100)
        use_flow(_answer, tab, key="search")
        if i % 10 == 0:
            await asyncio.sleep(0)
        hub.crash(tab)
        crashed.add(tab)
        del tab
    await asyncio.sleep(0.05)
    gc.collect()
    assert len(flow_module._members) <= before + 1, len(flow_module._members) - before
    assert len(crashed) <= 1, f"{len(crashed)} crashed meshes still alive"
    stay.dispose()
