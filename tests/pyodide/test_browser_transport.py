"""The browser transports inside real Pyodide in Chromium: BroadcastChannel, Web Locks, lifecycle, proxies.

Two mesh members in one page talk over the real ``BroadcastChannel`` (it delivers
to every other channel object of the same name, in the same page too), so these
tests exercise the real pieces without the cost of a second Pyodide. Where only
one member must hear the page's events, the other runs without a page lifecycle,
as a member in a worker does.
Heartbeats are set long wherever a test must prove that something other than a
heartbeat timeout (a ``Bye``, a released Web Lock) made the mesh react.
"""

from pytest_pyodide import run_in_pyodide


@run_in_pyodide
async def test_two_members_elect_one_leader_and_share_one_call(selenium_mesh):
    import asyncio

    from pyflowmesh import FlowMesh, use_flow
    from pyflowmesh.transports.broadcast_channel import BroadcastChannel
    from pyflowmesh.transports.page_lifecycle import DocumentLifecycle
    from pyflowmesh.transports.web_locks import WebLocks

    a = FlowMesh("t-elect", heartbeat=1000)
    b = FlowMesh("t-elect", heartbeat=1000)
    # The default in a page under Pyodide: all three browser pieces.
    assert isinstance(a.transport.channel, BroadcastChannel)
    assert isinstance(a.transport.peers, WebLocks) and isinstance(a.transport.lifecycle, DocumentLifecycle)
    for _ in range(200):
        if {a.role, b.role} == {"leader", "follower"}:
            break
        await asyncio.sleep(0.01)
    assert {a.role, b.role} == {"leader", "follower"}
    assert a.leader_id == b.leader_id
    calls = []

    async def fetch(n):
        calls.append(n)
        await asyncio.sleep(0.01)
        return {"n": n}

    fa, fb = use_flow(fetch, a, key="f"), use_flow(fetch, b, key="f")
    assert await asyncio.gather(fa.execute(3), fb.execute(3)) == [{"n": 3}, {"n": 3}]
    assert calls == [3]
    assert a.stats.sent > 0 and b.stats.received > 0 and a.stats.dropped == b.stats.dropped == 0
    a.dispose()
    b.dispose()


@run_in_pyodide
async def test_every_message_type_round_trips_through_the_real_channel(selenium_mesh):
    import asyncio

    import js
    from pyodide.ffi import create_proxy

    from pyflowmesh.core import wire as p

    messages = [
        p.Hello(src="a", locks=True),
        p.Election(src="a", term=3),
        p.Answer(src="b", term=3),
        p.Coordinator(src="b", term=4, interval=5000.0, hidden=False, locks=True, successor="a",
                      members=[p.MemberEntry(id="a", locks=True)]),
        p.Heartbeat(src="b", term=4, interval=5000.0, hidden=True, locks=False, successor=None,
                    members=[p.MemberEntry(id="c", locks=False), p.MemberEntry(id="a", locks=True)]),
        p.Bye(src="b", term=4, successor="a"),
        p.Alive(src="c", locks=False, hidden=True),
        p.Request(src="a", dst="b", req=7, key='f[1,"x"]', flow="f", args=[1, "x"]),
        p.Accept(src="b", dst="a", req=7, key="k"),
        p.Decline(src="b", dst="a", req=7, key="k", reason="unknown-flow"),
        p.Withdraw(src="a", dst="b", req=7, key="k"),
        p.Result(
            src="b", key="k", value={"deep": [1, 2.5, None, True, "ü"]}, version=2, origin="b", age=12.5, shared=True
        ),
        p.Result(src="b", key="k", value=[1], version=2, origin="b", age=0.0, shared=False, to=["a", "c"]),
        p.Failure(
            src="b", key="k", error_type="ConnectionError", message="503", retry_in=1000.0, attempt=1, shared=True
        ),
        p.Claim(src="a", key="k", running=True),
        p.Invalidate(src="a", key=None),
        p.Invalidate(src="a", key="k"),
        p.Sync(
            src="b",
            dst="a",
            entries=[p.SyncEntry(key="k", value={"v": 1}, version=1, origin="b", age=3.0)],
            failures=[p.SyncFailure(key="k2", error_type="E", message="m", retry_in=10.0, attempt=2, origin="b")],
        ),
        p.StreamListen(src="a", stream="prices", listening=True, seq=3, event_id="e-3", hidden=False),
        p.StreamEvent(src="b", stream="prices", seq=4, event_id=4, data={"price": 1.5}),
        p.StreamStatus(src="b", stream="prices", status="reconnecting", error_type="ConnectionError",
                       message="503", retry_in=1000.0, attempt=1),
        p.StreamOwner(src="a", stream="prices", phase="run", hidden=True),
    ]
    assert {type(m) for m in messages} == set(p.MESSAGE_TYPES.values())
    sender, receiver = js.BroadcastChannel.new("t-wire"), js.BroadcastChannel.new("t-wire")
    received = []
    done = asyncio.get_running_loop().create_future()

    def on_message(event):
        received.append(event.data)
        if len(received) == len(messages) and not done.done():
            done.set_result(None)

    proxy = create_proxy(on_message)
    receiver.addEventListener("message", proxy)
    try:
        for message in messages:
            sender.postMessage(p.encode(message))
        await asyncio.wait_for(done, 5)
        assert [p.decode(data) for data in received] == messages
    finally:
        receiver.removeEventListener("message", proxy)
        proxy.destroy()
        sender.close()
        receiver.close()


