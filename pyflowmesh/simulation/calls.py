"""Flow calls in virtual time: how a call that starts ends, as a server decides it.

The network runs each ``StartCall`` as a task and asks its :class:`CallServer` for a
:class:`CallPlan`: the outcome, and when it comes (or never: a hung call). The simulated
page's server (:class:`~.app.Server`) makes outages and misbehaving flow functions;
:class:`EchoServer` just answers.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Any, NamedTuple, Protocol

from ..core.effects import StartCall
from ..core.node import MeshNode
from .clock import quantize
from .tab import Tab

__all__ = ["CallOutcome", "CallPlan", "CallServer", "EchoServer"]


class CallOutcome(NamedTuple):
    """A call's outcome, as the runtime reports it.

    ``node`` is the node that started the call: after a scope switch the call's task is
    cancelled and the new node numbers its calls from 1 again, so an outcome of the old
    node must never reach the new one.
    """

    ok: bool
    value: Any  # the result, or the error raised
    key: str
    back_off: bool  # a failure a retry may fix (``call_failed(back_off=...)``)
    node: MeshNode


@dataclass(frozen=True, slots=True)
class CallPlan:
    """How a call that starts now ends: its outcome after ``duration`` ms, or never (``hangs``)."""

    outcome: CallOutcome
    duration: float
    hangs: bool = False
    note: str = ""  # for the trace: how the flow function misbehaves, if it does


class CallServer(Protocol):
    """What decides how each flow call ends (the flow functions and the API behind them)."""

    def start(self, tab: Tab, call: StartCall, now: float) -> CallPlan: ...


class EchoServer:
    """Every call succeeds after a random duration with ``{"key": key, "by": <the calling tab's ID>}``."""

    def __init__(self, rng: random.Random, duration: tuple[float, float]) -> None:
        self.rng = rng
        self.duration = duration
        self.calls: list[tuple[float, str, StartCall]] = []  # (start, tab ID, call) of every call

    def start(self, tab: Tab, call: StartCall, now: float) -> CallPlan:
        self.calls.append((now, tab.id, call))
        low, high = self.duration
        value = {"key": call.key, "by": tab.id}
        return CallPlan(CallOutcome(True, value, call.key, True, tab.node), quantize(self.rng.uniform(low, high)))


