"""The Beam job's saved transform graph, pruned to what a given set of raw columns computes.

tf.Transform's TF2 loader (``TransformFeaturesLayer``) fills every raw input that is
not fed with a placeholder value and runs the whole transform function, so a label
computed from a raw column (``tf.strings.to_number`` on it, a vocabulary lookup) runs
at serving on a filler ``""`` and can fail the request. Here the function is pruned
instead, as tf.Transform prunes its TF1 graphs and its own traced functions
(``WrappedFunction.prune``): only the requested outputs, computed from the fed raw
inputs, with the automatic control dependencies of the other outputs (their table
lookups, assertions) left out. What the outputs depend on is read from the graph,
so an output that needs a column that is not fed is known before anything runs.

The graph is either kind tf.Transform saves: a TF1 graph with a signature (its graph
mode, the Beam job's choice when the ``preprocessing_fn`` traces there) or a
``tf.function`` (its TF2 mode). Both are pruned the same way once loaded.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping

import tensorflow as tf
from tensorflow.python.eager import wrap_function
from tensorflow_transform import graph_tools, tf2_utils
from tensorflow_transform.saved import constants, saved_model_loader

# The signature a TF1 transform graph is saved under (tf.Transform's own constant).
TRANSFORM_SIGNATURE = constants.TRANSFORM_SIGNATURE

Features = dict[str, "tf.Tensor | tf.SparseTensor | tf.RaggedTensor"]


def _components(value) -> list:
    return tf.nest.flatten(value, expand_composites=True)


def _must_run(ops: Iterable[tf.Operation]) -> list[tf.Operation]:
    """The ops behind automatic control dependencies (a NoOp gathers them)."""
    found = []
    for op in ops:
        found += _must_run(op.control_inputs) if op.type == "NoOp" else [op]
    return found


def tf1_signature(transform_savedmodel_dir: str):
    """The signature (a ``SignatureDef``) of a transform graph that tf.Transform saved in
    its TF1 graph mode, or None for one saved as a ``tf.function`` (its TF2 mode).

    tf.Transform's own ``TransformDataset`` applies a TF1 graph in its TF1 mode only
    (``tft_beam.Context(force_tf_compat_v1=True)``; tf.Transform 1.21 fails with an
    ``IndexError`` in TF2 mode); its ``TransformFeaturesLayer`` takes either.
    """
    for meta_graph in saved_model_loader.parse_saved_model(transform_savedmodel_dir).meta_graphs:
        if TRANSFORM_SIGNATURE in meta_graph.signature_def:
            return meta_graph.signature_def[TRANSFORM_SIGNATURE]
    return None


def named_tensor(graph: tf.Graph, op_name_prefix: str) -> tf.Tensor | None:
    """The first output of ``graph``'s op named ``op_name_prefix`` (or that name
    uniquified, ``name_1``; in any name scope), or None."""
    uniquified = re.compile(re.escape(op_name_prefix) + r"(_\d+)?")
    for op in graph.get_operations():
        if uniquified.fullmatch(op.name.rsplit("/", 1)[-1]):
            return op.outputs[0]
    return None


class TransformGraph:
    """A saved tf.Transform graph (``transform_fn/``) as a graph of raw inputs -> outputs.

    Args:
      transform_savedmodel_dir: ``TFTransformOutput.transform_savedmodel_dir``.
    """

    def __init__(self, transform_savedmodel_dir: str):
        self.imported = tf.saved_model.load(transform_savedmodel_dir)
        signature = self.imported.signatures.get(TRANSFORM_SIGNATURE)
        if signature is not None:
            # A TF1 graph: its signature, loaded as a function, holds each raw input's
            # tensors under the names the saved signature gives them.
            saved_signature = tf1_signature(transform_savedmodel_dir)
            self._graph = signature.graph
            self._function = signature
            self.inputs = {
                name: tf.compat.v1.saved_model.utils.get_tensor_from_tensor_info(info, self._graph)
                for name, info in saved_signature.inputs.items()
            }
            self.outputs = dict(signature.structured_outputs)
        else:  # a tf.function (tf.Transform's TF2 mode)
            fn = self.imported.transform_fn
            if hasattr(fn, "concrete_functions"):  # saved as a tf.function
                (fn,) = fn.concrete_functions
            self._graph = fn.graph
            self._function = wrap_function.WrappedFunction(
                self._graph, variable_holder=wrap_function.VariableHolder(share_variables=True)
            )
            self.inputs = tf2_utils.get_structured_inputs_from_func_graph(self._graph)
            self.outputs = tf.nest.pack_sequence_as(
                self._graph.structured_outputs, self._graph.outputs, expand_composites=True
            )
        self._input_of = {
            t.ref(): name for name, value in self.inputs.items() for t in _components(value)
        }

    def sources(self, tensors, *, control: bool = False) -> set[str]:
        """The raw inputs that ``tensors`` (or ops) compute from; with ``control``, also
        those they wait for (control dependencies, e.g. an earlier lookup of one table)."""
        sinks = [t if isinstance(t, tf.Operation) else t.op for t in _components(tensors)]
        found = graph_tools.retrieve_sources(sinks, ignore_control_dependencies=not control)
        return {self._input_of[t.ref()] for t in found if t.ref() in self._input_of}

    def output_sources(self) -> dict[str, set[str]]:
        """Output name -> the raw inputs it is computed from."""
        return {name: self.sources(value) for name, value in self.outputs.items()}

    def tensor(self, op_name_prefix: str) -> tf.Tensor | None:
        """The first output of the graph's op named ``op_name_prefix`` (or that name
        uniquified, ``name_1``), or None."""
        return named_tensor(self._graph, op_name_prefix)

    def prune(self, raw_inputs: Iterable[str], fetches: Mapping[str, object]) -> PrunedTransform:
        """A function of ``raw_inputs`` computing ``fetches`` (name -> a tensor of this
        graph, e.g. from :attr:`outputs`), and only what they need.

        Raises ValueError naming each fetch that needs a raw input not in ``raw_inputs``.
        """
        fed = [name for name in self.inputs if name in set(raw_inputs)]
        unknown = sorted(set(raw_inputs) - set(self.inputs))
        if unknown:
            raise ValueError(f"{unknown} are not raw inputs of the transform graph")
        missing = {name: sorted(self.sources(t) - set(fed)) for name, t in fetches.items()}
        missing = {name: needs for name, needs in missing.items() if needs}
        if missing:
            raise ValueError("; ".join(
                f'"{name}" needs raw column(s) {needs}' for name, needs in missing.items()
            ))
        feeds = [t for name in fed for t in _components(self.inputs[name])]
        # In tf.nest's order (dict keys sorted), the order the call packs them back in.
        components = _components(dict(fetches))
        flat, control = [], set()
        for tensor in components:
            (stripped,), deps = tf2_utils.strip_and_get_tensors_and_control_dependencies([tensor])
            flat.append(stripped)
            control |= set(deps)
        shapes = [t.shape for t in components]
        # Kept: the stateful ops (assertions, lookups) of the fetched outputs' own inputs.
        keep = [op for op in _must_run(control) if self.sources(op, control=True) <= set(fed)]
        pruned = self._function.prune(feeds=feeds, fetches={"tensors": flat, "ops": keep})
        return PrunedTransform(pruned, fed, dict(fetches), shapes)


class PrunedTransform:
    """A pruned transform graph, called with raw features (as parsing gives them)."""

    def __init__(self, function, raw_inputs: list[str], fetches: dict, shapes: list):
        self.function = function
        self.raw_inputs = raw_inputs
        self._structure = fetches
        self._shapes = shapes

    def __call__(self, raw_features: Mapping) -> Features:
        flat_inputs = [t for name in self.raw_inputs for t in _components(raw_features[name])]
        flat = self.function(*flat_inputs)["tensors"]
        for tensor, shape in zip(flat, self._shapes):
            tensor.set_shape(shape)  # prune loses the static shapes
        return tf.nest.pack_sequence_as(self._structure, flat, expand_composites=True)
