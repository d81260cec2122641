"""Playwright fixtures for multi-tab tests of pyflowmesh pages served by tools/server.py.

Run through ``./build.sh test --level browser`` (which builds first), or by hand after
``./build.sh build``::

    .venv/bin/python -m pytest -p no:pytest_pyodide -p no:pytest_pyodide_hook tests/browser

Fixtures:

- ``browser`` (session): Debian's Chromium, headless, driven by ``playwright.sync_api``.
- ``context`` (function): a fresh browser context; its tabs share BroadcastChannel and
  Web Locks with each other and with no other test. Console output of every tab is
  recorded; when the test fails, each tab's console log, HTML and a screenshot are saved
  to ``test-artifacts/<test>/`` and that folder is named in the failure report (a tab
  whose renderer crashed gets its console log only; one that does not answer within 5 s,
  such as a stalled tab, is noted in ``notes.txt``).
- ``demo_server`` (function, on top of one server per session): tools/server.py serving
  the site in ``web/`` (the demo at ``/``, the lab at ``/lab/``) on 127.0.0.1 and a free port,
  counter and failure mode reset before each test. ``demo_server.url("/lab/smoke.html")``,
  ``.calls``, ``.stats()``, ``.reset()``, ``.set_failing(True)``.
- ``bfcache_browser``, ``bfcache_context``, ``bfcache_server``, ``open_bfcache_tabs``: the same
  with Chromium's back/forward cache on (Playwright turns it off) and the server answering
  ``Cache-Control: no-cache`` instead of ``no-store`` (which keeps pages out of that cache).
- ``tab_console(page)``: the console lines recorded so far for one tab of ``context``.
- ``open_tabs(n, path="/lab/smoke.html", ready=READY_JS)``: opens ``n`` tabs of the page in
  ``context`` at once and waits until every tab's Python says it is ready
  (``window.pyflowmesh_ready === true``, which the page's Python sets last). Returns
  the list of pages; ``open_tabs.ready_ms`` holds each tab's ``performance.now()`` at
  ready when the page sets ``window.pyflowmesh_ready_ms``.

A PyScript tab with Pyodide takes about 3.5 s to become ready here and about 300 MB;
the machine has 2 cores, so keep tab counts modest (10 tabs: about 30 s).
"""

from __future__ import annotations

import importlib.util
import json
import os
import re
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from chromium_args import CHROMIUM, chromium_args  # tests/ is on sys.path: see tests/conftest.py

ROOT = Path(__file__).resolve().parents[2]


WEB_DIR = ROOT / "web"
SERVER = ROOT / "tools" / "server.py"
ARTIFACTS_DIR = ROOT / "test-artifacts"

CHROMIUM_ARGS = chromium_args()  # with the allocation samplers off: see tests/chromium_args.py

READY_JS = "window.pyflowmesh_ready === true"
# Per open_tabs() call; generous because n Pyodide tabs boot on 2 cores.
READY_TIMEOUT_S = float(os.environ.get("PYFLOWMESH_READY_TIMEOUT_S", "120"))


def _run_last(items: list[pytest.Item], folder: Path) -> None:
    """Move this folder's tests after all others. While a sync Playwright is running, the
    main thread has a running asyncio loop, so ``asyncio.run()`` in a CPython test would
    fail; the session's Playwright starts at the first browser test, so run those last."""
    mine = [item for item in items if folder in Path(str(item.path)).parents]
    if mine and len(mine) != len(items):
        ids = {id(item) for item in mine}
        items[:] = [item for item in items if id(item) not in ids] + mine


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    _run_last(items, Path(__file__).parent)


# ---- the server ------------------------------------------------------------------


def _load_server_module():
    spec = importlib.util.spec_from_file_location("pyflowmesh_web_server", SERVER)
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


