"""``tfbake drift``: served traffic (the request log) against the training statistics.

Per served feature, with TFDV's measures:

- a string feature: the L-infinity distance between the training and serving shares
  of each value (training's from its top values);
- a number feature: the Jensen-Shannon divergence (base 2, 0 to 1) between training
  and serving over ten bins cut at the training deciles, plus one bin below the
  training minimum and one above its maximum (training's share of a bin comes from
  its quantiles, serving's is counted);
- every feature: the rise of the share of examples missing it, and (strings whose
  whole vocabulary training kept) the share of values training never had.

A feature drifts when one of these is over the config's ``monitoring`` threshold.
"""

from __future__ import annotations

import base64
import bisect
import dataclasses
import html
import io
import math
import os
from collections import Counter
from collections.abc import Iterable, Mapping

import numpy as np

from tfbake.request_logs import logged_examples, read_logs
from tfbake.serving_input.training_statistics import (
    common_stats,
    features_by_name,
    quantile_bounds,
    read_statistics,
    statistics_path,
    vocabulary,
)

_DECILES = 10


@dataclasses.dataclass
class FeatureDrift:
    """One feature's comparison; ``over`` names the measures over their threshold."""

    name: str
    kind: str  # "string" | "number"
    measure: str  # "l_infinity" | "jensen_shannon"
    distance: float
    missing_train: float
    missing_serving: float
    unseen_rate: float | None
    bins: list[str]
    train_shares: list[float]
    serving_shares: list[float]
    over: list[str]

    @property
    def drifted(self) -> bool:
        """Whether any measure is over its threshold."""
        return bool(self.over)


@dataclasses.dataclass
class DriftReport:
    """Every served feature's drift, for ``examples`` logged examples."""

    examples: int
    features: list[FeatureDrift]
    thresholds: dict[str, float]

    @property
    def drifted(self) -> list[str]:
        """The features over a threshold."""
        return [f.name for f in self.features if f.drifted]

    def to_dict(self) -> dict:
        """The report as JSON-ready values."""
        return {
            "examples": self.examples,
            "thresholds": self.thresholds,
            "drifted": self.drifted,
            "features": [dataclasses.asdict(f) for f in self.features],
        }


def jensen_shannon(p: Iterable[float], q: Iterable[float]) -> float:
    """Jensen-Shannon divergence (base 2) of two distributions over the same bins."""
    p, q = np.asarray(list(p), float), np.asarray(list(q), float)
    p, q = p / p.sum(), q / q.sum()
    m = (p + q) / 2

    def kl(a):
        mask = a > 0
        return float(np.sum(a[mask] * np.log2(a[mask] / m[mask])))

    return max(0.0, (kl(p) + kl(q)) / 2)


def _values(example, name: str) -> list | None:
    features = example.features.feature
    if name not in features:
        return None
    kind = features[name].WhichOneof("kind")
    values = list(getattr(features[name], kind).value) if kind else []
    return values or None


def _number_drift(feature, values: list[float]) -> tuple[list[str], list[float], list[float]]:
    bounds = quantile_bounds(feature)
    step = (len(bounds) - 1) / _DECILES
    cuts = sorted({bounds[round(i * step)] for i in range(_DECILES + 1)})

    def cdf(x: float) -> float:  # training share <= x, from the quantiles
        if x >= bounds[-1]:
            return 1.0
        return bisect.bisect_right(bounds, x) / len(bounds)

    train = [cdf(cuts[0])]
    train += [cdf(b) - cdf(a) for a, b in zip(cuts, cuts[1:])]
    train.append(0.0)
    serving = [0] * (len(cuts) + 1)
    for v in values:
        if math.isfinite(v):
            serving[bisect.bisect_left(cuts, v)] += 1
    labels = [f"<={cuts[0]:.4g}"] + [f"{a:.4g}-{b:.4g}" for a, b in zip(cuts, cuts[1:])]
    labels.append(f">{cuts[-1]:.4g}")
    total = sum(serving) or 1
    return labels, train, [s / total for s in serving]


def _string_drift(feature, values: list[bytes]) -> tuple[list[str], list[float], list[float]]:
    top = {v.value: v.frequency for v in feature.string_stats.top_values}
    total_train = sum(top.values()) or 1
    counts = Counter(v.decode("utf-8", "replace") for v in values)
    total = sum(counts.values()) or 1
    labels = list(top) + sorted(set(counts) - set(top))
    return (labels, [top.get(v, 0) / total_train for v in labels],
            [counts.get(v, 0) / total for v in labels])


