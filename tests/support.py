"""Helpers for the CPython tests: simulated tabs on a MemoryHub, and waiting without wall-clock asserts."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

from pyflowmesh import FlowMesh
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
