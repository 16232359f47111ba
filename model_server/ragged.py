"""Per-token outputs answered per example: each row cut at its own token count.

A SavedModel signature cannot output a ragged tensor, so a tagging head exports its
per-token outputs padded beside ``token_count`` (:mod:`tfbake.serving_input.signatures`).
The server's JSON writer and the client cut each example's row there, so a sentence
of n tokens gets n tags; a padded answer (gRPC, or TF Serving's own REST) is cut
the same way by the client.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

from tfbake.serving_input.signatures import PER_TOKEN_OUTPUTS, TOKEN_COUNT


def token_counts(outputs: Mapping[str, object]) -> dict[str, np.ndarray]:
    """Per-token output name -> each example's token count, for the per-token outputs
    (``tags``, ``<head>/tags``...) answered beside their (head's) ``token_count``."""
    cuts = {}
    for name in outputs:
        prefix, _, key = name.rpartition("/")
        count = f"{prefix}/{TOKEN_COUNT}" if prefix else TOKEN_COUNT
        if key in PER_TOKEN_OUTPUTS and count in outputs:
            cuts[name] = np.asarray(outputs[count]).reshape(-1)
    return cuts


def cut_rows(array: np.ndarray, counts: np.ndarray) -> list[np.ndarray]:
    """Row i of a padded [N, L, ...] array, up to ``counts[i]``."""
    if len(counts) != len(array):
        raise ValueError(f"{len(array)} rows but {len(counts)} token counts")
    return [array[i, : int(c)] for i, c in enumerate(counts)]


def as_rows(rows: list[np.ndarray]) -> np.ndarray:
    """Rows of different lengths as a [N] object array of arrays (concatenable)."""
    out = np.empty(len(rows), dtype=object)
    out[:] = rows
    return out
