"""``./build.sh bench``: measure what the mesh saves and what it costs, then write the results.

Runs, in this order, and prints each figure as it comes:

1. :mod:`bench.sim_bench`: the protocol at 10, 100 and 1,000 tabs in virtual time
   (pure CPython), and the project simulator's throughput; :mod:`bench.election_before`:
   the same elections with the election as it was before staggered candidacy;
2. :mod:`bench.browser_bench`: real Chromium tabs of the lab page (``web/lab/``), with the mesh
   and without it (API calls, follower latency, idle cost, failover, import time);
3. :mod:`bench.failover_bench`: failover side by side with the anchor, npm's broadcast-channel
   (``web/lab/bc.html``), trials interleaved, with the ratios;
4. :mod:`bench.lag_bench`: the follower lag of a shared result beside the floor, the raw
   BroadcastChannel one-way time between the same tabs, and where the lag goes.
5. :mod:`bench.stream_bench`: shared live streams in real tabs against the test server's SSE
   feed (connections and events for 1 to 20 tabs with and without the mesh, follower lag beside
   the raw BroadcastChannel time, the gap after a leader crash).

Then writes ``bench-results/results.json`` (everything, machine-readable),
``bench-results/benchmarks.png`` (:mod:`bench.plot`) and, unless ``--quick`` or
``--no-docs``, ``docs/benchmarks.png`` and ``docs/benchmarks.md``
(:mod:`bench.report`; the page's soak section is kept as it is).

``--soak`` runs the soak instead (:mod:`bench.soak`: memory of tabs that stay open
while keys and tabs churn, over MemoryHub, in the simulator and in Chromium); the
options after it are the soak's (``--quick``, ``--only hub|sim|browser``,
``--baseline REV``, ``--no-docs``). ``--only sim|browser|failover|lag`` re-measures one part and
keeps the others from the last results file.

A benchmark, not a test: it never fails on a time. It exits non-zero only when it
cannot measure at all (no build, no browser).
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from . import browser_bench, election_before, failover_bench, lag_bench, sim_bench, startup_bench, stream_bench

ROOT = Path(__file__).resolve().parents[1]
RESULTS_DIR = ROOT / "bench-results"
DOCS = ROOT / "docs"


def log(text: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {text}", flush=True)


def machine() -> dict[str, Any]:
    """What the figures were measured on."""
    info: dict[str, Any] = {
        "date": dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "nproc": os.cpu_count(),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "load_avg_at_start": os.getloadavg(),
    }
    try:
        cpuinfo = Path("/proc/cpuinfo").read_text()
        info["cpu"] = next((line.split(":", 1)[1].strip() for line in cpuinfo.splitlines()
                            if line.startswith("model name")), platform.processor() or "unknown")
        meminfo = Path("/proc/meminfo").read_text()
        kib = int(next(line.split()[1] for line in meminfo.splitlines() if line.startswith("MemTotal")))
        info["memory_gib"] = round(kib / 1024 / 1024, 1)
    except (OSError, StopIteration, ValueError):
        pass
    try:
        version = subprocess.run([browser_bench.CHROMIUM, "--version"], capture_output=True, text=True, timeout=30)
        info["chromium"] = version.stdout.strip()
    except (OSError, subprocess.SubprocessError):
        info["chromium"] = None
    try:
        manifest = json.loads((ROOT / "web/wheels/manifest.json").read_text())
        info["pyflowmesh"], info["pyodide"], info["pyscript"] = (
            manifest["version"], manifest["pyodide"], manifest["pyscript"])
    except (OSError, ValueError, KeyError):
        pass
    try:
        commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True,
                                text=True, timeout=30).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no", "pyflowmesh", "web", "tools"],
                               cwd=ROOT, capture_output=True, text=True, timeout=30).stdout.strip()
        info["commit"] = commit + (" (with uncommitted changes in pyflowmesh/, web/ or tools/)" if dirty else "")
    except (OSError, subprocess.SubprocessError):
        pass
    return info


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    if "--soak" in argv:
        from . import soak

        return soak.main([arg for arg in argv if arg != "--soak"])
    parser = argparse.ArgumentParser(prog="./build.sh bench", description=__doc__.split("\n\n")[0])
    parser.add_argument("--soak", action="store_true",
                        help="run the soak instead (memory over hours of churn; see ./build.sh bench --soak --help)")
    parser.add_argument("--quick", action="store_true",
                        help="fewer tabs (up to 5), rounds and trials; tabs 10 and 100 in the simulator; "
                             "results only in bench-results/ (docs untouched)")
    parser.add_argument("--only", choices=("sim", "browser", "failover", "lag"),
                        help="measure one part; the others come from the last bench-results/results.json")
    parser.add_argument("--no-docs", action="store_true", help="do not write docs/benchmarks.md and .png")
    args = parser.parse_args(argv)

    t0 = time.monotonic()
    RESULTS_DIR.mkdir(exist_ok=True)
    results_path = RESULTS_DIR / "results.json"
    results: dict[str, Any] = {}
    if args.only and results_path.is_file():
        results = json.loads(results_path.read_text())
    results["machine"] = machine()
    results["quick"] = args.quick
    m = results["machine"]
    log(f"machine: {m.get('nproc')} CPUs ({m.get('cpu')}), {m.get('memory_gib')} GiB, {m.get('chromium')}, "
        f"Python {m.get('python')}, load average {m['load_avg_at_start'][0]:.2f}")

    if args.only in (None, "sim"):
        log("simulator: elections at scale (pure CPython, virtual time)")
        sizes = (10, 100) if args.quick else (10, 100, 1000)
        results["sim"] = sim_bench.run_all(sizes, seeds=2 if args.quick else 3,
                                           throughput_s=5.0 if args.quick else 15.0, log=log)
        # The election before staggered candidacy, for before/after figures
        # (python -m bench.election_before 1000 for the largest size alone).
        log("simulator: the election before staggered candidacy (bench/election_before.py)")
        results["sim"]["before"] = election_before.measure(election_before.Before, sizes)
    if args.only in (None, "browser"):
        log("browser: real Chromium tabs of the lab page (web/lab/), with the mesh and without it")
        results["browser"] = browser_bench.run_all(quick=args.quick, log=log)
        log("browser: cold start of 4 lab tabs at once and import pyflowmesh (bench/startup_bench.py)")
        startup = startup_bench.run({"this": ROOT}, trials=2 if args.quick else 5, tabs=4,
                                    import_trials=2 if args.quick else 5, log=log)
        results["startup"] = {**startup["trees"]["this"], "broadcast_channel": startup.get("broadcast_channel")}
        log("browser: shared live streams (web/lab/stream.html) against the test server's SSE feed")
        with browser_bench.Harness(log) as harness:
            results["streams"] = stream_bench.run_streams(harness, quick=args.quick, log=log)
    if args.only in (None, "failover"):
        log("browser: failover side by side with broadcast-channel 7.4.0 (web/lab/bc.html), trials interleaved")
        results["failover_vs_bc"] = failover_bench.run(quick=args.quick, log=log)
    if args.only in (None, "lag"):
        log("browser: follower lag beside the raw BroadcastChannel one-way time between the same tabs")
        results["lag"] = lag_bench.run(quick=args.quick, log=log)

    results["wall_s"] = time.monotonic() - t0
    results["machine"]["load_avg_at_end"] = os.getloadavg()
    results_path.write_text(json.dumps(results, indent=1, default=str) + "\n")
    log(f"wrote {results_path.relative_to(ROOT)}")

    from . import plot, report

    png = RESULTS_DIR / "benchmarks.png"
    plot.plot(results, png)
    log(f"wrote {png.relative_to(ROOT)}")
    if not (args.quick or args.no_docs):
        doc_png = DOCS / "benchmarks.png"
        plot.plot(results, doc_png)
        from .soak import keep_section

        page = DOCS / "benchmarks.md"
        page.write_text(keep_section(report.render(results, "benchmarks.png"), page))
        log("wrote docs/benchmarks.md and docs/benchmarks.png")
    print()
    print(report.summary(results))
    log(f"bench ran {time.monotonic() - t0:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
