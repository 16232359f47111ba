"""The export folder, as TF Serving and every tfbake reader see it: the one statement
of its file names, tags, input key and version rule.

``<export_dir_base>/<version>/`` holds ``saved_model.pb`` (or ``.pbtxt``),
``variables/``, ``assets/`` and ``assets.extra/`` (the warm-up requests TF Serving
replays at load, and the raw feature contract). The trainer writes it; the model
server, ``tfbake inspect``, ``tfbake check``, the serving check and the web console
read it, all through this module. Importing it loads no TensorFlow.
"""

from __future__ import annotations

import os

# The MetaGraph tag TF Serving loads by default.
SERVE_TAG = "serve"
# The files that make a folder a SavedModel, in the order TF's loader tries them.
SAVED_MODEL_FILES = ("saved_model.pb", "saved_model.pbtxt")
ASSETS_EXTRA = "assets.extra"
# TF Serving's SavedModel warm-up: a TFRecord file of PredictionLogs.
WARMUP_FILE = os.path.join(ASSETS_EXTRA, "tf_serving_warmup_requests")
# The raw feature contract: a signature shows names and dtypes but not which features
# may be absent or are lists.
RAW_FEATURE_SPEC_FILE = os.path.join(ASSETS_EXTRA, "raw_feature_spec.json")
# The raw feature contract's mark of a list feature that a serving record carries as a
# tf.SequenceExample's feature_list (an export of data.format: sequence_example).
FEATURE_LIST = "feature_list"
# The input of a parsing signature, as Estimator's
# build_parsing_serving_input_receiver_fn named it.
EXAMPLES_KEY = "examples"

# The SignatureDef a TF2 SavedModel keeps its initializer under: the loader runs it,
# nobody calls it (TF Serving lists it in the metadata all the same).
INIT_OP_SIGNATURE_KEY = "__saved_model_init_op"

# A config's feature type -> its TensorFlow dtype name (``tf.as_dtype(name)``).
FEATURE_DTYPES = {"float": "float32", "int": "int64", "string": "string"}


def version_of(name: str) -> int | None:
    """The version a child folder named ``name`` holds (``0001`` is 1), or None: an
    integer name is a version, as in TF Serving (``v1``, ``.tmp-1`` are not)."""
    name = name.rstrip("/")  # tf.io.gfile.listdir marks folders of some file systems
    return int(name) if name.isascii() and name.isdigit() else None


def versions(names) -> list[int]:
    """The versions among folder ``names``, ascending."""
    return sorted(v for v in map(version_of, names) if v is not None)


def latest_version_dir(export_dir_base: str) -> str | None:
    """The folder of the highest version under ``export_dir_base``; None when there is
    none (or no such folder)."""
    import tensorflow as tf  # gfile: gs://, hdfs://... as well as local folders

    if not tf.io.gfile.isdir(export_dir_base):
        return None
    found = versions(tf.io.gfile.listdir(export_dir_base))
    return os.path.join(export_dir_base, str(found[-1])) if found else None


def read_saved_model(path: str):
    """The ``SavedModel`` proto of the version folder ``path`` (``saved_model.pb``, else
    ``saved_model.pbtxt``)."""
    import tensorflow as tf
    from google.protobuf import text_format
    from tensorflow.core.protobuf import saved_model_pb2

    saved_model = saved_model_pb2.SavedModel()
    pb, pbtxt = (os.path.join(path, name) for name in SAVED_MODEL_FILES)
    if tf.io.gfile.exists(pb):
        with tf.io.gfile.GFile(pb, "rb") as f:
            saved_model.ParseFromString(f.read())
    else:
        with tf.io.gfile.GFile(pbtxt) as f:
            text_format.Parse(f.read(), saved_model)
    return saved_model


def meta_graph_of(saved_model, tags, path: str):
    """The MetaGraphDef of the ``SavedModel`` proto (read from ``path``) tagged exactly
    ``tags``, as TF Serving's loader picks it; ``ValueError`` names the tags it has."""
    found = []
    for meta_graph in saved_model.meta_graphs:
        if set(meta_graph.meta_info_def.tags) == set(tags):
            return meta_graph
        found.append(",".join(sorted(meta_graph.meta_info_def.tags)))
    raise ValueError(
        f"SavedModel at {path} has no MetaGraph tagged {','.join(sorted(tags))!r} "
        f"(--saved_model_tags); its MetaGraphs are tagged {found}"
    )


def read_signature_defs(path: str, tags=(SERVE_TAG,)) -> dict:
    """The SignatureDefs (protos) of the MetaGraph tagged exactly ``tags`` (see
    :func:`meta_graph_of`)."""
    return dict(meta_graph_of(read_saved_model(path), tags, path).signature_def)


def callable_signatures(signature_defs: dict) -> dict:
    """``signature_defs`` (name -> SignatureDef, as a proto or its JSON) without the
    initializer's entry, which is listed but never called."""
    return {name: d for name, d in signature_defs.items() if name != INIT_OP_SIGNATURE_KEY}


def load_session(path: str, tags=(SERVE_TAG,)):
    """The export loaded as tensorflow_model_server loads it: a ``tf.compat.v1.Session``
    of its own holding the MetaGraph tagged exactly ``tags`` (variables restored, assets
    and the initializer run), and that MetaGraphDef. ``saved_model.pb`` is read once."""
    import tensorflow as tf
    from tensorflow.python.saved_model import loader_impl

    loader = loader_impl.SavedModelLoader(path)
    meta_graph = meta_graph_of(loader.saved_model, tags, path)
    graph = tf.Graph()
    session = tf.compat.v1.Session(graph=graph)
    with graph.as_default():
        loader.load(session, list(tags))
    return session, meta_graph
