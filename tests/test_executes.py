"""executes: every execute ends, runs once, and gets a value nobody else can change.

Tried as an adversary would, mostly over MemoryHub with the public API: flows that raise
anything, never return or mutate what they got; callers that cancel; invalidations while
a call runs; keys and arguments the channel cannot carry. Regression tests name the seed
or the issue item that found them."""

from __future__ import annotations

import asyncio
import datetime
from typing import Any

import pytest
from support import (
    HEARTBEAT,
    Server,
    WallClock,
    async_test,
    clocked_node,
    ends,
    leader_with_an_entry,
    leaders,
    leading_node,
    open_tabs,
    post,
    settle,
    until,
)

from pyflowmesh import FlowMesh, SharedFlowError, use_flow
from pyflowmesh.core.config import MeshConfig
from pyflowmesh.core.node import MeshNode
from pyflowmesh.errors import CallTimeoutError, MessageTooLarge
from pyflowmesh.transports.memory import MemoryHub

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
    # nobody waits on the leader's call any more (the follower withdrew): it is cancelled
    await until(lambda: leader.stats.calls_cancelled == 1, what="the call nobody waits on cancelled")
    # another tab's result still reaches the cancelled flow's data
    data = await ends(other.execute(), "the other tab's execute")
    await until(lambda: follower.data == data, what="the mesh data in the cancelled flow")
    assert follower.status == "success" and len(server.calls) == 2
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
    # the follower withdrew its request: the leader's call nobody waits on is cancelled
    await until(lambda: next(t for t in tabs if t is leader).stats.calls_cancelled == 1, what="the call cancelled")
    assert (await ends(follower.execute(7), "the next execute"))["args"] == [7]
    assert len(server.calls) == 2


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
    post(hub, type="coordinator", src="~ghost", term=10**15, interval=600_000, hidden=False, locks=False, members=[])
    await asyncio.sleep(0.01)
    assert all(t.leader_id == "~ghost" for t in tabs)
    result = await ends(flows[0].execute(), "an execute while a ghost leads", limit=5)
    assert result["call"] == 1
    await until(lambda: len(leaders(tabs)) == 1, limit=5, what="a real leader after the ghost")


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


@async_test
async def test_a_call_stopped_by_a_back_off_tells_every_tab_that_back_off_as_it_stands() -> None:
    # Simulator seed 27271, peer-to-peer: a call superseded by an invalidation fails, which backs
    # off only its own tab (its failure goes to its own waiters); the newer call's next attempt
    # is then stopped by that back-off. The tabs must hear the back-off, or another tab calls
    # the failing key at once.
    hub = MemoryHub()
    tabs = open_tabs(hub, 2, strategy="peer-to-peer")
    await asyncio.sleep(0.05)
    gate = asyncio.Event()
    calls: list[str] = []

    def fetcher(tab: FlowMesh) -> Any:
        async def fetch() -> dict[str, int]:
            calls.append(tab.node_id)
            number = len(calls)
            if number == 1:
                await gate.wait()  # the call that the invalidation supersedes
            raise ConnectionError(f"the server is down (call {number})")
        return fetch

    caller, other = tabs
    retry = {"max_attempts": 3, "delay": 200, "should_retry": lambda error, attempt: "(call 1)" not in str(error)}
    flow = use_flow(fetcher(caller), caller, key="down", retry=retry)
    old = asyncio.ensure_future(flow.execute())
    await until(lambda: len(calls) == 1, what="the first call")
    flow.invalidate()
    newer = asyncio.ensure_future(flow.execute())
    await until(lambda: len(calls) == 2, what="the newer call's first attempt")
    await asyncio.sleep(0.02)  # it failed; its next attempt is due in 200 ms
    gate.set()  # the superseded call fails now (for good): this tab backs off
    for execute in (old, newer):
        with pytest.raises((ConnectionError, SharedFlowError)):
            await ends(execute, "an execute of the failing key")
    assert len(calls) == 2  # the newer call's retry was stopped by the back-off
    with pytest.raises(SharedFlowError):
        await ends(asyncio.ensure_future(use_flow(fetcher(other), other, key="down").execute()),
                   "the other tab's execute")
    assert len(calls) == 2  # the other tab heard the back-off and called nothing
    for tab in tabs:
        tab.dispose()


