"""pytest plugin applying gevent's monkey patches, as sseplug's client requires: opt-in, load first.

The patches must come before anything imports ``ssl`` or ``socket``, which in a test run means
before pytest loads the installed plugins, so name this one with ``-p`` (a ``conftest.py`` is
too late)::

    # pytest.ini
    [pytest]
    addopts = -p sseplug.testing_patches -p no:anyio

or ``python -m pytest -p sseplug.testing_patches``. ``-p no:anyio`` turns off anyio's plugin, if
installed: it fails in a patched process. This module is deliberately not a ``pytest11`` entry
point: installing sseplug never patches a test run that did not ask. ``patch_all`` is idempotent.
"""

from __future__ import annotations

from gevent import monkey

__all__: list[str] = []  # a pytest plugin: loading it is what it does

monkey.patch_all()
