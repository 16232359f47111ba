"""Reading the model server's request log: ``PredictionLog`` TFRecords back into examples.

A log file holds TF Serving's ``tensorflow.serving.PredictionLog`` records; this module
needs nothing but ``tensorflow-serving-api``'s protos and TensorFlow's TFRecord reader.
The tf.Examples of classify, regress and multi-inference requests (each merged with
its context), of predict requests on serialized tf.Examples (or SequenceExamples, as
the tf.Examples they stand for) and of ``predict_raw``
requests (rebuilt from their columns) are what ``tfbake drift`` compares with
training, and what a labelled copy of the log trains on (``data.format: tfrecord``).
"""

from __future__ import annotations

import glob
import os
from collections.abc import Collection, Mapping

import numpy as np
import tensorflow as tf
from tensorflow_serving.apis import prediction_log_pb2

from tfbake.model_server.tensors import input_examples
from tfbake.serving_input.receivers import COUNT_SUFFIX, count_input
from tfbake.serving_input.sequence_example import example_of_record

LOG_GLOB = "*.tfrecord"


def log_files(log_dir: str) -> list[str]:
    """The request log files in a folder (FileNotFoundError naming it when none)."""
    files = sorted(glob.glob(os.path.join(log_dir, LOG_GLOB)))
    if not files:
        raise FileNotFoundError(f"no request log ({LOG_GLOB}) in {log_dir}")
    return files


def read_logs(log_dir: str) -> list[prediction_log_pb2.PredictionLog]:
    """Every record of every log file of ``log_dir``, file by file, in order, as the
    files are now (a live server may append more; the last record of a file still
    being written may be incomplete, and is left out)."""
    records = []
    for path in log_files(log_dir):
        try:
            for record in tf.data.TFRecordDataset(path):
                records.append(prediction_log_pb2.PredictionLog.FromString(record.numpy()))
        except tf.errors.DataLossError:  # a record cut short at the end
            pass
    return records


def _feature(values: np.ndarray) -> tf.train.Feature:
    if values.dtype == object or values.dtype.kind in "SU":
        return tf.train.Feature(bytes_list=tf.train.BytesList(value=values.tolist()))
    if values.dtype.kind == "f":
        return tf.train.Feature(float_list=tf.train.FloatList(value=values.tolist()))
    return tf.train.Feature(int64_list=tf.train.Int64List(value=values.tolist()))


def _raw_examples(inputs: dict[str, np.ndarray]) -> list[tf.train.Example]:
    """``predict_raw`` columns (``<name>_count``: values per example) as tf.Examples."""
    names = [n for n in inputs if not (n.endswith(COUNT_SUFFIX)
                                       and n[: -len(COUNT_SUFFIX)] in inputs)]
    rows = len(next(iter(inputs.values())))
    examples = [tf.train.Example() for _ in range(rows)]
    for name in names:
        values = inputs[name].reshape(rows, -1)
        counts = inputs.get(count_input(name))
        for i, example in enumerate(examples):
            count = values.shape[1] if counts is None else int(counts.reshape(-1)[i])
            if count:
                example.features.feature[name].CopyFrom(_feature(values[i, :count]))
    return examples


def logged_examples(
    record: prediction_log_pb2.PredictionLog,
    feature_spec: Mapping | None = None,
    feature_lists: Collection[str] = (),
) -> list[tf.train.Example]:
    """The tf.Examples one logged request carried (none for other requests); with
    ``feature_lists`` (an export of ``data.format: sequence_example``, whose raw
    ``feature_spec`` is given), a Predict request's serialized SequenceExamples as the
    tf.Examples they stand for."""
    kind = record.WhichOneof("log_type")
    if kind in ("classify_log", "regress_log", "multi_inference_log"):
        return input_examples(getattr(record, kind).request.input)
    if kind != "predict_log":
        return []
    inputs = {alias: tf.make_ndarray(proto)
              for alias, proto in record.predict_log.request.inputs.items()}
    if len(inputs) == 1:
        (array,) = inputs.values()
        if array.dtype == object and array.ndim == 1:
            try:
                return [example_of_record(s, feature_spec or {}, feature_lists)
                        for s in array.tolist()]
            except ValueError:  # one raw string column, not examples
                pass
    return _raw_examples(inputs)
