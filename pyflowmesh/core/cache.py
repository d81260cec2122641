"""The shared result cache: versioned entries, freshness, a size bound.

Entries travel between tabs, so each carries a version (a number plus the ID of
the tab that produced it) and an age rather than a timestamp: tabs do
not share a clock (``performance.now()`` starts with each page), but they can
agree on "this result is 1.2 s old". A late or duplicated message can never
replace a newer entry, and an entry older than ``stale_time`` is never served.
"""

from __future__ import annotations

import math
from collections import OrderedDict
from typing import Any

from .structs import dataclass  # @dataclass without its cost at import
from .values import load_json
from .wire import SyncEntry

__all__ = ["CacheEntry", "MARKS_PER_ENTRY", "MAX_VERSION", "SharedCache"]

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
    started: float | None = None  # when the call behind it began (wall ms), where known (Result.started)

    @property
    def value(self) -> Any:
        """A fresh copy of the cached data."""
        return load_json(self.data)

    def age(self, now: float) -> float:
        return max(0.0, now - self.stored_at)


MAX_VERSION = 2**53 - 1
"""The largest version a tab makes (the largest integer a JS number holds exactly). Its clock
takes in versions up to half of that only, so a peer sending a huge one cannot exhaust it."""

MARKS_PER_ENTRY = 4
"""Version marks kept per cache entry: ``SharedCache._high`` holds at most this times ``max_entries``."""


