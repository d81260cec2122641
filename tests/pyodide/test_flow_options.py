"""The Flow options inside Pyodide: retries, timeouts, cancel and debounce on the browser's event loop
(Pyodide's WebLoop maps asyncio timers to setTimeout), across two members on the real BroadcastChannel."""

from pytest_pyodide import run_in_pyodide


@run_in_pyodide
async def test_retries_timeouts_and_cancel_across_two_members_on_the_real_channel(selenium_mesh):
    import asyncio

    from pyflowmesh import FlowCancelledError, FlowMesh, FlowTimeoutError, use_flow

    a = FlowMesh("t-options", heartbeat=1000)
    b = FlowMesh("t-options", heartbeat=1000)
    for _ in range(200):
        if {a.role, b.role} == {"leader", "follower"}:
            break
        await asyncio.sleep(0.01)
    calls = []

    async def flaky():
        calls.append(len(calls))
        await asyncio.sleep(0.01)
        if len(calls) < 3:
            raise ConnectionError(f"attempt {len(calls)}")
        return {"calls": len(calls)}

    retried = []
    options = {"retry": {"maxAttempts": 3, "delay": 20}, "onRetry": lambda e, n, most: retried.append(n)}
    fa, fb = use_flow(flaky, a, key="flaky", **options), use_flow(flaky, b, key="flaky", **options)
    assert await asyncio.gather(fa.execute(), fb.execute()) == [{"calls": 3}, {"calls": 3}]
    assert len(calls) == 3 and retried == [1, 2]  # in the leader only: the follower waited

    async def hangs():
        await asyncio.sleep(60)

    ta, tb = use_flow(hangs, a, key="hangs", timeout=100), use_flow(hangs, b, key="hangs", timeout=100)
    outcomes = await asyncio.gather(ta.execute(), tb.execute(), return_exceptions=True)
    assert all(isinstance(o, FlowTimeoutError) for o in outcomes), outcomes

    async def slow():
        await asyncio.sleep(0.5)
        return 1

    sa, sb = use_flow(slow, a, key="slow"), use_flow(slow, b, key="slow")
    follower = sb if b.role == "follower" else sa
    task = asyncio.ensure_future(follower.execute())
    await asyncio.sleep(0.05)
    follower.cancel()
    try:
        await task
        raise AssertionError("a cancelled execute returned")
    except FlowCancelledError:
        pass
    assert follower.status == "idle"
    leader = a if a.role == "leader" else b
    for _ in range(100):  # the follower's Withdraw reaches the leader, whose call nobody waits on
        if leader.stats.calls_cancelled == 1:
            break
        await asyncio.sleep(0.01)
    assert leader.stats.calls_cancelled == 1
    a.dispose()
    b.dispose()


@run_in_pyodide
async def test_a_local_flow_debounces_and_times_out_on_the_browsers_timers(selenium_mesh):
    import asyncio

    from pyflowmesh import FlowTimeoutError, use_flow

    seen = []

    def search(text):
        seen.append(text)
        return [text]

    flow = use_flow(search, None, key="search", debounce=30)
    results = await asyncio.gather(*(flow.execute(t) for t in ("p", "py", "pyo")))
    assert seen == ["pyo"] and results == [["pyo"]] * 3

    async def hangs():
        await asyncio.sleep(60)

    try:
        await use_flow(hangs, None, key="local-hangs", timeout=50).execute()
        raise AssertionError("no timeout")
    except FlowTimeoutError:
        pass
