"""Writes the penguins example's train/eval CSVs from the palmerpenguins package (CC0).

The split is deterministic: a row goes to eval when the CRC32 of its line is
0 or 1 modulo 10 (about 20 %), so every run, on every machine, sees the same rows.
With ``--spans-by-year`` the training rows are written as one span per year
(``train-2007.csv`` ...), as a pipeline retrained on each new period receives them.
"""

import argparse
import csv
import os

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


def split_by_year(out_dir: str) -> dict:
    """Rewrites ``train.csv`` as ``train-<year>.csv`` files; returns row counts per year."""
    train = os.path.join(out_dir, "train.csv")
    with open(train, newline="") as f:
        header, *rows = list(csv.reader(f))
    years = sorted({row[header.index("year")] for row in rows})
    for year in years:
        with open(os.path.join(out_dir, f"train-{year}.csv"), "w", newline="") as f:
            writer = csv.writer(f, lineterminator="\n")
            writer.writerows([header, *(r for r in rows if r[header.index("year")] == year)])
    os.remove(train)
    return {year: sum(r[header.index("year")] == year for r in rows) for year in years}


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--out", default="artifacts/penguins/data")
    parser.add_argument("--spans-by-year", action="store_true", help="one train CSV per year")
    args = parser.parse_args()
    print(f"penguins split into {args.out}: {split(penguins_csv(), args.out)}")
    if args.spans_by_year:
        print(f"training spans by year: {split_by_year(args.out)}")
