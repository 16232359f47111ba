"""The stages of a config'd pipeline: transform -> train -> export.

Each stage takes the validated :class:`~tfbake.config.Config` and hands the stage
packages plain arguments (the raw feature spec, paths, Beam flags): only this package
knows the YAML.
"""

from __future__ import annotations

import itertools
import json
import os
from collections.abc import Sequence

import tensorflow as tf
import tensorflow_transform as tft
import tf_keras

from tfbake import paths, serving_input, trainer, transform
from tfbake.config import Config, ConfigError, load_object
from tfbake.model_config import Label
from tfbake.serving_input.raw_rows import read_raw_rows
from tfbake.serving_input.serving_check import serving_check
from tfbake.serving_input.training_statistics import statistics_path
from tfbake.transform.labels import transform_label, transform_tags
from tfbake.transform.ops.cleaning import clean_strings
from tfbake.transform.ops.missing import densify
from tfbake.transform.ops.text import tokens
from tfbake.transform.token_alignment import TokenAlignment

WEIGHTS_FILE = "model.weights.h5"
# The dtypes a derived label's value may have, by its declared type.
_LABEL_DTYPES = {"string": ("string",), "int": ("int64", "int32"), "float": ("float32", "float64")}


def preprocessing_fn(config: Config):
    """The config's ``preprocessing_fn``: declared steps, a user's function, or both;
    then each label that a user's function did not transform
    (:func:`tfbake.transform.labels.transform_label`).

    String labels are cleaned first (``strip``/``case``/``map``): a label column before
    the user's function sees it, a derived label's value after the function computed it.
    """
    user_fn = (
        transform.load_preprocessing_fn(config.preprocessing_fn)
        if config.preprocessing_fn
        else None
    )
    features_fn = transform.build_preprocessing_fn(
        serving_feature_spec(config),
        config.preprocessing,
        user_fn=user_fn,
        cleaning=config.cleaning,
    )
    labels = config.all_labels
    cleanings = {label.name: config.label_cleaning(label) for label in labels}

    def with_labels(inputs: dict) -> dict:
        inputs = {
            name: clean_strings(x, cleanings[name]) if name in cleanings else x
            for name, x in inputs.items()
        }
        outputs = features_fn(inputs)
        for label in labels:
            if label.derived:
                if label.name not in outputs:
                    raise transform.TransformError(
                        f'preprocessing_fn {config.preprocessing_fn}: label "{label.name}" is '
                        "derived, but the function returns no output of that name (it returns "
                        f"{sorted(outputs)})"
                    )
                value = clean_strings(outputs.pop(label.name), cleanings[label.name])
                if value.dtype.name not in _LABEL_DTYPES[label.type]:
                    raise transform.TransformError(
                        f'preprocessing_fn {config.preprocessing_fn}: derived label '
                        f'"{label.name}" is declared type {label.type}, but the function '
                        f"returns {value.dtype.name} values"
                    )
            elif label.name not in outputs:
                value = inputs[label.name]
            else:
                continue  # the user's function transformed the label column itself
            if label.head_type == "sequence_tagging":
                outputs[label.name] = transform_tags(
                    value, label.name, token_length(config, label)
                )
                continue
            outputs[label.name] = transform_label(
                value,
                label.name,
                label.is_classifier,
                label.classes,
                normalize=label.normalize,
            )
        return outputs

    return with_labels


def token_length(config: Config, label: Label) -> int:
    """L, the length of a sequence_tagging label's token ids (and of its tag ids)."""
    _, ops = config.tagged_tokens(label)
    return ops.text.max_tokens if ops.text is not None else ops.max_items


def token_alignments(config: Config) -> list[TokenAlignment]:
    """The sequence_tagging labels whose rows need one tag per token."""
    alignments = []
    for label in config.all_labels:
        if label.head_type == "sequence_tagging":
            feature, ops = config.tagged_tokens(label)
            alignments.append(TokenAlignment(label.name, feature, ops.text))
    return alignments


