"""persist.py's real browser storage in Pyodide: localStorage and sessionStorage through
transports/web_storage.py, and a flow restoring its persisted data synchronously in use_flow."""

from __future__ import annotations

from pytest_pyodide import run_in_pyodide


@run_in_pyodide
def web_storage_round_trip(selenium) -> dict:
    import js

    from pyflowmesh import persist
    from pyflowmesh.transports.web_storage import WebStorage, available

    js.localStorage.clear()
    js.sessionStorage.clear()
    local = persist.storage("local")
    assert isinstance(local, WebStorage) and available("local") and available("session")
    local.set("pyflowmesh:persist:x", "héllo")
    seen = js.localStorage.getItem("pyflowmesh:persist:x")
    names = local.names()
    local.remove("pyflowmesh:persist:x")
    gone = local.get("pyflowmesh:persist:x")
    session = persist.storage("session")
    session.set("k", "v")
    return {"seen": seen, "names": names, "gone": gone, "session": js.sessionStorage.getItem("k"),
            "local_has_k": local.get("k")}  # getItem gives jsnull; the adapter None


def test_web_storage_is_the_real_local_and_session_storage(selenium_mesh) -> None:
    result = web_storage_round_trip(selenium_mesh)
    assert result == {"seen": "héllo", "names": ["pyflowmesh:persist:x"], "gone": None, "session": "v",
                      "local_has_k": None}


@run_in_pyodide
async def persisted_flow(selenium) -> dict:
    import json

    import js

    from pyflowmesh import persist, use_flow

    js.localStorage.clear()
    persist.stats.reset()
    first = use_flow(lambda n: {"n": n}, key="dash", persist_key="dash")
    await first.execute(3)
    stored = json.loads(js.localStorage.getItem("pyflowmesh:persist:dash"))
    # a corrupt entry elsewhere is ignored and counted, never raised
    js.localStorage.setItem("pyflowmesh:persist:bad", "{not json")
    bad = use_flow(lambda: 1, key="bad", persist_key="bad")
    # a new flow (as in a new tab) shows the stored data during use_flow, before any await
    again = use_flow(lambda n: {"n": n + 100}, key="dash", persist_key="dash")
    at_once = (again.data, again.status, again.source, again.stale)
    return {"stored": [stored["v"], stored["scope"], stored["flow"], stored["args"], stored["data"]],
            "at_once": list(at_once), "bad": [bad.data, persist.stats.corrupt],
            "too_large": persist.MAX_ENTRY_CHARS}


def test_a_flow_restores_from_the_real_local_storage_at_once(selenium_mesh) -> None:
    result = persisted_flow(selenium_mesh)
    assert result["stored"] == [1, "", "dash", [3], {"n": 3}]
    assert result["at_once"] == [{"n": 3}, "success", "storage", True]
    assert result["bad"] == [None, 1]
