"""``use_stream``: one live connection (SSE, WebSocket, a poll) shared by every tab of the mesh.

A source is an async generator function taking the resume point (the ID of the last
event the mesh saw, or ``None``) and yielding ``(event_id, data)``; see
:mod:`pyflowmesh.sources` for the browser's ``EventSource`` and ``WebSocket`` and for
polling. Exactly one tab runs it (the leader; peer-to-peer, the first tab to listen)
while any tab listens; every listening tab gets every event once, in order::

    prices = use_stream(event_source("/api/prices"), mesh={"channel": "live"}, key="prices")
    off = prices.subscribe(lambda s: render(s.latest))
    async for event in prices:      # StreamEvent(id, data), from now on
        ...
    prices.close()

The sans-I/O part is :mod:`pyflowmesh.core.streams`; this module runs the sources as
asyncio tasks and hands the core's ``Deliver``/``StreamChanged`` effects to the
:class:`Stream` objects of the tab.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
from collections.abc import AsyncIterator, Callable, Mapping
from typing import Any, Literal

from .core.effects import CloseSource, Deliver, Effect, OpenSource, StreamChanged
from .core.node import MeshNode
from .core.streams import DEFAULT_GRACE
from .core.structs import dataclass  # @dataclass without its cost at import
from .core.values import check_flow_key, flow_key_for
from .errors import FlowInterruptedError
from .mesh import FlowMesh, _members, _mesh_for, _subscribe

__all__ = ["Stream", "StreamEvent", "StreamStatus", "Source", "use_stream"]

log = logging.getLogger("pyflowmesh")

StreamStatus = Literal["connecting", "open", "reconnecting", "closed", "error"]
Source = Callable[[Any], Any]
"""An async generator function: ``source(resume)`` yields ``(event_id, data)``."""


@dataclass(frozen=True, slots=True)
class StreamEvent:
    """One event of a stream: its source's ``id`` (str or int) and its ``data`` (JSON data)."""

    id: str | int
    data: Any


_END = object()


class Stream:
    """This tab's view of one shared stream. Create it with :func:`use_stream`.

    Attributes:
        key: the stream's key, the same in every tab.
        mesh: the tab's mesh member.
        latest: the data of the latest event (``None`` before any).
        last_id: the ID of the latest event (``None`` before any).
        status: ``"connecting"``, ``"open"``, ``"reconnecting"``, ``"closed"`` or ``"error"``.
        error: why the source is failing (the original exception in the tab that runs it,
            a :class:`~pyflowmesh.errors.SharedFlowError` elsewhere), ``None`` when it is well.
    """

    def __init__(self, driver: _StreamDriver, key: str) -> None:
        self._driver = driver
        self.key = key
        self.mesh = driver.mesh
        self.latest: Any = None
        self.last_id: str | int | None = None
        self.status: StreamStatus = "connecting"
        self.error: BaseException | None = None
        self._subscribers: list[Callable[[Stream], None]] = []
        self._queues: list[asyncio.Queue[Any]] = []

    def __repr__(self) -> str:
        return f"<Stream {self.key!r} {self.status} last_id={self.last_id!r}>"

    @property
    def closed(self) -> bool:
        return self.status == "closed"

    def subscribe(self, callback: Callable[[Stream], None]) -> Callable[[], None]:
        """Call ``callback(stream)`` on every event and every change of ``status``/``error``.

        Returns:
            A function that unsubscribes (calling it twice is harmless).
        """
        return _subscribe(self._subscribers, callback)

    def __aiter__(self) -> AsyncIterator[StreamEvent]:
        """Every event from now on, in order, as :class:`StreamEvent`; it ends when the stream closes."""
        queue: asyncio.Queue[Any] = asyncio.Queue()
        if self.closed:
            queue.put_nowait(_END)
        else:
            self._queues.append(queue)
        return self._iterate(queue)

    async def _iterate(self, queue: asyncio.Queue[Any]) -> AsyncIterator[StreamEvent]:
        try:
            while True:
                item = await queue.get()
                if item is _END:
                    return
                yield item
        finally:
            if queue in self._queues:
                self._queues.remove(queue)

    def close(self) -> None:
        """This tab stops listening through this stream: iterations end, the status is ``"closed"``.

        The source stays open for the stream's grace period if no other tab listens.
        """
        if self.closed:
            return
        self._driver.drop(self)
        self._end()

    # --- what the driver does ------------------------------------------------------------

    def _end(self) -> None:
        self.status = "closed"
        for queue in self._queues:
            queue.put_nowait(_END)
        self._queues = []
        self._notify()

    def _event(self, event_id: str | int, data: Any) -> None:
        self.latest = data
        self.last_id = event_id
        event = StreamEvent(event_id, data)
        for queue in self._queues:
            queue.put_nowait(event)
        self._notify()

    def _state(self, status: StreamStatus, error: BaseException | None) -> None:
        if status == "closed" or (status, error) == (self.status, self.error):
            return
        self.status = status
        self.error = error
        self._notify()

    def _reset(self) -> None:
        """The mesh switched scope: nothing of the old scope stays."""
        self.latest = None
        self.last_id = None
        self.error = None
        self.status = "connecting"
        self._notify()

    def _notify(self) -> None:
        for callback in list(self._subscribers):
            try:
                callback(self)
            except Exception:
                log.exception("pyflowmesh: a subscriber of stream %r raised", self.key)


