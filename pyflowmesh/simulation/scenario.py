"""Random scenarios: one seed's tabs, faults and executes over a :class:`~.world.Simulation`, then the verdict.

A scenario has two phases. In the **fault phase** tabs open over the first two heartbeats,
executes come from random tabs, and faults (:data:`~.plan.FAULT_KINDS`) strike between one
heartbeat and ``quiet_at``. In the **quiet phase** nothing fails any more: every tab thaws
and shows, the server is up, a few tabs join, executes go on (bursts of one key included),
and the mesh must settle within the bounds the oracle derives. Then the oracle judges the
run (:meth:`~.invariants.Oracle.judge`).

The scenario only schedules and acts through the world's public methods; every random
choice comes from the world's one ``random.Random``, in a fixed order, so a seed
reproduces its run exactly.
"""

from __future__ import annotations

import copy
import math
import random
from collections.abc import Callable, Iterable, Sequence
from typing import Any

from ..core.election import Role
from ..core.values import cache_key
from ..core.wire import VERSION
from .app import FLOWS, MUTATIONS, OPTIONAL_FLOW, PATHOLOGIES, PATHOLOGY_WEIGHTS, SCOPES, NotJSON, sim_config
from .clock import quantize
from .hostile import deep, hostile_message
from .long_outage import long_outage
from .plan import FAULT_KINDS, FAULT_WEIGHTS, RunPlan
from .records import Bounds, ExecRecord
from .report import SimulationReport
from .tab import Tab
from .world import POLL_STREAMS, Simulation

__all__ = ["RandomScenario", "run", "run_plan"]

NOISE = (
    f'{{"proto":"pyflowmesh","v":{VERSION + 1},"type":"heartbeat","src":"future","term":99,"interval":1000,'
    '"hidden":false}',
    f'{{"proto":"pyflowmesh","v":{VERSION},"type":"coordinator","src":"x","term":"99"}}',
    '{"hello": "world"}', "not json at all", '[1,2,3]',
)
"""What a foreign script, or another version of the page, posts on the channel ("noise")."""


