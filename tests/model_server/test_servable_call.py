"""A signature run in the server's TF1 session answers as the same SavedModel loaded
with ``tf.saved_model.load`` and called as a function (an independent path)."""

from __future__ import annotations

import os

import numpy as np
import tensorflow as tf

from tests.model_server.conftest import HPT_VERSION
from tfbake.model_server.loader import SavedModelLoader


def test_session_call_matches_the_function_call(model_dirs):
    path = os.path.join(model_dirs["hpt"], str(HPT_VERSION))
    servable = SavedModelLoader("hpt", HPT_VERSION, path, warmup=False).load()
    signature = servable.signatures["serving_default"]
    (alias, info), = signature.inputs.items()
    x = np.array([[1.0], [2.0], [5.0]], dtype=info.np_dtype).reshape(
        [3] + [1] * (info.shape.rank - 1))
    answered = signature({alias: x})
    function = tf.saved_model.load(path).signatures["serving_default"]
    expected = {k: v.numpy() for k, v in function(**{alias: tf.constant(x)}).items()}
    assert answered.keys() == expected.keys() == signature.outputs.keys()
    for key in answered:
        np.testing.assert_array_equal(answered[key], expected[key])
    assert signature.mean_call_s < float("inf")
