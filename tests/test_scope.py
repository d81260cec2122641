"""Mesh scopes (issue 14) in CPython over MemoryHub: whose data a tab holds, and switching it.

The server of these tests answers as whoever is logged in *now*, as a real one does with
cookies every tab shares: a tab of one scope must never be served what a call made
under another scope returned.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest
from support import HEARTBEAT, async_test, open_tabs, settle, until

from pyflowmesh import FlowMesh, MeshDisposedError, ScopeChangedError, SharedFlowError, use_flow
from pyflowmesh.core.config import MeshConfig
from pyflowmesh.core.values import cache_key
from pyflowmesh.core.wire import Hello, ProtocolError, decode, encode, scope_digest
from pyflowmesh.transports.memory import MemoryHub

ME = cache_key("me", ())
FEED = cache_key("feed", ())


class AuthServer:
    """A fake API that answers as the user logged in when a request starts."""

    def __init__(self, user: str | None = None, delay: float = 0.02) -> None:
        self.user = user
        self.delay = delay
        self.down = False
        self.calls: list[str | None] = []  # the user of each call
        self.finished: list[str | None] = []  # ... of each call that ran to its end

    async def me(self) -> dict[str, Any]:
        user = self.user
        self.calls.append(user)
        await asyncio.sleep(self.delay)
        self.finished.append(user)
        if self.down:
            raise ConnectionError("server unavailable (503)")
        return {"user": user}


class RecordingHub(MemoryHub):
    """A hub that keeps every message any tab posted."""

    def __init__(self) -> None:
        super().__init__()
        self.wire: list[str] = []
        self.on_post(lambda channel, data: self.wire.append(data))


def watch(flow: Any) -> list[tuple[str, Any]]:
    """Every (status, data) a flow's subscribers are told, in order."""
    seen: list[tuple[str, Any]] = []
    flow.subscribe(lambda f: seen.append((f.status, f.data)))
    return seen


def dispose(*tabs: FlowMesh) -> None:
    for tab in tabs:
        tab.dispose()


# --- two scopes on one channel ----------------------------------------------------------


@async_test
async def test_the_issue_scenario_bobs_new_tab_gets_bobs_data() -> None:
    hub, server = MemoryHub(), AuthServer("alice")
    (alice,) = open_tabs(hub, 1, scope="alice")
    alice_me = use_flow(server.me, alice, key="me")
    assert await alice_me.execute() == {"user": "alice"}

    server.user = "bob"  # bob logs in in a new tab; the cookie is the browser's, so every tab is bob now
    (bob,) = open_tabs(hub, 1, scope="bob")
    bob_me = use_flow(server.me, bob, key="me")
    assert await bob_me.execute() == {"user": "bob"}
    assert bob_me.source == "call"
    assert server.calls == ["alice", "bob"]
    assert alice.get_cached(ME) == {"user": "alice"}  # bob's result never reached alice's mesh either
    dispose(alice, bob)