class RandomScenario:
    """The random scenario of one seed over ``sim``: :meth:`play` schedules it, runs it and judges it.

    Args:
        sim: the world, fresh (its random generator draws the whole scenario).
        tabs: how many tabs open at the start; late joiners come on top.
        kinds: the fault kinds to inject (of :data:`~.plan.FAULT_KINDS`).
        scopes: the scopes tabs open in, each drawn from these.
    """

    def __init__(self, sim: Simulation, tabs: int, kinds: Iterable[str], scopes: Sequence[str | None]) -> None:
        self.sim = sim
        self.rng = sim.rng
        self.config = config = sim.config
        self.tabs = tabs
        chosen = tuple(kinds)
        self.weights = [w for k, w in zip(FAULT_KINDS, FAULT_WEIGHTS, strict=True) if k in chosen]
        self.kinds = tuple(k for k in FAULT_KINDS if k in chosen)
        self.scopes = tuple(scopes)
        self.beat = config.heartbeat
        self.call_max, self.delay_max = sim.call_duration[1], sim.delay[1]
        # Timeline: tabs open over the first two beats; faults strike during the fault
        # phase [beat, quiet_at); then nothing fails any more and the mesh must settle.
        self.fault_start = self.beat
        self.quiet_at = quantize(self.fault_start + self.rng.uniform(6, 12) * self.beat)
        # Executes come from random tabs on a small set of keys, through both phases.
        self.keys = [(flow, args) for flow, choices in FLOWS.items() for args in choices]
        self.cancel_rate = 0.0  # how often a caller stops waiting ("cancel" fault)
        self.long_outage_seed: int | None = None  # the seed of the "long-outage" fault's run of its own
        # Mutations (a save, then the tab invalidates flows) are drawn from a generator of their own,
        # so that a run is the same as without them up to its first mutation.
        self.mutation_rng = random.Random(f"pyflowmesh-mutations-{sim.seed}")
        # A claim whose owner vanished lingers in the other tabs until its patience (the
        # visible silence limit) runs out: at most that long after the faults.
        self.claims_expired = self.quiet_at + config.silence_limit(config.heartbeat, False)

    def play(self) -> SimulationReport:
        """Both phases, and the oracle's verdict."""
        bounds = self.fault_phase()
        end_at = self.quiet_phase(bounds)
        return self.verdict(bounds, end_at)

    # --- the phases ---------------------------------------------------------------------------

    def fault_phase(self) -> Bounds:
        """Open the tabs, schedule the faults and the executes, and run up to the quiet phase.

        Returns the bounds the quiet phase is held to (they depend on what the faults did).
        """
        sim, rng, quiet_at = self.sim, self.rng, self.quiet_at
        sim.add_tab(0.0, flows=tuple(FLOWS), scope=self.start_scope())
        for _ in range(self.tabs - 1):
            sim.add_tab(rng.uniform(0, 2 * self.beat), flows=self.page_flows(), scope=self.start_scope())
        if self.kinds:
            for _ in range(rng.randint(1, 3 + self.tabs // 6)):
                self.fault(rng.choices(self.kinds, self.weights)[0], rng.uniform(self.fault_start, quiet_at))
        for _ in range(rng.randint(3, 8 + self.tabs // 3)):
            self.execute_at(rng.uniform(0, quiet_at), False)
        for _ in range(rng.randint(2, 4 + self.tabs // 2)):
            self.toggle_listening_at(rng.uniform(0, quiet_at))
        if self.kinds:
            sim.streams.server.fail_rate = rng.choice((0.0, 0.05, 0.3))
        for _ in range(self.mutation_rng.randint(0, 2)):
            self.mutate_at(self.mutation_rng.uniform(0, quiet_at))
        sim.at(quiet_at, self.end_the_faults)
        sim.run_until(quiet_at)
        sim.oracle.check_bounded("at the end of the fault phase")
        sim.oracle.check_held("at the end of the fault phase")
        return sim.oracle.bounds(self.call_max, self.delay_max)

    def quiet_phase(self, bounds: Bounds) -> float:
        """Watch the mesh settle, schedule the quiet phase's joiners and executes, and run until
        the mesh converged and every execute ended (up to the bounds). Returns the end time."""
        sim, rng, quiet_at, beat = self.sim, self.rng, self.quiet_at, self.beat
        sim.at(quiet_at, self.watch_settling)
        # The schedule of the quiet phase does not stretch for a forged leader: a mesh that gets
        # over it sooner ends sooner (below, the run goes on to the bound only while not converged).
        usual_convergence = sim.oracle.bounds(self.call_max, self.delay_max, forged_leaders=False).convergence
        quiet_span = usual_convergence + 2 * self.config.stale_time
        if "join" in self.kinds:
            for _ in range(rng.randint(0, 2)):
                sim.add_tab(quiet_at + rng.uniform(0, quiet_span), flows=self.page_flows(), scope=self.start_scope())
        for _ in range(rng.randint(3, 6 + self.tabs // 4)):
            self.execute_at(quiet_at + rng.uniform(0, quiet_span), True)
        for _ in range(rng.randint(0, 2)):
            self.burst_at(quiet_at + rng.uniform(0, quiet_span))
        for _ in range(rng.randint(0, 3)):
            self.toggle_listening_at(quiet_at + rng.uniform(0, quiet_span))
        for _ in range(self.mutation_rng.randint(0, 2)):
            self.mutate_at(quiet_at + self.mutation_rng.uniform(0, quiet_span))
        # Run past every scripted action and the convergence bound; then on while an
        # execute is open (a mutation's refetches too), up to the bound of the fault phase's executes.
        sim.run_until(quiet_at + max(quiet_span + bounds.quiet_execute, usual_convergence) + beat)
        converge_by = quiet_at + bounds.convergence + beat
        leader_follower = self.config.strategy == "leader-follower"
        while sim.now < converge_by and leader_follower and sim.oracle.converged_since is None:
            sim.run_until(min(sim.now + beat, converge_by))
        limit = quiet_at + bounds.fault_execute + beat
        while sim.now < limit and any(tab.waiters for tab in sim.open_tabs):
            sim.run_until(min(sim.now + beat, limit))
        return sim.now

    def verdict(self, bounds: Bounds, end_at: float) -> SimulationReport:
        """The end-of-run checks, the long outage's run if one was drawn, and the report."""
        sim = self.sim
        sim.oracle.check_bounded("at the end")
        sim.oracle.check_held("at the end")
        sim.oracle.check_invalidations()  # l. what every tab shows of a mutated flow includes the save
        if end_at >= self.quiet_at + self.config.max_error_backoff + 3 * self.beat:
            sim.streams.check_flowing(2 * self.beat)  # every listener has (nearly) the latest event
        # j. members: a few heartbeats more with nothing failing, then who lists whom.
        sim.run_until(end_at + 3 * self.beat + sim.lock_delay[1] + 4 * self.delay_max)
        sim.oracle.check_members(self.quiet_at)
        if self.long_outage_seed is not None:
            sim.violations.extend(long_outage(self.long_outage_seed, self.config.strategy, sim.locks, sim))
        return sim.oracle.judge(bounds, self.quiet_at, end_at)

    def end_the_faults(self) -> None:
        """The quiet phase starts: everything thaws and shows, the server is up."""
        sim = self.sim
        sim.set_server_down(False)
        sim.server.flaky.clear()
        sim.streams.server.fail_rate = 0.0
        for tab in list(sim.open_tabs):
            if tab.away:
                sim.come_back_now(tab)
            if tab.frozen:
                sim.thaw_now(tab)
            if tab.hidden:
                sim.show_now(tab)

    def settled(self) -> bool:
        """Converged (leader-follower), no execute of the fault phase open, no tab with work in progress."""
        sim = self.sim
        if sim.now < self.claims_expired:
            return False
        if self.config.strategy == "leader-follower" and sim.oracle.converged_since is None:
            return False
        if any(tab.waiters or sim.busy(tab) for tab in sim.open_tabs):
            return False
        return sim.calls_in_flight == 0

    def watch_settling(self) -> None:
        """Until the mesh settles, look every tenth of a beat. From then on the tight bounds apply: an
        execute ends within ``bounds.quiet_execute``, a result from the mesh is cached, a joiner is
        synced at once."""
        sim = self.sim
        if sim.oracle.settled_at == math.inf:
            if self.settled():
                sim.oracle.settled_at = sim.now
                sim.streams.checks.single_source = True  # from now on, one source per stream and scope
                sim.log(None, "settled")
            else:
                sim.at(sim.now + self.beat / 10, self.watch_settling)

    # --- the page and its users ----------------------------------------------------------------

    def page_flows(self) -> tuple[str, ...]:
        """The flows of a tab's page: now and then an older page without the optional flow."""
        if self.rng.random() < 0.15:
            return tuple(f for f in FLOWS if f != OPTIONAL_FLOW)
        return tuple(FLOWS)

    def start_scope(self) -> str | None:
        """The scope a tab opens in (no draw in a run of one scope)."""
        return self.scopes[0] if len(self.scopes) == 1 else self.rng.choice(self.scopes)

    @staticmethod
    def one_scope(tabs: Sequence[Tab]) -> str | None:
        """The digest of the one scope of ``tabs`` (``""`` for none), or ``None`` if they are of several
        (a run in one scope draws nothing more than before scopes existed)."""
        digests = {t.digest for t in tabs}
        return digests.pop() if len(digests) == 1 else "" if not digests else None

    def pick(self, prefer_leader: bool, unfrozen: bool = False, spare: bool = False) -> Tab | None:
        """A random open tab (a leader, if preferred and there is one); ``spare``: never the last one."""
        open_tabs = self.sim.open_tabs
        live = [t for t in open_tabs if not (unfrozen and t.frozen)]
        if spare and len(open_tabs) <= 1:
            return None  # keep one tab open
        if not live:
            return None
        if prefer_leader:
            leaders = [t for t in live if t.node.role is Role.LEADER]
            if leaders:
                return self.rng.choice(leaders)
        return self.rng.choice(live)

    def execute_in(self, tab: Tab, flow: str, args: tuple[Any, ...], quiet: bool) -> None:
        """The page executes ``flow(*args)`` now with its own copy of the arguments; maybe its caller cancels."""
        sim, rng = self.sim, self.rng
        args = copy.deepcopy(args)  # the caller's own objects: a flow may mutate them
        record = ExecRecord(tab.id, flow, args, cache_key(flow, args), sim.now, quiet=quiet)
        sim.execute_now(tab, record)
        if self.cancel_rate and rng.random() < self.cancel_rate / (3 if quiet else 1):
            sim.cancel(record, sim.now + quantize(rng.uniform(0, 2 * self.call_max)))

    def execute_at(self, when: float, quiet: bool) -> None:
        """At ``when`` a random running tab with the flow executes a random key."""
        flow, args = self.rng.choice(self.keys)

        def act() -> None:
            candidates = [t for t in self.sim.open_tabs if not t.frozen and flow in t.flows]
            if candidates:
                self.execute_in(self.rng.choice(candidates), flow, args, quiet)
        self.sim.at(when, act)

    def toggle_listening_at(self, when: float) -> None:
        """At ``when`` a random running tab starts listening to a stream (the ticker or a polled flow's),
        or (now and then) stops."""
        def act() -> None:
            candidates = [t for t in self.sim.open_tabs if not t.frozen and not t.away]
            if not candidates:
                return
            tab = self.rng.choice(candidates)
            # the ticker, or a polled flow (a stream family: one poller per flow and arguments)
            stream = self.rng.choice(("ticker", "ticker", *POLL_STREAMS))
            state = tab.node.streams.state(stream)
            if state is not None and state.listening and self.rng.random() < 0.4:
                self.sim.streams.unlisten_now(tab, stream)
            else:
                self.sim.streams.listen_now(tab, stream)
        self.sim.at(when, act)

    def mutate_at(self, when: float) -> None:
        """At ``when`` a random running tab saves (a mutation: the server changes data, unless it is
        down); once the save returns, the tab invalidates the flows it changed, if its page still runs
        in the same scope (``use_flow(save, mutation=True, invalidates=[...])``)."""
        sim, rng = self.sim, self.mutation_rng
        flows = rng.choice(MUTATIONS)
        duration = quantize(rng.uniform(*sim.call_duration))

        def save() -> None:
            candidates = [t for t in sim.open_tabs if not t.frozen and not t.away]
            if not candidates:
                return
            tab = rng.choice(candidates)
            node = tab.node
            sim.log(tab, f"save (invalidates {', '.join(flows)})")
            if sim.save():
                sim.at(sim.now + duration, lambda: sim.mutate_now(tab, flows) if tab.node is node else None)
        sim.at(when, save)

    def burst_at(self, when: float) -> None:
        """Several tabs execute one key within a few claim windows of each other; sometimes a tab
        joins meanwhile and executes it too, a few ms after it hears the mesh."""
        sim, rng, config = self.sim, self.rng, self.config
        flow, args = rng.choice(self.keys)
        spread = 4 * config.claim_window
        joiner = "join" in self.kinds and rng.random() < 0.5

        def act() -> None:
            # One scope's tabs (and joiners), so that they all wait for the same call.
            open_tabs = sim.open_tabs
            if self.one_scope(open_tabs) is None:
                scope = rng.choice(open_tabs).scope
            else:
                scope = open_tabs[0].scope if open_tabs else config.scope
            candidates = [t for t in open_tabs if flow in t.flows and t.scope == scope]
            joiner_config = config if scope == config.scope else config.with_options(scope=scope)
            for tab in rng.sample(candidates, min(len(candidates), rng.randint(2, 6))):
                def one(tab: Tab = tab) -> None:
                    if tab.alive and not tab.frozen:
                        self.execute_in(tab, flow, args, True)
                sim.at(sim.now + quantize(rng.uniform(0, spread)), one)
            # Joiners open a few ms apart once the key's owner calls, and execute at once: a
            # joiner missed the claims made before it opened (and the owner's replies to them).
            start = sim.now + config.claim_window + 2 * self.delay_max + quantize(rng.uniform(0, spread))
            for _ in range(rng.randint(2, 3) if joiner else 0):
                sim.faults["join"] += 1
                tab = sim.new_tab(None, tuple(FLOWS), joiner_config)
                start += quantize(rng.uniform(1.0, 2 * config.claim_window / 3))
                sim.at(start, lambda tab=tab: sim.open_now(tab))  # type: ignore[misc]
                settle = config.answer_timeout if config.strategy == "leader-follower" else 0.0
                sim.at(start + settle + quantize(rng.uniform(0.5, 3.0)),
                       lambda tab=tab: self.execute_in(tab, flow, args, True)  # type: ignore[misc]
                       if tab.alive and not tab.frozen else None)
        sim.at(when, act)

    # --- the faults, one method per kind -----------------------------------------------------

    def fault(self, kind: str, when: float) -> None:
        """Schedule one fault of ``kind`` at ``when`` (half of those that strike a tab prefer the leader)."""
        prefer_leader = self.rng.random() < 0.5
        self._faults[kind](self, when, prefer_leader)

    def crash_a_tab(self, when: float, prefer_leader: bool) -> None:
        def act() -> None:
            tab = self.pick(prefer_leader, spare=True)
            if tab:
                self.sim.crash_now(tab)
        self.sim.at(when, act)

    def hand_over(self, when: float, prefer_leader: bool) -> None:
        """The leader closes or crashes; half the time its named successor crashes with it."""
        sim, rng = self.sim, self.rng
        polite, both = rng.random() < 0.5, rng.random() < 0.5

        def act() -> None:
            leaders = [t for t in sim.open_tabs if t.node.role is Role.LEADER and not t.frozen]
            if not leaders or len(sim.open_tabs) <= 1:
                return
            leader = rng.choice(leaders)
            successor = sim.by_id.get(leader.node.successor or "")
            sim.faults["hand-over"] += 1
            sim.close_now(leader) if polite else sim.crash_now(leader)
            if both and successor is not None and successor.alive and len(sim.open_tabs) > 1:
                sim.faults["hand-over with the successor"] += 1
                sim.crash_now(successor)
        sim.at(when, act)

    def close_a_tab(self, when: float, prefer_leader: bool) -> None:
        def act() -> None:
            tab = self.pick(prefer_leader, unfrozen=True, spare=True)
            if tab:
                self.sim.close_now(tab)
        self.sim.at(when, act)

    def freeze_a_tab(self, when: float, prefer_leader: bool) -> None:
        """A tab is frozen for up to six beats (it thaws by the quiet phase)."""
        sim = self.sim
        length = self.rng.uniform(0.2, 6.0) * self.beat

        def act() -> None:
            tab = self.pick(prefer_leader, unfrozen=True)
            if tab:
                sim.freeze_now(tab)
                sim.at(min(sim.now + length, self.quiet_at), lambda: sim.thaw_now(tab))
        sim.at(when, act)

    def hide_a_tab(self, when: float, prefer_leader: bool) -> None:
        """A tab is hidden for up to ten beats, its timers throttled to once a second, ten seconds or minute."""
        sim = self.sim
        length = self.rng.uniform(1.0, 10.0) * self.beat
        period = self.rng.choice((1000.0, 10_000.0, 60_000.0))

        def act() -> None:
            tab = self.pick(prefer_leader)
            if tab:
                sim.hide_now(tab, period)
                sim.at(min(sim.now + length, self.quiet_at), lambda: sim.show_now(tab))
        sim.at(when, act)

    def open_a_tab(self, when: float, prefer_leader: bool) -> None:
        """A late joiner."""
        sim = self.sim
        sim.at(when, lambda: sim.faults.update(["join"]))
        sim.add_tab(when, flows=self.page_flows(), scope=self.start_scope())

    def take_the_server_down(self, when: float, prefer_leader: bool) -> None:
        """An outage of up to four beats (over by the quiet phase)."""
        self.sim.outage(when, min(when + self.rng.uniform(0.5, 4.0) * self.beat, self.quiet_at))

    def make_flows_misbehave(self, when: float, prefer_leader: bool) -> None:
        """Flow functions misbehave now and then in the fault phase (:data:`~.app.PATHOLOGIES`), and
        callers mutate what they got."""
        sim, server = self.sim, self.sim.server
        sim.faults["pathological"] += 1
        server.pathology_rate = max(server.pathology_rate, 0.1)
        server.caller_mutation_rate = 0.2
        server.pathology_until = self.quiet_at
        sim.oracle.allowed_errors.update(("FlowCancelled", "TypeError"))

    def post_hostile_messages(self, when: float, prefer_leader: bool) -> None:
        """A hostile or buggy script posts extreme messages of every type, a few times in the fault phase."""
        sim, rng = self.sim, self.rng
        sim.faults["hostile"] += 1

        def post() -> str:  # in the envelope of a live tab's scope, impersonating its tabs
            open_tabs = sim.open_tabs
            digest = self.one_scope(open_tabs)
            if digest is None:
                digest = rng.choice(open_tabs).digest
            return hostile_message(rng, [t.id for t in open_tabs if t.digest == digest], self.keys, digest)
        for _ in range(rng.randint(1, 4)):
            sim.inject(post, rng.uniform(self.fault_start, self.quiet_at), kind="hostile-post")

    def let_callers_cancel(self, when: float, prefer_leader: bool) -> None:
        """Callers stop waiting now and then (``asyncio`` cancel, ``wait_for``)."""
        self.sim.faults["cancel-callers"] += 1
        self.cancel_rate = max(self.cancel_rate, 0.3)

    def send_a_tab_to_the_bfcache(self, when: float, prefer_leader: bool) -> None:
        """A page leaves into the back/forward cache for up to eight beats."""
        sim = self.sim
        length = self.rng.uniform(0.2, 8.0) * self.beat

        def act() -> None:
            tab = self.pick(prefer_leader, unfrozen=True, spare=True)
            if tab:
                sim.leave_for_bfcache_now(tab)
                sim.at(min(sim.now + length, self.quiet_at), lambda: sim.come_back_now(tab))
        sim.at(when, act)

    def open_a_twin(self, when: float, prefer_leader: bool) -> None:
        """A second tab with a live tab's ID."""
        def act() -> None:
            tab = self.pick(prefer_leader, unfrozen=True)
            if tab:
                self.sim.add_twin(None, of=tab.id)
        self.sim.at(when, act)

    def execute_bad_arguments(self, when: float, prefer_leader: bool) -> None:
        """An execute whose arguments cannot be shared: a TypeError in its tab, or it ends as any other."""
        sim, rng, config = self.sim, self.rng, self.config
        sim.at(when, lambda: sim.faults.update(["bad-args"]))
        choice = rng.randrange(4)

        def act() -> None:
            candidates = [t for t in sim.open_tabs if not t.frozen]
            if not candidates:
                return
            tab = rng.choice(candidates)
            bad: Any = (10 ** 5000, "x" * (config.max_message_bytes + 16), deep(100), NotJSON())[choice]
            try:
                key = cache_key("search", (bad,))
            except (TypeError, ValueError):
                key = f"search[<{type(bad).__name__}>]"
            record = ExecRecord(tab.id, "search", (bad,), key, sim.now, bad_args=True)
            sim.execute_now(tab, record)
        sim.at(when, act)

    def plan_a_long_outage(self, when: float, prefer_leader: bool) -> None:
        """Thousands of failures of one key, in a run of its own after this one (:func:`~.long_outage.long_outage`)."""
        self.long_outage_seed = self.rng.getrandbits(32)

    def switch_scopes(self, when: float, prefer_leader: bool) -> None:
        """A login, logout or account switch: one tab, or every tab of its scope within a few beats;
        now and then while its page waits for data (an execute, and maybe its call, runs)."""
        sim, rng = self.sim, self.rng
        together = rng.random() < 0.3  # every tab of the scope (a cookie login is the browser's)
        rejoin = rng.random() < 0.15  # set_scope(same, forget=True): a full reset and rejoin
        spread = rng.uniform(0.0, 2.0) * self.beat  # the other tabs notice within this
        busy = rng.random() < 0.5  # the page was loading data: an execute (and maybe its call) runs
        flow, args = rng.choice(self.keys)
        delay = quantize(rng.uniform(0.0, self.call_max))

        def switch(tab: Tab) -> None:
            current = tab.scope
            target = current if rejoin else rng.choice([s for s in SCOPES if s != current])
            sim.switch_scope_now(tab, target)
            for other in [t for t in sim.open_tabs if t.scope == current and t is not tab] if together else ():
                at = sim.now + quantize(rng.uniform(0.0, spread))
                if at < self.quiet_at:
                    sim.at(at, lambda other=other: sim.switch_scope_now(other, target)  # type: ignore[misc]
                           if other.scope == current else None)

        def act() -> None:
            tab = self.pick(prefer_leader, unfrozen=True)
            if tab is None:
                return
            if not busy or flow not in tab.flows:
                switch(tab)
                return
            self.execute_in(tab, flow, args, False)
            if sim.now + delay < self.quiet_at:
                sim.at(sim.now + delay, lambda: switch(tab) if tab.alive and not tab.frozen else None)
            else:
                switch(tab)
        sim.at(when, act)

    def make_an_endpoint_flaky(self, when: float, prefer_leader: bool) -> None:
        """From ``when``, one key's next 1 to 4 calls fail (a flaky endpoint): flows that retry
        ride it out or fail after their last attempt; executes are made of it meanwhile."""
        sim, rng = self.sim, self.rng
        flow, key = self.random_key()
        failures = rng.randint(1, 4)

        def act() -> None:
            sim.faults["flaky"] += 1
            sim.server.flaky[key] = failures
            sim.log(None, f"{key} fails its next {failures} call(s)")

        sim.at(when, act)
        for _ in range(rng.randint(1, 3)):
            self.execute_key_at(flow, key, self.within_a_beat_after(when))

    def share_an_error(self, when: float, prefer_leader: bool) -> None:
        """At ``when`` a page shares a failure of one key it saw itself (``FlowMesh.share_error``);
        executes of that key come just before (some wait on a running call then) and after."""
        sim, rng = self.sim, self.rng
        flow, key = self.random_key()

        def act() -> None:
            candidates = [t for t in sim.open_tabs if not t.frozen and flow in t.flows]
            leaders = [t for t in candidates if t.node.role is Role.LEADER] if prefer_leader else []
            if candidates:
                sim.share_error_now(rng.choice(leaders or candidates), key)

        for _ in range(rng.randint(1, 3)):
            self.execute_key_at(flow, key, max(0.0, when - rng.uniform(0, self.call_max)))
        sim.at(when, act)
        self.execute_key_at(flow, key, self.within_a_beat_after(when))

    def random_key(self) -> tuple[str, str]:
        """A flow and the key of one of its arguments, picked at random."""
        flow = self.rng.choice(tuple(FLOWS))
        return flow, cache_key(flow, self.rng.choice(FLOWS[flow]))

    def within_a_beat_after(self, when: float) -> float:
        """A random moment within a heartbeat after ``when``, before the quiet phase."""
        return when + self.rng.uniform(0, max(0.0, min(self.beat, self.quiet_at - when)))

    def execute_key_at(self, flow: str, key: str, when: float) -> None:
        """An execute of ``key`` (of ``flow``) in a tab picked then."""
        args = next(a for a in FLOWS[flow] if cache_key(flow, a) == key)

        def act() -> None:
            candidates = [t for t in self.sim.open_tabs if not t.frozen and flow in t.flows]
            if candidates:
                self.execute_in(self.rng.choice(candidates), flow, args, False)

        self.sim.at(when, act)

    def post_noise(self, when: float, prefer_leader: bool) -> None:
        """A foreign script, or another version of the page, posts on the channel."""
        self.sim.inject(self.rng.choice(NOISE), when)

    _faults: dict[str, Callable[[RandomScenario, float, bool], None]] = {
        "crash": crash_a_tab, "close": close_a_tab, "freeze": freeze_a_tab, "throttle": hide_a_tab,
        "join": open_a_tab, "outage": take_the_server_down, "noise": post_noise,
        "pathological": make_flows_misbehave, "hostile": post_hostile_messages, "cancel": let_callers_cancel,
        "bfcache": send_a_tab_to_the_bfcache, "twin-id": open_a_twin, "bad-args": execute_bad_arguments,
        "long-outage": plan_a_long_outage, "scope-switch": switch_scopes, "hand-over": hand_over,
        "flaky": make_an_endpoint_flaky, "share-error": share_an_error,
    }


def run(
    seed: int,
    tabs: int | None = None,
    *,
    strategy: str = "leader-follower",
    faults: bool | Iterable[str] = True,
    locks: bool = True,
    heartbeat: float = 1000.0,
    share_cache: bool = True,
    pathologies: Iterable[str] | None = None,
    scopes: Sequence[str | None] = (None,),
    verbose: bool = False,
    from_plan: RunPlan | None = None,
) -> SimulationReport:
    """Run one random scenario of seed ``seed`` and check its invariants (never raises for a violation).

    Args:
        tabs: the tabs open at the start (default: from the seed, 2..50); late
            joiners come on top.
        strategy: ``"leader-follower"`` or ``"peer-to-peer"``.
        faults: ``True`` for every kind in :data:`~.plan.FAULT_KINDS`, ``False`` for none,
            or the kinds to inject.
        locks: model Web Locks (``peer_gone`` 40–90 ms after a watched tab vanishes).
        heartbeat: the mesh heartbeat; other timeouts follow (:func:`~.app.sim_config`).
        share_cache: the mesh option (results reach only the tabs that wait for them if ``False``).
        pathologies: how flow functions misbehave with the "pathological" fault (default: every
            kind of :data:`~.app.PATHOLOGIES`).
        scopes: the scopes tabs open in, each drawn from these (a "scope-switch" fault may
            take a tab to any of :data:`~.app.SCOPES`).
        verbose: keep an event trace in ``report.trace``.
        from_plan: the plan this run follows (it goes into the report).
    """
    config = sim_config(strategy, heartbeat=heartbeat, locks=locks, share_cache=share_cache)
    sim = Simulation(seed, config, locks=locks, verbose=verbose)
    if pathologies is not None:
        chosen = tuple(pathologies)
        server = sim.server
        server.pathology_weights = tuple(w for k, w in zip(PATHOLOGIES, PATHOLOGY_WEIGHTS, strict=True) if k in chosen)
        server.pathologies = tuple(k for k in PATHOLOGIES if k in chosen)
    if tabs is None:
        tabs = sim.rng.randint(2, 50)
    kinds = FAULT_KINDS if faults is True else () if faults is False else tuple(faults)
    report = RandomScenario(sim, tabs, kinds, scopes).play()
    report.plan = from_plan
    return report


def run_plan(planned: RunPlan, verbose: bool = False) -> SimulationReport:
    """Run one planned seed."""
    return run(planned.seed, planned.tabs, strategy=planned.strategy, locks=planned.locks,
               heartbeat=planned.heartbeat, share_cache=planned.share_cache, faults=planned.faults,
               pathologies=planned.pathologies, scopes=planned.scopes, verbose=verbose, from_plan=planned)
