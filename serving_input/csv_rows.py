"""CSV rows to raw feature values, read the way the Beam job reads training data.

Beam-free, so that every reader outside the Beam job (the warm-up samples, ``tfbake
check``, the demo, the model-server client) decodes a row as the job does: the same
columns, missing values (``na_values``, compared after stripping), spaces after the
delimiter (``skipinitialspace``), list cells and number parsing. The Beam job's block
decoder (:class:`transform.csv_source.CsvRowDecoder`) extends :class:`CsvLineDecoder`.
"""

from __future__ import annotations

import csv
from collections.abc import Iterable, Mapping, Sequence

import tensorflow as tf
from pydantic import BaseModel, ConfigDict, Field, model_validator

from serving_input.text_values import (
    LIST_DELIMITER,
    TEXT_PARSERS,
    bad_text_message,
    parse_list_text,
)


class CsvFormat(BaseModel):
    """How CSV files are laid out (the config's ``data.csv``)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    header: bool = True
    column_names: list[str] | None = None
    delimiter: str = Field(default=",", min_length=1, max_length=1)
    # Spaces right after a delimiter are not part of the value (", " separators), as
    # Python csv's skipinitialspace.
    skipinitialspace: bool = False
    # A cell is missing when its text, stripped of surrounding whitespace, is one of these.
    na_values: list[str] = Field(default_factory=lambda: ["", "NA", "?"])
    # Between the values of a list feature's cell ("a|b"); an NA cell is an empty list.
    list_delimiter: str = Field(default=LIST_DELIMITER, min_length=1)

    @model_validator(mode="after")
    def _names_known(self) -> CsvFormat:
        if not self.header and not self.column_names:
            raise ValueError("csv.column_names is required when csv.header is false")
        if self.list_delimiter == self.delimiter:
            raise ValueError("csv.list_delimiter must differ from csv.delimiter")
        return self


def read_header(path: str, delimiter: str = ",", *, skipinitialspace: bool = False) -> list[str]:
    """Column names from the first line of a CSV file."""
    with tf.io.gfile.GFile(path) as f:
        line = f.readline()
    fmt = CsvFormat(delimiter=delimiter, skipinitialspace=skipinitialspace)
    return next(csv_reader([line.rstrip("\r\n")], fmt))


def csv_reader(lines: Iterable[str], fmt: CsvFormat):
    """``csv.reader`` over ``lines`` with the format's delimiter and
    ``skipinitialspace`` (strict: a malformed line is an error, not a guess)."""
    return csv.reader(
        lines, delimiter=fmt.delimiter, skipinitialspace=fmt.skipinitialspace, strict=True
    )


def column_names(path: str, fmt: CsvFormat) -> list[str]:
    """The columns of a CSV file: ``fmt.column_names``, or its header line."""
    if fmt.column_names:
        return list(fmt.column_names)
    return read_header(path, fmt.delimiter, skipinitialspace=fmt.skipinitialspace)


class CsvLineDecoder:
    """One CSV line -> the raw feature values in spec order (``None`` = missing).

    The Beam job decodes with it, and so do the demo and the tests when they turn CSV
    rows into serving requests, so both read a line the same way. A feature named in
    ``list_features`` is a list (its cell: values joined by ``fmt.list_delimiter``).
    """

    def __init__(
        self,
        raw_feature_spec: Mapping,
        column_names: list[str],
        fmt: CsvFormat,
        list_features: Iterable[str] = (),
    ):
        self.feature_names = list(raw_feature_spec)
        self._lists = frozenset(list_features)
        self._format = fmt
        self._num_columns = len(column_names)
        self._na = frozenset(fmt.na_values)
        index = {name: i for i, name in enumerate(column_names)}
        self.columns = [
            (
                name,
                index[name],
                TEXT_PARSERS[spec.dtype],
                isinstance(spec, tf.io.VarLenFeature),
                spec.dtype,
            )
            for name, spec in raw_feature_spec.items()
        ]

    def decode(self, line: str) -> list:
        """The row's values; ``ValueError`` says why the line cannot be used."""
        try:
            fields = next(csv_reader([line], self._format))
        except (csv.Error, StopIteration) as err:
            raise ValueError(f"not a valid CSV line: {err}") from None
        return self.decode_fields(fields)

    def decode_fields(self, fields: Sequence[str]) -> list:
        """A row's values from its fields (as ``csv.reader`` split them)."""
        if len(fields) != self._num_columns:
            raise ValueError(f"expected {self._num_columns} columns, got {len(fields)}")
        values = []
        for name, i, parse, nullable, dtype in self.columns:
            text = fields[i]
            na = text.strip() in self._na
            if name in self._lists:
                values.append(
                    [] if na else parse_list_text(name, text, dtype, self._format.list_delimiter)
                )
                continue
            if na:
                if not nullable:
                    raise ValueError(f'missing value for required feature "{name}"')
                values.append(None)
                continue
            try:
                values.append(parse(text))
            except ValueError:
                raise ValueError(bad_text_message(name, text, dtype)) from None
        return values

    def decode_dict(self, line: str) -> dict:
        """The row as ``{feature: value}`` (a list feature: a list), strings as ``str``,
        missing values left out."""
        return self.as_dict(self.decode(line))

    def as_dict(self, values: list) -> dict:
        """Decoded values (:meth:`decode`) as ``{feature: value}``, strings as ``str``,
        missing values left out."""

        def text(value):
            return value.decode("utf-8") if isinstance(value, bytes) else value

        return {
            name: [text(v) for v in value] if isinstance(value, list) else text(value)
            for name, value in zip(self.feature_names, values)
            if value is not None
        }
