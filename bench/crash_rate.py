"""How often Pyodide tabs crash in Debian's Chromium, by command line and by Pyodide loader.

Why: Chromium's allocation samplers (the in-process heap profiler, which a browser
session switches on at random, and GWP-ASan) walk frame pointers to record a sampled
allocation's stack, and in a tab where Pyodide runs Python on JSPI (stack switching)
stacks that walk faults: the tab dies ("Target crashed"). See tests/chromium_args.py
and web/pyodide-nojspi.mjs. This script counts those crashes per tab-minute.

One *session* = one fresh Chromium (Playwright, ``executable_path=/usr/bin/chromium``),
one context, ``--tabs`` tabs of the page opened one after another (as a user would),
kept busy for ``--minutes``: every tab runs the page's own timers, and the driver
clicks the demo's "Refresh" (or runs ``pfm.execute`` on the lab page) in one tab after
another every ``--poke`` seconds. A tab that crashes is counted and replaced by a new
one, so that ``--tabs`` tabs stay open. Tab-minutes count every tab from its opening
(boot included: that is when most crashes happen) to its crash or the session's end.

Axes:

* ``--samplers``: ``on`` = the ordinary command line (only what root and headless need,
  as a user's browser: the samplers keep their defaults, so the heap profiler is on in
  a random share of sessions); ``off`` = the tests' command line
  (tests/chromium_args.py: both samplers disabled); ``profiler`` / ``gwp-asan`` = ordinary
  plus that sampler forced on in every renderer, sampling every ``--rate`` bytes
  (profiler) or about every ``--rate`` allocations (GWP-ASan): the worst case a user
  meets, made repeatable.
* ``--loader``: ``plain`` = the PyScript config points at the vendored
  ``pyodide.mjs`` (JSPI used); ``nojspi`` = it points at ``web/pyodide-nojspi.mjs``.
  The page's ``wheels/pyscript.json`` is replaced through Playwright's routing, so
  both loaders are measured on the same build whatever build.sh wrote.

Each session prints one JSON line (and appends it to ``--out`` if given): the tab-minutes,
crashes, boot times, whether its renderers had the heap profiler on (read from their
``/proc/<pid>/cmdline``: ``--subproc-heap-profiling``) and in how many tabs the
``nojspi`` loader warned that Pyodide used JSPI after all. ``--speed`` instead times, per
loader, a tab's boot, a pure-Python loop and a chain of asyncio steps (each a call from JS
into Python), one tab at a time, ``--sessions`` rounds, with the tests' command line
(samplers off).

Run: ``/work/main/.venv/bin/python bench/crash_rate.py --tabs 3 --minutes 3 --samplers on
--loader plain --sessions 2 --out crash.jsonl``; ``--summary crash.jsonl`` totals a file.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib.util
import json
import sys
import time
import uuid
from collections import defaultdict
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
WEB_DIR = ROOT / "web"
SERVER = ROOT / "tools" / "server.py"
sys.path.insert(0, str(ROOT / "tests"))
from chromium_args import BASE_ARGS, CHROMIUM, chromium_args  # noqa: E402

# Paths from the site's root, as in the build's config: the lab page is at /lab/, the others at /.
LOADERS = {"plain": "/vendor/pyodide/pyodide.mjs", "nojspi": "/pyodide-nojspi.mjs"}
# Ordinary: the switches root and headless need, and no traffic to Google's servers.
ORDINARY_ARGS = list(BASE_ARGS)
# Forcing a sampler on in every renderer, with a short sampling interval: the worst case,
# made repeatable. At the profiler's own interval (10 MB) forced sessions crashed no tab in
# 41 tab-minutes here; at 1 MB or 100 KB most Pyodide tabs with JSPI die while booting.
# Whether the GWP-ASan parameters take effect could not be seen from outside.
FORCE_PROFILER = ("--enable-features=HeapProfilerReporting:stable-probability/1.0/nonstable-probability/1.0"
                  "/renderer-sampling-rate-bytes/{rate}")
FORCE_GWP_ASAN = ("--enable-features=GwpAsanPartitionAlloc:ProcessSamplingProbability/1.0"
                  "/AllocationSamplingMultiplier/{rate}/AllocationSamplingRange/1,"
                  "GwpAsanMalloc:ProcessSamplingProbability/1.0/AllocationSamplingMultiplier/{rate}"
                  "/AllocationSamplingRange/1")
READY_JS = "window.pyflowmesh_ready === true"
# One tab of --speed: when PyScript ran the script (ms since navigation), a pure-Python
# loop, 2,000 asyncio steps (each one a call from JS into Python), and whether Pyodide
# took JSPI (its Module's own flag).
SPEED_PAGE = """<!doctype html><meta charset="utf-8"><title>speed</title>
<script type="module" src="./vendor/pyscript/core.js"></script>
<script type="py" config="./wheels/pyscript.json">
import asyncio, time, js, pyodide_js
ready_ms = js.performance.now()
t0 = time.perf_counter()
n = 0
for i in range(2_000_000):
    n += i & 7
