"""The browser's ``BroadcastChannel`` as a :class:`~pyflowmesh.transports.base.Channel`, through Pyodide's ``js``.

It connects the tabs (and workers) of one origin in one browser profile, and
never delivers a message back to the object that posted it. Messages are JSON
text; anything else on the channel (another script's objects) reaches the
member as ``None``, never converted.

The listener the browser calls is a small JS function (:data:`LISTENER_JS`): it hands
Python the text, not the event, and skips in JS what the member would drop unread as
addressed to another tab (:meth:`Channel.skip_addressed`). Every execute sends a request
to the leader and gets an answer, and both reach every tab: with n tabs, each of the others
would otherwise pay two calls into Python for nothing. Where the page's Content Security
Policy forbids making a function from text, the listener is the Python one, as before.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import js  # type: ignore[import-not-found]
from pyodide.ffi import JsProxy, create_proxy  # type: ignore[import-not-found]

from .base import Channel

__all__ = ["BroadcastChannel"]


class BroadcastChannel(Channel):
    """One member's ``BroadcastChannel``; its listener's PyProxy is destroyed on every :meth:`close`."""

    def __init__(self) -> None:
        self._channel: Any = None
        self._listener: Any = None  # the PyProxy called with each message (by the JS listener, or by the browser)
        self._js_listener: Any = None  # the JS function the browser calls, if the page allows making one
        self._receive: Callable[[Any], None] | None = None
        self._rule: tuple[str, str, str] | None = None
        self._skipped = 0  # counted by JS listeners closed since the last take_skipped

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
        factory = _listener_factory()
        if factory is not None:
            self._listener = create_proxy(self._on_text)
            self._js_listener = factory(self._listener)
            if self._rule is not None:
                self._js_listener.skipAddressed(*self._rule)
        else:
            self._listener = create_proxy(self._on_event)
        self._channel = js.BroadcastChannel.new(name)
        self._channel.addEventListener("message", self._js_listener or self._listener)

    def post(self, data: str) -> None:
        if self._channel is not None:
            self._channel.postMessage(data)

    def skip_addressed(self, head: str, me: str, pattern: str) -> None:
        self._rule = (head, me, pattern)
        if self._js_listener is not None:
            self._js_listener.skipAddressed(head, me, pattern)

    def take_skipped(self) -> int:
        skipped, self._skipped = self._skipped, 0
        if self._js_listener is not None:
            skipped += int(self._js_listener.takeSkipped())
        return skipped

    def close(self) -> None:
        if self._channel is not None:
            self._channel.removeEventListener("message", self._js_listener or self._listener)
            self._channel.close()  # a message already queued for it is not dispatched any more
            self._channel = None
        if self._js_listener is not None:
            self._skipped += int(self._js_listener.takeSkipped())
            self._js_listener = None
        if self._listener is not None:
            self._listener.destroy()
            self._listener = None
        self._receive = None

    def _on_text(self, data: Any) -> None:
        """What the JS listener hands over: the message's text, or ``None`` for anything else."""
        if self._receive is not None:
            self._receive(data if isinstance(data, str) else None)

    def _on_event(self, event: Any) -> None:
        """The listener where the page forbids making a JS function: the event itself."""
        data = event.data
        if isinstance(data, JsProxy):  # not text: certainly not ours; don't convert it
            data = None
        if self._receive is not None:
            self._receive(data)


# The body of the JS listener's factory, ``(deliver) => listener``: ``listener(event)`` calls
# ``deliver`` with the text (``null`` for what is not text), unless the text is addressed to
# another tab by the rule ``listener.skipAddressed(head, me, pattern)`` set (then it counts
# it: ``listener.takeSkipped()`` returns and resets the count). The rule is the one
# pyflowmesh.core.node.addressed_elsewhere applies, its pattern the same text.
LISTENER_JS = """
let head = null, me = "", addressed = null, skipped = 0;
const listener = (event) => {
  const data = event.data;
  if (typeof data !== "string") { deliver(null); return; }
  if (head !== null && data.startsWith(head)) {
    addressed.lastIndex = head.length;
    const match = addressed.exec(data);
    if (match !== null && match[1] !== me) { skipped += 1; return; }
  }
  deliver(data);
};
listener.skipAddressed = (newHead, newMe, pattern) => {
  addressed = new RegExp(pattern, "y");
  head = newHead;
  me = newMe;
};
listener.takeSkipped = () => { const count = skipped; skipped = 0; return count; };
return listener;
"""

_factory: list[Any] = []  # [the factory, or None where the page forbids making functions from text]


def _listener_factory() -> Any:
    """The JS function that makes a listener (:data:`LISTENER_JS`), made once; ``None`` if the page's CSP forbids it."""
    if not _factory:
        try:
            _factory.append(js.Function.new("deliver", LISTENER_JS))
        except Exception:  # EvalError: a Content Security Policy without 'unsafe-eval'
            _factory.append(None)
    return _factory[0]
