"""backoff: the shared back-off every tab honours after a failure, bounded against the wire."""

from __future__ import annotations

import asyncio

import pytest
from support import Server, async_test, ends, open_tabs, post, settle

from pyflowmesh import SharedFlowError, use_flow
from pyflowmesh.core.backoff import (
    MAX_ATTEMPT,
    MAX_BACKOFF_BYTES,
    MAX_ERROR_TEXT,
    MAX_ERROR_TYPE,
    Backoff,
    SharedBackoff,
)
from pyflowmesh.core.config import MeshConfig
from pyflowmesh.errors import SharedCallTimeoutError
from pyflowmesh.transports.memory import MemoryHub

CONFIG = MeshConfig(channel="c", error_backoff=1000.0, max_error_backoff=30_000.0)


def _backoff(until: float, attempt: int = 1, message: str = "down") -> Backoff:
    return Backoff(until, "ConnectionError", message, attempt, "a")


def test_delay_doubles_per_failure_up_to_the_maximum_without_overflow() -> None:
    shared = SharedBackoff(CONFIG, 64)
    assert [shared.delay(n) for n in (1, 2, 3, 5)] == [1000.0, 2000.0, 4000.0, 16_000.0]
    assert shared.delay(6) == shared.delay(MAX_ATTEMPT) == 30_000.0


def test_a_back_off_is_active_until_it_ends_and_says_so_in_its_error() -> None:
    shared = SharedBackoff(CONFIG, 64)
    shared.set("k", _backoff(5000.0))
    assert shared.active("k", 4999.0) is not None and shared.active("k", 5000.0) is None
    assert shared.holds("k")  # ended, still held (a Sync does not replace it)
    error = shared.error("k", shared.active("k", 1000.0), 1000.0)  # type: ignore[arg-type]
    assert isinstance(error, SharedFlowError) and error.retry_in == 4000.0 and error.origin == "a"
    timeout = Backoff(5000.0, "CallTimeoutError", "slow", 1, "a")
    assert isinstance(shared.error("k", timeout, 0.0), SharedCallTimeoutError)


def test_failures_count_until_a_result_and_restart_after_it() -> None:
    shared = SharedBackoff(CONFIG, 64)
    assert shared.next_attempt("k") == 1
    shared.set("k", _backoff(1000.0, attempt=1))
    assert shared.next_attempt("k") == 2
    shared.succeeded("k")
    assert shared.next_attempt("k") == 1 and not shared.holds("k")


def test_what_is_heard_from_the_wire_is_cut_to_the_bounds() -> None:
    heard = Backoff.heard(until=1.0, error_type="E" * 10_000, message="m" * 10_000, attempt=10**15, origin="x")
    assert len(heard.error_type) == MAX_ERROR_TYPE and len(heard.message) == MAX_ERROR_TEXT
    assert heard.attempt == MAX_ATTEMPT


def test_records_are_bounded_by_count_and_by_bytes_oldest_first() -> None:
    shared = SharedBackoff(CONFIG, 8)
    for i in range(20):
        shared.set(f"k{i}", _backoff(10_000.0))
    assert len(shared) == 8 and shared.attempts_held == 8
    assert not shared.holds("k0") and shared.holds("k19")
    big = SharedBackoff(CONFIG, 10_000)
    for i in range(2000):
        big.set(f"k{i}", _backoff(10_000.0, message="m" * MAX_ERROR_TEXT))
    held = sum(len(f.key) + len(f.message) + len(f.error_type) for f in big.snapshot(0.0))
    assert 0 < held <= MAX_BACKOFF_BYTES and big.holds("k1999")


@pytest.mark.parametrize("origin", [None, "a", "b"])
def test_a_snapshot_lists_the_back_offs_not_ended_with_their_time_left(origin: str | None) -> None:
    shared = SharedBackoff(CONFIG, 64)
    shared.set("live", _backoff(3000.0))
    shared.set("ended", _backoff(500.0))
    failures = shared.snapshot(1000.0, origin)
    assert [(f.key, f.retry_in) for f in failures] == ([] if origin == "b" else [("live", 2000.0)])


def test_ended_back_offs_are_forgotten_once_the_table_is_half_full() -> None:
    shared = SharedBackoff(CONFIG, 8)
    for i in range(5):
        shared.set(f"k{i}", _backoff(100.0))
    shared.expire(50.0)
    assert len(shared) == 5
    shared.expire(100.0)
    assert len(shared) == 0


# --- 1. a long outage, and a forged attempt count -------------------------------------------


@async_test
async def test_a_key_failing_eleven_hundred_times_in_a_row_still_ends_every_execute() -> None:
    hub, server = MemoryHub(), Server(delay=0)
    server.down = True
    (tab,) = open_tabs(hub, 1, error_backoff=1, max_error_backoff=1)
    flow = use_flow(server.fetch, tab, key="overnight")
    await settle([tab])
    for _ in range(1100):
        with pytest.raises((ConnectionError, SharedFlowError)):
            await ends(flow.execute(), "an execute during the outage")
        await asyncio.sleep(0.0011)  # past the back-off: the next execute calls again
    assert len(server.calls) > 1025  # past the count where the back-off used to overflow
    server.down = False
    await asyncio.sleep(0.002)
    assert (await ends(flow.execute(), "the execute after the outage"))["call"] == len(server.calls)
    assert tab.stats.internal_errors == 0


@async_test
async def test_a_forged_failure_with_a_huge_attempt_blocks_no_tab_past_the_maximum_back_off() -> None:
    hub, server = MemoryHub(), Server(delay=0)
    tabs = open_tabs(hub, 3, error_backoff=100, max_error_backoff=300)
    flows = [use_flow(server.fetch, tab, key="k") for tab in tabs]
    await settle(tabs)
    post(hub, type="failure", src="forger", key="k", error_type="Boom", message="forged", retry_in=86_400_000,
         attempt=2**53, shared=True)
    await asyncio.sleep(0.01)
    for flow in flows:
        with pytest.raises(SharedFlowError) as raised:
            await flow.execute()
        assert raised.value.retry_in <= 300
    await asyncio.sleep(0.35)
    await ends(asyncio.gather(*(flow.execute() for flow in flows)), "executes after the maximum back-off")
    assert len(server.calls) == 1
    # and the count adopted from the forgery still gives a sendable, bounded next failure
    server.down = True
    tabs[0].invalidate("k")
    await asyncio.sleep(0.01)
    with pytest.raises((ConnectionError, SharedFlowError)):
        await ends(flows[1].execute(), "an execute that fails after the forgery")
    await asyncio.sleep(0.02)
    assert all(t.stats.internal_errors == 0 and t.stats.too_large == 0 for t in tabs)
