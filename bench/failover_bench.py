"""Failover side by side with broadcast-channel, the anchor: pyflowmesh's lab tabs and npm's
broadcast-channel 7.4.0 (``createLeaderElection``) in the same browser, trials interleaved.

The anchor's page is ``web/lab/bc.html`` (``window.bcl``), which loads the bundle that
``./build.sh bench`` makes (``web/vendor/broadcast-channel/bc.js``). With Web Locks the
library's elector is a lock: the tab holding it leads; when its tab goes, the browser
gives the lock to the next tab waiting, which becomes leader and posts a leader "tell"
with its token. The other tabs know the new leader when that tell reaches them.

A trial is :func:`bench.browser_bench._failover_trial` for pyflowmesh and
:func:`_bc_trial` for the anchor: the leader's tab is closed politely (``page.close()``,
its ``pagehide`` runs) or crashes (``chrome://crash``); the clock starts just before that
call (the browser's clock); ``all_follow_ms`` is when the last survivor followed one
new leader (for the anchor: the new leader's own moment of becoming leader, and each
other survivor's receipt of its tell), ``elected_ms`` when the new leader knew it.
After each trial a fresh tab replaces the dead one. For each pyflowmesh configuration
(Web Locks on and off, each heartbeat), its tabs are opened and its trials alternate
with trials of the anchor, whose tabs stay open throughout: the two always run
under the same load. With Web Locks the anchor runs twice: in its light page, and in
the same page carrying a pyflowmesh tab's weight (``bc.html?pyodide=1``: Pyodide booted,
pyflowmesh imported, no mesh), because the browser frees a crashed tab's lock later when
its renderer held a Pyodide runtime (``bench/crash_lock_release.py``).
"""

from __future__ import annotations

import contextlib
import random
import time
from typing import Any

from .browser_bench import ROOT, Harness, Log, _failover_trial, describe, end_leader, wait_quiet

BC_READY_JS = "window.bcl_ready === true"
BC_PAGE = "lab/bc.html"
BUNDLE = ROOT / "web/vendor/broadcast-channel/bc.js"


def open_bc_tabs(h: Harness, context: Any, n: int, query: str, timeout_s: float = 60.0) -> list[Any]:
    """Open n tabs of the anchor's page; wait until each made its elector (and, with
    ``pyodide=1`` in the query, imported pyflowmesh)."""
    pages = []
    for _ in range(n):
        page = context.new_page()
        page.goto(h.url(f"/{BC_PAGE}?{query}"), wait_until="domcontentloaded")
        pages.append(page)
    for page in pages:
        page.wait_for_function(BC_READY_JS, timeout=timeout_s * 1000)
    return pages


def bc_wait_leader(pages: list[Any], timeout_s: float = 30.0) -> str:
    """Wait until exactly one of the anchor's tabs leads; return its token.

    (A tab that joined under a sitting leader does not know its token: with Web Locks
    the library tells the leader's token only when a tab takes the lead.)
    """
    deadline = time.monotonic() + timeout_s
    states: list[dict[str, Any]] = []
    while time.monotonic() < deadline:
        states = [page.evaluate("bcl.state()") for page in pages]
        leaders = [s["node_id"] for s in states if s["role"] == "leader"]
        if len(leaders) == 1:
            return str(leaders[0])
        time.sleep(0.05)
    raise RuntimeError("broadcast-channel's tabs did not settle on one leader: "
                       + ", ".join(f"{s['node_id']}:{s['role']}" for s in states))


def _bc_trial(pages: list[Any], mode: str, rng: random.Random, timeout_s: float, watcher: Any = None) -> dict[str, Any]:
    time.sleep(rng.uniform(0.0, 0.5))
    result = end_leader(pages, mode, "bcl", timeout_s=timeout_s, poll_s=0.02, watcher=watcher)
    del result["_survivors"], result["_states"]
    return result


