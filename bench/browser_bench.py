"""What the mesh saves and costs in real Chromium tabs, side by side with the same page without it.

Every figure comes from the lab page (``web/lab/``, at ``/lab/``), a pyflowmesh tab driven
through ``window.pfm``, served by ``tools/server.py`` in this process (which counts
the API calls it receives), in Debian's Chromium launched by Playwright exactly
as ``tests/browser/conftest.py`` launches it. The same page with ``mesh=0`` is the
baseline: each tab calls the API itself (``use_flow(..., mesh=None)``).

Clocks. Each tab's ``performance.now()`` has its own origin. Times from different
tabs are compared as ``performance.timeOrigin + performance.now()`` (milliseconds
since the epoch on the browser's clock, with sub-millisecond resolution), which
is also the clock of ``time.time()`` in this process on the same machine.

The parts (each function's docstring says exactly what its numbers mean):

* :func:`bench_import`: the wheel's size; the time of ``import pyflowmesh`` inside
  Pyodide in a fresh page.
* :func:`bench_calls`: API calls for N tabs executing one flow at once, follower
  latency, the execute's duration against a direct call, and (at 10 tabs) the
  idle cost: messages per minute and CPU per tab. Run once with the mesh and once
  without it.
* :func:`bench_failover`: time to a single new leader after the leader's tab is
  closed or crashes, with and without Web Locks.
"""

from __future__ import annotations

import contextlib
import importlib.util
import json
import os
import random
import statistics
import time
import zipfile
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
WEB_DIR = ROOT / "web"
SERVER = ROOT / "tools" / "server.py"
CHROMIUM = os.environ.get("CHROMIUM", "/usr/bin/chromium")
# As tests/browser/conftest.py (keep in step): root needs --no-sandbox; the network is closed.
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--disable-quic",
]
READY_JS = "window.pyflowmesh_ready === true"
CLK_TCK = os.sysconf("SC_CLK_TCK")

Log = Callable[[str], None]


def percentile(values: list[float], q: float) -> float | None:
    """The q-th percentile (0-100) by linear interpolation; None for no values."""
    if not values:
        return None
    data = sorted(values)
    if len(data) == 1:
        return data[0]
    pos = (len(data) - 1) * q / 100
    low = int(pos)
    high = min(low + 1, len(data) - 1)
    return data[low] + (data[high] - data[low]) * (pos - low)


def describe(values: list[float]) -> dict[str, Any]:
    """n, p50, p95, min, max and mean of ``values`` (ms)."""
    if not values:
        return {"n": 0, "p50": None, "p95": None, "min": None, "max": None, "mean": None}
    return {"n": len(values), "p50": percentile(values, 50), "p95": percentile(values, 95),
            "min": min(values), "max": max(values), "mean": statistics.fmean(values)}


def _cpu_times() -> tuple[int, int]:
    """(busy, total) jiffies of every CPU of the machine since boot (``/proc/stat``)."""
    with open("/proc/stat") as stat:
        fields = [int(x) for x in stat.readline().split()[1:]]
    idle = fields[3] + (fields[4] if len(fields) > 4 else 0)  # idle + iowait
    return sum(fields) - idle, sum(fields)


def wait_quiet(busy_below: float = 0.2, window_s: float = 0.5, max_s: float = 20.0) -> float:
    """Wait until the machine's CPUs were less than ``busy_below`` busy over ``window_s``.

    A tab just opened goes on working after it says it is ready (V8 compiles Pyodide's
    WebAssembly in background threads for seconds), and on 2 cores that slows every tab. A
    trial that follows a fresh tab waits for the machine to be quiet, so that trials of one
    kind are not slowed more than another's. Gives up after ``max_s``; returns the seconds waited.
    """
    t0 = time.monotonic()
    before = _cpu_times()
    while time.monotonic() - t0 < max_s:
        time.sleep(window_s)
        after = _cpu_times()
        busy, total = after[0] - before[0], after[1] - before[1]
        if total > 0 and busy / total < busy_below:
            break
        before = after
    return time.monotonic() - t0


# ---- the browser's processes -------------------------------------------------------


def _children() -> dict[int, list[int]]:
    tree: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            stat = Path(f"/proc/{entry}/stat").read_text()
        except OSError:
            continue
        ppid = int(stat[stat.rindex(")") + 2:].split()[1])
        tree.setdefault(ppid, []).append(int(entry))
    return tree


def browser_processes() -> list[int]:
    """The Chromium processes this Python process started (through Playwright's driver)."""
    tree = _children()
    found: list[int] = []
    stack = list(tree.get(os.getpid(), []))
    while stack:
        pid = stack.pop()
        stack.extend(tree.get(pid, []))
        try:
            exe = os.readlink(f"/proc/{pid}/exe")
        except OSError:
            continue
        if "chrom" in exe:
            found.append(pid)
    return found


