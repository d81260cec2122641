"""``docs/benchmarks.md`` and the console summary, from the results of :mod:`bench.run`.

Every number in the page comes from ``bench-results/results.json``; the prose
around them says how each was measured (the docstrings of :mod:`bench.browser_bench`
and :mod:`bench.sim_bench` say it in full) and where a figure is poor.
"""

from __future__ import annotations

from typing import Any


def _f(value: Any, digits: int = 0, unit: str = "") -> str:
    if value is None:
        return "n/a"
    if isinstance(value, float) and value == float("inf"):
        return "never"
    return f"{value:,.{digits}f}{unit}"


def _delta(ms: float | None) -> str:
    if ms is None:
        return "n/a"
    return f"{ms:,.0f} ms more" if ms >= 0 else f"{-ms:,.0f} ms less"


def _row(cells: list[Any]) -> str:
    return "| " + " | ".join(str(c) for c in cells) + " |"


def _table(head: list[str], rows: list[list[Any]]) -> list[str]:
    return [_row(head), _row(["---"] * len(head)), *(_row(r) for r in rows)]


def _size(rows: list[dict[str, Any]], tabs: int) -> dict[str, Any] | None:
    return next((r for r in rows if r["tabs"] == tabs), None)


def render(results: dict[str, Any], png: str) -> str:
    m = results.get("machine", {})
    b = results.get("browser") or {}
    sim = results.get("sim") or {}
    out: list[str] = [
        "# Benchmarks: what the mesh saves and what it costs",
        "",
        "Measured by `./build.sh bench` (code in `bench/`; every number below comes from its "
        "`bench-results/results.json`, and a new run rewrites this page and the figure). The browser "
        "figures come from real Chromium tabs of the lab page (`web/lab/`) side by side with the same page "
        "without the mesh (`mesh=0`: each tab calls the API itself); the protocol-at-scale figures "
        "from real `MeshNode`s in virtual time. A benchmark, not a test: it never fails on a time.",
        "",
        f"![benchmarks]({png})",
        "",
        "## The machine",
        "",
        *_table(["", ""], [
            ["date", m.get("date")],
            ["CPUs (nproc)", m.get("nproc")],
            ["CPU", m.get("cpu")],
            ["memory", f"{m.get('memory_gib')} GiB"],
            ["browser", f"{m.get('chromium')} (headless, Playwright)"],
            ["Python (host, simulator)", m.get("python")],
            ["Pyodide (tabs)", f"{m.get('pyodide')} (Python {(b.get('import') or {}).get('pyodide_python', '?')}),"
                               f" PyScript {m.get('pyscript')}"],
            ["pyflowmesh", f"{m.get('pyflowmesh')} at {m.get('commit')}"],
            ["load average (1, 5, 15 min) at start / end",
             " / ".join(", ".join(f"{x:.2f}" for x in m.get(k) or [])
                        for k in ("load_avg_at_start", "load_avg_at_end"))],
            ["bench run time", f"{_f(results.get('wall_s'))} s (simulator {_f(sim.get('wall_s'))} s, "
                               f"browser {_f(b.get('wall_s'))} s; build and setup not included)"],
        ]),
        "",
        "Two cores carry every tab: 20 Pyodide tabs (about 300 MB each) share them, so "
        "latencies at 20 tabs include CPU contention between tabs, as they would on a small laptop.",
        "",
    ]
    loads = [x for k in ("load_avg_at_start", "load_avg_at_end") for x in (m.get(k) or [])[:1]]
    if loads and max(loads) > (m.get("nproc") or 1):
        out += [f"Other jobs shared the machine during part of this run (a 1-minute load average of up to "
                f"{max(loads):.1f} on {m.get('nproc')} cores): that inflates browser latencies, boot times and "
                "CPU figures somewhat; counts (API calls, messages) and the simulator's virtual times do not "
                "depend on it.", ""]
    out += _browser_calls(b)
    out += _browser_failover(b)
    out += _failover_vs_bc(results.get("failover_vs_bc"))
    out += _lag(results.get("lag"))
    out += _browser_idle(b)
    out += _streams(results.get("streams") or {})
    out += _sim(sim)
    out += _size_import(b)
    out += _startup(results.get("startup"))
    out += _poor(results)
    return "\n".join(out) + "\n"


