"""Mutations (``use_flow(..., mutation=True, invalidates=[...])``) across tabs over MemoryHub.

A mutation is called by the tab that executes it, every time; on success every tab drops
every key of the flows it invalidates, and the flows that follow one of them refetch it
with one call for the whole mesh.
"""

from __future__ import annotations

import asyncio
from typing import Any

from support import async_test, ends, open_tabs, settle, until

from pyflowmesh import FlowMesh, use_flow
from pyflowmesh.core.values import cache_key
from pyflowmesh.transports.memory import MemoryHub


class Backend:
    """A counter behind an API: ``save`` changes it, ``dashboard`` reads it; both count their calls."""

    def __init__(self, delay: float = 0.02) -> None:
        self.counter = 0
        self.delay = delay
        self.saves: list[tuple[Any, ...]] = []
        self.reads: list[tuple[Any, ...]] = []
        self.fail_saves = 0

    async def save(self, *args: Any) -> Any:
        self.saves.append(args)
        await asyncio.sleep(self.delay)
        if self.fail_saves:
            self.fail_saves -= 1
            raise ConnectionError("save failed (503)")
        self.counter += 1
        return {"counter": self.counter}

    async def dashboard(self, *args: Any) -> Any:
        self.reads.append(args)
        counter = self.counter  # what the server reads when the call starts
        await asyncio.sleep(self.delay)
        return {"counter": counter, "args": list(args), "read": len(self.reads)}


def close(tabs: list[FlowMesh]) -> None:
    for tab in tabs:
        tab.dispose()


@async_test
async def test_a_mutation_in_one_of_five_tabs_refreshes_the_dashboard_in_all_five_with_one_call() -> None:
    hub, api = MemoryHub(), Backend()
    tabs = open_tabs(hub, 5)
    dashboards = [use_flow(api.dashboard, tab, key="dashboard") for tab in tabs]
    saves = [use_flow(api.save, tab, key="save", mutation=True, invalidates=["dashboard"]) for tab in tabs]
    seen: list[list[Any]] = [[] for _ in tabs]
    for flow, log in zip(dashboards, seen, strict=True):
        flow.subscribe(lambda flow, log=log: log.append(flow.data))
    await settle(tabs)
    await ends(asyncio.gather(*(flow.execute() for flow in dashboards)), "the first reads")
    assert len(api.reads) == 1
    assert all(flow.data == {"counter": 0, "args": [], "read": 1} for flow in dashboards)

    assert await ends(saves[2].execute("x"), "the save") == {"counter": 1}
    await until(lambda: all(flow.data is not None and flow.data["counter"] == 1 and flow.status == "success"
                            for flow in dashboards), what="every tab shows the new counter")
    await asyncio.sleep(0.3)  # a few beats more: room for any extra call to show up
    assert api.saves == [("x",)]
    assert len(api.reads) == 2  # one refetch for the whole mesh
    for flow, log in zip(dashboards, seen, strict=True):
        assert flow.data == {"counter": 1, "args": [], "read": 2}
        assert log[-1] == {"counter": 1, "args": [], "read": 2}  # the subscribers saw it
    for tab in tabs:  # and every cache holds the new entry, not the old one
        entry = tab.cached_entry("dashboard")
        assert entry is not None and entry.value["counter"] == 1
    close(tabs)


@async_test
async def test_two_tabs_saving_at_once_make_two_calls_and_so_do_two_saves_in_one_tab() -> None:
    hub, api = MemoryHub(), Backend()
    tabs = open_tabs(hub, 3)
    saves = [use_flow(api.save, tab, key="save", mutation=True, invalidates=["dashboard"]) for tab in tabs]
    await settle(tabs)
    results = await ends(asyncio.gather(saves[0].execute(1), saves[1].execute(1)), "two tabs' saves")
    assert len(api.saves) == 2  # same arguments, two tabs: two intents, never deduplicated
    assert sorted(r["counter"] for r in results) == [1, 2]
    results = await ends(asyncio.gather(saves[2].execute(1), saves[2].execute(1)), "two saves in one tab")
    assert len(api.saves) == 4
    assert sorted(r["counter"] for r in results) == [3, 4]
    for tab in tabs:  # a mutation's result is in no cache
        assert tab.cached_entry(cache_key("save", (1,))) is None
    close(tabs)


