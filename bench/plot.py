"""The benchmark's figure: six panels from ``bench-results/results.json``.

1. API calls for N tabs executing one flow at once, with the mesh and without.
2. Follower lag: from the caller's result to each follower having it (ECDF per N).
3. Failover: time to a single new leader, per trial, polite close and crash, with
   and without Web Locks, against the heartbeat and its silence limit.
4. Idle cost per tab: main-thread CPU and whole-browser CPU per minute, and posts
   per minute on the channel, with the mesh and without.
5. Simulator: deliveries per election against the Bully bounds (n-2 and n^2).
6. Simulator: time to a single leader per scenario against n.

``python -m bench.plot [results.json] [out.png]`` redraws it without measuring.
"""

from __future__ import annotations

import json
import statistics
import sys
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

MESH = "#1f6feb"
DIRECT = "#d1242f"
# How the simulator's four election triggers are drawn, in both of its panels.
ELECTION_STYLES = {"cold_start": ("s-", "#8250df", "cold start"), "polite_close": ("o-", MESH, "polite close (Bye)"),
                   "crash_locks": ("^-", "#1a7f37", "crash, Web Locks"),
                   "crash_no_locks": ("v-", DIRECT, "crash, no locks")}
GREY = "#6e7781"


def plot(results: dict[str, Any], out: Path) -> None:
    fig, axes = plt.subplots(2, 3, figsize=(17, 10), constrained_layout=True)
    browser = results.get("browser") or {}
    sim = results.get("sim") or {}
    _calls(axes[0][0], browser)
    _lag(axes[0][1], browser)
    _failover(axes[0][2], browser)
    _idle(axes[1][0], browser)
    _sim_messages(axes[1][1], sim)
    _sim_converge(axes[1][2], sim)
    m = results.get("machine", {})
    fig.suptitle(
        f"pyflowmesh {m.get('pyflowmesh', '')} benchmarks: {m.get('nproc')} CPUs ({m.get('cpu', '?')}), "
        f"{m.get('memory_gib')} GiB, {m.get('chromium', '?')}, {m.get('date', '')}", fontsize=12)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=90)
    plt.close(fig)


def _empty(ax: Any, title: str) -> None:
    ax.set_title(title)
    ax.text(0.5, 0.5, "not measured", ha="center", va="center", transform=ax.transAxes, color=GREY)
    ax.set_xticks([])
    ax.set_yticks([])


def _calls(ax: Any, browser: dict[str, Any]) -> None:
    title = "1. API calls: N tabs execute one flow at once"
    mesh, direct = browser.get("calls_mesh"), browser.get("calls_direct")
    if not mesh or not direct:
        return _empty(ax, title)
    for data, color, label in ((direct, DIRECT, "without the mesh (each tab calls)"),
                               (mesh, MESH, "with the mesh")):
        tabs = [row["tabs"] for row in data["sizes"]]
        calls = [row["calls_median"] for row in data["sizes"]]
        worst = [row["calls_max"] for row in data["sizes"]]
        ax.plot(tabs, calls, "o-", color=color, label=label, lw=2)
        if worst != calls:
            ax.plot(tabs, worst, "x", color=color, label=f"{label}: worst round")
        below = color == MESH  # the mesh's labels under its line, the others above theirs
        for x, y in zip(tabs, calls, strict=True):
            ax.annotate(f"{y:g}", (x, y), textcoords="offset points", xytext=(0, -14 if below else 7),
                        ha="center", color=color)
    ax.set_xlabel("tabs executing at once (N)")
    ax.set_ylabel("API calls per execute (median of rounds)")
    ax.set_xticks([row["tabs"] for row in mesh["sizes"]])
    ax.set_ylim(-1.5, max(row["tabs"] for row in mesh["sizes"]) * 1.15)
    ax.grid(alpha=0.3)
    ax.legend(loc="upper left", fontsize=9)
    ax.set_title(title)


