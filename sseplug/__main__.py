"""``python -m sseplug``: the same as the ``sseplug`` command."""

import sys

from .run.cli import main

sys.exit(main())
