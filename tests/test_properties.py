"""Property tests of the wire format and of a live node's defences (hypothesis).

* ``decode`` of anything raises nothing but ``ProtocolError``.
* A live ``MeshNode`` fed invalid data never raises, never changes its state, emits
  nothing, and counts exactly one drop per invalid message.
* Every valid message round-trips: ``decode(encode(m)) == m``.
* A live node fed any valid message from other tabs never raises.
"""

from __future__ import annotations

import json
import math
import os
from dataclasses import asdict, fields
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pyflowmesh.core.config import MeshConfig
from pyflowmesh.core.election import Role
from pyflowmesh.core.node import MeshNode
from pyflowmesh.core.values import cache_key
from pyflowmesh.core.wire import (
    MAX_INTERVAL,
    MAX_MILLIS,
    MESSAGE_TYPES,
    MIN_INTERVAL,
    PROTOCOL,
    VERSION,
    Accept,
    Coordinator,
    MemberEntry,
    Message,
    ProtocolError,
    Request,
    Result,
    SyncEntry,
    SyncFailure,
    decode,
    encode,
)

MAX_BYTES = 4096  # the live nodes' max_message_bytes: large messages are cheap to make
# PROP_EXAMPLES=5000 for a longer hunt.
SETTINGS = settings(
    max_examples=int(os.environ.get("PROP_EXAMPLES", "200")),
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)

# --- valid messages ------------------------------------------------------------------------------

node_ids = st.text(min_size=1, max_size=12) | st.text(min_size=1, max_size=128)
counts = st.integers(min_value=0, max_value=2**53)
millis = st.floats(min_value=0, max_value=MAX_MILLIS, allow_nan=False, allow_infinity=False) | st.integers(0, 10**7)
intervals = st.floats(min_value=MIN_INTERVAL, max_value=MAX_INTERVAL, allow_nan=False) | st.integers(10, 600_000)
walls = st.none() | st.floats(min_value=0, max_value=2.0**53, allow_nan=False) | st.integers(0, 2**53)
texts = st.text(max_size=40)
json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-(10**300) + 1, 10**300 - 1)
    | st.floats(allow_nan=False, allow_infinity=False) | texts,
    lambda children: st.lists(children, max_size=4) | st.dictionaries(texts, children, max_size=4),
    max_leaves=12,
)
entries = st.builds(SyncEntry, key=texts, value=json_values, version=counts, origin=node_ids, age=millis)
failures = st.builds(SyncFailure, key=texts, error_type=texts, message=texts, retry_in=millis, attempt=counts,
                     origin=node_ids)
members = st.builds(MemberEntry, id=node_ids, locks=st.booleans())
FIELDS: dict[str, st.SearchStrategy[Any]] = {
    "src": node_ids, "dst": node_ids, "origin": node_ids,
    "term": counts, "req": counts, "version": counts, "attempt": counts,
    "interval": intervals, "age": millis, "retry_in": millis, "sent": walls,
    "hidden": st.booleans(), "shared": st.booleans(), "running": st.booleans(),
    "key": texts, "flow": texts, "reason": texts, "error_type": texts, "message": texts,
    "value": json_values, "args": st.lists(json_values, max_size=4),
    "to": st.none() | st.lists(node_ids, max_size=4),
    "entries": st.lists(entries, max_size=3), "failures": st.lists(failures, max_size=3),
    "locks": st.booleans(), "successor": st.none() | node_ids, "members": st.lists(members, max_size=4),
    "stream": st.text(min_size=1, max_size=40), "listening": st.booleans(), "seq": counts,
    "event_id": st.text(max_size=40) | counts, "data": json_values,
    "status": st.sampled_from(["reconnecting", "error"]), "phase": st.sampled_from(["claim", "run", "release"]),
}


