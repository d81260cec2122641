"""Who calls a flow and how every waiter gets its outcome (flows.py), tried as an adversary would.

Each test is one item of the hardening issue, phrased as what a user expects, over
MemoryHub with the public API: every execute ends, the function runs once, no tab is
blocked past ``max_error_backoff``, no value is shared by reference.
"""

from __future__ import annotations

import asyncio
import datetime
import json
from typing import Any

import pytest
from support import HEARTBEAT, Server, async_test, leaders, open_tabs, settle, until

from pyflowmesh import SharedFlowError, use_flow
from pyflowmesh.errors import CallTimeoutError, MessageTooLarge
from pyflowmesh.protocol import PROTOCOL, VERSION
from pyflowmesh.testing import MemoryHub


def post(hub: MemoryHub, **body: Any) -> None:
    """Put a hand-made message of our protocol on the channel, as any script of the origin could."""
    hub.post(json.dumps({"proto": PROTOCOL, "v": VERSION, **body}))


async def ends(awaitable: Any, what: str, limit: float = 10.0) -> Any:
    """Await ``awaitable``; ``limit`` (s) only stops a hang from hanging the suite."""
    try:
        return await asyncio.wait_for(awaitable, limit)
    except TimeoutError:
        raise AssertionError(f"{what} never ended") from None


# --- 1. a long outage, and a forged attempt count -------------------------------------------


@async_test
async def test_a_key_failing_eleven_hundred_times_in_a_row_still_ends_every_execute() -> None:
    hub, server = MemoryHub(), Server(delay=0)
    server.down = True
    (tab,) = open_tabs(hub, 1, error_backoff=1, max_error_backoff=1)
    flow = use_flow(server.fetch, tab, key="overnight")
    await settle([tab])
    for _ in range(1100):
        with pytest.raises((ConnectionError, SharedFlowError)):
            await ends(flow.execute(), "an execute during the outage")
        await asyncio.sleep(0.0011)  # past the back-off: the next execute calls again
    assert len(server.calls) > 1025  # past the count where the back-off used to overflow
    server.down = False
    await asyncio.sleep(0.002)
    assert (await ends(flow.execute(), "the execute after the outage"))["call"] == len(server.calls)
    assert tab.stats.internal_errors == 0


@async_test
async def test_a_forged_failure_with_a_huge_attempt_blocks_no_tab_past_the_maximum_back_off() -> None:
    hub, server = MemoryHub(), Server(delay=0)
    tabs = open_tabs(hub, 3, error_backoff=100, max_error_backoff=300)
    flows = [use_flow(server.fetch, tab, key="k") for tab in tabs]
    await settle(tabs)
    post(hub, type="failure", src="forger", key="k", error_type="Boom", message="forged", retry_in=86_400_000,
         attempt=2**53, shared=True)
    await asyncio.sleep(0.01)
    for flow in flows:
        with pytest.raises(SharedFlowError) as raised:
            await flow.execute()
        assert raised.value.retry_in <= 300
    await asyncio.sleep(0.35)
    await ends(asyncio.gather(*(flow.execute() for flow in flows)), "executes after the maximum back-off")
    assert len(server.calls) == 1
    # and the count adopted from the forgery still gives a sendable, bounded next failure
    server.down = True
    tabs[0].invalidate("k")
    await asyncio.sleep(0.01)
    with pytest.raises((ConnectionError, SharedFlowError)):
        await ends(flows[1].execute(), "an execute that fails after the forgery")
    await asyncio.sleep(0.02)
    assert all(t.stats.internal_errors == 0 and t.stats.too_large == 0 for t in tabs)


# --- 3. a flow function raising CancelledError --------------------------------------------------


