"""The simulated page and the server behind it: its flows, the scopes its users log into, its mesh
options, and how its flow calls end (outages, and flow functions that misbehave)."""

from __future__ import annotations

import json
import math
import random
from collections import Counter, defaultdict
from typing import Any

from ..core.config import MeshConfig
from ..core.effects import StartCall
from ..core.policy import Backoff, CallPolicy
from ..core.values import check_json
from .calls import CallOutcome, CallPlan
from .clock import quantize
from .tab import Tab

__all__ = [
    "FLOWS", "OPTIONAL_FLOW", "PATHOLOGIES", "PATHOLOGY_WEIGHTS", "SCOPES", "FlowCancelled", "NotJSON", "Server",
    "ServerDown", "sim_config", "page_policies",
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


def page_policies(seed: int, heartbeat: float) -> dict[str, CallPolicy]:
    """The call policies of the simulated page's flows (``use_flow(..., retry=..., timeout=...)``).

    Drawn from the seed with an RNG of their own, so that the rest of a seed's run is as it
    was without them: "report" retries (2 or 3 attempts), "user" may retry and may have a
    timeout, "search" has a timeout of its own (a hung call gives a ``FlowTimeoutError``),
    "dashboard" keeps the defaults.
    """
    rng = random.Random(f"pyflowmesh-policies-{seed}")
    backoffs: tuple[Backoff, ...] = ("fixed", "linear", "exponential")

    def delay() -> float:
        return quantize(rng.uniform(0.05, 0.4) * heartbeat)

    policies = {
        "report": CallPolicy(max_attempts=rng.choice((2, 3)), delay=delay(), backoff=rng.choice(backoffs)),
        "search": CallPolicy(timeout=quantize(rng.uniform(1.0, 3.0) * heartbeat)),
    }
    if rng.random() < 0.7:
        policies["user"] = CallPolicy(max_attempts=rng.choice((1, 2, 3)), delay=delay(), backoff=rng.choice(backoffs),
                                      timeout=rng.choice((None, quantize(4.0 * heartbeat))))
    return policies


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


CallLog = tuple[float, str, bool, int, float, str, int, float]
"""A call as the server logs it: (start, tab ID, ok, call number, since when the calling tab waited for
the key, the scope digest it was called for, the tab's index, since when the tab was in that scope)."""


class Server:
    """The API behind the page's flows: every call's outcome and duration, and a log of them all.

    A call succeeds with ``{"key", "call", "at", "scope"}`` (the scope of the tab that called: the
    server answers as whoever is logged in), unless the server is ``down`` or the key is in
    ``keys_down`` (a :class:`ServerDown`), or, while ``pathology_rate`` says so, the flow function
    misbehaves in one of ``pathologies`` (:data:`PATHOLOGIES`).
    """

    def __init__(self, rng: random.Random, config: MeshConfig, call_duration: tuple[float, float],
                 faults: Counter[str]) -> None:
        self.rng = rng
        self.config = config
        self.call_duration = call_duration
        self.faults = faults  # the run's fault counts: each misbehaving call adds one
        self.down = False
        self.outages: list[list[float]] = []  # [start, end] of each outage (end inf while it lasts)
        self.keys_down: set[str] = set()  # keys whose endpoint is down (a long outage of one key)
        self.flaky: dict[str, int] = {}  # key -> how many of its next calls fail ("flaky" fault)
        self.call_count = 0
        self.calls: dict[str, list[CallLog]] = defaultdict(list)
        # Call ends reported to tabs: (time, True unless it failed with a back-off, scope digest)
        self.ends: dict[str, list[tuple[float, bool, str]]] = defaultdict(list)
        self.produced: dict[int, float] = {}  # call number -> when its response was produced
        self.given_up: set[int] = set()  # call numbers their tab's node gave up on (CancelCall)
        self.produced_values: dict[int, str] = {}  # call number -> the value returned, as JSON
        # Pathological flow functions: the chance that a call started before ``pathology_until``
        # misbehaves, and how (PATHOLOGIES, weighted).
        self.pathology_rate = 0.0
        self.pathology_until = math.inf
        self.pathologies: tuple[str, ...] = PATHOLOGIES
        self.pathology_weights: tuple[int, ...] = PATHOLOGY_WEIGHTS
        self.caller_mutation_rate = 0.0  # with pathologies: how often a caller mutates what it got

    def set_down(self, down: bool, now: float) -> None:
        """The server goes down (every call fails) or comes back."""
        self.down = down
        if down:
            self.faults["outage"] += 1
            self.outages.append([now, math.inf])
        elif self.outages and self.outages[-1][1] == math.inf:
            self.outages[-1][1] = now

    def give_up(self, tab: Tab, key: str) -> None:
        """The tab's node cancelled its latest call of ``key`` (nobody waits on it, or it timed out)."""
        for call in reversed(self.calls.get(key, ())):
            if call[1] == tab.id and call[3] not in self.given_up:
                self.given_up.add(call[3])
                return

    def calls_of(self, key: str, since: float = -math.inf) -> list[float]:
        """Start times of the calls of ``key`` since ``since``."""
        return [call[0] for call in self.calls.get(key, ()) if call[0] >= since]

    def start(self, tab: Tab, call: StartCall, now: float) -> CallPlan:
        """The flow function runs: it ends after a random duration, as the server and its pathology say."""
        self.call_count += 1
        number = self.call_count
        key = call.key
        ok = not self.down and key not in self.keys_down
        if ok and self.flaky.get(key, 0) > 0:  # a flaky endpoint: this call fails, a later one may not
            self.flaky[key] -= 1
            ok = False
        waiting = [r.start for r in tab.waiters.values() if r.key == key]
        self.calls[key].append((now, tab.id, ok, number, min(waiting, default=math.inf), tab.digest, tab.index,
                                tab.scope_since if tab.scope_since is not None else now))
        low, high = self.call_duration
        duration = quantize(self.rng.uniform(low, high))
        self.produced[number] = now + duration
        pathology = None
        if self.pathology_rate and now < self.pathology_until and self.rng.random() < self.pathology_rate:
            pathology = self.rng.choices(self.pathologies, self.pathology_weights)[0]
            self.faults[f"flow-{pathology}"] += 1
            if pathology == "mutate":  # the function mutates the arguments it got, in place
                for arg in call.args:
                    if isinstance(arg, list):
                        arg.append("mutated")
                    elif isinstance(arg, dict):
                        arg["mutated"] = number
        outcome: CallOutcome
        if pathology == "cancelled":
            error = FlowCancelled(f"the flow awaited a cancelled task (call {number})")
            outcome = CallOutcome(False, error, key, True, tab.node)
        elif ok:
            # The server answers as whoever is logged in: the value is the scope's own data.
            value: dict[str, Any] = {"key": key, "call": number, "at": now, "scope": tab.scope}
            if pathology == "huge":  # larger than any message may be, once encoded
                value["pad"] = "x" * (self.config.max_message_bytes + 1)
            elif pathology == "not-json":
                value["when"] = NotJSON()
            elif pathology == "big-int":
                value["big"] = 10 ** 5000
            try:  # what the runtime does with a result: a value that is not JSON data fails the call
                check_json(value, f"the result of flow {call.flow!r}")
            except TypeError as not_json:
                outcome = CallOutcome(False, not_json, key, False, tab.node)
            else:
                outcome = CallOutcome(True, value, key, True, tab.node)
                if pathology is None:
                    self.produced_values[number] = json.dumps(value, sort_keys=True)
        else:
            down = ServerDown(f"server down (call {number})")
            if number % 3 == 0:  # an undecodable file name (surrogateescape): UTF-8 cannot carry it
                down = ServerDown(f"server down (call {number}, {UNDECODABLE})")
            outcome = CallOutcome(False, down, key, True, tab.node)
        return CallPlan(outcome, duration, hangs=pathology == "hang", note=pathology or "")
