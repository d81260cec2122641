"""MeshNode directly, in virtual time: the sans-I/O core needs no loop and no clock."""

from __future__ import annotations

from pyflowmesh.core.config import MeshConfig
from pyflowmesh.core.effects import Resolve, Send, StartCall
from pyflowmesh.core.election import Role
from pyflowmesh.core.node import MeshNode
from pyflowmesh.core.wire import Bye, Coordinator, decode


class Net:
    """Nodes on one channel; ``run`` delivers every message (in order) and fires due ticks."""

    def __init__(self, ids: list[str], **options: object) -> None:
        self.config = MeshConfig.from_options({"channel": "unit", "heartbeat": 1000, **options})
        self.now = 0.0
        self.nodes = {node_id: MeshNode(node_id, self.config) for node_id in ids}
        self.frozen: set[str] = set()
        self.backlog: dict[str, list[str]] = {node_id: [] for node_id in ids}
        self.sent: list[tuple[str, object]] = []
        self.calls: list[StartCall] = []
        self.resolved: dict[str, list[Resolve]] = {node_id: [] for node_id in ids}
        for node in self.nodes.values():
            node.start(self.now)

    def pump(self) -> None:
        moved = True
        while moved:
            moved = False
            for node_id, node in self.nodes.items():
                for effect in node.take_effects():
                    moved = True
                    if isinstance(effect, Send):
                        self.sent.append((node_id, effect.message))
                        for other_id, other in self.nodes.items():
                            if other_id == node_id:
                                continue
                            if other_id in self.frozen:
                                self.backlog[other_id].append(effect.data)
                            else:
                                other.receive(effect.data, self.now)
                    elif isinstance(effect, StartCall):
                        self.calls.append(effect)
                        node.call_succeeded(effect.call_id, {"by": node_id}, self.now)
                    elif isinstance(effect, Resolve):
                        self.resolved[node_id].append(effect)

    def run(self, until: float) -> None:
        self.pump()
        while True:
            due = [n.next_deadline() for i, n in self.nodes.items() if i not in self.frozen]
            soonest = min((d for d in due if d is not None), default=None)
            if soonest is None or soonest > until:
                break
            self.now = max(self.now, soonest)
            for node_id, node in self.nodes.items():
                deadline = node.next_deadline()
                if node_id not in self.frozen and deadline is not None and deadline <= self.now:
                    node.tick(self.now)
            self.pump()
        self.now = until

    def freeze(self, node_id: str, frozen: bool, notify: bool) -> None:
        node = self.nodes[node_id]
        if frozen:
            if notify:
                node.set_frozen(True, self.now)
                self.pump()
            self.frozen.add(node_id)
        else:
            self.frozen.discard(node_id)
            if notify:
                node.set_frozen(False, self.now)
            for data in self.backlog[node_id]:
                node.receive(data, self.now)
            self.backlog[node_id].clear()
            self.pump()

    def leaders(self) -> list[str]:
        """The nodes that lead, among those not frozen (a frozen one cannot know yet)."""
        return [i for i, n in self.nodes.items() if n.role is Role.LEADER and i not in self.frozen]


def test_the_highest_id_wins_a_cold_start_and_every_node_follows_it() -> None:
    net = Net(["a", "c", "b"])
    net.run(2000)
    assert net.leaders() == ["c"]
    assert all(node.leader == "c" for node in net.nodes.values())


def test_a_late_joiner_with_a_higher_id_follows_the_live_leader() -> None:
    net = Net(["a", "b"])
    net.run(2000)
    net.nodes["z"] = MeshNode("z", net.config)
    net.backlog["z"], net.resolved["z"] = [], []
    net.nodes["z"].start(net.now)
    net.run(net.now + 5000)
    assert net.leaders() == ["b"] and net.nodes["z"].leader == "b"


def test_a_leader_frozen_past_the_silence_limit_steps_down_on_thaw_and_serves_nothing_twice() -> None:
    net = Net(["a", "b", "c"])
    net.run(2000)
    assert net.leaders() == ["c"]
    for node in net.nodes.values():
        node.register_flow("f")
    net.freeze("c", True, notify=False)  # frozen without warning (the CDP way)
    net.nodes["a"].submit("f", (1,), net.now)  # a request to the frozen leader
    net.run(net.now + 10_000)  # followers presume it dead, elect b, fall back, get their data
    assert net.leaders() == ["b"]
    calls_before_thaw = len(net.calls)
    assert calls_before_thaw == 1
    net.freeze("c", False, notify=False)
    net.run(net.now + 5000)
    assert net.leaders() == ["b"] and all(node.leader == "b" for node in net.nodes.values())
    assert len(net.calls) == calls_before_thaw, "the thawed ex-leader served a request it had been relieved of"
    assert net.nodes["c"].stats.stepped_down == 1
    (call,) = net.calls
    assert [r.value for r in net.resolved["a"]] == [{"by": "a"}] and call.key == "f[1]"  # a fell back, once


def test_a_leader_told_of_its_freeze_hands_over_at_once_and_rejoins_as_follower() -> None:
    net = Net(["a", "b", "c"], heartbeat=60_000)  # silence limit 150 s: only the Bye can be quick
    net.run(1000)
    assert net.leaders() == ["c"]
    net.freeze("c", True, notify=True)
    assert any(isinstance(m, Bye) and sender == "c" for sender, m in net.sent)
    net.run(net.now + 2000)
    assert net.leaders() == ["b"]
    net.freeze("c", False, notify=True)
    net.run(net.now + 2000)
    assert net.leaders() == ["b"] and net.nodes["c"].leader == "b" and net.nodes["c"].role is Role.FOLLOWER


def test_a_lesser_leader_steps_down_when_it_hears_a_greater_one() -> None:
    net = Net(["a", "b"])
    net.run(2000)
    assert net.leaders() == ["b"]
    intruder = Coordinator(src="z", term=net.nodes["b"].term + 1, interval=1000.0, hidden=False)
    from pyflowmesh.core.wire import encode

    for node in net.nodes.values():
        node.receive(encode(intruder), net.now)
    net.pump()
    assert net.leaders() == [] and all(node.leader == "z" for node in net.nodes.values())
    assert decode(encode(intruder)) == intruder
