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
def test_the_browser_wheel_leaves_out_what_nothing_reads_at_run_time(selenium_mesh):
    # tools/pyodide_compile.mjs: bytecode only, no docstrings, no annotations of functions,
    # while a class body keeps its own (the fields of a struct) and tracebacks keep lines.
    import dataclasses
    import pathlib
    import traceback

    import pyflowmesh
    from pyflowmesh import FlowMesh, use_flow
    from pyflowmesh.core.wire import Result, decode
    from pyflowmesh.errors import ProtocolError

    package = pathlib.Path(pyflowmesh.__file__).parent
    assert not list(package.rglob("*.py")) and list(package.rglob("*.pyc"))
    assert use_flow.__doc__ is None and use_flow.__annotations__ == {}
    assert FlowMesh.__init__.__annotations__ == {}
    fields = {field.name: field.type for field in dataclasses.fields(Result)}
    assert "key" in fields and all(isinstance(kind, str) and kind for kind in fields.values())
    try:
        decode("{not json")
    except ProtocolError as error:
        frames = traceback.extract_tb(error.__traceback__)
        assert frames and all(frame.lineno and frame.lineno > 0 for frame in frames)
    else:
        raise AssertionError("decode took text that is not JSON")


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
