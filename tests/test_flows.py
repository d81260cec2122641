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
from pyflowmesh.core.wire import PROTOCOL, VERSION
from pyflowmesh.errors import CallTimeoutError, MessageTooLarge
from pyflowmesh.transports.memory import MemoryHub


def post(hub: MemoryHub, **body: Any) -> None:
    """Put a hand-made message of our protocol on the channel, as any script of the origin could."""
    hub.post(json.dumps({"proto": PROTOCOL, "v": VERSION, **body}))


async def ends(awaitable: Any, what: str, limit: float = 10.0) -> Any:
    """Await ``awaitable``; ``limit`` (s) only stops a hang from hanging the suite."""
    task = asyncio.ensure_future(awaitable)
    done, _ = await asyncio.wait({task}, timeout=limit)  # not wait_for: a CallTimeoutError is a TimeoutError
    if not done:
        task.cancel()
        raise AssertionError(f"{what} never ended")
    return task.result()


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
    assert all(not t._node.pending_keys() for t in tabs)


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
    assert all(not t._node.executes.table.by_waiter for t in tabs), "a cancelled waiter was kept"


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
    hub.on_post(lambda channel, data: sizes.append(len(data)))
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
    from pyflowmesh.core.config import MeshConfig
    from pyflowmesh.core.node import MeshNode

    config = MeshConfig.from_options({"channel": "c", "heartbeat": 1000, **options})
    node = MeshNode(node_id, config, wall_clock=clock)
    node.register_flow("f")
    return node


def test_a_result_that_waited_in_a_frozen_tabs_queue_is_as_old_as_it_really_is() -> None:
    from pyflowmesh.core.wire import Result, encode

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
    from pyflowmesh.core.effects import Send, StartCall
    from pyflowmesh.core.wire import Decline, Request, encode

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


# --- found in review: superseded calls, amplification, claims missed, unsendable entries ---------


@async_test
async def test_a_superseded_calls_failure_does_not_fail_executes_that_wait_for_the_new_call() -> None:
    # Leader's call 1 runs; the key is invalidated; a follower executes (the leader starts call 2);
    # call 1 then fails. The follower waits for call 2, not for the call its execute came after.
    hub = MemoryHub()
    tabs = open_tabs(hub, 2)
    gates = [asyncio.Event(), asyncio.Event()]
    calls: list[int] = []

    async def fetch() -> dict[str, int]:
        calls.append(1)
        number = len(calls)
        await gates[number - 1].wait()
        if number == 1:
            raise ConnectionError("the old call failed")
        return {"call": number}

    flows = [use_flow(fetch, tab, key="superseded") for tab in tabs]
    leader = await settle(tabs)
    lead, follow = (flows[0], flows[1]) if tabs[0] is leader else (flows[1], flows[0])
    first = asyncio.ensure_future(lead.execute())
    await until(lambda: len(calls) == 1, what="the leader's first call")
    follow.invalidate()
    await asyncio.sleep(0.01)
    second = asyncio.ensure_future(follow.execute())
    await until(lambda: len(calls) == 2, what="the call for the execute after the invalidation")
    gates[0].set()
    with pytest.raises(ConnectionError):
        await ends(first, "the execute of the superseded call")
    await asyncio.sleep(0.02)
    gates[1].set()
    assert await ends(second, "the execute after the invalidation") == {"call": 2}


def _leading_node(**options: Any) -> Any:
    """A lone node that stood and won (heartbeat 1000 ms)."""
    node = _node("m", _Clock(), **options)
    node.start(0.0)
    node.tick(1000.0)
    node.tick(2000.0)
    assert node.is_leader
    node.take_effects()
    return node


def test_request_and_invalidate_pairs_cannot_make_a_leader_run_unboundedly_many_calls() -> None:
    # MAX_SERVED bounds the keys a leader works on for others, but a call superseded by an
    # Invalidate leaves self.pending and stops counting: each Request + Invalidate pair (two
    # small posts of any script) starts one more concurrent API call.
    from pyflowmesh.core.effects import StartCall
    from pyflowmesh.core.requests import MAX_SERVED
    from pyflowmesh.core.wire import PROTOCOL, VERSION

    node = _leading_node()
    started = 0
    for req in range(MAX_SERVED + 200):
        node.receive(json.dumps({"proto": PROTOCOL, "v": VERSION, "type": "request", "src": "x", "dst": "m",
                                 "req": req, "key": "f", "flow": "f", "args": []}), 2100.0)
        node.receive(json.dumps({"proto": PROTOCOL, "v": VERSION, "type": "invalidate", "src": "x", "key": "f"}),
                     2100.0)
        started += sum(isinstance(e, StartCall) for e in node.take_effects())
    assert started <= MAX_SERVED, f"{started} calls running at once, none of them ended"


