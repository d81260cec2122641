"""SharedCache: its bounds, and why forgetting version marks never lets an older result back in."""

from __future__ import annotations

import heapq
import random
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from pyflowmesh.core.cache import MARKS_PER_ENTRY, MAX_VERSION, SharedCache
from pyflowmesh.core.config import MeshConfig
from pyflowmesh.simulation import Simulation

STALE = 1000.0
SIM_STALE = 5000.0  # sim_config's stale_time (5 heartbeats of 1 s), as the regressions below ran


def fill(cache: SharedCache, count: int, now: float, prefix: str = "other") -> None:
    """Offer ``count`` fresh results of distinct keys at ``now``."""
    for i in range(count):
        assert cache.offer(f"{prefix}{i}", str(i), 1, "t", 0.0, now)


def test_entries_and_marks_stay_within_their_bounds_over_10000_keys() -> None:
    cache = SharedCache(STALE, max_entries=16)
    for i in range(10_000):
        cache.offer(f"k{i}", str(i), 1, "t", 0.0, now=i * 0.01)  # all within one stale_time
        cache.get(f"k{i // 2}", now=i * 0.01)
    assert len(cache._entries) <= 16
    assert len(cache._high) <= 16 * MARKS_PER_ENTRY == cache.max_marks
    assert set(cache._entries) <= set(cache._high)  # every entry has its mark


def test_a_late_copy_of_an_older_result_is_refused_after_its_mark_was_evicted_for_count() -> None:
    cache = SharedCache(STALE, max_entries=2)
    assert cache.offer("k", '"v1"', 1, "a", 0.0, now=100.0)
    assert cache.offer("k", '"v2"', 2, "a", 0.0, now=200.0)
    fill(cache, cache.max_marks, now=210.0)  # k's mark goes, well within stale_time
    assert "k" not in cache._high and cache.floor >= 200.0
    # v1 (produced at 100) arrives late, still fresh: without the floor it would replace v2.
    assert not cache.offer("k", '"v1"', 1, "a", 150.0, now=250.0)
    assert cache.get("k", 250.0) is None


def test_a_result_produced_after_the_floor_is_stored_for_a_forgotten_key() -> None:
    cache = SharedCache(STALE, max_entries=2)
    assert cache.offer("k", '"v2"', 2, "a", 0.0, now=200.0)
    fill(cache, cache.max_marks, now=210.0)
    # A tab that produces k again (its count starts from 1: it forgot k too) is not refused.
    assert cache.offer("k", '"new"', 1, "b", 0.0, now=300.0)
    entry = cache.get("k", 300.0)
    assert entry is not None and entry.value == "new"


def test_a_mark_is_kept_while_it_can_still_refuse_a_result() -> None:
    cache = SharedCache(STALE, max_entries=4)
    assert cache.offer("k", '"v2"', 2, "a", 0.0, now=0.0)
    cache.invalidate("k")
    now = 2 * STALE - 1.0
    fill(cache, 1, now=now)  # offers run the forgetting
    assert "k" in cache._high
    # v1 produced at STALE - 0.5 (after v2, with a lower version) is still fresh at `now`, and
    # the mark orders it by version: refused.
    assert not cache.offer("k", '"v1"', 1, "a", now - (STALE - 0.5), now=now)


def test_a_mark_is_forgotten_once_it_can_refuse_nothing() -> None:
    cache = SharedCache(STALE, max_entries=4)
    assert cache.offer("k", '"v2"', 2, "a", 0.0, now=0.0)
    now = 2 * STALE
    fill(cache, 1, now=now)
    assert "k" not in cache._high and "k" not in cache._entries
    assert cache.floor == float("-inf")  # forgotten by age: no floor needed
    # Whatever can still be stored was produced after STALE: the mark would have taken it too.
    assert not cache.offer("k", '"v1"', 1, "a", STALE, now=now)  # stale: refused by age
    assert cache.offer("k", '"v1"', 1, "a", STALE - 1.0, now=now)


def test_prune_drops_useless_marks() -> None:
    cache = SharedCache(STALE, max_entries=4)
    fill(cache, 4, now=0.0)
    cache.prune(2 * STALE)
    assert not cache._high and not cache._entries


