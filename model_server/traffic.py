"""What the server does with each answered request beside answering it: the data
checks (:mod:`tfbake.model_server.data_checks`) and the request log
(:mod:`tfbake.model_server.request_log`). :class:`~tfbake.model_server.core.ServerCore` calls
:class:`TrafficWatch` once per answered request; nothing here can change or fail it.
"""

from __future__ import annotations

import logging

import numpy as np
from prometheus_client import CollectorRegistry
from tensorflow_serving.apis import (
    classification_pb2,
    prediction_log_pb2,
    regression_pb2,
)

from tfbake.model_server.data_checks import DataCheckCounters
from tfbake.model_server.request_log import RequestLog, metadata
from tfbake.model_server.tensors import input_examples, tensor_proto

log = logging.getLogger(__name__)


class TrafficWatch:
    """Data checks (``checks``) and an optional request log for answered requests."""

    def __init__(self, registry: CollectorRegistry | None, *, checks: bool = True,
                 request_log: RequestLog | None = None):
        self.checks = checks
        self.request_log = request_log
        self._counters = DataCheckCounters(registry)

    def close(self) -> None:
        """Writes the request log's queued records."""
        if self.request_log is not None:
            self.request_log.close()

    def _check(self, servable, run) -> None:
        rules = servable.data_checks
        if not self.checks or rules is None:
            return
        try:
            found = run(rules)
            if found is not None:
                examples, flags = found
                self._counters.record(servable.name, servable.version, examples, flags)
        except Exception:  # noqa: BLE001 - a check never fails a request
            log.exception("data checks failed on a request to %s", servable.name)

    def predicted(self, servable, signature_name: str, inputs: dict, outputs: dict) -> None:
        """A Predict answer: raw columns or serialized tf.Examples are checked."""
        def run(rules):
            if rules.is_raw_input(inputs):
                rows = len(next(iter(inputs.values())))
                return rows, rules.columns(inputs)
            if len(inputs) == 1:
                (array,) = inputs.values()
                if array.dtype == object and array.ndim == 1:
                    examples = rules.parse(array.tolist())
                    if examples is not None:
                        return len(examples), rules.examples(examples)
            return None

        self._check(servable, run)
        if self.request_log is not None:
            def build():  # filled in place: a record is built once per logged request
                record = prediction_log_pb2.PredictionLog()
                record.log_metadata.CopyFrom(metadata(servable, signature_name))
                request = record.predict_log.request
                request.model_spec.CopyFrom(record.log_metadata.model_spec)
                for alias, array in inputs.items():
                    request.inputs[alias].CopyFrom(tensor_proto(np.asarray(array)))
                response = record.predict_log.response
                response.model_spec.CopyFrom(request.model_spec)
                for alias, array in outputs.items():
                    response.outputs[alias].CopyFrom(tensor_proto(array))
                return record

            self.request_log.submit(servable.name, build)

    def examples(self, servable, request_input, results=()) -> None:
        """A Classify, Regress or MultiInference answer on an ``Input`` of tf.Examples;
        ``results``: one ClassifyResult or RegressResult to log (none for MultiInference)."""
        def run(rules):
            examples = input_examples(request_input)
            return len(examples), rules.examples(examples)

        self._check(servable, run)
        if self.request_log is not None and len(results) == 1:
            (result,) = results
            self.request_log.submit(servable.name, lambda: _examples_log(
                servable, request_input, result))


def _examples_log(servable, request_input, result) -> prediction_log_pb2.PredictionLog:
    from tfbake.model_server.grpc_service import fill_classification

    record = prediction_log_pb2.PredictionLog()
    record.log_metadata.CopyFrom(metadata(servable, result.signature_name))
    spec = record.log_metadata.model_spec
    if hasattr(result, "values"):  # RegressResult
        entry = record.regress_log
        entry.request.CopyFrom(regression_pb2.RegressionRequest(model_spec=spec))
        entry.response.model_spec.CopyFrom(spec)
        for value in result.values.tolist():
            entry.response.result.regressions.add(value=value)
    else:
        entry = record.classify_log
        entry.request.CopyFrom(classification_pb2.ClassificationRequest(model_spec=spec))
        entry.response.model_spec.CopyFrom(spec)
        fill_classification(result, entry.response.result)
    entry.request.input.CopyFrom(request_input)
    return record
