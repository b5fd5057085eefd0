"""Distribution of sseplug: a spec-exact, plugin-driven Server-Sent Events consumer."""

from __future__ import annotations

import re
from pathlib import Path

import platform

from setuptools import Extension, find_packages, setup

HERE = Path(__file__).parent
VERSION = re.search(r'__version__ = "([^"]+)"', (HERE / "sseplug" / "__init__.py").read_text()).group(1)

setup(
    name="sseplug",
    version=VERSION,
    description="Spec-exact Server-Sent Events consumer on gevent and urllib3, extended with pluggy plugins",
    long_description=(HERE / "README.rst").read_text(encoding="utf-8"),
    long_description_content_type="text/x-rst",
    license="MIT",
    python_requires=">=3.11",
    packages=find_packages(include=["sseplug", "sseplug.*"]),
    package_data={"sseplug": ["py.typed", "_cparser.pyi"]},
    # the parser's bulk path in C: optional (without a compiler the pure-Python parser is used)
    ext_modules=[Extension("sseplug._cparser", ["sseplug/_cparser.c"], optional=True)]
    if platform.python_implementation() == "CPython" else [],
    install_requires=["gevent>=25.4.2", "urllib3>=2.3", "pluggy>=1.5", "jmespath>=1.0", "rich>=13",
                      "prometheus-client>=0.17", "orjson>=3.9"],
    extras_require={
        "fast": [],  # kept for old install commands: orjson is a dependency now
        "metrics": [],  # kept for old install commands: prometheus-client is a dependency now
        "test": [
            "pytest>=8",
            "hypothesis>=6.100",
            "pytest-timeout>=2.3",
            "trustme>=1.1",  # certificates for the TLS tests
            "mypy>=1.10",  # tests/unit/test_typing.py: mypy --strict on sseplug/
            "types-gevent",
            "types-jmespath",
            "ruff>=0.17",  # tests/unit/test_lint.py: ruff check with ruff.toml
            "sphinx>=7",  # tests/docs: the documentation site builds clean
            "furo>=2024.1",  # the documentation site's theme
            # servers nobody here wrote, run by the integration tests
            "sse-starlette>=2",
            "uvicorn>=0.30",
            "aiohttp>=3.9",
            "aiohttp-sse>=2.2",
            "flask>=3",
        ],
    },
    entry_points={
        "console_scripts": ["sseplug = sseplug.run.cli:main"],
        "pytest11": ["sseplug = sseplug.testing"],  # fixtures for plugin authors; inert until used
    },
    classifiers=[
        "Programming Language :: Python :: 3",
        "Programming Language :: Python :: 3.11",
        "Framework :: Pytest",
        "Topic :: Internet :: WWW/HTTP",
    ],
)
