"""Regression: deeply nested JSON on the channel must be dropped before it is parsed.

Found by the browser fault suite (tests/browser/test_faults.py, garbage on the channel):
under Pyodide 314, ``json.loads`` of a few thousand nested lists or objects overflows the
JS engine's stack before Python's recursion check fires. That is a fatal error of the
tab's whole Python runtime ("Pyodide has suffered a fatal error ... Maximum call stack
size exceeded"), not a ``RecursionError``, so one message from any same-origin script
took down the Python of every tab on the channel instead of being dropped and counted.
In CPython the same input only raised ``RecursionError`` (reason ``not-json``), which is
why the CPython tests never saw it. ``decode`` now measures the nesting first.
"""

from __future__ import annotations

import json

import pytest

from pyflowmesh.core import wire as p
from pyflowmesh.core.values import check_json
from pyflowmesh.transports.memory import MemoryHub


def _reason(raw: str) -> str:
    with pytest.raises(p.ProtocolError) as caught:
        p.decode(raw)
    return caught.value.reason


@pytest.mark.parametrize(
    "raw",
    [
        "[" * 100_000,
        "[" * 10_000 + "]" * 10_000,
        '{"a":' * 50_000 + "1" + "}" * 50_000,
        '{"proto":"pyflowmesh","v":1,"type":"hello","src":"x","deep":' + "[" * 5000 + "]" * 5000 + "}",
    ],
    ids=["unclosed-lists", "lists", "objects", "inside-a-message"],
)
def test_deep_nesting_is_dropped_as_too_deep_without_parsing(raw: str, monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(*args: object, **kwargs: object) -> None:
        raise AssertionError("json.loads must not see deeply nested input (fatal under Pyodide)")

    monkeypatch.setattr(json.JSONDecoder, "decode", refuse)  # json.loads and any decoder instance
    assert _reason(raw) == "too-deep"


def _deepest_value() -> list:
    """The most deeply nested list that check_json accepts."""
    value: list = []
    while True:
        deeper = [value]
        try:
            check_json(deeper)
        except TypeError:
            return value
        value = deeper


def test_the_deepest_shareable_value_still_crosses_in_every_message_that_carries_values() -> None:
    value = _deepest_value()
    messages = [
        p.Result(src="b", key="k", value=value, version=1, origin="b", age=0.0, shared=True),
        p.Sync(src="b", dst="a", entries=[p.SyncEntry(key="k", value=value, version=1, origin="b", age=0.0)], failures=[]),
        p.Request(src="a", dst="b", req=1, key="k", flow="f", args=value),  # the arguments are checked as one list
    ]
    for message in messages:
        assert p.decode(p.encode(message)) == message


def test_brackets_inside_strings_and_many_shallow_brackets_are_fine() -> None:
    in_strings = p.Result(src="b", key="k", value={"text": "[{" * 20_000, "quote": 'a "[" \\ ['}, version=1, origin="b", age=0.0, shared=True)
    assert p.decode(p.encode(in_strings)) == in_strings
    wide = p.Result(src="b", key="k", value=[[] for _ in range(20_000)], version=1, origin="b", age=0.0, shared=True)
    assert p.decode(p.encode(wide)) == wide


def test_a_member_counts_a_deep_message_as_dropped() -> None:
    import asyncio

    from pyflowmesh import FlowMesh

    async def run() -> None:
        hub = MemoryHub()
        mesh = FlowMesh("deep", transport=hub.transport(), heartbeat=100)
        mesh._on_message("[" * 100_000)
        mesh._on_message(json.dumps({"proto": "pyflowmesh"}) + "x")
        assert mesh.stats.drop_reasons["too-deep"] == 1
        assert mesh.stats.dropped == 2
        mesh.dispose()

    asyncio.run(run())
