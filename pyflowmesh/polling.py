"""A flow's ``polling={...}``: one tab of the mesh polls for every tab, built on the shared streams.

Each (flow, arguments) being polled is a stream of the mesh (:mod:`pyflowmesh.stream`), keyed
``pyflowmesh.poll:<len>:<flow key><arguments as canonical JSON>``. Every tab whose flow polls
registers the flow's *family* of such streams, so whichever tab runs the streams (the leader;
peer-to-peer, the first tab to listen) can run any of them even if its own flow never executed
with those arguments: it reads them back from the stream's key. The source, in that one tab,
waits ``interval`` ms and refreshes the flow through the mesh (``invalidate`` then an execute:
the flow's retry and timeout apply, the result lands in every tab's cache and every tab's flow
that follows the key, a failure is shared with its back-off), then broadcasts one small event
saying how the poll went. Each following tab runs its ``on_success``/``on_error``/``on_settled``
for that poll (as the seed does: each poll is an execute) and learns when polling stopped.

A stop (``stop_if`` true of a poll's data, or a failed poll with ``stop_on_error``) is an event
whose ID is ``"stop:<n>"``: every following tab marks its flow stopped and stops listening; a
source reopened later with that resume point polls nothing. So a stop holds for the mesh, for
those arguments, while any tab remembers it (a tab opened later is told it when it starts
following); once every tab has forgotten it (all closed), a new execute polls again and its
polls decide anew. An execute with other arguments moves polling to those.

The streams have no grace period: once no tab follows (every flow closed, ``Flow.close()``,
or its page gone), the source closes at once. While every following tab says its page is
hidden, the poller waits ``HIDDEN_SLOWDOWN`` times the interval.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
import weakref
from collections.abc import AsyncIterator, Callable
from typing import Any, Literal, Protocol

from .core.values import cache_key, check_flow_key, dump_json, load_json
from .core.wire import MAX_COUNT
from .errors import shared_error
from .mesh import FlowMesh
from .options import PollingOptions
from .stream import Source, Stream, _StreamDriver

__all__ = ["Polling", "StopReason", "POLL_PREFIX", "HIDDEN_SLOWDOWN", "poll_stream_key", "family_prefix"]

log = logging.getLogger("pyflowmesh")

StopReason = Literal["stop_if", "error"]
POLL_PREFIX = "pyflowmesh.poll:"
HIDDEN_SLOWDOWN = 4.0  # the poller waits this many intervals while every following tab is hidden
POLL_GRACE = 0.0  # a poll stream closes as soon as no tab follows it
_STOP = "stop:"
_MAX_ERROR = 200  # characters of a failed poll's error in its event


class Flow(Protocol):
    """What polling needs of a :class:`~pyflowmesh.flow.Flow` (flow.py imports this module, not the reverse)."""

    @property
    def key(self) -> str: ...

    @property
    def mesh(self) -> FlowMesh | None: ...

    @property
    def data(self) -> Any: ...

    @property
    def error(self) -> BaseException | None: ...

    @property
    def status(self) -> str: ...

    @property
    def source(self) -> Any: ...

    def _callback(self, name: str, *args: Any) -> None: ...

    def _set(self, **changes: Any) -> None: ...

    async def _run(self, args: tuple[Any, ...]) -> Any: ...


def family_prefix(flow_key: str) -> str:
    """The prefix of every poll stream of ``flow_key`` (its length first: no flow's prefix is another's)."""
    return f"{POLL_PREFIX}{len(flow_key)}:{flow_key}"


def poll_stream_key(flow_key: str, args: tuple[Any, ...]) -> str:
    """The stream polling ``flow_key`` with ``args``.

    Raises:
        ValueError: the key would be longer than a stream key may be (1024 characters).
    """
    return check_flow_key(family_prefix(flow_key) + dump_json(list(args)))


def args_of(prefix: str, key: str) -> tuple[Any, ...]:
    """The arguments a poll stream's key carries. Raises ``ValueError`` for a key that carries none."""
    try:
        args = load_json(key[len(prefix):])
    except ValueError:
        args = None
    if not isinstance(args, list):
        raise ValueError(f"{key[:80]!r} is not the key of a poll stream")
    return tuple(args)


