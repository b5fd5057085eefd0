"""Distribution of sseplug-postgres: the ``postgres`` sseplug plugin, events into a PostgreSQL table exactly once."""

from __future__ import annotations

from pathlib import Path

from setuptools import setup

HERE = Path(__file__).parent

setup(
    name="sseplug-postgres",
    version="0.1.0",
    description="sseplug plugin: write every Server-Sent Event to a PostgreSQL table, each batch and its "
    "checkpoint in one transaction (exactly once)",
    long_description=(HERE / "README.rst").read_text(encoding="utf-8"),
    long_description_content_type="text/x-rst",
    license="MIT",
    python_requires=">=3.11",
    packages=["sseplug_postgres"],
    # psycopg 3.1.14 is the first to wait cooperatively under gevent's patches
    install_requires=["sseplug", "gevent>=25.4.2", "psycopg[binary]>=3.1.14"],
    # the instance, not the module: each PostgresSink holds its own sessions and checkpoints
    entry_points={"sseplug": ["postgres = sseplug_postgres:plugin"]},
    classifiers=[
        "Programming Language :: Python :: 3",
        "Programming Language :: Python :: 3.11",
    ],
)