@settings(max_examples=200, deadline=None)
@given(
    seed=st.integers(0, 2**32 - 1),
    keys=st.integers(2, 12),
    max_entries=st.integers(1, 3),
    results=st.integers(20, 200),
)
def test_what_a_tab_stores_for_a_key_never_goes_back_in_time(seed: int, keys: int, max_entries: int,
                                                             results: int) -> None:
    """One producer makes results of a few keys (versions and times rising per key); their
    copies reach a tab late and out of order (as Syncs and relays can), many of them while
    their marks are evicted for count. Per key, what the tab stores must only move forward."""
    rng = random.Random(seed)
    cache = SharedCache(STALE, max_entries)
    versions: dict[str, int] = {}
    deliveries: list[tuple[float, int, str, int, float]] = []
    for i in range(results):
        produced = i * 7.0
        key = f"k{rng.randrange(keys)}"
        versions[key] = versions.get(key, 0) + 1
        for _ in range(rng.randint(1, 3)):  # copies: the broadcast, relays, Syncs
            arrives = produced + rng.choice((0.0, rng.uniform(0, 50), rng.uniform(0, 1.5 * STALE)))
            heapq.heappush(deliveries, (arrives, i, key, versions[key], produced))
    stored: dict[str, float] = {}
    while deliveries:
        now, i, key, version, produced = heapq.heappop(deliveries)
        if cache.offer(key, str(i), version, "producer", now - produced, now):
            assert produced >= stored.get(key, float("-inf")), (
                f"{key}: stored a result produced at {produced} after one produced at {stored[key]}")
            stored[key] = produced
        assert len(cache._entries) <= max_entries and len(cache._high) <= cache.max_marks


def test_in_the_simulator_no_tab_stores_an_older_result_of_a_key_after_a_newer_one() -> None:
    """The mesh end to end, with marks evicted all the time: ``max_entries=1`` (4 marks), a
    new key every 100 ms, three keys re-executed across many versions, tabs joining (their
    Syncs carry entries with ages) and leaving, and a replayer that posts every result of
    those three keys again up to 1.9 s later (``stale_time`` is 2 s) with its age brought up
    to date, as a slow relay would. Per tab and key, the results it stores must be ones the
    server produced later and later."""
    from dataclasses import replace

    from pyflowmesh.core.effects import CacheUpdated, Send
    from pyflowmesh.core.wire import Result, encode

    class Recording(Simulation):
        def _apply(self, tab: Any, effects: list[Any]) -> None:
            for effect in effects:
                if type(effect) is CacheUpdated:
                    stored.setdefault((tab.id, effect.key), []).append(self.server.produced[effect.value["call"]])
                elif type(effect) is Send and type(effect.message) is Result and "hot" in effect.message.key:
                    late = rng.uniform(500.0, 1900.0)
                    copy = replace(effect.message, src="replayer", age=effect.message.age + late)
                    self.inject(encode(copy), at=self.now + late)
            super()._apply(tab, effects)

    stored: dict[tuple[str, str], list[float]] = {}
    config = MeshConfig.from_options(channel="marks", heartbeat=1000.0, stale_time=2000.0, max_entries=1,
                                     call_timeout=5000.0, error_backoff=1000.0, max_error_backoff=10_000.0)
    sim = Recording(7, config)
    rng = random.Random(7)
    for _ in range(4):
        sim.add_tab(at=0.0, flows=("user",))

    def churn() -> None:
        live = sim.live()
        victim = rng.choice(live)
        (sim.crash if rng.random() < 0.5 else sim.close)(victim)
        sim.add_tab(flows=("user",))

    for i in range(3000):
        t = 3000.0 + i * 100.0
        sim.at(t, lambda i=i: sim.execute(rng.choice(sim.live()), "user", (f"filler{i}",)))
        if i % 3 == 0:
            sim.at(t + 50.0, lambda: sim.execute(rng.choice(sim.live()), "user", (f"hot{rng.randrange(3)}",)))
        if i % 40 == 39:
            sim.at(t + 70.0, churn)
    sim.run_until(3000.0 + 3000 * 100.0 + 20_000.0)
    assert [str(v) for v in sim.violations if v.kind in ("exception", "value")] == []
    hot = {k: v for k, v in stored.items() if k[1].startswith('user["hot')}
    assert sum(len(v) for v in hot.values()) > 300  # many versions of the hot keys were stored
    for (tab, key), times in hot.items():
        # A tab that opened after a result was produced may take a late copy of it over a newer
        # one with a lower version (made by a tab that never heard of it): it never knew it was
        # older, bounded or not. Only what a tab once knew must not come back.
        opened = sim.by_id[tab].start_time
        for earlier, later in zip(times, times[1:], strict=False):
            assert later >= earlier or later < opened, f"tab {tab} stored {key} produced at {times}"


def test_a_tab_that_forgot_a_key_still_makes_it_a_higher_version_than_any_it_saw() -> None:
    cache = SharedCache(STALE, max_entries=1)
    assert cache.offer("k", '"v7"', 7, "a", 0.0, now=0.0)
    fill(cache, cache.max_marks, now=10.0)
    assert "k" not in cache._high
    # Made here after hearing of v7: it must beat v7 in every tab that still holds v7's mark.
    assert cache.next_version("k") > 7
    other = SharedCache(STALE, max_entries=8)
    assert other.offer("k", '"v7"', 7, "a", 0.0, now=0.0)
    assert other.offer("k", '"new"', cache.next_version("k"), "b", 0.0, now=20.0)


