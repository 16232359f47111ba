"""tf.Transform's sessions in a local job run their graphs as built, without Grappler.

In TF1 graph mode (the job's usual one, ``transform.trace_once``) tf.Transform runs
each analysis phase's graph and the ``transform_fn`` in a TensorFlow session, with the
session config it picks for the runner (two threads per session, for the local
runners). A session's first run has Grappler rewrite the graph first: on a 1,000-row
job the first batch through the analyzers' inputs and through the ``transform_fn``
took 120-200 ms and 65-77 ms, 40-62 ms and 20-42 ms without it. Later batches
hardly differ: the graphs are element-wise steps, vocabulary lookups and bucket
searches, which Grappler has little to fold (the whole flights job ran its sessions
for 0.53-0.62 s either way).

:func:`graphs_run_as_built` gives the local runners' config with Grappler's meta
optimizer off, while the job builds its pipeline; tf.Transform reads it then and hands
it to each step. Other runners keep tf.Transform's choice.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import tensorflow as tf
from apache_beam.runners.direct.direct_runner import DirectRunner
from apache_beam.runners.portability.fn_api_runner import FnApiRunner
from tensorflow_transform.beam import impl as tft_impl

# The runners tf.Transform picks a session config for that run in this process.
_IN_PROCESS_RUNNERS = (FnApiRunner, DirectRunner)


def as_built(config: tf.compat.v1.ConfigProto | None) -> tf.compat.v1.ConfigProto:
    """``config`` (or TensorFlow's default) with Grappler's meta optimizer off."""
    built = tf.compat.v1.ConfigProto()
    if config is not None:
        built.CopyFrom(config)
    built.graph_options.rewrite_options.disable_meta_optimizer = True
    return built


@contextlib.contextmanager
def graphs_run_as_built() -> Iterator[None]:
    """Within it, tf.Transform gives the local runners' sessions a config with
    Grappler off (its own configs again after it)."""
    configs = tft_impl._DEFAULT_TENSORFLOW_CONFIG_BY_BEAM_RUNNER_TYPE  # noqa: SLF001
    saved = dict(configs)
    for runner in _IN_PROCESS_RUNNERS:
        configs[runner] = as_built(saved.get(runner))
    try:
        yield
    finally:
        configs.clear()
        configs.update(saved)
