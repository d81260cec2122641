"""Mesh options (config.py): every option has a sane range, named in the error."""

from __future__ import annotations

import pytest

from pyflowmesh.core.config import MeshConfig


@pytest.mark.parametrize(
    ("option", "value", "message"),
    [
        ("heartbeat", 0.001, "'heartbeat' must be at least 10"),
        ("heartbeat", 1e300, "'heartbeat' must be at most 600000"),
        ("heartbeat", 0, "'heartbeat' must be > 0"),
        ("stale_time", -1, "'stale_time' must be >= 0"),
        ("call_timeout", 1e12, "'call_timeout' must be at most 8.64e\\+07"),
        ("max_entries", 0, "'max_entries' must be between 1 and"),
        ("max_message_bytes", 10, "'max_message_bytes' must be between 1024 and"),
        ("error_backoff", float("nan"), "'error_backoff' must be a number"),
    ],
)
def test_out_of_range_options_are_refused_naming_the_option(option: str, value: float, message: str) -> None:
    with pytest.raises((ValueError, TypeError), match=message):
        MeshConfig.from_options(channel="c", **{option: value})


def test_the_typescript_names_and_the_defaults_still_validate() -> None:
    config = MeshConfig.from_options({"channel": "c", "staleTime": 0, "maxEntries": 1, "heartbeat": 10})
    assert config.stale_time == 0 and config.max_entries == 1 and config.heartbeat == 10
    assert MeshConfig.from_options(channel="c") == MeshConfig("c")
