"""The lab page: one pyflowmesh tab made for driving by tests and benchmarks.

``/lab/?<query>`` (this folder's ``index.html``) configures the tab; ``window.pfm`` drives it from JavaScript
(Playwright's ``page.evaluate``). Used by ``tests/browser/test_faults.py``.

Query parameters (all optional; durations in milliseconds):

==================  =============================================================
``channel``         the BroadcastChannel name (default ``lab``)
``heartbeat``       the mesh's heartbeat (default 1000)
``strategy``        ``leader-follower`` (default) or ``peer-to-peer``
``locks``           ``1`` (default) / ``0``: the mesh's ``use_locks``
``stale_time``, ``error_backoff``, ``max_error_backoff``, ``hidden_timeout``,
``request_timeout``, ``call_timeout``, ``max_entries``: the mesh options of those names
``wire``            ``1`` (default) / ``0``: ``window.labWire`` (``index.html``) records nothing
``via``             ``mesh`` (default): ``pfm.execute`` calls the mesh's ``execute_with_source``;
                    ``flow``: it calls ``Flow.execute``, which also follows the key (the
                    ``on_cache_update``/``on_error`` listeners a page's flow keeps)
``delay_ms``        how long the server sleeps before answering a flow's call (default 0)
``flows``           comma-separated flow keys this page registers (default ``data``):
                    a test can open a page that lacks a flow
``mesh``            ``1`` (default); ``0``: no mesh, every execute calls the API from
                    this tab (``use_flow(..., mesh=None)``), for comparisons
``protocol``        a protocol version to speak instead of ours (sets
                    ``pyflowmesh.core.wire.VERSION`` before the mesh starts): an "other
                    deploy" of the page, which must form its own mesh
``scope``           the mesh's ``scope`` (whose data the tab holds; default none: the
                    shared scope)
``trace``           ``0`` (default); ``1``: ``pfm.trace()`` lists, for each message that
                    reached the mesh (up to 2,000), ``performance.now()`` stamps taken
                    as Python got it (``start``), after the node took it in
                    (``received``: decode and protocol) and after its effects were
                    carried out (``flushed``: sends, futures resolved, listeners), with
                    the message's ``type`` and ``key``, and ``effects``: each effect's
                    type and the stamp after it was carried out; a Web Lock's grant
                    (another tab gone) is listed as a message of type ``peer_gone``;
                    for the follower-lag and failover benchmarks
``stamps``          ``1`` (default); ``0``: the mesh gets no wall clock, so its messages
                    carry no ``sent`` stamp and it adds no transit to the ages it receives
                    nor declines a late request: a page of pyflowmesh 0.1.0, for comparisons
==================  =============================================================

Every flow ``<key>`` calls ``../api/data?key=<key>&arg=<arg>&delay_ms=<delay_ms>`` with
``pyfetch`` (``arg``: a single str argument as is, otherwise the arguments as JSON)
and raises ``ConnectionError`` on a non-OK answer. Its data is the server's JSON
(``value``, ``calls``, ``args``, ``user``: the ``user`` cookie the server saw) plus
``fetched_by``: the node ID of the tab that called.

``window.pfm``, for tests (every return value is plain JS data, never a PyProxy):

* ``execute(flow, ...args)``: a real ``Promise`` (never rejected) of ``{ok, data, error,
  error_type, retry_in, source, started, ended, started_wall, ended_wall}``;
  ``started``/``ended`` are ``performance.now()``, the ``*_wall`` ones ``Date.now()``
  (comparable across tabs); ``source`` is ``call``, ``mesh`` or ``cache``.
* ``state()``: ``{node_id, role, leader, leader_id, term, stats, disposed, live_proxies,
  transport_sent, hidden, mesh, protocol_version, config}``, and ``lock``: the Web Lock this
  tab's member holds while it lives (``None`` without Web Locks), which a benchmark watches for
  the moment the browser frees a crashed tab's locks.
* ``state("memory")``: what this tab holds now, after a ``gc.collect()``: ``{wasm_bytes``
  (Pyodide's WebAssembly memory), ``gc_objects`` (Python objects the collector tracks),
  ``live_proxies`` (the transport's PyProxies), ``lab_proxies``, and the sizes of the
  mesh's bounded structures: ``cache_entries``, ``marks``, ``listeners``, ``pending``,
  ``drop_reasons}``; for the soak benchmark (``bench/soak_browser.py``).
* ``dispose()``: leaves the mesh (``FlowMesh.dispose``); returns ``state()``.
* ``set_scope(scope, forget)``: ``FlowMesh.set_scope`` (``null``: the shared scope);
  returns ``{ok, error, state, wall}`` (``wall``: ``Date.now()`` when it returned).
* ``seen()``: what reached this tab's listeners, in order: ``{what, flow, status, user,
  scope, wall}`` per entry; ``what`` is ``cache`` (``on_cache_update`` of a flow's key
  without arguments; ``user`` is the data's), ``flow`` (a flow's subscribers were told:
  ``status``) or ``scope`` (``on_scope_change``).
* ``events()``: this tab's view of the leader over time: ``{leader, role, term, at,
  wall}`` per change (``at``: ``performance.now()``, ``wall``: ``Date.now()``); the
  first entry is the start.
* ``trace()``: with ``?trace=1``, the stamps of the messages that reached the mesh (see
  ``trace`` above); else ``[]``.
* ``set_wake(microtask)``: sets ``pyflowmesh.mesh.WAKE_IN_MICROTASK`` for the executes that
  start from now on (``false``: each waiting execute wakes in a task of its own, as asyncio's
  ``call_soon`` does; the follower-lag benchmark compares both in the same tabs).
* ``post(raw)``: puts ``raw`` (any structured-clone value) on the mesh's channel from
  this page through a separate ``BroadcastChannel``, as a foreign script would.

``window.pyflowmesh_ready`` becomes ``true`` last, when all of this is in place.

Pyodide 314.0.7 and promises (measured in a page): a Python ``async def`` exposed with
``create_proxy`` and called from JS returns a PyProxy of the coroutine, not a
``Promise``: it is thenable (``await`` works) but single-use (it was found
destroyed right after its ``then`` had been looked up), and what it resolves to is
a PyProxy of the Python result (a dict stays a PyProxy that leaks until someone
calls ``destroy()``). An ``asyncio`` future returns a
thenable ``PyodideFuture`` PyProxy, again not a ``Promise``. JS ``null`` arrives in
Python as ``pyodide.ffi.jsnull`` (neither ``None`` nor a ``JsProxy``). So ``pfm``
returns only JS values: ``execute`` builds a ``js.Promise`` whose executor is a
``create_once_callable`` (destroyed after its one call) and resolves it from an
asyncio task with an object made by ``JSON.parse``; the nine functions of ``pfm``
are the page's only long-lived PyProxies besides the mesh's own
(``window.lab_proxies`` counts them).
"""

