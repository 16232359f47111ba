"""Is in-graph text preprocessing slow on a serving box? The text model's serving
latency with tokenization in the graph vs the same trained model fed token ids.

A common worry moves tokenization to the client. One run builds the reviews text
model (``configs/reviews_text.yaml``, its data step, one epoch: the latency does not
depend on how well it learned) in a temporary folder, then measures in process, at
batch 1 and 128:

- ``raw_strings``: the export's ``predict_raw`` signature: raw snippets in; lowercase,
  split, vocabulary lookup and padding run in the graph, then the model and the head;
- ``token_ids`` (the baseline): the same trained tf_keras model and head saved as a
  SavedModel whose input is the token ids, fed the ids the export's
  ``transform_features`` computed beforehand (what a client-side tokenizer would send);
- ``tf_examples`` (for reference): the export's ``predict`` signature, serialized
  ``tf.Example``s in, as TF Serving's REST ``:predict`` with b64 feeds it.

Each figure is the median over rounds of the median call time of a round, the two
paths' rounds interleaved. Both paths must answer the same probabilities first.
Prints one JSON object; the target is ``raw_strings / token_ids <= 1.2`` at batch 128.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
sys.path.insert(0, REPO)
sys.path.insert(0, os.path.join(REPO, "benchmarks"))

import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402
from _shipped_example import shipped_raw_config  # noqa: E402

from tfbake import stages  # noqa: E402
from tfbake.config import config_from_dict  # noqa: E402

TARGET_RATIO = 1.2
BATCHES = (1, 128)


def build_text_model(work: str):
    """The reviews pipeline run for real in ``work`` (one epoch); returns config, model
    and export path."""
    raw = shipped_raw_config("reviews_text", "reviews_data", "corpus_path", work)
    raw["training"].update(epochs=1, early_stopping=None)
    config = config_from_dict(raw)
    stages.run_transform(config)
    model, _ = stages.run_training(config)
    return config, model, stages.run_export(config, model)


def save_token_ids_model(model, feature: str, ids_shape, path: str) -> None:
    """The trained tf_keras model and its head as a SavedModel taking the token ids."""

    class TokenIdsModel(tf.Module):
        def __init__(self):
            super().__init__()
            self.model = model.keras_model

        @tf.function(input_signature=[tf.TensorSpec([None, *ids_shape], tf.int64, name=feature)])
        def predict(self, ids):
            return model.head.predictions(self.model({feature: ids}, training=False))

    module = TokenIdsModel()
    tf.saved_model.save(module, path, signatures={"predict": module.predict})


def median_call_ms(fn, calls: int) -> float:
    samples = []
    for _ in range(calls):
        start = time.perf_counter()
        fn()
        samples.append(time.perf_counter() - start)
    return statistics.median(samples) * 1e3


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--calls", type=int, default=60, help="calls per round and path")
    args = parser.parse_args(argv)

    with tempfile.TemporaryDirectory() as work:
        config, model, export_dir = build_text_model(work)
        feature = next(iter(stages.serving_feature_spec(config)))
        rows = stages.sample_examples(config, max(BATCHES))
        texts = [tf.train.Example.FromString(r).features.feature[feature].bytes_list.value[0]
                 for r in rows]
        export = tf.saved_model.load(export_dir)
        ids = export.signatures["transform_features"](examples=tf.constant(rows))[feature]
        ids_path = os.path.join(work, "token_ids_model")
        save_token_ids_model(model, feature, ids.shape[1:], ids_path)
        ids_model = tf.saved_model.load(ids_path)

        # Each path's signature and batch are ready before the clock starts (slicing a
        # string tensor copies its strings): a call times the signature alone.
        text_batch, example_batch = tf.constant(texts), tf.constant(rows)

        def path(signature, key: str, batch: tf.Tensor):
            def calls(n: int):
                inputs = {key: tf.identity(batch[:n])}
                return lambda: signature(**inputs)

            return calls

        paths = {
            "raw_strings": path(export.signatures["predict_raw"], feature, text_batch),
            "token_ids": path(ids_model.signatures["predict"], feature, ids),
            "tf_examples": path(export.signatures["predict"], "examples", example_batch),
        }
        # Same model, same answers: otherwise the comparison means nothing.
        answers = {name: call(max(BATCHES))()["probabilities"].numpy() for name, call in
                   paths.items()}
        for name, probabilities in answers.items():
            gap = float(np.abs(probabilities - answers["token_ids"]).max())
            if gap > 1e-5:
                raise SystemExit(f"{name} answers differ from token_ids by {gap}")

        figures = {}
        for batch in BATCHES:
            calls = {name: call(batch) for name, call in paths.items()}
            for fn in calls.values():  # warm-up
                median_call_ms(fn, 10)
            rounds = {name: [] for name in calls}
            for _ in range(args.rounds):
                for name, fn in calls.items():
                    rounds[name].append(median_call_ms(fn, args.calls))
            medians = {f"{name}_ms": round(statistics.median(v), 4) for name, v in rounds.items()}
            ratio = medians["raw_strings_ms"] / medians["token_ids_ms"]
            figures[f"batch_{batch}"] = {**medians, "ratio": round(ratio, 3)}

    ratio_128 = figures[f"batch_{max(BATCHES)}"]["ratio"]
    print(
        json.dumps(
            {
                "benchmark": "in_graph_preprocessing",
                "model": "configs/reviews_text.yaml (text_classifier, cnn), 1 epoch",
                "figure": "raw_strings_ms / token_ids_ms (median of round medians)",
                **figures,
                "target": {"batch": max(BATCHES), "max_ratio": TARGET_RATIO},
                "pass": ratio_128 <= TARGET_RATIO,
                "rounds": args.rounds,
                "calls_per_round": args.calls,
            }
        )
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