def _resume_point(resume: Any) -> tuple[int, bool]:
    """The count of polls the mesh saw and whether the last event stopped polling."""
    stopped = isinstance(resume, str) and resume.startswith(_STOP)
    text = resume[len(_STOP):] if stopped else resume
    try:
        count = int(text) if isinstance(text, (int, str)) and not isinstance(text, bool) else 0
    except ValueError:
        count = 0
    return min(max(count, 0), MAX_COUNT - 1), stopped


def _count_of(event_id: Any) -> int:
    return _resume_point(event_id)[0]


async def _forever() -> None:
    await asyncio.get_running_loop().create_future()


def _source_maker(mesh: FlowMesh, flow_key: str, polling: PollingOptions) -> Callable[[str], Source]:
    prefix = family_prefix(flow_key)

    def make(key: str) -> Source:
        args = args_of(prefix, key)  # a key that is not a poll stream's fails the run, counted as a failure

        async def source(resume: Any) -> AsyncIterator[tuple[Any, Any]]:
            count, stopped = _resume_point(resume)
            if stopped:
                await _forever()  # the mesh has stopped polling these arguments: poll nothing
            while True:
                node = mesh._node
                hidden = node.streams.audience_hidden(key, mesh._now())
                await asyncio.sleep(polling.interval * (HIDDEN_SLOWDOWN if hidden else 1.0) / 1000.0)
                count = min(count + 1, MAX_COUNT - 1)
                stop: StopReason | None = None
                try:
                    mesh.invalidate(cache_key(flow_key, args))
                    value, _ = await mesh.execute_with_source(flow_key, *args)
                except Exception as error:
                    event: dict[str, Any] = {"ok": False, "error": f"{type(error).__name__}: {error}"[:_MAX_ERROR]}
                    if polling.stop_on_error:
                        stop = "error"
                else:
                    event = {"ok": True}
                    if await _stops(polling, value, flow_key):
                        stop = "stop_if"
                if stop is None:
                    yield count, event
                    continue
                event["stop"] = stop
                yield f"{_STOP}{count}", event
                await _forever()

        return source

    return make


async def _stops(polling: PollingOptions, value: Any, flow_key: str) -> bool:
    if polling.stop_if is None:
        return False
    try:
        verdict = polling.stop_if(value)
        if inspect.isawaitable(verdict):
            verdict = await verdict
        return bool(verdict)
    except Exception:
        log.exception("pyflowmesh: stop_if of flow %r raised; polling goes on", flow_key)
        return False


class _PollStream(Stream):
    """A poll stream as this tab follows it: its events go to the flow's :class:`Polling`."""

    def __init__(self, driver: _StreamDriver, key: str, polling: Polling, known: int) -> None:
        super().__init__(driver, key)
        self._polling = weakref.ref(polling)
        self._known = known  # the count of the latest poll this tab knew before it followed

    def _event(self, event_id: str | int, data: Any) -> None:
        super()._event(event_id, data)
        polling = self._polling()
        if polling is None:
            self.close()
            return
        fresh = _count_of(event_id) > self._known
        polling._on_poll(self, event_id, data, fresh)


