"""tf.Transform's vocabularies, written and counted with a quarter of the Beam transforms.

For each vocabulary (``tft.vocabulary``, ``tft.compute_and_apply_vocabulary``)
tf.Transform applies 38 Beam transforms to write the file (``WriteToText``, with its
temp-dir, finalize and rename steps, for a single file) and 20 for each of its two
counts (before and after ``top_k``/thresholds; ``Count.Globally``, with its
default-value side input). A four-vocabulary job applied 312 transforms (of 1,175)
and ran 49 of its 114 fused stages for that; each costs about a millisecond to build
and a few to run, whatever the data.

Within :func:`lean_vocabulary_steps`, tf.Transform builds them with the
implementations below instead, registered for the same analyzer nodes:

- :class:`_OrderAndWrite` sorts as tf.Transform does (its own ``_OrderElementsFn``,
  after its own ``_BatchAndPreSort``) and writes the file in that step: to a temporary
  name beside it, then renamed over it, so a retried bundle leaves one whole file, as
  ``WriteToText``'s finalize step does. A vocabulary that arrives sorted (``top_k``
  without ``key_fn``: tf.Transform writes ``Top.Of``'s order as it comes) is sorted
  again, largest first, which is ``Top.Of``'s order: the (count, token) pairs are
  distinct, so the order is the same, and timsort takes sorted input in one pass.
  ``tfrecord_gzip`` files keep tf.Transform's implementation.
- :class:`_Count` counts each bundle's elements where they are made (one partial
  count per bundle, as a combiner lifted before its shuffle would) and adds the
  partial counts in one step (a side input): an empty vocabulary counts 1, as in
  tf.Transform (it is written with one dummy token).

The files and counts are tf.Transform's own (``tests/test_vocabulary_steps.py``
compares them with tf.Transform's implementations on the same data).
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import uuid
from collections.abc import Iterator
from typing import Union

import apache_beam as beam
import numpy as np
from apache_beam.coders import coders
from apache_beam.io.filesystem import CompressionTypes
from apache_beam.io.filesystems import FileSystems
from apache_beam.transforms.window import GlobalWindows
from apache_beam.typehints import KV
from tensorflow_transform import analyzer_nodes
from tensorflow_transform.beam import analyzer_impls
from tensorflow_transform.beam import common as tft_common

# tf.Transform's vocabulary file format written here (the other, tfrecord_gzip, keeps
# its own implementation).
TEXT = "text"
_LINE_CODER = coders.ToBytesCoder()  # WriteToText's default coder
# A vocabulary's (count, token) pairs, as tf.Transform types them.
_COUNTS = KV[analyzer_impls._VocabIndicatorType, analyzer_impls._VocabTokenType]  # noqa: SLF001


def _fingerprint(count_and_token) -> bytes:
    """The order of a ``fingerprint_shuffle`` vocabulary, tf.Transform's."""
    return hashlib.sha1(count_and_token[1]).digest()


class _OrderAndWriteFn(analyzer_impls._OrderElementsFn):  # noqa: SLF001 - tf.Transform's sort
    """tf.Transform's sort of a vocabulary, with the sorted lines written to
    ``path``; outputs ``path`` once the file is whole."""

    def __init__(self, store_frequency, sort_kwargs, input_dtype, path: str):
        super().__init__(store_frequency, sort_kwargs, input_dtype)
        self._path = path

    def process(self, unused_element, batched_counts_iter, reserved_tokens=None):
        lines = super().process(unused_element, batched_counts_iter, reserved_tokens)
        temporary = f"{self._path}.tmp-{uuid.uuid4().hex}"
        # WriteToText infers compression from the file's name; the temporary name
        # hides it, so it is inferred here from the name the file ends up with.
        compression = CompressionTypes.detect_compression_type(self._path)
        with FileSystems.create(temporary, compression_type=compression) as f:
            for line in lines:
                f.write(_LINE_CODER.encode(line))
                f.write(b"\n")
        FileSystems.rename([temporary], [self._path])
        yield np.array(self._path)


