"""Cold start and import cost in real Chromium tabs: where a tab's start goes, and ``import pyflowmesh``.

* :func:`bench_cold_start`: N lab tabs (``web/lab/``, default 4) opened at once, until
  every tab follows one leader. Each trial opens them in a new browser context (a first
  visit: empty HTTP cache, no compiled code cached); ``warm`` trials open them in a
  context that has loaded the page once before (a return visit: what the HTTP cache and
  Chromium's code cache keep between visits). ``all_following_ms``: from the first
  tab's navigation start to the moment the last tab took the view it keeps (one leader,
  every tab following it), all on the browser's clock (``performance.timeOrigin +
  performance.now()``). Per tab, from its ``performance`` marks (set by
  ``web/pyodide-nojspi.mjs`` and ``web/lab/lab.py``): ``to_loader`` (navigation to
  PyScript calling our interpreter module: PyScript's own load), ``pyodide`` (the
  vendored ``loadPyodide``, plus installing the wheel when the loader does it),
  ``to_imported`` (PyScript's Python setup, its ``packages`` through micropip when the
  config has any, and the page's imports), ``to_mesh`` (the page's code up to
  ``FlowMesh(...)``), ``to_ready`` (the rest of the page's code), ``to_following``
  (the tab's ready to its final view).
* :func:`bench_import`: ``import pyflowmesh`` (and the runtime and browser transports it
  loads on first use) in a fresh page, with the package installed as the lab page installs
  it (the config's ``packages`` through micropip, or the loader's ``pyflowmesh_wheel``),
  timed in Python; and the bytes of the wheel (or bundle) the browser downloads.

* :func:`bc_cold_start_trial`: the anchor, broadcast-channel 7.4.0's page (``web/lab/bc.html``,
  once ``./build.sh bench`` has bundled it into ``web/vendor/broadcast-channel/``), as many
  tabs opened at once, interleaved with the trials above: until exactly one tab leads and every
  tab has made its elector (its followers wait in the Web Lock's queue, knowing no leader).

``trees``: each is a checkout whose ``web/`` is built and whose ``tools/server.py`` serves it
(so a snapshot of an earlier build can be measured beside this one, trials interleaved).

    .venv/bin/python -m bench.startup_bench [--trials 5] [--tabs 4] [--tree NAME=PATH]...
"""

from __future__ import annotations

import argparse
import contextlib
import importlib.util
import json
import sys
import time
import uuid
from pathlib import Path
from typing import Any

from .browser_bench import describe

ROOT = Path(__file__).resolve().parents[1]
READY_JS = "window.pyflowmesh_ready === true"

# Per tab: the marks, the resources of interest and the leader view over time, on one clock.
TAB_JS = """() => {
  const origin = performance.timeOrigin;
  const marks = {};
  for (const m of performance.getEntriesByType("mark")) marks[m.name] = m.startTime;
  const resources = performance.getEntriesByType("resource")
    .filter((r) => /\\.(whl|wasm|zip|mjs|tar|tgz|gz)$/.test(r.name) || r.name.endsWith("pyscript.json"))
    .map((r) => ({ name: r.name.split("/").pop(), start: r.startTime, end: r.responseEnd,
                   transfer: r.transferSize, encoded: r.encodedBodySize, decoded: r.decodedBodySize }));
  return { origin, marks, resources, ready_ms: window.pyflowmesh_ready_ms, events: window.pfm.events(),
           state: window.pfm.state() };
}"""