from __future__ import annotations

import asyncio
import gc
import json
from collections.abc import Callable
from typing import Any
from urllib.parse import quote

import js
from pyodide.ffi import JsProxy, create_once_callable, create_proxy
from pyodide.http import pyfetch

import pyflowmesh
import pyflowmesh.core.wire
import pyflowmesh.mesh
from pyflowmesh import FlowMesh, SharedFlowError, use_flow
from pyflowmesh.core.values import cache_key
from pyflowmesh.transports import lock_name

js.performance.mark("lab:imported")  # cold-start stamps (bench/startup_bench.py): the page's imports are done

params = js.URLSearchParams.new(js.location.search)


def param(name: str, default: Any = None, kind: Any = str) -> Any:
    # URLSearchParams.get gives JS null for a missing name, which Pyodide 314 hands to
    # Python as pyodide.ffi.jsnull, not None: ask has() instead.
    if not params.has(name) or params.get(name) == "":
        return default
    return kind(params.get(name))


CHANNEL = param("channel", "lab")
DELAY_MS = param("delay_ms", 0, int)
FLOW_KEYS = [key.strip() for key in param("flows", "data").split(",") if key.strip()]
USE_MESH = param("mesh", "1") != "0"
VIA_FLOW = param("via", "mesh") == "flow"
PROTOCOL = param("protocol", None, int)
SCOPE = param("scope", None)
if PROTOCOL is not None:
    pyflowmesh.core.wire.VERSION = PROTOCOL  # encode() and decode() read it at each call
