#!/usr/bin/env python3
"""Put the browser's wheel into ``web/wheels/`` with the two files that pages load it by.

The wheel is the one ``tools/browser_wheel.py`` made (``pyflowmesh-<v>-cp<XY>-none-any.whl``:
bytecode for the vendored Pyodide, without the simulator). Its file name changes with the
version, so pages name neither it nor the version; they load these stable files instead:

- ``manifest.json``: ``name``, ``version``, ``wheel`` (its file name), ``sha256``, ``bytes``,
  ``url`` (from the site's root), ``browser_wheel`` (the same file, relative to the
  manifest), ``browser_bundle`` (the same files as one ``.tar.gz``, made beside the wheel:
  what ``web/pyodide-nojspi.mjs`` fetches and unpacks, smaller than the wheel),
  ``bundle_bytes``, and the ``pyodide`` and ``pyscript`` versions the build vendored.
- ``pyscript.json``: a PyScript config for the site's pages (``config="./wheels/pyscript.json"``
  in the demo at ``/``, ``config="../wheels/pyscript.json"`` in the lab at ``/lab/``):
  just the ``interpreter``, ``web/pyodide-nojspi.mjs``, a path from the site's root (PyScript
  0.7 resolves it against the page). That module loads the vendored Pyodide without JSPI,
  whose stacks crash tabs under Chromium's allocation samplers, and installs the wheel
  itself, fetched while Pyodide boots: no ``packages``, so PyScript never loads micropip
  (docs/build-notes.md).

Older pyflowmesh wheels in the folder are removed. Standard library only.

    python3 tools/web_wheels.py .cache/browser-wheel/pyflowmesh-0.1.0-cp314-none-any.whl web/wheels \\
        --pyodide 314.0.7 --pyscript 0.7.31
"""

from __future__ import annotations

import argparse
import hashlib
import json
import shutil
import sys
from pathlib import Path
from typing import Any

INTERPRETER = "/pyodide-nojspi.mjs"  # web/pyodide-nojspi.mjs, as tools/server.py serves it


def write_json(path: Path, data: dict[str, Any]) -> None:
    path.write_text(json.dumps(data, indent=2) + "\n")


def install(wheel: Path, out: Path, pyodide: str, pyscript: str) -> None:
    """Copy the browser ``wheel`` into ``out`` (replacing older builds) and write its manifest and config."""
    name, version = wheel.name.split("-")[:2]
    out.mkdir(parents=True, exist_ok=True)
    for old in [*out.glob(f"{name}-*.whl"), *out.glob(f"{name}-*.tar.gz")]:
        old.unlink()
    shutil.copyfile(wheel, out / wheel.name)
    bundle = wheel.with_name(wheel.name[: -len(".whl")] + ".tar.gz")  # tools/browser_wheel.py's
    shutil.copyfile(bundle, out / bundle.name)
    write_json(out / "manifest.json", {
        "name": name,
        "version": version,
        "wheel": wheel.name,
        "sha256": hashlib.sha256(wheel.read_bytes()).hexdigest(),
        "bytes": wheel.stat().st_size,
        "url": f"./wheels/{wheel.name}",
        "browser_wheel": f"./{wheel.name}",
        "browser_bundle": f"./{bundle.name}",
        "bundle_bytes": bundle.stat().st_size,
        "pyodide": pyodide,
        "pyscript": pyscript,
    })
    write_json(out / "pyscript.json", {"interpreter": INTERPRETER})


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("wheel", type=Path, help="the browser wheel (tools/browser_wheel.py's)")
    parser.add_argument("out", type=Path, help="the folder pages load it from (web/wheels)")
    parser.add_argument("--pyodide", required=True, help="the vendored Pyodide's version")
    parser.add_argument("--pyscript", required=True, help="the vendored PyScript's version")
    args = parser.parse_args(argv)
    install(args.wheel, args.out, args.pyodide, args.pyscript)
    print(f"web_wheels: {args.out}: {args.wheel.name}, manifest.json, pyscript.json")
    return 0


if __name__ == "__main__":
    sys.exit(main())
