"""The evaluation picture: ``report.html`` with PNGs beside it, and ``report.json``.

Learning curves (loss and the head's metrics per epoch, train vs the split that picks the
early-stopping epoch: validation, or eval without one) from the Keras history; on the
eval data, for a classifier the confusion matrix and per-class
precision/recall, for a multi-label head per-label precision/recall, for a regressor
predicted vs actual, for a tagging head token accuracy, per-tag precision/recall/F1
and entity F1; a multi-head model has one section per head. Figures are drawn with
matplotlib's Agg canvas (no display, no pyplot state).
"""

from __future__ import annotations

import html
import json
import os

import numpy as np
import tensorflow as tf
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from tfbake.serving_input import signatures as sig
from tfbake.trainer.heads import (
    PREDICTED,
    ClassificationHead,
    MultiHead,
    MultiLabelHead,
    RegressionHead,
    head_outputs,
)
from tfbake.trainer.sequence_tagging import SequenceTaggingHead, tagging_report, tags_of


def _save(fig: Figure, out_dir: str, name: str) -> str:
    with tf.io.gfile.GFile(os.path.join(out_dir, name), "wb") as f:
        FigureCanvasAgg(fig).print_png(f)
    return name


def _learning_curves(history: dict[str, list[float]], out_dir: str, held_out: str) -> str:
    names = [k for k in history if not k.startswith("val_")]
    fig = Figure(figsize=(4.5 * len(names), 3.5), layout="constrained")
    for ax, name in zip(fig.subplots(1, len(names), squeeze=False)[0], names):
        for key, label in ((name, "train"), (f"val_{name}", held_out)):
            if key in history:
                epochs = np.arange(1, len(history[key]) + 1)
                ax.plot(epochs, history[key], marker=".", label=label)
        ax.set(title=name, xlabel="epoch")
        ax.legend()
    return _save(fig, out_dir, "learning_curves.png")


def _eval_labels(eval_input_fn):
    """The eval labels, an array (one label) or a dict of arrays by label key."""
    batches = [labels for _, labels in eval_input_fn()]
    if batches and isinstance(batches[0], dict):
        return {k: np.concatenate([np.asarray(b[k]) for b in batches]) for k in batches[0]}
    return np.concatenate([np.asarray(b) for b in batches])


def _per_class_chart(classes, precision, recall, out_dir: str, prefix: str) -> str:
    k = len(classes)
    fig = Figure(figsize=(max(4.0, 1.2 * k + 2), 3.5), layout="constrained")
    ax = fig.subplots()
    x = np.arange(k)
    ax.bar(x - 0.2, precision, 0.4, label="precision")
    ax.bar(x + 0.2, recall, 0.4, label="recall")
    ax.set(xticks=x, xticklabels=classes, ylim=(0, 1.05), title="Per class (eval)")
    ax.legend(loc="lower right")
    return _save(fig, out_dir, f"{prefix}per_class.png")


def _per_class_table(classes, precision, recall, support) -> str:
    rows = "".join(
        f"<tr><td>{html.escape(c)}</td><td>{p:.3f}</td><td>{r:.3f}</td><td>{n}</td></tr>"
        for c, p, r, n in zip(classes, precision, recall, support)
    )
    return (
        "<table><tr><th>class</th><th>precision</th><th>recall</th><th>support</th></tr>"
        f"{rows}</table>"
    )


