"""Streams in the simulator: a stream server that honours the resume point, and the checks.

:class:`StreamServer` produces, for every stream key, the events 1, 2, 3, ... one every
``period`` ms of virtual time (the event ID is the number; the data says which and when).
A connection opened from resume point ``r`` gets ``r + 1`` up to the latest at once, then
each new one as it is produced (``None``: from event 1). A frozen tab's connection keeps its
events queued and hands them over, in order, once the tab runs again. Connections fail at
open with ``fail_rate``, and every one fails while ``down``.

:class:`StreamChecks` holds the rules of the issue, checked on every event:

- ``stream-order``: each tab delivers a stream's events with strictly increasing ``seq``,
  and ``seq`` is the event ID (this server numbers from 1 and honours the resume point,
  so an owner that resumed from the wrong point, lost or doubled an event breaks it);
- ``stream-gap``: within one listening session, once a tab has delivered an event as it
  was broadcast, every later one is the next (no gap when the source resumes elsewhere);
- ``stream-sources``: while ``single_source`` holds (the scenario's quiet phase, with a
  stable leader), at most one running (unfrozen) tab holds a stream's source open.
"""

from __future__ import annotations

import functools
import math
import random
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from ..core.effects import CloseSource, Deliver, OpenSource, StreamChanged
from ..core.node import MeshNode
from .clock import quantize
from .tab import Tab

__all__ = ["StreamServer", "StreamChecks", "Connection", "SimStreams"]


class StreamDown(ConnectionError):
    """The stream server refused or dropped the connection."""


@dataclass
class Connection:
    tab: Tab
    node: MeshNode
    stream: str
    run: int
    next_id: int
    opened: float
    closed: bool = False
    connected: bool = False


@dataclass
class Session:
    """One tab listening to one stream, from listen to unlisten (or the end of its node)."""

    node: MeshNode
    last_seq: int = 0
    broadcast_seen: bool = False
    deliveries: int = 0


@dataclass
class StreamChecks:
    problem: Callable[[str, str], None]
    single_source: bool = False
    sessions: dict[tuple[int, str], Session] = field(default_factory=dict)
    delivered: Counter[str] = field(default_factory=Counter)

    def listening(self, tab: Tab, stream: str, on: bool) -> None:
        if on:
            self.sessions[(tab.index, stream)] = Session(tab.node)
        else:
            self.sessions.pop((tab.index, stream), None)

    def resumed(self, tab: Tab) -> None:
        """The tab is back from the back/forward cache: what it missed is lost, it restarts from the latest."""
        for (index, _), session in self.sessions.items():
            if index == tab.index:
                session.broadcast_seen = False

    def deliver(self, tab: Tab, effect: Deliver) -> None:
        self.delivered[effect.stream] += 1
        session = self.sessions.get((tab.index, effect.stream))
        if session is None or session.node is not tab.node:
            self.problem("stream-order", f"tab {tab.id} delivered {effect.stream!r} seq {effect.seq} "
                                         "without listening")
            return
        if effect.event_id != effect.seq:
            self.problem("stream-order", f"tab {tab.id}: {effect.stream!r} seq {effect.seq} carries event "
                                         f"{effect.event_id!r}: the source resumed from the wrong point")
        if effect.seq <= session.last_seq:
            self.problem("stream-order", f"tab {tab.id}: {effect.stream!r} seq {effect.seq} after "
                                         f"{session.last_seq}: doubled or out of order")
        elif session.broadcast_seen and (effect.latest or effect.seq != session.last_seq + 1):
            self.problem("stream-gap", f"tab {tab.id}: {effect.stream!r} jumped from {session.last_seq} to "
                                       f"{effect.seq} (latest={effect.latest})")
        session.last_seq = max(session.last_seq, effect.seq)
        session.deliveries += 1
        if not effect.latest:
            session.broadcast_seen = True

    def opened(self, connections: list[Connection], new: Connection) -> None:
        if not self.single_source:
            return
        digest = new.node.scope_digest  # each scope's mesh runs its own source
        others = [c for c in connections if c is not new and c.stream == new.stream and not c.closed
                  and c.tab.alive and not c.tab.frozen and c.node is c.tab.node and c.node.scope_digest == digest]
        if others:
            self.problem("stream-sources", f"tab {new.tab.id} opened {new.stream!r} while tab "
                                           f"{others[0].tab.id} holds it open")


class StreamServer:
    """Every stream's events 1, 2, 3 ... one per ``period`` ms; connections honour the resume point."""

    def __init__(self, rng: random.Random, period: float = 100.0, connect: tuple[float, float] = (5.0, 60.0)) -> None:
        self.rng = rng
        self.period = period
        self.connect = connect
        self.fail_rate = 0.0
        self.down = False
        self.connections: list[Connection] = []
        self.opened = 0  # connections opened, ever
        self.failed = 0

    def latest(self, now: float) -> int:
        return math.floor(now / self.period)

    def open_count(self, stream: str | None = None) -> int:
        """Connections open now (of ``stream``), whoever holds them."""
        return sum(1 for c in self.connections if not c.closed and (stream is None or c.stream == stream))


