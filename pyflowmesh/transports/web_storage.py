"""The browser's ``localStorage`` and ``sessionStorage`` for :mod:`pyflowmesh.persist`, through Pyodide's ``js``.

Both are synchronous: a tab reads a flow's persisted data while ``use_flow`` runs, before
its first ``await``. Any of their calls may raise (storage disabled, a full quota, a
sandboxed frame); :mod:`pyflowmesh.persist` catches and counts that, never raises it.
"""

from __future__ import annotations

from typing import Any

import js  # type: ignore[import-not-found]

from .base import has_attribute

__all__ = ["WebStorage", "available"]


def available(kind: str) -> bool:
    """Whether this page has ``localStorage`` (``kind`` "local") or ``sessionStorage`` ("session")."""
    try:
        return has_attribute(js, f"{kind}Storage") and getattr(js, f"{kind}Storage") is not None
    except Exception:  # a SecurityError on access, in some sandboxed frames
        return False


class WebStorage:
    """``localStorage`` (``kind="local"``) or ``sessionStorage`` (``kind="session"``) as text by key."""

    def __init__(self, kind: str) -> None:
        if kind not in ("local", "session"):
            raise ValueError(f"a web storage is 'local' or 'session', got {kind!r}")
        self.kind = kind
        self._store: Any = getattr(js, f"{kind}Storage")

    def get(self, key: str) -> str | None:
        value = self._store.getItem(key)
        return value if isinstance(value, str) else None

    def set(self, key: str, text: str) -> None:
        self._store.setItem(key, text)

    def remove(self, key: str) -> None:
        self._store.removeItem(key)

    def names(self) -> list[str]:
        store = self._store
        found = (store.key(index) for index in range(int(store.length)))
        return [key for key in found if isinstance(key, str)]
