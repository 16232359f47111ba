"""Commands for serving an export with real TF Serving, filled in for one export.

``tfbake inspect EXPORT --serving-docs`` prints :func:`render` for the actual export
base and model name; docs/tf_serving.md shows the same text for ``/abs/artifacts/
penguins/export`` and ``penguins``.
"""

from __future__ import annotations

import os

TEMPLATE = """\
# Serve the export with TF Serving (Docker): gRPC on 8500, REST on 8501
docker run -p 8500:8500 -p 8501:8501 \\
  --mount type=bind,source={base},target=/models/{name} \\
  -e MODEL_NAME={name} -t tensorflow/serving

# Several models, version policy and labels: models.config
cat > models.config <<'CONFIG'
model_config_list {{
  config {{
    name: "{name}"
    base_path: "/models/{name}"
    model_platform: "tensorflow"
    model_version_policy {{ latest {{ num_versions: 2 }} }}
    version_labels {{ key: "stable" value: {version} }}
  }}
}}
CONFIG
docker run -p 8500:8500 -p 8501:8501 \\
  --mount type=bind,source={base},target=/models/{name} \\
  --mount type=bind,source=$PWD/models.config,target=/models/models.config \\
  -t tensorflow/serving --model_config_file=/models/models.config \\
  --allow_version_labels_for_unavailable_models=true

# Server-side batching: batching.config
cat > batching.config <<'CONFIG'
max_batch_size {{ value: 64 }}
batch_timeout_micros {{ value: 2000 }}
max_enqueued_batches {{ value: 100 }}
num_batch_threads {{ value: 4 }}
CONFIG
docker run -p 8500:8500 -p 8501:8501 \\
  --mount type=bind,source={base},target=/models/{name} \\
  --mount type=bind,source=$PWD/batching.config,target=/models/batching.config \\
  -e MODEL_NAME={name} -t tensorflow/serving \\
  --enable_batching=true --batching_parameters_file=/models/batching.config

# The same flags work with tfbake's own server:
tfbake serve --model_name={name} --model_base_path={base}

# Vertex AI (prebuilt TF serving container): upload the VERSION folder's contents
gsutil -m cp -r {base}/{version}/* gs://BUCKET/{name}/
# SageMaker TF Serving container: model.tar.gz holding {name}/{version}/saved_model.pb ...
tar -C {base} -czf model.tar.gz --transform 's,^,{name}/,' {version}
"""


def _section(text: str, start: str) -> str:
    body = text.split(f"cat > {start} <<'CONFIG'\n", 1)[1]
    return body.split("CONFIG\n", 1)[0]


def render(export_base: str, name: str, version: str | int = 1) -> str:
    """The commands for the export under ``export_base`` served as ``name``."""
    return TEMPLATE.format(base=os.path.abspath(export_base), name=name, version=version)


def models_config(text: str) -> str:
    """The ``models.config`` part of :func:`render`'s text."""
    return _section(text, "models.config")


def batching_config(text: str) -> str:
    """The ``batching.config`` part of :func:`render`'s text."""
    return _section(text, "batching.config")
