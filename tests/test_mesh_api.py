"""The public API in CPython: several simulated tabs on a MemoryHub, real asyncio timers."""

from __future__ import annotations

import asyncio
import json

import pytest
from support import HEARTBEAT, Server, async_test, leader_and_follower, leaders, open_tabs, settle, settled, until

from pyflowmesh import FlowMesh, MeshDisposedError, SharedFlowError, use_flow
from pyflowmesh.transports.memory import MemoryHub


@async_test
async def test_tabs_executing_one_flow_at_once_make_one_call() -> None:
    hub, server = MemoryHub(), Server()
    tabs = open_tabs(hub, 6)
    flows = [use_flow(server.fetch, tab, key="dashboard") for tab in tabs]
    await settle(tabs)
    results = await asyncio.gather(*(flow.execute("user-1") for flow in flows))
    assert len(server.calls) == 1
    assert all(result == results[0] for result in results)
    assert sorted(flow.source for flow in flows) == ["call"] + ["mesh"] * 5
    assert [flow.status for flow in flows] == ["success"] * 6


@async_test
async def test_executes_before_any_leader_exists_still_make_one_call() -> None:
    hub, server = MemoryHub(), Server()
    tabs = open_tabs(hub, 5)
    flows = [use_flow(server.fetch, tab, key="early") for tab in tabs]
    results = await asyncio.gather(*(flow.execute() for flow in flows))  # no settle first
    assert len(server.calls) == 1
    assert len({json.dumps(r) for r in results}) == 1


@async_test
async def test_different_arguments_make_one_call_each() -> None:
    hub, server = MemoryHub(), Server()
    tabs = open_tabs(hub, 4)
    flows = [use_flow(server.fetch, tab, key="user") for tab in tabs]
    await settle(tabs)
    await asyncio.gather(*(flow.execute(uid) for flow in flows for uid in ("a", "b", "c")))
    assert sorted(server.calls) == [("a",), ("b",), ("c",)]


@async_test
async def test_concurrent_executes_in_one_tab_share_one_call() -> None:
    hub, server = MemoryHub(), Server()
    (tab,) = open_tabs(hub, 1)
    flow = use_flow(server.fetch, tab, key="solo")
    results = await asyncio.gather(*(flow.execute(1) for _ in range(5)))
    assert len(server.calls) == 1 and len({json.dumps(r) for r in results}) == 1


@async_test
async def test_a_fresh_result_is_served_from_the_cache_everywhere() -> None:
    hub, server = MemoryHub(), Server()
    tabs = open_tabs(hub, 3)
    flows = [use_flow(server.fetch, tab, key="fresh") for tab in tabs]
    await settle(tabs)
    first = await flows[0].execute()
    for flow in flows:
        assert await flow.execute() == first
    assert len(server.calls) == 1
    assert all(tab.get_cached("fresh") == first for tab in tabs)


@async_test
async def test_a_stale_result_is_fetched_again_once() -> None:
    hub, server = MemoryHub(), Server(delay=0.001)
    tabs = open_tabs(hub, 3, stale_time=150)
    flows = [use_flow(server.fetch, tab, key="stale") for tab in tabs]
    await settle(tabs)
    await asyncio.gather(*(flow.execute() for flow in flows))
    await asyncio.sleep(0.2)
    assert all(tab.get_cached("stale") is None for tab in tabs)
    await asyncio.gather(*(flow.execute() for flow in flows))
    assert len(server.calls) == 2


@async_test
async def test_the_leader_disposing_promotes_one_new_leader_before_any_heartbeat_runs_out() -> None:
    hub, server = MemoryHub(), Server()
    tabs = open_tabs(hub, 5, heartbeat=2000)  # silence limit 5 s: only the Bye can be this fast
    flows = [use_flow(server.fetch, tab, key="k") for tab in tabs]
    leader = await settle(tabs)
    term = leader.term
    loop = asyncio.get_running_loop()
    leader.dispose()
    left_at = loop.time()
    await settle(tabs)
    promoted_after = loop.time() - left_at
    survivors = [t for t in tabs if not t.disposed]
    assert len(leaders(survivors)) == 1 and leaders(survivors)[0].term > term
    assert promoted_after < 2.5 * 2.0, "promotion waited for heartbeats to run out"
    await asyncio.gather(*(flow.execute() for flow, tab in zip(flows, tabs) if not tab.disposed))
    assert len(server.calls) == 1


