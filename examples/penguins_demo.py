"""The end of the penguins demo: raw eval rows in, species names out.

Reads a few rows of the eval CSV, encodes them as serialized ``tf.Example``s with the
raw feature spec (exactly what a TF Serving client sends), feeds them to the export's
``classification`` signature and prints the class names with their scores, then the
eval accuracy measured by the trainer.
"""

import argparse
import json
import os

import tensorflow as tf

import serving_input
import trainer
import transform
from tfbake import stages
from tfbake.config import load_config


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("config")
    parser.add_argument("--rows", type=int, default=5)
    args = parser.parse_args()
    config = load_config(args.config)
    export_dir = trainer.latest_export(config.export_dir_base)
    decoder = transform.CsvRowDecoder(
        config.raw_feature_spec(),
        transform.read_header(config.data.eval, config.data.csv.delimiter),
        config.data.csv,
    )
    with open(config.data.eval) as f:
        lines = f.read().splitlines()[1:]
    lines = lines[:: max(1, len(lines) // args.rows)][: args.rows]  # spread over the species
    rows = [decoder.decode_dict(line) for line in lines]
    labels = [row.pop(config.label.name) for row in rows]
    examples = serving_input.serialize_examples(rows, stages.serving_feature_spec(config))

    classify = tf.saved_model.load(export_dir).signatures["classification"]
    answer = classify(inputs=tf.constant(examples))
    print(f"\nexport: {export_dir} (signature 'classification', raw tf.Examples in)")
    for row, label, classes, scores in zip(
        rows, labels, answer["classes"].numpy(), answer["scores"].numpy()
    ):
        best = int(scores.argmax())
        ranked = ", ".join(f"{c.decode()} {s:.3f}" for c, s in zip(classes, scores))
        shown = {k: v for k, v in row.items() if k in ("island", "bill_length_mm", "sex")}
        print(f"  {shown} -> {classes[best].decode()} (true: {label}) [{ranked}]")
    with open(os.path.join(config.trainer_dir, "metrics.json")) as f:
        metrics = json.load(f)
    print(f"eval accuracy: {metrics['accuracy']:.4f}")


if __name__ == "__main__":
    main()
