"""Follower lag beside its floor: the raw BroadcastChannel one-way time between the same tabs.

One set of lab tabs (``web/lab/``, ``trace=1``) grows through the sizes (2, 5, 10, 20);
at each size:

* ``raw``: the floor. From the leader's tab, ``posts`` tiny JS posts on a channel of
  their own, each carrying ``performance.timeOrigin + performance.now()``; every other
  tab stamps each arrival in a JS listener on the same clock. One-way time = arrival -
  post (the common browser clock: see :mod:`bench.browser_bench`).
* ``raw_behind_result``: the same tiny post, sent by the leader's page right behind each
  ``Result`` it posts (on a channel of its own). Not a floor: its listener runs only once the
  follower's main thread is free again, so it shows how long a ``Result`` keeps a follower
  busy (the member's Python, the resumed execute, the lab's own rendering).
* ``lag``: the follower lag of a shared result. Every tab executes one flow with a new
  argument at one instant (:func:`bench.browser_bench.execute_at_once`); the leader calls
  the API (the server answers after ``delay_ms``) and posts the ``Result``. Lag = the
  moment a follower's execute resumed with the value (``ended``) - the moment the leader's
  page posted that ``Result`` (``BroadcastChannel.prototype.postMessage``, stamped by
  :data:`POST_HOOK_JS`). Both on the common browser clock.
* ``parts``: where a follower's lag goes, from the same rounds: ``channel``, post ->
  arrival in the page (the lab's passive JS tap, ``window.labWire``); ``to_python``,
  arrival -> the member's handler running in Python (Pyodide's call into the PyProxy
  listener, and whatever task ran before it); ``receive``, the node taking the message in
  (decode and protocol); ``effects``, carrying out what it queued (the waiter's future
  resolved, listeners, the timer re-armed); ``resume``, the future resolved -> the
  awaiting execute running again (asyncio's ``call_soon`` in Pyodide's WebLoop).
  From ``pfm.trace()`` (``lab.py``'s ``?trace=1``).

Rounds alternate between the waiting execute waking at the end of the message that
resolved it, in the same browser task (``pyflowmesh.mesh.WAKE_IN_MICROTASK``, the default)
and in a browser task of its own (asyncio's ``call_soon`` in Pyodide's WebLoop, as before): ``lag`` / ``parts`` and
``lag_task_wake`` / ``parts_task_wake``, measured in the same tabs.
"""

from __future__ import annotations

import time
from typing import Any

from .browser_bench import FETCH_HOOK_JS, Harness, Log, describe, execute_at_once

# Stamps every string this page posts on a BroadcastChannel that is a mesh message of type
# "result": window.__benchPosts = [{at (common clock), key}].
POST_HOOK_JS = """(() => {
  const original = BroadcastChannel.prototype.postMessage;
  window.__benchPosts = [];
  BroadcastChannel.prototype.postMessage = function (data) {
    const at = performance.timeOrigin + performance.now();
    const out = original.call(this, data);
    if (typeof data === "string" && data.includes('"type":"result"')) {
      try { window.__benchPosts.push({ at, key: JSON.parse(data).key }); } catch (error) {}
      // the floor at this very moment: a tiny post right behind the Result, if the bench asked for it
      if (window.__benchShadow) {
        window.__benchShadow.postMessage({ seq: -1, sent: performance.timeOrigin + performance.now() });
      }
    }
    return out;
  };
})();"""

RAW_LISTEN_JS = """(name) => {
  window.__rawArrivals = [];
  const channel = (window.__rawChannel = new BroadcastChannel(name));
  channel.onmessage = (event) => window.__rawArrivals.push(
    { seq: event.data.seq, sent: event.data.sent, at: performance.timeOrigin + performance.now() });
}"""

RAW_SEND_JS = """async ([name, posts, gap]) => {
  const channel = new BroadcastChannel(name);
  for (let seq = 0; seq < posts; seq++) {
    channel.postMessage({ seq, sent: performance.timeOrigin + performance.now() });
    await new Promise((resolve) => setTimeout(resolve, gap));
  }
  channel.close();
}"""


