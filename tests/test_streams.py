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

