"""A flow's call policy: how often the calling tab retries, and how long the call may take.

The policy belongs to the flow (``use_flow(..., retry=..., timeout=...)``) and is
registered with the node beside the flow's name. Only the tab that calls applies it:
the tabs waiting on that call keep waiting through its retries (their patience is the
policy's :attr:`CallPolicy.budget`, not the mesh's ``call_timeout``), and only the final
failure is shared, so N tabs and 3 attempts make at most 3 calls, not 3 N.

Whether an error may be retried at all (``should_retry``) is the runtime's question
(it calls the page's function); the core decides when, and how many times.
"""

from __future__ import annotations

from typing import Literal

from .structs import dataclass  # @dataclass without its cost at import
from .wire import MAX_MILLIS

__all__ = ["Backoff", "BACKOFFS", "CallPolicy", "DEFAULT_POLICY", "MAX_ATTEMPTS"]

Backoff = Literal["fixed", "linear", "exponential"]
BACKOFFS: tuple[str, ...] = ("fixed", "linear", "exponential")
MAX_ATTEMPTS = 100


@dataclass(frozen=True, slots=True)
class CallPolicy:
    """How one flow's call is made.

    Attributes:
        max_attempts: calls per execute in the calling tab (1: no retry).
        delay: milliseconds before the first retry.
        backoff: how the delay grows: ``"fixed"`` (``delay`` each time), ``"linear"``
            (``delay`` x the attempt that failed), ``"exponential"`` (doubling).
        timeout: the flow's own limit in milliseconds for the whole call, retries
            included; past it the call is cancelled and every waiting tab gets a
            ``FlowTimeoutError``. ``None``: the mesh's ``call_timeout`` bounds it.
    """

    max_attempts: int = 1
    delay: float = 1000.0
    backoff: Backoff = "fixed"
    timeout: float | None = None

    def __post_init__(self) -> None:
        if not 1 <= self.max_attempts <= MAX_ATTEMPTS:
            raise ValueError(f"max_attempts must be between 1 and {MAX_ATTEMPTS}, got {self.max_attempts}")
        if not 0 <= self.delay <= MAX_MILLIS:
            raise ValueError(f"a retry delay must be between 0 and {MAX_MILLIS:g} ms, got {self.delay}")
        if self.backoff not in BACKOFFS:
            raise ValueError(f"backoff must be one of {', '.join(BACKOFFS)}, got {self.backoff!r}")
        if self.timeout is not None and not 0 < self.timeout <= MAX_MILLIS:
            raise ValueError(f"timeout must be more than 0 and at most {MAX_MILLIS:g} ms, got {self.timeout}")

    def retry_delay(self, failed: int) -> float:
        """Milliseconds to wait after attempt number ``failed`` (1-based) failed."""
        if self.backoff == "linear":
            wait = self.delay * failed
        elif self.backoff == "exponential":
            wait = self.delay * 2.0 ** min(failed - 1, 60)
        else:
            wait = self.delay
        return min(wait, MAX_MILLIS)

    def budget(self, call_timeout: float) -> float:
        """How long a call of this flow may take, all its attempts together."""
        return self.timeout if self.timeout is not None else call_timeout


DEFAULT_POLICY = CallPolicy()
