"""The pyflowmesh demo page: one flow shared by every open tab, and what the mesh is doing.

Each tab executes ``fetch_dashboard`` on load. The leader calls the API ("Fetching
API..."); the followers wait for its result ("Waiting cache..."). The server's
call counter shows that five tabs cost one call, and its failure switch shows an
outage reaching every tab at once.

"Increment" is a mutation: this tab alone POSTs to the server (never deduplicated), then
the flow ``dashboard`` is invalidated in every tab, and the tabs showing it refetch it,
with one call for the whole mesh: every tab's counter goes up.

The "tabs this tab knows" list is the mesh's own: ``mesh.members``, redrawn by
``mesh.on_change`` whenever a tab joins or leaves or the crown moves.
"""

import asyncio
import json
import time

import js
from pyodide.ffi import create_proxy
from pyodide.http import pyfetch
from pyscript import document, window

import pyflowmesh
from pyflowmesh import FlowMesh, SharedFlowError, Stream, use_flow, use_stream
from pyflowmesh.sources import event_source

CHANNEL = "pyflowmesh-demo"
# An inline crown: emoji fonts are not everywhere (headless Chromium on a server has none).
CROWN = (
    '<svg class="crown" viewBox="0 0 24 18" width="18" height="14" aria-label="leader">'
    '<path d="M1 5l5 5 6-9 6 9 5-5-2 12H3z" fill="#e0a100" stroke="#6b4b00" stroke-width="1.2"/></svg>'
)
params = js.URLSearchParams.new(window.location.search)
HEARTBEAT = float(params.get("heartbeat") or 2000)
DELAY_MS = int(params.get("delay_ms") or 800)
STALE_MS = float(params.get("stale_ms") or 15_000)  # how long a result is served without a call

mesh = FlowMesh(channel=CHANNEL, heartbeat=HEARTBEAT, stale_time=STALE_MS, error_backoff=3000)
fetching_here = False


async def fetch_dashboard() -> dict:
    """The API call the mesh shares: only the tab that runs it hits the server."""
    global fetching_here
    fetching_here = True
    render()
    try:
        response = await pyfetch(f"./api/data?key=dashboard&delay_ms={DELAY_MS}")
        body = await response.json()
        if not response.ok:
            raise ConnectionError(f"HTTP {response.status}: {body.get('error', 'server error')}")
        return {"value": body["value"], "api_call": body["calls"], "counter": body["counter"],
                "fetched_by": mesh.node_id, "at": time.strftime("%H:%M:%S")}
    finally:
        fetching_here = False


flow = use_flow(fetch_dashboard, mesh=mesh, key="dashboard")


async def increment_counter() -> dict:
    """A mutation: the server's counter goes up. Called in this tab, every time."""
    response = await pyfetch("./api/increment", method="POST")
    body = await response.json()
    if not response.ok:
        raise ConnectionError(f"HTTP {response.status}: {body.get('error', 'server error')}")
    return body


increment = use_flow(increment_counter, mesh=mesh, key="increment", mutation=True, invalidates=["dashboard"])


def el(element_id: str):
    return document.getElementById(element_id)


def render(*_: object) -> None:
    role = "leader" if mesh.is_leader else ("follower" if mesh.leader_id else mesh.role)
    el("role").className = f"role {role}"
    el("role").innerHTML = (
        f'<span class="badge">{CROWN} Leader</span>' if mesh.is_leader else f'<span class="badge">{role.capitalize()}</span>'
    )
    el("node-id").textContent = mesh.node_id
    el("leader-id").textContent = mesh.leader_id or "(electing…)"
    el("term").textContent = str(mesh.term)
    status = el("status")
    if flow.status == "loading":
        status.textContent = "Fetching API..." if fetching_here else "Waiting cache..."
    elif flow.status == "error":
        status.textContent = f"Error: {flow.error}"
    else:
        status.textContent = flow.status
    status.className = f"status {flow.status}"
    if flow.data is not None:
        el("counter").textContent = str(flow.data.get("counter", "…"))
        el("data").textContent = json.dumps(flow.data, indent=2)
        where = {
            "call": "fetched here (this tab called the API)",
            "mesh": f"received from the mesh (tab {flow.data.get('fetched_by')} called the API)",
            "cache": f"served from the shared cache (fetched by tab {flow.data.get('fetched_by')})",
        }
        el("source").textContent = "Data " + where.get(flow.source or "", "")
    if increment.status == "loading":
        el("increment-status").textContent = "Saving…"
    elif increment.status == "error":
        el("increment-status").textContent = f"Save failed: {increment.error}"
    elif increment.status == "success":
        el("increment-status").textContent = f"Saved here (counter {increment.data['counter']}); every tab refetches"
    stats = mesh.stats
    el("stats").textContent = (
        f"messages sent {stats.sent}, received {stats.received}, dropped {stats.dropped}; "
        f"elections {stats.elections}; calls here {stats.calls}; served by the mesh {stats.served_by_mesh}"
    )
    window.pyflowmesh_state = js.JSON.parse(json.dumps(state()))