def compare(statistics, examples: list, feature_names: Iterable[str],
            thresholds: Mapping[str, float]) -> DriftReport:
    """The drift of ``examples`` (tf.Examples) from ``statistics`` (training's)."""
    by_name = features_by_name(statistics)
    rows = len(examples)
    report = DriftReport(rows, [], dict(thresholds))
    for name in feature_names:
        feature = by_name.get(name)
        if feature is None:
            continue
        is_string = feature.WhichOneof("stats") == "string_stats"
        present = [v for v in (_values(e, name) for e in examples) if v is not None]
        values = [x for v in present for x in v]
        common = common_stats(feature)
        trained = common.num_missing + common.num_non_missing
        missing_train = common.num_missing / trained if trained else 0.0
        missing_serving = (rows - len(present)) / rows if rows else 0.0
        unseen = None
        if is_string:
            labels, train, serving = _string_drift(feature, values)
            distance = max((abs(a - b) for a, b in zip(train, serving)), default=0.0)
            measure = "l_infinity"
            vocab = vocabulary(feature)
            if vocab is not None and values:
                unseen = sum(v not in vocab for v in values) / len(values)
        elif quantile_bounds(feature):
            labels, train, serving = _number_drift(feature, values)
            distance = jensen_shannon(train, serving) if values else 0.0
            measure = "jensen_shannon"
        else:
            continue
        over = []
        if values and distance > thresholds[measure]:
            over.append(measure)
        if missing_serving - missing_train > thresholds["missing_rate"]:
            over.append("missing_rate")
        if unseen is not None and unseen > thresholds["unseen_rate"]:
            over.append("unseen_rate")
        report.features.append(FeatureDrift(
            name, "string" if is_string else "number", measure, distance, missing_train,
            missing_serving, unseen, labels, train, serving, over,
        ))
    return report


def drift(config, log_dir: str) -> DriftReport:
    """The drift of a config's served traffic, logged in ``log_dir``, from its training
    statistics (the Beam job's ``training_statistics.pb``)."""
    path = statistics_path(config.transform_dir)
    if not os.path.exists(path):
        raise FileNotFoundError(
            f"no training statistics at {path}: run `tfbake transform` with "
            "monitoring.statistics: true"
        )
    statistics = read_statistics(path)
    spec, feature_lists = config.raw_feature_spec(), config.serving_feature_lists()
    examples = [e for record in read_logs(log_dir)
                for e in logged_examples(record, spec, feature_lists)]
    monitoring = config.monitoring
    thresholds = {
        "l_infinity": monitoring.l_infinity,
        "jensen_shannon": monitoring.jensen_shannon,
        "missing_rate": monitoring.missing_rate,
        "unseen_rate": monitoring.unseen_rate,
    }
    names = [name for name, feature in config.features.items() if feature.serving]
    return compare(statistics, examples, names, thresholds)


def format_text(report: DriftReport) -> str:
    """One line per feature, then the verdict."""
    lines = [f"{report.examples} logged examples against the training statistics"]
    for f in report.features:
        unseen = "" if f.unseen_rate is None else f"  unseen {f.unseen_rate:.1%}"
        flag = f"  DRIFT ({', '.join(f.over)})" if f.over else ""
        lines.append(
            f"  {f.name:<24} {f.measure} {f.distance:.3f} "
            f"(threshold {report.thresholds[f.measure]:g})  "
            f"missing {f.missing_train:.1%} -> {f.missing_serving:.1%}{unseen}{flag}"
        )
    lines.append(f"drift: {', '.join(report.drifted)}" if report.drifted else "no drift")
    return "\n".join(lines)


def _plot(feature: FeatureDrift) -> str:
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import pyplot

    figure, axes = pyplot.subplots(figsize=(4.8, 2.6), dpi=80)
    x = np.arange(len(feature.bins))
    axes.bar(x - 0.2, feature.train_shares, 0.4, label="training")
    axes.bar(x + 0.2, feature.serving_shares, 0.4, label="serving")
    axes.set_xticks(x, feature.bins, rotation=45, ha="right", fontsize=6)
    axes.set_ylabel("share", fontsize=7)
    axes.set_title(f"{feature.name}: {feature.measure} {feature.distance:.3f}", fontsize=8)
    axes.legend(fontsize=6)
    figure.tight_layout()
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png")
    pyplot.close(figure)
    return base64.b64encode(buffer.getvalue()).decode()


def format_html(report: DriftReport) -> str:
    """A self-contained page: the verdict, then one small plot per feature."""
    verdict = (f"Drift: {html.escape(', '.join(report.drifted))}" if report.drifted
               else "No drift")
    cards = []
    for f in report.features:
        status = f"DRIFT ({', '.join(f.over)})" if f.over else "ok"
        unseen = "" if f.unseen_rate is None else f", unseen {f.unseen_rate:.1%}"
        cards.append(
            f'<figure class="{"drift" if f.over else "ok"}" id="{html.escape(f.name)}">'
            f'<img alt="{html.escape(f.name)}" src="data:image/png;base64,{_plot(f)}">'
            f"<figcaption>{html.escape(f.name)}: {status}; missing "
            f"{f.missing_train:.1%} &rarr; {f.missing_serving:.1%}{unseen}</figcaption></figure>"
        )
    return (
        "<!doctype html><html><head><meta charset='utf-8'><title>tfbake drift</title>"
        "<style>body{font-family:sans-serif;margin:1em}figure{display:inline-block;"
        "margin:.4em;padding:.3em;border:2px solid #9c9}figure.drift{border-color:#d33}"
        "figcaption{font-size:12px;max-width:384px}</style></head><body>"
        f"<h1>{verdict}</h1><p>{report.examples} logged examples against the training "
        f"statistics.</p>{''.join(cards)}</body></html>"
    )
