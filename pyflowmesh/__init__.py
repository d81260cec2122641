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

from .config import MeshConfig
from .errors import (
    CallTimeoutError,
    FlowInterruptedError,
    MeshDisposedError,
    MeshError,
    MessageTooLarge,
    ScopeChangedError,
    SharedCallTimeoutError,
    SharedFlowError,
)
from .flow import Flow, FlowStatus, use_flow
from .mesh import FlowMesh
from .protocol import VERSION as PROTOCOL_VERSION
from .stats import MeshStats

__version__ = "0.1.0"

__all__ = [
    "FlowMesh",
    "use_flow",
    "Flow",
    "FlowStatus",
    "MeshConfig",
    "MeshStats",
    "MeshError",
    "MeshDisposedError",
    "ScopeChangedError",
    "SharedFlowError",
    "CallTimeoutError",
    "SharedCallTimeoutError",
    "MessageTooLarge",
    "FlowInterruptedError",
    "PROTOCOL_VERSION",
    "__version__",
]