class SimStreams:
    """The network's stream side: carries out the stream effects, runs the connections, checks."""

    def __init__(self, world: Any) -> None:  # the VirtualNetwork (not imported: it imports this module)
        self.world = world
        self.server = StreamServer(world.rng)
        self.checks = StreamChecks(world._problem)
        self.statuses: Counter[str] = Counter()

    # --- scripting --------------------------------------------------------------------------

    def listen_now(self, tab: Tab, stream: str) -> None:
        if not tab.alive or tab.frozen or tab.node.left:
            return
        state = tab.node.streams.state(stream)
        if state is not None and state.listening:
            return
        self.checks.listening(tab, stream, True)
        tab.node.listen(stream, self.world._local(tab))
        self.world._after_input(tab)

    def unlisten_now(self, tab: Tab, stream: str) -> None:
        if not tab.alive or tab.frozen:
            return
        self.checks.listening(tab, stream, False)
        tab.node.unlisten(stream, self.world._local(tab))
        self.world._after_input(tab)

    def check_flowing(self, lag: float) -> None:
        """Every running listener has delivered an event at most ``lag`` ms older than the latest."""
        behind = self.server.latest(self.world.now) - math.ceil(lag / self.server.period) - 1
        for tab in self.world.open_tabs:
            state = tab.node.streams.state("ticker") if not tab.frozen else None
            if state is not None and state.listening and state.delivered < behind:
                self.world._problem("stream-flowing", f"tab {tab.id} ({tab.node.role}) delivered up to "
                                                      f"{state.delivered}; the server is at {behind} + lag "
                                                      f"(status {state.status})")

    # --- effects ------------------------------------------------------------------------------

    def on_open(self, tab: Tab, effect: OpenSource) -> None:
        resume = effect.resume
        if resume is not None and not isinstance(resume, int):
            self.world._problem("stream-order", f"tab {tab.id} resumes {effect.stream!r} from {resume!r}")
            return
        conn = Connection(tab, tab.node, effect.stream, effect.run, 1 if resume is None else resume + 1, self.world.now)
        self.server.connections.append(conn)
        self.server.opened += 1
        self.checks.opened(self.server.connections, conn)
        low, high = self.server.connect
        self.world._call_at(self.world.now + quantize(self.server.rng.uniform(low, high)), lambda: self._connect(conn))

    def on_close(self, tab: Tab, effect: CloseSource) -> None:
        for conn in self.server.connections:
            if conn.node is tab.node and conn.run == effect.run:
                conn.closed = True
        self.server.connections = [c for c in self.server.connections if not c.closed]

    def on_deliver(self, tab: Tab, effect: Deliver) -> None:
        self.checks.deliver(tab, effect)

    def on_changed(self, tab: Tab, effect: StreamChanged) -> None:
        self.statuses[effect.status] += 1

    # --- connections --------------------------------------------------------------------------

    def _usable(self, conn: Connection) -> bool:
        if conn.closed or not conn.tab.alive or conn.node is not conn.tab.node:
            conn.closed = True  # the page is gone (or switched scope): its socket goes with it
            return False
        return True

    def _connect(self, conn: Connection) -> None:
        if not self._usable(conn):
            return
        if conn.tab.frozen:
            self.world._call_at(self.world.now + 50.0, lambda: self._connect(conn))
            return
        if self.server.down or self.server.rng.random() < self.server.fail_rate:
            self.server.failed += 1
            self._report(conn, lambda now: conn.node.source_failed(conn.run, StreamDown("stream server down"), now))
            conn.closed = True
            return
        conn.connected = True
        self._pump(conn)

    def _pump(self, conn: Connection) -> None:
        """Hand the connection every event produced by now, then wait for the next one."""
        if not self._usable(conn):
            return
        world = self.world
        if conn.tab.frozen:
            world._call_at(world.now + 50.0, lambda: self._pump(conn))  # queued until it runs again
            return
        if self.server.down:
            self.server.failed += 1
            conn.closed = True
            self._report(conn, lambda now: conn.node.source_failed(conn.run, StreamDown("stream dropped"), now))
            return
        latest = self.server.latest(world.now)
        while conn.next_id <= latest and not conn.closed:
            event_id = conn.next_id
            conn.next_id += 1
            data: Any = {"stream": conn.stream, "id": event_id}
            self._report(conn, functools.partial(self._event, conn, event_id, data))
            if not self._usable(conn):
                return
        world._call_at((latest + 1) * self.server.period, lambda: self._pump(conn))

    @staticmethod
    def _event(conn: Connection, event_id: int, data: Any, now: float) -> None:
        conn.node.source_event(conn.run, event_id, data, now)

    def _report(self, conn: Connection, call: Callable[[float], None]) -> None:
        tab = conn.tab
        try:
            call(self.world._local(tab))
        except BaseException:
            self.world._exception(tab, "source report")
        self.world._after_input(tab)