def tokenizer(config: Config, label: Label) -> trainer.sequence_tagging.Tokenize:
    """Raw serving features -> the tokens of a sequence_tagging label's token feature,
    as the ``preprocessing_fn`` splits them (the export answers them beside the tags)."""
    feature, ops = config.tagged_tokens(label)
    if ops.text is None:
        return lambda raw: tf.RaggedTensor.from_sparse(raw[feature])

    def text_tokens(raw: dict) -> tf.RaggedTensor:
        x = raw[feature]
        return tokens(densify(x, "") if isinstance(x, tf.SparseTensor) else x, ops.text)

    return text_tokens


def transform_job(
    config: Config, beam_args: Sequence[str] = (), *, workers_see_local_files: bool = False
) -> transform.TransformJob:
    """The Beam job of a config; ``beam_args`` add to (and override) its ``beam`` section.

    On a runner whose workers may be other machines (Dataflow, Flink, Spark, a portable
    job server), a local data or artifacts path raises
    :class:`~tfbake.paths.LocalPathError` naming its key, unless
    ``workers_see_local_files`` (a shared mount, or workers on this machine).
    """
    beam_args = [*config.beam_args(), *beam_args]
    validation = config.data.validation
    if not workers_see_local_files and not transform.workers_on_this_machine(beam_args):
        spans = config.train_spans
        read = {
            **{"data.train" if len(spans) == 1 else f"data.train[{i}]": span
               for i, span in enumerate(spans)},
            "data.eval": config.data.eval,
        }
        if isinstance(validation, str):
            read["data.validation"] = validation
        # The workers' lookup tables read each vocabulary file while they analyze.
        for name, path in config.vocabulary_files().items():
            read[f"preprocessing.{name}.vocabulary.file"] = path
        paths.check_workers_can_read(
            {**read, "artifacts": config.artifacts_dir}, transform.runner_name(beam_args)
        )
    return transform.TransformJob(
        raw_feature_spec=config.raw_feature_spec(),
        preprocessing_fn=preprocessing_fn(config),
        train_pattern=config.data.train,
        eval_pattern=config.data.eval,
        output_dir=config.transform_dir,
        data_format=config.data.format,
        csv=config.data.csv,
        max_reject_fraction=config.data.max_reject_fraction,
        beam_args=beam_args,
        list_features=config.list_columns(),
        feature_lists=config.feature_lists(),
        image_features=config.image_features(),
        analysis_cache_dir=config.analysis_cache_dir,
        class_labels=[label.name for label in config.all_labels
                      if label.head_type in ("classification", "sequence_tagging")],
        token_alignments=token_alignments(config),
        validation_pattern=validation if isinstance(validation, str) else None,
        validation_fraction=None if validation is None or isinstance(validation, str)
        else validation.fraction,
        statistics=config.monitoring.statistics,
        statistics_top_k=config.monitoring.top_k,
    )


def run_transform(
    config: Config, beam_args: Sequence[str] = (), *, workers_see_local_files: bool = False
) -> dict:
    """Runs the Beam job (:func:`transform_job`); returns the per-split row counts."""
    return transform.run(
        transform_job(config, beam_args, workers_see_local_files=workers_see_local_files)
    )


def analysis_cache_report(config: Config) -> dict | None:
    """What the analysis cache did in the last Beam job (``analysis_cache.json``)."""
    path = transform.analysis_cache_report_path(config.transform_dir)
    if not tf.io.gfile.exists(path):
        return None
    with tf.io.gfile.GFile(path) as f:
        return json.load(f)


