"""What per-request data checks and the request log cost the REST API: ``:classify`` and
``:predict`` p50 at batch 1 on three servers of the same export, run at once as real
processes: ``--data_checks=false`` (the baseline), data checks on (the default), and
checks off with ``--request_log_dir`` (every request logged).

The export (``--export``, default the penguins export of ``make demo``) must carry
training statistics (``assets.extra/training_statistics.pb``), or the checks would
have nothing to do. Rounds alternate between the servers so drift hits all alike; each
round times ``--requests`` sequential keep-alive requests and the figure is the median
over rounds of the round p50. Prints one JSON object: p50s, ratios to the baseline
and the limit (1.05).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)
sys.path.insert(0, os.path.join(REPO, "benchmarks"))

import requests  # noqa: E402
from console_overhead import requests_to_time, round_p50, server  # noqa: E402

from tfbake.serving_input.export_layout import latest_version_dir  # noqa: E402
from tfbake.serving_input.training_statistics import EXPORT_STATISTICS_FILE  # noqa: E402

RATIO_LIMIT = 1.05


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--export", default=os.path.join(REPO, "artifacts", "penguins", "export"))
    p.add_argument("--rounds", type=int, default=10)
    p.add_argument("--requests", type=int, default=200)
    args = p.parse_args()
    export_base = os.path.abspath(args.export)
    export_dir = latest_version_dir(export_base)
    if export_dir is None:
        sys.exit(f"no export version under {export_base}: run `make demo` or pass --export")
    if not os.path.exists(os.path.join(export_dir, EXPORT_STATISTICS_FILE)):
        sys.exit(f"{export_dir} has no {EXPORT_STATISTICS_FILE}: export it again (tfbake run)")
    with tempfile.TemporaryDirectory() as log_dir, \
            server(export_base, "--data_checks=false") as baseline, \
            server(export_base) as checks, \
            server(export_base, "--data_checks=false", f"--request_log_dir={log_dir}") as logged:
        urls = {"baseline": baseline, "checks": checks, "logging": logged}
        calls = requests_to_time(baseline, export_dir)
        sessions = {side: requests.Session() for side in urls}
        p50s = {(api, side): [] for api in calls for side in urls}
        for path, body in calls.values():  # warm-up
            for side in urls:
                round_p50(sessions[side], urls[side] + path, body, 50)
        for _ in range(args.rounds):
            for api, (path, body) in calls.items():
                for side in urls:
                    p50s[api, side].append(
                        round_p50(sessions[side], urls[side] + path, body, args.requests))
        logged_files = len(os.listdir(log_dir))
    result = {"benchmark": "traffic_overhead", "export": export_dir, "rounds": args.rounds,
              "requests_per_round": args.requests, "ratio_limit": RATIO_LIMIT,
              "log_files_written": logged_files}
    ratios = []
    for api in calls:
        base = statistics.median(p50s[api, "baseline"])
        result[f"{api}_p50_ms_baseline"] = round(base, 4)
        for side in ("checks", "logging"):
            value = statistics.median(p50s[api, side])
            result[f"{api}_p50_ms_{side}"] = round(value, 4)
            result[f"{api}_ratio_{side}"] = round(value / base, 4)
            ratios.append(value / base)
    result["within_limit"] = all(r <= RATIO_LIMIT for r in ratios)
    print(json.dumps(result))


if __name__ == "__main__":
    main()
