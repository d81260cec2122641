"""Who leads (election.py) when other tabs, or scripts, say odd things on the channel."""

from __future__ import annotations

import asyncio
import json

from support import HEARTBEAT, Server, async_test, open_tabs, settle, settled, until

from pyflowmesh import FlowMesh, use_flow
from pyflowmesh.protocol import PROTOCOL, VERSION
from pyflowmesh.testing import MemoryHub


@async_test
async def test_two_tabs_given_one_node_id_rename_and_one_leader_forms() -> None:
    hub, server = MemoryHub(), Server()
    twins = [FlowMesh("test-mesh", transport=hub.transport(), node_id="same-id", heartbeat=HEARTBEAT)
             for _ in range(2)]
    tabs = [*twins, *open_tabs(hub, 2)]
    await until(lambda: settled(tabs) and len({t.node_id for t in tabs}) == 4, limit=5,
                what="distinct IDs and one leader")
    assert sum(t.stats.renamed for t in twins) >= 1  # whoever heard the other first; one is enough
    assert all(t.node_id.startswith("same-id") for t in twins)
    flows = [use_flow(server.fetch, tab, key="twins") for tab in tabs]
    await asyncio.gather(*(f.execute() for f in flows))
    assert len(server.calls) == 1
    await asyncio.sleep(5 * HEARTBEAT / 1000)
    assert settled(tabs), "the renamed tabs must stay one mesh"


@async_test
async def test_a_ghost_leader_with_an_absurd_interval_is_followed_only_a_few_heartbeats() -> None:
    hub = MemoryHub(locks=False)
    tabs = open_tabs(hub, 3)
    await settle(tabs)
    ghost = {"proto": PROTOCOL, "v": VERSION, "type": "coordinator", "src": "~ghost", "term": 10**9,
             "interval": 600_000, "hidden": False}
    hub.post(json.dumps(ghost))
    await until(lambda: all(t.leader_id == "~ghost" for t in tabs), what="the ghost followed")
    # clamped to 4 heartbeats, so 2.5 x 4 = 10 heartbeats of silence depose it; then one leader again
    await until(lambda: settled(tabs) and all(t.leader_id != "~ghost" for t in tabs), limit=12 * HEARTBEAT / 1000 + 2,
                what="a real leader once the ghost fell silent")
    late = open_tabs(hub, 1)
    await until(lambda: settled([*tabs, *late]), what="a late joiner following the same leader")
    assert min(t.term for t in tabs) > 10**9
