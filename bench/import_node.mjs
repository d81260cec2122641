// import pyflowmesh in the vendored Pyodide under Node, from the browser wheel: how long it takes
// and where the time goes. Fast to iterate on (no browser); bench/startup_bench.py measures tabs.
//
//   node bench/import_node.mjs [--runs 5] [--profile] [--modules] [--wheel web/wheels/<wheel>.whl]
//
// Each run boots a fresh Pyodide, unpacks the wheel into site-packages, then times
// `import pyflowmesh` and `from pyflowmesh import use_flow, FlowMesh` (plus the browser
// transports), as bench/startup_bench.py's import trial does in a tab. --profile prints the
// functions that took the most time (cProfile, one extra run). Prints one line of JSON.
import fs from "node:fs";
import path from "node:path";
import { fileURLToPath, pathToFileURL } from "node:url";

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "..");
const argv = process.argv.slice(2);
const option = (name, fallback) => {
  const at = argv.indexOf(name);
  return at >= 0 ? argv[at + 1] : fallback;
};
const runs = Number(option("--runs", "5"));
const profile = argv.includes("--profile");
const manifest = JSON.parse(fs.readFileSync(path.join(root, "web/wheels/manifest.json"), "utf8"));
const wheel = option("--wheel", path.join(root, "web/wheels", manifest.browser_wheel));
const indexURL = path.join(root, "web/vendor/pyodide") + path.sep;
const { loadPyodide } = await import(pathToFileURL(path.join(indexURL, "pyodide.mjs")).href);

const TIMED = `
import sys, time
before = set(sys.modules)
t = time.perf_counter()
import pyflowmesh
ms = (time.perf_counter() - t) * 1000
t = time.perf_counter()
from pyflowmesh import use_flow, FlowMesh
import pyflowmesh.transports.broadcast_channel, pyflowmesh.transports.web_locks, pyflowmesh.transports.page_lifecycle
runtime_ms = (time.perf_counter() - t) * 1000
new = sorted(set(sys.modules) - before)
[ms, runtime_ms, [m for m in new if m.startswith("pyflowmesh")], [m for m in new if not m.startswith("pyflowmesh")]]
`;
// --modules: each module's own time (its exec_module, less the imports it ran), one extra run.
const PER_MODULE = `
import sys, time
from importlib import _bootstrap_external as external
stack, own = [], {}
original = external.SourcelessFileLoader.exec_module
def exec_module(self, module):
    stack.append(0.0)
    t = time.perf_counter()
    try:
        original(self, module)
    finally:
        spent = time.perf_counter() - t
        children = stack.pop()
        own[module.__name__] = (spent - children) * 1000
        if stack:
            stack[-1] += spent
external.SourcelessFileLoader.exec_module = exec_module
t = time.perf_counter()
import pyflowmesh
from pyflowmesh import use_flow, FlowMesh
import pyflowmesh.transports.broadcast_channel, pyflowmesh.transports.web_locks, pyflowmesh.transports.page_lifecycle
total = (time.perf_counter() - t) * 1000
external.SourcelessFileLoader.exec_module = original
lines = [f"{ms:7.2f} ms  {name}" for name, ms in sorted(own.items(), key=lambda kv: -kv[1])]
lines.append(f"{sum(own.values()):7.2f} ms  in modules' own code, of {total:.2f} ms")
"\\n".join(lines)
`;
const PROFILED = `
import cProfile, io, pstats
profiler = cProfile.Profile()
profiler.enable()
import pyflowmesh
from pyflowmesh import use_flow, FlowMesh
import pyflowmesh.transports.broadcast_channel, pyflowmesh.transports.web_locks, pyflowmesh.transports.page_lifecycle
profiler.disable()
out = io.StringIO()
stats = pstats.Stats(profiler, stream=out).sort_stats("tottime"); stats.print_stats(25); stats.sort_stats("cumulative").print_stats("pyflowmesh", 25)
out.getvalue()
`;

async function boot() {
  const t0 = performance.now();
  const pyodide = await loadPyodide({ indexURL, stdout: () => {}, stderr: (l) => console.error(l) });
  const t1 = performance.now();
  pyodide.unpackArchive(new Uint8Array(fs.readFileSync(wheel)), "wheel");
  return { pyodide, boot_ms: t1 - t0, install_ms: performance.now() - t1 };
}

const results = [];
for (let i = 0; i < runs; i++) {
  const { pyodide, boot_ms, install_ms } = await boot();
  const [import_ms, runtime_ms, ours, theirs] = pyodide.runPython(TIMED).toJs();
  results.push({ boot_ms, install_ms, import_ms, runtime_ms, total_ms: import_ms + runtime_ms, modules: ours.length,
                 stdlib_modules: theirs });
}
const median = (xs) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];
const summary = { wheel: path.basename(wheel), wheel_bytes: fs.statSync(wheel).size, runs };
for (const key of ["boot_ms", "install_ms", "import_ms", "runtime_ms", "total_ms"]) {
  summary[key] = { p50: median(results.map((r) => r[key])), all: results.map((r) => Math.round(r[key] * 10) / 10) };
}
summary.modules = results[0]?.modules;
summary.stdlib_modules = results[0]?.stdlib_modules;
if (argv.includes("--modules")) {
  const { pyodide } = await boot();
  console.error(pyodide.runPython(PER_MODULE));
}
if (profile) {
  const { pyodide } = await boot();
  console.error(pyodide.runPython(PROFILED));
}
console.log(JSON.stringify(summary));