@run_in_pyodide
async def test_dispose_destroys_every_proxy_and_stops_sending(selenium_mesh):
    import asyncio

    from pyflowmesh import FlowMesh

    a = FlowMesh("t-proxies", heartbeat=200)
    b = FlowMesh("t-proxies", heartbeat=200)
    for _ in range(200):
        if a.leader_id and a.leader_id == b.leader_id:
            break
        await asyncio.sleep(0.01)
    follower = a if not a.is_leader else b
    transport = follower.transport
    proxies = [*transport.channel.proxies, *transport.peers.proxies, *transport.lifecycle.proxies]
    assert transport.live_proxies >= 3  # message, pagehide, visibilitychange (+ locks)
    await asyncio.sleep(0.1)  # let the follower start watching its leader's lock
    follower.dispose()
    assert transport.live_proxies == 0
    for proxy in proxies:
        try:
            proxy()
        except Exception as error:  # a destroyed PyProxy refuses to be called
            assert "destroyed" in str(error)
        else:
            raise AssertionError("a proxy survived dispose")
    sent = transport.sent
    await asyncio.sleep(0.6)  # three heartbeats
    assert transport.sent == sent
    (a if follower is b else b).dispose()


@run_in_pyodide
async def test_pagehide_makes_the_leader_hand_over_at_once(selenium_mesh):
    import asyncio

    import js

    from pyflowmesh import FlowMesh
    from pyflowmesh.transports import Transport
    from pyflowmesh.transports.broadcast_channel import BroadcastChannel
    from pyflowmesh.transports.web_locks import WebLocks

    a = FlowMesh("t-pagehide", heartbeat=60_000)  # a heartbeat timeout would take 150 s
    for _ in range(100):
        if a.is_leader:
            break
        await asyncio.sleep(0.01)
    assert a.is_leader
    # pagehide reaches every member of the page: b plays another tab, so it hears none of this page's events.
    b = FlowMesh("t-pagehide", heartbeat=60_000, transport=Transport(BroadcastChannel(), WebLocks()))
    for _ in range(100):
        if b.leader_id == a.node_id:
            break
        await asyncio.sleep(0.01)
    assert b.role == "follower"
    js.window.dispatchEvent(js.Event.new("pagehide"))
    assert a.disposed
    for _ in range(200):
        if b.is_leader:
            break
        await asyncio.sleep(0.01)
    assert b.is_leader and b.term > a.term
    b.dispose()


@run_in_pyodide
async def test_web_locks_reveal_a_vanished_leader_without_waiting_for_heartbeats(selenium_mesh):
    import asyncio

    import js

    from pyflowmesh import FlowMesh
    from pyflowmesh.transports import lock_name

    assert js.navigator.locks  # pytest-pyodide serves from localhost: a secure context
    a = FlowMesh("t-locks", heartbeat=60_000)
    for _ in range(100):
        if a.is_leader:
            break
        await asyncio.sleep(0.01)
    b = FlowMesh("t-locks", heartbeat=60_000)
    for _ in range(100):
        if b.leader_id == a.node_id:
            break
        await asyncio.sleep(0.01)
    held = [lock.name for lock in (await js.navigator.locks.query()).held]
    assert lock_name("t-locks", a.node_id) in held and lock_name("t-locks", b.node_id) in held
    await asyncio.sleep(0.1)  # b queues for a's lock
    pending = [lock.name for lock in (await js.navigator.locks.query()).pending]
    assert lock_name("t-locks", a.node_id) in pending
    # a vanishes without a Bye: its timers stop and its channel and lock go, as when a tab crashes.
    a._halt()
    a.transport.close()
    loop = asyncio.get_running_loop()
    started = loop.time()
    for _ in range(300):
        if b.is_leader:
            break
        await asyncio.sleep(0.01)
    assert b.is_leader, "the follower did not notice the released lock"
    assert loop.time() - started < 150  # far below the 150 s silence limit; the real figure is ms
    b.dispose()
    for _ in range(100):  # the browser releases the lock once the holder's promise settles
        if lock_name("t-locks", b.node_id) not in [l.name for l in (await js.navigator.locks.query()).held]:
            break
        await asyncio.sleep(0.01)
    else:
        raise AssertionError("dispose did not release the member's Web Lock")


