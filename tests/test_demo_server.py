"""tools/server.py's API for the demo's mutation: ``POST /api/increment`` changes the counter that
``/api/data`` reports, is no data call, and changes nothing in failure mode."""

from __future__ import annotations

import http.client
import json
import sys
from pathlib import Path
from typing import Any

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tools"))
from server import start_server, stop_server  # noqa: E402


@pytest.fixture
def server() -> Any:
    started, thread = start_server("127.0.0.1", 0)
    yield started
    stop_server(started, thread)


def call(server: Any, method: str, path: str) -> tuple[int, dict[str, Any]]:
    host, port = server.server_address[:2]
    connection = http.client.HTTPConnection(host, port, timeout=5)
    try:
        connection.request(method, path)
        response = connection.getresponse()
        return response.status, json.loads(response.read())
    finally:
        connection.close()


def test_an_increment_changes_what_the_data_reports_and_is_no_data_call(server: Any) -> None:
    assert call(server, "GET", "/api/data?key=dashboard")[1]["counter"] == 0
    assert call(server, "POST", "/api/increment") == (200, {"counter": 1, "increments": 1})
    assert call(server, "POST", "/api/increment") == (200, {"counter": 2, "increments": 2})
    status, body = call(server, "GET", "/api/data?key=dashboard")
    assert status == 200 and body["counter"] == 2 and body["calls"] == 2
    assert server.api.stats() == {"calls": 2, "failing": False, "counter": 2, "increments": 2}


def test_an_increment_in_failure_mode_fails_and_changes_nothing(server: Any) -> None:
    server.api.set_failing(True)
    status, body = call(server, "POST", "/api/increment")
    assert status == 503 and "failure mode" in body["error"]
    assert server.api.stats()["counter"] == 0
    server.api.set_failing(False)
    assert call(server, "POST", "/api/increment")[0] == 200
    assert call(server, "POST", "/api/reset")[1] == {"calls": 0, "failing": False, "counter": 0, "increments": 0}