class _Group:
    """One set of tabs (pyflowmesh's lab or the anchor's page) and its trials."""

    def __init__(self, h: Harness, name: str, *, anchor: bool, query: str, tabs: int, heartbeat: float,
                 locks: bool) -> None:
        self.h, self.name, self.anchor, self.query, self.tabs = h, name, anchor, query, tabs
        self.heartbeat, self.locks = heartbeat, locks
        self.context = h.browser.new_context()
        self.pages: list[Any] = []
        self.trials: dict[str, list[dict[str, Any]]] = {"close": [], "crash": []}
        self.rng = random.Random(f"failover-{name}")
        # A light page of the same origin and context that watches the leader's lock in each
        # trial: when the browser frees it is the floor of a hand-over by lock.
        self.watcher = open_bc_tabs(h, self.context, 1, f"channel=watcher-{name}&locks=1")[0]
        self.refill()

    def refill(self) -> None:
        missing = self.tabs - len(self.pages)
        if missing > 0:
            if self.anchor:
                self.pages += open_bc_tabs(self.h, self.context, missing, self.query)
            else:
                self.pages += self.h.open_tabs(self.context, missing, self.query)[0]
        if self.anchor:
            bc_wait_leader(self.pages)
        else:
            self.h.wait_converged(self.pages)

    def trial(self, mode: str) -> dict[str, Any]:
        wait_quiet()  # the tabs a refill opened may still be compiling: start every trial alike
        if self.anchor:
            result = _bc_trial(self.pages, mode, self.rng, timeout_s=10.0 if self.locks else 30.0,
                               watcher=self.watcher)
        else:
            result = _failover_trial(self.h, self.pages, mode, self.heartbeat, self.rng, watcher=self.watcher)
        dead = result.pop("_dead_page")
        with contextlib.suppress(Exception):
            if not dead.is_closed():
                dead.close()
        self.pages = [p for p in self.pages if p is not dead]
        if "error" in result:  # a survivor died too: start this group's tabs afresh
            for page in self.pages:
                with contextlib.suppress(Exception):
                    page.close()
            self.pages = []
        self.trials[mode].append(result)
        self.refill()
        return result

    def summary(self) -> dict[str, Any]:
        return {"name": self.name, "anchor": self.anchor, "locks": self.locks,
                "heartbeat_ms": None if self.anchor else self.heartbeat, "tabs": self.tabs,
                **summarize(self.trials)}

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self.context.close()


def summarize(trials: dict[str, list[dict[str, Any]]]) -> dict[str, Any]:
    """The trials by mode, and per mode: ``<mode>_all_follow``, ``_elected``, ``_floor`` (when the
    browser freed the old leader's lock), ``_above_floor`` (all_follow - floor, per trial) and
    ``_failed`` (trials without one new leader followed by all)."""
    out: dict[str, Any] = {**trials}
    for mode in ("close", "crash"):
        good = [t for t in trials[mode] if t["all_follow_ms"] is not None]
        out[f"{mode}_all_follow"] = describe([t["all_follow_ms"] for t in good])
        out[f"{mode}_elected"] = describe([t["elected_ms"] for t in good])
        out[f"{mode}_failed"] = len(trials[mode]) - len(good)
        floored = [t for t in good if t.get("floor_ms") is not None]
        out[f"{mode}_floor"] = describe([t["floor_ms"] for t in floored])
        out[f"{mode}_above_floor"] = describe([t["all_follow_ms"] - t["floor_ms"] for t in floored])
    return out


def ratio(a: float | None, b: float | None) -> float | None:
    return a / b if a is not None and b else None


def _anchor_kinds(locks: bool, same_weight: bool) -> list[tuple[str, str]]:
    """The anchor's groups beside a pyflowmesh configuration: (key, page query).

    With Web Locks, and ``same_weight``, also the anchor in a page that boots Pyodide and
    imports pyflowmesh (``bc.html?pyodide=1``): a crashed tab's lock is freed only once its
    renderer is gone, which takes longer for a renderer holding a Pyodide runtime, so that
    anchor compares the elections at the same page weight. Without locks a crash is found
    by timers, which the weight does not move.
    """
    kinds = [(f"locks{int(locks)}", f"locks={int(locks)}")]
    if locks and same_weight:
        kinds.append(("locks1-pyodide", "locks=1&pyodide=1"))
    return kinds


def _ratios(config: dict[str, Any], anchor: dict[str, Any] | None) -> dict[str, dict[str, float | None]]:
    """Per mode, pyflowmesh's p50 / the anchor's p50 and p95 / p95 (None without the anchor)."""
    out = {}
    for mode in ("close", "crash"):
        mine = config[f"{mode}_all_follow"]
        theirs = anchor[f"{mode}_all_follow"] if anchor else {}
        out[mode] = {"p50": ratio(mine["p50"], theirs.get("p50")), "p95": ratio(mine["p95"], theirs.get("p95"))}
    return out