@async_test
async def test_two_scopes_on_one_channel_never_share_data_leadership_or_errors() -> None:
    hub = MemoryHub()
    apis = {"alice": AuthServer("alice"), "bob": AuthServer("bob")}
    tabs: dict[str, list[FlowMesh]] = {"alice": [], "bob": []}
    for _ in range(3):  # interleaved, so each scope's tabs join while the other's talk
        for user in tabs:
            tabs[user] += open_tabs(hub, 1, scope=user)
    flows = {user: [use_flow(apis[user].me, tab, key="me") for tab in tabs[user]] for user in tabs}
    feeds = {user: [use_flow(apis[user].me, tab, key="feed") for tab in tabs[user]] for user in tabs}
    errors: dict[str, list[BaseException]] = {"alice": [], "bob": []}
    for user in tabs:
        for tab in tabs[user]:
            tab.on_error(FEED, errors[user].append)

    leader = {user: await settle(tabs[user]) for user in tabs}
    assert leader["alice"] is not leader["bob"]  # each scope elects its own
    for user in tabs:
        ids = {tab.node_id for tab in tabs[user]}
        assert all(tab.leader_id == leader[user].node_id for tab in tabs[user]) and leader[user].node_id in ids

    results = await asyncio.gather(*(flow.execute() for user in flows for flow in flows[user]))
    assert results == [{"user": "alice"}] * 3 + [{"user": "bob"}] * 3
    assert apis["alice"].calls == ["alice"] and apis["bob"].calls == ["bob"]  # one call per scope

    apis["alice"].down = True
    outcomes = await asyncio.gather(*(flow.execute() for flow in feeds["alice"]), return_exceptions=True)
    assert any(isinstance(o, ConnectionError) for o in outcomes)
    assert all(isinstance(o, (ConnectionError, SharedFlowError)) for o in outcomes)
    # alice's mesh now backs off "feed"; bob's knows nothing of it and calls at once
    assert await feeds["bob"][0].execute() == {"user": "bob"}
    assert apis["bob"].calls == ["bob", "bob"]
    assert errors["bob"] == [] and len(errors["alice"]) == 3

    for tab in tabs["alice"] + tabs["bob"]:
        assert tab.stats.other_scope > 0  # it heard the other mesh ...
        assert tab.stats.dropped == 0  # ... and did not count that traffic as bad
    dispose(*tabs["alice"], *tabs["bob"])


@async_test
async def test_a_joiner_of_one_scope_gets_nothing_of_another() -> None:
    hub = MemoryHub()
    alice_api, bob_api = AuthServer("alice"), AuthServer("bob")
    alices = open_tabs(hub, 2, scope="alice")
    for tab in alices:
        use_flow(alice_api.me, tab, key="me")
        use_flow(alice_api.me, tab, key="feed")
    leader = await settle(alices)
    await leader.run("me")
    alice_api.down = True
    with pytest.raises(ConnectionError):
        await leader.run("feed")  # the leader calls: a shared back-off of "feed" in alice's mesh

    (bob,) = open_tabs(hub, 1, scope="bob")
    (alice_joiner,) = open_tabs(hub, 1, scope="alice")  # the control: a joiner of alice's scope
    use_flow(alice_api.me, alice_joiner, key="feed")
    bob_feed = use_flow(bob_api.me, bob, key="feed")
    await until(lambda: alice_joiner.get_cached(ME) == {"user": "alice"}, what="alice's joiner synced")
    await until(lambda: bob.is_leader, what="bob alone leads bob's mesh")
    assert bob.get_cached(ME) is None and bob.cached_entry(FEED) is None
    with pytest.raises(SharedFlowError):  # the control has alice's back-off
        await alice_joiner.run("feed")
    assert await bob_feed.execute() == {"user": "bob"} and bob_api.calls == ["bob"]
    dispose(*alices, bob, alice_joiner)


@async_test
async def test_the_wire_never_carries_the_raw_scope() -> None:
    hub, server = RecordingHub(), AuthServer("alice")
    alice_scope, bob_scope = "session-7f3a:alice@example.com", "session-91c2:bob@example.com"
    tabs = open_tabs(hub, 2, channel="wire", scope=alice_scope)
    flows = [use_flow(server.me, tab, key="me") for tab in tabs]
    await settle(tabs)
    await asyncio.gather(*(flow.execute() for flow in flows))
    server.user = "bob"
    tabs[0].set_scope(bob_scope)
    await flows[0].execute()
    tabs[1].set_scope(None, forget=True)
    await until(lambda: tabs[0].is_leader and tabs[1].is_leader, what="both lead their own mesh")

    assert hub.wire
    for data in hub.wire:
        assert "alice@example.com" not in data and "bob@example.com" not in data and "session-" not in data
    scopes = {json.loads(data).get("scope") for data in hub.wire}
    assert scopes == {scope_digest("wire", alice_scope), scope_digest("wire", bob_scope), None}
    dispose(*tabs)


