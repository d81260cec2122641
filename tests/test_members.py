"""The members (core/members.py): who is in the mesh, the named successor, and the hand-over in one post."""

from __future__ import annotations

import asyncio
import functools
import json
from typing import Any

import pytest
from support import HEARTBEAT, Server, async_test, ends, leaders, leading_node, open_tabs, settle, settled, until

from pyflowmesh import FlowMesh, MeshChange, SharedFlowError, use_flow
from pyflowmesh.core.config import MeshConfig
from pyflowmesh.core.effects import LeaderChanged
from pyflowmesh.core.members import Member, Members
from pyflowmesh.core.node import MeshNode
from pyflowmesh.core.stats import MeshStats
from pyflowmesh.core.values import cache_key
from pyflowmesh.core.wire import MAX_MEMBERS, Coordinator, Election, Heartbeat, MemberEntry, decode, encode
from pyflowmesh.errors import MessageTooLarge
from pyflowmesh.simulation.network import VirtualNetwork
from pyflowmesh.transports.memory import MemoryHub

CONFIG = MeshConfig.from_options(channel="c", heartbeat=1000)


# --- the table ------------------------------------------------------------------------------------


def test_the_successor_is_the_highest_member_and_the_listing_is_bounded() -> None:
    members = Members(CONFIG, MeshStats(), locks=True)
    for node_id in ("b", "d", "a"):
        assert members.heard(node_id, 0.0)
    assert not members.heard("b", 5.0)  # known: refreshed, not added
    assert members.successor() == "d" and members.successor(leader="d") == "b"
    assert [entry.id for entry in members.listing()] == ["d", "b", "a"]
    for index in range(MAX_MEMBERS + 10):
        members.heard(f"x{index:04d}", 0.0)
    assert len(members) == MAX_MEMBERS and members.stats.members_unlisted == 13
    assert len(members.listing()) == MAX_MEMBERS


def test_members_a_lock_covers_never_expire_and_the_others_expire_after_the_silence_a_leader_gets() -> None:
    members = Members(CONFIG, MeshStats(), locks=True)
    members.heard("locked", 0.0, locks=True)
    members.heard("unlocked", 0.0, locks=False)
    members.heard("hidden", 0.0, locks=False, hidden=True)
    assert members.watched() == {"locked"}
    assert members.deadline() == CONFIG.silence_limit(1000, False)
    assert members.expire(2499.0) == [] and members.expire(2500.0) == ["unlocked"]
    assert members.expire(CONFIG.hidden_timeout - 1) == [] and members.expire(CONFIG.hidden_timeout) == ["hidden"]
    assert members.ids() == ["locked"]
    # A tab without Web Locks watches nobody: every member must show it is alive.
    assert Members(CONFIG, MeshStats(), locks=False).watched() == set()


def test_a_follower_takes_its_leaders_list_without_itself() -> None:
    members = Members(CONFIG, MeshStats(), locks=True)
    members.heard("stale", 0.0)
    members.adopt([MemberEntry(id="me", locks=True), MemberEntry(id="b", locks=False)], "L", True, "me", 1.0)
    assert members.ids() == ["b", "L"] and members.covered("L") and not members.covered("b")


def test_mesh_change_says_who_joined_left_and_whether_this_tab_gained_or_lost_leadership() -> None:
    before = (Member("c", "follower"), Member("b", "leader", is_self=True))
    after = (Member("d", "follower"), Member("b", "follower", is_self=True), Member("a", "leader"))
    change = MeshChange.between(before, after)
    assert change.joined == ("d", "a") and change.left == ("c",) and change.leadership == "lost"
    assert change.leader == "a" and not change.is_leader and change.peers == 2
    assert MeshChange.between(after, after).leadership is None


# --- the wire ------------------------------------------------------------------------------------


def test_heartbeats_carry_the_members_and_the_successor_bounded_where_decoded() -> None:
    node = leading_node("m", locks=True)
    node.receive(_raw("hello", src="z", locks=True), 3000.0)
    node.receive(_raw("hello", src="a", locks=False), 3000.0)
    node.tick(4000.0)
    beat = _sent(node, Heartbeat)[-1]
    assert beat.successor == "z" and beat.locks
    assert [(e.id, e.locks) for e in beat.members] == [("z", True), ("a", False)]
    too_many = [{"id": f"n{i}", "locks": True} for i in range(MAX_MEMBERS + 1)]
    with pytest.raises(ValueError, match="bad-field:members"):
        decode(_raw("heartbeat", src="q", term=1, interval=1000, hidden=False, locks=True, members=too_many))
    with pytest.raises(ValueError, match="bad-field:members"):
        decode(_raw("heartbeat", src="q", term=1, interval=1000, hidden=False, locks=True,
                    members=[{"id": "", "locks": True}]))


# --- the hand-over, in the core and in virtual time -------------------------------------------------


