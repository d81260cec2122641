"""What Pyodide 314 hands JavaScript, and deep JSON in Pyodide: facts web/lab/lab.py and core/wire.py rely on.

``web/lab/lab.py`` (the page the browser fault suite drives) returns only plain JS values
and builds its own ``Promise`` because of what the first test pins down; should a
Pyodide upgrade change it, this test says so. The second is the Pyodide side of the
``too-deep`` regression (tests/test_protocol_nesting.py): there, unlike in CPython,
parsing such input is a fatal error of the whole runtime.
"""

from pytest_pyodide import run_in_pyodide


@run_in_pyodide
async def test_coroutines_futures_and_dicts_returned_to_js_are_pyproxies_not_promises(selenium_mesh):
    import asyncio
    import json

    import js
    from pyodide.code import run_js
    from pyodide.ffi import JsProxy, create_proxy, jsnull

    async def coroutine():
        await asyncio.sleep(0)
        return {"x": 1}

    def future():
        done = asyncio.get_running_loop().create_future()
        done.set_result(5)
        return done

    probe = run_js(
        """(async (coroutine, future, dict) => {
            const c = coroutine(), f = future(), d = dict();
            const out = {coroutine_is_promise: c instanceof Promise, coroutine_thenable: typeof c.then,
                         future_is_promise: f instanceof Promise, future_thenable: typeof f.then,
                         dict_is_pyproxy: typeof d.destroy === "function"};
            const value = await c;
            out.awaited_value_is_pyproxy = typeof value.destroy === "function";
            value.destroy();
            d.destroy();
            out.future_value = await f;
            return JSON.stringify(out);
        })"""
    )
    proxies = [create_proxy(coroutine), create_proxy(future), create_proxy(lambda: {"a": 1})]
    try:
        found = json.loads(await probe(*proxies))
    finally:
        for proxy in proxies:
            proxy.destroy()
    assert found == {
        "coroutine_is_promise": False, "coroutine_thenable": "function",
        "future_is_promise": False, "future_thenable": "function",
        "dict_is_pyproxy": True, "awaited_value_is_pyproxy": True, "future_value": 5,
    }
    # JS null is neither None nor a JsProxy in Python.
    null = js.JSON.parse("null")
    assert null is jsnull and null is not None and not isinstance(null, JsProxy)


@run_in_pyodide
def test_deeply_nested_json_is_dropped_before_it_can_overflow_the_stack(selenium_mesh):
    from pyflowmesh.core import wire as protocol

    for raw in ("[" * 200_000, '{"a":' * 50_000 + "1" + "}" * 50_000):
        try:
            protocol.decode(raw)
        except protocol.ProtocolError as error:
            assert error.reason == "too-deep"
        else:
            raise AssertionError("decoded")
    # The runtime is alive and well: a normal message still decodes.
    assert protocol.decode(protocol.encode(protocol.Hello(src="a"))) == protocol.Hello(src="a")
