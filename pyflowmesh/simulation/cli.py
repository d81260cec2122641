"""``python -m pyflowmesh.simulation``: run many seeds; print a summary, and how to reproduce each failing seed."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from .app import PATHOLOGIES
from .batch import run_many
from .plan import FAULT_KINDS
from .report import SimulationReport

__all__ = ["main"]


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m pyflowmesh.simulation``: run many seeds; exit 1 if any invariant failed."""
    parser = argparse.ArgumentParser(
        prog="python -m pyflowmesh.simulation",
        description="Run pyflowmesh's deterministic multi-tab simulator over many seeds and check its invariants.",
    )
    parser.add_argument("--seeds", type=int, default=1000, help="how many seeds to run (default 1000)")
    parser.add_argument("--seed-start", type=int, default=0, help="the first seed (default 0)")
    parser.add_argument("--tabs", type=int, default=50, help="the most tabs open at the start (2..N per seed)")
    parser.add_argument("--strategy", choices=("leader-follower", "peer-to-peer", "both"), default="both",
                        help="both (the default) alternates strategies by seed")
    group = parser.add_mutually_exclusive_group()
    group.add_argument("--no-locks", action="store_true", help="no Web Locks in any run (default: every other pair)")
    group.add_argument("--locks", action="store_true", help="Web Locks in every run")
    parser.add_argument("--faults", default="all",
                        help=f"the fault kinds to inject, comma-separated (default all: {','.join(FAULT_KINDS)})")
    parser.add_argument("--pathologies", default="all",
                        help=f"how flows misbehave with the pathological fault (default all: {','.join(PATHOLOGIES)})")
    parser.add_argument("--verbose", action="store_true", help="print every run's event trace")
    args = parser.parse_args(argv)
    if args.tabs < 2:
        parser.error("--tabs must be at least 2")
    faults = FAULT_KINDS if args.faults == "all" else tuple(k for k in args.faults.split(",") if k)
    unknown = sorted(set(faults) - set(FAULT_KINDS))
    if unknown:
        parser.error(f"unknown fault kind(s) {', '.join(unknown)}; known: {', '.join(FAULT_KINDS)}")
    pathologies = None if args.pathologies == "all" else tuple(k for k in args.pathologies.split(",") if k)
    if pathologies is not None and (not pathologies or set(pathologies) - set(PATHOLOGIES)):
        parser.error(f"--pathologies takes some of {', '.join(PATHOLOGIES)}")
    locks = False if args.no_locks else True if args.locks else None
    flags = f"--tabs {args.tabs} --strategy {args.strategy}" + (" --no-locks" if args.no_locks else "") + (
        " --locks" if args.locks else "") + ("" if args.faults == "all" else f" --faults {','.join(faults)}") + (
        "" if pathologies is None else f" --pathologies {','.join(pathologies)}")
    last = args.seed_start + args.seeds - 1
    print(f"pyflowmesh simulation: seeds {args.seed_start}..{last}, 2..{args.tabs} tabs per seed, "
          f"strategy {args.strategy}, Web Locks {'off' if args.no_locks else 'on' if args.locks else 'mixed'}")

    def progress(report: SimulationReport) -> None:
        if args.verbose and report.trace is not None:
            print(f"--- trace of {report.summary()}")
            print("\n".join(report.trace))
            print(f"--- quiet phase from {report.quiet_at:.1f} ms, settled at {report.settled_at:.1f} ms, "
                  f"end {report.end_at:.1f} ms; bounds {report.bounds}")
        if report.violations:
            print(f"FAIL {report.summary()}")
            for violation in report.violations:
                print(f"    {violation}")
            print(f"    reproduce: python -m pyflowmesh.simulation --seeds 1 --seed-start {report.seed} {flags} "
                  "--verbose")
        sys.stdout.flush()

    summary = run_many(range(args.seed_start, last + 1), args.tabs, args.strategy, locks, args.verbose, progress,
                       faults, pathologies)
    print("\n".join(summary.lines()))
    return 1 if summary.failures else 0
