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
  Serving only logs "Finished reading N warmup records"; this makes it checkable);
- with ``--num_workers`` above 1, ``:tfbake:serving:worker_request_count{pid}``:
  requests answered by each server process.

Counters keep TF Serving's exact names: prometheus_client's ``Counter`` would add a
``_total`` suffix, so they are prometheus_client ``Gauge``s only ever increased, shown
as untyped samples; the histogram is prometheus_client's own. Under several server
processes (``PROMETHEUS_MULTIPROC_DIR`` set, see :mod:`model_server.workers`) every
process writes its values there and any process's page shows their sums
(prometheus_client's multiprocess mode).
"""

from __future__ import annotations

import os

from prometheus_client import CollectorRegistry, Gauge, Histogram, generate_latest
from prometheus_client.multiprocess import MultiProcessCollector
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
WORKER_REQUESTS = ":tfbake:serving:worker_request_count"

_COUNTERS = {REQUEST_COUNT, EXAMPLE_COUNT, MODEL_CALLS, BATCHED_REQUESTS, WARMUP_REQUESTS,
             WORKER_REQUESTS}
_LATENCY_BUCKETS = tuple(10 * 1.8**i for i in range(32)) + (float("inf"),)


def _multiprocess() -> bool:
    """True in a process of a multi-process server (prometheus_client reads the same
    variable when it is imported)."""
    return bool(os.environ.get("PROMETHEUS_MULTIPROC_DIR"))


def _counter(name: str, doc: str, labels: tuple[str, ...]) -> Gauge:
    # Summed over processes, dead ones included: a counter keeps what it counted.
    return Gauge(name, doc, labels, multiprocess_mode="sum", registry=None)


# Warm-up happens in the loader, which has no Metrics of its own: the counts are
# process-wide (one server per process) and every Metrics page shows them.
_WARMUP = _counter(WARMUP_REQUESTS, "Warm-up records replayed at load.",
                   ("model_name", "version"))


def record_warmup(model_name: str, version: int, count: int) -> None:
    """``count`` warm-up records were replayed when ``model_name`` ``version`` loaded."""
    _WARMUP.labels(model_name, str(version)).inc(count)


class _Page(Collector):
    """What the page shows: these metrics, or under several processes every process's
    sums; the counters' gauges shown untyped, as TF Serving's names are counters."""

    def __init__(self, collectors):
        self._collectors = collectors

    def collect(self):
        for collector in self._collectors:
            for metric in collector.collect():
                if metric.name in _COUNTERS:
                    metric.type = "unknown"
                if metric.samples:
                    yield metric


class Metrics:
    """The server's metrics and their Prometheus text page."""

    def __init__(self):
        self.registry = CollectorRegistry(auto_describe=False)
        self._request_count = _counter(REQUEST_COUNT, "The total number of requests.",
                                       ("model_name", "status"))
        self._examples = _counter(EXAMPLE_COUNT, "The total number of tensorflow.Examples.",
                                  ("model",))
        self._model_calls = _counter(
            MODEL_CALLS, "Calls into TensorFlow (a merged batch is one call).", ("model_name",))
        self._batched = _counter(BATCHED_REQUESTS, "Requests carried by those calls.",
                                 ("model_name",))
        self._latency = Histogram(
            REQUEST_LATENCY,
            "Distribution of wall time (in microseconds) for Tensorflow Serving request.",
            ("model_name", "API", "entrypoint"),
            buckets=_LATENCY_BUCKETS,
            registry=None,
        )
        counters = [self._request_count, self._examples, self._model_calls, self._batched,
                    _WARMUP]
        self._worker_requests = None
        if _multiprocess():
            # One sample per process (its pid), to see how requests spread.
            self._worker_requests = Gauge(
                WORKER_REQUESTS, "Requests answered by each server process.",
                multiprocess_mode="all", registry=None)
            counters.append(self._worker_requests)
            collectors = [MultiProcessCollector(None)]
        else:
            collectors = [*counters, self._latency]
        self.registry.register(_Page(collectors))

    @property
    def collector_registry(self) -> CollectorRegistry | None:
        """Where other parts of the server register their own prometheus_client
        metrics: this page's registry in a lone server; none under several processes,
        where every process's values reach the page through the multiprocess files
        (registering them too would show this process's values beside the sums)."""
        return None if self._worker_requests is not None else self.registry

    def record_request(self, model_name: str, api: str, entrypoint: str,
                       status: str, seconds: float) -> None:
        """One finished request (latency is recorded for successful ones, as TF Serving)."""
        self._request_count.labels(model_name, status).inc()
        if self._worker_requests is not None:
            self._worker_requests.inc()
        if status == "OK":
            self._latency.labels(model_name, api, entrypoint).observe(seconds * 1e6)

    def record_examples(self, model_name: str, count: int) -> None:
        """tf.Examples received by classify/regress/multi-inference."""
        self._examples.labels(model_name).inc(count)

    def record_model_call(self, model_name: str, requests: int = 1) -> None:
        """One call into TensorFlow carrying ``requests`` requests."""
        self._model_calls.labels(model_name).inc()
        self._batched.labels(model_name).inc(requests)

    def page(self) -> bytes:
        """The Prometheus text exposition."""
        return generate_latest(self.registry)
