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
"""

from trainer.canned import (
    DNNClassifier,
    DNNLinearCombinedClassifier,
    DNNLinearCombinedRegressor,
    DNNRegressor,
    LinearClassifier,
    LinearRegressor,
)
from trainer.class_weights import class_weights
from trainer.distribution import workers_in_tf_config, write_dir
from trainer.export import latest_export
from trainer.heads import (
    ClassificationHead,
    Head,
    MultiHead,
    MultiLabelHead,
    RegressionHead,
    SignatureSpec,
)
from trainer.image_classifier import ImageClassifier
from trainer.input_fn import make_input_fn
from trainer.label_normalization import label_statistics
from trainer.model import Model, monitor_mode
from trainer.report import write_report
from trainer.sequence_tagging import SequenceTaggingHead, tagging_report
from trainer.text_classifier import TextClassifier
from trainer.token_tagger import TokenTagger
from trainer.warm_start import WARM_START_REPORT, PreviousModel, WarmStartReport, warm_start

__all__ = [
    "WARM_START_REPORT",
    "ClassificationHead",
    "DNNClassifier",
    "DNNLinearCombinedClassifier",
    "DNNLinearCombinedRegressor",
    "DNNRegressor",
    "Head",
    "ImageClassifier",
    "LinearClassifier",
    "LinearRegressor",
    "Model",
    "MultiHead",
    "MultiLabelHead",
    "PreviousModel",
    "RegressionHead",
    "SequenceTaggingHead",
    "SignatureSpec",
    "TextClassifier",
    "WarmStartReport",
    "TokenTagger",
    "class_weights",
    "label_statistics",
    "latest_export",
    "make_input_fn",
    "monitor_mode",
    "warm_start",
    "tagging_report",
    "workers_in_tf_config",
    "write_dir",
    "write_report",
]