@async_test
async def test_a_crashed_leader_is_replaced_through_locks_without_waiting_for_heartbeats() -> None:
    hub = MemoryHub(locks=True)
    tabs = open_tabs(hub, 4, heartbeat=2000)
    leader = await settle(tabs)
    hub.crash(leader)
    loop = asyncio.get_running_loop()
    crashed_at = loop.time()
    await settle(tabs)
    assert loop.time() - crashed_at < 2.5 * 2.0
    assert leaders(tabs)[0] is not leader


@async_test
async def test_a_crashed_leader_is_replaced_by_heartbeat_timeout_without_locks() -> None:
    hub = MemoryHub(locks=False)
    tabs = open_tabs(hub, 4)
    leader = await settle(tabs)
    hub.crash(leader)
    await settle(tabs)
    assert leaders(tabs)[0] is not leader
    assert all(t.stats.elections >= 0 for t in tabs)


@async_test
async def test_a_late_joiner_is_served_from_the_mesh_without_a_call() -> None:
    hub, server = MemoryHub(), Server()
    tabs = open_tabs(hub, 3)
    flows = [use_flow(server.fetch, tab, key="report") for tab in tabs]
    await settle(tabs)
    data = await flows[1].execute(42)
    (late,) = open_tabs(hub, 1)
    late_flow = use_flow(server.fetch, late, key="report")
    await until(lambda: late.get_cached('report[42]') is not None, what="the sync of the late joiner")
    assert await late_flow.execute(42) == data
    assert late_flow.source == "cache"
    assert len(server.calls) == 1
    assert late.is_leader is False and late.leader_id == leaders(tabs)[0].node_id


@async_test
async def test_a_failure_reaches_every_tab_and_nobody_retries_during_the_back_off() -> None:
    hub, server = MemoryHub(), Server()
    server.down = True
    tabs = open_tabs(hub, 5, error_backoff=300, max_error_backoff=300)
    flows = [use_flow(server.fetch, tab, key="down") for tab in tabs]
    await settle(tabs)
    outcomes = await asyncio.gather(*(flow.execute() for flow in flows), return_exceptions=True)
    assert len(server.calls) == 1
    assert all(isinstance(o, Exception) for o in outcomes)
    assert sum(isinstance(o, ConnectionError) for o in outcomes) == 1  # the caller sees its own error
    assert sum(isinstance(o, SharedFlowError) for o in outcomes) == 4
    assert all(flow.status == "error" for flow in flows)
    # During the back-off every tab fails at once, and the server hears nothing.
    for flow in flows:
        with pytest.raises(SharedFlowError) as caught:
            await flow.execute()
        assert caught.value.error_type == "ConnectionError" and caught.value.retry_in > 0
    assert len(server.calls) == 1
    server.down = False
    await asyncio.sleep(0.35)
    results = await asyncio.gather(*(flow.execute() for flow in flows))
    assert len(server.calls) == 2 and all(r == results[0] for r in results)


@async_test
async def test_the_back_off_doubles_with_each_consecutive_failure() -> None:
    hub, server = MemoryHub(), Server(delay=0.001)
    server.down = True
    tabs = open_tabs(hub, 2, error_backoff=50, max_error_backoff=1000)
    flows = [use_flow(server.fetch, tab, key="flaky") for tab in tabs]
    await settle(tabs)
    waits = []
    for _ in range(3):
        with pytest.raises(Exception):
            await flows[0].execute()
        with pytest.raises(SharedFlowError) as caught:
            await flows[1].execute()
        waits.append(caught.value.retry_in)
        await asyncio.sleep(caught.value.retry_in / 1000 + 0.02)
    assert waits[0] <= 50 < waits[1] <= 100 < waits[2] <= 200


