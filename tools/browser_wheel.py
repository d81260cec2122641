#!/usr/bin/env python3
"""The wheel the browser loads: the package precompiled for Pyodide's Python, without what only tests use.

From the plain wheel in ``dist/`` (``py3-none-any``, sources, for PyPI) this writes
``pyflowmesh-<version>-cp<XY>-none-any.whl`` into the output folder:

- bytecode only (``*.pyc`` where the ``*.py`` were, as Pyodide ships its own standard
  library): compiled by the vendored Pyodide itself, in Node
  (``tools/pyodide_compile.mjs``), so its magic number and bytecode are those of the Python
  the browser runs, whatever ``python3`` the build machine has; the tag ``cp<XY>`` says
  which (Pyodide's own ``py-compile`` names its wheels the same way). Docstrings and the
  annotations of functions are left out (nothing reads them at run time); a class body's
  annotations (a struct's fields), asserts and line numbers stay;
- without ``pyflowmesh/simulation/`` (the simulator), ``pyflowmesh/testing.py`` and
  ``pyflowmesh/transports/memory.py`` (the in-memory transport of CPython tests and the
  simulator): nothing a page imports reaches them (:data:`EXCLUDE`);
- ``*.dist-info``: the plain wheel's ``METADATA`` without its description (the README), a
  ``WHEEL`` with the new tag, a new ``RECORD``.

Entries are stored deflated at level 9 with fixed timestamps, so the same sources give the
same file. Beside the wheel, the same files as one gzip'd tar (``<wheel name minus
.whl>.tar.gz``, the *bundle*): what pages download. A zip compresses each file on its own;
one stream over all of them shares the names and the code that recur between modules (138 KB
against 161 KB here), and Pyodide unpacks either (``pyodide.unpackArchive``). The wheel
stays for Pyodide's lock file (``loadPackage``). Prints the new wheel's path. Standard
library and ``node`` only.

    python3 tools/browser_wheel.py dist/pyflowmesh-0.1.0-py3-none-any.whl web/wheels \\
        --pyodide web/vendor/pyodide
"""

from __future__ import annotations

import argparse
import base64
import gzip
import hashlib
import io
import json
import shutil
import subprocess
import sys
import tarfile
import tempfile
import zipfile
from pathlib import Path

COMPILER = Path(__file__).resolve().parent / "pyodide_compile.mjs"
# What no page imports: the simulator, the CPython test helpers and their in-memory transport.
EXCLUDE = ("pyflowmesh/simulation/", "pyflowmesh/testing.py", "pyflowmesh/transports/memory.py")
EPOCH = (1980, 1, 1, 0, 0, 0)


def _record_line(name: str, data: bytes) -> str:
    digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
    return f"{name},sha256={digest},{len(data)}"


def build(wheel: Path, out: Path, pyodide: Path) -> Path:
    """Write the browser wheel for ``wheel`` into ``out`` (older pyflowmesh ``cp*`` wheels go); return its path."""
    name, version = wheel.name.split("-")[:2]
    dist_info = f"{name}-{version}.dist-info"
    with tempfile.TemporaryDirectory(prefix="browser-wheel-") as tmp, zipfile.ZipFile(wheel) as plain:
        src = Path(tmp)
        sources = [n for n in plain.namelist() if n.endswith(".py") and not n.startswith(EXCLUDE)]
        for member in sources:
            plain.extract(member, src)
        done = subprocess.run(["node", str(COMPILER), str(pyodide), str(src)], check=True,
                              capture_output=True, text=True)
        info = json.loads(done.stdout.strip().splitlines()[-1])
        tag = f"{info['tag']}-none-any"
        files: dict[str, bytes] = {}
        for member in sorted(sources):
            files[member[:-3] + ".pyc"] = (src / member).with_suffix(".pyc").read_bytes()
        # The headers only: the description (the README, a third of the download) is for PyPI.
        metadata = plain.read(f"{dist_info}/METADATA").decode()
        files[f"{dist_info}/METADATA"] = (metadata.split("\n\n", 1)[0] + "\n").encode()
        files[f"{dist_info}/WHEEL"] = (
            "Wheel-Version: 1.0\nGenerator: pyflowmesh tools/browser_wheel.py\nRoot-Is-Purelib: true\n"
            f"Tag: {tag}\n").encode()
    record = [_record_line(n, data) for n, data in files.items()] + [f"{dist_info}/RECORD,,"]
    files[f"{dist_info}/RECORD"] = ("\n".join(record) + "\n").encode()
    out.mkdir(parents=True, exist_ok=True)
    for old in [*out.glob(f"{name}-*-cp*-none-any.whl"), *out.glob(f"{name}-*-cp*-none-any.tar.gz")]:
        old.unlink()
    target = out / f"{name}-{version}-{tag}.whl"
    partial = target.with_suffix(".part")
    with zipfile.ZipFile(partial, "w") as archive:
        for member, data in files.items():
            entry = zipfile.ZipInfo(member, EPOCH)
            entry.compress_type = zipfile.ZIP_DEFLATED
            entry.external_attr = 0o644 << 16
            archive.writestr(entry, data, compresslevel=9)
    shutil.move(partial, target)
    bundle_path(target).write_bytes(bundle(files))
    return target


def bundle_path(wheel: Path) -> Path:
    """Where :func:`build` puts the bundle of ``wheel``: the same name, ``.tar.gz`` for ``.whl``."""
    return wheel.with_name(wheel.name[: -len(".whl")] + ".tar.gz")


def bundle(files: dict[str, bytes]) -> bytes:
    """``files`` (path in site-packages: bytes) as one gzip'd tar, level 9, no timestamps, the same bytes each build."""
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w", format=tarfile.USTAR_FORMAT) as archive:
        for member, data in files.items():
            entry = tarfile.TarInfo(member)
            entry.size, entry.mode, entry.mtime = len(data), 0o644, 0
            archive.addfile(entry, io.BytesIO(data))
    return gzip.compress(raw.getvalue(), compresslevel=9, mtime=0)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("wheel", type=Path, help="the plain wheel (dist/pyflowmesh-<version>-py3-none-any.whl)")
    parser.add_argument("out", type=Path, help="where to write the browser wheel (web/wheels)")
    parser.add_argument("--pyodide", type=Path, required=True, help="the vendored Pyodide (web/vendor/pyodide)")
    args = parser.parse_args(argv)
    target = build(args.wheel, args.out, args.pyodide)
    print(target)
    return 0


if __name__ == "__main__":
    sys.exit(main())
