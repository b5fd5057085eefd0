"""``python -m sseplug``: the same as the ``sseplug`` command."""

import sys

from .cli import main

sys.exit(main())
