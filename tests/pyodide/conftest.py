"""pytest-pyodide harness: Debian's Chromium via Playwright, pyflowmesh inside Pyodide.

Run through ``./build.sh test --level pyodide`` (which builds first), or by hand::

    .venv/bin/python -m pytest tests/pyodide \\
        --dist-dir=web/vendor/pyodide --runtime=chrome --runner=playwright

``./build.sh build`` puts the built wheel into ``web/vendor/pyodide/`` and adds a
``pyflowmesh`` entry to its ``pyodide-lock.json``; pytest-pyodide serves that folder,
so inside Pyodide ``loadPackage("pyflowmesh")`` installs our wheel offline.

Fixtures for tests (pytest-pyodide requires the first argument of a ``@run_in_pyodide``
test to be a fixture whose name starts with ``selenium``, hence the names):

- ``selenium_mesh``: pytest-pyodide's ``selenium`` (one page per module, Pyodide
  loaded) with pyflowmesh installed. Use it as the first argument of a
  ``@run_in_pyodide`` test, or call ``selenium_mesh.run_js(...)`` / ``.run(...)``.
- ``selenium_mesh_module_scope``: the same for module-scoped use (hypothesis).
- ``selenium_mesh_standalone``: a fresh page per test, pyflowmesh installed.
- ``pyproject_version``: the version in pyproject.toml.

``@run_in_pyodide(packages=["pyflowmesh"])`` with the plain ``selenium`` fixture works too.
"""

from __future__ import annotations

import tomllib
from pathlib import Path

import pytest
from chromium_args import CHROMIUM, chromium_args  # tests/ is on sys.path: see tests/conftest.py

ROOT = Path(__file__).resolve().parents[2]


SOURCE_DIR = ROOT / "pyflowmesh"

CHROMIUM_ARGS = chromium_args()  # with the allocation samplers off: see tests/chromium_args.py


def _pyodide_run_configured(config: pytest.Config) -> bool:
    try:
        runner = config.getoption("runner")
        dist_dir = Path(config.getoption("dist_dir"))
    except ValueError:  # pytest-pyodide disabled (-p no:pytest_pyodide)
        return False
    return runner == "playwright" and (dist_dir / "pyodide.mjs").is_file()


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Skip (rather than fail obscurely) when run without the pytest-pyodide options.

    When they are given, run this folder's tests after the others: a running sync
    Playwright (started by the first of them) makes ``asyncio.run()`` fail in the main
    thread. (One process cannot run both this folder and tests/browser: two sync
    Playwrights do not nest. build.sh runs them as separate pytest invocations.)"""
    here = Path(__file__).parent
    if _pyodide_run_configured(config):
        mine = [item for item in items if here in Path(str(item.path)).parents]
        if mine and len(mine) != len(items):
            ids = {id(item) for item in mine}
            items[:] = [item for item in items if id(item) not in ids] + mine
        return
    skip = pytest.mark.skip(
        reason="Pyodide tests need: ./build.sh test --level pyodide "
        "(or --dist-dir=web/vendor/pyodide --runtime=chrome --runner=playwright after ./build.sh build)"
    )
    for item in items:
        if here in Path(str(item.path)).parents:
            item.add_marker(skip)


@pytest.fixture(scope="session")
def playwright_browsers(request):
    """Override of pytest-pyodide's fixture (module scope there, session here: one Chromium
    for the whole run). Same return shape: ``{runtime_name: playwright Browser}``.
    pytest-pyodide's own launches Playwright's downloaded browser, which is not here."""
    if request.config.option.runner.lower() != "playwright":
        yield {}
        return
    from playwright.sync_api import sync_playwright
    from pytest_pyodide.config import get_global_config
    from pytest_pyodide.hook import pytest_wrapper

    runtimes = set(pytest_wrapper.pyodide_runtimes)
    if runtimes - {"chrome"}:
        pytest.exit(f"only the chrome runtime is available here, not {sorted(runtimes - {'chrome'})}", returncode=1)
    with sync_playwright() as p:
        browser = p.chromium.launch(
            executable_path=CHROMIUM,
            args=CHROMIUM_ARGS + get_global_config().get_flags("chrome"),
        )
        try:
            yield {"chrome": browser} if runtimes else {}
        finally:
            browser.close()


@pytest.fixture(scope="session")
def pyproject_version() -> str:
    return tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["version"]


@pytest.fixture(scope="session")
def pyflowmesh_wheel(request) -> Path:
    """The wheel of pyflowmesh in the dist dir (checked present and not older than the source)."""
    dist_dir = Path(request.config.getoption("dist_dir"))
    wheels = sorted(dist_dir.glob("pyflowmesh-*.whl"))  # the browser wheel (cp3XX-none-any: bytecode)
    if not wheels:
        pytest.fail(f"no pyflowmesh wheel in {dist_dir}: run ./build.sh build", pytrace=False)
    wheel = wheels[-1]
    newest_source = max((p.stat().st_mtime for p in SOURCE_DIR.rglob("*.py")), default=0.0)
    if newest_source > wheel.stat().st_mtime + 1:
        pytest.fail(
            f"{wheel.name} in {dist_dir} is older than the source in pyflowmesh/: run ./build.sh build",
            pytrace=False,
        )
    return wheel


def _install_pyflowmesh(selenium) -> None:
    # Loads the wheel listed in the vendored pyodide-lock.json (sha256 checked); a no-op
    # when the page already has it.
    selenium.load_package(["pyflowmesh"])


@pytest.fixture
def selenium_mesh(selenium, pyflowmesh_wheel):
    _install_pyflowmesh(selenium)
    yield selenium


@pytest.fixture(scope="module")
def selenium_mesh_module_scope(selenium_module_scope, pyflowmesh_wheel):
    _install_pyflowmesh(selenium_module_scope)
    yield selenium_module_scope


@pytest.fixture
def selenium_mesh_standalone(selenium_standalone, pyflowmesh_wheel):
    _install_pyflowmesh(selenium_standalone)
    yield selenium_standalone