def _browser_calls(b: dict[str, Any]) -> list[str]:
    mesh, direct = b.get("calls_mesh"), b.get("calls_direct")
    if not mesh or not direct:
        return ["## 1-2. API calls and follower latency", "", "Not measured in this run.", ""]
    s = b.get("settings", {})
    rows = []
    for row in mesh["sizes"]:
        d = _size(direct["sizes"], row["tabs"]) or {}
        rows.append([
            row["tabs"], f"{_f(d.get('calls_median'))} (max {_f(d.get('calls_max'))})",
            f"**{_f(row['calls_median'])}** (max {_f(row['calls_max'])})",
            _f((d.get("duration") or {}).get("p50"), 0), _f(row["caller_duration"]["p50"], 0),
            _f(row["follower_duration"]["p50"], 0),
            f"{_f(row['follower_lag']['p50'], 1)} / {_f(row['follower_lag']['p95'], 1)} / "
            f"{_f(row['follower_lag']['max'], 1)}" if row["follower_lag"]["n"] else "-",
            _f((row.get("caller_tail") or {}).get("p50"), 1),
            f"{_f(row['boot_s'], 0)} s, {_f(row['rss_mb'] / 1024, 1)} GB",
        ])
    big = mesh["sizes"][-1]
    dbig = _size(direct["sizes"], big["tabs"]) or {}
    one = _size(direct["sizes"], 1) or {}
    added = None
    if big["follower_duration"]["p50"] is not None and (dbig.get("duration") or {}).get("p50") is not None:
        added = big["follower_duration"]["p50"] - dbig["duration"]["p50"]
    added_one = None
    if big["follower_duration"]["p50"] is not None and (one.get("duration") or {}).get("p50") is not None:
        added_one = big["follower_duration"]["p50"] - one["duration"]["p50"]
    return [
        "## 1-2. API calls, and what a follower waits",
        "",
        f"N tabs of the page execute one flow at the same instant (a `setTimeout` armed in every tab for "
        f"one time on the browser clock), {s.get('rounds')} rounds per N after one warm-up round (not "
        f"counted: new tabs run their first execute), each round with a new argument "
        f"(a new cache key); {s.get('latency_rounds')} more rounds at {big['tabs']} tabs for latency samples. "
        f"The local server (`tools/server.py`) sleeps {mesh['delay_ms']} ms per call and counts the calls. "
        f"One set of tabs grows from 1 to {big['tabs']} (tabs are added between sizes, all of one channel, "
        f"all executing), once with the mesh (heartbeat {mesh['heartbeat_ms']:g} ms, the default) and once "
        "without.",
        "",
        *_table(["tabs", "API calls without mesh", "API calls with mesh", "direct call p50 (ms)",
                 "mesh: caller's execute p50 (ms)", "mesh: follower's execute p50 (ms)",
                 "follower lag p50 / p95 / max (ms)", "caller tail p50 (ms)", "tabs opened in, browser RSS"],
               rows),
        "",
        "- *API calls*: what the server counted per round (median, and the worst round).",
        "- *direct call*: the duration of a tab's execute without the mesh: a `pyfetch` of the local "
        "server by every tab at once.",
        "- *caller's execute*: the mesh tab that called the API (the leader); *follower's execute*: a tab "
        "that asked the leader (`Request`, `Accept`) and got its broadcast `Result`.",
        "- *follower lag*: from the moment the API's response reached the tab that called (its `fetch` "
        "promise resolved, noted by a hook the bench installs in every tab) to the end of each follower's "
        "execute, compared on the browser clock (`performance.timeOrigin + performance.now()` of each tab). "
        "It covers the caller's Python (the flow returns, the `Result` is encoded and posted), the channel, "
        "and the follower's Python (decode, cache, resolve). *caller tail*: the same span within the "
        "caller itself (response to the end of its own execute).",
        "",
        f"At {big['tabs']} tabs a follower's execute took {_f(big['follower_duration']['p50'])} ms (median) "
        f"against {_f((dbig.get('duration') or {}).get('p50'))} ms for a direct call with {big['tabs']} tabs "
        f"calling at once ({_delta(added)}) and {_f((one.get('duration') or {}).get('p50'))} ms for one tab "
        f"calling alone ({_delta(added_one)}). Against a lone direct call, the follower pays one "
        "`Request`/`Accept` before the call and one `Result` broadcast after it, plus the CPU that the other "
        "tabs take meanwhile. Against N tabs calling at once it gains: their calls queue behind each other "
        "(Chromium opens at most 6 connections to one host for all the tabs of a profile) and their "
        "tabs compete for the CPU, while the mesh makes one call.",
        "",
    ]


def _browser_failover(b: dict[str, Any]) -> list[str]:
    locks, nolocks = b.get("failover_locks"), b.get("failover_no_locks")
    if not locks or not nolocks:
        return ["## 3. Failover", "", "Not measured in this run.", ""]
    rows = []
    for name, data in (("Web Locks on", locks), ("Web Locks off", nolocks)):
        for mode, label in (("close", "polite close"), ("crash", "crash (chrome://crash)")):
            stats = data[f"{mode}_all_follow"]
            elected = data[f"{mode}_elected"]
            rows.append([f"{label}, {name}", stats["n"], _f(elected["p50"]), _f(stats["p50"]), _f(stats["p95"]),
                         _f(stats["max"]), data[f"{mode}_failed"]])
    beat = locks["heartbeat_ms"]
    pagehide = [t.get("pagehide_seen") for d in (locks, nolocks) for t in d["close"]]
    return [
        "## 3. Failover: time to a single new leader",
        "",
        f"{locks['tabs']} tabs, heartbeat {beat:g} ms (so `answer_timeout` {_f(locks.get('answer_timeout_ms'))} ms "
        f"and a silence limit of {2.5 * beat:g} ms). A trial ends the leader's tab with `page.close()` "
        "(polite: the page's `pagehide` makes the member post `Bye`) or `page.goto(\"chrome://crash\")` "
        "(the renderer dies: no pagehide, no Bye; with Web Locks the browser releases the dead tab's lock "
        "to the followers queued on it). Each trial starts at a random phase of the heartbeat; a fresh tab "
        "then replaces the dead one. The time runs from the Playwright call to the moment the last "
        "survivor follows the new leader (each survivor's `pfm.events()` entry, on the browser clock); "
        "*elected* is when the new leader declared itself.",
        "",
        *_table(["trigger", "trials", "elected p50 (ms)", "all follow p50 (ms)", "p95 (ms)", "max (ms)",
                 "no single leader"], rows),
        "",
        f"The closing tab's `pagehide` was seen by the others in {sum(1 for p in pagehide if p)} of "
        f"{len(pagehide)} polite closes.",
        "",
    ]