def process_usage(pids: list[int]) -> dict[str, Any]:
    """CPU seconds (user + system) and RSS (MB) summed over ``pids``, and how many are renderers."""
    cpu = 0.0
    rss = 0.0
    renderers = 0
    for pid in pids:
        try:
            stat = Path(f"/proc/{pid}/stat").read_text()
            fields = stat[stat.rindex(")") + 2:].split()
            cpu += (int(fields[11]) + int(fields[12])) / CLK_TCK
            rss += int(fields[21]) * os.sysconf("SC_PAGE_SIZE") / 1e6
            if b"--type=renderer" in Path(f"/proc/{pid}/cmdline").read_bytes():
                renderers += 1
        except (OSError, IndexError, ValueError):
            continue
    return {"cpu_s": cpu, "rss_mb": rss, "renderers": renderers, "processes": len(pids)}


# ---- the harness -------------------------------------------------------------------


class Harness:
    """tools/server.py in this process and one headless Chromium, for every part of the bench."""

    def __init__(self, log: Log = print, args: list[str] | None = None) -> None:
        self.log = log
        self.args = CHROMIUM_ARGS if args is None else args  # the command line Chromium gets
        self._stack = contextlib.ExitStack()
        self.server: Any = None
        self.browser: Any = None

    def __enter__(self) -> Harness:
        missing = [p for p in (WEB_DIR / "lab/index.html", WEB_DIR / "lab/lab.py",
                               WEB_DIR / "vendor/pyodide/pyodide.mjs", WEB_DIR / "wheels/pyscript.json")
                   if not p.is_file()]
        if missing:
            raise RuntimeError(f"missing {', '.join(str(p.relative_to(ROOT)) for p in missing)}: "
                               "run ./build.sh build (web/lab/ comes with the repository)")
        spec = importlib.util.spec_from_file_location("pyflowmesh_web_server", SERVER)
        assert spec and spec.loader
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        server, thread = module.start_server("127.0.0.1", 0, directory=WEB_DIR)
        self._stack.callback(module.stop_server, server, thread)
        self.server = server
        from playwright.sync_api import sync_playwright

        playwright = self._stack.enter_context(sync_playwright())
        self.browser = playwright.chromium.launch(executable_path=CHROMIUM, args=self.args)
        self._stack.callback(self.browser.close)
        return self

    def __exit__(self, *exc: object) -> None:
        self._stack.close()

    @property
    def calls(self) -> int:
        return self.server.api.stats()["calls"]

    def url(self, path: str) -> str:
        return self.server.url + "/" + path.lstrip("/")

    def open_tabs(self, context: Any, n: int, query: str, timeout_s: float = 240.0) -> tuple[list[Any], float]:
        """Open n tabs of ``/lab/?query`` at once; wait until each is ready. Returns (pages, seconds)."""
        t0 = time.monotonic()
        pages = []
        for _ in range(n):
            page = context.new_page()
            page.goto(self.url(f"/lab/?{query}"), wait_until="domcontentloaded")
            pages.append(page)
        deadline = t0 + timeout_s
        for page in pages:
            page.wait_for_function(READY_JS, timeout=max(1000.0, (deadline - time.monotonic()) * 1000))
        return pages, time.monotonic() - t0

    def wait_converged(self, pages: list[Any], timeout_s: float = 30.0) -> str:
        """Wait until exactly one tab leads and every tab follows it; return the leader's ID."""
        deadline = time.monotonic() + timeout_s
        states: list[dict[str, Any]] = []
        while time.monotonic() < deadline:
            states = [page.evaluate("pfm.state()") for page in pages]
            leaders = [s["node_id"] for s in states if s["role"] == "leader"]
            if len(leaders) == 1 and all(s["leader_id"] == leaders[0] for s in states):
                return leaders[0]
            time.sleep(0.1)
        raise RuntimeError("the tabs did not converge on one leader: "
                           + ", ".join(f"{s['node_id']}:{s['role']}->{s['leader_id']}" for s in states))


def time_origin(page: Any) -> float:
    return float(page.evaluate("performance.timeOrigin"))


def browser_now(page: Any) -> float:
    return float(page.evaluate("performance.timeOrigin + performance.now()"))


# ---- 6. size and import time ---------------------------------------------------------

