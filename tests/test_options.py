"""options.py: every Flow option checked once at use_flow, with its TypeScript name, and clear errors."""

from __future__ import annotations

from typing import Any

import pytest

from pyflowmesh import use_flow
from pyflowmesh.core.policy import CallPolicy
from pyflowmesh.options import UNSET, FlowOptions, PollingOptions, RetryOptions


def noop(*_: Any) -> None:
    return None


def test_defaults_are_todays_behaviour() -> None:
    options = FlowOptions.parse({})
    assert options == FlowOptions()
    assert options.concurrency == "keep" and options.retry is None and options.optimistic is UNSET
    assert options.call_policy() is None  # one attempt within the mesh's call_timeout


def test_typescript_names_are_accepted_everywhere() -> None:
    options = FlowOptions.parse({
        "retry": {"maxAttempts": 3, "delay": 200, "backoff": "exponential", "shouldRetry": noop},
        "polling": {"interval": 5000, "stopIf": noop, "stopOnError": False},
        "onStart": noop, "onSuccess": noop, "onError": noop, "onSettled": noop, "onRetry": noop, "onCancel": noop,
        "optimisticResult": 1, "rollbackOnError": False, "persistKey": "dash", "persistStorage": "session",
        "timeout": 3000,
    })
    assert options.retry == RetryOptions(3, 200.0, "exponential", noop)
    assert options.polling == PollingOptions(5000.0, noop, False)
    assert options.on_retry is noop and options.on_cancel is noop
    assert (options.optimistic, options.rollback_on_error) == (1, False)
    assert (options.persist_key, options.persist_storage) == ("dash", "session")
    assert options.call_policy() == CallPolicy(max_attempts=3, delay=200.0, backoff="exponential", timeout=3000.0)


def test_keywords_and_a_dict_may_be_mixed_but_not_repeated() -> None:
    assert FlowOptions.parse({"timeout": 10}, debounce=5).debounce == 5.0
    with pytest.raises(ValueError, match="given twice"):
        FlowOptions.parse({"on_start": noop, "onStart": noop})


@pytest.mark.parametrize(("options", "error", "match"), [
    ({"retries": 3}, ValueError, "unknown flow option.*'retries'"),
    ({"staleTime": 5}, ValueError, "mesh options .* go in mesh="),
    ({"retry": {"max_attempts": 0}}, ValueError, "max_attempts must be between 1 and 100"),
    ({"retry": {"max_attempts": 2.5}}, TypeError, "max_attempts is an int"),
    ({"retry": {"backoff": "quadratic"}}, ValueError, "backoff must be one of"),
    ({"retry": {"delay": -1}}, ValueError, "retry delay must be between"),
    ({"retry": {"tries": 3}}, ValueError, "unknown retry option"),
    ({"retry": 3}, TypeError, "retry takes a dict"),
    ({"timeout": 0}, ValueError, "timeout must be between 1"),
    ({"timeout": float("nan")}, ValueError, "timeout must be between"),
    ({"timeout": True}, TypeError, "timeout is a number"),
    ({"polling": {}}, ValueError, "polling needs an 'interval'"),
    ({"polling": {"interval": 1}}, ValueError, "polling interval must be between 10"),
    ({"on_success": "render"}, TypeError, "on_success must be a function"),
    ({"concurrency": "parallel"}, ValueError, "concurrency must be one of"),
    ({"debounce": 10, "throttle": 10}, ValueError, "exclude each other"),
    ({"invalidates": ["dashboard"]}, ValueError, "belongs to a mutation"),
    ({"mutation": 1}, TypeError, "mutation is True or False"),
    ({"mutation": True, "invalidates": 5}, TypeError, "list of flow keys"),
    ({"mutation": True, "polling": {"interval": 100}}, ValueError, "neither polled nor persisted"),
    ({"persist_key": ""}, TypeError, "persist_key is a non-empty str"),
    ({"persist_storage": "indexeddb"}, ValueError, "persist_storage must be"),
])
def test_bad_options_raise_at_use_flow_naming_the_option(options: dict[str, Any], error: type, match: str) -> None:
    with pytest.raises(error, match=match):
        FlowOptions.parse(options)
    with pytest.raises(error, match=match):
        use_flow(noop, None, key="bad", **options)


def test_a_mutation_names_the_flows_it_invalidates() -> None:
    options = FlowOptions.parse(mutation=True, invalidates="dashboard")
    assert options.invalidates == ("dashboard",)
    with pytest.raises(ValueError):
        FlowOptions.parse(mutation=True, invalidates=[""])


def test_the_flow_keeps_its_options() -> None:
    flow = use_flow(noop, None, key="kept", timeout=500, onError=noop)
    assert flow.options.timeout == 500.0 and flow.options.on_error is noop
