"""What the shipped examples' data steps share: finding a data file inside an installed
package, and a deterministic train/eval split into two CSV files.

A row goes to eval when the CRC32 of its key is 0 or 1 modulo 10 (about 20 %): every
run, on every machine, sees the same split.
"""

import contextlib
import csv
import importlib.metadata
import os
import zlib
from collections.abc import Iterator, Sequence

SPLITS = ("train", "eval")


def package_file(distribution: str, path: str) -> str:
    """The path of a file shipped inside an installed package (without importing it)."""
    return str(importlib.metadata.distribution(distribution).locate_file(path))


def split_of(key: str) -> str:
    """``eval`` for about 20 % of keys, ``train`` for the rest."""
    return "eval" if zlib.crc32(key.encode()) % 10 < 2 else "train"


@contextlib.contextmanager
def csv_splits(
    out_dir: str, header: Sequence[str], lineterminator: str = "\r\n"
) -> Iterator[dict]:
    """``{"train": writer, "eval": writer}``: csv writers of ``out_dir/<split>.csv``,
    each with ``header`` written."""
    os.makedirs(out_dir, exist_ok=True)
    with contextlib.ExitStack() as stack:
        writers = {}
        for name in SPLITS:
            f = stack.enter_context(open(os.path.join(out_dir, f"{name}.csv"), "w", newline=""))
            writers[name] = csv.writer(f, lineterminator=lineterminator)
            writers[name].writerow(header)
        yield writers
