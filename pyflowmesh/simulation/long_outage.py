"""The "long-outage" fault: one key's endpoint down for hours, in a two-tab run of its own.

Over a thousand consecutive failures of one key (~9 virtual hours with the default config)
must keep every back-off within ``max_error_backoff`` and every execute ending, and the key
must work again once its endpoint is back. Two tabs keep the run cheap.
"""

from __future__ import annotations

from typing import Any

from ..core.values import cache_key
from ..errors import SharedFlowError
from .app import sim_config
from .invariants import last_error
from .records import ExecRecord, Violation
from .text import safe_repr
from .world import Simulation

__all__ = ["long_outage"]


def long_outage(seed: int, strategy: str, locks: bool, parent: Simulation, failures: int = 1100) -> list[Violation]:
    """Thousands of consecutive failures of one key: two tabs of the default config, the key's
    server down for ~9 virtual hours, an execute repeated as soon as each back-off ends.

    A run of its own (two tabs keep it cheap). Every execute ends, none is blocked past
    ``max_error_backoff``, no exception escapes; then the server comes back and the key works.
    """
    config = sim_config(strategy, heartbeat=5000.0, locks=locks)
    sim = Simulation(seed, config, locks=locks)
    first, second = sim.add_tab(0.0), sim.add_tab(0.0)
    key_args: tuple[Any, ...] = (1,)
    key = cache_key("user", key_args)
    sim.server.keys_down.add(key)
    limit = (config.effective_request_timeout + 2 * config.call_timeout + config.silence_limit(config.heartbeat, False)
             + config.claim_window + sim.call_duration[1] + 8 * sim.delay[1])
    executes: list[ExecRecord] = []
    open_: list[ExecRecord | None] = [None]  # the execute the driver waits for

    def next_execute(when: float) -> None:
        record = sim.execute(first if len(executes) % 2 else second, "user", key_args, at=when)
        record.on_end = on_end
        executes.append(record)
        open_[0] = record

    def on_end(record: ExecRecord) -> None:
        error = record.error
        retry = error.retry_in if isinstance(error, SharedFlowError) else 0.0
        if record.outcome == "rejected" and len(sim.server.calls[key]) < failures:
            next_execute(sim.now + min(retry, 10 * config.max_error_backoff) + 1.0)
        else:
            open_[0] = None

    next_execute(2000.0)
    while (waiting := open_[0]) is not None:
        sim.run_until(sim.now + config.max_error_backoff + limit)
        if waiting is open_[0]:
            break  # it hangs (reported below), or it ended without an outcome (raised)
    ended = sim.now
    sim.server.keys_down.discard(key)
    parent.faults["long-outage"] += 1
    last = sim.execute(first, "user", key_args, at=sim.now + config.max_error_backoff + 1.0)
    sim.run_until(sim.now + config.max_error_backoff + 1.0 + limit)
    violations = list(sim.violations)
    for record in sim.execs:
        if record.end is None or record.end - record.start > limit:
            violations.append(Violation(
                "execute", record.start, f"execute of {record.key!r} in tab {record.tab} "
                + ("never ended" if record.end is None else f"took {record.end - record.start:.1f}ms")
                + f" (bound {limit:.0f}ms), after {len(sim.server.calls[key])} consecutive failures of the key"))
    if last.outcome not in ("resolved", None):
        violations.append(Violation(
            "execute", last.start, f"{key!r} still fails ({safe_repr(last.error)}) once its server is back"))
    for tab in sim.tabs:
        errors = tab.node.stats.internal_errors
        if errors:
            violations.append(Violation(
                "internal-error", ended, f"tab {tab.id}: stats.internal_errors is {errors}{last_error(tab.node)}"))
    parent.faults["long-outage-failures"] += len(sim.server.calls[key])
    parent.events.update(sim.events)
    return [Violation(v.kind, v.time, f"long outage (its own 2-tab run, seed {seed}, "
                      f"{len(sim.server.calls[key])} failures over {ended / 3_600_000:.1f} h): {v.message}")
            for v in violations]
