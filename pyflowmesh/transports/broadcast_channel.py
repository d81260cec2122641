"""The browser's ``BroadcastChannel`` as a :class:`~pyflowmesh.transports.base.Channel`, through Pyodide's ``js``.

It connects the tabs (and workers) of one origin in one browser profile, and
never delivers a message back to the object that posted it. Messages are JSON
text; anything else on the channel (another script's objects) reaches the
member as ``None``, never converted.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import js  # type: ignore[import-not-found]
from pyodide.ffi import JsProxy, create_proxy  # type: ignore[import-not-found]

from .base import Channel

__all__ = ["BroadcastChannel"]


class BroadcastChannel(Channel):
    """One member's ``BroadcastChannel``; its listener is a PyProxy destroyed on every :meth:`close`."""

    def __init__(self) -> None:
        self._channel: Any = None
        self._listener: Any = None  # the PyProxy the browser calls with each message
        self._receive: Callable[[Any], None] | None = None

    @property
    def proxies(self) -> list[Any]:
        """The PyProxies this channel holds now."""
        return [self._listener] if self._listener is not None else []

    @property
    def live_proxies(self) -> int:
        return len(self.proxies)

    def open(self, name: str, receive: Callable[[Any], None]) -> None:
        self.close()
        self._receive = receive
        self._listener = create_proxy(self._on_message)
        self._channel = js.BroadcastChannel.new(name)
        self._channel.addEventListener("message", self._listener)

    def post(self, data: str) -> None:
        if self._channel is not None:
            self._channel.postMessage(data)

    def close(self) -> None:
        if self._channel is not None:
            self._channel.removeEventListener("message", self._listener)
            self._channel.close()  # a message already queued for it is not dispatched any more
            self._channel = None
        if self._listener is not None:
            self._listener.destroy()
            self._listener = None
        self._receive = None

    def _on_message(self, event: Any) -> None:
        data = event.data
        if isinstance(data, JsProxy):  # not text: certainly not ours; don't convert it
            data = None
        if self._receive is not None:
            self._receive(data)
