"""Reading CSV into Arrow RecordBatches typed by the raw feature spec, with rejects.

tfx_bsl's CSV decoder fails the whole job on one bad row, so rows are decoded here:
each line is checked against the raw feature spec (column count, required values,
numbers that parse) and a bad line goes to the rejects output with its reason. Good
rows become RecordBatches in the layout tfxio's CsvTFXIO produces (``large_list``
columns), so tf.Transform takes its fast RecordBatch path.
"""

from __future__ import annotations

import csv
import math
from collections.abc import Iterable, Mapping

import apache_beam as beam
import numpy as np
import pyarrow as pa
import tensorflow as tf
from pydantic import BaseModel, ConfigDict, Field, model_validator

from transform.rejects import SplitCounters, reject_record

REJECTS_TAG = "rejects"

ARROW_TYPES = {
    tf.float32: pa.large_list(pa.float32()),
    tf.int64: pa.large_list(pa.int64()),
    tf.string: pa.large_list(pa.large_binary()),
}


class CsvFormat(BaseModel):
    """How CSV files are laid out (the config's ``data.csv``)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    header: bool = True
    column_names: list[str] | None = None
    delimiter: str = Field(default=",", min_length=1, max_length=1)
    na_values: list[str] = Field(default_factory=lambda: ["", "NA", "?"])

    @model_validator(mode="after")
    def _names_known(self) -> CsvFormat:
        if not self.header and not self.column_names:
            raise ValueError("csv.column_names is required when csv.header is false")
        return self


def arrow_schema(raw_feature_spec: Mapping) -> pa.Schema:
    """The Arrow schema of the RecordBatches decoded for ``raw_feature_spec``."""
    return pa.schema([(name, ARROW_TYPES[spec.dtype]) for name, spec in raw_feature_spec.items()])


def read_header(path: str, delimiter: str) -> list[str]:
    """Column names from the first line of a CSV file."""
    with tf.io.gfile.GFile(path) as f:
        line = f.readline()
    return next(csv.reader([line.rstrip("\r\n")], delimiter=delimiter))


def _parse_float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise ValueError
    return value


_PARSERS = {tf.float32: _parse_float, tf.int64: int, tf.string: lambda text: text.encode("utf-8")}


class CsvRowDecoder:
    """One CSV line -> the raw feature values in spec order (``None`` = missing).

    The Beam job decodes with it, and so do the demo and the tests when they turn CSV
    rows into serving requests, so both read a line the same way.
    """

    def __init__(self, raw_feature_spec: Mapping, column_names: list[str], fmt: CsvFormat):
        self.feature_names = list(raw_feature_spec)
        self._format = fmt
        self._num_columns = len(column_names)
        self._na = frozenset(fmt.na_values)
        index = {name: i for i, name in enumerate(column_names)}
        self.columns = [
            (
                name,
                index[name],
                _PARSERS[spec.dtype],
                isinstance(spec, tf.io.VarLenFeature),
                spec.dtype,
            )
            for name, spec in raw_feature_spec.items()
        ]

    def decode(self, line: str) -> list:
        """The row's values; ``ValueError`` says why the line cannot be used."""
        try:
            fields = next(csv.reader([line], delimiter=self._format.delimiter, strict=True))
        except (csv.Error, StopIteration) as err:
            raise ValueError(f"not a valid CSV line: {err}") from None
        if len(fields) != self._num_columns:
            raise ValueError(f"expected {self._num_columns} columns, got {len(fields)}")
        values = []
        for name, i, parse, nullable, dtype in self.columns:
            text = fields[i]
            if text in self._na:
                if not nullable:
                    raise ValueError(f'missing value for required feature "{name}"')
                values.append(None)
                continue
            try:
                values.append(parse(text))
            except ValueError:
                expected = "a finite float" if dtype == tf.float32 else "an int"
                raise ValueError(f'feature "{name}": expected {expected}, got {text!r}') from None
        return values

    def decode_dict(self, line: str) -> dict:
        """The row as ``{feature: value}``, strings as ``str``, missing values left out."""
        return {
            name: value.decode("utf-8") if isinstance(value, bytes) else value
            for name, value in zip(self.feature_names, self.decode(line))
            if value is not None
        }


class _DecodeCsvBatch(beam.DoFn):
    """Lines -> one RecordBatch of the good rows; each bad line -> a reject."""

    def __init__(self, raw_feature_spec: Mapping, column_names: list[str], fmt: CsvFormat, split):
        self._spec = dict(raw_feature_spec)
        self._column_names = list(column_names)
        self._format = fmt
        self._split = split

    def setup(self):
        self._counters = SplitCounters(self._split)
        self._schema = arrow_schema(self._spec)
        self._decoder = CsvRowDecoder(self._spec, self._column_names, self._format)

    def process(self, batch: list[tuple[str, str]]) -> Iterable:
        rows = []
        for source, line in batch:
            if not line.strip():  # a blank line holds no row
                continue
            self._counters.read.inc()
            try:
                rows.append(self._decoder.decode(line))
            except ValueError as err:
                self._counters.rejected.inc()
                yield beam.pvalue.TaggedOutput(
                    REJECTS_TAG, reject_record(self._split, source, line, str(err))
                )
        if rows:
            yield self._to_record_batch(rows)

    def _to_record_batch(self, rows: list[list]) -> pa.RecordBatch:
        arrays = []
        for j, (_, _, _, nullable, _) in enumerate(self._decoder.columns):
            column = [row[j] for row in rows]
            if nullable:
                present = np.fromiter(
                    (v is not None for v in column), dtype=np.int64, count=len(column)
                )
                column = [v for v in column if v is not None]
            else:
                present = np.ones(len(column), dtype=np.int64)
            offsets = np.zeros(len(rows) + 1, dtype=np.int64)
            np.cumsum(present, out=offsets[1:])
            list_type = self._schema.field(j).type
            arrays.append(
                pa.LargeListArray.from_arrays(
                    pa.array(offsets), pa.array(column, type=list_type.value_type)
                )
            )
        return pa.RecordBatch.from_arrays(arrays, schema=self._schema)


class ReadCsv(beam.PTransform):
    """CSV files -> RecordBatches of the raw features (main) and rejects (``rejects``)."""

    def __init__(
        self,
        file_pattern: str,
        raw_feature_spec: Mapping,
        column_names: list[str],
        fmt: CsvFormat,
        split: str,
    ):
        super().__init__()
        self._pattern = file_pattern
        self._spec = raw_feature_spec
        self._column_names = column_names
        self._format = fmt
        self._split = split

    def expand(self, pipeline):
        return (
            pipeline
            | "ReadLines"
            >> beam.io.ReadFromTextWithFilename(
                self._pattern, skip_header_lines=1 if self._format.header else 0
            )
            | "Batch" >> beam.BatchElements(min_batch_size=256, max_batch_size=4096)
            | "Decode"
            >> beam.ParDo(
                _DecodeCsvBatch(self._spec, self._column_names, self._format, self._split)
            ).with_outputs(REJECTS_TAG, main="record_batches")
        )