loop_ms = (time.perf_counter() - t0) * 1000
async def steps(k):
    t = time.perf_counter()
    for _ in range(k):
        await asyncio.sleep(0)
    return (time.perf_counter() - t) * 1000
async def main():
    js.window.speed = js.JSON.parse(js.JSON.stringify(js.Object.fromEntries([
        ["loop_ms", loop_ms], ["steps_ms", await steps(2000)],
        ["jspi", bool(pyodide_js._module.jspiSupported)], ["ready_ms", ready_ms]])))
asyncio.ensure_future(main())
</script>"""


def load_server() -> Any:
    spec = importlib.util.spec_from_file_location("pyflowmesh_web_server", SERVER)
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def launch_args(samplers: str, marker: str, rate: int) -> list[str]:
    """The command line of one session; ``marker`` finds its processes in /proc."""
    if samplers == "off":
        args = chromium_args()
    elif samplers == "on":
        args = list(ORDINARY_ARGS)
    elif samplers == "profiler" and rate <= 0:  # the profiler's own sampling interval
        args = [*ORDINARY_ARGS, FORCE_PROFILER.split("/renderer-")[0]]
    elif samplers == "profiler":
        args = [*ORDINARY_ARGS, FORCE_PROFILER.format(rate=rate)]
    elif samplers == "gwp-asan":
        args = [*ORDINARY_ARGS, FORCE_GWP_ASAN.format(rate=rate)]
    else:
        raise ValueError(samplers)
    return [*args, f"--crash-rate-session={marker}"]


def session_processes(marker: str) -> dict[str, Any]:
    """The session's renderers (descendants of the browser process carrying ``marker``)."""
    cmdlines: dict[int, str] = {}
    parents: dict[int, int] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            cmd = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        cmdlines[int(entry.name)] = cmd
        parents[int(entry.name)] = int(stat.rsplit(")", 1)[1].split()[1])
    roots = {pid for pid, cmd in cmdlines.items() if f"--crash-rate-session={marker}" in cmd and "--type=" not in cmd}
    family = set(roots)
    changed = True
    while changed:
        changed = False
        for pid, parent in parents.items():
            if parent in family and pid not in family:
                family.add(pid)
                changed = True
    renderers = [cmdlines[pid] for pid in family if "--type=renderer" in cmdlines[pid]]
    return {
        "renderers": len(renderers),
        "heap_profiling": sum("--subproc-heap-profiling" in cmd for cmd in renderers),
    }


def route_config(context: Any, loader: str, wheel: str) -> None:
    """Serve ``wheels/pyscript.json`` with the chosen interpreter (same packages as the build's)."""
    body = json.dumps({"interpreter": LOADERS[loader], "packages": [f"./{wheel}"]})
    context.route("**/wheels/pyscript.json", lambda route: route.fulfill(
        status=200, content_type="application/json", body=body, headers={"Cache-Control": "no-store"}))


