"""Who leads (election.py) when other tabs, or scripts, say odd things on the channel."""

from __future__ import annotations

import asyncio
import json

import pytest
from support import HEARTBEAT, Server, async_test, open_tabs, settle, settled, until

from pyflowmesh import FlowMesh, use_flow
from pyflowmesh.core.wire import PROTOCOL, VERSION
from pyflowmesh.transports.memory import MemoryHub


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


@pytest.mark.parametrize("hidden", [False, True])
def test_a_ghost_leader_with_an_absurd_interval_is_followed_only_a_few_heartbeats(hidden: bool) -> None:
    """A Coordinator from an ID that is no tab, with Web Locks off, is outlived.

    Its interval is clamped to 4 heartbeats, so 2.5 x 4 = 10 heartbeats of silence depose it.
    Saying it is hidden changes nothing: a hidden leader is granted ``hidden_timeout`` (75 s)
    only once it was heard before (found by the adversarial review: it used to be 750
    heartbeats here).
    """

    async def main() -> None:
        hub = MemoryHub(locks=False)
        tabs = open_tabs(hub, 3)
        await settle(tabs)
        ghost = {"proto": PROTOCOL, "v": VERSION, "type": "coordinator", "src": "~ghost", "term": 10**9,
                 "interval": 600_000, "hidden": hidden, "locks": False, "members": []}
        hub.post(json.dumps(ghost))
        await until(lambda: all(t.leader_id == "~ghost" for t in tabs), what="the ghost followed")
        await until(lambda: settled(tabs) and all(t.leader_id != "~ghost" for t in tabs),
                    limit=12 * HEARTBEAT / 1000 + 2, what="a real leader once the ghost fell silent")
        late = open_tabs(hub, 1)
        await until(lambda: settled([*tabs, *late]), what="a late joiner following the same leader")
        assert min(t.term for t in tabs) > 10**9

    asyncio.run(asyncio.wait_for(main(), 30))


@async_test
async def test_a_leader_entering_the_back_forward_cache_says_bye_on_the_memory_hub_too() -> None:
    # One Transport carries out pagehide(persisted) for every channel: the Bye that
    # set_frozen(True) sends goes out before the channel closes, on the hub as in a browser.
    hub = MemoryHub(locks=False)
    tabs = open_tabs(hub, 3)
    leader = await settle(tabs)
    kinds: list[str] = []
    hub.on_post(lambda channel, data: kinds.append(json.loads(data)["type"]))
    hub.page(leader).pagehide(persisted=True)
    await asyncio.sleep(0)
    assert "bye" in kinds, f"posted on the channel: {kinds}"
