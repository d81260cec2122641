#!/usr/bin/env python3
"""Make a vendored Pyodide distribution load packages offline.

The npm package ``pyodide`` ships the runtime and ``pyodide-lock.json`` but no
package wheels. For each requested package (and everything its lock entry
depends on, recursively) this script puts a pure-Python wheel of exactly the
version that the lock lists beside ``pyodide.mjs``, taken from PyPI
(``pip download``; built from the sdist with ``pip wheel`` when PyPI has no
wheel, as for atomicwrites 1.4.1), and points the lock entry's ``file_name`` and
``sha256`` at it (Pyodide's own builds differ from PyPI's files).

``--add-wheel`` also copies a local wheel (ours) into the folder and adds or
replaces its lock entry, so ``pyodide.loadPackage("pyflowmesh")`` works.

The lock file is read, edited and written with ``pyodide-lock`` (PyPI:
``pyodide-lock[wheel]``, which build.sh installs into .venv); it writes the
upstream file's own layout, so an untouched lock comes out byte for byte.
Idempotent: a package whose file is present and matches the lock is left
alone, so re-runs do not touch the network.

    .venv/bin/python tools/vendor_pyodide.py web/vendor/pyodide micropip packaging pytest tblib \\
        --add-wheel dist/pyflowmesh-0.1.0-py3-none-any.whl
"""

from __future__ import annotations

import argparse
import hashlib
import shutil
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

from packaging.utils import canonicalize_name, parse_wheel_filename
from packaging.version import Version
from pyodide_lock import PackageSpec, PyodideLockSpec
from pyodide_lock.utils import add_wheels_to_spec, update_package_sha256

LOCK = "pyodide-lock.json"


def sha256_of(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def find(packages: dict[str, PackageSpec], name: str) -> str:
    """The lock's key for ``name``, compared canonically (``Pygments`` is ``pygments``)."""
    for key in packages:
        if canonicalize_name(key) == canonicalize_name(name):
            return key
    raise SystemExit(f"vendor_pyodide: {name!r} is not in {LOCK}")


def closure(packages: dict[str, PackageSpec], roots: list[str]) -> list[str]:
    """The lock keys of ``roots`` and of everything their entries depend on, recursively."""
    seen: list[str] = []
    todo = list(roots)
    while todo:
        key = find(packages, todo.pop(0))
        if key not in seen:
            seen.append(key)
            todo.extend(packages[key].depends)
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
    have = {parse_wheel_filename(p.name)[0] for p in dest.glob("*.whl")}
    for spec in specs:
        if canonicalize_name(spec.split("==")[0]) in have:
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


def check_pins(packages: dict[str, PackageSpec], specs: list[str]) -> list[str]:
    """The names in ``specs`` (``NAME`` or ``NAME==VERSION``); a pinned version must be the lock's."""
    names = []
    for spec in specs:
        name, _, want = spec.partition("==")
        entry = packages[find(packages, name)]
        if want and entry.version != want:
            raise SystemExit(f"vendor_pyodide: {LOCK} lists {name} {entry.version}, build.sh pins {want}")
        names.append(name)
    return names


def is_in_place(folder: Path, entry: PackageSpec) -> bool:
    path = folder / entry.file_name
    return path.is_file() and sha256_of(path) == str(entry.sha256)


def provide(lock: PyodideLockSpec, keys: list[str], folder: Path) -> None:
    """Put PyPI's wheel of each lock package in ``keys`` into ``folder`` unless the lock's file is
    there already, and point its entry (``file_name``, ``sha256``) at that wheel."""
    packages = lock.packages
    missing = [k for k in keys if not is_in_place(folder, packages[k])]
    if not missing:
        return
    python_version = ".".join(lock.info.python.split(".")[:2])  # "3.14.2" -> "3.14"
    specs = [f"{packages[k].name}=={packages[k].version}" for k in missing]
    print(f"vendor_pyodide: fetching {len(specs)} wheel(s) for Python {python_version}: {' '.join(specs)}")
    with tempfile.TemporaryDirectory() as tmp:
        fetch_wheels(specs, python_version, Path(tmp))
        got = {parse_wheel_filename(p.name)[:2]: p for p in Path(tmp).glob("*.whl")}
        for key in missing:
            entry = packages[key]
            wheel = got.get((canonicalize_name(entry.name), Version(entry.version)))
            if wheel is None:
                raise SystemExit(f"vendor_pyodide: pip gave no wheel for {key}=={entry.version}")
            check_pure(wheel)
            shutil.copyfile(wheel, folder / wheel.name)
            entry.file_name = wheel.name
            update_package_sha256(entry, folder / wheel.name)


def add_wheel(lock: PyodideLockSpec, wheel: Path, folder: Path) -> PyodideLockSpec:
    """Copy a local pure-Python ``wheel`` into ``folder`` and give it its lock entry (replacing
    an older build's entry and file)."""
    check_pure(wheel)
    name = canonicalize_name(parse_wheel_filename(wheel.name)[0])
    old = lock.packages.get(name)
    if old is not None and old.file_name != wheel.name:
        (folder / old.file_name).unlink(missing_ok=True)
    target = folder / wheel.name
    shutil.copyfile(wheel, target)
    tags = parse_wheel_filename(wheel.name)[3]
    python = "cp" + "".join(lock.info.python.split(".")[:2])
    if any(t.interpreter == python and t.abi == "none" and t.platform == "any" for t in tags):
        # Bytecode for the lock's Python (tools/browser_wheel.py's cp314-none-any, the tag
        # Pyodide's own py-compile gives): pyodide-lock's check accepts only pyXY-none-any,
        # abi3 and platform wheels, so this entry is written here, as that function would.
        with zipfile.ZipFile(target) as zf:
            imports = sorted({n.split("/")[0] for n in zf.namelist()
                              if n.count("/") == 1 and n.split("/")[1] in ("__init__.py", "__init__.pyc")})
        lock.packages[name] = PackageSpec(
            name=name, version=str(parse_wheel_filename(wheel.name)[1]), file_name=wheel.name,
            install_dir="site", sha256=sha256_of(target), package_type="package", imports=imports, depends=[])
    else:
        # The entry's name, imports, depends (from the wheel's metadata) and sha256.
        lock = add_wheels_to_spec(lock, [target], base_path=folder)
    print(f"vendor_pyodide: {wheel.name} is in the lock as {name!r} (sha256 {lock.packages[name].sha256[:12]}...)")
    return lock


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description="Vendor PyPI wheels into a Pyodide distribution.")
    ap.add_argument("pyodide_dir", type=Path, help="folder holding pyodide.mjs and pyodide-lock.json")
    ap.add_argument(
        "packages", nargs="*",
        help="lock package names (NAME or NAME==VERSION, checked) to provide with their dependencies",
    )
    ap.add_argument("--add-wheel", type=Path, action="append", default=[], help="a local wheel to add to the lock")
    args = ap.parse_args(argv)

    folder: Path = args.pyodide_dir
    lock_path = folder / LOCK
    before = PyodideLockSpec.from_json(lock_path)
    lock = before.clone()
    keys = closure(lock.packages, check_pins(lock.packages, args.packages))
    provide(lock, keys, folder)
    for wheel in args.add_wheel:
        lock = add_wheel(lock, wheel, folder)

    if lock != before:
        tmp_lock = lock_path.with_suffix(".json.tmp")
        lock.to_json(tmp_lock)  # the upstream file's own layout (sorted keys, no indent)
        tmp_lock.replace(lock_path)
    print(f"vendor_pyodide: {len(keys)} lock package(s) available offline in {folder}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