CANNED_MODELS = {
    "dnn_classifier": trainer.DNNClassifier,
    "dnn_regressor": trainer.DNNRegressor,
    "linear_classifier": trainer.LinearClassifier,
    "linear_regressor": trainer.LinearRegressor,
    "wide_deep_classifier": trainer.DNNLinearCombinedClassifier,
    "wide_deep_regressor": trainer.DNNLinearCombinedRegressor,
    "text_classifier": trainer.TextClassifier,
    "image_classifier": trainer.ImageClassifier,
    "token_tagger": trainer.TokenTagger,
}
# The head(s) from the label(s): each canned body takes any head it is given
# (:func:`canned_model_type`).
HEAD_FROM_LABELS = ("dnn", "linear", "wide_deep")
# The encoder hyperparameters of the text and image classifiers and the token tagger
# (besides hidden_units, activation and dropout for the classifiers).
ENCODER_HYPERPARAMETERS = {
    "text_classifier": ("embedding_dim", "units", "kernel_size"),
    "image_classifier": ("filters", "kernel_size", "pooling"),
    "token_tagger": ("embedding_dim", "units", "num_heads", "num_layers"),
}


def label_head(config: Config, label: Label, tft_output: tft.TFTransformOutput) -> trainer.Head:
    """The head of one configured label."""
    if label.head_type == "multi_label":
        return trainer.MultiLabelHead(label.classes, threshold=label.threshold)
    if label.head_type == "sequence_tagging":
        return trainer.SequenceTaggingHead(
            tft_output.vocabulary_by_name(label.name), label.tokens, tokenizer(config, label)
        )
    if label.head_type == "classification":
        return trainer.ClassificationHead(tft_output.vocabulary_by_name(label.name))
    return trainer.RegressionHead(*trainer.label_statistics(tft_output, label.name))


def build_head(config: Config, tft_output: tft.TFTransformOutput) -> trainer.Head:
    """The label's head, or a :class:`tfbake.trainer.MultiHead` (one head per label, named
    after it)."""
    if config.label is not None:
        return label_head(config, config.label, tft_output)
    return trainer.MultiHead(
        {label.name: label_head(config, label, tft_output) for label in config.labels},
        loss_weights={label.name: label.weight for label in config.labels},
    )


def _label_key(config: Config) -> str | list[str]:
    return config.label.name if config.label is not None else config.label_keys


def _class_weights(config: Config, tft_output: tft.TFTransformOutput) -> list[float] | None:
    weights = config.training.class_weights
    if weights is None:
        return None
    label = config.all_labels[0]
    if config.labels is not None or label.head_type != "classification":
        raise ValueError("training.class_weights: only for one single-label classification label")
    return trainer.class_weights(tft_output, label.name, weights)


def _custom_model(config: Config, tft_output: tft.TFTransformOutput, head) -> trainer.Model:
    m = config.model
    build = load_object(m.build, "model.build")
    keras_model = build(tft_output.transformed_feature_spec(), tft_output)
    if not isinstance(keras_model, tf_keras.Model):
        raise ValueError(
            f"model.build: {m.build} returned {type(keras_model).__name__}, not a tf_keras "
            "model (build with tf_keras, not keras 3)"
        )
    return trainer.Model(
        keras_model,
        head,
        tft_output,
        _label_key(config),
        model_dir=config.trainer_dir,
        optimizer=m.optimizer,
        learning_rate=m.learning_rate,
        class_weights=_class_weights(config, tft_output),
        loss=load_object(m.loss, "model.loss") if m.loss else None,
        postprocess=load_object(m.postprocess, "model.postprocess") if m.postprocess else None,
    )


def canned_model_type(config: Config) -> str:
    """The canned model of ``model.type``; ``dnn``, ``linear`` and ``wide_deep`` (heads
    from the labels) are the regressor for one regression label, else the classifier
    (whose body takes the labels' heads, a multi-head one included)."""
    kind = config.model.type
    if kind not in HEAD_FROM_LABELS:
        return kind
    regression = config.label is not None and config.label.head_type == "regression"
    return f"{kind}_{'regressor' if regression else 'classifier'}"