@pytest.mark.parametrize("key", ["\ud800", b"k", 5, "k" * (2 << 20)],
                         ids=["lone-surrogate", "bytes", "int", "too-long"])
def test_invalidate_with_a_bad_key_is_a_type_error_of_the_call_not_an_internal_error(key: Any) -> None:
    # share_result checks its key; invalidate does not: a lone surrogate or bytes make send()
    # raise inside the node's guard (counted in internal_errors, the other tabs never told); an
    # int goes out and every other tab drops it (bad-field:key); a key longer than
    # max_message_bytes is dropped as too_large. Each time the caller believes every tab dropped it.
    node = clocked_node("m", WallClock())
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
        node = leading_node()
    else:
        node = clocked_node("a", WallClock())
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

    node = clocked_node("m", WallClock(), strategy="peer-to-peer")
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


# --- A lone surrogate made a tab's reply unsendable ------------------------------------------
# Found while writing the property tests: JSON text may carry "\ud800", which json.loads turns
# into a str that UTF-8 cannot encode. decode accepted it; a leader answering that Hello (with
# a Sync to its src) or that Request (with a Decline) raised UnicodeEncodeError from
# MeshNode.send, out of receive(). Locally, execute() with such an argument raised it from
# deep inside send, after registering the execute, which was then left pending forever.


def test_execute_with_a_lone_surrogate_is_a_type_error_and_leaves_nothing_pending() -> None:
    node = MeshNode("p", MeshConfig.from_options(channel="x", strategy="peer-to-peer"))
    node.register_flow("f")
    node.start(0.0)
    with pytest.raises(TypeError, match="lone surrogate"):
        node.submit("f", ("\ud800",), 10.0)
    with pytest.raises(TypeError, match="lone surrogate"):
        node.share_result("k", {"a": "\udfff"}, 10.0)
    assert node.pending_keys() == []


# --- A failure whose message UTF-8 cannot carry left its executes hanging ----------------------
# Found next to the previous one: call_failed() shares str(error) in a Failure (and in the
# back-off a Sync later carries). An error message with a lone surrogate (a file name decoded
# with surrogateescape, say) made send raise UnicodeEncodeError out of call_failed, after the
# pending flow was dropped but before its waiters were rejected: those executes never ended.


def test_a_failure_with_a_lone_surrogate_in_its_message_still_rejects_every_waiter() -> None:
    node = leader_with_an_entry()
    waiter = node.submit("f", (), 400.0)
    call = next(e for e in node.take_effects() if type(e).__name__ == "StartCall")
    name = b"report-\xff.csv".decode("utf-8", "surrogateescape")
    error = FileNotFoundError(f"no such file: {name}")
    node.call_failed(call.call_id, error, 500.0)  # raised UnicodeEncodeError
    effects = node.take_effects()
    assert [(type(e).__name__, e.waiter, e.error) for e in effects if type(e).__name__ == "Reject"] == [
        ("Reject", waiter, error)]
    failure = next(e.message for e in effects if type(e).__name__ == "Send" and e.message.TYPE == "failure")
    assert failure.message == "no such file: report-\\udcff.csv"
    # Its Sync has the back-off.
    node.receive(r'{"proto":"pyflowmesh","v":2,"type":"hello","src":"joiner","locks":false}', 600.0)
    assert any(type(e).__name__ == "Send" and e.message.TYPE == "sync" for e in node.take_effects())


# --- invalidating whole flows (mutations) --------------------------------------------------------