def test_the_envelope_names_a_digest_and_refuses_other_scopes() -> None:
    alice, bob = scope_digest("c", "alice"), scope_digest("c", "bob")
    assert len(alice) == 16 and alice != bob and scope_digest("c", None) == ""
    assert scope_digest("other", "alice") != alice  # per channel
    assert scope_digest("ab", "c") != scope_digest("a", "bc")  # the channel's end is not ambiguous
    # The shared scope: no scope field, as before scopes.
    assert encode(Hello(src="n")) == '{"proto":"pyflowmesh","v":2,"type":"hello","src":"n","locks":false}'
    scoped = encode(Hello(src="n"), alice)
    assert decode(scoped, scope=alice) == Hello(src="n")
    for raw, scope in ((scoped, bob), (scoped, ""), (encode(Hello(src="n")), alice)):
        with pytest.raises(ProtocolError) as caught:
            decode(raw, scope=scope)
        assert caught.value.reason == "scope"
    for bad in ('""', "1", '"ALICE0123456789A"', '"abc"', "null"):
        raw = scoped.replace(f'"{alice}"', bad)
        with pytest.raises(ProtocolError) as caught:
            decode(raw, scope=alice)
        assert caught.value.reason == "bad-field:scope"
    with pytest.raises(ValueError):
        encode(Hello(src="n"), "alice")  # the raw scope can never be put on the wire by mistake


# --- set_scope ------------------------------------------------------------------------------


@async_test
async def test_set_scope_resets_flows_at_once_hands_over_and_rejoins() -> None:
    hub, server = MemoryHub(), AuthServer("alice")
    tabs = open_tabs(hub, 3, scope="alice")
    flows = [use_flow(server.me, tab, key="me") for tab in tabs]
    leader = await settle(tabs)
    await asyncio.gather(*(flow.execute() for flow in flows))
    switching = tabs.index(leader)
    flow, mesh = flows[switching], leader
    seen = watch(flow)
    told: list[Any] = []
    mesh.on_scope_change(lambda scope: told.append((scope, flow.status, flow.data)))

    server.user = "bob"
    mesh.set_scope("bob")
    # synchronously: reset, subscribers told, listeners told after the flows
    assert (flow.data, flow.error, flow.status, flow.source) == (None, None, "idle", None)
    assert seen == [("idle", None)] and told == [("bob", "idle", None)]
    assert mesh.scope == "bob" and mesh.get_cached(ME) is None

    rest = [tab for tab in tabs if tab is not mesh]
    heir = await settle(rest)  # the Bye handed alice's leadership to another alice tab
    assert heir is not mesh and all(tab.leader_id == heir.node_id for tab in rest)
    await until(lambda: mesh.is_leader, what="the switched tab leads bob's mesh")
    assert await flow.execute() == {"user": "bob"}
    assert flow.source == "call" and server.calls == ["alice", "bob"]
    assert [status for status, _ in seen] == ["idle", "loading", "success"]
    assert all(data != {"user": "alice"} for _, data in seen)
    for tab in rest:
        assert tab.get_cached(ME) == {"user": "alice"}  # bob's data stays in bob's mesh
    dispose(*tabs)


@async_test
async def test_set_scope_fails_waiting_executes_and_cancels_running_calls() -> None:
    hub, server = MemoryHub(), AuthServer("alice", delay=0.2)
    (mesh,) = open_tabs(hub, 1, scope="alice")
    flow = use_flow(server.me, mesh, key="me")
    values: list[Any] = []
    mesh.on_cache_update(ME, values.append)
    waiting = asyncio.ensure_future(flow.execute())
    await until(lambda: server.calls, what="the call started")
    seen = watch(flow)

    mesh.set_scope("bob")
    with pytest.raises(ScopeChangedError):
        await waiting
    await asyncio.sleep(0.3)  # past the old call's end, had it not been cancelled
    assert seen == [("idle", None)] and flow.error is None
    assert values == [] and mesh.get_cached(ME) is None and mesh.stats.calls == 0
    assert server.calls == ["alice"] and server.finished == []  # cancelled, not merely ignored
    dispose(mesh)


