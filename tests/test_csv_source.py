"""The CSV source against Python's own csv module: many small byte ranges, CRLF line
ends, quoted delimiters, quoted line breaks (records over several lines, across range
boundaries), blank lines, a last line without newline, gzip, bad UTF-8."""

from __future__ import annotations

import csv
import gzip
import io
import json
import random
import sys

import apache_beam as beam
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pytest
import tensorflow as tf
from apache_beam.runners.portability.fn_api_runner import FnApiRunner
from apache_beam.testing.util import assert_that, equal_to

from tfbake.serving_input.csv_rows import CsvFormat
from tfbake.transform.csv_source import CsvRowDecoder, ReadCsv, arrow_schema

SPEC = {
    "name": tf.io.FixedLenFeature([], tf.string),
    "size": tf.io.VarLenFeature(tf.float32),
    "count": tf.io.FixedLenFeature([], tf.int64),
}
HEADER = ["count", "name", "size"]


def _text(rows: int = 300) -> str:
    rng = random.Random(11)
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\r\n")  # CRLF, quoting where needed
    writer.writerow(HEADER)
    for i in range(rows):
        name = rng.choice(
            ["plain", "with, comma", 'say "hi"', "ünïcode", "two\nlines", 'a "b"\n\n3,x,1.0\nc']
        )
        size = "" if i % 9 == 0 else f"{rng.uniform(0, 5):.3f}"
        writer.writerow([i, name, size])
        if i % 50 == 0:
            out.write("\r\n")  # a blank line holds no row
    return out.getvalue().rstrip("\r\n")  # the last line has no newline


def _expected(text: str) -> list[tuple]:
    rows = [r for r in csv.reader(io.StringIO(text, newline="")) if r][1:]
    return [(name, float(size) if size else None, int(count)) for count, name, size in rows]


def _rows(batch) -> list[tuple]:
    columns = batch.to_pydict()
    return [
        (n[0].decode(), round(s[0], 3) if s else None, c[0])
        for n, s, c in zip(columns["name"], columns["size"], columns["count"])
    ]


@pytest.mark.parametrize("compressed", [False, True])
def test_reader_agrees_with_pythons_csv_module(tmp_path, compressed):
    text = _text()
    expected = [(n, None if s is None else round(s, 3), c) for n, s, c in _expected(text)]
    path = tmp_path / ("data.csv.gz" if compressed else "data.csv")
    data = text.encode("utf-8")
    path.write_bytes(gzip.compress(data) if compressed else data)
    with beam.Pipeline(runner=FnApiRunner()) as pipeline:
        result = pipeline | ReadCsv(
            str(path),
            SPEC,
            HEADER,
            CsvFormat(na_values=[""]),
            "train",
            batch_size=7,
            range_bytes=256,
        )
        rows = result.record_batches | beam.FlatMap(_rows)
        assert_that(rows, equal_to(expected), label="Rows")
        assert_that(result.rejects, equal_to([]), label="NoRejects")
    assert len(expected) == 300


def test_a_line_that_is_not_utf8_is_a_reject(tmp_path):
    path = tmp_path / "data.csv"
    path.write_bytes(b"count,name,size\n1,ok,1.0\n2,\xff\xfe,2.0\n3,fine,\n")
    with beam.Pipeline(runner=FnApiRunner()) as pipeline:
        result = pipeline | ReadCsv(
            str(path), SPEC, HEADER, CsvFormat(na_values=[""]), "train", range_bytes=8
        )
        rows = result.record_batches | beam.FlatMap(_rows)
        reasons = result.rejects | beam.Map(lambda r: json.loads(r)["reason"])
        assert_that(rows, equal_to([("ok", 1.0, 1), ("fine", None, 3)]), label="Rows")
        assert_that(reasons, equal_to(["not valid UTF-8"]), label="Rejects")


def test_list_cells_are_split_at_the_list_delimiter():
    """A list feature's cell: values joined by "|"; an empty cell is an empty list; a bad
    item is a reject naming the feature."""
    spec = {"tags": tf.io.VarLenFeature(tf.string), "codes": tf.io.VarLenFeature(tf.int64)}
    decoder = CsvRowDecoder(spec, ["tags", "codes"], CsvFormat(), ["tags", "codes"])
    lines = ["red|big,1|2|3", ",", "solo,x|4", "a||b,5"]
    batch, rejects = decoder.decode_block(lines, arrow_schema(spec))
    assert batch.column(0).to_pylist() == [[b"red", b"big"], []]
    assert batch.column(1).to_pylist() == [[1, 2, 3], []]
    assert rejects == [
        ("solo,x|4", "feature \"codes\": expected an int, got 'x'"),
        ("a||b,5", "feature \"tags\": empty item in list 'a||b' (items are joined by '|')"),
    ]
    assert decoder.decode_dict("red|big,1") == {"tags": ["red", "big"], "codes": [1]}