def _three_tabs() -> tuple[Any, MeshNode, MeshNode, MeshNode]:
    """Three tabs of flow ``f`` sharing a wall clock: the leader (holding ``f[1]``), a follower, a mutating tab."""
    from support import WallClock, clocked_node, route_sends

    from pyflowmesh.core.effects import Resolve, StartCall

    clock = WallClock()
    leader, follower, mutator = (clocked_node(name, clock) for name in ("l", "f", "m"))
    nodes = [leader, follower, mutator]
    for node in nodes:
        node.start(0.0)
    for now in (1000.0, 2000.0, 3000.0):
        for node in nodes:
            node.tick(now)
        for node in nodes:
            route_sends(node, [n for n in nodes if n is not node], now)
    assert leader.is_leader or follower.is_leader or mutator.is_leader
    leader_node = next(n for n in nodes if n.is_leader)
    others = [n for n in nodes if n is not leader_node]
    waiter = leader_node.submit("f", (1,), 3100.0)
    call = next(e for e in leader_node.take_effects() if isinstance(e, StartCall))
    clock.wall += 10
    leader_node.call_succeeded(call.call_id, {"v": "old"}, 3110.0)
    resolved = route_sends(leader_node, others, 3110.0)
    assert any(isinstance(e, Resolve) and e.waiter == waiter for e in resolved)
    return clock, leader_node, others[0], others[1]


def test_a_refetch_that_reaches_the_leader_before_the_invalidation_is_not_served_the_old_entry() -> None:
    from support import route_sends

    from pyflowmesh.core.effects import FlowsInvalidated, Resolve, Send, StartCall
    from pyflowmesh.core.wire import Invalidate, Request, decode

    clock, leader, follower, mutator = _three_tabs()
    assert follower.get_cached("f[1]", 3200.0) == {"v": "old"}
    clock.wall += 100
    mutator.invalidate_flows(["f"], 3300.0)
    sent = [e for e in mutator.take_effects()]
    invalidation = next(e for e in sent if isinstance(e, Send))
    assert decode(invalidation.data) == Invalidate(src=mutator.node_id, key=None, flows=["f"], at=clock.wall)
    assert FlowsInvalidated(("f",)) in sent  # the mutating tab refetches too
    follower.receive(invalidation.data, 3301.0)  # the follower hears it first ...
    assert FlowsInvalidated(("f",)) in follower.take_effects()
    assert follower.get_cached("f[1]", 3301.0) is None
    waiter = follower.submit("f", (1,), 3302.0)  # ... and refetches what it shows
    request = next(e for e in follower.take_effects() if isinstance(e, Send))
    assert decode(request.data).after == clock.wall  # type: ignore[union-attr]
    assert isinstance(decode(request.data), Request)
    clock.wall += 5
    leader.receive(request.data, 3305.0)  # ... and the leader hears the request before the invalidation
    effects = leader.take_effects()
    calls = [e for e in effects if isinstance(e, StartCall)]
    assert len(calls) == 1, "the old entry must not answer a request that follows the invalidation"
    assert FlowsInvalidated(("f",)) in effects  # the leader's own flows refetch too
    assert leader.get_cached("f[1]", 3305.0) is None
    leader.receive(invalidation.data, 3306.0)  # the invalidation arrives late: applied already
    assert not [e for e in leader.take_effects() if isinstance(e, FlowsInvalidated)]
    mutator_waiter = mutator.submit("f", (1,), 3307.0)  # the mutating tab's refetch joins the same call
    for effect in mutator.take_effects():
        if isinstance(effect, Send):
            leader.receive(effect.data, 3308.0)
    assert not [e for e in leader.take_effects() if isinstance(e, StartCall)]
    clock.wall += 20
    leader.call_succeeded(calls[0].call_id, {"v": "new"}, 3320.0)  # not superseded by the late invalidation
    assert leader.get_cached("f[1]", 3320.0) == {"v": "new"}
    route_sends(leader, [follower, mutator], 3321.0)
    assert Resolve(waiter, '{"v":"new"}', "mesh") in follower.take_effects()
    assert Resolve(mutator_waiter, '{"v":"new"}', "mesh") in mutator.take_effects()


