"""Live traffic: per-request data checks, the request log, drift and replay, on the
session's penguins export served by real server processes.

Server ``checked``: data checks on, every request logged (``logging_config`` with
``sampling_rate: 1.0`` and ``--request_log_dir``), serving the session's version and
one trained on other data. Server ``unchecked``: the session's export with checks off
and a request log folder that cannot be created (a path under a regular file).
"""

from __future__ import annotations

import glob
import json
import os
import shutil
import time
import urllib.request

import grpc
import pytest
import tensorflow as tf
import yaml
from prometheus_client.parser import text_string_to_metric_families
from tensorflow_serving.apis import (
    classification_pb2,
    prediction_log_pb2,
    prediction_service_pb2_grpc,
)

from model_server.config import DEFAULT_PROMETHEUS_PATH
from model_server.data_checks import CHECKED_EXAMPLES, FEATURE_CHECKS
from model_server.request_log import DROPPED, WRITTEN
from tests import traffic_data
from tests.conftest import serve, write_config

NULLABLE = "bill_length_mm"  # the feature the "missing" requests leave out
OUT_OF_RANGE = "body_mass_g"


@pytest.fixture(scope="module")
def rows(penguins_run):
    """(train rows, eval rows) read from the CSV files."""
    config = penguins_run.config
    types = traffic_data.feature_types(config)
    return (traffic_data.read_rows(config.data.train, types),
            traffic_data.read_rows(config.data.eval, types))


@pytest.fixture(scope="module")
def other_version(penguins_run, tmp_path_factory) -> tuple[str, int, int]:
    """An export base holding the session's version and one trained (3 epochs) on the
    eval split's transformed data: ``(base, session version, other version)``."""
    from tfbake import stages
    from tfbake.config import load_config

    tmp = tmp_path_factory.mktemp("other_version")
    raw = yaml.safe_load(penguins_run.config_path.read_text())
    raw["artifacts"] = str(tmp / "artifacts")
    raw["training"]["epochs"] = 3
    config = load_config(write_config(tmp, raw))
    shutil.copytree(penguins_run.config.transform_dir, config.transform_dir)
    data = os.path.join(config.transform_dir, "data")
    for path in glob.glob(os.path.join(data, "train-*")):
        os.remove(path)
    for path in glob.glob(os.path.join(data, "eval-*")):
        shutil.copy(path, path.replace(f"{os.sep}eval-", f"{os.sep}train-"))
    base = config.export_dir_base
    first = int(os.path.basename(penguins_run.export_dir))
    shutil.copytree(penguins_run.export_dir, os.path.join(base, str(first)))
    model, _ = stages.run_training(config)
    second = int(os.path.basename(stages.run_export(config, model)))
    assert second > first
    return base, first, second


@pytest.fixture(scope="module")
def servers(penguins_run, other_version, python, tmp_path_factory):
    """``{"checked": (rest, grpc, log_dir), "unchecked": (rest, grpc, log_dir)}``."""
    work = tmp_path_factory.mktemp("traffic_servers")
    base, _, _ = other_version
    monitoring = work / "monitoring.config"
    monitoring.write_text("prometheus_config { enable: true }\n")
    models = work / "models.config"
    models.write_text(f"""model_config_list {{ config {{
  name: "penguins" base_path: "{base}" model_platform: "tensorflow"
  model_version_policy {{ all {{}} }}
  logging_config {{
    log_collector_config {{ type: "" filename_prefix: "penguins" }}
    sampling_config {{ sampling_rate: 1.0 }}
  }}
}} }}
""")
    log_dir = work / "log"
    blocker = work / "a_file"
    blocker.write_text("")
    with serve(python, [f"--model_config_file={models}", f"--request_log_dir={log_dir}",
                        f"--monitoring_config_file={monitoring}"], work) as checked:
        unchecked_dir = tmp_path_factory.mktemp("unchecked")
        with serve(python, ["--model_name=penguins",
                            f"--model_base_path={penguins_run.config.export_dir_base}",
                            "--data_checks=false", f"--request_log_dir={blocker / 'log'}",
                            f"--monitoring_config_file={monitoring}"], unchecked_dir) as plain:
            yield {"checked": (*checked, str(log_dir)), "unchecked": (*plain, str(blocker))}