def build_model(config: Config) -> trainer.Model:
    """The configured model (canned or custom), bound to the transform output.

    Build it inside the training strategy's scope (:func:`distribute_strategy`).
    """
    m = config.model
    tft_output = tft.TFTransformOutput(config.transform_dir)
    head = build_head(config, tft_output)
    if m.type == "custom":
        return _custom_model(config, tft_output, head)
    kwargs = dict(
        model_dir=config.trainer_dir,
        learning_rate=m.learning_rate,
        optimizer=m.optimizer,
        head=head,
    )
    class_weights = _class_weights(config, tft_output)
    if class_weights is not None:
        kwargs.update(class_weights=class_weights)
    if m.type == "token_tagger":
        kwargs.update(
            dropout=m.dropout,
            encoder=m.text_encoder,
            **{key: getattr(m, key) for key in ENCODER_HYPERPARAMETERS[m.type]},
        )
    elif m.type in ENCODER_HYPERPARAMETERS:
        if m.type == "text_classifier":
            kwargs.update(encoder=m.text_encoder)
        kwargs.update(
            hidden_units=m.hidden_units,
            activation=m.activation,
            dropout=m.dropout,
            **{key: getattr(m, key) for key in ENCODER_HYPERPARAMETERS[m.type]},
        )
    elif not m.type.startswith("linear"):  # the hidden layers' settings
        kwargs.update(
            hidden_units=m.hidden_units,
            activation=m.activation,
            dropout=m.dropout,
            batch_norm=m.batch_norm,
            dnn_features=m.dnn_features,
        )
    if m.type.startswith(("linear", "wide_deep")):
        kwargs.update(linear_features=m.linear_features)
    model = CANNED_MODELS[canned_model_type(config)](tft_output, _label_key(config), **kwargs)
    if m.postprocess:
        model.postprocess = load_object(m.postprocess, "model.postprocess")
    return model


def distribute_strategy(config: Config) -> tf.distribute.Strategy:
    """``training.distribute`` as a ``tf.distribute`` strategy. ``multi_worker_mirrored``
    reads the cluster from the ``TF_CONFIG`` environment variable (docs/models.md)."""
    kind = config.training.distribute
    if kind == "mirrored":
        return tf.distribute.MirroredStrategy()
    if kind == "multi_worker_mirrored":
        return tf.distribute.MultiWorkerMirroredStrategy()
    return tf.distribute.get_strategy()


def input_fns(config: Config, tft_output: tft.TFTransformOutput) -> dict:
    """The input functions over the transformed data, by split: ``train`` (shuffled),
    ``eval`` and, with ``data.validation``, ``validation``."""
    t = config.training
    splits = {
        "train": trainer.make_input_fn(
            transform.data_pattern(config.transform_dir, "train"),
            tft_output,
            _label_key(config),
            batch_size=t.batch_size,
            shuffle=True,
            seed=t.seed,
        )
    }
    held_out = ["eval"] + ([transform.VALIDATION] if config.data.validation else [])
    for split in held_out:
        splits[split] = trainer.make_input_fn(
            transform.data_pattern(config.transform_dir, split),
            tft_output,
            _label_key(config),
            batch_size=max(t.batch_size, 256),
        )
    return splits


def early_stopping_split(config: Config) -> str:
    """The split that picks the early-stopping epoch: validation when configured."""
    return transform.VALIDATION if config.data.validation else "eval"


