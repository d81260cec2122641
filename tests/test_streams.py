"""streams: one source for every listening tab, events once and in order, resume after a leader
change, the grace period, a shared back-off, peer-to-peer claims, a source that misbehaves.

The core tests run tabs on the simulator's VirtualNetwork with its stream server (events
1, 2, 3 ... every 100 ms, honouring the resume point) and its stream checks (a doubled,
out-of-order or skipped event raises NetworkError at once)."""

from __future__ import annotations

import json
import math
from typing import Any

import pytest

from pyflowmesh.core import wire as p
from pyflowmesh.core.config import MeshConfig
from pyflowmesh.core.effects import CloseSource, Deliver, OpenSource, StreamChanged
from pyflowmesh.core.node import MeshNode
from pyflowmesh.core.streams import MAX_REGISTERED
from pyflowmesh.errors import MeshDisposedError, SharedFlowError
from pyflowmesh.simulation.app import sim_config
from pyflowmesh.simulation.network import VirtualNetwork

STREAM = "ticker"


class Net(VirtualNetwork):
    default_streams = (STREAM,)
    stream_grace = 2000.0


def mesh(tabs: int, strategy: str = "leader-follower", seed: int = 1, **options: Any) -> tuple[Net, list[str]]:
    net = Net(seed, sim_config(strategy, heartbeat=1000.0), **options)
    ids = [net.add_tab(at=i * 10.0) for i in range(tabs)]
    net.run_until(3000)
    return net, ids


def delivered(net: Net, tab: str) -> int:
    state = net.node(tab).streams.state(STREAM)
    assert state is not None
    return state.delivered


def status(net: Net, tab: str) -> str:
    state = net.node(tab).streams.state(STREAM)
    assert state is not None
    return state.status


# --- the wire ------------------------------------------------------------------------------------


def body(kind: str, **fields: Any) -> str:
    return json.dumps({"proto": p.PROTOCOL, "v": p.VERSION, "type": kind, **fields})


def test_stream_messages_round_trip() -> None:
    for message in (
        p.StreamListen(src="a", stream="s", listening=True, seq=3, event_id="e-3", hidden=False),
        p.StreamListen(src="a", stream="s", listening=True, seq=0, event_id=None, hidden=True),
        p.StreamEvent(src="a", stream="s", seq=4, event_id=4, data={"x": [1, 2]}),
        p.StreamEvent(src="a", stream="s", seq=4, event_id="4", data=None, to=["b"]),
        p.StreamStatus(src="a", stream="s", status="reconnecting", error_type="E", message="m", retry_in=10,
                       attempt=2),
        p.StreamOwner(src="a", stream="s", phase="claim", hidden=False),
    ):
        assert p.decode(p.encode(message)) == message


@pytest.mark.parametrize(
    ("kind", "fields", "bad"),
    [
        ("stream-event", {"src": "a", "stream": "s", "seq": 2**53 + 1, "event_id": 1, "data": 1}, "seq"),
        ("stream-event", {"src": "a", "stream": "s", "seq": 1, "event_id": -1, "data": 1}, "event_id"),
        ("stream-event", {"src": "a", "stream": "s", "seq": 1, "event_id": 2**53 + 1, "data": 1}, "event_id"),
        ("stream-event", {"src": "a", "stream": "s", "seq": 1, "event_id": "x" * 257, "data": 1}, "event_id"),
        ("stream-event", {"src": "a", "stream": "s", "seq": 1, "event_id": True, "data": 1}, "event_id"),
        ("stream-event", {"src": "a", "stream": "s", "seq": 1, "event_id": None, "data": 1}, "event_id"),
        ("stream-event", {"src": "a", "stream": "", "seq": 1, "event_id": 1, "data": 1}, "stream"),
        ("stream-event", {"src": "a", "stream": "s" * 1025, "seq": 1, "event_id": 1, "data": 1}, "stream"),
        ("stream-listen", {"src": "a", "stream": "s", "listening": 1, "seq": 0, "event_id": None, "hidden": False},
         "listening"),
        ("stream-status", {"src": "a", "stream": "s", "status": "open", "error_type": "E", "message": "m",
                           "retry_in": 1, "attempt": 1}, "status"),
        ("stream-status", {"src": "a", "stream": "s", "status": "error", "error_type": "E", "message": "m",
                           "retry_in": 1e300, "attempt": 1}, "retry_in"),
        ("stream-owner", {"src": "a", "stream": "s", "phase": "own", "hidden": False}, "phase"),
    ],
)
def test_every_stream_number_and_name_is_bounded_where_decoded(kind: str, fields: dict[str, Any], bad: str) -> None:
    with pytest.raises(p.ProtocolError) as caught:
        p.decode(body(kind, **fields))
    assert caught.value.reason == f"bad-field:{bad}"


