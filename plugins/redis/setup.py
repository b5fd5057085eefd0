"""Distribution of sseplug-redis: the ``redis`` sseplug plugin, stream leases and fenced checkpoints in Redis."""

from __future__ import annotations

from pathlib import Path

from setuptools import setup

HERE = Path(__file__).parent

setup(
    name="sseplug-redis",
    version="0.1.0",
    description="sseplug plugin: share streams between runners with Redis leases, fenced checkpoints, "
    "and forward events to Redis Streams",
    long_description=(HERE / "README.rst").read_text(encoding="utf-8"),
    long_description_content_type="text/x-rst",
    license="MIT",
    python_requires=">=3.11",
    packages=["sseplug_redis"],
    install_requires=["sseplug", "redis>=5"],
    # the instance, not the module: each RedisLeases holds its runner token, pool and leases
    entry_points={"sseplug": ["redis = sseplug_redis:plugin"]},
    classifiers=[
        "Programming Language :: Python :: 3",
        "Programming Language :: Python :: 3.11",
    ],
)
