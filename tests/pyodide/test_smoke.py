"""Smoke tests of the pytest-pyodide harness: our wheel and BroadcastChannel inside Pyodide."""

from pytest_pyodide import run_in_pyodide


@run_in_pyodide
def test_pyflowmesh_imports_inside_pyodide(selenium_mesh, pyproject_version):
    import sys

    import pyflowmesh

    assert sys.platform == "emscripten"
    assert pyflowmesh.__version__ == pyproject_version
    # The installed wheel, not a source tree.
    assert "site-packages" in pyflowmesh.__file__


@run_in_pyodide
async def test_broadcast_channel_delivers_between_two_channels(selenium_mesh):
    import asyncio
    import json

    import js
    from pyodide.ffi import create_proxy

    name = "pyflowmesh-smoke"
    sender = js.BroadcastChannel.new(name)
    receiver = js.BroadcastChannel.new(name)
    received = asyncio.get_running_loop().create_future()

    def on_message(event):
        if not received.done():
            received.set_result(event.data)

    proxy = create_proxy(on_message)
    receiver.addEventListener("message", proxy)
    try:
        message = {"type": "hello", "from": 1, "payload": [1, 2, 3]}
        sender.postMessage(json.dumps(message))
        data = await asyncio.wait_for(received, timeout=5)
        assert json.loads(data) == message
    finally:
        receiver.removeEventListener("message", proxy)
        proxy.destroy()
        sender.close()
        receiver.close()