def test_event_data_is_bounded_by_the_message_size() -> None:
    raw = body("stream-event", src="a", stream="s", seq=1, event_id=1, data="x" * 2000)
    with pytest.raises(p.ProtocolError) as caught:
        p.decode(raw, max_bytes=1024)
    assert caught.value.reason == "too-large"


# --- the node's calls ------------------------------------------------------------------------------


def node(strategy: str = "leader-follower") -> MeshNode:
    return MeshNode("a", MeshConfig.from_options(channel="c", strategy=strategy, heartbeat=1000))


def test_listening_needs_a_registered_stream_and_an_open_member() -> None:
    tab = node()
    with pytest.raises(LookupError):
        tab.listen("nope", 0)
    with pytest.raises(ValueError):
        tab.register_stream("s", grace=-1)
    with pytest.raises(TypeError):
        tab.register_stream(5, grace=10)  # type: ignore[arg-type]
    for index in range(MAX_REGISTERED):
        tab.register_stream(f"s{index}")
    with pytest.raises(ValueError):
        tab.register_stream("one-too-many")
    tab.leave(0)
    with pytest.raises(MeshDisposedError):
        tab.listen("s0", 1)


def test_a_lone_leader_opens_its_source_and_delivers_its_events() -> None:
    tab = node()
    tab.register_stream("s", grace=100)
    tab.start(0)
    for now in range(0, 2000, 50):
        tab.tick(now)
    assert tab.is_leader
    tab.take_effects()
    tab.listen("s", 2000)
    effects = tab.take_effects()
    assert StreamChanged("s", "connecting", None) in effects
    opens = [e for e in effects if isinstance(e, OpenSource)]
    assert opens == [OpenSource("s", opens[0].run, None)]
    run = opens[0].run
    tab.source_event(run, "e1", {"v": 1}, 2001)
    tab.source_event(run, "e2", {"v": 2}, 2002)
    effects = tab.take_effects()
    deliveries = [e for e in effects if isinstance(e, Deliver)]
    assert [(d.seq, d.event_id, d.value, d.latest) for d in deliveries] == [(1, "e1", {"v": 1}, False),
                                                                           (2, "e2", {"v": 2}, False)]
    assert StreamChanged("s", "open", None) in effects
    assert sum(isinstance(e, p.StreamEvent) for e in (getattr(x, "message", None) for x in effects)) == 2
    # Unlistening: the source stays for the grace period, then closes.
    tab.unlisten("s", 2003)
    assert not any(isinstance(e, CloseSource) for e in tab.take_effects())
    tab.tick(2050)
    assert not any(isinstance(e, CloseSource) for e in tab.take_effects())
    assert tab.next_deadline() is not None and tab.next_deadline() <= 2103  # type: ignore[operator]
    tab.tick(2103)
    assert CloseSource("s", run) in tab.take_effects()
    tab.source_event(run, "late", 1, 2104)  # a closed run reports late: ignored
    assert tab.take_effects() == []


@pytest.mark.parametrize(
    ("event_id", "data"),
    [(-1, 1), (True, 1), ("x" * 300, 1), ("\ud800", 1), (None, 1), (1.5, 1), (1, math.nan), (1, object()),
     (1, "x" * (2 << 20)), (1, {"deep": "\udfff"})],
)
def test_a_source_yielding_bad_events_fails_without_raising(event_id: Any, data: Any) -> None:
    tab = node()
    tab.register_stream("s")
    tab.start(0)
    for now in range(0, 2000, 50):
        tab.tick(now)
    tab.listen("s", 2000)
    run = next(e.run for e in tab.take_effects() if isinstance(e, OpenSource))
    tab.source_event(run, event_id, data, 2001)
    effects = tab.take_effects()
    assert CloseSource("s", run) in effects
    changed = [e for e in effects if isinstance(e, StreamChanged)]
    assert changed[-1].status == "error" and isinstance(changed[-1].error, (TypeError, ValueError))
    assert not any(isinstance(e, Deliver) for e in effects)
    assert tab.stats.internal_errors == 0


