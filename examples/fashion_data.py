"""Writes the image example's train/eval data: Fashion-MNIST (MIT) as ``tf.Example``
TFRecords whose ``image`` is a PNG file's bytes and whose ``label`` is the class name.

The images come from Debian's ``dataset-fashion-mnist`` (the idx files under
/usr/share/datasets/fashion-mnist/). Each 28x28 grayscale image is encoded to PNG
with Pillow, so the pipeline and the served model take encoded images, as a client
would send them. A subset keeps ``tfbake run`` to a few minutes: the first
``--train`` images of the training file and the first ``--eval`` of the test file
(both files are shuffled across classes by their authors).
"""

import argparse
import gzip
import io
import os

import numpy as np
import tensorflow as tf
from PIL import Image

SOURCE_DIR = "/usr/share/datasets/fashion-mnist"
CLASSES = (
    "T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
    "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot",
)  # fmt: skip


def read_idx(path: str) -> np.ndarray:
    """An idx file (gzip) as a uint8 array: [N, 28, 28] images or [N] labels."""
    with gzip.open(path, "rb") as f:
        data = f.read()
    dims = data[3]  # the magic number's last byte: how many dimensions
    shape = [int.from_bytes(data[4 + 4 * i : 8 + 4 * i], "big") for i in range(dims)]
    return np.frombuffer(data, np.uint8, offset=4 + 4 * dims).reshape(shape)


def png_bytes(pixels: np.ndarray) -> bytes:
    """A uint8 [H, W] grayscale image as PNG bytes."""
    buffer = io.BytesIO()
    Image.fromarray(pixels, mode="L").save(buffer, format="PNG")
    return buffer.getvalue()


def write_split(prefix: str, path: str, count: int) -> int:
    """Writes the first ``count`` images of ``prefix`` (``train`` / ``t10k``) to ``path``."""
    images = read_idx(os.path.join(SOURCE_DIR, f"{prefix}-images-idx3-ubyte.gz"))[:count]
    labels = read_idx(os.path.join(SOURCE_DIR, f"{prefix}-labels-idx1-ubyte.gz"))[:count]
    with tf.io.TFRecordWriter(path) as writer:
        for pixels, label in zip(images, labels):
            example = tf.train.Example()
            example.features.feature["image"].bytes_list.value.append(png_bytes(pixels))
            example.features.feature["label"].bytes_list.value.append(CLASSES[label].encode())
            writer.write(example.SerializeToString())
    return len(images)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--out", default="artifacts/fashion_images/data")
    parser.add_argument("--train", type=int, default=12000, help="training images (max 60000)")
    parser.add_argument("--eval", type=int, default=2000, help="eval images (max 10000)")
    args = parser.parse_args()
    os.makedirs(args.out, exist_ok=True)
    counts = {
        "train": write_split("train", os.path.join(args.out, "train.tfrecord"), args.train),
        "eval": write_split("t10k", os.path.join(args.out, "eval.tfrecord"), args.eval),
    }
    print(f"Fashion-MNIST written to {args.out}: {counts}")