def message_strategy(cls: type, **overrides: st.SearchStrategy[Any]) -> st.SearchStrategy[Message]:
    strategies = {f.name: overrides.get(f.name, FIELDS[f.name]) for f in fields(cls)}
    if cls.TYPE == "invalidate":  # type: ignore[attr-defined]
        strategies["key"] = overrides.get("key", st.none() | texts)
    if cls.TYPE == "stream-listen":  # type: ignore[attr-defined]
        strategies["event_id"] = overrides.get("event_id", st.none() | FIELDS["event_id"])
    return st.builds(cls, **strategies)


messages = st.one_of([message_strategy(cls) for cls in MESSAGE_TYPES.values()])


@pytest.mark.parametrize("kind", sorted(MESSAGE_TYPES))
def test_every_message_type_round_trips(kind: str) -> None:
    @SETTINGS
    @given(message_strategy(MESSAGE_TYPES[kind]))
    def round_trip(message: Message) -> None:
        text = encode(message)
        assert isinstance(text, str) and json.loads(text)["type"] == kind
        assert decode(text) == message

    round_trip()


# --- invalid data -------------------------------------------------------------------------------

_ID_FIELDS = {"src", "dst", "origin", "successor"}
_COUNT_FIELDS = {"term", "req", "version", "attempt", "seq"}
_MILLIS_FIELDS = {"interval", "age", "retry_in", "sent"}
_FLAG_FIELDS = {"hidden", "shared", "running", "locks", "listening"}
_TEXT_FIELDS = {"key", "flow", "reason", "error_type", "message"}
_not_str = (st.integers() | st.floats(allow_nan=False) | st.booleans() | st.lists(st.integers(), max_size=2)
            | st.just({}))


def _bad_value(name: str, kind: str) -> st.SearchStrategy[Any]:
    """Values field ``name`` of a ``kind`` message must never accept."""
    if name in _ID_FIELDS:
        bad_id = _not_str | st.just("") | st.text(min_size=129, max_size=200) | st.just("\ud800")
        return bad_id if name == "successor" else bad_id | st.none()
    if name in _COUNT_FIELDS:
        return (st.integers(max_value=-1) | st.integers(min_value=2**53 + 1)
                | st.floats(allow_nan=False).filter(lambda x: x != int(x) if math.isfinite(x) else True)
                | st.booleans() | st.text() | st.none() | st.just([1]))
    if name in _MILLIS_FIELDS:
        too_long = {"interval": MAX_INTERVAL, "sent": 2.0**53}.get(name, MAX_MILLIS)
        bad = (st.floats(max_value=-1e-9, allow_nan=False, allow_infinity=False) | st.integers(max_value=-1)
               | st.floats(min_value=too_long * 1.001, allow_nan=False) | st.booleans() | st.text() | st.just({}))
        if name == "interval":
            bad = bad | st.floats(min_value=0, max_value=MIN_INTERVAL * 0.999)
        return bad if name == "sent" else bad | st.none()
    if name in _FLAG_FIELDS:
        return st.integers() | st.text() | st.none() | st.just([])
    if name in _TEXT_FIELDS:
        bad = st.integers() | st.booleans() | st.lists(st.text(), max_size=2) | st.just({}) | st.just("x\udfff")
        return bad if kind == "invalidate" else bad | st.none()
    if name == "args":
        return st.none() | st.integers() | st.text() | st.dictionaries(st.text(), st.integers(), max_size=2)
    if name == "stream":
        return _not_str | st.none() | st.just("") | st.text(min_size=1025, max_size=1100) | st.just("\ud800")
    if name == "event_id":
        bad = (st.integers(max_value=-1) | st.integers(min_value=2**53 + 1) | st.floats(allow_nan=False)
               | st.booleans() | st.text(min_size=257, max_size=300) | st.just("x\udfff") | st.just([1]) | st.just({}))
        return bad if kind == "stream-listen" else bad | st.none()
    if name in ("status", "phase"):
        return st.none() | st.integers() | st.just("open") | st.just("") | st.just(["run"])
    if name in ("value", "data"):
        return st.just(math.nan) | st.just(math.inf) | st.just({"deep": "\ud800"})
    if name == "to":
        return st.text() | st.integers() | st.just({}) | st.just([""]) | st.just([1]) | st.just(["a", None])
    if name == "members":
        member = {"id": "a", "locks": True}
        return st.sampled_from([
            None, {}, "x", 3, [1], [None], [{}], [{**member, "extra": 1}], [{"id": "a"}], [{**member, "id": ""}],
            [{**member, "locks": 1}], [member] * 257,
        ])
    if name in ("entries", "failures"):
        record = {"entries": {"key": "k", "value": 1, "version": 1, "origin": "o", "age": 0},
                  "failures": {"key": "k", "error_type": "E", "message": "m", "retry_in": 1, "attempt": 1,
                               "origin": "o"}}[name]
        return st.sampled_from([
            None, {}, "x", 3, [1], [None], [{}], [{**record, "extra": 1}],
            [{k: v for k, v in record.items() if k != "key"}], [{**record, "origin": ""}],
            [{**record, "key": 5}],
        ])
    raise AssertionError(f"no bad values for field {name!r}")