@async_test
async def test_garbage_on_the_channel_is_counted_and_ignored() -> None:
    hub, server = MemoryHub(), Server()
    tabs = open_tabs(hub, 3)
    flows = [use_flow(server.fetch, tab, key="g") for tab in tabs]
    leader = await settle(tabs)
    before = [(t.role, t.leader_id, t.term) for t in tabs]
    garbage = [
        "not json", "[1,2]", "{}", 42, None, {"proto": "pyflowmesh"}, b"bytes",
        json.dumps({"proto": "pyflowmesh", "v": 999, "type": "coordinator", "src": "zzzz", "term": 99}),
        json.dumps({"proto": "pyflowmesh", "v": 2, "type": "coordinator", "src": "zzzz", "term": "99",
                    "interval": 1, "hidden": False}),
        json.dumps({"proto": "pyflowmesh", "v": 2, "type": "no-such-type", "src": "x"}),
        "x" * (2 << 20),
    ]
    for raw in garbage:
        hub.post(raw)
    await until(lambda: all(t.stats.dropped == len(garbage) for t in tabs), what="every tab to drop the garbage")
    assert [(t.role, t.leader_id, t.term) for t in tabs] == before and leaders(tabs) == [leader]
    await asyncio.gather(*(flow.execute() for flow in flows))
    assert len(server.calls) == 1
    assert tabs[0].stats.drop_reasons["version"] == 1


@async_test
async def test_a_follower_whose_leader_lacks_the_flow_calls_it_itself_once() -> None:
    hub, server = MemoryHub(), Server()
    tabs = open_tabs(hub, 4)
    leader = await settle(tabs)
    followers = [t for t in tabs if t is not leader]
    flows = [use_flow(server.fetch, tab, key="new-in-this-version") for tab in followers]
    results = await asyncio.gather(*(flow.execute() for flow in flows))
    assert len(server.calls) == 1 and all(r == results[0] for r in results)
    assert sum(t.stats.fallbacks for t in followers) >= 1


@async_test
async def test_peer_to_peer_the_first_tab_serves_the_others() -> None:
    hub, server = MemoryHub(), Server()
    tabs = open_tabs(hub, 5, strategy="peer-to-peer")
    flows = [use_flow(server.fetch, tab, key="p2p") for tab in tabs]
    await asyncio.sleep(0.05)
    assert not any(tab.is_leader for tab in tabs) and {tab.role for tab in tabs} == {"peer"}
    results = await asyncio.gather(*(flow.execute("x") for flow in flows))
    assert len(server.calls) == 1 and all(r == results[0] for r in results)
    (late,) = open_tabs(hub, 1, strategy="peer-to-peer")
    late_flow = use_flow(server.fetch, late, key="p2p")
    await until(lambda: late.get_cached('p2p["x"]') is not None, what="peer-to-peer sync of a late joiner")
    assert await late_flow.execute("x") == results[0]
    assert len(server.calls) == 1


@pytest.mark.parametrize(
    ("locks", "heartbeat"),
    [
        (False, HEARTBEAT),  # noticed when the owner's claim goes silent (2.5 heartbeats)
        (True, 60_000),  # the claim would be trusted for 150 s: only the owner's Web Lock can tell in time
    ],
    ids=["silence", "web-lock"],
)
def test_peer_to_peer_a_claim_whose_owner_crashes_is_taken_over(locks: bool, heartbeat: int) -> None:
    async def main() -> None:
        hub = MemoryHub(locks=locks)
        tabs = open_tabs(hub, 3, strategy="peer-to-peer", heartbeat=heartbeat)
        hang = asyncio.Event()
        calls: list[str] = []

        async def slow(arg: str) -> str:
            calls.append(arg)
            if len(calls) == 1:
                await hang.wait()  # the first caller never finishes: its tab crashes
            return "done"

        flows = [use_flow(slow, tab, key="slow") for tab in tabs]
        first = asyncio.ensure_future(flows[0].execute("z"))
        await until(lambda: calls, what="the first call")
        others = [asyncio.ensure_future(flow.execute("z")) for flow in flows[1:]]
        await asyncio.sleep(0.05)
        hub.crash(tabs[0])
        assert await asyncio.wait_for(asyncio.gather(*others), 10.0) == ["done", "done"]
        assert len(calls) == 2
        first.cancel()

    asyncio.run(asyncio.wait_for(main(), 30))


