"""``python -m pyflowmesh.simulation``: run many seeds and check every invariant (see :mod:`.cli`)."""

import sys

from .cli import main

sys.exit(main())
