"""What goes into and comes out of an exported model.

- :func:`build_parsing_serving_input_fn`, :func:`build_raw_serving_input_fn`: the two
  ways a request becomes raw features;
- :func:`encode_example` / :func:`serialize_examples`: Python rows to ``tf.Example``s,
  typed by the same raw feature spec; :func:`raw_columns`: Python rows to
  ``predict_raw`` inputs (:func:`count_input` names a nullable or list feature's count);
- :mod:`serving_input.signatures`: the canned-estimator signature names and output keys.
"""

from serving_input.feature_spec import FeatureSpec, is_optional, type_name, without
from serving_input.raw_tensors import raw_columns, raw_feature_spec_of
from serving_input.receivers import (
    EXAMPLES_KEY,
    ServingInputReceiver,
    build_parsing_serving_input_fn,
    build_raw_serving_input_fn,
    count_input,
)
from serving_input.tf_example import ExampleEncodingError, encode_example, serialize_examples

__all__ = [
    "EXAMPLES_KEY",
    "ExampleEncodingError",
    "FeatureSpec",
    "ServingInputReceiver",
    "build_parsing_serving_input_fn",
    "build_raw_serving_input_fn",
    "count_input",
    "encode_example",
    "is_optional",
    "raw_columns",
    "raw_feature_spec_of",
    "serialize_examples",
    "type_name",
    "without",
]
