"""Driving lab tabs (``web/lab/``, served at ``/lab/``) from Playwright: executes, state, the wire, faults.

A :class:`Tab` wraps one Playwright page of the lab page and speaks to its
``window.pfm`` (see ``web/lab/lab.py``). Every wait has a limit and fails with a message
saying what it waited for, so that a hang in the mesh is a failing test, never a
stuck run. Times compared across tabs or with the test process are wall-clock
milliseconds (``Date.now()`` in the pages, ``time.time()`` here: one clock on one
machine); durations measured inside one tab use its ``performance.now()``.
"""

from __future__ import annotations

import contextlib
import json
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

HEARTBEAT_MS = 1000
"""The heartbeat of every fault test: every bound below derives from it."""
SILENCE_MS = 2.5 * HEARTBEAT_MS
"""How long followers wait for a silent visible leader (MeshConfig.silence_limit)."""
ELECTION_MS = HEARTBEAT_MS
"""An election's bound once it starts. The protocol's own is answer_timeout (50 ms) +
coordinator_timeout (200 ms) + answer_timeout at this heartbeat; one heartbeat leaves room
for the scheduling of 4 to 6 Pyodide tabs on 2 cores, and is still well below SILENCE_MS."""


def now_ms() -> float:
    return time.time() * 1000.0


def lab_path(**params: Any) -> str:
    """``/lab/?...`` with the fault suite's heartbeat unless given."""
    params.setdefault("heartbeat", HEARTBEAT_MS)
    return "/lab/?" + urlencode({k: v for k, v in params.items() if v is not None})


def wait_for(condition: Callable[[], Any], timeout_s: float, what: str, interval_s: float = 0.05) -> float:
    """Poll ``condition`` until it is truthy; return the seconds it took. ``timeout_s`` only
    stops a broken mesh from hanging the run: it is never the assertion of a bound."""
    __tracebackhide__ = True
    start = time.monotonic()
    while True:
        value = condition()
        if value:
            return time.monotonic() - start
        if time.monotonic() - start > timeout_s:
            raise AssertionError(f"gave up after {timeout_s:.1f} s waiting for {what}")
        time.sleep(interval_s)


def record_figure(path: Path, name: str, value: Any) -> None:
    """Add ``name: value`` to the JSON figures file ``path`` (under test-artifacts/), for the notes."""
    path.parent.mkdir(exist_ok=True)
    figures = json.loads(path.read_text()) if path.is_file() else {}
    figures[name] = value
    path.write_text(json.dumps(figures, indent=1, sort_keys=True))


_START = """([flow, args, at]) => {
  const lab = (window.__labRuns ||= {seq: 0, done: {}});
  const id = ++lab.seq;
  const go = () => pfm.execute(flow, ...args).then((result) => { lab.done[id] = result; });
  const wait = at - Date.now();
  if (wait > 0) setTimeout(go, wait); else go();
  return id;
}"""

_STALL = """([ms, lifecycle]) => {
  window.labStall = {scheduled: Date.now()};
  setTimeout(() => {
    if (lifecycle) document.dispatchEvent(new Event("freeze"));
    const start = Date.now();
    window.labStall.start = start;
    while (Date.now() < start + ms) {}  // the main thread does nothing else meanwhile
    window.labStall.end = Date.now();
    if (lifecycle) document.dispatchEvent(new Event("resume"));
  }, 0);
}"""


