#!/usr/bin/env python3
"""Make a vendored Pyodide distribution load packages offline.

The npm package ``pyodide`` ships the runtime and ``pyodide-lock.json`` but no
package wheels. For each requested package (and everything its lock entry
depends on, recursively) this script puts a pure-Python wheel of exactly the
version that the lock lists beside ``pyodide.mjs``, taken from PyPI
(``pip download``; built from the sdist with ``pip wheel`` when PyPI has no
wheel, as for atomicwrites 1.4.1), and rewrites the lock entry's
``file_name`` and ``sha256`` (Pyodide's own builds differ from PyPI's files).

``--add-wheel`` also copies a local wheel (ours) into the folder and adds or
replaces its lock entry, so ``pyodide.loadPackage("pyflowmesh")`` works.

Idempotent: a package whose file is present and matches the lock is left
alone, so re-runs do not touch the network. Standard library only.

    python3 tools/vendor_pyodide.py web/vendor/pyodide micropip packaging pytest tblib \
        --add-wheel dist/pyflowmesh-0.1.0-py3-none-any.whl
"""

from __future__ import annotations

import argparse
import hashlib
import json
import re
import shutil
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

LOCK = "pyodide-lock.json"


def canonical(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def sha256_of(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def wheel_name_version(filename: str) -> tuple[str, str]:
    if not filename.endswith(".whl"):
        raise ValueError(f"not a wheel file name: {filename}")
    parts = filename[: -len(".whl")].split("-")
    if len(parts) not in (5, 6):
        raise ValueError(f"not a wheel file name: {filename}")
    return canonical(parts[0]), parts[1]


def closure(packages: dict, roots: list[str]) -> list[str]:
    by_canonical = {canonical(k): k for k in packages}
    seen: list[str] = []
    todo = list(roots)
    while todo:
        name = todo.pop(0)
        key = by_canonical.get(canonical(name))
        if key is None:
            raise SystemExit(f"vendor_pyodide: {name!r} is not in {LOCK}")
        if key in seen:
            continue
        seen.append(key)
        todo.extend(packages[key].get("depends", []))
    return seen


def pip(*args: str, quiet_failure: bool = False) -> bool:
    cmd = [sys.executable, "-m", "pip", *args]
    res = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    if res.returncode != 0 and not quiet_failure:
        print(f"vendor_pyodide: failed: {' '.join(cmd)}\n{res.stdout[-3000:]}", file=sys.stderr)
    return res.returncode == 0


def fetch_wheels(specs: list[str], python_version: str, dest: Path) -> None:
    """Download pure-Python wheels of ``specs`` (``name==version``) into ``dest``."""
    download = [
        "download", "--quiet", "--no-deps", "--only-binary=:all:",
        "--python-version", python_version, "--implementation", "py",
        "--abi", "none", "--platform", "any", "-d", str(dest),
    ]
    if pip(*download, *specs, quiet_failure=True):
        return
    # One at a time, so one package with no wheel on PyPI does not sink the rest.
    for spec in specs:
        name = spec.split("==")[0]
        if any(wheel_name_version(p.name)[0] == canonical(name) for p in dest.glob("*.whl")):
            continue
        if pip(*download, spec, quiet_failure=True):
            continue
        print(f"vendor_pyodide: no wheel of {spec} on the index; building it from its sdist")
        if not pip("wheel", "--quiet", "--no-deps", "--no-binary=:all:", "-w", str(dest), spec):
            raise SystemExit(f"vendor_pyodide: could not get a wheel of {spec}")


def check_pure(wheel: Path) -> None:
    with zipfile.ZipFile(wheel) as zf:
        wheel_meta = next(n for n in zf.namelist() if n.endswith(".dist-info/WHEEL"))
        text = zf.read(wheel_meta).decode()
    if "Root-Is-Purelib: true" not in text:
        raise SystemExit(f"vendor_pyodide: {wheel.name} is not a pure-Python wheel")


def lock_entry_for(wheel: Path, existing: dict | None) -> dict:
    name, version = wheel_name_version(wheel.name)
    with zipfile.ZipFile(wheel) as zf:
        tops = sorted(
            {
                n.split("/")[0].removesuffix(".py")
                for n in zf.namelist()
                if not n.split("/")[0].endswith((".dist-info", ".data"))
            }
        )
    entry = dict(existing or {})
    entry.update(
        {
            "name": (existing or {}).get("name", name),
            "version": version,
            "file_name": wheel.name,
            "install_dir": "site",
            "sha256": sha256_of(wheel),
            "package_type": "package",
            "imports": (existing or {}).get("imports") or tops,
            "depends": (existing or {}).get("depends", []),
            "unvendored_tests": False,
        }
    )
    entry.setdefault("tool", {})
    return entry


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description="Vendor PyPI wheels into a Pyodide distribution.")
    ap.add_argument("pyodide_dir", type=Path, help="folder holding pyodide.mjs and pyodide-lock.json")
    ap.add_argument(
        "packages", nargs="*", help="lock package names (NAME or NAME==VERSION, checked) to provide with their dependencies"
    )
    ap.add_argument("--add-wheel", type=Path, action="append", default=[], help="a local wheel to add to the lock")
    args = ap.parse_args(argv)

    lock_path = args.pyodide_dir / LOCK
    lock = json.loads(lock_path.read_text())
    packages = lock["packages"]
    py = lock["info"]["python"]  # e.g. "3.14.2"
    python_version = ".".join(py.split(".")[:2])

    roots = []
    for spec in args.packages:
        name, _, want = spec.partition("==")
        roots.append(name)
        key = next((k for k in packages if canonical(k) == canonical(name)), None)
        if key is None:
            raise SystemExit(f"vendor_pyodide: {name!r} is not in {LOCK}")
        if want and packages[key]["version"] != want:
            raise SystemExit(
                f"vendor_pyodide: {LOCK} lists {name} {packages[key]['version']}, build.sh pins {want}"
            )
    names = closure(packages, roots)
    missing = []
    for key in names:
        entry = packages[key]
        path = args.pyodide_dir / entry["file_name"]
        if not (path.is_file() and sha256_of(path) == entry["sha256"]):
            missing.append(key)

    changed = False
    if missing:
        specs = [f"{packages[k]['name']}=={packages[k]['version']}" for k in missing]
        print(f"vendor_pyodide: fetching {len(specs)} wheel(s) for Python {python_version}: {' '.join(specs)}")
        with tempfile.TemporaryDirectory() as tmp:
            tmpdir = Path(tmp)
            fetch_wheels(specs, python_version, tmpdir)
            got = {wheel_name_version(p.name): p for p in tmpdir.glob("*.whl")}
            for key in missing:
                entry = packages[key]
                wheel = got.get((canonical(key), entry["version"])) or got.get(
                    (canonical(entry["name"]), entry["version"])
                )
                if wheel is None:
                    raise SystemExit(f"vendor_pyodide: pip gave no wheel for {key}=={entry['version']}")
                check_pure(wheel)
                target = args.pyodide_dir / wheel.name
                shutil.copyfile(wheel, target)
                entry["file_name"] = wheel.name
                entry["sha256"] = sha256_of(target)
                changed = True

    for wheel in args.add_wheel:
        check_pure(wheel)
        name, _version = wheel_name_version(wheel.name)
        key = next((k for k in packages if canonical(k) == name), name)
        old = packages.get(key)
        # Drop the previous build of this package (another version) from the folder.
        if old and old.get("file_name") and old["file_name"] != wheel.name:
            (args.pyodide_dir / old["file_name"]).unlink(missing_ok=True)
        target = args.pyodide_dir / wheel.name
        shutil.copyfile(wheel, target)
        new = lock_entry_for(target, old)
        if new != old:
            packages[key] = new
            changed = True
        print(f"vendor_pyodide: {wheel.name} is in the lock as {key!r} (sha256 {new['sha256'][:12]}...)")

    if changed:
        tmp_lock = lock_path.with_suffix(".json.tmp")
        tmp_lock.write_text(json.dumps(lock))  # the upstream file's own layout
        tmp_lock.replace(lock_path)
    print(f"vendor_pyodide: {len(names)} lock package(s) available offline in {args.pyodide_dir}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
