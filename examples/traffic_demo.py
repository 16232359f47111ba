"""Watching live traffic on the penguins export: data checks, request log, drift, replay.

A real server (``model_server.serve``, in this process) with ``--request_log_dir``
answers every eval row, then rows a client got wrong (an unseen island, a body mass
in kilograms instead of grams); the Prometheus page shows what the data checks counted,
``tfbake drift`` compares the logged traffic with the training statistics (writing
``drift.html`` beside the log) and ``tfbake replay`` sends the log again to the same
version (no answer differs).
"""

import argparse
import os
import shutil
import urllib.request

import model_server
import transform
from tfbake.cli import main as tfbake
from tfbake.config import load_config


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("config")
    p.add_argument("--out", default="artifacts/penguins/traffic")
    args = p.parse_args()
    config = load_config(args.config)
    decoder = transform.CsvRowDecoder(
        config.raw_feature_spec(),
        transform.column_names(config.data.eval, config.data.csv),
        config.data.csv,
    )
    with open(config.data.eval) as f:
        rows = [decoder.decode_dict(line) for line in f.read().splitlines()[1:]]
    for row in rows:
        row.pop(config.label.name)
    odd = [{**row, "island": "Atlantis"} for row in rows[:10]]
    odd += [{**row, "body_mass_g": row["body_mass_g"] / 1000} for row in rows[10:20]
            if row.get("body_mass_g") is not None]
    log_dir = os.path.abspath(os.path.join(args.out, "log"))
    monitoring = os.path.abspath(os.path.join(args.out, "monitoring.config"))
    shutil.rmtree(log_dir, ignore_errors=True)  # this run's traffic only
    os.makedirs(args.out, exist_ok=True)
    with open(monitoring, "w") as f:
        f.write("prometheus_config { enable: true }\n")
    with model_server.serve(config.export_dir_base, model_name=config.name,
                            request_log_dir=log_dir, monitoring_config_file=monitoring) as s:
        client = model_server.Client(s.grpc_target, "grpc")
        for row in rows + odd:
            client.classify(config.name, [row])
        page = urllib.request.urlopen(s.rest_url + "/monitoring/prometheus/metrics").read()
        print(f"{len(rows)} eval rows and {len(odd)} odd ones served; the data checks counted:")
        for line in page.decode().splitlines():
            if line.startswith(":tfbake:serving:feature_check_total"):
                print("  " + line)
        grpc_target = s.grpc_target
        print("\n$ tfbake drift (exit 1: the odd rows drift)")
        tfbake(["drift", args.config, "--logs", log_dir,
                "--html", os.path.join(args.out, "drift.html")])
        print("\n$ tfbake replay against the same version")
        code = tfbake(["replay", "--logs", log_dir, "--server", grpc_target])
    if code != 0:
        raise SystemExit("replay found differing answers on the same version")


if __name__ == "__main__":
    main()
