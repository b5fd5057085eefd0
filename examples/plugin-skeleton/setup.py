"""Distribution of sseplug-skeleton: a minimal sseplug plugin to copy and adapt."""

from __future__ import annotations

from pathlib import Path

from setuptools import setup

HERE = Path(__file__).parent

setup(
    name="sseplug-skeleton",
    version="0.1.0",
    description="A minimal sseplug plugin: bearer auth from the environment, CSV data, event logging",
    long_description=(HERE / "README.rst").read_text(encoding="utf-8"),
    long_description_content_type="text/x-rst",
    license="MIT",
    python_requires=">=3.11",
    py_modules=["sseplug_skeleton"],
    install_requires=["sseplug"],
    # The group "sseplug" is how sseplug finds the plugin; "skeleton" is its name everywhere:
    # `sseplug plugins`, runner.plugins.disable and the [plugins.skeleton] config table.
    entry_points={"sseplug": ["skeleton = sseplug_skeleton"]},
    classifiers=[
        "Programming Language :: Python :: 3",
        "Programming Language :: Python :: 3.11",
        "Topic :: Internet :: WWW/HTTP",
    ],
)
