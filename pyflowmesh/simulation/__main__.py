"""``python -m pyflowmesh.simulation``: run many seeds and check every invariant (see :func:`main`)."""

import sys

from . import main

sys.exit(main())
