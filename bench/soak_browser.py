"""The soak in real Chromium: 4 lab tabs executing ever-new keys for minutes, memory sampled.

Every tab is ``/lab/?via=flow&wire=0&max_entries=64&...`` (``web/lab/lab.py``; ``wire=0``:
the page's own tap of the channel records nothing, else it would fill the JS heap): its
``pfm.execute`` goes through ``Flow.execute``, as a page's flow does, so it follows
each key (listeners) as well as caching it. A loop of plain JS in each tab executes
the key of the current time slot (``soak-<slot>``, a new slot every ``slot_ms``) and
waits for the next slot, so the tabs ask for the same new key at about the same
moment: one of them calls the server (``tools/server.py``, in this process), the others
get the result from the mesh or their cache. Nothing repeats: every slot is a new key.

Every ``sample_s`` seconds, per tab: a garbage collection in Python (``gc.collect()``
in ``pfm.state("memory")``) and in JS (CDP ``HeapProfiler.collectGarbage``), then

* ``wasm_bytes``: Pyodide's WebAssembly memory (``HEAPU8.length``; it never shrinks, so
  a leak shows as steps up);
* ``js_heap_used``: CDP ``Performance.getMetrics`` ``JSHeapUsedSize``;
* ``live_proxies``: the PyProxies the transport holds (its BroadcastChannel, Web Locks and page lifecycle),
  plus ``lab_proxies`` (``window.pfm``'s);
* ``gc_objects`` (the Python objects the collector tracks; ``sys.getallocatedblocks()``
  says 0 under Pyodide), and the sizes of the mesh's bounded structures (cache
  entries, version marks, listeners, pending).

Chromium is launched with ``tests/chromium_args.py``'s command line.
"""

from __future__ import annotations

import contextlib
import importlib.util
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
WEB_DIR = ROOT / "web"
SERVER = ROOT / "tools" / "server.py"
READY_JS = "window.pyflowmesh_ready === true"

Log = Callable[[str], None]

LOOP_JS = """([slotMs]) => {
  const soak = (window.__soak = {done: 0, failed: 0, sources: {}, last_error: null, stop: false});
  (async () => {
    let last = -1;
    while (!soak.stop) {
      const slot = Math.floor(Date.now() / slotMs);
      if (slot !== last) {
        last = slot;
        const r = await pfm.execute("data", "soak-" + slot);
        if (r.ok) { soak.done++; soak.sources[r.source] = (soak.sources[r.source] || 0) + 1; }
        else { soak.failed++; soak.last_error = r.error; }
      }
      await new Promise((resolve) => setTimeout(resolve, Math.max(1, (slot + 1) * slotMs - Date.now())));
    }
  })();
  return true;
}"""


def _load(name: str, path: Path) -> Any:
    spec = importlib.util.spec_from_file_location(name, path)
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _sample(pages: list[Any], sessions: list[Any], t0: float) -> dict[str, Any]:
    tabs = []
    for page, cdp in zip(pages, sessions, strict=True):
        memory = page.evaluate('pfm.state("memory")')
        cdp.send("HeapProfiler.collectGarbage")
        metrics = {m["name"]: m["value"] for m in cdp.send("Performance.getMetrics")["metrics"]}
        soak = page.evaluate("({done: __soak.done, failed: __soak.failed, sources: __soak.sources,"
                             " last_error: __soak.last_error})")
        tabs.append({**memory, "js_heap_used": metrics.get("JSHeapUsedSize"),
                     "js_heap_total": metrics.get("JSHeapTotalSize"), **soak})
    return {"t_s": time.monotonic() - t0, "tabs": tabs}