def test_hostile_stream_messages_are_dropped_or_bounded() -> None:
    tab = node()
    tab.register_stream("s")
    tab.start(0)
    for index in range(5000):  # many streams, many listeners: bounded tables
        tab.receive(body("stream-event", src="x", stream=f"k{index}", seq=1, event_id=1, data=index), 1)
        tab.receive(body("stream-listen", src=f"l{index}", stream="s", listening=True, seq=0, event_id=None,
                         hidden=False), 1)
    assert len(tab.streams.streams) <= 256
    state = tab.streams.state("s")
    assert state is not None and len(state.leases) <= 4096
    assert tab.stats.internal_errors == 0


def test_an_answer_relayed_ahead_of_the_broadcasts_waits_for_them() -> None:
    """An owner's answer to a listener (``to``) may reach a tab before broadcasts it relays: every
    pair of tabs has its own delay (simulator seed 20710, where a tab went from event 88 to 90). A tab
    that has been delivering broadcasts waits for them; one starting or back from a freeze jumps."""
    tab = node()
    tab.register_stream("s")
    tab.start(0)
    tab.receive(p.encode(p.Coordinator(src="z", term=1, interval=1000.0, hidden=False)), 1)
    assert tab.leader == "z"
    tab.listen("s", 2)

    def event(seq: int, to: list[str] | None = None, src: str = "z") -> list[tuple[int, bool]]:
        tab.receive(body("stream-event", src=src, stream="s", seq=seq, event_id=seq, data=seq, to=to), 10 + seq)
        return [(d.seq, d.latest) for d in tab.take_effects() if isinstance(d, Deliver)]

    tab.take_effects()
    assert event(1) == [(1, False)]
    assert event(2) == [(2, False)]
    assert event(4, to=["b"], src="y") == []  # another tab's answer, ahead of broadcast 3
    assert event(4, to=["a"], src="y") == []  # this tab's own, also ahead of it
    assert event(3) == [(3, False)]
    assert event(4) == [(4, False)]
    tab.set_frozen(True, 20)
    tab.set_frozen(False, 30)
    assert event(7, to=["a"], src="y") == [(7, True)]  # back from a freeze: events may be lost, the latest
    assert event(8) == [(8, False)]
    assert tab.stats.internal_errors == 0


# --- several tabs ------------------------------------------------------------------------------------


def test_one_source_for_every_listening_tab_and_every_event_in_each() -> None:
    net, ids = mesh(6)
    for tab in ids:
        net.listen(tab, STREAM, at=3100)
    net.run_until(6000)
    assert net.streams.server.open_count() == 1 and net.streams.server.opened == 1
    counts = {tab: delivered(net, tab) for tab in ids}
    assert min(counts.values()) >= max(counts.values()) - 1 >= 25  # every tab has (about) the latest
    assert all(status(net, tab) == "open" for tab in ids)


def test_a_late_listener_gets_the_latest_event_at_once() -> None:
    net, ids = mesh(3)
    net.listen(ids[0], STREAM, at=3100)
    net.run_until(4000)
    late = ids[2]
    state = net.node(late).streams.state(STREAM)
    assert state is not None and state.seq >= 8  # it heard the broadcasts without listening
    net.streams.listen_now(net.by_id[late], STREAM)  # now
    assert delivered(net, late) == state.seq  # delivered in the same input, before any message


@pytest.mark.parametrize("how", ["crash", "close"])
def test_the_new_leader_resumes_from_the_last_event_without_loss_or_double(how: str) -> None:
    net, ids = mesh(5)
    leader = net.leader()
    assert leader is not None
    for tab in ids:
        net.listen(tab, STREAM, at=3100)
    net.run_until(5000)
    before = net.streams.server.opened
    getattr(net, how)(leader, at=5050)
    net.run_until(9000)
    assert net.leader() not in (None, leader)
    assert net.streams.server.opened == before + 1  # exactly one new connection
    assert net.streams.server.open_count() == 1
    alive = [tab for tab in ids if tab != leader]
    assert min(delivered(net, tab) for tab in alive) >= 85  # the checks saw every one, in order, once