def _messy_text(rows: int = 200) -> str:
    """", " separators, NA spellings with spaces, list cells, quoted line breaks, bad
    numbers, short lines and a line that is not UTF-8: what raw files hold."""
    rng = random.Random(5)
    lines = ["count, name, size, tags"]
    for i in range(rows):
        count = rng.choice([str(i)] * 8 + ["1.5", " ?"])
        name = rng.choice(["plain", '"with, comma"', '"two\nlines"', "NA", " ?", ""])
        size = rng.choice([f"{rng.uniform(0, 5):.3f}", "?", "abc", " NA"])
        tags = rng.choice(["a|b", "", "x", "a||b"])
        lines.append(rng.choice([f"{count}, {name}, {size}, {tags}"] * 20 + [f"{count}, x"]))
        if i % 40 == 0:
            lines.append("")  # a blank line holds no row
    return "\r\n".join(lines) + "\r\n"


MESSY_SPEC = {
    "count": tf.io.FixedLenFeature([], tf.int64),
    "name": tf.io.VarLenFeature(tf.string),
    "size": tf.io.VarLenFeature(tf.float32),
    "tags": tf.io.VarLenFeature(tf.string),
}


def _row(count, name, size, tags) -> tuple:
    return (count, name or None, None if size is None else round(size, 3), tuple(tags))


def test_raw_row_reader_reads_a_file_as_the_beam_job_does(tmp_path):
    """The reader every non-Beam caller uses (check, warm-up examples, predict_file)
    and the Beam job's CSV source, on the same messy file: the same rows, the same
    rejects with the same reasons."""
    from tfbake.serving_input.raw_rows import read_raw_rows

    path = tmp_path / "messy.csv"
    path.write_bytes(_messy_text().encode() + b"7, \xff, 1.0, x\r\n")
    fmt = CsvFormat(skipinitialspace=True)
    header = ["count", "name", "size", "tags"]
    with beam.Pipeline(runner=FnApiRunner()) as pipeline:
        result = pipeline | ReadCsv(str(path), MESSY_SPEC, header, fmt, "train", batch_size=9,
                                    range_bytes=512, list_features=["tags"])
        beam_rows = result.record_batches | beam.FlatMap(lambda b: [
            _row(c[0], n[0].decode() if n else None, s[0] if s else None,
                 [t.decode() for t in tags])
            for c, n, s, tags in zip(*b.to_pydict().values())])
        beam_reasons = result.rejects | beam.Map(lambda r: json.loads(r)["reason"])
        bad: list[str] = []
        rows = [
            _row(r["count"], r.get("name"), r.get("size"), r["tags"])
            for r, _ in read_raw_rows(str(path), MESSY_SPEC, csv_format=fmt,
                                      list_features=["tags"],
                                      bad_rows=lambda source, reason: bad.append(reason))
        ]
        assert_that(beam_rows, equal_to(rows), label="SameRows")
        assert_that(beam_reasons, equal_to(bad), label="SameRejects")
    assert len(rows) > 50 and len(bad) > 20 and "not valid UTF-8" in bad
    assert any("\n" in (r[1] or "") for r in rows)  # a quoted line break kept in its row


@pytest.mark.parametrize("header", [True, False])
def test_a_byte_order_mark_is_not_part_of_the_first_value(tmp_path, header):
    """A spreadsheet's "CSV UTF-8" file starts with a byte order mark: the Beam job and
    the raw-row reader read its first column as Python's utf-8-sig codec does, in the
    header's name or, without a header, in the first row's value."""
    from tfbake.serving_input.csv_rows import column_names
    from tfbake.serving_input.raw_rows import read_raw_rows

    text = ("name,size,count\r\n" if header else "") + "EWR,1.5,1\r\nJFK,,2\r\n"
    path = tmp_path / "excel.csv"
    path.write_bytes(text.encode("utf-8-sig"))
    with open(path, encoding="utf-8-sig", newline="") as f:
        expected = [(n, float(s) if s else None, int(c)) for n, s, c in list(csv.reader(f))[
            1 if header else 0:]]
    fmt = CsvFormat(na_values=[""], header=header,
                    column_names=None if header else ["name", "size", "count"])
    columns = column_names(str(path), fmt)
    assert columns == ["name", "size", "count"]
    with beam.Pipeline(runner=FnApiRunner()) as pipeline:
        result = pipeline | ReadCsv(str(path), SPEC, columns, fmt, "train")
        rows = result.record_batches | beam.FlatMap(_rows)
        assert_that(rows, equal_to(expected), label="Rows")
        assert_that(result.rejects, equal_to([]), label="NoRejects")
    raw = [(r["name"], r.get("size"), r["count"])
           for r, _ in read_raw_rows(str(path), SPEC, csv_format=fmt)]
    assert raw == expected


