"""Writes the penguins example's train/eval CSVs from the palmerpenguins package (CC0).

The split is deterministic: a row goes to eval when the CRC32 of its line is
0 or 1 modulo 10 (about 20 %), so every run, on every machine, sees the same rows.
"""

import argparse
import importlib.metadata
import os
import zlib


def penguins_csv() -> str:
    """The path of the CSV shipped inside the palmerpenguins package."""
    return str(
        importlib.metadata.distribution("palmerpenguins").locate_file(
            "palmerpenguins/data/penguins.csv"
        )
    )


def split(source: str, out_dir: str) -> dict:
    """Writes ``train.csv`` and ``eval.csv`` (each with the header) and returns row counts."""
    os.makedirs(out_dir, exist_ok=True)
    with open(source) as f:
        header, *rows = f.read().splitlines()
    counts = {"train": 0, "eval": 0}
    files = {name: open(os.path.join(out_dir, f"{name}.csv"), "w") for name in counts}
    try:
        for f in files.values():
            f.write(header + "\n")
        for row in rows:
            name = "eval" if zlib.crc32(row.encode()) % 10 < 2 else "train"
            files[name].write(row + "\n")
            counts[name] += 1
    finally:
        for f in files.values():
            f.close()
    return counts


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--out", default="artifacts/penguins/data")
    args = parser.parse_args()
    print(f"penguins split into {args.out}: {split(penguins_csv(), args.out)}")
