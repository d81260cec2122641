"""The exceptions pyflowmesh raises to its users."""

from __future__ import annotations

__all__ = [
    "MeshError",
    "SharedFlowError",
    "MeshDisposedError",
    "MessageTooLarge",
    "CallTimeoutError",
    "FlowTimeoutError",
    "FlowCancelledError",
    "FlowInterruptedError",
    "ScopeChangedError",
    "SharedCallTimeoutError",
    "SharedFlowTimeoutError",
    "ProtocolError",
    "shared_error",
]


class MeshError(Exception):
    """Base class of pyflowmesh's own errors."""


class ProtocolError(MeshError, ValueError):
    """Data that is not a valid message of this protocol version; ``reason`` says why.

    Raised by :func:`pyflowmesh.core.wire.decode` only: a mesh member counts such data in
    ``stats.drop_reasons`` and drops it, never raising it to a page.
    """

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class MeshDisposedError(MeshError, RuntimeError):
    """The mesh member was disposed; it can no longer execute or share."""


class MessageTooLarge(MeshError, TypeError, ValueError):
    """A value or argument would make a message larger than ``max_message_bytes``.

    Raised in the tab that offered the data, before anything changed; a ``TypeError``
    (like any other data the channel cannot carry) and a ``ValueError`` (as in 0.1.0).
    """


class CallTimeoutError(MeshError, TimeoutError):
    """A flow's call ran longer than ``call_timeout``: the mesh stopped waiting for it.

    Every tab waiting on that execute gets this error (shared like any failure), so
    a call that never returns can never leave a page "loading" for good.
    """


class FlowTimeoutError(CallTimeoutError):
    """A flow's call ran longer than the flow's own ``timeout`` (``use_flow(..., timeout=ms)``).

    The call is cancelled in the tab that ran it, and every tab waiting on that execute
    gets this error (a ``TimeoutError``), shared like any failure.
    """


class FlowCancelledError(MeshError):
    """``flow.cancel()`` stopped this tab's wait for the execute.

    Not an ``asyncio.CancelledError``: the task that awaited ``execute`` was not
    cancelled and goes on. The shared call is cancelled only when no tab waits on it.
    """


class FlowInterruptedError(MeshError, RuntimeError):
    """The flow function raised a ``BaseException`` that is no ``Exception``.

    Typically its own ``asyncio.CancelledError`` (it awaited a task that something
    else cancelled). Re-raised as such, it would read as if the caller's own execute
    had been cancelled; so it fails the call like any error, with the original as
    ``__cause__``, in this tab and (as a ``SharedFlowError``) in every other.
    """


class ScopeChangedError(MeshError):
    """The tab changed scope (``FlowMesh.set_scope``: a login, logout or account switch)
    while this execute waited; its result would have belonged to the old scope.

    Execute again to get the new scope's data.
    """


class SharedFlowError(MeshError):
    """A flow failed in another tab (or is backing off after a failure there).

    The original exception lives in the tab that made the call; what crosses the
    channel is its type name and message, so this error carries those.

    Attributes:
        key: the cache key of the failed execute.
        error_type: the failing exception's type name, e.g. ``"ConnectionError"``.
        message: its message.
        origin: the node ID of the tab whose call failed.
        retry_in: milliseconds until the mesh will try this key again (0: at once).
    """

    def __init__(self, key: str, error_type: str, message: str, origin: str, retry_in: float) -> None:
        self.key = key
        self.error_type = error_type
        self.message = message
        self.origin = origin
        self.retry_in = max(0.0, float(retry_in))
        wait = f"; the mesh retries in {self.retry_in / 1000:.1f} s" if self.retry_in > 0 else ""
        shown = key if len(key) <= 200 else key[:200] + "..."
        super().__init__(f"{error_type}: {message} (in tab {origin}, key {shown!r}{wait})")


class SharedCallTimeoutError(SharedFlowError, CallTimeoutError):
    """A call ran past ``call_timeout`` in another tab: shared like any failure, and still a
    :class:`CallTimeoutError` (and so a ``TimeoutError``), as in the tab whose call it was."""


class SharedFlowTimeoutError(SharedCallTimeoutError, FlowTimeoutError):
    """A call ran past its flow's ``timeout`` in another tab: shared like any failure, and still a
    :class:`FlowTimeoutError` (and so a ``TimeoutError``), as in the tab whose call it was."""


_SHARED_TYPES: dict[str, type[SharedFlowError]] = {
    CallTimeoutError.__name__: SharedCallTimeoutError,
    FlowTimeoutError.__name__: SharedFlowTimeoutError,
}


def shared_error(key: str, error_type: str, message: str, origin: str, retry_in: float) -> SharedFlowError:
    """The error an execute raises for a failure that happened in another tab (``origin``)."""
    return _SHARED_TYPES.get(error_type, SharedFlowError)(key, error_type, message, origin, retry_in)