def _lag(ax: Any, browser: dict[str, Any]) -> None:
    title = "2. Follower lag: API response in the caller -> follower has it"
    mesh = browser.get("calls_mesh")
    if not mesh:
        return _empty(ax, title)
    cmap = plt.get_cmap("viridis")
    rows = [row for row in mesh["sizes"] if row["follower_lag"]["n"]]
    for i, row in enumerate(rows):
        lags = sorted(x for r in row["rounds"] for x in r["follower_lag"])
        ys = [(k + 1) / len(lags) for k in range(len(lags))]
        stats = row["follower_lag"]
        ax.step(lags, ys, where="post", color=cmap(i / max(1, len(rows) - 1)), lw=2,
                label=f"{row['tabs']} tabs: p50 {stats['p50']:.1f}, p95 {stats['p95']:.1f}, max {stats['max']:.1f} ms")
    ax.set_xlabel("ms (browser clock: timeOrigin + performance.now())")
    ax.set_ylabel("fraction of follower executes")
    ax.grid(alpha=0.3)
    ax.legend(loc="lower right", fontsize=9)
    direct = browser.get("calls_direct")
    if direct and rows:
        big = rows[-1]
        dsize = next((r for r in direct["sizes"] if r["tabs"] == big["tabs"]), None)
        if dsize:
            ax.text(0.02, 0.97, f"execute at {big['tabs']} tabs, server sleeps {mesh['delay_ms']} ms:\n"
                    f"follower p50 {big['follower_duration']['p50']:.0f} ms, "
                    f"direct call p50 {dsize['duration']['p50']:.0f} ms",
                    transform=ax.transAxes, va="top", fontsize=9,
                    bbox={"facecolor": "white", "alpha": 0.8, "edgecolor": GREY})
    ax.set_title(title)


def _failover(ax: Any, browser: dict[str, Any]) -> None:
    title = "3. Failover: time to a single new leader"
    locks, nolocks = browser.get("failover_locks"), browser.get("failover_no_locks")
    if not locks or not nolocks:
        return _empty(ax, title)
    groups = [("polite close\nlocks", locks, "close"), ("crash\nlocks", locks, "crash"),
              ("polite close\nno locks", nolocks, "close"), ("crash\nno locks", nolocks, "crash")]
    for x, (_label, data, mode) in enumerate(groups):
        values = [t["all_follow_ms"] for t in data[mode] if t["all_follow_ms"] is not None]
        if not values:
            continue
        jitter = [x + (k - (len(values) - 1) / 2) * 0.06 for k in range(len(values))]
        color = MESH if data["locks"] else DIRECT
        ax.scatter(jitter, values, color=color, alpha=0.8, zorder=3)
        median = statistics.median(values)
        ax.hlines(median, x - 0.3, x + 0.3, color="black", lw=2, zorder=4)
        ax.annotate(f"p50 {median:.0f} ms", (x, median), textcoords="offset points", xytext=(0, 8),
                    ha="center", fontsize=9, fontweight="bold")
    beat = locks["heartbeat_ms"]
    ax.axhline(beat, color=GREY, ls="--", lw=1)
    ax.text(-0.45, beat * 1.05, f"heartbeat {beat:g} ms", va="bottom", ha="left", fontsize=8, color=GREY)
    # Without locks a crash is noticed 1.5 to 2.5 heartbeats after it (the silence limit
    # counts from the last heartbeat), then one answer_timeout elects the successor.
    ax.axhspan(1.5 * beat, 2.5 * beat, color=DIRECT, alpha=0.07)
    ax.text(-0.45, 1.55 * beat, "crash noticed without locks:\n1.5-2.5 heartbeats", va="bottom", ha="left",
            fontsize=8, color=DIRECT)
    ax.axhspan(40, 90, color=MESH, alpha=0.08)
    ax.text(2.5, 42, "Web Locks hand-off\n40-90 ms (measured)", fontsize=8, color=MESH, va="bottom", ha="center")
    ax.set_yscale("log")
    ax.set_xticks(range(len(groups)), [g[0] for g in groups])
    ax.set_xlim(-0.5, 3.5)
    ax.set_ylabel(f"ms until every survivor follows one leader ({locks['tabs']} tabs)")
    ax.grid(alpha=0.3, axis="y")
    ax.set_title(title)