@async_test
async def test_a_result_too_large_for_the_channel_is_not_called_again_by_a_later_follower_execute() -> None:
    # The leader caches its own too-large result; a follower's later execute asks it, the leader
    # "serves" it from the cache with a Result that send() refuses, and says nothing else: the
    # follower waits request_timeout, falls back and calls the function again.
    hub = MemoryHub()
    tabs = open_tabs(hub, 2, max_message_bytes=2048)
    calls: list[int] = []

    async def huge() -> str:
        calls.append(1)
        return "z" * 5000

    flows = [use_flow(huge, tab, key="huge-later") for tab in tabs]
    leader = await settle(tabs)
    lead, follow = (flows[0], flows[1]) if tabs[0] is leader else (flows[1], flows[0])
    assert await ends(lead.execute(), "the leader's execute") == "z" * 5000
    await asyncio.sleep(0.02)
    outcome = await ends(asyncio.gather(follow.execute(), return_exceptions=True), "the follower's execute")
    assert len(calls) == 1, f"called {len(calls)} times within stale_time with a healthy leader"
    assert isinstance(outcome[0], SharedFlowError) and outcome[0].error_type == "MessageTooLarge"


def _route_sends(source: Any, targets: list[Any], now: float) -> list[Any]:
    """Deliver the Send effects of ``source`` to ``targets`` at ``now``; return its other effects."""
    from pyflowmesh.core.effects import Send

    others = []
    for effect in source.take_effects():
        if isinstance(effect, Send):
            for target in targets:
                target.receive(effect.data, now)
        else:
            others.append(effect)
    return others


def test_peer_to_peer_a_tab_that_missed_a_claim_and_claims_within_its_window_does_not_call_again() -> None:
    # Tab z claims a key; tab a (it joined just after z's Claim went out, so it never heard it)
    # claims the same key 5 ms later, inside z's claim window. z hears a's lower claim while
    # CLAIMING and answers nothing; z then calls without a word (Claim(running=True) only comes
    # a heartbeat later); a's window ends with no competing claim heard: both call.
    clock = _Clock()
    z = _node("z", clock, strategy="peer-to-peer")
    z.start(0.0)
    z.take_effects()
    z.submit("f", (), 100.0)
    z.take_effects()  # z's Claim: nobody else is on the channel yet
    a = _node("a", clock, strategy="peer-to-peer")
    a.start(101.0)
    _route_sends(a, [z], 101.0)
    a.submit("f", (), 105.0)
    _route_sends(a, [z], 106.0)
    for now in range(106, 400, 2):  # the calls never end: every claim stays live
        for node, other in ((z, a), (a, z)):
            node.tick(float(now))
            _route_sends(node, [other], float(now))
    assert z.stats.calls + a.stats.calls == 1, f"z called {z.stats.calls}, a called {a.stats.calls}"


def test_a_hello_to_a_leader_holding_an_unsendable_entry_and_a_back_off_raises_nothing() -> None:
    # The leader caches its own too-large result, and backs off another key. A joiner's Hello
    # makes it answer with a Sync of both; that is too large, so _send_sync halves it: one
    # entry and one failure give halves ([], []) and ([entry], [failure]), the same Sync again,
    # forever: RecursionError, caught as an internal error. With the default 1 MB limit each
    # level re-encodes the entry: about 3.4 s of CPU per Hello (measured), the event loop blocked.
    from pyflowmesh.core.effects import StartCall
    from pyflowmesh.core.wire import Hello, encode

    node = _leading_node(max_message_bytes=1024)
    node.submit("f", (), 2010.0)
    node.submit("f", (1,), 2010.0)
    big, failing = [e for e in node.take_effects() if isinstance(e, StartCall)]
    node.call_succeeded(big.call_id, "x" * 2000, 2020.0)
    node.call_failed(failing.call_id, ConnectionError("down"), 2020.0)
    node.take_effects()
    node.receive(encode(Hello(src="joiner")), 2030.0)
    assert node.stats.internal_errors == 0, repr(getattr(node, "last_internal_error", None))


