"""How a mesh member reaches the other tabs: the transport interface.

A transport carries text to every *other* member on the same channel, like the
browser's ``BroadcastChannel`` (which never delivers a message back to its
sender). It reports what it learns about the page and the other tabs through
:class:`TransportEvents`. Two implementations exist: the browser's
(:mod:`pyflowmesh.browser`) and an in-memory hub for CPython
(:mod:`pyflowmesh.testing`).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Any, Protocol

__all__ = ["Transport", "TransportEvents"]


class TransportEvents(Protocol):
    """What a transport tells its mesh member. Every method may be called from the event loop only."""

    def message(self, data: Any) -> None:
        """Something arrived on the channel (maybe not ours: the member validates it)."""

    def peer_gone(self, node_id: str) -> None:
        """The watched tab ``node_id`` closed or crashed."""

    def visibility(self, hidden: bool) -> None:
        """The page became hidden or visible."""

    def frozen(self, frozen: bool) -> None:
        """The page is being frozen (``freeze``) or was thawed (``resume``)."""

    def leaving(self) -> None:
        """The page is going away (``pagehide``): leave the mesh now, while messages can still be sent."""


class Transport(ABC):
    """A channel to the other tabs. Subclasses implement :meth:`open`, :meth:`send` and :meth:`close`."""

    @abstractmethod
    def open(self, channel: str, node_id: str, events: TransportEvents) -> None:
        """Join ``channel`` as ``node_id``; report to ``events`` until :meth:`close`."""

    @abstractmethod
    def send(self, data: str) -> None:
        """Deliver ``data`` to every other member of the channel, in order."""

    def watch(self, node_id: str | None) -> None:  # noqa: B027 - optional, deliberately a no-op
        """Report ``peer_gone(node_id)`` when that tab disappears; ``None`` stops watching.

        Optional: a transport that cannot tell (no Web Locks) ignores it, and the
        mesh falls back on heartbeats.
        """

    def rename(self, node_id: str) -> None:  # noqa: B027 - optional, deliberately a no-op
        """The member took a new ID (another tab had its own): whatever is held under the old
        ID (a Web Lock) is held under ``node_id`` from now on. Optional, as :meth:`watch`."""

    @abstractmethod
    def close(self) -> None:
        """Leave the channel and release everything (listeners, proxies, locks). Idempotent."""
