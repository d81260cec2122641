"""The page lifecycle of ``window`` and ``document`` as a :class:`~pyflowmesh.transports.base.PageLifecycle`.

Through Pyodide's ``js``: ``pagehide`` and ``pageshow`` on ``window``;
``visibilitychange``, ``freeze`` and ``resume`` on ``document``. A worker has
neither (:func:`available` is False there): a mesh member in a worker runs
without a lifecycle, so a closing tab is noticed by its Web Lock or its
silence rather than by its ``Bye``, and a hidden one does not announce its
throttled timers.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import js  # type: ignore[import-not-found]
from pyodide.ffi import create_proxy  # type: ignore[import-not-found]

from .base import LifecycleEvents, PageLifecycle, has_attribute

__all__ = ["DocumentLifecycle", "available"]


def available() -> bool:
    """True in a page (``window`` and ``document`` exist), False in a worker."""
    return has_attribute(js, "window") and has_attribute(js, "document")


class DocumentLifecycle(PageLifecycle):
    """This page's lifecycle events; one PyProxy per listener, all destroyed by :meth:`close`."""

    def __init__(self) -> None:
        self.proxies: list[Any] = []
        self._listeners: list[tuple[Any, str, Any]] = []  # (target, event, proxy)
        self._events: LifecycleEvents | None = None

    @property
    def live_proxies(self) -> int:
        return len(self.proxies)

    def open(self, events: LifecycleEvents) -> None:
        self.close()
        self._events = events
        self._listen(js.window, "pagehide", lambda event: events.pagehide(bool(getattr(event, "persisted", False))))
        self._listen(js.window, "pageshow", lambda event: events.pageshow(bool(getattr(event, "persisted", False))))
        self._listen(js.document, "visibilitychange", lambda event: events.visibility(self.hidden))
        self._listen(js.document, "freeze", lambda event: events.freeze())
        self._listen(js.document, "resume", lambda event: events.resume())
        if self.hidden:
            events.visibility(True)

    @property
    def hidden(self) -> bool:
        """True while the page is hidden (its timers may be throttled)."""
        return bool(js.document.visibilityState == "hidden")

    def close(self) -> None:
        for target, kind, proxy in self._listeners:
            target.removeEventListener(kind, proxy)
        self._listeners.clear()
        for proxy in self.proxies:
            proxy.destroy()
        self.proxies.clear()
        self._events = None

    def _listen(self, target: Any, kind: str, handler: Callable[[Any], None]) -> None:
        proxy = create_proxy(handler)
        self.proxies.append(proxy)
        target.addEventListener(kind, proxy)
        self._listeners.append((target, kind, proxy))