def test_the_source_closes_after_the_grace_period_only() -> None:
    net, ids = mesh(3)
    for tab in ids:
        net.listen(tab, STREAM, at=3100)
    for tab in ids:
        net.unlisten(tab, STREAM, at=4000)
    net.run_until(4000 + Net.stream_grace - 100)
    assert net.streams.server.open_count() == 1
    net.run_until(4000 + Net.stream_grace + 100)
    assert net.streams.server.open_count() == 0
    net.listen(ids[1], STREAM, at=6500)  # listening again: one new connection, from where it stopped
    net.run_until(7500)
    assert net.streams.server.open_count() == 1 and net.streams.server.opened == 2


def test_a_follower_that_stops_listening_does_not_close_the_source() -> None:
    net, ids = mesh(3)
    for tab in ids:
        net.listen(tab, STREAM, at=3100)
    net.unlisten(ids[1], STREAM, at=3500)
    net.run_until(8000)
    assert net.streams.server.open_count() == 1 and net.streams.server.opened == 1
    assert status(net, ids[1]) == "closed"


def test_a_crashed_listener_stops_holding_the_source_once_its_lease_ends() -> None:
    net, ids = mesh(3)
    leader = net.leader()
    follower = next(tab for tab in ids if tab != leader)
    net.listen(follower, STREAM, at=3100)
    net.crash(follower, at=3500)
    net.run_until(3500 + 2500 + Net.stream_grace + 200)  # lease (2.5 beats), then grace
    assert net.streams.server.open_count() == 0


def test_a_failing_source_shares_one_back_off_doubling_to_the_maximum() -> None:
    net, ids = mesh(4)
    net.streams.server.down = True
    for tab in ids:
        net.listen(tab, STREAM, at=3100)
    net.run_until(3100 + 1000 + 2000 + 4000 + 500)  # error_backoff 1 s doubling: attempts at ~0, 1, 3, 7 s
    assert 4 <= net.streams.server.opened <= 5  # one reconnect per back-off for the whole mesh, not per tab
    for tab in ids:
        state = net.node(tab).streams.state(STREAM)
        assert state is not None and state.status == "reconnecting"
        assert isinstance(state.error, (SharedFlowError, ConnectionError))
    net.run_until(40_000)
    opened = net.streams.server.opened
    net.run_until(60_000)
    assert net.streams.server.opened - opened <= 2  # at most one per max_error_backoff (10 s)
    net.streams.server.down = False
    net.run_until(72_000)
    assert all(status(net, tab) == "open" for tab in ids)
    assert net.streams.server.open_count() == 1


def test_a_new_leader_honours_the_shared_back_off() -> None:
    net, ids = mesh(4)
    leader = net.leader()
    assert leader is not None
    net.streams.server.down = True
    for tab in ids:
        net.listen(tab, STREAM, at=3100)
    net.run_until(3100 + 1000 + 2000 + 300)  # three failures: the next back-off is 4 s
    opened = net.streams.server.opened
    net.crash(leader, at=6500)
    net.run_until(6500 + 2000)  # the new leader is elected at once (Web Locks), but waits out the back-off
    assert net.streams.server.opened == opened


def test_peer_to_peer_the_first_listener_runs_the_source_and_a_successor_resumes() -> None:
    net, ids = mesh(4, "peer-to-peer")
    first = ids[2]
    net.listen(first, STREAM, at=3100)
    for tab in ids:
        net.listen(tab, STREAM, at=3300)
    net.run_until(5000)
    assert net.streams.server.open_count() == 1 and net.streams.server.opened == 1
    assert net.streams.server.connections[0].tab.id == first
    net.close(first, at=5050)
    net.run_until(9000)
    assert net.streams.server.open_count() == 1 and net.streams.server.opened == 2
    assert min(delivered(net, tab) for tab in ids if tab != first) >= 85