IMPORT_JS = """async (preload) => {
  const t0 = performance.now();
  const { loadPyodide } = await import("/vendor/pyodide/pyodide.mjs");
  const pyodide = await loadPyodide({ indexURL: "/vendor/pyodide/" });
  const t1 = performance.now();
  await pyodide.loadPackage("pyflowmesh", { messageCallback: () => {} });
  const t2 = performance.now();
  pyodide.globals.set("preload", pyodide.toPy(preload));
  const inner = pyodide.runPython(`
import importlib, sys, time
t = time.perf_counter()
for name in preload:
    importlib.import_module(name)
preload_ms = (time.perf_counter() - t) * 1000
before = set(sys.modules)
t = time.perf_counter()
import pyflowmesh
ms = (time.perf_counter() - t) * 1000
new = sorted(set(sys.modules) - before)
t = time.perf_counter()
from pyflowmesh import use_flow
import pyflowmesh.transports.broadcast_channel, pyflowmesh.transports.web_locks, pyflowmesh.transports.page_lifecycle
browser_ms = (time.perf_counter() - t) * 1000
import pathlib
t = time.perf_counter()
for path in pathlib.Path(pyflowmesh.__file__).parent.rglob("*.py"):
    compile(path.read_text(), str(path), "exec")
compile_ms = (time.perf_counter() - t) * 1000
{"compile_ms": compile_ms, "import_ms": ms, "import_browser_ms": browser_ms, "preload_ms": preload_ms,
 "new_modules": new, "python": sys.version.split()[0], "version": pyflowmesh.__version__}`)
    .toJs({ dict_converter: Object.fromEntries });
  const t3 = performance.now();
  return { boot_ms: t1 - t0, load_package_ms: t2 - t1, import_wall_ms: t3 - t2, pyodide: pyodide.version,
           ...inner };
}"""


def bench_import(h: Harness, trials: int = 3) -> dict[str, Any]:
    """The wheel's size, and the time of ``import pyflowmesh`` inside Pyodide in a fresh page.

    Each trial is a new page (a fresh Pyodide, nothing of ours imported yet) on the
    server's origin: it loads Pyodide from web/vendor (``boot_ms``), installs our wheel
    with ``pyodide.loadPackage`` (``load_package_ms``: fetch and unpack), then times
    ``import pyflowmesh`` in Python with ``time.perf_counter`` (``import_ms``: the
    package with its submodules and the standard-library modules they import that
    were not loaded yet; Pyodide's clock has about 0.1 ms resolution) and then
    the asyncio runtime and the browser transports (``use_flow``, ``transports.broadcast_channel``,
    ``web_locks``, ``page_lifecycle``: imported on first use). One more
    fresh page imports those standard-library modules first (``stdlib_preload_ms``)
    and then pyflowmesh (``own_import_ms``: our modules alone). ``compile_ms``: the
    time to compile every module of the package from source (``compile()``), which
    an import in Pyodide does, since the wheel ships no bytecode.
    """
    wheel = next((ROOT / "dist").glob("pyflowmesh-*.whl"))
    with zipfile.ZipFile(wheel) as archive:
        infos = archive.infolist()
        unpacked = sum(i.file_size for i in infos)
        modules = sum(1 for i in infos if i.filename.endswith(".py"))
    out: dict[str, Any] = {"wheel": wheel.name, "wheel_bytes": wheel.stat().st_size,
                           "unpacked_bytes": unpacked, "py_files": modules, "trials": []}
    context = h.browser.new_context()

    def fresh_page(preload: list[str]) -> dict[str, Any]:
        page = context.new_page()
        page.goto(h.url("/wheels/"), wait_until="load")  # any page of the origin: a directory listing
        result = page.evaluate(IMPORT_JS, preload)
        page.close()
        return result

    try:
        for _ in range(trials):
            out["trials"].append(fresh_page([]))
        # Once more with the standard-library modules that the import pulled in imported
        # first: what our own modules cost.
        stdlib = [m for m in out["trials"][0]["new_modules"] if not m.startswith("pyflowmesh")]
        own = fresh_page(stdlib)
    finally:
        context.close()
    for name in ("boot_ms", "load_package_ms", "import_ms", "import_browser_ms", "compile_ms"):
        out[name] = describe([t[name] for t in out["trials"]])
    first = out["trials"][0]
    out["pyodide"], out["pyodide_python"] = first["pyodide"], first["python"]
    out["new_modules"] = first["new_modules"]
    out["stdlib_modules"] = stdlib
    out["own_import_ms"] = own["import_ms"]
    out["stdlib_preload_ms"] = own["preload_ms"]
    h.log(f"import: wheel {out['wheel_bytes'] / 1024:.1f} KiB; import pyflowmesh "
          f"{out['import_ms']['p50']:.1f} ms (median of {trials} fresh pages; our modules alone "
          f"{out['own_import_ms']:.1f} ms), Pyodide boot "
          f"{out['boot_ms']['p50']:.0f} ms")
    return out