def test_a_call_that_began_after_the_mutation_but_before_its_tab_heard_of_it_is_the_refetch() -> None:
    from pyflowmesh.core.effects import FlowsInvalidated, Resolve, Send, StartCall

    clock, leader, follower, mutator = _three_tabs()
    clock.wall += 100
    mutator.invalidate_flows(["f"], 3300.0)
    invalidation = next(e for e in mutator.take_effects() if isinstance(e, Send))
    clock.wall += 5
    first = leader.submit("f", (2,), 3305.0)  # the leader calls after the save, not knowing of it yet
    (call,) = [e for e in leader.take_effects() if isinstance(e, StartCall)]
    leader.receive(invalidation.data, 3306.0)
    assert FlowsInvalidated(("f",)) in leader.take_effects()
    refetch = leader.submit("f", (2,), 3307.0)  # what the leader's page shows of f is fetched again...
    assert not [e for e in leader.take_effects() if isinstance(e, StartCall)]  # ...by the call already running
    clock.wall += 20
    leader.call_succeeded(call.call_id, {"v": "new"}, 3320.0)
    assert leader.get_cached("f[2]", 3320.0) == {"v": "new"}
    resolved = {e.waiter for e in leader.take_effects() if isinstance(e, Resolve)}
    assert resolved == {first, refetch} and leader.stats.calls == 2  # f[1] before, f[2] once


def test_a_tab_that_hears_of_a_mutation_late_keeps_the_entry_of_a_call_that_began_after_it() -> None:
    # Simulator seed 5166: the leader had not heard of a mutation when it called f[2] and cached
    # the new data; a request that follows the mutation (after=) makes it apply the invalidation,
    # which must drop only what predates it, or the refetch calls the server a second time.
    from support import route_sends

    from pyflowmesh.core.effects import Resolve, Send, StartCall

    clock, leader, follower, mutator = _three_tabs()
    clock.wall += 100
    mutator.invalidate_flows(["f"], 3300.0)
    route_sends(mutator, [follower], 3301.0)  # the leader misses the Invalidate
    clock.wall += 5
    mine = leader.submit("f", (2,), 3305.0)
    (call,) = [e for e in leader.take_effects() if isinstance(e, StartCall)]
    clock.wall += 10
    leader.call_succeeded(call.call_id, {"v": "new"}, 3315.0)
    assert Resolve(mine, '{"v":"new"}', "call") in leader.take_effects()
    waiter = follower.submit("f", (2,), 3316.0)
    request = next(e for e in follower.take_effects() if isinstance(e, Send))
    leader.receive(request.data, 3317.0)  # (its Result broadcast has not reached the follower yet)
    answer = leader.take_effects()
    assert not [e for e in answer if isinstance(e, StartCall)]
    assert leader.get_cached("f[2]", 3317.0) == {"v": "new"}
    assert leader.get_cached("f[1]", 3317.0) is None  # what predates the mutation is gone
    for effect in answer:
        if isinstance(effect, Send):
            follower.receive(effect.data, 3318.0)
    assert Resolve(waiter, '{"v":"new"}', "mesh") in follower.take_effects()
    assert leader.stats.calls == 2  # f[1] before the mutation, f[2] once


def _refetching_after_a_mutation() -> tuple[MeshNode, MeshNode, float, int]:
    """The leader, a follower that heard of a mutation of flow ``f`` at ``at`` (the leader did
    not) and refetches ``f[1]``: its ``waiter``."""
    from support import route_sends

    clock, leader, follower, mutator = _three_tabs()
    clock.wall += 100
    at = clock.wall
    mutator.invalidate_flows(["f"], 3300.0)
    route_sends(mutator, [follower], 3301.0)
    waiter = follower.submit("f", (1,), 3302.0)
    follower.take_effects()
    return leader, follower, at, waiter


