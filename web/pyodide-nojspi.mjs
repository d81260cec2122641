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

import { loadPyodide as loadVendoredPyodide, version } from "./vendor/pyodide/pyodide.mjs";

export { version };

const INDEX_URL = new URL("./vendor/pyodide/", import.meta.url).href;
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

/** Pyodide's `loadPyodide`, from the vendored copy, with JSPI hidden while it instantiates. */
export async function loadPyodide(options = {}) {
  hideJspi();
  try {
    const pyodide = await loadVendoredPyodide({ ...options, indexURL: INDEX_URL });
    if (pyodide._module && pyodide._module.jspiSupported) {
      console.warn("pyodide-nojspi: Pyodide uses JSPI after all; this tab can crash under Chromium's samplers");
    }
    return pyodide;
  } finally {
    restoreJspi();
  }
}