# ---- 1, 2, 4. calls, follower latency, idle cost --------------------------------------

# Installed in every bench tab before its own scripts (Playwright's add_init_script): notes the
# moment each API response reaches the tab (fetch's promise resolves), on the common browser
# clock. Pyodide's pyfetch calls this same window.fetch.
FETCH_HOOK_JS = """(() => {
  const original = window.fetch;
  window.__benchFetches = [];
  window.fetch = function (...args) {
    const url = String((args[0] && args[0].url) || args[0]);
    const promise = original.apply(this, args);
    if (url.includes("/api/data")) {
      promise.then(() => window.__benchFetches.push({ url, at: performance.timeOrigin + performance.now() }),
                   () => {});
    }
    return promise;
  };
})();"""

SCHEDULE_JS = """([at, flow, arg]) => {
  const delay = at - (performance.timeOrigin + performance.now());
  window.__bench = new Promise((resolve) => setTimeout(() => resolve(window.pfm.execute(flow, arg)),
                                                       Math.max(0, delay)));
  return delay;
}"""


def execute_at_once(pages: list[Any], flow: str, arg: str) -> list[dict[str, Any]]:
    """Start ``pfm.execute(flow, arg)`` in every tab at one instant; return each tab's outcome.

    The instant is a common time on the browser clock, far enough ahead for every
    tab to receive its order; each tab arms a ``setTimeout`` for it. Each outcome
    gets ``abs_started``/``abs_ended`` (timeOrigin + performance.now(), ms) and, if the
    tab called the API in this round, ``fetch_done``: when the response reached it.
    """
    margin = 150 + 20 * len(pages)
    at = browser_now(pages[0]) + margin
    for page in pages:
        page.evaluate(SCHEDULE_JS, [at, flow, arg])
    outcomes = []
    for page in pages:
        outcome = page.evaluate("window.__bench")
        origin = page.evaluate("performance.timeOrigin")
        outcome["abs_started"] = origin + outcome["started"]
        outcome["abs_ended"] = origin + outcome["ended"]
        outcome["late_start_ms"] = outcome["abs_started"] - at
        fetches = page.evaluate("(arg) => window.__benchFetches.filter((f) => f.url.includes('arg=' + arg))", arg)
        outcome["fetch_done"] = fetches[-1]["at"] if fetches else None
        outcomes.append(outcome)
    return outcomes


def _idle(h: Harness, context: Any, pages: list[Any], seconds: float) -> dict[str, Any]:
    """Messages on the channel and CPU per tab over an idle window of ``seconds``.

    * messages: the lab page taps its mesh's channel with a plain JS
      ``BroadcastChannel`` listener (``window.labWire``); the tap of one tab sees every
      post of every tab (its own page's too). Counted by type over the window.
    * CPU per tab (CDP): ``Performance.getMetrics`` of each page at both ends of
      the window, with ``timeDomain: threadTicks`` so durations are the main thread's
      CPU time (not wall time, which other busy processes would inflate);
      ``TaskDuration`` is the CPU its tasks took (all of it: Python, JS, timers,
      message handling), ``ScriptDuration`` the part in script. Milliseconds of CPU
      per minute of idle, averaged over the tabs.
    * CPU of the whole browser (/proc): user + system time of every Chromium process
      this bench started (browser, GPU/utility, renderers), per tab and minute.
    """
    sessions = []
    for page in pages:
        session = context.new_cdp_session(page)
        session.send("Performance.enable", {"timeDomain": "threadTicks"})  # CPU time, not wall time
        sessions.append(session)

    def metrics() -> list[dict[str, float]]:
        return [{m["name"]: m["value"] for m in s.send("Performance.getMetrics")["metrics"]} for s in sessions]

    time.sleep(1.0)  # let the last round's traffic end
    wire_before = pages[0].evaluate("window.labWire.length")
    stats_before = [page.evaluate("pfm.state().stats") for page in pages]
    m0 = metrics()
    p0 = process_usage(browser_processes())
    t0 = time.monotonic()
    time.sleep(seconds)
    elapsed = time.monotonic() - t0
    m1 = metrics()
    p1 = process_usage(browser_processes())
    wire = pages[0].evaluate(f"window.labWire.slice({wire_before})")
    stats_after = [page.evaluate("pfm.state().stats") for page in pages]
    for session in sessions:
        with contextlib.suppress(Exception):
            session.detach()
    minutes = elapsed / 60
    types = Counter(str(entry.get("type", entry.get("kind", "?"))) for entry in wire)
    task = [(b["TaskDuration"] - a["TaskDuration"]) for a, b in zip(m0, m1, strict=True)]
    script = [(b["ScriptDuration"] - a["ScriptDuration"]) for a, b in zip(m0, m1, strict=True)]
    sent = sum((b.get("sent") or 0) - (a.get("sent") or 0) for a, b in zip(stats_before, stats_after, strict=True))
    return {
        "tabs": len(pages), "seconds": elapsed,
        "posts": len(wire), "posts_per_min": len(wire) / minutes, "posts_by_type": dict(types),
        "deliveries_per_min": len(wire) * (len(pages) - 1) / minutes,
        "member_sent_per_min": sent / minutes,
        "task_ms_per_tab_min": 1000 * statistics.fmean(task) / minutes,
        "script_ms_per_tab_min": 1000 * statistics.fmean(script) / minutes,
        "task_ms_per_tab_min_max": 1000 * max(task) / minutes,
        "browser_cpu_ms_per_tab_min": 1000 * (p1["cpu_s"] - p0["cpu_s"]) / len(pages) / minutes,
        "browser_cpu_percent": 100 * (p1["cpu_s"] - p0["cpu_s"]) / elapsed,
        "renderers": p1["renderers"], "rss_mb": p1["rss_mb"],
    }


