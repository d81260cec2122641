"""persist.py: ``use_flow(..., persist_key=...)`` with an in-memory storage standing in for
``localStorage``: shown at once, stale, revalidated once for the mesh, scoped, bounded, and
every bad entry ignored and counted."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from typing import Any

import pytest
from support import Server, async_test, ends, open_tabs, settle, until

from pyflowmesh import FlowMesh, persist, use_flow
from pyflowmesh.core.wire import scope_digest
from pyflowmesh.persist import MAX_ENTRY_CHARS, PREFIX, MemoryStorage
from pyflowmesh.transports.memory import MemoryHub


@pytest.fixture(autouse=True)
def fresh_storage() -> Iterator[dict[str, MemoryStorage]]:
    stores = {"local": MemoryStorage(), "session": MemoryStorage()}
    for kind, store in stores.items():
        persist.use_storage(kind, store)
    persist.stats.reset()
    yield stores
    for kind in stores:
        persist.use_storage(kind, None)
    persist.stats.reset()


def envelope(data: Any, *, scope: str = "", flow: str = "dash", args: list[Any] | None = None, **extra: Any) -> str:
    entry = {"pyflowmesh": "persist", "v": 1, "scope": scope, "flow": flow, "args": args or [], "data": data,
             "saved": 1, **extra}
    return json.dumps(entry)


@async_test
async def test_a_tab_opened_after_every_tab_closed_shows_the_data_at_once_then_revalidates_once() -> None:
    server = Server(delay=0.01)
    hub = MemoryHub()
    tabs = open_tabs(hub, 3)
    flows = [use_flow(server.fetch, tab, key="dash", persist_key="dash") for tab in tabs]
    await settle(tabs)
    await asyncio.gather(*(flow.execute(5) for flow in flows))
    assert len(server.calls) == 1 and persist.stats.saved >= 1
    for tab in tabs:
        tab.dispose()
    # every tab closed; a new page opens: before any await, the flow shows the stored data
    hub = MemoryHub()
    (tab,) = open_tabs(hub, 1)
    flow = use_flow(server.fetch, tab, key="dash", persist_key="dash")
    assert flow.data == {"args": [5], "call": 1}
    assert (flow.status, flow.source, flow.stale) == ("success", "storage", True)
    assert persist.stats.restored == 1
    seen: list[Any] = []
    flow.subscribe(lambda f: seen.append((f.status, f.stale)))
    await until(lambda: flow.source != "storage" and flow.status == "success", what="the revalidation")
    assert len(server.calls) == 2 and server.calls[-1] == (5,)  # with the stored arguments
    assert flow.data == {"args": [5], "call": 2} and not flow.stale
    assert seen[-1] == ("success", False)
    tab.dispose()


@async_test
async def test_five_tabs_opening_at_once_revalidate_with_one_call() -> None:
    server = Server(delay=0.05)
    persist.storage("local").set(PREFIX + "dash", envelope({"old": True}, args=[1]))  # type: ignore[union-attr]
    hub = MemoryHub()
    tabs = open_tabs(hub, 5)
    await settle(tabs)
    flows = [use_flow(server.fetch, tab, key="dash", persist_key="dash") for tab in tabs]
    assert all(flow.data == {"old": True} and flow.stale for flow in flows)
    await until(lambda: all(not flow.stale for flow in flows), what="every tab revalidated")
    assert server.calls == [(1,)]
    assert all(flow.data == {"args": [1], "call": 1} for flow in flows)
    for tab in tabs:
        tab.dispose()


@async_test
async def test_another_scopes_entry_is_never_shown_and_forget_removes_the_old_scopes() -> None:
    server = Server(delay=0.001)
    hub = MemoryHub()
    (alice,) = open_tabs(hub, 1, scope="alice")
    flow = use_flow(server.fetch, alice, key="dash", persist_key="dash")
    await flow.execute()
    stored = json.loads(persist.storage("local").get(PREFIX + "dash"))  # type: ignore[union-attr,arg-type]
    assert stored["scope"] == scope_digest("test-mesh", "alice") and "alice" not in json.dumps(stored)
    alice.dispose()
    hub = MemoryHub()
    (bob,) = open_tabs(hub, 1, scope="bob")
    other = use_flow(server.fetch, bob, key="dash", persist_key="dash")
    assert other.data is None and other.source is None and not other.stale
    assert persist.stats.foreign == 1
    bob.dispose()
    # alice comes back, then logs out with forget=True: her entry leaves the device
    hub = MemoryHub()
    (again,) = open_tabs(hub, 1, scope="alice")
    back = use_flow(server.fetch, again, key="dash", persist_key="dash")
    assert back.stale and back.data["args"] == []
    again.set_scope(None, forget=True)
    assert persist.storage("local").get(PREFIX + "dash") is None  # type: ignore[union-attr]
    assert persist.stats.forgotten == 1
    assert back.data is None and not back.stale
    again.dispose()


@pytest.mark.parametrize("text, counter", [
    ("not json", "corrupt"),
    ("[1, 2]", "corrupt"),
    ('{"pyflowmesh": "persist"}', "corrupt"),
    (envelope(1, v=2), "corrupt"),  # another version: the extra "v" replaces the first
    (envelope(1, extra=True), "corrupt"),
    (envelope(float("nan")), "corrupt"),
    ("[" * 100_000 + "]" * 100_000, "corrupt"),
    ("x" * (MAX_ENTRY_CHARS + 1), "corrupt"),
    (envelope(1, flow="another"), "foreign"),
    (envelope(1, scope="0123456789abcdef"), "foreign"),
])
def test_a_corrupt_or_foreign_entry_is_ignored_and_counted(text: str, counter: str) -> None:
    persist.storage("local").set(PREFIX + "dash", text)  # type: ignore[union-attr]
    flow = use_flow(lambda: 1, key="dash", persist_key="dash")
    assert flow.data is None and flow.status == "idle" and not flow.stale
    assert getattr(persist.stats, counter) == 1 and persist.stats.restored == 0


def test_a_storage_that_raises_is_counted_never_raised() -> None:
    class Broken(MemoryStorage):
        def get(self, key: str) -> str | None:
            raise OSError("SecurityError: storage is disabled")

        def set(self, key: str, text: str) -> None:
            raise OSError("QuotaExceededError")

    persist.use_storage("local", Broken())
    flow = use_flow(lambda: {"a": 1}, key="dash", persist_key="dash")
    assert flow.data is None and persist.stats.storage_errors == 1
    asyncio.run(flow.execute())
    assert flow.data == {"a": 1} and persist.stats.storage_errors == 2 and persist.stats.saved == 0


def test_data_larger_than_the_bound_is_not_stored_and_the_older_entry_goes() -> None:
    size = {"n": 10}
    flow = use_flow(lambda: "x" * size["n"], key="dash", persist_key="dash")
    asyncio.run(flow.execute())
    store = persist.storage("local")
    assert store is not None and store.get(PREFIX + "dash") is not None
    size["n"] = MAX_ENTRY_CHARS
    asyncio.run(flow.refresh())
    assert store.get(PREFIX + "dash") is None and persist.stats.too_large == 1 and persist.stats.saved == 1


def test_session_storage_is_its_own() -> None:
    flow = use_flow(lambda: 7, key="dash", persist_key="dash", persistStorage="session")
    asyncio.run(flow.execute())
    assert persist.storage("session").get(PREFIX + "dash") is not None  # type: ignore[union-attr]
    assert persist.storage("local").get(PREFIX + "dash") is None  # type: ignore[union-attr]
    again = use_flow(lambda: 8, key="dash", persist_key="dash", persist_storage="session")
    assert again.data == 7 and again.stale


@async_test
async def test_a_failed_revalidation_keeps_the_stored_data_stale_and_shows_the_error() -> None:
    persist.storage("local").set(PREFIX + "dash", envelope({"old": 1}))  # type: ignore[union-attr]
    hub = MemoryHub()
    (tab,) = open_tabs(hub, 1)
    server = Server(delay=0.001)
    server.down = True
    flow = use_flow(server.fetch, tab, key="dash", persist_key="dash")
    await until(lambda: flow.status == "error", what="the failed revalidation")
    assert flow.data == {"old": 1} and flow.stale and isinstance(flow.error, ConnectionError)
    assert len(server.calls) == 1
    await ends(asyncio.sleep(0), "a turn")
    tab.dispose()


def test_a_mesh_member_is_not_needed_and_same_data_is_written_once() -> None:
    flow = use_flow(lambda: [1, 2], key="dash", persist_key="dash")
    asyncio.run(flow.execute())
    asyncio.run(flow.refresh())
    assert persist.stats.saved == 1  # the same data again: no second write
    assert isinstance(FlowMesh, type)
