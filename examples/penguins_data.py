"""Writes the penguins example's train/eval CSVs from the palmerpenguins package (CC0).

The split is deterministic: a row goes to eval when the CRC32 of its line is
0 or 1 modulo 10 (about 20 %), so every run, on every machine, sees the same rows.
"""

import argparse
import csv

from data_split import csv_splits, package_file, split_of


def penguins_csv() -> str:
    """The path of the CSV shipped inside the palmerpenguins package."""
    return package_file("palmerpenguins", "palmerpenguins/data/penguins.csv")


def split(source: str, out_dir: str) -> dict:
    """Writes ``train.csv`` and ``eval.csv`` (each with the header) and returns row counts."""
    with open(source, newline="") as f:
        header, *rows = f.read().splitlines()
    counts = {"train": 0, "eval": 0}
    with csv_splits(out_dir, header.split(","), lineterminator="\n") as writers:
        for row in rows:
            name = split_of(row)
            writers[name].writerow(next(csv.reader([row])))
            counts[name] += 1
    return counts


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--out", default="artifacts/penguins/data")
    args = parser.parse_args()
    print(f"penguins split into {args.out}: {split(penguins_csv(), args.out)}")