if param("stamps", "1") == "0":
    pyflowmesh.mesh._wall_clock = None  # type: ignore[assignment]  # FlowMesh passes it to each MeshNode it makes

options: dict[str, Any] = {
    "heartbeat": param("heartbeat", 1000.0, float),
    "strategy": param("strategy", "leader-follower"),
    "use_locks": param("locks", "1") != "0",
}
for name in ("stale_time", "error_backoff", "max_error_backoff", "hidden_timeout", "request_timeout",
             "call_timeout"):
    if param(name) is not None:
        options[name] = param(name, kind=float)
if param("max_entries") is not None:
    options["max_entries"] = param("max_entries", kind=int)
if options.get("error_backoff", 0) > options.get("max_error_backoff", 30_000):
    options["max_error_backoff"] = options["error_backoff"]

mesh = FlowMesh(CHANNEL, scope=SCOPE, **options) if USE_MESH else None
js.window.lab_node_id = mesh.node_id if mesh else None
js.performance.mark("lab:mesh")  # the mesh has joined (its first election is under way)


def make_fetch(key: str):
    async def fetch(*args: Any) -> dict:
        arg = args[0] if len(args) == 1 and isinstance(args[0], str) else json.dumps(list(args))
        response = await pyfetch(f"../api/data?key={quote(key)}&arg={quote(arg)}&delay_ms={DELAY_MS}")
        body = await response.json()
        if not response.ok:
            raise ConnectionError(f"HTTP {response.status}: {body.get('error', 'server error')}")
        return {**body, "fetched_by": mesh.node_id if mesh else None}

    fetch.__qualname__ = f"lab.{key}"
    return fetch


flows = {key: use_flow(make_fetch(key), mesh=mesh, key=key) for key in FLOW_KEYS}


def now() -> tuple[float, float]:
    return js.performance.now(), js.Date.now()


def to_js_data(value: Any) -> Any:
    """Plain JS data (no PyProxy anywhere inside); what JSON cannot say becomes its repr."""
    return js.JSON.parse(json.dumps(value, default=repr))


def from_js(value: Any) -> Any:
    return value.to_py() if isinstance(value, JsProxy) else value


# --- leader changes, as this tab saw them ------------------------------------------------

events: list[dict[str, Any]] = []


def record_event(leader: str | None = None, start: bool = False) -> None:
    at, wall = now()
    if mesh is not None:
        events.append({"leader": mesh.leader_id, "role": mesh.role, "term": mesh.term, "at": at, "wall": wall,
                       "start": start})
    render()


# --- the JS API ---------------------------------------------------------------------------

_tasks: set[asyncio.Task[None]] = set()


