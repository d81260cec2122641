"""The sans-I/O core: the whole protocol as plain Python, driven by messages and a clock.

Nothing here imports ``asyncio`` or ``js``: a :class:`~pyflowmesh.core.node.MeshNode`
takes inputs (channel data, ticks, executes, call outcomes, page lifecycle), each
with the time, and answers with :mod:`~pyflowmesh.core.effects` for its driver to
carry out. The same code runs in a browser tab, under asyncio in CPython and in the
deterministic simulator. ``docs/architecture.md`` maps the modules.
"""
