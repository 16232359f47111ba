"""A hand-written ``preprocessing_fn`` beside declared steps: its outputs join theirs.

It follows the transformed-feature contract by hand: a number (float32 []), a
categorical id (int64 [] with its domain) and an id sequence (int64 [L], 0 = padding).
"""

import tensorflow as tf
import tensorflow_transform as tft

MAX_WORDS = 4


def preprocessing_fn(inputs):
    """Raw features -> ``custom_*`` transformed features."""
    plain = tf.cast(inputs["plain"], tf.float32)
    words = tf.strings.split(tf.strings.lower(inputs["review"]))
    word_ids = tft.compute_and_apply_vocabulary(
        words, num_oov_buckets=1, vocab_filename="custom_words"
    )
    return {
        "custom_plain_squared_z": tft.scale_to_z_score(plain * plain),
        "custom_city_id": tft.compute_and_apply_vocabulary(
            inputs["city"], num_oov_buckets=2, vocab_filename="custom_city"
        ),
        "custom_words": (word_ids + 1).to_tensor(default_value=0, shape=[None, MAX_WORDS]),
    }
