"""What the serving check adds to one export.

``export_saved_model`` loads every new version in a fresh process as TF Serving would
and runs each signature on the warm-up examples (and on them with every nullable
feature absent) before it publishes it. The process starts with the export, so its
TensorFlow import overlaps the save. This benchmark trains the penguins example once
(in a temporary folder), then exports it ``--rounds`` times with the check, and as
many times with the check process replaced by one that answers "serves" at once (the
baseline: an export as it was before the check), alternating the two. The check
process imports TensorFlow once per process that exports; one export with a freshly
started check process is timed too (a lone ``tfbake export``).

Prints one JSON object: the median export time with and without the check, their
ratio, the median seconds the check adds, and the first export of a process.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
sys.path.insert(0, REPO)
sys.path.insert(0, os.path.join(REPO, "benchmarks"))

from _shipped_example import shipped_raw_config  # noqa: E402

import tfbake.trainer as trainer  # noqa: E402
from tfbake import stages  # noqa: E402
from tfbake.config import config_from_dict  # noqa: E402
from tfbake.serving_input import serving_check  # noqa: E402


class _NoCheck:
    """The baseline: no process, every export "serves"."""

    def run(self, export_dir, examples, timeout=None):
        return []

    def close(self):
        pass


def _export_seconds(config, model) -> float:
    start = time.perf_counter()
    stages.run_export(config, model)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as work:
        config = config_from_dict(
            shipped_raw_config("penguins", "penguins_data", "penguins_csv", work)
        )
        stages.run_transform(config)
        model, _ = stages.run_training(config)
        stages.run_export(config, model)  # traces once: later exports are alike
        # A process's first export starts the check process (tfbake run starts it before
        # training); later ones reuse it.
        serving_check.serving_check().close()
        cold = _export_seconds(config, model)
        checked, baseline = [], []
        real = trainer.export.serving_check
        for _ in range(args.rounds):
            checked.append(_export_seconds(config, model))
            trainer.export.serving_check = _NoCheck
            try:
                baseline.append(_export_seconds(config, model))
            finally:
                trainer.export.serving_check = real
    with_check, without = statistics.median(checked), statistics.median(baseline)
    print(json.dumps({
        "benchmark": "export_check",
        "rounds": args.rounds,
        "export_with_check_s": round(with_check, 3),
        "baseline_export_without_check_s": round(without, 3),
        "ratio": round(with_check / without, 3),
        "first_export_of_a_process_with_check_s": round(cold, 3),
        "check_adds_s": round(statistics.median(c - b for c, b in zip(checked, baseline)), 3),
    }))


if __name__ == "__main__":
    main()
