#!/usr/bin/env python3
"""Demo and test server for pyflowmesh: serves the site in ``web/`` plus a small JSON API.

The site is the folder ``web/`` as it stands, except that its root shows the demo:

- ``/`` (``/index.html``, ``/demo.py``, ``/demo.css``): ``web/demo/``, the product demo;
- ``/lab/`` (``/lab/?channel=...``, ``/lab/smoke.html``): ``web/lab/``, the pages that
  tests and benchmarks drive;
- ``/pyodide-nojspi.mjs``, ``/vendor/``, ``/wheels/``: the runtime every page shares
  (``vendor/`` and ``wheels/`` are written by ``./build.sh build``).

So a path whose first segment names an entry of ``web/`` (other than ``demo``) is served
from ``web/``, and any other path from ``web/demo/``.

Files are served with the MIME types browsers insist on
(``.mjs`` as JavaScript, ``.wasm`` as ``application/wasm``). Pages get
``Cache-Control: no-store`` (``server.cache_control``; tests of the back/forward cache set
it to ``"no-cache"``: ``no-store`` keeps pages out of that cache). The runtime every page
shares (``/vendor/``, ``/wheels/``, ``/pyodide-nojspi.mjs``: megabytes) gets ``no-cache``
(``RUNTIME_CACHE_CONTROL``): the browser keeps it and asks each time whether it changed
(``If-Modified-Since``: a 304 for an unchanged file, so a rebuilt wheel is never served
stale), and Chromium keeps the compiled WebAssembly of ``pyodide.asm.wasm`` in its code
cache for the next visit, which it never does for a ``no-store`` response.

The API lets tests see how often "the backend" was really called:

- ``GET  /api/data?key=...&delay_ms=N`` -> ``{"value", "calls", "args", "user", "counter"}``;
  counts every call (failed ones too); sleeps ``delay_ms`` first (max 30 s).
  ``user`` is the value of the ``user`` cookie when the request arrived (``null``
  without one): the server answers as whoever is "logged in", as a real one does
  with a session cookie that every tab of the browser shares.
  In failure mode it answers HTTP 503 with ``{"error", "calls", "args", "user"}``.
  ``counter`` is the value ``/api/increment`` changes (the data a mutation makes old).
- ``POST /api/increment`` -> ``{"counter", "increments"}``: a mutation (the demo's
  "Increment" button): the counter goes up by one; not counted in ``calls``. In failure
  mode it answers HTTP 503 and changes nothing.
- ``GET  /api/stats``  -> ``{"calls": n, "failing": bool, "counter": n, "increments": n}``
- ``POST /api/fail``   -> switch failure mode: query ``?on=1``/``?on=0`` or a
  body ``on=1`` / ``{"on": true}``; no value means on. Answers the stats.
- ``POST /api/reset``  -> the call count, the counter and the increments to 0, failure mode
  off. Answers the stats.

And a live feed for shared streams (``use_stream``), the same events on two transports:

- ``GET  /api/stream?lastEventId=N``: server-sent events (``text/event-stream``), one per
  ``period`` (1 s by default; tests set ``server.feed.period``): ``id: <n>`` and ``data: {"id", "value", "time"}``. The
  resume point is the ``lastEventId`` query parameter (what ``EventSource`` cannot put in a
  header on a new connection) or the ``Last-Event-ID`` header: the connection starts with
  event ``N + 1`` (replaying what was produced since, up to ``REPLAY`` events); without
  one, with the latest event.
- ``ws://<host>:<ws_port>/stream?lastEventId=N``: the same events over a real WebSocket
  server (the ``websockets`` package), one text message ``{"id", "data"}`` each.
- ``GET  /api/stream/stats`` -> ``{"sse_open", "ws_open", "sse_opened", "ws_opened",
  "events_sent", "latest", "resumes", "down", "ws_url"}``: open connections now, ever
  opened, events written, and the resume points asked for (the last 100).
- ``POST /api/stream/down?on=1|0``: drop every stream connection and refuse new ones
  (HTTP 503; the WebSocket closes at once) until ``on=0``: a restarting server.
- ``POST /api/stream/reset``: the counters of connections opened, events sent and resumes
  to 0 (the open connections stay, and stay counted).

Run it: ``python3 tools/server.py [--host 127.0.0.1] [--port 8000]`` (``./build.sh demo``
builds first, then runs it).
From tests: ``server, thread = start_server("127.0.0.1", 0)``; then
``server.url``, ``server.api.calls``, ``server.api.reset()``, ``server.feed`` (the
stream counters), ``server.ws_url``, and finally ``stop_server(server, thread)``.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import threading
import time
from http import HTTPStatus
from http.cookies import CookieError, SimpleCookie
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

WEB_DIR = Path(__file__).resolve().parents[1] / "web"
DEMO_ROOM = "demo"  # the folder of web/ whose files the site's root serves
MAX_DELAY_MS = 30_000

MIME_TYPES = {
    ".html": "text/html; charset=utf-8",
    ".js": "text/javascript; charset=utf-8",
    ".mjs": "text/javascript; charset=utf-8",
    ".css": "text/css; charset=utf-8",
    ".json": "application/json",
    ".map": "application/json",
    ".wasm": "application/wasm",
    ".whl": "application/zip",
    ".zip": "application/zip",
    ".tar": "application/x-tar",
    ".py": "text/plain; charset=utf-8",
    ".toml": "text/plain; charset=utf-8",
    ".txt": "text/plain; charset=utf-8",
    ".svg": "image/svg+xml",
    ".png": "image/png",
    ".ico": "image/x-icon",
}


REPLAY = 10_000  # events a resuming connection may ask to have replayed


class StreamFeed:
    """The live feed: event ``n`` is produced at ``start + n * period``; connections counted."""

    def __init__(self, period: float = 1.0) -> None:
        self.period = period
        self.start = time.monotonic()
        self.lock = threading.Lock()
        self.down = False
        self.generation = 0  # bumped when the feed goes down: open connections end
        self.sse_open = self.ws_open = 0
        self.reset()

    def reset(self) -> None:
        """Counters to 0; the open connections stay counted (they end by themselves later)."""
        with self.lock:
            self.sse_opened = self.ws_opened = 0
            self.events_sent = 0
            self.resumes: list[Any] = []

    def latest(self) -> int:
        return int((time.monotonic() - self.start) / self.period)

    def event(self, n: int) -> dict[str, Any]:
        return {"id": n, "value": round(100 + 10 * math.sin(n / 10), 2), "time": self.start + n * self.period}

    def first_id(self, resume: str | None) -> int:
        """The first event a connection resuming from ``resume`` gets (``None``: the latest)."""
        latest = self.latest()
        if resume is None or resume == "":
            return max(1, latest)
        try:
            after = int(resume)
        except ValueError:
            return max(1, latest)
        return max(after + 1, latest - REPLAY + 1, 1)

    def opened(self, kind: str, resume: str | None) -> int:
        with self.lock:
            setattr(self, f"{kind}_opened", getattr(self, f"{kind}_opened") + 1)
            setattr(self, f"{kind}_open", getattr(self, f"{kind}_open") + 1)
            self.resumes = [*self.resumes[-99:], resume]
            return self.generation

    def closed(self, kind: str) -> None:
        with self.lock:
            setattr(self, f"{kind}_open", getattr(self, f"{kind}_open") - 1)

    def sent(self) -> None:
        with self.lock:
            self.events_sent += 1

    def set_down(self, down: bool) -> None:
        with self.lock:
            self.down = down
            if down:
                self.generation += 1

    def events(self, first: int, generation: int) -> Any:
        """Yield events ``first``, ``first + 1``, ... as they are produced, until the feed goes down."""
        n = first
        while self.generation == generation and not self.down:
            if n <= self.latest():
                yield self.event(n)
                n += 1
            else:
                time.sleep(max(0.0, min(0.05, self.start + n * self.period - time.monotonic())))

    def stats(self) -> dict[str, Any]:
        with self.lock:
            return {"sse_open": self.sse_open, "ws_open": self.ws_open, "sse_opened": self.sse_opened,
                    "ws_opened": self.ws_opened, "events_sent": self.events_sent, "latest": self.latest(),
                    "resumes": list(self.resumes), "down": self.down}


def start_websocket_server(feed: StreamFeed, host: str, port: int = 0) -> Any:
    """The feed's WebSocket endpoint (``/stream``) on its own port, from the ``websockets`` package;
    ``None`` if that is not installed. Its ``serve_forever`` runs in a daemon thread."""
    try:
        from websockets.exceptions import ConnectionClosed
        from websockets.sync.server import serve
    except ImportError:
        return None

    def handler(connection: Any) -> None:
        url = urlsplit(connection.request.path)
        if url.path != "/stream":
            connection.close(4004, "no such stream")
            return
        if feed.down:
            connection.close(1013, "the feed is down")
            return
        resume = parse_qs(url.query).get("lastEventId", [None])[-1]
        generation = feed.opened("ws", resume)
        try:
            for event in feed.events(feed.first_id(resume), generation):
                connection.send(json.dumps({"id": event["id"], "data": event}))
                feed.sent()
            connection.close(1012, "the feed restarts")
        except ConnectionClosed:
            pass
        finally:
            feed.closed("ws")

    server = serve(handler, host, port)
    threading.Thread(target=server.serve_forever, name="pyflowmesh-ws-server", daemon=True).start()
    return server


class ApiState:
    """The API's counter and failure switch, shared by all handler threads."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.calls = 0
        self.failing = False
        self.counter = 0  # what /api/increment changes and /api/data reports
        self.increments = 0  # successful increments (a mutation each)

    def next_call(self) -> tuple[int, bool, int]:
        """Count a data call: its number, whether it fails, and the counter it reports."""
        with self._lock:
            self.calls += 1
            return self.calls, self.failing, self.counter

    def increment(self) -> dict[str, Any] | None:
        """The counter goes up by one (``None``, and no change, in failure mode)."""
        with self._lock:
            if self.failing:
                return None
            self.counter += 1
            self.increments += 1
            return {"counter": self.counter, "increments": self.increments}

    def set_failing(self, on: bool) -> None:
        with self._lock:
            self.failing = bool(on)

    def reset(self) -> None:
        with self._lock:
            self.calls = 0
            self.failing = False
            self.counter = 0
            self.increments = 0

    def stats(self) -> dict[str, Any]:
        with self._lock:
            return {"calls": self.calls, "failing": self.failing, "counter": self.counter,
                    "increments": self.increments}