def state() -> dict[str, Any]:
    if mesh is None:
        return {"node_id": None, "role": "none", "leader": False, "leader_id": None, "term": 0, "stats": {},
                "disposed": False, "live_proxies": 0, "transport_sent": 0, "hidden": False, "mesh": False,
                "protocol_version": pyflowmesh.core.wire.VERSION, "config": {"flows": FLOW_KEYS}}
    transport = mesh.transport
    return {
        "node_id": mesh.node_id, "role": mesh.role, "leader": mesh.is_leader, "leader_id": mesh.leader_id,
        "term": mesh.term, "stats": mesh.stats.as_dict(), "disposed": mesh.disposed,
        "live_proxies": getattr(transport, "live_proxies", None), "transport_sent": getattr(transport, "sent", None),
        "hidden": js.document.visibilityState == "hidden", "mesh": True, "scope": mesh.scope,
        "peers": mesh.peers, "successor": mesh.successor, "members": [[m.node_id, m.role] for m in mesh.members],
        "lock": (lock_name(CHANNEL, mesh.node_id, mesh._node.scope_digest)
                 if getattr(transport, "peers", None) is not None else None),  # Web Locks in use
        "protocol_version": pyflowmesh.core.wire.VERSION,
        "config": {**{k: v for k, v in options.items()}, "flows": FLOW_KEYS, "delay_ms": DELAY_MS,
                   "stamps": mesh._node.wall() is not None,
                   "silence_limit": mesh.config.silence_limit(mesh.config.heartbeat, False),
                   "answer_timeout": mesh.config.answer_timeout,
                   "request_timeout": mesh.config.effective_request_timeout},
    }


async def run_execute(key: str, args: tuple[Any, ...], resolve: Any) -> None:
    started, started_wall = now()
    outcome: dict[str, Any] = {"ok": False, "data": None, "error": None, "error_type": None, "retry_in": None,
                               "source": None, "flow": key, "args": list(args)}
    try:
        flow = flows.get(key)
        if flow is None:
            raise LookupError(f"this lab page has no flow {key!r} (flows={','.join(FLOW_KEYS)})")
        if flow.mesh is not None and VIA_FLOW:
            data = await flow.execute(*args)
            source = flow.source
        elif flow.mesh is not None:
            data, source = await flow.mesh.execute_with_source(flow.key, *args)
        else:
            data, source = await flow.execute(*args), "call"
        outcome.update(ok=True, data=data, source=source)
    except BaseException as error:  # never reject, whatever happens (cancellation too)
        outcome.update(error=f"{type(error).__name__}: {error}", error_type=type(error).__name__)
        if isinstance(error, SharedFlowError):
            outcome["retry_in"] = error.retry_in
        js.console.warn(f"lab: execute {key}{list(args)} failed: {type(error).__name__}: {error}")
    ended, ended_wall = now()
    outcome.update(started=started, ended=ended, started_wall=started_wall, ended_wall=ended_wall)
    try:
        payload = to_js_data(outcome)
    except Exception as error:  # the promise must settle whatever the outcome holds
        payload = to_js_data({**outcome, "ok": False, "data": None, "error": f"lab: unreportable outcome: {error!r}"})
    resolve(payload)
    render(outcome)


def js_execute(key: Any, *args: Any) -> Any:
    resolver: list[Any] = []
    promise = js.Promise.new(create_once_callable(lambda resolve, reject: resolver.append(resolve)))
    task = asyncio.ensure_future(run_execute(from_js(key), tuple(from_js(a) for a in args), resolver[0]))
    _tasks.add(task)
    task.add_done_callback(_tasks.discard)
    return promise


def js_state(part: Any = None) -> Any:
    # state("memory") rather than a sixth function: the page keeps its five PyProxies.
    return to_js_data(memory() if from_js(part) == "memory" else state())


def wasm_bytes() -> int | None:
    """The size of Pyodide's WebAssembly memory (it grows, and never shrinks)."""
    try:
        import pyodide_js

        module = pyodide_js._module
        for read in (lambda: module.HEAPU8.length, lambda: module.wasmMemory.buffer.byteLength):
            try:
                return int(read())
            except Exception:
                continue
    except Exception:
        pass
    return None