def test_peer_to_peer_claims_at_once_settle_on_one_source() -> None:
    for seed in range(20):
        net, ids = mesh(6, "peer-to-peer", seed=seed)
        for tab in ids:
            net.listen(tab, STREAM, at=3100)  # every tab claims in the same instant
        net.run_until(6000)
        assert net.streams.server.open_count() == 1, seed


# --- the runtime over MemoryHub ----------------------------------------------------------------------

import asyncio  # noqa: E402

from support import HEARTBEAT, async_test, ends, open_tabs, settle, until  # noqa: E402

from pyflowmesh import FlowMesh, Stream, StreamEvent, use_stream  # noqa: E402
from pyflowmesh.transports.memory import MemoryHub  # noqa: E402


class Feed:
    """A fake SSE server: events 1, 2, 3 ... every ``period`` s; a connection honours its resume point."""

    def __init__(self, period: float = 0.01) -> None:
        self.period = period
        self.latest = 0
        self.open = 0
        self.opened = 0
        self.resumes: list[Any] = []
        self.down = False
        self._tick = asyncio.Event()
        self._task = asyncio.get_running_loop().create_task(self._produce())

    async def _produce(self) -> None:
        while True:
            await asyncio.sleep(self.period)
            self.latest += 1
            self._tick.set()
            self._tick = asyncio.Event()

    def stop(self) -> None:
        self._task.cancel()

    async def source(self, resume: Any) -> Any:
        self.opened += 1
        self.resumes.append(resume)
        if self.down:
            raise ConnectionError("503 from the feed")
        self.open += 1
        try:
            next_id = 1 if resume is None else resume + 1
            while True:
                while next_id <= self.latest:
                    yield next_id, {"n": next_id}
                    next_id += 1
                await self._tick.wait()
                if self.down:
                    raise ConnectionError("the feed dropped the connection")
        finally:
            self.open -= 1


def record(stream: Stream) -> list[Any]:
    """Every event id ``stream`` delivers, through a subscriber."""
    seen: list[Any] = []
    last = [None]

    def on_change(s: Stream) -> None:
        if s.last_id is not None and s.last_id != last[0]:
            seen.append(s.last_id)
            last[0] = s.last_id

    stream.subscribe(on_change)
    return seen


def consecutive(ids: list[Any]) -> bool:
    return all(b == a + 1 for a, b in zip(ids, ids[1:], strict=False))


@async_test
async def test_runtime_one_connection_for_every_tab_every_event_in_order() -> None:
    hub = MemoryHub()
    feed = Feed()
    tabs = open_tabs(hub, 4)
    await settle(tabs)
    streams = [use_stream(feed.source, mesh=tab, key="feed") for tab in tabs]
    seen = [record(stream) for stream in streams]
    await until(lambda: all(stream.last_id is not None and stream.last_id >= 20 for stream in streams))
    assert feed.opened == 1 and feed.open == 1
    assert all(stream.status == "open" and stream.error is None for stream in streams)
    for ids in seen:
        assert consecutive(ids[1:]) and ids[0] < ids[1]  # the first is the latest at once, then each one
    for stream in streams:
        stream.close()
    assert all(stream.status == "closed" for stream in streams)
    feed.stop()
    for tab in tabs:
        tab.dispose()


@pytest.mark.parametrize("how", ["crash", "dispose"])
@async_test
async def test_runtime_the_leader_gone_gives_one_new_connection_and_no_lost_or_doubled_event(how: str) -> None:
    hub = MemoryHub()
    feed = Feed()
    tabs = open_tabs(hub, 4)
    leader = await settle(tabs)
    streams = {tab: use_stream(feed.source, mesh=tab, key="feed") for tab in tabs}
    seen = {tab: record(stream) for tab, stream in streams.items()}
    await until(lambda: all(s.last_id is not None and s.last_id >= 10 for s in streams.values()))
    if how == "crash":
        hub.crash(leader)
    else:
        leader.dispose()
    others = [tab for tab in tabs if tab is not leader]
    await settle(others)
    target = feed.latest + 20
    await until(lambda: all(streams[tab].last_id is not None and streams[tab].last_id >= target for tab in others),
                what="events after the failover")
    assert feed.opened == 2 and feed.open == 1
    assert feed.resumes[1] is not None and feed.resumes[1] >= 10  # resumed from the last event the mesh saw
    for tab in others:
        ids = seen[tab]
        assert consecutive(ids[1:]), ids
    feed.stop()
    for tab in others:
        tab.dispose()