def _x(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.2f}x"


def _config_label(config: dict[str, Any]) -> str:
    return f"pyflowmesh, heartbeat {config['heartbeat_ms']:g} ms, Web Locks {'on' if config['locks'] else 'off'}"


def _failover_vs_bc(data: dict[str, Any] | None) -> list[str]:
    """Failover beside the anchor, broadcast-channel's LeaderElection, measured in the same run."""
    head = "## 3b. Failover beside the anchor: broadcast-channel 7.4.0's LeaderElection"
    if not data or not data.get("configs"):
        return [head, "", "Not measured in this run.", ""]
    rows, floors = [], []
    for config in data["configs"]:
        # The anchor's trials beside this configuration (older result files: over the whole run).
        anchors = config.get("anchors") or data["anchor"]
        anchor = anchors.get(f"locks{int(config['locks'])}") or {}
        heavy = anchors.get(f"locks{int(config['locks'])}-pyodide") or {}
        for who, figures in ((_config_label(config), config), ("broadcast-channel beside it", anchor),
                             ("broadcast-channel in a Pyodide page beside it", heavy)):
            floor, above = figures.get("crash_floor") or {}, figures.get("crash_above_floor") or {}
            if floor.get("n"):
                follow = figures["crash_all_follow"]
                floors.append([who, floor["n"], f"{_f(floor['p50'], 1)} / {_f(floor['p95'], 1)}",
                               f"{_f(follow['p50'], 1)} / {_f(follow['p95'], 1)}",
                               f"{_f(above['p50'], 1)} / {_f(above['p95'], 1)}"])
        for mode, label in (("close", "polite close"), ("crash", "crash")):
            mine, theirs = config[f"{mode}_all_follow"], anchor.get(f"{mode}_all_follow") or {}
            theirs_heavy = heavy.get(f"{mode}_all_follow") or {}
            ratios = config["ratios"][mode]
            ratios_heavy = (config.get("ratios_same_weight") or {}).get(mode) or {}
            rows.append([f"{_config_label(config)}: {label}", mine["n"], f"{_f(mine['p50'])} / {_f(mine['p95'])}",
                         f"{_f(theirs.get('p50'))} / {_f(theirs.get('p95'))}",
                         f"{_x(ratios['p50'])} / {_x(ratios['p95'])}",
                         f"{_f(theirs_heavy.get('p50'))} / {_f(theirs_heavy.get('p95'))}",
                         f"{_x(ratios_heavy.get('p50'))} / {_x(ratios_heavy.get('p95'))}",
                         config[f"{mode}_failed"] + anchor.get(f"{mode}_failed", 0) + heavy.get(f"{mode}_failed", 0)])
    return [
        head,
        "",
        f"{data['tabs']} tabs each, {data['trials']} polite closes and {data['trials']} crashes per "
        "pyflowmesh configuration, each followed by a trial of the same kind of broadcast-channel 7.4.0 "
        "(npm, bundled by `./build.sh bench` with esbuild; `web/lab/bc.html`: `createLeaderElection` on its "
        "native method, with Web Locks where pyflowmesh has them, its message election without), whose tabs "
        "stay open in the same browser throughout: both run under the same load. The time runs from the "
        "Playwright call that closes or crashes the leader's tab to the moment the last survivor follows "
        "one new leader (for broadcast-channel: the new leader's lock granted, and each other survivor "
        "receiving its leader `tell`). Ratio: pyflowmesh / broadcast-channel (below 1: pyflowmesh is "
        "faster). With Web Locks the anchor also runs in a page of a pyflowmesh tab's weight "
        "(`bc.html?pyodide=1`: PyScript boots the same Pyodide and imports pyflowmesh, which makes no "
        "mesh), after the light page's trial: a crashed tab's lock is freed only once its renderer is "
        "gone, and a renderer holding a Pyodide runtime takes longer to go (`bench/crash_lock_release.py`).",
        "",
        *_table(["trigger", "trials", "pyflowmesh p50 / p95 (ms)", "broadcast-channel p50 / p95 (ms)",
                 "ratio p50 / p95", "broadcast-channel in a Pyodide page (ms)", "ratio p50 / p95",
                 "no single leader"], rows),
        "",
        *([("The floor of a crash with Web Locks, in the same trials: a light page of the same origin "
            "watches the crashed leader's own lock (pyflowmesh's member lock; a lock the anchor's page "
            "holds beside the library's) in shared mode, and its grant is the moment the browser freed "
            "the dead tab's locks. *Above the floor*: the last survivor's follow minus that moment, per "
            "trial. The watcher is granted the lock together with the tabs that wait on it (pyflowmesh: "
            "every survivor; broadcast-channel: its next leader), so its stamp comes later when more tabs "
            "wake with it."), "",
           *_table(["crash, Web Locks on", "trials", "lock freed p50 / p95 (ms)", "all follow p50 / p95 (ms)",
                    "above the floor p50 / p95 (ms)"], floors), ""] if floors else []),
    ]


