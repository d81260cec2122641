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
