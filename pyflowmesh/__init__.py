"""pyflowmesh: the browser tabs of a site as one cooperating mesh.

Each tab running Pyodide joins a mesh over ``BroadcastChannel``. The tabs elect a
leader (Bully, with terms and heartbeats); the leader runs each flow once for
every tab and broadcasts the result into a shared cache; failures are shared
with a mesh-wide back-off, so an outage produces one failing call, not a retry
storm from every tab.

    from pyflowmesh import use_flow

    flow = use_flow(fetch_dashboard, mesh={"channel": "dashboard-mesh"})
    data = await flow.execute()
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from .core.config import MeshConfig
from .core.members import Member, MeshChange
from .core.stats import MeshStats
from .core.wire import VERSION as PROTOCOL_VERSION
from .errors import (
    CallTimeoutError,
    FlowCancelledError,
    FlowInterruptedError,
    FlowTimeoutError,
    MeshDisposedError,
    MeshError,
    MessageTooLarge,
    ProtocolError,
    ScopeChangedError,
    SharedCallTimeoutError,
    SharedFlowError,
    SharedFlowTimeoutError,
)

if TYPE_CHECKING:
    from .flow import Flow, FlowStatus, use_flow
    from .mesh import FlowMesh
    from .stream import Stream, StreamEvent, StreamStatus, use_stream

# The asyncio runtime loads on first use, so that importing the sans-I/O core
# (``pyflowmesh.core``) never imports asyncio.
_RUNTIME = {"FlowMesh": "mesh", "use_flow": "flow", "Flow": "flow", "FlowStatus": "flow",
            "use_stream": "stream", "Stream": "stream", "StreamEvent": "stream", "StreamStatus": "stream"}


def __getattr__(name: str) -> Any:
    module = _RUNTIME.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    from importlib import import_module

    value = getattr(import_module(f"{__name__}.{module}"), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *_RUNTIME})

__version__ = "0.1.0"

__all__ = [
    "FlowMesh",
    "use_flow",
    "Flow",
    "FlowStatus",
    "use_stream",
    "Stream",
    "StreamEvent",
    "StreamStatus",
    "MeshConfig",
    "MeshStats",
    "Member",
    "MeshChange",
    "MeshError",
    "MeshDisposedError",
    "ScopeChangedError",
    "SharedFlowError",
    "CallTimeoutError",
    "SharedCallTimeoutError",
    "FlowTimeoutError",
    "SharedFlowTimeoutError",
    "FlowCancelledError",
    "MessageTooLarge",
    "ProtocolError",
    "FlowInterruptedError",
    "PROTOCOL_VERSION",
    "__version__",
]
