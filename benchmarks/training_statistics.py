"""What the training statistics add to the Beam job: the penguins job (``tfbake
transform``, FnApiRunner) with ``monitoring.statistics`` on and off, alternating,
``--repeats`` times each in this process (after one untimed run, so imports and the
first pipeline's set-up are not counted). Prints one JSON object: the median seconds
of each, the ratio (on / off) and the statistics file's size.
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
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
sys.path.insert(0, REPO)
sys.path.insert(0, os.path.join(REPO, "benchmarks"))

from _shipped_example import shipped_raw_config  # noqa: E402


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--repeats", type=int, default=3)
    args = p.parse_args()
    from serving_input.training_statistics import statistics_path
    from tfbake import stages
    from tfbake.config import load_config

    with tempfile.TemporaryDirectory() as work:
        raw = shipped_raw_config("penguins", "penguins_data", "penguins_csv", work)
        configs = {}
        for on in (True, False):
            path = os.path.join(work, f"statistics_{on}.yaml")
            with open(path, "w") as f:
                json.dump({**raw, "artifacts": os.path.join(work, f"artifacts_{on}"),
                           "monitoring": {"statistics": on}}, f)
            configs[on] = load_config(path)
        stages.run_transform(configs[False])  # untimed
        seconds = {True: [], False: []}
        for _ in range(args.repeats):
            for on in (True, False):
                start = time.perf_counter()
                stages.run_transform(configs[on])
                seconds[on].append(time.perf_counter() - start)
        size = os.path.getsize(statistics_path(configs[True].transform_dir))
    on, off = statistics.median(seconds[True]), statistics.median(seconds[False])
    print(json.dumps({
        "benchmark": "training_statistics", "repeats": args.repeats,
        "transform_s_statistics": round(on, 3), "transform_s_no_statistics": round(off, 3),
        "ratio": round(on / off, 4), "added_s": round(on - off, 3),
        "statistics_file_bytes": size,
    }))


if __name__ == "__main__":
    main()