def memory() -> dict[str, Any]:
    gc.collect()
    # (sys.getallocatedblocks() says 0 under Pyodide 314: no pymalloc; so objects are counted.)
    out: dict[str, Any] = {"wasm_bytes": wasm_bytes(), "gc_objects": len(gc.get_objects()),
                           "lab_proxies": len(lab_proxies)}
    if mesh is not None:
        node = mesh._node
        out.update(live_proxies=getattr(mesh.transport, "live_proxies", None), cache_entries=len(node.cache),
                   marks=node.cache.marks, pending=len(node.pending_keys()),
                   listeners=len(mesh._cache_listeners) + len(mesh._error_listeners),
                   drop_reasons=len(mesh.stats.drop_reasons))
    return out


def js_dispose() -> Any:
    if mesh is not None:
        mesh.dispose()
    record_event()
    return js_state()


def js_events() -> Any:
    return to_js_data(events)


# --- what reached this tab's listeners (scope switches must never let the old scope's through)

seen: list[dict[str, Any]] = []


def record_seen(what: str, **entry: Any) -> None:
    seen.append({"what": what, "scope": mesh.scope if mesh else None, "wall": js.Date.now(), **entry})


def js_set_scope(scope: Any = None, forget: Any = False) -> Any:
    scope = from_js(scope)
    if not isinstance(scope, str):
        scope = None  # JS null or undefined (Pyodide's jsnull is neither None nor a str)
    outcome: dict[str, Any] = {"ok": True, "error": None}
    try:
        if mesh is None:
            raise RuntimeError("this lab page has no mesh (mesh=0)")
        mesh.set_scope(scope, forget=bool(forget))
    except Exception as error:
        outcome.update(ok=False, error=f"{type(error).__name__}: {error}")
    outcome.update(state=state(), wall=js.Date.now())
    record_event()
    return to_js_data(outcome)


def js_seen() -> Any:
    return to_js_data(seen)


# --- optional stamps of each message's way through this tab's member (?trace=1) ---------------

TRACE = param("trace", "0") == "1"
TRACE_LIMIT = 2000
trace: list[tuple[float, float, float, Any, list[Any]]] = []  # (start, received, flushed, the raw data, effects)
applied: list[Any] = []  # [effect type, performance.now() when carried out] of the message being traced

if TRACE and mesh is not None:
    untraced_apply = mesh._apply

    def traced_apply(effect: Any, waiters: Any, node: Any) -> None:
        """FlowMesh._apply, noting when each effect was carried out."""
        untraced_apply(effect, waiters, node)
        applied.append([type(effect).__name__, js.performance.now()])

    mesh._apply = traced_apply  # type: ignore[method-assign]

    def traced(step: Callable[[], None], data: Any) -> None:
        """One input of the member, as ``FlowMesh._take_input`` takes it (``step``: the node takes
        it in), then its effects, with a stamp before, between and after (the executes it resolved
        wake after that); ``data`` is what the trace shows of it."""
        assert mesh is not None
        start = js.performance.now()
        if mesh._disposed:
            return
        outermost = mesh._begin_input()
        try:
            step()
            received = js.performance.now()
            applied.clear()
            mesh._flush()
            if len(trace) < TRACE_LIMIT:
                trace.append((start, received, js.performance.now(), data, list(applied)))
        finally:
            mesh._end_input(outermost)

    def traced_on_message(data: Any) -> None:
        """FlowMesh._on_message, with a stamp after each of its two steps."""
        assert mesh is not None
        traced(lambda: mesh._node.receive(data, mesh._now()), data)

    mesh._on_message = traced_on_message  # type: ignore[method-assign]  # _Events calls it by name

    def traced_on_peer_gone(node_id: str) -> None:
        """FlowMesh._on_peer_gone (a Web Lock granted: that tab is gone), traced as a message would be."""
        assert mesh is not None
        traced(lambda: mesh._node.peer_gone(node_id, mesh._now()), json.dumps({"type": "peer_gone", "src": node_id}))

    mesh._on_peer_gone = traced_on_peer_gone  # type: ignore[method-assign]


gc_runs: list[list[float]] = []  # with ?trace=1: [generation, start, end] of each collection (performance.now())

