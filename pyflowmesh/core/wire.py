"""The wire format: every message the mesh sends, its encoding and its validation.

A message is one JSON object sent as text over the channel::

    {"proto": "pyflowmesh", "v": 1, "type": "heartbeat", "src": "<node id>", ...}

``decode`` is strict: anything that is not text, not JSON, not ours, of another
protocol version, of an unknown type, or with a missing or ill-typed field raises
:class:`ProtocolError` with a short reason. The node counts the reason and drops
the message; nothing foreign can ever change a tab's state. Other versions are
dropped too, so old and new versions of a page sharing a channel after a deploy
form two separate meshes instead of confusing each other.

**Scopes.** A mesh of a scope (``MeshConfig.scope``: whose data the tab holds)
adds ``"scope": <digest>`` to every envelope: :func:`scope_digest` of the channel
and the scope, never the scope itself. The shared scope (``None``) omits the
field, so its messages are byte for byte those of a page without scopes. A
message of another scope raises ``ProtocolError("scope")``: tabs of two scopes on
one channel are two meshes that never act on each other's messages.
"""

from __future__ import annotations

import json
import re
from dataclasses import field, fields, is_dataclass
from itertools import accumulate
from typing import Any, ClassVar, cast

from ..errors import ProtocolError
from .structs import dataclass  # @dataclass without its cost at import
from .values import MAX_DEPTH, MAX_FLOW_KEY, check_json, is_text

__all__ = [
    "PROTOCOL",
    "VERSION",
    "ProtocolError",
    "Message",
    "Hello",
    "Election",
    "Answer",
    "Coordinator",
    "Heartbeat",
    "Bye",
    "Alive",
    "MemberEntry",
    "MAX_MEMBERS",
    "Request",
    "Accept",
    "Decline",
    "Result",
    "Failure",
    "Claim",
    "Invalidate",
    "Sync",
    "SyncEntry",
    "SyncFailure",
    "StreamListen",
    "StreamEvent",
    "StreamStatus",
    "StreamOwner",
    "Withdraw",
    "EventId",
    "MAX_STREAM_KEY",
    "MAX_EVENT_ID",
    "STREAM_STATUSES",
    "OWNER_PHASES",
    "check_event_id",
    "MESSAGE_TYPES",
    "MAX_COUNT",
    "MAX_INVALIDATED_FLOWS",
    "MAX_MILLIS",
    "MIN_INTERVAL",
    "MAX_INTERVAL",
    "encode",
    "envelope_head",
    "decode",
    "scope_digest",
]

PROTOCOL = "pyflowmesh"
# 2: members and a named successor (0.2). A page of another version is another mesh.
VERSION = 2
# The most members a leader lists in one heartbeat (the highest IDs: the successor is among them).
MAX_MEMBERS = 256
_MAX_ID = 128


@dataclass(frozen=True, slots=True, kw_only=True)
class Hello:
    """A tab joined: the leader (or, peer-to-peer, every tab) answers with what it knows.

    ``locks``: the sender holds a Web Lock the others can watch, so it never needs to
    say it is alive (the browser tells when its tab goes).
    """

    TYPE: ClassVar[str] = "hello"
    src: str
    locks: bool = False


@dataclass(frozen=True, slots=True, kw_only=True)
class MemberEntry:
    """One member in a leader's list: its ID, and whether it holds a Web Lock others can watch."""

    id: str
    locks: bool


@dataclass(frozen=True, slots=True, kw_only=True)
class Election:
    """Bully: the sender found no live leader and stands for ``term``."""

    TYPE: ClassVar[str] = "election"
    src: str
    term: int


@dataclass(frozen=True, slots=True, kw_only=True)
class Answer:
    """Bully: a higher tab is alive and takes over the election; lower candidates stand down."""

    TYPE: ClassVar[str] = "answer"
    src: str
    term: int