@async_test
async def test_a_flow_raising_its_own_cancelled_error_fails_the_execute_in_every_tab() -> None:
    async def awaits_a_cancelled_task() -> Any:
        other = asyncio.ensure_future(asyncio.sleep(10))
        other.cancel()
        await other  # raises CancelledError inside the flow

    hub = MemoryHub()
    tabs = open_tabs(hub, 3)
    flows = [use_flow(awaits_a_cancelled_task, tab, key="cancels") for tab in tabs]
    await settle(tabs)
    outcomes = await ends(asyncio.gather(*(f.execute() for f in flows), return_exceptions=True), "the executes")
    assert all(isinstance(o, BaseException) for o in outcomes), outcomes
    assert [f.status for f in flows] == ["error"] * 3
    # the key is not stuck "calling": once the back-off ends, it is called again
    await asyncio.sleep(1.1)
    outcome = await ends(asyncio.gather(flows[0].execute(), return_exceptions=True), "a later execute")
    assert isinstance(outcome[0], BaseException)
    assert sum(t.stats.calls for t in tabs) == 2


# --- never returns: call_timeout ends the execute everywhere -----------------------------------------


@async_test
async def test_a_call_that_never_returns_ends_every_execute_at_call_timeout() -> None:
    started: list[int] = []

    async def hangs() -> Any:
        started.append(1)
        await asyncio.Event().wait()

    hub = MemoryHub()
    tabs = open_tabs(hub, 3, call_timeout=300)
    flows = [use_flow(hangs, tab, key="hangs") for tab in tabs]
    await settle(tabs)
    outcomes = await ends(asyncio.gather(*(f.execute() for f in flows), return_exceptions=True), "the executes", 5)
    assert len(started) == 1
    assert all(isinstance(o, (CallTimeoutError, SharedFlowError)) for o in outcomes), outcomes
    assert any(isinstance(o, CallTimeoutError) for o in outcomes)
    assert isinstance(outcomes[0], TimeoutError) or "CallTimeoutError" in str(outcomes[0])


# --- 4. an argument too large for the channel ---------------------------------------------------


@async_test
async def test_an_argument_too_large_for_the_channel_is_a_type_error_before_anything_happens() -> None:
    hub, server = MemoryHub(), Server()
    tabs = open_tabs(hub, 2, max_message_bytes=2048)
    flows = [use_flow(server.fetch, tab, key="big") for tab in tabs]
    await settle(tabs)
    for flow in flows:
        with pytest.raises(TypeError, match="max_message_bytes"):
            await flow.execute("x" * 3000)
        with pytest.raises(MessageTooLarge):
            await flow.execute(["y"] * 1000)
    await asyncio.sleep(1.5 * HEARTBEAT / 1000 * 10)  # well past every fallback deadline
    assert server.calls == [], "a failed execute still called the function, for nobody"
    assert all(not t._node.flows.pending for t in tabs)


@async_test
async def test_a_result_too_large_for_the_channel_reaches_the_leader_and_fails_cleanly_elsewhere() -> None:
    hub = MemoryHub()
    tabs = open_tabs(hub, 3, max_message_bytes=2048)
    calls: list[int] = []

    async def huge() -> str:
        calls.append(1)
        return "z" * 5000

    flows = [use_flow(huge, tab, key="huge") for tab in tabs]
    leader = await settle(tabs)
    outcomes = await ends(asyncio.gather(*(f.execute() for f in flows), return_exceptions=True), "the executes")
    assert len(calls) == 1
    for tab, outcome in zip(tabs, outcomes, strict=True):
        if tab is leader:
            assert outcome == "z" * 5000
        else:
            assert isinstance(outcome, SharedFlowError) and outcome.error_type == "MessageTooLarge"


# --- 5. a caller that cancels ------------------------------------------------------------------


@async_test
async def test_a_cancelled_execute_restores_the_status_and_mesh_data_still_reaches_the_flow() -> None:
    hub, server = MemoryHub(), Server(delay=0.2)
    tabs = open_tabs(hub, 2)
    flows = [use_flow(server.fetch, tab, key="slow") for tab in tabs]
    leader = await settle(tabs)
    follower = flows[1] if tabs[0] is leader else flows[0]
    other = flows[0] if follower is flows[1] else flows[1]
    with pytest.raises(asyncio.TimeoutError):
        await asyncio.wait_for(follower.execute(), 0.05)
    assert follower.status == "idle"
    # the shared call goes on; another tab's result reaches the cancelled flow's data
    data = await ends(other.execute(), "the other tab's execute")
    await until(lambda: follower.data == data, what="the mesh data in the cancelled flow")
    assert follower.status == "success" and len(server.calls) == 1
    assert all(not t._node.flows._waiting for t in tabs), "a cancelled waiter was kept"


