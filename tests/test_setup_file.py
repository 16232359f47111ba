"""``--setup_file ./setup.py``: the pipeline launched from the repo
root with the flag succeeds on the multi-process local runner, with the preprocessing
given as a user ``preprocessing_fn: pkg.module:fn`` that the worker processes import.
The runner flags come after the config on ``tfbake transform``'s command line, as users
pass Beam pipeline options.

A user module reaches multi-process workers through the environment they inherit
(``PYTHONPATH`` here); remote workers (Dataflow, Flink, Spark) get it from the user's
own ``--setup_file`` or ``--extra_package`` (docs/beam_runners.md). The sdist that
``--setup_file ./setup.py`` builds is checked in tests/test_cli.py.
"""

from __future__ import annotations

import json
import os
import subprocess

from tests.conftest import ROOT, user_pipeline


def test_setup_file_and_a_user_preprocessing_fn_on_the_multi_process_runner(venv_bin, tmp_path):
    path = user_pipeline(tmp_path, "my_features", "prep", rows=60)
    # The user's folder on the path, before the tfbake under test (a checkout's, when
    # PYTHONPATH names it).
    paths = [str(tmp_path / "user_src"), os.environ.get("PYTHONPATH", "")]
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(p for p in paths if p))
    result = subprocess.run(
        [
            os.path.join(venv_bin, "tfbake"),
            "transform",
            str(path),
            "--setup_file",
            "./setup.py",
            "--direct_num_workers=2",
            "--direct_running_mode=multi_processing",
        ],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=300,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    with open(tmp_path / "artifacts" / "transform" / "stats.json") as f:
        stats = json.load(f)
    assert stats["train"] == {"read": 60, "written": 60, "rejected": 0}
    assert stats["eval"] == {"read": 60, "written": 60, "rejected": 0}
