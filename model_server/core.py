"""The request-handling core that the REST and gRPC adapters share.

Each TF Serving API is one method here, working on protocol-neutral values (numpy
arrays, ``Input`` protos, TF Serving's response protos for status and metadata), and
every check and message of SERVING_API.md is written here once. The adapters only
translate wire formats and map :class:`~model_server.errors.ServingError` codes.
"""

from __future__ import annotations

import asyncio
import dataclasses
import os
import threading
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import tensorflow as tf
from tensorflow.core.framework import types_pb2
from tensorflow.core.protobuf import error_codes_pb2
from tensorflow_serving.apis import get_model_metadata_pb2, get_model_status_pb2

from model_server import errors
from model_server.batching import BatchScheduler
from model_server.config import BatchingOptions, ConfigError, check_model_server_config
from model_server.manager import AspiredVersionsManager
from model_server.metrics import Metrics
from model_server.servable import Servable, Signature
from model_server.tensors import check_tensor_size, serialized_examples
from model_server.traffic import TrafficWatch
from serving_input import signatures as sig_keys

DEFAULT_SIGNATURE = sig_keys.DEFAULT_SERVING
SIGNATURE_DEF_FIELD = "signature_def"  # GetModelMetadataImpl::kSignatureDef
# A model call whose running mean is shorter than this runs on the event loop
# thread when no other call is in flight (see ServerCore._call).
INLINE_CALL_MAX_S = 0.001
_PREDICT_METHODS = (sig_keys.PREDICT_METHOD, sig_keys.CLASSIFY_METHOD, sig_keys.REGRESS_METHOD)


@dataclasses.dataclass(frozen=True)
class ModelSpec:
    """Which model, version (or label) and signature a request names."""

    name: str
    version: int | None = None
    label: str | None = None
    signature_name: str = ""

    @classmethod
    def from_proto(cls, spec) -> ModelSpec:
        """From a ``tensorflow.serving.ModelSpec``."""
        choice = spec.WhichOneof("version_choice")
        return cls(
            spec.name,
            spec.version.value if choice == "version" else None,
            spec.version_label if choice == "version_label" else None,
            spec.signature_name,
        )


@dataclasses.dataclass
class PredictResult:
    """Outputs of one predict call, with the servable and signature that made them."""

    servable: Servable
    signature_name: str
    outputs: dict[str, np.ndarray]


@dataclasses.dataclass
class ClassifyResult:
    """``classes`` [N, K] (bytes) and/or ``scores`` [N, K] (float32)."""

    servable: Servable
    signature_name: str
    classes: np.ndarray | None
    scores: np.ndarray | None


@dataclasses.dataclass
class RegressResult:
    """``values`` [N] (float32)."""

    servable: Servable
    signature_name: str
    values: np.ndarray


def _shape_debug_string(shape) -> str:
    return "[" + ",".join(str(d) for d in shape) + "]"


def _names(names) -> str:
    return ",".join(sorted(names))


def _touch_tensorflow() -> None:
    """One tiny eager op: sets up TensorFlow's per-thread state on the calling thread."""
    (tf.constant(0.0) + 1.0).numpy()