@async_test
async def test_without_a_shared_cache_a_fallback_claim_owner_serves_the_tab_that_follows_its_claim() -> None:
    # Leader-follower, share_cache=False: tab b executes before any leader is elected, falls back
    # (request_timeout 20 ms), claims and calls. Tab a executes while b's claim is still live, so
    # it follows the claim and asks b by name; b holds the fresh result but declines
    # ("not-leader": only peer-to-peer producers serve from their cache), so a goes to the
    # leader, which calls again. (Found by a randomised run over MeshNodes, 1 in 80 trials.)
    hub, server = MemoryHub(), Server(delay=0.02)
    tabs = open_tabs(hub, 3, share_cache=False, request_timeout=20)
    flows = [use_flow(server.fetch, tab, key="private") for tab in tabs]
    first = await ends(flows[1].execute(2), "the execute before any leader")
    assert len(server.calls) == 1
    second = await ends(flows[0].execute(2), "the execute that follows b's claim")
    assert len(server.calls) == 1, "b's fresh result was there, and a asked b for it"
    assert second == first


@pytest.mark.parametrize("strategy", ["leader-follower", "peer-to-peer"])
def test_a_flood_of_small_requests_or_claims_does_not_make_a_tab_flood_the_channel(strategy: str) -> None:
    # Issue item 12 was fixed for Hello (a token bucket on Sync); a Request for a cached key
    # (the leader) or a Claim of it (the peer-to-peer producer) is answered with the whole
    # entry every time: 20 posts of ~150 bytes made 20 results of 60 KB each.
    from pyflowmesh.core.effects import Send, StartCall
    from pyflowmesh.core.wire import PROTOCOL, VERSION

    if strategy == "leader-follower":
        node = _leading_node(max_message_bytes=64 * 1024)
    else:
        node = _node("m", _Clock(), strategy="peer-to-peer", max_message_bytes=64 * 1024)
        node.start(0.0)
    node.submit("f", (), 2010.0)
    node.tick(2020.0)  # peer-to-peer: at the end of the claim window (10 ms), the claim's owner calls
    (call,) = [e for e in node.take_effects() if isinstance(e, StartCall)]
    node.call_succeeded(call.call_id, "v" * 60_000, 2020.0)
    node.take_effects()
    for index in range(20):
        ask = ({"type": "request", "dst": "m", "req": index, "key": "f", "flow": "f", "args": []}
               if strategy == "leader-follower" else {"type": "claim", "key": "f", "running": False})
        node.receive(json.dumps({"proto": PROTOCOL, "v": VERSION, "src": f"x{index:02d}", **ask}), 2030.0 + index)
    sent = sum(len(e.data) for e in node.take_effects() if isinstance(e, Send))
    assert sent <= 3 * 64 * 1024, f"20 small posts made {sent} bytes of answers"


def test_hostile_claims_and_failures_with_long_keys_do_not_make_a_tab_hold_a_thousand_messages() -> None:
    # _claims, _backoffs and _attempts are bounded by count (1024 each), not by size: keys (and
    # failure messages) are as long as a message allows. 200 Claims with 1 MB keys held 200 MB
    # in a tab (measured); at MAX_CLAIMS, ~1 GB per structure, in every tab of the channel.
    import tracemalloc

    from pyflowmesh.core.wire import PROTOCOL, VERSION

    limit = 64 * 1024
    node = _node("m", _Clock(), strategy="peer-to-peer", max_message_bytes=limit)
    node.start(0.0)
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        for index in range(300):
            key = f"{index:04d}" + "k" * (limit - 300)
            node.receive(json.dumps({"proto": PROTOCOL, "v": VERSION, "type": "claim", "src": "x", "key": key,
                                     "running": True}), 10.0)
            node.receive(json.dumps({"proto": PROTOCOL, "v": VERSION, "type": "failure", "src": "x", "key": key,
                                     "error_type": "E", "message": "m", "retry_in": 60_000.0, "attempt": 1,
                                     "shared": True}), 10.0)
            node.take_effects()  # as every runtime does after each input
        held = tracemalloc.get_traced_memory()[0] - before
    finally:
        tracemalloc.stop()
    assert node.stats.internal_errors == 0
    assert held <= 64 * limit, f"{held / limit:.0f} messages' worth held after 600 hostile posts"