@async_test
async def test_cancelling_every_waiter_of_a_follower_forgets_the_key_and_the_next_execute_works() -> None:
    hub, server = MemoryHub(), Server(delay=0.1)
    tabs = open_tabs(hub, 2)
    flows = [use_flow(server.fetch, tab, key="c") for tab in tabs]
    leader = await settle(tabs)
    follower = next(f for f, t in zip(flows, tabs, strict=True) if t is not leader)
    task = asyncio.ensure_future(follower.execute(7))
    await asyncio.sleep(0.01)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert (await ends(follower.execute(7), "the next execute"))["args"] == [7]
    assert len(server.calls) == 1


# --- 6, 7. peer-to-peer claims -------------------------------------------------------------


@async_test
async def test_peer_to_peer_a_claim_made_just_after_another_tabs_claim_reply_is_answered() -> None:
    hub, server = MemoryHub(), Server(delay=0.2)
    tabs = open_tabs(hub, 2, strategy="peer-to-peer")
    flows = [use_flow(server.fetch, tab, key="p2p") for tab in tabs]
    await asyncio.sleep(0.02)
    first = asyncio.ensure_future(flows[0].execute())
    await asyncio.sleep(0.03)  # tab 0 claimed and runs the call
    second = asyncio.ensure_future(flows[1].execute())  # tab 1 claims: tab 0 answers "running"
    await asyncio.sleep(0.005)
    (joiner,) = open_tabs(hub, 1, strategy="peer-to-peer")  # joins after that answer
    late = use_flow(server.fetch, joiner, key="p2p")
    await asyncio.sleep(0.01)
    third = asyncio.ensure_future(late.execute())
    results = await ends(asyncio.gather(first, second, third), "the executes")
    assert len(server.calls) == 1, server.calls
    assert results[0] == results[1] == results[2]


@async_test
async def test_peer_to_peer_without_a_shared_cache_claim_followers_still_get_the_result() -> None:
    hub, server = MemoryHub(), Server(delay=0.1)
    tabs = open_tabs(hub, 4, strategy="peer-to-peer", share_cache=False)
    flows = [use_flow(server.fetch, tab, key="private") for tab in tabs]
    await asyncio.sleep(0.02)
    first = asyncio.ensure_future(flows[0].execute())
    await asyncio.sleep(0.03)
    rest = await ends(asyncio.gather(*(f.execute() for f in flows[1:])), "the followers' executes")
    assert len(server.calls) == 1
    assert all(r == rest[0] for r in rest) and (await first) == rest[0]
    assert all(t.get_cached("private") is None for t in tabs[1:]), "share_cache=False: nothing cached elsewhere"


# --- 8. values are copies -------------------------------------------------------------------


@async_test
async def test_mutating_an_executes_result_changes_neither_the_cache_nor_other_tabs() -> None:
    hub, server = MemoryHub(), Server()
    tabs = open_tabs(hub, 3)
    flows = [use_flow(server.fetch, tab, key="mut") for tab in tabs]
    leader = await settle(tabs)
    lead = flows[tabs.index(leader)]
    data = await lead.execute(1)
    data["args"].append("mutated")
    data["when"] = datetime.datetime.now()  # not JSON: the cache must not care
    again = await lead.execute(1)
    assert again == {"args": [1], "call": 1}
    others = await ends(asyncio.gather(*(f.execute(1) for f in flows if f is not lead)), "followers")
    assert all(o == {"args": [1], "call": 1} for o in others)
    (late,) = open_tabs(hub, 1)
    late_flow = use_flow(server.fetch, late, key="mut")
    await until(lambda: late.get_cached("mut[1]") is not None, what="the joiner's sync")
    assert (await late_flow.execute(1)) == {"args": [1], "call": 1}
    cached = late.get_cached("mut[1]")
    cached["args"].clear()
    assert late.get_cached("mut[1]") == {"args": [1], "call": 1}
    assert len(server.calls) == 1


