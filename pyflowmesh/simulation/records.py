"""What a simulated run records and is judged by: its executes, the bounds it must meet, what failed."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

__all__ = ["Bounds", "ExecRecord", "Violation"]


@dataclass
class ExecRecord:
    """One execute: where and when it started, and how and when it ended."""

    tab: str
    flow: str
    args: tuple[Any, ...]
    key: str
    start: float
    waiter: int = 0
    end: float | None = None
    outcome: str | None = None  # "resolved", "rejected", "disposed", "scope-changed", "cancelled"...
    source: str | None = None
    error: BaseException | None = None
    value: Any = None
    tab_gone: bool = False  # its tab crashed or closed before it ended
    quiet: bool = False  # started in the quiet phase
    settled: bool = False  # started once the mesh had settled after the faults
    cancelled: bool = False  # its caller stopped waiting (MeshNode.cancel); ``end`` is when
    bad_args: bool = False  # its arguments are not fit to share: a TypeError from execute is expected
    tab_index: int = -1
    digest: str | None = None  # the scope digest of its tab when it started
    on_end: Callable[[ExecRecord], None] | None = field(default=None, repr=False, compare=False)
    sent_args: str = field(default="", repr=False)  # the arguments as JSON when the execute started

    @property
    def latency(self) -> float | None:
        return None if self.end is None else self.end - self.start


@dataclass(frozen=True)
class Violation:
    """An invariant that did not hold."""

    # convergence, execute, duplicate-call, backoff, blocked, sync, cache, value, cross-scope,
    # exception, internal-error, effect, cancel, bounded, leftover
    kind: str
    time: float
    message: str

    def __str__(self) -> str:
        return f"[{self.kind}] t={self.time:.1f}ms: {self.message}"


@dataclass(frozen=True)
class Bounds:
    """The bounds a run is checked against, derived from its config and its faults (ms).

    Attributes:
        convergence: after the quiet phase starts, the time within which exactly one
            leader is followed by every live tab (leader-follower).
        fault_execute: after the quiet phase starts, the time within which every
            execute started earlier has ended.
        quiet_execute: the latency bound of an execute started in the quiet phase once
            the mesh has settled (converged, and no tab has work left from the faults).
    """

    convergence: float
    fault_execute: float
    quiet_execute: float
