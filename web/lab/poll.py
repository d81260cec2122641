"""The polling lab page (``/lab/poll.html?<query>``): one flow of ``/api/data``, polled and persisted.

Query: ``channel`` (default ``lab-poll``), ``heartbeat`` (ms, default 1000), ``interval`` (ms
between polls, default 300), ``persist`` (a ``persist_key``; none by default).

``window.firstState`` is the flow's state right after ``use_flow``, before any ``await``
(what a persisted flow shows at once). ``window.pollStart()`` executes the flow (polling
starts); ``window.pollState()`` gives ``{data, status, source, stale, polling, leader,
pollers}`` (``pollers``: poll sources this tab runs now). ``window.pyflowmesh_ready``
becomes ``true`` once Python is ready.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

import js
from pyodide.ffi import create_proxy
from pyodide.http import pyfetch

from pyflowmesh import FlowMesh, use_flow

params = js.URLSearchParams.new(js.location.search)


def param(name: str, default: Any = None) -> Any:
    if not params.has(name) or params.get(name) == "":
        return default
    return params.get(name)


async def fetch_data() -> Any:
    response = await pyfetch("/api/data?key=poll")
    body = await response.json()
    if not response.ok:
        raise ConnectionError(f"HTTP {response.status}")
    return {"calls": body["calls"]}


mesh = FlowMesh(param("channel", "lab-poll"), heartbeat=float(param("heartbeat", 1000)))
options: dict[str, Any] = {"polling": {"interval": float(param("interval", 300))}}
if param("persist"):
    options["persist_key"] = param("persist")
flow = use_flow(fetch_data, mesh=mesh, key="poll-data", **options)


def state() -> dict[str, Any]:
    driver = mesh._streams
    return {"data": flow.data, "status": flow.status, "source": flow.source, "stale": flow.stale,
            "polling": flow.polling, "leader": mesh.is_leader, "node_id": mesh.node_id,
            "pollers": len(mesh._node.streams.open_sources()) if driver is not None else 0}


js.window.firstState = js.JSON.parse(json.dumps(state()))


def render(_: Any = None) -> None:
    js.document.getElementById("state").textContent = json.dumps(state(), indent=1)


flow.subscribe(render)
render()


def js_start() -> None:
    asyncio.ensure_future(flow.execute())


def js_state() -> Any:
    return js.JSON.parse(json.dumps(state()))


proxies = [create_proxy(js_start), create_proxy(js_state)]
js.window.pollStart = proxies[0]
js.window.pollState = proxies[1]
js.window.pyflowmesh_ready = True
