"""The in-memory transport for CPython, under the name 0.1 gave it.

It lives in :mod:`pyflowmesh.transports.memory` now; ``from pyflowmesh.testing
import MemoryHub`` keeps working for the pages and scripts written against 0.1::

    hub = MemoryHub()
    tab = FlowMesh(channel="demo", transport=hub.transport())
"""

from __future__ import annotations

from .transports.memory import MemoryChannel, MemoryHub, MemoryLocks, MemoryPage

__all__ = ["MemoryChannel", "MemoryHub", "MemoryLocks", "MemoryPage"]