def state() -> dict:
    """What the page shows, for tests and the curious (window.pyflowmesh_state)."""
    return {
        "node_id": mesh.node_id, "role": mesh.role, "leader": mesh.is_leader, "leader_id": mesh.leader_id,
        "term": mesh.term, "status": flow.status, "source": flow.source, "data": flow.data,
        "error": None if flow.error is None else f"{type(flow.error).__name__}: {flow.error}",
        "stats": mesh.stats.as_dict(), "version": pyflowmesh.__version__, "peers": mesh.peers,
        "members": [[m.node_id, m.role] for m in mesh.members],
        "increment": {
            "status": increment.status, "data": increment.data,
            "error": None if increment.error is None else f"{type(increment.error).__name__}: {increment.error}",
        },
    }


async def execute() -> None:
    try:
        await flow.execute()
    except SharedFlowError as error:
        js.console.warn(f"pyflowmesh demo: the mesh shared a failure: {error}")
    except Exception as error:
        js.console.error(f"pyflowmesh demo: fetch_dashboard failed here: {type(error).__name__}: {error}")


async def refresh() -> None:
    flow.invalidate()
    await execute()


async def save_increment() -> None:
    try:
        await increment.execute()
    except Exception as error:
        js.console.error(f"pyflowmesh demo: the increment failed: {type(error).__name__}: {error}")


async def set_server_failing(on: bool) -> None:
    await pyfetch(f"./api/fail?on={1 if on else 0}", method="POST")
    await poll_server()


async def poll_server() -> None:
    try:
        stats = await (await pyfetch("./api/stats")).json()
    except Exception:
        return
    el("api-calls").textContent = str(stats["calls"])
    try:
        feed = await (await pyfetch("./api/stream/stats")).json()
        el("stream-connections").textContent = str(feed["sse_open"] + feed["ws_open"])
    except Exception:
        pass
    el("server-state").innerHTML = (
        '<span class="down">Failing: every call answers HTTP 503</span>' if stats["failing"]
        else '<span class="up">Healthy</span>'
    )


# --- the "tabs this tab knows" list: the mesh's members --------------------------------------


def render_tabs(change=None) -> None:
    members = mesh.members
    el("tabs").innerHTML = "".join(
        f'<li class="{"self" if m.is_self else ""}">{CROWN + " " if m.role == "leader" else ""}'
        f'<code>{m.node_id}</code> {m.role}{" (this tab)" if m.is_self else ""}</li>'
        for m in members
    )
    el("tab-count").textContent = str(len(members))


async def heartbeat_loop() -> None:
    while not mesh.disposed:
        render_tabs()
        render()
        await poll_server()
        await asyncio.sleep(1)


proxies = []


def on_pagehide(event) -> None:
    for proxy in proxies:
        proxy.destroy()


proxies.append(create_proxy(on_pagehide))
window.addEventListener("pagehide", proxies[-1])


def bind(button_id: str, action) -> None:
    proxy = create_proxy(lambda event: asyncio.ensure_future(action()))
    proxies.append(proxy)
    el(button_id).addEventListener("click", proxy)
    el(button_id).disabled = False


# --- the live feed: one EventSource for the whole mesh, held by the leader ----------------------
live = use_stream(event_source("./api/stream"), mesh=mesh, key="live-feed")
live_log: list[str] = []


def render_live(stream: Stream) -> None:
    status = el("live-status")
    status.className = f"status {stream.status}"
    status.textContent = stream.status + (f": {stream.error}" if stream.error else "")
    if isinstance(stream.latest, dict) and "value" in stream.latest:
        el("live-value").textContent = f"{stream.latest['value']:.2f}"


async def follow_live() -> None:
    async for event in live:  # every event from now on, in order: the log never skips one
        source = "this tab" if mesh.is_leader else "the leader"
        live_log.append(f"#{event.id}  {event.data.get('value', '?'):>7}  (via {source})")
        del live_log[:-8]
        el("live-log").textContent = "\n".join(reversed(live_log))


live.subscribe(render_live)
render_live(live)
asyncio.ensure_future(follow_live())

bind("execute", execute)
bind("refresh", refresh)
bind("increment", save_increment)
bind("fail", lambda: set_server_failing(True))
bind("recover", lambda: set_server_failing(False))
flow.subscribe(render)
increment.subscribe(render)
mesh.on_leader_change(render)
mesh.on_change(render_tabs)
render_tabs()
render()
el("app").dataset.ready = "true"
window.pyflowmesh_ready = True
asyncio.ensure_future(heartbeat_loop())
asyncio.ensure_future(execute())
