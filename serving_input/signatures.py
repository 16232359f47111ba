"""Signature names, method names and output keys of the canned-estimator export.

From the ``tensorflow/estimator`` sources (``head/*.py``, ``canned/prediction_keys.py``)
and TF Serving's checks; see shared/STACK.md. Tests and the server import these
rather than spelling the strings again.
"""

from tensorflow.python.saved_model import signature_constants as _sc

# Signature keys.
DEFAULT_SERVING = _sc.DEFAULT_SERVING_SIGNATURE_DEF_KEY  # "serving_default"
CLASSIFICATION = "classification"
REGRESSION = "regression"
PREDICT = "predict"
PREDICT_RAW = "predict_raw"
TRANSFORM_FEATURES = "transform_features"

# Method names (TF Serving's Classify/Regress and tfx_bsl choose by these).
CLASSIFY_METHOD = _sc.CLASSIFY_METHOD_NAME  # "tensorflow/serving/classify"
REGRESS_METHOD = _sc.REGRESS_METHOD_NAME  # "tensorflow/serving/regress"
PREDICT_METHOD = _sc.PREDICT_METHOD_NAME  # "tensorflow/serving/predict"

# Input keys.
CLASSIFY_INPUTS = _sc.CLASSIFY_INPUTS  # "inputs"
REGRESS_INPUTS = _sc.REGRESS_INPUTS  # "inputs"

# Output keys of classify / regress signatures.
CLASSES = _sc.CLASSIFY_OUTPUT_CLASSES  # "classes"
SCORES = _sc.CLASSIFY_OUTPUT_SCORES  # "scores"
OUTPUTS = _sc.REGRESS_OUTPUTS  # "outputs"

# Output keys of the predict signature (Estimator's PredictionKeys).
LOGITS = "logits"
LOGISTIC = "logistic"
PROBABILITIES = "probabilities"
CLASS_IDS = "class_ids"
ALL_CLASS_IDS = "all_class_ids"
ALL_CLASSES = "all_classes"
PREDICTIONS = "predictions"

# Output keys of a sequence-tagging head's predict signature. Per-token outputs are
# padded to the model's sequence length; TOKEN_COUNT [N] says how many of each row's
# entries are the example's own (the server's JSON writer and the client cut each row
# there; TF Serving, which has no ragged tensors, answers them padded).
TOKENS = "tokens"
TAGS = "tags"
TAG_IDS = "tag_ids"
TAG_SCORES = "tag_scores"
TOKEN_COUNT = "token_count"
PER_TOKEN_OUTPUTS = (TOKENS, TAGS, TAG_IDS, TAG_SCORES)
