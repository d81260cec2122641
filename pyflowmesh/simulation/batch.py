"""Many seeds at once: :func:`run_many` runs each seed's plan and sums the reports up in a :class:`Summary`."""

from __future__ import annotations

import math
import multiprocessing
import time
from collections import Counter
from collections.abc import Callable, Iterable
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field

from .plan import FAULT_KINDS, RunPlan, plan
from .report import SimulationReport
from .scenario import run_plan

__all__ = ["Summary", "run_many"]


@dataclass
class Summary:
    """What :func:`run_many` checked, over every seed."""

    runs: int = 0
    strategies: Counter[str] = field(default_factory=Counter)
    locks: Counter[str] = field(default_factory=Counter)
    heartbeats: Counter[str] = field(default_factory=Counter)
    scopes: Counter[str] = field(default_factory=Counter)
    scope_checks: int = 0
    tabs_initial: int = 0
    tabs_opened: int = 0
    faults: Counter[str] = field(default_factory=Counter)
    events: Counter[str] = field(default_factory=Counter)
    executes: int = 0
    outcomes: Counter[str] = field(default_factory=Counter)
    calls: int = 0
    messages: int = 0
    deliveries: int = 0
    elections: int = 0
    dropped: int = 0
    stale_serves: int = 0
    max_served_age: float = -math.inf
    unsynced: int = 0
    failovers: dict[str, list[float]] = field(default_factory=lambda: {"on": [], "off": []})
    # (observed, bound, seed) of the worst run, and the worst observed/bound ratio
    convergence: tuple[float, float, int] = (0.0, 0.0, -1)
    convergence_ratio: float = 0.0
    fault_latency: tuple[float, float, int] = (0.0, 0.0, -1)
    settled_latency: tuple[float, float, int] = (0.0, 0.0, -1)
    settled_ratio: float = 0.0
    tab_ms: float = 0.0
    wall: float = 0.0
    failures: list[SimulationReport] = field(default_factory=list)

    def add(self, report: SimulationReport) -> None:
        plan = report.plan
        self.runs += 1
        if plan is not None:
            self.strategies[plan.strategy] += 1
            self.locks["on" if plan.locks else "off"] += 1
            self.heartbeats[f"{plan.heartbeat:.0f}ms"] += 1
            self.scopes["several" if len(plan.scopes) > 1 else "shared" if plan.scopes == (None,) else "one named"] += 1
            self.tabs_initial += plan.tabs
        self.scope_checks += report.scope_checks
        self.tabs_opened += report.tabs_opened
        self.faults.update(report.faults)
        self.events.update(report.events)
        self.executes += report.executes
        self.outcomes.update(report.outcomes)
        self.calls += report.calls
        self.messages += report.messages
        self.deliveries += report.deliveries
        self.elections += report.elections
        self.dropped += report.dropped
        self.stale_serves += report.stale_serves
        self.max_served_age = max(self.max_served_age, report.max_served_age)
        self.unsynced += report.unsynced
        self.failovers["on" if report.config.use_locks else "off"].extend(report.failovers)
        self.tab_ms += report.tab_ms
        bounds = report.bounds
        if report.convergence is not None and report.config.strategy == "leader-follower":
            if report.convergence >= self.convergence[0]:
                self.convergence = (report.convergence, bounds.convergence, report.seed)
            self.convergence_ratio = max(self.convergence_ratio, report.convergence / bounds.convergence)
        if report.max_fault_latency >= self.fault_latency[0]:
            self.fault_latency = (report.max_fault_latency, bounds.fault_execute, report.seed)
        if report.max_quiet_latency >= self.settled_latency[0]:
            self.settled_latency = (report.max_quiet_latency, bounds.quiet_execute, report.seed)
        self.settled_ratio = max(self.settled_ratio, report.max_quiet_latency / bounds.quiet_execute)
        if report.violations:
            self.failures.append(report)

    def lines(self) -> list[str]:
        def counts(counter: Counter[str]) -> str:
            return ", ".join(f"{name} {n}" for name, n in counter.most_common()) or "none"

        opened = self.tabs_opened
        conv, conv_bound, conv_seed = self.convergence
        fault, fault_bound, fault_seed = self.fault_latency
        quiet, quiet_bound, quiet_seed = self.settled_latency
        rate = self.tab_ms / 1000 / self.wall if self.wall else 0.0

        def spread(values: list[float]) -> str:
            if not values:
                return "none"
            ordered = sorted(values)
            return (f"{len(ordered)}, median {ordered[len(ordered) // 2]:,.0f} ms, "
                    f"99th percentile {ordered[int(len(ordered) * 0.99)]:,.0f} ms, max {ordered[-1]:,.0f} ms")
        return [
            f"runs: {self.runs} ({counts(self.strategies)}; Web Locks {counts(self.locks)}; "
            f"heartbeat {counts(self.heartbeats)}; tabs open in scopes: {counts(self.scopes)})",
            f"tabs: {opened} opened ({self.tabs_initial} at the start, {opened - self.tabs_initial} late joiners), "
            f"{self.tab_ms / 1000:,.0f} simulated tab-seconds",
            f"faults injected: {counts(self.faults)}",
            f"hardening seen: {counts(self.events)}",
            f"scopes: {self.faults['scope-switch']} switches; {self.scope_checks:,} values checked against the "
            "scope of the tab that cached, held or resolved them",
            f"executes: {self.executes} ({counts(self.outcomes)})",
            f"server calls: {self.calls}; messages sent: {self.messages:,}; deliveries: {self.deliveries:,}; "
            f"invalid messages dropped: {self.dropped:,}; elections started: {self.elections:,}",
            f"convergence after the faults (leader-follower): max {conv:,.0f} ms observed vs its bound "
            f"{conv_bound:,.0f} ms (seed {conv_seed}); worst observed/bound {self.convergence_ratio:.2f}",
            f"periods without one agreed leader (leader-follower): with Web Locks {spread(self.failovers['on'])}; "
            f"without {spread(self.failovers['off'])}",
            f"execute latency: fault phase ended by quiet start + {fault:,.0f} ms vs bound + {fault_bound:,.0f} ms "
            f"(seed {fault_seed}); once settled max {quiet:,.1f} ms vs bound {quiet_bound:,.1f} ms "
            f"(seed {quiet_seed}); worst observed/bound {self.settled_ratio:.2f}",
            f"known limitations seen: {self.stale_serves} executes served a value older than stale_time "
            f"(by up to {max(0.0, self.max_served_age):,.0f} ms; results queued for a frozen tab look new), "
            f"{self.unsynced} fresh entries no tab was bound to sync to a joiner",
            f"wall time: {self.wall:.1f} s; {rate:,.0f} simulated tab-seconds per second",
            f"violations: {len(self.failures)} failing seed(s)",
        ]