def _lag(data: dict[str, Any] | None) -> list[str]:
    """The follower lag beside the floor (the raw channel between the same tabs)."""
    head = "## 3c. Follower lag beside the floor: the raw BroadcastChannel"
    if not data or not data.get("sizes"):
        return [head, "", "Not measured in this run.", ""]
    rows, parts = [], []
    for row in data["sizes"]:
        raw, lag, was = row["raw"], row["lag"], row.get("lag_task_wake") or {}
        was_ratio = was["p50"] / raw["p50"] if was.get("p50") is not None and raw["p50"] else None
        shadow = row.get("raw_behind_result") or {}
        rows.append([row["tabs"], f"{_f(raw['p50'], 2)} / {_f(raw['p95'], 2)}",
                     f"{_f(shadow.get('p50'), 2)} / {_f(shadow.get('p95'), 2)}",
                     f"{_f(lag['p50'], 2)} / {_f(lag['p95'], 2)}", f"{_x(row['ratio_p50'])} / {_x(row['ratio_p95'])}",
                     f"{_f(was.get('p50'), 2)} / {_f(was.get('p95'), 2)}", _x(was_ratio), lag["n"]])
        for label, source in (("now", row["parts"]), ("before", row.get("parts_task_wake") or {})):
            parts.append([row["tabs"], label, *(_f((source.get(name) or {}).get("p50"), 2)
                                                for name in ("channel", "to_python", "receive", "effects", "resume"))])
    return [
        head,
        "",
        f"One set of lab tabs grows through {', '.join(str(r['tabs']) for r in data['sizes'])} tabs. The floor: "
        "tiny JS posts (a timestamp) from the leader's tab on a channel of their own, stamped on arrival by a "
        "JS listener in every other tab. The follower lag: every tab executes one flow with a new argument at "
        f"one instant; the leader calls the API (which answers after {data['delay_ms']} ms) and posts the "
        "`Result`; lag = the follower's execute resuming with the value - the leader's page posting that "
        "`Result` (its `BroadcastChannel.prototype.postMessage`, stamped). All on the browser's common clock "
        "(`timeOrigin + performance.now()`, 0.1 ms resolution). Ratio: lag / floor (the raw channel between "
        "rounds). *Right behind the Result*: the same tiny post, sent by the leader's page just after each "
        "`Result`, on a channel of its own; not a floor: it reaches a follower's listener only once that "
        "tab's main thread is free again, so it shows how long a `Result` keeps a follower busy (the "
        "member's Python, the resumed execute, the lab's own rendering). Rounds alternate, in "
        "the same tabs, between the waiting execute waking at the end of the message that resolved it "
        "(`pyflowmesh.mesh.WAKE_IN_MICROTASK`, now the default) and *before*: in a browser task of its own "
        "(asyncio's `call_soon` in Pyodide's WebLoop, as pyflowmesh did until this change).",
        "",
        *_table(["tabs", "raw channel p50 / p95 (ms)", "raw, right behind the Result (ms)",
                 "follower lag p50 / p95 (ms)", "ratio p50 / p95",
                 "before: lag p50 / p95 (ms)", "before: ratio p50", "lag samples"], rows),
        "",
        "Where a follower's lag goes (p50 of each part, ms; `lab.py`'s `?trace=1`): *channel*, the post to "
        "its arrival in the follower's page (a passive JS listener); *to Python*, that arrival to the "
        "member's handler running in Python; *receive*, the node taking the message in (decode, protocol); "
        "*effects*, carrying out what it queued (the waiter's future resolved, listeners, the timer); "
        "*resume*, the future resolved to the awaiting execute running again (before: asyncio's `call_soon`, "
        "in Pyodide's WebLoop a `MessageChannel` post, a browser task of its own, no `setTimeout` clamp; now "
        "the end of the same task).",
        "",
        *_table(["tabs", "wake-up", "channel", "to Python", "receive", "effects", "resume"], parts),
        "",
    ]


def _browser_idle(b: dict[str, Any]) -> list[str]:
    mesh = (b.get("calls_mesh") or {}).get("idle")
    direct = (b.get("calls_direct") or {}).get("idle")
    if not mesh or not direct:
        return ["## 4. Idle cost", "", "Not measured in this run.", ""]
    rows = []
    for label, key, digits in (("posts on the channel per minute", "posts_per_min", 1),
                               ("deliveries per minute (posts x other tabs)", "deliveries_per_min", 0),
                               ("main-thread CPU per tab (ms per minute; CDP TaskDuration)", "task_ms_per_tab_min", 1),
                               ("of which script (ms per minute; CDP ScriptDuration)", "script_ms_per_tab_min", 1),
                               ("busiest tab's main thread (ms per minute)", "task_ms_per_tab_min_max", 1),
                               ("whole browser CPU per tab (ms per minute; /proc)", "browser_cpu_ms_per_tab_min", 0),
                               ("whole browser CPU (% of one core)", "browser_cpu_percent", 1),
                               ("browser RSS (MB)", "rss_mb", 0)):
        rows.append([label, _f(direct[key], digits), _f(mesh[key], digits)])
    types = ", ".join(f"{k} {v}" for k, v in sorted(mesh["posts_by_type"].items())) or "none"
    extra = mesh["task_ms_per_tab_min"] - direct["task_ms_per_tab_min"]
    return [
        "## 4. Idle cost",
        "",
        f"{mesh['tabs']} idle tabs for {mesh['seconds']:.0f} s, right after the rounds above, heartbeat "
        f"{(b.get('calls_mesh') or {}).get('heartbeat_ms', 0):g} ms. Messages: the lab page taps the mesh's "
        "channel with a plain JS listener, which sees every tab's posts. CPU: the CDP "
        "`Performance.getMetrics` counters of each page at both ends of the window, in thread CPU time "
        "(`timeDomain: threadTicks`; `TaskDuration`: all the CPU its main thread spent in tasks; "
        "`ScriptDuration`: the part in script, Pyodide's Python included), and the user + system time of "
        "every Chromium process of the bench from /proc (the browser process, its helpers and every "
        "renderer).",
        "",
        *_table(["", "without the mesh", "with the mesh"], rows),
        "",
        f"Posts seen in the window with the mesh: {types}. An idle mesh costs each tab about "
        f"{_f(extra, 1)} ms of main-thread time per minute over the same idle page without it.",
        "",
    ]