def test_decimal_commas_are_read_as_the_files_locale_writes_them(tmp_path):
    """``csv: {delimiter: ";", decimal: ","}`` (a file written with a European locale):
    the Beam job and the raw-row reader read "1,5" as 1.5, in plain and list cells, and
    a cell that is no number is a reject quoting it as written."""
    from tfbake.serving_input.raw_rows import read_raw_rows

    spec = {"name": tf.io.FixedLenFeature([], tf.string),
            "size": tf.io.VarLenFeature(tf.float32),
            "sizes": tf.io.VarLenFeature(tf.float32),
            "count": tf.io.FixedLenFeature([], tf.int64)}
    path = tmp_path / "eu.csv"
    path.write_text("name;size;sizes;count\nEWR;1,5;0,25|3;1\nJFK;;-2,0;2\nLGA;1.234,5;1;3\n")
    fmt = CsvFormat(delimiter=";", decimal=",", na_values=[""])
    expected = [("EWR", 1.5, (0.25, 3.0), 1), ("JFK", None, (-2.0,), 2)]
    reason = "feature \"size\": expected a finite float, got '1.234,5'"

    def beam_rows(batch):
        columns = batch.to_pydict()
        return [(n[0].decode(), s[0] if s else None, tuple(round(x, 3) for x in ss), c[0])
                for n, s, ss, c in zip(columns["name"], columns["size"], columns["sizes"],
                                       columns["count"])]

    with beam.Pipeline(runner=FnApiRunner()) as pipeline:
        result = pipeline | ReadCsv(str(path), spec, ["name", "size", "sizes", "count"], fmt,
                                    "train", list_features=["sizes"])
        assert_that(result.record_batches | beam.FlatMap(beam_rows), equal_to(expected),
                    label="Rows")
        assert_that(result.rejects | beam.Map(lambda r: json.loads(r)["reason"]),
                    equal_to([reason]), label="Rejects")
    bad: list[str] = []
    rows = [(r["name"], r.get("size"), tuple(r["sizes"]), r["count"])
            for r, _ in read_raw_rows(str(path), spec, csv_format=fmt, list_features=["sizes"],
                                      bad_rows=lambda source, why: bad.append(why))]
    assert rows == expected and bad == [reason]
    with pytest.raises(ValueError, match="csv.decimal must differ"):
        CsvFormat(decimal=",")


# Cells that Python's float() / int() and Arrow's casts could read differently: spaces
# of every kind (str.strip's, some no whitespace to Unicode), underscores, signs, hex,
# other digits, overflow, non-finite values, long mantissas, NA spellings.
_TRICKY_NUMBERS = [
    "1.5", " 2.5", "2.5 ", "\t3", "\x1c4\x1c", "\xa05", "\u30006", "1_000.5", "+1.5", "-0",
    ".5", "5.", "1e5", "1E-5", "1.e3", "1e400", "-1e400", "inf", "nan", "NaN", "abc", "",
    " ", "0x10", "\u0661\u0662", "1.7976931348623157e308", "4.9e-324", "1e39",
    "0.1000000000000000055511151231257827", "123456789012345678901234567890", "1e", "e5",
    "1.2.3", "--1", "+-1", "NA", " NA ", "\tNA", "na", "7", "-7", "+7", "007", "1_0",
    "9223372036854775807", "9223372036854775808", "-9223372036854775808",
    "-9223372036854775809", "1.0",
]
_TRICKY_STRINGS = ["a", " b ", "NA", "", "\u00fc", "x y", "\x1cNA"]
_TRICKY_SPEC = {
    "f": tf.io.VarLenFeature(tf.float32),
    "g": tf.io.FixedLenFeature([], tf.float32),
    "n": tf.io.VarLenFeature(tf.int64),
    "m": tf.io.FixedLenFeature([], tf.int64),
    "s": tf.io.FixedLenFeature([], tf.string),
    "t": tf.io.VarLenFeature(tf.string),
}


