"""Images: encoded bytes (PNG, JPEG, GIF, BMP) -> float32 [height, width, channels] in [0, 1].

:func:`decode_image` is the one definition of "a decodable image": the Beam job's
source calls it per row to turn a broken image into a reject (:func:`image_error`),
and the ``preprocessing_fn`` calls it in the graph, where a broken image fails the
request with an ``InvalidArgumentError`` naming the feature.
"""

from __future__ import annotations

import functools

import tensorflow as tf

from tfbake.transform.preprocessing_config import Image

FORMATS = "PNG/JPEG/GIF/BMP"


def not_decodable_message(feature: str) -> str:
    """The error a broken image gets, in the Beam job's rejects and at serving time."""
    return f'feature "{feature}": not a decodable {FORMATS} image'


def _well_formed(contents: tf.Tensor) -> tf.Tensor:
    """Whether the bytes start (and, for PNG, end) as one of the formats must: the check
    that makes a truncated or foreign file fail with the feature's name, not a codec's."""
    head = tf.strings.substr(contents, 0, 8)
    tail = tf.strings.substr(contents, tf.maximum(tf.strings.length(contents) - 8, 0), 8)
    png = tf.logical_and(tf.equal(head, b"\x89PNG\r\n\x1a\n"), tf.equal(tail, b"IEND\xaeB`\x82"))
    jpeg = tf.equal(tf.strings.substr(head, 0, 3), b"\xff\xd8\xff")
    gif = tf.logical_or(
        tf.equal(tf.strings.substr(head, 0, 6), b"GIF87a"),
        tf.equal(tf.strings.substr(head, 0, 6), b"GIF89a"),
    )
    bmp = tf.equal(tf.strings.substr(head, 0, 2), b"BM")
    return tf.reduce_any(tf.stack([png, jpeg, gif, bmp]))


def decode_image(contents: tf.Tensor, feature: str, channels: int) -> tf.Tensor:
    """One encoded image (a scalar string) -> uint8 [h, w, channels].

    Raises ``InvalidArgumentError`` whose message names the feature when the bytes are
    not one of the formats (a corrupt body past a valid header fails in the codec).
    """
    # The op prints the message C-escaped: feature \"photo\": not a decodable ...
    check = tf.debugging.Assert(_well_formed(contents), [not_decodable_message(feature)])
    with tf.control_dependencies([check]):
        # Every format decodes to RGB (GIF and BMP cannot give one channel directly).
        rgb = tf.io.decode_image(contents, channels=3, expand_animations=False)
    return tf.image.rgb_to_grayscale(rgb) if channels == 1 else rgb


def image_output(x: tf.Tensor, op: Image, name: str) -> tf.Tensor:
    """[batch] encoded images -> float32 [batch, height, width, channels] in [0, 1]."""

    def one(contents):
        pixels = tf.image.convert_image_dtype(decode_image(contents, name, op.channels), tf.float32)
        resized = tf.image.resize(pixels, [op.height, op.width])
        return tf.ensure_shape(resized, [op.height, op.width, op.channels])

    return tf.map_fn(
        one, x, fn_output_signature=tf.TensorSpec([op.height, op.width, op.channels], tf.float32)
    )


@functools.cache
def _decoder(feature: str, channels: int):
    # One traced function per feature: a batch of images costs one call, not one op
    # dispatch per op and image.
    return tf.function(
        lambda contents: tf.map_fn(
            lambda one: tf.size(decode_image(one, feature, channels), out_type=tf.int64),
            contents,
            fn_output_signature=tf.TensorSpec([], tf.int64),
        ),
        input_signature=[tf.TensorSpec([None], tf.string)],
    )


def _error(images: list[bytes], feature: str, channels: int) -> str | None:
    try:
        _decoder(feature, channels)(tf.constant(images, tf.string))
    except tf.errors.InvalidArgumentError as err:
        if "assertion failed" in err.message:  # decode_image's own check
            return not_decodable_message(feature)
        detail = err.message.split("\n")[0].split("}}")[-1].strip()  # the codec's words
        return f"{not_decodable_message(feature)} ({detail})"
    return None


def image_errors(images: list[bytes], feature: str, channels: int) -> list[str | None]:
    """Why each of ``images`` is no image of ``feature`` (None where it decodes), for
    rejects: the batch is decoded at once, one by one only when some image fails."""
    if not images or _error(images, feature, channels) is None:
        return [None] * len(images)
    return [_error([image], feature, channels) for image in images]
