"""How long after ``page.goto("chrome://crash")`` the browser grants a watcher the crashed tab's Web Lock.

A plain JS watcher (``web/lab/bc.html``, a shared-mode request) waits on the lock of a crashed
Pyodide lab tab (its member's own lock) and, in turn, of a crashed light page (``bc.html``
holding a lock from JS): whether the page's weight delays the browser's release of its locks.
``python -m bench.crash_lock_release [trials]`` (default 5); prints the times in ms, p50 each.
"""

from __future__ import annotations

import contextlib
import random
import statistics
import sys
import time

from .browser_bench import Harness
from .failover_bench import _chromium_args

WATCH_JS = """(name) => { window.__grant = null; navigator.locks.request(name, {mode: "shared"}, () => {
  window.__grant = performance.timeOrigin + performance.now(); }); }"""
HOLD_JS = """(name) => { navigator.locks.request(name, () => new Promise(() => {})); }"""


def measure(trials: int = 5) -> dict[str, list[float | None]]:
    out: dict[str, list[float | None]] = {"pyodide": [], "light": []}
    with Harness(print, args=_chromium_args()) as h:
        context = h.browser.new_context()
        watcher = context.new_page()
        watcher.goto(h.url("/lab/bc.html?channel=watcher"))
        for _ in range(trials):
            for kind in ("pyodide", "light"):
                if kind == "pyodide":
                    channel = f"crash-lock-{random.randint(0, 10**9)}"
                    page = h.open_tabs(context, 1, f"channel={channel}&locks=1")[0][0]
                    name = f"pyflowmesh:{channel}:{page.evaluate('pfm.state()')['node_id']}"
                else:
                    page = context.new_page()
                    page.goto(h.url("/lab/bc.html?channel=light"))
                    name = f"light-{random.randint(0, 10**9)}"
                    page.evaluate(HOLD_JS, name)
                time.sleep(0.5)
                watcher.evaluate(WATCH_JS, name)
                time.sleep(0.3)
                if watcher.evaluate("window.__grant") is not None:
                    raise RuntimeError(f"the lock {name} was not held")
                t0 = time.time() * 1000
                with contextlib.suppress(Exception):
                    page.goto("chrome://crash", timeout=5000)
                granted = None
                for _ in range(100):
                    granted = watcher.evaluate("window.__grant")
                    if granted:
                        break
                    time.sleep(0.02)
                out[kind].append(round(granted - t0, 1) if granted else None)
                with contextlib.suppress(Exception):
                    page.close()
    return out


if __name__ == "__main__":
    results = measure(int(sys.argv[1]) if len(sys.argv) > 1 else 5)
    for kind, times in results.items():
        got = [t for t in times if t is not None]
        print(kind, "p50", statistics.median(got) if got else None, "all", times)
