"""Suite-wide fixtures: the real third-party servers (gevent is patched by tests.gevent_patches)."""

pytest_plugins = ["tests.integration.thirdparty"]