class Tab:
    """One lab tab. ``name`` (``tab0``...) is how messages and failures refer to it."""

    def __init__(self, page: Any, name: str) -> None:
        self.page = page
        self.name = name
        self.crashed = False
        self.closed = False
        self._node_id: str | None = None

    def __repr__(self) -> str:
        return f"<{self.name} {self._node_id}>"

    @property
    def alive(self) -> bool:
        return not (self.crashed or self.closed)

    @property
    def node_id(self) -> str:
        if self._node_id is None:
            self._node_id = self.state()["node_id"]
        return self._node_id  # type: ignore[return-value]

    # --- reading -------------------------------------------------------------------

    def state(self) -> dict[str, Any]:
        return self.page.evaluate("pfm.state()")

    def events(self, since_wall: float | None = None) -> list[dict[str, Any]]:
        events = self.page.evaluate("pfm.events()")
        return [e for e in events if since_wall is None or e["wall"] >= since_wall]

    def wire(self, src: str | None = None, types: Iterable[str] | None = None,
             since_wall: float | None = None) -> list[dict[str, Any]]:
        """What this tab saw on the mesh's channel (``window.labWire``), filtered."""
        return self.page.evaluate(
            """([src, types, since]) => labWire.filter((e) => (src === null || e.src === src)
                 && (types === null || types.includes(e.type)) && (since === null || e.wall >= since))""",
            [src, list(types) if types is not None else None, since_wall],
        )

    def notes(self) -> list[dict[str, Any]]:
        """Lifecycle notes other lab tabs sent on the side channel (``pagehide``)."""
        return self.page.evaluate("labNotes")

    # --- acting ----------------------------------------------------------------------

    def start(self, flow: str, *args: Any, at_wall: float | None = None) -> int:
        """Start ``pfm.execute(flow, *args)`` (at ``at_wall``, a ``Date.now()`` time); a handle."""
        return self.page.evaluate(_START, [flow, list(args), at_wall if at_wall is not None else 0])

    def result(self, handle: int, timeout_s: float = 30.0) -> dict[str, Any]:
        """The outcome of a started execute; fails if it does not settle within ``timeout_s``."""
        __tracebackhide__ = True
        try:
            found = self.page.wait_for_function(
                "(id) => window.__labRuns.done[id]", arg=handle, timeout=timeout_s * 1000
            )
        except Exception as exc:
            raise AssertionError(
                f"{self.name}: execute #{handle} did not settle within {timeout_s:.0f} s (a hang): "
                f"{str(exc).splitlines()[0]}"
            ) from None
        return found.json_value()

    def execute(self, flow: str, *args: Any, timeout_s: float = 30.0) -> dict[str, Any]:
        return self.result(self.start(flow, *args), timeout_s)

    def post(self, js_value: str) -> None:
        """Put the JS value that ``js_value`` (an expression) builds on the mesh's channel."""
        self.page.evaluate(f"pfm.post({js_value})")

    def dispose(self) -> dict[str, Any]:
        return self.page.evaluate("pfm.dispose()")

    def stall(self, ms: float, lifecycle: bool = False) -> float:
        """Block this tab's main thread for ``ms`` (from a timer, so this returns at once).

        Nothing runs meanwhile: no timer, no message handler, no Python; the tab's Web Lock
        stays held, and the channel's messages wait and arrive afterwards in order.
        ``lifecycle``: first dispatch ``freeze`` and afterwards ``resume`` on the document,
        as Chrome does around freezing a tab. Returns the wall time it was scheduled at.
        """
        at = now_ms()
        self.page.evaluate(_STALL, [ms, lifecycle])
        return at

    def stall_times(self) -> dict[str, float]:
        """``{scheduled, start, end}`` of the last stall (wall ms); call it once the stall ended."""
        return self.page.evaluate("window.labStall")

    def crash(self) -> float:
        """Kill this tab's renderer (no pagehide, no Bye); returns the wall time just before."""
        seen: list[Any] = []
        self.page.once("crash", lambda page: seen.append(page))
        at = now_ms()
        try:
            self.page.goto("chrome://crash", timeout=10_000)
        except Exception:
            pass  # expected: the navigation dies with the renderer
        else:
            raise AssertionError(f"{self.name}: chrome://crash did not crash the renderer")
        if not seen:  # Playwright delivers the event during a later call of its own
            with contextlib.suppress(Exception):
                self.page.wait_for_event("crash", timeout=5000)
        assert seen, f"{self.name}: no crash event after chrome://crash"
        self.crashed = True
        return at

    def close(self, run_before_unload: bool = False) -> float:
        """Close the tab politely (pagehide runs); returns the wall time just before."""
        at = now_ms()
        self.page.close(run_before_unload=run_before_unload)
        self.closed = True
        return at


def open_lab(open_tabs: Any, n: int, **params: Any) -> list[Tab]:
    """Open ``n`` lab tabs with these query parameters and wait until each is ready."""
    pages = open_tabs(n, lab_path(**params))
    first = getattr(open_tabs, "lab_count", 0)  # names stay unique across calls in one test
    open_tabs.lab_count = first + n
    return [Tab(page, f"tab{first + i}") for i, page in enumerate(pages)]


def start_together(tabs: list[Tab], flow: str, args_per_tab: list[tuple[Any, ...]] | None = None,
                   lead_ms: float = 400) -> tuple[list[int], float]:
    """Start one execute in every tab at the same wall-clock moment (``lead_ms`` from now).

    Returns the handles and that moment (wall ms).
    """
    at = now_ms() + lead_ms
    args_per_tab = args_per_tab or [()] * len(tabs)
    return [tab.start(flow, *args, at_wall=at) for tab, args in zip(tabs, args_per_tab, strict=True)], at


def execute_together(tabs: list[Tab], flow: str, args_per_tab: list[tuple[Any, ...]] | None = None,
                     timeout_s: float = 30.0, lead_ms: float = 400) -> list[dict[str, Any]]:
    handles, _ = start_together(tabs, flow, args_per_tab, lead_ms)
    return [tab.result(handle, timeout_s) for tab, handle in zip(tabs, handles, strict=True)]


def leaders(tabs: Iterable[Tab]) -> list[Tab]:
    return [tab for tab in tabs if tab.alive and tab.state()["leader"]]


def settled(tabs: list[Tab]) -> Tab | None:
    """The leader, if exactly one live tab leads and every live tab follows it; else None."""
    states = [(tab, tab.state()) for tab in tabs if tab.alive]
    leading = [tab for tab, state in states if state["leader"]]
    if len(leading) != 1:
        return None
    leader_id = leading[0].node_id
    return leading[0] if all(state["leader_id"] == leader_id for _, state in states) else None


def wait_settled(tabs: list[Tab], timeout_s: float = 20.0, what: str = "one leader followed by every tab") -> Tab:
    __tracebackhide__ = True
    found: list[Tab] = []

    def check() -> bool:
        leader = settled(tabs)
        if leader is not None:
            found[:] = [leader]
        return leader is not None

    wait_for(check, timeout_s, what)
    return found[0]


def summary(tabs: Iterable[Tab]) -> str:
    """One line per live tab, for failure messages."""
    lines = []
    for tab in tabs:
        if not tab.alive:
            lines.append(f"{tab.name}: {'crashed' if tab.crashed else 'closed'}")
            continue
        state = tab.state()
        lines.append(f"{tab.name} {state['node_id']} {state['role']} leader={state['leader_id']} "
                     f"term={state['term']} calls={state['stats'].get('calls')}")
    return "\n".join(lines)


class Measured:
    """Measured figures of a test: printed, and recorded as junit properties."""

    def __init__(self, record_property: Callable[[str, Any], None], test: str) -> None:
        self._record = record_property
        self._test = test

    def __call__(self, name: str, value: Any) -> Any:
        if isinstance(value, float):
            value = round(value, 1)
        self._record(name, value)
        print(f"[measured] {self._test}: {name} = {value}")
        return value