def raw_one_way(pages: list[Any], sender: Any, name: str, posts: int, gap_ms: float) -> list[float]:
    """One-way times (ms) of ``posts`` tiny posts from ``sender`` to every other page."""
    receivers = [p for p in pages if p is not sender]
    for page in receivers:
        page.evaluate(RAW_LISTEN_JS, name)
    sender.evaluate(RAW_SEND_JS, [name, posts, gap_ms])
    time.sleep(0.2)
    out: list[float] = []
    for page in receivers:
        arrivals = page.evaluate("window.__rawChannel.close(), window.__rawArrivals")
        out += [a["at"] - a["sent"] for a in arrivals]
    return out


def _lag_round(pages: list[Any], leader: Any, key_arg: str, origins: list[float]) -> dict[str, Any]:
    marks_trace = [p.evaluate("pfm.trace().length") for p in pages]
    marks_wire = [p.evaluate("window.labWire.length") for p in pages]
    marks_posts = leader.evaluate("window.__benchPosts.length")
    outcomes = execute_at_once(pages, "data", key_arg)
    time.sleep(0.2)
    posts = leader.evaluate("window.__benchPosts")[marks_posts:]
    followers = [i for i, o in enumerate(outcomes) if o.get("source") == "mesh"]
    out: dict[str, Any] = {"lag": [], "channel": [], "to_python": [], "receive": [], "effects": [], "resume": [],
                           "sources": [o.get("source") for o in outcomes]}
    if not posts or not followers:
        return out
    post_at = posts[0]["at"]
    key = posts[0]["key"]
    for i in followers:
        page, origin = pages[i], origins[i]
        out["lag"].append(outcomes[i]["abs_ended"] - post_at)
        wire = [w for w in page.evaluate("window.labWire")[marks_wire[i]:]
                if w.get("type") == "result" and w.get("key") == key]
        trace = [t for t in page.evaluate("pfm.trace()")[marks_trace[i]:]
                 if t.get("type") == "result" and t.get("key") == key]
        if wire and trace:
            arrived = origin + wire[0]["at"]
            t = trace[0]
            out["channel"].append(arrived - post_at)
            out["to_python"].append(origin + t["start"] - arrived)
            out["receive"].append(t["received"] - t["start"])
            out["effects"].append(t["flushed"] - t["received"])
            out["resume"].append(outcomes[i]["abs_ended"] - (origin + t["flushed"]))
    return out


PARTS = ("channel", "to_python", "receive", "effects", "resume")


