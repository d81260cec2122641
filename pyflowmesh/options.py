"""The options of one flow (``use_flow(fn, mesh=..., key=..., **options)``), checked once.

These are the options of AsyncFlowState's ``Flow``, each given its mesh meaning
(the README's "Flow options" says what each does across tabs). Python names are
snake_case; the TypeScript names are accepted too (``maxAttempts``, ``onSuccess``,
``persistKey`` ...), so pages ported from TypeScript work unchanged. Durations are
milliseconds. Anything wrong raises at ``use_flow``, naming the option: never later,
in the middle of an execute.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import field
from typing import Any, Literal

from .core.policy import BACKOFFS, MAX_ATTEMPTS, Backoff, CallPolicy
from .core.structs import dataclass  # @dataclass without its cost at import
from .core.values import check_flow_key
from .core.wire import MAX_MILLIS

__all__ = ["FlowOptions", "RetryOptions", "PollingOptions", "Concurrency", "PersistStorage", "UNSET"]

Concurrency = Literal["keep", "restart", "enqueue"]
CONCURRENCIES: tuple[str, ...] = ("keep", "restart", "enqueue")
PersistStorage = Literal["local", "session"]
MIN_POLL_INTERVAL = 10.0
MAX_INVALIDATES = 256


class _Unset:
    def __repr__(self) -> str:
        return "UNSET"

    def __bool__(self) -> bool:
        return False


UNSET: Any = _Unset()
"""``optimistic`` not given (``None`` is a valid optimistic value)."""

_CALLBACKS = ("on_start", "on_success", "on_error", "on_settled", "on_retry", "on_cancel")
_ALIASES = {
    "onStart": "on_start",
    "onSuccess": "on_success",
    "onError": "on_error",
    "onSettled": "on_settled",
    "onRetry": "on_retry",
    "onCancel": "on_cancel",
    "optimisticResult": "optimistic",
    "optimistic_result": "optimistic",
    "rollbackOnError": "rollback_on_error",
    "persistKey": "persist_key",
    "persistStorage": "persist_storage",
}
_RETRY_ALIASES = {"maxAttempts": "max_attempts", "shouldRetry": "should_retry"}
_POLLING_ALIASES = {"stopIf": "stop_if", "stopOnError": "stop_on_error"}
# Options of the mesh given to a flow by mistake: say where they belong.
_MESH_OPTIONS = {"stale_time", "staleTime", "channel", "heartbeat", "strategy", "scope", "share_cache", "shareCache",
                 "call_timeout", "callTimeout", "request_timeout", "requestTimeout"}


def _canonical(options: Mapping[str, Any], aliases: Mapping[str, str], what: str) -> dict[str, Any]:
    if not isinstance(options, Mapping):
        raise TypeError(f"{what} takes a dict, got {type(options).__name__}")
    merged: dict[str, Any] = {}
    for name, value in options.items():
        if not isinstance(name, str):
            raise TypeError(f"{what}: option names are str, got {name!r}")
        canonical = aliases.get(name, name)
        if canonical in merged:
            raise ValueError(f"{what}: option {canonical!r} is given twice (as {name!r} too)")
        merged[canonical] = value
    return merged


def _unknown(what: str, given: Mapping[str, Any], known: set[str], aliases: Mapping[str, str]) -> None:
    unknown = sorted(set(given) - known)
    if not unknown:
        return
    hint = ""
    if any(name in _MESH_OPTIONS for name in unknown):
        hint = "; mesh options (stale_time, heartbeat, channel ...) go in mesh={...}"
    raise ValueError(
        f"unknown {what} option(s) {', '.join(map(repr, unknown))}; known: {', '.join(sorted(known))} "
        f"(and the TypeScript names {', '.join(sorted(aliases))}){hint}"
    )


def _millis(name: str, value: Any, low: float = 0.0, *, optional: bool = True) -> float | None:
    if value is None and optional:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(f"{name} is a number of milliseconds, got {value!r}")
    millis = float(value)
    if not math.isfinite(millis) or not low <= millis <= MAX_MILLIS:
        raise ValueError(f"{name} must be between {low:g} and {MAX_MILLIS:g} ms, got {millis:g}")
    return millis


def _callable(name: str, value: Any) -> Callable[..., Any] | None:
    if value is None:
        return None
    if not callable(value):
        raise TypeError(f"{name} must be a function, got {value!r}")
    function: Callable[..., Any] = value
    return function


def _flag(name: str, value: Any) -> bool:
    if not isinstance(value, bool):
        raise TypeError(f"{name} is True or False, got {value!r}")
    return value


@dataclass(frozen=True)
class RetryOptions:
    """``retry={...}``: the calling tab tries again; every other tab just keeps waiting.

    Attributes:
        max_attempts: calls per execute, the first included (TS ``maxAttempts``).
        delay: milliseconds before the first retry.
        backoff: ``"fixed"``, ``"linear"`` or ``"exponential"`` growth of the delay.
        should_retry: ``fn(error, attempt) -> bool`` (may be async; TS ``shouldRetry``):
            whether this error, of attempt number ``attempt``, may be retried. It runs
            in the tab that calls; if it raises, the error is not retried.
    """

    max_attempts: int = 1
    delay: float = 1000.0
    backoff: Backoff = "fixed"
    should_retry: Callable[[BaseException, int], Any] | None = None

    @classmethod
    def parse(cls, value: Any) -> RetryOptions:
        given = _canonical(value, _RETRY_ALIASES, "retry")
        _unknown("retry", given, {"max_attempts", "delay", "backoff", "should_retry"}, _RETRY_ALIASES)
        attempts = given.get("max_attempts", 1)
        if isinstance(attempts, bool) or not isinstance(attempts, int):
            raise TypeError(f"retry max_attempts is an int, got {attempts!r}")
        if not 1 <= attempts <= MAX_ATTEMPTS:
            raise ValueError(f"retry max_attempts must be between 1 and {MAX_ATTEMPTS}, got {attempts}")
        backoff = given.get("backoff", "fixed")
        if backoff not in BACKOFFS:
            raise ValueError(f"retry backoff must be one of {', '.join(map(repr, BACKOFFS))}, got {backoff!r}")
        delay = _millis("retry delay", given.get("delay", 1000.0), optional=False)
        assert delay is not None
        return cls(attempts, delay, backoff, _callable("retry should_retry", given.get("should_retry")))


@dataclass(frozen=True)
class PollingOptions:
    """``polling={...}``: one tab of the mesh executes the flow every ``interval`` ms for all.

    Attributes:
        interval: milliseconds between the end of one poll and the start of the next.
        stop_if: ``fn(data) -> bool`` (TS ``stopIf``): polling stops, mesh-wide, once it
            is true of a poll's data.
        stop_on_error: a failing poll stops polling mesh-wide (TS ``stopOnError``; default
            true, as in the seed); false: the failure is shown and polling goes on.
        enabled: false turns polling off (as in the seed).
    """

    interval: float
    stop_if: Callable[[Any], Any] | None = None
    stop_on_error: bool = True
    enabled: bool = True

    @classmethod
    def parse(cls, value: Any) -> PollingOptions:
        given = _canonical(value, _POLLING_ALIASES, "polling")
        _unknown("polling", given, {"interval", "stop_if", "stop_on_error", "enabled"}, _POLLING_ALIASES)
        if "interval" not in given:
            raise ValueError("polling needs an 'interval' in milliseconds, e.g. polling={'interval': 5000}")
        interval = _millis("polling interval", given["interval"], MIN_POLL_INTERVAL, optional=False)
        assert interval is not None
        return cls(interval, _callable("polling stop_if", given.get("stop_if")),
                   _flag("polling stop_on_error", given.get("stop_on_error", True)),
                   _flag("polling enabled", given.get("enabled", True)))


@dataclass(frozen=True)
class FlowOptions:
    """Every option of one flow, checked. Build it with :meth:`parse` (TypeScript names allowed).

    Attributes:
        retry: retries in the calling tab (:class:`RetryOptions`), or ``None``.
        timeout: milliseconds the call may take, retries included; past it every waiting
            tab's execute raises :class:`~pyflowmesh.errors.FlowTimeoutError`.
        polling: :class:`PollingOptions`, or ``None``.
        on_start: ``fn(args)`` when an execute of this flow starts in this tab.
        on_success: ``fn(data)`` when it succeeds (``flow.source`` says whose call it was).
        on_error: ``fn(error)`` when it fails.
        on_settled: ``fn(data, error)`` after either.
        on_retry: ``fn(error, attempt, max_attempts)`` when this tab retries a call.
        on_cancel: ``fn()`` when ``flow.cancel()`` stops an execute.
        concurrency: what an execute does while this flow already runs one in this tab:
            ``"keep"`` (join it if the arguments are the same, else run beside it),
            ``"restart"`` (cancel it and run) or ``"enqueue"`` (run after it).
        debounce: run only the last of executes less than ``debounce`` ms apart.
        throttle: at most one execute per ``throttle`` ms; those between join the next.
        mutation: the flow changes data: never deduplicated or cached, always called.
        invalidates: flow keys whose data a successful mutation makes old, in every tab.
        optimistic: the data to show while a mutation runs: a value, or
            ``fn(previous_data, args)``; ``UNSET`` for none.
        rollback_on_error: put back the previous data when the optimistic execute fails.
        persist_key: keep the latest data in the browser under this name.
        persist_storage: ``"local"`` (``localStorage``, shared by the origin's tabs and
            kept across visits) or ``"session"`` (this tab's ``sessionStorage``).
    """

    retry: RetryOptions | None = None
    timeout: float | None = None
    polling: PollingOptions | None = None
    on_start: Callable[..., Any] | None = None
    on_success: Callable[..., Any] | None = None
    on_error: Callable[..., Any] | None = None
    on_settled: Callable[..., Any] | None = None
    on_retry: Callable[..., Any] | None = None
    on_cancel: Callable[..., Any] | None = None
    concurrency: Concurrency = "keep"
    debounce: float | None = None
    throttle: float | None = None
    mutation: bool = False
    invalidates: tuple[str, ...] = field(default=())
    optimistic: Any = UNSET
    rollback_on_error: bool = True
    persist_key: str | None = None
    persist_storage: PersistStorage = "local"

    @classmethod
    def parse(cls, options: Mapping[str, Any] | None = None, /, **kwargs: Any) -> FlowOptions:
        """Check ``options`` (a dict and/or keywords) and build the flow's options.

        Raises:
            ValueError: an unknown option, or a value outside what it allows.
            TypeError: a value of the wrong type.
        """
        given = _canonical({**(options or {})}, _ALIASES, "use_flow")
        for name, value in _canonical(kwargs, _ALIASES, "use_flow").items():
            if name in given:
                raise ValueError(f"use_flow: option {name!r} is given twice")
            given[name] = value
        known = {f for f in cls.__dataclass_fields__}
        _unknown("flow", given, known, _ALIASES)
        parsed: dict[str, Any] = {}
        if given.get("retry") is not None:
            parsed["retry"] = RetryOptions.parse(given["retry"])
        parsed["timeout"] = _millis("timeout", given.get("timeout"), 1.0)
        if given.get("polling") is not None:
            parsed["polling"] = PollingOptions.parse(given["polling"])
        for name in _CALLBACKS:
            parsed[name] = _callable(name, given.get(name))
        concurrency = given.get("concurrency", "keep")
        if concurrency not in CONCURRENCIES:
            raise ValueError(f"concurrency must be one of {', '.join(map(repr, CONCURRENCIES))}, got {concurrency!r}")
        parsed["concurrency"] = concurrency
        parsed["debounce"] = _millis("debounce", given.get("debounce"))
        parsed["throttle"] = _millis("throttle", given.get("throttle"))
        if parsed["debounce"] and parsed["throttle"]:
            raise ValueError("debounce and throttle exclude each other: a flow waits for a pause, or keeps a pace")
        parsed["mutation"] = _flag("mutation", given.get("mutation", False))
        parsed["invalidates"] = cls._invalidates(given.get("invalidates", ()), parsed["mutation"])
        parsed["optimistic"] = given.get("optimistic", UNSET)
        parsed["rollback_on_error"] = _flag("rollback_on_error", given.get("rollback_on_error", True))
        persist_key = given.get("persist_key")
        if persist_key is not None and (not isinstance(persist_key, str) or not persist_key):
            raise TypeError(f"persist_key is a non-empty str, got {persist_key!r}")
        parsed["persist_key"] = persist_key
        storage = given.get("persist_storage", "local")
        if storage not in ("local", "session"):
            raise ValueError(f"persist_storage must be 'local' or 'session', got {storage!r}")
        parsed["persist_storage"] = storage
        if parsed["mutation"] and (parsed.get("polling") is not None or persist_key is not None):
            raise ValueError("a mutation is neither polled nor persisted: it changes data, it does not show it")
        return cls(**parsed)

    @staticmethod
    def _invalidates(value: Any, mutation: bool) -> tuple[str, ...]:
        if isinstance(value, str):
            value = (value,)
        if not isinstance(value, (list, tuple)):
            raise TypeError(f"invalidates is a list of flow keys, got {value!r}")
        if value and not mutation:
            raise ValueError("invalidates= belongs to a mutation: "
                             "use_flow(save, ..., mutation=True, invalidates=[...])")
        if len(value) > MAX_INVALIDATES:
            raise ValueError(f"a mutation invalidates at most {MAX_INVALIDATES} flows, got {len(value)}")
        for key in value:
            check_flow_key(key)
        return tuple(value)

    def call_policy(self) -> CallPolicy | None:
        """What the core applies to this flow's calls (``None``: one attempt within ``call_timeout``)."""
        if self.retry is None and self.timeout is None:
            return None
        retry = self.retry or RetryOptions()
        return CallPolicy(max_attempts=retry.max_attempts, delay=retry.delay, backoff=retry.backoff,
                          timeout=self.timeout)
