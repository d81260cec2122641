"""values: what may cross the channel, and the keys of flows and executes."""

from __future__ import annotations

import math

import pytest

from pyflowmesh.core.values import (
    MAX_DEPTH,
    MAX_FLOW_KEY,
    MAX_INT_DIGITS,
    cache_key,
    check_flow_key,
    check_json,
    dump_json,
    flow_key_for,
    is_text,
    load_json,
)


@pytest.mark.parametrize("value", [None, True, 0, -1, 1.5, "é", [], {}, {"a": [1, {"b": None}]}, (1, 2),
                                   10**MAX_INT_DIGITS - 1])
def test_json_data_passes(value: object) -> None:
    check_json(value)


@pytest.mark.parametrize(("value", "says"), [
    ({1: "x"}, "root"), (math.nan, "root"), (math.inf, "root"), ({"a": {1, 2}}, "root['a']"),
    (object(), "root"), (b"bytes", "root"), ("\ud800", "surrogate"), (10**MAX_INT_DIGITS, "digits"),
])
def test_what_is_not_json_is_a_type_error_that_says_where(value: object, says: str) -> None:
    with pytest.raises(TypeError) as raised:
        check_json(value, "root")
    assert says in str(raised.value)


def test_nesting_is_bounded() -> None:
    deep: list[object] = []
    for _ in range(MAX_DEPTH):
        deep = [deep]
    check_json(deep)
    with pytest.raises(TypeError, match="nested deeper"):
        check_json([deep])


def test_canonical_text_is_equal_for_equal_data_and_loads_as_a_fresh_copy() -> None:
    assert dump_json({"b": 1, "a": [1, "é"]}) == dump_json({"a": [1, "é"], "b": 1}) == '{"a":[1,"é"],"b":1}'
    text = dump_json({"list": [1]})
    first, second = load_json(text), load_json(text)
    first["list"].append(2)
    assert second == {"list": [1]}


def test_is_text_refuses_only_what_utf8_cannot_carry() -> None:
    assert is_text("plain") and is_text("é€😀") and not is_text("a\udc80")


def test_cache_keys_are_canonical_and_never_collide_across_flows() -> None:
    assert cache_key("user", ()) == "user"
    assert cache_key("user", (1, "x")) == 'user[1,"x"]'
    assert cache_key("user", ({"b": 1, "a": 2},)) == cache_key("user", [{"a": 2, "b": 1}])
    # A flow whose own key ends with "]" is never "user" called with 1 (issue 8).
    assert cache_key("user[1]", ()) == "user[1][]" != cache_key("user", (1,))
    with pytest.raises(TypeError):
        cache_key("user", (object(),))


def test_flow_keys() -> None:
    def fetch() -> None: ...

    assert flow_key_for(fetch).endswith("test_flow_keys.<locals>.fetch")
    assert check_flow_key("k") == "k"
    with pytest.raises(TypeError):
        check_flow_key(1)
    for bad in ("", "x" * (MAX_FLOW_KEY + 1), "\ud800"):
        with pytest.raises(ValueError):
            check_flow_key(bad)