class _StreamDriver:
    """The streams of one mesh member: their sources, this tab's Stream objects, the running sources."""

    def __init__(self, mesh: FlowMesh) -> None:
        self.mesh = mesh
        self.sources: dict[str, tuple[Source, float]] = {}
        # prefix -> (make_source(key), grace): streams made per key, e.g. polling's one per arguments
        self.families: dict[str, tuple[Callable[[str], Source], float]] = {}
        self.streams: dict[str, list[Stream]] = {}
        self.tasks: dict[int, asyncio.Task[None]] = {}  # run -> the task running the source
        self.private = False  # a member of its own (use_stream without mesh=): it goes with its last Stream

    @classmethod
    def of(cls, mesh: FlowMesh) -> _StreamDriver:
        driver = mesh._streams
        if driver is None:
            driver = mesh._streams = cls(mesh)
        assert isinstance(driver, cls)
        return driver

    def register(self, key: str, source: Source, grace: float) -> None:
        existing = self.sources.get(key)
        if existing is not None and existing[0] != source:  # == : a bound method is made anew each time
            raise ValueError(
                f"stream key {key!r} is already used by {existing[0]!r} on channel {self.mesh.channel!r}; "
                "pass a distinct key= to use_stream"
            )
        self.mesh._node.register_stream(key, grace)
        self.sources[key] = (source, grace)

    def register_family(self, prefix: str, make_source: Callable[[str], Source], grace: float) -> None:
        """Every stream whose key starts with ``prefix`` runs ``make_source(key)`` in this tab."""
        self.mesh._node.register_stream_family(prefix, grace)
        self.families[prefix] = (make_source, grace)

    def source_for(self, key: str) -> Source:
        registered = self.sources.get(key)
        if registered is not None:
            return registered[0]
        for prefix, (make_source, _) in self.families.items():
            if key.startswith(prefix):
                return make_source(key)
        raise LookupError(f"no source for stream {key!r} in this tab")

    def add(self, stream: Stream) -> None:
        siblings = self.streams.setdefault(stream.key, [])
        if siblings:  # this tab listens already: the new one starts where they are
            first = siblings[0]
            stream.latest, stream.last_id, stream.status, stream.error = (
                first.latest, first.last_id, first.status, first.error)
        siblings.append(stream)
        if len(siblings) == 1:
            mesh = self.mesh
            mesh._node.listen(stream.key, mesh._now())
            mesh._flush()

    def drop(self, stream: Stream) -> None:
        siblings = self.streams.get(stream.key, [])
        if stream in siblings:
            siblings.remove(stream)
        if not siblings:
            self.streams.pop(stream.key, None)
            mesh = self.mesh
            if not mesh.disposed:
                mesh._node.unlisten(stream.key, mesh._now())
                mesh._flush()
                if self.private and not self.streams:
                    mesh.dispose()

    # --- the mesh's hooks -----------------------------------------------------------------

    def apply(self, effect: Effect, node: MeshNode) -> None:
        if isinstance(effect, Deliver):
            for stream in list(self.streams.get(effect.stream, ())):
                stream._event(effect.event_id, effect.value)  # a fresh copy for each
        elif isinstance(effect, StreamChanged):
            for stream in list(self.streams.get(effect.stream, ())):
                stream._state(effect.status, effect.error)
        elif isinstance(effect, OpenSource):
            task = self.mesh._loop.create_task(self._run(effect, node))
            self.tasks[effect.run] = task
            task.add_done_callback(functools.partial(self._done, effect.run))
        elif isinstance(effect, CloseSource):
            running = self.tasks.pop(effect.run, None)
            if running is not None:
                running.cancel()
        else:
            raise TypeError(f"the stream driver does not know the effect {effect!r}")

    def rejoin(self, node: MeshNode) -> None:
        """The mesh has a new node (a scope switch): register and listen again, forget the old scope."""
        self.halt_sources()
        for key, (_, grace) in self.sources.items():
            node.register_stream(key, grace)
        for prefix, (_, grace) in self.families.items():
            node.register_stream_family(prefix, grace)
        for key, streams in self.streams.items():
            for stream in streams:
                stream._reset()
            node.listen(key, self.mesh._now())

    def halt(self) -> None:
        """The mesh stopped (dispose, crash): sources stop, every Stream closes, iterations end."""
        self.halt_sources()
        streams, self.streams = self.streams, {}
        for siblings in streams.values():
            for stream in siblings:
                stream._end()

    def halt_sources(self) -> None:
        for task in self.tasks.values():
            task.cancel()
        self.tasks.clear()

    def _done(self, run: int, task: asyncio.Task[None]) -> None:
        if self.tasks.get(run) is task:
            del self.tasks[run]

    async def _run(self, effect: OpenSource, node: MeshNode) -> None:
        """Run one source; report every event and its end or failure to ``node``, whatever happens."""
        mesh = self.mesh
        run = effect.run
        generator: Any = None
        failure: BaseException | None = None
        try:
            source = self.source_for(effect.stream)
            generator = source(effect.resume)
            if not hasattr(generator, "__anext__"):
                if hasattr(generator, "close") and hasattr(generator, "send"):
                    generator.close()  # a coroutine (async def without yield): never awaited, no warning
                raise TypeError(f"the source of stream {effect.stream!r} must be an async generator function "
                                f"(async def with yield), got {generator!r}")
            async for item in generator:
                if node is not mesh._node or mesh.disposed or run not in self.tasks:
                    return
                try:
                    event_id, data = item
                except (TypeError, ValueError):
                    event_id, data = None, None  # the core fails the run: an event is (id, data)
                node.source_event(run, event_id, data, mesh._now())
                mesh._flush()
                await asyncio.sleep(0)  # a source that never awaits must not starve the page
            if node is mesh._node and not mesh.disposed and run in self.tasks:
                node.source_ended(run, mesh._now())
                mesh._flush()
            return
        except asyncio.CancelledError as error:
            task = asyncio.current_task()
            if task is not None and task.cancelling():
                raise  # closed by the core (or the mesh stopped): nothing to report
            failure = FlowInterruptedError(f"the source of stream {effect.stream!r} was cancelled")
            failure.__cause__ = error
        except Exception as error:
            failure = error
        except BaseException as error:  # noqa: B036 - every outcome must reach the node
            failure = FlowInterruptedError(f"the source of stream {effect.stream!r} raised {type(error).__name__}")
            failure.__cause__ = error
        finally:
            if generator is not None and hasattr(generator, "aclose"):
                with contextlib.suppress(Exception):  # a source's cleanup may fail in any way
                    await generator.aclose()
        if failure is not None and node is mesh._node and not mesh.disposed and run in self.tasks:
            node.source_failed(run, failure, mesh._now(), back_off=not isinstance(failure, TypeError))
            mesh._flush()
        if isinstance(failure, FlowInterruptedError) and isinstance(failure.__cause__, (KeyboardInterrupt, SystemExit)):
            raise failure.__cause__