class SharedCache:
    """A bounded LRU map of fresh results, ordered by version per key.

    Two structures, both bounded:

    * ``_entries``: at most ``max_entries`` results (least recently used go first).
    * ``_high``: a version mark ``(version, origin, produced)`` per key, kept after the
      entry is gone (invalidated, expired, evicted) so that a late copy of an older
      result cannot come back; at most ``max_marks`` (``MARKS_PER_ENTRY * max_entries``)
      marks, least recently used first. Every entry has its mark: a mark leaves
      together with its entry.

    Versions come from one clock per tab, not a count per key: a tab's next version
    is above every version it has seen or made, of any key (a Lamport clock, one
    number). So a result made after a tab heard of another one carries a higher
    version even when that tab has forgotten the key's mark since, or never had it:
    forgetting in the producer cannot make its newer result lose to an older one.

    Why forgetting a mark stays correct ("produced" is a time on this tab's clock,
    ``now - age``; ``offer`` stores nothing whose age is ``>= stale_time``, so nothing
    produced before ``now - stale_time``):

    * By age: a mark rejects only results produced before ``mark.produced +
      stale_time``. Once ``now >= mark.produced + 2 * stale_time`` every result that
      could still be stored was produced after that, so the mark can reject nothing
      any more: dropping it changes no decision.
    * By count (more than ``max_marks`` keys within ``2 * stale_time``, e.g. a peer
      sending many distinct keys): a mark is evicted before it is useless. The cache
      then keeps one number, ``floor``: the latest production time among the marks
      evicted for count, and stores nothing produced before it. Every result whose
      mark was forgotten was produced at or before the floor, so no copy of it, and
      nothing older, can come back; in particular a late copy of a key's old result
      cannot replace a newer one that this tab stored after forgetting the old one's
      mark. Results produced after the floor are ordered as before: by their key's
      mark, or, for a key without one, taken as a tab that never heard of the key
      takes them. The cost: under such a churn, results older than the floor (age
      above ``now - floor``) are not cached; they still reach their waiters.
    """

    def __init__(self, stale_time: float, max_entries: int) -> None:
        self.stale_time = stale_time
        self.max_entries = max_entries
        self.max_marks = MARKS_PER_ENTRY * max_entries
        self._entries: OrderedDict[str, CacheEntry] = OrderedDict()  # at most max_entries
        self._high: OrderedDict[str, HighMark] = OrderedDict()  # at most max_marks; see the class docstring
        self.floor = -math.inf  # the latest production time among marks evicted for count
        self.clock = 0  # the highest version this tab has seen or made, of any key

    def __len__(self) -> int:
        return len(self._entries)

    def __contains__(self, key: object) -> bool:
        return key in self._entries

    def held(self) -> list[CacheEntry]:
        """Every entry held, stale ones too, least recently used first (for inspection: it changes nothing)."""
        return list(self._entries.values())

    @property
    def marks(self) -> int:
        """How many version marks are held (at most ``max_marks``)."""
        return len(self._high)

    def get(self, key: str, now: float) -> CacheEntry | None:
        """The fresh entry for ``key``, or ``None`` (an expired entry is dropped)."""
        entry = self._entries.get(key)
        if entry is None:
            return None
        if entry.age(now) >= self.stale_time:
            del self._entries[key]
            return None
        self._entries.move_to_end(key)
        if key in self._high:  # an entry in use keeps its mark from being evicted first
            self._high.move_to_end(key)
        return entry

    def next_version(self, key: str, wall: float | None = None) -> int:
        """The version a new result for ``key`` produced in this tab should carry: above any seen.

        With ``wall`` (the wall clock in ms, shared by the tabs of a browser) it is at least
        that, a hybrid logical clock: a tab that starts afresh under an ID it had before (a
        scope switch and back, a page restored) still makes versions above the ones it made
        then, which other tabs remember; versions of different tabs follow real time too.
        """
        high = self._high.get(key)
        version = max(self.clock, high[0] if high else 0) + 1
        if wall is not None and 0 <= wall < MAX_VERSION // 2:
            version = max(version, int(wall))
        return min(MAX_VERSION, version)

    def offer(self, key: str, data: str, version: int, origin: str, age: float, now: float,
              started: float | None = None) -> bool:
        """Store a result (``data``: its canonical JSON) unless it is stale or not newer than what this tab knows.

        ``started``: when its call began (wall ms), if known; answers from the cache pass it on.
        """
        if self.clock < version <= MAX_VERSION // 2:
            self.clock = version
        if age >= self.stale_time:
            return False
        produced = now - age
        if produced < self.floor:
            return False  # as old as a result whose mark was evicted for count: maybe older
        high = self._high.get(key)
        # A tab that never saw the highest version (it joined after that entry went stale
        # everywhere, so no Sync carried it) may make a lower one. A result produced once
        # the known one was stale is newer whatever its number; anything produced earlier
        # is ordered by version.
        if high is not None and (version, origin) <= high[:2] and produced < high[2] + self.stale_time:
            return False
        self._high[key] = (version, origin, produced)
        self._high.move_to_end(key)
        self._entries[key] = CacheEntry(key, data, version, origin, produced, started)
        self._entries.move_to_end(key)
        while len(self._entries) > self.max_entries:
            self._entries.popitem(last=False)
        self._forget_marks(now)
        return True

    def invalidate(self, key: str | None = None) -> list[str]:
        """Drop ``key`` (or every entry); returns the keys dropped. Their marks stay."""
        if key is None:
            dropped = list(self._entries)
            self._entries.clear()
            return dropped
        return [key] if self._entries.pop(key, None) is not None else []

    def prune(self, now: float) -> None:
        """Drop every expired entry, and every mark that can no longer reject anything."""
        for key in [k for k, e in self._entries.items() if e.age(now) >= self.stale_time]:
            del self._entries[key]
        horizon = now - 2 * self.stale_time
        for key in [k for k, mark in self._high.items() if mark[2] <= horizon]:
            del self._high[key]

    def snapshot(self, now: float, origin: str | None = None) -> list[SyncEntry]:
        """The fresh entries (only those produced by ``origin``, if given), for a joining tab."""
        self.prune(now)
        return [
            SyncEntry(key=e.key, value=e.value, version=e.version, origin=e.origin, age=e.age(now))
            for e in self._entries.values()
            if origin is None or e.origin == origin
        ]

    def _forget_marks(self, now: float) -> None:
        """Keep ``_high`` within ``max_marks``: drop useless marks first, then the least recent."""
        horizon = now - 2 * self.stale_time
        while self._high:
            key, mark = next(iter(self._high.items()))
            if len(self._high) > self.max_marks:
                self.floor = max(self.floor, mark[2])
            elif mark[2] > horizon:
                break
            del self._high[key]
            self._entries.pop(key, None)  # an entry never outlives its mark