@pytest.mark.parametrize("share_cache", [True, False])
@async_test
async def test_peer_to_peer_a_renamed_producer_still_serves_what_it_produced(share_cache: bool) -> None:
    # A peer-to-peer tab produced key k as "same"; a second tab opens with node_id "same", so the
    # first renames to "same~xxxxxx". Its entry keeps origin "same": Sync to joiners, claim
    # answers and producer requests all compare entry.origin with the new ID, so it serves
    # nothing it produced and the twin's execute (and, without share_cache, every later one)
    # calls again. The same flow with a joiner of another ID makes one call.
    from pyflowmesh import FlowMesh

    hub, server = MemoryHub(), Server(delay=0.02)
    options: dict[str, Any] = {"heartbeat": HEARTBEAT, "strategy": "peer-to-peer", "share_cache": share_cache}
    first = FlowMesh("test-mesh", transport=hub.transport(), node_id="same", **options)
    (other,) = open_tabs(hub, 1, strategy="peer-to-peer", share_cache=share_cache)
    flows = [use_flow(server.fetch, first, key="k"), use_flow(server.fetch, other, key="k")]
    await asyncio.sleep(0.05)
    produced = await ends(flows[0].execute(), "the first execute")
    await asyncio.sleep(0.05)
    twin = FlowMesh("test-mesh", transport=hub.transport(), node_id="same", **options)
    flows.append(use_flow(server.fetch, twin, key="k"))
    await until(lambda: first.node_id != "same" or twin.node_id != "same", what="the rename")
    await asyncio.sleep(0.05)
    outcomes = [await ends(flows[2].execute(), "the twin's execute"),
                await ends(flows[1].execute(), "the other tab's execute")]
    assert len(server.calls) == 1, f"{len(server.calls)} calls within stale_time, the producer alive"
    assert outcomes == [produced, produced]


@pytest.mark.parametrize("key", ["\ud800", b"k", 5, "k" * (2 << 20)],
                         ids=["lone-surrogate", "bytes", "int", "too-long"])
def test_invalidate_with_a_bad_key_is_a_type_error_of_the_call_not_an_internal_error(key: Any) -> None:
    # share_result checks its key; invalidate does not: a lone surrogate or bytes make send()
    # raise inside the node's guard (counted in internal_errors, the other tabs never told); an
    # int goes out and every other tab drops it (bad-field:key); a key longer than
    # max_message_bytes is dropped as too_large. Each time the caller believes every tab dropped it.
    node = _node("m", _Clock())
    node.start(0.0)
    with pytest.raises(TypeError):
        node.invalidate(key, 10.0)
    assert node.stats.internal_errors == 0 and node.stats.too_large == 0


@pytest.mark.parametrize("role", ["leader", "follower"])
def test_a_flow_key_that_utf8_cannot_carry_is_refused_or_its_execute_ends(role: str) -> None:
    # Flow keys are not checked with is_text (use_flow, FlowMesh.register, MeshNode.register_flow):
    # with key '\ud800x' the leader's call succeeds, _publish's send() raises inside the guard
    # (internal error) before _finish, and the execute never ends; a follower's execute raises
    # UnicodeEncodeError (not TypeError) after its Pending and waiter were stored.
    from pyflowmesh.core.effects import Reject, Resolve, StartCall
    from pyflowmesh.core.wire import Coordinator, encode

    flow = "\ud800x"
    if role == "leader":
        node = _leading_node()
    else:
        node = _node("a", _Clock())
        node.start(0.0)
        node.receive(encode(Coordinator(src="z", term=1, interval=1000.0, hidden=False)), 10.0)
        assert node.leader == "z"
        node.take_effects()
    try:
        node.register_flow(flow)
    except (TypeError, ValueError):
        return  # refused where it was offered
    try:
        waiter = node.submit(flow, (), 2010.0)
    except TypeError:
        assert not node.pending_keys(), "refused, but after a state change"
        return
    outcomes = []
    for now in range(2010, 40_000, 500):
        for effect in node.take_effects():
            if isinstance(effect, StartCall):
                node.call_succeeded(effect.call_id, 1, float(now))
            elif isinstance(effect, (Resolve, Reject)) and effect.waiter == waiter:
                outcomes.append(effect)
        node.tick(float(now))
    assert outcomes, "the execute never ended"
    assert node.stats.internal_errors == 0