@run_in_pyodide
async def test_a_hidden_leader_tells_its_followers_to_be_patient(selenium_mesh):
    import asyncio

    import js

    from pyflowmesh import FlowMesh
    from pyflowmesh.transports import Transport
    from pyflowmesh.transports.broadcast_channel import BroadcastChannel

    a = FlowMesh("t-hidden", heartbeat=200, hidden_timeout=30_000, use_locks=False)
    for _ in range(100):
        if a.is_leader:
            break
        await asyncio.sleep(0.01)
    # Only a hears the page go hidden (as if it were another tab): b has no page lifecycle.
    b = FlowMesh("t-hidden", heartbeat=200, hidden_timeout=30_000, transport=Transport(BroadcastChannel()))
    for _ in range(100):
        if b.leader_id == a.node_id:
            break
        await asyncio.sleep(0.01)
    js.Object.defineProperty(js.document, "visibilityState", js.JSON.parse('{"value": "hidden", "configurable": true}'))
    try:
        js.document.dispatchEvent(js.Event.new("visibilitychange"))
        await asyncio.sleep(0.05)
        a._halt()  # its timers stop, as a hidden tab's are throttled; it is still alive
        await asyncio.sleep(1.0)  # twice the visible silence limit (2.5 × 200 ms)
        assert b.leader_id == a.node_id and b.role == "follower"
    finally:
        js.Reflect.deleteProperty(js.document, "visibilityState")
        a.transport.close()
        b.dispose()


@run_in_pyodide
async def test_scope_switches_move_the_web_lock_and_leak_no_proxy(selenium_mesh):
    import asyncio

    import js

    from pyflowmesh import FlowMesh
    from pyflowmesh.core.wire import scope_digest
    from pyflowmesh.transports import lock_name

    async def held() -> list[str]:
        return [lock.name for lock in (await js.navigator.locks.query()).held]

    async def until(condition, what: str) -> None:
        for _ in range(300):
            if condition():
                return
            await asyncio.sleep(0.01)
        raise AssertionError(f"gave up waiting for {what}")

    a = FlowMesh("t-scope", heartbeat=60_000, scope="alice")
    await until(lambda: a.is_leader, "a to lead alice's mesh")
    b = FlowMesh("t-scope", heartbeat=60_000, scope="alice")
    await until(lambda: b.leader_id == a.node_id, "b to follow a")
    alice, bob = scope_digest("t-scope", "alice"), scope_digest("t-scope", "bob")
    assert lock_name("t-scope", a.node_id, alice) in await held()
    proxies = a.transport.live_proxies

    a.set_scope("bob")  # b learns it from the Bye (and from a's released alice lock)
    await until(lambda: b.is_leader and a.is_leader, "b to lead alice's mesh and a bob's")
    names = await held()
    assert lock_name("t-scope", a.node_id, bob) in names and lock_name("t-scope", a.node_id, alice) not in names

    for scope in ["alice", "bob"] * 10:  # no proxy, lock or lock request piles up
        a.set_scope(scope)
    await until(lambda: a.is_leader, "a to lead bob's mesh again")
    assert a.transport.live_proxies <= proxies
    mine = [name for name in await held() if name.endswith(":" + a.node_id)]
    assert mine == [lock_name("t-scope", a.node_id, bob)]
    pending = [lock.name for lock in (await js.navigator.locks.query()).pending]
    assert not [name for name in pending if name.endswith(":" + a.node_id)]
    a.dispose()
    b.dispose()
    assert a.transport.live_proxies == 0
    for _ in range(100):
        if not [name for name in await held() if name.startswith("pyflowmesh:t-scope:")]:
            break
        await asyncio.sleep(0.01)
    else:
        raise AssertionError("dispose did not release the Web Locks")


@run_in_pyodide
async def test_without_a_document_the_default_has_no_lifecycle_and_says_so_once(selenium_mesh):
    """In a worker there is no ``document``: the default runs without a page lifecycle, and says so."""
    import asyncio
    import logging

    from pyflowmesh import FlowMesh, transports
    from pyflowmesh.transports import page_lifecycle

    records = []
    handler = logging.Handler()
    handler.emit = records.append
    logger = logging.getLogger("pyflowmesh")
    logger.addHandler(handler)
    in_a_page = page_lifecycle.available
    page_lifecycle.available = lambda: False  # as in a worker
    try:
        first, second = transports.default_transport(), transports.default_transport()
        member = FlowMesh("t-worker", heartbeat=200)
    finally:
        page_lifecycle.available = in_a_page
        logger.removeHandler(handler)
    assert first.lifecycle is None and second.lifecycle is None and member.transport.lifecycle is None
    assert first.peers is not None  # a worker has Web Locks
    told = [record.getMessage() for record in records if "no page lifecycle" in record.getMessage()]
    assert len(told) == 1 and records[0].levelno == logging.WARNING
    for _ in range(100):
        if member.is_leader:
            break
        await asyncio.sleep(0.01)
    assert member.is_leader
    member.dispose()