def _sim(sim: dict[str, Any]) -> list[str]:
    rows_in = sim.get("summary")
    if not rows_in:
        return ["## 5. Protocol scale (simulator)", "", "Not measured in this run.", ""]
    rows = []
    for row in rows_in:
        for key, label in (("cold_start", "cold start"), ("polite_close", "polite close (Bye)"),
                           ("crash_locks", "crash, Web Locks"), ("crash_no_locks", "crash, no locks")):
            r = row[key]
            posts = r["posts"]
            rows.append([row["n"], label, _f(r["converge_ms"]), _f(r["detect_ms"]),
                         f"{posts.get('election', 0)} / {posts.get('answer', 0)} / {posts.get('coordinator', 0)}",
                         _f(r["election_posts"]), _f(r["deliveries"]),
                         f"{_f(row['bully']['best'])} / {_f(row['bully']['worst'])}"])
    thr = sim.get("throughput") or {}
    elections = sim.get("elections") or [{}]
    first = elections[0]
    thr_line = (f"The project's simulator (`pyflowmesh.simulation.run`: random scenarios of {thr.get('tabs')} tabs "
                f"with every kind of fault, messages JSON-encoded and decoded) ran {thr.get('runs')} seeds in "
                f"{_f(thr.get('wall_s'), 1)} s: **{_f(thr.get('tab_seconds_per_s'))} simulated tab-seconds per "
                f"second** ({_f(thr.get('deliveries_per_s'))} deliveries per second; "
                f"{thr.get('violations')} invariant violations)."
                if "tab_seconds_per_s" in thr
                else f"The simulator's throughput could not be measured: {thr.get('error')}")
    return [
        "## 5. Protocol scale (simulator)",
        "",
        f"Real `MeshNode`s on the simulator's virtual network (`VirtualNetwork`, driven by `bench/sim_bench.py`), "
        f"heartbeat "
        f"{first.get('heartbeat_ms', 5000):g} ms (the default; `answer_timeout` "
        f"{first.get('answer_timeout_ms', 250):g} ms), "
        "every post delivered to every other open tab after 0.1-5 ms, Web Locks modelled as a `peer_gone` "
        "40-90 ms after a watched tab vanishes. One run per n: a cold start (n tabs open within 20 ms), "
        "then the leader's polite close, then a crash of the next leader with locks, then one without "
        "(its followers time out at slightly different times). Medians over seeds (3 for 10 and 100 tabs, "
        "1 for 1,000). A *post* is one `postMessage`; a *delivery* is its arrival at one tab (posts x "
        "(n-1)); deliveries compare with the textbook Bully algorithm's point-to-point messages: best case "
        "n-2, worst case O(n^2) (here 2 x n(n-1)/2 + n-1).",
        "",
        *_table(["n", "election", "to one leader (ms)", "first Election after (ms)",
                 "posts: Election / Answer / Coordinator", "election posts", "deliveries",
                 "Bully best / worst"], rows),
        "",
        thr_line,
        "",
    ]


def _size_import(b: dict[str, Any]) -> list[str]:
    imp = b.get("import")
    if not imp:
        return ["## 6. Size and import time", "", "Not measured in this run.", ""]
    return [
        "## 6. Size and import time",
        "",
        *_table(["", ""], [
            ["wheel", f"{imp['wheel']}: {imp['wheel_bytes'] / 1024:.1f} KiB ({imp['py_files']} modules, "
                      f"{imp['unpacked_bytes'] / 1024:.0f} KiB unpacked), no dependencies"],
            ["`import pyflowmesh` in Pyodide, fresh page",
             f"p50 {_f(imp['import_ms']['p50'], 1)} ms (min {_f(imp['import_ms']['min'], 1)}, "
             f"max {_f(imp['import_ms']['max'], 1)}; {imp['import_ms']['n']} pages)"],
            ["of it our own modules (stdlib imported first)", f"{_f(imp.get('own_import_ms'), 1)} ms "
             f"(the standard-library modules it pulls in: {', '.join(imp.get('stdlib_modules') or []) or 'none'}, "
             f"{_f(imp.get('stdlib_preload_ms'), 1)} ms)"],
            ["compiling the package's source (`compile()` of every module)",
             f"p50 {_f((imp.get('compile_ms') or {}).get('p50'), 1)} ms"],
            ["runtime + browser transports after it", f"p50 {_f(imp['import_browser_ms']['p50'], 1)} ms"],
            ["`pyodide.loadPackage(\"pyflowmesh\")` (fetch + unpack)", f"p50 {_f(imp['load_package_ms']['p50'])} ms"],
            ["for scale: Pyodide's own boot (`loadPyodide`)", f"p50 {_f(imp['boot_ms']['p50'])} ms"],
        ]),
        "",
        "Measured in a page of the server's origin that loads Pyodide directly (no PyScript), times "
        "taken with `time.perf_counter()` inside Pyodide.",
        "",
    ]