def _chromium() -> tuple[str, list[str]]:
    spec = importlib.util.spec_from_file_location("pyflowmesh_chromium_args", ROOT / "tests" / "chromium_args.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.CHROMIUM, module.chromium_args()


def _start_server(tree: Path) -> tuple[Any, Any, Any]:
    spec = importlib.util.spec_from_file_location(f"pyflowmesh_server_{uuid.uuid4().hex}", tree / "tools" / "server.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    server, thread = module.start_server("127.0.0.1", 0, directory=tree / "web")
    return module, server, thread


def _converged(states: list[dict[str, Any]]) -> bool:
    leaders = [s["node_id"] for s in states if s["role"] == "leader"]
    return len(leaders) == 1 and all(s["leader_id"] == leaders[0] for s in states)


def _tab_breakdown(tab: dict[str, Any], following_at: float) -> dict[str, float | None]:
    marks = tab["marks"]

    def span(a: str | None, b: str | None) -> float | None:
        start = 0.0 if a is None else marks.get(a)
        end = marks.get(b) if b else None
        return None if start is None or end is None else end - start

    out = {
        "to_loader": span(None, "pyflowmesh:pyodide-start"),
        "pyodide": span("pyflowmesh:pyodide-start", "pyflowmesh:pyodide-ready"),
        "to_imported": span("pyflowmesh:pyodide-ready", "lab:imported"),
        "to_mesh": span("lab:imported", "lab:mesh"),
        "to_ready": (tab["ready_ms"] - marks["lab:mesh"]) if "lab:mesh" in marks else None,
        "to_following": following_at - tab["origin"] - tab["ready_ms"],
        "ready_ms": float(tab["ready_ms"]),
    }
    wheel = next((r for r in tab["resources"] if r["name"].startswith("pyflowmesh-")), None)
    out["wheel_transfer"] = wheel["transfer"] if wheel else None
    out["wheel_bytes"] = wheel["encoded"] if wheel else None
    return out


def cold_start_trial(browser: Any, base_url: str, tabs: int, warm: bool, timeout_s: float = 240.0) -> dict[str, Any]:
    """One trial: ``tabs`` lab tabs navigated at once in a new context (after one priming visit if ``warm``)."""
    context = browser.new_context()
    try:
        if warm:
            page = context.new_page()
            page.goto(f"{base_url}/lab/?channel=prime-{uuid.uuid4().hex}", wait_until="domcontentloaded")
            page.wait_for_function(READY_JS, timeout=timeout_s * 1000)
            time.sleep(1.0)  # let Chromium write what it caches after the load (compiled wasm, scripts)
            page.close()
        channel = f"cold-{uuid.uuid4().hex[:8]}"
        pages = [context.new_page() for _ in range(tabs)]
        for page in pages:
            page.goto(f"{base_url}/lab/?channel={channel}&heartbeat=1000", wait_until="commit")
        deadline = time.monotonic() + timeout_s
        for page in pages:
            page.wait_for_function(READY_JS, timeout=max(1000.0, (deadline - time.monotonic()) * 1000), polling=50)
        while True:
            data = [page.evaluate(TAB_JS) for page in pages]
            if _converged([d["state"] for d in data]):
                break
            if time.monotonic() > deadline:
                raise RuntimeError("the tabs did not converge on one leader")
            time.sleep(0.05)
        start = min(d["origin"] for d in data)
        # The moment each tab took the view it keeps: its last leader event.
        following = [d["origin"] + d["events"][-1]["at"] for d in data]
        all_following = max(following)
        last_ready = max(d["origin"] + d["ready_ms"] for d in data)
        return {
            "all_following_ms": all_following - start,
            "last_ready_ms": last_ready - start,
            "election_after_last_ready_ms": all_following - last_ready,
            "tabs": [_tab_breakdown(d, all_following) for d in data],
        }
    finally:
        context.close()


# The anchor: broadcast-channel 7.4.0's page (web/lab/bc.html, bundled by ./build.sh bench), the
# same number of tabs opened at once. Its followers wait in the Web Lock's queue without learning
# who leads, so "settled" is: every tab has made its elector and exactly one tab leads.
BC_TAB_JS = """() => ({ origin: performance.timeOrigin, state: window.bcl.state(), events: window.bcl.events(),
  ready_ms: (performance.getEntriesByType("navigation")[0] || {}).domContentLoadedEventEnd || null })"""


def bc_cold_start_trial(browser: Any, base_url: str, tabs: int, timeout_s: float = 60.0) -> dict[str, Any]:
    """broadcast-channel's page in ``tabs`` tabs at once (a first visit): until one leads and all run an elector."""
    context = browser.new_context()
    try:
        channel = f"bc-cold-{uuid.uuid4().hex[:8]}"
        pages = [context.new_page() for _ in range(tabs)]
        for page in pages:
            page.goto(f"{base_url}/lab/bc.html?channel={channel}", wait_until="commit")
        deadline = time.monotonic() + timeout_s
        for page in pages:
            page.wait_for_function("window.bcl_ready === true && !!window.bcl",
                                   timeout=max(1000.0, (deadline - time.monotonic()) * 1000), polling=20)
        while True:
            data = [page.evaluate(BC_TAB_JS) for page in pages]
            leaders = [d for d in data if d["state"]["role"] == "leader"]
            if len(leaders) == 1 and all(d["ready_ms"] for d in data):
                break
            if time.monotonic() > deadline:
                raise RuntimeError("broadcast-channel's tabs did not settle on one leader")
            time.sleep(0.05)
        start = min(d["origin"] for d in data)
        led = leaders[0]
        led_at = led["origin"] + next(e["at"] for e in led["events"] if e["role"] == "leader")
        last_ready = max(d["origin"] + d["ready_ms"] for d in data)
        return {"all_following_ms": max(led_at, last_ready) - start, "last_ready_ms": last_ready - start}
    finally:
        context.close()


def _summary(trials: list[dict[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {name: describe([t[name] for t in trials])
                           for name in ("all_following_ms", "last_ready_ms", "election_after_last_ready_ms")}
    per_tab: dict[str, Any] = {}
    for name in trials[0]["tabs"][0]:
        values = [tab[name] for t in trials for tab in t["tabs"] if tab[name] is not None]
        per_tab[name] = describe(values) if values else None
    out["per_tab"] = per_tab
    return out


# ---- import --------------------------------------------------------------------------------

IMPORT_JS = """async () => {
  const config = await (await fetch("/wheels/pyscript.json", { cache: "no-store" })).json();
  const t0 = performance.now();
  const { loadPyodide } = await import("/pyodide-nojspi.mjs");
  const pyodide = await loadPyodide({});
  const t1 = performance.now();
  let installed = "loader";
  if (config.packages && config.packages.length) {
    await pyodide.loadPackage("micropip", { messageCallback: () => {} });
    const micropip = pyodide.pyimport("micropip");
    await micropip.install(config.packages.map((p) => new URL(p, location.origin + "/wheels/").href));
    installed = "micropip";
  }
  const t2 = performance.now();
  const inner = pyodide.runPython(`
import sys, time
before = set(sys.modules)
t = time.perf_counter()
import pyflowmesh
ms = (time.perf_counter() - t) * 1000
t = time.perf_counter()
from pyflowmesh import use_flow
import pyflowmesh.transports.broadcast_channel, pyflowmesh.transports.web_locks, pyflowmesh.transports.page_lifecycle
browser_ms = (time.perf_counter() - t) * 1000
import importlib.util
{"import_ms": ms, "import_browser_ms": browser_ms, "total_ms": ms + browser_ms,
 "sourceless": pyflowmesh.__file__.endswith(".pyc"),
 "simulation_installed": importlib.util.find_spec("pyflowmesh.simulation") is not None,
 "new_modules": sorted(set(sys.modules) - before)}`).toJs({ dict_converter: Object.fromEntries });
  const wheels = performance.getEntriesByType("resource").filter((r) => /\\.(whl|tar\\.gz)$/.test(r.name))
    .map((r) => ({ name: r.name.split("/").pop(), bytes: r.encodedBodySize }));
  return { boot_ms: t1 - t0, install_ms: t2 - t1, installed, wheels, ...inner };
}"""


def import_trial(browser: Any, base_url: str) -> dict[str, Any]:
    context = browser.new_context()
    try:
        page = context.new_page()
        page.goto(f"{base_url}/wheels/", wait_until="load")  # any page of the origin
        result: dict[str, Any] = page.evaluate(IMPORT_JS)
        return result
    finally:
        context.close()


# ---- all ----------------------------------------------------------------------------------------


def run(trees: dict[str, Path], *, trials: int = 5, tabs: int = 4, import_trials: int = 5,
        warm: bool = True, log: Any = print) -> dict[str, Any]:
    """Every tree's cold start (first and, if ``warm``, return visits) and import, trials interleaved."""
    from playwright.sync_api import sync_playwright

    chromium, args = _chromium()
    out: dict[str, Any] = {"settings": {"trials": trials, "tabs": tabs, "import_trials": import_trials},
                           "trees": {}}
    raw: dict[str, dict[str, list[dict[str, Any]]]] = {name: {"first": [], "warm": [], "import": []}
                                                        for name in trees}
    with contextlib.ExitStack() as stack:
        urls = {}
        for name, tree in trees.items():
            module, server, thread = _start_server(tree)
            stack.callback(module.stop_server, server, thread)
            urls[name] = server.url
        playwright = stack.enter_context(sync_playwright())
        browser = playwright.chromium.launch(executable_path=chromium, args=args)
        stack.callback(browser.close)
        out["chromium"] = browser.version
        bc = all((tree / "web" / "vendor" / "broadcast-channel" / "bc.js").is_file() for tree in trees.values())
        bc_trials: list[dict[str, Any]] = []
        for _ in range(import_trials):
            for name in trees:
                raw[name]["import"].append(import_trial(browser, urls[name]))
        for i in range(trials):
            for name in trees:
                for mode in ("first", "warm") if warm else ("first",):
                    trial = cold_start_trial(browser, urls[name], tabs, warm=mode == "warm")
                    raw[name][mode].append(trial)
                    log(f"startup {name} {mode} {i + 1}/{trials}: all follow one leader after "
                        f"{trial['all_following_ms']:.0f} ms (last tab ready {trial['last_ready_ms']:.0f} ms)")
            if bc:
                try:
                    trial = bc_cold_start_trial(browser, next(iter(urls.values())), tabs)
                except Exception as error:  # the anchor failing must not lose our own figures
                    log(f"startup broadcast-channel first {i + 1}/{trials}: failed ({error})")
                    continue
                bc_trials.append(trial)
                log(f"startup broadcast-channel first {i + 1}/{trials}: one leader, every tab ready after "
                    f"{trial['all_following_ms']:.0f} ms")
    for name, runs in raw.items():
        imports = runs["import"]
        entry: dict[str, Any] = {
            "import": {
                "import_ms": describe([t["import_ms"] for t in imports]),
                "import_browser_ms": describe([t["import_browser_ms"] for t in imports]),
                "total_ms": describe([t["total_ms"] for t in imports]),
                "boot_ms": describe([t["boot_ms"] for t in imports]),
                "install_ms": describe([t["install_ms"] for t in imports]),
                "installed": imports[0]["installed"], "wheels": imports[0]["wheels"],
                "download_bytes": sum(w["bytes"] for w in imports[0]["wheels"]),
                "sourceless": imports[0]["sourceless"],
                "simulation_installed": imports[0]["simulation_installed"],
                "new_modules": imports[0]["new_modules"],
            },
            "trials": runs,
        }
        if runs["first"]:
            entry["first"] = _summary(runs["first"])
        if runs["warm"]:
            entry["warm"] = _summary(runs["warm"])
        out["trees"][name] = entry
    if bc_trials:
        out["broadcast_channel"] = {"first": {key: describe([t[key] for t in bc_trials])
                                              for key in ("all_following_ms", "last_ready_ms")},
                                    "trials": bc_trials}
    return out


def report_lines(result: dict[str, Any]) -> list[str]:
    """A short text summary: per tree, import and cold start p50/p95 with the per-tab breakdown."""
    lines = []
    for name, entry in result["trees"].items():
        imp = entry["import"]
        lines.append(f"[{name}] import pyflowmesh {imp['import_ms']['p50']:.1f} ms + runtime "
                     f"{imp['import_browser_ms']['p50']:.1f} ms = {imp['total_ms']['p50']:.1f} ms (p50); "
                     f"wheel download {imp['download_bytes'] / 1024:.1f} KiB via {imp['installed']}; "
                     f"sourceless {imp['sourceless']}, simulation installed {imp['simulation_installed']}")
        for mode in ("first", "warm"):
            if mode not in entry:
                continue
            s = entry[mode]
            parts = ", ".join(f"{k} {v['p50']:.0f}" for k, v in s["per_tab"].items()
                              if v and not k.startswith("wheel"))
            lines.append(f"[{name}] {mode}: all following p50 {s['all_following_ms']['p50']:.0f} / p95 "
                         f"{s['all_following_ms']['p95']:.0f} ms; last ready p50 {s['last_ready_ms']['p50']:.0f}; "
                         f"election after last ready p50 {s['election_after_last_ready_ms']['p50']:.0f} ms; "
                         f"per tab p50 (ms): {parts}")
        floor = imp["boot_ms"]["p50"]
        lines.append(f"[{name}] floor (one tab's loadPyodide alone, with the wheel) p50 {floor:.0f} ms")
    anchor = result.get("broadcast_channel")
    if anchor:
        f = anchor["first"]["all_following_ms"]
        lines.append(f"[broadcast-channel 7.4.0] first: one leader, every tab ready p50 {f['p50']:.0f} / "
                     f"p95 {f['p95']:.0f} ms")
    return lines


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=5)
    parser.add_argument("--tabs", type=int, default=4)
    parser.add_argument("--import-trials", type=int, default=5)
    parser.add_argument("--no-warm", action="store_true", help="first visits only")
    parser.add_argument("--tree", action="append", default=[], metavar="NAME=PATH",
                        help="a built checkout to measure (default: this one, as 'this')")
    parser.add_argument("--out", type=Path, help="write the results as JSON here")
    args = parser.parse_args(argv)
    trees = {"this": ROOT} if not args.tree else {
        name: Path(path).resolve() for name, path in (t.split("=", 1) for t in args.tree)}
    result = run(trees, trials=args.trials, tabs=args.tabs, import_trials=args.import_trials,
                 warm=not args.no_warm)
    if args.out:
        args.out.write_text(json.dumps(result, indent=1, default=str))
    print("\n".join(report_lines(result)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