@run_in_pyodide
async def test_web_locks_tell_every_tab_of_a_crashed_follower_and_hand_a_crashed_leader_to_its_successor(
    selenium_mesh,
):
    """Three members in one page, each with its own channel and Web Locks (no page lifecycle, so they
    are three tabs to each other). A heartbeat of a minute: silence cannot be what tells them.

    A follower vanishes without a Bye (its lock is released, as when its tab crashes): the leader's
    watch on its lock tells the leader at once, and the leader's next heartbeat the other follower.
    Then the leader vanishes: the browser hands its lock to the successor it named, which takes
    over in one post, with no election.
    """
    import asyncio

    from pyflowmesh import FlowMesh
    from pyflowmesh.transports import Transport
    from pyflowmesh.transports.broadcast_channel import BroadcastChannel
    from pyflowmesh.transports.web_locks import WebLocks

    async def until(condition, what):
        for _ in range(300):
            if condition():
                return
            await asyncio.sleep(0.01)
        raise AssertionError(f"gave up waiting for {what}")

    def crash(mesh):  # what MemoryHub.crash does: no Bye, no timers, the lock released
        mesh._halt()
        mesh.transport.close()

    tabs = [FlowMesh("t-members", heartbeat=60_000, transport=Transport(BroadcastChannel(), WebLocks()))
            for _ in range(3)]
    # (peers count Hellos already; a tab still in its join window follows nobody, names no successor)
    await until(lambda: all(t.peers == 2 for t in tabs) and sum(t.is_leader for t in tabs) == 1
                and len({t.leader_id for t in tabs}) == 1 and all(t.successor is not None for t in tabs),
                "3 members following one leader that names its successor")
    leader = next(t for t in tabs if t.is_leader)
    follower = next(t for t in tabs if not t.is_leader and t.node_id != leader.successor)
    successor = next(t for t in tabs if t.node_id == leader.successor)
    assert follower.successor == successor.node_id and successor.successor == successor.node_id
    await asyncio.sleep(0.1)  # let the leader's watches of its followers' locks be placed
    crash(follower)
    await until(lambda: leader.peers == 1 and successor.peers == 1, "the crashed follower to leave")
    assert [m.node_id for m in successor.members] == sorted([leader.node_id, successor.node_id], reverse=True)
    crash(leader)
    await until(lambda: successor.is_leader, "the successor to take over")
    assert successor.stats.handovers == 1 and successor.peers == 0
    successor.dispose()


@run_in_pyodide
async def test_the_js_listener_hands_python_text_and_skips_what_is_addressed_to_another_tab(selenium_mesh):
    import asyncio

    import js

    from pyflowmesh.core.config import MeshConfig
    from pyflowmesh.core.node import MeshNode
    from pyflowmesh.core.wire import Accept, Request, encode
    from pyflowmesh.transports import broadcast_channel
    from pyflowmesh.transports.broadcast_channel import BroadcastChannel

    rule = MeshNode("me", MeshConfig.from_options({"channel": "t-skip"})).address_rule
    to_other = encode(Request(src="asker", dst="other", req=1, key="f", flow="f", args=[]))
    to_me = encode(Request(src="asker", dst="me", req=2, key="f", flow="f", args=[]))
    answer_to_other = encode(Accept(src="leader", dst="other", req=1, key="f"))
    sender = js.BroadcastChannel.new("t-skip")

    async def deliveries(channel: BroadcastChannel, expected: int) -> list:
        received: list = []
        channel.skip_addressed(*rule)
        channel.open("t-skip", received.append)
        for data in (to_other, to_me, answer_to_other, js.Object.new(), "not ours"):
            sender.postMessage(data)
        for _ in range(200):
            if len(received) >= expected:
                break
            await asyncio.sleep(0.01)
        await asyncio.sleep(0.05)  # nothing more comes
        return received

    try:
        channel = BroadcastChannel()
        assert await deliveries(channel, 3) == [to_me, None, "not ours"]
        assert channel.take_skipped() == 2 and channel.take_skipped() == 0
        channel.close()
        assert channel.live_proxies == 0
        # Where the page's CSP forbids making a function from text, the Python listener reads every event.
        broadcast_channel._factory[:] = [None]
        fallback = BroadcastChannel()
        assert await deliveries(fallback, 5) == [to_other, to_me, answer_to_other, None, "not ours"]
        assert fallback.take_skipped() == 0
        fallback.close()
        assert fallback.live_proxies == 0
    finally:
        broadcast_channel._factory.clear()
        sender.close()
