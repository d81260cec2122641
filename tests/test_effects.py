"""effects: what the core asks its driver to do; values come out as fresh copies."""

from __future__ import annotations

import typing

from pyflowmesh.core import effects
from pyflowmesh.core.effects import EFFECT_TYPES, CacheUpdated, Resolve


def test_every_effect_of_the_union_is_listed_for_drivers() -> None:
    assert set(typing.get_args(effects.Effect)) == set(EFFECT_TYPES)


def test_a_resolved_or_cached_value_is_a_fresh_copy_at_each_access() -> None:
    for effect in (Resolve(1, '{"a":[1]}', "mesh"), CacheUpdated("k", '{"a":[1]}', "o")):
        first = effect.value
        first["a"].append(2)
        assert effect.value == {"a": [1]}
