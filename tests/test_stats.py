"""stats: counters a page reads, with drop reasons bounded whatever the wire sends."""

from __future__ import annotations

import json

from pyflowmesh.core.stats import MAX_DETAILS_PER_KIND, MAX_DROP_REASONS, MeshStats


def test_drops_are_counted_by_reason() -> None:
    stats = MeshStats()
    for reason in ("not-json", "not-json", "version"):
        stats.drop(reason)
    assert stats.dropped == 3 and stats.drop_reasons == {"not-json": 2, "version": 1}


def test_reasons_stay_bounded_and_detailed_ones_fold_per_kind() -> None:
    stats = MeshStats()
    for i in range(1000):
        stats.drop(f"extra-field:f{i}")
        stats.drop(f"reason-{i}")
    assert len(stats.drop_reasons) <= MAX_DROP_REASONS
    assert sum(k.startswith("extra-field:") for k in stats.drop_reasons) <= MAX_DETAILS_PER_KIND + 1
    assert stats.dropped == sum(stats.drop_reasons.values()) == 2000
    assert "other" in stats.drop_reasons


def test_as_dict_is_json_and_a_copy() -> None:
    stats = MeshStats()
    stats.drop("x")
    data = stats.as_dict()
    json.dumps(data)
    data["drop_reasons"]["x"] = 99
    assert stats.drop_reasons["x"] == 1
