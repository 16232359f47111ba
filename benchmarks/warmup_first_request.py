"""The first request after a model turns AVAILABLE, with the export's warm-up file
replayed at load, against a steady-state request of the same server.

Each round starts a fresh ``python -m tfbake.model_server`` on the export (``--export``,
default the penguins export of ``make demo``; the penguins pipeline is run in a
temporary folder when it is absent), asks for the model's status as a client does,
then times one REST ``:classify`` (the first), ``--steady`` more (their median is the
steady state), and one more after a one-second pause (what an idle second costs on
this machine: CPU caches go cold with no server involved). One more server per round
runs with ``--enable_model_warmup=false``: the first request that warm-up spares.

Prints one JSON object with medians over rounds; the target is first / steady <= 2.
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

import requests  # noqa: E402
from _shipped_example import build_penguins_export  # noqa: E402
from console_overhead import server  # noqa: E402

from tfbake.model_server import export_contract  # noqa: E402
from tfbake.serving_input.export_layout import latest_version_dir  # noqa: E402

TARGET_RATIO = 2.0
IDLE_S = 1.0


def classify_body(export_base: str) -> str:
    """One real eval example of the export's warm-up file, as a ``:classify`` body."""
    (example,) = export_contract.read_warmup_examples(latest_version_dir(export_base), limit=1)
    return json.dumps({"examples": [export_contract.example_to_row(example)]})


def one_server(export_base: str, body: str, steady: int, *flags: str) -> dict[str, float]:
    """A fresh server: first, steady-state median and after-idle request times (ms)."""
    with server(export_base, *flags) as rest, requests.Session() as session:
        url = f"{rest}/v1/models/m:classify"

        def classify() -> float:
            start = time.perf_counter()
            response = session.post(url, data=body, timeout=60)
            elapsed = time.perf_counter() - start
            response.raise_for_status()
            return elapsed * 1e3

        # A client learns AVAILABLE from the status; that request also opens the
        # connection, which is not the model's cost.
        assert session.get(f"{rest}/v1/models/m", timeout=60).json()[
            "model_version_status"][0]["state"] == "AVAILABLE"
        first = classify()
        steady_ms = statistics.median(classify() for _ in range(steady))
        time.sleep(IDLE_S)
        return {"first": first, "steady": steady_ms, "after_idle": classify()}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--export", default=os.path.join(REPO, "artifacts", "penguins", "export"))
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--steady", type=int, default=30)
    args = parser.parse_args(argv)

    with tempfile.TemporaryDirectory() as work:
        export_base = os.path.abspath(args.export)
        if not os.path.isdir(export_base):
            export_base = build_penguins_export(work)
        body = classify_body(export_base)
        warm, cold = [], []
        for _ in range(args.rounds):
            warm.append(one_server(export_base, body, args.steady))
            cold.append(one_server(export_base, body, args.steady, "--enable_model_warmup=false"))

    def median(runs, key):
        return round(statistics.median(r[key] for r in runs), 3)

    figures = {
        "first_ms": median(warm, "first"),
        "steady_ms": median(warm, "steady"),
        "after_idle_ms": median(warm, "after_idle"),
        "no_warmup_first_ms": median(cold, "first"),
    }
    ratio = statistics.median(r["first"] / r["steady"] for r in warm)
    idle_ratio = statistics.median(r["after_idle"] / r["steady"] for r in warm)
    print(json.dumps({
        "benchmark": "warmup_first_request",
        "export": args.export,
        "figure": "first REST :classify after AVAILABLE / steady-state median (median of rounds)",
        **figures,
        "ratio": round(ratio, 3),
        "after_idle_ratio": round(idle_ratio, 3),
        "no_warmup_ratio": round(figures["no_warmup_first_ms"] / figures["steady_ms"], 1),
        "target_max_ratio": TARGET_RATIO,
        "pass": ratio <= TARGET_RATIO,
        "rounds": args.rounds,
        "per_round": warm,
    }))
    return 0


if __name__ == "__main__":
    sys.exit(main())