def _truthy(value: Any) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, (int, float)):
        return value != 0
    return str(value).strip().lower() not in ("0", "false", "off", "no", "")


# The runtime every page loads (first path segment): cached by the browser, revalidated on each use.
RUNTIME_PATHS = frozenset({"vendor", "wheels", "pyodide-nojspi.mjs"})
RUNTIME_CACHE_CONTROL = "no-cache"


class Handler(SimpleHTTPRequestHandler):
    server: DemoServer
    extensions_map = {**SimpleHTTPRequestHandler.extensions_map, **MIME_TYPES}
    protocol_version = "HTTP/1.1"

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, directory=str(self.server_directory), **kwargs)

    server_directory: Path = WEB_DIR  # replaced per server by start_server()

    def translate_path(self, path: str) -> str:
        """The file for a URL path: from ``web/`` when the first segment names one of its
        entries (``lab``, ``vendor``, ``wheels``, ``pyodide-nojspi.mjs``), else from ``web/demo/``."""
        site = self.server_directory
        first = unquote(urlsplit(path).path).lstrip("/").split("/", 1)[0]
        shared = first not in ("", DEMO_ROOM) and (site / first).exists()
        self.directory = str(site if shared else site / DEMO_ROOM)
        return super().translate_path(path)

    # -- plumbing -------------------------------------------------------
    def end_headers(self) -> None:
        first = urlsplit(self.path).path.lstrip("/").split("/", 1)[0]
        shared = first in RUNTIME_PATHS and self.server.cache_control == "no-store"
        self.send_header("Cache-Control", RUNTIME_CACHE_CONTROL if shared else self.server.cache_control)
        super().end_headers()

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
        if self.server.verbose:
            super().log_message(format, *args)

    def handle_one_request(self) -> None:
        try:
            super().handle_one_request()
        except (BrokenPipeError, ConnectionResetError):
            self.close_connection = True

    def _send_json(self, status: int, payload: Any) -> None:
        body = json.dumps(payload).encode("utf-8")
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        if urlsplit(self.path).path.startswith("/api/stream"):
            self.send_header("Access-Control-Allow-Origin", "*")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def _read_body(self) -> bytes:
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length > 0 else b""

    # -- routes ---------------------------------------------------------
    def do_GET(self) -> None:
        url = urlsplit(self.path)
        if url.path.startswith("/api/"):
            self._api_get(url.path, parse_qs(url.query))
        else:
            super().do_GET()

    def do_HEAD(self) -> None:
        url = urlsplit(self.path)
        if url.path.startswith("/api/"):
            self._api_get(url.path, parse_qs(url.query))
        else:
            super().do_HEAD()

    def do_POST(self) -> None:
        url = urlsplit(self.path)
        query = parse_qs(url.query)
        body = self._read_body()
        api = self.server.api
        if url.path == "/api/stream/down":
            self.server.feed.set_down(_truthy(query.get("on", ["1"])[-1]))
            self._send_json(HTTPStatus.OK, self._stream_stats())
            return
        if url.path == "/api/stream/reset":
            self.server.feed.reset()
            self._send_json(HTTPStatus.OK, self._stream_stats())
            return
        if url.path == "/api/fail":
            on: Any = True
            if "on" in query:
                on = query["on"][-1]
            elif body.strip():
                text = body.decode("utf-8", "replace").strip()
                try:
                    data = json.loads(text)
                except ValueError:
                    form = parse_qs(text)
                    on = form["on"][-1] if "on" in form else text
                else:
                    on = data.get("on", True) if isinstance(data, dict) else data
            api.set_failing(_truthy(on))
            self._send_json(HTTPStatus.OK, api.stats())
        elif url.path == "/api/reset":
            api.reset()
            self._send_json(HTTPStatus.OK, api.stats())
        elif url.path == "/api/increment":
            done = api.increment()
            if done is None:
                self._send_json(HTTPStatus.SERVICE_UNAVAILABLE, {"error": "service unavailable (failure mode is on)"})
            else:
                self._send_json(HTTPStatus.OK, done)
        else:
            self._send_json(HTTPStatus.NOT_FOUND, {"error": f"no such endpoint: {url.path}"})

    def _cookie(self, name: str) -> str | None:
        jar = SimpleCookie()
        try:
            jar.load(self.headers.get("Cookie", ""))
        except CookieError:
            return None
        morsel = jar.get(name)
        return None if morsel is None else morsel.value

    def _stream_stats(self) -> dict[str, Any]:
        return {**self.server.feed.stats(), "ws_url": self.server.ws_url}

    def _sse(self, query: dict[str, list[str]]) -> None:
        """Server-sent events from the resume point, until the client goes or the feed goes down."""
        feed = self.server.feed
        if feed.down:
            self._send_json(HTTPStatus.SERVICE_UNAVAILABLE, {"error": "the feed is down"})
            return
        resume = query.get("lastEventId", [None])[-1] or self.headers.get("Last-Event-ID")
        generation = feed.opened("sse", resume)
        self.close_connection = True  # the body has no length: it ends with the connection
        try:
            self.send_response(HTTPStatus.OK)
            self.send_header("Content-Type", "text/event-stream")
            self.send_header("Connection", "close")
            self.send_header("Access-Control-Allow-Origin", "*")  # the Pyodide tests' pages live elsewhere
            self.end_headers()
            self.wfile.write(b"retry: 600000\n\n")  # the mesh reconnects, with its shared back-off
            self.wfile.flush()
            for event in feed.events(feed.first_id(resume), generation):
                self.wfile.write(f"id: {event['id']}\ndata: {json.dumps(event)}\n\n".encode())
                self.wfile.flush()
                feed.sent()
        except (BrokenPipeError, ConnectionResetError, OSError):
            pass
        finally:
            feed.closed("sse")

    def _api_get(self, path: str, query: dict[str, list[str]]) -> None:
        api = self.server.api
        if path == "/api/stream" and self.command == "GET":
            self._sse(query)
            return
        if path == "/api/stream/stats":
            self._send_json(HTTPStatus.OK, self._stream_stats())
            return
        args = {k: v[-1] if len(v) == 1 else v for k, v in query.items()}
        if path == "/api/data":
            user = self._cookie("user")
            calls, failing, counter = api.next_call()
            try:
                delay_ms = float(query.get("delay_ms", ["0"])[-1])
            except ValueError:
                delay_ms = 0.0
            if delay_ms > 0:
                time.sleep(min(delay_ms, MAX_DELAY_MS) / 1000.0)
            if failing:
                self._send_json(
                    HTTPStatus.SERVICE_UNAVAILABLE,
                    {"error": "service unavailable (failure mode is on)", "calls": calls, "args": args, "user": user},
                )
                return
            value = args.get("value", f"data-{calls}")
            self._send_json(
                HTTPStatus.OK,
                {"value": value, "calls": calls, "args": args, "user": user, "time": time.time(), "counter": counter},
            )
        elif path == "/api/stats":
            self._send_json(HTTPStatus.OK, api.stats())
        else:
            self._send_json(HTTPStatus.NOT_FOUND, {"error": f"no such endpoint: {path}"})


