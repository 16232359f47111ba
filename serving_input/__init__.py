"""What goes into and comes out of an exported model.

- :func:`build_parsing_serving_input_fn`, :func:`build_raw_serving_input_fn`: the two
  ways a request becomes raw features;
- :func:`encode_example` / :func:`serialize_examples` / :func:`serialize_row`: Python
  rows to ``tf.Example``s (or ``tf.SequenceExample``s, given the feature_lists), typed
  by the same raw feature spec; :func:`raw_columns`: Python rows to
  ``predict_raw`` inputs (:func:`count_input` names a nullable or list feature's count);
- :mod:`tfbake.serving_input.signatures`: the canned-estimator signature names and output keys;
- :mod:`tfbake.serving_input.export_layout`: the export folder's file names, tags, input key
  and version rule, which every writer and reader of an export imports.

Each name is imported on first use: ``import tfbake.serving_input`` loads no TensorFlow.
"""

from tfbake.serving_input.lazy_exports import lazy_exports

__getattr__, __dir__ = lazy_exports(__name__, {
    ".export_layout": ["EXAMPLES_KEY"],
    ".feature_spec": ["FeatureSpec", "is_optional", "type_name", "without"],
    ".raw_tensors": ["raw_columns", "raw_feature_spec_of"],
    ".receivers": [
        "ServingInputReceiver",
        "build_parsing_serving_input_fn",
        "build_raw_serving_input_fn",
        "count_input",
    ],
    ".sequence_example": ["example_of_record", "serialize_examples", "serialize_row"],
    ".tf_example": ["ExampleEncodingError", "encode_example"],
})
__all__ = __dir__()
