"""Distribution of sseplug-http: the ``http`` sseplug plugin, POSTing events to a URL (webhooks)."""

from __future__ import annotations

from pathlib import Path

from setuptools import setup

HERE = Path(__file__).parent

setup(
    name="sseplug-http",
    version="0.1.0",
    description="sseplug plugin: POST every Server-Sent Event to a URL, at least once, with stable keys "
    "and an Idempotency-Key per request",
    long_description=(HERE / "README.rst").read_text(encoding="utf-8"),
    long_description_content_type="text/x-rst",
    license="MIT",
    python_requires=">=3.11",
    packages=["sseplug_http"],
    install_requires=["sseplug", "gevent>=25.4.2", "urllib3>=2.3"],
    # the instance, not the module: each HttpSink holds its own pool and buffers (tests make fresh ones)
    entry_points={"sseplug": ["http = sseplug_http:plugin"]},
    classifiers=[
        "Programming Language :: Python :: 3",
        "Programming Language :: Python :: 3.11",
    ],
)
