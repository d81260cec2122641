"""What a hostile or buggy script on the page's origin posts on the channel: every message type, extreme fields.

The simulator's "hostile" fault posts these, impersonating live tabs, so that every field
check of the decoder and every bound on numbers from the wire is exercised.
"""

from __future__ import annotations

import dataclasses
import json
import random
from collections.abc import Sequence
from typing import Any

from ..core.values import cache_key
from ..core.wire import MESSAGE_TYPES, PROTOCOL, VERSION

__all__ = ["deep", "hostile_message"]

_BIG = "\x00big-int\x00"  # stands for an int of thousands of digits (json.dumps cannot write one)
_BIG_JSON = json.dumps(_BIG)
_DIGITS = (4_000, 5_000)  # just under Python's str() limit for ints (4,300 digits), and over it
_EXTREME_COUNTS: tuple[Any, ...] = (0, 1, -1, 2**31, 2**53 + 1, 2**63, 10**30, 10**300, 1e300, 0.5, True, "7", _BIG)
_EXTREME_MILLIS: tuple[Any, ...] = (0, 1e-9, 1e-300, 1e300, 1.7e308, -1.0, 2**64, 10**400, "100", None, _BIG)
_ODD_TEXT = ('a "quoted" \\ back\\slash\n\t\u2028', "\ud800", "\x00", "é" * 40, "", "[" * 80 + "{")


def deep(depth: int) -> Any:
    """A list nested ``depth`` deep (past what a decoder or a value check may allow)."""
    value: Any = 1
    for _ in range(depth):
        value = [value]
    return value


def hostile_message(rng: random.Random, live: Sequence[str], keys: Sequence[tuple[str, tuple[Any, ...]]],
                    scope: str = "") -> str:
    """One message a hostile or buggy script posts: any type of :data:`~pyflowmesh.core.wire.MESSAGE_TYPES`, its
    fields drawn from extremes (huge, negative, zero, tiny, non-finite-ish numbers; ints of thousands
    of digits; live tabs' IDs to impersonate them or as ``dst``/``to``; real keys; deep nesting;
    escapes), as the raw text a channel would carry. ``scope``: the envelope's scope digest (a script
    of the origin can compute one; ``""``: the shared scope's envelope)."""
    if rng.random() < 0.04:  # not even a message: deep nesting the decoder must not recurse into
        return rng.choice(("[" * 6_000 + "]" * 6_000, '{"a":' * 3_000 + "1" + "}" * 3_000,
                           '"' + "\\" * 30_000 + '"'))
    kind = rng.choice(sorted(MESSAGE_TYPES))
    cls = MESSAGE_TYPES[kind]
    flow, args = rng.choice(keys)
    key = cache_key(flow, args)

    def node_id() -> Any:
        r = rng.random()
        if r < 0.55 and live:
            return rng.choice(live)  # impersonation, or a live tab as dst
        if r < 0.85:
            return f"{rng.getrandbits(32):08x}"  # nobody
        return rng.choice(("ffffffffffff", "0", "z" * 129, "", 7, None, "\ud800"))

    def count() -> Any:
        return rng.choice(_EXTREME_COUNTS) if rng.random() < 0.8 else rng.randint(0, 10)

    def millis() -> Any:
        return rng.choice(_EXTREME_MILLIS) if rng.random() < 0.8 else rng.uniform(0, 5000)

    def text() -> Any:
        return rng.choice(_ODD_TEXT) if rng.random() < 0.5 else "Forged"

    def value() -> Any:
        r = rng.random()
        if r < 0.6:
            return {"key": key, "forged": rng.getrandbits(16)}
        if r < 0.8:
            return {"key": key, "forged": 1, "deep": deep(rng.choice((60, 70, 200)))}
        return {"key": key, "forged": 1, "big": _BIG}

    def field_value(name: str) -> Any:
        if name in ("src", "dst", "origin"):
            return node_id()
        if name in ("term", "req", "version", "attempt"):
            return count()
        if name in ("interval", "retry_in", "age"):
            return millis()
        if name in ("hidden", "shared", "running"):
            return rng.random() < 0.5 if rng.random() < 0.95 else "yes"
        if name == "key":
            return key if rng.random() < 0.8 else rng.choice(_ODD_TEXT)
        if name == "flow":
            return flow if rng.random() < 0.8 else "nope"
        if name == "args":
            return list(args) if rng.random() < 0.7 else rng.choice(([_BIG], [deep(100)], "x", [1e300]))
        if name == "reason":
            return rng.choice(("not-leader", "unknown-flow", "Forged"))
        if name == "value":
            return value()
        if name in ("error_type", "message"):
            return text()
        if name == "to":
            r = rng.random()
            if r < 0.4:
                return None
            if r < 0.9:
                return [rng.choice(live) for _ in range(rng.randint(1, 3))] if live else []
            return [node_id() for _ in range(rng.randint(0, 5))]
        if name == "entries":
            return [{"key": key, "value": value(), "version": count(), "origin": node_id(), "age": millis()}
                    for _ in range(rng.randint(0, 3))]
        if name == "locks":
            return rng.random() < 0.5 if rng.random() < 0.95 else "yes"
        if name == "successor":
            return node_id() if rng.random() < 0.8 else None
        if name == "members":
            many = rng.choice((3, 3, 3, 300))  # 300: past MAX_MEMBERS, dropped where decoded
            return [{"id": node_id(), "locks": rng.random() < 0.5} for _ in range(rng.randint(0, many))]
        if name == "failures":
            return [{"key": key, "error_type": "Forged", "message": text(), "retry_in": millis(),
                     "attempt": count(), "origin": node_id()} for _ in range(rng.randint(0, 3))]
        return count()

    body: dict[str, Any] = {"proto": PROTOCOL, "v": VERSION, **({"scope": scope} if scope else {}), "type": kind}
    for f in dataclasses.fields(cls):
        body[f.name] = field_value(f.name)
    for name in ("to", "successor"):
        if body.get(name, 0) is None:
            del body[name]
    raw = json.dumps(body, ensure_ascii=rng.random() < 0.5)
    while _BIG_JSON in raw:  # json.dumps cannot write these ints; the text can
        raw = raw.replace(_BIG_JSON, "9" * rng.choice(_DIGITS), 1)
    return raw