def _requests(rows) -> list[dict]:
    """500 eval rows, then 100 each: an unseen island, an out-of-range body mass, no
    bill length; and 5 with a NaN flipper length."""
    train, evaluation = rows
    top = max(r[OUT_OF_RANGE] for r in train if r[OUT_OF_RANGE] is not None)
    requests = [evaluation[i % len(evaluation)] for i in range(500)]
    for i in range(100):
        row = dict(evaluation[i % len(evaluation)])
        row["island"] = "Atlantis"
        requests.append(row)
    for i in range(100):
        row = dict(evaluation[i % len(evaluation)])
        row[OUT_OF_RANGE] = top + 1000.0
        requests.append(row)
    for i in range(100):
        row = dict(evaluation[i % len(evaluation)])
        row[NULLABLE] = None
        requests.append(row)
    for i in range(5):
        row = dict(evaluation[i])
        row["flipper_length_mm"] = float("nan")
        requests.append(row)
    return requests


def _classify_all(target: str, requests: list[dict], version: int | None) -> list:
    with grpc.insecure_channel(target) as channel:
        stub = prediction_service_pb2_grpc.PredictionServiceStub(channel)
        answers = []
        for row in requests:
            request = classification_pb2.ClassificationRequest()
            request.model_spec.name = "penguins"
            if version is not None:
                request.model_spec.version.value = version
            request.input.example_list.examples.append(traffic_data.example(row))
            answers.append(stub.Classify(request, timeout=30).result)
        return answers


def _metrics(rest_url: str) -> dict[str, list]:
    page = urllib.request.urlopen(rest_url + DEFAULT_PROMETHEUS_PATH, timeout=30).read()
    families = {}
    for family in text_string_to_metric_families(page.decode()):
        for sample in family.samples:
            families.setdefault(sample.name, []).append(sample)
    return families


def _wait_for(rest_url: str, name: str, count: int) -> dict[str, list]:
    """The metrics once counter ``name`` adds up to ``count`` (the log's writer thread
    is behind the answers); fails after a minute."""
    deadline = time.monotonic() + 60
    while True:
        metrics = _metrics(rest_url)
        if sum(s.value for s in metrics.get(name, [])) >= count or time.monotonic() > deadline:
            return metrics
        time.sleep(0.2)


@pytest.fixture(scope="module")
def traffic(servers, rows, other_version):
    """The requests, sent to both servers (the checked one at the session's version)."""
    requests = _requests(rows)
    _, first, _ = other_version
    checked = _classify_all(servers["checked"][1], requests, first)
    unchecked = _classify_all(servers["unchecked"][1], requests, None)
    return requests, checked, unchecked


def test_check_counters_count_each_flagged_feature_exactly(traffic, servers, rows, other_version):
    requests, _, _ = traffic
    metrics = _metrics(servers["checked"][0])
    _, first, _ = other_version
    counted = {
        (s.labels["feature"], s.labels["check"]): int(s.value)
        for s in metrics[FEATURE_CHECKS + "_total"] if s.labels["version"] == str(first)
    }
    expected = traffic_data.expected_flags(requests, rows[0])
    assert counted == expected
    # Beside what the eval rows hold themselves, each abnormal request counts once.
    assert counted[("island", "unseen_category")] >= 100
    assert counted[(OUT_OF_RANGE, "out_of_range")] >= 100
    assert counted[(NULLABLE, "missing")] >= 100
    assert counted[("flipper_length_mm", "not_finite")] == 5
    (checked,) = metrics[CHECKED_EXAMPLES + "_total"]
    assert checked.value == len(requests)


def test_checks_never_change_an_answer(traffic, servers):
    _, checked, unchecked = traffic
    assert len(checked) == len(unchecked)
    assert checked == unchecked
    assert FEATURE_CHECKS + "_total" not in _metrics(servers["unchecked"][0])


def test_request_log_holds_every_request_readable_with_serving_protos(traffic, servers):
    requests, checked, _ = traffic
    rest, _, log_dir = servers["checked"]
    metrics = _wait_for(rest, WRITTEN + "_total", len(requests))
    assert sum(s.value for s in metrics[WRITTEN + "_total"]) == len(requests)
    assert DROPPED + "_total" not in metrics
    records = []
    for path in sorted(glob.glob(os.path.join(log_dir, "penguins-*.tfrecord"))):
        for data in tf.data.TFRecordDataset(path):
            records.append(prediction_log_pb2.PredictionLog.FromString(data.numpy()))
    assert len(records) == len(requests)
    for record, row, answer in zip(records, requests, checked):
        assert record.log_metadata.model_spec.name == "penguins"
        assert record.log_metadata.sampling_config.sampling_rate == 1.0
        (example,) = record.classify_log.request.input.example_list.examples
        assert example == traffic_data.example(row)
        assert record.classify_log.response.result == answer


