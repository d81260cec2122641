"""What may cross the channel: JSON data, checked where it is offered.

Every value a tab shares is read by other tabs, maybe by another version of the
page. So values are plain JSON (``dict`` with ``str`` keys, ``list``/``tuple``,
``str``, ``int``, finite ``float``, ``bool``, ``None``) and nothing else: no
pickling, no evaluation. A value that is not JSON is a ``TypeError`` raised in
the tab that offered it, with the path to the offending part, so that the bug
shows where it was written and never as a failure in another tab.
"""

from __future__ import annotations

import json
import math
from typing import Any

__all__ = [
    "JSONValue",
    "MAX_DEPTH",
    "MAX_INT_DIGITS",
    "check_json",
    "is_text",
    "flow_key_for",
    "check_flow_key",
    "MAX_FLOW_KEY",
    "cache_key",
    "key_of_flow",
    "dump_json",
    "load_json",
]

JSONValue = Any
"""A JSON-compatible value (``Any`` because Python's type system cannot say it precisely)."""

MAX_DEPTH = 64  # how deep shared values may nest (protocol.MAX_NESTING derives from it)
# The longest int a shared value may hold, in decimal digits. Python refuses str() of ints
# over 4,300 digits (CVE-2020-10735), so a longer one could not be encoded at all; JSON
# parsers elsewhere lose precision long before. 300 digits holds any float's range.
MAX_INT_DIGITS = 300
_INT_LIMIT = 10**MAX_INT_DIGITS


def check_json(value: Any, what: str = "value") -> None:
    """Raise ``TypeError`` unless ``value`` is JSON data that survives a round trip.

    ``what`` names the value in the message (``"result of fetch_user"``).
    """
    if not _plain_json(value, 0):
        _check(value, what, 0)  # names where it fails; accepts subclasses (an IntEnum, an OrderedDict)


def _plain_json(value: Any, depth: int) -> bool:
    """Whether ``value`` is JSON data made of the exact built-in types (what ``json.loads`` gives).

    The fast path of :func:`check_json`, run on every value of every message a tab receives:
    no path names built, exact type tests. ``False`` is not a verdict: :func:`_check` decides.
    """
    kind = type(value)
    if kind is str:
        return value.isascii() or is_text(value)
    if kind is dict:
        if depth >= MAX_DEPTH:
            return False
        for key, item in value.items():
            if type(key) is not str or not (key.isascii() or is_text(key)) or not _plain_json(item, depth + 1):
                return False
        return True
    if kind is list:
        if depth >= MAX_DEPTH:
            return False
        for item in value:  # noqa: SIM110 (a loop: all() over a generator is slower, and this is the hot path)
            if not _plain_json(item, depth + 1):
                return False
        return True
    if kind is int:
        return bool(-_INT_LIMIT < value < _INT_LIMIT)
    if kind is float:
        return math.isfinite(value)
    return value is None or kind is bool


def _check(value: Any, path: str, depth: int) -> None:
    if depth > MAX_DEPTH:
        raise TypeError(f"{path} is nested deeper than {MAX_DEPTH} levels; pyflowmesh shares JSON data only")
    if value is None or isinstance(value, bool):
        return
    if isinstance(value, int):
        if not -_INT_LIMIT < value < _INT_LIMIT:
            raise TypeError(f"{path} is an int of more than {MAX_INT_DIGITS} digits; pyflowmesh shares JSON data only")
        return
    if isinstance(value, str):
        _check_text(value, path)
        return
    if isinstance(value, float):
        if not math.isfinite(value):
            raise TypeError(f"{path} is {value!r}, which JSON cannot represent")
        return
    if isinstance(value, (list, tuple)):
        for index, item in enumerate(value):
            _check(item, f"{path}[{index}]", depth + 1)
        return
    if isinstance(value, dict):
        for key, item in value.items():
            if not isinstance(key, str):
                raise TypeError(
                    f"{path} has the key {key!r} of type {type(key).__name__}; JSON object keys must be str"
                )
            _check_text(key, f"{path} key {key!r}")
            _check(item, f"{path}[{key!r}]", depth + 1)
        return
    raise TypeError(
        f"{path} is a {type(value).__module__}.{type(value).__qualname__}, not JSON data; "
        "pyflowmesh shares only dict (str keys), list, tuple, str, int, float, bool and None"
    )