def _idle(ax: Any, browser: dict[str, Any]) -> None:
    title = "4. Idle cost per tab"
    mesh, direct = (browser.get("calls_mesh") or {}).get("idle"), (browser.get("calls_direct") or {}).get("idle")
    if not mesh or not direct:
        return _empty(ax, title)
    labels = ["main thread CPU\n(CDP TaskDuration)", "script CPU\n(CDP ScriptDuration)",
              "whole browser CPU\n(/proc, per tab)"]
    keys = ["task_ms_per_tab_min", "script_ms_per_tab_min", "browser_cpu_ms_per_tab_min"]
    width = 0.38
    for offset, data, color, label in ((-width / 2, direct, DIRECT, "without the mesh"),
                                       (width / 2, mesh, MESH, "with the mesh")):
        values = [data[k] for k in keys]
        bars = ax.bar([i + offset for i in range(len(keys))], values, width, color=color, label=label)
        ax.bar_label(bars, fmt="%.0f", fontsize=9)
    ax.set_xticks(range(len(keys)), labels)
    ax.set_ylabel("CPU ms per tab per minute of idle")
    ax.legend(loc="upper left", fontsize=9)
    ax.grid(alpha=0.3, axis="y")
    ax.set_title(f"{title} ({mesh['tabs']} tabs, {mesh['seconds']:.0f} s): channel "
                 f"{mesh['posts_per_min']:.0f} vs {direct['posts_per_min']:.0f} posts/min")


def _sim_messages(ax: Any, sim: dict[str, Any]) -> None:
    title = "5. Simulator: messages per election vs Bully bounds"
    rows = sim.get("summary")
    if not rows:
        return _empty(ax, title)
    ns = [row["n"] for row in rows]
    for key, (style, color, label) in ELECTION_STYLES.items():
        ax.plot(ns, [row[key]["deliveries"] for row in rows], style, color=color, label=f"{label}: deliveries")
        ax.plot(ns, [row[key]["election_posts"] for row in rows], style.replace("-", ":"), color=color, alpha=0.6,
                label=f"{label}: posts")
    before = sim.get("before")
    if before:
        ax.plot([r["n"] for r in before], [r["polite_close"]["deliveries"] for r in before], "o--",
                color="#bf8700", label="polite close, before staggering: deliveries")
    ax.plot(ns, [row["bully"]["best"] for row in rows], "k--", lw=1, label="Bully best case n-2")
    ax.plot(ns, [row["bully"]["worst"] for row in rows], "k-.", lw=1, label="Bully worst case (about n^2)")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("tabs (n)")
    ax.set_ylabel("messages per election (Election + Answer + Coordinator)")
    ax.grid(alpha=0.3, which="both")
    ax.legend(fontsize=7.5, loc="upper left", ncol=2)
    ax.set_title(title)


def _sim_converge(ax: Any, sim: dict[str, Any]) -> None:
    title = "6. Simulator: time to a single leader"
    rows = sim.get("summary")
    if not rows:
        return _empty(ax, title)
    ns = [row["n"] for row in rows]
    for key, (style, color, label) in ELECTION_STYLES.items():
        ax.plot(ns, [row[key]["converge_ms"] for row in rows], style, color=color, label=label)
    elections = sim.get("elections") or [{}]
    beat = elections[0].get("heartbeat_ms", 5000)
    ax.axhline(beat, color=GREY, ls="--", lw=1)
    ax.text(ns[0], beat * 1.08, f"heartbeat {beat:g} ms", fontsize=8, color=GREY)
    ax.axhline(2.5 * beat, color=GREY, ls=":", lw=1)
    ax.text(ns[0], 2.5 * beat * 1.08, "silence limit 2.5 x heartbeat", fontsize=8, color=GREY)
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("tabs (n)")
    ax.set_ylabel("virtual ms from the trigger (median of seeds)")
    ax.grid(alpha=0.3, which="both")
    ax.legend(fontsize=9, loc="center right")
    ax.set_title(title)


if __name__ == "__main__":
    source = Path(sys.argv[1]) if len(sys.argv) > 1 else Path("bench-results/results.json")
    target = Path(sys.argv[2]) if len(sys.argv) > 2 else Path("bench-results/benchmarks.png")
    plot(json.loads(source.read_text()), target)
    print(f"wrote {target}")
