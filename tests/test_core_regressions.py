"""Regression tests of core bugs the simulator found (each names the seed that showed it)."""

from __future__ import annotations

import pytest

from pyflowmesh.core.cache import SharedCache
from pyflowmesh.core.config import MeshConfig
from pyflowmesh.core.node import MeshNode
from pyflowmesh.core.wire import ProtocolError, decode
from pyflowmesh.simulation import Simulation, sim_config

STALE = 5000.0  # sim_config's stale_time (5 heartbeats of 1 s)


# --- A restarted version count was dropped everywhere ---------------------------------------
# Seeds 683 and 913 (peer-to-peer): a tab that opened after a key's entry had gone stale
# everywhere (so no Sync carried it) counted that key's versions from 1 again; every other
# tab still remembered the higher version and dropped the new result as "not newer", so it
# called again within the freshness window (and, leader-follower, a new leader's results
# never reached its followers' caches or their on_cache_update subscribers).


def test_cache_takes_a_restarted_version_produced_after_the_known_one_went_stale() -> None:
    cache = SharedCache(STALE, max_entries=8)
    assert cache.offer("k", '"old"', 2, "a", 0.0, now=1000.0)
    assert cache.offer("k", '"new"', 1, "b", 0.0, now=1000.0 + STALE + 1)
    entry = cache.get("k", 1000.0 + STALE + 2)
    assert entry is not None and entry.value == "new"


def test_cache_still_orders_results_of_one_freshness_window_by_version() -> None:
    cache = SharedCache(STALE, max_entries=8)
    assert cache.offer("k", '"v2"', 2, "a", 0.0, now=1000.0)
    assert not cache.offer("k", '"v1"', 1, "b", 0.0, now=3000.0)  # produced while v2 was fresh
    assert not cache.offer("k", '"v2 again"', 2, "a", 100.0, now=4000.0)  # a duplicate
    entry = cache.get("k", 4000.0)
    assert entry is not None and entry.value == "v2"
    cache.invalidate("k")
    assert not cache.offer("k", '"v2"', 2, "a", 10.0, now=4500.0)  # a late copy cannot come back
    assert cache.get("k", 4500.0) is None


def test_peer_to_peer_tabs_cache_a_late_joiners_result() -> None:
    sim = Simulation(683, sim_config("peer-to-peer"))
    sim.add_tab(0.0, node_id="a")
    sim.add_tab(0.0, node_id="z")
    sim.execute("z", "dashboard", at=100.0)  # version 1 from z
    sim.execute("z", "dashboard", at=100.0 + STALE + 500)  # version 2 from z, stale by 12 s
    sim.add_tab(12_000.0, node_id="j")  # nothing is fresh: its Sync is empty
    first = sim.execute("j", "dashboard", at=12_100.0)  # j counts from version 1
    second = sim.execute("a", "dashboard", at=12_600.0)
    sim.run_until(13_000.0)
    assert first.source == "call"
    assert second.source == "cache", "a dropped j's result as older than z's version 2"
    assert len(sim.calls_of("dashboard", since=12_000.0)) == 1


def test_followers_cache_the_results_of_a_leader_that_joined_late() -> None:
    sim = Simulation(683, sim_config("leader-follower"))
    sim.add_tab(0.0, node_id="m")
    sim.add_tab(5.0, node_id="b")
    sim.run_until(1000.0)
    assert sim.leader() == "m"
    sim.execute("b", "dashboard", at=1000.0)  # version 1 from m
    sim.add_tab(1000.0 + STALE + 1000, node_id="k")  # joins once that entry is stale everywhere
    sim.close("m", at=1000.0 + STALE + 1500)
    sim.run_until(9000.0)
    assert sim.leader() == "k"
    second = sim.execute("b", "dashboard", at=9000.0)  # k calls: version 1 from k < (1, "m")
    third = sim.execute("b", "dashboard", at=9600.0)
    sim.run_until(10_000.0)
    assert second.source == "mesh"
    assert third.source == "cache", "b dropped its new leader's result from its cache"
    assert len(sim.calls_of("dashboard")) == 2