@dataclass(frozen=True, slots=True, kw_only=True)
class Coordinator:
    """The sender is the leader of ``term``: newly elected, or reasserting itself.

    Like a :class:`Heartbeat`, it lists the members and names the ``successor``.
    """

    TYPE: ClassVar[str] = "coordinator"
    src: str
    term: int
    interval: float
    hidden: bool
    locks: bool = False
    successor: str | None = None
    members: list[MemberEntry] = field(default_factory=list)


@dataclass(frozen=True, slots=True, kw_only=True)
class Heartbeat:
    """The leader is alive; ``interval`` and ``hidden`` tell followers how long to wait for the next.

    ``members``: the other live members the leader knows (at most :data:`MAX_MEMBERS`),
    ``successor``: the one that takes over when the leader goes (the highest ID, the
    Bully outcome), ``locks``: the leader holds a Web Lock its followers can watch.
    """

    TYPE: ClassVar[str] = "heartbeat"
    src: str
    term: int
    interval: float
    hidden: bool
    locks: bool = False
    successor: str | None = None
    members: list[MemberEntry] = field(default_factory=list)


@dataclass(frozen=True, slots=True, kw_only=True)
class Bye:
    """The sender leaves the mesh (dispose, page frozen or cached): its ``successor`` takes over at once."""

    TYPE: ClassVar[str] = "bye"
    src: str
    term: int
    successor: str | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class Alive:
    """A member no Web Lock covers is still there (sent once a heartbeat when it sent nothing else)."""

    TYPE: ClassVar[str] = "alive"
    src: str
    locks: bool
    hidden: bool


@dataclass(frozen=True, slots=True, kw_only=True)
class Request:
    """A follower asks the leader ``dst`` to execute ``flow(*args)`` for the cache key ``key``."""

    TYPE: ClassVar[str] = "request"
    src: str
    dst: str
    req: int
    key: str
    flow: str
    args: list[Any]
    sent: float | None = None  # the sender's wall clock (ms): a request that waited too long is stale
    # The latest invalidation of ``flow`` the sender applied (its ``at``): a result from a call that
    # started before it must not answer; a leader that has not heard of it applies it first.
    after: float | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class Accept:
    """The leader will serve request ``req``: the result comes as a broadcast ``Result``."""

    TYPE: ClassVar[str] = "accept"
    src: str
    dst: str
    req: int
    key: str


@dataclass(frozen=True, slots=True, kw_only=True)
class Decline:
    """The tab cannot serve request ``req`` (``reason``: ``unknown-flow`` or ``not-leader``)."""

    TYPE: ClassVar[str] = "decline"
    src: str
    dst: str
    req: int
    key: str
    reason: str


@dataclass(frozen=True, slots=True, kw_only=True)
class Withdraw:
    """The asker of request ``req`` no longer waits for ``key`` (its page cancelled the execute).

    The asked tab stops serving ``key`` to ``src``, and cancels its call when no tab waits
    on it any more.
    """

    TYPE: ClassVar[str] = "withdraw"
    src: str
    dst: str
    req: int
    key: str


@dataclass(frozen=True, slots=True, kw_only=True)
class Result:
    """A successful result for ``key``, ``age`` ms old, produced by ``origin`` as ``version``.

    ``shared`` results go into every tab's cache; others only answer the tabs in ``to``.
    """

    TYPE: ClassVar[str] = "result"
    src: str
    key: str
    value: Any
    version: int
    origin: str
    age: float
    shared: bool
    to: list[str] | None = None
    sent: float | None = None  # the sender's wall clock (ms): the receiver adds the transit to ``age``
    # When the call that produced it started, or later (wall clock, ms): a tab that applied an
    # invalidation of the key's flow at ``at`` takes the result only if ``started > at``.
    started: float | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class Failure:
    """A failed call of ``key``; ``shared`` failures make every tab back off ``retry_in`` ms."""

    TYPE: ClassVar[str] = "failure"
    src: str
    key: str
    error_type: str
    message: str
    retry_in: float
    attempt: int
    shared: bool
    to: list[str] | None = None
    # When the failed call started (wall clock, ms), as ``Result.started``: a wait that follows
    # an invalidation at ``at`` is not failed by a call that started before it (it waits for
    # the newer call), though the back-off starts all the same: the server fails now.
    started: float | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class Claim:
    """The sender calls (``running``) or is about to call ``key`` itself; others wait for its result."""

    TYPE: ClassVar[str] = "claim"
    src: str
    key: str
    running: bool