def bench_calls(h: Harness, *, mesh: bool, sizes: tuple[int, ...], rounds: int, latency_rounds: int,
                delay_ms: int, heartbeat: float, idle_size: int, idle_s: float) -> dict[str, Any]:
    """N tabs executing one flow at once: API calls, who served whom, and how long it took.

    One set of tabs grows through ``sizes`` (open 1, then add tabs up to 2, 5, ...), so
    at each size exactly N tabs of the page are open, all on one channel, and all N
    execute. Each round executes the flow with a new argument (a new cache key, so no
    tab has it cached) in every tab at one instant (:func:`execute_at_once`). At each
    size a first warm-up round (kept in ``warmup``, left out of the figures) lets new
    tabs run their first execute.

    Per round: ``calls``, the API calls the server counted; ``sources``, how each
    tab's execute was served (``call``: it called the API, ``mesh``: another tab's
    result). From the rounds:

    * ``duration``: each execute's own duration (its ``started`` to ``ended``,
      ``performance.now()`` in its tab). Without the mesh that is a direct call of the
      local server (which sleeps ``delay_ms``) under N concurrent tabs.
    * ``follower_lag`` (mesh): for each follower served by the mesh, the time from the
      moment the API's response reached the tab that called (its ``fetch`` resolved,
      noted by :data:`FETCH_HOOK_JS`) to the end of the follower's execute, on the
      common browser clock. ``caller_tail``: from that response to the end of the
      caller's own execute.
    * ``idle``: at ``idle_size`` tabs, the idle cost (:func:`_idle`).
    """
    query = f"channel=bench-calls-{int(mesh)}&heartbeat={heartbeat:g}&delay_ms={delay_ms}&mesh={int(mesh)}"
    context = h.browser.new_context()
    context.add_init_script(FETCH_HOOK_JS)
    pages: list[Any] = []
    out: dict[str, Any] = {"mesh": mesh, "delay_ms": delay_ms, "heartbeat_ms": heartbeat, "sizes": [],
                           "idle": None}
    try:
        for size in sizes:
            new, boot_s = h.open_tabs(context, size - len(pages), query)
            pages += new
            if mesh:
                h.wait_converged(pages)
            usage = process_usage(browser_processes())
            row: dict[str, Any] = {"tabs": size, "boot_s": boot_s, "rss_mb": usage["rss_mb"],
                                   "renderers": usage["renderers"], "rounds": []}
            # A warm-up round first, not counted: a tab's first execute runs code paths (pyfetch, the
            # flow machinery) for the first time, and tabs that just booted are still settling.
            time.sleep(1.0)
            before = h.calls
            warmup = execute_at_once(pages, "data", f"n{size}-warmup-m{int(mesh)}")
            time.sleep(0.2)
            row["warmup"] = _round_summary(warmup, h.calls - before)
            n_rounds = rounds + (latency_rounds if size == max(sizes) else 0)
            for r in range(n_rounds):
                before = h.calls
                outcomes = execute_at_once(pages, "data", f"n{size}-r{r}-m{int(mesh)}")
                time.sleep(0.2)
                calls = h.calls - before
                row["rounds"].append(_round_summary(outcomes, calls))
            _size_summary(row)
            out["sizes"].append(row)
            h.log(f"calls ({'mesh' if mesh else 'no mesh'}): {size:2d} tabs -> {row['calls_median']:g} API "
                  f"call(s) per execute-at-once (rounds: {[x['calls'] for x in row['rounds']]}); "
                  f"execute p50 {row['duration']['p50']:.0f} ms"
                  + (f", follower lag p50 {row['follower_lag']['p50']:.1f} ms"
                     if row["follower_lag"]["n"] else "")
                  + f" (opened {len(new)} tab(s) in {boot_s:.0f} s)")
            if size == idle_size:
                out["idle"] = _idle(h, context, pages, idle_s)
                idle = out["idle"]
                h.log(f"idle ({'mesh' if mesh else 'no mesh'}, {size} tabs, {idle['seconds']:.0f} s): "
                      f"{idle['posts_per_min']:.1f} posts/min; main thread {idle['task_ms_per_tab_min']:.1f} ms "
                      f"CPU per tab-minute; browser {idle['browser_cpu_ms_per_tab_min']:.0f} ms per tab-minute")
    finally:
        context.close()
    return out


