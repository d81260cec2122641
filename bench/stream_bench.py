"""Shared live streams in real Chromium tabs (``/lab/stream.html``) against tools/server.py's SSE feed.

For 1, 5, 10 and 20 tabs, with and without the mesh:

- the server's connections opened and events sent over ``seconds`` of streaming, and how many
  tabs received anything (without the mesh, HTTP/1.1 allows 6 connections per host);
- with the mesh, the lag from the leader delivering an event to each follower delivering it
  (p50/p95/max, wall clock of one machine), beside the raw ``BroadcastChannel`` delivery time
  between the same tabs measured in the same run (the physical floor);
- with the mesh, the gap after the leader's renderer is killed: the longest time without an
  event in a follower around the crash, and the connections the server saw (one more).

Run: ``.venv/bin/python -m bench.stream_bench`` (after ``./build.sh build``); ``bench.run``
includes it in ``./build.sh bench``.
"""

from __future__ import annotations

import contextlib
import json
import time
from typing import Any

from .browser_bench import Harness, Log, describe

__all__ = ["bench_streams", "run_streams"]

PERIOD_S = 0.1  # the feed: ten events a second
PROBE_JS = """() => {
  const channel = new BroadcastChannel("stream-bench-probe");
  window.probeSeen = [];
  channel.onmessage = (event) => window.probeSeen.push([event.data, Date.now()]);
  window.probeChannel = channel;
}"""


def _open(h: Harness, context: Any, n: int, query: str) -> list[Any]:
    pages = []
    for _ in range(n):
        page = context.new_page()
        page.goto(h.url(f"/lab/stream.html?{query}"), wait_until="domcontentloaded")
        pages.append(page)
    for page in pages:
        page.wait_for_function("window.pyflowmesh_ready === true", timeout=240_000)
    return pages


def _deliveries(page: Any) -> dict[int, float]:
    ids = page.evaluate("Array.from(window.streamIds)")
    walls = page.evaluate("Array.from(window.streamWall)")
    return dict(zip(ids, walls, strict=False))


def _leader(pages: list[Any], timeout_s: float = 30.0) -> Any:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        leaders = [page for page in pages if page.evaluate("window.streamState().leader")]
        if len(leaders) == 1:
            return leaders[0]
        time.sleep(0.1)
    raise RuntimeError("no single leader holds the stream")


def _probe(pages: list[Any], sender: Any, rounds: int = 20) -> list[float]:
    """Raw BroadcastChannel delivery times (ms) from ``sender`` to the other tabs."""
    for page in pages:
        page.evaluate(PROBE_JS)
    for _ in range(rounds):
        sender.evaluate("window.probeChannel.postMessage(Date.now())")
        time.sleep(0.05)
    samples: list[float] = []
    for page in pages:
        if page is not sender:
            samples += [received - sent for sent, received in page.evaluate("window.probeSeen")]
    return samples


def bench_streams(h: Harness, *, mesh: bool, sizes: tuple[int, ...], seconds: float, log: Log) -> list[dict[str, Any]]:
    feed = h.server.feed
    rows = []
    for n in sizes:
        context = h.browser.new_context()
        try:
            channel = f"bench-stream-{n}-{int(mesh)}-{time.monotonic_ns()}"
            pages = _open(h, context, n, f"channel={channel}&heartbeat=1000&mesh={int(mesh)}")
            feed.period = PERIOD_S
            feed.reset()
            for page in pages:
                page.evaluate("window.streamStart('sse')")
            time.sleep(seconds)
            stats = feed.stats()
            delivered = [_deliveries(page) for page in pages]
            row: dict[str, Any] = {
                "tabs": n, "mesh": mesh, "seconds": seconds, "connections_opened": stats["sse_opened"],
                "connections_open": stats["sse_open"], "events_sent": stats["events_sent"],
                "tabs_receiving": sum(1 for d in delivered if d),
            }
            if mesh and n > 1:
                leader = _leader(pages)
                mine = _deliveries(leader)
                lags = [wall - mine[i] for page, d in zip(pages, delivered, strict=True) if page is not leader
                        for i, wall in d.items() if i in mine]
                row["follower_lag_ms"] = describe(lags)
                row["broadcast_channel_ms"] = describe(_probe(pages, leader))
            rows.append(row)
            log(f"streams {'mesh' if mesh else 'direct'} {n} tabs: {row['connections_opened']} connection(s), "
                f"{row['events_sent']} events sent, {row['tabs_receiving']} tabs receiving"
                + (f", lag p50 {row['follower_lag_ms']['p50']} ms" if "follower_lag_ms" in row else ""))
        finally:
            context.close()
            time.sleep(1.0)  # the closed tabs' connections end at the server
    return rows


def bench_stream_crash(h: Harness, *, tabs: int, trials: int, log: Log) -> list[dict[str, Any]]:
    feed = h.server.feed
    out = []
    for trial in range(trials):
        context = h.browser.new_context()
        try:
            pages = _open(h, context, tabs, f"channel=bench-stream-crash-{trial}-{time.monotonic_ns()}&heartbeat=1000")
            feed.period = PERIOD_S
            feed.reset()
            for page in pages:
                page.evaluate("window.streamStart('sse')")
            time.sleep(3.0)
            leader = _leader(pages)
            crashed_at = time.time() * 1000.0
            with contextlib.suppress(Exception):  # the navigation dies with the renderer
                leader.goto("chrome://crash", timeout=10_000)
            time.sleep(4.0)
            rest = [page for page in pages if page is not leader]
            gaps, lost = [], 0
            for page in rest:
                ids = page.evaluate("Array.from(window.streamIds)")
                walls = page.evaluate("Array.from(window.streamWall)")
                around = [(a, b) for a, b in zip(walls, walls[1:], strict=False) if b >= crashed_at]
                gaps.append(max((b - a for a, b in around), default=None) or 0.0)
                lost += sum(1 for a, b in zip(ids[1:], ids[2:], strict=False) if b != a + 1)
            row = {"tabs": tabs, "max_gap_ms": max(gaps), "connections_opened": feed.stats()["sse_opened"],
                   "ids_lost_or_doubled": lost}
            out.append(row)
            log(f"streams leader crash {trial + 1}/{trials}: gap {row['max_gap_ms']:.0f} ms, "
                f"{row['connections_opened']} connections, {lost} ids lost or doubled")
        finally:
            context.close()
            time.sleep(1.0)
    return out


def run_streams(h: Harness, *, quick: bool = False, log: Log = print) -> dict[str, Any]:
    sizes = (1, 5) if quick else (1, 5, 10, 20)
    seconds = 3.0 if quick else 5.0
    return {
        "settings": {"sizes": sizes, "seconds": seconds, "period_s": PERIOD_S, "heartbeat": 1000.0},
        "mesh": bench_streams(h, mesh=True, sizes=sizes, seconds=seconds, log=log),
        "direct": bench_streams(h, mesh=False, sizes=sizes, seconds=seconds, log=log),
        "leader_crash": bench_stream_crash(h, tabs=3 if quick else 5, trials=2 if quick else 3, log=log),
    }


if __name__ == "__main__":
    with Harness() as harness:
        print(json.dumps(run_streams(harness, quick=True), indent=1, default=str))
