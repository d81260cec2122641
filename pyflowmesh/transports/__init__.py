"""How a mesh member reaches the other tabs: three pieces, one file each, combined by a :class:`Transport`.

========================  ==========================  ===============================
piece (``base.py``)       in the browser              in memory (``memory.py``)
========================  ==========================  ===============================
:class:`Channel`          ``broadcast_channel.py``    ``MemoryChannel``
:class:`PeerWatch`        ``web_locks.py``            ``MemoryLocks`` (per scope)
:class:`PageLifecycle`    ``page_lifecycle.py``       ``MemoryPage`` (driven by tests)
========================  ==========================  ===============================

Only the three browser files import Pyodide's ``js``. The default, which
``FlowMesh`` uses when given no ``transport=``, is :func:`default_transport`:
in the browser, ``BroadcastChannel``, with Web Locks where ``navigator.locks``
exists, and the page lifecycle where a ``document`` exists. A piece that is
missing is logged once (a warning on the ``pyflowmesh`` logger, which Pyodide
prints to the console) and visible on the transport (``transport.peers`` or
``transport.lifecycle`` is ``None``). In CPython there is no default: pass
``transport=MemoryHub().transport()`` (:mod:`pyflowmesh.transports.memory`).

A transport of your own: write a :class:`Channel` (and, if your medium can tell
when a peer is gone, a :class:`PeerWatch`) in one file, and give
``FlowMesh(channel, transport=Transport(YourChannel(), peers, lifecycle))``.
"""

from __future__ import annotations

import logging
import sys

from .base import Channel, LifecycleEvents, PageLifecycle, PeerWatch, Transport, TransportEvents, lock_name

__all__ = [
    "Channel",
    "LifecycleEvents",
    "PageLifecycle",
    "PeerWatch",
    "Transport",
    "TransportEvents",
    "default_transport",
    "lock_name",
]

log = logging.getLogger("pyflowmesh")

_told: set[str] = set()  # what default_transport has logged already: each missing piece once


def _tell_once(what: str, message: str) -> None:
    if what not in _told:
        _told.add(what)
        log.warning(message)


def default_transport(*, use_locks: bool = True) -> Transport:
    """The transport ``FlowMesh`` uses when given none: the browser's, with whatever this page has.

    * ``BroadcastChannel`` always;
    * Web Locks if ``use_locks`` and ``navigator.locks`` exists (a secure context:
      https, or http on ``localhost``); without them a crashed leader is noticed
      after its heartbeats run out (2.5 heartbeats) instead of at once;
    * the page lifecycle if a ``document`` exists. In a worker there is none: a
      closing tab is noticed by its lock or its silence instead of its ``Bye``,
      and a hidden tab cannot announce its throttled timers.

    Raises:
        RuntimeError: not running under Pyodide (pass ``transport=`` there).
    """
    if sys.platform != "emscripten":
        raise RuntimeError(
            "FlowMesh needs a transport outside the browser: pass transport=MemoryHub().transport() "
            "(from pyflowmesh.transports.memory) or another Transport"
        )
    from . import page_lifecycle, web_locks
    from .broadcast_channel import BroadcastChannel

    peers = None
    if use_locks:
        if web_locks.available():
            peers = web_locks.WebLocks()
        else:
            _tell_once("locks", "pyflowmesh: no Web Locks here (navigator.locks; an insecure context?): "
                                "a closed or crashed leader is noticed after its heartbeats run out")
    lifecycle = None
    if page_lifecycle.available():
        lifecycle = page_lifecycle.DocumentLifecycle()
    else:
        _tell_once("lifecycle", "pyflowmesh: no document here (a worker?), so no page lifecycle: a closing tab "
                                "is noticed by its Web Lock or its silence, and a hidden one cannot say so")
    return Transport(BroadcastChannel(), peers, lifecycle)