@async_test
async def test_share_result_get_cached_and_on_cache_update() -> None:
    hub = MemoryHub()
    a, b = open_tabs(hub, 2)
    seen: list[object] = []
    off = b.on_cache_update("user-123", seen.append)
    a.share_result("user-123", {"name": "John"})
    await until(lambda: seen, what="the update in the other tab")
    assert seen == [{"name": "John"}] and b.get_cached("user-123") == {"name": "John"}
    off()
    off()  # twice is harmless
    a.share_result("user-123", {"name": "Jane"})
    await until(lambda: b.get_cached("user-123") == {"name": "Jane"}, what="the second update")
    assert seen == [{"name": "John"}]
    assert b.get_cached("nobody") is None
    b.invalidate("user-123")
    await until(lambda: a.get_cached("user-123") is None, what="the invalidation to reach the other tab")


@async_test
async def test_values_that_are_not_json_are_a_type_error_where_offered() -> None:
    hub = MemoryHub()
    a, b = open_tabs(hub, 2)
    for bad in ({1: "int key"}, {"s": {1, 2}}, float("nan"), object(), {"deep": [b"bytes"]}):
        with pytest.raises(TypeError):
            a.share_result("k", bad)
    flow = use_flow(lambda: {"when": object()}, a, key="bad-result")
    with pytest.raises(TypeError, match="result of flow 'bad-result'"):
        await flow.execute()
    good = use_flow(lambda x: x, a, key="echo")
    with pytest.raises(TypeError):
        await good.execute({1, 2})
    await asyncio.sleep(0.05)
    assert b.stats.dropped == 0


@async_test
async def test_a_bad_result_in_the_leader_is_a_clean_error_in_the_follower() -> None:
    _, leader, follower = await leader_and_follower(MemoryHub())
    use_flow(lambda: object(), leader, key="bad")
    flow = use_flow(lambda: object(), follower, key="bad")
    with pytest.raises((SharedFlowError, TypeError)) as caught:
        await flow.execute()
    assert "TypeError" in str(caught.value) or isinstance(caught.value, TypeError)


@async_test
async def test_sync_functions_work_too() -> None:
    hub = MemoryHub()
    tabs = open_tabs(hub, 3)
    calls = []

    def compute(n: int) -> int:
        calls.append(n)
        return n * n

    flows = [use_flow(compute, tab) for tab in tabs]
    await settle(tabs)
    assert await asyncio.gather(*(f.execute(7) for f in flows)) == [49, 49, 49]
    assert calls == [7]
    assert flows[0].key.endswith("compute")


@async_test
async def test_subscribe_sees_every_status_change() -> None:
    hub, server = MemoryHub(), Server()
    (tab,) = open_tabs(hub, 1)
    flow = use_flow(server.fetch, tab, key="sub")
    seen: list[str] = []
    off = flow.subscribe(lambda f: seen.append(f.status))
    await flow.execute()
    off()
    await flow.execute()
    assert seen == ["loading", "success"]
    assert flow.status == "success" and flow.error is None and flow.data is not None


@async_test
async def test_use_flow_with_an_options_dict_shares_one_member_per_channel() -> None:
    hub = MemoryHub()
    transport = hub.transport()
    options = {"channel": "dict-mesh", "heartbeat": HEARTBEAT, "shareCache": True, "transport": transport}
    one = use_flow(lambda: 1, mesh=options, key="one")
    two = use_flow(lambda: 2, mesh=options, key="two")
    assert one.mesh is two.mesh and one.mesh is not None
    assert one.mesh.config.share_cache is True
    with pytest.raises(ValueError, match="other options"):
        use_flow(lambda: 3, mesh={**options, "heartbeat": 999}, key="three")
    with pytest.raises(ValueError, match="already used"):
        use_flow(lambda: 4, mesh=options, key="one")
    one.mesh.dispose()
    assert await use_flow(lambda: 5, mesh=None, key="local").execute() == 5


