"""The sources of pyflowmesh.sources against the browser's real EventSource and WebSocket, in Pyodide.

tools/server.py runs in the test process (its feed: one event every 50 ms, honouring the
``lastEventId`` resume point; the SSE endpoint allows any origin, since pytest-pyodide
serves the page from another port). Two mesh members in one page share one stream over
the real BroadcastChannel: the server counts one connection.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import Any

import pytest
from pytest_pyodide import run_in_pyodide

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "tools"))
from server import start_server, stop_server  # noqa: E402


@pytest.fixture(scope="module")
def feed() -> Any:
    pytest.importorskip("websockets")
    server, thread = start_server("127.0.0.1", 0)
    server.feed.period = 0.05
    yield server
    stop_server(server, thread)


@run_in_pyodide
async def first_events(selenium, kind: str, url: str, resume: Any, count: int) -> list[Any]:
    from pyflowmesh.sources import event_source, websocket

    source = (event_source if kind == "sse" else websocket)(url)
    got = []
    generator = source(resume)
    async for event_id, data in generator:
        assert data["id"] == int(event_id)
        got.append(event_id)
        if len(got) == count:
            break
    await generator.aclose()
    return got


def test_event_source_reads_the_real_sse_and_resumes_through_the_query(selenium_mesh, feed) -> None:
    while feed.feed.latest() < 10:
        time.sleep(0.05)
    got = first_events(selenium_mesh, "sse", feed.url + "/api/stream", "3", 5)
    assert got == ["4", "5", "6", "7", "8"]  # the SSE ids, as text, from the resume point
    assert feed.feed.stats()["resumes"][-1] == "3"
    deadline = time.monotonic() + 5
    while feed.feed.stats()["sse_open"] and time.monotonic() < deadline:
        time.sleep(0.05)
    assert feed.feed.stats()["sse_open"] == 0  # closing the generator closed the EventSource


def test_websocket_reads_the_real_websocket_and_resumes_through_the_query(selenium_mesh, feed) -> None:
    got = first_events(selenium_mesh, "ws", feed.ws_url, 2, 4)
    assert got == [3, 4, 5, 6]
    deadline = time.monotonic() + 5
    while feed.feed.stats()["ws_open"] and time.monotonic() < deadline:
        time.sleep(0.05)
    assert feed.feed.stats()["ws_open"] == 0


@run_in_pyodide
async def two_members_share(selenium, kind: str, url: str, channel: str) -> list[list[Any]]:
    import asyncio

    from pyflowmesh import FlowMesh, use_stream
    from pyflowmesh.sources import event_source, websocket

    a = FlowMesh(channel, heartbeat=200)
    b = FlowMesh(channel, heartbeat=200)
    source = (event_source if kind == "sse" else websocket)(url)
    streams = [use_stream(source, mesh=a), use_stream(source, mesh=b)]
    seen: list[list[Any]] = [[], []]
    for stream, ids in zip(streams, seen, strict=True):
        stream.subscribe(lambda s, ids=ids: ids.append(s.last_id) if s.last_id not in ids and s.last_id else None)
    for _ in range(400):
        if all(len(ids) >= 10 for ids in seen):
            break
        await asyncio.sleep(0.02)
    for stream in streams:
        stream.close()
    a.dispose()
    b.dispose()
    return seen


@pytest.mark.parametrize("kind", ["sse", "ws"])
def test_two_members_in_one_page_hold_one_connection(selenium_mesh, feed, kind: str) -> None:
    feed.feed.reset()
    url = feed.url + "/api/stream" if kind == "sse" else feed.ws_url
    seen = two_members_share(selenium_mesh, kind, url, f"p-share-{kind}")
    stats = feed.feed.stats()
    assert stats[f"{kind}_opened"] == 1  # one connection for both members
    for ids in seen:
        numbers = [int(i) for i in ids]
        assert len(numbers) >= 10 and numbers[1:] == list(range(numbers[1], numbers[1] + len(numbers) - 1))


@run_in_pyodide
async def test_poll_in_pyodide_only_changes_are_events(selenium_mesh):
    import asyncio

    from pyflowmesh import FlowMesh, use_stream
    from pyflowmesh.sources import poll

    value = {"v": 1}
    calls = []

    def read():
        calls.append(1)
        return dict(value)

    mesh = FlowMesh("p-poll", heartbeat=200)
    stream = use_stream(poll(read, interval=20, key="p"), mesh=mesh)
    events = []

    async def consume():
        async for event in stream:
            events.append(event.data)

    task = asyncio.ensure_future(consume())
    for _ in range(300):
        if events:
            break
        await asyncio.sleep(0.01)
    await asyncio.sleep(0.2)
    assert events == [{"v": 1}] and len(calls) >= 5
    value["v"] = 2
    for _ in range(300):
        if len(events) == 2:
            break
        await asyncio.sleep(0.01)
    assert events == [{"v": 1}, {"v": 2}]
    stream.close()
    await task
    mesh.dispose()
