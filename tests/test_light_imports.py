"""What each command loads: reading a config loads neither TensorFlow nor Beam, and
a served model loads neither Beam nor Keras (the training stack)."""

from __future__ import annotations

import os
import subprocess

from tests.conftest import serve

TRAINING_STACK = ("apache_beam", "keras", "tf_keras", "tensorflow_transform")

# Runs tfbake as its console script does, and at exit writes the top-level packages
# of the training stack it has loaded, one a line, to the file named first.
_LOADED_AT_EXIT = f"""
import atexit, runpy, sys
out = sys.argv.pop(1)
def write():
    with open(out, "w") as f:
        f.write("".join(m + "\\n" for m in sorted(sys.modules) if m in {TRAINING_STACK!r}))
atexit.register(write)
runpy.run_module("tfbake", run_name="__main__")
"""


def _loaded(python: str, code: str) -> list[str]:
    result = subprocess.run([python, "-c", code], capture_output=True, text=True, check=True)
    return result.stdout.split()


def test_reading_a_config_loads_neither_tensorflow_nor_beam(python, penguins_run):
    code = (
        "import sys\n"
        "from tfbake.config import load_config\n"
        f"config = load_config({str(penguins_run.config_path)!r})\n"
        "print(config.name, *[m for m in ('tensorflow', 'apache_beam') if m in sys.modules])"
    )
    assert _loaded(python, code) == ["penguins"]


def test_served_model_loads_neither_beam_nor_keras(python, penguins_run, tmp_path):
    loaded = tmp_path / "loaded.txt"
    # As in a shell where tf.Transform ran: with TF_USE_LEGACY_KERAS=1 a plain
    # `import tensorflow` loads tf_keras (without it, Keras 3); the server loads neither.
    env = {**os.environ, "TF_USE_LEGACY_KERAS": "1"}
    with serve(python, ["--config", str(penguins_run.config_path)], tmp_path, env=env,
               tfbake=[python, "-c", _LOADED_AT_EXIT, str(loaded)]) as (rest, _):
        import requests

        status = requests.get(f"{rest}/v1/models/penguins", timeout=30).json()
        assert status["model_version_status"][0]["state"] == "AVAILABLE"
    assert loaded.read_text().split() == []
