"""Prometheus metrics under TF Serving's names (``/`` turned into ``:``).

- ``:tensorflow:serving:request_count{model_name,status}``: requests by outcome;
- ``:tensorflow:serving:request_latency{model_name,API,entrypoint}``: histogram, in
  microseconds, buckets ``Exponential(10, 1.8, 33)`` as in TF Serving;
- ``:tensorflow:serving:request_example_count_total{model}``: tf.Examples received;
- ``:tfbake:serving:model_call_count{model_name}`` and
  ``:tfbake:serving:batched_request_count{model_name}``: calls into TensorFlow and the
  requests they carried, so batching can be seen merging requests;
- ``:tfbake:serving:warmup_request_count{model_name,version}``: records of
  ``assets.extra/tf_serving_warmup_requests`` replayed when a version loaded (TF
  Serving only logs "Finished reading N warmup records"; this makes it checkable).

Counters keep TF Serving's exact names: prometheus_client's ``Counter`` would add a
``_total`` suffix, so they are held here and exposed by a small collector as
untyped samples; the histogram is prometheus_client's own.
"""

from __future__ import annotations

import threading

from prometheus_client import CollectorRegistry, Histogram, generate_latest
from prometheus_client.metrics_core import Metric
from prometheus_client.registry import Collector

try:  # The *_created series are not part of TF Serving's output.
    from prometheus_client import disable_created_metrics

    disable_created_metrics()
except ImportError:  # pragma: no cover - older prometheus_client
    pass

REQUEST_COUNT = ":tensorflow:serving:request_count"
REQUEST_LATENCY = ":tensorflow:serving:request_latency"
EXAMPLE_COUNT = ":tensorflow:serving:request_example_count_total"
MODEL_CALLS = ":tfbake:serving:model_call_count"
BATCHED_REQUESTS = ":tfbake:serving:batched_request_count"
WARMUP_REQUESTS = ":tfbake:serving:warmup_request_count"

_LATENCY_BUCKETS = tuple(10 * 1.8**i for i in range(32)) + (float("inf"),)


class _Counters(Collector):
    def __init__(self):
        self._lock = threading.Lock()
        self._values: dict[tuple, float] = {}
        self._help = {
            REQUEST_COUNT: ("The total number of requests.", ("model_name", "status")),
            EXAMPLE_COUNT: ("The total number of tensorflow.Examples.", ("model",)),
            MODEL_CALLS: ("Calls into TensorFlow (a merged batch is one call).", ("model_name",)),
            BATCHED_REQUESTS: ("Requests carried by those calls.", ("model_name",)),
            WARMUP_REQUESTS: ("Warm-up records replayed at load.", ("model_name", "version")),
        }

    def add(self, name: str, labels: tuple, amount: float = 1) -> None:
        with self._lock:
            key = (name, labels)
            self._values[key] = self._values.get(key, 0) + amount

    def collect(self):
        with self._lock:
            values = dict(self._values)
        for name, (doc, label_names) in self._help.items():
            metric = Metric(name, doc, "unknown")
            for (metric_name, labels), value in sorted(values.items()):
                if metric_name == name:
                    metric.add_sample(name, dict(zip(label_names, labels)), value)
            if metric.samples:
                yield metric


class Metrics:
    """The server's metrics and their Prometheus text page."""

    def __init__(self):
        self.registry = CollectorRegistry(auto_describe=False)
        self._counters = _Counters()
        self.registry.register(self._counters)
        self._latency = Histogram(
            REQUEST_LATENCY,
            "Distribution of wall time (in microseconds) for Tensorflow Serving request.",
            ("model_name", "API", "entrypoint"),
            buckets=_LATENCY_BUCKETS,
            registry=self.registry,
        )

    def record_request(self, model_name: str, api: str, entrypoint: str,
                       status: str, seconds: float) -> None:
        """One finished request (latency is recorded for successful ones, as TF Serving)."""
        self._counters.add(REQUEST_COUNT, (model_name, status))
        if status == "OK":
            self._latency.labels(model_name, api, entrypoint).observe(seconds * 1e6)

    def record_examples(self, model_name: str, count: int) -> None:
        """tf.Examples received by classify/regress/multi-inference."""
        self._counters.add(EXAMPLE_COUNT, (model_name,), count)

    def record_model_call(self, model_name: str, requests: int = 1) -> None:
        """One call into TensorFlow carrying ``requests`` requests."""
        self._counters.add(MODEL_CALLS, (model_name,))
        self._counters.add(BATCHED_REQUESTS, (model_name,), requests)

    def record_warmup(self, model_name: str, version: int, count: int) -> None:
        """``count`` warm-up records were replayed when ``model_name`` ``version`` loaded."""
        self._counters.add(WARMUP_REQUESTS, (model_name, str(version)), count)

    def page(self) -> bytes:
        """The Prometheus text exposition."""
        return generate_latest(self.registry)