@dataclass(frozen=True, slots=True, kw_only=True)
class Invalidate:
    """Drop ``key`` (or, with ``None``, every entry) from every tab's cache.

    With ``flows`` (then ``key`` is ``None``): drop every key of those flows, every argument
    variant, as of ``at`` (the sender's wall clock, ms): a mutation succeeded. A tab that
    applied it serves and stores, for those flows, only results of calls that started
    after ``at`` (``Result.started``), and says so when it asks the leader (``Request.after``).
    """

    TYPE: ClassVar[str] = "invalidate"
    src: str
    key: str | None
    flows: list[str] | None = None  # at most MAX_INVALIDATED_FLOWS flow keys
    at: float | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class SyncEntry:
    """One cache entry in a :class:`Sync`."""

    key: str
    value: Any
    version: int
    origin: str
    age: float


@dataclass(frozen=True, slots=True, kw_only=True)
class SyncFailure:
    """One active back-off in a :class:`Sync`."""

    key: str
    error_type: str
    message: str
    retry_in: float
    attempt: int
    origin: str


@dataclass(frozen=True, slots=True, kw_only=True)
class Sync:
    """The cache entries and back-offs a joining tab ``dst`` should know."""

    TYPE: ClassVar[str] = "sync"
    src: str
    dst: str
    entries: list[SyncEntry] = field(default_factory=list)
    failures: list[SyncFailure] = field(default_factory=list)
    sent: float | None = None  # the sender's wall clock (ms): the receiver adds the transit to ages


# --- streams (core/streams.py) --------------------------------------------------------------

EventId = str | int
"""A stream event's ID as its source gave it: opaque text, or a non-negative int."""
MAX_STREAM_KEY = 1024  # characters of a stream's key (as a flow key)
MAX_EVENT_ID = 256  # characters of an event ID
STREAM_STATUSES = ("reconnecting", "error")  # what a StreamStatus announces
OWNER_PHASES = ("claim", "run", "release")  # what a StreamOwner announces


@dataclass(frozen=True, slots=True, kw_only=True)
class StreamListen:
    """The sender listens to ``stream`` (or stops); the last event it heard is ``seq``/``event_id``.

    A listener repeats it every heartbeat: the tab running the source keeps it open while
    some listener's last word is younger than its silence limit (``hidden``: the sender's
    timers may be throttled).
    """

    TYPE: ClassVar[str] = "stream-listen"
    src: str
    stream: str
    listening: bool
    seq: int
    event_id: EventId | None
    hidden: bool


@dataclass(frozen=True, slots=True, kw_only=True)
class StreamEvent:
    """Event ``seq`` of ``stream``: its source's ``event_id`` and ``data``; ``to``: the latest, for new listeners."""

    TYPE: ClassVar[str] = "stream-event"
    src: str
    stream: str
    seq: int
    event_id: EventId
    data: Any
    to: list[str] | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class StreamStatus:
    """The source of ``stream`` failed: every tab shows the error, none reopens it for ``retry_in`` ms."""

    TYPE: ClassVar[str] = "stream-status"
    src: str
    stream: str
    status: str
    error_type: str
    message: str
    retry_in: float
    attempt: int
    to: list[str] | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class StreamOwner:
    """Peer-to-peer: the sender claims ``stream``'s source, runs it (repeated every heartbeat), or releases it."""

    TYPE: ClassVar[str] = "stream-owner"
    src: str
    stream: str
    phase: str
    hidden: bool


Message = (
    Hello | Election | Answer | Coordinator | Heartbeat | Bye | Alive | Request | Accept | Decline | Withdraw
    | Result | Failure | Claim | Invalidate | Sync | StreamListen | StreamEvent | StreamStatus | StreamOwner
)
MESSAGE_TYPES: dict[str, type] = {
    cls.TYPE: cls
    for cls in (Hello, Election, Answer, Coordinator, Heartbeat, Bye, Alive, Request, Accept, Decline, Withdraw,
                Result, Failure, Claim, Invalidate, Sync, StreamListen, StreamEvent, StreamStatus, StreamOwner)
}


