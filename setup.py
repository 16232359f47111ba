"""tfbake: one tf.Transform preprocessing_fn for training and TF Serving.

One distribution, ``tfbake``, whose stage packages (top-level folders here)
install as ``tfbake.transform``, ``tfbake.trainer``... so that remote Beam
workers (Dataflow, Flink, Spark) can install the user's pipeline from this file
with ``--setup_file ./setup.py``.
"""

import os
import sys

from setuptools import find_packages, setup

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from tfbake import STAGES  # noqa: E402 (the stage packages' names)

# The TFX family installs only as a matched set: tensorflow, tf_keras,
# tensorflow-transform, tfx-bsl and tensorflow-metadata of one release line.
STACK = [
    "tensorflow>=2.21,<2.22",
    "tf_keras>=2.21,<2.22",
    "tensorflow-transform>=1.21,<1.22",
    "tfx-bsl>=1.21,<1.22",
    "tensorflow-metadata>=1.21,<1.22",
    "tensorflow-serving-api>=2.19,<2.20",
    "apache-beam[gcp]>=2.70,<2.80",
    "protobuf>=6.31.1,<7",
    "google-crc32c",
    # ml_dtypes 0.7 takes 1.3 s to import (0.15 s for 0.6), and every TensorFlow
    # import pays it: a third of `tfbake serve`'s start-up on a 2-core machine.
    "ml_dtypes>=0.5.1,<0.7",
    # TensorBoard logs (tf.summary) need it; tensorflow no longer pulls it in.
    "tensorboard>=2.20",
]

SERVING = [
    # 3.14 closes a connection that sends no request within keepalive_timeout
    # (--rest_api_header_timeout_in_ms relies on it).
    "aiohttp>=3.14,<4",
    "orjson>=3.9",
    "grpcio>=1.60",
    # --enable_grpc_healthcheck_service; 1.85+ needs protobuf 7, outside the stack.
    "grpcio-health-checking>=1.60,<1.85",
    "prometheus-client>=0.20",
]

CONFIG = [
    "pydantic>=2.5,<3",
    "PyYAML>=6",
]

TEST = [
    "pytest>=8",
    "pytest-timeout>=2.3",
    # `make test` runs the test files on one worker per core (2 here).
    "pytest-xdist>=3.5",
    "hypothesis>=6.100",
    "requests>=2.31",
    "ruff>=0.5",
    # The web console's browser tests drive Debian's chromium (no browser download).
    "playwright>=1.40",
    # A self-signed certificate for the TLS (--ssl_config_file) test.
    "cryptography>=41",
]

setup(
    name="tfbake",
    version="0.1.0",
    description=(
        "Define preprocessing once as a tf.Transform preprocessing_fn; train, export "
        "and serve tf.Example models with the same graph."
    ),
    python_requires=">=3.10,<3.13",
    packages=find_packages(include=["tfbake", "tfbake.*"])
    + [f"tfbake.{p}" for p in find_packages(include=[*STAGES, *(f"{s}.*" for s in STAGES)])],
    # The stage folders sit at the top of the repository; installed, they are
    # subpackages of tfbake, so a user's own `trainer` (the usual name of one) cannot
    # collide with them, on Beam workers (--setup_file) or anywhere else.
    package_dir={f"tfbake.{name}": name for name in STAGES},
    include_package_data=True,
    # The web console's page: plain HTML/CSS/JS, served by the model server.
    package_data={"tfbake.model_server.console": ["static/*"]},
    install_requires=STACK + SERVING + CONFIG + ["tqdm>=4.60", "matplotlib>=3.8"],
    extras_require={"test": TEST},
    entry_points={"console_scripts": ["tfbake = tfbake.cli:main"]},
)
