"""Mesh options: defaults, validation, TypeScript aliases and the timings derived from them.

All durations are milliseconds, as in the TypeScript original. Every timeout of
the protocol derives from ``heartbeat`` unless set explicitly, so a page (or a
test) that changes one number changes the pace of the whole mesh consistently.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import field, fields, replace
from typing import Any, Literal

from .structs import dataclass  # @dataclass without its cost at import
from .wire import MAX_INTERVAL, MAX_MILLIS, MIN_INTERVAL

__all__ = ["MeshConfig", "Strategy", "STRATEGIES", "MAX_SCOPE_LENGTH"]

Strategy = Literal["leader-follower", "peer-to-peer"]
STRATEGIES: tuple[str, ...] = ("leader-follower", "peer-to-peer")
MAX_SCOPE_LENGTH = 1024

# TypeScript spellings accepted so that pages ported from AsyncFlowState work unchanged.
_ALIASES = {
    "shareCache": "share_cache",
    "shareErrors": "share_errors",
    "staleTime": "stale_time",
    "maxEntries": "max_entries",
    "errorBackoff": "error_backoff",
    "maxErrorBackoff": "max_error_backoff",
    "requestTimeout": "request_timeout",
    "callTimeout": "call_timeout",
    "hiddenTimeout": "hidden_timeout",
    "maxMessageBytes": "max_message_bytes",
    "useLocks": "use_locks",
}


# The sane range of every numeric option. A heartbeat outside [10 ms, 10 min] floods the
# channel or never notices a dead leader; no duration exceeds a day, which keeps every
# number the mesh puts on the wire within what protocol.decode accepts.
_DAY = MAX_MILLIS
_DURATIONS: dict[str, tuple[float, float]] = {
    "heartbeat": (MIN_INTERVAL, MAX_INTERVAL),
    "stale_time": (0.0, _DAY),
    "error_backoff": (1.0, _DAY),
    "max_error_backoff": (1.0, _DAY),
    "request_timeout": (0.0, _DAY),
    "call_timeout": (1.0, _DAY),
    "hidden_timeout": (1.0, _DAY),
}
_COUNTS: dict[str, tuple[int, int]] = {
    "max_entries": (1, 1_000_000),
    "max_message_bytes": (1024, 64 << 20),
}


def _clamp(value: float, low: float, high: float) -> float:
    return max(low, min(high, value))


@dataclass(frozen=True)
class MeshConfig:
    """The options of one mesh member. Build it with :meth:`from_options` to get aliases and checks.

    Attributes:
        channel: the BroadcastChannel name; tabs on the same name form one mesh.
        strategy: ``"leader-follower"`` (one elected tab serves every flow) or
            ``"peer-to-peer"`` (no leader; the first tab to execute a key serves it).
        share_cache: broadcast successful results so every tab can serve them.
        share_errors: broadcast failures, with a back-off shared by every tab.
        heartbeat: the leader's heartbeat interval; every other timeout derives from it.
        stale_time: how long a result stays fresh: an execute within it is served
            from the cache without a call, in any tab.
        max_entries: the cache's size bound (least recently used entries go first).
        error_backoff: the first back-off after a failure; it doubles with each
            consecutive failure of the same key, up to ``max_error_backoff``.
        max_error_backoff: the longest back-off.
        request_timeout: how long a follower waits for a leader to accept its
            request (or for a leader to appear) before calling the flow itself.
        call_timeout: how long a follower waits for an accepted request's result
            before calling the flow itself.
        hidden_timeout: how long a leader in a hidden tab may stay silent before
            it is presumed dead (browsers throttle hidden tabs' timers to once a minute).
        max_message_bytes: the largest message sent or accepted.
        use_locks: use Web Locks, where the browser has them, to notice a closed or
            crashed leader at once instead of waiting out its heartbeats.
        scope: whose data this tab holds (a user or session ID), or ``None`` for the
            one shared scope. Tabs of different scopes on one channel are separate
            meshes; the wire carries only a digest. Kept out of ``repr`` (and so out
            of error messages and logs), since it often names a user.
    """

    channel: str
    strategy: Strategy = "leader-follower"
    share_cache: bool = True
    share_errors: bool = True
    heartbeat: float = 5000.0
    stale_time: float = 30_000.0
    max_entries: int = 256
    error_backoff: float = 1000.0
    max_error_backoff: float = 30_000.0
    request_timeout: float | None = None
    call_timeout: float = 30_000.0
    hidden_timeout: float = 75_000.0
    max_message_bytes: int = 1 << 20
    use_locks: bool = True
    scope: str | None = field(default=None, repr=False)

    @classmethod
    def from_options(cls, options: Mapping[str, Any] | None = None, /, **kwargs: Any) -> MeshConfig:
        """Build a validated config from a dict (TypeScript names allowed) and/or keywords.

        Raises:
            ValueError: an unknown option, a missing channel, or a value outside
                what the option allows (the message names the option and the
                allowed values).
            TypeError: a value of the wrong type.
        """
        merged: dict[str, Any] = {}
        for source in (options or {}, kwargs):
            for name, value in source.items():
                canonical = _ALIASES.get(name, name)
                if canonical in merged:
                    raise ValueError(f"mesh option {canonical!r} is given twice (as {name!r} too)")
                merged[canonical] = value
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(merged) - known)
        if unknown:
            raise ValueError(
                f"unknown mesh option(s) {', '.join(map(repr, unknown))}; "
                f"known options: {', '.join(sorted(known))} (and the TypeScript names {', '.join(sorted(_ALIASES))})"
            )
        if "channel" not in merged:
            raise ValueError("the mesh option 'channel' is required: the BroadcastChannel name, e.g. 'my-mesh'")
        config = cls(**merged)
        config.validate()
        return config

    def with_options(self, **changes: Any) -> MeshConfig:
        """A copy with some options changed (TypeScript names allowed), validated."""
        config = replace(self, **{_ALIASES.get(k, k): v for k, v in changes.items()})
        config.validate()
        return config

    def validate(self) -> None:
        """Raise ``ValueError``/``TypeError`` naming the first bad option."""
        if not isinstance(self.channel, str) or not self.channel:
            raise ValueError(f"mesh option 'channel' must be a non-empty str, got {self.channel!r}")
        if self.strategy not in STRATEGIES:
            raise ValueError(
                f"mesh option 'strategy' must be one of {', '.join(map(repr, STRATEGIES))}, got {self.strategy!r}"
            )
        for name in ("share_cache", "share_errors", "use_locks"):
            value = getattr(self, name)
            if not isinstance(value, bool):
                raise TypeError(f"mesh option {name!r} must be True or False, got {value!r}")
        for name, (low, high) in _DURATIONS.items():
            value = getattr(self, name)
            if value is None and name == "request_timeout":
                continue
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
                raise TypeError(f"mesh option {name!r} must be a number of milliseconds, got {value!r}")
            if not low <= value <= high:
                sign = "> 0" if low > 0 and value <= 0 else ">= 0" if value < 0 else f"at least {low:g}"
                if value > high:
                    sign = f"at most {high:g}"
                raise ValueError(
                    f"mesh option {name!r} must be {sign} milliseconds (between {low:g} and {high:g}), got {value!r}"
                )
        if self.max_error_backoff < self.error_backoff:
            raise ValueError(
                f"mesh option 'max_error_backoff' ({self.max_error_backoff}) must be >= "
                f"'error_backoff' ({self.error_backoff})"
            )
        check_scope(self.scope)
        for name, (low, high) in _COUNTS.items():
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int):
                raise TypeError(f"mesh option {name!r} must be an int, got {value!r}")
            if not low <= value <= high:
                raise ValueError(f"mesh option {name!r} must be between {low} and {high}, got {value!r}")

    # --- timings derived from the heartbeat -------------------------------------------------

    @property
    def answer_timeout(self) -> float:
        """How long a candidate (or a joining tab) waits for a higher tab or a leader to speak."""
        return _clamp(self.heartbeat / 20, 50.0, 250.0)

    @property
    def coordinator_timeout(self) -> float:
        """How long a candidate that was answered waits for the winner's announcement."""
        return 4 * self.answer_timeout

    @property
    def claim_window(self) -> float:
        """How long a tab that claims a key waits for competing claims before it calls."""
        return _clamp(self.heartbeat / 200, 10.0, 50.0)

    @property
    def effective_request_timeout(self) -> float:
        """``request_timeout``, or by default a fifth of the heartbeat (between 0.25 and 2 s)."""
        if self.request_timeout is not None:
            return float(self.request_timeout)
        return _clamp(self.heartbeat / 5, 250.0, 2000.0)

    def silence_limit(self, interval: float, hidden: bool) -> float:
        """How long a leader announcing ``interval`` may stay silent before it is presumed dead.

        Two and a half heartbeats when visible (one late heartbeat is tolerated);
        ``hidden_timeout`` when its tab is hidden and its timers may be throttled.
        The leader applies the same limit to itself, so it steps down exactly
        when its followers may have stopped waiting for it.
        """
        visible = 2.5 * interval
        return max(visible, self.hidden_timeout) if hidden else visible


def check_scope(scope: object) -> None:
    """Raise ``TypeError``/``ValueError`` unless ``scope`` is ``None`` or a usable scope name.

    The message never quotes the value: a scope is often a user ID.
    """
    if scope is None:
        return
    if not isinstance(scope, str):
        raise TypeError(f"mesh option 'scope' must be a str or None, got a {type(scope).__name__}")
    if not scope:
        raise ValueError("mesh option 'scope' must be a non-empty str (None for the shared scope)")
    if len(scope) > MAX_SCOPE_LENGTH:
        raise ValueError(f"mesh option 'scope' must be at most {MAX_SCOPE_LENGTH} characters, got {len(scope)}")
    try:
        scope.encode("utf-8")
    except UnicodeEncodeError:
        raise ValueError("mesh option 'scope' must be valid text (it contains a lone surrogate)") from None