class ServerCore:
    """Resolves servables and runs TF Serving's APIs on them."""

    def __init__(
        self,
        manager: AspiredVersionsManager,
        metrics: Metrics | None = None,
        *,
        batching: BatchingOptions | None = None,
        num_threads: int = 0,
        method_name_check: bool = False,
        max_tensor_bytes: int | None = None,
        traffic: TrafficWatch | None = None,
    ):
        self.manager = manager
        self.metrics = metrics or Metrics()
        self.method_name_check = method_name_check
        # A request tensor larger than this once decoded is refused (None: no limit).
        self.max_tensor_bytes = max_tensor_bytes
        # Data checks and request log of answered requests (None: neither).
        self.traffic = traffic
        self._workers = num_threads or 2 * (os.cpu_count() or 1)
        self._executor = ThreadPoolExecutor(
            max_workers=self._workers, thread_name_prefix="tf_session"
        )
        self._in_flight = 0
        self._batching = batching
        self._scheduler: BatchScheduler | None = None

    async def prime(self) -> None:
        """Starts every worker thread and runs TensorFlow once on each (and on the loop
        thread), so that the first request after a model turns AVAILABLE does not pay
        for thread creation and TensorFlow's per-thread start-up; warm-up replay, which
        runs on the loader's thread, cannot reach those."""
        _touch_tensorflow()
        barrier = threading.Barrier(self._workers)

        def start_worker() -> None:
            _touch_tensorflow()
            barrier.wait(timeout=30)  # hold each thread so the next task needs a new one

        loop = asyncio.get_running_loop()
        await asyncio.gather(
            *(loop.run_in_executor(self._executor, start_worker) for _ in range(self._workers))
        )

    def close(self) -> None:
        """Waits for running model calls and stops the worker threads."""
        self._executor.shutdown(wait=True)
        if self.traffic is not None:
            self.traffic.close()

    # ------------------------------------------------------------------ running

    async def _call(self, servable: Servable, signature: Signature, inputs) -> dict:
        if self._in_flight == 0 and signature.mean_call_s < INLINE_CALL_MAX_S:
            # Nothing else is running: a short call costs less on this thread than
            # the hop to a worker and back (~0.1 ms of submit, wake-up and
            # call_soon_threadsafe). Longer calls, and calls while another runs,
            # go to the workers so the loop keeps reading requests.
            return signature(inputs)
        loop = asyncio.get_running_loop()
        self._in_flight += 1
        try:
            return await loop.run_in_executor(self._executor, signature, inputs)
        finally:
            self._in_flight -= 1

    async def run_signature(self, servable: Servable, signature: Signature,
                            inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """One call of a signature, through the batch scheduler when batching is on."""
        rows = {a.shape[0] if a.ndim else -1 for a in inputs.values()}
        if self._batching is not None and len(rows) == 1 and -1 not in rows:
            if self._scheduler is None:
                self._scheduler = BatchScheduler(
                    self._batching, self._call, self._on_batch
                )
            return await self._scheduler.run(servable, signature, inputs, rows.pop())
        self.metrics.record_model_call(servable.name, 1)
        return await self._call(servable, signature, inputs)

    def _on_batch(self, model_name: str, requests: int, rows: int) -> None:
        self.metrics.record_model_call(model_name, requests)

    # ------------------------------------------------------------------ handles

    def servable(self, spec: ModelSpec) -> Servable:
        """The servable a request names (NOT_FOUND / INVALID_ARGUMENT otherwise)."""
        if spec.version is not None and spec.label is not None:
            raise errors.invalid_argument(
                f"Both model version ({spec.version}) and model version label "
                f"({spec.label}) cannot be supplied."
            )
        return self.manager.get_servable(spec.name, spec.version, spec.label)

    # ------------------------------------------------------------------ predict

    @staticmethod
    def rest_predict_signature(servable: Servable, signature_name: str) -> Signature:
        """The signature a REST predict body names (REST's own error message)."""
        key = signature_name or DEFAULT_SIGNATURE
        signature = servable.signatures.get(key)
        if signature is None:
            raise errors.invalid_argument(
                f'Serving signature name: "{key}" not found in signature def'
            )
        return signature

    async def predict(self, servable: Servable, signature_name: str, inputs,
                      output_filter=(), decode=None) -> PredictResult:
        """TensorflowPredictor::Predict: validate inputs, run, select outputs.

        ``inputs`` maps aliases to arrays, or to anything ``decode(alias, value,
        max_bytes)`` turns into one (TensorProtos from gRPC), decoded after the names
        are checked and refused before decoding when larger than ``max_tensor_bytes``.
        """
        key = signature_name or DEFAULT_SIGNATURE
        signature = servable.signatures.get(key)
        if signature is None:
            raise errors.failed_precondition(f'Serving signature key "{key}" not found.')
        if signature.method_name not in _PREDICT_METHODS:
            raise errors.internal(
                "Expected prediction signature method_name to be one of {"
                + ", ".join(_PREDICT_METHODS) + "}. Was: " + signature.method_name
            )
        self._check_inputs(signature, inputs)
        if decode is not None:
            inputs = {alias: decode(alias, value, self.max_tensor_bytes)
                      for alias, value in inputs.items()}
        seen = set()
        for alias in output_filter:
            if alias not in signature.outputs:
                raise errors.invalid_argument(
                    f"output tensor alias not found in signature: {alias} Outputs expected "
                    f"to be in the set {{{_names(signature.outputs)}}}."
                )
            if alias in seen:
                raise errors.invalid_argument(f"duplicate output tensor alias: {alias}")
            seen.add(alias)
        inputs = self._check_values(signature, inputs)
        outputs = await self.run_signature(servable, signature, inputs)
        if output_filter:
            outputs = {alias: outputs[alias] for alias in output_filter}
        if self.traffic is not None:
            self.traffic.predicted(servable, key, inputs, outputs)
        return PredictResult(servable, key, outputs)

    @staticmethod
    def _check_inputs(signature: Signature, inputs) -> None:
        sent, expected = len(inputs), len(signature.inputs)
        if sent > expected or (sent < expected and not signature.has_defaults):
            extra = set(inputs) - signature.input_names
            missing = signature.input_names - set(inputs)
            raise errors.invalid_argument(
                f"input size does not match signature: {sent}!={expected} "
                f"len({{{_names(inputs)}}}) != len({{{_names(signature.inputs)}}}). "
                f"Sent extra: {{{_names(extra)}}}. Missing but required: {{{_names(missing)}}}."
            )
        for alias in inputs:
            if alias not in signature.input_names:
                raise errors.invalid_argument(
                    f"input tensor alias not found in signature: {alias}. Inputs expected "
                    f"to be in the set {{{_names(signature.inputs)}}}."
                )

    def _check_values(self, signature: Signature, inputs) -> dict[str, np.ndarray]:
        """Size, dtype and shape against the signature, as the session's feed checks do."""
        checked = {}
        for index, (alias, info) in enumerate(signature.inputs.items()):
            if alias not in inputs:
                raise errors.invalid_argument(
                    f"Input {alias} has a default in the signature; tfbake's server needs it sent"
                )
            array = inputs[alias]
            check_tensor_size(alias, array.shape, info.dtype_enum, self.max_tensor_bytes)
            if info.dtype == tf.string:
                ok = array.dtype == object or array.dtype.kind in "SU"
                if ok and array.dtype != object:
                    array = array.astype(object)
            else:
                ok = array.dtype == info.np_dtype
            if not ok:
                got = "string" if array.dtype.kind in "OSU" else tf.as_dtype(array.dtype).name
                got = {"float32": "float", "float64": "double"}.get(got, got)
                raise errors.invalid_argument(
                    f"Expects arg[{index}] to be {info.type_name} but {got} is provided"
                )
            if not info.shape.is_compatible_with(array.shape):
                expected = _shape_debug_string(d if d is not None else -1 for d in info.shape)
                raise errors.invalid_argument(
                    f"input tensor alias: {alias} has shape {_shape_debug_string(array.shape)}, "
                    f"which is incompatible with the signature's shape {expected}"
                )
            checked[alias] = array
        return checked

    # ------------------------------------------------------------------ classify / regress

    def _signature_for(self, servable: Servable, signature_name: str, method: str) -> Signature:
        key = signature_name or DEFAULT_SIGNATURE
        signature = servable.signatures.get(key)
        if signature is None:
            raise errors.invalid_argument(f"No signature was found with the name: {key}")
        kind = "classification" if method == sig_keys.CLASSIFY_METHOD else "regression"
        if self.method_name_check and signature.method_name != method:
            raise errors.invalid_argument(
                f"Expected {kind} signature method_name to be {method}. "
                f"Was: {signature.method_name}"
            )
        if len(signature.inputs) != 1:
            raise errors.invalid_argument("Expected one input Tensor.")
        if method == sig_keys.CLASSIFY_METHOD:
            if len(signature.outputs) not in (1, 2):
                raise errors.invalid_argument(
                    f"Expected one or two output Tensors, found {len(signature.outputs)}"
                )
            if sig_keys.CLASSIFY_INPUTS not in signature.inputs:
                raise errors.invalid_argument(
                    f"No classification inputs found in SignatureDef: {signature.debug_string}"
                )
            if not ({sig_keys.CLASSES, sig_keys.SCORES} & set(signature.outputs)):
                raise errors.invalid_argument(
                    "Expected classification signature outputs to contain at least one of "
                    f'"{sig_keys.CLASSES}" or "{sig_keys.SCORES}". '
                    f"Signature was: {signature.debug_string}"
                )
        else:
            if len(signature.outputs) != 1:
                raise errors.invalid_argument("Expected one output Tensor.")
            if sig_keys.REGRESS_INPUTS not in signature.inputs:
                raise errors.invalid_argument(
                    f"No regression inputs found in SignatureDef: {signature.debug_string}"
                )
            if sig_keys.OUTPUTS not in signature.outputs:
                raise errors.invalid_argument(
                    f"No regression outputs found in SignatureDef: {signature.debug_string}"
                )
        return signature

    async def _run_examples(self, servable, signature, request_input):
        examples = serialized_examples(request_input)
        self.metrics.record_examples(servable.name, len(examples))
        return len(examples), await self.run_signature(
            servable, signature, {next(iter(signature.inputs)): examples}
        )

    async def classify(self, servable: Servable, signature_name: str,
                       request_input) -> ClassifyResult:
        """TensorFlowClassifier: tf.Examples in, classes/scores [N, K] out."""
        signature = self._signature_for(servable, signature_name, sig_keys.CLASSIFY_METHOD)
        num_examples, outputs = await self._run_examples(servable, signature, request_input)
        result = ClassifyResult(
            servable, signature.key, *self.classification_outputs(num_examples, outputs)
        )
        if self.traffic is not None:
            self.traffic.examples(servable, request_input, [result])
        return result

    @staticmethod
    def classification_outputs(num_examples: int, outputs: dict):
        """PostProcessClassificationResult's checks; returns (classes, scores)."""
        classes = outputs.get(sig_keys.CLASSES)
        scores = outputs.get(sig_keys.SCORES)
        for name, array, dtype_name in ((sig_keys.CLASSES, classes, "DT_STRING"),
                                        (sig_keys.SCORES, scores, "DT_FLOAT")):
            if array is None:
                continue
            if array.ndim != 2:
                raise errors.invalid_argument(
                    "Expected Tensor shape: [batch_size num_classes] but got "
                    + _shape_debug_string(array.shape)
                )
            is_string = array.dtype == object
            if (dtype_name == "DT_STRING") != is_string or (
                not is_string and array.dtype != np.float32
            ):
                got = "DT_STRING" if is_string else types_pb2.DataType.Name(
                    tf.as_dtype(array.dtype).as_datatype_enum
                )
                raise errors.invalid_argument(f"Expected {name} Tensor of {dtype_name}. Got: {got}")
            if array.shape[0] != num_examples:
                raise errors.invalid_argument(
                    f"Expected {name} output batch size of {num_examples}. Got: {array.shape[0]}"
                )
        if classes is not None and scores is not None and classes.shape[1] != scores.shape[1]:
            raise errors.invalid_argument(
                "Tensors class and score should match in dim_size(1). "
                f"Got {classes.shape[1]} vs. {scores.shape[1]}"
            )
        return classes, scores

    async def regress(self, servable: Servable, signature_name: str,
                      request_input) -> RegressResult:
        """TensorFlowRegressor: tf.Examples in, one float per example out."""
        signature = self._signature_for(servable, signature_name, sig_keys.REGRESS_METHOD)
        num_examples, outputs = await self._run_examples(servable, signature, request_input)
        result = RegressResult(
            servable, signature.key, self.regression_outputs(num_examples, outputs)
        )
        if self.traffic is not None:
            self.traffic.examples(servable, request_input, [result])
        return result

    @staticmethod
    def regression_outputs(num_examples: int, outputs: dict) -> np.ndarray:
        """PostProcessRegressionResult's checks; returns the values [N]."""
        values = outputs[sig_keys.OUTPUTS]
        if not (values.ndim == 1 or (values.ndim == 2 and values.shape[1] == 1)):
            raise errors.invalid_argument(
                "Expected output Tensor shape to be either [batch_size] or [batch_size, 1] "
                "but got " + _shape_debug_string(values.shape)
            )
        if values.shape[0] != num_examples:
            raise errors.invalid_argument(
                "Input batch size did not match output batch size: "
                f"{num_examples} vs. {values.shape[0]}"
            )
        if values.dtype != np.float32:
            raise errors.invalid_argument(
                f"Expected output Tensor of DT_FLOAT. Got: {tf.as_dtype(values.dtype).name}"
            )
        return values.reshape(-1)

    async def multi_inference(self, tasks: list[tuple[ModelSpec, str]], request_input):
        """TensorFlowMultiInferenceRunner: several classify/regress tasks, one Input.

        ``tasks`` are (model spec, method name); returns the servable and a list of
        :class:`ClassifyResult` / :class:`RegressResult` in task order.
        """
        if not tasks:
            raise errors.invalid_argument("MultiInferenceRequest must contain at least one task")
        model_name = ""
        seen = set()
        for spec, _method in tasks:
            if not spec.name:
                raise errors.invalid_argument("Found ModelSpec with an empty model name.")
            if not model_name:
                model_name = spec.name
            elif spec.name != model_name:
                raise errors.invalid_argument(
                    "All ModelSpecs in a MultiInferenceRequest must access the same model name."
                )
            key = spec.signature_name or DEFAULT_SIGNATURE
            if key in seen:
                raise errors.invalid_argument(f"Duplicate evaluation of signature: {key}")
            seen.add(key)
        servable = self.servable(tasks[0][0])
        checked = []
        for spec, method in tasks:
            key = spec.signature_name or DEFAULT_SIGNATURE
            if key not in servable.signatures:
                raise errors.invalid_argument(
                    f"Requested signature not found in model graph: {key}"
                )
            if method not in (sig_keys.CLASSIFY_METHOD, sig_keys.REGRESS_METHOD):
                raise errors.unimplemented(f"Unsupported signature method_name: {method}")
            checked.append((self._signature_for(servable, key, method), method))
        examples = serialized_examples(request_input)
        self.metrics.record_examples(servable.name, len(examples))
        results = []
        for signature, method in checked:
            outputs = await self.run_signature(
                servable, signature, {next(iter(signature.inputs)): examples}
            )
            if method == sig_keys.CLASSIFY_METHOD:
                results.append(ClassifyResult(
                    servable, signature.key,
                    *self.classification_outputs(len(examples), outputs),
                ))
            else:
                results.append(RegressResult(
                    servable, signature.key, self.regression_outputs(len(examples), outputs)
                ))
        if self.traffic is not None:
            self.traffic.examples(servable, request_input)
        return servable, results

    # ------------------------------------------------------------------ metadata / status

    def metadata(self, spec: ModelSpec, metadata_fields=(SIGNATURE_DEF_FIELD,)):
        """GetModelMetadataImpl: a ``GetModelMetadataResponse`` with the SignatureDefMap."""
        if not metadata_fields:
            raise errors.invalid_argument(
                "GetModelMetadataRequest must specify at least one metadata_field")
        for field in metadata_fields:
            if field != SIGNATURE_DEF_FIELD:
                raise errors.invalid_argument(f"Metadata field {field} is not supported")
        response = get_model_metadata_pb2.GetModelMetadataResponse()
        servable = self.servable(spec)
        response.model_spec.name = servable.name
        response.model_spec.version.value = servable.version
        response.metadata[SIGNATURE_DEF_FIELD].Pack(servable.signature_def_map)
        return response

    def model_status(self, spec: ModelSpec):
        """GetModelStatusImpl: a ``GetModelStatusResponse``, versions highest first."""
        states = self.manager.version_states(spec.name)
        if spec.version is not None:
            if spec.version not in states:
                raise errors.not_found(
                    f"Could not find version {spec.version} of model {spec.name}"
                )
            states = {spec.version: states[spec.version]}
        elif not states:
            raise errors.not_found(f"Could not find any versions of model {spec.name}")
        response = get_model_status_pb2.GetModelStatusResponse()
        for version, state in states.items():
            status = response.model_version_status.add()
            status.version = version
            status.state = get_model_status_pb2.ModelVersionStatus.State.Value(state.state)
            status.status.SetInParent()
            status.status.error_code = _error_code_value(state.error_code)
            status.status.error_message = state.error_message
        return response

    async def reload_config(self, config) -> None:
        """HandleReloadConfigRequest: apply a new ModelServerConfig, waiting for loads."""
        try:
            check_model_server_config(config)
        except ConfigError as e:
            raise errors.invalid_argument(str(e)) from None
        loop = asyncio.get_running_loop()
        await loop.run_in_executor(None, self.manager.apply_config, config)


def _error_code_value(name: str) -> int:
    return error_codes_pb2.Code.Value(name)
