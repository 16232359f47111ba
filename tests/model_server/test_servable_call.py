"""A signature run in the server's TF1 session answers as the same SavedModel loaded
with ``tf.saved_model.load`` and called as a function (an independent path)."""

from __future__ import annotations

import os

import numpy as np
import pytest
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


def _save_tf1_export(path: str) -> None:
    """An Estimator-era export, built as a TF1 graph (no object graph, no functions):
    a variable, a vocabulary table initialized by the SavedModel's main op, and a
    classify signature."""
    graph = tf.Graph()
    with graph.as_default():
        inputs = tf.compat.v1.placeholder(tf.string, [None], name="inputs")
        table = tf.lookup.StaticHashTable(
            tf.lookup.KeyValueTensorInitializer(["low", "high"], [0.25, 0.75]), -1.0)
        weight = tf.compat.v1.get_variable("weight", initializer=2.0)
        scores = tf.reshape(table.lookup(inputs) * weight, [-1, 1])
        classes = tf.reshape(inputs, [-1, 1])
        with tf.compat.v1.Session(graph=graph) as session:
            session.run(tf.compat.v1.global_variables_initializer())
            session.run(weight.assign(3.0))  # saved as 3.0, where initializing gives 2.0
            builder = tf.compat.v1.saved_model.Builder(path)
            signature = tf.compat.v1.saved_model.classification_signature_def(
                inputs, classes, scores)
            builder.add_meta_graph_and_variables(
                session, ["serve"], signature_def_map={"serving_default": signature},
                main_op=tf.compat.v1.tables_initializer())
            builder.save()


def test_an_estimator_era_tf1_export_serves(tmp_path):
    path = str(tmp_path / "1")
    _save_tf1_export(path)
    servable = SavedModelLoader("tf1", 1, path, warmup=False).load()
    signature = servable.signatures["serving_default"]
    answered = signature({"inputs": np.array([b"high", b"low", b"unseen"], dtype=object)})
    # 3.0 (the variable, restored) times the table's value (initialized by the main op).
    np.testing.assert_allclose(answered["scores"].ravel(), [2.25, 0.75, -3.0])
    assert answered["classes"].ravel().tolist() == [b"high", b"low", b"unseen"]


class _Tokenizer(tf.Module):
    @tf.function(input_signature=[tf.TensorSpec([None], tf.string)])
    def tokens(self, text):
        return {"tokens": tf.strings.split(text)}  # ragged


def test_a_signature_with_a_ragged_output_fails_the_load_naming_it(tmp_path):
    module = _Tokenizer()
    tf.saved_model.save(module, str(tmp_path), signatures={"serving_default": module.tokens})
    with pytest.raises(ValueError, match="Signature 'serving_default': output 'tokens' is a "
                                         "composite_tensor tensor"):
        SavedModelLoader("tokenizer", 1, str(tmp_path), warmup=False).load()
