"""A user's own package named ``trainer`` (the usual name on Vertex AI / AI Platform)
beside tfbake: tfbake's stages import ``tfbake.trainer``, so the user's package is
neither shadowed nor in the way, here as the home of the user's ``preprocessing_fn``."""

from __future__ import annotations

import json
import os
import subprocess

from tests.conftest import user_pipeline


def test_a_user_package_named_trainer_runs_beside_tfbake(venv_bin, tmp_path):
    # Only the user's trainer has OWNER: tfbake must neither import it nor be given it.
    path = user_pipeline(tmp_path, "trainer", "task", rows=30, init='OWNER = "user"\n')
    # The user's folder first on the path, before tfbake's checkout, and their own
    # project folder as the working folder.
    paths = [str(tmp_path / "user_src"), os.environ.get("PYTHONPATH", "")]
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(p for p in paths if p))
    result = subprocess.run([os.path.join(venv_bin, "tfbake"), "transform", str(path)],
                            capture_output=True, text=True, env=env, cwd=tmp_path, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    with open(tmp_path / "artifacts" / "transform" / "stats.json") as f:
        assert json.load(f)["train"]["written"] == 30
    probe = subprocess.run(
        [os.path.join(venv_bin, "python"), "-c",
         "import trainer, tfbake.trainer as t; print(trainer.OWNER, t.__name__)"],
        capture_output=True, text=True, env=env, cwd=tmp_path, check=True)
    assert probe.stdout.split() == ["user", "tfbake.trainer"]
