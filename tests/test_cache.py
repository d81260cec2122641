"""SharedCache: its bounds, and why forgetting version marks never lets an older result back in."""

from __future__ import annotations

import heapq
import random

from hypothesis import given, settings
from hypothesis import strategies as st

from pyflowmesh.cache import MARKS_PER_ENTRY, SharedCache

STALE = 1000.0


def fill(cache: SharedCache, count: int, now: float, prefix: str = "other") -> None:
    """Offer ``count`` fresh results of distinct keys at ``now``."""
    for i in range(count):
        assert cache.offer(f"{prefix}{i}", i, 1, "t", 0.0, now)


def test_entries_and_marks_stay_within_their_bounds_over_10000_keys() -> None:
    cache = SharedCache(STALE, max_entries=16)
    for i in range(10_000):
        cache.offer(f"k{i}", i, 1, "t", 0.0, now=i * 0.01)  # all within one stale_time
        cache.get(f"k{i // 2}", now=i * 0.01)
    assert len(cache._entries) <= 16
    assert len(cache._high) <= 16 * MARKS_PER_ENTRY == cache.max_marks
    assert set(cache._entries) <= set(cache._high)  # every entry has its mark


def test_a_late_copy_of_an_older_result_is_refused_after_its_mark_was_evicted_for_count() -> None:
    cache = SharedCache(STALE, max_entries=2)
    assert cache.offer("k", "v1", 1, "a", 0.0, now=100.0)
    assert cache.offer("k", "v2", 2, "a", 0.0, now=200.0)
    fill(cache, cache.max_marks, now=210.0)  # k's mark goes, well within stale_time
    assert "k" not in cache._high and cache.floor >= 200.0
    # v1 (produced at 100) arrives late, still fresh: without the floor it would replace v2.
    assert not cache.offer("k", "v1", 1, "a", 150.0, now=250.0)
    assert cache.get("k", 250.0) is None


def test_a_result_produced_after_the_floor_is_stored_for_a_forgotten_key() -> None:
    cache = SharedCache(STALE, max_entries=2)
    assert cache.offer("k", "v2", 2, "a", 0.0, now=200.0)
    fill(cache, cache.max_marks, now=210.0)
    # A tab that produces k again (its count starts from 1: it forgot k too) is not refused.
    assert cache.offer("k", "new", 1, "b", 0.0, now=300.0)
    entry = cache.get("k", 300.0)
    assert entry is not None and entry.value == "new"


def test_a_mark_is_kept_while_it_can_still_refuse_a_result() -> None:
    cache = SharedCache(STALE, max_entries=4)
    assert cache.offer("k", "v2", 2, "a", 0.0, now=0.0)
    cache.invalidate("k")
    now = 2 * STALE - 1.0
    fill(cache, 1, now=now)  # offers run the forgetting
    assert "k" in cache._high
    # v1 produced at STALE - 0.5 (after v2, with a lower version) is still fresh at `now`, and
    # the mark orders it by version: refused.
    assert not cache.offer("k", "v1", 1, "a", now - (STALE - 0.5), now=now)


def test_a_mark_is_forgotten_once_it_can_refuse_nothing() -> None:
    cache = SharedCache(STALE, max_entries=4)
    assert cache.offer("k", "v2", 2, "a", 0.0, now=0.0)
    now = 2 * STALE
    fill(cache, 1, now=now)
    assert "k" not in cache._high and "k" not in cache._entries
    assert cache.floor == float("-inf")  # forgotten by age: no floor needed
    # Whatever can still be stored was produced after STALE: the mark would have taken it too.
    assert not cache.offer("k", "v1", 1, "a", STALE, now=now)  # stale: refused by age
    assert cache.offer("k", "v1", 1, "a", STALE - 1.0, now=now)


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
        if cache.offer(key, i, version, "producer", now - produced, now):
            assert produced >= stored.get(key, float("-inf")), (
                f"{key}: stored a result produced at {produced} after one produced at {stored[key]}")
            stored[key] = produced
        assert len(cache._entries) <= max_entries and len(cache._high) <= cache.max_marks