class DemoServer:
    """A handle on tools/server.py running in a thread of the test process."""

    def __init__(self, server: Any) -> None:
        self.server = server
        self.base_url: str = server.url

    def url(self, path: str = "/") -> str:
        return self.base_url + "/" + path.lstrip("/")

    @property
    def calls(self) -> int:
        return self.server.api.stats()["calls"]

    def stats(self) -> dict[str, Any]:
        return self.server.api.stats()

    def reset(self) -> None:
        self.server.api.reset()

    def set_failing(self, on: bool = True) -> None:
        self.server.api.set_failing(on)


@pytest.fixture(scope="session")
def _demo_server_session():
    missing = [
        p
        for p in (WEB_DIR / "vendor/pyodide/pyodide.mjs", WEB_DIR / "vendor/pyscript/core.js", WEB_DIR / "wheels/pyscript.json")
        if not p.is_file()
    ]
    if missing:
        pytest.fail(f"not built: {', '.join(str(p.relative_to(ROOT)) for p in missing)}: run ./build.sh build", pytrace=False)
    module = _load_server_module()
    server, thread = module.start_server("127.0.0.1", 0, directory=WEB_DIR)
    try:
        yield DemoServer(server)
    finally:
        module.stop_server(server, thread)


@pytest.fixture
def demo_server(_demo_server_session) -> DemoServer:
    _demo_server_session.reset()
    return _demo_server_session


@pytest.fixture(scope="session")
def pyflowmesh_version() -> str:
    manifest = WEB_DIR / "wheels" / "manifest.json"
    return json.loads(manifest.read_text())["version"]


# ---- the browser -----------------------------------------------------------------


@pytest.fixture(scope="session")
def playwright_instance():
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        yield p


@pytest.fixture(scope="session")
def browser(playwright_instance):
    browser = playwright_instance.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
    try:
        yield browser
    finally:
        browser.close()


@dataclass
class _Tabs:
    """What the artifact hook needs: the context's pages and their console lines."""

    context: Any
    started: float = field(default_factory=time.monotonic)
    logs: dict[Any, list[str]] = field(default_factory=dict)
    pages: list[Any] = field(default_factory=list)
    crashed: list[Any] = field(default_factory=list)


_TABS = pytest.StashKey[_Tabs]()


@pytest.fixture(scope="module")
def bfcache_browser(playwright_instance):
    """Chromium as ``browser``, but with its back/forward cache on: Playwright passes
    ``--disable-back-forward-cache`` by default (a page restored from the cache fires no
    ``load``, which its navigation waits for: wait for ``commit`` instead). Per module, so
    that a second browser does not stay open through the rest of the session."""
    browser = playwright_instance.chromium.launch(
        executable_path=CHROMIUM, args=CHROMIUM_ARGS, ignore_default_args=["--disable-back-forward-cache"]
    )
    try:
        yield browser
    finally:
        browser.close()


@pytest.fixture
def context(browser, request):
    yield from _context(browser, request)


@pytest.fixture
def bfcache_context(bfcache_browser, request):
    """A fresh context of ``bfcache_browser``, recorded like ``context``."""
    yield from _context(bfcache_browser, request)


def _context(browser, request):
    ctx = browser.new_context()
    tabs = _Tabs(ctx)

    def attach(page) -> None:
        lines = tabs.logs.setdefault(page, [])
        tabs.pages.append(page)

        def stamp() -> str:
            return f"{time.monotonic() - tabs.started:8.3f}s"

        page.on("console", lambda m: lines.append(f"{stamp()} {m.type}: {m.text}"))
        page.on("pageerror", lambda e: lines.append(f"{stamp()} pageerror: {e}"))
        page.on("crash", lambda _p: (lines.append(f"{stamp()} renderer crashed"), tabs.crashed.append(page)))
        page.on("requestfailed", lambda r: lines.append(f"{stamp()} requestfailed: {r.url} {r.failure}"))

    ctx.on("page", attach)
    request.node.stash[_TABS] = tabs
    try:
        yield ctx
    finally:
        ctx.close()


@pytest.fixture
def tab_console(request):
    """``tab_console(page)``: the console lines (with timestamps) recorded so far for that tab
    (of ``context`` or ``bfcache_context``, whichever the test uses)."""
    return lambda page: list(request.node.stash[_TABS].logs.get(page, []))