def run_many(
    seeds: Iterable[int],
    max_tabs: int = 50,
    strategy: str = "both",
    locks: bool | None = None,
    verbose: bool = False,
    progress: Callable[[SimulationReport], None] | None = None,
    faults: Iterable[str] = FAULT_KINDS,
    pathologies: Iterable[str] | None = None,
    workers: int = 1,
) -> Summary:
    """Run every seed's plan (:func:`plan`) and sum up the reports, in seed order.

    ``workers`` > 1 runs the seeds in that many processes (started afresh, not forked: the
    caller may have threads); a seed's run is the same wherever it runs.
    """
    summary = Summary()
    started = time.perf_counter()
    faults = tuple(faults)
    plans = [plan(seed, max_tabs, strategy, locks, faults, pathologies) for seed in seeds]
    if workers > 1 and len(plans) > 1:
        context = multiprocessing.get_context("spawn")
        with ProcessPoolExecutor(workers, mp_context=context) as pool:
            reports: Iterable[SimulationReport] = pool.map(_run, plans, [verbose] * len(plans), chunksize=4)
            _add_all(summary, reports, progress)
    else:
        _add_all(summary, (_run(planned, verbose) for planned in plans), progress)
    summary.wall = time.perf_counter() - started
    return summary


def _run(planned: RunPlan, verbose: bool) -> SimulationReport:
    return run_plan(planned, verbose=verbose)


def _add_all(summary: Summary, reports: Iterable[SimulationReport],
             progress: Callable[[SimulationReport], None] | None) -> None:
    for report in reports:
        summary.add(report)
        if progress is not None:
            progress(report)
