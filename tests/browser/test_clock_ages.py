"""Ages and deadlines by the shared wall clock, in real Chromium tabs (issue 8).

Tabs of one browser share the wall clock (``Date.now()``), so a ``Result`` or ``Request``
carries its sender's ``sent`` stamp and the receiver knows how long it waited, in a
frozen tab's queue too: a result is as old as it really is, and a leader declines
("late") a request whose sender already stopped waiting and called the API itself.

A frozen tab is a tab whose main thread is blocked (``Tab.stall``: nothing runs, and the
channel's messages wait for it, in order). Every test runs twice: with the stamps, and
with ``stamps=0`` (the lab page without a wall clock, as pyflowmesh 0.1.0 was), which
shows the fault the stamps fix is real in this browser. Assertions are on counts at
the test server, sources and messages, never on a duration.
"""

from __future__ import annotations

import time

import pytest
from labtabs import Tab, open_lab, summary, wait_for, wait_settled

SETTLE_S = 20.0


def assert_python_healthy(tabs: list[Tab], tab_console) -> None:
    __tracebackhide__ = True
    bad = [f"{tab.name}: {line}" for tab in tabs for line in tab_console(tab.page)
           if "Traceback" in line or "fatal error" in line or "pageerror" in line]
    assert not bad, "errors in the tabs' consoles:\n" + "\n".join(bad[:20])


def other(tabs: list[Tab], tab: Tab) -> Tab:
    return next(t for t in tabs if t is not tab)


@pytest.mark.parametrize("stamps", [1, 0], ids=["stamped", "unstamped-0.1.0"])
def test_a_result_that_waited_in_a_frozen_tabs_queue_is_not_served_as_fresh(
    open_tabs, demo_server, tab_console, stamps
):
    """The leader fetches while a follower is frozen for three times ``stale_time``; the
    shared ``Result`` waits in the follower's queue. Thawed, the follower executes the
    key: stamped, the entry's age includes those seconds, so it is stale and the follower
    asks the leader, whose own copy is stale too: a second call, fresh data. Unstamped
    (0.1.0), the follower took the old result as new and serves it from its cache."""
    stale_ms = 2000
    tabs = open_lab(open_tabs, 2, stale_time=stale_ms, stamps=stamps)
    leader = wait_settled(tabs)
    follower = other(tabs, leader)
    assert [tab.state()["config"]["stamps"] for tab in tabs] == [bool(stamps)] * 2

    follower.stall(3 * stale_ms)
    fetched = leader.execute("data", "queued")
    assert fetched["ok"] and fetched["source"] == "call", fetched
    assert demo_server.calls == 1
    stall = follower.stall_times()  # answers once the follower's main thread runs again
    assert stall["start"] <= fetched["ended_wall"] and stall["end"] - fetched["ended_wall"] > stale_ms, (
        f"the scenario did not happen: the result did not wait past stale_time in the frozen queue: {stall}, "
        f"result at {fetched['ended_wall']}")
    wait_for(lambda: follower.wire(src=leader.node_id, types=["result"]), SETTLE_S,
             "the leader's Result to reach the thawed follower")
    assert wait_settled(tabs, SETTLE_S) is leader, summary(tabs)

    result = follower.execute("data", "queued")
    assert result["ok"], result["error"]
    if stamps:
        assert result["source"] == "mesh", f"served a result older than stale_time from {result['source']}"
        assert demo_server.calls == 2 and result["data"]["calls"] == 2, "not fresh data"
        assert result["data"]["fetched_by"] == leader.node_id
    else:
        assert result["source"] == "cache" and result["data"] == fetched["data"]
        assert demo_server.calls == 1, "0.1.0 serves the queued result as fresh: no call"
    assert_python_healthy(tabs, tab_console)


@pytest.mark.parametrize("stamps", [1, 0], ids=["stamped", "unstamped-0.1.0"])
def test_a_request_that_waited_in_a_stalled_leaders_queue_is_declined_late(
    open_tabs, demo_server, tab_console, stamps
):
    """The leader's main thread is blocked for longer than ``request_timeout`` but well
    under the silence limit (it stays leader). A follower's request waits in its queue;
    the follower stops waiting after ``request_timeout`` and calls the API itself.
    Thawed, the stamped leader declines the request as ``late``: one call in all.
    Unstamped (0.1.0), it serves the request its sender gave up on: a second call."""
    heartbeat, request_timeout, stall_ms = 2000, 300, 1500  # silence limit: 5000 ms
    tabs = open_lab(open_tabs, 2, heartbeat=heartbeat, request_timeout=request_timeout, stamps=stamps)
    leader = wait_settled(tabs)
    follower = other(tabs, leader)
    assert follower.state()["config"]["request_timeout"] == request_timeout

    scheduled = leader.stall(stall_ms)
    handle = follower.start("data", "late", at_wall=scheduled + 200)  # while the leader is blocked
    result = follower.result(handle, SETTLE_S)
    assert result["ok"] and result["source"] == "call", result
    assert result["data"]["fetched_by"] == follower.node_id
    stall = leader.stall_times()
    assert stall["start"] <= result["started_wall"] and result["ended_wall"] <= stall["end"], (
        f"the scenario did not happen: the follower's execute did not fall in the leader's stall: {stall}, "
        f"{result['started_wall']}..{result['ended_wall']}")

    wait_for(lambda: follower.wire(src=leader.node_id, types=["decline", "accept"], since_wall=stall["start"]),
             SETTLE_S, "the thawed leader to answer the queued request")
    answers = follower.wire(src=leader.node_id, types=["decline", "accept"], since_wall=stall["start"])
    assert wait_settled(tabs, SETTLE_S) is leader, summary(tabs)
    if stamps:
        assert [(m["type"], m.get("reason")) for m in answers] == [("decline", "late")]
        time.sleep(heartbeat / 1000)  # room for a call that should not come
        assert demo_server.calls == 1, "the leader served a request its sender had given up on"
        assert leader.state()["stats"]["calls"] == 0
    else:
        assert [m["type"] for m in answers] == ["accept"]
        wait_for(lambda: demo_server.calls == 2, SETTLE_S, "0.1.0's leader to call for the abandoned request")
        assert leader.state()["stats"]["calls"] == 1
    again = follower.execute("data", "late")
    assert again["ok"] and again["source"] == "cache"
    assert demo_server.calls == (1 if stamps else 2)
    assert_python_healthy(tabs, tab_console)
