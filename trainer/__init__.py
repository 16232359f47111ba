"""Training on transformed data and exporting for TF Serving (the Estimator contract).

- :func:`make_input_fn`: tf.data over the Beam job's transformed TFRecords;
- :class:`DNNClassifier` and :class:`Model` (a user's own tf_keras model), each with
  ``train``, ``evaluate``, ``predict`` and ``export_saved_model``.
"""

from trainer.canned import DNNClassifier
from trainer.export import latest_export
from trainer.heads import ClassificationHead
from trainer.input_fn import make_input_fn
from trainer.model import Model

__all__ = ["ClassificationHead", "DNNClassifier", "Model", "latest_export", "make_input_fn"]