class Tab:
    """One opened tab: when it opened, became ready, crashed (``time.monotonic()``)."""

    def __init__(self, page: Any, url: str) -> None:
        self.page = page
        self.opened = time.monotonic()
        self.ready: float | None = None
        self.crashed: float | None = None
        self.closed: float | None = None
        self.jspi_warning = False
        page.on("crash", lambda _p: setattr(self, "crashed", self.crashed or time.monotonic()))
        page.on("console", self._console)
        page.goto(url, wait_until="commit")

    def _console(self, message: Any) -> None:
        if "pyodide-nojspi: Pyodide uses JSPI" in message.text:
            self.jspi_warning = True

    def alive(self) -> bool:
        return self.crashed is None and self.closed is None

    def minutes(self, end: float) -> float:
        return ((self.crashed or self.closed or end) - self.opened) / 60


def run_session(args: argparse.Namespace, playwright: Any, base_url: str, wheel: str) -> dict[str, Any]:
    marker = uuid.uuid4().hex[:12]
    browser = playwright.chromium.launch(executable_path=CHROMIUM, args=launch_args(args.samplers, marker, args.rate))
    try:
        context = browser.new_context()
        route_config(context, args.loader, wheel)
        clock = context.new_page()  # about:blank: a page that never runs Pyodide, to wait on
        channel = f"crash-{marker}"
        url = (f"{base_url}/lab/?channel={channel}" if args.page == "lab" else f"{base_url}/index.html")
        tabs: list[Tab] = []
        started = time.monotonic()
        end = started + args.minutes * 60
        processes = {"renderers": 0, "heap_profiling": 0}
        poke_at = started + args.poke
        turn = 0
        while True:
            now = time.monotonic()
            if now >= end:
                break
            alive = [tab for tab in tabs if tab.alive()]
            # Open tabs one after another, as a user would (and to spare the 2 cores).
            if len(alive) < args.tabs and all(tab.ready for tab in alive if now - tab.opened < args.boot_limit):
                tabs.append(Tab(context.new_page(), url))
                continue
            for tab in alive:
                if tab.ready is None:
                    try:
                        if tab.page.evaluate(READY_JS):
                            tab.ready = time.monotonic()
                    except Exception:
                        pass
            if now >= poke_at:
                ready = [tab for tab in alive if tab.ready]
                if ready:
                    tab = ready[turn % len(ready)]
                    turn += 1
                    script = ("pfm.execute('data').then(() => true)" if args.page == "lab"
                              else "document.getElementById('refresh').click()")
                    with contextlib.suppress(Exception):
                        tab.page.evaluate(script)
                poke_at = now + args.poke
            seen = session_processes(marker)
            for key in processes:
                processes[key] = max(processes[key], seen[key])
            clock.wait_for_timeout(500)
        finish = time.monotonic()
        for tab in tabs:
            if tab.alive():
                tab.closed = finish
        crashes = [tab for tab in tabs if tab.crashed]
        return {
            "samplers": (args.samplers if args.samplers in ("on", "off")
                         else f"{args.samplers}@{args.rate or 'default'}"),
            "loader": args.loader, "page": args.page, "tabs": args.tabs,
            "minutes": args.minutes, "opened": len(tabs), "crashes": len(crashes),
            "tab_minutes": round(sum(tab.minutes(finish) for tab in tabs), 2),
            "crash_after_s": [round(tab.crashed - tab.opened, 1) for tab in crashes if tab.crashed],
            "crashed_before_ready": sum(1 for tab in crashes if tab.ready is None),
            "boot_s": [round(tab.ready - tab.opened, 2) for tab in tabs if tab.ready],
            "max_renderers": processes["renderers"], "heap_profiling_renderers": processes["heap_profiling"],
            "jspi_warnings": sum(tab.jspi_warning for tab in tabs),
            "wall": time.strftime("%Y-%m-%dT%H:%M:%S"),
        }
    finally:
        browser.close()


