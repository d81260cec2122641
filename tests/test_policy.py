"""core/policy.py, and how the core applies it: retries in the calling tab, the flow's timeout."""

from __future__ import annotations

from typing import Any

import pytest
from support import leading_node

from pyflowmesh.core.effects import CallRetrying, CancelCall, Reject, StartCall
from pyflowmesh.core.node import MeshNode
from pyflowmesh.core.policy import MAX_ATTEMPTS, CallPolicy
from pyflowmesh.core.wire import MAX_MILLIS
from pyflowmesh.errors import CallTimeoutError, FlowTimeoutError


class Driven:
    """A lone leader with flow ``f`` of ``policy``, driven by hand: its effects, and a clock."""

    def __init__(self, node: MeshNode) -> None:
        self.node = node
        self.now = 2000.0
        self.effects: list[Any] = []

    @classmethod
    def leader(cls, policy: CallPolicy | None) -> Driven:
        node = leading_node()
        node.register_flow("f", policy)
        return cls(node)

    def submit(self, flow: str, args: tuple[Any, ...]) -> int:
        return self.node.submit("f", args, self.now)

    def _take(self) -> None:
        self.effects += self.node.take_effects()

    def of(self, kind: type) -> list[Any]:
        """The effects of ``kind`` so far, taken out."""
        self._take()
        found = [e for e in self.effects if isinstance(e, kind)]
        self.effects = [e for e in self.effects if not isinstance(e, kind)]
        return found

    def one(self, kind: type) -> Any:
        (found,) = self.of(kind)
        return found

    def fail(self, call_id: int, error: BaseException) -> None:
        self.node.call_failed(call_id, error, self.now)

    def advance(self, millis: float) -> None:
        self.now += millis
        self.node.tick(self.now)


def test_the_delay_grows_as_the_backoff_says() -> None:
    assert [CallPolicy(delay=100).retry_delay(n) for n in (1, 2, 3)] == [100, 100, 100]
    assert [CallPolicy(delay=100, backoff="linear").retry_delay(n) for n in (1, 2, 3)] == [100, 200, 300]
    assert [CallPolicy(delay=100, backoff="exponential").retry_delay(n) for n in (1, 2, 3)] == [100, 200, 400]
    assert CallPolicy(delay=MAX_MILLIS, backoff="exponential").retry_delay(MAX_ATTEMPTS) == MAX_MILLIS


def test_the_budget_is_the_flows_timeout_or_the_meshs_call_timeout() -> None:
    assert CallPolicy().budget(30_000) == 30_000
    assert CallPolicy(timeout=500).budget(30_000) == 500


@pytest.mark.parametrize("bad", [{"max_attempts": 0}, {"max_attempts": MAX_ATTEMPTS + 1}, {"delay": -1},
                                 {"backoff": "random"}, {"timeout": 0}, {"timeout": MAX_MILLIS * 2}])
def test_a_policy_out_of_bounds_is_refused(bad: dict[str, object]) -> None:
    with pytest.raises(ValueError):
        CallPolicy(**bad)  # type: ignore[arg-type]


def test_a_leader_retries_its_call_and_only_the_last_failure_rejects() -> None:
    node = Driven.leader(policy=CallPolicy(max_attempts=3, delay=100))
    waiter = node.submit("flow", ())
    first = node.one(StartCall)
    node.fail(first.call_id, ConnectionError("503"))
    retrying = node.one(CallRetrying)
    assert (retrying.attempt, retrying.max_attempts, retrying.delay) == (1, 3, 100)
    assert not node.of(Reject)
    node.advance(99)
    assert not node.of(StartCall)
    node.advance(1)
    second = node.one(StartCall)
    assert second.attempt == 2 and second.call_id != first.call_id
    node.fail(second.call_id, ConnectionError("503"))
    node.one(CallRetrying)
    node.advance(100)
    third = node.one(StartCall)
    node.fail(third.call_id, ConnectionError("503 again"))
    (rejected,) = node.of(Reject)
    assert rejected.waiter == waiter and str(rejected.error) == "503 again"
    assert node.node.stats.retries == 2 and node.node.stats.failed_calls == 1


def test_should_retry_saying_no_fails_at_once() -> None:
    node = Driven.leader(policy=CallPolicy(max_attempts=3, delay=100))
    node.submit("flow", ())
    node.node.call_failed(node.one(StartCall).call_id, ValueError("bad input"), node.now, retry=False)
    node.one(Reject)


