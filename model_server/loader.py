"""SavedModel loader: one version loaded once, signatures resolved, warm-up replayed."""

from __future__ import annotations

import logging
import os

import tensorflow as tf
from tensorflow_serving.apis import get_model_metadata_pb2, prediction_log_pb2

from tfbake.model_server.data_checks import FeatureChecks
from tfbake.model_server.metrics import Metrics
from tfbake.model_server.servable import Servable, Signature
from tfbake.model_server.tensors import ndarray_from_proto, serialized_examples
from tfbake.serving_input.export_layout import (
    SERVE_TAG,
    WARMUP_FILE,
    callable_signatures,
    load_session,
)

log = logging.getLogger(__name__)

# TF Serving's kMaxNumRecords: more warm-up records than this is an error.
MAX_WARMUP_RECORDS = 1000
DEFAULT_SIGNATURE = "serving_default"


class SavedModelLoader:
    """Loads one version of one model into a :class:`Servable`."""

    def __init__(self, name: str, version: int, path: str, *, warmup: bool = True,
                 warmup_iterations: int = 1, tags=(SERVE_TAG,), metrics: Metrics | None = None):
        self.name = name
        self.version = version
        self.path = path
        self.warmup = warmup
        self.warmup_iterations = max(1, warmup_iterations)
        self.tags = tuple(tags)
        self.metrics = metrics  # where the warm-up records replayed are counted

    def __repr__(self) -> str:
        return f"SavedModelLoader({self.name!r}, {self.version}, {self.path!r})"

    def load(self) -> Servable:
        """Loads the SavedModel into a session of its own, as TF Serving does, and
        resolves every signature; replays warm-up requests."""
        # A TF1 session, not tf.saved_model.load: that would rebuild every function
        # of the export (each Keras layer's call, the transform's) as a Python object,
        # about 1 s of a small model's start-up, while serving runs only the graph.
        session, meta_graph = load_session(self.path, self.tags)
        signature_defs = dict(meta_graph.signature_def)
        signatures = {key: Signature(key, signature_def, session)
                      for key, signature_def in callable_signatures(signature_defs).items()}
        signature_def_map = get_model_metadata_pb2.SignatureDefMap()
        for key, signature_def in signature_defs.items():
            signature_def_map.signature_def[key].CopyFrom(signature_def)
        servable = Servable(
            self.name, self.version, self.path, signatures, signature_def_map, session,
            data_checks=FeatureChecks.of_export(self.path),
        )
        if self.warmup:
            count = replay_warmup(servable, self.warmup_iterations)
            if count:
                if self.metrics is not None:
                    self.metrics.record_warmup(self.name, self.version, count)
                log.info("Finished reading %d warmup records for %s version %d",
                         count, self.name, self.version)
        return servable


def _signature(servable: Servable, model_spec) -> Signature:
    key = model_spec.signature_name or DEFAULT_SIGNATURE
    try:
        return servable.signatures[key]
    except KeyError:
        raise ValueError(f"warm-up request names unknown signature {key!r}") from None


def replay_warmup(servable: Servable, iterations: int = 1) -> int:
    """Runs each request of ``assets.extra/tf_serving_warmup_requests`` (TFRecord of
    PredictionLog) ``iterations`` times; returns the number of records.

    An error in a warm-up request fails the load, as in TF Serving.
    """
    path = os.path.join(servable.path, WARMUP_FILE)
    if not os.path.exists(path):
        return 0
    count = 0
    for record in tf.data.TFRecordDataset(path).as_numpy_iterator():
        count += 1
        if count > MAX_WARMUP_RECORDS:
            raise ValueError(f"Number of warmup records exceeds the maximum ({MAX_WARMUP_RECORDS})")
        log_entry = prediction_log_pb2.PredictionLog.FromString(record)
        for _ in range(iterations):
            _replay(servable, log_entry)
    return count


def _replay(servable: Servable, log_entry) -> None:
    kind = log_entry.WhichOneof("log_type")
    if kind == "predict_log":
        request = log_entry.predict_log.request
        signature = _signature(servable, request.model_spec)
        signature({k: ndarray_from_proto(k, v) for k, v in request.inputs.items()})
    elif kind in ("classify_log", "regress_log"):
        request = getattr(log_entry, kind).request
        signature = _signature(servable, request.model_spec)
        examples = serialized_examples(request.input)
        signature({next(iter(signature.inputs)): examples})
    elif kind == "multi_inference_log":
        request = log_entry.multi_inference_log.request
        examples = serialized_examples(request.input)
        for task in request.tasks:
            signature = _signature(servable, task.model_spec)
            signature({next(iter(signature.inputs)): examples})
    else:
        raise ValueError(f"Unsupported log_type for warmup: {kind}")