def _round_summary(outcomes: list[dict[str, Any]], calls: int) -> dict[str, Any]:
    sources = Counter(str(o.get("source")) for o in outcomes)
    callers = [o for o in outcomes if o.get("source") == "call"]
    followers = [o for o in outcomes if o.get("source") == "mesh"]
    lag: list[float] = []
    fetched = [o["fetch_done"] for o in callers if o.get("fetch_done") is not None]
    if fetched and followers:
        first = min(fetched)
        lag = [o["abs_ended"] - first for o in followers]
    return {
        "calls": calls, "sources": dict(sources), "ok": sum(1 for o in outcomes if o.get("ok")),
        "errors": [o["error"] for o in outcomes if not o.get("ok")],
        "durations": [o["ended"] - o["started"] for o in outcomes],
        "caller_durations": [o["ended"] - o["started"] for o in callers],
        "follower_durations": [o["ended"] - o["started"] for o in followers],
        "follower_lag": lag,
        # the caller's own tail: from its response to the end of its execute (Python, the Result post)
        "caller_tail": [o["abs_ended"] - o["fetch_done"] for o in callers if o.get("fetch_done") is not None],
        "late_start_max_ms": max(o["late_start_ms"] for o in outcomes),
    }


def _size_summary(row: dict[str, Any]) -> None:
    rounds = row["rounds"]
    row["calls_median"] = statistics.median(r["calls"] for r in rounds)
    row["calls_max"] = max(r["calls"] for r in rounds)
    row["duration"] = describe([d for r in rounds for d in r["durations"]])
    row["caller_duration"] = describe([d for r in rounds for d in r["caller_durations"]])
    row["follower_duration"] = describe([d for r in rounds for d in r["follower_durations"]])
    row["follower_lag"] = describe([d for r in rounds for d in r["follower_lag"]])
    row["caller_tail"] = describe([d for r in rounds for d in r["caller_tail"]])
    row["sources"] = dict(sum((Counter(r["sources"]) for r in rounds), Counter()))


# ---- 3. failover ---------------------------------------------------------------------