# --- scopes ---------------------------------------------------------------------------------

_SCOPE_DIGEST = re.compile(r"[0-9a-f]{16}")


def scope_digest(channel: str, scope: str | None) -> str:
    """What the wire carries for ``scope`` on ``channel``: 16 hex digits, or ``""`` for the shared scope.

    A SHA-256 over a label, the channel and the scope, cut to 64 bits:
    enough that two scopes of one channel never meet by accident, and no message
    names the user. It is a label, not a secret: a script of the origin that can
    guess the scope (a user ID) can compute it too; the README's Security section
    says what that means.
    """
    if scope is None:
        return ""
    name = channel.encode("utf-8", "surrogatepass")
    # The channel's length first: no other pair of channel and scope gives the same bytes.
    data = b"pyflowmesh-scope\0%d:" % len(name) + name + scope.encode("utf-8", "surrogatepass")
    import hashlib  # here, not at import: Pyodide compiles hashlib from source (zipimport)

    return hashlib.sha256(data).hexdigest()[:16]


def envelope_head(scope: str = "") -> str:
    """How :func:`encode` starts every message of ``scope`` (a :func:`scope_digest`), up to the type's name."""
    scoped = f'"scope":"{scope}",' if _check_scope_digest(scope) else ""
    return f'{{"proto":"{PROTOCOL}","v":{VERSION},{scoped}"type":"'


def _check_scope_digest(scope: str) -> str:
    if scope != "" and (not isinstance(scope, str) or not _SCOPE_DIGEST.fullmatch(scope)):
        raise ValueError(f"scope must be '' or a scope_digest(), got {scope!r}")
    return scope


# --- encoding -------------------------------------------------------------------------------


def encode(message: Message, scope: str = "") -> str:
    """The message as JSON text, in the envelope of ``scope`` (a :func:`scope_digest`; ``""``: shared).

    Values must already have passed :func:`check_json`. The fields are read, not copied
    (``dataclasses.asdict`` copied every value, however large, only for ``json.dumps`` to
    read it): the structs a message nests (:class:`MemberEntry`, :class:`SyncEntry`...)
    become objects as ``json.dumps`` meets them (:func:`_fields_of`).
    """
    body = _fields_of(message)
    for name in _OPTIONAL_FIELDS:
        if body.get(name, 0) is None:
            del body[name]
    envelope: dict[str, Any] = {"proto": PROTOCOL, "v": VERSION}
    if _check_scope_digest(scope):
        envelope["scope"] = scope
    return json.dumps(
        {**envelope, "type": message.TYPE, **body},
        separators=(",", ":"),
        ensure_ascii=False,
        allow_nan=False,
        default=_fields_of,
    )


_FIELD_NAMES: dict[type, tuple[str, ...]] = {}  # per struct type of this module, its fields in order


def _fields_of(struct: Any) -> dict[str, Any]:
    """A struct of this module by its fields, in order, as ``dataclasses.asdict`` lists them, values uncopied.

    Raises:
        TypeError: ``struct`` is anything else (``json.dumps`` passes on a value that is not JSON).
    """
    kind = type(struct)
    names = _FIELD_NAMES.get(kind)
    if names is None:
        if kind.__module__ != __name__ or not is_dataclass(kind):
            raise TypeError(f"{kind.__qualname__} is not JSON data")
        names = _FIELD_NAMES[kind] = tuple(f.name for f in fields(kind))
    return {name: getattr(struct, name) for name in names}


# --- decoding and validation ----------------------------------------------------------------


