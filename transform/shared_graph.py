"""The job's splits are transformed by one loaded ``transform_fn`` graph, not one each.

tf.Transform's ``TransformDataset`` loads the ``transform_fn`` into a TensorFlow graph
and session in each worker process, once, shared by the threads of that process
through a ``Shared`` handle that each ``TransformDataset`` makes for itself. The job
transforms each split (train, eval, validation) with the same ``transform_fn`` and the
same input tensors, so a process loaded it once per split: a tenth of a second each,
for the same graph.

:func:`share_loaded_graph` gives the splits' transform steps one handle, when they run
the same ``transform_fn`` (the same side input) on the same inputs with the same
settings, so a process loads the graph once for all of them. The handle travels with
the pickled step, as tf.Transform's own does, so this holds on any runner.
"""

from __future__ import annotations

from collections.abc import Sequence

import apache_beam as beam
from apache_beam.utils import shared
from tensorflow_transform.beam import impl as tft_impl

# The step of TransformDataset that runs the graph (tf.Transform's _RunMetaGraphDoFn).
_RUN_GRAPH_STEP = "Transform"


def graph_steps(pipeline: beam.Pipeline, labels: Sequence[str] | None = None) -> list:
    """The applied steps of ``pipeline`` that run a tf.Transform graph (the analyzers'
    inputs, ``TransformDataset``); with ``labels``, only the ``TransformDataset``
    steps applied under them."""
    wanted = None if labels is None else {f"{label}/{_RUN_GRAPH_STEP}" for label in labels}
    found = []

    class Steps(beam.pipeline.PipelineVisitor):
        def visit_transform(self, applied):
            fn = getattr(applied.transform, "fn", None)
            if isinstance(fn, tft_impl._RunMetaGraphDoFn) and (  # noqa: SLF001
                wanted is None or applied.full_label in wanted
            ):
                found.append(applied)

    pipeline.visit(Steps())
    return found


def _same_graph(applied) -> tuple:
    """What the step's loaded graph depends on: its transform_fn (the side input) and
    the settings tf.Transform loads it with; the input config is the same object."""
    (transform_fn,) = (side_input.pvalue for side_input in applied.side_inputs)
    fn = applied.transform.fn
    config = fn._tf_config  # noqa: SLF001
    return (
        id(transform_fn),
        id(fn._input_tensor_adapter_config),  # noqa: SLF001
        fn._use_tf_compat_v1,  # noqa: SLF001
        tuple(fn._exclude_outputs),  # noqa: SLF001
        tuple(fn._passthrough_keys),  # noqa: SLF001
        None if config is None else config.SerializeToString(deterministic=True),
    )


def share_loaded_graph(pipeline: beam.Pipeline, labels: Sequence[str]) -> int:
    """Gives the ``TransformDataset`` steps applied under ``labels`` one shared graph
    where they would load the same one; returns how many steps share one."""
    groups: dict[tuple, list] = {}
    for applied in graph_steps(pipeline, labels):
        groups.setdefault(_same_graph(applied), []).append(applied)
    sharing = 0
    for steps in groups.values():
        if len(steps) > 1:
            handle = shared.Shared()
            for applied in steps:
                applied.transform.fn._shared_graph_state_handle = handle  # noqa: SLF001
            sharing += len(steps)
    return sharing
