"""Loaded first (``-p tests.gevent_patches`` in pytest.ini): gevent's monkey patches, before any
other plugin imports ssl or socket, as sseplug's client requires."""

from gevent import monkey

monkey.patch_all()