@beam.typehints.with_input_types(Union[list[np.ndarray], _COUNTS])  # noqa: UP007 - a Beam hint
@beam.typehints.with_output_types(np.ndarray)
class _OrderAndWrite(beam.PTransform):
    """``VocabularyOrderAndWrite`` for text files: sort and write in one step."""

    def __init__(self, operation, extra_args):
        super().__init__()
        self._operation = operation
        self._path = os.path.join(extra_args.base_temp_dir, operation.vocab_filename)

    def expand(self, inputs):
        counts, *reserved = inputs
        operation = self._operation
        if operation.fingerprint_shuffle:
            sort_kwargs = {"key": _fingerprint}
        else:
            sort_kwargs = {"reverse": True}  # largest first, as Top.Of gives them
        batched = counts | "BatchAndPreSort" >> analyzer_impls._BatchAndPreSort(  # noqa: SLF001
            sort_kwargs=sort_kwargs
        )
        side_inputs = {"batched_counts_iter": beam.pvalue.AsIter(batched)}
        if reserved:
            side_inputs["reserved_tokens"] = beam.pvalue.AsSingleton(reserved[0])
        written = (
            counts.pipeline
            | "Prepare" >> beam.Impulse()
            | "OrderAndWrite"
            >> beam.ParDo(
                _OrderAndWriteFn(
                    operation.store_frequency, sort_kwargs, operation.input_dtype, self._path
                ),
                **side_inputs,
            )
        )
        return (written,)


class _CountInBundle(beam.DoFn):
    """One partial count per bundle: how many elements it saw."""

    def start_bundle(self):
        self._count = 0

    def process(self, unused_element):
        self._count += 1

    def finish_bundle(self):
        yield GlobalWindows.windowed_value(self._count)


def _total(unused_element, partial_counts) -> np.int64:
    # At least one: an empty vocabulary is written with a dummy token.
    return np.int64(max(sum(partial_counts), 1))


@beam.typehints.with_input_types(_COUNTS)
@beam.typehints.with_output_types(np.int64)
class _Count(beam.PTransform):
    """``VocabularyCount``: the number of tokens (at least 1)."""

    def __init__(self, operation, extra_args):
        super().__init__()

    def expand(self, inputs):
        (counts,) = inputs
        partial = counts | "CountInBundle" >> beam.ParDo(_CountInBundle())
        return (
            counts.pipeline
            | "Once" >> beam.Impulse()
            | "Total" >> beam.Map(_total, beam.pvalue.AsIter(partial))
        )


def _order_and_write(operation, extra_args) -> beam.PTransform:
    """:class:`_OrderAndWrite` for a text vocabulary, tf.Transform's own otherwise."""
    if operation.file_format == TEXT:
        return _OrderAndWrite(operation, extra_args)
    return analyzer_impls._VocabularyOrderAndWriteImpl(operation, extra_args)  # noqa: SLF001


# tf.Transform calls the implementation registered for a node with the node and its
# extra arguments, and applies the PTransform it gets.
_LEAN = {
    analyzer_nodes.VocabularyOrderAndWrite: _order_and_write,
    analyzer_nodes.VocabularyCount: _Count,
}


@contextlib.contextmanager
def lean_vocabulary_steps() -> Iterator[None]:
    """Within it, tf.Transform builds its vocabularies' writes and counts with the
    implementations of this module (tf.Transform's own again after it)."""
    registry = tft_common._PTRANSFORM_BY_OPERATION_DEF_SUBCLASS  # noqa: SLF001
    general = tft_common._PtransformWrapper._GENERAL_ENVIRONMENT_TAG  # noqa: SLF001
    entries = {node: registry[node]._ptransform_by_tag for node in _LEAN}  # noqa: SLF001
    saved = {node: dict(by_tag) for node, by_tag in entries.items()}
    for node, by_tag in entries.items():
        by_tag.clear()
        by_tag[general] = _LEAN[node]
    try:
        yield
    finally:
        for node, by_tag in entries.items():
            by_tag.clear()
            by_tag.update(saved[node])
