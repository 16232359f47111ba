"""Reading TFRecord files of ``tf.Example`` into Arrow RecordBatches, with rejects.

Each record is checked against the raw feature spec before tfx_bsl's C++ decoder
turns the good ones into RecordBatches, so one malformed record becomes a reject
with its reason instead of failing the job. Image features are decoded too, by the
decoder the ``preprocessing_fn`` uses, so a broken image is a reject, not a crash.

A file of ``tf.SequenceExample`` (given its feature_lists) is read as the tf.Examples its
records stand for (:func:`tfbake.serving_input.sequence_example.example_of`): context
features as they are, each feature_list as one multi-valued feature; from there on the
path is the tf.Example one. (tfx_bsl's SequenceExample decoder would give the
feature_lists as a nested column that tf.Transform's input would have to be rebuilt for.)
"""

from __future__ import annotations

import base64
from collections.abc import Collection, Iterable, Mapping

import apache_beam as beam
import pyarrow as pa
import tensorflow as tf
from tensorflow_transform.tf_metadata import schema_utils
from tfx_bsl.coders import example_coder

from tfbake.serving_input.sequence_example import example_of_record
from tfbake.transform.csv_source import REJECTS_TAG
from tfbake.transform.ops.images import image_errors
from tfbake.transform.rejects import HOLDOUT_TAGS, Holdout, SplitOutput

_KINDS = {tf.float32: "float_list", tf.int64: "int64_list", tf.string: "bytes_list"}


def check_example(example: tf.train.Example, raw_feature_spec: Mapping) -> None:
    """Raises ValueError naming the first feature the example does not carry as declared."""
    features = example.features.feature
    for name, spec in raw_feature_spec.items():
        feature = features.get(name)
        kind = feature.WhichOneof("kind") if feature is not None else None
        count = len(getattr(feature, kind).value) if kind else 0
        if count == 0:
            if isinstance(spec, tf.io.FixedLenFeature) and spec.default_value is None:
                raise ValueError(f'missing value for required feature "{name}"')
            continue
        if kind != _KINDS[spec.dtype]:
            raise ValueError(f'feature "{name}": expected {_KINDS[spec.dtype]}, got {kind}')
        if isinstance(spec, tf.io.FixedLenFeature):
            expected = int(tf.TensorShape(spec.shape).num_elements())
            if count != expected:
                raise ValueError(f'feature "{name}": expected {expected} value(s), got {count}')


class _DecodeExamples(beam.DoFn):
    def __init__(self, raw_feature_spec: Mapping, split: str, image_features: Mapping[str, int],
                 holdout: Holdout | None = None, feature_lists: Collection[str] = ()):
        self._spec = dict(raw_feature_spec)
        self._split = split
        self._images = dict(image_features)
        self._holdout = holdout
        self._feature_lists = frozenset(feature_lists)

    def setup(self):
        self._output = SplitOutput(self._split, REJECTS_TAG)
        self._held_out = self._holdout.outputs() if self._holdout else None
        schema = schema_utils.schema_from_feature_spec(self._spec)
        self._decoder = example_coder.ExamplesToRecordBatchDecoder(schema.SerializeToString())

    def process(self, batch: list[tuple[str, bytes]]) -> Iterable:
        if self._holdout is None:
            yield from self._decode(batch, self._output)
            return
        held = [self._holdout.takes(record) for _, record in batch]
        yield from self._decode([r for r, h in zip(batch, held) if not h], self._output)
        yield from self._decode([r for r, h in zip(batch, held) if h], self._held_out)

    def _decode(self, batch: list[tuple[str, bytes]], output: SplitOutput) -> Iterable:
        if not batch:
            return
        output.counters.read.inc(len(batch))
        reasons, examples = [], []
        for _, record in batch:
            try:
                example = example_of_record(record, self._spec, self._feature_lists)
                check_example(example, self._spec)
                reasons.append(None)
                examples.append(example)
            except ValueError as err:  # not a record of the format, or not as declared
                reasons.append(str(err))
                examples.append(None)
        # Image features are decoded (by the decoder the preprocessing_fn uses), a batch at
        # a time; check_example has made each of them one value.
        for name, channels in self._images.items():
            rows = [i for i, example in enumerate(examples) if reasons[i] is None]
            images = [examples[i].features.feature[name].bytes_list.value[0] for i in rows]
            for i, error in zip(rows, image_errors(images, name, channels)):
                reasons[i] = error
        good = []
        for (source, record), reason, example in zip(batch, reasons, examples):
            if reason is None:
                # A SequenceExample is decoded as the tf.Example it stands for.
                good.append(example.SerializeToString() if self._feature_lists else record)
                continue
            yield output.reject(source, base64.b64encode(record).decode(), reason)
        if good:
            batch_out = self._decoder.DecodeBatch(good)
            # Arrange the columns in spec order, as the CSV source does.
            yield output.batch(pa.RecordBatch.from_arrays(
                [batch_out.column(batch_out.schema.get_field_index(n)) for n in self._spec],
                names=list(self._spec),
            ))


class ReadExamples(beam.PTransform):
    """TFRecord files of tf.Example -> RecordBatches (main) and rejects (``rejects``).

    ``image_features`` (name -> channels): features holding encoded images, each
    decoded to check it. With a ``holdout``, the records it takes are its split's
    RecordBatches and rejects (outputs ``holdout`` and ``holdout_rejects``). With
    ``feature_lists``, the records are ``tf.SequenceExample``s carrying those features
    as feature_lists (one value per step) and the others as context features.
    """

    def __init__(
        self,
        file_pattern: str,
        raw_feature_spec: Mapping,
        split: str,
        image_features: Mapping[str, int] | None = None,
        holdout: Holdout | None = None,
        feature_lists: Collection[str] = (),
    ):
        super().__init__()
        self._pattern = file_pattern
        self._spec = raw_feature_spec
        self._split = split
        self._images = dict(image_features or {})
        self._holdout = holdout
        self._feature_lists = list(feature_lists)

    def expand(self, pipeline):
        return (
            pipeline
            | "ReadRecords" >> beam.io.ReadFromTFRecord(self._pattern)
            | "WithSource" >> beam.Map(lambda record, source: (source, record), self._pattern)
            | "Batch" >> beam.BatchElements(min_batch_size=256, max_batch_size=4096)
            | "Decode"
            >> beam.ParDo(
                _DecodeExamples(self._spec, self._split, self._images, self._holdout,
                                self._feature_lists)
            ).with_outputs(REJECTS_TAG, *HOLDOUT_TAGS, main="record_batches")
        )