# --- A lone surrogate made a tab's reply unsendable ------------------------------------------
# Found while writing the property tests: JSON text may carry "\ud800", which json.loads turns
# into a str that UTF-8 cannot encode. decode accepted it; a leader answering that Hello (with
# a Sync to its src) or that Request (with a Decline) raised UnicodeEncodeError from
# MeshNode.send, out of receive(). Locally, execute() with such an argument raised it from
# deep inside send, after registering the execute, which was then left pending forever.


def _leader_with_an_entry() -> MeshNode:
    node = MeshNode("me", MeshConfig.from_options(channel="x", heartbeat=1000))
    node.register_flow("f")
    node.start(0.0)
    node.tick(100.0)
    node.tick(200.0)
    assert node.is_leader
    node.share_result("k", 1, 300.0)
    node.take_effects()
    return node


@pytest.mark.parametrize(
    "raw",
    [
        r'{"proto":"pyflowmesh","v":1,"type":"hello","src":"\ud800x"}',
        r'{"proto":"pyflowmesh","v":1,"type":"request","src":"\udfff","dst":"me","req":1,"key":"g","flow":"g","args":[]}',
        r'{"proto":"pyflowmesh","v":1,"type":"request","src":"a","dst":"me","req":1,"key":"\ud800","flow":"f","args":[]}',
        r'{"proto":"pyflowmesh","v":1,"type":"result","src":"a","key":"k","value":{"\ud800":1},"version":9,'
        r'"origin":"a","age":0,"shared":true}',
    ],
)
def test_a_message_with_a_lone_surrogate_is_dropped_not_raised(raw: str) -> None:
    with pytest.raises(ProtocolError):
        decode(raw)
    node = _leader_with_an_entry()
    node.receive(raw, 400.0)  # raised UnicodeEncodeError
    assert node.stats.dropped == 1
    assert node.take_effects() == []


def test_execute_with_a_lone_surrogate_is_a_type_error_and_leaves_nothing_pending() -> None:
    node = MeshNode("p", MeshConfig.from_options(channel="x", strategy="peer-to-peer"))
    node.register_flow("f")
    node.start(0.0)
    with pytest.raises(TypeError, match="lone surrogate"):
        node.submit("f", ("\ud800",), 10.0)
    with pytest.raises(TypeError, match="lone surrogate"):
        node.share_result("k", {"a": "\udfff"}, 10.0)
    assert node.pending_keys() == []


# --- A failure whose message UTF-8 cannot carry left its executes hanging ----------------------
# Found next to the previous one: call_failed() shares str(error) in a Failure (and in the
# back-off a Sync later carries). An error message with a lone surrogate (a file name decoded
# with surrogateescape, say) made send raise UnicodeEncodeError out of call_failed, after the
# pending flow was dropped but before its waiters were rejected: those executes never ended.


def test_a_failure_with_a_lone_surrogate_in_its_message_still_rejects_every_waiter() -> None:
    node = _leader_with_an_entry()
    waiter = node.submit("f", (), 400.0)
    call = next(e for e in node.take_effects() if type(e).__name__ == "StartCall")
    name = b"report-\xff.csv".decode("utf-8", "surrogateescape")
    error = FileNotFoundError(f"no such file: {name}")
    node.call_failed(call.call_id, error, 500.0)  # raised UnicodeEncodeError
    effects = node.take_effects()
    assert [(type(e).__name__, e.waiter, e.error) for e in effects if type(e).__name__ == "Reject"] == [
        ("Reject", waiter, error)]
    failure = next(e.message for e in effects if type(e).__name__ == "Send" and e.message.TYPE == "failure")
    assert failure.message == "no such file: report-\\udcff.csv"
    node.receive(r'{"proto":"pyflowmesh","v":1,"type":"hello","src":"joiner"}', 600.0)  # its Sync has the back-off
    assert any(type(e).__name__ == "Send" and e.message.TYPE == "sync" for e in node.take_effects())