if TRACE:

    def note_gc(phase: str, info: dict[str, Any]) -> None:
        if phase == "start":
            gc_runs.append([info["generation"], js.performance.now(), 0.0])
        elif gc_runs:
            gc_runs[-1][2] = js.performance.now()
        del gc_runs[:-200]

    gc.callbacks.append(note_gc)


def js_trace() -> Any:
    out = []
    for start, received, flushed, data, effects in trace:
        try:
            message = json.loads(data) if isinstance(data, str) else {}
        except ValueError:
            message = {}
        out.append({"start": start, "received": received, "flushed": flushed,
                    "type": message.get("type"), "key": message.get("key"), "src": message.get("src"),
                    "effects": effects})
    for generation, start, end in gc_runs:
        out.append({"start": start, "received": end, "flushed": end, "type": f"gc{generation}", "effects": []})
    return to_js_data(sorted(out, key=lambda entry: entry["start"]))


def js_set_wake(microtask: Any) -> None:
    pyflowmesh.mesh.WAKE_IN_MICROTASK = bool(from_js(microtask))


def js_post(raw: Any) -> None:
    # A second object, so the mesh's channel receives what it posts; opened per post, since
    # an open channel that a message reaches evicts the page from the back/forward cache.
    poster = js.BroadcastChannel.new(CHANNEL)
    poster.postMessage(raw)  # a JsProxy goes back as the JS value it wraps
    poster.close()  # what it posted is on its way already


# What render() will show, and whether a render is already scheduled.
_shown: dict[str, Any] = {"last": None, "scheduled": False}
RENDER_DELAY_MS = 250


def render(last: dict[str, Any] | None = None) -> None:
    """Show the state (and the last outcome) on the page, at most once per RENDER_DELAY_MS.

    Rendering is for screenshots only. It used to run in the very listener or execute that
    changed the state: a few ms of Python per change (json.dumps of the state, two DOM
    writes), which on two cores shared by many tabs delayed the next tab's handling of the
    same message, so the lab's own drawing showed in the hand-over and lag figures. Now it
    runs in a browser task of its own, after the burst.
    """
    if last is not None:
        _shown["last"] = last
    if not _shown["scheduled"]:
        _shown["scheduled"] = True
        js.setTimeout(create_once_callable(_render_now), RENDER_DELAY_MS)


def _render_now() -> None:
    _shown["scheduled"] = False
    try:
        js.document.getElementById("state").textContent = json.dumps(state(), indent=1)
        if _shown["last"] is not None:
            js.document.getElementById("last").textContent = json.dumps(_shown["last"], indent=1)[:4000]
    except Exception as error:  # rendering is for screenshots only; never break the lab
        js.console.warn(f"lab: render failed: {error!r}")


api = js.Object.new()
lab_proxies = []
for name, function in (("execute", js_execute), ("state", js_state), ("dispose", js_dispose),
                       ("events", js_events), ("post", js_post), ("set_scope", js_set_scope), ("seen", js_seen),
                       ("trace", js_trace), ("set_wake", js_set_wake)):
    proxy = create_proxy(function)  # lives as long as the page: window.pfm is the lab's interface
    lab_proxies.append(proxy)
    setattr(api, name, proxy)
js.window.pfm = api
js.window.lab_proxies = len(lab_proxies)

if mesh is not None:
    mesh.on_leader_change(record_event)
    mesh.on_scope_change(lambda scope: record_seen("scope"))
    for flow_key, flow in flows.items():
        mesh.on_cache_update(
            cache_key(flow_key, ()),
            lambda value, k=flow_key: record_seen("cache", flow=k, user=value.get("user")),
        )
        flow.subscribe(lambda f: record_seen("flow", flow=f.key, status=f.status))
record_event(start=True)
js.window.pyflowmesh_ready_ms = round(js.performance.now())
js.window.pyflowmesh_ready = True
