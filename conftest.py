"""Suite-wide fixtures: the real third-party servers (gevent is patched by sseplug.testing_patches)."""

pytest_plugins = ["tests.integration.thirdparty"]
