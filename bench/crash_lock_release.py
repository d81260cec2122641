"""How long after ``page.goto("chrome://crash")`` the browser grants a watcher the crashed tab's Web Lock.

Two watchers wait, each with a plain JS shared-mode request, on the lock of a tab that
crashes: one in a light page (``web/lab/bc.html``), one in a Pyodide lab tab (``web/lab/``,
the weight of a pyflowmesh member). The crashing tab is, in turn, a Pyodide lab tab (its
member's own lock), a light page (``bc.html`` holding a lock from JS) and the same page with
Pyodide booted and pyflowmesh imported but no mesh (``bc.html?pyodide=1``, the
failover bench's anchor at a PyScript page's weight). So the figures
separate what the crashed page's weight costs (the browser releases its locks only once its
renderer is gone) from what the watcher's weight costs (a busy renderer runs the grant's
callback later). ``python -m bench.crash_lock_release [trials] [--kill]`` (default 5 trials);
prints the times in ms, p50 each. ``--kill`` ends the tab with ``chrome://kill`` instead (the
renderer exits at once, without the crash handler's work), which separates what the crash
handling costs from what the process's own end costs.
"""

from __future__ import annotations

import contextlib
import random
import statistics
import sys
import time

from .browser_bench import WATCH_LOCK_JS, Harness
from .failover_bench import _chromium_args, open_bc_tabs

HOLD_JS = """(name) => { navigator.locks.request(name, () => new Promise(() => {})); }"""
WATCHERS = ("light", "pyodide")
CRASHED = ("pyodide", "light", "light+pyodide")


def measure(trials: int = 5, url: str = "chrome://crash") -> dict[str, list[float | None]]:
    """Per ``<crashed>-><watcher>`` pair, the ms from the crash call (``goto(url)``) to each trial's grant."""
    out: dict[str, list[float | None]] = {f"{crashed}->{watcher}": [] for crashed in CRASHED
                                          for watcher in WATCHERS}
    with Harness(print, args=_chromium_args()) as h:
        context = h.browser.new_context()
        light = context.new_page()
        light.goto(h.url("/lab/bc.html?channel=watcher"))
        heavy = h.open_tabs(context, 1, f"channel=watcher-{random.randint(0, 10**9)}")[0][0]
        watchers = {"light": light, "pyodide": heavy}
        for _ in range(trials):
            for crashed in CRASHED:
                if crashed == "pyodide":
                    channel = f"crash-lock-{random.randint(0, 10**9)}"
                    page = h.open_tabs(context, 1, f"channel={channel}&locks=1")[0][0]
                    name = page.evaluate("pfm.state()")["lock"]  # its member's lock
                else:
                    page = open_bc_tabs(h, context, 1, "channel=light" + ("&pyodide=1" if "+" in crashed else ""))[0]
                    name = f"light-{random.randint(0, 10**9)}"
                    page.evaluate(HOLD_JS, name)
                time.sleep(0.5)
                for watcher in watchers.values():
                    watcher.evaluate(WATCH_LOCK_JS, name)
                time.sleep(0.3)
                if any(watcher.evaluate("window.__grant") is not None for watcher in watchers.values()):
                    raise RuntimeError(f"the lock {name} was not held")
                t0 = time.time() * 1000
                with contextlib.suppress(Exception):
                    page.goto(url, timeout=5000)
                time.sleep(0.3)  # hands off the watchers meanwhile: the grants carry their own stamps
                for kind, watcher in watchers.items():
                    granted = None
                    for _ in range(100):
                        granted = watcher.evaluate("window.__grant")
                        if granted:
                            break
                        time.sleep(0.02)
                    out[f"{crashed}->{kind}"].append(round(granted - t0, 1) if granted else None)
                with contextlib.suppress(Exception):
                    page.close()
    return out


if __name__ == "__main__":
    args = sys.argv[1:]
    url = "chrome://kill" if "--kill" in args else "chrome://crash"
    counts = [a for a in args if a != "--kill"]
    results = measure(int(counts[0]) if counts else 5, url)
    print(f"ended with {url}")
    for pair, times in results.items():
        got = [t for t in times if t is not None]
        print(f"crashed {pair} watcher: p50", statistics.median(got) if got else None, "all", times)
