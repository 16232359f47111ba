"""tf.Transform traces the job's ``preprocessing_fn`` once, not twice.

The job traces the function itself before it builds the pipeline (the analyzers'
fingerprints and the job record need the graph: ``analysis_cache.trace_analyzers``),
and tf.Transform's ``AnalyzeDataset`` then traces it again to build the analysis. In TF1
graph mode the two traces are the same: tf.Transform's takes the function and the
input type specs and nothing else (no temp dir, no state), and the fingerprinting only
reads the graph. So within :func:`reusing_trace` tf.Transform's trace of that function
with those specs is the one already made, handed over once (tf.Transform builds the
analysis inside the graph it gets); any other trace is tf.Transform's own.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator

from tensorflow_transform import impl_helper

from tfbake.transform.analysis_cache import TF1Trace


@contextlib.contextmanager
def reusing_trace(preprocessing_fn: Callable, trace: TF1Trace | None) -> Iterator[None]:
    """Within it, tf.Transform's first TF1 trace of ``preprocessing_fn`` over
    ``trace.type_specs`` returns ``trace`` (None: nothing is reused)."""
    original = impl_helper.trace_preprocessing_function
    unused = [trace] if trace is not None else []

    def trace_preprocessing_function(fn, input_specs, use_tf_compat_v1, base_temp_dir=None):
        if (
            unused
            and fn is preprocessing_fn
            and use_tf_compat_v1
            and dict(input_specs) == unused[0].type_specs
        ):
            made = unused.pop()
            return made.graph, made.inputs, made.outputs
        return original(fn, input_specs, use_tf_compat_v1, base_temp_dir)

    impl_helper.trace_preprocessing_function = trace_preprocessing_function
    try:
        yield
    finally:
        impl_helper.trace_preprocessing_function = original
