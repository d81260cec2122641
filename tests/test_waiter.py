"""The future a waiting execute awaits (mesh.Waiter): asyncio's future protocol, woken by its wake function."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from support import async_test, leader_and_follower

from pyflowmesh import mesh as mesh_module
from pyflowmesh.mesh import Waiter
from pyflowmesh.transports.memory import MemoryHub


def recording_wake(log: list[str]) -> Any:
    """A wake function that runs the callback at once, as a microtask runs right after its resolver.

    Like a message handler in the browser, the resolver must run outside any task.
    """

    def wake(loop: asyncio.AbstractEventLoop, callback: Any, future: Waiter, context: Any) -> None:
        log.append("wake")
        if context is None:
            callback(future)
        else:
            context.run(callback, future)

    return wake


@async_test
async def test_a_task_awaiting_a_waiter_resumes_with_its_value_through_the_wake_function() -> None:
    log: list[str] = []
    waiter = Waiter(asyncio.get_running_loop(), recording_wake(log))
    task = asyncio.ensure_future(_await(waiter))
    await asyncio.sleep(0)  # the task now waits on the waiter
    assert not waiter.done()
    seen: list[bool] = []

    def handler() -> None:  # a loop callback, as a transport's message handler: no task is running
        waiter.set_result(("data", "mesh"))
        seen.append(task.done())  # the task already ran to its end inside the wake

    asyncio.get_running_loop().call_soon(handler)
    await asyncio.sleep(0.01)
    assert log == ["wake"] and seen == [True]
    assert await task == ("data", "mesh")
    assert waiter.result() == ("data", "mesh") and waiter.exception() is None
    with pytest.raises(asyncio.InvalidStateError):
        waiter.set_result(("again", "mesh"))


@async_test
async def test_an_error_reaches_the_awaiting_task() -> None:
    waiter = Waiter(asyncio.get_running_loop(), recording_wake([]))
    task = asyncio.ensure_future(_await(waiter))
    await asyncio.sleep(0)
    asyncio.get_running_loop().call_soon(waiter.set_exception, LookupError("gone"))
    with pytest.raises(LookupError, match="gone"):
        await task


@async_test
async def test_cancelling_the_awaiting_task_cancels_the_waiter_without_the_wake_function() -> None:
    log: list[str] = []
    waiter = Waiter(asyncio.get_running_loop(), recording_wake(log))
    with pytest.raises(TimeoutError):
        await asyncio.wait_for(_await(waiter), 0.01)
    assert waiter.cancelled() and log == []
    with pytest.raises(asyncio.CancelledError):
        waiter.result()
    assert not waiter.cancel()


@async_test
async def test_without_a_wake_function_it_wakes_the_task_like_an_asyncio_future() -> None:
    waiter = Waiter(asyncio.get_running_loop())
    task = asyncio.ensure_future(_await(waiter))
    await asyncio.sleep(0)
    waiter.set_result(7)
    assert not task.done()  # woken by loop.call_soon, not at once
    assert await task == 7
    done = Waiter(asyncio.get_running_loop())
    done.set_result(8)
    assert await done == 8  # resolved before anyone awaited it


def test_cpython_has_no_microtasks_so_the_mesh_wakes_with_call_soon() -> None:
    assert mesh_module._microtask is None  # _wake_soon falls back to loop.call_soon


async def _await(waiter: Waiter) -> Any:
    return await waiter


@async_test
async def test_an_execute_a_message_resolves_resumes_at_the_end_of_that_message_not_after_other_tasks() -> None:
    tabs, _, follower = await leader_and_follower(MemoryHub())
    for tab in tabs:
        tab.register("f", _one)
    order: list[str] = []
    handle = follower._on_message

    def on_message(data: Any) -> None:  # _Events calls it by name
        handle(data)
        if isinstance(data, str) and '"type":"result"' in data:
            order.append("message handled")

    follower._on_message = on_message  # type: ignore[method-assign]

    async def execute() -> None:
        assert await follower.run("f") == 1
        order.append("execute resumed")

    await asyncio.wait_for(execute(), 5)
    assert order == ["execute resumed", "message handled"]
    assert follower._wakes is None  # the input is over: a wake from the page's own calls takes the microtask


async def _one() -> int:
    return 1