class OpenTabs:
    def __init__(self, context, server: DemoServer) -> None:
        self.context = context
        self.server = server
        self.ready_ms: list[float | None] = []
        self.wall_s: float = 0.0

    def __call__(
        self, n: int, path: str = "/lab/smoke.html", ready: str = READY_JS, timeout_s: float = READY_TIMEOUT_S
    ) -> list[Any]:
        __tracebackhide__ = True
        t0 = time.monotonic()
        pages = []
        for _ in range(n):
            page = self.context.new_page()
            # Navigation returns quickly; the tabs' Pyodide boots then run side by side.
            page.goto(self.server.url(path), wait_until="domcontentloaded")
            pages.append(page)
        deadline = t0 + timeout_s
        for i, page in enumerate(pages):
            remaining_ms = max(1000.0, (deadline - time.monotonic()) * 1000)
            try:
                page.wait_for_function(ready, timeout=remaining_ms)
            except Exception as exc:
                raise AssertionError(
                    f"tab {i} of {n} ({path}) not ready ({ready}) within {timeout_s:.0f} s: {exc}"
                ) from None
        self.wall_s = time.monotonic() - t0
        self.ready_ms = [page.evaluate("window.pyflowmesh_ready_ms ?? null") for page in pages]
        return pages


@pytest.fixture
def open_tabs(context, demo_server) -> OpenTabs:
    return OpenTabs(context, demo_server)


@pytest.fixture
def bfcache_server(demo_server):
    """``demo_server`` answering ``Cache-Control: no-cache`` (``no-store`` keeps every page
    out of the back/forward cache), restored afterwards."""
    demo_server.server.cache_control = "no-cache"
    try:
        yield demo_server
    finally:
        demo_server.server.cache_control = "no-store"


@pytest.fixture
def open_bfcache_tabs(bfcache_context, bfcache_server) -> OpenTabs:
    """``open_tabs`` in ``bfcache_context``, from ``bfcache_server``."""
    return OpenTabs(bfcache_context, bfcache_server)


# ---- artifacts of failed tests ---------------------------------------------------


def _artifact_dir(item: pytest.Item) -> Path:
    name = re.sub(r"[^A-Za-z0-9_.-]+", "_", item.nodeid.replace("::", "__")).strip("_")
    return ARTIFACTS_DIR / name[:150]


def _save_tabs(tabs: _Tabs, folder: Path) -> list[str]:
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True, exist_ok=True)
    notes = []
    for i, page in enumerate(tabs.pages):
        lines = [f"url: {page.url}", *tabs.logs.get(page, [])]
        (folder / f"tab-{i}-console.log").write_text("\n".join(lines) + "\n")
        if page.is_closed():
            notes.append(f"tab {i}: closed")
            continue
        if page in tabs.crashed:
            notes.append(f"tab {i}: renderer crashed (no screenshot)")
            continue
        try:
            page.screenshot(path=str(folder / f"tab-{i}.png"), timeout=5000)
            page.set_default_timeout(5000)
            (folder / f"tab-{i}.html").write_text(page.content())
        except Exception as exc:  # a crashed or frozen tab must not hide the real failure
            notes.append(f"tab {i}: {type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}")
    if notes:
        (folder / "notes.txt").write_text("\n".join(notes) + "\n")
    return notes


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo):
    report = yield
    if report.failed and report.when in ("setup", "call"):
        tabs = item.stash.get(_TABS, None)
        if tabs is not None and tabs.pages:
            folder = _artifact_dir(item)
            try:
                _save_tabs(tabs, folder)
                message = (
                    f"console logs, HTML and screenshots of {len(tabs.pages)} tab(s) saved in "
                    f"{folder.relative_to(ROOT)}/"
                )
            except Exception as exc:
                message = f"could not save browser artifacts to {folder}: {exc!r}"
            if hasattr(report.longrepr, "addsection"):
                report.longrepr.addsection("browser artifacts", message)
            else:
                report.sections.append(("browser artifacts", message))
    return report
