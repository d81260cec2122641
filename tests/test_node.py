"""MeshNodes on the simulator's VirtualNetwork: the sans-I/O core needs no loop and no clock.

Every time here is virtual (milliseconds); nothing asserts wall-clock time.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import pytest

from pyflowmesh.core.config import MeshConfig
from pyflowmesh.core.effects import EFFECT_TYPES, Renamed
from pyflowmesh.core.election import Role
from pyflowmesh.core.node import MeshNode
from pyflowmesh.core.wire import Bye, Coordinator, decode, encode
from pyflowmesh.simulation import EchoServer, NetworkError, VirtualNetwork
from pyflowmesh.simulation.network import every_effect


def _network(ids: str, *, flows: tuple[str, ...] = (), locks: bool = True, **options: Any) -> VirtualNetwork:
    """Tabs with one-letter IDs, all opened at 0 (Bully elects the highest)."""
    config = MeshConfig.from_options({"channel": "unit", "heartbeat": 1000, **options})
    net = VirtualNetwork(1, config, locks=locks, log_posts=True)
    for node_id in ids:
        net.add_tab(0.0, node_id=node_id, flows=flows)
    return net


def _running_leaders(net: VirtualNetwork) -> list[str]:
    """The tabs that lead, among those not frozen (a frozen one cannot know yet)."""
    return [tab.id for tab in net.open_tabs if not tab.frozen and tab.node.role is Role.LEADER]


def _calls(net: VirtualNetwork) -> list[tuple[float, str, Any]]:
    assert isinstance(net.server, EchoServer)
    return net.server.calls


def test_the_highest_id_wins_a_cold_start_and_every_node_follows_it() -> None:
    net = _network("acb")
    net.run_until(2000.0)
    assert net.leaders() == ["c"] and net.leader() == "c"
    assert all(net.node(i).leader == "c" for i in "abc")


def test_a_late_joiner_with_a_higher_id_follows_the_live_leader() -> None:
    net = _network("ab")
    net.run_until(2000.0)
    net.add_tab(net.now, node_id="z")
    net.run_until(net.now + 5000.0)
    assert net.leaders() == ["b"] and net.node("z").leader == "b"


def test_a_leader_frozen_past_the_silence_limit_steps_down_on_thaw_and_serves_nothing_twice() -> None:
    net = _network("abc", flows=("f",))
    net.run_until(2000.0)
    assert net.leaders() == ["c"]
    net.freeze("c", at=net.now)  # frozen without warning (the CDP way)
    waiting = net.execute("a", "f", (1,), at=net.now)  # a request to the frozen leader
    net.run_until(net.now + 10_000.0)  # followers presume it dead, elect b, fall back, get their data
    assert _running_leaders(net) == ["b"]
    calls_before_thaw = len(_calls(net))
    assert calls_before_thaw == 1
    net.thaw("c", at=net.now)
    net.run_until(net.now + 5000.0)
    assert net.leaders() == ["b"] and all(net.node(i).leader == "b" for i in "abc")
    assert len(_calls(net)) == calls_before_thaw, "the thawed ex-leader served a request it had been relieved of"
    assert net.node("c").stats.stepped_down == 1
    ((_, caller, call),) = _calls(net)
    assert (caller, call.key) == ("a", "f[1]")  # a fell back, once
    assert waiting.outcome == "resolved" and waiting.source == "call" and waiting.value == {"key": "f[1]", "by": "a"}


def test_a_leader_told_of_its_freeze_hands_over_at_once_and_rejoins_as_follower() -> None:
    # Silence limit 150 s and no Web Locks: only the Bye can be quick.
    net = _network("abc", locks=False, heartbeat=60_000)
    net.run_until(1000.0)
    assert net.leaders() == ["c"]
    net.leave_for_bfcache("c", at=net.now)  # set_frozen(True), as for the back/forward cache
    net.run_until(net.now + 2000.0)
    assert net.posts is not None and any(type(m) is Bye and sender == "c" for _, sender, m in net.posts)
    assert _running_leaders(net) == ["b"]
    net.come_back("c", at=net.now)  # set_frozen(False)
    net.run_until(net.now + 2000.0)
    assert net.leaders() == ["b"] and net.node("c").leader == "b" and net.node("c").role is Role.FOLLOWER


def test_a_lesser_leader_steps_down_when_it_hears_a_greater_one() -> None:
    net = _network("ab", locks=False)  # (with Web Locks, nobody holding z's lock would unmask it at once)
    net.run_until(2000.0)
    assert net.leaders() == ["b"]
    intruder = Coordinator(src="z", term=net.node("b").term + 1, interval=1000.0, hidden=False)
    net.inject(encode(intruder), at=net.now)
    net.run_until(net.now + 10.0)  # every post arrives within 5 ms
    assert net.leaders() == [] and all(net.node(i).leader == "z" for i in "ab")
    assert decode(encode(intruder)) == intruder


def test_an_effect_the_network_cannot_carry_out_raises_instead_of_vanishing(monkeypatch: pytest.MonkeyPatch) -> None:
    @dataclass(frozen=True)
    class Mystery:
        note: str

    take_effects = MeshNode.take_effects
    monkeypatch.setattr(MeshNode, "take_effects", lambda self: [*take_effects(self), Mystery("?")])
    net = _network("ab")
    with pytest.raises(NetworkError, match="Mystery"):
        net.run_until(100.0)


def test_an_effect_table_must_handle_every_effect_of_the_core() -> None:
    def ignore(tab: Any, effect: Any) -> None:
        pass

    assert set(every_effect(dict.fromkeys(EFFECT_TYPES, ignore))) == set(EFFECT_TYPES)
    with pytest.raises(TypeError, match="Renamed"):
        every_effect({t: ignore for t in EFFECT_TYPES if t is not Renamed})
