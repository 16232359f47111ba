"""What each command loads: reading a config loads neither TensorFlow nor Beam, and
a served model loads neither Beam nor tf_keras (the training stack)."""

from __future__ import annotations

import os
import subprocess

from tests.conftest import serve

TRAINING_STACK = ("apache_beam", "tf_keras", "tensorflow_transform")

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


def test_served_model_loads_neither_beam_nor_tf_keras(python, penguins_run, tmp_path):
    loaded = tmp_path / "loaded.txt"
    # A user's shell: this process imported tensorflow_transform, which sets
    # TF_USE_LEGACY_KERAS=1 for its children, and with it `import tensorflow` itself
    # loads tf_keras.
    env = {k: v for k, v in os.environ.items() if k != "TF_USE_LEGACY_KERAS"}
    with serve(python, ["--config", str(penguins_run.config_path)], tmp_path, env=env,
               tfbake=[python, "-c", _LOADED_AT_EXIT, str(loaded)]) as (rest, _):
        import requests

        status = requests.get(f"{rest}/v1/models/penguins", timeout=30).json()
        assert status["model_version_status"][0]["state"] == "AVAILABLE"
    assert loaded.read_text().split() == []
