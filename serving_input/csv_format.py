"""How CSV files are laid out: the config's ``data.csv`` section (no TensorFlow, so the
config validates before anything heavy loads)."""

from __future__ import annotations

from pydantic import Field, model_validator

from tfbake.serving_input.strict_model import StrictModel

# Between the values of a list feature's cell ("a|b"), unless data.csv says otherwise.
LIST_DELIMITER = "|"


class CsvFormat(StrictModel):
    """How CSV files are laid out (the config's ``data.csv``)."""

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
    # The decimal mark of float cells: "," for files written with a European locale
    # ("1,5"; their delimiter is then usually ";"). A "." is read as one too.
    decimal: str = Field(default=".", min_length=1, max_length=1)

    @model_validator(mode="after")
    def _names_known(self) -> CsvFormat:
        if not self.header and not self.column_names:
            raise ValueError("csv.column_names is required when csv.header is false")
        if self.list_delimiter == self.delimiter:
            raise ValueError("csv.list_delimiter must differ from csv.delimiter")
        if self.decimal in (self.delimiter, self.list_delimiter):
            raise ValueError("csv.decimal must differ from csv.delimiter and csv.list_delimiter")
        return self
