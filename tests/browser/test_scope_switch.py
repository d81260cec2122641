"""A login switch across real Chromium tabs of the lab page (issue 14).

The server answers as whoever the ``user`` cookie names when a request arrives, and the
cookie belongs to the browser, not to a tab: once bob logs in, every tab's calls are
bob's. Scopes keep what alice's tabs fetched away from bob's, on one channel.
"""

from __future__ import annotations

from typing import Any

from labtabs import Tab, execute_together, open_lab, wait_for, wait_settled

from pyflowmesh.core.wire import scope_digest

SETTLE_S = 20.0
CHANNEL = "accounts"


def log_in(context: Any, demo_server: Any, user: str) -> None:
    """What a login does to every tab: the session cookie changes."""
    context.add_cookies([{"name": "user", "value": user, "url": demo_server.url("/")}])


def held_locks(tab: Tab) -> list[str]:
    return tab.page.evaluate("async () => (await navigator.locks.query()).held.map((lock) => lock.name)")


def users(entries: list[dict[str, Any]]) -> list[Any]:
    return [entry["user"] for entry in entries if entry["what"] == "cache"]


def test_a_login_switch_across_tabs_never_shows_one_users_data_to_another(
    context, open_tabs, demo_server, tab_console
):
    alice_digest, bob_digest = scope_digest(CHANNEL, "alice"), scope_digest(CHANNEL, "bob")
    log_in(context, demo_server, "alice")
    alices = open_lab(open_tabs, 2, channel=CHANNEL, scope="alice")
    alice_leader = wait_settled(alices)
    shared = execute_together(alices, "data")
    assert all(r["ok"] for r in shared), shared
    assert [r["data"]["user"] for r in shared] == ["alice", "alice"]
    assert sorted(r["source"] for r in shared)[0] == "call" and demo_server.calls == 1, "alice's tabs share one call"

    log_in(context, demo_server, "bob")  # bob logs in in a new tab
    (bob,) = open_lab(open_tabs, 1, channel=CHANNEL, scope="bob")
    wait_for(lambda: bob.state()["leader"], SETTLE_S, "bob's tab to lead its own scope's mesh")
    assert wait_settled(alices) is alice_leader, "bob's tab must not disturb alice's mesh"
    mine = bob.execute("data")
    assert mine["ok"] and mine["source"] == "call", mine
    assert mine["data"]["user"] == "bob" and demo_server.calls == 2, "bob's tab calls for itself"

    # alice's leader switches to bob (its page learned of the login, e.g. by a storage event)
    switched = alice_leader
    (staying,) = [tab for tab in alices if tab is not alice_leader]
    outcome = switched.page.evaluate("pfm.set_scope('bob', true)")
    assert outcome["ok"] and outcome["state"]["scope"] == "bob", outcome
    assert wait_settled([staying], SETTLE_S) is staying, "alice's mesh goes on with its other tab"
    wait_settled([bob, switched], SETTLE_S, "the switched tab and bob's tab: one mesh")
    after = switched.execute("data")
    assert after["ok"] and after["data"] == mine["data"], after  # bob's data from bob's mesh
    assert after["source"] in ("cache", "mesh") and demo_server.calls == 2

    seen = switched.page.evaluate("pfm.seen()")
    switch_at = next(i for i, entry in enumerate(seen) if entry["what"] == "scope")
    before, during_and_after = seen[:switch_at], seen[switch_at:]
    assert users(before) == ["alice"], "the control: the listener heard alice's result before the switch"
    assert {"what": "flow", "flow": "data", "status": "idle"}.items() <= seen[switch_at - 1].items()
    assert "alice" not in users(during_and_after) and "bob" in users(during_and_after)
    assert "alice" not in users(bob.page.evaluate("pfm.seen()"))
    assert all(r["data"]["user"] == "alice" for r in [staying.execute("data")]), "alice's cache is alice's"

    node = switched.node_id
    wait_for(lambda: f"pyflowmesh:{CHANNEL}:{alice_digest}:{node}" not in held_locks(staying), SETTLE_S,
             "the switched tab to release its lock of alice's scope")
    assert f"pyflowmesh:{CHANNEL}:{bob_digest}:{node}" in held_locks(staying)
    wire = [entry for entry in staying.wire() if entry.get("proto") == "pyflowmesh"]
    assert wire and {entry.get("scope") for entry in wire} == {alice_digest, bob_digest}
    assert staying.state()["stats"]["other_scope"] > 0 and staying.state()["stats"]["dropped"] == 0

    for tab in (*alices, bob):
        bad = [line for line in tab_console(tab.page) if "Traceback" in line or "pageerror" in line]
        assert not bad, f"{tab.name}: {bad[:5]}"
