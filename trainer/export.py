"""``export_saved_model``: the transform graph, the model and the head in one SavedModel.

The version folder is written under a hidden temporary name inside
``export_dir_base``, loaded and run as TF Serving would in a process of its own
(:mod:`tfbake.serving_input.serving_check`), and only then renamed: a server watching the base
path never sees half a version or one that cannot serve, and a failed export leaves no
integer-named folder behind.
"""

from __future__ import annotations

import contextlib
import os
import time
import uuid
from collections.abc import Callable, Iterator, Mapping, Sequence

import tensorflow as tf
import tensorflow_transform as tft
import tf_keras

from tfbake.serving_input import ServingInputReceiver
from tfbake.serving_input import signatures as sig
from tfbake.serving_input.export_layout import EXAMPLES_KEY, latest_version_dir
from tfbake.serving_input.feature_spec import write_raw_feature_spec
from tfbake.serving_input.receivers import build_raw_serving_input_fn
from tfbake.serving_input.serving_check import ExportCheckError, check_or_raise, serving_check
from tfbake.serving_input.training_statistics import EXPORT_STATISTICS_FILE
from tfbake.serving_input.transform_graph import TransformGraph
from tfbake.trainer.heads import Head, SignatureSpec
from tfbake.trainer.warmup import write_warmup_requests

TEMP_PREFIX = ".tmp-export-"


Postprocess = Callable[[dict], dict]


def predictions_of(
    head: Head,
    logits,
    postprocess: Postprocess | None = None,
    features: Mapping | None = None,
    raw_features: Mapping | None = None,
) -> dict:
    """The head's predictions of examples with these transformed ``features`` (and raw
    ones when served: :meth:`~tfbake.trainer.heads.Head.predictions_for`), through a user's
    ``postprocess`` when given: traced into the export's graph, so it serves without
    the code."""
    predictions = (
        head.predictions(logits)
        if features is None
        else head.predictions_for(logits, features, raw_features)
    )
    return dict(postprocess(predictions)) if postprocess else predictions


class ServingTransform(tf.Module):
    """The transform graph as the export serves it: the transformed features computed
    from the served raw features and nothing else, labels left out, so no label code
    (and no column only a label uses) is part of a serving signature
    (:class:`tfbake.serving_input.transform_graph.TransformGraph`). Outputs that need a column
    a request does not carry (another label's, a ``serving: false`` column's) are
    training data only and left out too.

    Tracks the loaded transform graph, so its tables and vocabulary assets are saved
    with the export, which then needs no transform directory.

    Raises :class:`~tfbake.serving_input.serving_check.ExportCheckError` when one of
    ``model_inputs`` needs a raw column that serving requests do not carry.
    """

    def __init__(
        self,
        tft_output: tft.TFTransformOutput,
        raw_features: Sequence[str],
        label_keys: Sequence[str] = (),
        model_inputs: Sequence[str] = (),
    ):
        super().__init__()
        graph = TransformGraph(tft_output.transform_savedmodel_dir)
        served = set(raw_features)
        sources = graph.output_sources()
        unserved = {
            name: sorted(sources[name] - served) for name in model_inputs
            if name in sources and not sources[name] <= served
        }
        if unserved:
            needs = "; ".join(f'"{name}" needs {columns}' for name, columns in unserved.items())
            raise ExportCheckError(
                f"a model input is computed from a raw column that serving requests do not "
                f"carry (they carry {sorted(served)}; a label's columns and serving: false "
                f"features are training data only): {needs}"
            )
        outputs = {
            name: value for name, value in graph.outputs.items()
            if name not in set(label_keys) and sources[name] <= served
        }
        self._pruned = graph.prune(served, outputs)
        self.transform_graph = graph.imported
        self.function = self._pruned.function
        # Transformed feature -> the raw features it is computed from.
        self.sources = {name: sorted(sources[name]) for name in outputs}

    def __call__(self, raw_features: dict) -> dict:
        return self._pruned(raw_features)


class _Servable(tf.Module):
    """What the SavedModel tracks: the model and the serving transform."""

    def __init__(
        self,
        model: tf_keras.Model,
        transform: ServingTransform,
        head: Head,
        postprocess: Postprocess | None = None,
    ):
        super().__init__()
        self.model = model
        self.serving_transform = transform
        self._head = head
        self._input_names = tuple(model.input_names)
        self._postprocess = postprocess

    def transform(self, raw_features: dict) -> dict:
        return self.serving_transform(raw_features)

    def predict(self, raw_features: dict) -> dict:
        transformed = self.transform(raw_features)
        logits = self.model({name: transformed[name] for name in self._input_names}, training=False)
        return predictions_of(self._head, logits, self._postprocess, transformed, raw_features)


