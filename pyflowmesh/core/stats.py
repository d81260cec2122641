"""Counters a mesh member keeps about itself: what it sent, dropped, elected and called."""

from __future__ import annotations

from collections import Counter
from dataclasses import field
from typing import Any

from .structs import dataclass  # @dataclass without its cost at import

__all__ = ["MAX_DETAILS_PER_KIND", "MAX_DROP_REASONS", "MeshStats"]

MAX_DROP_REASONS = 64
"""Distinct reasons ``MeshStats.drop_reasons`` holds at most; any further one counts under ``"other"``."""
MAX_DETAILS_PER_KIND = 16
"""Distinct details of one kind of reason (``"<kind>:<detail>"``) held at most; further ones
count under ``"<kind>:other"``. The detail (``extra-field:<name>``) may come from the message,
so from whoever sent it; the kinds come from this package's code."""
_MAX_KIND = 32  # characters of a reason's kind kept
_MAX_DETAIL = 64  # characters of a reason's detail kept (a field name may be as long as a message)


@dataclass
class MeshStats:
    """What one tab's mesh member has done since it started.

    Attributes:
        sent: messages posted to the channel.
        received: valid messages received (including ones addressed to other tabs).
        dropped: messages received and dropped as malformed, foreign or of another version.
        other_scope: valid messages of another scope's mesh on this channel, ignored
            (not counted as ``dropped``: that traffic is legitimate, just not ours).
        drop_reasons: ``dropped`` by reason (``"not-json"``, ``"version"``, ``"bad-field:term"`` ...);
            at most ``MAX_DROP_REASONS`` reasons, and ``MAX_DETAILS_PER_KIND`` details
            per kind (``"extra-field:<name>"`` ...): a peer inventing field names cannot grow it.
        elections: elections this tab started.
        handovers: times this tab took over at once as its leader's named successor.
        members_unlisted: tabs heard but not listed as members, the list being full (MAX_MEMBERS).
        leader_changes: times this tab's view of the leader changed.
        calls: calls of flow functions made in this tab.
        failed_calls: executes whose call failed for good (after its last attempt, or its timeout).
        retries: attempts of a call started again after a failure (a flow's ``retry`` policy).
        calls_cancelled: calls stopped because no tab waited on them any more (``flow.cancel()``).
        served_by_mesh: executes answered by a result another tab produced.
        served_from_cache: executes answered from this tab's cache without waiting.
        requests_served: requests from other tabs this tab accepted as leader.
        fallbacks: executes this tab ran itself because no leader could serve them.
        stepped_down: times this tab stopped leading on its own (a newer leader, or it
            slept past its followers' patience).
        too_large: messages not sent because they exceeded ``max_message_bytes``.
        syncs_skipped: joiners not sent the cache because this tab's budget for answers was spent.
        answers_skipped: asks for cached data (a joiner's Hello, a request, a claim) left
            unanswered, or declined as "busy", because that budget was spent.
        renamed: times this tab took a new ID because another tab used its own.
        internal_errors: unexpected exceptions caught inside the protocol; each failed
            only the executes it concerned. Any other figure than 0 is a bug to report.
    """

    sent: int = 0
    received: int = 0
    dropped: int = 0
    drop_reasons: Counter[str] = field(default_factory=Counter)  # at most MAX_DROP_REASONS keys
    other_scope: int = 0
    elections: int = 0
    handovers: int = 0
    members_unlisted: int = 0
    leader_changes: int = 0
    calls: int = 0
    failed_calls: int = 0
    retries: int = 0
    calls_cancelled: int = 0
    served_by_mesh: int = 0
    served_from_cache: int = 0
    requests_served: int = 0
    fallbacks: int = 0
    stepped_down: int = 0
    too_large: int = 0
    syncs_skipped: int = 0
    answers_skipped: int = 0
    renamed: int = 0
    internal_errors: int = 0

    def drop(self, reason: str) -> None:
        """Count a dropped message under ``reason``, folding reasons beyond the bounds."""
        self.dropped += 1
        reasons = self.drop_reasons
        if reason not in reasons:
            kind, detailed, detail = reason.partition(":")
            if detailed:
                prefix = kind[:_MAX_KIND] + ":"
                reason = prefix + detail[:_MAX_DETAIL]
                if reason not in reasons and sum(k.startswith(prefix) for k in reasons) >= MAX_DETAILS_PER_KIND:
                    reason = prefix + "other"
            if reason not in reasons and len(reasons) >= MAX_DROP_REASONS - 1:
                reason = "other"  # one slot stays free for it
        reasons[reason] += 1

    def as_dict(self) -> dict[str, Any]:
        """A JSON-friendly copy, e.g. for showing in a page."""
        data = {name: getattr(self, name) for name in self.__dataclass_fields__}
        data["drop_reasons"] = dict(self.drop_reasons)
        return data
