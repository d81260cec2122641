"""``use_flow``: a function made into a flow that every tab of the mesh shares.

A :class:`Flow` wraps one function (sync or async). ``await flow.execute(*args)``
returns its data: in the leader by calling the function, in a follower by asking
the leader, in any tab at once from the cache when a fresh result exists. The
flow keeps the latest ``data``, ``error``, ``status`` and ``source`` and tells
subscribers whenever they change, which is what a PyScript page re-renders from.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
import weakref
from collections.abc import Callable, Mapping
from typing import Any, Generic, Literal, TypeVar

from .core.effects import Source
from .core.values import cache_key, check_flow_key, check_json, flow_key_for
from .errors import ScopeChangedError
from .mesh import FlowMesh, _members, _subscribe, member_key

__all__ = ["Flow", "FlowStatus", "use_flow"]

log = logging.getLogger("pyflowmesh")

T = TypeVar("T")
FlowStatus = Literal["idle", "loading", "success", "error"]

def _mesh_for(options: Mapping[str, Any]) -> FlowMesh:
    """The tab's member for these options: the existing one on that channel, or a new one."""
    if not isinstance(options, Mapping):
        raise TypeError(f"mesh= takes a dict of options or a FlowMesh, got {type(options).__name__}")
    options = dict(options)
    transport = options.pop("transport", None)
    node_id = options.pop("node_id", None)
    channel = options.get("channel")
    if not isinstance(channel, str) or not channel:
        raise ValueError("the mesh option 'channel' is required: the BroadcastChannel name, e.g. 'my-mesh'")
    key = member_key(channel, transport)
    existing = _members.get(key)
    if existing is not None and not existing.disposed:
        # The scope belongs to the tab's session, not to a flow: a flow that names none joins
        # the member in whatever scope it is now (set_scope may have moved it since).
        options.setdefault("scope", existing.scope)
        wanted = existing.config.from_options(options)
        if wanted.scope != existing.scope:
            raise ValueError(
                f"this tab's mesh member on channel {channel!r} is in another scope than this flow asks for; "
                "a tab holds one scope's data per channel: switch every flow at once with "
                "mesh.set_scope(...), or leave 'scope' out of this flow's options"
            )
        if wanted != existing.config:
            raise ValueError(
                f"this tab already has a mesh member on channel {channel!r} with other options "
                f"({existing.config}); every flow on one channel shares one member, so give them the same options"
            )
        return existing
    mesh = FlowMesh(transport=transport, node_id=node_id, **options)
    _members[key] = mesh
    return mesh


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
            ``"mesh"`` (another tab's call) or ``"cache"``; ``None`` before any data.
    """

    def __init__(self, function: Callable[..., Any], mesh: FlowMesh | None, key: str) -> None:
        self.function = function
        self.mesh = mesh
        self.key = key
        self.data: T | None = None
        self.error: BaseException | None = None
        self.status: FlowStatus = "idle"
        self.source: Source | None = None
        self._subscribers: list[Callable[[Flow[T]], None]] = []
        self._generation = 0
        self._local_calls: dict[str, asyncio.Future[Any]] = {}
        self._followed: str | None = None
        self._unfollow_when_gone: weakref.finalize[Any, Any] | None = None
        self._unfollow: list[Callable[[], None]] = []
        if mesh is not None:
            mesh.register(key, function)
            mesh._bind_flow(self._reset_scope)

    def __repr__(self) -> str:
        return f"<Flow {self.key!r} {self.status}>"

    @property
    def loading(self) -> bool:
        return self.status == "loading"

    async def execute(self, *args: Any) -> T:
        """Run the flow with ``args`` through the mesh and return its data.

        In the leader (or with no leader able to serve) this calls the function;
        in a follower the leader's result arrives instead; a fresh cached result is
        returned at once. Concurrent executes of the same arguments in one tab share
        one call.

        Raises:
            TypeError: ``args`` (or the function's result) are not JSON data.
            SharedFlowError: the call failed in another tab, or the mesh is backing
                off after a failure; ``retry_in`` says for how long.
            Exception: whatever the function raised, in the tab that called it.
        """
        self._generation += 1
        generation = self._generation
        if self.mesh is not None:
            self._follow(cache_key(self.key, args))
        before = (self.status, self.error)
        self._set(status="loading", error=None)
        try:
            if self.mesh is not None:
                value, source = await self.mesh.execute_with_source(self.key, *args)
            else:
                value, source = await self._run_locally(args), "call"
        except asyncio.CancelledError:
            # The caller gave up: the flow shows what it showed before, and follows the mesh again.
            if generation == self._generation:
                self._set(status=before[0], error=before[1])
            raise
        except Exception as error:
            if generation == self._generation:
                self._set(status="error", error=error)
            if not isinstance(error, ScopeChangedError):  # not a failure: the page switched scope
                log.warning("pyflowmesh: flow %r failed: %s: %s", self.key, type(error).__name__, error)
            raise
        if generation == self._generation:
            self._set(status="success", data=value, source=source)
        return value  # type: ignore[no-any-return]

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
        """Stop following the mesh for this flow's latest key (subscribers stay)."""
        if self._unfollow_when_gone is not None:
            self._unfollow_when_gone.detach()
            self._unfollow_when_gone = None
        for off in self._unfollow:
            off()
        self._unfollow = []
        self._followed = None

    def _follow(self, key: str) -> None:
        if key == self._followed or self.mesh is None:
            return
        self.close()
        self._followed = key
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

        self._unfollow = [self.mesh.on_cache_update(key, on_data), self.mesh.on_error(key, on_error)]
        self._unfollow_when_gone = weakref.finalize(self, _call_each, list(self._unfollow))

    def _reset_scope(self) -> None:
        """The mesh switched scope: forget everything of the old one and tell the subscribers."""
        self._generation += 1  # an execute still waiting in the old scope must change nothing
        self.close()  # the followed key was the old scope's; the next execute follows anew
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
        result = self.function(*args)
        if inspect.isawaitable(result):
            result = await result
        check_json(result, f"the result of flow {self.key!r}")
        return result


def use_flow(
    function: Callable[..., Any],
    mesh: FlowMesh | Mapping[str, Any] | None = None,
    *,
    key: str | None = None,
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

    Returns:
        The :class:`Flow`.
    """
    if not callable(function):
        raise TypeError(f"use_flow needs a function, got {function!r}")
    flow_key = key if key is not None else flow_key_for(function)
    if not isinstance(flow_key, str) or not flow_key:
        raise ValueError(f"a flow key must be a non-empty str, got {flow_key!r}")
    check_flow_key(flow_key)
    member = mesh if isinstance(mesh, FlowMesh) or mesh is None else _mesh_for(mesh)
    if isinstance(member, FlowMesh) and not member.disposed:
        _members.setdefault(member.member_key, member)
    return Flow(function, member, flow_key)