def _signatures(servable: _Servable, receiver: ServingInputReceiver) -> tuple[dict, dict]:
    """The signature functions and their method names.

    With a parsing receiver: the head's signatures (:meth:`tfbake.trainer.heads.Head.signatures`,
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
            return servable.predict(parse({EXAMPLES_KEY: examples}))

        def signature_fn(spec: SignatureSpec):
            # Taken by keyword, so the signature's input is named by the spec's input key.
            return lambda **received: spec.outputs(predictions(received[spec.input_key]))

        for spec in head.signatures():
            add(spec.key, signature_fn(spec), {spec.input_key: string_batch}, spec.method_name)
        add(
            sig.TRANSFORM_FEATURES,
            lambda examples: servable.transform(parse({EXAMPLES_KEY: examples})),
            {EXAMPLES_KEY: string_batch},
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
    latest = latest_version_dir(export_dir_base)
    if latest is None:
        raise FileNotFoundError(f"no exported version in {export_dir_base}")
    return latest


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
    check_examples: Sequence[bytes] | None = None,
    feature_annotations: Mapping[str, Mapping] | None = None,
    postprocess: Postprocess | None = None,
    statistics: str | None = None,
) -> str:
    """Writes ``export_dir_base/<version>/`` atomically and returns its path.

    ``version`` defaults to seconds since the epoch, as Estimator's export did.
    ``warmup_examples`` (serialized raw tf.Examples, or SequenceExamples for a
    receiver with feature_lists) become
    ``assets.extra/tf_serving_warmup_requests``, replayed by TF Serving at load.
    Before the version is published, a fresh process loads it as TF Serving does and
    runs every signature on ``check_examples`` (default: the warm-up examples) and on
    them with every nullable feature absent; a failure raises
    :class:`tfbake.serving_input.serving_check.ExportCheckError` naming the signature, the
    feature and the op, and leaves no version folder.
    ``feature_annotations`` go into ``assets.extra/raw_feature_spec.json``
    (:func:`tfbake.serving_input.feature_spec.write_raw_feature_spec`). ``postprocess`` maps
    the head's predictions (:func:`predictions_of`) in every signature. ``statistics``
    (a training statistics file) is copied to ``assets.extra/training_statistics.pb``,
    where the model server finds what it checks requests against.
    """
    started = time.time()
    tf.io.gfile.makedirs(export_dir_base)
    version = _free_version(export_dir_base, version)
    final_dir = os.path.join(export_dir_base, str(version))
    temp_dir = os.path.join(export_dir_base, f"{TEMP_PREFIX}{version}-{uuid.uuid4().hex[:8]}")
    check = serving_check()  # started now if need be: its TensorFlow import overlaps the save
    try:
        receiver = serving_input_fn()
        transform = ServingTransform(
            tft_output, list(receiver.feature_spec), label_keys, model.input_names
        )
        servable = _Servable(model, transform, head, postprocess)
        functions, methods = _signatures(servable, receiver)
        with _without_optimizer(model):
            tf.saved_model.save(servable, temp_dir, signatures=functions)
        _set_method_names(temp_dir, methods)
        write_raw_feature_spec(temp_dir, receiver.feature_spec, feature_annotations)
        if statistics:
            tf.io.gfile.copy(statistics, os.path.join(temp_dir, EXPORT_STATISTICS_FILE))
        if warmup_examples:
            # Classify and Regress requests carry tf.Examples, which hold no feature_lists:
            # a SequenceExample export warms up its Predict signatures only.
            warm = {key: method for key, method in methods.items()
                    if not receiver.feature_lists or method == sig.PREDICT_METHOD}
            write_warmup_requests(temp_dir, warm, warmup_examples)
        examples = warmup_examples if check_examples is None else check_examples
        check_or_raise(check, temp_dir, examples, transform.sources)
        tf.io.gfile.rename(temp_dir, final_dir)
    except BaseException:
        if tf.io.gfile.exists(temp_dir):
            tf.io.gfile.rmtree(temp_dir)
        raise
    remove_stale_temp_dirs(export_dir_base, started)
    return final_dir


@contextlib.contextmanager
def _without_optimizer(model: tf_keras.Model) -> Iterator[None]:
    """The model without its optimizer while it is saved (as tf_keras' own
    ``include_optimizer=False``): serving needs no slot variables, and an export
    holding an optimizer makes every loader import tf_keras to revive it."""
    optimizer = model.optimizer
    model.optimizer = None
    model._delete_tracking("optimizer")
    try:
        yield
    finally:
        model.optimizer = optimizer


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
