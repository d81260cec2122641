"""Helpers for the CPython tests: simulated tabs on a MemoryHub, and waiting without wall-clock asserts."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from typing import Any

from pyflowmesh import FlowMesh
from pyflowmesh.core.config import MeshConfig
from pyflowmesh.core.effects import Send
from pyflowmesh.core.node import MeshNode
from pyflowmesh.core.wire import PROTOCOL, VERSION
from pyflowmesh.transports.memory import MemoryHub

HEARTBEAT = 100  # ms: fast protocol pace for tests; every bound below derives from it


async def until(condition: Callable[[], Any], limit: float = 5.0, what: str = "condition") -> None:
    """Wait until ``condition()`` is true. ``limit`` (s) only stops a broken test from hanging."""
    loop = asyncio.get_running_loop()
    give_up = loop.time() + limit
    while not condition():
        if loop.time() > give_up:
            raise AssertionError(f"gave up waiting for {what}")
        await asyncio.sleep(0.005)


def open_tabs(hub: MemoryHub, count: int, channel: str = "test-mesh", **options: Any) -> list[FlowMesh]:
    options.setdefault("heartbeat", HEARTBEAT)
    return [FlowMesh(channel, transport=hub.transport(), **options) for _ in range(count)]


def leaders(tabs: list[FlowMesh]) -> list[FlowMesh]:
    return [tab for tab in tabs if tab.is_leader and not tab.disposed]


def settled(tabs: list[FlowMesh]) -> bool:
    """Exactly one leader among the live tabs, and every live tab follows it."""
    live = [tab for tab in tabs if not tab.disposed]
    found = leaders(live)
    return len(found) == 1 and all(tab.leader_id == found[0].node_id for tab in live)


async def settle(tabs: list[FlowMesh]) -> FlowMesh:
    await until(lambda: settled(tabs), what="one leader followed by every tab")
    return leaders(tabs)[0]


async def leader_and_follower(hub: MemoryHub, **options: Any) -> tuple[list[FlowMesh], FlowMesh, FlowMesh]:
    """Two tabs on ``hub``, settled: both, the leader, the follower."""
    tabs = open_tabs(hub, 2, **options)
    leader = await settle(tabs)
    return tabs, leader, next(tab for tab in tabs if tab is not leader)


class Server:
    """A fake API that counts its calls and can be switched to failing."""

    def __init__(self, delay: float = 0.02) -> None:
        self.calls: list[tuple[Any, ...]] = []
        self.delay = delay
        self.down = False

    async def fetch(self, *args: Any) -> Any:
        self.calls.append(args)
        await asyncio.sleep(self.delay)
        if self.down:
            raise ConnectionError("server unavailable (503)")
        return {"args": list(args), "call": len(self.calls)}


def async_test(function: Callable[..., Any]) -> Callable[..., None]:
    """Run an ``async def`` test in a fresh event loop (no pytest-asyncio needed)."""
    import functools

    @functools.wraps(function)
    def run(*args: Any, **kwargs: Any) -> None:
        asyncio.run(asyncio.wait_for(function(*args, **kwargs), 30))

    return run


def post(hub: MemoryHub, **body: Any) -> None:
    """Put a hand-made message of our protocol on the channel, as any script of the origin could."""
    hub.post(json.dumps({"proto": PROTOCOL, "v": VERSION, **body}))


async def ends(awaitable: Any, what: str, limit: float = 10.0) -> Any:
    """Await ``awaitable``; ``limit`` (s) only stops a hang from hanging the suite."""
    task = asyncio.ensure_future(awaitable)
    done, _ = await asyncio.wait({task}, timeout=limit)  # not wait_for: a CallTimeoutError is a TimeoutError
    if not done:
        task.cancel()
        raise AssertionError(f"{what} never ended")
    return task.result()


# --- single nodes driven by hand ---------------------------------------------------------------


class WallClock:
    """A wall clock (``Date.now()`` in ms) that a test sets: ``clock.wall = ...``."""

    def __init__(self) -> None:
        self.wall = 1_700_000_000_000.0

    def __call__(self) -> float:
        return self.wall


def clocked_node(node_id: str, clock: WallClock, locks: bool = False, **options: Any) -> MeshNode:
    """A node of channel ``c`` (heartbeat 1000 ms unless given) with flow ``f`` and the wall clock ``clock``."""
    config = MeshConfig.from_options({"channel": "c", "heartbeat": 1000, **options})
    node = MeshNode(node_id, config, wall_clock=clock, locks=locks)
    node.register_flow("f")
    return node


def leading_node(node_id: str = "m", locks: bool = False, **options: Any) -> MeshNode:
    """A lone node that stood and won (heartbeat 1000 ms); ``locks``: its driver watches Web Locks."""
    node = clocked_node(node_id, WallClock(), locks, **options)
    node.start(0.0)
    node.tick(1000.0)
    node.tick(2000.0)
    assert node.is_leader
    node.take_effects()
    return node


def leader_with_an_entry() -> MeshNode:
    """A lone leader of channel ``x`` with flow ``f`` that holds an entry for key ``k``."""
    node = MeshNode("me", MeshConfig.from_options(channel="x", heartbeat=1000))
    node.register_flow("f")
    node.start(0.0)
    node.tick(100.0)
    node.tick(200.0)
    assert node.is_leader
    node.share_result("k", 1, 300.0)
    node.take_effects()
    return node


def route_sends(source: MeshNode, targets: list[MeshNode], now: float) -> list[Any]:
    """Deliver the Send effects of ``source`` to ``targets`` at ``now``; return its other effects."""
    others = []
    for effect in source.take_effects():
        if isinstance(effect, Send):
            for target in targets:
                target.receive(effect.data, now)
        else:
            others.append(effect)
    return others