def test_the_named_successor_takes_over_on_the_leaders_bye_in_one_post() -> None:
    net = _mesh(["a", "b", "c", "d"], locks=True)
    leader = net.leader()
    assert leader is not None
    successor = net.node(leader).successor
    assert successor == max(n for n in "abcd" if n != leader)
    assert all(net.node(n).successor == successor for n in "abcd" if n != leader)
    elections = {n: net.node(n).stats.elections for n in "abcd"}
    posts: list[Any] = []
    net.posts = posts
    net.close(leader, at=net.now + 10)
    net.run_until(net.now + 500)
    new = net.leader()
    assert new == successor and net.converged()
    types = [type(message).__name__ for _, _, message in posts]
    assert types[:2] == ["Bye", "Coordinator"] and "Election" not in types
    # The hand-over took the channel's delay only: no answer_timeout, no election.
    took_over = next(at for at, src, message in posts if isinstance(message, Coordinator))
    assert took_over - posts[0][0] <= net.delay[1] + 1e-9
    assert net.node(successor).stats.handovers == 1
    assert all(net.node(n).stats.elections == elections[n] for n in "abcd" if n != leader)


def test_the_successor_takes_over_when_the_browser_hands_over_a_crashed_leaders_lock() -> None:
    net = _mesh(["a", "b", "c"], locks=True)
    leader = net.leader()
    assert leader is not None
    successor = net.node(leader).successor
    posts: list[Any] = []
    net.posts = posts
    net.crash(leader, at=net.now + 10)
    net.run_until(net.now + 500)
    assert net.leader() == successor and net.converged()
    assert [type(m).__name__ for _, _, m in posts][:1] == ["Coordinator"]
    assert not any(type(m).__name__ == "Election" for _, _, m in posts)


def _bye_of_the_leader(ids: list[str]) -> tuple[VirtualNetwork, str, str, str]:
    """A settled mesh, its leader's Bye (encoded; the leader closed) and the successor it names."""
    net = _mesh(ids, locks=True)
    leader = net.leader()
    assert leader is not None
    successor = net.node(leader).successor
    assert successor is not None
    posts: list[Any] = []
    net.posts = posts
    at = net.now + 10
    net.close(leader, at=at)
    net.run_until(at + net.delay[0] / 2)  # the Bye is posted, and delivered to nobody yet
    bye = next(message for _, src, message in posts if src == leader)
    return net, leader, successor, encode(bye)


def test_every_follower_follows_the_named_successor_on_the_bye_itself_before_its_coordinator() -> None:
    net, leader, successor, bye = _bye_of_the_leader(["a", "b", "c", "d"])
    follower = net.node(min(n for n in "abcd" if n not in (leader, successor)))
    follower.take_effects()
    follower.receive(bye, net.now)  # straight from the Bye: no post of the successor needed
    assert follower.leader == successor and follower.role.value == "follower"
    assert [e.leader for e in follower.take_effects() if isinstance(e, LeaderChanged)] == [successor]
    took_over = net.node(successor)
    took_over.take_effects()
    took_over.receive(bye, net.now)  # from the old leader straight to itself: one leader change
    assert took_over.is_leader
    assert [e.leader for e in took_over.take_effects() if isinstance(e, LeaderChanged)] == [successor]


def test_a_named_successor_that_never_confirms_itself_is_stood_against_after_the_wait() -> None:
    net, leader, successor, bye = _bye_of_the_leader(["a", "b", "c", "d"])
    follower = net.node(min(n for n in "abcd" if n not in (leader, successor)))
    now = net.now
    follower.receive(bye, now)
    follower.take_effects()
    assert follower.leader == successor
    # No Coordinator comes (the successor is frozen): the follower stands at its staggered turn
    # plus answer_timeout, the wait a joining tab gives the successor.
    deadline = follower.next_deadline()
    assert deadline is not None and deadline <= now + CONFIG.answer_timeout * 1.5
    follower.tick(deadline)
    assert follower.role.value == "candidate" and follower.leader is None
    assert _sent(follower, Election)


def test_a_leader_and_its_successor_crashing_together_fall_back_to_the_election() -> None:
    net = _mesh(["a", "b", "c", "d"], locks=True)
    leader = net.leader()
    assert leader is not None
    successor = net.node(leader).successor
    assert successor is not None
    net.crash(leader, at=net.now + 10)
    net.crash(successor, at=net.now + 10)
    net.run_until(net.now + 2000)
    survivors = [n for n in "abcd" if n not in (leader, successor)]
    assert net.leader() == max(survivors) and net.converged()


def test_without_web_locks_a_crashed_leader_is_replaced_after_its_silence_by_an_election() -> None:
    net = _mesh(["a", "b", "c"], locks=False)
    leader = net.leader()
    assert leader is not None
    net.crash(leader, at=net.now + 10)
    net.run_until(net.now + 5000)
    assert net.leader() not in (None, leader) and net.converged()


