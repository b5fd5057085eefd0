"""Distribution of sseplug-jsonl: the ``jsonl`` sseplug plugin, a JSON Lines file sink."""

from __future__ import annotations

from pathlib import Path

from setuptools import setup

HERE = Path(__file__).parent

setup(
    name="sseplug-jsonl",
    version="0.1.0",
    description="sseplug plugin: append every Server-Sent Event to a JSON Lines file, with rotation",
    long_description=(HERE / "README.rst").read_text(encoding="utf-8"),
    long_description_content_type="text/x-rst",
    license="MIT",
    python_requires=">=3.11",
    py_modules=["sseplug_jsonl"],
    install_requires=["sseplug"],
    # the instance, not the module: each JsonlSink holds its own open file (tests make fresh ones)
    entry_points={"sseplug": ["jsonl = sseplug_jsonl:plugin"]},
    classifiers=[
        "Programming Language :: Python :: 3",
        "Programming Language :: Python :: 3.11",
    ],
)
