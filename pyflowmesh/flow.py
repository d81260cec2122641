"""``use_flow``: a function made into a flow that every tab of the mesh shares.

A :class:`Flow` wraps one function (sync or async). ``await flow.execute(*args)``
returns its data: in the leader by calling the function, in a follower by asking
the leader, in any tab at once from the cache when a fresh result exists. The
flow keeps the latest ``data``, ``error``, ``status`` and ``source`` and tells
subscribers whenever they change, which is what a PyScript page re-renders from.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import inspect
import logging
import math
import weakref
from collections.abc import AsyncIterator, Callable, Mapping
from typing import TYPE_CHECKING, Any, Generic, Literal, TypeVar

from .core.effects import CallRetrying, Source
from .core.policy import CallPolicy
from .core.values import cache_key, check_flow_key, check_json, flow_key_for
from .errors import CallTimeoutError, FlowCancelledError, FlowTimeoutError, ScopeChangedError
from .mesh import FlowMesh, _members, _mesh_for, _subscribe, ask_should_retry
from .options import UNSET, FlowOptions

if TYPE_CHECKING:  # imported where a flow asks for them: most pages poll nothing and persist nothing
    from .persist import Persistence
    from .polling import Polling, StopReason

__all__ = ["Flow", "FlowStatus", "use_flow"]

log = logging.getLogger("pyflowmesh")

T = TypeVar("T")
FlowStatus = Literal["idle", "loading", "success", "error"]
FlowSource = Literal["call", "mesh", "cache", "storage"]

def _call_each(functions: list[Callable[[], None]]) -> None:
    for function in functions:
        function()


# Flows with subscribers, kept alive for them (a flow without is held only by the page).
_subscribed: set[Flow[Any]] = set()


class Flow(Generic[T]):
    """One function, executed through the mesh. Create it with :func:`use_flow`.

    Attributes:
        key: the flow's key: the same in every tab that runs the same flow.
        mesh: the tab's mesh member, or ``None`` for a flow that runs locally only.
        data: the latest successful result (kept while a new execute loads).
        error: the latest execute's exception, or ``None``.
        status: ``"idle"``, ``"loading"``, ``"success"`` or ``"error"``.
        source: where ``data`` came from: ``"call"`` (this tab called the function),
            ``"mesh"`` (another tab's call), ``"cache"``, or ``"storage"`` (``persist_key``:
            kept from an earlier visit); ``None`` before any data.
        stale: ``data`` came from the browser's storage and no newer data has arrived yet.
    """

    def __init__(self, function: Callable[..., Any], mesh: FlowMesh | None, key: str,
                 options: FlowOptions | None = None) -> None:
        self.function = function
        self.mesh = mesh
        self.key = key
        self.options = options if options is not None else FlowOptions()
        self.data: T | None = None
        self.error: BaseException | None = None
        self.status: FlowStatus = "idle"
        self.source: FlowSource | None = None
        self.stale = False
        self._subscribers: list[Callable[[Flow[T]], None]] = []
        self._generation = 0
        self._local_calls: dict[str, asyncio.Future[Any]] = {}
        self._followed: str | None = None
        self._followed_args: tuple[Any, ...] = ()
        self._unfollow_when_gone: weakref.finalize[Any, Any] | None = None
        self._unfollow: list[Callable[[], None]] = []
        # Executes of this flow in progress in this tab (their inner tasks), and the ones
        # flow.cancel() stopped; the queue of "enqueue"; a debounce's or throttle's batch.
        self._running: set[asyncio.Task[Any]] = set()
        self._cancelled: set[asyncio.Task[Any]] = set()
        self._queue: asyncio.Lock | None = None
        self._batch: _Batch | None = None
        self._last_start = -math.inf
        # polling={...} (polling.py): one tab of the mesh polls; None without the option
        self._polling: Polling | None = None
        if self.options.polling is not None:
            from .polling import Polling  # with the streams it rides on

            self._polling = Polling(self, self.options.polling)
        if mesh is not None:
            mesh.register(key, function, self.options.call_policy(),
                          self.options.retry.should_retry if self.options.retry else None)
            mesh._bind_flow(self._reset_scope)
        # persist_key=... (persist.py): the latest data kept in the browser, shown at once here
        self._persist: Persistence | None = None
        if self.options.persist_key is not None:
            self._restore(self.options.persist_key)

    def _restore(self, persist_key: str) -> None:
        """Show the data an earlier visit stored, marked stale, and revalidate it once."""
        from .persist import Persistence

        mesh = self.mesh
        persist = self._persist = Persistence(self.key, persist_key, self.options.persist_storage,
                                              (lambda: mesh._node.scope_digest) if mesh is not None else str)
        stored = persist.restore()
        if stored is None:
            return
        self.data, self.status, self.source, self.stale = stored[1], "success", "storage", True
        persist.revalidate(self)

    def __repr__(self) -> str:
        return f"<Flow {self.key!r} {self.status}>"

    @property
    def loading(self) -> bool:
        return self.status == "loading"

    @property
    def polling(self) -> bool:
        """Whether this flow polls: it has ``polling={...}``, has executed, and polling has not
        stopped (``stop_if``, ``stop_on_error``: mesh-wide) nor been closed (``close()``)."""
        return self._polling is not None and self._polling.active

    @property
    def polling_stopped(self) -> StopReason | None:
        """Why polling stopped, mesh-wide: ``"stop_if"`` or ``"error"``; ``None`` while it goes on (or never began)."""
        return self._polling.stopped if self._polling is not None else None

    async def execute(self, *args: Any) -> T:
        """Run the flow with ``args`` through the mesh and return its data.

        In the leader (or with no leader able to serve) this calls the function;
        in a follower the leader's result arrives instead; a fresh cached result is
        returned at once. Concurrent executes of the same arguments in one tab share
        one call. The flow's options shape this: ``debounce``/``throttle`` decide when
        it runs, ``concurrency`` what happens to an execute already running, ``retry``
        and ``timeout`` how the call is made, the ``on_*`` callbacks hear of it.

        Raises:
            TypeError: ``args`` (or the function's result) are not JSON data.
            SharedFlowError: the call failed in another tab, or the mesh is backing
                off after a failure; ``retry_in`` says for how long.
            FlowTimeoutError: the call ran past the flow's ``timeout``.
            FlowCancelledError: ``flow.cancel()`` (or ``concurrency="restart"``) stopped it.
            Exception: whatever the function raised, in the tab that called it.
        """
        options = self.options
        if options.debounce or options.throttle:
            return await self._batched(args)  # type: ignore[no-any-return]
        return await self._execute_now(args)  # type: ignore[no-any-return]

    def cancel(self) -> None:
        """Stop this tab's executes of this flow: each raises :class:`FlowCancelledError`.

        The flow's ``status`` (and ``error``) go back to what they were before each
        execute, an optimistic value is taken back, and ``on_cancel`` runs once per
        execute stopped. The shared call itself is cancelled only when no tab of the
        mesh waits on it any more; a tab still waiting gets its result.
        """
        batch, self._batch = self._batch, None
        if batch is not None:
            batch.cancel()
        for task in list(self._running):
            if not task.done():
                self._cancelled.add(task)
                task.cancel()

    async def _batched(self, args: tuple[Any, ...]) -> Any:
        """``debounce``: run only the last of executes less than ``debounce`` ms apart.
        ``throttle``: run at once if the last run began ``throttle`` ms ago, else join the
        next run (with the latest arguments). Every execute of a batch gets its outcome."""
        loop = asyncio.get_running_loop()
        options = self.options
        now = loop.time() * 1000.0
        if options.throttle and self._batch is None and now - self._last_start >= options.throttle:
            self._last_start = now
            return await self._execute_now(args)
        batch = self._batch
        if batch is None:
            batch = self._batch = _Batch(loop)
        batch.args = args
        # debounce: from the latest execute; throttle: when the pace allows the next run
        delay = options.debounce or max(0.0, self._last_start + (options.throttle or 0.0) - now)
        batch.arm(delay / 1000.0, lambda: self._run_batch(batch))
        return await batch.join()

    def _run_batch(self, batch: _Batch) -> None:
        if self._batch is batch:
            self._batch = None
        self._last_start = asyncio.get_running_loop().time() * 1000.0
        batch.settle_with(asyncio.ensure_future(self._execute_now(batch.args)))

    async def _execute_now(self, args: tuple[Any, ...]) -> Any:
        concurrency = self.options.concurrency
        if concurrency == "restart":
            self.cancel()
        elif concurrency == "enqueue":
            if self._queue is None:
                self._queue = asyncio.Lock()
            async with self._queue:
                return await self._run(args)
        return await self._run(args)

    async def _run(self, args: tuple[Any, ...]) -> Any:
        """One execute: callbacks, the optimistic value, the call, its outcome in ``data``/``status``."""
        options = self.options
        self._generation += 1
        generation = self._generation
        key = cache_key(self.key, args)  # TypeError for arguments that are not JSON, before anything
        if self.mesh is not None and not options.mutation:
            self._follow(key, args)
        if self._polling is not None:
            self._polling.start(args)
        if self._persist is not None:
            self._persist.args = args
        before = (self.status, self.error, self.data, self.source)
        self._callback("on_start", args)
        optimistic = options.optimistic is not UNSET
        if optimistic:
            self._set(data=self._optimistic(args))
        self._set(status="loading", error=None)
        task = asyncio.ensure_future(self._call_through(key, args))
        self._running.add(task)
        try:
            value, source = await task
        except asyncio.CancelledError:
            stopped = task in self._cancelled  # flow.cancel(), not the caller's own cancellation
            if not task.done():
                task.cancel()
            if generation == self._generation or stopped:
                self._set(status=before[0], error=before[1],
                          **({"data": before[2], "source": before[3]} if optimistic else {}))
            if not stopped:
                raise
            self._callback("on_cancel")
            raise FlowCancelledError(f"flow {self.key!r} was cancelled in this tab") from None
        except Exception as error:
            if generation == self._generation:
                rollback = {"data": before[2], "source": before[3]} if optimistic and options.rollback_on_error else {}
                self._set(status="error", error=error, **rollback)
            if not isinstance(error, ScopeChangedError):  # not a failure: the page switched scope
                log.warning("pyflowmesh: flow %r failed: %s: %s", self.key, type(error).__name__, error)
                self._callback("on_error", error)
                self._callback("on_settled", None, error)
            raise
        finally:
            self._running.discard(task)
            self._cancelled.discard(task)
        if generation == self._generation:
            self._set(status="success", data=value, source=source)
        self._callback("on_success", value, source)
        self._callback("on_settled", value, None)
        return value

    async def _call_through(self, key: str, args: tuple[Any, ...]) -> tuple[Any, Source]:
        """The execute's data and where it came from: the mesh, or this tab alone."""
        mesh = self.mesh
        if self.options.mutation:
            return await self._mutate(args), "call"
        if mesh is None:
            return await self._run_locally(args), "call"
        off = mesh.on_retry(key, self._on_retry) if self.options.on_retry is not None else None
        try:
            return await mesh.execute_with_source(self.key, *args)
        finally:
            if off is not None:
                off()

    async def _mutate(self, args: tuple[Any, ...]) -> Any:
        """A mutation: this tab calls the function, every time (two saves are two intents: never
        shared, never cached, with the flow's retries and timeout); on success every tab drops
        every key of the flows it ``invalidates`` and refetches what it shows of them, once for
        the whole mesh (see the README's "Mutations")."""
        value = await self._call(args)
        mesh = self.mesh
        if mesh is not None and self.options.invalidates and not mesh.disposed:
            mesh.invalidate_flows(self.options.invalidates)
        return value

    def _on_invalidated(self) -> None:
        """A mutation (here or in another tab) invalidated this flow: execute the followed key again.

        Every tab following the flow does; the leader serves them all with one call. The
        refetch is an execute of the flow like any other (``loading``, then the new data;
        its ``on_*`` callbacks run), and it runs even while an older execute loads: that
        one's call may have begun before the mutation, so its data must not be the last word.
        """
        if self._followed is None or self.mesh is None or self.mesh.disposed:
            return
        args = self._followed_args
        task = asyncio.ensure_future(self._run(args))
        task.add_done_callback(_retrieve)

    def _optimistic(self, args: tuple[Any, ...]) -> Any:
        optimistic = self.options.optimistic
        return optimistic(self.data, args) if callable(optimistic) else optimistic

    def _on_retry(self, retrying: CallRetrying) -> None:
        self._callback("on_retry", retrying.error, retrying.attempt, retrying.max_attempts)

    def _callback(self, name: str, *args: Any) -> None:
        """Call the page's ``on_*`` option ``name``; its exception is logged, never raised into the execute.

        ``on_success`` takes ``(data)`` or ``(data, source)``: ``source`` says whose call
        the data came from (``"call"``, ``"mesh"``, ``"cache"``).
        """
        callback = getattr(self.options, name)
        if callback is None:
            return
        if name == "on_success" and not _takes_two(callback):
            args = args[:1]
        try:
            result = callback(*args)
            if inspect.isawaitable(result):
                asyncio.ensure_future(result).add_done_callback(functools.partial(_log_failure, self.key, name))
        except Exception:
            log.exception("pyflowmesh: %s of flow %r raised", name, self.key)

    async def refresh(self, *args: Any) -> T:
        """Drop the cached result for ``args`` in every tab, then execute again."""
        self.invalidate(*args)
        return await self.execute(*args)

    def invalidate(self, *args: Any) -> None:
        """Drop the cached result for ``args`` in every tab."""
        if self.mesh is not None:
            self.mesh.invalidate(cache_key(self.key, args))

    def subscribe(self, callback: Callable[[Flow[T]], None]) -> Callable[[], None]:
        """Call ``callback(flow)`` whenever ``data``, ``error``, ``status`` or ``source`` changes.

        Changes made by other tabs count too: after an execute, the flow follows its
        key, so a newer result (another tab refreshed it) or a shared failure (the
        server went down) reaches ``data``/``error`` and the subscribers without
        another execute in this tab.

        A flow with subscribers stays alive for them (the mesh holds it while it follows
        a key); one without is held only by the page, so flows a page makes and drops
        (one per search, per render) leave nothing behind.

        Returns:
            A function that unsubscribes.
        """
        _subscribed.add(self)
        off = _subscribe(self._subscribers, callback)

        def unsubscribe() -> None:
            off()
            if not self._subscribers:
                _subscribed.discard(self)

        return unsubscribe

    def close(self) -> None:
        """Stop following the mesh for this flow's latest key (subscribers stay); stop polling here."""
        if self._polling is not None:
            self._polling.close()
        if self._unfollow_when_gone is not None:
            self._unfollow_when_gone.detach()
            self._unfollow_when_gone = None
        for off in self._unfollow:
            off()
        self._unfollow = []
        self._followed = None

    def _follow(self, key: str, args: tuple[Any, ...] = ()) -> None:
        if key == self._followed or self.mesh is None:
            return
        self.close()
        self._followed = key
        self._followed_args = args
        # The mesh holds the flow weakly (see subscribe): a dropped flow stops following.
        me = weakref.ref(self)

        def on_data(value: Any) -> None:
            flow = me()
            if flow is not None:
                flow._on_mesh_data(value)

        def on_error(error: BaseException) -> None:
            flow = me()
            if flow is not None:
                flow._on_mesh_error(error)

        def on_invalidated(_flow: str) -> None:
            flow = me()
            if flow is not None:
                flow._on_invalidated()

        self._unfollow = [self.mesh.on_cache_update(key, on_data), self.mesh.on_error(key, on_error),
                          self.mesh.on_invalidate(self.key, on_invalidated)]
        self._unfollow_when_gone = weakref.finalize(self, _call_each, list(self._unfollow))

    def _reset_scope(self) -> None:
        """The mesh switched scope: forget everything of the old one and tell the subscribers."""
        self._generation += 1  # an execute still waiting in the old scope must change nothing
        self.close()  # the followed key was the old scope's; the next execute follows anew
        if self._polling is not None:
            self._polling.stopped = None  # a stop was the old scope's too
        self._set(data=None, error=None, status="idle", source=None)

    def _on_mesh_data(self, value: Any) -> None:
        if self.status != "loading" and self.mesh is not None and self._followed is not None:
            entry = self.mesh.cached_entry(self._followed)
            here = entry is not None and entry.origin == self.mesh.node_id
            self._set(status="success", data=value, error=None, source="call" if here else "mesh")

    def _on_mesh_error(self, error: BaseException) -> None:
        if self.status != "loading":
            self._set(status="error", error=error)

    def _set(self, **changes: Any) -> None:
        for name, value in changes.items():
            setattr(self, name, value)
        if "data" in changes and self.source != "storage":
            self.stale = False
            if self._persist is not None and self.status == "success":
                self._persist.save(self.data)
        for callback in list(self._subscribers):
            try:
                callback(self)
            except Exception:
                log.exception("pyflowmesh: a subscriber of flow %r raised", self.key)

    async def _run_locally(self, args: tuple[Any, ...]) -> Any:
        key = cache_key(self.key, args)
        running = self._local_calls.get(key)
        if running is None:
            running = asyncio.ensure_future(self._call(args))
            self._local_calls[key] = running
            running.add_done_callback(lambda _: self._local_calls.pop(key, None))
        return await asyncio.shield(running)

    async def _call(self, args: tuple[Any, ...]) -> Any:
        """This tab's own call (no mesh), with the flow's retries and timeout as the core applies them."""
        policy = self.options.call_policy()
        if policy is None:
            return await self._attempt(args)
        try:
            async with _timeout(policy.timeout):
                return await self._attempts(args, policy)
        except TimeoutError as error:
            if isinstance(error, CallTimeoutError):
                raise
            raise FlowTimeoutError(f"flow {self.key!r} took longer than its timeout ({policy.timeout:g} ms)") from None

    async def _attempts(self, args: tuple[Any, ...], policy: CallPolicy) -> Any:
        retry = self.options.retry
        attempt = 1
        while True:
            try:
                return await self._attempt(args)
            except Exception as error:
                if attempt >= policy.max_attempts or isinstance(error, TypeError):
                    raise
                if retry is not None and retry.should_retry is not None and not await ask_should_retry(
                        retry.should_retry, error, attempt, self.key):
                    raise
                delay = policy.retry_delay(attempt)
                self._callback("on_retry", error, attempt, policy.max_attempts)
                await asyncio.sleep(delay / 1000.0)
                attempt += 1

    async def _attempt(self, args: tuple[Any, ...]) -> Any:
        result = self.function(*args)
        if inspect.isawaitable(result):
            result = await result
        check_json(result, f"the result of flow {self.key!r}")
        return result


@contextlib.asynccontextmanager
async def _timeout(millis: float | None) -> AsyncIterator[None]:
    """``asyncio.timeout`` of Python 3.11+, in milliseconds (``None``: no limit)."""
    if millis is None:
        yield
        return
    async with asyncio.timeout(millis / 1000.0):
        yield


class _Batch:
    """The executes a debounce or throttle gathers into one run: they all get its outcome."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        self.args: tuple[Any, ...] = ()
        self._handle: asyncio.TimerHandle | None = None
        self._joined: list[asyncio.Future[Any]] = []

    def arm(self, delay: float, run: Callable[[], None]) -> None:
        if self._handle is not None:
            self._handle.cancel()
        self._handle = self._loop.call_later(delay, run)

    async def join(self) -> Any:
        future: asyncio.Future[Any] = self._loop.create_future()
        self._joined.append(future)
        return await future

    def settle_with(self, run: asyncio.Future[Any]) -> None:
        """Give each execute of the batch the outcome of ``run``."""
        def settle(done: asyncio.Future[Any]) -> None:
            error = None if done.cancelled() else done.exception()  # retrieved: no "never retrieved" warning
            for future in self._joined:
                if future.done():
                    continue
                if done.cancelled():
                    future.cancel()
                elif error is not None:
                    future.set_exception(error)
                else:
                    future.set_result(done.result())

        run.add_done_callback(settle)

    def cancel(self) -> None:
        """``flow.cancel()`` before the batch ran: every execute of it raises FlowCancelledError."""
        if self._handle is not None:
            self._handle.cancel()
        for future in self._joined:
            if not future.done():
                future.set_exception(FlowCancelledError("the flow was cancelled before this execute ran"))


def _takes_two(callback: Callable[..., Any]) -> bool:
    """Whether ``callback`` accepts two positional arguments (``on_success(data, source)``)."""
    try:
        parameters = inspect.signature(callback).parameters.values()
    except (TypeError, ValueError):
        return False
    positional = [p for p in parameters if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
    return len(positional) >= 2 or any(p.kind is p.VAR_POSITIONAL for p in parameters)


def _retrieve(task: asyncio.Future[Any]) -> None:
    """A refetch's outcome is in the flow's ``data``/``error`` (and was logged): only retrieve it."""
    if not task.cancelled():
        task.exception()


def _log_failure(key: str, name: str, task: asyncio.Future[Any]) -> None:
    if not task.cancelled() and task.exception() is not None:
        log.error("pyflowmesh: %s of flow %r raised", name, key, exc_info=task.exception())


def use_flow(
    function: Callable[..., Any],
    mesh: FlowMesh | Mapping[str, Any] | None = None,
    *,
    key: str | None = None,
    **options: Any,
) -> Flow[Any]:
    """Make ``function`` a flow shared by every tab of the mesh.

    Args:
        function: a sync or async function whose result is JSON data (e.g. one that
            awaits ``pyodide.http.pyfetch`` and returns ``await response.json()``).
        mesh: a :class:`FlowMesh`, or a dict of mesh options (``{"channel": ...,
            "heartbeat": 5000, ...}``, TypeScript names accepted). Every flow of one
            tab on one channel shares one mesh member. ``None``: the flow runs in
            this tab only (concurrent executes still share one call).
        key: the flow's key, the same in every tab; by default the function's
            module and qualified name.
        **options: the seed's Flow options, each with its mesh meaning (see
            :class:`~pyflowmesh.options.FlowOptions` and the README's "Flow options"):
            ``retry``, ``timeout``, ``polling``, ``on_start``, ``on_success``, ``on_error``,
            ``on_settled``, ``on_retry``, ``on_cancel``, ``concurrency``, ``debounce``,
            ``throttle``, ``mutation``, ``invalidates``, ``optimistic``,
            ``rollback_on_error``, ``persist_key``, ``persist_storage``; TypeScript names
            (``maxAttempts``, ``onSuccess``, ``persistKey`` ...) too.

    Raises:
        TypeError, ValueError: a bad function, key or option (the message names it).

    Returns:
        The :class:`Flow`.
    """
    if not callable(function):
        raise TypeError(f"use_flow needs a function, got {function!r}")
    flow_key = key if key is not None else flow_key_for(function)
    if not isinstance(flow_key, str) or not flow_key:
        raise ValueError(f"a flow key must be a non-empty str, got {flow_key!r}")
    check_flow_key(flow_key)
    flow_options = FlowOptions.parse(options)
    member = mesh if isinstance(mesh, FlowMesh) or mesh is None else _mesh_for(mesh)
    if isinstance(member, FlowMesh) and not member.disposed:
        _members.setdefault(member.member_key, member)
    return Flow(function, member, flow_key, flow_options)