# Bounds of every number read from the wire, applied where it is decoded: a message
# outside them is dropped. Counters (terms, versions, request IDs, attempts) stay within
# what a JS number holds exactly; durations within a day, intervals within the heartbeats
# a page may configure; wall-clock stamps within what a JS number holds.
MAX_COUNT = 2**53
MAX_MILLIS = 86_400_000.0  # a day: no duration the protocol sends (retry_in, age) is longer
MIN_INTERVAL, MAX_INTERVAL = 10.0, 600_000.0  # the heartbeats MeshConfig allows
MAX_WALL = float(2**53)
MAX_INVALIDATED_FLOWS = 64  # flow keys one Invalidate may name


def _node_id(value: Any, name: str) -> str:
    if not isinstance(value, str) or not value or len(value) > _MAX_ID or not is_text(value):
        raise ProtocolError(f"bad-field:{name}")
    return value


def _text(value: Any, name: str) -> str:
    # is_text: a lone surrogate (from a \ud800 escape) would make any reply quoting it unsendable.
    if not isinstance(value, str) or not is_text(value):
        raise ProtocolError(f"bad-field:{name}")
    return value


def _count(value: Any, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= MAX_COUNT:
        raise ProtocolError(f"bad-field:{name}")
    return value


def _number(low: float, high: float) -> Any:
    def number(value: Any, name: str) -> float:
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not low <= value <= high:
            raise ProtocolError(f"bad-field:{name}")  # NaN fails the comparison too
        return float(value)

    return number


_millis = _number(0.0, MAX_MILLIS)


def _flag(value: Any, name: str) -> bool:
    if not isinstance(value, bool):
        raise ProtocolError(f"bad-field:{name}")
    return value


def _json(value: Any, name: str) -> Any:
    try:
        check_json(value, name)
    except TypeError:  # json.loads cannot produce this, but a dict handed to decode could
        raise ProtocolError(f"bad-field:{name}") from None
    return value


def check_event_id(value: Any) -> bool:
    """Whether ``value`` can be a stream event's ID: text of at most ``MAX_EVENT_ID`` characters,
    or an int from 0 to ``MAX_COUNT`` (what a JS number holds exactly)."""
    if isinstance(value, str):
        return len(value) <= MAX_EVENT_ID and is_text(value)
    return not isinstance(value, bool) and isinstance(value, int) and 0 <= value <= MAX_COUNT


def _event_id(value: Any, name: str) -> EventId:
    if not check_event_id(value):
        raise ProtocolError(f"bad-field:{name}")
    return cast(EventId, value)


def _stream_key(value: Any, name: str) -> str:
    if not isinstance(value, str) or not value or len(value) > MAX_STREAM_KEY or not is_text(value):
        raise ProtocolError(f"bad-field:{name}")
    return value


def _choice(*allowed: str) -> Any:
    def choice(value: Any, name: str) -> str:
        if not isinstance(value, str) or value not in allowed:
            raise ProtocolError(f"bad-field:{name}")
        return value

    return choice


def _args(value: Any, name: str) -> list[Any]:
    if not isinstance(value, list):
        raise ProtocolError(f"bad-field:{name}")
    _json(value, name)
    return value


def _optional(check: Any) -> Any:
    def optional(value: Any, name: str) -> Any:
        return None if value is None else check(value, name)

    return optional


def _ids(value: Any, name: str) -> list[str]:
    if not isinstance(value, list) or len(value) > 10_000:
        raise ProtocolError(f"bad-field:{name}")
    return [_node_id(item, name) for item in value]


def _flows(value: Any, name: str) -> list[str]:
    """Flow keys an Invalidate names: at most MAX_INVALIDATED_FLOWS, each as ``check_flow_key`` allows."""
    if not isinstance(value, list) or not 1 <= len(value) <= MAX_INVALIDATED_FLOWS:
        raise ProtocolError(f"bad-field:{name}")
    for item in value:
        if not isinstance(item, str) or not item or len(item) > MAX_FLOW_KEY or not is_text(item):
            raise ProtocolError(f"bad-field:{name}")
    return value


def _records(cls: type, checks: dict[str, Any]) -> Any:
    def records(value: Any, name: str) -> list[Any]:
        if not isinstance(value, list):
            raise ProtocolError(f"bad-field:{name}")
        return [_record(cls, checks, item, name) for item in value]

    return records


def _record(cls: type, checks: dict[str, Any], item: Any, name: str) -> Any:
    if not isinstance(item, dict) or set(item) != set(checks):
        raise ProtocolError(f"bad-field:{name}")
    return cls(**{key: check(item[key], f"{name}.{key}") for key, check in checks.items()})


_ENTRY = {"key": _text, "value": _json, "version": _count, "origin": _node_id, "age": _millis}
def _members(value: Any, name: str) -> list[MemberEntry]:
    """A leader's list of members: at most MAX_MEMBERS records of exactly ``id`` and ``locks``.

    Checked by hand rather than by :func:`_records`: every heartbeat carries one, to every tab.
    """
    if not isinstance(value, list) or len(value) > MAX_MEMBERS:
        raise ProtocolError(f"bad-field:{name}")
    entries = []
    for item in value:
        if not isinstance(item, dict) or len(item) != 2 or "id" not in item or "locks" not in item:
            raise ProtocolError(f"bad-field:{name}")
        locks = item["locks"]
        if locks is not True and locks is not False:
            raise ProtocolError(f"bad-field:{name}.locks")
        entries.append(MemberEntry(id=_node_id(item["id"], f"{name}.id"), locks=locks))
    return entries

_FAILURE = {"key": _text, "error_type": _text, "message": _text, "retry_in": _millis,
            "attempt": _count, "origin": _node_id}

# The check of every field of every message type, by field name.
_CHECKS: dict[str, Any] = {
    "src": _node_id,
    "dst": _node_id,
    "term": _count,
    "interval": _number(MIN_INTERVAL, MAX_INTERVAL),
    "hidden": _flag,
    "req": _count,
    "key": _text,
    "flow": _text,
    "args": _args,
    "reason": _text,
    "value": _json,
    "version": _count,
    "origin": _node_id,
    "age": _millis,
    "shared": _flag,
    "to": _optional(_ids),
    "error_type": _text,
    "message": _text,
    "retry_in": _millis,
    "attempt": _count,
    "running": _flag,
    "entries": _records(SyncEntry, _ENTRY),
    "failures": _records(SyncFailure, _FAILURE),
    "sent": _optional(_number(0.0, MAX_WALL)),
    "locks": _flag,
    "successor": _optional(_node_id),
    "members": _members,
    "stream": _stream_key,
    "listening": _flag,
    "seq": _count,
    "event_id": _event_id,
    "data": _json,
    "status": _choice(*STREAM_STATUSES),
    "phase": _choice(*OWNER_PHASES),
    "flows": _optional(_flows),
    "at": _optional(_number(0.0, MAX_WALL)),
    "after": _optional(_number(0.0, MAX_WALL)),
    "started": _optional(_number(0.0, MAX_WALL)),
}
_CHECKS_BY_TYPE: dict[str, dict[str, Any]] = {
    name: {f.name: _CHECKS[f.name] for f in fields(cls)} for name, cls in MESSAGE_TYPES.items()
}
_CHECKS_BY_TYPE["invalidate"]["key"] = _optional(_text)
_CHECKS_BY_TYPE["stream-listen"]["event_id"] = _optional(_event_id)
_OPTIONAL_FIELDS = ("to", "sent", "successor", "flows", "at", "after", "started")
_ENVELOPE = frozenset({"proto", "v", "scope", "type"})


# How deep a message may nest: a value nests at most MAX_DEPTH + 1 levels (check_json
# enforces that in the sending tab), and the deepest envelope (a Sync: the message, its
# entries, an entry) adds 3. Anything deeper is not ours, and must not reach json.loads:
# under Pyodide, deep JSON overflows the JS engine's stack before Python's recursion
# check fires, a fatal error of the whole runtime ("Maximum call stack size exceeded"
# at about 5,000 nested lists, 2,000 nested objects in Pyodide 314).
MAX_NESTING = MAX_DEPTH + 8
# Linear-time patterns only: every message from the channel goes through them, so a
# pattern that backtracks (a string pattern with alternatives, tried from every quote
# of an unclosed string) lets one crafted message block every tab's event loop.
_ESCAPE = re.compile(r"\\.", re.DOTALL)  # a backslash and the character it escapes
_STRING = re.compile(r'"[^"]*"')  # once escapes are gone, a string ends at the next quote
_BRACKET = re.compile(r"[\[\]{}]")
_STEP = {"[": 1, "{": 1, "]": -1, "}": -1}


def _nesting(raw: str, limit: int) -> int:
    """How deep ``raw`` nests its arrays and objects (exactly, when that exceeds ``limit``).

    Brackets inside strings don't nest, so strings are removed first: escapes, then what
    lies between quotes. On text that is not JSON the figure may be too high, never too
    low for the part a parser would read before failing.
    """
    if raw.count("[") + raw.count("{") <= limit:
        return 0  # the usual case, at C speed: too few brackets to nest deeper than limit
    brackets = _BRACKET.findall(_STRING.sub("", _ESCAPE.sub("", raw)))
    return max(accumulate(map(_STEP.__getitem__, brackets)), default=0)


def decode(raw: Any, max_bytes: int = 1 << 20, scope: str = "") -> Message:
    """Parse and validate one message received from the channel by a member of ``scope``.

    ``scope`` is the member's :func:`scope_digest` (``""``: the shared scope). A
    message of another scope is refused before its fields are looked at.

    Raises:
        ProtocolError: with ``reason`` one of ``not-text``, ``too-large``,
            ``too-deep``, ``not-json``, ``not-object``, ``foreign``, ``version``,
            ``scope`` (valid traffic of another scope's mesh on this channel),
            ``unknown-type``, ``bad-field:<name>``, ``extra-field:<name>`` (a name the
            sender chose: :class:`~pyflowmesh.core.stats.MeshStats` bounds how many it keeps).
    """
    _check_scope_digest(scope)
    if not isinstance(raw, str):
        raise ProtocolError("not-text")
    if len(raw) > max_bytes or not raw.isascii() and len(raw.encode("utf-8", "surrogatepass")) > max_bytes:
        raise ProtocolError("too-large")  # in UTF-8 bytes, as the sender counts them
    if _nesting(raw, MAX_NESTING) > MAX_NESTING:
        raise ProtocolError("too-deep")
    try:
        body = _DECODER.decode(raw)
    except (ValueError, RecursionError):
        raise ProtocolError("not-json") from None
    if not isinstance(body, dict):
        raise ProtocolError("not-object")
    if body.get("proto") != PROTOCOL:
        raise ProtocolError("foreign")
    if body.get("v") != VERSION or isinstance(body.get("v"), bool):
        raise ProtocolError("version")
    theirs = body.get("scope", "")
    if "scope" in body and not (isinstance(theirs, str) and _SCOPE_DIGEST.fullmatch(theirs)):
        raise ProtocolError("bad-field:scope")  # the shared scope omits the field; "" is not ours
    if theirs != scope:
        raise ProtocolError("scope")
    kind = body.get("type")
    if not isinstance(kind, str) or kind not in MESSAGE_TYPES:
        raise ProtocolError("unknown-type")
    cls = MESSAGE_TYPES[kind]
    checks = _CHECKS_BY_TYPE[kind]
    values: dict[str, Any] = {}
    for name, value in body.items():
        if name in _ENVELOPE:
            continue
        check = checks.get(name)
        if check is None:
            raise ProtocolError(f"extra-field:{name[:64]}")
        values[name] = check(value, name)
    for name in checks:
        if name not in values and name not in _OPTIONAL_FIELDS:
            raise ProtocolError(f"bad-field:{name}")
    if values.get("flows") is not None and values.get("key") is not None:
        raise ProtocolError("bad-field:flows")  # an Invalidate names a key or flows, not both
    return cast(Message, cls(**values))


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


# One decoder for every message (json.loads with an argument builds a new one per call).
_DECODER = json.JSONDecoder(parse_constant=_reject_constant)