def run_speed(args: argparse.Namespace, playwright: Any, base_url: str, wheel: str) -> list[dict[str, Any]]:
    """Boot, a 2,000,000-step Python loop and 2,000 asyncio steps, one tab at a time per loader."""
    results = []
    browser = playwright.chromium.launch(executable_path=CHROMIUM, args=chromium_args())
    try:
        for round_ in range(args.sessions):
            for loader in ("plain", "nojspi"):
                context = browser.new_context()
                route_config(context, loader, wheel)
                context.route("**/speed.html", lambda route: route.fulfill(
                    status=200, content_type="text/html", body=SPEED_PAGE))
                page = context.new_page()
                page.goto(f"{base_url}/speed.html")
                page.wait_for_function("window.speed !== undefined", timeout=120_000)
                result = {"loader": loader, "round": round_, **page.evaluate("window.speed")}
                print(json.dumps(result), flush=True)
                results.append(result)
                context.close()
    finally:
        browser.close()
    return results


def summarize(path: Path) -> None:
    """Totals per (samplers, loader, page) of a JSON-lines file of sessions."""
    totals: dict[tuple[str, str, str], dict[str, float]] = defaultdict(lambda: defaultdict(float))
    for line in path.read_text().splitlines():
        row = json.loads(line)
        if "samplers" not in row:
            continue
        key = (row["samplers"], row["loader"], row["page"])
        total = totals[key]
        total["sessions"] += 1
        total["profiled_sessions"] += 1 if row["heap_profiling_renderers"] else 0
        total["tab_minutes"] += row["tab_minutes"]
        total["crashes"] += row["crashes"]
        total["tabs_opened"] += row["opened"]
    print(f"{'samplers':16} {'loader':7} {'page':5} {'sessions':>8} {'profiled':>8} {'tabs':>5} "
          f"{'tab-min':>8} {'crashes':>7} {'per tab-min':>11}")
    for (samplers, loader, page), t in sorted(totals.items()):
        rate = t["crashes"] / t["tab_minutes"] if t["tab_minutes"] else float("nan")
        print(f"{samplers:16} {loader:7} {page:5} {t['sessions']:8.0f} {t['profiled_sessions']:8.0f} "
              f"{t['tabs_opened']:5.0f} {t['tab_minutes']:8.1f} {t['crashes']:7.0f} {rate:11.3f}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tabs", type=int, default=3)
    parser.add_argument("--minutes", type=float, default=3.0)
    parser.add_argument("--sessions", type=int, default=1)
    parser.add_argument("--samplers", choices=("on", "off", "profiler", "gwp-asan"), default="on")
    parser.add_argument("--rate", type=int, default=100_000,
                        help="profiler: bytes between samples (0: its default); gwp-asan: allocations between samples")
    parser.add_argument("--loader", choices=tuple(LOADERS), default="plain")
    parser.add_argument("--page", choices=("demo", "lab"), default="demo")
    parser.add_argument("--poke", type=float, default=3.0, help="seconds between driver actions")
    parser.add_argument("--boot-limit", type=float, default=60.0,
                        help="seconds after which a tab that is not ready no longer holds back the next")
    parser.add_argument("--out", type=Path, help="append one JSON line per session")
    parser.add_argument("--speed", action="store_true", help="time boot, a loop and asyncio steps per loader")
    parser.add_argument("--summary", type=Path, help="only print the totals of a JSON-lines file")
    args = parser.parse_args(argv)
    if args.summary:
        summarize(args.summary)
        return 0
    manifest = json.loads((WEB_DIR / "wheels/manifest.json").read_text())
    server_module = load_server()
    server, thread = server_module.start_server("127.0.0.1", 0, directory=WEB_DIR)
    from playwright.sync_api import sync_playwright

    try:
        with sync_playwright() as playwright:
            if args.speed:
                rows = run_speed(args, playwright, server.url, manifest["wheel"])
                if args.out:
                    with args.out.open("a") as out:
                        out.writelines(json.dumps({"speed": True, **row}) + "\n" for row in rows)
                return 0
            for _ in range(args.sessions):
                row = run_session(args, playwright, server.url, manifest["wheel"])
                print(json.dumps(row), flush=True)
                if args.out:
                    with args.out.open("a") as out:
                        out.write(json.dumps(row) + "\n")
    finally:
        server_module.stop_server(server, thread)
    return 0


if __name__ == "__main__":
    sys.exit(main())