def test_a_huge_version_from_a_peer_cannot_exhaust_the_clock() -> None:
    cache = SharedCache(STALE, max_entries=4)
    assert cache.offer("a", "1", MAX_VERSION // 2, "p", 0.0, now=0.0)
    assert cache.offer("b", "1", 10**30, "p", 0.0, now=0.0)
    assert cache.next_version("c") == MAX_VERSION // 2 + 1
    assert cache.next_version("b") == MAX_VERSION  # never above what a JS page reads exactly


def test_a_tab_that_starts_afresh_under_its_old_id_still_makes_newer_versions() -> None:
    # Simulator seed 3970: a leader switched scope and back (a new node, a fresh version
    # clock, the same ID): its next result carried version 1 where the other tabs knew its
    # version 5 of the key from 3 s before, and they refused it as older. With the shared
    # wall clock, versions are a hybrid logical clock: above any seen, and at least the time.
    follower = SharedCache(STALE, max_entries=8)
    assert follower.offer("k", '"old"', 5, "a", 0.0, now=4808.0)
    fresh = SharedCache(STALE, max_entries=8)  # the same tab "a", after its restart
    version = fresh.next_version("k", wall=8091.0)
    assert version >= 8091
    assert follower.offer("k", '"new"', version, "a", 0.0, now=8232.0)
    entry = follower.get("k", 8232.0)
    assert entry is not None and entry.value == "new"
    assert SharedCache(STALE, max_entries=8).next_version("k") == 1  # without a wall clock: a counter


# --- A restarted version count was dropped everywhere ---------------------------------------
# Seeds 683 and 913 (peer-to-peer): a tab that opened after a key's entry had gone stale
# everywhere (so no Sync carried it) counted that key's versions from 1 again; every other
# tab still remembered the higher version and dropped the new result as "not newer", so it
# called again within the freshness window (and, leader-follower, a new leader's results
# never reached its followers' caches or their on_cache_update subscribers).


def test_cache_takes_a_restarted_version_produced_after_the_known_one_went_stale() -> None:
    cache = SharedCache(SIM_STALE, max_entries=8)
    assert cache.offer("k", '"old"', 2, "a", 0.0, now=1000.0)
    assert cache.offer("k", '"new"', 1, "b", 0.0, now=1000.0 + SIM_STALE + 1)
    entry = cache.get("k", 1000.0 + SIM_STALE + 2)
    assert entry is not None and entry.value == "new"


def test_cache_still_orders_results_of_one_freshness_window_by_version() -> None:
    cache = SharedCache(SIM_STALE, max_entries=8)
    assert cache.offer("k", '"v2"', 2, "a", 0.0, now=1000.0)
    assert not cache.offer("k", '"v1"', 1, "b", 0.0, now=3000.0)  # produced while v2 was fresh
    assert not cache.offer("k", '"v2 again"', 2, "a", 100.0, now=4000.0)  # a duplicate
    entry = cache.get("k", 4000.0)
    assert entry is not None and entry.value == "v2"
    cache.invalidate("k")
    assert not cache.offer("k", '"v2"', 2, "a", 10.0, now=4500.0)  # a late copy cannot come back
    assert cache.get("k", 4500.0) is None


def test_an_entry_keeps_when_its_call_started_so_an_answer_from_the_cache_can_say_it() -> None:
    from pyflowmesh.core.effects import Send
    from pyflowmesh.core.wire import Request, Result, encode
    from support import WallClock, clocked_node

    clock = WallClock()
    producer = clocked_node("z", clock)
    producer.start(0.0)
    producer.tick(1000.0)
    producer.tick(2000.0)
    waiter = producer.submit("f", (), 2000.0)
    (call,) = [e for e in producer.take_effects() if type(e).__name__ == "StartCall"]
    started = clock.wall
    clock.wall += 50
    producer.call_succeeded(call.call_id, {"v": 1}, 2050.0)
    producer.take_effects()
    assert waiter and producer.cache.get("f", 2050.0).started == started
    # a tab asks for it later: the answer from the cache says when its call began
    producer.receive(encode(Request(src="a", dst="z", req=1, key="f", flow="f", args=[], sent=clock.wall)), 2100.0)
    (answer,) = [e.message for e in producer.take_effects() if isinstance(e, Send) and isinstance(e.message, Result)]
    assert answer.started == started