@async_test
async def test_a_flow_mutating_its_arguments_changes_nothing_the_mesh_sends() -> None:
    hub, calls = MemoryHub(), []

    async def greedy(items: list[int]) -> int:
        calls.append(list(items))
        items.append(99)  # mutates what it was given
        await asyncio.sleep(0.05)
        return len(calls)

    tabs = open_tabs(hub, 3)
    flows = [use_flow(greedy, tab, key="greedy") for tab in tabs]
    await settle(tabs)
    results = await ends(asyncio.gather(*(f.execute([1, 2]) for f in flows)), "the executes")
    assert calls == [[1, 2]] and results == [1, 1, 1]


# --- 9, 10, 12. one message must not stall or split the mesh --------------------------------------


@async_test
async def test_a_flood_of_hellos_does_not_make_the_leader_flood_the_channel() -> None:
    hub, server = MemoryHub(), Server()
    tabs = open_tabs(hub, 2, max_message_bytes=64 * 1024)
    flows = [use_flow(server.fetch, tab, key="fill") for tab in tabs]
    leader = await settle(tabs)
    lead = flows[tabs.index(leader)]
    for index in range(30):  # a cache of ~30 KB
        leader.share_result(f"entry-{index}", "v" * 1000)
    await lead.execute()
    sizes: list[int] = []
    original = hub._broadcast

    def counting(sender: Any, data: str) -> None:
        sizes.append(len(data))
        original(sender, data)

    hub._broadcast = counting  # type: ignore[method-assign]
    for index in range(20):
        post(hub, type="hello", src=f"joiner-{index:02d}")
    await asyncio.sleep(0.05)
    assert sum(sizes) <= 3 * 64 * 1024, f"20 Hellos made {sum(sizes)} bytes of Sync"
    assert leader.stats.syncs_skipped > 0


# --- smaller items -------------------------------------------------------------------------


@async_test
async def test_refresh_during_an_in_flight_call_returns_a_newer_value() -> None:
    hub, started = MemoryHub(), []

    async def versioned() -> int:
        started.append(1)
        number = len(started)  # the server's state when the call began
        await asyncio.sleep(0.1)
        return number

    tabs = open_tabs(hub, 2)
    flows = [use_flow(versioned, tab, key="r") for tab in tabs]
    leader = await settle(tabs)
    for flow in (flows[tabs.index(leader)], flows[1 - tabs.index(leader)]):
        before = len(started)
        for tab in tabs:
            tab.invalidate()
        first = asyncio.ensure_future(flow.execute())
        await asyncio.sleep(0.03)  # the call is in flight
        fresh = await ends(flow.refresh(), "the refresh")
        old = await first
        assert fresh > old, "refresh returned the in-flight (older) value"
        assert len(started) - before == 2
        assert all(t.get_cached("r") in (None, fresh) for t in tabs)


@async_test
async def test_a_flow_keyed_like_another_flow_with_an_argument_keeps_its_own_cache_entry() -> None:
    hub = MemoryHub()
    (tab,) = open_tabs(hub, 1)
    user = use_flow(lambda uid: {"user": uid}, tab, key="user")
    odd = use_flow(lambda: {"odd": True}, tab, key="user[1]")
    assert (await user.execute(1)) == {"user": 1}
    assert (await odd.execute()) == {"odd": True}
    assert (await user.execute(1)) == {"user": 1}


@async_test
async def test_call_timeout_bounds_a_followers_wait_while_the_leaders_call_runs() -> None:
    hub = MemoryHub()
    release = asyncio.Event()

    async def slow() -> str:
        await release.wait()
        return "late"

    tabs = open_tabs(hub, 2, call_timeout=200)
    flows = [use_flow(slow, tab, key="slow") for tab in tabs]
    leader = await settle(tabs)
    follower = flows[1 - tabs.index(leader)]
    lead_task = asyncio.ensure_future(flows[tabs.index(leader)].execute())
    await asyncio.sleep(0.01)
    with pytest.raises((CallTimeoutError, SharedFlowError)):
        await ends(follower.execute(), "the follower's execute", limit=2)
    with pytest.raises(CallTimeoutError):
        await lead_task
    release.set()