def _ratio(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.nan_to_num(a / b)


def _classification(head, predictions, labels, out_dir: str, prefix: str):
    classes = head.label_vocabulary
    k = len(classes)
    predicted = predictions[sig.CLASS_IDS].reshape(-1)
    actual = labels.astype(np.int64).reshape(-1)
    cm = np.zeros((k, k), np.int64)  # rows: actual, columns: predicted
    np.add.at(cm, (actual, predicted), 1)
    diag = np.diag(cm)
    precision, recall = _ratio(diag, cm.sum(axis=0)), _ratio(diag, cm.sum(axis=1))

    fig = Figure(figsize=(1.2 * k + 3, 1.0 * k + 2.5), layout="constrained")
    ax = fig.subplots()
    image = ax.imshow(cm, cmap="Blues")
    fig.colorbar(image, ax=ax)
    ax.set(xticks=range(k), yticks=range(k), xlabel="predicted", ylabel="actual")
    ax.set(xticklabels=classes, yticklabels=classes, title="Confusion matrix (eval)")
    for (i, j), count in np.ndenumerate(cm):
        color = "white" if count > cm.max() / 2 else "black"
        ax.text(j, i, str(count), ha="center", va="center", color=color)
    images = [_save(fig, out_dir, f"{prefix}confusion_matrix.png")]
    images.append(_per_class_chart(classes, precision, recall, out_dir, prefix))
    summary = {
        "rows": int(cm.sum()),
        "classes": classes,
        "confusion_matrix": cm.tolist(),
        "precision": precision.tolist(),
        "recall": recall.tolist(),
    }
    return summary, images, _per_class_table(classes, precision, recall, cm.sum(axis=1))


def _multi_label(head, predictions, labels, out_dir: str, prefix: str):
    """Per label, precision and recall of the thresholded answer (``predicted``)."""
    classes = head.label_vocabulary
    predicted = predictions[PREDICTED].astype(bool)
    actual = labels.astype(bool)
    hits = (predicted & actual).sum(axis=0)
    precision, recall = _ratio(hits, predicted.sum(axis=0)), _ratio(hits, actual.sum(axis=0))
    images = [_per_class_chart(classes, precision, recall, out_dir, prefix)]
    summary = {
        "rows": int(actual.shape[0]),
        "classes": classes,
        "threshold": head.threshold,
        "precision": precision.tolist(),
        "recall": recall.tolist(),
    }
    return summary, images, _per_class_table(classes, precision, recall, actual.sum(axis=0))


def _regression(head, predictions, labels, out_dir: str, prefix: str):
    predicted = predictions[sig.PREDICTIONS].reshape(-1)
    # The eval label is the transformed one: back to the user's units, as the head does.
    actual = labels.astype(np.float64).reshape(-1) * head.label_std + head.label_mean
    fig = Figure(figsize=(4.5, 4.5), layout="constrained")
    ax = fig.subplots()
    ax.scatter(actual, predicted, s=10, alpha=0.6)
    low, high = min(actual.min(), predicted.min()), max(actual.max(), predicted.max())
    ax.plot([low, high], [low, high], color="gray", linestyle="--", label="y = x")
    ax.set(xlabel="actual", ylabel="predicted", title="Predicted vs actual (eval)")
    ax.legend()
    errors = predicted - actual
    summary = {
        "rows": int(actual.size),
        "mae": float(np.abs(errors).mean()),
        "rmse": float(np.sqrt((errors**2).mean())),
    }
    table = f"<p>MAE {summary['mae']:.4g}, RMSE {summary['rmse']:.4g} over {actual.size} rows</p>"
    return summary, [_save(fig, out_dir, f"{prefix}predicted_vs_actual.png")], table


def _sequence_tagging(head, predictions, labels, out_dir: str, prefix: str):
    """Token accuracy, per-tag precision/recall/F1 and, for BIO tags, entity F1 over
    each eval sentence's own tokens (:func:`tfbake.trainer.sequence_tagging.tagging_report`)."""
    actual = [[head.tags[i - 1] for i in row if i > 0] for row in labels.astype(np.int64)]
    summary = {"rows": len(actual), **tagging_report(actual, tags_of(predictions))}
    per_tag = summary["per_tag"]
    tags = list(per_tag)
    precision = [per_tag[t]["precision"] for t in tags]
    recall = [per_tag[t]["recall"] for t in tags]
    images = [_per_class_chart(tags, precision, recall, out_dir, prefix)]
    table = _per_class_table(tags, precision, recall, [per_tag[t]["support"] for t in tags])
    entity = summary.get("entity")
    found = f", entity F1 {entity['f1']:.3f}" if entity else ""
    table = f"<p>token accuracy {summary['token_accuracy']:.3f}{found}</p>{table}"
    return summary, images, table


# Head type -> (report kind, section).
_SECTIONS = {
    ClassificationHead: ("classification", _classification),
    MultiLabelHead: ("multi_label", _multi_label),
    RegressionHead: ("regression", _regression),
    SequenceTaggingHead: ("sequence_tagging", _sequence_tagging),
}


def _section(head, predictions, labels, out_dir: str, prefix: str = ""):
    kind, section = _SECTIONS[type(head)]
    summary, images, table = section(head, predictions, labels, out_dir, prefix)
    return kind, summary, images, table


def write_report(model, history: dict[str, list[float]], eval_input_fn, out_dir: str, *,
                 validation_split: str = "eval") -> str:
    """Writes ``out_dir/report.html``, its PNGs and ``report.json``; returns the HTML's path.

    ``model`` is a trained :class:`tfbake.trainer.Model`, ``history`` what its ``train``
    returned, ``eval_input_fn`` yields ``(transformed features, transformed label)``.
    ``validation_split``: the split the history's ``val_`` metrics (and early stopping)
    come from. A multi-head model gets one section per head (PNGs prefixed
    ``<head>_``, its summary under ``heads`` in ``report.json``), and ``splits`` in
    ``report.json`` says which split each figure comes from.
    """
    tf.io.gfile.makedirs(out_dir)
    images = [_learning_curves(history, out_dir, validation_split)] if history else []
    predictions, labels = model.predict(eval_input_fn), _eval_labels(eval_input_fn)
    head = model.head
    if isinstance(head, MultiHead):
        kind, summary, tables = "multi_head", {"heads": {}}, []
        for name, sub in head.heads.items():
            sub_kind, sub_summary, more, table = _section(
                sub,
                head_outputs(name, predictions),
                labels[head.label_keys[name]],
                out_dir,
                f"{name}_",
            )
            summary["heads"][name] = {"kind": sub_kind, **sub_summary}
            images += more
            tables.append(f"<h2>{html.escape(name)}: {sub_kind}</h2>{table}")
        table = "\n".join(tables)
    else:
        kind, summary, more, table = _section(head, predictions, labels, out_dir)
        images += more
    with tf.io.gfile.GFile(os.path.join(out_dir, "report.json"), "w") as f:
        splits = {"learning_curves": ["train", validation_split],
                  "early_stopping": validation_split, "evaluation": "eval"}
        json.dump({"kind": kind, "splits": splits, "images": images, "history": history,
                   **summary}, f, indent=2)
    body = "\n".join(f'<p><img src="{name}" alt="{name}"></p>' for name in images)
    title = html.escape(", ".join(model.label_keys))
    page = (
        "<!doctype html><html><head><meta charset='utf-8'><title>tfbake report</title>"
        "<style>body{font-family:sans-serif}td,th{padding:2px 10px;text-align:right}</style>"
        f"</head><body><h1>{title}: {kind}</h1>\n"
        f"<p>Learning curves: train and {validation_split} (which picks the early-stopping "
        f"epoch); every other figure: the eval split, after training.</p>\n{body}\n{table}"
        "</body></html>\n"
    )
    path = os.path.join(out_dir, "report.html")
    with tf.io.gfile.GFile(path, "w") as f:
        f.write(page)
    return path
