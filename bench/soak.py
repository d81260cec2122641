"""``./build.sh bench --soak``: memory of tabs that stay open for hours, keys and tabs churning.

Three parts, each printing its figures as it goes:

1. ``hub`` (:mod:`bench.soak_hub`): 6 tabs over ``MemoryHub`` (CPython, asyncio), a flow
   executed with 6,000 ever-new arguments, 3 tabs at a time, ``max_entries=64``:
   tracemalloc growth after a warm-up of 1,000 keys; with ``--baseline REV`` the same
   with the pyflowmesh of git revision ``REV`` (e.g. 0.1.0's), in a subprocess;
2. ``sim`` (:mod:`bench.soak_sim`): 6 tabs for 24 simulated hours (virtual time) with
   a new key every 2 s, a tab replaced every 10 minutes, an hourly burst and outage:
   tracemalloc per tab, and the largest size of every bounded structure;
3. ``browser`` (:mod:`bench.soak_browser`): 4 real Chromium tabs of the lab page (``web/lab/``)
   for 10 minutes, a new key every 250 ms: Pyodide's WebAssembly memory, the JS heap,
   live PyProxies, Python objects, per tab every 30 s.

Writes ``bench-results/soak.json`` and ``bench-results/soak.png`` and, unless
``--quick`` or ``--no-docs``, ``docs/soak.png`` and the soak section of
``docs/benchmarks.md`` (between ``<!-- soak -->`` and ``<!-- /soak -->``; the rest of
the page is left as it is, and ``./build.sh bench`` keeps the section when it rewrites
the page). ``--only PART`` re-measures one part and keeps the others from the last
``bench-results/soak.json``. A benchmark, not a test: it never fails on a figure.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tarfile
import tempfile
import time
from io import BytesIO
from pathlib import Path
from typing import Any

from pyflowmesh.core.cache import MARKS_PER_ENTRY

ROOT = Path(__file__).resolve().parents[1]
RESULTS_DIR = ROOT / "bench-results"
DOCS = ROOT / "docs"
BEGIN, END = "<!-- soak -->", "<!-- /soak -->"
PARTS = ("hub", "sim", "browser")


def log(text: str) -> None:
    print(f"[soak {time.strftime('%H:%M:%S')}] {text}", flush=True)


def hub_baseline(revision: str, quick: bool) -> dict[str, Any]:
    """The hub part with the pyflowmesh package of git ``revision``, in a subprocess."""
    archive = subprocess.run(["git", "archive", revision, "pyflowmesh"], cwd=ROOT, capture_output=True, check=True)
    commit = subprocess.run(["git", "rev-parse", "--short", revision], cwd=ROOT, capture_output=True, text=True,
                            check=True).stdout.strip()
    with tempfile.TemporaryDirectory() as tmp:
        with tarfile.open(fileobj=BytesIO(archive.stdout)) as tar:
            tar.extractall(tmp, filter="data")
        code = ("import json, sys; from bench import soak_hub; "
                f"r = soak_hub.run(keys={2000 if quick else 6000}, warmup={500 if quick else 1000}, "
                "log=lambda t: print(t, file=sys.stderr, flush=True)); print(json.dumps(r))")
        env = {**os.environ, "PYTHONPATH": os.pathsep.join([tmp, str(ROOT)])}
        out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True,
                             cwd=tmp)
    result = json.loads(out.stdout.strip().splitlines()[-1])
    result["revision"] = commit
    return result


def _revision() -> str:
    """This checkout's commit, and whether pyflowmesh/ differs from it."""
    try:
        commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True,
                                timeout=30).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "pyflowmesh"], cwd=ROOT, capture_output=True,
                               text=True, timeout=30).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    return commit + (" with changes" if dirty else "")


