"""Shared by every test level. Being here puts ``tests/`` on ``sys.path`` (pytest's
prepend import mode inserts a conftest's folder), so the Pyodide and browser
conftests import their common helpers (``chromium_args``) plainly."""
