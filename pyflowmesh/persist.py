"""A flow's ``persist_key``: its latest data kept in the browser, shown at once by a tab that opens later.

``use_flow(fn, mesh=..., persist_key="dashboard")`` (TS ``persistKey``) keeps the flow's latest
data, and the arguments that produced it, in ``localStorage`` (``persist_storage="local"``, the
default: every tab of the origin, across visits) or ``sessionStorage`` (``"session"``: this tab
and its reloads). Both are synchronous, so ``use_flow`` reads the entry before the page's first
``await``: the flow starts with ``data`` set, ``status`` ``"success"``, ``source`` ``"storage"``
and ``stale`` True, and revalidates once (one execute with the stored arguments; several tabs
opening at once share that call through the mesh). IndexedDB could hold more but is only
asynchronous: the data would appear after the first round trip through the event loop, which is
what this feature exists to avoid.

One entry per ``persist_key`` (``pyflowmesh:persist:<persist_key>``), a versioned JSON envelope::

    {"pyflowmesh": "persist", "v": 1, "scope": "<scope digest>", "flow": "<flow key>",
     "args": [...], "data": ..., "saved": <ms since the epoch>}

``scope`` is :func:`pyflowmesh.core.wire.scope_digest` of the mesh's channel and scope now (``""`` for
the shared scope): an entry of another scope, another flow, another version, or anything that is
not such an envelope is ignored and counted in :data:`stats`, never raised and never shown.
An entry is at most :data:`MAX_ENTRY_CHARS` characters: larger data is not stored (the older
entry is removed, so it cannot come back as if it were the latest) and is counted. A storage that
raises (disabled, full) is counted too. ``FlowMesh.set_scope(..., forget=True)`` removes every
entry of the old scope from both storages.

Outside the browser (CPython) each storage is an in-memory :class:`MemoryStorage` shared by the
process, so tests can close every "tab" and open a new one; :func:`use_storage` replaces it.
"""

from __future__ import annotations

import asyncio
import json
import logging
import sys
import time
from collections.abc import Callable
from dataclasses import fields
from typing import Any, Protocol

from .core.structs import dataclass  # @dataclass without its cost at import
from .core.values import check_json, dump_json

__all__ = ["Storage", "MemoryStorage", "PersistStats", "Persistence", "stats", "storage", "use_storage",
           "forget_scope", "MAX_ENTRY_CHARS", "PREFIX", "VERSION"]

log = logging.getLogger("pyflowmesh")

VERSION = 1
PREFIX = "pyflowmesh:persist:"
MAX_ENTRY_CHARS = 256 * 1024  # one entry; a browser gives an origin about 5 M characters of localStorage
_ENVELOPE = ("pyflowmesh", "v", "scope", "flow", "args", "data", "saved")


class Storage(Protocol):
    """Text by key, synchronously (``localStorage``'s shape). Any method may raise: it is counted."""

    def get(self, key: str) -> str | None: ...

    def set(self, key: str, text: str) -> None: ...

    def remove(self, key: str) -> None: ...

    def names(self) -> list[str]: ...


class MemoryStorage:
    """A :class:`Storage` in memory: CPython's stand-in for ``localStorage``/``sessionStorage``."""

    def __init__(self) -> None:
        self.items: dict[str, str] = {}

    def get(self, key: str) -> str | None:
        return self.items.get(key)

    def set(self, key: str, text: str) -> None:
        self.items[key] = text

    def remove(self, key: str) -> None:
        self.items.pop(key, None)

    def names(self) -> list[str]:
        return list(self.items)


@dataclass
class PersistStats:
    """What persistence did in this tab (``pyflowmesh.persist.stats``).

    Attributes:
        saved: entries written.
        restored: entries shown at a flow's start.
        too_large: data not stored because its entry would exceed ``MAX_ENTRY_CHARS``.
        corrupt: entries that were not a readable envelope of this version (ignored).
        foreign: readable entries of another scope or another flow (ignored, never shown).
        storage_errors: calls of the storage that raised (disabled, quota full, ...).
        forgotten: entries removed by ``set_scope(..., forget=True)``.
    """

    saved: int = 0
    restored: int = 0
    too_large: int = 0
    corrupt: int = 0
    foreign: int = 0
    storage_errors: int = 0
    forgotten: int = 0

    def reset(self) -> None:
        for item in fields(self):
            setattr(self, item.name, 0)


stats = PersistStats()
_storages: dict[str, Storage] = {}


def storage(kind: str) -> Storage | None:
    """The storage ``"local"`` or ``"session"`` of this page (``None`` if the page has none)."""
    found = _storages.get(kind)
    if found is not None:
        return found
    if sys.platform == "emscripten":
        from .transports import web_storage

        if not web_storage.available(kind):
            return None
        found = web_storage.WebStorage(kind)
    else:
        found = MemoryStorage()
    _storages[kind] = found
    return found


