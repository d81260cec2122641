"""The back/forward cache in real Chromium (issue 8): a page that leaves with
``pagehide`` (``persisted``) hands over like a frozen page and lets go of its Web Lock;
``pageshow`` (``persisted``) brings it back into the mesh.

What this Chromium (Debian's 156, headless, driven by Playwright) does, as measured:

* Playwright launches it with ``--disable-back-forward-cache``; the tests' ``browser``
  then reports ``BackForwardCacheDisabled``, ``BackForwardCacheDisabledByCommandLine``
  (CDP ``Page.backForwardCacheNotUsed``). These tests use ``bfcache_browser``, without
  that switch.
* ``Cache-Control: no-store`` on the page or on any response its scripts fetched keeps it
  out of the cache (``response-cache-control-no-store``,
  ``...-with-js-network-request``): the server answers ``no-cache`` here
  (``bfcache_server``).
* A lab tab alone is then cached and restored (``pageshow`` with ``persisted``), with
  Web Locks on: the member releases its lock in ``pagehide``. Chromium also dispatches
  ``freeze`` after that ``pagehide`` and ``resume`` before that ``pageshow``. (A held Web
  Lock does not keep a page out of the cache here: a page holding an extra lock of its own
  was restored too. Releasing it is for the watchers, who learn at once.)
* With another tab of the mesh open, a cached page is evicted as soon as a message
  reaches one of its open BroadcastChannels (``notRestoredReasons``:
  ``broadcastchannel-message``): so the member closes its channel in ``pagehide``
  (after its Bye) and opens it again on ``resume``/``pageshow``, and the lab page
  closes its own taps while cached. The page is then restored and rejoins as a follower.

``go_back`` waits for ``commit``: a page restored from the cache fires no ``load``.
"""

from __future__ import annotations

import time
from typing import Any

import pytest
from conftest import READY_JS, READY_TIMEOUT_S
from labtabs import ELECTION_MS, HEARTBEAT_MS, Measured, Tab, now_ms, open_lab, summary, wait_for, wait_settled

SETTLE_S = 20.0
OTHER = "/wheels/manifest.json"  # a same-origin document that runs no script (and opens no channel)
NAVIGATION_JS = """(() => {
  const entry = performance.getEntriesByType("navigation")[0];
  const why = entry.notRestoredReasons;
  return {type: entry.type, reasons: why ? why.reasons.map((r) => r.reason) : null};
})()"""
HELD_LOCKS_JS = "navigator.locks.query().then((snapshot) => snapshot.held.map((lock) => lock.name))"


@pytest.fixture
def measured(record_property, request) -> Measured:
    return Measured(record_property, request.node.name)


def assert_python_healthy(tabs: list[Tab], tab_console) -> None:
    __tracebackhide__ = True
    bad = [f"{tab.name}: {line}" for tab in tabs for line in tab_console(tab.page)
           if "Traceback" in line or "fatal error" in line or "pageerror" in line]
    assert not bad, "errors in the tabs' consoles:\n" + "\n".join(bad[:20])


def held_by(page: Any, node_id: str) -> list[str]:
    """The Web Locks of ``node_id`` held now in this origin (asked from any of its documents)."""
    return [name for name in page.evaluate(HELD_LOCKS_JS) if name.endswith(":" + node_id)]


def leave(tab: Tab, server: Any) -> float:
    """Navigate the tab to another page of the origin; the wall time just before."""
    at = now_ms()
    tab.page.goto(server.url(OTHER))
    return at


def come_back(tab: Tab, name: str) -> tuple[Tab, bool, dict[str, Any]]:
    """History back to the lab page, ready. Returns the tab (a new :class:`Tab`: a page loaded
    anew is another member), whether it was restored from the cache, and its navigation entry."""
    tab.page.go_back(wait_until="commit")
    tab.page.wait_for_function(READY_JS, timeout=READY_TIMEOUT_S * 1000)  # a page loaded anew boots Python
    last = tab.page.evaluate("labLifecycle")[-1]
    restored = last["event"] == "pageshow" and last["persisted"]
    return Tab(tab.page, name), restored, tab.page.evaluate(NAVIGATION_JS)


