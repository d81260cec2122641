#!/usr/bin/env python3
"""Print ``passed failed skipped`` of a pytest junit file, for build.sh's test summary.

A missing or unreadable file (pytest stopped before writing it) counts as ``0 0 0``;
build.sh then goes by pytest's exit status. Errors count as failures. Standard library only.

    python3 tools/junit_counts.py test-artifacts/junit-cpython.xml    # e.g. "412 0 3"
"""

from __future__ import annotations

import sys
import xml.etree.ElementTree as ET
from pathlib import Path


def counts(junit: Path) -> tuple[int, int, int]:
    """(passed, failed, skipped) over every ``<testsuite>`` of the file."""
    try:
        root = ET.parse(junit).getroot()
    except (OSError, ET.ParseError):
        return 0, 0, 0
    suites = [root] if root.tag == "testsuite" else root.findall("testsuite")
    tests = sum(int(suite.get("tests", 0)) for suite in suites)
    skipped = sum(int(suite.get("skipped", 0)) for suite in suites)
    failed = sum(int(suite.get("failures", 0)) + int(suite.get("errors", 0)) for suite in suites)
    return tests - failed - skipped, failed, skipped


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 1:
        print(__doc__, file=sys.stderr)
        return 2
    print(*counts(Path(args[0])))
    return 0


if __name__ == "__main__":
    sys.exit(main())
