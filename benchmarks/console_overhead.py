"""What the web console costs the REST API: ``:classify`` and ``:predict`` p50 on a server
with the console (the default) against the same server started with ``--no-console``.

Both servers run at once as real processes on the same export (``--export``, default
the penguins export; a penguins-like classifier is built when it is absent); rounds
alternate between them so drift hits both alike. Each round times ``--requests``
sequential keep-alive requests; the figure is the median over rounds of the round p50.
Prints one JSON object: p50s, ratios (console / no console) and the limit (1.05).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
sys.path.insert(0, REPO)
sys.path.insert(0, os.path.join(REPO, "benchmarks"))

import requests  # noqa: E402

from tfbake.model_server import export_contract, listening_address, request_samples  # noqa: E402
from tfbake.serving_input.export_layout import (  # noqa: E402
    callable_signatures,
    latest_version_dir,
)
from tfbake.serving_input.feature_spec import read_raw_feature_spec  # noqa: E402

RATIO_LIMIT = 1.05


@contextlib.contextmanager
def server(export_base: str, *flags: str):
    """``python -m tfbake.model_server`` on free ports; yields its REST URL."""
    process = subprocess.Popen(
        [sys.executable, "-m", "tfbake.model_server", "--model_name=m",
         f"--model_base_path={export_base}", "--port=0", "--rest_api_port=-1", *flags],
        stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, cwd=REPO)
    try:
        for line in process.stdout:
            address = listening_address(line)
            if address and address[0] == "rest":
                yield address[1]
                break
        else:
            raise RuntimeError(f"server exited {process.wait()}")
    finally:
        process.send_signal(signal.SIGTERM)
        process.wait(timeout=60)


def requests_to_time(rest: str, export_dir: str) -> dict[str, tuple[str, str]]:
    """API -> (path, body): ``serving_default`` classify and the first predict signature."""
    metadata = requests.get(f"{rest}/v1/models/m/metadata", timeout=30).json()
    signature_defs = callable_signatures(metadata["metadata"]["signature_def"]["signature_def"])
    contract = read_raw_feature_spec(export_dir)
    rows = export_contract.example_rows(export_dir, signature_defs, contract, limit=1) or [
        {"bill_length_mm": 40.0, "island": "Biscoe", "year": 2008}]
    dtypes = request_samples.feature_dtypes(signature_defs)
    chosen = {}
    for name in sorted(signature_defs, key=lambda n: n != "serving_default"):
        d = signature_defs[name]
        api = request_samples.api_of(d)
        if api in ("classify", "predict") and api not in chosen and \
                request_samples.signature_kind(d):
            body = request_samples.request_body(name, d, rows, dtypes)
            chosen[api] = (request_samples.rest_path("m", api), json.dumps(body))
    return chosen


def round_p50(session: requests.Session, url: str, body: str, n: int) -> float:
    samples = []
    for _ in range(n):
        start = time.perf_counter()
        response = session.post(url, data=body, timeout=30)
        samples.append(time.perf_counter() - start)
        response.raise_for_status()
    return statistics.median(samples) * 1e3


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--export", default=os.path.join(REPO, "artifacts", "penguins", "export"))
    p.add_argument("--rounds", type=int, default=10)
    p.add_argument("--requests", type=int, default=200)
    args = p.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        export_base = os.path.abspath(args.export)
        if not os.path.isdir(export_base):
            from serving_latency import build_small_classifier

            export_base = build_small_classifier(os.path.join(tmp, "export"))
        export_dir = latest_version_dir(export_base)
        with server(export_base) as with_console, server(export_base, "--no-console") as without:
            assert requests.get(with_console + "/", timeout=10).status_code == 200
            assert requests.get(without + "/", timeout=10).status_code == 404
            calls = requests_to_time(with_console, export_dir)
            p50s = {(api, side): [] for api in calls for side in ("console", "no_console")}
            sessions = {"console": requests.Session(), "no_console": requests.Session()}
            urls = {"console": with_console, "no_console": without}
            for path, body in calls.values():  # warm-up
                for side in sessions:
                    round_p50(sessions[side], urls[side] + path, body, 50)
            for _ in range(args.rounds):
                for api, (path, body) in calls.items():
                    for side in ("console", "no_console"):
                        p50s[api, side].append(
                            round_p50(sessions[side], urls[side] + path, body, args.requests))
    result = {"benchmark": "console_overhead", "export": args.export,
              "rounds": args.rounds, "requests_per_round": args.requests,
              "ratio_limit": RATIO_LIMIT}
    for api in calls:
        on = statistics.median(p50s[api, "console"])
        off = statistics.median(p50s[api, "no_console"])
        result[f"{api}_p50_ms_console"] = round(on, 4)
        result[f"{api}_p50_ms_no_console"] = round(off, 4)
        result[f"{api}_ratio"] = round(on / off, 4)
    result["within_limit"] = all(result[f"{api}_ratio"] <= RATIO_LIMIT for api in calls)
    print(json.dumps(result))


if __name__ == "__main__":
    main()