@async_test
async def test_runtime_iteration_yields_every_event_and_ends_on_close() -> None:
    hub = MemoryHub()
    feed = Feed()
    (tab,) = open_tabs(hub, 1)
    stream = use_stream(feed.source, mesh=tab, key="feed")
    got: list[StreamEvent] = []

    async def consume() -> None:
        async for event in stream:
            got.append(event)
            if len(got) == 5:
                stream.close()

    await ends(consume(), "the iteration")
    assert [e.id for e in got] == list(range(got[0].id, got[0].id + 5))
    assert got[0].data == {"n": got[0].id}
    assert stream.status == "closed"
    assert [e async for e in stream] == []  # iterating a closed stream ends at once
    await until(lambda: feed.open == 0, what="the source closed after the grace period", limit=10)
    feed.stop()
    tab.dispose()


@async_test
async def test_runtime_dispose_ends_every_iteration_and_stops_the_source() -> None:
    hub = MemoryHub()
    feed = Feed()
    (tab,) = open_tabs(hub, 1)
    stream = use_stream(feed.source, mesh=tab, key="feed")
    async def consume() -> list[StreamEvent]:
        return [event async for event in stream]

    iteration = asyncio.ensure_future(consume())
    await until(lambda: stream.last_id is not None and stream.last_id >= 3)
    tab.dispose()
    got = await ends(iteration, "the waiting iteration")
    assert [e.id for e in got] == list(range(got[0].id, got[-1].id + 1))
    await until(lambda: feed.open == 0)
    assert stream.status == "closed"
    feed.stop()


@async_test
async def test_runtime_a_failing_source_shows_its_error_in_every_tab_and_recovers() -> None:
    hub = MemoryHub()
    feed = Feed()
    feed.down = True
    tabs = open_tabs(hub, 3, error_backoff=50, max_error_backoff=200)
    await settle(tabs)
    streams = [use_stream(feed.source, mesh=tab, key="feed") for tab in tabs]
    await until(lambda: all(s.status == "reconnecting" and s.error is not None for s in streams))
    await asyncio.sleep(0.5)
    assert 2 <= feed.opened <= 6  # 50, 100, 200, 200 ms back-offs for the whole mesh, not per tab
    feed.down = False
    await until(lambda: all(s.status == "open" and s.error is None for s in streams), limit=5)
    feed.stop()
    for tab in tabs:
        tab.dispose()


async def not_a_generator(resume: Any) -> Any:
    return [(1, 1)]


async def yields_junk(resume: Any) -> Any:
    yield "not a pair"


async def yields_objects(resume: Any) -> Any:
    yield 1, object()


async def never_yields(resume: Any) -> Any:
    await asyncio.Event().wait()
    yield 1, 1


async def raises_base(resume: Any) -> Any:
    raise asyncio.CancelledError  # a source's own cancellation, not the mesh's
    yield 1, 1


@pytest.mark.parametrize("source", [not_a_generator, yields_junk, yields_objects, raises_base])
@async_test
async def test_runtime_a_misbehaving_source_is_an_error_of_the_stream(source: Any) -> None:
    hub = MemoryHub()
    (tab,) = open_tabs(hub, 1)
    stream = use_stream(source, mesh=tab, key="bad")
    await until(lambda: stream.error is not None)
    assert stream.status in ("error", "reconnecting")
    assert tab.stats.internal_errors == 0
    stream.close()
    tab.dispose()


@async_test
async def test_runtime_a_source_that_never_yields_is_cancelled_when_closed() -> None:
    hub = MemoryHub()
    (tab,) = open_tabs(hub, 1)
    stream = use_stream(never_yields, mesh=tab, key="silent", grace=0)
    await until(lambda: stream._driver.tasks, what="the source started")
    await asyncio.sleep(0.05)
    assert stream.status == "connecting" and stream._driver.tasks
    stream.close()
    await until(lambda: not stream._driver.tasks, what="the source task cancelled")
    tab.dispose()


