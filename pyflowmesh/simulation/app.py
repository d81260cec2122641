"""The simulated page: its flows, the scopes its users log into, its mesh options, and how its flows fail."""

from __future__ import annotations

from typing import Any

from ..core.config import MeshConfig

__all__ = [
    "FLOWS", "OPTIONAL_FLOW", "PATHOLOGIES", "PATHOLOGY_WEIGHTS", "SCOPES", "FlowCancelled", "NotJSON", "ServerDown",
    "sim_config",
]

# The flows of the simulated page, with the arguments executes draw from: 6 cache keys.
FLOWS: dict[str, tuple[tuple[Any, ...], ...]] = {
    "user": ((1,), (2,), (3,)),
    "dashboard": ((),),
    "report": (("daily",), ("weekly",)),
    # Mutable arguments: a flow that mutates what it got must change nothing the mesh shares.
    "search": (([1, 2],), ({"q": "mesh", "tags": ["a"]},)),
}
OPTIONAL_FLOW = "report"  # some tabs (an older page) lack it: their leader declines it
# The scopes of the random runs: few, so that several tabs share each (None: the shared scope).
SCOPES: tuple[str | None, ...] = (None, "s0", "s1")


UNDECODABLE = b"/srv/k-\xff.json".decode("utf-8", "surrogateescape")  # a lone surrogate, as os.fsdecode makes


class ServerDown(ConnectionError):
    """What a flow call raises while the simulated server is down."""


class FlowCancelled(BaseException):
    """What a flow function raises when it awaited a task something else cancelled.

    It stands for ``asyncio.CancelledError`` (a ``BaseException``, not an ``Exception``),
    which the core may not import: the runtime reports it with ``call_failed``.
    """


class NotJSON:
    """A flow result that is not JSON data (a ``datetime``, a set...): the runtime's check fails."""


# Pathological flow functions (per call, in the fault phase): how a call may misbehave.
# cancelled: raises a BaseException (CancelledError); hang: never returns; huge: returns more than
# max_message_bytes; not-json: returns an object JSON cannot carry; big-int: returns an int too long
# for str(); mutate: changes the arguments it got, in place.
PATHOLOGIES = ("cancelled", "hang", "huge", "not-json", "big-int", "mutate")
PATHOLOGY_WEIGHTS = (2, 2, 1, 2, 1, 3)


def sim_config(strategy: str = "leader-follower", *, heartbeat: float = 1000.0, locks: bool = True,
               share_cache: bool = True) -> MeshConfig:
    """The config of a simulated run.

    With the default 5 s heartbeat every timeout is the library default. With a
    shorter heartbeat (faster virtual time) the timeouts that are not derived from
    the heartbeat are scaled with it: ``stale_time`` 5 beats and ``call_timeout`` 5 beats
    (calls take at most 200 ms here). ``hidden_timeout`` stays 75 s: it must
    outlast Chrome's once-a-minute timers, which the simulator models. Messages are
    limited to 64 KiB (``max_message_bytes``), so that the values and arguments too
    large for the channel that the faults make stay cheap to build.
    """
    if heartbeat == 5000.0:
        return MeshConfig.from_options(channel="sim", strategy=strategy, use_locks=locks, share_cache=share_cache)
    return MeshConfig.from_options(
        channel="sim", strategy=strategy, use_locks=locks, heartbeat=heartbeat, share_cache=share_cache,
        stale_time=5 * heartbeat, call_timeout=5 * heartbeat,
        error_backoff=heartbeat, max_error_backoff=10 * heartbeat, max_message_bytes=1 << 16,
    )