def test_a_follower_that_crashes_leaves_every_tabs_members_through_the_leader() -> None:
    for locks in (True, False):
        net = _mesh(["a", "b", "c", "d"], locks=locks)
        leader = net.leader()
        assert leader is not None
        gone = next(n for n in "abcd" if n != leader)
        net.crash(gone, at=net.now + 10)
        # With Web Locks the leader hears of it at once; without, after 2.5 heartbeats of silence.
        net.run_until(net.now + (300 if locks else 4000))
        for node_id in "abcd":
            if node_id != gone:
                assert gone not in {m.node_id for m in net.node(node_id).member_list()}, (locks, node_id)
                assert net.node(node_id).peers == 2


def test_idle_cost_with_web_locks_is_the_leaders_heartbeats_and_without_one_alive_per_tab() -> None:
    for locks, per_minute in ((True, 60), (False, 60 * 4)):
        net = _mesh(["a", "b", "c", "d"], locks=locks)
        posts: list[Any] = []
        net.posts = posts
        start = net.now
        net.run_until(start + 60_000)
        # One heartbeat a second from the leader; without locks, one Alive a second from each follower.
        assert abs(len(posts) - per_minute) <= 4, (locks, len(posts))


def test_a_forged_member_without_a_lock_leaves_at_once_and_is_never_the_awaited_successor() -> None:
    net = _mesh(["a", "b", "c"], locks=True)
    leader = net.leader()
    assert leader is not None
    net.inject(_raw("hello", src="zzzz", locks=True), at=net.now + 1)
    net.run_until(net.now + 200)
    assert all("zzzz" not in {m.node_id for m in net.node(n).member_list()} for n in "abc")
    assert net.node(leader).successor != "zzzz"


# --- the runtime over MemoryHub ----------------------------------------------------------------------


@async_test
async def test_peers_members_and_on_change_over_joins_polite_leaves_and_crashes() -> None:
    hub = MemoryHub()
    tabs = open_tabs(hub, 3)
    leader = await settle(tabs)
    await until(lambda: all(t.peers == 2 for t in tabs), what="every tab to count 2 peers")
    changes: list[MeshChange] = []
    watcher = next(t for t in tabs if t is not leader)
    watcher.on_change(changes.append)
    newcomer = FlowMesh("test-mesh", transport=hub.transport(), heartbeat=HEARTBEAT)
    tabs.append(newcomer)
    await until(lambda: all(t.peers == 3 for t in tabs), what="the join to reach every tab")
    assert changes[-1].joined == (newcomer.node_id,)
    members = watcher.members
    assert [m.node_id for m in members] == sorted((t.node_id for t in tabs), reverse=True)
    assert {m.node_id: m.role for m in members if not m.is_self} == {
        t.node_id: "leader" if t is leader else "follower" for t in tabs if t is not watcher}
    assert [m.id for m in members] == [m.node_id for m in members]  # the shorter name
    newcomer.dispose()
    await until(lambda: all(t.peers == 2 for t in tabs if not t.disposed), what="the polite leave")
    crashed = next(t for t in tabs if not t.disposed and t is not leader and t is not watcher)
    hub.crash(crashed)
    await until(lambda: all(t.peers == 1 for t in tabs if not t.disposed), what="the crash to be noticed")
    assert changes[-1].left == (crashed.node_id,)
    for tab in tabs:
        tab.dispose()


@async_test
async def test_on_change_reports_leadership_lost_and_gained() -> None:
    hub = MemoryHub()
    tabs = open_tabs(hub, 3)
    leader = await settle(tabs)
    heard: dict[str, list[str | None]] = {t.node_id: [] for t in tabs}
    for tab in tabs:
        tab.on_change(lambda change, tab=tab: heard[tab.node_id].append(change.leadership))
    successor = leader.successor
    leader.dispose()
    await settle(tabs)
    assert "lost" in heard[leader.node_id]
    assert heard[str(successor)] == ["gained"] or "gained" in heard[str(successor)]
    for tab in tabs:
        tab.dispose()


@async_test
async def test_on_change_tells_news_only_and_takes_only_a_callable() -> None:
    # A lone tab's own role moving from joining to candidate is no news: its first change is
    # gaining the leadership. A listener that is not callable is refused at once.
    hub = MemoryHub()
    (tab,) = open_tabs(hub, 1)
    changes: list[MeshChange] = []
    tab.on_change(changes.append)
    await until(lambda: tab.is_leader, what="the lone tab to lead")
    assert [(c.leadership, c.leader, c.joined, c.left) for c in changes] == [("gained", tab.node_id, (), ())]
    for listen in (tab.on_change, functools.partial(tab.on_cache_update, "k"), functools.partial(tab.on_error, "k")):
        with pytest.raises(TypeError, match="callable"):
            listen(42)  # type: ignore[arg-type]
    tab.dispose()