def test_a_lone_tab_in_the_back_forward_cache_lets_go_of_its_lock_and_comes_back(
    open_bfcache_tabs, bfcache_server, tab_console
):
    """A lab tab alone (no message can evict it) goes into the cache and comes back: the
    same Python, the same member. While cached it holds no Web Lock (a watcher would
    learn at once that it is gone); back, it holds its lock again, rejoins (it is the
    only tab: it leads again) and serves an execute with one call."""
    tab = open_lab(open_bfcache_tabs, 1)[0]
    wait_for(lambda: tab.state()["leader"], SETTLE_S, "the tab to lead")
    node = tab.node_id
    assert held_by(tab.page, node), "the member holds no Web Lock"

    left_at = leave(tab, bfcache_server)
    assert held_by(tab.page, node) == [], "the cached page still holds its Web Lock"

    back, restored, navigation = come_back(tab, "tab0-back")
    assert restored, f"not restored from the back/forward cache: {navigation}"
    lifecycle = [(e["event"], e["persisted"]) for e in tab.page.evaluate("labLifecycle")]
    # Chromium freezes a page it caches and resumes it before pageshow: the member hears
    # both (resume already makes it rejoin; pageshow takes its lock again).
    assert lifecycle == [("pageshow", False), ("pagehide", True), ("freeze", None), ("resume", None),
                         ("pageshow", True)]
    assert back.node_id == node, "the page was loaded anew"
    wait_for(lambda: back.state()["leader"], SETTLE_S, "the restored tab to lead again")
    roles = [e["role"] for e in back.events(left_at)]
    assert roles[0] != "leader" and roles[-1] == "leader", f"it did not hand over in pagehide: {roles}"
    assert len(held_by(back.page, node)) == 1, "back from the cache, the member holds not exactly its one lock"

    result = back.execute("data", "after-return")
    assert result["ok"] and result["source"] == "call", result
    assert bfcache_server.calls == 1
    assert_python_healthy([back], tab_console)


def test_a_leader_leaving_into_the_back_forward_cache_hands_over_and_comes_back_a_follower(
    open_bfcache_tabs, bfcache_server, tab_console, measured
):
    """The leader's tab navigates away and the browser puts it in the back/forward cache
    (``pagehide`` with ``persisted``): it says Bye and the other tab leads within an
    election. The cached page has closed its channel, so the new leader's heartbeats do
    not evict it; going back restores the same member, which rejoins as a follower and
    gets its data through the mesh: one call."""
    tabs = open_lab(open_bfcache_tabs, 2)
    leader = wait_settled(tabs)
    follower = next(tab for tab in tabs if tab is not leader)
    old = leader.node_id

    left_at = leave(leader, bfcache_server)
    wait_for(lambda: follower.state()["leader"], SETTLE_S, "the other tab to lead")
    promoted_ms = min(e["wall"] for e in follower.events(left_at) if e["role"] == "leader") - left_at
    measured("promotion_after_pagehide_persisted_ms", promoted_ms)
    assert promoted_ms <= ELECTION_MS, f"promotion took {promoted_ms:.0f} ms: no Bye?"
    assert [(n["event"], n["persisted"]) for n in follower.notes() if n["node_id"] == old] == [("pagehide", True)]
    assert [m["type"] for m in follower.wire(src=old, since_wall=left_at)] == ["bye"]
    assert held_by(leader.page, old) == [], "the cached page still holds its Web Lock"
    time.sleep(2 * HEARTBEAT_MS / 1000)  # the new leader's heartbeats reach the cached page

    assert [m["type"] for m in follower.wire(src=old, since_wall=left_at)] == ["bye"], "the cached member spoke"
    returned_at = now_ms()
    back, restored, navigation = come_back(leader, "tab0-back")
    measured("restored_from_bfcache", restored)
    measured("not_restored_reasons", navigation["reasons"])
    assert restored, f"not restored from the back/forward cache: {navigation}"
    assert back.node_id == old, "the page was loaded anew"
    assert wait_settled([follower, back], SETTLE_S) is follower, summary([follower, back])
    assert "hello" in [m["type"] for m in follower.wire(src=old, since_wall=returned_at)], "it did not rejoin"

    result = back.execute("data", "after-return")
    assert result["ok"] and result["source"] == "mesh", result
    assert result["data"]["fetched_by"] == follower.node_id
    assert bfcache_server.calls == 1
    assert_python_healthy([follower, back], tab_console)