def _startup(s: dict[str, Any] | None) -> list[str]:
    """Cold start and the browser's download (bench/startup_bench.py)."""
    head = "## 7. Cold start: 4 tabs opened at once, and what the browser downloads"
    if not s or "first" not in s:
        return [head, "", "Not measured in this run.", ""]
    imp = s["import"]
    floor = imp["boot_ms"]["p50"]  # one tab's loadPyodide, alone: the runtime's own start
    anchor = ((s.get("broadcast_channel") or {}).get("first") or {}).get("all_following_ms")
    rows = []
    for mode, label in (("first", "first visit (empty cache)"), ("warm", "return visit (cached runtime)")):
        if mode not in s:
            continue
        f = s[mode]["all_following_ms"]
        t = s[mode]["per_tab"]
        rows.append([label, f"{_f(f['p50'])} / {_f(f['p95'])} ms", f"{f['p50'] / floor:.1f} x",
                     f"{f['p50'] / anchor['p50']:.0f} x" if anchor else "not measured",
                     f"{_f(t['to_loader']['p50'])} / {_f(t['pyodide']['p50'])} / {_f(t['to_imported']['p50'])} / "
                     f"{_f(t['to_mesh']['p50'])} / {_f(t['to_following']['p50'])}",
                     f"{_f(s[mode]['election_after_last_ready_ms']['p50'])} ms"])
    return [
        head, "",
        *(_table(["anchor: broadcast-channel 7.4.0's page, 4 tabs at once (first visit)",
                  "until one leads and every tab runs its elector, p50 / p95"],
                 [["", f"{_f(anchor['p50'])} / {_f(anchor['p95'])} ms"]]) + [""] if anchor else []),
        *_table(["4 lab tabs at once", "until all follow one leader, p50 / p95", "against one tab's Pyodide boot",
                 "against the anchor",
                 "per tab p50, ms: PyScript / Pyodide + wheel / to imports done / to mesh / ready to following",
                 "election after the last tab was ready, p50"], rows),
        "",
        *_table(["", ""], [
            ["what the browser downloads of ours", f"{', '.join(w['name'] for w in imp['wheels'])}: "
             f"{imp['download_bytes'] / 1024:.1f} KiB (installed by the {imp['installed']}; bytecode only: "
             f"{imp['sourceless']}; simulator installed: {imp['simulation_installed']})"],
            ["`import pyflowmesh` + runtime and browser transports, fresh page",
             f"p50 {_f(imp['import_ms']['p50'], 1)} + {_f(imp['import_browser_ms']['p50'], 1)} = "
             f"{_f(imp['total_ms']['p50'], 1)} ms"],
            ["floor: one tab's `loadPyodide` alone (with the wheel)", f"p50 {_f(floor)} ms"],
        ]),
        "",
        "Each trial opens the tabs in a new browser context (a first visit), and again in a context that "
        "loaded the page once (a return visit); per-tab spans come from `performance` marks of "
        "`web/pyodide-nojspi.mjs` and `web/lab/lab.py`. The tabs share 2 cores, so a tab's start is mostly "
        "CPU contention between the tabs (see docs/build-notes.md, \"Cold start\").",
        "",
    ]