@async_test
async def test_a_call_of_the_old_scope_that_ignores_cancellation_is_discarded() -> None:
    """The new node numbers its calls from 1 again: the old call 1 must not answer the new call 1."""
    hub = MemoryHub()
    user = {"now": "alice"}
    alice_started, bob_started, alice_done = asyncio.Event(), asyncio.Event(), asyncio.Event()

    async def me() -> dict[str, Any]:
        mine = user["now"]
        if mine == "alice":
            alice_started.set()
            try:
                await asyncio.sleep(10)
            except asyncio.CancelledError:
                pass  # a flow function that swallows the cancel and returns alice's data anyway ...
            await bob_started.wait()  # ... while bob's call runs
            alice_done.set()
        else:
            bob_started.set()
            await alice_done.wait()
        return {"user": mine}

    (mesh,) = open_tabs(hub, 1, scope="alice")
    flow = use_flow(me, mesh, key="me")
    heard: list[Any] = []
    mesh.on_cache_update(ME, heard.append)
    old = asyncio.ensure_future(flow.execute())
    await alice_started.wait()
    user["now"] = "bob"
    mesh.set_scope("bob")
    seen = watch(flow)
    assert await flow.execute() == {"user": "bob"}  # alice's call ended during bob's, and was discarded
    with pytest.raises(ScopeChangedError):
        await old
    assert heard == [{"user": "bob"}]
    assert seen == [("loading", None), ("success", {"user": "bob"})]
    dispose(mesh)


@async_test
async def test_an_execute_resolved_just_before_the_switch_raises_instead_of_returning() -> None:
    hub, server = MemoryHub(), AuthServer("alice", delay=0.3)
    tabs = open_tabs(hub, 2, scope="alice")
    flows = [use_flow(server.me, tab, key="me") for tab in tabs]
    leader = await settle(tabs)
    i = 0 if tabs[1] is leader else 1
    follower, flow = tabs[i], flows[i]
    waiting = asyncio.ensure_future(flow.execute())
    await until(lambda: server.calls, what="the leader's call started")
    follower.share_result(ME, {"user": "alice", "shared": True})  # resolves the waiting execute ...
    follower.set_scope("bob")  # ... which has not resumed yet when the scope changes
    with pytest.raises(ScopeChangedError):
        await waiting
    assert flow.data is None and flow.status == "idle"
    dispose(*tabs)


@async_test
async def test_a_follower_leaving_the_scope_of_a_running_call_never_sees_its_result() -> None:
    hub, server = MemoryHub(), AuthServer("alice", delay=0.2)
    tabs = open_tabs(hub, 3, scope="alice")
    flows = [use_flow(server.me, tab, key="me") for tab in tabs]
    leader = await settle(tabs)
    followers = [i for i, tab in enumerate(tabs) if tab is not leader]
    leaving, staying = followers
    pending = [asyncio.ensure_future(flows[i].execute()) for i in followers]
    await until(lambda: server.calls, what="the leader's call started")
    tabs[leaving].set_scope("bob")
    with pytest.raises(ScopeChangedError):
        await pending[0]
    assert await pending[1] == {"user": "alice"}  # the rest of alice's mesh got it
    await until(lambda: tabs[leaving].stats.other_scope > 0, what="alice's result reached the leaver's channel")
    assert flows[leaving].data is None and tabs[leaving].get_cached(ME) is None
    assert tabs[staying].get_cached(ME) == {"user": "alice"} and server.calls == ["alice"]
    dispose(*tabs)


