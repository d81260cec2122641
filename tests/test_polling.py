"""polling.py: ``use_flow(..., polling={...})`` across tabs on a MemoryHub: one poller for the mesh,
takeover, stop_if and stop_on_error mesh-wide, the end once no tab follows. Calls are counted at
the function; nothing asserts wall-clock times (intervals only pace the polls)."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from support import Server, async_test, ends, open_tabs, settle, until

from pyflowmesh import use_flow
from pyflowmesh.core.node import MeshNode
from pyflowmesh.polling import args_of, family_prefix, poll_stream_key
from pyflowmesh.transports.memory import MemoryHub

INTERVAL = 30  # ms


def pollers(tabs: list[Any]) -> list[Any]:
    """The tabs running a poll source now."""
    return [tab for tab in tabs if not tab.disposed and any(
        key.startswith("pyflowmesh.poll:") for key in tab._node.streams.open_sources())]


@async_test
async def test_one_tab_polls_for_five_and_every_tab_sees_each_poll() -> None:
    hub, server = MemoryHub(), Server(delay=0.001)
    tabs = open_tabs(hub, 5)
    succeeded: dict[int, list[Any]] = {i: [] for i in range(5)}
    flows = [use_flow(server.fetch, tab, key="status", polling={"interval": INTERVAL},
                      on_success=succeeded[i].append) for i, tab in enumerate(tabs)]
    seen: dict[int, list[Any]] = {i: [] for i in range(5)}
    for i, flow in enumerate(flows):
        flow.subscribe(lambda f, i=i: seen[i].append(f.data) if f.data not in seen[i][-1:] else None)
    await settle(tabs)
    await ends(asyncio.gather(*(flow.execute(7) for flow in flows)), "the first executes")
    assert len(server.calls) == 1
    assert all(flow.polling for flow in flows)
    await until(lambda: len(server.calls) >= 8, what="seven polls")
    assert len(pollers(tabs)) == 1
    # one call per poll for the whole mesh: each call's result reached every tab's flow
    target = len(server.calls)
    await until(lambda: all(f.data == {"args": [7], "call": target} or (f.data or {}).get("call", 0) > target
                            for f in flows), what="every tab's flow at the latest poll")
    calls = len(server.calls)
    for i in range(5):
        numbers = [data["call"] for data in seen[i] if data]
        assert numbers == sorted(numbers) and len(numbers) >= calls - 2  # subscribers saw (almost) every poll
        # on_success runs per poll in every tab (and once for the execute)
        assert len(succeeded[i]) >= calls - 2
    # a tab executing meanwhile is served from the shared cache the polls fill
    before = len(server.calls)
    assert (await flows[3].execute(7))["call"] >= before - 1
    for flow in flows:
        flow.close()
    for tab in tabs:
        tab.dispose()


@async_test
async def test_the_poller_crashing_hands_polling_to_another_tab() -> None:
    hub, server = MemoryHub(), Server(delay=0.001)
    tabs = open_tabs(hub, 5)
    flows = [use_flow(server.fetch, tab, key="status", polling={"interval": INTERVAL}) for tab in tabs]
    leader = await settle(tabs)
    await asyncio.gather(*(flow.execute() for flow in flows))
    await until(lambda: len(server.calls) >= 4, what="polls")
    assert pollers(tabs) == [leader]
    hub.crash(leader)
    others = [tab for tab in tabs if tab is not leader]
    await settle(others)
    count = len(server.calls)
    await until(lambda: len(server.calls) >= count + 5, what="polls after the takeover")
    assert len(pollers(others)) == 1 and pollers(others)[0].is_leader
    target = len(server.calls)
    live = [flow for flow, tab in zip(flows, tabs, strict=True) if tab is not leader]
    await until(lambda: all((f.data or {}).get("call", 0) >= target for f in live),
                what="the new poller's data in every live tab")
    for tab in others:
        tab.dispose()


@pytest.mark.parametrize("how", ["stop_if", "error"])
@async_test
async def test_a_stop_holds_in_every_tab(how: str) -> None:
    hub, server = MemoryHub(), Server(delay=0.001)
    tabs = open_tabs(hub, 5, error_backoff=10)
    failures: list[Any] = []
    polling: dict[str, Any] = {"interval": INTERVAL}
    if how == "stop_if":
        polling["stopIf"] = lambda data: data["call"] >= 4
    else:
        polling["stop_on_error"] = True
    flows = [use_flow(server.fetch, tab, key="job", polling=polling, on_error=failures.append) for tab in tabs]
    await settle(tabs)
    await asyncio.gather(*(flow.execute() for flow in flows))
    if how == "error":
        await until(lambda: len(server.calls) >= 3, what="polls")
        server.down = True
    await until(lambda: all(flow.polling_stopped == how for flow in flows), what="every tab knowing the stop")
    assert not any(flow.polling for flow in flows)
    calls = len(server.calls)
    if how == "stop_if":
        assert calls == 4 and all(flow.data["call"] == 4 for flow in flows)
    else:
        assert all(flow.status == "error" for flow in flows) and len(failures) >= 5
    await asyncio.sleep(INTERVAL * 5 / 1000)  # five intervals more: nobody polls
    assert len(server.calls) == calls and not pollers(tabs)
    # an execute of the same arguments does not restart a stop the mesh knows
    server.down = False
    await asyncio.sleep(0.05)  # past the back-off
    await flows[2].execute()
    await asyncio.sleep(INTERVAL * 3 / 1000)
    assert flows[2].polling_stopped == how and len(server.calls) <= calls + 1
    for tab in tabs:
        tab.dispose()


@async_test
async def test_stop_on_error_false_goes_on_polling_and_shows_each_failure() -> None:
    hub, server = MemoryHub(), Server(delay=0.001)
    tabs = open_tabs(hub, 3, error_backoff=10, max_error_backoff=10)
    errors: list[Any] = []
    flows = [use_flow(server.fetch, tab, key="feed", polling={"interval": INTERVAL, "stop_on_error": False},
                      on_error=errors.append) for tab in tabs]
    await settle(tabs)
    await asyncio.gather(*(flow.execute() for flow in flows))
    server.down = True
    await until(lambda: len(errors) >= 6 and all(flow.status == "error" for flow in flows), what="failures shown")
    assert all(flow.polling for flow in flows)
    server.down = False
    calls = len(server.calls)
    await until(lambda: all(flow.status == "success" and flow.data["call"] > calls for flow in flows),
                what="polling recovering")
    assert len(pollers(tabs)) == 1
    for tab in tabs:
        tab.dispose()


@async_test
async def test_polling_ends_when_every_tab_closed_its_flow_and_goes_on_while_one_follows() -> None:
    hub, server = MemoryHub(), Server(delay=0.001)
    tabs = open_tabs(hub, 3)
    leader = await settle(tabs)
    flows = [use_flow(server.fetch, tab, key="status", polling={"interval": INTERVAL}) for tab in tabs]
    await asyncio.gather(*(flow.execute() for flow in flows))
    await until(lambda: len(server.calls) >= 3, what="polls")
    # the leader's own flow closes first: it still polls for the two others
    flows[tabs.index(leader)].close()
    assert not flows[tabs.index(leader)].polling
    count = len(server.calls)
    await until(lambda: len(server.calls) >= count + 3, what="polls for the followers")
    for flow in flows:
        flow.close()
    await until(lambda: not pollers(tabs), what="the poller closing")
    calls = len(server.calls)
    await asyncio.sleep(INTERVAL * 5 / 1000)
    assert len(server.calls) <= calls + 1  # at most a poll already under way
    for tab in tabs:
        tab.dispose()


@async_test
async def test_an_execute_with_other_arguments_moves_polling() -> None:
    hub, server = MemoryHub(), Server(delay=0.001)
    tabs = open_tabs(hub, 2)
    await settle(tabs)
    flows = [use_flow(server.fetch, tab, key="user", polling={"interval": INTERVAL}) for tab in tabs]
    await asyncio.gather(*(flow.execute(1) for flow in flows))
    await until(lambda: len(server.calls) >= 3, what="polls of user 1")
    await asyncio.gather(*(flow.execute(2) for flow in flows))
    count = len(server.calls)
    await until(lambda: len(server.calls) >= count + 4, what="polls of user 2")
    recent = server.calls[-3:]
    assert all(args == (2,) for args in recent)
    assert len(pollers(tabs)) == 1 and len(pollers(tabs)[0]._node.streams.open_sources()) == 1
    assert all(flow.data["args"] == [2] for flow in flows)
    for tab in tabs:
        tab.dispose()


@async_test
async def test_the_leader_polls_arguments_its_own_flow_never_executed() -> None:
    hub, server = MemoryHub(), Server(delay=0.001)
    tabs = open_tabs(hub, 3)
    leader = await settle(tabs)
    flows = {tab: use_flow(server.fetch, tab, key="user", polling={"interval": INTERVAL}) for tab in tabs}
    follower = next(tab for tab in tabs if tab is not leader)
    await flows[follower].execute("ada")
    await until(lambda: len(server.calls) >= 4, what="polls")
    assert pollers(tabs) == [leader] and set(server.calls) == {("ada",)}
    assert not flows[leader].polling  # the leader polls for the follower, its own flow does not poll
    for tab in tabs:
        tab.dispose()


@async_test
async def test_a_mesh_of_hidden_tabs_polls_slower_and_speeds_up_when_one_shows() -> None:
    hub, server = MemoryHub(), Server(delay=0.001)
    tabs = open_tabs(hub, 3)
    await settle(tabs)
    flows = [use_flow(server.fetch, tab, key="status", polling={"interval": INTERVAL}) for tab in tabs]
    await asyncio.gather(*(flow.execute() for flow in flows))
    for tab in tabs:
        hub.page(tab).hide()
    leader = await settle(tabs)
    key = poll_stream_key("status", ())
    await until(lambda: leader._node.streams.audience_hidden(key, leader._now()), what="every listener hidden")
    hub.page(tabs[1]).hide(False)
    await until(lambda: not leader._node.streams.audience_hidden(key, leader._now()), what="a listener shown")
    for tab in tabs:
        tab.dispose()


@async_test
async def test_polling_without_a_mesh_polls_in_this_tab() -> None:
    server = Server(delay=0.001)
    flow = use_flow(server.fetch, key="alone", polling={"interval": INTERVAL, "stop_if": lambda d: d["call"] >= 3})
    await flow.execute()
    assert flow.polling
    await until(lambda: flow.polling_stopped == "stop_if", what="the local stop")
    assert len(server.calls) == 3 and not flow.polling


def test_poll_stream_keys_carry_the_arguments_and_no_flow_is_anothers_prefix() -> None:
    key = poll_stream_key("user", (1, {"a": [2]}))
    assert args_of(family_prefix("user"), key) == (1, {"a": [2]})
    assert not key.startswith(family_prefix("use"))
    assert not poll_stream_key("users", ()).startswith(family_prefix("user"))
    with pytest.raises(ValueError):
        args_of(family_prefix("user"), family_prefix("user") + "{not json")
    with pytest.raises(ValueError):
        poll_stream_key("user", ("x" * 2000,))


def test_a_family_stream_is_adopted_on_listen_and_let_go_when_nobody_listens() -> None:
    from support import WallClock, clocked_node

    node: MeshNode = clocked_node("a", WallClock())
    node.start(0.0)
    node.register_stream_family(family_prefix("f"), 0.0)
    key = poll_stream_key("f", (1,))
    with pytest.raises(LookupError):
        node.listen(poll_stream_key("g", (1,)), 1.0)
    node.listen(key, 1.0)
    assert key in node.streams.registered
    node.unlisten(key, 2.0)
    node.tick(3.0)
    assert key not in node.streams.registered  # back to its family: registered streams stay bounded


def test_the_simulator_polls_the_family_the_runtime_registers() -> None:
    from pyflowmesh.simulation.world import POLL_FAMILY, POLL_STREAMS

    assert family_prefix("status") == POLL_FAMILY
    assert (poll_stream_key("status", (1,)), poll_stream_key("status", ("a",))) == POLL_STREAMS
