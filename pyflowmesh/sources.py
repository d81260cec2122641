"""Sources for :func:`~pyflowmesh.use_stream`: the browser's ``EventSource`` and ``WebSocket``, and polling.

Each function returns a *source*: an async generator function ``source(resume)`` yielding
``(event_id, data)``, with a ``key`` attribute that ``use_stream`` takes as the stream's
key by default. Only the tab that runs the stream (the leader) calls it, so only one
connection is open for the whole mesh.

- :func:`event_source` wraps ``EventSource``. ``EventSource`` cannot set a
  ``Last-Event-ID`` header on a new connection, so the resume point goes in a
  ``lastEventId`` query parameter (the server reads either). The event's ``id`` is the
  event ID (a counter if the server sends none); its ``data`` is parsed as JSON when it
  is JSON, else kept as text. An error closes it: the mesh reconnects with its shared
  back-off instead of the browser's own retry in every tab.
- :func:`websocket` wraps ``WebSocket``: each text message is an event; a JSON object
  ``{"id": ..., "data": ...}`` gives its ID and data, anything else is data with a
  counter as ID. The resume point goes in the same ``lastEventId`` query parameter.
- :func:`poll` calls a function every ``interval`` ms; only data that changed is an
  event. The event ID is a digest of the data, so a tab that takes over after a leader
  change does not repeat the data the mesh already has.

``js`` and ``pyodide`` are imported only inside the browser sources, when they run.
"""

from __future__ import annotations

import asyncio
import hashlib
import inspect
import json
from collections.abc import AsyncIterator, Callable
from typing import Any
from urllib.parse import quote

from .core.values import check_json, dump_json, flow_key_for

__all__ = ["event_source", "websocket", "poll", "with_resume"]

_MAX_QUEUE = 10_000  # events a slow page may have waiting before the connection is dropped


def with_resume(url: str, resume: Any) -> str:
    """``url`` with ``lastEventId=<resume>`` added (unchanged for ``None``)."""
    if resume is None:
        return url
    separator = "&" if "?" in url else "?"
    return f"{url}{separator}lastEventId={quote(str(resume), safe='')}"


def _parse(text: Any) -> Any:
    if not isinstance(text, str):
        return str(text)
    try:
        return json.loads(text)
    except ValueError:
        return text


class _Inbox:
    """What the browser's callbacks put for the generator: events, or the end with an error."""

    def __init__(self) -> None:
        self.queue: asyncio.Queue[tuple[str, Any, Any]] = asyncio.Queue()

    def put(self, kind: str, a: Any = None, b: Any = None) -> None:
        if self.queue.qsize() >= _MAX_QUEUE:
            kind, a = "error", f"more than {_MAX_QUEUE} events waited"
        self.queue.put_nowait((kind, a, b))


def event_source(url: str, *, with_credentials: bool = False) -> Callable[[Any], AsyncIterator[tuple[Any, Any]]]:
    """A source reading the server-sent events of ``url`` through the browser's ``EventSource``."""
    if not isinstance(url, str) or not url:
        raise ValueError(f"event_source needs a URL, got {url!r}")

    async def source(resume: Any) -> AsyncIterator[tuple[Any, Any]]:
        import js  # the browser's; only the tab running the stream gets here
        from pyodide.ffi import create_proxy, to_js

        inbox = _Inbox()
        options = to_js({"withCredentials": with_credentials}, dict_converter=js.Object.fromEntries)
        events = js.EventSource.new(with_resume(url, resume), options)
        count = 0

        def on_message(event: Any) -> None:
            inbox.put("event", str(event.lastEventId or ""), event.data)

        def on_error(event: Any) -> None:
            inbox.put("error", f"the EventSource of {url} failed (readyState {events.readyState})")

        proxies = [create_proxy(on_message), create_proxy(on_error)]
        events.addEventListener("message", proxies[0])
        events.addEventListener("error", proxies[1])
        try:
            while True:
                kind, event_id, data = await inbox.queue.get()
                if kind == "error":
                    raise ConnectionError(event_id)
                count += 1
                yield (event_id or count), _parse(data)
        finally:
            events.close()
            for proxy in proxies:
                proxy.destroy()

    source.key = f"event_source:{url}"  # type: ignore[attr-defined]
    return source


def websocket(url: str) -> Callable[[Any], AsyncIterator[tuple[Any, Any]]]:
    """A source reading the messages of the WebSocket ``url`` through the browser's ``WebSocket``."""
    if not isinstance(url, str) or not url:
        raise ValueError(f"websocket needs a URL, got {url!r}")

    async def source(resume: Any) -> AsyncIterator[tuple[Any, Any]]:
        import js
        from pyodide.ffi import create_proxy

        inbox = _Inbox()
        socket = js.WebSocket.new(with_resume(url, resume))
        count = 0

        def on_message(event: Any) -> None:
            inbox.put("event", None, event.data)

        def on_close(event: Any) -> None:
            inbox.put("error", f"the WebSocket {url} closed (code {getattr(event, 'code', '?')})")

        proxies = [create_proxy(on_message), create_proxy(on_close)]
        socket.addEventListener("message", proxies[0])
        socket.addEventListener("close", proxies[1])
        socket.addEventListener("error", proxies[1])
        try:
            while True:
                kind, reason, data = await inbox.queue.get()
                if kind == "error":
                    raise ConnectionError(reason)
                count += 1
                message = _parse(data)
                if isinstance(message, dict) and set(message) == {"id", "data"}:
                    yield message["id"], message["data"]
                else:
                    yield count, message
        finally:
            socket.close()
            for proxy in proxies:
                proxy.destroy()

    source.key = f"websocket:{url}"  # type: ignore[attr-defined]
    return source


def poll(function: Callable[[], Any], interval: float = 5000.0, *,
         key: str | None = None) -> Callable[[Any], AsyncIterator[tuple[Any, Any]]]:
    """A source calling ``function()`` (sync or async) every ``interval`` ms; changed data is an event.

    Raises:
        TypeError, ValueError: ``function`` is not callable, or ``interval`` is not a positive number.
    """
    if not callable(function):
        raise TypeError(f"poll needs a function, got {function!r}")
    if isinstance(interval, bool) or not isinstance(interval, (int, float)) or not 1 <= interval <= 86_400_000:
        raise ValueError(f"poll's interval must be between 1 and 86400000 ms, got {interval!r}")

    async def source(resume: Any) -> AsyncIterator[tuple[Any, Any]]:
        last = resume
        while True:
            value = function()
            if inspect.isawaitable(value):
                value = await value
            check_json(value, "the data of a poll")
            digest = hashlib.blake2b(dump_json(value).encode("utf-8", "surrogatepass"), digest_size=12).hexdigest()
            if digest != last:
                last = digest
                yield digest, value
            await asyncio.sleep(interval / 1000.0)

    source.key = key if key is not None else f"poll:{flow_key_for(function)}"  # type: ignore[attr-defined]
    return source
