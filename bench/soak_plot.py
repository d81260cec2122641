"""The soak's figure from ``bench-results/soak.json``: memory over time in each part.

1. Over MemoryHub: traced memory against keys executed, before (``--baseline``) and now.
2. Simulator: traced memory per tab against simulated hours.
3. Chromium: WebAssembly memory and JS heap per tab against minutes (PyProxies in the legend).

``python -m bench.soak_plot [soak.json] [out.png]`` redraws it without measuring.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

NOW = "#1f6feb"
BEFORE = "#d1242f"
TABS = ("#1f6feb", "#1a7f37", "#8250df", "#bf8700", "#6e7781", "#d1242f")


def plot(results: dict[str, Any], out: Path) -> None:
    fig, axes = plt.subplots(1, 3, figsize=(17, 5), constrained_layout=True)
    hub = results.get("hub") or {}
    ax = axes[0]
    for label, data, color in (("before", hub.get("baseline"), BEFORE), ("now", hub.get("now"), NOW)):
        if data:
            keys, traced = zip(*data["samples"], strict=True)
            name = f"{label} (at {data['revision']})" if "revision" in data else label
            ax.plot(keys, [t / 1048576 for t in traced], "o-", color=color, label=name)
    if hub.get("now"):
        now = hub["now"]
        ax.set_title(f"MemoryHub: {now['tabs']} tabs, {now['per_key']} per key, max_entries={now['max_entries']}")
        ax.legend()
    ax.set_xlabel("distinct keys executed")
    ax.set_ylabel("traced memory, whole process (MiB)")
    ax.set_ylim(bottom=0)
    ax.grid(alpha=0.3)

    sim = results.get("sim") or {}
    ax = axes[1]
    if sim:
        samples = sim["samples"]
        ax.plot([s["hours"] for s in samples], [s["per_tab_bytes"] / 1024 for s in samples], "o-", color=NOW,
                markersize=3)
        ax.set_title(f"Simulator: {sim['tabs']} tabs, {sim['keys']:,} keys, {sim['replaced']} tabs replaced")
    ax.set_xlabel("simulated hours")
    ax.set_ylabel("traced memory per live tab (KiB)")
    ax.set_ylim(bottom=0)
    ax.grid(alpha=0.3)

    browser = results.get("browser") or {}
    ax = axes[2]
    if browser:
        samples = browser["samples"]
        minutes = [s["t_s"] / 60 for s in samples]
        for i in range(browser["tabs"]):
            color = TABS[i % len(TABS)]
            proxies = sorted({s["tabs"][i].get("live_proxies") for s in samples})
            ax.plot(minutes, [(s["tabs"][i]["wasm_bytes"] or 0) / 1048576 for s in samples], "-", color=color,
                    label=f"tab {i}: WebAssembly memory (PyProxies {', '.join(map(str, proxies))})")
            ax.plot(minutes, [(s["tabs"][i]["js_heap_used"] or 0) / 1048576 for s in samples], "--", color=color,
                    label=f"tab {i}: JS heap used")
        ax.set_title(f"Chromium: {browser['tabs']} Pyodide tabs, a new key every {browser['slot_ms']:g} ms")
        ax.legend(fontsize=7, ncol=2)
    ax.set_xlabel("minutes")
    ax.set_ylabel("MiB per tab")
    ax.set_ylim(bottom=0)
    ax.grid(alpha=0.3)
    fig.suptitle("Soak: memory with ever-new keys and tabs replaced (flat after warm-up)")
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=110)
    plt.close(fig)


if __name__ == "__main__":
    source = Path(sys.argv[1]) if len(sys.argv) > 1 else Path("bench-results/soak.json")
    target = Path(sys.argv[2]) if len(sys.argv) > 2 else Path("bench-results/soak.png")
    plot(json.loads(source.read_text()), target)
