"""What the sans-I/O core asks its runtime to do.

The core never performs I/O: every method of :class:`~pyflowmesh.core.node.MeshNode`
queues effects, and the runtime (asyncio in a tab, or the simulator) carries them
out and reports back: a ``StartCall`` comes back as ``call_succeeded`` or
``call_failed``, a watched peer (``WatchPeers``) as ``peer_gone`` when that tab disappears.
"""

from __future__ import annotations

from typing import Any, Literal

from .members import Member
from .structs import dataclass  # @dataclass without its cost at import
from .values import load_json
from .wire import Message

__all__ = [
    "Effect", "Send", "StartCall", "CancelCall", "CallRetrying", "Resolve", "Reject", "LeaderChanged", "CacheUpdated",
    "FailureShared", "FlowsInvalidated",
    "WatchPeers", "MembersChanged", "Renamed", "Source", "EFFECT_TYPES",
    "OpenSource", "CloseSource", "Deliver", "StreamChanged", "StreamState", "STREAM_EFFECT_TYPES",
]

Source = Literal["call", "mesh", "cache"]
"""Where an execute's data came from: this tab's own call, another tab, or this tab's cache."""


@dataclass(frozen=True, slots=True)
class Send:
    """Post ``data`` (the encoded ``message``) to the channel."""

    data: str
    message: Message


@dataclass(frozen=True, slots=True)
class StartCall:
    """Call the flow function ``flow(*args)``; report with ``call_succeeded``/``call_failed(call_id, ...)``.

    ``args`` is a fresh copy: the function may mutate it without changing what the mesh shares.
    """

    call_id: int
    flow: str
    args: tuple[Any, ...]
    key: str
    attempt: int = 1  # of the flow's retry policy's max_attempts


@dataclass(frozen=True, slots=True)
class CancelCall:
    """Stop the call ``call_id``: it ran past ``call_timeout``; its waiters got a ``CallTimeoutError``.

    A late ``call_succeeded``/``call_failed`` for it is ignored.
    """

    call_id: int


@dataclass(frozen=True, slots=True)
class CallRetrying:
    """Attempt ``attempt`` of the call of ``key`` failed with ``error``; attempt ``attempt + 1``
    starts in ``delay`` ms (a new ``StartCall``). For the page's ``on_retry``; nothing to carry out.
    """

    key: str
    flow: str
    attempt: int
    max_attempts: int
    error: BaseException
    delay: float


@dataclass(frozen=True, slots=True)
class Resolve:
    """The execute ``waiter`` is done: it returns the data whose canonical JSON is ``data``.

    ``value`` gives a fresh copy at each access, so no caller shares an object with the
    cache or with another caller.
    """

    waiter: int
    data: str
    source: Source

    @property
    def value(self) -> Any:
        return load_json(self.data)


@dataclass(frozen=True, slots=True)
class Reject:
    """The execute ``waiter`` is done: it raises ``error``."""

    waiter: int
    error: BaseException


@dataclass(frozen=True, slots=True)
class LeaderChanged:
    """This tab's view of the leader changed (``None``: no leader known now)."""

    leader: str | None
    is_self: bool


@dataclass(frozen=True, slots=True)
class CacheUpdated:
    """A new result for ``key`` entered this tab's cache (from ``origin``); ``value``: a fresh copy."""

    key: str
    data: str
    origin: str

    @property
    def value(self) -> Any:
        return load_json(self.data)


@dataclass(frozen=True, slots=True)
class FailureShared:
    """A call of ``key`` failed, in this tab or another (``error``: the original, or a ``SharedFlowError``)."""

    key: str
    error: BaseException


@dataclass(frozen=True, slots=True)
class WatchPeers:
    """Watch exactly these tabs from now on: report ``peer_gone(node_id)`` when one disappears.

    The whole set each time (empty: watch nothing); a tab that holds no lock, or is
    gone already, is reported gone at once.
    """

    node_ids: frozenset[str]


@dataclass(frozen=True, slots=True)
class MembersChanged:
    """The live members as this tab sees them changed: IDs joined or left, or their roles."""

    members: tuple[Member, ...]


@dataclass(frozen=True, slots=True)
class Renamed:
    """Another tab uses this tab's ID: this tab now goes by ``node_id`` (its lock follows)."""

    node_id: str


StreamState = Literal["connecting", "open", "reconnecting", "closed", "error"]
"""What a listening tab shows of a stream (``"closed"``: this tab stopped listening)."""


@dataclass(frozen=True, slots=True)
class OpenSource:
    """Start the source of ``stream`` from ``resume`` (the last event ID the mesh saw, or ``None``).

    Report what it yields with ``source_event(run, ...)``, an exception with
    ``source_failed(run, ...)`` and its end with ``source_ended(run, ...)``, until a
    ``CloseSource`` of ``run``.
    """

    stream: str
    run: int
    resume: str | int | None


@dataclass(frozen=True, slots=True)
class CloseSource:
    """Stop the source run ``run`` of ``stream``; anything it reports later is ignored."""

    stream: str
    run: int


@dataclass(frozen=True, slots=True)
class Deliver:
    """Give event ``seq`` of ``stream`` to this tab's listeners, once, in order.

    ``latest``: it is the latest event, given to a listener that has just started (earlier
    events it missed are not replayed). ``value`` is a fresh copy at each access.
    """

    stream: str
    seq: int
    event_id: str | int
    data: str
    latest: bool

    @property
    def value(self) -> Any:
        return load_json(self.data)


@dataclass(frozen=True, slots=True)
class StreamChanged:
    """This tab's listeners of ``stream`` see ``status`` and ``error`` (``None`` when it is well)."""

    stream: str
    status: StreamState
    error: BaseException | None


@dataclass(frozen=True, slots=True)
class FlowsInvalidated:
    """Every key of ``flows`` was invalidated (a mutation succeeded, here or in another tab).

    Carried out by refetching what this tab shows of those flows: a runtime's flows that
    follow a key of one of them execute it again. Every following tab does, and the
    leader serves them all with one call (``Request.after``).
    """

    flows: tuple[str, ...]


Effect = (
    Send | StartCall | CancelCall | CallRetrying | Resolve | Reject | LeaderChanged | CacheUpdated | FailureShared
    | FlowsInvalidated | WatchPeers | MembersChanged | Renamed | OpenSource | CloseSource | Deliver | StreamChanged
)
STREAM_EFFECT_TYPES: tuple[type, ...] = (OpenSource, CloseSource, Deliver, StreamChanged)
"""The effects of streams (``core/streams.py``); the runtime hands them to ``stream.py``."""
EFFECT_TYPES: tuple[type, ...] = (
    Send, StartCall, CancelCall, CallRetrying, Resolve, Reject, LeaderChanged, CacheUpdated, FailureShared,
    FlowsInvalidated, WatchPeers, MembersChanged, Renamed, *STREAM_EFFECT_TYPES,
)
"""Every effect type: a driver checks it handles each (an effect nobody carries out is a silent bug)."""
