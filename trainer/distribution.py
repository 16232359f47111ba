"""Training on several workers (``MultiWorkerMirroredStrategy``): who writes what.

Every worker runs the same training, evaluation, report and saves: reading a
sync-on-read variable (a metric, batch-norm statistics) is a collective that every
worker must join. Only the chief writes into the model folder; the others write the
same files into a temporary folder that is removed at the end (the pattern of
TensorFlow's multi-worker Keras guide). Shared state (the chief's backup, history and
best checkpoint) is read by every worker.
"""

from __future__ import annotations

import contextlib
import shutil
import tempfile
from collections.abc import Iterator

import tensorflow as tf

WORKER_TEMP_PREFIX = "tfbake-worker-"


def is_chief(strategy: tf.distribute.Strategy) -> bool:
    """Whether this process writes the shared outputs: always, except on the non-chief
    workers of a multi-worker strategy."""
    return strategy.extended.should_checkpoint


@contextlib.contextmanager
def write_dir(path: str, strategy: tf.distribute.Strategy) -> Iterator[str]:
    """Where this process writes what belongs in ``path``: ``path`` itself on the chief;
    on another worker a temporary folder, removed on exit."""
    if is_chief(strategy):
        yield path
        return
    temp = tempfile.mkdtemp(prefix=WORKER_TEMP_PREFIX)
    try:
        yield temp
    finally:
        shutil.rmtree(temp, ignore_errors=True)


def barrier(strategy: tf.distribute.Strategy) -> None:
    """Returns once every worker has called it (an all-reduce of one number), e.g. so
    that the chief has written a file the others are about to read. A no-op in one
    process."""
    if not isinstance(strategy, tf.distribute.MultiWorkerMirroredStrategy):
        return

    @tf.function  # a collective run eagerly is slow and warns about it
    def all_reduce_one():
        ones = strategy.run(lambda: tf.constant(1.0))
        return strategy.reduce(tf.distribute.ReduceOp.SUM, ones, axis=None)

    all_reduce_one()


def workers_in_tf_config() -> int:
    """How many tasks the ``TF_CONFIG`` cluster has (1 without ``TF_CONFIG``)."""
    cluster = tf.distribute.cluster_resolver.TFConfigClusterResolver().cluster_spec()
    return max(1, sum(len(tasks) for tasks in cluster.as_dict().values()))
