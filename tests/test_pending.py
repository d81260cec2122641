"""pending: the phases of a key a tab works on, changed in one place against one table."""

from __future__ import annotations

import pytest

from pyflowmesh.core.config import MeshConfig
from pyflowmesh.core.pending import ANY_WAIT, NEVER, TRANSITIONS, PendingTable, Phase

CONFIG = MeshConfig(channel="c", heartbeat=1000.0, call_timeout=5000.0)


def test_every_phase_has_a_row_and_a_call_in_progress_never_changes_phase() -> None:
    assert set(TRANSITIONS) == set(Phase)
    assert TRANSITIONS[Phase.CALLING] == frozenset()
    assert TRANSITIONS[Phase.CLAIMING] == {Phase.CALLING, Phase.FOLLOWING_CLAIM}


@pytest.mark.parametrize("start", list(Phase))
@pytest.mark.parametrize("target", list(Phase))
def test_enter_allows_exactly_the_listed_changes(start: Phase, target: Phase) -> None:
    table = PendingTable(CONFIG)
    pending = table.new("k", "f", "[]", 0.0)
    pending.phase = start
    if target is start or target in TRANSITIONS[start]:
        table.enter(pending, target, 10.0, "t")
        assert (pending.phase, pending.target) == (target, "t")
    else:
        with pytest.raises(RuntimeError, match="illegal phase change"):
            table.enter(pending, target, 10.0)
        assert pending.phase is start


def test_waiting_on_others_never_outlasts_patience_but_calls_and_claims_keep_their_deadline() -> None:
    table = PendingTable(CONFIG)
    pending = table.new("k", "f", "[1]", 100.0)
    assert pending.patience == 100.0 + CONFIG.effective_request_timeout + CONFIG.call_timeout + CONFIG.heartbeat
    for phase in ANY_WAIT:
        table.enter(pending, phase, NEVER)
        assert pending.deadline == pending.patience
    table.enter(pending, Phase.CLAIMING, pending.patience + 1)
    assert pending.deadline == pending.patience + 1


def test_the_table_gives_fresh_ids_drops_by_identity_and_knows_the_soonest_deadline() -> None:
    table = PendingTable(CONFIG)
    assert len({table.new_id() for _ in range(100)}) == 100
    first = table.by_key["k"] = table.new("k", "f", "[]", 0.0)
    first.deadline = 50.0
    running = table.new("k", "f", "[]", 0.0)
    running.deadline = 20.0
    table.by_call[7] = running  # a superseded call still times out
    assert table.deadline() == 20.0
    table.drop(running)  # not the one held under "k": nothing happens
    assert table.by_key["k"] is first
    table.drop(first)
    assert "k" not in table.by_key


def test_args_are_a_fresh_copy_each_time() -> None:
    pending = PendingTable(CONFIG).new("k", "f", '[{"a":[1]}]', 0.0)
    pending.args[0]["a"].append(2)
    assert pending.args == ({"a": [1]},)