def run(minutes: float = 10.0, tabs: int = 4, slot_ms: float = 250.0, sample_s: float = 30.0,
        max_entries: int = 64, log: Log = print) -> dict[str, Any]:
    """Run the soak; returns the samples and a summary (see the module's docstring)."""
    missing = [p for p in (WEB_DIR / "lab/index.html", WEB_DIR / "vendor/pyodide/pyodide.mjs",
                           WEB_DIR / "wheels/pyscript.json") if not p.is_file()]
    if missing:
        raise RuntimeError(f"missing {', '.join(str(p.relative_to(ROOT)) for p in missing)}: run ./build.sh build")
    server_module = _load("pyflowmesh_web_server", SERVER)
    chromium = _load("pyflowmesh_chromium_args", ROOT / "tests/chromium_args.py")
    from playwright.sync_api import sync_playwright

    out: dict[str, Any] = {"minutes": minutes, "tabs": tabs, "slot_ms": slot_ms, "sample_s": sample_s,
                           "max_entries": max_entries, "samples": []}
    with contextlib.ExitStack() as stack:
        server, thread = server_module.start_server("127.0.0.1", 0, directory=WEB_DIR)
        stack.callback(server_module.stop_server, server, thread)
        playwright = stack.enter_context(sync_playwright())
        browser = playwright.chromium.launch(executable_path=chromium.CHROMIUM, args=chromium.chromium_args())
        stack.callback(browser.close)
        out["chromium"] = browser.version
        context = browser.new_context()
        query = f"channel=soak&heartbeat=1000&via=flow&wire=0&max_entries={max_entries}"
        pages = []
        for _ in range(tabs):
            page = context.new_page()
            page.goto(f"{server.url}/lab/?{query}", wait_until="domcontentloaded")
            pages.append(page)
        for page in pages:
            page.wait_for_function(READY_JS, timeout=240_000)
        sessions = []
        for page in pages:
            cdp = context.new_cdp_session(page)
            cdp.send("Performance.enable")
            sessions.append(cdp)
        calls0 = server.api.stats()["calls"]
        t0 = time.monotonic()
        for page in pages:
            page.evaluate(LOOP_JS, [slot_ms])
        end = t0 + minutes * 60
        next_sample = t0
        while True:
            now = time.monotonic()
            if now >= next_sample:
                sample = _sample(pages, sessions, t0)
                sample["api_calls"] = server.api.stats()["calls"] - calls0
                out["samples"].append(sample)
                first = sample["tabs"][0]
                log(f"soak browser {sample['t_s']:5.0f} s: "
                    f"wasm {_mib(max(t['wasm_bytes'] or 0 for t in sample['tabs']))} MiB, "
                    f"JS heap {', '.join(_mib(t['js_heap_used']) for t in sample['tabs'])} MiB, "
                    f"PyProxies {[t.get('live_proxies') for t in sample['tabs']]}, "
                    f"gc objects {', '.join(str(t['gc_objects']) for t in sample['tabs'])}, "
                    f"marks {first.get('marks')}, listeners {first.get('listeners')}, "
                    f"executes {sum(t['done'] for t in sample['tabs'])} "
                    f"(failed {sum(t['failed'] for t in sample['tabs'])}), API calls {sample['api_calls']}")
                next_sample += sample_s
                if now >= end:
                    break
            time.sleep(max(0.0, min(next_sample, end if now < end else next_sample) - time.monotonic()))
        for page in pages:
            page.evaluate("window.__soak.stop = true")
        context.close()
    out["summary"] = summarize(out["samples"])
    return out


def _mib(value: float | None) -> str:
    return "?" if value is None else f"{value / 1048576:.1f}"


def _mean(sample: dict[str, Any], name: str) -> float | None:
    values = [t[name] for t in sample["tabs"] if t.get(name) is not None]
    return sum(values) / len(values) if values else None


def summarize(samples: list[dict[str, Any]], warmup_fraction: float = 0.2) -> dict[str, Any]:
    """Per figure, the mean over tabs at the end of the warm-up and at the end, and the growth."""
    if not samples:
        return {}
    start = min(len(samples) - 1, max(1, round(len(samples) * warmup_fraction)))
    summary: dict[str, Any] = {"warmup_s": samples[start]["t_s"], "end_s": samples[-1]["t_s"],
                               "executes": sum(t["done"] for t in samples[-1]["tabs"]),
                               "failed": sum(t["failed"] for t in samples[-1]["tabs"]),
                               "api_calls": samples[-1].get("api_calls")}
    for name in ("wasm_bytes", "js_heap_used", "gc_objects", "live_proxies", "marks",
                 "cache_entries", "listeners", "pending"):
        a, b = _mean(samples[start], name), _mean(samples[-1], name)
        peak = max((t.get(name) or 0) for s in samples for t in s["tabs"])
        summary[name] = {"after_warmup": a, "end": b, "growth": None if a is None or b is None else b - a,
                         "max": peak}
    return summary


def main(argv: list[str] | None = None) -> int:
    import argparse
    import json

    parser = argparse.ArgumentParser(prog="python -m bench.soak_browser", description=__doc__.split("\n\n")[0])
    parser.add_argument("--minutes", type=float, default=10.0)
    parser.add_argument("--out", type=Path, help="write the results here (JSON)")
    args = parser.parse_args(argv)
    result = run(minutes=args.minutes, log=lambda text: print(text, flush=True))
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(result, indent=1) + "\n")
    print(json.dumps(result["summary"], indent=1))
    return 0


if __name__ == "__main__":
    import sys

    sys.exit(main())