def test_a_failure_of_a_call_that_began_before_the_invalidation_does_not_fail_a_refetch() -> None:
    from pyflowmesh.core.effects import Reject, Resolve
    from pyflowmesh.core.wire import Failure, Result, encode

    leader, follower, at, waiter = _refetching_after_a_mutation()
    src = leader.node_id
    older = Failure(src=src, key="f[1]", error_type="ServerDown", message="down", retry_in=500.0, attempt=1,
                    shared=True, started=at - 1)  # a call the leader began before it heard of the mutation
    follower.receive(encode(older), 3303.0)
    assert not [e for e in follower.take_effects() if isinstance(e, Reject)]  # it waits for the newer call
    fresh = Result(src=src, key="f[1]", value={"v": "new"}, version=2 * 10**12, origin=src, age=0.0,
                   shared=True, started=at + 1)
    follower.receive(encode(fresh), 3304.0)
    assert Resolve(waiter, '{"v":"new"}', "mesh") in follower.take_effects()
    later = follower.submit("f", (3,), 3305.0)
    follower.take_effects()
    newer = Failure(src=src, key="f[3]", error_type="ServerDown", message="down", retry_in=500.0, attempt=1,
                    shared=True, started=at + 2)
    follower.receive(encode(newer), 3306.0)
    (rejected,) = [e for e in follower.take_effects() if isinstance(e, Reject)]
    assert rejected.waiter == later


def test_a_result_of_a_call_that_began_before_the_invalidation_is_neither_cached_nor_taken_by_a_refetch() -> None:
    from pyflowmesh.core.effects import Resolve
    from pyflowmesh.core.wire import Result, encode

    leader, follower, at, waiter = _refetching_after_a_mutation()
    src = origin = leader.node_id
    stale = Result(src=src, key="f[1]", value={"v": "stale"}, version=2 * 10**12, origin=origin, age=0.0,
                   shared=True, started=at - 1)  # a call the leader began before it heard of the mutation
    follower.receive(encode(stale), 3303.0)
    assert follower.get_cached("f[1]", 3303.0) is None
    assert not [e for e in follower.take_effects() if isinstance(e, Resolve)]
    unknown = Result(src=src, key="f[1]", value={"v": "?"}, version=2 * 10**12 + 1, origin=origin, age=0.0,
                     shared=True)
    follower.receive(encode(unknown), 3304.0)  # when its call began is unknown: not taken either
    assert follower.get_cached("f[1]", 3304.0) is None
    fresh = Result(src=src, key="f[1]", value={"v": "new"}, version=2 * 10**12 + 2, origin=origin, age=0.0,
                   shared=True, started=at + 1)
    follower.receive(encode(fresh), 3305.0)
    assert follower.get_cached("f[1]", 3305.0) == {"v": "new"}
    assert Resolve(waiter, '{"v":"new"}', "mesh") in follower.take_effects()
    other = Result(src=src, key="g[1]", value=1, version=2 * 10**12, origin=origin, age=0.0, shared=True,
                   started=at - 1)
    follower.receive(encode(other), 3306.0)  # another flow's result is not concerned
    assert follower.get_cached("g[1]", 3306.0) == 1


def test_invalidating_a_flow_drops_every_variant_and_no_key_of_a_flow_it_is_a_prefix_of() -> None:
    node = leading_node()
    for key in ("f", "f[1]", 'f["a",{"b":2}]', "fx", "fx[1]", "f[1][]", "f]"):
        node.share_result(key, 1, 3000.0)
    node.take_effects()
    node.invalidate_flows(["f"], 3001.0)
    assert sorted(e.key for e in node.cache.held()) == ["f[1][]", "f]", "fx", "fx[1]"]


@pytest.mark.parametrize("flows", ["f", [], [""], [1], ["x" * 2000], [f"f{i}" for i in range(65)], None])
def test_invalidate_flows_refuses_what_is_not_a_list_of_flow_keys_before_anything_changes(flows: Any) -> None:
    node = leading_node()
    node.share_result("f", 1, 3000.0)
    node.take_effects()
    with pytest.raises((TypeError, ValueError)):
        node.invalidate_flows(flows, 3001.0)
    assert node.get_cached("f", 3001.0) == 1
    assert not node.take_effects()
    assert node.stats.internal_errors == 0