@st.composite
def corrupted_messages(draw: st.DrawFn, kind: str | None = None) -> str:
    """A valid message (of ``kind``), encoded, then broken in one way: a field, the header, or the text."""
    message = draw(messages if kind is None else message_strategy(MESSAGE_TYPES[kind]))
    body: dict[str, Any] = {"proto": PROTOCOL, "v": VERSION, "type": message.TYPE, **asdict(message)}
    for optional in ("to", "sent", "successor"):
        if body.get(optional, 0) is None and draw(st.booleans()):
            del body[optional]
    names = [f.name for f in fields(message)]
    how = draw(st.sampled_from(["field"] * 8 + ["missing", "extra", "proto", "version", "type",
                                                "not-object", "truncated", "too-large"]))
    if how == "field":
        name = draw(st.sampled_from(names))
        body[name] = draw(_bad_value(name, message.TYPE))
    elif how == "missing":
        required = [n for n in names if n not in ("to", "sent", "successor")]
        name = draw(st.sampled_from(required + ["proto", "v", "type"]))
        del body[name]
    elif how == "extra":
        name = draw(st.text(min_size=1, max_size=10).filter(lambda n: n not in body))
        body[name] = draw(json_values)
    elif how == "proto":
        body["proto"] = draw(st.text().filter(lambda p: p != PROTOCOL) | st.none() | st.integers())
    elif how == "version":  # another version of the page (2.0 is 2 in JSON: excluded)
        body["v"] = draw(st.sampled_from([0, 1, VERSION + 1, 99, -1, str(VERSION), None, True, [VERSION]]))
    elif how == "type":
        body["type"] = draw(st.text().filter(lambda t: t not in MESSAGE_TYPES) | st.none() | st.integers())
    elif how == "not-object":
        return json.dumps(list(body.values()), default=str)
    elif how == "truncated":
        text = json.dumps(body)
        return text[: draw(st.integers(0, len(text) - 1))]
    else:
        body["padding"] = "x" * MAX_BYTES
        return json.dumps(body)
    return json.dumps(body, allow_nan=True, ensure_ascii=draw(st.booleans()))


foreign_json = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(),
    lambda children: st.lists(children, max_size=5) | st.dictionaries(st.text(), children, max_size=5),
    max_leaves=20,
).map(lambda value: json.dumps(value, allow_nan=True))
foreign_data = st.one_of(
    foreign_json,  # any JSON (none of it says proto "pyflowmesh" with a valid body)
    st.text(),  # random text
    st.text(alphabet="{}[]\":,0123456789.-eEtrufalsn \\u", max_size=60),  # JSON-ish noise
    st.binary(),  # not text at all
    st.integers() | st.none() | st.lists(st.integers(), max_size=3),
    messages.map(lambda m: {"proto": PROTOCOL, "v": VERSION, "type": m.TYPE, **asdict(m)}),  # a dict, not text
    st.integers(MAX_BYTES + 1, 4 * MAX_BYTES).map(lambda n: '{"proto":"pyflowmesh","v":2,"type":"hello","src":"'
                                                  + "x" * n + '"}'),  # huge
    st.integers(100, 5000).map(lambda n: "[" * n + "]" * n),  # deeply nested
)
invalid_data = corrupted_messages() | foreign_data