def bench_lag(h: Harness, *, sizes: tuple[int, ...], rounds: int, raw_posts: int, delay_ms: int = 30,
              heartbeat: float = 5000.0) -> dict[str, Any]:
    """The raw channel's one-way time and the follower lag at each size (see the module's docstring)."""
    query = f"channel=bench-lag&heartbeat={heartbeat:g}&delay_ms={delay_ms}&trace=1"
    context = h.browser.new_context()
    context.add_init_script(FETCH_HOOK_JS)  # execute_at_once reads what it notes
    context.add_init_script(POST_HOOK_JS)
    pages: list[Any] = []
    out: dict[str, Any] = {"delay_ms": delay_ms, "heartbeat_ms": heartbeat, "sizes": []}
    try:
        for size in sizes:
            new, boot_s = h.open_tabs(context, size - len(pages), query)
            pages += new
            leader_id = h.wait_converged(pages)
            states = [p.evaluate("pfm.state()") for p in pages]
            leader = pages[[s["node_id"] for s in states].index(leader_id)]
            origins = [float(p.evaluate("performance.timeOrigin")) for p in pages]
            time.sleep(1.0)
            execute_at_once(pages, "data", f"lag-{size}-warmup")  # first executes run cold code paths
            time.sleep(0.3)
            raw = raw_one_way(pages, leader, f"bench-raw-{size}", raw_posts, 15)
            # a tiny JS post right behind each Result, on a channel of its own (see raw_behind_result)
            shadow_name = f"bench-shadow-{size}"
            for page in pages:
                if page is not leader:
                    page.evaluate(RAW_LISTEN_JS, shadow_name)
            leader.evaluate("(name) => { window.__benchShadow = new BroadcastChannel(name); }", shadow_name)
            samples: dict[str, list[float]] = {"lag": [], **{part: [] for part in PARTS}}
            before: dict[str, list[float]] = {"lag": [], **{part: [] for part in PARTS}}
            for r in range(2 * rounds):  # alternating: the wake-up as it is, and as it was (a task of its own)
                microtask = r % 2 == 0
                for page in pages:
                    page.evaluate("(on) => pfm.set_wake(on)", microtask)
                one = _lag_round(pages, leader, f"lag-{size}-r{r}", origins)
                for name in samples:
                    (samples if microtask else before)[name] += one[name]
                time.sleep(0.1)
            for page in pages:
                page.evaluate("pfm.set_wake(true)")
            leader.evaluate("window.__benchShadow.close(); window.__benchShadow = null")
            shadow = [a["at"] - a["sent"] for page in pages if page is not leader
                      for a in page.evaluate("window.__rawChannel.close(), window.__rawArrivals")]
            # the floor once more after the rounds, so load drifting over the size shows in both
            raw += raw_one_way(pages, leader, f"bench-raw-{size}-b", raw_posts, 15)
            row: dict[str, Any] = {"tabs": size, "boot_s": boot_s, "raw": describe(raw),
                                   "raw_behind_result": describe(shadow),
                                   "lag": describe(samples["lag"]),
                                   "parts": {part: describe(samples[part]) for part in PARTS},
                                   "lag_task_wake": describe(before["lag"]),
                                   "parts_task_wake": {part: describe(before[part]) for part in PARTS}}
            row["ratio_p50"] = (row["lag"]["p50"] / row["raw"]["p50"]
                                if row["lag"]["p50"] is not None and row["raw"]["p50"] else None)
            row["ratio_p95"] = (row["lag"]["p95"] / row["raw"]["p95"]
                                if row["lag"]["p95"] is not None and row["raw"]["p95"] else None)
            out["sizes"].append(row)
            parts = ", ".join(f"{part} {row['parts'][part]['p50']:.2f}" for part in PARTS
                              if row["parts"][part]["p50"] is not None)
            h.log(f"follower lag {size:2d} tabs: raw channel p50/p95 {_f(row['raw']['p50'])}/{_f(row['raw']['p95'])} ms"
                  f" (right behind the Result: {_f(row['raw_behind_result']['p50'])}/"
                  f"{_f(row['raw_behind_result']['p95'])} ms)"
                  f"; follower lag p50/p95 {_f(row['lag']['p50'])}/{_f(row['lag']['p95'])} ms"
                  f" (x{_f(row['ratio_p50'])} of the channel, p50); p50 parts: {parts}; woken in a task of its own "
                  f"(before): p50/p95 {_f(row['lag_task_wake']['p50'])}/{_f(row['lag_task_wake']['p95'])} ms, resume "
                  f"p50 {_f(row['parts_task_wake']['resume']['p50'])}")
    finally:
        context.close()
    return out


def _f(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f}"


def run(*, quick: bool = False, log: Log = print, harness: Harness | None = None,
        sizes: tuple[int, ...] | None = None) -> dict[str, Any]:
    """The follower-lag figures with the settings of a full (or ``quick``) run."""
    import contextlib

    from .failover_bench import _chromium_args

    sizes = sizes or ((2, 5) if quick else (2, 5, 10, 20))
    rounds = 4 if quick else 10
    raw_posts = 20 if quick else 40
    with contextlib.ExitStack() as stack:
        h = harness if harness is not None else stack.enter_context(Harness(log, args=_chromium_args()))
        result = bench_lag(h, sizes=sizes, rounds=rounds, raw_posts=raw_posts)
    return {"settings": {"sizes": sizes, "rounds": rounds, "raw_posts": raw_posts}, **result}


if __name__ == "__main__":
    import json
    import sys

    chosen = tuple(int(a) for a in sys.argv[1:] if a.isdigit()) or None
    result = run(quick="--quick" in sys.argv, sizes=chosen)
    print(json.dumps(result, indent=1, default=str)[:6000])