def bench_failover_vs_bc(h: Harness, *, trials: int, tabs: int, heartbeats: tuple[float, ...],
                         locks: tuple[bool, ...] = (True, False), anchor_without_locks: bool = True,
                         same_weight: bool = True) -> dict[str, Any]:
    """pyflowmesh's failover in each configuration, each trial followed by one of the anchor's.

    Per pyflowmesh configuration (``locks`` x ``heartbeats``), ``trials`` polite closes
    and ``trials`` crashes, alternating; after each, a trial of the anchor of the same
    mode (the anchor with Web Locks after a pyflowmesh trial with them, else the anchor
    without them, if ``anchor_without_locks``), and with Web Locks one of the anchor in a
    Pyodide page (``same_weight``: :func:`_anchor_kinds`). Returns per configuration its
    figures, ``anchors`` (the anchors' trials that ran beside it: ``locks1`` or ``locks0``,
    and ``locks1-pyodide``) and ``ratios``: pyflowmesh's p50 / that anchor's p50 (and p95 /
    p95); ``ratios_same_weight`` the same against the anchor in a Pyodide page. ``anchor``
    has each anchor over the whole run.
    """
    if not BUNDLE.is_file():
        raise RuntimeError(f"missing {BUNDLE.relative_to(ROOT)}: run ./build.sh bench (it bundles broadcast-channel)")
    anchors: dict[str, _Group] = {}
    out: dict[str, Any] = {"tabs": tabs, "trials": trials, "configs": [], "anchor": {}}
    try:
        for use_locks in locks:
            if use_locks or anchor_without_locks:
                for key, query in _anchor_kinds(use_locks, same_weight):
                    anchors[key] = _Group(h, f"bc-{key}", anchor=True, query=f"channel=bench-bc-{key}&{query}",
                                          tabs=tabs, heartbeat=0.0, locks=use_locks)
        for use_locks in locks:
            mine_anchors = {key: anchors[key] for key, _ in _anchor_kinds(use_locks, same_weight) if key in anchors}
            for heartbeat in heartbeats:
                name = f"pfm-locks{int(use_locks)}-hb{heartbeat:g}"
                group = _Group(h, name, anchor=False, tabs=tabs, heartbeat=heartbeat, locks=use_locks,
                               query=f"channel=bench-{name}&heartbeat={heartbeat:g}&locks={int(use_locks)}")
                alongside: dict[str, dict[str, list[dict[str, Any]]]] = {
                    key: {"close": [], "crash": []} for key in mine_anchors}
                try:
                    for trial in range(2 * trials):
                        mode = "close" if trial % 2 == 0 else "crash"
                        mine = group.trial(mode)
                        theirs = {key: anchor.trial(mode) for key, anchor in mine_anchors.items()}
                        for key, result in theirs.items():
                            alongside[key][mode].append(result)
                        h.log(f"failover {name} {mode}: pyflowmesh {_ms(mine['all_follow_ms'])}"
                              + (f" (lock freed at {_ms(mine['floor_ms'])})" if mine["floor_ms"] is not None else "")
                              + "".join(f", broadcast-channel ({key}) {_ms(t['all_follow_ms'])}"
                                        for key, t in theirs.items()))
                    summary = group.summary()
                finally:
                    group.close()
                # The anchor's trials run beside this configuration's: its ratios' denominators.
                summary["anchors"] = {key: summarize(got) for key, got in alongside.items()}
                out["configs"].append(summary)
        for key, anchor in anchors.items():
            out["anchor"][key] = anchor.summary()
    finally:
        for anchor in anchors.values():
            anchor.close()
    for config in out["configs"]:
        locks_key = f"locks{int(config['locks'])}"
        config["ratios"] = _ratios(config, config["anchors"].get(locks_key))
        config["ratios_same_weight"] = _ratios(config, config["anchors"].get(f"{locks_key}-pyodide"))
        h.log(f"failover {config['name']} ({tabs} tabs, {trials} trials each): "
              + "; ".join(f"{mode} p50/p95 {_ms(config[f'{mode}_all_follow']['p50'])}/"
                          f"{_ms(config[f'{mode}_all_follow']['p95'])}"
                          f" (x{_x(config['ratios'][mode]['p50'])} of broadcast-channel"
                          + (f", x{_x(config['ratios_same_weight'][mode]['p50'])} of it in a Pyodide page"
                             if config["ratios_same_weight"][mode]["p50"] is not None else "") + ")"
                          for mode in ("close", "crash")))
    for key, anchor_summary in out["anchor"].items():
        h.log(f"failover broadcast-channel {key}: "
              + "; ".join(f"{mode} p50/p95 {_ms(anchor_summary[f'{mode}_all_follow']['p50'])}/"
                          f"{_ms(anchor_summary[f'{mode}_all_follow']['p95'])}" for mode in ("close", "crash")))
    return out


def _ms(value: float | None) -> str:
    return "-" if value is None else f"{value:.0f} ms"


def _x(value: float | None) -> str:
    return "-" if value is None else f"{value:.2g}"


def run(*, quick: bool = False, log: Log = print, harness: Harness | None = None) -> dict[str, Any]:
    """The side-by-side failover with the settings of a full (or ``quick``) run."""
    trials, tabs = (2, 3) if quick else (10, 4)
    heartbeats = (1000.0,) if quick else (1000.0, 5000.0)
    with contextlib.ExitStack() as stack:
        h = harness if harness is not None else stack.enter_context(Harness(log, args=_chromium_args()))
        result = bench_failover_vs_bc(h, trials=trials, tabs=tabs, heartbeats=heartbeats)
    return {"settings": {"trials": trials, "tabs": tabs, "heartbeats": heartbeats}, **result}


def _chromium_args() -> list[str]:
    """tests/chromium_args.py's command line (the allocation samplers off: see there)."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("pyflowmesh_chromium_args", ROOT / "tests/chromium_args.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return list(module.chromium_args())


if __name__ == "__main__":
    import json
    import sys

    print(json.dumps(run(quick="--quick" in sys.argv), indent=1, default=str))
