"""Start-up time users feel: ``tfbake serve`` from launch to the penguins model
AVAILABLE, and ``tfbake run`` on a config with an error, to its exit (status 2); each
the median of fresh processes. Baseline, in the same run: a bare
``python -c "import tensorflow"`` (what any TensorFlow command pays first).

Prints one JSON object. Targets: serve <= 5 s, config error <= 3 s.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)
sys.path.insert(0, os.path.join(REPO, "benchmarks"))

import requests  # noqa: E402
from _shipped_example import build_penguins_export  # noqa: E402

from tfbake.model_server import listening_address  # noqa: E402

BAD_CONFIG = """\
name: typo
data: {train: train.csv, eval: eval.csv}
features: {island: {type: strng}}
label: {name: species}
"""


# Every process measured starts from a user's shell environment, not this one:
# importing tf.Transform (to build the export) set TF_USE_LEGACY_KERAS=1 here, and with it
# a child's `import tensorflow` would import tf_keras too.
_USER_ENV = {k: v for k, v in os.environ.items() if k != "TF_USE_LEGACY_KERAS"}


def _seconds(command: list[str], expect: int = 0) -> float:
    start = time.perf_counter()
    result = subprocess.run(command, capture_output=True, text=True, cwd=REPO, env=_USER_ENV)
    elapsed = time.perf_counter() - start
    if result.returncode != expect:
        raise RuntimeError(f"{command} exited {result.returncode}: {result.stderr[-2000:]}")
    return elapsed


def serve_until_available(export_base: str) -> float:
    """Seconds from launching ``tfbake serve`` to its model's status AVAILABLE."""
    start = time.perf_counter()
    process = subprocess.Popen(
        [sys.executable, "-m", "tfbake", "serve", "--model_name=penguins",
         f"--model_base_path={export_base}", "--port=0", "--rest_api_port=-1"],
        stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, cwd=REPO, env=_USER_ENV)
    try:
        rest = None
        for line in process.stdout:
            address = listening_address(line)
            if address and address[0] == "rest":
                rest = address[1]
                break
        if rest is None:
            raise RuntimeError(f"server exited {process.wait()}")
        while True:
            status = requests.get(f"{rest}/v1/models/penguins", timeout=30).json()
            states = [v["state"] for v in status.get("model_version_status", [])]
            if "AVAILABLE" in states:
                return time.perf_counter() - start
            time.sleep(0.01)
    finally:
        process.send_signal(signal.SIGTERM)
        process.wait(timeout=60)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as work:
        export_base = build_penguins_export(work)
        bad = os.path.join(work, "bad.yaml")
        with open(bad, "w") as f:
            f.write(BAD_CONFIG)
        import_tf, serve, config_error = [], [], []
        for _ in range(args.repeats):  # interleaved, so load on the machine hits all three
            import_tf.append(_seconds([sys.executable, "-c", "import tensorflow"]))
            serve.append(serve_until_available(export_base))
            config_error.append(_seconds([sys.executable, "-m", "tfbake", "run", bad], expect=2))
    baseline = statistics.median(import_tf)
    serve_s, error_s = statistics.median(serve), statistics.median(config_error)
    print(json.dumps({
        "benchmark": "startup",
        "repeats": args.repeats,
        "serve_to_available_s": round(serve_s, 3),
        "config_error_s": round(error_s, 3),
        "baseline_import_tensorflow_s": round(baseline, 3),
        "serve_ratio_to_baseline": round(serve_s / baseline, 2),
        "config_error_ratio_to_baseline": round(error_s / baseline, 2),
        "targets_s": {"serve_to_available": 5, "config_error": 3},
        "samples_s": {"import_tensorflow": [round(x, 3) for x in import_tf],
                      "serve_to_available": [round(x, 3) for x in serve],
                      "config_error": [round(x, 3) for x in config_error]},
    }))


if __name__ == "__main__":
    main()