@pytest.mark.parametrize("how", ["dispose", "crash"])
@async_test
async def test_a_hand_over_costs_one_post_and_no_election(how: str) -> None:
    hub = MemoryHub()
    tabs = open_tabs(hub, 4, heartbeat=5000)  # answer_timeout 250 ms: any wait would be long
    leader = await settle(tabs)
    await until(lambda: all(t.peers == 3 for t in tabs), what="every tab to know the others")
    successor = leader.successor
    assert successor is not None and all(t.successor == successor for t in tabs)
    elections = {t.node_id: t.stats.elections for t in tabs}
    posts: list[dict[str, Any]] = []
    hub.on_post(lambda channel, data: posts.append(json.loads(data)))
    if how == "dispose":
        leader.dispose()
    else:
        hub.crash(leader)
    await until(lambda: settled(tabs), what="one new leader")
    new = leaders(tabs)[0]
    assert new.node_id == successor and new.stats.handovers == 1
    assert [p["type"] for p in posts] == (["bye"] if how == "dispose" else []) + ["coordinator"]
    assert all(t.stats.elections == elections[t.node_id] for t in tabs if not t.disposed)
    for tab in tabs:
        tab.dispose()


@pytest.mark.parametrize("sharer", ["the leader, whose call runs", "a follower, while the leader's call runs"])
@async_test
async def test_share_error_fails_every_tabs_waiters_and_listeners_and_starts_the_back_off(sharer: str) -> None:
    hub, server = MemoryHub(), Server(delay=0.5)
    tabs = open_tabs(hub, 3, heartbeat=HEARTBEAT)
    leader = await settle(tabs)
    tabs.sort(key=lambda tab: (tab is leader) == sharer.startswith("a follower"))  # tabs[0] shares the error
    flows = [use_flow(server.fetch, tab, key="k") for tab in tabs]
    errors: list[tuple[int, BaseException]] = []
    for index, tab in enumerate(tabs):
        tab.on_error(cache_key("k", ()), lambda e, index=index: errors.append((index, e)))
    waiting = [asyncio.ensure_future(flow.execute()) for flow in flows]
    await asyncio.sleep(0.05)
    assert len(server.calls) == 1  # the leader's call runs
    boom = ConnectionError("the server said 503")
    tabs[0].shareError(cache_key("k", ()), boom)  # the TypeScript name, as ported pages call it
    outcomes = await asyncio.gather(*(ends(w, "an execute") for w in waiting), return_exceptions=True)
    assert outcomes[0] is boom  # every execute fails, the one waiting on the running call too
    assert all(isinstance(o, SharedFlowError) for o in outcomes[1:]), outcomes
    await until(lambda: {i for i, _ in errors} == {0, 1, 2}, what="every tab's on_error listener")
    assert dict(errors)[0] is boom and isinstance(dict(errors)[1], SharedFlowError)
    # The call ran on, and what it returned reaches every tab's cache.
    await until(lambda: all(tab.get_cached(cache_key("k", ())) is not None for tab in tabs), what="the call's result")
    assert len(server.calls) == 1
    with pytest.raises(TypeError):
        tabs[1].share_error("k", "not an exception")  # type: ignore[arg-type]
    with pytest.raises(MessageTooLarge):  # as share_result and invalidate: nothing half-done
        tabs[1].share_error("k" * (2 << 20), ConnectionError("503"))
    for tab in tabs:
        tab.dispose()


@async_test
async def test_the_seeds_method_names_are_aliases() -> None:
    hub = MemoryHub()
    (tab,) = open_tabs(hub, 1)
    seen: list[Any] = []
    tab.onCacheUpdate("k", seen.append)
    tab.shareResult("k", {"n": 1})
    assert tab.getCached("k") == {"n": 1} and seen == [{"n": 1}]
    tab.dispose()


# --- helpers ----------------------------------------------------------------------------------------


def _raw(kind: str, **body: Any) -> str:
    from pyflowmesh.core.wire import PROTOCOL, VERSION

    return json.dumps({"proto": PROTOCOL, "v": VERSION, "type": kind, **body})


def _sent(node: MeshNode, kind: type) -> list[Any]:
    return [e.message for e in node.take_effects() if hasattr(e, "message") and isinstance(e.message, kind)]


def _mesh(ids: list[str], *, locks: bool) -> VirtualNetwork:
    """Tabs with one-letter IDs on a virtual network, settled (the highest leads)."""
    net = VirtualNetwork(7, CONFIG, locks=locks)
    for index, node_id in enumerate(ids):
        net.add_tab(index * 5.0, node_id=node_id, flows=())
    net.run_until(3000.0)
    assert net.converged()
    return net