def render(results: dict[str, Any], png: str) -> str:
    """The soak section of docs/benchmarks.md, markers included."""
    lines = [BEGIN, "", "## Soak: memory of tabs that stay open, keys and tabs churning", "",
             "Measured by `./build.sh bench --soak` (code in `bench/soak*.py`; figures from "
             "`bench-results/soak.json`). A page whose flow takes arguments that never repeat (a search box) "
             "must not grow: every structure that grows with keys, tabs, messages or time has a bound "
             "(see the README's options). Memory is measured after a garbage collection; *after warm-up* "
             "compares the end of the run with a point after the structures filled up to their bounds.", "",
             f"![soak]({png})", ""]
    hub = results.get("hub")
    if hub:
        now = hub["now"]
        lines += ["### Over MemoryHub (CPython)", "",
                  f"{now['tabs']} tabs of one channel, a flow executed with {now['keys']:,} distinct arguments, each "
                  f"in {now['per_key']} tabs at once, `max_entries={now['max_entries']}`; tracemalloc of the whole "
                  f"process after {now['warmup']:,} keys and at the end:", "",
                  "| pyflowmesh | growth after warm-up | per key |", "| --- | --- | --- |"]
        base = hub.get("baseline")
        if base:
            lines.append(f"| before (at {base['revision']}) | {base['growth_bytes'] / 1024:+,.0f} KiB over "
                         f"{base['keys'] - base['warmup']:,} keys | {base['growth_per_key_bytes']:+.0f} B |")
        lines.append(f"| now (at {now.get('revision', '?')}) | {now['growth_bytes'] / 1024:+,.1f} KiB over "
                     f"{now['keys'] - now['warmup']:,} keys | {now['growth_per_key_bytes']:+.1f} B |")
        if base and base.get("top"):
            lines += ["", "Before, tracemalloc's largest growth by line (the listener registries kept an entry per "
                      "key ever followed, and the key strings with them):", ""]
            lines += [f"- `{_short_path(line)}`" for line in base["top"][:3]]
        lines.append("")
    sim = results.get("sim")
    if sim:
        samples = sim["samples"]
        lines += ["### In the simulator (virtual time)", "",
                  f"{sim['tabs']} tabs for {sim['hours']:g} simulated hours: a new key every "
                  f"{sim['key_every_ms'] / 1000:g} s executed in 3 tabs at once, a tab replaced every "
                  f"{sim['churn_every_ms'] / 60000:g} minutes (crash and polite close in turn), and every hour a "
                  f"burst of {sim['burst']} keys from one tab within 20 s plus a one-minute server outage "
                  f"(`max_entries={sim['max_entries']}`, `stale_time` {sim['stale_time'] / 1000:g} s): "
                  f"{sim['keys']:,} keys and {sim['replaced']} tabs replaced in all. Traced memory per live tab "
                  "(tracemalloc: what the simulator's and the soak's own code allocated left out, their logs "
                  "trimmed), and the largest size of each structure in any tab over the run:", "",
                  "| simulated hours | 1 | 2 | " + " | ".join(f"{h:g}" for h in _pick_hours(sim)) + " |",
                  "| --- | --- | --- | " + " | ".join("---" for _ in _pick_hours(sim)) + " |",
                  "| KiB per tab | " + " | ".join(
                      f"{_at_hour(samples, h)['per_tab_bytes'] / 1024:.1f}" for h in (1, 2, *_pick_hours(sim)))
                  + " |", "",
                  f"After {sim['warmup_hours']:g} hours: {sim['growth_per_tab_bytes'] / 1024:+.1f} KiB per tab by "
                  f"the end (between {sim['min_per_tab_bytes'] / 1024:.1f} and "
                  f"{sim['max_per_tab_bytes'] / 1024:.1f} KiB at the half-hourly samples). Largest sizes: "
                  + ", ".join(f"{name.replace('_', ' ')} {size}" for name, size in sim["largest_sizes"].items())
                  + "."]
        warm = [x for x in samples if x["hours"] <= sim["warmup_hours"]]
        late = [x for x in samples if x["hours"] > sim["warmup_hours"]]
        grew = {}
        for name in sim["largest_sizes"]:
            before = max((x["max_sizes"].get(name, 0) for x in warm), default=0)
            after = max((x["max_sizes"].get(name, 0) for x in late), default=0)
            if after > before:
                grew[name] = (before, after)
        if grew:
            lines += ["", "Still growing after warm-up (largest in any tab, up to the warm-up and after it): "
                      + ", ".join(f"{name.replace('_', ' ')} {a} → {b}" for name, (a, b) in grew.items())
                      + f" (bounds checked: cache entries ≤ `max_entries`, marks ≤ {MARKS_PER_ENTRY} × "
                      "`max_entries`)."]
        lines.append("")
    browser = results.get("browser")
    if browser:
        s = browser["summary"]
        lines += ["### In Chromium (Pyodide)", "",
                  f"{browser['tabs']} tabs of the lab page `web/lab/` "
                  f"({browser.get('chromium', 'Chromium')}, headless) for "
                  f"{browser['minutes']:g} minutes, each executing the key of the current "
                  f"{browser['slot_ms']:g} ms slot through `Flow.execute` (every slot a new key; one tab calls the "
                  f"server, the others get it from the mesh), `max_entries={browser['max_entries']}`: "
                  f"{s['executes']:,} executes ({s['failed']} failed), {s['api_calls']:,} API calls. Per tab every "
                  f"{browser['sample_s']:g} s, after `gc.collect()` and a JS garbage collection (CDP "
                  "`HeapProfiler.collectGarbage`): Pyodide's WebAssembly memory, the JS heap in use (CDP "
                  "`Performance.getMetrics` `JSHeapUsedSize`), the PyProxies the transport holds, the objects "
                  "Python's collector tracks. Mean over tabs, after warm-up "
                  f"({s['warmup_s'] / 60:.1f} min) and at the end:", "",
                  "| figure | after warm-up | end | growth | largest |", "| --- | --- | --- | --- | --- |"]
        for name, label, scale, unit in (("wasm_bytes", "WebAssembly memory", 1048576, " MiB"),
                                         ("js_heap_used", "JS heap used", 1048576, " MiB"),
                                         ("live_proxies", "live PyProxies (transport)", 1, ""),
                                         ("gc_objects", "Python objects (gc)", 1, ""),
                                         ("marks", "version marks", 1, ""),
                                         ("cache_entries", "cache entries", 1, ""),
                                         ("listeners", "listener entries", 1, ""),
                                         ("pending", "pending keys", 1, "")):
            f = s.get(name) or {}
            if f.get("end") is None:
                continue
            digits = 2 if scale > 1 else 0
            growth = f["growth"] / scale
            growth = 0.0 if round(growth, digits) == 0 else growth  # no "-0"
            lines.append(f"| {label} | {f['after_warmup'] / scale:,.{digits}f}{unit} | {f['end'] / scale:,.{digits}f}"
                         f"{unit} | {growth:+,.{digits}f}{unit} | {f['max'] / scale:,.{digits}f}{unit} |")
        last = browser["samples"][-1]["tabs"]
        lines += ["", "Live PyProxies of the transport per tab at the end: "
                  + ", ".join(str(t.get("live_proxies")) for t in last)
                  + " (one fewer in the leader: it waits on no other tab's Web Lock).", ""]
    lines += [END, ""]
    return "\n".join(lines)


