"""The transport pieces (pyflowmesh.transports) and how the runtime combines them, in CPython.

The browser's pieces run in tests/pyodide; here the in-memory ones, a channel of
our own written in this file (what adding a transport takes), and the member
registry that ``use_flow`` looks members up in.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
from collections.abc import Callable
from typing import Any

import pytest
from support import HEARTBEAT, Server, async_test, open_tabs, settle

import pyflowmesh.mesh
from pyflowmesh import FlowMesh, use_flow
from pyflowmesh.core.wire import scope_digest
from pyflowmesh.transports import Channel, Transport, default_transport, lock_name
from pyflowmesh.transports.memory import MemoryChannel, MemoryHub


class RoomChannel(Channel):
    """A channel of our own: every member of a room gets a copy of what another posts, a tick later."""

    rooms: dict[str, list[RoomChannel]] = {}

    def __init__(self) -> None:
        self.name = ""
        self.receive: Callable[[Any], None] | None = None

    def open(self, name: str, receive: Callable[[Any], None]) -> None:
        self.name, self.receive = name, receive
        self.rooms.setdefault(name, []).append(self)

    def post(self, data: str) -> None:
        loop = asyncio.get_running_loop()
        for member in self.rooms.get(self.name, []):
            if member is not self:
                loop.call_soon(member.arrive, data)

    def arrive(self, data: str) -> None:
        if self.receive is not None:
            self.receive(data)

    def close(self) -> None:
        if self.receive is not None:
            self.receive = None
            self.rooms[self.name].remove(self)


@async_test
async def test_a_channel_of_our_own_is_a_transport_without_locks_or_lifecycle() -> None:
    server = Server()
    tabs = [FlowMesh("room", transport=Transport(RoomChannel()), heartbeat=HEARTBEAT) for _ in range(3)]
    flows = [use_flow(server.fetch, tab, key="room") for tab in tabs]
    leader = await settle(tabs)
    assert await asyncio.gather(*(f.execute(1) for f in flows)) == [{"args": [1], "call": 1}] * 3
    assert len(server.calls) == 1
    assert leader.transport.peers is None and leader.transport.lifecycle is None
    leader.dispose()  # its Bye elects a successor: no lock needed for a polite close
    others = [t for t in tabs if t is not leader]
    await settle(others)
    for tab in others:
        tab.dispose()
    assert RoomChannel.rooms["room"] == []


@async_test
async def test_a_custom_transport_and_the_default_are_two_members_of_one_channel(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The registry keys members by channel and the transport given, so neither stands in for the other."""
    hub = MemoryHub()
    made: list[Transport] = []

    def fake_default(*, use_locks: bool = True) -> Transport:  # what the browser gives, here on the hub
        made.append(hub.transport())
        return made[-1]

    monkeypatch.setattr(pyflowmesh.mesh, "default_transport", fake_default)
    options = {"channel": "shared", "heartbeat": HEARTBEAT}
    mine = hub.transport()
    default_one = use_flow(lambda: "d1", mesh=options, key="d1")
    custom_one = use_flow(lambda: "c1", mesh={**options, "transport": mine}, key="c1")
    default_two = use_flow(lambda: "d2", mesh=options, key="d2")
    custom_two = use_flow(lambda: "c2", mesh={**options, "transport": mine}, key="c2")
    assert default_one.mesh is default_two.mesh and custom_one.mesh is custom_two.mesh
    assert default_one.mesh is not custom_one.mesh
    assert default_one.mesh is not None and custom_one.mesh is not None
    assert default_one.mesh.transport is made[0] and custom_one.mesh.transport is mine and len(made) == 1
    # Another transport of the same kind is another member too: the key is the object, not its type.
    other = use_flow(lambda: "o", mesh={**options, "transport": hub.transport()}, key="o")
    assert other.mesh not in (default_one.mesh, custom_one.mesh)
    # A member made by hand and bound once is found again by its transport.
    by_hand = FlowMesh("shared", transport=hub.transport(), heartbeat=HEARTBEAT)
    use_flow(lambda: "h1", by_hand, key="h1")
    assert use_flow(lambda: "h2", mesh={**options, "transport": by_hand.transport}, key="h2").mesh is by_hand
    tabs = [default_one.mesh, custom_one.mesh, other.mesh, by_hand]
    await settle([t for t in tabs if t is not None])
    for tab in tabs:
        assert tab is not None
        tab.dispose()
    assert use_flow(lambda: "d3", mesh=options, key="d3").mesh is not default_one.mesh  # a disposed one is replaced
    assert len(made) == 2


def test_there_is_no_default_outside_the_browser_and_the_error_says_what_to_pass() -> None:
    with pytest.raises(RuntimeError, match="MemoryHub"):
        default_transport()

    async def main() -> None:
        with pytest.raises(RuntimeError, match="transports.memory"):
            FlowMesh("nowhere")
        with pytest.raises(TypeError, match="Transport"):
            FlowMesh("nowhere", transport=object())  # type: ignore[arg-type]

    asyncio.run(main())


@async_test
async def test_leader_is_is_leader_under_its_0_1_name() -> None:
    hub = MemoryHub()
    tabs = open_tabs(hub, 3)
    leader = await settle(tabs)
    assert [t.leader for t in tabs] == [t.is_leader for t in tabs] == [t is leader for t in tabs]
    assert all(t.leader_id == leader.node_id for t in tabs)
    for tab in tabs:
        tab.dispose()