def bench_failover(h: Harness, *, locks: bool, trials: int, tabs: int, heartbeat: float) -> dict[str, Any]:
    """Time to a single new leader after the leader's tab is closed politely or crashes.

    ``tabs`` tabs of the lab page (``locks=1`` or ``0``) form a mesh. A trial ends
    the leader's tab either with ``page.close()`` (a polite close: the page runs
    ``pagehide``, the member posts ``Bye``; the lab's side channel confirms the
    pagehide) or with ``page.goto("chrome://crash")`` (the renderer dies: no
    pagehide, no Bye; with Web Locks the browser releases its lock). Each trial
    waits a random part of a heartbeat first, so the leader's heartbeat phase is
    sampled. The clock starts just before that Playwright call (``time.time()``,
    the browser's clock).

    For each survivor, the time it adopted the final new leader is the first entry
    of ``pfm.events()`` naming it after the trigger (timeOrigin + ``at``). Reported:
    ``elected_ms``, when the new leader declared itself, and ``all_follow_ms``,
    when the last survivor followed it: the time to a single new leader. Then a
    fresh tab replaces the dead one (it joins and follows) for the next trial;
    polite and crash trials alternate.
    """
    query = f"channel=bench-failover-{int(locks)}&heartbeat={heartbeat:g}&locks={int(locks)}"
    context = h.browser.new_context()
    out: dict[str, Any] = {"locks": locks, "heartbeat_ms": heartbeat, "tabs": tabs, "close": [], "crash": []}
    rng = random.Random(f"failover-{locks}")
    try:
        pages, _ = h.open_tabs(context, tabs, query)
        h.wait_converged(pages)
        answer_timeout = pages[0].evaluate("pfm.state().config.answer_timeout")
        out["answer_timeout_ms"] = answer_timeout
        for trial in range(2 * trials):
            mode = "close" if trial % 2 == 0 else "crash"
            result = _failover_trial(h, pages, mode, heartbeat, rng)
            out[mode].append(result)
            dead = result.pop("_dead_page")
            with contextlib.suppress(Exception):
                if not dead.is_closed():
                    dead.close()
            pages = [p for p in pages if p is not dead]
            new, _ = h.open_tabs(context, tabs - len(pages), query)
            pages += new
            h.wait_converged(pages)
            time.sleep(0.3)
        for mode in ("close", "crash"):
            good = [t for t in out[mode] if t["all_follow_ms"] is not None]
            out[f"{mode}_all_follow"] = describe([t["all_follow_ms"] for t in good])
            out[f"{mode}_elected"] = describe([t["elected_ms"] for t in good])
            out[f"{mode}_failed"] = len(out[mode]) - len(good)
        h.log(f"failover (locks {'on' if locks else 'off'}, heartbeat {heartbeat:g} ms, {tabs} tabs): "
              f"polite close p50 {out['close_all_follow']['p50']:.0f} ms, "
              f"crash p50 {out['crash_all_follow']['p50']:.0f} ms / p95 {out['crash_all_follow']['p95']:.0f} ms")
    finally:
        context.close()
    return out


HANDS_OFF_S = 0.3
"""How long a failover trial leaves the survivors alone before asking their state. The times
come from each tab's own stamps, so asking sooner gains nothing, and each ``pfm.state()`` is
Python on the survivor's main thread: asked while the lock's grant or the ``Bye`` arrives, it
would hold that up (the anchor's trial waits as long, for the same reason)."""


WATCH_LOCK_JS = """(name) => { window.__grant = null; navigator.locks.request(name, {mode: "shared"}, () => {
  window.__grant = performance.timeOrigin + performance.now(); }); }"""
"""Queue a shared request for the lock ``name`` (held by another tab); ``window.__grant`` stamps
its grant (ms since the epoch, the browser's clock): the moment the browser freed that tab's locks."""


def end_leader(pages: list[Any], mode: str, api: str, timeout_s: float, poll_s: float,
               watcher: Any = None) -> dict[str, Any]:
    """Close (``mode`` ``"close"``: ``page.close()``, its ``pagehide`` runs) or crash
    (``chrome://crash``) the leading tab of ``pages``; time until the others follow one new leader.

    ``api`` is the page's JS object, ``pfm`` (the lab) or ``bcl`` (the anchor's page): its
    ``state()`` gives ``node_id``, ``role``, ``leader_id`` and ``lock`` (a Web Lock the tab holds
    while it lives, or null); its ``events()`` the tab's view of the leader over time (``leader``,
    ``at``: ``performance.now()``). The clock starts just before the Playwright call (the
    browser's clock). Returns ``all_follow_ms`` (when the last survivor followed), ``elected_ms``
    (when the new leader knew it), ``new_leader``, ``follow_ms`` (each survivor's), ``views``
    (each survivor's leader changes after the trigger: ``[leader, ms]``), ``error`` (a survivor
    died with the leader: a shared renderer), ``floor_ms`` (with a ``watcher`` page of the same origin and context and a
    leader's ``lock``: when the browser granted the watcher that lock, i.e. freed the old
    leader's locks, the floor of a hand-over by lock; else None), and, for the caller,
    ``_dead_page``, ``_survivors`` and ``_states`` (the survivors' last states).
    """
    states = [page.evaluate(f"{api}.state()") for page in pages]
    old = next(s["node_id"] for s in states if s["role"] == "leader")
    leader_page = pages[[s["node_id"] for s in states].index(old)]
    survivors = [p for p in pages if p is not leader_page]
    origins = [time_origin(p) for p in survivors]
    marks = [len(p.evaluate(f"{api}.events()")) for p in survivors]
    lock = states[pages.index(leader_page)].get("lock") if watcher is not None else None
    if lock:
        watcher.evaluate(WATCH_LOCK_JS, lock)
        time.sleep(0.05)
        if watcher.evaluate("window.__grant") is not None:
            lock = None  # not held (yet): this trial has no floor
    t0 = time.time() * 1000
    if mode == "close":
        leader_page.close()
    else:
        with contextlib.suppress(Exception):
            leader_page.goto("chrome://crash", timeout=5000)
    deadline = time.monotonic() + timeout_s
    result: dict[str, Any] = {"mode": mode, "old_leader": old, "elected_ms": None, "all_follow_ms": None,
                              "floor_ms": None, "_dead_page": leader_page, "_survivors": survivors, "_states": []}
    time.sleep(HANDS_OFF_S)
    while time.monotonic() < deadline:
        time.sleep(poll_s)
        try:
            states = [p.evaluate(f"{api}.state()") for p in survivors]
        except Exception as error:  # a survivor died with the leader (a shared renderer)
            result["error"] = f"{type(error).__name__}: {str(error).splitlines()[0]}"
            break
        leaders = [s["node_id"] for s in states if s["role"] == "leader"]
        if len(leaders) == 1 and leaders[0] != old and all(s["leader_id"] == leaders[0] for s in states):
            new = leaders[0]
            times, views = [], []
            for page, origin, mark in zip(survivors, origins, marks, strict=True):
                events = page.evaluate(f"{api}.events()")[mark:]
                adopted = next((e for e in events if e["leader"] == new), None)
                times.append(origin + adopted["at"] - t0 if adopted else None)
                views.append([[e["leader"], round(origin + e["at"] - t0, 1)] for e in events])
            if all(t is not None for t in times):
                new_page = survivors[[s["node_id"] for s in states].index(new)]
                result.update(new_leader=new, all_follow_ms=max(times), elected_ms=times[survivors.index(new_page)],
                              follow_ms=times, views=views, _states=states)
            break
    if lock:
        for _ in range(50):
            granted = watcher.evaluate("window.__grant")
            if granted is not None:
                result["floor_ms"] = granted - t0
                break
            time.sleep(0.02)
    return result


