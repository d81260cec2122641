"""port: the narrow view of the node its components get; transit time from the wall clock."""

from __future__ import annotations

from pyflowmesh.core.election import Role
from pyflowmesh.core.port import Port
from pyflowmesh.core.stats import MeshStats
from pyflowmesh.core.wire import MAX_MILLIS


def _port(wall: float | None) -> Port:
    return Port(stats=MeshStats(), send=lambda m: 0, emit=lambda e: None, wall=lambda: wall, me=lambda: "m",
                is_me=lambda i: i == "m", role=lambda: Role.PEER, leader=lambda: None, internal_error=lambda e: None)


def test_transit_is_the_wall_clock_difference_clamped_to_zero_and_a_day() -> None:
    port = _port(10_000.0)
    assert port.transit(9_000.0) == 1000.0
    assert port.transit(11_000.0) == 0.0  # a clock stepped back: never a negative age
    assert port.transit(10_000.0 - 10 * MAX_MILLIS) == MAX_MILLIS
    assert port.transit(None) == 0.0


def test_without_a_wall_clock_transit_counts_as_zero() -> None:
    assert _port(None).transit(1.0) == 0.0