def _poor(results: dict[str, Any]) -> list[str]:
    """Where a figure is poor, and what would change it."""
    sim = results.get("sim") or {}
    b = results.get("browser") or {}
    out = ["## Where the figures are poor, and why", ""]
    rows = sim.get("summary") or []
    big = rows[-1] if rows else None
    if big:
        n = big["n"]
        close = big["polite_close"]
        before = {r["n"]: r for r in sim.get("before") or []}
        was = before.get(n, {}).get("polite_close")
        out += [
            f"- **Election messages, fixed.** This bench first measured about 2n election posts per "
            f"hand-over (n^2 deliveries: {_f(was['election_posts']) if was else '?'} posts at {n} tabs for a "
            "polite close): every follower learned of the leader's end at the same moment (its `Bye`, the lock "
            "hand-off, its silence limit) and stood at once, and every tab that stood and then waited for a "
            "higher one still answered each lower Election, which its own broadcast Election had already "
            "told to wait. `pyflowmesh/election.py` now (a) sends no such redundant `Answer` and (b) staggers "
            "candidacy: a follower that loses its leader waits `answer_timeout / 2 x (1 - rank)`, its rank "
            "being its ID read as a fraction, so the highest tab stands first and the others hear it before "
            f"their turn. Now a polite close at {n} tabs costs {_f(close['election_posts'])} posts "
            f"({_f(close['deliveries'])} deliveries) against n-2 = {_f(big['bully']['best'])} in the Bully best "
            "case, and the time to one leader did not change. Before and after (`bench/election_before.py` "
            "patches the old behaviour in for the measurement). Cells: election posts / deliveries / ms to one "
            "leader:",
        ]
        if before:
            table = []
            for label, source in (("before", [before[r["n"]] for r in rows if r["n"] in before]), ("now", rows)):
                for r in source:
                    table.append([label, r["n"], *(
                        f"{_f(r[k]['election_posts'])} / {_f(r[k]['deliveries'])} / {_f(r[k]['converge_ms'])}"
                        for k in ("cold_start", "polite_close", "crash_locks", "crash_no_locks"))])
            out += [
                "",
                *("  " + line for line in _table(["election", "n", "cold start", "polite close",
                                                  "crash, Web Locks", "crash, no locks"], table)),
                "",
                "  Still above the best case: a cold start (every tab joins at once and stands when its join "
                "window ends; staggering it too would trade start-up latency for messages), and a crash with "
                "Web Locks when the simulator's tabs hear of the lock on their own schedules (40-90 ms "
                "apart) and a successor that went too leaves them to elect. With the named successor the "
                "usual hand-over is one `Coordinator` post and no `answer_timeout` wait (the successor "
                "announces itself on the `Bye` or the lock, and the others follow it on the same news).",
            ]
    locks, nolocks = b.get("failover_locks"), b.get("failover_no_locks")
    if locks and nolocks and locks["crash_all_follow"]["p50"] and nolocks["crash_all_follow"]["p50"]:
        beat = nolocks["heartbeat_ms"]
        out.append(
            f"- **A crash without Web Locks waits out the heartbeats**: {_f(nolocks['crash_all_follow']['p50'])} ms "
            f"(p50) at a {beat:g} ms heartbeat, against {_f(locks['crash_all_follow']['p50'])} ms with locks. "
            "That is the design: a follower presumes its leader dead 2.5 heartbeats after the last one, so "
            "1.5 to 2.5 heartbeats after the crash; at the default 5 s heartbeat that is 7.5 to 12.5 s (see "
            "the simulator's *crash, no locks*). Pages in a secure context (https, localhost) take the lock "
            "path. With locks a crash costs the browser's lock hand-off (the named successor and the "
            "other followers follow on the grant itself; section 3b sets it beside broadcast-channel and "
            "the browser's floor).")
    mesh = b.get("calls_mesh")
    if mesh:
        top = mesh["sizes"][-1]
        late = max((r["late_start_max_ms"] for r in top["rounds"]), default=0)
        out.append(
            f"- **Follower lag grows with CPU contention, not with the protocol**: p95 "
            f"{_f(top['follower_lag']['p95'], 1)} ms and max {_f(top['follower_lag']['max'], 1)} ms at "
            f"{top['tabs']} tabs. Twenty Pyodide tabs share two cores: the same contention delayed the "
            f"tabs' start timers by up to {_f(late)} ms in those rounds. One `Result` post reaches every "
            "follower; what takes time is each tab getting the CPU to run its Python.")
    imp = b.get("import")
    if imp and (imp.get("compile_ms") or {}).get("p50"):
        out.append(
            f"- **Import time was mostly compiling source**: `import pyflowmesh` takes "
            f"{_f(imp['import_ms']['p50'], 0)} ms in a fresh Pyodide from the plain wheel, and compiling the "
            f"package's {imp['py_files']} modules from source takes about {_f(imp['compile_ms']['p50'], 0)} ms "
            "of it. Pages load the browser bundle instead: bytecode compiled by the build's Pyodide, no "
            "docstrings, no simulator (section 7).")
    if len(out) == 2:
        out.append("- None stands out in this run.")
    return out + [""]


def _streams(streams: dict[str, Any]) -> list[str]:
    """The section on shared live streams (bench/stream_bench.py), if measured."""
    if not streams.get("mesh"):
        return []
    direct = {row["tabs"]: row for row in streams.get("direct") or []}
    rows = []
    for row in streams["mesh"]:
        d = direct.get(row["tabs"], {})
        lag, floor = row.get("follower_lag_ms") or {}, row.get("broadcast_channel_ms") or {}
        rows.append([row["tabs"], d.get("connections_opened"), d.get("tabs_receiving"), d.get("events_sent"),
                     row["connections_opened"], row["tabs_receiving"], row["events_sent"],
                     f"{_f(lag.get('p50'), 1)} / {_f(lag.get('p95'), 1)} / {_f(lag.get('max'), 1)}" if lag else "",
                     f"{_f(floor.get('p50'), 1)} / {_f(floor.get('p95'), 1)} / {_f(floor.get('max'), 1)}"
                     if floor else ""])
    settings = streams.get("settings") or {}
    crashes = streams.get("leader_crash") or []
    return [
        "## Shared live streams",
        "",
        f"`/lab/stream.html` tabs listening to the test server's SSE feed ({1 / settings.get('period_s', 0.1):g} "
        f"events a second) for {_f(settings.get('seconds'))} s each, without the mesh (each tab its own "
        "`EventSource`) and with it (one tab holds the connection). Lag: from the leader delivering an event "
        "to a follower delivering it (ms, p50 / p95 / max), beside the raw BroadcastChannel time between "
        "the same tabs in the same run.",
        "",
        *_table(["tabs", "connections without", "tabs receiving without", "events sent without",
                 "connections with", "tabs receiving with", "events sent with", "follower lag",
                 "BroadcastChannel"], rows),
        "",
        "After the leader's renderer is killed: "
        + "; ".join(f"{c['tabs']} tabs, {_f(c['max_gap_ms'])} ms without an event, {c['connections_opened']} "
                    f"connections in all, {c['ids_lost_or_doubled']} ids lost or doubled" for c in crashes) + ".",
        "",
    ]