class Polling:
    """The polling of one :class:`~pyflowmesh.flow.Flow` in this tab (``flow._polling``)."""

    def __init__(self, flow: Flow, options: PollingOptions) -> None:
        self._flow = weakref.ref(flow)
        self.options = options
        self.stopped: StopReason | None = None
        self._key: str | None = None  # the stream (or, without a mesh, the cache key) polled now
        self._stream: Stream | None = None
        self._task: asyncio.Task[None] | None = None  # polling without a mesh: this tab's own loop
        self._closer: weakref.finalize[Any, Any] | None = None
        mesh = flow.mesh
        if mesh is not None and options.enabled and not mesh.disposed:
            _StreamDriver.of(mesh).register_family(
                family_prefix(flow.key), _source_maker(mesh, flow.key, options), POLL_GRACE)

    @property
    def active(self) -> bool:
        """Whether this tab follows a polling that has not stopped."""
        if self.stopped is not None:
            return False
        if self._stream is not None:
            return not self._stream.closed
        return self._task is not None and not self._task.done()

    def start(self, args: tuple[Any, ...]) -> None:
        """An execute with ``args``: poll them from now on (a stop of these arguments holds)."""
        flow = self._flow()
        if flow is None or not self.options.enabled:
            return
        mesh = flow.mesh
        if mesh is None:
            self._start_locally(flow, args)
            return
        try:
            key = poll_stream_key(flow.key, args)
        except ValueError:
            log.warning("pyflowmesh: flow %r is not polled with these arguments: they do not fit in a "
                        "stream key (at most 1024 characters with the flow's key)", flow.key)
            self.close()
            return
        if key == self._key and (self.active or self.stopped is not None):
            return
        self.close()
        self._key = key
        self.stopped = None
        if mesh.disposed:
            return
        driver = _StreamDriver.of(mesh)
        state = mesh._node.streams.state(key)
        known = _count_of(state.event_id) if state is not None and state.event_id is not None else -1
        stream = _PollStream(driver, key, self, known)
        self._stream = stream
        driver.add(stream)
        self._closer = weakref.finalize(flow, stream.close)  # a flow the page dropped polls no more

    def close(self) -> None:
        """This tab stops following the polling (``Flow.close()``); the source closes once no tab follows."""
        if self._closer is not None:
            self._closer.detach()
            self._closer = None
        stream, self._stream = self._stream, None
        if stream is not None:
            stream.close()
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
        if self.stopped is None:
            self._key = None

    def _on_poll(self, stream: Stream, event_id: str | int, data: Any, fresh: bool) -> None:
        """A poll happened (in whichever tab polls): callbacks here, and the stop if it stopped."""
        flow = self._flow()
        if flow is None or stream is not self._stream or not isinstance(data, dict):
            return
        stop = data.get("stop")
        if fresh:
            if data.get("ok") is True:
                if flow.status == "success":
                    flow._callback("on_success", flow.data, flow.source)
                    flow._callback("on_settled", flow.data, None)
            else:
                error = flow.error
                if error is None:
                    text = str(data.get("error", ""))[:_MAX_ERROR]
                    error = shared_error(flow.key, text.partition(":")[0], text, "poller", 0.0)
                flow._callback("on_error", error)
                flow._callback("on_settled", None, error)
        if stop in ("stop_if", "error"):
            self.stopped = stop
            self._stream = None
            if self._closer is not None:
                self._closer.detach()
                self._closer = None
            asyncio.get_running_loop().call_soon(stream.close)  # not from inside the mesh's flush
            flow._set()  # subscribers see flow.polling go False

    # --- a flow without a mesh: this tab polls for itself ---------------------------------

    def _start_locally(self, flow: Flow, args: tuple[Any, ...]) -> None:
        key = cache_key(flow.key, args)
        if key == self._key and (self.active or self.stopped is not None):
            return
        self.close()
        self._key = key
        self.stopped = None
        self._task = asyncio.ensure_future(self._poll_locally(weakref.ref(flow), args))

    async def _poll_locally(self, flow_ref: weakref.ref[Flow], args: tuple[Any, ...]) -> None:
        options = self.options
        while True:
            await asyncio.sleep(options.interval / 1000.0)
            flow = flow_ref()
            if flow is None:
                return
            try:
                value = await flow._run(args)  # each poll is an execute, with its callbacks
            except asyncio.CancelledError:
                raise
            except Exception:
                if options.stop_on_error:
                    self._stop_locally(flow, "error")
                    return
            else:
                if await _stops(options, value, flow.key):
                    self._stop_locally(flow, "stop_if")
                    return
            del flow

    def _stop_locally(self, flow: Flow, reason: StopReason) -> None:
        self.stopped = reason
        self._task = None
        flow._set()