def previous_model(config: Config, source: str) -> trainer.PreviousModel:
    """``training.warm_start``'s model: an export version folder, an export folder (its
    latest version) or a previous run's artifacts folder (its trained weights in the
    model as now configured, built over that run's transform output)."""
    if tf.io.gfile.exists(os.path.join(source, "saved_model.pb")):
        return _export_model(source)
    weights = os.path.join(source, "trainer", WEIGHTS_FILE)
    if os.path.abspath(source) == os.path.abspath(config.artifacts_dir):
        # Its transform output is this run's by now: the old vocabularies are gone.
        raise ConfigError(
            f"training.warm_start: {source!r} is this run's own folder; warm-start from "
            f"its export ({config.export_dir_base}), which keeps the previous vocabularies"
        )
    if tf.io.gfile.exists(weights):
        previous = config.model_copy(update={"artifacts": source})
        try:
            model = load_trained_model(previous)
        except (ValueError, tf.errors.OpError) as err:
            raise ConfigError(
                f"training.warm_start: the weights of {source} do not fit the model as now "
                f"configured ({err}); warm-start from that run's export instead"
            ) from None
        assets = os.path.join(transform.transform_fn_dir(previous.transform_dir), "assets")
        return trainer.PreviousModel.from_keras(model.keras_model, assets, source)
    try:
        latest = trainer.latest_export(source)
    except FileNotFoundError:
        raise ConfigError(
            f"training.warm_start: {source!r} is not an export (saved_model.pb), an export "
            f"folder (version folders) or a run's artifacts folder (trainer/{WEIGHTS_FILE})"
        ) from None
    return _export_model(latest)


def _export_model(export_dir: str) -> trainer.PreviousModel:
    try:
        return trainer.PreviousModel.from_export(export_dir)
    except ValueError as err:
        raise ConfigError(f"training.warm_start: {err}") from None


def warm_start_report(config: Config) -> dict | None:
    """What the last training's warm start did (``trainer/warm_start.json``), if any."""
    path = os.path.join(config.trainer_dir, trainer.WARM_START_REPORT)
    if not tf.io.gfile.exists(path):
        return None
    with tf.io.gfile.GFile(path) as f:
        return json.load(f)


def run_training(config: Config) -> tuple[trainer.Model, dict]:
    """Trains, evaluates (``metrics.json``) and saves the weights; returns model and metrics.

    The validation split (``data.validation``), else the eval split, picks the
    early-stopping epoch; the returned metrics are the eval split's, measured once
    after training. With ``training.warm_start``, the model starts from the previous
    model's weights (``trainer/warm_start.json`` says which were remapped, copied or
    left fresh). A run killed midway resumes from its last finished epoch when started
    again. With ``multi_worker_mirrored``, run it on every worker of the ``TF_CONFIG``
    cluster: each trains on its share of the records, only the chief writes
    ``trainer_dir``.
    """
    tf_keras.utils.set_random_seed(config.training.seed)
    if config.training.deterministic:
        tf.config.experimental.enable_op_determinism()
    strategy = distribute_strategy(config)
    with strategy.scope():
        model = build_model(config)
    with trainer.write_dir(config.trainer_dir, strategy) as out_dir:
        report_path = os.path.join(out_dir, trainer.WARM_START_REPORT)
        if tf.io.gfile.exists(report_path):
            tf.io.gfile.remove(report_path)  # an earlier run's
        if config.training.warm_start:
            # After the new model: its fresh rows are those a cold start gets. Every
            # worker starts from the same weights.
            previous = previous_model(config, config.training.warm_start)
            trainer.warm_start(model, previous).write(out_dir)
    splits = input_fns(config, model.tft_output)
    stopping = config.training.early_stopping
    history = model.train(
        splits["train"],
        eval_input_fn=splits[early_stopping_split(config)],
        epochs=config.training.epochs,
        early_stopping_patience=stopping.patience if stopping else None,
        monitor=stopping.monitor if stopping else "val_loss",
    )
    metrics = model.evaluate(splits["eval"])
    # Every worker reports and saves (both read variables that all workers sync);
    # only the chief's go to trainer_dir.
    with trainer.write_dir(config.trainer_dir, strategy) as out_dir:
        trainer.write_report(model, history, splits["eval"], out_dir,
                             validation_split=early_stopping_split(config))
        model.keras_model.save_weights(os.path.join(out_dir, WEIGHTS_FILE))
    return model, metrics


