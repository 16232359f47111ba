"""Eval label values that are no training class, found by the Beam job before training.

A class label's vocabulary is computed over the training split (a sequence-tagging
label's tag vocabulary too), so an eval value
spelled another way (``"high."`` for ``"high"``) has no id. The job runs the part of
the transform graph that computes each class label's value (cleaned, or derived by a
``preprocessing_fn``) and its id over the eval (and validation) rows and counts the
values without an id in Beam counters; the job then fails naming them
(:func:`unknown_labels_message`), with their counts and the fix.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Callable, Sequence

import apache_beam as beam
import numpy as np
import pyarrow as pa
import tensorflow as tf
from tensorflow_transform.saved import saved_transform_io
from tfx_bsl.tfxio import tensor_adapter

from tfbake.serving_input.transform_graph import TransformGraph, named_tensor, tf1_signature
from tfbake.transform.labels import label_id_op, label_value_op

COUNTER_NAMESPACE = "tfbake_unknown_labels"

# A RecordBatch of raw rows -> label -> (its values, their ids).
LabelValues = Callable[[pa.RecordBatch], dict[str, tuple[np.ndarray, np.ndarray]]]


def _label_tensors(find: Callable, outputs: dict, labels: Sequence[str]) -> dict:
    """label -> {"value", "id"} tensors of the labels whose values the graph names
    (``find``: an op name -> its tensor, or None)."""
    fetches = {}
    for label in labels:
        value = find(label_value_op(label))
        if value is not None:  # None: a preprocessing_fn made the label's ids itself
            ids = find(label_id_op(label))  # a list label's: one per value
            fetches[label] = {"value": value, "id": outputs[label] if ids is None else ids}
    return fetches


def _tf1_label_values(transform_dir: str, labels: Sequence[str], adapter) -> LabelValues | None:
    """A TF1 transform graph (tf.Transform's graph mode) imported by tf.Transform's own
    loader and run in a session: a third of the time it takes to load it as a function."""
    graph = tf.Graph()
    with graph.as_default():
        inputs, outputs = saved_transform_io.partially_apply_saved_transform_internal(
            transform_dir, {}
        )
        fetches = _label_tensors(functools.partial(named_tensor, graph), outputs, labels)
        if not fetches:
            return None
        initialize = tf.compat.v1.tables_initializer()
    session = tf.compat.v1.Session(graph=graph)
    session.run(initialize)

    def label_values(record_batch):
        tensors = adapter.ToBatchTensors(record_batch, produce_eager_tensors=False)
        found = session.run(fetches, {inputs[name]: tensors[name] for name in inputs})
        return {label: (pair["value"], pair["id"]) for label, pair in found.items()}

    return label_values


def _tf2_label_values(transform_dir: str, labels: Sequence[str], adapter) -> LabelValues | None:
    """A transform graph of tf.Transform's TF2 mode (a ``tf.function``), pruned to the
    labels' values and ids."""
    graph = TransformGraph(transform_dir)
    fetches = _label_tensors(graph.tensor, graph.outputs, labels)
    if not fetches:
        return None
    needed = set().union(*(graph.sources(f) for f in fetches.values()))
    function = graph.prune(needed, fetches)

    def label_values(record_batch, _loaded=graph):  # the loaded graph holds the tables
        tensors = adapter.ToBatchTensors(record_batch, produce_eager_tensors=True)
        found = function({name: tensors[name] for name in function.raw_inputs})
        return {label: (pair["value"].numpy(), pair["id"].numpy()) for label, pair in found.items()}

    return label_values


class _CountUnknownValues(beam.DoFn):
    """Raw RecordBatches -> a counter per (split, label, value) whose id is -1."""

    def __init__(self, split: str, labels: Sequence[str], adapter_config):
        self._split = split
        self._labels = list(labels)
        self._adapter_config = adapter_config
        self._transform_dir = None
        self._label_values = None

    def setup(self):
        self._adapter = tensor_adapter.TensorAdapter(self._adapter_config)

    def process(self, record_batch, transform_dir: str):
        if transform_dir != self._transform_dir:
            tf1 = tf1_signature(transform_dir) is not None
            load = _tf1_label_values if tf1 else _tf2_label_values
            self._label_values = load(transform_dir, self._labels, self._adapter)
            self._transform_dir = transform_dir
        if self._label_values is None:
            return
        for label, (values, ids) in self._label_values(record_batch).items():
            unknown = values[ids < 0]
            for value, count in zip(*np.unique(unknown, return_counts=True)):
                if isinstance(value, bytes):
                    value = value.decode("utf-8", "backslashreplace")
                value = value.item() if hasattr(value, "item") else value
                name = json.dumps([self._split, label, value])
                beam.metrics.Metrics.counter(COUNTER_NAMESPACE, name).inc(int(count))


class CountUnknownLabels(beam.PTransform):
    """A split's raw RecordBatches -> counters of the class label values that have no id
    in the training label vocabulary (``transform_fn``: the saved transform's folder)."""

    def __init__(self, split: str, labels: Sequence[str], adapter_config, transform_fn):
        super().__init__()
        self._split = split
        self._labels = labels
        self._adapter_config = adapter_config
        self._transform_fn = transform_fn

    def expand(self, record_batches):
        return record_batches | "CountUnknownValues" >> beam.ParDo(
            _CountUnknownValues(self._split, self._labels, self._adapter_config),
            transform_dir=beam.pvalue.AsSingleton(self._transform_fn),
        )


def unknown_label_counts(result) -> dict[tuple[str, str], dict]:
    """(split, label) -> {value: rows} from a finished job's counters."""
    counters = result.metrics().query(
        beam.metrics.MetricsFilter().with_namespace(COUNTER_NAMESPACE)
    )["counters"]
    found: dict[tuple[str, str], dict] = {}
    for counter in counters:
        split, label, value = json.loads(counter.key.metric.name)
        count = counter.committed or counter.attempted or 0
        if count:
            values = found.setdefault((split, label), {})
            values[value] = values.get(value, 0) + count
    return found


def unknown_labels_message(split: str, label: str, counts: dict, classes: Sequence[str]) -> str:
    """Why the job stops: the ``split`` values of ``label`` that are no training class."""
    ordered = sorted(counts.items(), key=lambda item: (-item[1], str(item[0])))
    values = ", ".join(
        f"{json.dumps(v)} ({n} row{'' if n == 1 else 's'})" for v, n in ordered[:20]
    )
    more = f" and {len(ordered) - 20} more" if len(ordered) > 20 else ""
    example = json.dumps(str(ordered[0][0]))
    return (
        f'{split} label "{label}" has values that are no class of the training data: '
        f"{values}{more}. The training classes are {json.dumps(list(classes))}. Map each "
        f"to its class (label: {{name: {label}, map: {{{example}: <class>}}}}, after any "
        f"strip / case), or leave those rows out of the {split} data"
    )