def is_text(value: str) -> bool:
    """Whether UTF-8 can carry ``value``: not so a lone surrogate, which a JSON ``\\ud800`` escape can produce."""
    if value.isascii():
        return True
    try:
        value.encode()
    except UnicodeEncodeError:
        return False
    return True


def _check_text(value: str, path: str) -> None:
    if not is_text(value):
        raise TypeError(f"{path} has a lone surrogate, which UTF-8 (and so the channel) cannot carry")


def flow_key_for(function: Any) -> str:
    """The default key of a flow: the function's module and qualified name.

    Stable across tabs and reloads of the same page, which is what makes two tabs
    agree that they run "the same flow".
    """
    module = getattr(function, "__module__", None) or ""
    name = getattr(function, "__qualname__", None) or getattr(function, "__name__", None)
    if name is None:
        raise TypeError(f"cannot derive a flow key from {function!r}; pass key=...")
    return f"{module}.{name}" if module and module != "__main__" else name


MAX_FLOW_KEY = 1024  # characters of a flow's key


def check_flow_key(key: Any) -> str:
    """Return ``key`` if it can name a flow in every tab: a non-empty str that UTF-8 can carry.

    Raises:
        TypeError: ``key`` is not a str.
        ValueError: it is empty, longer than ``MAX_FLOW_KEY``, or holds a lone surrogate.
    """
    if not isinstance(key, str):
        raise TypeError(f"a flow key must be a str, got {type(key).__name__}")
    if not key or len(key) > MAX_FLOW_KEY or not is_text(key):
        raise ValueError(
            f"a flow key must be a non-empty str of at most {MAX_FLOW_KEY} characters that UTF-8 can carry, "
            f"got {key[:60]!r}"
        )
    return key


def dump_json(value: Any) -> str:
    """The canonical JSON text of checked JSON data (sorted keys, so equal data gives equal text)."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False)


def load_json(text: str) -> Any:
    """A fresh copy of the data :func:`dump_json` wrote: callers can mutate it freely."""
    return json.loads(text)


def cache_key(flow: str, args: tuple[Any, ...] | list[Any]) -> str:
    """The mesh-wide key of one execute: the flow's key and its arguments, canonically.

    ``flow`` alone without arguments, else ``flow`` followed by the arguments as a
    canonical JSON array (``user[1]``). A flow whose own key ends with ``]`` (``"user[1]"``)
    is keyed ``user[1][]`` without arguments, so that it never shares an entry with flow
    ``"user"`` called with ``1``: a non-empty canonical JSON array never ends with ``[]``.

    Raises:
        TypeError: the arguments are not JSON data.
    """
    check_json(list(args), f"the arguments of {flow}")
    if args:
        return flow + dump_json(list(args))
    return flow + "[]" if flow.endswith("]") else flow


def key_of_flow(key: str, flow: str) -> bool:
    """Whether ``key`` is a cache key of ``flow`` (with any arguments): what invalidating a flow drops.

    Exactly the keys :func:`cache_key` makes for ``flow``: ``flow`` itself (``flow[]`` for a
    flow ending with ``]``) or ``flow`` followed by a non-empty canonical JSON array. So
    flow ``"dash"`` owns ``dash`` and ``dash[1]`` but not ``dashboard`` or ``dashboard[1]``,
    and flow ``"user"`` does not own ``user[1][]`` (the key of flow ``"user[1]"``).
    """
    if key == cache_key(flow, ()):
        return True
    if len(key) <= len(flow) + 2 or not key.startswith(flow) or key[len(flow)] != "[":
        return False
    rest = key[len(flow):]
    try:
        args = load_json(rest)
    except ValueError:
        return False
    return isinstance(args, list) and bool(args) and dump_json(args) == rest