def load_trained_model(config: Config) -> trainer.Model:
    """The model of the last ``tfbake train`` of this config."""
    path = os.path.join(config.trainer_dir, WEIGHTS_FILE)
    if not tf.io.gfile.exists(path):
        raise FileNotFoundError(f"{path} not found: run `tfbake train` first")
    model = build_model(config)
    model.keras_model.load_weights(path)
    return model


def serving_feature_spec(config: Config) -> dict:
    """What a serving tf.Example carries: the raw feature spec less the label columns
    and the ``serving: false`` features."""
    served = config.serving_features()
    return {name: spec for name, spec in config.raw_feature_spec().items() if name in served}


def sample_examples(config: Config, count: int) -> list[bytes]:
    """Up to ``count`` eval rows (of the first eval file) as serialized serving records
    (tf.Examples, or SequenceExamples for ``data.format: sequence_example``), the columns
    a serving request does not carry removed: labels, ``serving: false`` features.

    Rows the Beam job would reject are skipped.
    """
    if count == 0:
        return []
    spec = serving_feature_spec(config)
    path = sorted(tf.io.gfile.glob(config.data.eval))[0]
    rows = read_raw_rows(
        path, config.raw_feature_spec(), data_format=config.data.format,
        csv_format=config.data.csv, list_features=config.list_columns(),
    )
    feature_lists = config.serving_feature_lists()
    examples = []
    for row, _ in itertools.islice(rows, count):
        served = {name: value for name, value in row.items() if name in spec}
        examples.append(serving_input.serialize_row(served, spec, feature_lists))
    return examples


# Eval rows the export's serving check runs at least (with no warm-up examples too).
CHECK_EXAMPLES = 5


def run_export(config: Config, model: trainer.Model | None = None) -> str:
    """Exports the trained model for TF Serving, with warm-up requests made of real
    eval examples, published once it serves them (and them with every nullable
    feature absent); returns the version folder."""
    model = model or load_trained_model(config)
    warmup = config.export.warmup_examples
    examples = sample_examples(config, max(warmup, CHECK_EXAMPLES))
    return model.export_saved_model(
        config.export_dir_base,
        serving_input.build_parsing_serving_input_fn(
            serving_feature_spec(config), list_features=config.list_features(),
            feature_lists=config.serving_feature_lists(),
        ),
        warmup_examples=examples[:warmup],
        check_examples=examples,
        feature_annotations=config.feature_annotations(),
        statistics=training_statistics(config),
    )


def training_statistics(config: Config) -> str | None:
    """The Beam job's training statistics file, or None when it wrote none."""
    path = statistics_path(config.transform_dir)
    return path if tf.io.gfile.exists(path) else None


def run_all(
    config: Config, beam_args: Sequence[str] = (), *, workers_see_local_files: bool = False
) -> dict:
    """transform -> train -> export; returns a summary (row counts, metrics, export path).

    Not for a multi-worker cluster, whose workers would each run the Beam job: there,
    run the transform once, the training on every worker, then the export.
    """
    multi_worker = config.training.distribute == "multi_worker_mirrored"
    if multi_worker and (workers := trainer.workers_in_tf_config()) > 1:
        raise ConfigError(
            f"training.distribute: multi_worker_mirrored on the {workers} workers of "
            "TF_CONFIG: run `tfbake transform` once, `tfbake train` on every worker, "
            "then `tfbake export` (`tfbake run` would run the Beam job on every worker)"
        )
    stats = run_transform(config, beam_args, workers_see_local_files=workers_see_local_files)
    serving_check()  # the export's check process: its TensorFlow import overlaps training
    model, metrics = run_training(config)
    export_path = run_export(config, model)
    summary = {
        "transform": stats,
        "analysis_cache": analysis_cache_report(config),
        "warm_start": warm_start_report(config),
        "eval_metrics": metrics,
        "export": export_path,
        "early_stopping_split": early_stopping_split(config),
    }
    with tf.io.gfile.GFile(os.path.join(config.artifacts_dir, "run.json"), "w") as f:
        json.dump(summary, f, indent=2)
    return summary
