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

- ``GET  /api/data?key=...&delay_ms=N`` -> ``{"value", "calls", "args", "user"}``;
  counts every call (failed ones too); sleeps ``delay_ms`` first (max 30 s).
  ``user`` is the value of the ``user`` cookie when the request arrived (``null``
  without one): the server answers as whoever is "logged in", as a real one does
  with a session cookie that every tab of the browser shares.
  In failure mode it answers HTTP 503 with ``{"error", "calls", "args", "user"}``.
- ``GET  /api/stats``  -> ``{"calls": n, "failing": bool}``
- ``POST /api/fail``   -> switch failure mode: query ``?on=1``/``?on=0`` or a
  body ``on=1`` / ``{"on": true}``; no value means on. Answers the stats.
- ``POST /api/reset``  -> counter to 0 and failure mode off. Answers the stats.

Run it: ``python3 tools/server.py [--host 127.0.0.1] [--port 8000]`` (``./build.sh demo``
builds first, then runs it).
From tests: ``server, thread = start_server("127.0.0.1", 0)``; then
``server.url``, ``server.api.calls``, ``server.api.reset()``, and finally
``stop_server(server, thread)``.
"""

from __future__ import annotations

import argparse
import json
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


class ApiState:
    """The API's counter and failure switch, shared by all handler threads."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.calls = 0
        self.failing = False

    def next_call(self) -> tuple[int, bool]:
        with self._lock:
            self.calls += 1
            return self.calls, self.failing

    def set_failing(self, on: bool) -> None:
        with self._lock:
            self.failing = bool(on)

    def reset(self) -> None:
        with self._lock:
            self.calls = 0
            self.failing = False

    def stats(self) -> dict[str, Any]:
        with self._lock:
            return {"calls": self.calls, "failing": self.failing}


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

    def _api_get(self, path: str, query: dict[str, list[str]]) -> None:
        api = self.server.api
        args = {k: v[-1] if len(v) == 1 else v for k, v in query.items()}
        if path == "/api/data":
            user = self._cookie("user")
            calls, failing = api.next_call()
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
                HTTPStatus.OK, {"value": value, "calls": calls, "args": args, "user": user, "time": time.time()}
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
        # "no-store" keeps a rebuilt wheel from being served stale; it also keeps every page
        # out of the back/forward cache, so the bfcache tests switch to "no-cache" (revalidate).
        self.cache_control = "no-store"
        self.verbose = verbose
        self.directory = Path(directory)

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
    thread = threading.Thread(target=server.serve_forever, name="pyflowmesh-demo-server", daemon=True)
    thread.start()
    return server, thread


def stop_server(server: DemoServer, thread: threading.Thread | None = None) -> None:
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
    args = parser.parse_args(argv)
    server = DemoServer((args.host, args.port), Path(args.directory), verbose=not args.quiet)
    print(f"pyflowmesh demo: serving {server.directory} at {server.url}/", flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
