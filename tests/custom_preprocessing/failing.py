"""preprocessing_fns that fail while tf.Transform traces them, as a user's first try
might (tests/test_trace_errors.py)."""

import tensorflow as tf
import tensorflow_transform as tft


def dense_op_on_nullable(inputs):
    # "x" is nullable: a tf.SparseTensor, which tf.math.log1p does not take.
    return {"x_log": tft.scale_to_z_score(tf.math.log1p(inputs["x"]))}


def _scaled(value):
    return tft.scale_to_0_1(tf.math.log1p(value))


def dense_op_in_a_helper(inputs):
    return {"x_log": _scaled(inputs["x"])}


def misspelled_feature(inputs):
    return {"c_ids": tft.compute_and_apply_vocabulary(inputs["cc"])}
