"""The stream lab page (``/lab/stream.html?<query>``): one ``use_stream`` of the test server's feed.

Query: ``channel`` (default ``lab-stream``), ``heartbeat`` (ms, default 1000), ``mesh``
(``1`` default; ``0``: this tab opens its own connection, as pages do without the mesh),
``grace`` (ms, default 5000).

``window.streamStart(kind)`` (``"sse"``: ``event_source("/api/stream")``; ``"ws"``:
``websocket(<the server's WebSocket URL>)``) starts listening; then
``window.streamIds`` lists every event ID this tab delivered, in order (as numbers), with
``window.streamWall`` the ``Date.now()`` of each delivery, and ``window.streamState()``
gives ``{status, error, last_id, role, node_id, leader}``. ``window.pyflowmesh_ready``
becomes ``true`` once Python is ready.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

import js
from pyodide.ffi import create_proxy
from pyodide.http import pyfetch

from pyflowmesh import FlowMesh, Stream, use_stream
from pyflowmesh.sources import event_source, websocket

params = js.URLSearchParams.new(js.location.search)


def param(name: str, default: Any = None) -> Any:
    if not params.has(name) or params.get(name) == "":
        return default
    return params.get(name)


USE_MESH = param("mesh", "1") != "0"
CHANNEL = param("channel", "lab-stream")
mesh = FlowMesh(CHANNEL, heartbeat=float(param("heartbeat", 1000))) if USE_MESH else None
js.window.streamIds = js.Array.new()
js.window.streamWall = js.Array.new()
holder: dict[str, Stream] = {}


def on_change(stream: Stream) -> None:
    ids = js.window.streamIds
    last = stream.last_id
    if last is not None and (ids.length == 0 or str(ids[ids.length - 1]) != str(last)):
        ids.push(int(last))
        js.window.streamWall.push(js.Date.now())
    js.document.getElementById("state").textContent = json.dumps(state(), indent=1)


def state() -> dict[str, Any]:
    stream = holder.get("stream")
    return {
        "status": stream.status if stream else None,
        "error": repr(stream.error) if stream and stream.error else None,
        "last_id": stream.last_id if stream else None,
        "role": stream.mesh.role if stream else (mesh.role if mesh else None),
        "node_id": stream.mesh.node_id if stream else None,
        "leader": stream.mesh.is_leader if stream else False,
        "sources": len(stream._driver.tasks) if stream else 0,
    }


async def start(kind: str) -> None:
    if kind == "ws":
        response = await pyfetch("/api/stream/stats")
        url = (await response.json())["ws_url"]
        source = websocket(url)
    else:
        source = event_source("/api/stream")
    member = mesh if mesh is not None else FlowMesh(f"{CHANNEL}-alone-{js.Math.random()}")
    stream = use_stream(source, mesh=member, key=f"feed-{kind}", grace=float(param("grace", 5000)))
    holder["stream"] = stream
    stream.subscribe(on_change)
    on_change(stream)


def js_start(kind: Any = "sse") -> None:
    asyncio.ensure_future(start(str(kind)))


def js_state() -> Any:
    return js.JSON.parse(json.dumps(state()))


proxies = [create_proxy(js_start), create_proxy(js_state)]
js.window.streamStart = proxies[0]
js.window.streamState = proxies[1]
js.window.lab_node_id = mesh.node_id if mesh else None
js.window.pyflowmesh_ready = True
