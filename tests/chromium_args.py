"""The command line of the Chromium that the Pyodide and browser tests launch (one place for both).

Besides the usual switches, it turns off Chromium's two allocation samplers, the
in-process heap profiler (``HeapProfilerReporting``) and GWP-ASan
(``GwpAsanMalloc``, ``GwpAsanPartitionAlloc``). Both record the stack of a sampled
allocation by walking frame pointers (``base::debug::TraceStackFramePointers``), and
in a Pyodide 314 tab that walk runs off the top of the stack it is on: the renderer
dies with SIGSEGV a few KB above its stack pointer, in a guard page, usually within a
second of PyScript becoming ready (Pyodide's stack switching puts Python on stacks
that the walker does not know the end of). The heap profiler is switched on for a
whole browser session at random (every renderer then gets ``--subproc-heap-profiling``):
one such session here lost 17 of its tabs in 2.5 minutes, and forcing the profiler on
crashed 11 of 12 lab tabs (0 of 12 without). GWP-ASan crashed one tab on its own.

Playwright passes its own ``--disable-features`` list, and Chromium keeps only the last
``--disable-features`` switch, so ours repeats Playwright's list (read from the installed
driver, pinned in build.sh) and adds the samplers.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

CHROMIUM = os.environ.get("CHROMIUM", "/usr/bin/chromium")  # Debian's

# What Playwright 1.65 disables; used only if its list cannot be read from the driver.
_PLAYWRIGHT_DISABLED_FEATURES = [
    "AvoidUnnecessaryBeforeUnloadCheckSync", "DestroyProfileOnBrowserClose", "HttpsUpgrades",
    "HttpsFirstBalancedModeAutoEnable", "LensOverlay", "MediaRouter", "PaintHolding",
    "ThirdPartyStoragePartitioning", "AvoidCorsURLLoaderRestartOnRedirect", "TcpPortRandomizationWin",
    "OptimizationHints", "NetworkTimeServiceQuerying", "AimEnabled", "PreconnectToSearch",
    "msForceBrowserSignIn", "msEdgeUpdateLaunchServicesPreferredVersion",
]
ALLOCATION_SAMPLERS = ["HeapProfilerReporting", "GwpAsanMalloc", "GwpAsanPartitionAlloc"]

BASE_ARGS = [
    "--no-sandbox",  # we run as root
    "--disable-gpu",
    "--disable-background-networking",  # the network is closed: no background calls
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--disable-quic",
]


def playwright_disabled_features() -> list[str]:
    """The features the installed Playwright disables in Chromium (its ``disabledFeatures``)."""
    try:
        import playwright

        bundle = Path(playwright.__file__).parent / "driver/package/lib/coreBundle.js"
        text = bundle.read_text(encoding="utf-8", errors="replace")
        block = re.search(r"disabledFeatures = \[(.*?)\]\s*(?:\.filter\(Boolean\))?;", text, re.S)
        if block:
            code = re.sub(r"//[^\n]*", "", block.group(1))
            found = re.findall(r'"([A-Za-z0-9_]+)"', code)
            if found:
                return found
    except Exception:
        pass
    return list(_PLAYWRIGHT_DISABLED_FEATURES)


def chromium_args() -> list[str]:
    disabled = playwright_disabled_features()
    disabled += [name for name in ALLOCATION_SAMPLERS if name not in disabled]
    return [*BASE_ARGS, "--disable-features=" + ",".join(disabled)]
