"""tools/server.py's live feed: a real SSE endpoint and a real WebSocket endpoint (``websockets``)
that count open connections and honour the resume point; the test fixtures of the browser
levels and ``./build.sh demo`` start the same server."""

from __future__ import annotations

import http.client
import json
import sys
import time
from pathlib import Path
from typing import Any

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tools"))
from server import start_server, stop_server  # noqa: E402

websockets = pytest.importorskip("websockets")
from websockets.sync.client import connect  # noqa: E402


@pytest.fixture
def server() -> Any:
    started, thread = start_server("127.0.0.1", 0)
    started.feed.period = 0.02
    yield started
    stop_server(started, thread)


def wait(condition: Any, limit: float = 5.0) -> None:
    give_up = time.monotonic() + limit
    while not condition():
        assert time.monotonic() < give_up, "gave up waiting"
        time.sleep(0.01)


def sse_events(server: Any, path: str, count: int) -> tuple[list[dict[str, Any]], http.client.HTTPConnection]:
    host, port = server.server_address[:2]
    connection = http.client.HTTPConnection(host, port, timeout=5)
    connection.request("GET", path)
    response = connection.getresponse()
    assert response.status == 200 and response.getheader("Content-Type") == "text/event-stream"
    events: list[dict[str, Any]] = []
    current: dict[str, Any] = {}
    while len(events) < count:
        line = response.readline().decode().rstrip("\n")
        if line.startswith("id: "):
            current["id"] = line[4:]
        elif line.startswith("data: "):
            current["data"] = json.loads(line[6:])
        elif line == "" and current:
            events.append(current)
            current = {}
    return events, connection


def test_sse_counts_connections_and_honours_the_resume_point(server: Any) -> None:
    wait(lambda: server.feed.latest() >= 30)
    events, connection = sse_events(server, "/api/stream?lastEventId=5", 10)
    assert [int(e["id"]) for e in events] == list(range(6, 16))  # replayed from the resume point, in order
    assert events[0]["data"]["id"] == 6
    assert server.feed.stats()["sse_open"] == 1 and server.feed.stats()["resumes"] == ["5"]
    connection.close()
    wait(lambda: server.feed.stats()["sse_open"] == 0)
    latest = server.feed.latest()
    events, connection = sse_events(server, "/api/stream", 2)  # no resume point: from the latest
    assert int(events[0]["id"]) >= latest
    connection.close()
    assert server.feed.stats()["sse_opened"] == 2


def test_websocket_counts_connections_and_honours_the_resume_point(server: Any) -> None:
    assert server.ws_url is not None and server.ws_url.endswith("/stream")
    wait(lambda: server.feed.latest() >= 20)
    with connect(server.ws_url + "?lastEventId=3") as socket:
        messages = [json.loads(socket.recv(timeout=5)) for _ in range(5)]
        assert [m["id"] for m in messages] == [4, 5, 6, 7, 8]
        assert messages[0]["data"]["id"] == 4
        assert server.feed.stats()["ws_open"] == 1
    wait(lambda: server.feed.stats()["ws_open"] == 0)
    assert server.feed.stats()["ws_opened"] == 1


def test_the_feed_down_drops_every_connection_and_refuses_new_ones(server: Any) -> None:
    _, connection = sse_events(server, "/api/stream", 1)
    with connect(server.ws_url) as socket:
        socket.recv(timeout=5)
        host, port = server.server_address[:2]
        control = http.client.HTTPConnection(host, port, timeout=5)
        control.request("POST", "/api/stream/down?on=1")
        assert json.loads(control.getresponse().read())["down"] is True
        wait(lambda: server.feed.stats()["sse_open"] == 0 and server.feed.stats()["ws_open"] == 0)
        control.request("GET", "/api/stream")
        assert control.getresponse().status == 503
        control.close()
        with pytest.raises(websockets.exceptions.ConnectionClosed):
            for _ in range(100):
                socket.recv(timeout=5)
    connection.close()
    server.feed.set_down(False)
    events, connection = sse_events(server, "/api/stream", 1)
    connection.close()
