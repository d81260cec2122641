"""claims: what a tab knows of other tabs' claims, and how it claims, follows and answers."""

from __future__ import annotations

from pyflowmesh.core.claims import ClaimBook, ClaimRecord
from pyflowmesh.core.config import MeshConfig
from pyflowmesh.core.node import MeshNode
from pyflowmesh.core.pending import Phase
from pyflowmesh.core.wire import Claim, Result, decode

CONFIG = MeshConfig(channel="c", strategy="peer-to-peer", heartbeat=1000.0)  # claim_window: 10 ms


def test_a_running_claim_beats_an_announced_one_then_the_higher_tab_wins() -> None:
    assert ClaimRecord("a", True, 0.0).rank() > ClaimRecord("z", False, 0.0).rank()
    assert ClaimRecord("b", False, 0.0).rank() > ClaimRecord("a", False, 0.0).rank()


def test_the_book_trusts_a_claim_until_it_expires_and_never_its_own() -> None:
    book = ClaimBook(8)
    book.set("k", ClaimRecord("a", False, 100.0), 0.0)
    assert book.live("k", 99.0, "me") is not None
    assert book.live("k", 100.0, "me") is None
    assert book.live("k", 50.0, "a") is None  # our own claim is no claim to follow
    book.forget_owner("a")
    assert book.get("k") is None


def test_the_book_is_bounded_forgetting_expired_claims_then_the_soonest_to_expire() -> None:
    book = ClaimBook(4)
    for i in range(4):
        book.set(f"k{i}", ClaimRecord("a", False, 10.0 + i), 0.0)
    book.set("new", ClaimRecord("a", False, 100.0), 0.0)  # none expired: k0 (soonest) goes
    assert len(book) == 4 and book.get("k0") is None and book.get("new") is not None
    book.set("newer", ClaimRecord("a", False, 100.0), 12.5)  # k1, k2 expired by now: both go
    assert len(book) == 3 and book.get("k1") is None and book.get("k3") is not None


def _sent(node: MeshNode) -> list[object]:
    return [decode(effect.data) for effect in node.take_effects() if type(effect).__name__ == "Send"]


def test_a_tab_claims_then_yields_to_a_higher_claim_heard_within_its_window() -> None:
    node = MeshNode("m", CONFIG)
    node.register_flow("f")
    node.start(0.0)
    node.take_effects()
    node.submit("f", (), 10.0)
    assert Claim(src="m", key="f", running=False) in _sent(node)
    assert node.phase("f") is Phase.CLAIMING
    node.receive('{"proto":"pyflowmesh","v":1,"type":"claim","src":"z","key":"f","running":false}', 15.0)
    assert node.phase("f") is Phase.FOLLOWING_CLAIM
    node.tick(10.0 + CONFIG.claim_window)  # our window ends: we follow z, we do not call
    assert not [e for e in node.take_effects() if type(e).__name__ == "StartCall"]


def test_a_lower_claim_is_answered_and_a_running_call_says_it_runs() -> None:
    node = MeshNode("m", CONFIG)
    node.register_flow("f")
    node.start(0.0)
    node.submit("f", (), 10.0)
    node.take_effects()
    node.receive('{"proto":"pyflowmesh","v":1,"type":"claim","src":"a","key":"f","running":false}', 15.0)
    assert _sent(node) == [Claim(src="m", key="f", running=False)]  # a may have missed ours
    node.tick(10.0 + CONFIG.claim_window)  # our window ends: we call
    node.take_effects()
    node.receive('{"proto":"pyflowmesh","v":1,"type":"claim","src":"b","key":"f","running":false}', 30.0)
    assert _sent(node) == [Claim(src="m", key="f", running=True)]


def test_the_producer_of_a_fresh_entry_answers_a_claim_with_it() -> None:
    node = MeshNode("m", CONFIG)
    node.start(0.0)
    node.share_result("f", {"v": 1}, 10.0)
    node.take_effects()
    node.receive('{"proto":"pyflowmesh","v":1,"type":"claim","src":"a","key":"f","running":false}', 20.0)
    (answer,) = _sent(node)
    assert isinstance(answer, Result) and answer.key == "f" and answer.value == {"v": 1} and answer.origin == "m"
