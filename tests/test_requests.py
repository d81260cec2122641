"""requests: a leader serves each key once, and declines what it should not serve."""

from __future__ import annotations

import json

from support import WallClock, clocked_node, leading_node

from pyflowmesh.core.wire import PROTOCOL, VERSION


def test_a_leader_declines_a_request_its_sender_stopped_waiting_for() -> None:
    from pyflowmesh.core.effects import Send, StartCall
    from pyflowmesh.core.wire import Decline, Request, encode

    clock = WallClock()
    leader = clocked_node("z", clock)
    leader.start(0.0)
    leader.tick(1000.0)  # no answer to its Hello: it stands
    leader.tick(2000.0)  # and wins
    assert leader.is_leader
    leader.take_effects()
    stalled = Request(src="a", dst="z", req=1, key="f", flow="f", args=[], sent=clock.wall - 5000)
    leader.receive(encode(stalled), 2100.0)
    effects = leader.take_effects()
    declines = [e.message for e in effects if isinstance(e, Send) and isinstance(e.message, Decline)]
    assert [d.reason for d in declines] == ["late"]
    assert not any(isinstance(e, StartCall) for e in effects)
    fresh = Request(src="a", dst="z", req=2, key="f", flow="f", args=[], sent=clock.wall - 10)
    leader.receive(encode(fresh), 2200.0)
    assert any(isinstance(e, StartCall) for e in leader.take_effects())


def test_request_and_invalidate_pairs_cannot_make_a_leader_run_unboundedly_many_calls() -> None:
    # MAX_SERVED bounds the keys a leader works on for others, but a call superseded by an
    # Invalidate leaves self.pending and stops counting: each Request + Invalidate pair (two
    # small posts of any script) starts one more concurrent API call.
    from pyflowmesh.core.effects import StartCall
    from pyflowmesh.core.requests import MAX_SERVED

    node = leading_node()
    started = 0
    for req in range(MAX_SERVED + 200):
        node.receive(json.dumps({"proto": PROTOCOL, "v": VERSION, "type": "request", "src": "x", "dst": "m",
                                 "req": req, "key": "f", "flow": "f", "args": []}), 2100.0)
        node.receive(json.dumps({"proto": PROTOCOL, "v": VERSION, "type": "invalidate", "src": "x", "key": "f"}),
                     2100.0)
        started += sum(isinstance(e, StartCall) for e in node.take_effects())
    assert started <= MAX_SERVED, f"{started} calls running at once, none of them ended"


def _leader_serving(*askers: str) -> tuple[object, int]:
    """A leader ``z`` running a call of ``f`` that ``askers`` asked for; the call's ID."""
    from pyflowmesh.core.effects import StartCall
    from pyflowmesh.core.wire import Request, encode

    clock = WallClock()
    leader = clocked_node("z", clock)
    leader.start(0.0)
    leader.tick(1000.0)
    leader.tick(2000.0)
    leader.take_effects()
    for n, asker in enumerate(askers):
        leader.receive(encode(Request(src=asker, dst="z", req=n + 1, key="f", flow="f", args=[],
                                      sent=clock.wall)), 2100.0)
    (call,) = [e for e in leader.take_effects() if isinstance(e, StartCall)]
    return leader, call.call_id


def test_a_withdrawn_request_cancels_the_call_once_no_tab_waits() -> None:
    from pyflowmesh.core.effects import CancelCall
    from pyflowmesh.core.wire import Withdraw, encode

    leader, call_id = _leader_serving("a", "b")
    leader.receive(encode(Withdraw(src="a", dst="z", req=1, key="f")), 2200.0)  # type: ignore[attr-defined]
    assert not any(isinstance(e, CancelCall) for e in leader.take_effects())  # b still waits
    leader.receive(encode(Withdraw(src="b", dst="z", req=2, key="f")), 2300.0)  # type: ignore[attr-defined]
    assert [e for e in leader.take_effects() if isinstance(e, CancelCall)] == [CancelCall(call_id)]
    assert leader.stats.calls_cancelled == 1  # type: ignore[attr-defined]
    assert leader.pending_keys() == []  # type: ignore[attr-defined]


def test_a_withdrawal_from_a_tab_that_did_not_ask_or_for_another_tab_changes_nothing() -> None:
    from pyflowmesh.core.effects import CancelCall
    from pyflowmesh.core.wire import Withdraw, encode

    leader, _ = _leader_serving("a")
    for forged in (Withdraw(src="x", dst="z", req=1, key="f"), Withdraw(src="a", dst="y", req=1, key="f"),
                   Withdraw(src="a", dst="z", req=1, key="other")):
        leader.receive(encode(forged), 2200.0)  # type: ignore[attr-defined]
        assert not any(isinstance(e, CancelCall) for e in leader.take_effects())  # type: ignore[attr-defined]
    assert leader.pending_keys() == ["f"] and leader.stats.calls_cancelled == 0  # type: ignore[attr-defined]