@async_test
async def test_no_input_leaves_a_waiter_without_an_outcome_when_the_leader_is_a_ghost() -> None:
    """A Coordinator from an ID that is no tab, with an absurd interval, is outlived."""
    hub, server = MemoryHub(locks=False), Server(delay=0)
    tabs = open_tabs(hub, 2)
    flows = [use_flow(server.fetch, tab, key="g") for tab in tabs]
    await settle(tabs)
    post(hub, type="coordinator", src="~ghost", term=10**15, interval=600_000, hidden=False)
    await asyncio.sleep(0.01)
    assert all(t.leader_id == "~ghost" for t in tabs)
    result = await ends(flows[0].execute(), "an execute while a ghost leads", limit=5)
    assert result["call"] == 1
    await until(lambda: len(leaders(tabs)) == 1, limit=5, what="a real leader after the ghost")


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


# --- the wall clock: transit counts --------------------------------------------------------------


class _Clock:
    def __init__(self) -> None:
        self.wall = 1_700_000_000_000.0

    def __call__(self) -> float:
        return self.wall


def _node(node_id: str, clock: _Clock, **options: Any) -> Any:
    from pyflowmesh.config import MeshConfig
    from pyflowmesh.node import MeshNode

    config = MeshConfig.from_options({"channel": "c", "heartbeat": 1000, **options})
    node = MeshNode(node_id, config, wall_clock=clock)
    node.register_flow("f")
    return node


def test_a_result_that_waited_in_a_frozen_tabs_queue_is_as_old_as_it_really_is() -> None:
    from pyflowmesh.protocol import Result, encode

    clock = _Clock()
    node = _node("b", clock, stale_time=5000)
    node.start(0.0)
    sent = clock.wall
    message = encode(Result(src="a", key="f", value=1, version=1, origin="a", age=1000.0, shared=True, sent=sent))
    clock.wall += 4500  # it waited 4.5 s in this tab's queue (the tab was frozen)
    node.receive(message, 10.0)
    assert node.get_cached("f", 10.0) is None, "1 s old when sent + 4.5 s in transit is past stale_time"
    clock.wall = sent - 60_000  # a clock stepped back: transit counts as 0, never negative
    node.receive(encode(Result(src="a", key="f", value=2, version=2, origin="a", age=0.0, shared=True, sent=sent)),
                 20.0)
    entry = node.cache.get("f", 20.0)
    assert entry is not None and entry.value == 2 and entry.age(20.0) == 0.0


def test_a_leader_declines_a_request_its_sender_stopped_waiting_for() -> None:
    from pyflowmesh.effects import Send, StartCall
    from pyflowmesh.protocol import Decline, Request, encode

    clock = _Clock()
    leader = _node("z", clock)
    leader.start(0.0)
    leader.tick(1000.0)  # no answer to its Hello: it stands
    leader.tick(2000.0)  # and wins
    assert leader.is_leader
    leader.take_effects()
    stalled = Request(src="a", dst="z", req=1, key="f", flow="f", args=[], sent=clock.wall - 5000)
    leader.receive(encode(stalled), 2100.0)
    effects = leader.take_effects()
    declines = [e.message for e in effects if isinstance(e, Send) and isinstance(e.message, Decline)]
    assert [d.reason for d in declines] == ["late"]
    assert not any(isinstance(e, StartCall) for e in effects)
    fresh = Request(src="a", dst="z", req=2, key="f", flow="f", args=[], sent=clock.wall - 10)
    leader.receive(encode(fresh), 2200.0)
    assert any(isinstance(e, StartCall) for e in leader.take_effects())


@async_test
async def test_peer_to_peer_without_a_shared_cache_the_producer_serves_later_executes_from_its_cache() -> None:
    # Simulator seed 49 (peer-to-peer, share_cache=False): a tab executing just after the
    # owner's call ended asked the owner, was declined ("not-leader") and called again.
    hub, server = MemoryHub(), Server(delay=0.02)
    tabs = open_tabs(hub, 3, strategy="peer-to-peer", share_cache=False)
    flows = [use_flow(server.fetch, tab, key="own") for tab in tabs]
    await asyncio.sleep(0.02)
    first = await flows[0].execute(5)
    second = await asyncio.gather(flows[1].execute(5), flows[2].execute(5))
    assert len(server.calls) == 1
    assert second == [first, first]
