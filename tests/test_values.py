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


def test_the_fast_path_of_check_json_accepts_nothing_that_the_full_check_refuses() -> None:
    # check_json tries _plain_json (exact built-in types, no path names) on every value a tab
    # receives; only the full _check may refuse, so the fast path must never accept more.
    from hypothesis import given, settings
    from hypothesis import strategies as st

    from pyflowmesh.core.values import MAX_DEPTH, _check, _plain_json

    scalars = st.one_of(st.none(), st.booleans(), st.floats(), st.sampled_from([math.nan, math.inf, -math.inf]),
                        st.integers(min_value=-(10**310), max_value=10**310) | st.sampled_from([10**300, -(10**300)]),
                        st.text(alphabet=st.characters(blacklist_categories=()), max_size=5) | st.just("\ud800"))
    values = st.recursive(scalars, lambda inner: st.lists(inner, max_size=3) | st.tuples(inner)
                          | st.dictionaries(st.text(max_size=3) | st.just("\udfff"), inner, max_size=3), max_leaves=12)

    def deep(value: object, levels: int) -> object:
        for _ in range(levels):
            value = [value]
        return value

    @settings(max_examples=400, deadline=None)
    @given(values, st.integers(min_value=0, max_value=MAX_DEPTH + 2))
    def fast_never_accepts_more(value: object, levels: int) -> None:
        nested = deep(value, levels)
        if _plain_json(nested, 0):
            _check(nested, "v", 0)  # raises if the fast path accepted what the full check refuses

    fast_never_accepts_more()
