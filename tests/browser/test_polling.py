"""Polling and persistence in real Chromium tabs (``/lab/poll.html``, ``web/lab/poll.py``): one flow
of the test server's ``/api/data``, whose calls the server counts.

- 5 tabs polling: one tab runs the poll source, the server sees one call per poll, every tab
  shows each poll's data; the poller's renderer killed (no pagehide): another tab takes over
  and polling goes on, still one poller;
- persistence: every tab closed, a new tab shows the stored data during ``use_flow`` (stale,
  source ``"storage"``), then revalidates with one call.
"""

from __future__ import annotations

import contextlib
from pathlib import Path
from typing import Any

from labtabs import record_figure, wait_for

ROOT = Path(__file__).resolve().parents[2]
FIGURES = ROOT / "test-artifacts" / "poll-figures.json"
TIMEOUT_S = 60.0


def record(name: str, value: Any) -> None:
    record_figure(FIGURES, name, value)


def state(page: Any) -> dict[str, Any]:
    return page.evaluate("window.pollState()")


def calls_seen(page: Any) -> int:
    data = state(page)["data"]
    return data["calls"] if data else 0


def crash(page: Any) -> None:
    with contextlib.suppress(Exception):  # expected: the navigation dies with the renderer
        page.goto("chrome://crash", timeout=10_000)


def one_poller(tabs: list[Any]) -> Any:
    found: list[Any] = []

    def one() -> bool:
        found[:] = [page for page in tabs if state(page)["pollers"]]
        return len(found) == 1 and sum(state(page)["pollers"] for page in tabs) == 1

    wait_for(one, TIMEOUT_S, "exactly one tab polling")
    return found[0]


def test_five_tabs_one_poller_and_a_takeover_after_the_pollers_crash(open_tabs, demo_server):
    api = demo_server.server.api
    tabs = open_tabs(5, "/lab/poll.html?channel=poll-5&heartbeat=1000&interval=300")
    for page in tabs:
        page.evaluate("window.pollStart()")
    wait_for(lambda: api.calls >= 3, TIMEOUT_S, "the first polls")
    poller = one_poller(tabs)
    assert state(poller)["leader"]
    start = api.calls
    wait_for(lambda: api.calls >= start + 10, TIMEOUT_S, "ten more polls")
    # one call per poll for the whole mesh: each call's number reached every tab, none was skipped
    latest = api.calls
    wait_for(lambda: all(calls_seen(page) >= latest for page in tabs), TIMEOUT_S, "every tab at the latest poll")
    assert one_poller(tabs) is poller
    record("calls_for_10_polls_in_5_tabs", api.calls - start)

    crash(poller)
    rest = [page for page in tabs if page is not poller]
    crashed_at = api.calls
    wait_for(lambda: api.calls >= crashed_at + 5, TIMEOUT_S, "polls after the crash")
    successor = one_poller(rest)
    assert state(successor)["leader"]
    latest = api.calls
    wait_for(lambda: all(calls_seen(page) >= latest for page in rest), TIMEOUT_S, "every live tab at the latest poll")
    assert all(state(page)["polling"] for page in rest)


def test_persisted_data_shows_at_once_in_a_tab_opened_after_every_tab_closed(open_tabs, demo_server):
    api = demo_server.server.api
    path = "/lab/poll.html?channel=persist&heartbeat=1000&interval=600000&persist=lab-poll"
    tabs = open_tabs(2, path)
    for page in tabs:
        page.evaluate("window.pollStart()")
    wait_for(lambda: all(calls_seen(page) >= 1 for page in tabs), TIMEOUT_S, "the first execute in both tabs")
    assert api.calls == 1
    for page in tabs:
        page.close()
    (page,) = open_tabs(1, path)
    first = page.evaluate("window.firstState")
    assert first["data"] == {"calls": 1} and first["source"] == "storage" and first["stale"] is True
    assert first["status"] == "success"
    wait_for(lambda: state(page)["source"] != "storage" and not state(page)["stale"], TIMEOUT_S, "the revalidation")
    assert api.calls == 2 and state(page)["data"] == {"calls": 2}