def use_storage(kind: str, replacement: Storage | None) -> None:
    """Make ``replacement`` the storage ``kind`` (``None``: back to the default)."""
    if kind not in ("local", "session"):
        raise ValueError(f"a storage is 'local' or 'session', got {kind!r}")
    if replacement is None:
        _storages.pop(kind, None)
    else:
        _storages[kind] = replacement


def _read(kind: str, key: str) -> str | None:
    store = storage(kind)
    if store is None:
        return None
    try:
        text = store.get(key)
    except Exception:
        stats.storage_errors += 1
        return None
    return text if isinstance(text, str) else None


def _parse(text: str) -> dict[str, Any] | None:
    """The envelope in ``text``, checked; ``None`` (counted as corrupt) for anything else."""
    if len(text) > MAX_ENTRY_CHARS:
        stats.corrupt += 1
        return None
    try:
        entry = json.loads(text)
        ok = (isinstance(entry, dict) and set(entry) == set(_ENVELOPE) and entry["pyflowmesh"] == "persist"
              and entry["v"] == VERSION and isinstance(entry["scope"], str) and isinstance(entry["flow"], str)
              and isinstance(entry["args"], list) and isinstance(entry["saved"], (int, float))
              and not isinstance(entry["saved"], bool))
        if ok:
            check_json(entry["args"], "persisted arguments")
            check_json(entry["data"], "persisted data")
    except (ValueError, TypeError, RecursionError):
        ok = False
    if not ok:
        stats.corrupt += 1
        return None
    return dict(entry)


def forget_scope(digest: str) -> int:
    """Remove every entry of scope ``digest`` from both storages; how many went."""
    removed = 0
    for kind in ("local", "session"):
        store = storage(kind)
        if store is None:
            continue
        try:
            keys = [key for key in store.names() if key.startswith(PREFIX)]
        except Exception:
            stats.storage_errors += 1
            continue
        for key in keys:
            text = _read(kind, key)
            if text is None:
                continue
            try:
                entry = json.loads(text) if len(text) <= MAX_ENTRY_CHARS else None
            except (ValueError, RecursionError):
                entry = None
            if isinstance(entry, dict) and entry.get("scope") == digest:
                try:
                    store.remove(key)
                    removed += 1
                except Exception:
                    stats.storage_errors += 1
    stats.forgotten += removed
    return removed


class Flow(Protocol):
    """What persistence needs of a :class:`~pyflowmesh.flow.Flow`."""

    @property
    def key(self) -> str: ...

    async def execute(self, *args: Any) -> Any: ...


class Persistence:
    """The persisted entry of one flow in this tab (``flow._persist``)."""

    def __init__(self, flow_key: str, persist_key: str, kind: str, scope: Callable[[], str]) -> None:
        self.flow_key = flow_key
        self.key = PREFIX + persist_key
        self.kind = kind
        self._scope = scope  # the scope digest now (a tab may switch scope)
        self.args: tuple[Any, ...] = ()  # the arguments of the latest execute: what the data answers
        self._written: str | None = None  # the entry last written or read, "saved" left out
        self._revalidation: asyncio.Task[Any] | None = None

    def restore(self) -> tuple[tuple[Any, ...], Any] | None:
        """The stored ``(args, data)`` of this flow and scope, or ``None`` (nothing, or ignored and counted)."""
        text = _read(self.kind, self.key)
        if text is None:
            return None
        entry = _parse(text)
        if entry is None:
            return None
        if entry["scope"] != self._scope() or entry["flow"] != self.flow_key:
            stats.foreign += 1
            return None
        stats.restored += 1
        self._written = dump_json({**entry, "saved": 0})
        self.args = tuple(entry["args"])
        return self.args, entry["data"]

    def save(self, data: Any) -> None:
        """Keep ``data`` (the answer to ``self.args``) as this flow's entry."""
        store = storage(self.kind)
        if store is None:
            return
        entry = {"pyflowmesh": "persist", "v": VERSION, "scope": self._scope(), "flow": self.flow_key,
                 "args": list(self.args), "data": data, "saved": 0}
        try:
            same = dump_json(entry)  # what the entry says, but when: the same data is not written again
        except (TypeError, ValueError):
            return  # not JSON data: the mesh refuses it before it gets here
        if same == self._written:
            return
        entry["saved"] = round(time.time() * 1000)
        text = dump_json(entry)
        try:
            if len(text) > MAX_ENTRY_CHARS:
                stats.too_large += 1
                store.remove(self.key)  # the older entry must not come back as the latest
                self._written = None
                return
            store.set(self.key, text)
        except Exception:
            stats.storage_errors += 1
            return
        self._written = same
        stats.saved += 1

    def revalidate(self, flow: Flow) -> None:
        """One execute with the stored arguments, if the page runs an event loop (Pyodide always does)."""
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            return
        self._revalidation = loop.create_task(self._execute(flow, self.args))

    @staticmethod
    async def _execute(flow: Flow, args: tuple[Any, ...]) -> None:
        try:
            await flow.execute(*args)
        except Exception as error:  # shown in flow.error/status already; nobody awaits this task
            log.info("pyflowmesh: revalidating the persisted data of flow %r failed: %s", flow.key, error)
