"""How the simulator shows values and posts in its trace and its violations: short, and never raising."""

from __future__ import annotations

import json
from typing import Any

__all__ = ["describe_post", "safe_repr"]


def safe_repr(value: Any, limit: int = 120) -> str:
    """``repr`` for messages: short, and safe for ints too long for ``str()``."""
    try:
        text = repr(value)
    except ValueError:
        text = f"<{type(value).__name__} too long to show>"
    return text if len(text) <= limit else text[:limit] + "..."


def describe_post(data: Any) -> str:
    """One line for the trace: a post's type, sender and fields (a foreign post: its first characters)."""
    if not isinstance(data, str):
        return repr(data)[:80]
    try:
        body = json.loads(data)
    except (ValueError, RecursionError):  # hostile posts: garbage, or nested past the decoder's depth
        return repr(data[:80])
    if not isinstance(body, dict):
        return repr(data[:80])
    skip = {"proto", "v", "type", "src"}
    fields = " ".join(f"{k}={json.dumps(v)[:40]}" for k, v in body.items() if k not in skip)
    return f"{body.get('type')} from {body.get('src')} {fields}"