@async_test
async def test_runtime_mesh_options_a_second_stream_and_a_local_stream() -> None:
    hub = MemoryHub()
    feed = Feed()
    transport = hub.transport()
    first = use_stream(feed.source, mesh={"channel": "opts", "transport": transport, "heartbeat": HEARTBEAT},
                       key="feed")
    await until(lambda: first.last_id is not None)
    second = use_stream(feed.source, mesh=first.mesh, key="feed")
    assert second.last_id is not None and second.status == "open"  # it starts where the tab is
    with pytest.raises(ValueError):
        use_stream(yields_junk, mesh=first.mesh, key="feed")  # another source under the same key
    with pytest.raises(ValueError):
        use_stream(feed.source, mesh=first.mesh, key="")
    with pytest.raises(TypeError):
        use_stream(feed.source, mesh=first.mesh, key="g", grace="soon")  # type: ignore[arg-type]
    first.close()
    assert second.status != "closed"  # the tab still listens through the second
    local = use_stream(feed.source, key="local")
    await until(lambda: local.last_id is not None)
    assert isinstance(local.mesh, FlowMesh)
    local.close()
    assert local.mesh.disposed  # its own member goes with it
    second.close()
    first.mesh.dispose()
    feed.stop()


# --- sources ---------------------------------------------------------------------------------------

from pyflowmesh.sources import event_source, poll, websocket, with_resume  # noqa: E402


def test_the_resume_point_goes_in_a_query_parameter() -> None:
    assert with_resume("/sse", None) == "/sse"
    assert with_resume("/sse", 17) == "/sse?lastEventId=17"
    assert with_resume("/sse?x=1", "a b&c") == "/sse?x=1&lastEventId=a%20b%26c"
    assert event_source("/sse").key == "event_source:/sse"  # type: ignore[attr-defined]
    assert websocket("ws://h/x").key == "websocket:ws://h/x"  # type: ignore[attr-defined]
    with pytest.raises(ValueError):
        event_source("")
    with pytest.raises(ValueError):
        poll(lambda: 1, interval=0)
    with pytest.raises(TypeError):
        poll(5)  # type: ignore[arg-type]


@async_test
async def test_poll_one_tab_polls_for_everyone_and_only_changes_are_events() -> None:
    hub = MemoryHub()
    calls: list[float] = []
    value = {"v": 0}

    async def fetch_price() -> dict[str, int]:
        calls.append(asyncio.get_running_loop().time())
        return dict(value)

    tabs = open_tabs(hub, 3)
    await settle(tabs)
    source = poll(fetch_price, interval=20, key="price")
    streams = [use_stream(source, mesh=tab) for tab in tabs]
    seen = [[] for _ in streams]  # type: list[list[Any]]
    for stream, got in zip(streams, seen, strict=True):
        stream.subscribe(lambda s, got=got: got.append(s.latest) if s.latest not in got else None)
    await until(lambda: all(s.latest == {"v": 0} for s in streams))
    await asyncio.sleep(0.2)
    first_id = streams[0].last_id
    assert all(s.last_id == first_id for s in streams)  # no new event: the data did not change
    value["v"] = 1
    await until(lambda: all(s.latest == {"v": 1} for s in streams))
    assert all(got == [{"v": 0}, {"v": 1}] for got in seen)
    span = calls[-1] - calls[0]
    assert len(calls) <= span / 0.02 + 3  # one tab polls, not three
    for tab in tabs:
        tab.dispose()


@async_test
async def test_poll_after_a_leader_change_does_not_repeat_the_data() -> None:
    hub = MemoryHub()
    tabs = open_tabs(hub, 3)
    leader = await settle(tabs)
    source = poll(lambda: {"v": 42}, interval=20, key="const")
    streams = {tab: use_stream(source, mesh=tab) for tab in tabs}

    def sequence(tab: FlowMesh) -> int:
        state = tab._node.streams.state("const")
        return 0 if state is None else state.delivered

    await until(lambda: all(sequence(tab) == 1 for tab in tabs))
    hub.crash(leader)
    others = [tab for tab in tabs if tab is not leader]
    await settle(others)
    await asyncio.sleep(0.3)
    assert any(streams[tab]._driver.tasks for tab in others)  # the new leader polls
    for tab in others:
        assert sequence(tab) == 1  # still the one event: the new leader's poll found nothing new
    for tab in others:
        tab.dispose()