@async_test
async def test_a_flow_raising_an_exception_whose_str_raises_still_ends_every_execute() -> None:
    # call_failed -> _send_failure -> str(error) raises inside the node's guard, which has no key
    # to fail: the call was already removed from _calls and pending, so its waiters never get an
    # outcome, in the leader and (after its fallback call fails the same way) in every follower.
    class BrokenStr(Exception):
        def __init__(self, code: int) -> None:  # no super().__init__: a common mistake
            self.code = code

        def __str__(self) -> str:
            return str(self.detail)  # type: ignore[attr-defined]  # AttributeError

    async def boom() -> None:
        raise BrokenStr(5)

    hub = MemoryHub()
    tabs = open_tabs(hub, 2, call_timeout=1000)
    flows = [use_flow(boom, tab, key="broken-str") for tab in tabs]
    await settle(tabs)
    outcomes = await ends(asyncio.gather(*(f.execute() for f in flows), return_exceptions=True), "the executes")
    assert all(isinstance(o, Exception) for o in outcomes)
    assert all(t.stats.internal_errors == 0 for t in tabs)


def test_an_execute_during_a_call_that_began_after_the_invalidation_does_not_call_again() -> None:
    # Peer-to-peer: execute (the tab claims; its call starts when the claim window ends), the key
    # is invalidated inside the window (the Pending is marked invalidated, as it is not CALLING
    # yet), the call starts, and another execute arrives while it runs. The call began after the
    # invalidation, so its result is fresh; but the flag stays on the Pending, the execute goes
    # to `later`, and when the call ends _renew starts a second call for it.
    from pyflowmesh.core.effects import Resolve, StartCall

    node = _node("m", _Clock(), strategy="peer-to-peer")
    node.start(0.0)
    first = node.submit("f", (), 100.0)
    node.invalidate("f", 102.0)
    node.tick(120.0)  # the claim window (10 ms) is over: the call starts
    calls = [e for e in node.take_effects() if isinstance(e, StartCall)]
    assert len(calls) == 1
    second = node.submit("f", (), 130.0)
    node.call_succeeded(calls[0].call_id, {"fresh": True}, 200.0)
    for now in range(200, 400, 5):
        node.tick(float(now))
    effects = node.take_effects()
    resolved = {e.waiter: e.value for e in effects if isinstance(e, Resolve)}
    assert resolved.get(first) == {"fresh": True}
    assert node.stats.calls == 1, "a second call for an execute that came after the first call began"
    assert resolved.get(second) == {"fresh": True}


@async_test
async def test_a_follower_waiting_on_a_call_past_call_timeout_gets_a_call_timeout_error() -> None:
    """The README: every tab waiting on a call given up at ``call_timeout`` gets ``CallTimeoutError``.

    A page that catches ``TimeoutError`` around ``execute`` must catch it in every tab, not
    only in the one whose call ran too long.
    """
    hub = MemoryHub()
    release = asyncio.Event()

    async def hangs() -> str:
        await release.wait()
        return "late"

    tabs = open_tabs(hub, 2, call_timeout=200)
    flows = [use_flow(hangs, tab, key="hangs") for tab in tabs]
    leader = await settle(tabs)
    lead_task = asyncio.ensure_future(flows[tabs.index(leader)].execute())
    await asyncio.sleep(0.01)
    follower_task = asyncio.ensure_future(flows[1 - tabs.index(leader)].execute())
    try:
        lead, follower = await ends(asyncio.gather(lead_task, follower_task, return_exceptions=True), "the executes", 3)
    finally:
        release.set()
        for tab in tabs:
            tab.dispose()
    assert isinstance(lead, CallTimeoutError), lead
    assert isinstance(follower, CallTimeoutError), follower  # today: SharedFlowError("CallTimeoutError: ...")
