"""``export_saved_model``: the transform graph, the model and the head in one SavedModel.

The version folder is written under a hidden temporary name inside
``export_dir_base`` and renamed at the end, so a server watching the base path never
sees half a version, and a failed export leaves no integer-named folder behind.
"""

from __future__ import annotations

import json
import os
import time
import uuid
from collections.abc import Callable, Mapping, Sequence

import tensorflow as tf
import tensorflow_transform as tft
import tf_keras

from serving_input import ServingInputReceiver, is_optional, type_name
from serving_input import signatures as sig
from serving_input.receivers import build_raw_serving_input_fn
from trainer.heads import Head, SignatureSpec
from trainer.warmup import write_warmup_requests

TEMP_PREFIX = ".tmp-export-"
# The raw feature contract beside the warm-up file: a signature shows names and dtypes
# but not which features may be absent; `tfbake inspect` reads it.
RAW_FEATURE_SPEC_FILE = os.path.join("assets.extra", "raw_feature_spec.json")


Postprocess = Callable[[dict], dict]


def predictions_of(head: Head, logits, postprocess: Postprocess | None = None) -> dict:
    """The head's predictions, through a user's ``postprocess`` (e.g. tag ids -> tag
    names) when given: traced into the export's graph, so it serves without the code."""
    predictions = head.predictions(logits)
    return dict(postprocess(predictions)) if postprocess else predictions


class _Servable(tf.Module):
    """What the SavedModel tracks: the model and the transform layer (so its tables
    and vocabulary assets are saved with it, and the export needs no transform dir)."""

    def __init__(
        self,
        model: tf_keras.Model,
        tft_layer,
        head: Head,
        label_keys: Sequence[str],
        postprocess: Postprocess | None = None,
    ):
        super().__init__()
        self.model = model
        self.tft_layer = tft_layer
        self._head = head
        self._label_keys = tuple(label_keys)
        self._input_names = tuple(model.input_names)
        self._postprocess = postprocess

    def transform(self, raw_features: dict) -> dict:
        transformed = self.tft_layer(raw_features)
        return {k: v for k, v in transformed.items() if k not in self._label_keys}

    def predict(self, raw_features: dict) -> dict:
        transformed = self.transform(raw_features)
        logits = self.model({name: transformed[name] for name in self._input_names}, training=False)
        return predictions_of(self._head, logits, self._postprocess)


def _signatures(servable: _Servable, receiver: ServingInputReceiver) -> tuple[dict, dict]:
    """The signature functions and their method names.

    With a parsing receiver: the head's signatures (:meth:`trainer.heads.Head.signatures`,
    the canned-estimator set, ``serving_default`` = the head's first), plus
    ``transform_features`` and ``predict_raw``. With a raw receiver: ``predict`` only.
    """
    functions, methods = {}, {}
    head = servable._head

    def add(key, fn, specs, method):
        functions[key] = tf.function(fn).get_concrete_function(**specs)
        methods[key] = method

    if receiver.parses_examples:
        parse = receiver.features_fn
        string_batch = tf.TensorSpec([None], tf.string)

        def predictions(examples):
            return servable.predict(parse({"examples": examples}))

        def signature_fn(spec: SignatureSpec):
            # Taken by keyword, so the signature's input is named by the spec's input key.
            return lambda **received: spec.outputs(predictions(received[spec.input_key]))

        for spec in head.signatures():
            add(spec.key, signature_fn(spec), {spec.input_key: string_batch}, spec.method_name)
        add(
            sig.TRANSFORM_FEATURES,
            lambda examples: servable.transform(parse({"examples": examples})),
            {"examples": string_batch},
            sig.PREDICT_METHOD,
        )
        default = head.default_signature
        raw_receiver = build_raw_serving_input_fn(
            receiver.feature_spec, list_features=receiver.list_features
        )()
    else:
        default = sig.PREDICT
        raw_receiver = receiver
    add(
        sig.PREDICT_RAW if receiver.parses_examples else sig.PREDICT,
        lambda **received: servable.predict(raw_receiver.features_fn(received)),
        dict(raw_receiver.receiver_tensors),
        sig.PREDICT_METHOD,
    )
    functions[sig.DEFAULT_SERVING] = functions[default]
    methods[sig.DEFAULT_SERVING] = methods[default]
    return functions, methods


def _set_method_names(export_dir: str, methods: dict) -> None:
    """tf.saved_model.save writes "predict" for every signature; TF Serving's
    Classify/Regress and tfx_bsl choose by the real method name."""
    updater = tf.compat.v1.saved_model.signature_def_utils.MethodNameUpdater(export_dir)
    for key, method in methods.items():
        updater.replace_method_name(signature_key=key, method_name=method, tags="serve")
    updater.save()


