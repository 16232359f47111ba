"""Categories (strings, or ints declared as categories): vocabulary and hashed ids.

Ids are categorical ids of the transformed-feature contract: int64 [] with an
``int_domain`` in the schema, so the trainer knows how many there are. A missing
value of a nullable feature gets the last id, one of its own.
"""

from __future__ import annotations

import tensorflow as tf
import tensorflow_transform as tft
from tensorflow_transform import schema_inference

from tfbake.transform.ops.missing import densify
from tfbake.transform.preprocessing_config import Vocabulary, file_tokens


def vocabulary_ids(x, vocabulary: Vocabulary, name: str):
    """``x`` (dense, sparse or ragged) -> ids in the vocabulary file named ``name``, or
    in the declared ``vocabulary.file``."""
    if vocabulary.file is not None:
        try:  # a clear error before the table reads it
            file_tokens(vocabulary.file)
        except ValueError as err:
            raise ValueError(f'feature "{name}": {err}') from None
        # A Python string (not a tensor) makes the table's initializer track the file
        # as an asset: the export copies it into assets/ and reads it from there.
        return tft.apply_vocabulary(
            x, vocabulary.file, num_oov_buckets=vocabulary.num_oov_buckets, name=name
        )
    return tft.compute_and_apply_vocabulary(
        x,
        weights=ones_per_value(x),
        top_k=vocabulary.top_k,
        frequency_threshold=vocabulary.frequency_threshold,
        num_oov_buckets=vocabulary.num_oov_buckets,
        vocab_filename=name,
    )


def ones_per_value(x) -> tf.Tensor:
    """A weight of 1 for each value of ``x`` (dense, sparse or ragged), for a vocabulary's
    ``weights``: the vocabulary is the same (a value's weights add up to its count), but
    tf.Transform then counts each batch's values in the graph (``tf.unique_with_counts``)
    and hands Beam one element per distinct value and batch; without weights it hands
    Beam every value as an element of its own (its TODO b/112916494), which made five
    vocabularies over 336,776 rows some 1.7 million elements and a fifth of a job.
    Float64, so a count stays exact up to 2**53."""
    if isinstance(x, tf.SparseTensor):
        x = x.values
    elif isinstance(x, tf.RaggedTensor):
        x = x.flat_values
    return tf.ones_like(x, dtype=tf.float64)


def vocabulary_id_lists(x, vocabulary: Vocabulary, name: str):
    """``x`` (sparse or ragged lists: a list feature's values, a text's tokens) -> lists
    of ids; without OOV buckets an unseen value is left out (a scalar gets -1)."""
    ids = vocabulary_ids(x, vocabulary, name)
    if vocabulary.num_oov_buckets:
        return ids
    # Ragged, not a retained SparseTensor: that one has gaps in its column indices,
    # which id sequences (RaggedTensor.from_sparse) refuse.
    if isinstance(ids, tf.SparseTensor):
        ids = tf.RaggedTensor.from_sparse(ids)
    return tf.ragged.boolean_mask(ids, ids >= 0)


def vocabulary_size(vocabulary: Vocabulary, name: str) -> tf.Tensor:
    """How many ids :func:`vocabulary_ids` gives (vocabulary + OOV buckets), as a tensor."""
    if vocabulary.file is not None:
        return tf.constant(vocabulary.max_size, tf.int64)
    size = tft.experimental.get_vocabulary_size_by_name(name) + vocabulary.num_oov_buckets
    return tf.cast(size, tf.int64)


def hashed_ids(x, num_buckets: int, name: str):
    """``x`` (strings or ints; dense or sparse) -> ids in ``[0, num_buckets)``."""
    if isinstance(x, tf.SparseTensor):
        return tf.SparseTensor(x.indices, hashed_ids(x.values, num_buckets, name), x.dense_shape)
    text = x if x.dtype == tf.string else tf.strings.as_string(x)
    return tft.hash_strings(text, num_buckets, name=f"{name}_hash")


def with_missing_id(ids, size: tf.Tensor) -> tf.Tensor:
    """Scalar ids as [batch] int64 with their schema domain; a nullable feature's missing
    value (and, with no OOV bucket, an unseen one) gets id ``size``, one of its own."""
    if isinstance(ids, tf.SparseTensor):
        ids = densify(ids, -1)
        ids = tf.where(ids < 0, size, ids)
        top = size
    else:
        top = size - 1
    # The schema override tells the trainer how many ids there are (missing included).
    schema_inference.set_tensor_schema_override(ids, tf.constant(0, tf.int64), top)
    return ids


def most_frequent(x: tf.SparseTensor, name: str) -> tf.Tensor:
    """The most frequent present value, read back from a top-1 vocabulary."""
    as_text = x.values if x.dtype == tf.string else tf.strings.as_string(x.values)
    path = tft.vocabulary(
        as_text, top_k=1, vocab_filename=f"{name}_most_frequent", weights=ones_per_value(as_text)
    )
    table = tf.lookup.StaticHashTable(
        tf.lookup.TextFileInitializer(
            path,
            tf.int64,
            tf.lookup.TextFileIndex.LINE_NUMBER,
            tf.string,
            tf.lookup.TextFileIndex.WHOLE_LINE,
        ),
        default_value="",
    )
    value = table.lookup(tf.constant(0, tf.int64))
    return value if x.dtype == tf.string else tf.strings.to_number(value, x.dtype)
