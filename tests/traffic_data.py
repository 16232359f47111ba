"""Penguins rows read from the CSV files with the csv module (independently of the Beam
job), made into tf.Examples and written as request logs with TF Serving's protos: the
inputs of the traffic tests (data checks, request log, drift, replay)."""

from __future__ import annotations

import csv
import math

import numpy as np
import tensorflow as tf
from tensorflow_serving.apis import classification_pb2, prediction_log_pb2

NA = "NA"


def read_rows(path: str, feature_types: dict[str, str]) -> list[dict]:
    """A CSV file's rows: feature -> float / int / str value, None where the cell is NA."""
    rows = []
    with open(path, newline="") as f:
        for raw in csv.DictReader(f):
            row = {}
            for name, kind in feature_types.items():
                cell = raw[name]
                if cell == NA:
                    row[name] = None
                else:
                    row[name] = {"float": float, "int": int, "string": str}[kind](cell)
            rows.append(row)
    return rows


def feature_types(config) -> dict[str, str]:
    """Served feature -> its config type."""
    return {name: feature.type for name, feature in config.features.items()}


def example(row: dict) -> tf.train.Example:
    """A row as a tf.Example (None: the feature absent)."""
    features = {}
    for name, value in row.items():
        if value is None:
            continue
        if isinstance(value, str):
            features[name] = tf.train.Feature(bytes_list=tf.train.BytesList(value=[value.encode()]))
        elif isinstance(value, int):
            features[name] = tf.train.Feature(int64_list=tf.train.Int64List(value=[value]))
        else:
            features[name] = tf.train.Feature(float_list=tf.train.FloatList(value=[value]))
    return tf.train.Example(features=tf.train.Features(feature=features))


def write_classify_log(path: str, rows: list[dict], model_name: str) -> None:
    """A request log of one Classify request per row (answers left empty), as the
    server writes one."""
    with tf.io.TFRecordWriter(path) as writer:
        for row in rows:
            record = prediction_log_pb2.PredictionLog()
            request = classification_pb2.ClassificationRequest()
            request.model_spec.name = model_name
            request.input.example_list.examples.append(example(row))
            record.classify_log.request.CopyFrom(request)
            writer.write(record.SerializeToString())


def expected_flags(requests: list[dict], train: list[dict]) -> dict[tuple[str, str], int]:
    """(feature, check) -> examples, computed from the training rows themselves: a
    string training never had, a number outside the training min..max (compared as
    float32, as tf.Example carries them), NaN, a feature absent."""
    seen: dict[str, set] = {}
    low: dict[str, float] = {}
    high: dict[str, float] = {}
    for row in train:
        for name, value in row.items():
            if value is None:
                continue
            if isinstance(value, str):
                seen.setdefault(name, set()).add(value)
            else:
                value = float(np.float32(value))
                low[name] = min(low.get(name, math.inf), value)
                high[name] = max(high.get(name, -math.inf), value)
    counts: dict[tuple[str, str], int] = {}

    def count(key):
        counts[key] = counts.get(key, 0) + 1

    for row in requests:
        for name, value in row.items():
            if value is None:
                count((name, "missing"))
            elif isinstance(value, str):
                if value not in seen[name]:
                    count((name, "unseen_category"))
            elif math.isnan(value):
                count((name, "not_finite"))
            elif not low[name] <= float(np.float32(value)) <= high[name]:
                count((name, "out_of_range"))
    return counts


def shifted(rows: list[dict], number: str, category: str, value: str) -> list[dict]:
    """A copy of ``rows`` with ``number`` moved up by 3 standard deviations (of these
    rows) and ``category``'s share of ``value`` doubled (other values turned into it)."""
    numbers = [r[number] for r in rows if r[number] is not None]
    shift = 3 * float(np.std(numbers))
    copy = [dict(r) for r in rows]
    for r in copy:
        if r[number] is not None:
            r[number] += shift
    share = sum(r[category] == value for r in copy)
    to_change = share  # doubles it
    for r in copy:
        if to_change and r[category] != value:
            r[category] = value
            to_change -= 1
    assert to_change == 0, "the share cannot double"
    return copy
