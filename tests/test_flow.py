"""flow.py: the seed's Flow options across tabs on a MemoryHub (retry, timeout, cancel, callbacks,
concurrency, debounce, throttle), with calls counted at the function."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from support import Server, async_test, ends, open_tabs, settle, until

from pyflowmesh import (
    CallTimeoutError,
    FlowCancelledError,
    FlowTimeoutError,
    SharedFlowError,
    SharedFlowTimeoutError,
    use_flow,
)
from pyflowmesh.transports.memory import MemoryHub


class Flaky:
    """A function that fails its first ``failures`` calls, then answers; it counts its calls."""

    def __init__(self, failures: int, delay: float = 0.01) -> None:
        self.failures = failures
        self.delay = delay
        self.calls = 0

    async def __call__(self, *args: Any) -> Any:
        self.calls += 1
        await asyncio.sleep(self.delay)
        if self.calls <= self.failures:
            raise ConnectionError(f"attempt {self.calls} failed")
        return {"args": list(args), "call": self.calls}


# --- retry ---------------------------------------------------------------------------------------


@async_test
async def test_five_tabs_and_three_attempts_make_at_most_three_calls_and_all_get_the_result() -> None:
    hub, api = MemoryHub(), Flaky(failures=2)
    tabs = open_tabs(hub, 5)
    retried: list[tuple[str, int, int]] = []
    flows = [use_flow(api, tab, key="report", retry={"max_attempts": 3, "delay": 20},
                      on_retry=lambda error, attempt, most: retried.append((str(error), attempt, most)))
             for tab in tabs]
    await settle(tabs)
    seen: list[list[str]] = [[] for _ in flows]
    for flow, statuses in zip(flows, seen, strict=True):
        flow.subscribe(lambda f, statuses=statuses: statuses.append(f.status))
    results = await ends(asyncio.gather(*(flow.execute(1) for flow in flows)), "the executes")
    assert api.calls == 3
    assert all(result == {"args": [1], "call": 3} for result in results)
    # every tab's subscribers saw it load through the retries and succeed, never an error between
    assert all(statuses[0] == "loading" and statuses[-1] == "success" and "error" not in statuses
               for statuses in seen), seen
    assert retried == [("attempt 1 failed", 1, 3), ("attempt 2 failed", 2, 3)]  # in the calling tab only
    assert sum(tab.stats.retries for tab in tabs) == 2


@async_test
async def test_only_the_final_failure_is_shared_and_starts_the_back_off() -> None:
    hub, api = MemoryHub(), Flaky(failures=10)
    tabs = open_tabs(hub, 5, error_backoff=5000)
    errors: list[BaseException] = []
    flows = [use_flow(api, tab, key="report", retry={"maxAttempts": 3, "delay": 10, "backoff": "exponential"},
                      on_error=errors.append) for tab in tabs]
    leader = await settle(tabs)
    outcomes = await ends(asyncio.gather(*(flow.execute() for flow in flows), return_exceptions=True), "executes")
    assert api.calls == 3
    assert sum(isinstance(outcome, ConnectionError) for outcome in outcomes) == 1  # in the calling tab
    assert sum(isinstance(outcome, SharedFlowError) for outcome in outcomes) == 4
    assert len(errors) == 5 and {str(e) for e in errors if not isinstance(e, SharedFlowError)} == {"attempt 3 failed"}
    # the back-off holds: a new execute anywhere makes no call
    follower = next(flow for flow, tab in zip(flows, tabs) if tab is not leader)
    with pytest.raises(SharedFlowError):
        await follower.execute()
    assert api.calls == 3


@async_test
async def test_should_retry_saying_no_fails_at_once() -> None:
    hub, api = MemoryHub(), Flaky(failures=10)
    tabs = open_tabs(hub, 3)
    asked: list[int] = []

    def should_retry(error: BaseException, attempt: int) -> bool:
        asked.append(attempt)
        return attempt < 2

    flows = [use_flow(api, tab, key="report", retry={"max_attempts": 5, "delay": 5, "shouldRetry": should_retry})
             for tab in tabs]
    await settle(tabs)
    outcomes = await ends(asyncio.gather(*(f.execute() for f in flows), return_exceptions=True), "executes")
    assert api.calls == 2 and asked == [1, 2]
    assert all(isinstance(outcome, (ConnectionError, SharedFlowError)) for outcome in outcomes)


@async_test
async def test_a_follower_waits_through_retries_longer_than_call_timeout() -> None:
    """Its patience is the flow's budget (its timeout), not the mesh's call_timeout: it calls nothing."""
    hub, api = MemoryHub(), Flaky(failures=2, delay=0.05)
    tabs = open_tabs(hub, 3, call_timeout=60)
    flows = [use_flow(api, tab, key="slow", retry={"max_attempts": 3, "delay": 40}, timeout=2000) for tab in tabs]
    await settle(tabs)
    results = await ends(asyncio.gather(*(f.execute() for f in flows)), "executes")
    assert api.calls == 3 and all(r["call"] == 3 for r in results)


@async_test
async def test_a_local_flow_retries_too() -> None:
    api = Flaky(failures=1)
    flow = use_flow(api, None, key="local", retry={"max_attempts": 2, "delay": 1})
    assert await flow.execute() == {"args": [], "call": 2}


# --- timeout -------------------------------------------------------------------------------------


@async_test
async def test_a_timeout_reaches_every_waiting_tab_as_a_flow_timeout_error() -> None:
    hub = MemoryHub()
    started = asyncio.Event()
    cancelled: list[bool] = []

    async def hangs() -> Any:
        started.set()
        try:
            await asyncio.sleep(60)
        except asyncio.CancelledError:
            cancelled.append(True)
            raise

    tabs = open_tabs(hub, 4)
    flows = [use_flow(hangs, tab, key="hangs", timeout=150) for tab in tabs]
    await settle(tabs)
    outcomes = await ends(asyncio.gather(*(f.execute() for f in flows), return_exceptions=True), "executes")
    assert all(isinstance(o, FlowTimeoutError) and isinstance(o, TimeoutError) for o in outcomes)
    assert sum(isinstance(o, SharedFlowTimeoutError) for o in outcomes) == 3
    assert all(isinstance(o, CallTimeoutError) for o in outcomes)
    assert cancelled == [True]  # the call itself was cancelled, in the tab that ran it
    assert [f.status for f in flows] == ["error"] * 4


@async_test
async def test_a_local_timeout_is_a_flow_timeout_error() -> None:
    async def hangs() -> Any:
        await asyncio.sleep(60)

    flow = use_flow(hangs, None, key="local-hangs", timeout=20)
    with pytest.raises(FlowTimeoutError):
        await flow.execute()


# --- cancel --------------------------------------------------------------------------------------


@async_test
async def test_cancel_stops_this_tabs_wait_and_another_tab_still_gets_the_result() -> None:
    hub, server = MemoryHub(), Server(delay=0.2)
    tabs = open_tabs(hub, 3)
    cancelled: list[str] = []
    flows = [use_flow(server.fetch, tab, key="dash", on_cancel=lambda i=i: cancelled.append(f"tab{i}"))
             for i, tab in enumerate(tabs)]
    leader = await settle(tabs)
    order = sorted(range(3), key=lambda i: tabs[i] is leader)  # followers first
    quitter, stayer = flows[order[0]], flows[order[1]]
    await ends(quitter.execute("old"), "a first execute")
    quitter_task = asyncio.ensure_future(quitter.execute("x"))
    stayer_task = asyncio.ensure_future(stayer.execute("x"))
    await until(lambda: len(server.calls) == 2, what="the shared call started")
    quitter.cancel()
    with pytest.raises(FlowCancelledError):
        await ends(quitter_task, "the cancelled execute")
    assert quitter.status == "success" and quitter.data == {"args": ["old"], "call": 1}  # as before the execute
    assert cancelled == [f"tab{order[0]}"]
    assert (await ends(stayer_task, "the other tab's execute"))["args"] == ["x"]
    assert len(server.calls) == 2


@async_test
async def test_the_shared_call_is_cancelled_when_no_tab_waits_any_more() -> None:
    hub = MemoryHub()
    stopped: list[bool] = []

    async def slow() -> Any:
        try:
            await asyncio.sleep(5)
        except asyncio.CancelledError:
            stopped.append(True)
            raise
        return 1

    tabs = open_tabs(hub, 3)
    flows = [use_flow(slow, tab, key="slow") for tab in tabs]
    leader = await settle(tabs)
    followers = [f for f, t in zip(flows, tabs) if t is not leader]
    tasks = [asyncio.ensure_future(f.execute()) for f in followers]
    await until(lambda: leader.stats.calls == 1, what="the leader's call")
    followers[0].cancel()
    await asyncio.sleep(0.05)
    assert stopped == []  # the other follower still waits
    followers[1].cancel()
    await until(lambda: stopped == [True], what="the call cancelled")
    for task in tasks:
        with pytest.raises(FlowCancelledError):
            await task
    assert leader.stats.calls_cancelled == 1


@async_test
async def test_a_callers_own_cancellation_stays_a_cancelled_error() -> None:
    hub, server = MemoryHub(), Server(delay=0.5)
    (tab,) = open_tabs(hub, 1)
    flow = use_flow(server.fetch, tab, key="dash", on_cancel=lambda: pytest.fail("on_cancel is for flow.cancel()"))
    await settle([tab])
    with pytest.raises(asyncio.TimeoutError):
        await asyncio.wait_for(flow.execute(), 0.05)
    assert flow.status == "idle"


# --- callbacks -----------------------------------------------------------------------------------


@async_test
async def test_callbacks_run_once_per_execute_in_each_tab_and_say_where_the_data_came_from() -> None:
    hub, server = MemoryHub(), Server()
    tabs = open_tabs(hub, 3)
    seen: list[tuple[int, str, Any]] = []
    flows = [
        use_flow(server.fetch, tab, key="dash",
                 onStart=lambda args, i=i: seen.append((i, "start", args)),
                 onSuccess=lambda data, source, i=i: seen.append((i, "success", source)),
                 on_settled=lambda data, error, i=i: seen.append((i, "settled", error)))
        for i, tab in enumerate(tabs)
    ]
    await settle(tabs)
    await ends(asyncio.gather(*(f.execute(7) for f in flows)), "executes")
    for i in range(3):
        mine = [entry[1:] for entry in seen if entry[0] == i]
        assert mine[0] == ("start", (7,)) and mine[2] == ("settled", None) and mine[1][0] == "success"
    assert sorted(entry[2] for entry in seen if entry[1] == "success") == ["call", "mesh", "mesh"]
    await ends(flows[0].execute(7), "a cached execute")
    assert seen[-2:] == [(0, "success", "cache"), (0, "settled", None)]


@async_test
async def test_a_raising_callback_is_logged_and_changes_nothing() -> None:
    def boom(*_: Any) -> None:
        raise RuntimeError("page bug")

    flow = use_flow(lambda: 5, None, key="cb", on_start=boom, on_success=boom, on_settled=boom)
    assert await flow.execute() == 5 and flow.status == "success"


# --- concurrency, debounce, throttle -------------------------------------------------------------


@async_test
async def test_restart_cancels_the_running_execute() -> None:
    server = Server(delay=0.05)
    flow = use_flow(server.fetch, None, key="restart", concurrency="restart")
    first = asyncio.ensure_future(flow.execute(1))
    await asyncio.sleep(0.01)
    second = await flow.execute(2)
    with pytest.raises(FlowCancelledError):
        await first
    assert second["args"] == [2] and flow.data == second


@async_test
async def test_enqueue_runs_executes_one_after_another() -> None:
    running: list[int] = []
    overlap: list[bool] = []

    async def job(n: int) -> int:
        overlap.append(bool(running))
        running.append(n)
        await asyncio.sleep(0.01)
        running.remove(n)
        return n

    flow = use_flow(job, None, key="queue", concurrency="enqueue")
    assert await asyncio.gather(*(flow.execute(n) for n in range(4))) == [0, 1, 2, 3]
    assert overlap == [False] * 4


@async_test
async def test_debounce_runs_only_the_last_of_a_burst_and_every_caller_gets_it() -> None:
    server = Server(delay=0)
    flow = use_flow(server.fetch, None, key="search", debounce=40)
    tasks = []
    for text in ("p", "py", "pyt"):
        tasks.append(asyncio.ensure_future(flow.execute(text)))
        await asyncio.sleep(0.005)
    results = await asyncio.gather(*tasks)
    assert server.calls == [("pyt",)]
    assert all(result["args"] == ["pyt"] for result in results)


@async_test
async def test_throttle_keeps_a_pace() -> None:
    server = Server(delay=0)
    flow = use_flow(server.fetch, None, key="scroll", throttle=50)
    first = await flow.execute(1)  # at once
    burst = [asyncio.ensure_future(flow.execute(n)) for n in (2, 3, 4)]
    results = await asyncio.gather(*burst)
    assert first["args"] == [1]
    assert server.calls == [(1,), (4,)]  # the burst joined one run, with its latest arguments
    assert all(result["args"] == [4] for result in results)


@async_test
async def test_cancel_before_a_debounced_run_fails_its_executes() -> None:
    server = Server(delay=0)
    flow = use_flow(server.fetch, None, key="search", debounce=1000)
    task = asyncio.ensure_future(flow.execute("x"))
    await asyncio.sleep(0.01)
    flow.cancel()
    with pytest.raises(FlowCancelledError):
        await task
    assert server.calls == []


# --- optimistic ----------------------------------------------------------------------------------


@async_test
async def test_an_optimistic_value_shows_at_once_and_rolls_back_on_error() -> None:
    seen: list[Any] = []

    async def save(n: int) -> int:
        await asyncio.sleep(0.01)
        if n < 0:
            raise ValueError("refused")
        return n

    flow = use_flow(save, None, key="save", optimistic=lambda previous, args: (previous or 0) + args[0])
    flow.subscribe(lambda f: seen.append((f.status, f.data)))
    assert await flow.execute(5) == 5
    assert ("loading", 5) in seen  # the optimistic value, before the call ended
    with pytest.raises(ValueError):
        await flow.execute(-1)
    assert flow.data == 5 and flow.status == "error"  # rolled back
    assert ("loading", 4) in seen