def summary(results: dict[str, Any]) -> str:
    """The console summary: the headline figures, one per line."""
    lines = ["==================== pyflowmesh bench summary ===================="]
    b = results.get("browser") or {}
    mesh, direct = b.get("calls_mesh"), b.get("calls_direct")
    if mesh and direct:
        for row in mesh["sizes"]:
            d = _size(direct["sizes"], row["tabs"]) or {}
            lag = row["follower_lag"]
            lines.append(f"calls  {row['tabs']:3d} tabs: {_f(d.get('calls_median')):>3} without the mesh, "
                         f"{_f(row['calls_median']):>3} with it; follower lag p50/p95/max "
                         f"{_f(lag['p50'], 1)}/{_f(lag['p95'], 1)}/{_f(lag['max'], 1)} ms; execute p50 "
                         f"{_f((d.get('duration') or {}).get('p50'))} ms direct, "
                         f"{_f(row['follower_duration']['p50'])} ms follower")
    for key, label in (("failover_locks", "locks on "), ("failover_no_locks", "locks off")):
        data = b.get(key)
        if data:
            lines.append(f"failover ({label}, heartbeat {data['heartbeat_ms']:g} ms): polite close p50/p95 "
                         f"{_f(data['close_all_follow']['p50'])}/{_f(data['close_all_follow']['p95'])} ms, crash "
                         f"{_f(data['crash_all_follow']['p50'])}/{_f(data['crash_all_follow']['p95'])} ms")
    vs = results.get("failover_vs_bc") or {}
    for config in vs.get("configs") or []:
        anchor = (config.get("anchors") or vs.get("anchor") or {}).get(f"locks{int(config['locks'])}") or {}
        lines.append(f"failover vs broadcast-channel ({_config_label(config)}): " + "; ".join(
            f"{mode} p50/p95 {_f(config[f'{mode}_all_follow']['p50'])}/{_f(config[f'{mode}_all_follow']['p95'])} ms "
            f"against {_f((anchor.get(f'{mode}_all_follow') or {}).get('p50'))}/"
            f"{_f((anchor.get(f'{mode}_all_follow') or {}).get('p95'))} ms ({_x(config['ratios'][mode]['p50'])} p50"
            + (f"; {_x(same)} p50 of it in a Pyodide page)"
               if (same := ((config.get('ratios_same_weight') or {}).get(mode) or {}).get('p50')) is not None
               else ")")
            for mode in ("close", "crash")))
    for row in (results.get("lag") or {}).get("sizes") or []:
        lag = row["lag"]
        lines.append(f"follower lag {row['tabs']:3d} tabs: p50/p95 {_f(lag['p50'], 2)}/{_f(lag['p95'], 2)} "
                     f"ms against the raw channel's {_f(row['raw']['p50'], 2)}/{_f(row['raw']['p95'], 2)} ms "
                     f"({_x(row['ratio_p50'])} p50)")
    for key, label in (("calls_mesh", "with the mesh   "), ("calls_direct", "without the mesh")):
        idle = (b.get(key) or {}).get("idle")
        if idle:
            lines.append(f"idle {idle['tabs']} tabs {label}: {_f(idle['posts_per_min'], 1)} posts/min, main thread "
                         f"{_f(idle['task_ms_per_tab_min'], 1)} ms CPU per tab-minute, whole browser "
                         f"{_f(idle['browser_cpu_ms_per_tab_min'])} ms per tab-minute")
    for row in (results.get("streams") or {}).get("mesh") or []:
        lag = row.get("follower_lag_ms") or {}
        lines.append(f"streams {row['tabs']:3d} tabs: {row['connections_opened']} connection(s) with the mesh; "
                     f"follower lag p50/p95/max {_f(lag.get('p50'), 1)}/{_f(lag.get('p95'), 1)}/"
                     f"{_f(lag.get('max'), 1)} ms")
    imp = b.get("import")
    if imp:
        lines.append(f"size: wheel {imp['wheel_bytes'] / 1024:.1f} KiB; import pyflowmesh in Pyodide p50 "
                     f"{_f(imp['import_ms']['p50'], 1)} ms (compile {_f(imp['compile_ms']['p50'], 1)} ms)")
    sim = results.get("sim") or {}
    for row in sim.get("summary") or []:
        parts = [f"{k.replace('_', ' ')} {_f(row[k]['election_posts'])} posts/{_f(row[k]['deliveries'])} deliveries/"
                 f"{_f(row[k]['converge_ms'])} ms" for k in ("cold_start", "polite_close", "crash_locks",
                                                                "crash_no_locks")]
        lines.append(f"sim {row['n']:5d} tabs: " + "; ".join(parts) + f" (Bully best {row['bully']['best']})")
    thr = sim.get("throughput") or {}
    if "tab_seconds_per_s" in thr:
        lines.append(f"simulator: {_f(thr['tab_seconds_per_s'])} simulated tab-seconds per second "
                     f"({thr['tabs']} tabs, faults, {thr['runs']} seeds)")
    lines.append(f"bench run: {_f(results.get('wall_s'))} s (simulator {_f(sim.get('wall_s'))} s, "
                 f"browser {_f(b.get('wall_s'))} s)")
    return "\n".join(lines)
