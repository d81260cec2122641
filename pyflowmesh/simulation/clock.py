"""Virtual time: milliseconds, with the times the simulator draws rounded to 1/64 ms.

Rounded times add up exactly, so a deadline computed from them fires exactly when it says.
"""

from __future__ import annotations

import math

__all__ = ["RESOLUTION", "quantize"]

RESOLUTION = 64.0
"""Steps per millisecond of the times the simulator draws (delays, durations, clock offsets)."""


def quantize(ms: float) -> float:
    """``ms`` rounded to the nearest step of :data:`RESOLUTION`."""
    return math.floor(ms * RESOLUTION + 0.5) / RESOLUTION
