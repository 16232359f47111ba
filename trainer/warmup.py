"""``assets.extra/tf_serving_warmup_requests``: real requests TF Serving replays at load.

A TFRecord file of ``PredictionLog``s (TF Serving's SavedModel warm-up format), so the
first client request after a version turns AVAILABLE does not pay for graph
initialization. The requests carry real examples, one log per signature kind.
"""

from __future__ import annotations

import os
from collections.abc import Sequence

import tensorflow as tf
from tensorflow_serving.apis import (
    classification_pb2,
    input_pb2,
    model_pb2,
    predict_pb2,
    prediction_log_pb2,
    regression_pb2,
)

from tfbake.serving_input import signatures as sig
from tfbake.serving_input.export_layout import EXAMPLES_KEY, WARMUP_FILE


def _example_input(examples: Sequence[bytes]) -> input_pb2.Input:
    return input_pb2.Input(
        example_list=input_pb2.ExampleList(
            examples=[tf.train.Example.FromString(e) for e in examples]
        )
    )


# Method name -> (request class, PredictionLog field, log class) of the Example APIs.
_EXAMPLE_LOGS = {
    sig.CLASSIFY_METHOD: (
        classification_pb2.ClassificationRequest,
        "classify_log",
        prediction_log_pb2.ClassifyLog,
    ),
    sig.REGRESS_METHOD: (
        regression_pb2.RegressionRequest,
        "regress_log",
        prediction_log_pb2.RegressLog,
    ),
}


def warmup_logs(
    signature_methods: dict[str, str], examples: Sequence[bytes]
) -> list[prediction_log_pb2.PredictionLog]:
    """One ``PredictionLog`` per tf.Example-taking signature, each with ``examples``."""
    logs = []
    for key, method in sorted(signature_methods.items()):
        spec = model_pb2.ModelSpec(signature_name=key)
        if method in _EXAMPLE_LOGS:
            request_class, field, log_class = _EXAMPLE_LOGS[method]
            request = request_class(model_spec=spec, input=_example_input(examples))
            logs.append(prediction_log_pb2.PredictionLog(**{field: log_class(request=request)}))
        elif key in (sig.PREDICT, sig.TRANSFORM_FEATURES):
            request = predict_pb2.PredictRequest(model_spec=spec)
            request.inputs[EXAMPLES_KEY].CopyFrom(tf.make_tensor_proto(list(examples)))
            logs.append(
                prediction_log_pb2.PredictionLog(
                    predict_log=prediction_log_pb2.PredictLog(request=request)
                )
            )
    return logs


def write_warmup_requests(
    export_dir: str, signature_methods: dict[str, str], examples: Sequence[bytes]
) -> str:
    """Writes the warm-up file into ``export_dir``; returns its path."""
    path = os.path.join(export_dir, WARMUP_FILE)
    tf.io.gfile.makedirs(os.path.dirname(path))
    with tf.io.TFRecordWriter(path) as writer:
        for log in warmup_logs(signature_methods, examples):
            writer.write(log.SerializeToString())
    return path
