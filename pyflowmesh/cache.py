"""The shared result cache: versioned entries, freshness, a size bound.

Entries travel between tabs, so each carries a version (a per-key counter plus
the ID of the tab that produced it) and an age rather than a timestamp: tabs do
not share a clock (``performance.now()`` starts with each page), but they can
agree on "this result is 1.2 s old". A late or duplicated message can never
replace a newer entry, and an entry older than ``stale_time`` is never served.
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass
from typing import Any

from .protocol import SyncEntry
from .values import load_json

__all__ = ["CacheEntry", "SharedCache"]

HighMark = tuple[int, str, float]  # version, origin, when it was produced (this tab's clock)


@dataclass(frozen=True, slots=True)
class CacheEntry:
    """One cached result; ``stored_at`` is on this tab's clock (its ``now`` minus the entry's age).

    The data is kept as its canonical JSON text, so nothing a caller does to a value it
    was given can change what the cache serves later or what joining tabs receive.
    """

    key: str
    data: str
    version: int
    origin: str
    stored_at: float

    @property
    def value(self) -> Any:
        """A fresh copy of the cached data."""
        return load_json(self.data)

    def age(self, now: float) -> float:
        return max(0.0, now - self.stored_at)


class SharedCache:
    """A bounded LRU map of fresh results, ordered by version per key."""

    def __init__(self, stale_time: float, max_entries: int) -> None:
        self.stale_time = stale_time
        self.max_entries = max_entries
        self._entries: OrderedDict[str, CacheEntry] = OrderedDict()
        # Highest version seen per key, kept after invalidation or expiry so that a
        # late copy of an old result cannot come back. Bounded like the entries.
        self._high: OrderedDict[str, HighMark] = OrderedDict()

    def __len__(self) -> int:
        return len(self._entries)

    def __contains__(self, key: object) -> bool:
        return key in self._entries

    def get(self, key: str, now: float) -> CacheEntry | None:
        """The fresh entry for ``key``, or ``None`` (an expired entry is dropped)."""
        entry = self._entries.get(key)
        if entry is None:
            return None
        if entry.age(now) >= self.stale_time:
            del self._entries[key]
            return None
        self._entries.move_to_end(key)
        return entry

    def next_version(self, key: str) -> int:
        """The version a new result for ``key`` produced in this tab should carry."""
        high = self._high.get(key)
        return (high[0] if high else 0) + 1

    def offer(self, key: str, data: str, version: int, origin: str, age: float, now: float) -> bool:
        """Store a result (``data``: its canonical JSON) unless it is stale or not newer than what this tab knows."""
        if age >= self.stale_time:
            return False
        high = self._high.get(key)
        produced = now - age
        # Versions count per key in the tab that produced them, so a tab that never saw
        # the highest one (it joined after that entry went stale everywhere, so no Sync
        # carried it) starts again from 1. A result produced once the known one was stale
        # is newer whatever its number; anything produced earlier is ordered by version.
        if high is not None and (version, origin) <= high[:2] and produced < high[2] + self.stale_time:
            return False
        self._high[key] = (version, origin, produced)
        self._high.move_to_end(key)
        while len(self._high) > 4 * self.max_entries:
            self._high.popitem(last=False)
        self._entries[key] = CacheEntry(key, data, version, origin, now - age)
        self._entries.move_to_end(key)
        while len(self._entries) > self.max_entries:
            self._entries.popitem(last=False)
        return True

    def invalidate(self, key: str | None = None) -> list[str]:
        """Drop ``key`` (or every entry); returns the keys dropped."""
        if key is None:
            dropped = list(self._entries)
            self._entries.clear()
            return dropped
        return [key] if self._entries.pop(key, None) is not None else []

    def prune(self, now: float) -> None:
        """Drop every expired entry."""
        for key in [k for k, e in self._entries.items() if e.age(now) >= self.stale_time]:
            del self._entries[key]

    def snapshot(self, now: float, origin: str | None = None) -> list[SyncEntry]:
        """The fresh entries (only those produced by ``origin``, if given), for a joining tab."""
        self.prune(now)
        return [
            SyncEntry(key=e.key, value=e.value, version=e.version, origin=e.origin, age=e.age(now))
            for e in self._entries.values()
            if origin is None or e.origin == origin
        ]