class DemoServer(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, address: tuple[str, int], directory: Path, verbose: bool = False) -> None:
        handler = type("BoundHandler", (Handler,), {"server_directory": Path(directory)})
        super().__init__(address, handler)
        self.api = ApiState()
        self.feed = StreamFeed()
        self.ws_server: Any = None  # start_server / main start it: start_websocket_server
        # "no-store" keeps a rebuilt wheel from being served stale; it also keeps every page
        # out of the back/forward cache, so the bfcache tests switch to "no-cache" (revalidate).
        self.cache_control = "no-store"
        self.verbose = verbose
        self.directory = Path(directory)

    @property
    def ws_url(self) -> str | None:
        """The feed's WebSocket endpoint, ``ws://host:port/stream`` (``None`` without ``websockets``)."""
        if self.ws_server is None:
            return None
        host, port = self.ws_server.socket.getsockname()[:2]
        return f"ws://{host}:{port}/stream"

    @property
    def url(self) -> str:
        host, port = self.server_address[:2]
        assert isinstance(host, str)  # a TCP server's address, never a Unix socket's bytes
        return f"http://{host}:{port}"


def start_server(
    host: str = "127.0.0.1",
    port: int = 0,
    directory: str | os.PathLike[str] = WEB_DIR,
    verbose: bool = False,
) -> tuple[DemoServer, threading.Thread]:
    """Start the server in a daemon thread; port 0 picks a free port (see ``server.url``)."""
    server = DemoServer((host, port), Path(directory), verbose=verbose)
    server.ws_server = start_websocket_server(server.feed, host)
    thread = threading.Thread(target=server.serve_forever, name="pyflowmesh-demo-server", daemon=True)
    thread.start()
    return server, thread