@async_test
async def test_every_argument_variant_is_invalidated_and_a_flow_whose_key_only_starts_alike_is_not() -> None:
    hub, api = MemoryHub(), Backend()
    tabs = open_tabs(hub, 3)
    other_reads: list[Any] = []

    async def dashboard_extra(*args: Any) -> Any:  # flow "dashboard" has flow "dash" as a prefix
        other_reads.append(args)
        return {"counter": api.counter}

    dash = [use_flow(api.dashboard, tab, key="dash") for tab in tabs]
    longer = [use_flow(dashboard_extra, tab, key="dashboard") for tab in tabs]
    save = use_flow(api.save, tabs[0], key="save", mutation=True, invalidates=["dash"])
    await settle(tabs)
    variants = [(), (1,), ("a", {"b": 2})]
    for flow, args in zip(dash, variants, strict=True):  # each tab follows another variant
        await ends(flow.execute(*args), "a read")
    await ends(asyncio.gather(*(flow.execute(7) for flow in longer)), "the longer flow's reads")
    await ends(longer[1].execute(), "the longer flow without arguments")
    assert len(api.reads) == 3 and len(other_reads) == 2

    await ends(save.execute(), "the save")
    await until(lambda: all(flow.data["counter"] == 1 for flow in dash), what="every variant refetched")
    await asyncio.sleep(0.3)
    assert sorted(map(repr, api.reads[3:])) == sorted(map(repr, variants))  # once each
    assert len(other_reads) == 2  # "dashboard" is not a key of "dash": nothing refetched
    for tab in tabs:
        assert tab.cached_entry(cache_key("dashboard", (7,))) is not None  # nor dropped
        assert tab.cached_entry("dashboard") is not None
        for args in variants:
            entry = tab.cached_entry(cache_key("dash", args))
            assert entry is not None and entry.value["counter"] == 1
    close(tabs)


@async_test
async def test_an_optimistic_value_shows_at_once_and_is_rolled_back_when_the_mutation_fails() -> None:
    hub, api = MemoryHub(), Backend()
    tabs = open_tabs(hub, 3)
    dashboards = [use_flow(api.dashboard, tab, key="dashboard") for tab in tabs]
    save = use_flow(api.save, tabs[1], key="save", mutation=True, invalidates=["dashboard"],
                    optimistic=lambda previous, args: {"counter": "saving", "previous": previous, "args": list(args)},
                    rollback_on_error=True)
    shown: list[tuple[str, Any]] = []
    save.subscribe(lambda flow: shown.append((flow.status, flow.data)))
    await settle(tabs)
    await ends(asyncio.gather(*(flow.execute() for flow in dashboards)), "the reads")

    api.fail_saves = 1
    failed = asyncio.ensure_future(save.execute(5))
    await until(lambda: bool(api.saves), what="the save started")
    assert save.data == {"counter": "saving", "previous": None, "args": [5]}  # shown at once, in this tab
    try:
        await ends(failed, "the failing save")
    except ConnectionError:
        pass
    else:
        raise AssertionError("the save should have failed")
    assert save.status == "error" and save.data is None  # rolled back
    assert ("loading", {"counter": "saving", "previous": None, "args": [5]}) in shown
    await asyncio.sleep(0.3)
    assert len(api.reads) == 1  # a failed mutation invalidates nothing
    assert all(flow.data["counter"] == 0 for flow in dashboards)

    assert await ends(save.execute(6), "the save") == {"counter": 1}
    assert save.status == "success" and save.data == {"counter": 1}
    await until(lambda: all(flow.data["counter"] == 1 for flow in dashboards), what="every tab refetched")
    close(tabs)


@async_test
async def test_a_mutation_retries_in_its_own_tab_and_invalidates_once_it_succeeds() -> None:
    hub, api = MemoryHub(), Backend()
    tabs = open_tabs(hub, 2)
    dashboards = [use_flow(api.dashboard, tab, key="dashboard") for tab in tabs]
    save = use_flow(api.save, tabs[0], key="save", mutation=True, invalidates=["dashboard"],
                    retry={"max_attempts": 3, "delay": 10})
    await settle(tabs)
    await ends(asyncio.gather(*(flow.execute() for flow in dashboards)), "the reads")
    api.fail_saves = 2
    assert await ends(save.execute(), "the save") == {"counter": 1}
    assert len(api.saves) == 3
    await until(lambda: all(flow.data["counter"] == 1 for flow in dashboards), what="every tab refetched")
    await asyncio.sleep(0.2)
    assert len(api.reads) == 2
    close(tabs)


@async_test
async def test_a_tab_whose_read_was_loading_during_the_mutation_ends_with_the_new_data() -> None:
    """The read began before the save ended: its call may predate the change, so the tab refetches."""
    hub, api = MemoryHub(), Backend(delay=0.1)
    tabs = open_tabs(hub, 3)
    dashboards = [use_flow(api.dashboard, tab, key="dashboard") for tab in tabs]
    save = use_flow(api.save, tabs[2], key="save", mutation=True, invalidates=["dashboard"])
    await settle(tabs)
    reads = asyncio.gather(*(flow.execute() for flow in dashboards))
    await until(lambda: bool(api.reads), what="the read started")
    await ends(save.execute(), "the save")
    await ends(reads, "the first reads")  # they asked before the change: they may get the old data
    await until(lambda: all(flow.data["counter"] == 1 and flow.status == "success" for flow in dashboards),
                what="every tab shows the new counter")
    assert len(api.reads) == 2
    close(tabs)