def _tricky_rows(rng: random.Random, rows: int) -> tuple[list, list]:
    """Rows of cells: each tricky cell in each column of an otherwise good row (each
    to be decoded among good rows only, so no other cell sends its column to Python),
    and random rows."""
    def number(integer: bool) -> str:
        if rng.random() < 0.25:
            return rng.choice(_TRICKY_NUMBERS)
        if integer:
            return str(rng.choice([rng.randint(-99, 99), rng.randint(-(2**62), 2**62)]))
        value = rng.choice(
            [rng.uniform(-1e6, 1e6), rng.gauss(0, 1e-30), float(rng.randint(-99, 99))]
        )
        return rng.choice([repr(value), f"{value:.3f}", f"{value:.17g}", f"{value:e}"])

    good = ["1.5", "2.5", "3", "4", "a", "b"]
    one_tricky_cell = [
        good[:column] + [cell] + good[column + 1 :]
        for column in range(len(good))
        for cell in (_TRICKY_STRINGS if column >= 4 else _TRICKY_NUMBERS)
    ]
    random_rows = [
        [number(False), number(False), number(True), number(True),
         *rng.choices(_TRICKY_STRINGS, k=2)]
        for _ in range(rows)
    ]
    return [good, *one_tricky_cell], random_rows


def _line(cells: list[str], fmt: CsvFormat) -> str:
    if fmt.decimal != ".":
        cells = [c.replace(".", fmt.decimal) for c in cells]
    return fmt.delimiter.join(c for c in cells if fmt.delimiter not in c)


def _expected_cell(value, dtype):
    if dtype != tf.float32:
        return [value]
    with np.errstate(over="ignore"):  # a finite float64 beyond float32's range: inf
        return [float(np.float32(value))]


def _assert_block_decoded_as_lines(decoder, lines: list[str]) -> int:
    """decode_block(lines) against decode(line) per line; returns the good rows."""
    batch, rejects = decoder.decode_block(lines, arrow_schema(_TRICKY_SPEC))
    expected_rows, expected_rejects = [], []
    for line in lines:
        try:
            values = decoder.decode(line)
        except ValueError as err:
            expected_rejects.append((line, str(err)))
            continue
        expected_rows.append([
            [] if v is None else _expected_cell(v, spec.dtype)
            for v, spec in zip(values, _TRICKY_SPEC.values())
        ])
    assert rejects == expected_rejects
    got = batch.to_pydict()
    assert [list(row) for row in zip(*(got[n] for n in _TRICKY_SPEC))] == expected_rows
    return len(expected_rows)


@pytest.mark.parametrize(
    "fmt",
    [
        CsvFormat(),
        CsvFormat(na_values=["NA", ""], skipinitialspace=True),
        CsvFormat(delimiter=";", decimal=",", na_values=[]),
    ],
    ids=["default", "skipinitialspace", "decimal_comma"],
)
def test_block_decoder_reads_each_cell_as_the_line_decoder_does(fmt):
    """The Beam job decodes blocks of lines column by column (in Arrow); every row must
    come out as the line decoder, which parses each cell in Python, reads it: the same
    values, the same rejects with the same reasons."""
    decoder = CsvRowDecoder(_TRICKY_SPEC, list(_TRICKY_SPEC), fmt)
    (good, *one_tricky_cell), random_rows = _tricky_rows(random.Random(17), 1200)
    for cells in one_tricky_cell:
        _assert_block_decoded_as_lines(decoder, [_line(good, fmt), _line(cells, fmt)] * 2)
    for start in range(0, len(random_rows), 300):
        block = [_line(cells, fmt) for cells in random_rows[start : start + 300]]
        assert 60 < _assert_block_decoded_as_lines(decoder, block) < 250  # good and bad rows


def test_arrows_whitespace_is_what_pythons_strip_removes():
    """The block decoder strips cells with Arrow (before comparing with ``na_values``),
    the line decoder with ``str.strip``: the same characters, every one of Unicode."""
    chars = [chr(i) for i in range(sys.maxunicode + 1) if not 0xD800 <= i < 0xE000]
    cells = pa.array([c + "x" + c for c in chars], type=pa.large_string())
    stripped = pc.utf8_trim_whitespace(cells).to_pylist()
    assert stripped == [(c + "x" + c).strip() for c in chars]
