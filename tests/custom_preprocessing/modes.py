"""One ``preprocessing_fn`` twice: as written (it traces in tf.Transform's TF1 graph
mode) and behind a guard that only lets it trace as a ``tf.function``, as TF2-only code
(a Keras layer, say) would."""

import tensorflow as tf
import tensorflow_transform as tft

MAX_WORDS = 3
# One entry per call: how many times the job traced the function.
CALLS = []


def preprocessing_fn(inputs):
    """Raw features -> ``custom_*`` transformed features."""
    CALLS.append("preprocessing_fn")
    words = tf.strings.split(tf.strings.lower(inputs["review"]))
    word_ids = tft.compute_and_apply_vocabulary(words, num_oov_buckets=1, vocab_filename="words")
    length = tf.cast(tf.strings.length(inputs["review"]), tf.float32)
    return {
        "custom_length_z": tft.scale_to_z_score(length),
        "custom_words": (word_ids + 1).to_tensor(default_value=0, shape=[None, MAX_WORDS]),
    }


def tf2_only_preprocessing_fn(inputs):
    """The same, refusing to trace outside a ``tf.function``."""
    if not tf.inside_function():
        raise RuntimeError("this preprocessing_fn only traces as a tf.function")
    return preprocessing_fn(inputs)