@async_test
async def test_a_transport_serves_one_member() -> None:
    hub = MemoryHub()
    tab = FlowMesh("once", transport=hub.transport(), heartbeat=HEARTBEAT)
    with pytest.raises(RuntimeError, match="one mesh member"):
        FlowMesh("once", transport=tab.transport, heartbeat=HEARTBEAT)
    tab.dispose()
    with pytest.raises(RuntimeError, match="one mesh member"):
        FlowMesh("once", transport=tab.transport, heartbeat=HEARTBEAT)


@async_test
async def test_the_lock_follows_the_member_through_scopes_and_the_back_forward_cache() -> None:
    hub = MemoryHub()
    (tab,) = open_tabs(hub, 1, channel="locks", scope="alice")
    alice, bob = scope_digest("locks", "alice"), scope_digest("locks", "bob")
    assert hub.holds_lock("locks", alice, tab.node_id) and hub.connected("locks") == 1
    tab.set_scope("bob")
    assert hub.holds_lock("locks", bob, tab.node_id) and not hub.holds_lock("locks", alice, tab.node_id)
    page = hub.page(tab)
    page.pagehide(persisted=True)
    assert not tab.disposed and not hub.holds_lock("locks", bob, tab.node_id) and hub.connected("locks") == 0
    page.pageshow()
    assert hub.holds_lock("locks", bob, tab.node_id) and hub.connected("locks") == 1
    tab.dispose()
    assert not hub.holds_lock("locks", bob, tab.node_id) and hub.connected("locks") == 0


@async_test
async def test_a_cached_page_receives_nothing_even_what_was_on_its_way() -> None:
    hub = MemoryHub()
    tabs = open_tabs(hub, 2, channel="cached")
    await settle(tabs)
    page = hub.page(tabs[1])
    received = tabs[1].stats.received
    hub.post(json.dumps({"garbage": True}), channel="cached")  # delivered on the next loop turn ...
    page.pagehide(persisted=True)  # ... to a page that closed its channel meanwhile
    await asyncio.sleep(0.01)
    assert tabs[1].stats.received == received
    page.pageshow()
    await settle(tabs)
    for tab in tabs:
        tab.dispose()


@async_test
async def test_freeze_makes_a_leader_hand_over_and_resume_makes_it_rejoin() -> None:
    """A memory page's freeze and resume reach the member as the browser's do (its messages keep flowing:
    the simulator, not the hub, models what a frozen tab misses)."""
    hub = MemoryHub()
    tabs = open_tabs(hub, 3, heartbeat=5000)  # a silence would take 12.5 s
    leader = await settle(tabs)
    posted: list[tuple[str, str]] = []
    hub.on_post(lambda channel, data: posted.append((json.loads(data)["type"], json.loads(data)["src"])))
    hub.page(leader).freeze()
    assert not leader.is_leader and leader.role == "joining" and ("bye", leader.node_id) in posted
    hub.page(leader).resume()
    assert ("hello", leader.node_id) in posted
    await settle(tabs)
    for tab in tabs:
        tab.dispose()


def test_lock_names_keep_the_0_1_format_and_add_the_scope() -> None:
    assert lock_name("c", "n") == "pyflowmesh:c:n"
    assert lock_name("c", "n", "s") == "pyflowmesh:c:s:n"


@dataclasses.dataclass
class _OneExecute:
    """Three tabs; one follower (the asker) executed once; the other (the bystander) only heard it."""

    tabs: list[FlowMesh]
    flows: list[Any]
    server: Server
    bystander: FlowMesh
    channel: MemoryChannel  # the bystander's
    skipped_before: int  # what its channel had skipped before the execute (the joins' syncs)
    posted: list[str]  # the types of the messages posted since


async def _one_execute_between_two_other_tabs() -> _OneExecute:
    hub, server = MemoryHub(), Server()
    tabs = open_tabs(hub, 3)
    flows = [use_flow(server.fetch, tab, key="skip") for tab in tabs]
    leader = await settle(tabs)
    asker, bystander = (tab for tab in tabs if tab is not leader)
    channel = bystander.transport.channel
    assert isinstance(channel, MemoryChannel)
    scene = _OneExecute(tabs, flows, server, bystander, channel, channel._skipped, [])
    hub.on_post(lambda name, data: scene.posted.append(json.loads(data)["type"]))
    assert await flows[tabs.index(asker)].execute(1) == {"args": [1], "call": 1}
    await asyncio.sleep(0.01)
    return scene


@async_test
async def test_a_channel_skips_a_request_and_its_answer_between_two_other_tabs_and_the_member_counts_them() -> None:
    scene = await _one_execute_between_two_other_tabs()
    bystander, channel = scene.bystander, scene.channel
    assert {"request", "accept", "result"} <= set(scene.posted)
    # The asker's request to the leader and the leader's accept never reached the bystander's member...
    assert channel._skipped - scene.skipped_before == 2
    # ...which counts them received all the same, once it is asked.
    node_count = bystander._node.stats.received
    assert bystander.stats.received == node_count + scene.skipped_before + 2
    assert channel._skipped == 0
    # The result reached it: its cache has the entry (shared), served without a call.
    assert await scene.flows[scene.tabs.index(bystander)].execute(1) == {"args": [1], "call": 1}
    assert len(scene.server.calls) == 1


@async_test
async def test_what_a_channel_skipped_before_a_scope_switch_is_not_counted_in_the_new_scope() -> None:
    scene = await _one_execute_between_two_other_tabs()
    assert scene.channel._skipped >= 2  # not yet counted: nobody read the bystander's stats
    scene.bystander.set_scope("user-2")
    assert scene.bystander.stats.received == 0  # the new scope's member counts afresh