@async_test
async def test_dispose_fails_waiting_executes_and_stops_sending() -> None:
    _, leader, follower = await leader_and_follower(MemoryHub())
    use_flow(lambda: asyncio.sleep(10), leader, key="slow")
    flow = use_flow(lambda: asyncio.sleep(10), follower, key="slow")
    waiting = asyncio.ensure_future(flow.execute())
    await asyncio.sleep(0.02)
    follower.dispose()
    with pytest.raises(MeshDisposedError):
        await waiting
    sent = follower.transport.sent
    await asyncio.sleep(3 * HEARTBEAT / 1000)
    assert follower.transport.sent == sent
    with pytest.raises(MeshDisposedError):
        follower.share_result("k", 1)
    leader.dispose()


@async_test
async def test_pagehide_makes_the_leader_hand_over() -> None:
    hub = MemoryHub(locks=False)
    tabs = open_tabs(hub, 3, heartbeat=5000)
    leader = await settle(tabs)
    hub.page(leader).pagehide()
    assert leader.disposed
    await settle(tabs)


@async_test
async def test_a_hidden_leader_keeps_leading_with_throttled_heartbeats() -> None:
    hub = MemoryHub(locks=False)
    tabs = open_tabs(hub, 3, hidden_timeout=1000)
    leader = await settle(tabs)
    hub.page(leader).hide(True)
    await asyncio.sleep(0.02)
    leader._halt()  # its timers stop, as if throttled; it is still there
    await asyncio.sleep(5 * HEARTBEAT / 1000)  # twice the visible silence limit
    assert all(t.leader_id == leader.node_id for t in tabs if t is not leader)


def test_options_are_validated_with_clear_messages() -> None:
    async def main() -> None:
        hub = MemoryHub()
        with pytest.raises(ValueError, match="'strategy' must be one of 'leader-follower', 'peer-to-peer'"):
            FlowMesh("c", transport=hub.transport(), strategy="star")
        with pytest.raises(ValueError, match="'heartbeat' must be > 0"):
            FlowMesh("c", transport=hub.transport(), heartbeat=0)
        with pytest.raises(ValueError, match="unknown mesh option"):
            FlowMesh("c", transport=hub.transport(), heartbeats=10)
        with pytest.raises(ValueError, match="'channel' is required"):
            use_flow(lambda: 1, mesh={"heartbeat": 10})
        with pytest.raises(TypeError, match="'share_cache' must be True or False"):
            FlowMesh("c", transport=hub.transport(), shareCache="yes")
        mesh = FlowMesh("c", transport=hub.transport(), shareErrors=False, staleTime=5)
        assert mesh.config.share_errors is False and mesh.config.stale_time == 5
        mesh.dispose()
        with pytest.raises(RuntimeError, match="needs a transport outside the browser"):
            FlowMesh("c")

    asyncio.run(main())


@async_test
async def test_a_flow_follows_its_key_a_refresh_or_an_outage_elsewhere_reaches_it() -> None:
    hub, server = MemoryHub(), Server()
    tabs = open_tabs(hub, 3, error_backoff=500)
    flows = [use_flow(server.fetch, tab, key="live") for tab in tabs]
    leader = await settle(tabs)
    flows.sort(key=lambda f: f.mesh is not leader)  # flows[0] is the leader's: its calls fail with the original error
    await asyncio.gather(*(flow.execute() for flow in flows))
    renders: list[str] = []
    flows[2].subscribe(lambda f: renders.append(f.status))
    fresh = await flows[0].refresh()  # another tab refreshes: this one re-renders without executing
    await until(lambda: flows[2].data == fresh, what="the refreshed data in a tab that did not execute")
    assert flows[2].source == "mesh" and renders[-1] == "success"
    server.down = True
    with pytest.raises(ConnectionError):
        await flows[0].refresh()
    await until(lambda: flows[2].status == "error", what="the outage in a tab that did not execute")
    assert isinstance(flows[2].error, SharedFlowError) and flows[2].error.error_type == "ConnectionError"
    assert len(server.calls) == 3
    seen: list[SharedFlowError] = []
    off = flows[1].mesh.on_error("live", seen.append)  # type: ignore[union-attr]
    await asyncio.sleep(0.55)
    with pytest.raises(ConnectionError):
        await flows[0].execute()
    await until(lambda: seen, what="on_error in another tab")
    off()
    flows[2].close()