def stop_server(server: DemoServer, thread: threading.Thread | None = None) -> None:
    server.feed.set_down(True)  # open streams end
    if server.ws_server is not None:
        server.ws_server.shutdown()
    server.shutdown()
    server.server_close()
    if thread is not None:
        thread.join(timeout=5)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default=os.environ.get("HOST", "127.0.0.1"))
    parser.add_argument("--port", type=int, default=int(os.environ.get("PORT", "8000")))
    parser.add_argument(
        "--directory", default=str(WEB_DIR), help="the site folder (default: web/; its demo/ is served at /)"
    )
    parser.add_argument("--quiet", action="store_true", help="no access log")
    parser.add_argument("--ws-port", type=int, default=int(os.environ.get("WS_PORT", "0")),
                        help="the port of the feed's WebSocket endpoint (default: a free one)")
    args = parser.parse_args(argv)
    server = DemoServer((args.host, args.port), Path(args.directory), verbose=not args.quiet)
    server.ws_server = start_websocket_server(server.feed, args.host, args.ws_port)
    print(f"pyflowmesh demo: serving {server.directory} at {server.url}/", flush=True)
    print(f"pyflowmesh demo: live feed at {server.url}/api/stream (SSE) and "
          f"{server.ws_url or '(no WebSocket: pip install websockets)'}", flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