@async_test
async def test_a_listener_switching_scope_mid_delivery_stops_the_old_scopes_value() -> None:
    hub, server = MemoryHub(), AuthServer("alice", delay=0.05)
    tabs = open_tabs(hub, 2, scope="alice")
    flows = [use_flow(server.me, tab, key="me") for tab in tabs]
    leader = await settle(tabs)
    i = 0 if tabs[1] is leader else 1
    follower, flow = tabs[i], flows[i]
    later: list[Any] = []
    follower.on_cache_update(ME, lambda value: follower.set_scope("bob"))  # e.g. the page sees a logout
    follower.on_cache_update(ME, later.append)
    with pytest.raises(ScopeChangedError):
        await flow.execute()  # resolved by alice's result, but the scope changed before it resumed
    assert later == [] and flow.data is None and follower.scope == "bob"
    dispose(*tabs)


@async_test
async def test_logout_to_the_shared_scope_joins_the_shared_mesh() -> None:
    hub, server = MemoryHub(), AuthServer("alice")
    (public,) = open_tabs(hub, 1)
    news = AuthServer("anyone")
    use_flow(news.me, public, key="feed")
    await public.run("feed")
    (tab,) = open_tabs(hub, 1, scope="alice")
    me, feed = use_flow(server.me, tab, key="me"), use_flow(news.me, tab, key="feed")
    await me.execute()
    tab.set_scope(None, forget=True)
    assert tab.scope is None and me.data is None and tab.get_cached(ME) is None
    await until(lambda: tab.get_cached(FEED) == {"user": "anyone"}, what="the shared mesh's Sync")
    assert await feed.execute() == {"user": "anyone"} and news.calls == ["anyone"]
    dispose(public, tab)


@async_test
async def test_set_scope_to_the_same_scope_is_nothing_unless_forget() -> None:
    hub, server = MemoryHub(), AuthServer("alice")
    (mesh,) = open_tabs(hub, 1, scope="alice")
    flow = use_flow(server.me, mesh, key="me")
    await flow.execute()
    posted = hub.posted
    mesh.set_scope("alice")
    assert flow.data == {"user": "alice"} and mesh.get_cached(ME) == {"user": "alice"} and hub.posted == posted
    mesh.set_scope("alice", forget=True)
    assert flow.data is None and flow.status == "idle" and mesh.get_cached(ME) is None
    assert await flow.execute() == {"user": "alice"} and len(server.calls) == 2
    dispose(mesh)


@async_test
async def test_set_scope_validates_and_never_quotes_the_scope() -> None:
    hub = MemoryHub()
    (mesh,) = open_tabs(hub, 1, scope="alice@example.com")
    assert "alice@example.com" not in repr(mesh.config) and "alice@example.com" not in repr(mesh)
    secret = "bob@example.com" + "x" * 1024
    for bad, error in ((123, TypeError), ("", ValueError), (secret, ValueError), ("\ud800", ValueError)):
        with pytest.raises(error) as caught:
            mesh.set_scope(bad)  # type: ignore[arg-type]
        assert "bob@example.com" not in str(caught.value)
    with pytest.raises(TypeError):
        mesh.set_scope("bob", forget="yes")  # type: ignore[arg-type]
    with pytest.raises(ValueError):
        FlowMesh("c", transport=hub.transport(), scope="")
    with pytest.raises(ValueError):
        MeshConfig.from_options(channel="c", scope="x" * 1025)
    assert MeshConfig.from_options(channel="c", scope="x" * 1024).scope == "x" * 1024
    assert mesh.scope == "alice@example.com"

    attempts: list[str | None] = []

    def again(scope: str | None) -> None:
        attempts.append(scope)
        mesh.set_scope("carol")  # refused (and logged): a switch inside a switch

    mesh.on_scope_change(again)
    mesh.set_scope("bob")
    assert attempts == ["bob"] and mesh.scope == "bob"
    mesh.dispose()
    with pytest.raises(MeshDisposedError):
        mesh.set_scope("alice")