def use_stream(
    source: Source,
    mesh: FlowMesh | Mapping[str, Any] | None = None,
    *,
    key: str | None = None,
    grace: float = DEFAULT_GRACE,
) -> Stream:
    """Listen to a live source that every tab of the mesh shares through one connection.

    Args:
        source: an async generator function ``source(resume)`` yielding ``(event_id, data)``:
            ``resume`` is the ID of the last event the mesh saw (``None`` at first); IDs are
            str or int, data is JSON data. :mod:`pyflowmesh.sources` has ``event_source``,
            ``websocket`` and ``poll``.
        mesh: a :class:`FlowMesh`, or a dict of mesh options (``{"channel": ...}``, TypeScript
            names accepted), as for :func:`~pyflowmesh.use_flow`; ``None``: this tab alone (a member
            of its own, disposed when the stream closes).
        key: the stream's key, the same in every tab (default: the source's ``key``
            attribute, which the sources of :mod:`pyflowmesh.sources` have, else its
            module and qualified name).
        grace: how long (ms) the source stays open after the last tab stopped listening.

    Returns:
        The :class:`Stream`, listening from now on (``close()`` it when done).

    Raises:
        TypeError, ValueError: a bad source, key, grace or mesh option.
    """
    if not callable(source):
        raise TypeError(f"use_stream needs an async generator function, got {source!r}")
    stream_key = key if key is not None else getattr(source, "key", None) or flow_key_for(source)
    check_flow_key(stream_key)
    if isinstance(grace, bool) or not isinstance(grace, (int, float)):
        raise TypeError(f"grace must be a number of milliseconds, got {grace!r}")
    if mesh is None:
        from .transports.memory import MemoryHub

        member = FlowMesh(f"pyflowmesh-local-stream-{stream_key}", transport=MemoryHub().transport())
    elif isinstance(mesh, FlowMesh):
        member = mesh
        if not member.disposed:
            _members.setdefault(member.member_key, member)
    else:
        member = _mesh_for(mesh)
    member._check_open()
    driver = _StreamDriver.of(member)
    driver.private = mesh is None
    driver.register(stream_key, source, float(grace))
    stream = Stream(driver, stream_key)
    driver.add(stream)
    return stream