def _short_path(line: str) -> str:
    return line.split("/pyflowmesh/")[-1] if "/pyflowmesh/" in line else line


def _pick_hours(sim: dict[str, Any]) -> list[float]:
    hours = sim["hours"]
    return [h for h in (4, 8, 12, 16, 20, 24, 48) if h <= hours and h > 2]


def _at_hour(samples: list[dict[str, Any]], hour: float) -> dict[str, Any]:
    return min(samples, key=lambda s: abs(s["hours"] - hour))


def write_docs_section(section: str, page: Path) -> None:
    """Put ``section`` into ``page`` in place of its soak section (or at its end)."""
    text = page.read_text() if page.is_file() else ""
    if BEGIN in text and END in text:
        head, rest = text.split(BEGIN, 1)
        tail = rest.split(END, 1)[1].lstrip("\n")
        text = head + section + tail
    else:
        text = text.rstrip("\n") + "\n\n" + section
    page.write_text(text)


def keep_section(new_page_text: str, old_page: Path) -> str:
    """``new_page_text`` with the soak section of ``old_page`` kept (for ``./build.sh bench``)."""
    if not old_page.is_file():
        return new_page_text
    old = old_page.read_text()
    if BEGIN not in old or END not in old:
        return new_page_text
    section = BEGIN + old.split(BEGIN, 1)[1].split(END, 1)[0] + END + "\n"
    return new_page_text.rstrip("\n") + "\n\n" + section


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="./build.sh bench --soak", description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="shorter: 2,000 keys, 4 simulated hours, 2 minutes "
                                                             "in Chromium; results only in bench-results/")
    parser.add_argument("--only", choices=PARTS, action="append",
                        help="measure this part (repeatable); the others come from the last bench-results/soak.json")
    parser.add_argument("--baseline", metavar="REV", help="also measure the hub part with the pyflowmesh of this "
                                                          "git revision (e.g. the last release's commit)")
    parser.add_argument("--minutes", type=float, help="minutes in Chromium (default 10; 2 with --quick)")
    parser.add_argument("--hours", type=float, help="simulated hours (default 24; 4 with --quick)")
    parser.add_argument("--no-docs", action="store_true", help="do not write docs/soak.png or docs/benchmarks.md")
    parser.add_argument("--docs-only", action="store_true",
                        help="measure nothing: redraw the figure and rewrite the docs from bench-results/soak.json")
    args = parser.parse_args(argv)
    if args.docs_only:
        from . import soak_plot

        results = json.loads((RESULTS_DIR / "soak.json").read_text())
        soak_plot.plot(results, DOCS / "soak.png")
        write_docs_section(render(results, "soak.png"), DOCS / "benchmarks.md")
        log("wrote docs/soak.png and the soak section of docs/benchmarks.md")
        return 0

    from . import soak_browser, soak_hub, soak_sim

    t0 = time.monotonic()
    RESULTS_DIR.mkdir(exist_ok=True)
    path = RESULTS_DIR / "soak.json"
    results: dict[str, Any] = json.loads(path.read_text()) if args.only and path.is_file() else {}
    parts = args.only or list(PARTS)
    results["quick"] = args.quick
    if "hub" in parts:
        log("hub: 6 tabs over MemoryHub, ever-new keys (CPython)")
        keys, warmup = (2000, 500) if args.quick else (6000, 1000)
        hub = {"now": soak_hub.run(keys=keys, warmup=warmup, log=log)}
        hub["now"]["revision"] = _revision()
        if args.baseline:
            log(f"hub: the same with pyflowmesh at {args.baseline}")
            hub["baseline"] = hub_baseline(args.baseline, args.quick)
            log(f"hub: before {hub['baseline']['growth_bytes'] / 1024:+.0f} KiB, "
                f"now {hub['now']['growth_bytes'] / 1024:+.1f} KiB after warm-up")
        results["hub"] = hub
    if "sim" in parts:
        hours = args.hours or (4.0 if args.quick else 24.0)
        log(f"sim: 6 tabs for {hours:g} simulated hours")
        results["sim"] = soak_sim.run(hours=hours, log=log)
    if "browser" in parts:
        minutes = args.minutes or (2.0 if args.quick else 10.0)
        log(f"browser: 4 Chromium tabs for {minutes:g} minutes")
        results["browser"] = soak_browser.run(minutes=minutes, log=log)
    results["wall_s"] = time.monotonic() - t0
    path.write_text(json.dumps(results, indent=1, default=str) + "\n")
    log(f"wrote {path.relative_to(ROOT)}")

    from . import soak_plot

    soak_plot.plot(results, RESULTS_DIR / "soak.png")
    log("wrote bench-results/soak.png")
    if not (args.quick or args.no_docs):
        soak_plot.plot(results, DOCS / "soak.png")
        write_docs_section(render(results, "soak.png"), DOCS / "benchmarks.md")
        log("wrote docs/soak.png and the soak section of docs/benchmarks.md")
    print()
    print(render(results, "soak.png"))
    return 0


if __name__ == "__main__":
    sys.exit(main())
