"""What the node lends its components: a narrow port, not the whole node.

The election, the executes and their helpers each act on the world only through
a :class:`Port` (send a message, queue an effect, read the wall clock) and learn
who this tab is and who leads through it. None of them imports the node, so each
can be built and tested alone, and the node is the one place that composes them.
"""

from __future__ import annotations

from collections.abc import Callable

from .effects import Effect
from .election import Role
from .stats import MeshStats
from .structs import dataclass  # @dataclass without its cost at import
from .wire import MAX_MILLIS, Message

__all__ = ["Port"]


@dataclass(frozen=True, slots=True, kw_only=True)
class Port:
    """Sending, effects, the clock and this tab's identity, as the node provides them."""

    stats: MeshStats
    send: Callable[[Message], int]  # queue a message: its size in bytes, 0 if too large (then not sent)
    emit: Callable[[Effect], None]  # queue an effect for the runtime
    wall: Callable[[], float | None]  # the wall clock (Date.now()) in ms, if the runtime gave one
    me: Callable[[], str]  # this tab's ID now (it changes when another tab has it too)
    is_me: Callable[[str], bool]  # this tab's ID, or one it had before a rename
    role: Callable[[], Role]
    leader: Callable[[], str | None]
    internal_error: Callable[[BaseException], None]  # count a bug caught inside an input

    def transit(self, sent: float | None) -> float:
        """How long a message stamped ``sent`` (wall clock) took to arrive: 0 if unknown.

        Tabs of one browser share the wall clock, so this includes the time a message
        waited in a frozen tab's queue. A clock stepped back gives 0, never a negative age.
        """
        wall = self.wall()
        if sent is None or wall is None:
            return 0.0
        return min(max(0.0, wall - sent), MAX_MILLIS)