def test_unwritable_log_dir_drops_and_counts_while_requests_succeed(traffic, servers):
    requests, _, unchecked = traffic
    assert len(unchecked) == len(requests)  # every request was answered
    metrics = _wait_for(servers["unchecked"][0], DROPPED + "_total", len(requests))
    dropped = {s.labels["reason"]: s.value for s in metrics[DROPPED + "_total"]}
    assert dropped == {"write_error": len(requests)}
    assert WRITTEN + "_total" not in metrics


@pytest.fixture(scope="module")
def logged(traffic, servers, tmp_path_factory) -> str:
    """A copy of the checked server's request log once it holds every request (the
    replays are logged too, and would change the log under the next test)."""
    rest, _, log_dir = servers["checked"]
    _wait_for(rest, WRITTEN + "_total", len(traffic[0]))
    copy = tmp_path_factory.mktemp("logged")
    for path in glob.glob(os.path.join(log_dir, "*.tfrecord")):
        shutil.copy(path, copy)
    return str(copy)


def test_replay_against_the_same_version_finds_no_difference(traffic, servers, logged,
                                                             other_version, capsys):
    from tfbake.cli import main

    _, first, _ = other_version
    target = servers["checked"][1]
    assert main(["replay", "--logs", logged, "--server", target, "--version", str(first)]) == 0
    assert capsys.readouterr().out.strip() == (
        f"0 of {len(traffic[0])} replayed requests answer differently")


def test_replay_against_another_version_reports_the_differing_requests(
        traffic, servers, logged, other_version, capsys):
    from tfbake.cli import main

    requests, checked, _ = traffic
    _, _, second = other_version
    target = servers["checked"][1]
    assert main(["replay", "--logs", logged, "--server", target, "--version", str(second),
                 "--format", "json"]) == 1
    report = json.loads(capsys.readouterr().out)
    other = _classify_all(target, requests, second)
    differing = [i for i, (a, b) in enumerate(zip(checked, other))
                 if [c.label for c in a.classifications[0].classes]
                 != [c.label for c in b.classifications[0].classes]
                 or any(abs(x.score - y.score) > 1e-6 * (1 + abs(x.score))
                        for x, y in zip(a.classifications[0].classes,
                                        b.classifications[0].classes))]
    assert differing  # a model trained on other data answers differently
    assert [d["index"] for d in report["differences"]] == differing
    assert report["replayed"] == len(requests)


def test_request_log_size_cap_drops_and_counts(tmp_path):
    from prometheus_client import CollectorRegistry

    from model_server.request_log import LogTarget, RequestLog

    registry = CollectorRegistry()
    record = prediction_log_pb2.PredictionLog()
    record.classify_log.request.model_spec.name = "m" * 100
    size = len(record.SerializeToString()) + 40  # with the metadata the log adds
    log = RequestLog(registry, lambda name: LogTarget(str(tmp_path), "m", 1.0),
                     max_file_bytes=size * 2, max_total_bytes=size * 3)
    for _ in range(5):
        log.submit("m", lambda: record)
    log.close()
    written = registry.get_sample_value(WRITTEN + "_total", {"model_name": "m"})
    dropped = registry.get_sample_value(DROPPED + "_total",
                                        {"model_name": "m", "reason": "size_cap"})
    assert (written, dropped) == (3, 2)
    files = sorted(glob.glob(str(tmp_path / "m-*.tfrecord")))
    assert len(files) == 2  # rotated at two records
    assert sum(1 for path in files for _ in tf.data.TFRecordDataset(path)) == 3


def test_drift_on_eval_rows_is_none_and_names_the_two_shifted_features(
        penguins_run, rows, tmp_path, capsys):
    from tfbake.cli import main

    _, evaluation = rows
    same, moved = tmp_path / "same", tmp_path / "moved"
    same.mkdir()
    moved.mkdir()
    traffic_data.write_classify_log(str(same / "log.tfrecord"), evaluation, "penguins")
    shifted = traffic_data.shifted(evaluation, OUT_OF_RANGE, "island", "Dream")
    traffic_data.write_classify_log(str(moved / "log.tfrecord"), shifted, "penguins")
    config = str(penguins_run.config_path)
    assert main(["drift", config, "--logs", str(same)]) == 0
    assert capsys.readouterr().out.strip().endswith("no drift")
    assert main(["drift", config, "--logs", str(moved), "--format", "json"]) == 1

    report = json.loads(capsys.readouterr().out)
    assert report["drifted"] == ["island", OUT_OF_RANGE]
    assert report["examples"] == len(evaluation)