@SETTINGS
@given(st.one_of(invalid_data, messages.map(encode), st.text(), st.binary(), st.floats()))
def test_decode_raises_nothing_but_protocol_error(raw: Any) -> None:
    try:
        decode(raw, MAX_BYTES)
    except ProtocolError as error:
        assert error.reason
    except Exception as error:  # pragma: no cover - the failure this test is for
        pytest.fail(f"decode raised {type(error).__name__}: {error}")


# --- a live node --------------------------------------------------------------------------------


def _config(strategy: str = "leader-follower") -> MeshConfig:
    return MeshConfig.from_options(channel="p", strategy=strategy, heartbeat=1000, max_message_bytes=MAX_BYTES)


def _send(node: MeshNode, message: Message, now: float) -> None:
    node.receive(encode(message), now)


def live_node(state: str) -> MeshNode:
    """A node in the middle of things: a cache, a back-off, flows in flight."""
    if state == "peer":
        node = MeshNode("peer-1", _config("peer-to-peer"))
        node.register_flow("user")
        node.start(0.0)
        _send(
            node,
            Result(src="other", key="user[9]", value={"n": 9}, version=1, origin="other", age=10.0, shared=True),
            1.0,
        )
        node.submit("user", (1,), 5.0)  # claiming
        node.tick(100.0)  # calling
        node.submit("user", (2,), 110.0)  # claiming
        _send(
            node, Coordinator(src="zz", term=3, interval=1000.0, hidden=False), 120.0
        )  # a leader message: peers ignore it
        return node
    node = MeshNode("node-m", _config())
    node.register_flow("user")
    node.start(0.0)
    if state == "leader":
        node.tick(60.0)  # stands
        node.tick(120.0)  # wins
        assert node.is_leader
        node.share_result("user[9]", {"n": 9}, 130.0)
        _send(
            node, Request(src="node-a", dst="node-m", req=1, key=cache_key("user", (1,)), flow="user", args=[1]), 140.0
        )  # calling for a
        node.submit("user", (2,), 150.0)  # calling for itself
        call = [e for e in node.take_effects() if type(e).__name__ == "StartCall"][-1]
        node.call_failed(call.call_id, ConnectionError("down"), 160.0)  # a back-off for user[2]
        node.submit("user", (3,), 170.0)  # calling
    else:
        _send(node, Coordinator(src="node-z", term=4, interval=1000.0, hidden=False), 10.0)
        assert node.role is Role.FOLLOWER
        _send(
            node,
            Result(src="node-z", key="user[9]", value={"n": 9}, version=1, origin="node-z", age=0.0, shared=True),
            20.0,
        )
        node.submit("user", (1,), 30.0)  # requested
        _send(
            node, Accept(src="node-z", dst="node-m", req=node.executes.table.by_key["user[1]"].req, key="user[1]"), 40.0
        )  # accepted
        node.submit("user", (2,), 50.0)  # requested
    return node


def observe(node: MeshNode, now: float) -> Any:
    """Everything about the node that a message could change (read without changing it)."""
    return (
        node.role,
        node.leader,
        node.term,
        node.left,
        node.next_deadline(),
        [(e.key, e.value, e.version, e.origin, e.age) for e in node.cache.snapshot(now)],
        node.backoffs(now),
        {
            key: (p.phase, p.target, p.req, p.call_id, tuple(p.waiters), frozenset(p.requesters), p.deadline)
            for key, p in node.executes.table.by_key.items()
        },
        node.stats.received,
        node.stats.sent,
    )


