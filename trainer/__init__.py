"""Training on transformed data and exporting for TF Serving (the Estimator contract).

- :func:`make_input_fn`: tf.data over the Beam job's transformed TFRecords;
- canned models (:class:`LinearClassifier`, :class:`LinearRegressor`,
  :class:`DNNClassifier`, :class:`DNNRegressor`, :class:`DNNLinearCombinedClassifier`,
  :class:`DNNLinearCombinedRegressor`, :class:`TextClassifier`,
  :class:`ImageClassifier`, :class:`TokenTagger`) and :class:`Model` (a user's own
  tf_keras model), each with ``train``, ``evaluate``, ``predict`` and ``export_saved_model``;
- heads (:class:`ClassificationHead`, :class:`MultiLabelHead`, :class:`RegressionHead`,
  :class:`SequenceTaggingHead`, and :class:`MultiHead` over several): loss, metrics,
  outputs and the export's signatures;
- :func:`class_weights`: per-class weights from the label counts the Beam job stored;
- :func:`label_statistics`: how the ``preprocessing_fn`` normalized a regression
  label, read back from the transform graph (the export undoes it);
- :func:`warm_start`: a new model initialized from a previous one (:class:`PreviousModel`),
  embedding and linear rows remapped by vocabulary token;
- :func:`write_dir`, :func:`workers_in_tf_config`: multi-worker training (only the
  chief writes the model folder);
- :func:`write_report`: the evaluation picture (learning curves, confusion matrix or
  predicted vs actual) as ``report.html`` with PNGs.

Each name is imported on first use: ``import tfbake.trainer`` loads no TensorFlow.
"""

from tfbake.serving_input.lazy_exports import lazy_exports

__getattr__, __dir__ = lazy_exports(__name__, {
    ".canned": [
        "DNNClassifier",
        "DNNLinearCombinedClassifier",
        "DNNLinearCombinedRegressor",
        "DNNRegressor",
        "LinearClassifier",
        "LinearRegressor",
    ],
    ".class_weights": ["class_weights"],
    ".distribution": ["workers_in_tf_config", "write_dir"],
    ".export": ["latest_export"],
    ".heads": [
        "ClassificationHead",
        "Head",
        "MultiHead",
        "MultiLabelHead",
        "RegressionHead",
        "SignatureSpec",
    ],
    ".image_classifier": ["ImageClassifier"],
    ".input_fn": ["make_input_fn"],
    ".label_normalization": ["label_statistics"],
    ".model": ["Model"],
    ".monitor": ["monitor_mode"],
    ".report": ["write_report"],
    ".sequence_tagging": ["SequenceTaggingHead", "tagging_report"],
    ".text_classifier": ["TextClassifier"],
    ".token_tagger": ["TokenTagger"],
    ".warm_start": ["WARM_START_REPORT", "PreviousModel", "WarmStartReport", "warm_start"],
})
__all__ = __dir__()