@async_test
async def test_use_flow_takes_a_scope_and_one_channel_holds_one_scope_per_tab() -> None:
    hub = MemoryHub()
    transport = hub.transport()
    server = AuthServer("alice")
    options = {"channel": "dict-mesh", "transport": transport, "heartbeat": HEARTBEAT}
    me = use_flow(server.me, mesh={**options, "scope": "alice"}, key="me")
    assert me.mesh is not None and me.mesh.scope == "alice"
    with pytest.raises(ValueError, match="set_scope"):
        use_flow(server.me, mesh={**options, "scope": "bob"}, key="other")
    feed = use_flow(server.me, mesh=options, key="feed")  # no scope: the member's, whatever it is
    assert feed.mesh is me.mesh
    me.mesh.set_scope("bob")
    assert use_flow(server.me, mesh={**options, "scope": "bob"}, key="third").mesh is me.mesh
    with pytest.raises(ValueError, match="set_scope"):
        use_flow(server.me, mesh={**options, "scope": "alice"}, key="fourth")
    server.user = "bob"
    assert await feed.execute() == {"user": "bob"}
    me.mesh.dispose()


@async_test
async def test_hub_locks_are_per_scope() -> None:
    """Tabs of two scopes with the same ID: one's crash never wakes the other scope's watchers."""
    hub = MemoryHub()
    tab = {
        (scope, node): FlowMesh("ids", transport=hub.transport(), node_id=node, scope=scope, heartbeat=HEARTBEAT)
        for scope, node in (("alice", "z"), ("alice", "a"), ("bob", "z"), ("bob", "b"))
    }
    await settle([tab["alice", "z"], tab["alice", "a"]])
    await settle([tab["bob", "z"], tab["bob", "b"]])
    elections = tab["alice", "a"].stats.elections
    hub.crash(tab["bob", "z"])
    await until(lambda: tab["bob", "b"].is_leader, what="bob's survivor took over (told by its lock)")
    assert tab["alice", "a"].leader_id == "z" and tab["alice", "a"].stats.elections == elections
    assert tab["alice", "z"].is_leader
    for key, mesh in tab.items():
        if key != ("bob", "z"):
            mesh.dispose()


@async_test
async def test_a_hidden_tab_joins_its_new_scope_as_hidden() -> None:
    """A background tab told of a logout switches while hidden: its new mesh must know its timers are slow."""
    hub = RecordingHub()
    (mesh,) = open_tabs(hub, 1, channel="hidden", scope="alice")
    await until(lambda: mesh.is_leader, what="alone, it leads")
    hub.page(mesh).hide(True)
    mesh.set_scope("bob")
    await until(lambda: mesh.is_leader, what="it leads bob's mesh")
    bob = scope_digest("hidden", "bob")
    beats = [json.loads(data) for data in hub.wire if json.loads(data).get("scope") == bob]
    announced = [beat["hidden"] for beat in beats if beat["type"] in ("coordinator", "heartbeat")]
    assert announced and all(announced)
    dispose(mesh)


@async_test
async def test_peer_to_peer_scopes_share_nothing_either() -> None:
    hub = MemoryHub()
    apis = {"alice": AuthServer("alice"), "bob": AuthServer("bob")}
    tabs = {user: open_tabs(hub, 2, channel="p2p", scope=user, strategy="peer-to-peer") for user in apis}
    flows = {user: [use_flow(apis[user].me, tab, key="me") for tab in tabs[user]] for user in apis}
    results = await asyncio.gather(*(flow.execute() for user in flows for flow in flows[user]))
    assert results == [{"user": "alice"}] * 2 + [{"user": "bob"}] * 2
    assert apis["alice"].calls == ["alice"] and apis["bob"].calls == ["bob"]
    (joiner,) = open_tabs(hub, 1, channel="p2p", scope="bob", strategy="peer-to-peer")
    await until(lambda: joiner.get_cached(ME) == {"user": "bob"}, what="bob's peers to sync bob's joiner")
    tabs["alice"][0].set_scope("bob")
    assert tabs["alice"][0].get_cached(ME) is None
    await until(lambda: tabs["alice"][0].get_cached(ME) == {"user": "bob"}, what="the switched peer synced")
    assert all(tab.get_cached(ME) == {"user": "alice"} for tab in tabs["alice"][1:])
    dispose(*tabs["alice"], *tabs["bob"], joiner)