@pytest.mark.parametrize("state", ["leader", "follower", "peer"])
def test_live_nodes_are_in_the_states_the_properties_assume(state: str) -> None:
    node = live_node(state)
    assert node.role is {"leader": Role.LEADER, "follower": Role.FOLLOWER, "peer": Role.PEER}[state]
    assert len(node.pending_keys()) == 2 and len(node.cache) == 1
    if state == "leader":
        assert node.backoffs(200.0)


def _feed_invalid(state: str, batch: list[Any]) -> None:
    node = live_node(state)
    node.take_effects()
    now = 200.0
    before = observe(node, now)
    for count, raw in enumerate(batch, start=1):
        with pytest.raises(ProtocolError):  # the data must be invalid (else it's a validation gap)
            decode(raw, MAX_BYTES)
        node.receive(raw, now)  # an exception here fails the test
        assert node.stats.dropped == count
        assert node.take_effects() == []
        assert observe(node, now) == before
    assert sum(node.stats.drop_reasons.values()) == len(batch)


@pytest.mark.parametrize("kind", sorted(MESSAGE_TYPES))
def test_a_corrupted_message_never_raises_never_changes_a_node_and_counts_one_drop(kind: str) -> None:
    @SETTINGS
    @given(
        state=st.sampled_from(["leader", "follower", "peer"]),
        batch=st.lists(corrupted_messages(kind), min_size=1, max_size=4),
    )
    def feed(state: str, batch: list[Any]) -> None:
        _feed_invalid(state, batch)

    feed()


@SETTINGS
@given(state=st.sampled_from(["leader", "follower", "peer"]), batch=st.lists(foreign_data, min_size=1, max_size=5))
def test_foreign_data_never_raises_never_changes_a_node_and_counts_one_drop_each(state: str, batch: list[Any]) -> None:
    _feed_invalid(state, batch)


# Messages aimed at the live nodes' state: their keys, their IDs, their peers.
_near = {
    "src": st.sampled_from(["node-z", "node-a", "other", "zz", "node-n"]),
    "dst": st.sampled_from(["node-m", "peer-1", "node-a"]),
    "origin": st.sampled_from(["node-z", "node-m", "other", "peer-1"]),
    "key": st.sampled_from(["user[1]", "user[2]", "user[3]", "user[9]", "user", "x"]),
    "flow": st.sampled_from(["user", "other"]),
    "args": st.sampled_from([[1], [2], [3], [9], [], ["x"]]),
    "term": st.integers(0, 6),
    "req": st.integers(0, 4),
    "version": st.integers(0, 3),
    "to": st.none() | st.lists(st.sampled_from(["node-m", "peer-1", "node-a"]), max_size=2),
}
aimed_messages = st.one_of([message_strategy(cls, **_near) for cls in MESSAGE_TYPES.values()])


@SETTINGS
@given(
    state=st.sampled_from(["leader", "follower", "peer"]),
    batch=st.lists(messages | aimed_messages | aimed_messages, min_size=1, max_size=8),
    gaps=st.lists(st.floats(0, 5000), min_size=8, max_size=8),
)
def test_a_live_node_takes_any_valid_message_from_other_tabs_without_raising(
    state: str, batch: list[Message], gaps: list[float]
) -> None:
    node = live_node(state)
    now = 200.0
    for message, gap in zip(batch, gaps, strict=False):
        if message.src == node.node_id:
            continue  # our own ID: dropped as "own-id", tested elsewhere
        now += gap
        node.receive(encode(message), now)
        node.tick(now)
        node.take_effects()
        assert node.role in (Role.JOINING, Role.CANDIDATE, Role.WAITING, Role.FOLLOWER, Role.LEADER, Role.PEER)
