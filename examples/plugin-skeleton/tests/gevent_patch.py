"""Loaded first by pytest (``-p gevent_patch`` in pytest.ini): gevent's monkey patches, before any
other plugin imports ssl or socket, as sseplug's client requires. ``patch_all`` is idempotent."""

from gevent import monkey

monkey.patch_all()