def test_no_retry_is_started_that_the_timeout_would_cut_short() -> None:
    node = Driven.leader(policy=CallPolicy(max_attempts=5, delay=300, timeout=250))
    node.submit("flow", ())
    node.fail(node.one(StartCall).call_id, ConnectionError("503"))
    (rejected,) = node.of(Reject)
    assert isinstance(rejected.error, ConnectionError)


def test_the_flows_timeout_cancels_the_call_with_a_flow_timeout_error() -> None:
    node = Driven.leader(policy=CallPolicy(timeout=250))
    node.submit("flow", ())
    call = node.one(StartCall)
    node.advance(250)
    assert node.one(CancelCall).call_id == call.call_id
    (rejected,) = node.of(Reject)
    assert isinstance(rejected.error, FlowTimeoutError) and "timeout (250 ms)" in str(rejected.error)


def test_a_retry_the_timeout_would_cut_short_is_not_made_and_cancels_nothing() -> None:
    node = Driven.leader(policy=CallPolicy(max_attempts=3, delay=100, timeout=300))
    node.submit("flow", ())
    node.fail(node.one(StartCall).call_id, ConnectionError("503"))
    node.one(CallRetrying)
    node.advance(100)
    second = node.one(StartCall)
    node.advance(150)
    node.fail(second.call_id, ConnectionError("503 again"))  # a retry at 350 would pass the timeout (300)
    (rejected,) = node.of(Reject)
    assert not node.of(CancelCall) and str(rejected.error) == "503 again"


def test_an_attempt_running_at_the_timeout_is_cancelled() -> None:
    node = Driven.leader(policy=CallPolicy(max_attempts=3, delay=100, timeout=300))
    node.submit("flow", ())
    node.fail(node.one(StartCall).call_id, ConnectionError("503"))
    node.advance(100)
    second = node.one(StartCall)
    node.advance(200)
    assert node.one(CancelCall).call_id == second.call_id
    (rejected,) = node.of(Reject)
    assert isinstance(rejected.error, FlowTimeoutError) and "in 2 attempts" in str(rejected.error)
    node.node.call_succeeded(second.call_id, 1, node.now)  # a late outcome changes nothing
    assert node.node.take_effects() == []


def test_without_a_policy_the_mesh_call_timeout_still_applies() -> None:
    node = Driven.leader(policy=None)
    node.submit("flow", ())
    node.one(StartCall)
    node.advance(node.node.config.call_timeout)
    (rejected,) = node.of(Reject)
    assert type(rejected.error) is CallTimeoutError


def test_no_retry_starts_while_the_mesh_backs_off_after_another_calls_failure() -> None:
    from pyflowmesh.core.wire import Failure, encode
    from pyflowmesh.errors import SharedFlowError

    node = Driven.leader(policy=CallPolicy(max_attempts=3, delay=100))
    node.submit("flow", ())
    node.fail(node.one(StartCall).call_id, ConnectionError("503"))
    node.one(CallRetrying)
    # meanwhile another tab's call of the key failed for good: the shared back-off starts
    node.node.receive(encode(Failure(src="x", key="f", error_type="ServerDown", message="down", retry_in=1000.0,
                                     attempt=1, shared=True)), node.now + 10)
    node.advance(100)
    assert not node.of(StartCall)  # no call within the back-off
    (rejected,) = node.of(Reject)
    assert isinstance(rejected.error, SharedFlowError) and rejected.error.retry_in > 0


def test_a_superseded_calls_failure_starts_the_back_off_for_the_newer_calls_retry() -> None:
    # Simulator seed 3588: call 1 waits for its retry; an invalidation supersedes it and an
    # execute starts call 2; call 1's retry fails, then call 2's first attempt: call 2's retry
    # must not hit the server within the back-off that call 1's failure started.
    from pyflowmesh.errors import SharedFlowError

    node = Driven.leader(policy=CallPolicy(max_attempts=2, delay=100))
    node.submit("flow", ())
    node.fail(node.one(StartCall).call_id, ConnectionError("503"))
    node.one(CallRetrying)
    node.node.invalidate("f", node.now + 1)
    node.submit("flow", ())
    newer = node.one(StartCall)
    node.advance(100)
    older = node.one(StartCall)  # call 1's second attempt
    assert older.call_id != newer.call_id
    node.fail(older.call_id, ConnectionError("503"))
    (old_waiter,) = node.of(Reject)  # who waited on call 1 has its outcome
    assert isinstance(old_waiter.error, ConnectionError)
    node.fail(newer.call_id, ConnectionError("503"))
    node.one(CallRetrying)
    node.advance(100)
    assert not node.of(StartCall)  # no call within the back-off of the older call's failure
    (rejected,) = node.of(Reject)
    assert isinstance(rejected.error, SharedFlowError) and rejected.error.retry_in > 0