@async_test
async def test_a_page_restored_from_the_back_forward_cache_rejoins_the_mesh() -> None:
    hub, server = MemoryHub(), Server()
    tabs = open_tabs(hub, 3)
    flows = [use_flow(server.fetch, tab, key="bf") for tab in tabs]
    leader = await settle(tabs)
    page = hub.page(leader)
    page.pagehide(persisted=True)  # into the back/forward cache: not disposed
    others = [t for t in tabs if t is not leader]
    await until(lambda: len(leaders(others)) == 1 and all(t.leader_id == leaders(others)[0].node_id for t in others),
                what="a new leader while the old one's page is cached")
    assert not leader.disposed and not leader.is_leader
    page.pageshow()
    await settle(tabs)
    assert not leader.is_leader, "a returning page follows the live leader"
    results = await asyncio.gather(*(f.execute() for f in flows))
    assert len(server.calls) == 1 and all(r == results[0] for r in results)


def test_an_internal_error_is_logged_and_fails_only_its_execute(
    caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    from pyflowmesh.core.sharing import ResultSharing

    def broken(*args: object, **kwargs: object) -> None:
        raise RuntimeError("a bug in publishing")

    async def main() -> None:
        hub = MemoryHub()
        (tab,) = open_tabs(hub, 1)
        flow = use_flow(lambda: 1, tab, key="k")
        monkeypatch.setattr(ResultSharing, "publish", broken)
        with pytest.raises(RuntimeError, match="a bug in publishing"):
            await asyncio.wait_for(flow.execute(), 5)
        monkeypatch.undo()
        assert tab.stats.internal_errors == 1
        assert (await asyncio.wait_for(flow.execute(), 5)) == 1  # the node is still consistent
        tab.dispose()

    with caplog.at_level("ERROR", logger="pyflowmesh"):
        asyncio.run(main())
    reports = [r for r in caplog.records if "internal error" in r.getMessage()]
    assert len(reports) == 1 and reports[0].exc_info is not None


@pytest.mark.parametrize("strategy", ["leader-follower", "peer-to-peer"])
def test_flow_mesh_stays_usable_after_a_listener_and_a_flow_raise_anything(strategy: str) -> None:
    async def main() -> None:
        hub = MemoryHub()
        (tab,) = open_tabs(hub, 1, strategy=strategy)
        tab.on_cache_update("x", lambda data: 1 / 0)

        def system_exit() -> None:
            raise KeyError("weird")

        flow = use_flow(system_exit, tab, key="x")
        with pytest.raises(KeyError):
            await flow.execute()
        tab.share_result("x", 1)
        assert tab.get_cached("x") == 1 and tab.stats.internal_errors == 0

    asyncio.run(main())


@async_test
async def test_a_deadline_that_moves_later_keeps_the_armed_timer_which_fires_early_and_harmlessly() -> None:
    tabs, leader, follower = await leader_and_follower(MemoryHub())
    await asyncio.sleep(0.01)
    armed, armed_at = follower._timer, follower._timer_at
    assert armed is not None and armed_at is not None and armed_at <= follower._node.next_deadline()
    # Each heartbeat moves the follower's silence deadline later: the timer stays (no new JS timer).
    await until(lambda: follower._node.next_deadline() > armed_at, what="a heartbeat moving the deadline later")
    assert follower._timer is armed
    await until(lambda: follower._timer is not armed, what="the early timer to fire")
    # It ticked (harmless when early) and armed a timer for what is due now.
    assert follower._timer_at == follower._node.next_deadline()
    assert settled(tabs) and leaders(tabs) == [leader]


@async_test
async def test_while_hidden_the_timer_follows_the_deadline_from_the_message_that_moved_it() -> None:
    hub = MemoryHub()
    tabs, leader, follower = await leader_and_follower(hub)
    hub.page(follower).hide()
    await asyncio.sleep(0.01)
    armed, armed_at = follower._timer, follower._timer_at
    assert armed is not None and armed_at is not None
    # A heartbeat moves the silence deadline later: re-armed from the message (Chrome starts no
    # chain of timers from it, and throttles chains in pages hidden for long to once a minute).
    await until(lambda: follower._node.next_deadline() > armed_at, what="a heartbeat moving the deadline later")
    assert follower._timer is not armed and follower._timer_at == follower._node.next_deadline()
    assert settled(tabs)
