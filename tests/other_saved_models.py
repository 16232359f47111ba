"""SavedModels not made by tfbake, built tiny for the tests: what users bring to a
TF Serving-compatible server. None has a raw feature contract or a warm-up file.

- ``tf1_linear``: TF1 ``simple_save`` (placeholders x float [None, 3] and word string
  [None]; score = x . [1, 2, 3], length = characters of word);
- ``counter``: a ``tf.Module`` with int32 and bool inputs (count [None], pair [None, 2],
  flag [None]: total = count + pair[0] + pair[1], flagged = count where flag else 0), a
  ``scale`` signature whose ``factor`` is a scalar (no batch dimension: whole tensors),
  and a ``half`` signature of float16, which TF Serving's JSON cannot carry;
- ``images``: image_bytes (PNG, DT_STRING [None]) -> brightness in [0, 1].
"""

from __future__ import annotations

import os

import tensorflow as tf

MODELS = ("tf1_linear", "counter", "images")
VERSION = 1


def save_tf1_linear(path: str) -> None:
    with tf.Graph().as_default(), tf.compat.v1.Session() as session:
        x = tf.compat.v1.placeholder(tf.float32, [None, 3], name="x")
        word = tf.compat.v1.placeholder(tf.string, [None], name="word")
        weights = tf.compat.v1.Variable([[1.0], [2.0], [3.0]])
        score = tf.reshape(tf.matmul(x, weights), [-1])
        length = tf.strings.length(word, unit="UTF8_CHAR")
        session.run(tf.compat.v1.global_variables_initializer())
        tf.compat.v1.saved_model.simple_save(
            session, path, inputs={"x": x, "word": word},
            outputs={"score": score, "length": length})


class Counter(tf.Module):
    @tf.function(input_signature=[tf.TensorSpec([None], tf.int32),
                                  tf.TensorSpec([None, 2], tf.int32),
                                  tf.TensorSpec([None], tf.bool)])
    def count(self, count, pair, flag):
        return {"total": count + pair[:, 0] + pair[:, 1],
                "flagged": tf.where(flag, count, tf.zeros_like(count))}

    @tf.function(input_signature=[tf.TensorSpec([None], tf.int32),
                                  tf.TensorSpec([], tf.int32)])
    def scale(self, values, factor):
        return {"scaled": values * factor}

    @tf.function(input_signature=[tf.TensorSpec([None], tf.float16)])
    def half(self, x):
        return {"y": x * 2}


def save_counter(path: str) -> None:
    module = Counter()
    tf.saved_model.save(module, path, signatures={
        "serving_default": module.count, "scale": module.scale, "half": module.half})


class Brightness(tf.Module):
    @tf.function(input_signature=[tf.TensorSpec([None], tf.string)])
    def brightness(self, image_bytes):
        def one(png):
            pixels = tf.cast(tf.io.decode_png(png, channels=1), tf.float32)
            return tf.reduce_mean(pixels) / 255.0

        return {"brightness": tf.map_fn(one, image_bytes, fn_output_signature=tf.float32)}


def save_images(path: str) -> None:
    module = Brightness()
    tf.saved_model.save(module, path, signatures={"serving_default": module.brightness})


def save_all(root: str) -> dict[str, str]:
    """Saves every model as version 1 under ``root/<name>``; returns name -> base path."""
    savers = {"tf1_linear": save_tf1_linear, "counter": save_counter, "images": save_images}
    bases = {}
    for name in MODELS:
        bases[name] = os.path.join(root, name)
        savers[name](os.path.join(bases[name], str(VERSION)))
    return bases


def model_config(bases: dict[str, str]) -> str:
    """A text ModelServerConfig serving them all."""
    configs = "".join(
        f'  config {{ name: "{name}" base_path: "{base}" model_platform: "tensorflow" }}\n'
        for name, base in bases.items())
    return "model_config_list {\n" + configs + "}\n"
