"""Two PyScript tabs load the vendored Pyodide and our wheel offline and import pyflowmesh."""


def test_two_tabs_load_pyflowmesh(open_tabs, demo_server, pyflowmesh_version, record_property):
    tabs = open_tabs(2, "/lab/smoke.html")

    for page in tabs:
        assert page.text_content("#version") == pyflowmesh_version
        assert page.get_attribute("body", "data-ready") == "true"
        assert page.text_content("#python").startswith("3.14.")
        # The build's config loads Pyodide without JSPI (web/pyodide-nojspi.mjs): its stacks
        # crash tabs under Chromium's allocation samplers. The browser has JSPI (so this
        # checks something) and gets it back once Pyodide is loaded.
        assert page.evaluate("window.pyflowmesh_jspi") is False
        assert page.evaluate("typeof WebAssembly.Suspending") == "function"

    # Loading the page never touches the API.
    assert demo_server.calls == 0
    # Boot times, for the record (junit xml): performance.now() at ready, per tab.
    record_property("tabs_ready_ms", open_tabs.ready_ms)
    record_property("tabs_wall_s", round(open_tabs.wall_s, 2))
    print(f"2 PyScript tabs ready in {open_tabs.wall_s:.2f} s; per tab (ms): {open_tabs.ready_ms}")