def _failover_trial(h: Harness, pages: list[Any], mode: str, heartbeat: float, rng: random.Random,
                    watcher: Any = None) -> dict[str, Any]:
    # A random phase against the heartbeat: without locks, detection waits out the silence
    # limit counted from the leader's last heartbeat, so the phase matters.
    time.sleep(rng.uniform(0.0, heartbeat / 1000))
    notes_before = {id(p): p.evaluate("window.labNotes.length") for p in pages}
    result = end_leader(pages, mode, "pfm", timeout_s=4 * heartbeat / 1000 + 10, poll_s=0.05, watcher=watcher)
    survivors, states = result.pop("_survivors"), result.pop("_states")
    if states:
        result["elections"] = sum(s["stats"].get("elections", 0) for s in states)
    if mode == "close" and "error" not in result:
        notes = [n for p in survivors for n in p.evaluate(f"window.labNotes.slice({notes_before[id(p)]})")]
        result["pagehide_seen"] = any(n.get("event") == "pagehide" and n.get("node_id") == result["old_leader"]
                                      for n in notes)
    return result


# ---- everything --------------------------------------------------------------------


def run_all(*, quick: bool = False, log: Log = print) -> dict[str, Any]:
    """Every browser figure, with the settings used, as JSON-ready data."""
    t0 = time.monotonic()
    settings = {
        "sizes": (1, 2, 5) if quick else (1, 2, 5, 10, 20),
        "rounds": 2 if quick else 3,
        "latency_rounds": 2 if quick else 4,  # extra rounds at the largest size: follower latency samples
        "delay_ms": 100,
        "calls_heartbeat": 5000.0,  # the library default
        "idle_size": 5 if quick else 10,
        "idle_s": 10.0 if quick else 30.0,
        "failover_trials": 2 if quick else 6,
        "failover_tabs": 3 if quick else 4,
        "failover_heartbeat": 1000.0,
        "import_trials": 2 if quick else 5,
    }
    out: dict[str, Any] = {"settings": settings}
    with Harness(log) as h:
        out["chromium"] = h.browser.version
        out["import"] = bench_import(h, settings["import_trials"])
        for mesh in (True, False):
            out["calls_mesh" if mesh else "calls_direct"] = bench_calls(
                h, mesh=mesh, sizes=settings["sizes"], rounds=settings["rounds"],
                latency_rounds=settings["latency_rounds"], delay_ms=settings["delay_ms"],
                heartbeat=settings["calls_heartbeat"], idle_size=settings["idle_size"], idle_s=settings["idle_s"])
        for locks in (True, False):
            out["failover_locks" if locks else "failover_no_locks"] = bench_failover(
                h, locks=locks, trials=settings["failover_trials"], tabs=settings["failover_tabs"],
                heartbeat=settings["failover_heartbeat"])
    out["wall_s"] = time.monotonic() - t0
    return out


if __name__ == "__main__":
    print(json.dumps(run_all(quick=True), indent=1, default=str)[:20000])
