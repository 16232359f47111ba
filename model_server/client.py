"""A client for TF Serving's REST and gRPC APIs (this server's or the real one's).

``Client(url)`` speaks REST for ``http://host:port`` and gRPC for ``grpc://host:port``
or a bare ``host:port`` (``protocol=`` overrides); the protocols are two transports
behind one interface (:mod:`tfbake.model_server.client_transports`). Inputs may be plain
dicts of raw features (encoded into tf.Examples, or SequenceExamples given the
feature_lists, by :func:`tfbake.serving_input.serialize_row` with the raw feature spec,
given or derived from the model's ``predict_raw`` signature), ``tf.train.Example``s,
serialized examples, or a mapping of input name to array. Any number of rows is sent
in chunks of ``batch_size``.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping, Sequence

import numpy as np
import tensorflow as tf

from tfbake import serving_input
from tfbake.model_server.client_transports import (
    GrpcTransport,
    ModelSpec,
    RestTransport,
    ServingRequestError,
    Transport,
)
from tfbake.model_server.request_samples import raw_spec_of_inputs
from tfbake.serving_input import signatures as sig_keys

__all__ = ["Client", "ServingRequestError"]


def _chunks(n: int, size: int) -> Iterator[slice]:
    for start in range(0, n, size):
        yield slice(start, min(start + size, n))


class Client:
    """REST or gRPC client for TF Serving APIs.

    Args:
      url: ``http://host:port`` (REST), ``grpc://host:port`` or ``host:port`` (gRPC).
      protocol: ``"rest"`` or ``"grpc"``; inferred from ``url`` when omitted.
      timeout: seconds per request.
      batch_size: rows per request when more are given.
      feature_spec: the raw feature spec for encoding dict rows; by default derived
        from the model's ``predict_raw`` signature (every feature optional).
      feature_lists: the list features a dict row carries as a ``tf.SequenceExample``'s
        feature_lists (a model exported from ``data.format: sequence_example``; the
        signature does not say it); none: dict rows become ``tf.Example``s.
    """

    def __init__(self, url: str, protocol: str | None = None, *, timeout: float = 60.0,
                 batch_size: int = 128, feature_spec: Mapping | None = None,
                 feature_lists: Sequence[str] = ()):
        if protocol is None:
            protocol = "rest" if url.startswith(("http://", "https://")) else "grpc"
        if protocol not in ("rest", "grpc"):
            raise ValueError(f'protocol must be "rest" or "grpc", got {protocol!r}')
        self.url = url
        self.protocol = protocol
        self.timeout = timeout
        self.batch_size = batch_size
        self.feature_spec = dict(feature_spec) if feature_spec is not None else None
        self.feature_lists = list(feature_lists)
        self._signatures: dict[tuple, dict] = {}
        self._specs: dict[str, dict] = {}
        transport = RestTransport if protocol == "rest" else GrpcTransport
        self._transport: Transport = transport(url, timeout)

    def __repr__(self) -> str:
        return f"Client({self.url!r}, protocol={self.protocol!r})"

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def close(self) -> None:
        """Closes connections."""
        self._transport.close()

    # ------------------------------------------------------------------ status / metadata

    def status(self, model: str, version: int | None = None) -> dict:
        """GetModelStatus, as the REST JSON (``{"model_version_status": [...]}``)."""
        return self._transport.status(ModelSpec(model, version))

    def metadata(self, model: str, version: int | None = None, label: str | None = None) -> dict:
        """GetModelMetadata, as the REST JSON (``signature_def`` twice)."""
        return self._transport.metadata(ModelSpec(model, version, label))

    def signature(self, model: str, signature_name: str | None = None, *,
                  version: int | None = None, label: str | None = None) -> dict:
        """One signature's JSON metadata (inputs, outputs, method_name), cached."""
        key = (model, version, label, signature_name or sig_keys.DEFAULT_SERVING)
        if key not in self._signatures:
            signatures = self.metadata(model, version, label)["metadata"]["signature_def"][
                "signature_def"
            ]
            if key[3] not in signatures:
                raise ValueError(
                    f"Model {model} has no signature {key[3]!r}; it has {sorted(signatures)}"
                )
            self._signatures[key] = signatures[key[3]]
        return self._signatures[key]

    def raw_feature_spec(self, model: str) -> dict:
        """The raw feature spec: as given, or read from the ``predict_raw`` signature
        (:func:`tfbake.serving_input.raw_feature_spec_of`: a feature sent with a count is a
        ``VarLenFeature``, nullable or a list; any other is required)."""
        if self.feature_spec is not None:
            return self.feature_spec
        if model not in self._specs:
            signature = self.signature(model, sig_keys.PREDICT_RAW)
            self._specs[model] = raw_spec_of_inputs(signature["inputs"])[0]
        return self._specs[model]

    def list_features(self, model: str) -> list[str]:
        """The list features of the ``predict_raw`` signature (values of rank 2)."""
        return raw_spec_of_inputs(self.signature(model, sig_keys.PREDICT_RAW)["inputs"])[1]

    # ------------------------------------------------------------------ inputs

    def _serialized(self, model: str, examples: Iterable) -> list[bytes]:
        rows = list(examples)
        out: list[bytes] = []
        spec = None
        for i, row in enumerate(rows):
            if isinstance(row, bytes):
                out.append(row)
            elif isinstance(row, tf.train.Example):
                out.append(row.SerializeToString())
            elif isinstance(row, Mapping):
                spec = spec or self.raw_feature_spec(model)
                out.append(serving_input.serialize_row(row, spec, self.feature_lists, index=i))
            else:
                raise TypeError(
                    f"Expected a dict, a tf.train.Example or bytes for example {i}, "
                    f"got {type(row).__name__}"
                )
        return out

    def _tensors(self, model: str, inputs, signature: dict) -> dict[str, np.ndarray]:
        """Any accepted input form as name -> array for the signature's inputs."""
        infos = signature["inputs"]
        if isinstance(inputs, Mapping):
            return {name: np.asarray(value) if not isinstance(value, np.ndarray) else value
                    for name, value in inputs.items()}
        rows = list(inputs)
        if len(infos) == 1 and next(iter(infos.values()))["dtype"] == "DT_STRING" and (
            not rows or not isinstance(rows[0], Mapping)
            or set(rows[0]) != set(infos)
        ):
            name = next(iter(infos))
            array = np.empty(len(rows), dtype=object)
            array[:] = self._serialized(model, rows)
            return {name: array}
        # Dict rows for a raw signature (one input per feature, a count beside each
        # nullable or list feature): serving_input.raw_columns.
        spec, lists = raw_spec_of_inputs(infos)
        return serving_input.raw_columns(rows, spec, lists)

    # ------------------------------------------------------------------ predict

    def predict(self, model: str, inputs, *, signature_name: str | None = None,
                version: int | None = None, label: str | None = None,
                output_filter: Sequence[str] | None = None) -> dict[str, np.ndarray]:
        """Predict: returns output name -> array, rows in input order.

        ``inputs``: a list of dict rows / tf.Examples / serialized examples (sent as the
        signature's one string input, or as raw columns for a raw signature), or a
        mapping of input name to array.
        """
        signature_name = signature_name or sig_keys.DEFAULT_SERVING
        signature = self.signature(model, signature_name, version=version, label=label)
        tensors = self._tensors(model, inputs, signature)
        n = len(next(iter(tensors.values()))) if tensors else 0
        outputs = list(output_filter) if output_filter else sorted(signature["outputs"])
        spec = ModelSpec(model, version, label, signature_name)
        parts = [
            self._transport.predict(spec, {name: array[rows] for name, array in tensors.items()},
                                    signature, outputs, output_filter)
            for rows in _chunks(n, self.batch_size)
        ]
        if not parts:
            return {name: np.zeros((0,)) for name in outputs}
        return {name: np.concatenate([p[name] for p in parts]) for name in parts[0]}

    # ------------------------------------------------------------------ classify / regress

    def _example_chunks(self, model: str, examples: Iterable) -> Iterator[list]:
        if self.feature_lists:
            raise ValueError(
                "Classify and Regress send tf.Examples, which carry no feature_lists "
                f"({', '.join(self.feature_lists)}); ask predict instead"
            )
        serialized = self._serialized(model, examples)
        for rows in _chunks(len(serialized), self.batch_size):
            yield [tf.train.Example.FromString(s) for s in serialized[rows]]

    def classify(self, model: str, examples: Iterable, *, signature_name: str | None = None,
                 version: int | None = None,
                 label: str | None = None) -> list[list[tuple[str, float]]]:
        """Classify: for each example, its ``(label, score)`` pairs in the model's order."""
        spec = ModelSpec(model, version, label, signature_name)
        return [row for chunk in self._example_chunks(model, examples)
                for row in self._transport.classify(spec, chunk)]

    def regress(self, model: str, examples: Iterable, *, signature_name: str | None = None,
                version: int | None = None, label: str | None = None) -> list[float]:
        """Regress: one value per example."""
        spec = ModelSpec(model, version, label, signature_name)
        return [value for chunk in self._example_chunks(model, examples)
                for value in self._transport.regress(spec, chunk)]