def write_raw_feature_spec(
    export_dir: str, feature_spec, annotations: Mapping[str, Mapping] | None = None
) -> str:
    """Writes ``assets.extra/raw_feature_spec.json``: name -> type, shape, nullable,
    plus the feature's ``annotations`` (what a client needs beyond the spec, e.g.
    that a ``VarLenFeature`` is a list rather than a nullable value, or that a
    string holds an encoded image)."""
    annotations = annotations or {}
    contract = {
        name: {
            "type": type_name(spec.dtype),
            "shape": list(spec.shape) if isinstance(spec, tf.io.FixedLenFeature) else None,
            "nullable": is_optional(spec),
            **annotations.get(name, {}),
        }
        for name, spec in feature_spec.items()
    }
    path = os.path.join(export_dir, RAW_FEATURE_SPEC_FILE)
    tf.io.gfile.makedirs(os.path.dirname(path))
    with tf.io.gfile.GFile(path, "w") as f:
        json.dump(contract, f, indent=2)
    return path


def _free_version(export_dir_base: str, version: int | None) -> int:
    if version is not None:
        if tf.io.gfile.exists(os.path.join(export_dir_base, str(version))):
            raise FileExistsError(f"version {version} already exists in {export_dir_base}")
        return version
    version = int(time.time())
    while tf.io.gfile.exists(os.path.join(export_dir_base, str(version))):
        version += 1
    return version


def latest_export(export_dir_base: str) -> str:
    """The highest integer-named version folder under ``export_dir_base``."""
    versions = (
        [int(name) for name in tf.io.gfile.listdir(export_dir_base) if name.strip("/").isdigit()]
        if tf.io.gfile.isdir(export_dir_base)
        else []
    )
    if not versions:
        raise FileNotFoundError(f"no exported version in {export_dir_base}")
    return os.path.join(export_dir_base, str(max(versions)))


def export_saved_model(
    model: tf_keras.Model,
    head: Head,
    tft_output: tft.TFTransformOutput,
    export_dir_base: str,
    serving_input_fn: Callable[[], ServingInputReceiver],
    *,
    label_keys: Sequence[str] = (),
    version: int | None = None,
    warmup_examples: Sequence[bytes] = (),
    feature_annotations: Mapping[str, Mapping] | None = None,
    postprocess: Postprocess | None = None,
) -> str:
    """Writes ``export_dir_base/<version>/`` atomically and returns its path.

    ``version`` defaults to seconds since the epoch, as Estimator's export did.
    ``warmup_examples`` (serialized raw tf.Examples) become
    ``assets.extra/tf_serving_warmup_requests``, replayed by TF Serving at load.
    ``feature_annotations`` go into ``assets.extra/raw_feature_spec.json``
    (:func:`write_raw_feature_spec`). ``postprocess`` maps the head's predictions
    (:func:`predictions_of`) in every signature.
    """
    started = time.time()
    tf.io.gfile.makedirs(export_dir_base)
    version = _free_version(export_dir_base, version)
    final_dir = os.path.join(export_dir_base, str(version))
    temp_dir = os.path.join(export_dir_base, f"{TEMP_PREFIX}{version}-{uuid.uuid4().hex[:8]}")
    try:
        servable = _Servable(
            model, tft_output.transform_features_layer(), head, label_keys, postprocess
        )
        receiver = serving_input_fn()
        functions, methods = _signatures(servable, receiver)
        tf.saved_model.save(servable, temp_dir, signatures=functions)
        _set_method_names(temp_dir, methods)
        write_raw_feature_spec(temp_dir, receiver.feature_spec, feature_annotations)
        if warmup_examples:
            write_warmup_requests(temp_dir, methods, warmup_examples)
        tf.io.gfile.rename(temp_dir, final_dir)
    except BaseException:
        if tf.io.gfile.exists(temp_dir):
            tf.io.gfile.rmtree(temp_dir)
        raise
    remove_stale_temp_dirs(export_dir_base, started)
    return final_dir


def remove_stale_temp_dirs(export_dir_base: str, started: float) -> list[str]:
    """Removes what killed exports left: hidden ``.tmp-export-*`` folders in which
    nothing changed since ``started`` (the running export's start), so an export
    still writing beside this one is left alone. Returns the folders removed."""
    removed = []
    for name in tf.io.gfile.listdir(export_dir_base):
        path = os.path.join(export_dir_base, name.rstrip("/"))
        if not name.startswith(TEMP_PREFIX) or not tf.io.gfile.isdir(path):
            continue
        newest = max(
            tf.io.gfile.stat(os.path.join(folder, entry)).mtime_nsec / 1e9
            for folder, subfolders, files in tf.io.gfile.walk(path)
            for entry in [""] + subfolders + files
        )
        if newest < started:
            tf.io.gfile.rmtree(path)
            removed.append(path)
    return removed
