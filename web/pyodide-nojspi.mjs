// The PyScript `interpreter` of our pages: the vendored Pyodide, loaded without
// WebAssembly stack switching (JSPI).
//
// Why: with JSPI, Pyodide 314 runs Python (every asyncio step, every callback from
// JS) on stacks that V8 allocates for suspendable calls. Chromium's allocation
// samplers (the heap profiler that a browser session switches on at random, and
// GWP-ASan) record a sampled allocation's stack by walking frame pointers up to
// the end of the thread's stack; from a JSPI stack the walk runs past its top into
// a guard page and the whole tab dies ("Aw, Snap!", Playwright's "Target crashed").
// A page cannot switch the samplers off in its visitors' browsers, but it can keep
// Python on the ordinary stack: Pyodide decides once, while it is instantiated,
// whether JSPI exists (`"Suspending" in WebAssembly`), so we hide JSPI for exactly
// that moment and give it back afterwards. Pyodide then calls Python directly (as
// it does in browsers without JSPI); what it loses is `pyodide.ffi.run_sync`
// (blocking on a JS promise from synchronous Python), which pyflowmesh never uses.
// Other scripts of the page do not see JSPI while Pyodide loads (a few seconds).
// Measured crash rates: docs/build-notes.md, bench/crash_rate.py.
//
// PyScript gives the `interpreter` module's `loadPyodide` only stdout/stderr, the
// packages and an indexURL derived from this file's folder, so the real indexURL
// (the vendored Pyodide) is set here.
//
// It also installs pyflowmesh, so that pages need no `packages` (which PyScript installs
// with micropip: loading micropip and packaging, importing them, resolving, then fetching
// the wheel, one after the other, after Pyodide is up). The build's wheels/manifest.json
// names the browser bundle (`browser_bundle`: bytecode for this Pyodide, without the
// simulator, as one .tar.gz; tools/browser_wheel.py), or else the browser wheel
// (`browser_wheel`, the same files as a wheel); it is fetched as soon as this module loads,
// while Pyodide boots, and unpacked into site-packages as soon as Pyodide is up. Without a
// manifest (a page of another site) nothing is installed.

import { loadPyodide as loadVendoredPyodide, version } from "./vendor/pyodide/pyodide.mjs";

export { version };

const INDEX_URL = new URL("./vendor/pyodide/", import.meta.url).href;
const MANIFEST_URL = new URL("./wheels/manifest.json", import.meta.url);

// {name, format, buffer} of the browser bundle (or wheel), or null; started when this module loads.
const browserWheel = (async () => {
  const response = await fetch(MANIFEST_URL);
  if (!response.ok) return null;
  const manifest = await response.json();
  const name = manifest.browser_bundle || manifest.browser_wheel;
  if (!name) return null;
  const url = new URL(name, MANIFEST_URL);
  const wheel = await fetch(url);
  if (!wheel.ok) throw new Error(`pyodide-nojspi: ${url}: HTTP ${wheel.status}`);
  return { name, format: manifest.browser_bundle ? "gztar" : "wheel", buffer: await wheel.arrayBuffer() };
})();
browserWheel.catch(() => {}); // reported when loadPyodide awaits it
// "Suspending" (the standard JSPI API) and "Suspender" (its first origin trial) are
// what Pyodide tests; "promising" goes with them.
const JSPI_NAMES = ["Suspending", "Suspender", "promising"];
let hiders = 0; // loads in progress that need JSPI hidden
const hidden = new Map(); // name -> property descriptor, while hidden

function hideJspi() {
  if (hiders++ > 0) return;
  for (const name of JSPI_NAMES) {
    const descriptor = Object.getOwnPropertyDescriptor(WebAssembly, name);
    if (descriptor && descriptor.configurable && delete WebAssembly[name]) hidden.set(name, descriptor);
  }
}

function restoreJspi() {
  if (--hiders > 0) return;
  for (const [name, descriptor] of hidden) Object.defineProperty(WebAssembly, name, descriptor);
  hidden.clear();
}

/** Pyodide's `loadPyodide`, from the vendored copy, with JSPI hidden while it instantiates;
 * then the browser wheel of pyflowmesh unpacked into site-packages. */
export async function loadPyodide(options = {}) {
  performance.mark("pyflowmesh:pyodide-start"); // cold-start stamps, read by bench/startup_bench.py
  let pyodide;
  hideJspi();
  try {
    pyodide = await loadVendoredPyodide({ ...options, indexURL: INDEX_URL });
    if (pyodide._module && pyodide._module.jspiSupported) {
      console.warn("pyodide-nojspi: Pyodide uses JSPI after all; this tab can crash under Chromium's samplers");
    }
  } finally {
    restoreJspi();
  }
  const wheel = await browserWheel;
  if (wheel) {
    // Into site-packages, as micropip would (a wheel goes there by itself; a tar where it is told).
    const extractDir = wheel.format === "wheel" ? undefined : pyodide.runPython("import sysconfig; sysconfig.get_path('purelib')");
    pyodide.unpackArchive(wheel.buffer, wheel.format, extractDir ? { extractDir } : {});
  }
  performance.mark("pyflowmesh:pyodide-ready");
  return pyodide;
}
